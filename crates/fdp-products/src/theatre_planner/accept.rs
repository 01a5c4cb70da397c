//! Accepting a proposed booking: checked again against the tables as the
//! planner's own governed session shows them now (the proposal may be
//! minutes old, and a list may have filled or been lost since), then kept
//! as a booking request (a FHIR `Task`, see
//! [`fdp_fhir::booking_request`]) stored through ingest, so the request is
//! versioned, has its lineage, and appears in `booking_request` for the
//! booking team and in the next proposal as the patient's list.

use chrono::{Duration, Utc};
use fdp_fhir::booking_request::BookingRequest;
use fdp_govern::GovernedSession;
use fdp_schedule::plan::{PreOp, CHANGEOVER_MINUTES};
use serde_json::json;

use super::load;
use crate::platform::{ProductError, Params, RecordsChange};

/// The team asked to book an accepted request.
pub const BOOKING_TEAM: &str = "Theatre booking team";

/// Accept `eal_id`'s booking onto the list `inputs` names, as `by`.
pub async fn accept(
    eal_id: &str,
    session: &GovernedSession,
    inputs: &Params,
    by: &str,
) -> Result<RecordsChange, ProductError> {
    let session_id = inputs.text("theatre_session_id").unwrap_or_default();
    let today = Utc::now().date_naive();
    // Every list a proposal could name: the next 12 weeks.
    let loaded = load::load(session, today, 12, &[]).await?;
    let plan = &loaded.plan;
    if let Some(u) = loaded.unplannable.iter().find(|u| u.eal_id == eal_id) {
        return Err(ProductError::Conflict(format!(
            "entry {eal_id} cannot be booked: {}",
            u.reason
        )));
    }
    let Some(listed) = plan.listed.iter().find(|l| l.id == eal_id) else {
        return Err(ProductError::NotFound(format!(
            "no entry {eal_id} on the PTL with a running clock"
        )));
    };
    if let Some(on) = &listed.booked_on {
        let how = if loaded.requested.contains_key(eal_id) {
            "a booking request is already open for"
        } else {
            "already booked on"
        };
        return Err(ProductError::Conflict(format!(
            "entry {eal_id}: {how} list {on}"
        )));
    }
    let Some(list) = plan.sessions.iter().find(|s| s.id == session_id) else {
        return Err(ProductError::NotFound(format!(
            "no list {session_id} in the next 12 weeks"
        )));
    };
    if let Some(why) = plan.closed(list) {
        return Err(ProductError::Conflict(format!(
            "list {session_id} on {} takes no new booking: {why}",
            list.date
        )));
    }
    if list.consultant.as_deref() != Some(listed.consultant.as_str()) {
        return Err(ProductError::Conflict(format!(
            "list {session_id} is {}'s, not {}'s",
            list.consultant.as_deref().unwrap_or("no consultant"),
            listed.consultant
        )));
    }
    if listed.priority.is_deferred() {
        return Err(ProductError::Conflict(format!(
            "entry {eal_id} is {}: treatment deferred at the patient's choice",
            listed.priority.as_str()
        )));
    }
    match listed.pre_op {
        PreOp::Fit { valid_until } if valid_until >= list.date => {}
        PreOp::Fit { valid_until } => {
            return Err(ProductError::Conflict(format!(
                "entry {eal_id}: the pre-operative assessment lapses on {valid_until}, before the list on {}",
                list.date
            )))
        }
        _ => {
            return Err(ProductError::Conflict(format!(
                "entry {eal_id}: no pre-operative assessment found fit; no booking without one"
            )))
        }
    }
    let taken: i64 = plan
        .listed
        .iter()
        .filter(|l| l.booked_on.as_deref() == Some(session_id.as_str()))
        .map(|l| l.minutes + CHANGEOVER_MINUTES)
        .sum();
    let free = plan.free_minutes(list) - taken;
    if listed.minutes + CHANGEOVER_MINUTES > free {
        return Err(ProductError::Conflict(format!(
            "list {session_id} has {} minutes free after its bookings and changeovers; the case needs {}",
            (free - CHANGEOVER_MINUTES).max(0),
            listed.minutes
        )));
    }
    let consultant_code = loaded
        .consultant_code
        .iter()
        .find(|(_, name)| **name == listed.consultant)
        .map(|(code, _)| code.clone())
        .unwrap_or_else(|| listed.consultant.clone());
    let patient_id = loaded
        .shown
        .get(eal_id)
        .and_then(|s| s.get("patient_id"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let request = BookingRequest {
        id: fdp_ingest::fhir::new_id(),
        eal_id: eal_id.to_string(),
        patient_id: patient_id.clone(),
        session_id: session_id.clone(),
        date: list.date,
        am_pm: list.am_pm.clone(),
        theatre: list.theatre.clone(),
        consultant: consultant_code,
        minutes: listed.minutes,
        session_minutes: list.minutes,
        reason: inputs
            .text("reason")
            .unwrap_or_else(|| "accepted from the proposed schedule".into()),
        team: BOOKING_TEAM.into(),
        requested_by: by.to_string(),
        at: Utc::now(),
    };
    let task = request.to_task();
    let days_out = (list.date - today).num_days();
    Ok(RecordsChange {
        records: vec![(task, request.id.clone())],
        patients: (!patient_id.is_empty()).then_some(patient_id).into_iter().collect(),
        answer: json!({
            "booking_request": request.id,
            "entry": eal_id,
            "theatre_session_id": session_id,
            "date": list.date.to_string(),
            "theatre": list.theatre,
            "status": "requested",
            "weeks_out": days_out / 7,
            "record": format!("Task/{}", request.id),
            "lock": (list.date - Duration::days(fdp_schedule::plan::LOCKED_DAYS)).to_string(),
        }),
    })
}
