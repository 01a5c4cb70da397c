//! The IG lead's page for federated questions: every question peers have
//! asked of this instance, word for word, whether it is approved, and the
//! forms to approve it or withdraw an approval. Each decision is recorded
//! and audited by [`fdp_federation::questions::Approvals`].

// The check returns the refusal page itself, which the handler returns at once.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fdp_federation::questions::{Approvals, Question, Reach, ValueRange};
use maud::html;

use crate::auth::principal;
use crate::AppState;

/// Only a role that reviews the audit decides what peers may ask.
fn may_decide(state: &AppState, ext: &Extensions) -> Result<String, Response> {
    let p = principal(ext);
    if state.governance.policy().reviews_audit(&p) {
        Ok(p.name)
    } else {
        Err(crate::governed::refused(
            state,
            StatusCode::FORBIDDEN,
            &format!(
                "{} holds no role that reviews the audit: approving federated questions is the information-governance lead's",
                p.name
            ),
        ))
    }
}

/// Each distinct question asked (by asker and digest), the latest asking.
fn asked(state: &AppState) -> Vec<(String, Question, chrono::DateTime<chrono::Utc>)> {
    let Some(fed) = state.federation.as_ref() else {
        return Vec::new();
    };
    let mut by_digest: BTreeMap<
        (String, String),
        (String, Question, chrono::DateTime<chrono::Utc>),
    > = BTreeMap::new();
    for e in fed.inbox.of_kind("question").unwrap_or_default() {
        let Ok(q) = serde_json::from_value::<Question>(e.body.clone()) else {
            continue;
        };
        let key = (e.from.clone(), q.digest());
        match by_digest.get(&key) {
            Some((_, _, at)) if *at >= e.sent_at => {}
            _ => {
                by_digest.insert(key, (e.from.clone(), q, e.sent_at));
            }
        }
    }
    let mut all: Vec<_> = by_digest.into_values().collect();
    all.sort_by_key(|(_, _, at)| std::cmp::Reverse(*at));
    all
}

/// `GET /federation/approvals`.
pub async fn page(State(state): State<AppState>, ext: Extensions) -> Response {
    if let Err(r) = may_decide(&state, &ext) {
        return r;
    }
    let approvals = Approvals::open(&state.instance.data_dir)
        .list()
        .unwrap_or_default();
    let asked = asked(&state);
    crate::ui::layout(
        "Federated questions",
        Some(&state.instance.ods),
        html! {
            h1 { "Federated questions" }
            p { "What peers have asked this instance, word for word. An approved question runs as the asker in the policy's "
                code { "federation" } " role, with this instance's opt-out and disclosure control; a question changed in any way needs approving again." }
            h2 { "Asked" }
            @if asked.is_empty() { p.muted { "No peer has asked anything yet." } }
            @for (from, q, at) in &asked {
                @let approved = approvals.iter().any(|a| a.covers(from, q));
                section.question data-from=(from) data-name=(q.name) data-approved=(approved) {
                    h3 { (q.name) " v" (q.version) " from " (from) }
                    p.muted { "Last asked " (at.format("%Y-%m-%d %H:%M:%S")) " UTC for " (q.purpose) ". sha256 " code { (q.digest()) } }
                    @if !q.description.is_empty() { p { (q.description) } }
                    pre { (q.sql.trim()) }
                    @if approved {
                        p { strong { "Approved." } }
                    } @else {
                        form method="post" action="/federation/approvals" {
                            input type="hidden" name="from" value=(from);
                            input type="hidden" name="digest" value=(q.digest());
                            @for (name, ty) in &q.parameters {
                                label for=(format!("range-{name}-{}", q.digest())) { "Range of " code { (name) } " (" (format!("{ty:?}").to_lowercase()) "), MIN..MAX" }
                                input id=(format!("range-{name}-{}", q.digest())) name=(format!("range-{name}")) placeholder="now-7d..now" required;
                            }
                            label for=(format!("days-{}", q.digest())) { "Days back the tables may be read (empty: as they are now only)" }
                            input id=(format!("days-{}", q.digest())) name="as_of_days" size="4";
                            label for=(format!("why-{}", q.digest())) { "Why (for the audit)" }
                            input id=(format!("why-{}", q.digest())) name="reason" size="60" required;
                            button type="submit" { "Approve" }
                        }
                    }
                }
            }
            h2 { "Decisions" }
            table #approvals {
                thead { tr { th { "From" } th { "Question" } th { "Approved by" } th { "Why" } th { "When (UTC)" } th { "Withdrawn" } th {} } }
                tbody { @for a in approvals.iter().rev() {
                    tr data-from=(a.from) data-name=(a.name) {
                        td { (a.from) } td { (a.name) " v" (a.version) } td { (a.by) } td { (a.reason) }
                        td { (a.at.format("%Y-%m-%d %H:%M")) }
                        td { (a.withdrawn_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()) }
                        td { @if a.withdrawn_at.is_none() {
                            form method="post" action="/federation/approvals/withdraw" {
                                input type="hidden" name="from" value=(a.from);
                                input type="hidden" name="name" value=(a.name);
                                input type="hidden" name="version" value=(a.version);
                                input name="reason" placeholder="why" aria-label="why it is withdrawn" required;
                                button type="submit" { "Withdraw" }
                            }
                        } }
                    }
                } }
            }
        },
    )
    .into_response()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// `POST /federation/approvals`: approve a question as it was asked.
pub async fn approve(State(state): State<AppState>, ext: Extensions, body: String) -> Response {
    let by = match may_decide(&state, &ext) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let form = crate::ui::form_pairs(&body);
    let (from, digest, reason) = (
        field(&form, "from"),
        field(&form, "digest"),
        field(&form, "reason"),
    );
    if reason.trim().is_empty() {
        return crate::governed::refused(&state, StatusCode::BAD_REQUEST, "say why it is approved");
    }
    let Some((_, q, _)) = asked(&state)
        .into_iter()
        .find(|(f, q, _)| f == from && q.digest() == digest)
    else {
        return crate::governed::refused(
            &state,
            StatusCode::NOT_FOUND,
            &format!("{from} has asked no question with digest {digest}"),
        );
    };
    // How far the approval reaches: a range per parameter, and how many
    // days back the tables may be read (none if left empty).
    let mut reach = Reach::default();
    for name in q.parameters.keys() {
        let given = field(&form, &format!("range-{name}"));
        match given.parse::<ValueRange>() {
            Ok(r) => {
                reach.ranges.insert(name.clone(), r);
            }
            Err(e) => {
                return crate::governed::refused(
                    &state,
                    StatusCode::BAD_REQUEST,
                    &format!("{name}: {e}"),
                )
            }
        }
    }
    let days = field(&form, "as_of_days").trim();
    if !days.is_empty() {
        match days.parse::<u32>() {
            Ok(d) => reach.as_of_days = Some(d),
            Err(_) => {
                return crate::governed::refused(
                    &state,
                    StatusCode::BAD_REQUEST,
                    "days back: give a whole number, or leave it empty",
                )
            }
        }
    }
    match Approvals::open(&state.instance.data_dir).approve(
        &state.governance,
        from,
        &q,
        &by,
        reason.trim(),
        reach,
    ) {
        Ok(()) => Redirect::to("/federation/approvals").into_response(),
        Err(e) => crate::governed::refused(&state, StatusCode::BAD_REQUEST, &e),
    }
}

/// `POST /federation/approvals/withdraw`.
pub async fn withdraw(State(state): State<AppState>, ext: Extensions, body: String) -> Response {
    let by = match may_decide(&state, &ext) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let form = crate::ui::form_pairs(&body);
    let Ok(version) = field(&form, "version").parse::<u32>() else {
        return crate::governed::refused(&state, StatusCode::BAD_REQUEST, "no question version");
    };
    let reason = field(&form, "reason").trim();
    if reason.is_empty() {
        return crate::governed::refused(
            &state,
            StatusCode::BAD_REQUEST,
            "say why it is withdrawn",
        );
    }
    match Approvals::open(&state.instance.data_dir).withdraw(
        &state.governance,
        field(&form, "from"),
        field(&form, "name"),
        version,
        &by,
        reason,
    ) {
        Ok(()) => Redirect::to("/federation/approvals").into_response(),
        Err(e) => crate::governed::refused(&state, StatusCode::BAD_REQUEST, &e),
    }
}
