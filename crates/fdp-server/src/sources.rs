//! Sources, tables and lineage for the data engineer: each source's recent
//! runs (records in, accepted, refused, throughput), each table's version
//! history with the run behind every version and how to query it as it
//! was, and a picture from sources through raw tables to canonical tables.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use chrono::{DateTime, Utc};
use fdp_store::tables::{self, Layer};
use maud::html;

use crate::svg::lineage_picture;
use crate::ui::layout;
use crate::AppState;

fn age(ms: i64) -> String {
    let Some(at) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return String::new();
    };
    let secs = (Utc::now() - at).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Totals per source: records in, accepted, refused, and the last run.
fn by_source(
    runs: &[fdp_ingest::runs::Run],
) -> BTreeMap<(String, String), (i64, i64, i64, String)> {
    let mut out: BTreeMap<(String, String), (i64, i64, i64, String)> = BTreeMap::new();
    for r in runs {
        let e =
            out.entry((r.kind.clone(), r.source.clone()))
                .or_insert((0, 0, 0, r.started.clone()));
        e.0 += r.records_in;
        e.1 += r.accepted;
        e.2 += r.rejected;
    }
    out
}

/// `GET /sources`.
pub async fn sources_page(State(state): State<AppState>) -> Html<String> {
    let runs = fdp_ingest::runs::recent(&state.governance, &state.instance.data_dir, 200).await;
    layout(
        "Sources",
        Some(&state.instance.ods),
        html! {
            h1 { "Sources" }
            p.muted { "What each source sent, newest first: records in, accepted, refused (kept in " a href="/quarantine" { "quarantine" } ") and, for file loads, throughput. The HL7 v2 feed is continuous and is shown by connection and hour." }
            @match runs {
                Err(e) => p.error { "Could not read the raw tables: " (e) },
                Ok(runs) if runs.is_empty() => p { "Nothing received yet." },
                Ok(runs) => {
                    @let by_source = by_source(&runs);
                    h2 { "By source" }
                    table {
                        thead { tr { th { "Kind" } th { "Source" } th { "Last run" } th.num { "Records in" } th.num { "Accepted" } th.num { "Refused" } } }
                        tbody { @for ((kind, source), (n, ok, bad, last)) in &by_source {
                            tr { td { (kind) } td { (source) } td { (last) } td.num { (n) } td.num { (ok) }
                                 td.num { @if *bad > 0 { a href=(format!("/quarantine?kind={kind}")) { (bad) } } @else { "0" } } }
                        } }
                    }
                    h2 { "Recent runs" }
                    table {
                        thead { tr { th { "Started (UTC)" } th { "Kind" } th { "Source" } th { "Run" } th.num { "Records in" } th.num { "Accepted" } th.num { "Refused" } th.num { "Records/s" } } }
                        tbody { @for r in &runs {
                            tr {
                                td { (r.started) } td { (r.kind) } td { (r.source) } td { code { (r.run_id) } }
                                td.num { (r.records_in) } td.num { (r.accepted) }
                                td.num { @if r.rejected > 0 { a href=(format!("/quarantine?kind={}", r.kind)) { (r.rejected) } } @else { "0" } }
                                td.num { (r.per_second().map(|v| format!("{v:.0}")).unwrap_or_default()) }
                            }
                        } }
                    }
                }
            }
        },
    )
}

/// One table as the instance and tables pages list it.
pub(crate) struct TableRow {
    /// `raw.name` for raw tables, the bare name for canonical ones.
    pub qualified: String,
    pub version: u64,
    pub last_ms: Option<i64>,
    /// The transform that wrote the last version.
    pub transform: String,
    /// Why the table could not be opened, if it could not.
    pub unreadable: Option<String>,
}

impl TableRow {
    /// The version, or why there is none.
    pub fn version_text(&self) -> String {
        match &self.unreadable {
            Some(e) => format!("unreadable: {e}"),
            None => self.version.to_string(),
        }
    }
}

/// Every table of the data directory, canonical first.
pub(crate) async fn table_rows(data_dir: &std::path::Path) -> Vec<TableRow> {
    let mut out = Vec::new();
    for layer in [Layer::Canonical, Layer::Raw] {
        let names = match tables::list_tables(data_dir, layer).await {
            Ok(n) => n,
            Err(e) => {
                out.push(TableRow {
                    qualified: format!("{} tables", layer.dir_name()),
                    version: 0,
                    last_ms: None,
                    transform: String::new(),
                    unreadable: Some(e.to_string()),
                });
                continue;
            }
        };
        for name in names {
            let qualified = match layer {
                Layer::Raw => format!("raw.{name}"),
                Layer::Canonical => name.clone(),
            };
            let opened = async {
                let at = tables::table_location(data_dir, layer, &name)?;
                tables::open(&at, None).await
            };
            let t = match opened.await {
                Ok(t) => t,
                Err(e) => {
                    out.push(TableRow {
                        qualified,
                        version: 0,
                        last_ms: None,
                        transform: String::new(),
                        unreadable: Some(e.to_string()),
                    });
                    continue;
                }
            };
            let last = tables::history(&t, 1)
                .await
                .ok()
                .and_then(|h| h.into_iter().next());
            out.push(TableRow {
                qualified,
                version: t.version().unwrap_or(0),
                last_ms: last.as_ref().and_then(|v| v.timestamp_ms),
                transform: last
                    .and_then(|v| v.lineage)
                    .and_then(|l| {
                        l.get("transform")
                            .and_then(|t| t.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_default(),
                unreadable: None,
            });
        }
    }
    out
}

/// `GET /tables`: every table with its version and freshness.
pub async fn tables_page(State(state): State<AppState>) -> Html<String> {
    let rows = table_rows(&state.instance.data_dir).await;
    layout(
        "Tables",
        Some(&state.instance.ods),
        html! {
            h1 { "Tables" }
            p.muted { "Canonical tables are stored in parts, one per writer (" code { "encounter@fhir" } ", " code { "ealentry@csv-waiting-list" } "); a query sees each table as the union of its parts. Every write is a Delta version: open a table for its history." }
            table {
                thead { tr { th { "Table" } th.num { "Version" } th { "Last written (UTC)" } th { "Freshness" } th { "Last written by" } } }
                tbody { @for r in &rows {
                    tr {
                        td { a href=(format!("/tables/{}", r.qualified)) { code { (r.qualified) } } }
                        td.num { (r.version_text()) }
                        td { (when(r.last_ms)) }
                        td { (r.last_ms.map(age).unwrap_or_default()) }
                        td { (r.transform) }
                    }
                } }
            }
        },
    )
}

fn locate(name: &str) -> (Layer, &str) {
    match name.strip_prefix("raw.") {
        Some(n) => (Layer::Raw, n),
        None => (Layer::Canonical, name),
    }
}

async fn history_of(
    state: &AppState,
    name: &str,
) -> Result<Vec<tables::TableVersion>, (StatusCode, String)> {
    let (layer, bare) = locate(name);
    let unreadable = |e: fdp_store::StoreError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    if !tables::list_tables(&state.instance.data_dir, layer)
        .await
        .map_err(unreadable)?
        .iter()
        .any(|t| t == bare)
    {
        return Err((StatusCode::NOT_FOUND, format!("no table {name}")));
    }
    let at = tables::table_location(&state.instance.data_dir, layer, bare).map_err(unreadable)?;
    let t = tables::open(&at, None).await.map_err(unreadable)?;
    tables::history(&t, 200)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /tables/{name}`: a table's version history.
pub async fn table_page(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let history = match history_of(&state, &name).await {
        Ok(h) => h,
        Err((code, e)) => return (code, e).into_response(),
    };
    let (layer, bare) = locate(&name);
    let logical = tables::split_part(bare).0.to_string();
    let parts: Vec<String> = if layer == Layer::Canonical {
        tables::list_tables(&state.instance.data_dir, Layer::Canonical)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|t| tables::split_part(t).0 == logical && t != bare)
            .collect()
    } else {
        Vec::new()
    };
    let data_dir = state.instance.data_dir.display().to_string();
    let example = history.get(1).or(history.first());
    layout(
        &name,
        Some(&state.instance.ods),
        html! {
            h1 { "Table " code { (name) } }
            @if layer == Layer::Canonical {
                p { a href=(format!("/tables/{logical}/rows")) { "See its rows" } " as your declared purpose lets you." }
            }
            @if !parts.is_empty() {
                p { "Part of " code { (logical) } "; its other parts: "
                    @for p in &parts { a href=(format!("/tables/{p}")) { code { (p) } } " " } }
            }
            @if let Some(v) = example {
                p.muted { "Query it as it was at any version or instant (time travel): "
                    code { "fdp sql --data-dir " (data_dir) " --as-of " (v.version) " \"SELECT count(*) FROM " (if layer == Layer::Raw { name.clone() } else { logical.clone() }) "\"" }
                    " (or " code { "--as-of " (when(v.timestamp_ms).replace(' ', "T")) "Z" } ")." }
            }
            h2 { "Versions" }
            table {
                thead { tr { th.num { "Version" } th { "When (UTC)" } th { "Operation" } th.num { "Rows written" } th { "Transform" } th { "Source run" } } }
                tbody { @for v in &history {
                    @let l = v.lineage.clone().unwrap_or_default();
                    tr {
                        td.num { (v.version) }
                        td { (when(v.timestamp_ms)) }
                        td { (v.operation.clone().unwrap_or_default()) }
                        td.num { (v.rows_written.map(|n| n.to_string()).unwrap_or_default()) }
                        td { (l.get("transform").and_then(|t| t.as_str()).unwrap_or_default()) }
                        td { code { (l.get("run").and_then(|t| t.as_str()).unwrap_or_default()) } }
                    }
                } }
            }
        },
    )
    .into_response()
}

/// `GET /api/tables/{name}/history`.
pub async fn table_history(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match history_of(&state, &name).await {
        Ok(h) => Json(h).into_response(),
        Err((code, e)) => (code, Json(serde_json::json!({ "error": e }))).into_response(),
    }
}

/// `GET /api/runs`.
pub async fn runs(State(state): State<AppState>) -> Response {
    match fdp_ingest::runs::recent(&state.governance, &state.instance.data_dir, 500).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// `GET /api/lineage`.
pub async fn lineage_json(State(state): State<AppState>) -> Response {
    match fdp_ingest::runs::lineage(&state.governance, &state.instance.data_dir).await {
        Ok(l) => Json(l).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// `GET /lineage`: sources → raw → parts → canonical tables.
pub async fn lineage_page(State(state): State<AppState>) -> Html<String> {
    let lineage = fdp_ingest::runs::lineage(&state.governance, &state.instance.data_dir).await;
    let fresh: BTreeMap<String, i64> = table_rows(&state.instance.data_dir)
        .await
        .into_iter()
        .filter_map(|r| r.last_ms.map(|ms| (r.qualified, ms)))
        .collect();
    layout(
        "Lineage",
        Some(&state.instance.ods),
        html! {
            h1 { "Lineage" }
            p.muted { "Where every canonical table's rows come from: each source writes what it receives to a raw table, kept as received, and from there to its own part of each canonical table it fills." }
            @match lineage {
                Err(e) => p.error { "Could not read the tables: " (e) },
                Ok(l) if l.nodes.is_empty() => p { "Nothing received yet." },
                Ok(l) => {
                    (lineage_picture("Lineage from sources through raw tables to canonical tables", &l))
                    h2 { "As a table" }
                    table {
                        thead { tr { th { "From" } th { "To" } th { "To last written" } } }
                        tbody { @for (a, b) in &l.edges {
                            @let to = &l.nodes[*b].name;
                            tr { td { (l.nodes[*a].name) } td { (to) }
                                 td { (fresh.get(to.as_str()).map(|ms| age(*ms)).unwrap_or_default()) } }
                        } }
                    }
                }
            }
        },
    )
}
