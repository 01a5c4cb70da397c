//! Discharge referrals over HTTP: a trust refers an admitted patient to a
//! care provider's instance; the provider lists what it received and
//! accepts or declines. What a referral is, and what a policy lets be seen
//! of one, is the product's (`fdp_products::referrals`); carrying it is the
//! federation's. These handlers adapt them to HTTP and the page.

// The checks return the error response itself, which a handler returns at
// once; boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_federation::referrals::{Referral, ReferralError, Status};
use fdp_federation::Federation;
use fdp_fhir::referral::ReferralRecord;
use fdp_products::referrals;
use serde::Deserialize;
use serde_json::json;

use crate::api::{change_view, product_view};
use crate::auth::principal;
use crate::checkpoint::purpose_of;
use crate::federation::federation;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn referral_error(e: ReferralError) -> Response {
    match e {
        ReferralError::NotFound(_) => problem(StatusCode::NOT_FOUND, e.to_string()),
        ReferralError::AlreadyDecided(_) => problem(StatusCode::CONFLICT, e.to_string()),
        ReferralError::Send(fdp_federation::SendError::UnknownPeer(_)) => {
            problem(StatusCode::BAD_REQUEST, e.to_string())
        }
        e => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/referrals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralRequest {
    /// The admission (spell) the patient is being discharged from.
    pub admission_id: String,
    /// The care provider's ODS code.
    pub to: String,
    /// Why the record may be shared, e.g. "UK GDPR 6(1)(e) and 9(2)(h): direct care".
    pub lawful_basis: String,
    #[serde(default)]
    pub care_needs: Vec<String>,
    /// The discharge summary.
    pub summary: String,
}

/// Refer an admitted patient to a care provider: the record goes through
/// the outbox; the answer says it is queued.
pub async fn refer(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Json<ReferralRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    match make_referral(&state, req, &principal(&ext).name, body).await {
        Ok(r) => (StatusCode::ACCEPTED, Json(r)).into_response(),
        Err(e) => e,
    }
}

/// Send a referral for `req` (a direct-care request) made by `by`: the
/// product makes it from the live census, under governance; the federation
/// carries it.
pub(crate) async fn make_referral(
    state: &AppState,
    req: fdp_govern::SessionRequest,
    by: &str,
    body: ReferralRequest,
) -> Result<Referral, Response> {
    let fed = federation(state)?.clone();
    let asked = referrals::Asked {
        admission_id: body.admission_id,
        to: body.to,
        lawful_basis: body.lawful_basis,
        care_needs: body.care_needs,
        summary: body.summary,
    };
    let referral = referrals::discharge_referral(
        &state.live,
        &state.governance,
        req,
        &fed.identity.ods,
        asked,
    )
    .await
    .map_err(|e| crate::products::failed(state, &e, false))?;
    state
        .referrals
        .refer(&fed, state.governance.audit(), by, referral)
        .map_err(referral_error)
}

/// Every referral as it stands, each received with its record, as `view`
/// lets it be seen.
async fn governed_referrals(
    state: &AppState,
    fed: &Federation,
    view: &fdp_govern::ProductView,
) -> Result<Vec<Referral>, Response> {
    let all = state
        .referrals
        .current_with_records(fed, state.fhir.as_ref())
        .map_err(referral_error)?;
    let numbers = referrals::nhs_numbers(&state.live, &all).await;
    Ok(referrals::governed(all, view, &numbers))
}

/// `GET /api/referrals`: referrals sent and received, with where each has
/// got to.
pub async fn list(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    let fed = match federation(&state) {
        Ok(f) => f.clone(),
        Err(r) => return r,
    };
    let view = match purpose_of(&state, &ext, &headers, "http").and_then(|req| {
        product_view(
            &state,
            &req,
            &["patient", "admission"],
            "GET /api/referrals",
            false,
        )
    }) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let view = match view.one_by_one("the referrals list") {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::FORBIDDEN, e.to_string()),
    };
    let all = match governed_referrals(&state, &fed, &view).await {
        Ok(all) => all,
        Err(r) => return r,
    };
    let patients = all.iter().map(|r| r.patient.clone()).collect();
    if let Err(e) = view.served(all.len() as u64, patients) {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    Json(all).into_response()
}

/// A provider's answer, with its reason: to a referral, or to a
/// mutual-aid booking request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub accept: bool,
    pub reason: Option<String>,
}

/// `POST /api/referrals/{id}/decision`: the care provider accepts or
/// declines; the trust is told through the outbox.
pub async fn decide(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Decision>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let fed = match federation(&state) {
        Ok(f) => f.clone(),
        Err(r) => return r,
    };
    if let Err(r) = purpose_of(&state, &ext, &headers, "http").and_then(|req| {
        change_view(
            &state,
            &req,
            &["patient", "admission"],
            &format!("POST /api/referrals/{id}/decision"),
            false,
        )
    }) {
        return r;
    }
    let by = principal(&ext).name;
    match state.referrals.decide(
        &fed,
        state.governance.audit(),
        &by,
        &id,
        body.accept,
        body.reason,
    ) {
        Ok(r) => Json(r).into_response(),
        Err(e) => referral_error(e),
    }
}

/// `GET /referrals`: referrals received, to accept or decline, and those
/// sent, with where each has got to; under the purpose declared at the
/// checkpoint, which must show patients and admissions.
pub async fn page(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    use maud::html;
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/referrals");
    };
    let Some(fed) = state.federation.as_ref() else {
        return crate::governed::refused(
            &state,
            StatusCode::CONFLICT,
            "this instance is not in a federation",
        );
    };
    let view = match product_view(
        &state,
        &req,
        &["patient", "admission"],
        "GET /referrals",
        true,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let all = match governed_referrals(&state, fed, &view).await {
        Ok(all) => all,
        Err(r) => return r,
    };
    if let Err(e) = view.served(
        all.len() as u64,
        all.iter().map(|r| r.patient.clone()).collect(),
    ) {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    // Sent or received as this instance is known in the federation.
    let me = &fed.identity.ods;
    let received: Vec<_> = all.iter().filter(|r| &r.to == me).collect();
    let sent: Vec<_> = all.iter().filter(|r| &r.from == me).collect();
    crate::ui::layout(
        "Referrals",
        Some(me),
        html! {
            h1 { "Discharge referrals" }
            h2 { "Received (" (received.len()) ")" }
            @if received.is_empty() { p.muted { "None." } }
            @for r in received.iter().rev() {
                @let record = ReferralRecord::read(&r.bundle);
                @let (name, born) = (record.name, record.birth_date);
                @let name = if r.bundle.is_null() { "[masked]".to_string() } else { name };
                @let status = r.status.as_str();
                section.referral data-id=(r.id) data-status=(status) {
                    h3 { (name) @if !born.is_empty() { span.muted { " born " (born) } } " from " (r.from) }
                    p { "Sent " (r.sent_at.format("%Y-%m-%d %H:%M")) " UTC under " (r.lawful_basis) ". Status: " strong { (status) }
                        @if let Some(why) = &r.reason { " — " (why) } }
                    @if !r.care_needs.is_empty() {
                        p { "Care needs:" }
                        ul { @for n in &r.care_needs { li { (n) } } }
                    }
                    @if !record.summary.is_empty() { blockquote { (record.summary) } }
                    @if r.status == Status::Delivered {
                        form method="post" action=(format!("/referrals/{}/decision", r.id)) {
                            label for=(format!("why-{}", r.id)) { "Reason or note (sent to the trust)" }
                            input id=(format!("why-{}", r.id)) name="reason" size="60";
                            button type="submit" name="decision" value="accept" { "Accept" }
                            " "
                            button type="submit" name="decision" value="decline" { "Decline" }
                        }
                    }
                }
            }
            h2 { "Sent (" (sent.len()) ")" }
            table #sent {
                thead { tr { th { "To" } th { "Admission" } th { "Status" } th { "Why / what next" } th { "Sent (UTC)" } } }
                tbody { @for r in sent.iter().rev() {
                    tr data-status=(r.status.as_str()) {
                        td { (r.to) }
                        td { @if let Some(a) = &r.admission { a href=(format!("/bed-board/admission/{a}")) { (a) } } }
                        td { (r.status.as_str()) } td { (r.reason.clone().unwrap_or_default()) }
                        td { (r.sent_at.format("%Y-%m-%d %H:%M")) }
                    }
                } }
            }
        },
    )
    .into_response()
}

/// `POST /referrals/{id}/decision`: the page's accept or decline.
pub async fn decision_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/referrals");
    };
    let Some(fed) = state.federation.clone() else {
        return crate::governed::refused(
            &state,
            StatusCode::CONFLICT,
            "this instance is not in a federation",
        );
    };
    if let Err(r) = change_view(
        &state,
        &req,
        &["patient", "admission"],
        &format!("POST /referrals/{id}/decision"),
        true,
    ) {
        return r;
    }
    let form = crate::ui::form_pairs(&body);
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let accept = match get("decision").as_deref() {
        Some("accept") => true,
        Some("decline") => false,
        _ => {
            return crate::governed::refused(
                &state,
                StatusCode::BAD_REQUEST,
                "choose Accept or Decline",
            )
        }
    };
    let reason = get("reason").filter(|r| !r.is_empty());
    match state
        .referrals
        .decide(&fed, state.governance.audit(), &p.name, &id, accept, reason)
    {
        Ok(_) => axum::response::Redirect::to("/referrals").into_response(),
        Err(e @ ReferralError::AlreadyDecided(_)) => {
            crate::governed::refused(&state, StatusCode::CONFLICT, &e.to_string())
        }
        Err(e @ ReferralError::NotFound(_)) => {
            crate::governed::refused(&state, StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e) => {
            crate::governed::refused(&state, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}
