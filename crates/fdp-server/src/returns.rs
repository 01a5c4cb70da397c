//! Returns over HTTP: a member's own daily operational return, computed in
//! the caller's governed session, and the returns a collecting instance
//! (national, or an ICB) has gathered from its members, with each member's
//! submission status and the figures summed over those that submitted.

#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use fdp_federation::returns::{CollectedReturn, ReturnDefinition, ReturnSchedule, ReturnStore};
use fdp_govern::{GovernError, Purpose};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::principal;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

#[derive(Deserialize)]
pub struct CensusQuery {
    /// RFC 3339; default the latest 08:00 census instant.
    census_at: Option<String>,
}

fn census_at(q: &CensusQuery) -> Result<DateTime<Utc>, String> {
    match q.census_at.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(ReturnSchedule::default().census_at_or_before(Utc::now())),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                format!("census_at = {s:?} is not an RFC 3339 instant, e.g. 2026-11-22T08:00:00Z")
            }),
    }
}

/// `GET /api/returns/daily`: this instance's own daily operational return
/// for a census instant, computed in the caller's governed session. The
/// return's purpose (planning) unless `X-Purpose` says otherwise.
pub async fn own_return(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Query(q): Query<CensusQuery>,
) -> Response {
    let at = match census_at(&q) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let mut req = match crate::checkpoint::declared_in_headers(principal(&ext), &headers, "http") {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    if !headers.contains_key("x-purpose") {
        req.purpose = Purpose::Planning;
    }
    req.as_of = fdp_govern::AsOf::Timestamp(at);
    let session = match state.governance.session(&state.tables, req).await {
        Ok(s) => s,
        Err(GovernError::Refused(r)) => return problem(StatusCode::FORBIDDEN, r.to_string()),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let definition = ReturnDefinition::daily_operational();
    match fdp_federation::returns::compute(&session, &definition, at).await {
        Ok(sections) => Json(json!({
            "return": definition.name,
            "organisation": state.instance.ods,
            "census_at": at,
            "purpose": session.purpose(),
            "role": session.role(),
            "sections": sections,
        }))
        .into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e),
    }
}

/// Collected returns are aggregates that passed each member's disclosure
/// control; reading them still needs a role granted planning here.
fn may_read_collected(state: &AppState, ext: &Extensions) -> Result<(), String> {
    state
        .governance
        .policy()
        .grant_for(&principal(ext), Purpose::Planning, None)
        .map(|_| ())
        .map_err(|r| r.to_string())
}

fn collected_json(r: &CollectedReturn) -> Value {
    json!({
        "return": r.name,
        "census_at": r.census_at,
        "first_asked_at": r.first_asked_at,
        "last_asked_at": r.last_asked_at,
        "submitted": r.submitted(),
        "members": r.members,
        "picture": r.picture(),
    })
}

/// `GET /api/returns/collected`: the returns this instance has gathered
/// from its members, the latest first; with `census_at`, that one.
pub async fn collected(
    State(state): State<AppState>,
    ext: Extensions,
    Query(q): Query<CensusQuery>,
) -> Response {
    if let Err(e) = may_read_collected(&state, &ext) {
        return problem(StatusCode::FORBIDDEN, e);
    }
    let store = ReturnStore::open(&state.instance.data_dir);
    let all = store.list();
    match q.census_at.as_deref().filter(|s| !s.is_empty()) {
        None => Json(json!({
            "returns": all.iter().map(collected_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Some(_) => {
            let at = match census_at(&q) {
                Ok(t) => t,
                Err(e) => return problem(StatusCode::BAD_REQUEST, e),
            };
            match all.iter().find(|r| r.census_at == at) {
                Some(r) => Json(collected_json(r)).into_response(),
                None => problem(
                    StatusCode::NOT_FOUND,
                    format!("no return collected for {}", at.to_rfc3339()),
                ),
            }
        }
    }
}

/// `GET /returns`: on a collecting instance, the picture across members and
/// each member's submission; on a member, its own return for the census
/// instant, under the purpose declared at the checkpoint.
pub async fn page(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<CensusQuery>,
) -> Response {
    let at = match census_at(&q) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let store = ReturnStore::open(&state.instance.data_dir);
    let all = store.list();
    let body = if !all.is_empty() {
        if let Err(e) = may_read_collected(&state, &ext) {
            return crate::governed::refused(&state, StatusCode::FORBIDDEN, &e);
        }
        let chosen = match q.census_at.as_deref().filter(|s| !s.is_empty()) {
            None => all.first(),
            Some(_) => all.iter().find(|r| r.census_at == at),
        };
        collected_page(chosen, &all)
    } else {
        let session = match crate::governed::session_as_of(
            &state,
            &ext,
            &headers,
            &uri,
            "ui",
            fdp_govern::AsOf::Timestamp(at),
        )
        .await
        {
            Ok(s) => s,
            Err(r) => return r,
        };
        let definition = ReturnDefinition::daily_operational();
        match fdp_federation::returns::compute(&session, &definition, at).await {
            Ok(sections) => html! {
                h1 { "Daily operational return" }
                p { "What this instance reports for the census instant " strong #census-at { (at.to_rfc3339()) }
                    ", from the tables as they stood then, for " (session.purpose()) " as " (session.role())
                    ", with this instance's opt-out and disclosure control. It is what a collecting instance receives when it asks." }
                form method="get" {
                    label for="census_at" { "Census instant (UTC)" }
                    input #census_at name="census_at" value=(at.to_rfc3339());
                    button type="submit" { "Show" }
                }
                (sections_markup(&sections))
            },
            Err(e) => return crate::governed::refused(&state, StatusCode::BAD_REQUEST, &e),
        }
    };
    crate::ui::layout("Returns", Some(&state.instance.ods), body).into_response()
}

fn collected_page(chosen: Option<&CollectedReturn>, all: &[CollectedReturn]) -> Markup {
    html! {
        h1 { "Daily operational return" }
        @match chosen {
            None => p.error { "No return was collected for that census instant." },
            Some(r) => {
                p { "Census instant " strong #census-at { (r.census_at.to_rfc3339()) } ": "
                    strong data-count="submitted" { (r.submitted()) } " of " (r.members.len()) " members submitted. "
                    "First asked " (r.first_asked_at.format("%Y-%m-%d %H:%M:%S")) ", last " (r.last_asked_at.format("%Y-%m-%d %H:%M:%S")) "." }
                h2 { "Submissions" }
                table #submissions {
                    thead { tr { th { "Member" } th { "Status" } th { "Submitted (UTC)" } th.num { "Attempts" } th { "Reason" } } }
                    tbody { @for m in &r.members {
                        tr data-member=(m.member) data-status=(m.status) {
                            td { (m.member) } td { (m.status) }
                            td { (m.submitted_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                            td.num { (m.attempts) }
                            td { (m.reason.clone().unwrap_or_default()) }
                        }
                    } }
                }
                h2 { "Across the members that submitted" }
                (sections_markup(&r.picture()))
                @for m in r.members.iter().filter(|m| m.status == "submitted") {
                    details {
                        summary { (m.member) " as submitted" }
                        (sections_markup(&m.sections))
                    }
                }
            }
        }
        h2 { "Collected" }
        ul #collected { @for r in all.iter().take(60) {
            li { a href={"/returns?census_at=" (r.census_at.format("%Y-%m-%dT%H:%M:%SZ"))} { (r.census_at.to_rfc3339()) }
                " · " (r.submitted()) " of " (r.members.len()) " submitted" }
        } }
    }
}

fn sections_markup(sections: &BTreeMap<String, Value>) -> Markup {
    html! {
        @for (name, s) in sections {
            @let columns: Vec<&str> = s["columns"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
            section data-section=(name) {
                h3 { (name.trim_start_matches("daily-return/").replace('-', " ")) }
                table {
                    thead { tr { @for c in &columns { th { (c.replace('_', " ")) } } } }
                    tbody { @for row in s["rows"].as_array().into_iter().flatten() {
                        tr { @for c in &columns {
                            @match &row[*c] {
                                Value::Null => td.num title="suppressed by disclosure control" { "*" },
                                Value::String(v) => td { (v) },
                                v => td.num { (v) },
                            }
                        } }
                    } }
                }
                @if let Some(d) = s["disclosure_control"].as_str() { p.muted { (d) } }
                @if let Some(n) = s["suppressed_cells"].as_u64().filter(|n| *n > 0) {
                    p.muted { (n) " cells were suppressed by members' disclosure control and are not in the totals." }
                }
            }
        }
    }
}
