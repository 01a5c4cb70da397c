//! The purpose checkpoint: after signing in, a person declares what they are
//! working for (and, for purposes the policy marks sensitive, why) before
//! the UI reads any table for them. The declaration is checked against the
//! policy and audited by governance; the browser holds only its id, in a
//! cookie, and it counts only for the principal who made it.

use axum::extract::{Query, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use fdp_govern::{GovernError, Principal, Purpose, SessionRequest};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{cookie, principal, PURPOSE_COOKIE};
use crate::ui::{layout, safe_next};
use crate::AppState;

/// The purpose the signed-in principal declared, as a request on `channel`.
pub(crate) fn declared(
    state: &AppState,
    headers: &HeaderMap,
    principal: &Principal,
    channel: &str,
) -> Option<SessionRequest> {
    let id = cookie(headers, PURPOSE_COOKIE)?;
    state.governance.declared(&id, principal, channel)
}

#[derive(Deserialize)]
pub struct CheckpointQuery {
    next: Option<String>,
}

/// `GET /purpose`: the checkpoint form.
pub async fn page(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Query(q): Query<CheckpointQuery>,
) -> Response {
    let p = principal(&ext);
    let current = declared(&state, &headers, &p, "ui");
    form(
        &state,
        &p,
        &safe_next(q.next.as_deref()),
        current.as_ref(),
        None,
    )
    .into_response()
}

fn form(
    state: &AppState,
    p: &Principal,
    next: &str,
    current: Option<&SessionRequest>,
    error: Option<&str>,
) -> axum::response::Html<String> {
    let policy = state.governance.policy();
    let purposes = policy.purposes_of(p);
    let sensitive: Vec<&str> = policy.sensitive.iter().map(|p| p.as_str()).collect();
    layout(
        "Declare your purpose",
        Some(&state.instance.ods),
        html! {
            h1 { "What are you working on?" }
            p { "Signed in as " strong { (p.name) } @if !p.roles.is_empty() { " (" (p.roles.join(", ")) ")" } ". "
                "What you see depends on the purpose you declare; your declaration and every page you open are recorded in the audit." }
            @if let Some(c) = current {
                p #current { "Current purpose: " strong { (c.purpose) } @if let Some(r) = &c.role { " as " (r) } @if let Some(pr) = &c.project { ", project " (pr) } "." }
            }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if purposes.is_empty() {
                p.error { "None of your roles is granted a purpose on this instance. Ask the information-governance lead." }
            } @else {
                form method="post" action="/purpose" {
                    input type="hidden" name="next" value=(next);
                    fieldset {
                        legend { "Purpose" }
                        @for pu in &purposes {
                            label {
                                input type="radio" name="purpose" value=(pu.as_str()) required
                                    checked[current.is_some_and(|c| c.purpose == *pu) || purposes.len() == 1];
                                " " (pu.as_str())
                                @if policy.sensitive.contains(pu) { span.muted { " (needs a justification)" } }
                            }
                        }
                    }
                    @if p.roles.len() > 1 {
                        label for="role" { "Acting as" }
                        select #role name="role" {
                            option value="" { "the role granted this purpose" }
                            @for r in &p.roles { option value=(r) { (r) } }
                        }
                    }
                    label for="project" { "Approved project (research)" }
                    input #project name="project" autocomplete="off";
                    label for="justification" { "Justification" @if !sensitive.is_empty() { span.muted { " (required for " (sensitive.join(", ")) ")" } } }
                    textarea #justification name="justification" rows="3" cols="60" {}
                    br;
                    button type="submit" { "Continue" }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct Declaration {
    purpose: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    justification: String,
    next: Option<String>,
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `POST /purpose`: declare a purpose (checked and audited), then go on to
/// where the person was heading.
pub async fn submit(
    State(state): State<AppState>,
    ext: Extensions,
    Form(f): Form<Declaration>,
) -> Response {
    let p = principal(&ext);
    let next = safe_next(f.next.as_deref());
    let purpose: Purpose = match f.purpose.parse() {
        Ok(pu) => pu,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                form(&state, &p, &next, None, Some(&e.to_string())),
            )
                .into_response()
        }
    };
    let mut req = SessionRequest::new(p.clone(), purpose, "ui");
    req.role = non_empty(f.role);
    req.project = non_empty(f.project);
    req.justification = non_empty(f.justification);
    match state.governance.declare(&req) {
        Ok(d) => (
            [(
                header::SET_COOKIE,
                crate::auth::set_cookie(&state, PURPOSE_COOKIE, &d.id, crate::auth::SHIFT),
            )],
            Redirect::to(&next),
        )
            .into_response(),
        Err(GovernError::Refused(r)) => (
            StatusCode::FORBIDDEN,
            form(&state, &p, &next, None, Some(&r.to_string())),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            form(&state, &p, &next, None, Some(&e.to_string())),
        )
            .into_response(),
    }
}

/// The request a read acts under: the purpose declared at the UI's
/// checkpoint when the browser holds one, else `X-Purpose` (default
/// `direct-care`), with `X-Role` and `X-Justification`, for API clients.
// The refusal is the error response itself, which a handler returns at once.
#[allow(clippy::result_large_err)]
pub(crate) fn purpose_of(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    channel: &str,
) -> Result<SessionRequest, Response> {
    let p = principal(ext);
    if let Some(req) = declared(state, headers, &p, channel) {
        return Ok(req);
    }
    declared_in_headers(p, headers, channel)
        .map_err(|e| (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response())
}

/// The request an API client declares in headers: `X-Purpose` (default
/// `direct-care`), `X-Role`, `X-Project`, `X-Justification`; or what is
/// wrong with them.
pub(crate) fn declared_in_headers(
    principal: fdp_govern::Principal,
    headers: &HeaderMap,
    channel: &str,
) -> Result<SessionRequest, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let purpose = match header("x-purpose") {
        None => Purpose::DirectCare,
        Some(v) => v
            .parse()
            .map_err(|e: fdp_govern::purpose::UnknownPurpose| format!("X-Purpose: {e}"))?,
    };
    let mut req = SessionRequest::new(principal, purpose, channel);
    req.role = header("x-role");
    req.project = header("x-project");
    req.justification = header("x-justification");
    Ok(req)
}
