//! Mutual aid over HTTP. A trust publishes the free time on its locked
//! lists to the ICB; another trust's waiting-list manager sees the slots
//! across the area with the patients each suits, and sends a booking
//! request with the patient's choice; the providing trust accepts or
//! declines. What fits is the product's (`fdp_products::mutual_aid`, over
//! the `theatre-sessions` and `waiting-list` views, run in the caller's
//! own governed session); carrying the request is the federation's.

#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, NaiveDate, Utc};
use fdp_federation::capacity::{Offer, OwnCapacity};
use fdp_federation::mutual_aid::{BookingRequest, MutualAidError, NewBookingRequest};
use fdp_fhir::pathway_transfer::TransferredPathway;
use fdp_fhir::referral::ReferredPatient;
use fdp_govern::SessionRequest;
use fdp_products::mutual_aid::{self, objects, SlotFit, LOCK_DAYS};
use fdp_products::platform::run_view;
use fdp_products::theatre_sessions::{CHANGEOVER_MINUTES, FREE_TIME};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{change_allowed, product_view};
use crate::auth::principal;
use crate::checkpoint::purpose_of;
use crate::federation::federation;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn error(e: MutualAidError) -> Response {
    match e {
        MutualAidError::NotFound(_) => problem(StatusCode::NOT_FOUND, e.to_string()),
        MutualAidError::AlreadyDecided(_) | MutualAidError::NotTheProvider(_) => {
            problem(StatusCode::CONFLICT, e.to_string())
        }
        MutualAidError::Send(fdp_federation::SendError::UnknownPeer(_)) => {
            problem(StatusCode::BAD_REQUEST, e.to_string())
        }
        e => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Rows of `product`'s `view` with `given`, in `req`'s own governed
/// session (so audited, and refused as the caller would be).
async fn view_rows(
    state: &AppState,
    req: &SessionRequest,
    (product, view): (&str, &str),
    given: &[(&str, String)],
) -> Result<Vec<Map<String, Value>>, Response> {
    let given: BTreeMap<String, String> = given
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let registry = state.products.registry();
    let session = state
        .governance
        .session(&state.tables, req.clone())
        .await
        .map_err(|e| crate::products::failed(state, &e.into(), false))?;
    let out = run_view(&registry, product, view, &session, &given)
        .await
        .map_err(|e| crate::products::failed(state, &e, false))?;
    Ok(objects(&out.columns, &out.rows))
}

/// The free time inside the lock from `today`, less requests this trust
/// accepted onto a session whose booking its theatre system has not yet
/// sent (a booking carries the pathway once it has).
async fn theatre_slots(
    state: &AppState,
    req: &SessionRequest,
    today: NaiveDate,
) -> Result<Vec<Offer>, Response> {
    let mut rows = view_rows(
        state,
        req,
        ("theatre-sessions", FREE_TIME),
        &[
            ("from", today.to_string()),
            ("to", (today + Duration::days(LOCK_DAYS)).to_string()),
        ],
    )
    .await?;
    let accepted = match &state.federation {
        Some(fed) => state
            .booking_requests
            .accepted_onto_sessions(&fed.identity.ods)
            .map_err(error)?,
        None => Default::default(),
    };
    if !accepted.is_empty() {
        let booked = booked_pathways(state, req).await?;
        for row in &mut rows {
            let session = row
                .get("theatre_session_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let taken: i64 = accepted
                .get(&session)
                .into_iter()
                .flatten()
                .filter(|(pathway, _)| !booked.contains(&(session.clone(), pathway.clone())))
                .map(|(_, minutes)| minutes + CHANGEOVER_MINUTES)
                .sum();
            if taken > 0 {
                let usable = row
                    .get("usable_unbooked_minutes")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let left = usable - taken;
                row.insert(
                    "usable_unbooked_minutes".into(),
                    json!(
                        if left >= fdp_products::theatre_sessions::SHORTEST_CASE_MINUTES {
                            left
                        } else {
                            0
                        }
                    ),
                );
            }
        }
    }
    Ok(mutual_aid::offers(&rows, Utc::now()))
}

/// (session, pathway) of every booking not cancelled, as the caller's
/// grant shows them.
async fn booked_pathways(
    state: &AppState,
    req: &SessionRequest,
) -> Result<std::collections::BTreeSet<(String, String)>, Response> {
    let session = state
        .governance
        .session(&state.tables, req.clone())
        .await
        .map_err(|e| crate::products::failed(state, &e.into(), false))?;
    let result = session
        .query(
            "SELECT DISTINCT theatre_session_id, rtt_pathway_id FROM theatre_booking \
             WHERE NOT coalesce(booking_cancelled, false) AND rtt_pathway_id IS NOT NULL",
        )
        .await
        .map_err(|e| crate::products::failed(state, &e.into(), false))?;
    let rows = result
        .rows_json()
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["theatre_session_id"].as_str()?.to_string(),
                r["rtt_pathway_id"].as_str()?.to_string(),
            ))
        })
        .collect())
}

/// Replace this instance's theatre-slot offers with `slots` (its other
/// offers kept) and publish them to the ICB; answers how many ICBs.
fn publish(state: &AppState, slots: Vec<Offer>) -> Result<usize, Response> {
    let own = OwnCapacity::open(&state.instance.data_dir);
    let mut offers: Vec<Offer> = own
        .offers()
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .into_iter()
        .filter(|o| o.kind != "theatre-slot")
        .collect();
    offers.extend(slots);
    own.set(state.federation.as_deref(), offers)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, e))
}

/// `POST /api/capacity/theatre-slots`: derive this trust's theatre-slot
/// offers from its sessions inside the two-week lock (free time less a
/// changeover, computed from the bookings) and publish them to the ICB.
/// Reads the theatre tables and changes `care_capacity` under the
/// caller's purpose.
pub async fn publish_theatre_slots(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = change_allowed(
        &state,
        &req,
        fdp_federation::capacity::TABLE,
        "POST /api/capacity/theatre-slots",
        false,
    ) {
        return r;
    }
    let today = Utc::now().date_naive();
    let slots = match theatre_slots(&state, &req, today).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let shown = slots.clone();
    match publish(&state, slots) {
        Ok(icbs) => Json(json!({
            "from": today,
            "to": today + Duration::days(LOCK_DAYS),
            "slots": shown,
            "published_to": icbs,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// The slots across the area and this trust's PTL, as `req` sees them.
async fn area_fits(state: &AppState, req: &SessionRequest) -> Result<Vec<SlotFit>, Response> {
    let fed = federation(state)?.clone();
    // The feed names no patient, but is capacity, read under a purpose
    // like any table.
    product_view(
        state,
        req,
        &[fdp_federation::capacity::TABLE],
        "the capacity feed, for mutual aid",
        false,
    )?
    .served(0, vec![])
    .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let feed = state
        .capacity
        .get(&fed)
        .await
        .map_err(|e| problem(StatusCode::BAD_GATEWAY, e))?;
    let ptl = view_rows(state, req, ("waiting-list", "ptl"), &[]).await?;
    Ok(mutual_aid::fits(
        &feed,
        &fed.identity.ods,
        Utc::now().date_naive(),
        &ptl,
    ))
}

/// `GET /api/mutual-aid/slots`: every theatre slot other trusts offer,
/// each with the patients on this trust's list it suits, greatest need
/// first.
pub async fn slots(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    match area_fits(&state, &req).await {
        Ok(f) => Json(f).into_response(),
        Err(r) => r,
    }
}

/// `POST /api/mutual-aid/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskedBooking {
    /// The trust offering the slot (ODS code).
    pub to: String,
    /// Its theatre session.
    pub session_id: String,
    /// The entry on this trust's list.
    pub eal_id: String,
    /// What the patient said when offered it, e.g. "agreed to travel".
    pub patient_choice: String,
    /// Why the record may be shared.
    pub lawful_basis: String,
}

/// Split "SURNAME, Given" into family and given names.
fn name_parts(name: Option<&str>) -> (Option<String>, Option<String>) {
    match name.and_then(|n| n.split_once(',')) {
        Some((family, given)) => (
            Some(family.trim().to_string()),
            Some(given.trim().to_string()).filter(|g| !g.is_empty()),
        ),
        None => (name.map(str::to_string), None),
    }
}

/// Send a booking request for an entry on this trust's list into a slot
/// another trust offers: the slot and the entry are checked against each
/// other as the caller sees them, then the pathway's record goes through
/// the outbox.
pub async fn request(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Json<AskedBooking>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(asked) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    for (field, value) in [
        ("patient_choice", &asked.patient_choice),
        ("lawful_basis", &asked.lawful_basis),
    ] {
        if value.trim().is_empty() {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{field}: say it; a booking request is sent only with the patient's choice and the lawful basis"),
            );
        }
    }
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = change_allowed(
        &state,
        &req,
        "booking_request",
        "POST /api/mutual-aid/requests",
        false,
    ) {
        return r;
    }
    let fed = match federation(&state) {
        Ok(f) => f.clone(),
        Err(r) => return r,
    };
    let fits = match area_fits(&state, &req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(fit) = fits
        .iter()
        .find(|f| f.publisher == asked.to && f.slot.session_id == asked.session_id)
    else {
        return problem(
            StatusCode::NOT_FOUND,
            format!(
                "{} offers no slot on session {} (ask GET /api/mutual-aid/slots for what is offered)",
                asked.to, asked.session_id
            ),
        );
    };
    let ptl = match view_rows(&state, &req, ("waiting-list", "ptl"), &[]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(row) = ptl
        .iter()
        .find(|r| r.get("eal_id").and_then(Value::as_str) == Some(asked.eal_id.as_str()))
    else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no entry {} on the list is shown to you", asked.eal_id),
        );
    };
    if let Some(why) = mutual_aid::unfit(&fit.slot, fit.specialty.as_deref(), row) {
        return problem(
            StatusCode::CONFLICT,
            format!("entry {} does not fit the slot: {why}", asked.eal_id),
        );
    }
    let text = |c: &str| row.get(c).and_then(Value::as_str).map(str::to_string);
    let day =
        |c: &str| text(c).and_then(|d| NaiveDate::parse_from_str(d.get(..10)?, "%Y-%m-%d").ok());
    let (Some(patient), Some(pathway_id), Some(clock_start)) = (
        text("patient_id"),
        text("pathway_id"),
        day("rtt_period_start_date"),
    ) else {
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "entry {}'s patient, pathway or clock start is not shown under this grant, so its record cannot be sent",
                asked.eal_id
            ),
        );
    };
    let patient_name = text("patient_name");
    let (family, given) = name_parts(patient_name.as_deref());
    let pathway = TransferredPathway {
        patient: ReferredPatient {
            nhs_number: Some(patient.clone())
                .filter(|p| fdp_model::identifiers::parse_nhs_number(p).is_ok()),
            id: patient,
            family,
            given,
            ..Default::default()
        },
        pathway_id,
        specialty: text("specialty"),
        treatment_function_code: None,
        consultant: text("consultant"),
        clock_start,
        clock_start_code: text("clock_start_code").unwrap_or_else(|| "10".into()),
        priority: text("priority_type"),
        decided_to_admit: day("decided_to_admit_date"),
        latest_clinically_appropriate: day("latest_clinically_appropriate_date"),
        procedure_code: text("procedure_code"),
        procedure_description: None,
        expected_theatre_minutes: row
            .get("expected_theatre_minutes")
            .and_then(Value::as_u64)
            .and_then(|m| u32::try_from(m).ok()),
        from: fed.identity.ods.clone(),
        to: asked.to.clone(),
        session_id: asked.session_id.clone(),
    };
    let new = NewBookingRequest {
        to: asked.to,
        location: fit.location.clone(),
        specialty: fit.specialty.clone(),
        slot: fit.slot.clone(),
        eal_id: asked.eal_id,
        pathway,
        patient_name,
        rtt_weeks_waiting: row.get("rtt_weeks_waiting").and_then(Value::as_i64),
        patient_choice: asked.patient_choice,
        lawful_basis: asked.lawful_basis,
    };
    match state
        .booking_requests
        .send(&fed, state.governance.audit(), &principal(&ext).name, new)
    {
        Ok(r) => (StatusCode::ACCEPTED, Json(r)).into_response(),
        Err(e) => error(e),
    }
}

/// `GET /api/mutual-aid/requests`: booking requests sent and received,
/// with where each has got to. Each names a patient, so it is read one by
/// one under direct care, the name shown as the policy shows a patient's.
pub async fn list(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    let fed = match federation(&state) {
        Ok(f) => f.clone(),
        Err(r) => return r,
    };
    let view = match purpose_of(&state, &ext, &headers, "http").and_then(|req| {
        product_view(
            &state,
            &req,
            &["patient", "eal_entry"],
            "GET /api/mutual-aid/requests",
            false,
        )
    }) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let view = match view.one_by_one("the booking requests") {
        Ok(v) => v,
        Err(e) => return problem(StatusCode::FORBIDDEN, e.to_string()),
    };
    let all: Vec<BookingRequest> = match state.booking_requests.current(&fed) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let shown: Vec<BookingRequest> = all
        .into_iter()
        .map(|mut r| {
            r.patient_name = view.field("eal_entry", "patient_name", r.patient_name.as_deref());
            r.patient = view
                .field("eal_entry", "patient_id", Some(&r.patient))
                .unwrap_or_default();
            r.transfer = Value::Null;
            r
        })
        .collect();
    let patients = shown.iter().map(|r| r.patient.clone()).collect();
    if let Err(e) = view.served(shown.len() as u64, patients) {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    Json(shown).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub accept: bool,
    pub reason: Option<String>,
}

/// `POST /api/mutual-aid/requests/{id}/decision`: the providing trust
/// accepts (the patient joins its list, the clock carried over, RTT status
/// 21) or declines; the asking trust is told through the outbox, and the
/// slots offered are published again.
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
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = crate::api::change_view(
        &state,
        &req,
        &["booking_request", "eal_entry"],
        &format!("POST /api/mutual-aid/requests/{id}/decision"),
        false,
    )
    .and_then(|v| {
        v.changed(vec![])
            .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }) {
        return r;
    }
    let today = Utc::now().date_naive();
    let decided = match state
        .booking_requests
        .decide(
            &fed,
            state.governance.audit(),
            state.fhir.as_ref(),
            &principal(&ext).name,
            &id,
            body.accept,
            body.reason,
            today,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    // The slot's time is now taken: offer what is left. A caller whose
    // grant does not reach capacity leaves that to the next publication.
    let republished = match theatre_slots(&state, &req, today).await {
        Ok(slots) => publish(&state, slots).is_ok(),
        Err(_) => false,
    };
    let mut answer = serde_json::to_value(&decided).unwrap_or_default();
    answer["transfer"] = Value::Null;
    answer["slots_republished"] = json!(republished);
    Json(answer).into_response()
}
