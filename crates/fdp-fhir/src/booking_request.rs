//! A request to book a patient on the waiting list onto a theatre list,
//! as a FHIR R4 `Task`: what the theatre planner accepts from a proposed
//! schedule, for the booking team to book and tell the patient.
//!
//! The Task (status `requested`, intent `order`) carries the entry it is
//! for (`focus`, by the entry's identifier), the patient (`for`), who
//! accepted it and when (`requester`, `authoredOn`), the team asked to
//! book (`owner`), why this list (`reasonCode.text`: the planner's reason)
//! and the list itself as inputs: the session, its day and half, theatre,
//! consultant and the case's expected minutes. The canonical tables get a
//! `BookingRequest` row for it (see [`crate::map`]). Only the planner's
//! action writes one: who accepted it is what makes it a request.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::change_request::EAL_ENTRY;

/// The source under which the planner's action stores these Tasks: the
/// only source they are taken from.
pub const SOURCE: &str = "product:theatre-planner";
/// Why a booking request from anywhere else is refused.
pub const WRITTEN_ONLY_BY_ACTIONS: &str = "a theatre booking request is made by accepting a proposed booking through the theatre planner's action (POST /api/products/theatre-planner/actions/accept/{entry}), which records who accepted it; it is not written as a FHIR resource";
/// The code system of theatre booking requests.
pub const BOOKING_KIND: &str = "https://openfdp.nhs.uk/CodeSystem/theatre-booking-request";
/// The `Task.input` types a request carries.
pub const INPUT_SESSION: &str = "theatreSessionId";
pub const INPUT_DATE: &str = "date";
pub const INPUT_AM_PM: &str = "amPm";
pub const INPUT_THEATRE: &str = "theatreName";
pub const INPUT_CONSULTANT: &str = "consultantId";
pub const INPUT_MINUTES: &str = "estimatedTotalTheatreTime";
pub const INPUT_SESSION_MINUTES: &str = "theatreSessionPlannedDurationMinutes";

/// A booking the planner accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingRequest {
    /// The Task's id.
    pub id: String,
    pub eal_id: String,
    pub patient_id: String,
    pub session_id: String,
    pub date: NaiveDate,
    pub am_pm: String,
    pub theatre: String,
    pub consultant: String,
    pub minutes: i64,
    pub session_minutes: i64,
    /// Why this patient on this list, as the proposal gave it.
    pub reason: String,
    /// Asked to book: the booking team.
    pub team: String,
    pub requested_by: String,
    pub at: DateTime<Utc>,
}

fn input(kind: &str, value: Value) -> Value {
    let mut i = json!({"type": {"text": kind}});
    match value {
        Value::Number(n) => i["valueInteger"] = Value::Number(n),
        other => i["valueString"] = other,
    }
    i
}

impl BookingRequest {
    pub fn to_task(&self) -> Value {
        json!({
            "resourceType": "Task",
            "id": self.id,
            "status": "requested",
            "intent": "order",
            "priority": "routine",
            "code": {"coding": [{"system": BOOKING_KIND, "code": "book"}], "text": "Book onto a theatre list"},
            "focus": {"identifier": {"system": EAL_ENTRY, "value": self.eal_id}},
            "for": {"reference": format!("Patient/{}", self.patient_id)},
            "authoredOn": self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "requester": {"display": self.requested_by},
            "owner": {"display": self.team},
            "reasonCode": {"text": self.reason},
            "input": [
                input(INPUT_SESSION, json!(self.session_id)),
                input(INPUT_DATE, json!(self.date.to_string())),
                input(INPUT_AM_PM, json!(self.am_pm)),
                input(INPUT_THEATRE, json!(self.theatre)),
                input(INPUT_CONSULTANT, json!(self.consultant)),
                input(INPUT_MINUTES, json!(self.minutes)),
                input(INPUT_SESSION_MINUTES, json!(self.session_minutes)),
            ],
        })
    }
}

/// Whether `task` is a theatre booking request.
pub fn is_booking_request(task: &Value) -> bool {
    task.get("resourceType").and_then(Value::as_str) == Some("Task")
        && task
            .pointer("/code/coding")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("system").and_then(Value::as_str) == Some(BOOKING_KIND))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::map_resource;

    fn request() -> BookingRequest {
        BookingRequest {
            id: "br-1".into(),
            eal_id: "RXX000000123".into(),
            patient_id: "9990001234".into(),
            session_id: "4100123".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 21).unwrap(),
            am_pm: "AM".into(),
            theatre: "Main Theatre 1".into(),
            consultant: "C1234567".into(),
            minutes: 95,
            session_minutes: 240,
            reason: "P3, 20 weeks waited on the day, within the limit of 2027-01-04".into(),
            team: "Theatre booking team".into(),
            requested_by: "planner".into(),
            at: "2026-12-06T09:30:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_request_is_a_valid_task_and_maps_to_one_booking_request_row() {
        let task = request().to_task();
        assert!(is_booking_request(&task));
        assert!(!crate::change_request::is_change_request(&task));
        let errors: Vec<_> = crate::validate::validate(&task)
            .into_iter()
            .filter(|i| i.is_error())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let mapped = map_resource(&task, "br-1").unwrap();
        assert_eq!(mapped.rows.len(), 1);
        let (object, row) = &mapped.rows[0];
        assert_eq!(*object, "BookingRequest");
        let at = |c: &str| row.get(c).cloned().unwrap_or(Value::Null);
        assert_eq!(at("booking_request_id"), json!("br-1"));
        assert_eq!(at("encounter_id"), json!("RXX000000123"));
        assert_eq!(at("person_id"), json!("9990001234"));
        assert_eq!(at("theatre_session_id"), json!("4100123"));
        assert_eq!(at("date"), json!("2026-12-21"));
        assert_eq!(at("am_pm"), json!("AM"));
        assert_eq!(at("theatre_name"), json!("Main Theatre 1"));
        assert_eq!(at("consultant_id"), json!("C1234567"));
        assert_eq!(at("encounter_estimated_total_theatre_time"), json!(95));
        assert_eq!(at("theatre_session_planned_duration_minutes"), json!(240));
        assert_eq!(at("status"), json!("requested"));
        assert_eq!(at("user_id"), json!("planner"));
        assert_eq!(at("assigned_team_name"), json!("Theatre booking team"));
        assert!(at("reason").as_str().unwrap().starts_with("P3"));
        assert_eq!(at("task_type"), json!("Theatre booking"));
    }
}
