//! This instance in the federation over HTTP: its peers and messages (the
//! `/federation` page), and federated questions asked of every peer from
//! here (`POST /api/federation/questions`).

// The checks return the error response itself, which a handler returns at
// once; boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_federation::Federation;
use serde_json::json;

use crate::auth::principal;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The federation this instance is in, or the answer that it is in none.
pub(crate) fn federation(state: &AppState) -> Result<&Arc<Federation>, Response> {
    state.federation.as_ref().ok_or_else(|| {
        problem(
            StatusCode::CONFLICT,
            "this instance is not in a federation: configure [federation] and its peers",
        )
    })
}

/// `GET /federation`: this instance in the federation: its identity, its
/// peers, and every message to a peer with where it has got to (queued,
/// delivered, or failed and why). Message metadata only; no patient data.
pub async fn federation_page(State(state): State<AppState>) -> Response {
    use maud::html;
    let Some(fed) = state.federation.as_ref() else {
        return crate::ui::layout(
            "Federation",
            Some(&state.instance.ods),
            html! {
                h1 { "Federation" }
                p { "This instance is not in a federation. Make its identity with " code { "fdp peer init" } " and configure " code { "[federation]" } " with its peers." }
            },
        )
        .into_response();
    };
    let outbox = fed.outbox.list().unwrap_or_default();
    let all_received = fed.inbox.all().unwrap_or_default();
    // What peers sent that people act on: questions, and the kinds
    // products declare; not the marketplace's or polling's own traffic.
    let declared = state.products.registry().message_kinds();
    let received: Vec<&fdp_federation::Envelope> = all_received
        .iter()
        .filter(|e| e.kind == "question" || declared.iter().any(|(k, _)| k == &e.kind))
        .collect();
    // Who is connected: when each peer last took a message from this
    // instance, last sent one here, and what still waits for it.
    let link = |ods: &str| {
        let delivered = outbox
            .iter()
            .filter(|m| m.envelope.to == ods)
            .filter_map(|m| m.delivered_at)
            .max();
        let heard = all_received
            .iter()
            .filter(|e| e.from == ods)
            .map(|e| e.sent_at)
            .max();
        let waiting = outbox
            .iter()
            .filter(|m| m.envelope.to == ods && m.state == fdp_federation::Delivery::Queued)
            .count();
        let problem = outbox
            .iter()
            .filter(|m| m.envelope.to == ods && m.state == fdp_federation::Delivery::Queued)
            .filter_map(|m| m.last_error.clone())
            .next_back();
        (delivered, heard, waiting, problem)
    };
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(crate::capacity::age)
            .unwrap_or_else(|| "never".into())
    };
    crate::ui::layout(
        "Federation",
        Some(&state.instance.ods),
        html! {
            h1 { "Federation" }
            p { "This instance is " strong { (fed.identity.ods) } " (" (fed.identity.role) ")." }
            p { a href="/federation/approvals" { "Federated questions asked of this instance, and the IG lead's approvals" } " · "
                a href="/referrals" { "Discharge referrals" } " · " a href="/returns" { "Returns" } " · " a href="/capacity" { "Capacity" } }
            h2 { "Peers" }
            table #peers {
                thead { tr { th { "ODS code" } th { "Role" } th { "Address" } th { "Last took a message" } th { "Last sent one here" } th.num { "Waiting for it" } th { "Last problem" } } }
                tbody { @for p in fed.peers() {
                    @let (delivered, heard, waiting, problem) = link(&p.ods);
                    tr data-peer=(p.ods) data-waiting=(waiting) {
                        td { (p.ods) } td { (p.role) } td { (p.address.clone().unwrap_or_else(|| "connects out".into())) }
                        td { (when(delivered)) } td { (when(heard)) } td.num { (waiting) }
                        td { (problem.unwrap_or_default()) }
                    }
                } }
            }
            h2 { "Sent" }
            table #outbox {
                thead { tr { th { "Queued (UTC)" } th { "To" } th { "Kind" } th { "State" } th.num { "Attempts" } th { "Last problem" } } }
                tbody { @for m in outbox.iter().rev().take(500) {
                    tr data-state=(m.state.as_str()) {
                        td { (m.queued_at.format("%Y-%m-%d %H:%M:%S")) }
                        td { (m.envelope.to) }
                        td { (m.envelope.kind) }
                        td { (m.state.as_str()) }
                        td.num { (m.attempts) }
                        td { (m.last_error.clone().unwrap_or_default()) }
                    }
                } }
            }
            h2 { "Received" }
            table #inbox {
                thead { tr { th { "Sent (UTC)" } th { "From" } th { "Kind" } th { "Message" } } }
                tbody { @for e in received.iter().rev().take(500) {
                    tr { td { (e.sent_at.format("%Y-%m-%d %H:%M:%S")) } td { (e.from) } td { (e.kind) } td { code { (e.id) } } }
                } }
            }
        },
    )
    .into_response()
}

/// `POST /api/federation/questions`: ask every peer a federated question
/// from this (ICB or national) instance and combine the answers, including
/// from sites that only connect out and collect it when they poll. The
/// principal must hold a role granted the question's purpose here.
pub async fn ask_question(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<
        Json<fdp_federation::questions::Question>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Response {
    let Json(q) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let fed = match federation(&state) {
        Ok(f) => f.clone(),
        Err(r) => return r,
    };
    let mut req =
        match crate::checkpoint::declared_in_headers(principal(&ext), &headers, "federation") {
            Ok(r) => r,
            Err(e) => return problem(StatusCode::BAD_REQUEST, e),
        };
    req.purpose = q.purpose;
    if let Err(r) =
        state
            .governance
            .policy()
            .grant_for(&req.principal, q.purpose, req.role.as_deref())
    {
        return problem(StatusCode::FORBIDDEN, r.to_string());
    }
    let members: Vec<String> = fed.peers().iter().map(|p| p.ods.clone()).collect();
    let answers =
        match fdp_federation::questions::ask(&fed, &q, &members, &req.principal.name).await {
            Ok(a) => a,
            Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    let rows = fdp_federation::questions::combine(&answers);
    let combined = match fdp_federation::questions::combined_by_product(
        &state.products.registry(),
        &q.name,
        &answers,
    ) {
        Ok(c) => c,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    Json(json!({
        "question": q.name,
        "version": q.version,
        "members": answers,
        "rows": rows,
        "combined": combined,
    }))
    .into_response()
}
