//! Discharge referrals over HTTP: a trust refers an admitted patient to a
//! care provider's instance; the provider lists what it received and
//! accepts or declines. Sending a referral hands over a whole record, so it
//! needs a direct-care grant that shows the whole record
//! (`Governance::whole_records`), and is audited with the patient.

// The checks return the error response itself, which a handler returns at
// once; boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_federation::referrals::{NewReferral, ReferralError};
use fdp_federation::Federation;
use fdp_govern::Purpose;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{change_view, product_view};
use crate::auth::principal;
use crate::checkpoint::purpose_of;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn federation(state: &AppState) -> Result<&Arc<Federation>, Response> {
    state.federation.as_ref().ok_or_else(|| {
        problem(
            StatusCode::CONFLICT,
            "this instance is not in a federation: configure [federation] and its peers",
        )
    })
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

/// Send a referral for `req` (a direct-care request) made by `by`.
pub(crate) async fn make_referral(
    state: &AppState,
    mut req: fdp_govern::SessionRequest,
    by: &str,
    body: ReferralRequest,
) -> Result<fdp_federation::referrals::Referral, Response> {
    let fed = federation(state)?.clone();
    if body.lawful_basis.trim().is_empty() {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "a referral records its lawful basis: give lawful_basis",
        ));
    }
    if req.purpose != Purpose::DirectCare {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "a discharge referral is made for direct care",
        ));
    }
    req.justification = Some(body.lawful_basis.clone());
    let census = state.live.read().await;
    let Some(spell) = census.spells.get(&body.admission_id) else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no admission {}", body.admission_id),
        ));
    };
    let read = match state.governance.whole_records(
        &req,
        &["Patient", "Admission"],
        &format!(
            "discharge referral of admission {} to {}",
            body.admission_id, body.to
        ),
    ) {
        Ok(r) => r,
        Err(e) => return Err(problem(StatusCode::FORBIDDEN, e.to_string())),
    };
    let patient = census.patients.get(&spell.patient_id);
    let bundle = bundle_for(&spell.patient_id, patient, spell, &body);
    let patient_id = spell.patient_id.clone();
    drop(census);
    if let Err(e) = read.served(1, vec![patient_id.clone()]) {
        return Err(problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    state
        .referrals
        .refer(
            &fed,
            state.governance.audit(),
            by,
            NewReferral {
                to: body.to.clone(),
                patient: patient_id,
                admission: Some(body.admission_id.clone()),
                lawful_basis: body.lawful_basis.clone(),
                care_needs: body.care_needs.clone(),
                bundle,
            },
        )
        .map_err(referral_error)
}

/// The FHIR R4 Bundle a referral carries.
fn bundle_for(
    patient_id: &str,
    p: Option<&fdp_ingest::adt::event::PatientDetails>,
    spell: &fdp_ingest::adt::census::Spell,
    body: &ReferralRequest,
) -> Value {
    let mut patient = json!({"resourceType": "Patient", "id": patient_id});
    if let Some(p) = p {
        let mut ids = Vec::new();
        if let Some(n) = &p.nhs_number {
            ids.push(json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n}));
        }
        if let Some(m) = &p.mrn {
            ids.push(json!({"system": "urn:oid:local-hospital-number", "value": m}));
        }
        patient["identifier"] = json!(ids);
        patient["name"] =
            json!([{"family": p.surname, "given": p.first_name.iter().collect::<Vec<_>>()}]);
        if let Some(d) = &p.date_of_birth {
            patient["birthDate"] = json!(d);
        }
    }
    let start = spell
        .admitted_at_us
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_micros)
        .map(|t| t.to_rfc3339());
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": format!("urn:fdp:patient:{patient_id}"), "resource": patient},
            {"fullUrl": format!("urn:fdp:encounter:{}", spell.admission_id), "resource": {
                "resourceType": "Encounter", "id": spell.admission_id, "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "period": {"start": start}}},
            {"fullUrl": format!("urn:fdp:summary:{}", spell.admission_id), "resource": {
                "resourceType": "Composition", "status": "final",
                "type": {"coding": [{"system": "http://snomed.info/sct", "code": "373942005", "display": "Discharge summary"}]},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "title": "Discharge summary",
                "section": [{"title": "Summary", "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", escape(&body.summary))}}]}},
            {"fullUrl": format!("urn:fdp:careplan:{}", spell.admission_id), "resource": {
                "resourceType": "CarePlan", "status": "active", "intent": "plan",
                "subject": {"reference": format!("Patient/{patient_id}")},
                "activity": body.care_needs.iter().map(|n| json!({"detail": {"status": "not-started", "description": n}})).collect::<Vec<_>>()}},
        ]
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
    match state.referrals.current(&fed) {
        Ok(all) => {
            let numbers = nhs_numbers(&state, &all).await;
            let all = governed(all, &view, &numbers);
            let patients = all.iter().map(|r| r.patient.clone()).collect();
            if let Err(e) = view.served(all.len() as u64, patients) {
                return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            Json(all).into_response()
        }
        Err(e) => referral_error(e),
    }
}

/// Referrals as `view` lets them be seen: a referral of a patient the row
/// rules do not admit (the national data opt-out, for a secondary purpose)
/// left out; the patient's id shaped by its model column; and the FHIR
/// record itself only where the grant shows every column of the patient
/// and the admission, since a whole record cannot be shown with a field
/// masked. The care needs are shaped as the referral's notes
/// (`referral.referral_notes`).
fn governed(
    all: Vec<fdp_federation::referrals::Referral>,
    view: &fdp_govern::ProductView,
    nhs_numbers: &HashMap<String, String>,
) -> Vec<fdp_federation::referrals::Referral> {
    let whole = view.shows_whole("patient") && view.shows_whole("admission");
    all.into_iter()
        .filter(|r| {
            // A referral received carries the record; one sent is of a
            // patient of this instance, whose number the census holds.
            let nhs = nhs_number_in(&r.bundle).or_else(|| nhs_numbers.get(&r.patient).cloned());
            view.admits(&fdp_govern::RowFacts {
                nhs_number: nhs.as_deref(),
                ..Default::default()
            })
        })
        .map(|mut r| {
            r.patient = view
                .field("patient", "person_id", Some(&r.patient))
                .unwrap_or_else(|| "[masked]".into());
            r.admission = view.field("admission", "admission_id", r.admission.as_deref());
            // What the patient needs is free text about them: the
            // referral's notes, as the model has them.
            r.care_needs = std::mem::take(&mut r.care_needs)
                .into_iter()
                .filter_map(|n| view.field("referral", "referral_notes", Some(&n)))
                .collect();
            if !whole {
                r.bundle = Value::Null;
            }
            r
        })
        .collect()
}

/// The NHS number the live census holds for each patient of `referrals`
/// whose record does not carry one, by patient id.
async fn nhs_numbers(
    state: &AppState,
    referrals: &[fdp_federation::referrals::Referral],
) -> HashMap<String, String> {
    let census = state.live.read().await;
    referrals
        .iter()
        .filter(|r| nhs_number_in(&r.bundle).is_none())
        .filter_map(|r| {
            let nhs = census.patients.get(&r.patient)?.nhs_number.clone()?;
            Some((r.patient.clone(), nhs))
        })
        .collect()
}

/// The NHS number of the patient a referral's record names, if any.
fn nhs_number_in(bundle: &Value) -> Option<String> {
    bundle["entry"]
        .as_array()?
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient")?["identifier"]
        .as_array()?
        .iter()
        .find(|i| {
            i["system"]
                .as_str()
                .is_some_and(|s| s.ends_with("/nhs-number"))
        })?["value"]
        .as_str()
        .map(str::to_string)
}

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
    let received: Vec<&fdp_federation::Envelope> = all_received
        .iter()
        .filter(|e| {
            ["question", "referral", "referral-status", "capacity"].contains(&e.kind.as_str())
        })
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
    Json(json!({
        "question": q.name,
        "version": q.version,
        "members": answers,
        "rows": rows,
    }))
    .into_response()
}

/// The patient's name and date of birth as the referral's Bundle gives them.
fn patient_in(bundle: &Value) -> (String, String) {
    let patient = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient");
    let Some(p) = patient else {
        return (String::new(), String::new());
    };
    let name = &p["name"][0];
    let given: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str())
        .collect();
    let full = format!(
        "{} {}",
        given.join(" "),
        name["family"].as_str().unwrap_or_default()
    );
    (
        full.trim().to_string(),
        p["birthDate"].as_str().unwrap_or_default().to_string(),
    )
}

/// The discharge summary's text, its markup taken out.
fn summary_in(bundle: &Value) -> String {
    let div = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Composition")
        .and_then(|c| c["section"][0]["text"]["div"].as_str())
        .unwrap_or_default();
    let mut text = String::new();
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
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
    let all = match state.referrals.current(fed) {
        Ok(a) => {
            let numbers = nhs_numbers(&state, &a).await;
            governed(a, &view, &numbers)
        }
        Err(e) => return referral_error(e),
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
                @let (name, born) = patient_in(&r.bundle);
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
                    @let summary = summary_in(&r.bundle);
                    @if !summary.is_empty() { blockquote { (summary) } }
                    @if matches!(r.status, fdp_federation::referrals::Status::Delivered) {
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
