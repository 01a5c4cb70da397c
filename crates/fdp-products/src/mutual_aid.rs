//! Mutual aid across the ICB (elective recovery): theatre time a trust
//! will not use, offered to the other trusts, and the patients of greatest
//! need each slot would suit.
//!
//! - **The offer.** A trust's free time on sessions inside its two-week
//!   lock (the `free-time` view of `theatre-sessions`) becomes one
//!   `theatre-slot` offer per session with usable minutes ([`offers`]),
//!   published to the ICB in its capacity feed. No patient is named.
//! - **The fit.** Another trust's waiting-list manager sees, for every slot
//!   across the area, the patients on their own PTL it suits ([`fits`]):
//!   - the same specialty;
//!   - an expected theatre time known and within the usable minutes;
//!   - a clock still running, not already transferred (RTT status 21);
//!   - a clinical priority from P1a to P4 (P5 and P6 have chosen to wait);
//!   - not booked to come in before the slot.
//!
//!   Greatest need first: the most urgent priority, then the longest wait.
//!
//! Carrying the booking request and its answer between the trusts is
//! `fdp-federation`'s; this module says what fits.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use fdp_fhir::pathway_transfer::TransferredPathway;
use fdp_fhir::referral::ReferredPatient;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::capacity::{Offer, Published, TheatreSlot};
use crate::platform::OutputColumn;
use crate::theatre_sessions::{CHANGEOVER_MINUTES, SHORTEST_CASE_MINUTES};

/// How far ahead a list is locked: free time inside it is offered.
pub const LOCK_DAYS: i64 = 14;

/// The order of clinical priorities, most urgent first; P5 and P6 (the
/// patient's choice to wait) are not offered a slot.
const PRIORITIES: &[&str] = &["P1a", "P1b", "P1", "P2", "P3", "P4"];

/// A view's rows as objects keyed by column name.
pub fn objects(columns: &[OutputColumn], rows: &[Vec<Value>]) -> Vec<Map<String, Value>> {
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.clone(), v.clone()))
                .collect()
        })
        .collect()
}

fn text(row: &Map<String, Value>, column: &str) -> Option<String> {
    row.get(column)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty())
}

fn whole(row: &Map<String, Value>, column: &str) -> Option<i64> {
    row.get(column).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    })
}

fn day(row: &Map<String, Value>, column: &str) -> Option<NaiveDate> {
    text(row, column).and_then(|s| NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
}

/// `HH:MM` of a timestamp as the view gives it.
fn clock_time(row: &Map<String, Value>, column: &str) -> Option<String> {
    text(row, column).and_then(|s| s.get(11..16).map(str::to_string))
}

/// The theatre-slot offers for the rows of the `free-time` view: one per
/// session with usable minutes.
pub fn offers(free_time: &[Map<String, Value>], now: DateTime<Utc>) -> Vec<Offer> {
    free_time
        .iter()
        .filter_map(|row| {
            let usable = u32::try_from(whole(row, "usable_unbooked_minutes")?).ok()?;
            let session_id = text(row, "theatre_session_id")?;
            let date = day(row, "date")?;
            if usable == 0 {
                return None;
            }
            let slot = TheatreSlot {
                session_id,
                date,
                am_pm: text(row, "am_pm"),
                starts: clock_time(row, "planned_start_time"),
                ends: clock_time(row, "planned_end_time"),
                usable_minutes: usable,
            };
            Some(Offer {
                kind: "theatre-slot".into(),
                location: text(row, "theatre_name").unwrap_or_else(|| "theatre".into()),
                specialty: text(row, "specialty_name"),
                free: 1,
                total: Some(1),
                detail: Some(format!(
                    "{} {}{}, {} min usable",
                    slot.date,
                    slot.am_pm.as_deref().unwrap_or(""),
                    match (&slot.starts, &slot.ends) {
                        (Some(a), Some(b)) => format!(" {a}–{b}"),
                        _ => String::new(),
                    },
                    usable
                )),
                updated_at: now,
                slot: Some(slot),
            })
        })
        .collect()
}

/// The rows of the `free-time` view less the cases this trust accepted
/// from other trusts (`accepted`: by session, each case's pathway and
/// expected minutes) that its theatre system has not yet booked (`booked`:
/// the (session, pathway) of every booking not cancelled): each such case
/// takes its minutes and a changeover from the usable time, which counts
/// only while a further case would still fit.
pub fn less_accepted(
    free_time: &mut [Map<String, Value>],
    accepted: &BTreeMap<String, Vec<(String, i64)>>,
    booked: &BTreeSet<(String, String)>,
) {
    for row in free_time {
        let Some(session) = text(row, "theatre_session_id") else {
            continue;
        };
        let taken: i64 = accepted
            .get(&session)
            .into_iter()
            .flatten()
            .filter(|(pathway, _)| !booked.contains(&(session.clone(), pathway.clone())))
            .map(|(_, minutes)| minutes + CHANGEOVER_MINUTES)
            .sum();
        if taken > 0 {
            let left = whole(row, "usable_unbooked_minutes").unwrap_or(0) - taken;
            let left = if left >= SHORTEST_CASE_MINUTES {
                left
            } else {
                0
            };
            row.insert("usable_unbooked_minutes".into(), Value::from(left));
        }
    }
}

/// A patient on the PTL, as far as fitting a slot goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub eal_id: String,
    pub pathway_id: Option<String>,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub specialty: Option<String>,
    pub priority_type: Option<String>,
    pub rtt_weeks_waiting: Option<i64>,
    pub rtt_period_length: Option<i64>,
    pub rtt_period_start_date: Option<NaiveDate>,
    pub expected_theatre_minutes: Option<i64>,
    pub procedure_code: Option<String>,
}

impl Candidate {
    fn from_row(row: &Map<String, Value>) -> Option<Candidate> {
        Some(Candidate {
            eal_id: text(row, "eal_id")?,
            pathway_id: text(row, "pathway_id"),
            patient_id: text(row, "patient_id"),
            patient_name: text(row, "patient_name"),
            specialty: text(row, "specialty"),
            priority_type: text(row, "priority_type"),
            rtt_weeks_waiting: whole(row, "rtt_weeks_waiting"),
            rtt_period_length: whole(row, "rtt_period_length"),
            rtt_period_start_date: day(row, "rtt_period_start_date"),
            expected_theatre_minutes: whole(row, "expected_theatre_minutes"),
            procedure_code: text(row, "procedure_code"),
        })
    }

    fn urgency(&self) -> usize {
        self.priority_type
            .as_deref()
            .and_then(|p| PRIORITIES.iter().position(|q| *q == p))
            .unwrap_or(PRIORITIES.len())
    }

    /// Greatest need first: the most urgent priority, then the longest
    /// wait, then the entry's id so the order is the same every time.
    fn by_need(a: &Candidate, b: &Candidate) -> Ordering {
        a.urgency()
            .cmp(&b.urgency())
            .then(b.rtt_period_length.cmp(&a.rtt_period_length))
            .then(a.eal_id.cmp(&b.eal_id))
    }
}

/// Why a PTL entry does not fit a slot, or `None` if it does.
pub fn unfit(
    slot: &TheatreSlot,
    specialty: Option<&str>,
    row: &Map<String, Value>,
) -> Option<String> {
    let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
        (Some(a), Some(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        _ => false,
    };
    if !same(specialty, text(row, "specialty").as_deref()) {
        return Some(format!(
            "the slot is for {}, the entry is in {}",
            specialty.unwrap_or("no named specialty"),
            text(row, "specialty").unwrap_or_else(|| "no named specialty".into())
        ));
    }
    if text(row, "clock").as_deref() != Some("running") {
        return Some("the entry's clock is not running".into());
    }
    if text(row, "rtt_status_code").as_deref() == Some("21") {
        return Some("the pathway has already been transferred (RTT status 21)".into());
    }
    let priority = text(row, "priority_type");
    if !priority.as_deref().is_some_and(|p| PRIORITIES.contains(&p)) {
        return Some(format!(
            "priority {} is not offered a slot (P1a to P4 are)",
            priority.unwrap_or_else(|| "unknown".into())
        ));
    }
    match whole(row, "expected_theatre_minutes") {
        None => return Some("the entry's expected theatre time is not recorded".into()),
        Some(m) if m > i64::from(slot.usable_minutes) => {
            return Some(format!(
                "the case is expected to take {m} min; the slot has {} usable",
                slot.usable_minutes
            ))
        }
        Some(_) => {}
    }
    if let Some(planned) = day(row, "planned_date") {
        if planned <= slot.date {
            return Some(format!(
                "the patient is already booked to come in on {planned}"
            ));
        }
    }
    None
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

/// The pathway of PTL `row` as it moves from trust `from` to a slot on
/// session `session_id` at trust `to`: what a booking request carries.
/// `None` where the row does not show its patient, pathway or clock start.
pub fn transferred(
    row: &Map<String, Value>,
    from: &str,
    to: &str,
    session_id: &str,
) -> Option<TransferredPathway> {
    let patient = text(row, "patient_id")?;
    let (family, given) = name_parts(text(row, "patient_name").as_deref());
    Some(TransferredPathway {
        patient: ReferredPatient {
            nhs_number: Some(patient.clone())
                .filter(|p| fdp_model::identifiers::parse_nhs_number(p).is_ok()),
            id: patient,
            family,
            given,
            ..Default::default()
        },
        pathway_id: text(row, "pathway_id")?,
        specialty: text(row, "specialty"),
        treatment_function_code: None,
        consultant: text(row, "consultant"),
        clock_start: day(row, "rtt_period_start_date")?,
        clock_start_code: text(row, "clock_start_code").unwrap_or_else(|| "10".into()),
        priority: text(row, "priority_type"),
        decided_to_admit: day(row, "decided_to_admit_date"),
        latest_clinically_appropriate: day(row, "latest_clinically_appropriate_date"),
        procedure_code: text(row, "procedure_code"),
        procedure_description: None,
        expected_theatre_minutes: whole(row, "expected_theatre_minutes")
            .and_then(|m| u32::try_from(m).ok()),
        from: from.to_string(),
        to: to.to_string(),
        session_id: session_id.to_string(),
    })
}

/// A slot offered by another trust, with the patients on this trust's
/// PTL it would suit, greatest need first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotFit {
    pub publisher: String,
    pub location: String,
    pub specialty: Option<String>,
    pub slot: TheatreSlot,
    /// When the publisher last checked it.
    pub updated_at: DateTime<Utc>,
    pub candidates: Vec<Candidate>,
}

/// Every slot in `feed` offered by a trust other than `own` on a day from
/// `today` on, each with the rows of `ptl` (the waiting list's PTL view)
/// it suits.
pub fn fits(
    feed: &[Published],
    own: &str,
    today: NaiveDate,
    ptl: &[Map<String, Value>],
) -> Vec<SlotFit> {
    let mut out = Vec::new();
    for published in feed.iter().filter(|p| p.publisher != own) {
        for offer in &published.offers {
            let Some(slot) = offer.slot.as_ref().filter(|s| s.date >= today) else {
                continue;
            };
            let mut candidates: Vec<Candidate> = ptl
                .iter()
                .filter(|row| unfit(slot, offer.specialty.as_deref(), row).is_none())
                .filter_map(Candidate::from_row)
                .collect();
            candidates.sort_by(Candidate::by_need);
            out.push(SlotFit {
                publisher: published.publisher.clone(),
                location: offer.location.clone(),
                specialty: offer.specialty.clone(),
                slot: slot.clone(),
                updated_at: offer.updated_at,
                candidates,
            });
        }
    }
    out.sort_by(|a, b| {
        (a.slot.date, &a.publisher, &a.slot.session_id).cmp(&(
            b.slot.date,
            &b.publisher,
            &b.slot.session_id,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn entry(id: &str, priority: &str, days: i64, minutes: Option<i64>) -> Map<String, Value> {
        row(
            json!({"eal_id": id, "specialty": "Trauma and Orthopaedics", "clock": "running",
                   "rtt_status_code": "20", "priority_type": priority,
                   "rtt_period_length": days, "rtt_weeks_waiting": days / 7,
                   "expected_theatre_minutes": minutes}),
        )
    }

    fn feed(usable: u32) -> Vec<Published> {
        let free = row(json!({"theatre_session_id": "S9", "date": "2026-12-10",
            "theatre_name": "Theatre 2", "specialty_name": "trauma and orthopaedics",
            "am_pm": "AM", "planned_start_time": "2026-12-10T08:30:00",
            "planned_end_time": "2026-12-10T12:30:00", "usable_unbooked_minutes": usable}));
        let now = Utc::now();
        vec![Published {
            publisher: "RYY".into(),
            role: "trust".into(),
            offers: offers(&[free], now),
            published_at: now,
            received_at: now,
        }]
    }

    #[test]
    fn a_slot_is_offered_to_the_most_urgent_then_the_longest_waiting_that_fit() {
        let ptl = vec![
            entry("long-p3", "P3", 400, Some(110)),
            entry("short-p2", "P2", 50, Some(60)),
            entry("longer-p2", "P2", 300, Some(90)),
            entry("too-long-a-case", "P2", 500, Some(200)),
            entry("no-duration", "P2", 600, None),
            entry("deferred", "P5", 700, Some(30)),
            {
                let mut e = entry("moved", "P2", 650, Some(30));
                e.insert("rtt_status_code".into(), json!("21"));
                e
            },
            {
                let mut e = entry("urology", "P2", 650, Some(30));
                e.insert("specialty".into(), json!("Urology"));
                e
            },
            {
                let mut e = entry("booked-sooner", "P2", 650, Some(30));
                e.insert("planned_date".into(), json!("2026-12-08"));
                e
            },
        ];
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let fits = fits(&feed(120), "RXX", today, &ptl);
        assert_eq!(fits.len(), 1);
        assert_eq!(fits[0].slot.usable_minutes, 120);
        assert_eq!(fits[0].slot.starts.as_deref(), Some("08:30"));
        let order: Vec<&str> = fits[0]
            .candidates
            .iter()
            .map(|c| c.eal_id.as_str())
            .collect();
        assert_eq!(order, ["longer-p2", "short-p2", "long-p3"]);
        // A trust is not offered its own slot, nor one already past.
        assert!(super::fits(&feed(120), "RYY", today, &ptl).is_empty());
        let later = NaiveDate::from_ymd_opt(2026, 12, 11).unwrap();
        assert!(super::fits(&feed(120), "RXX", later, &ptl).is_empty());
    }

    #[test]
    fn a_session_without_usable_minutes_is_not_offered() {
        assert!(feed(0)[0].offers.is_empty());
        let offered = &feed(45)[0].offers[0];
        assert_eq!(offered.kind, "theatre-slot");
        assert!(offered.check().is_ok());
        assert_eq!(
            offered.detail.as_deref(),
            Some("2026-12-10 AM 08:30–12:30, 45 min usable")
        );
    }

    #[test]
    fn a_case_accepted_takes_its_minutes_and_a_changeover_until_the_theatre_system_books_it() {
        let mut rows = vec![
            row(json!({"theatre_session_id": "S1", "usable_unbooked_minutes": 105})),
            row(json!({"theatre_session_id": "S2", "usable_unbooked_minutes": 60})),
            row(json!({"theatre_session_id": "S3", "usable_unbooked_minutes": 60})),
        ];
        let accepted = BTreeMap::from([
            ("S1".to_string(), vec![("PW1".to_string(), 30)]),
            ("S2".to_string(), vec![("PW2".to_string(), 30)]),
            ("S3".to_string(), vec![("PW3".to_string(), 30)]),
        ]);
        // S3's case is in the theatre system's bookings: already counted.
        let booked = BTreeSet::from([("S3".to_string(), "PW3".to_string())]);
        less_accepted(&mut rows, &accepted, &booked);
        let usable: Vec<i64> = rows
            .iter()
            .map(|r| r["usable_unbooked_minutes"].as_i64().unwrap())
            .collect();
        // 105 - 45 = 60; 60 - 45 = 15 is too short for another case.
        assert_eq!(usable, [60, 0, 60]);
    }

    #[test]
    fn a_ptl_row_moves_with_its_clock_and_patient_and_not_without_them() {
        let mut r = row(
            json!({"eal_id": "E1", "pathway_id": "PW1", "patient_id": "9434765919",
            "patient_name": "ALPHA, Test", "specialty": "Trauma and Orthopaedics",
            "rtt_period_start_date": "2025-06-02", "clock_start_code": "11",
            "priority_type": "P2", "expected_theatre_minutes": 75}),
        );
        let t = transferred(&r, "RXX", "RYY", "S9").unwrap();
        assert_eq!(t.patient.nhs_number.as_deref(), Some("9434765919"));
        assert_eq!(
            (t.patient.family.as_deref(), t.patient.given.as_deref()),
            (Some("ALPHA"), Some("Test"))
        );
        assert_eq!(t.clock_start, NaiveDate::from_ymd_opt(2025, 6, 2).unwrap());
        assert_eq!(t.clock_start_code, "11");
        assert_eq!(t.expected_theatre_minutes, Some(75));
        assert_eq!((t.to.as_str(), t.session_id.as_str()), ("RYY", "S9"));
        // A clock start the grant does not show: nothing is sent.
        r.remove("rtt_period_start_date");
        assert!(transferred(&r, "RXX", "RYY", "S9").is_none());
    }
}
