//! Pages that read governed data: a table's rows under the declared
//! purpose (and their download, disclosure-controlled like any export), and
//! the information-governance lead's audit page with the national data
//! opt-out's effect. Each goes through a governed session or a governance
//! review, so the same policy and the same audit apply as to SQL and the API.

use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fdp_govern::{AuditFilter, GovernError, GovernedSession, Principal};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::principal;
use crate::checkpoint::declared;
use crate::ui::layout;
use crate::ui::to_checkpoint;
use crate::AppState;

/// Rows per page unless asked otherwise, and the most a page shows.
const PAGE_ROWS: usize = 100;
const MAX_PAGE_ROWS: usize = 1000;

fn page(state: &AppState, status: StatusCode, title: &str, body: Markup) -> Response {
    (status, layout(title, Some(&state.instance.ods), body)).into_response()
}

pub(crate) fn refused(state: &AppState, status: StatusCode, message: &str) -> Response {
    page(
        state,
        status,
        "Not available",
        html! {
            h1 { "Not available" }
            p.error role="alert" { (message) }
            p { a href="/purpose" { "Declare a different purpose" } " or go back to " a href="/tables" { "the tables" } "." }
        },
    )
}

/// A governed session for the purpose the person declared, or the response
/// that sends them to declare one or says why not.
async fn session_for(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    uri: &Uri,
    channel: &str,
) -> Result<GovernedSession, Response> {
    session_as_of(state, ext, headers, uri, channel, fdp_govern::AsOf::Latest).await
}

/// [`session_for`], reading the tables as they stood at `as_of`.
pub(crate) async fn session_as_of(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    uri: &Uri,
    channel: &str,
    as_of: fdp_govern::AsOf,
) -> Result<GovernedSession, Response> {
    let p = principal(ext);
    let Some(mut req) = declared(state, headers, &p, channel) else {
        let here = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        return Err(to_checkpoint(here));
    };
    req.as_of = as_of;
    let tables = state.tables.clone();
    match state.governance.session(&tables, req).await {
        Ok(s) => Ok(s),
        Err(GovernError::Refused(r)) => Err(refused(state, StatusCode::FORBIDDEN, &r.to_string())),
        Err(e) => Err(refused(
            state,
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        )),
    }
}

/// Why not, unless `name` can only be a table name and the session may read it.
fn not_granted(state: &AppState, session: &GovernedSession, name: &str) -> Option<Response> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && session.has_table(name) {
        None
    } else {
        Some(refused(
            state,
            StatusCode::NOT_FOUND,
            &format!(
                "table `{name}` not found: it does not exist, or the policy does not grant it for {} as {}",
                session.purpose(),
                session.role()
            ),
        ))
    }
}

fn purpose_line(session: &GovernedSession) -> Markup {
    let req_project = session.project();
    html! {
        p.muted #purpose {
            "Purpose " strong data-purpose=(session.purpose().as_str()) { (session.purpose()) }
            " as " strong { (session.role()) }
            @if let Some(p) = req_project { ", project " strong { (p) } }
            ". " a href="/purpose" { "Change" }
        }
    }
}

#[derive(Deserialize)]
pub struct RowsQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /tables/{name}/rows`: a page of the table as the declared purpose
/// lets this person see it.
pub async fn table_rows(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Query(q): Query<RowsQuery>,
) -> Response {
    let session = match session_for(&state, &ext, &headers, &uri, "ui").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = not_granted(&state, &session, &name) {
        return r;
    }
    let limit = q.limit.unwrap_or(PAGE_ROWS).clamp(1, MAX_PAGE_ROWS);
    let offset = q.offset.unwrap_or(0);
    // One row more than the page shows says whether there is a next page;
    // ordering by the first column keeps pages stable between requests.
    let sql = format!(
        "SELECT * FROM {name} ORDER BY 1 LIMIT {} OFFSET {offset}",
        limit + 1
    );
    let (columns, mut rows) = match session.text_table(&sql).await {
        Ok(t) => t,
        Err(e) => return refused(&state, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let more = rows.len() > limit;
    rows.truncate(limit);
    let link = |offset: usize| format!("/tables/{name}/rows?offset={offset}&limit={limit}");
    page(
        &state,
        StatusCode::OK,
        &name,
        html! {
            h1 { "Rows of " code { (name) } }
            (purpose_line(&session))
            p {
                @if rows.is_empty() { "No rows." } @else { "Rows " (offset + 1) "–" (offset + rows.len()) "." }
                " " a href=(format!("/tables/{name}/download")) download { "Download as CSV" }
                " · " a href=(format!("/tables/{name}")) { "Versions and lineage" }
            }
            div style="overflow-x:auto" {
                table #rows {
                    thead { tr { @for c in &columns { th scope="col" { (c) } } } }
                    tbody {
                        @for r in &rows {
                            tr { @for v in r {
                                @match v {
                                    Some(v) => td { (v) },
                                    None => td.muted data-null { },
                                }
                            } }
                        }
                    }
                }
            }
            nav aria-label="Pages" {
                @if offset > 0 { a rel="prev" href=(link(offset.saturating_sub(limit))) { "Previous" } " " }
                @if more { a rel="next" href=(link(offset + limit)) { "Next" } }
            }
        },
    )
}

/// `GET /tables/{name}/download`: the whole table as the declared purpose
/// lets this person see it, as a CSV file: audited as an export, and for
/// planning and research disclosure-controlled like every export.
pub async fn table_download(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Response {
    let session = match session_for(&state, &ext, &headers, &uri, "export").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = not_granted(&state, &session, &name) {
        return r;
    }
    match session.query(&format!("SELECT * FROM {name}")).await {
        Ok(result) => crate::sql::csv_file(
            &result,
            &format!("{name}-{}.csv", session.purpose().as_str()),
        ),
        Err(e) => refused(&state, StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    principal: Option<String>,
    patient: Option<String>,
    purpose: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// The most entries the page lists, newest first.
const AUDIT_PAGE_ENTRIES: usize = 500;

fn filled(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `GET /audit`: the information-governance lead's view of the audit: a
/// query form (who looked at this patient, what did this user see last
/// week), whether the chain is intact, and what the national data opt-out
/// kept out of each table. Only for roles that review the audit.
pub async fn audit_page(
    State(state): State<AppState>,
    ext: Extensions,
    Query(q): Query<AuditQuery>,
) -> Response {
    let p = principal(&ext);
    let mut problems = Vec::new();
    let mut instant = |name: &str, v: &Option<String>| {
        let v = filled(v)?;
        let t = AuditFilter::parse_instant(&v);
        if t.is_none() {
            problems.push(format!(
                "{name} {v:?}: give a date (2026-11-14) or an instant (2026-11-14T09:00:00Z)"
            ));
        }
        t
    };
    let filter = AuditFilter {
        principal: filled(&q.principal),
        patient: filled(&q.patient),
        purpose: filled(&q.purpose),
        kind: filled(&q.kind),
        since: instant("since", &q.since),
        until: instant("until", &q.until),
    };
    let entries = match state.governance.review_audit(&p, &filter, "ui") {
        Ok(e) => e,
        Err(GovernError::Refused(r)) => {
            return refused(&state, StatusCode::FORBIDDEN, &r.to_string())
        }
        Err(e) => return refused(&state, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let tables = state.tables.clone();
    let exclusions = state.governance.opt_out_exclusions(&tables, &p, "ui").await;
    let verified = state.governance.audit().verify();
    let field = |name: &str, label: &str, value: &Option<String>, hint: &str| {
        html! {
            label for=(name) { (label) }
            input id=(name) name=(name) value=(value.clone().unwrap_or_default()) placeholder=(hint);
        }
    };
    page(
        &state,
        StatusCode::OK,
        "Audit",
        html! {
            h1 { "Audit" }
            @match &verified {
                Ok(v) if v.problems.is_empty() => p #chain data-intact="true" {
                    "The audit log is intact: " (v.entries) " entries, " (v.checkpoints) " signed checkpoints." }
                Ok(v) => div #chain data-intact="false" role="alert" {
                    p.error { "The audit log has been tampered with:" }
                    ul { @for pr in &v.problems { li { (pr) } } } }
                Err(e) => p.error #chain role="alert" { "The audit log cannot be read: " (e) }
            }
            @for pr in &problems { p.error role="alert" { (pr) } }
            form method="get" action="/audit" {
                fieldset {
                    legend { "Find entries" }
                    (field("principal", "Principal", &q.principal, "amelia.khan"))
                    (field("patient", "Patient (person id, NHS number or pseudonym)", &q.patient, ""))
                    (field("purpose", "Purpose", &q.purpose, "planning"))
                    (field("kind", "Kind", &q.kind, "query, export, purpose, key-rotation"))
                    (field("since", "Since", &q.since, "2026-11-14"))
                    (field("until", "Until", &q.until, "2026-11-21"))
                    br;
                    button type="submit" { "Search" }
                }
            }
            h2 { (entries.len()) " entries" @if entries.len() > AUDIT_PAGE_ENTRIES { ", the latest " (AUDIT_PAGE_ENTRIES) " shown" } }
            div style="overflow-x:auto" {
                table #entries {
                    thead { tr {
                        th.num { "#" } th { "When (UTC)" } th { "Kind" } th { "Principal" } th { "Purpose" }
                        th { "Role" } th { "Justification" } th { "Channel" } th { "What" } th.num { "Rows" } th { "Outcome" }
                    } }
                    tbody { @for e in entries.iter().rev().take(AUDIT_PAGE_ENTRIES) {
                        tr data-seq=(e.seq) {
                            td.num { (e.seq) }
                            td { (e.at.get(..19).unwrap_or(&e.at).replace('T', " ")) }
                            td { (e.kind) }
                            td { (e.principal) }
                            td { (e.purpose.clone().unwrap_or_default()) @if let Some(p) = &e.project { " (" (p) ")" } }
                            td { (e.role.clone().unwrap_or_default()) }
                            td { (e.justification.clone().unwrap_or_default()) }
                            td { (e.channel) }
                            td { code { (e.what) } }
                            td.num { (e.rows.map(|r| r.to_string()).unwrap_or_default()) }
                            td { (e.outcome) }
                        }
                    } }
                }
            }
            h2 { "National data opt-out" }
            (opt_out_section(&state, &p, exclusions))
        },
    )
}

fn opt_out_section(
    state: &AppState,
    p: &Principal,
    exclusions: Result<Vec<fdp_govern::OptOutExclusion>, GovernError>,
) -> Markup {
    let listed = state
        .governance
        .opt_out()
        .nhs_numbers()
        .map(|n| n.len())
        .unwrap_or(0);
    html! {
        p { (listed) " NHS numbers on the opt-out list (" code { (state.governance.opt_out().path().display()) } "). "
            "Their records are left out of planning and research, not out of direct care. "
            "These counts are for " (p.name) " as a reviewer; analysts never see them." }
        @match exclusions {
            Ok(rows) => table #opt-out {
                thead { tr { th { "Table" } th.num { "Records" } th.num { "Excluded from planning and research" } } }
                tbody { @for r in &rows {
                    tr data-table=(r.table) { td { code { (r.table) } } td.num { (r.rows) } td.num data-excluded=(r.excluded) { (r.excluded) } }
                } }
            },
            Err(e) => p.error role="alert" { (e) },
        }
    }
}

/// `POST /reidentify`: which patient a pseudonym stands for, for direct care.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReidentifyRequest {
    /// The pseudonym, as a planning or research answer gave it (`p1-…`).
    pub pseudonym: String,
    /// The purpose whose key made it.
    pub made_for: fdp_govern::Purpose,
    /// The project whose key made it (for planning, `planning`).
    pub project: Option<String>,
    /// Why the patient's care needs them identified.
    pub justification: String,
    pub role: Option<String>,
}

pub async fn reidentify(
    State(state): State<AppState>,
    ext: Extensions,
    body: Result<axum::Json<ReidentifyRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let problem = |status: StatusCode, message: String| {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    };
    let axum::Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut req =
        fdp_govern::SessionRequest::new(principal(&ext), fdp_govern::Purpose::DirectCare, "http");
    req.justification = Some(body.justification);
    req.role = body.role;
    let project = body
        .project
        .unwrap_or_else(|| body.made_for.as_str().to_string());
    let tables = state.tables.clone();
    match state
        .governance
        .reidentify(&tables, &req, &body.pseudonym, (body.made_for, &project))
        .await
    {
        Ok(found) => axum::Json(serde_json::json!({ "patients": found })).into_response(),
        Err(GovernError::Refused(r)) => problem(StatusCode::FORBIDDEN, r.to_string()),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
