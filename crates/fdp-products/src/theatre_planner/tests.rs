//! The planner over a small trust's tables in memory, asked through the
//! platform behind the demo policy, with every date counted from today so
//! that the lists are always to come.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, Utc};
use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::{json, Value};

use crate::platform::ProductError;
use crate::testing::DemoInstance;

const PLANNER: (&str, &str) = ("Pat Planner", "theatre-scheduler");
const CONSULTANT: &str = "Ms Ada Surgeon";
const WARD: &str = "RXX01:ELEC";

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// The plan's day `n` (day 0 is tomorrow).
fn day(n: i64) -> String {
    (today() + Duration::days(1 + n)).to_string()
}

struct Trust {
    activities: Vec<Value>,
    entries: Vec<Value>,
    encounters: Vec<Value>,
    patients: Vec<Value>,
    sessions: Vec<Value>,
    bookings: Vec<Value>,
    leave: Vec<Value>,
    beds: Vec<Value>,
    roster: Vec<Value>,
    admissions: Vec<Value>,
}

impl Trust {
    fn new() -> Trust {
        Trust {
            activities: Vec::new(),
            entries: Vec::new(),
            encounters: Vec::new(),
            patients: Vec::new(),
            sessions: Vec::new(),
            bookings: Vec::new(),
            leave: Vec::new(),
            beds: Vec::new(),
            roster: Vec::new(),
            admissions: Vec::new(),
        }
    }

    /// An entry waited `weeks`, for `minutes`, its assessment `poa`
    /// (`fit`, `none`, …), a day case unless `nights`.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        mut self,
        id: &str,
        priority: &str,
        weeks: i64,
        minutes: i64,
        poa: &str,
        inpatient: bool,
        sex: &str,
    ) -> Self {
        let start = (today() - Duration::weeks(weeks)).to_string();
        let decided = (today() - Duration::weeks(weeks.min(3))).to_string();
        self.activities.push(json!({"activity_id": format!("{id}-0"), "pathway_id": id,
            "patient_id": format!("P-{id}"), "activity_date": start, "activity_sequence": 1,
            "rtt_status_code": "10"}));
        self.entries.push(json!({"eal_id": id, "pathway_id": id, "patient_id": format!("P-{id}"),
            "patient_name": format!("Patient {id}"), "priority_type": priority,
            "decided_to_admit_date": decided, "rtt_period_start_date": start}));
        let mut enc = json!({"encounter_id": id, "eal_id": id, "specialty_name": "General Surgery",
            "primary_consultant_name": CONSULTANT, "intended_primary_procedure_code": "T201",
            "estimated_total_theatre_time": minutes,
            "intended_management_code": if inpatient { "1" } else { "2" }});
        if poa == "fit" {
            enc["last_poa_outcome"] = json!("fit");
            enc["last_poa_expiry_date"] = json!(day(80));
        }
        self.encounters.push(enc);
        self.patients.push(json!({"person_id": format!("P-{id}"), "sex": sex,
            "date_of_birth": "1960-05-01"}));
        self
    }

    fn list(mut self, id: &str, on: i64, minutes: i64) -> Self {
        self.sessions.push(json!({"theatre_session_id": id, "date": day(on), "am_pm": "AM",
            "theatre_name": "Main Theatre 1", "specialty_name": "General Surgery",
            "primary_consultant_id": "C1", "primary_consultant_name": CONSULTANT,
            "primary_anaesthetist_id": "A1", "planned_duration_minutes": minutes,
            "status": "provisional", "cancelled": false}));
        self
    }

    /// A list of another consultant's, on day `on`.
    fn list_of(mut self, id: &str, on: i64, minutes: i64, code: &str, name: &str) -> Self {
        self = self.list(id, on, minutes);
        let last = self.sessions.last_mut().unwrap();
        last["primary_consultant_id"] = json!(code);
        last["primary_consultant_name"] = json!(name);
        self
    }

    fn booked(mut self, list: &str, minutes: i64) -> Self {
        self.bookings.push(json!({"theatre_booking_id": format!("B-{list}-{}", self.bookings.len()),
            "theatre_session_id": list, "expected_duration": minutes, "booking_cancelled": false}));
        self
    }

    fn away(mut self, who: &str, from: i64, to: i64) -> Self {
        self.leave.push(json!({"id": format!("L{}", self.leave.len()), "care_professional_id": who,
            "leave_start_time": format!("{}T08:00:00Z", day(from)),
            "leave_end_time": format!("{}T18:00:00Z", day(to)), "leave_state": "approved"}));
        self
    }

    fn bay(mut self, bay: &str, beds: usize) -> Self {
        for b in 0..beds {
            self.beds.push(json!({"bed_id": format!("{bay}-{b}"), "ward_id": WARD, "bay": bay,
                "status": "open", "bed_type": "general"}));
        }
        self
    }

    /// A patient of `sex` in bed `bed` of `bay` now, expected to leave on
    /// the plan's day `leaves` (none recorded if `None`).
    fn in_bed(mut self, bay: &str, bed: usize, sex: &str, leaves: Option<i64>) -> Self {
        let id = format!("INPT-{bay}-{bed}");
        let row = self
            .beds
            .iter_mut()
            .find(|b| b["bed_id"] == json!(format!("{bay}-{bed}")))
            .expect("a bed of the bay");
        row["patient_id"] = json!(id);
        row["admission_id"] = json!(format!("ADM-{id}"));
        self.patients
            .push(json!({"person_id": id, "sex": sex, "date_of_birth": "1950-01-01"}));
        let mut admission = json!({"admission_id": format!("ADM-{id}"), "patient_id": id});
        if let Some(d) = leaves {
            admission["estimated_discharge_date"] = json!(day(d));
        }
        self.admissions.push(admission);
        self
    }

    /// A registered nurse on `ward`, a long day and a night on each of
    /// the plan's days `days` but `except`.
    fn rostered(mut self, nurse: &str, ward: &str, days: std::ops::Range<i64>, except: &[i64]) -> Self {
        for n in days.filter(|n| !except.contains(n)) {
            for duty in ["long day", "night"] {
                self.roster.push(json!({"staff_shift_id": format!("{nurse}-{n}-{duty}"),
                    "staff_id": nurse, "ward_id": ward, "shift_date": day(n), "shift_type": duty,
                    "staff_group": "Nursing and Midwifery Registered", "role": "Staff Nurse"}));
            }
        }
        self
    }

    fn instance(self) -> DemoInstance {
        DemoInstance::new(
            MemoryTables::new()
                .with_rows("pathway_activity", &self.activities)
                .unwrap()
                .with_rows("eal_entry", &self.entries)
                .unwrap()
                .with_rows("encounter", &self.encounters)
                .unwrap()
                .with_rows("patient", &self.patients)
                .unwrap()
                .with_rows("theatre_session", &self.sessions)
                .unwrap()
                .with_rows("theatre_booking", &self.bookings)
                .unwrap()
                .with_rows("staff_unavailability", &self.leave)
                .unwrap()
                .with_rows("bed", &self.beds)
                .unwrap()
                .with_rows("staff_shift", &self.roster)
                .unwrap()
                .with_rows("admission", &self.admissions)
                .unwrap(),
        )
    }
}

/// A week of lists with a half-filled one the first fit leaves half empty,
/// a locked list, a list lost to leave, patients not ready, and a bay.
fn trust() -> DemoInstance {
    Trust::new()
        .entry("A", "P4", 30, 150, "fit", false, "female")
        .entry("B", "P4", 20, 120, "fit", false, "male")
        .entry("C", "P4", 19, 100, "fit", false, "female")
        .entry("NOPOA", "P4", 40, 60, "none", false, "male")
        .entry("DEFER", "P5", 45, 60, "fit", false, "female")
        .entry("IN", "P3", 10, 60, "fit", true, "female")
        .list("LOCKED", 3, 240)
        .booked("LOCKED", 200)
        .list("S15", 15, 240)
        .list("AWAY", 16, 240)
        .list("S22", 22, 225)
        .away("C1", 16, 16)
        .bay("Bay A", 2)
        .instance()
}

async fn view(
    i: &DemoInstance,
    view: &str,
    extra: &[(&str, &str)],
) -> Result<Vec<BTreeMap<String, Value>>, ProductError> {
    let as_at = today().to_string();
    let mut given = vec![("as_at", as_at.as_str()), ("wards", WARD), ("moves", "60000")];
    given.extend_from_slice(extra);
    let out = i
        .view("theatre-planner", PLANNER.1, Purpose::DirectCare, "ui", view, &given)
        .await?;
    Ok(out
        .rows
        .iter()
        .map(|r| out.columns.iter().zip(r).map(|(c, v)| (c.name.clone(), v.clone())).collect())
        .collect())
}

/// The comparison's row for `name`.
fn measure(compare: &[BTreeMap<String, Value>], name: &str) -> BTreeMap<String, Value> {
    compare
        .iter()
        .find(|r| r["measure"] == json!(name))
        .unwrap_or_else(|| panic!("no measure {name:?} in {compare:?}"))
        .clone()
}

fn by_entry(rows: &[BTreeMap<String, Value>]) -> BTreeMap<String, BTreeMap<String, Value>> {
    rows.iter()
        .map(|r| (r["eal_id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[tokio::test]
async fn the_proposal_fills_the_lists_by_the_rules_and_says_why_for_everyone() {
    let i = trust();
    let rows = by_entry(&view(&i, "proposal", &[]).await.unwrap());
    // B and C fill the first open list (120 + 15 + 100 <= 240 + 15); A,
    // the longest waiter, and the P3 inpatient take the next (150 + 15 +
    // 60 <= 225 + 15).
    assert_eq!(rows["B"]["theatre_session_id"], json!("S15"), "{:?}", rows["B"]);
    assert_eq!(rows["C"]["theatre_session_id"], json!("S15"));
    assert_eq!(rows["A"]["theatre_session_id"], json!("S22"));
    assert_eq!(rows["IN"]["theatre_session_id"], json!("S22"));
    assert_eq!(rows["A"]["status"], json!("proposed"));
    assert!(rows["A"]["reason"].as_str().unwrap().starts_with("P4, 3"), "{:?}", rows["A"]["reason"]);
    // The inpatient goes into the bay of the ward named.
    assert_eq!(rows["IN"]["bay"], json!(format!("{WARD} Bay A")), "{:?}", rows["IN"]);
    assert!(rows["IN"]["reason"].as_str().unwrap().contains("within the limit"));
    // Nobody onto the locked list or the list lost to leave.
    for r in rows.values() {
        assert_ne!(r["theatre_session_id"], json!("LOCKED"));
        assert_ne!(r["theatre_session_id"], json!("AWAY"));
    }
    assert_eq!(rows["NOPOA"]["status"], json!("not booked"));
    assert!(rows["NOPOA"]["reason"].as_str().unwrap().contains("no pre-operative assessment"));
    assert!(rows["DEFER"]["reason"].as_str().unwrap().contains("deferred"));
    assert_eq!(rows["A"]["weeks_waited"], json!(30));
    assert_eq!(rows["A"]["patient_name"], json!("Patient A"));

    // Beside booking by hand: first fit puts the P3 inpatient and A on
    // S15, B on S22, and C no longer fits.
    let compare = view(&i, "compare", &[]).await.unwrap();
    let measure = |name: &str| measure(&compare, name);
    let booked = measure("booked minutes");
    // The locked list's 200 minutes booked count on both sides.
    assert_eq!(booked["baseline"], json!(530), "{booked:?}");
    assert_eq!(booked["proposal"], json!(630), "{booked:?}");
    assert_eq!(measure("patients treated")["proposal"], json!(4));
    assert_eq!(measure("patients treated")["baseline"], json!(3));
    assert_eq!(booked["better"], json!("proposal"));
    assert_eq!(measure("hard rules broken")["proposal"], json!(0));
    assert_eq!(measure("hard rules broken")["baseline"], json!(0));
    assert_eq!(measure("lists")["proposal"], json!(3), "the locked list runs; the one lost to leave does not");
    // No roster: nursing is not measured, and not shown as none.
    assert_eq!(measure("ward shifts short of safe nursing")["proposal"], Value::Null);
}

/// The ward's roster has no registered nurse on the day of S22, the first
/// list the inpatient could take; a nurse rostered that day on another
/// ward does not cover it. Booking by hand takes S22 all the same; the
/// proposal waits for S29, when the ward is staffed.
#[tokio::test]
async fn the_ward_roster_keeps_inpatients_off_days_no_nurse_is_on() {
    let i = Trust::new()
        .entry("IN", "P3", 10, 60, "fit", true, "female")
        .list("S22", 22, 240)
        .list("S29", 29, 240)
        .bay("Bay A", 2)
        .rostered("RN1", WARD, 0..42, &[22])
        .rostered("RN2", "RXX01:OTHER", 20..25, &[])
        .instance();
    let rows = by_entry(&view(&i, "proposal", &[]).await.unwrap());
    assert_eq!(rows["IN"]["theatre_session_id"], json!("S29"), "{:?}", rows["IN"]);
    let compare = view(&i, "compare", &[]).await.unwrap();
    let short = measure(&compare, "ward shifts short of safe nursing");
    // The early, the late and the night of day 22.
    assert_eq!(short["baseline"], json!(3), "{short:?}");
    assert_eq!(short["proposal"], json!(0), "{short:?}");
}

#[tokio::test]
async fn the_planner_accepts_from_the_theatre_week_and_the_request_is_kept_and_audited() {
    let i = trust();
    let week = view(&i, "week", &[("week", &day(15))]).await.unwrap();
    let lists: Vec<&str> = week.iter().map(|r| r["theatre_session_id"].as_str().unwrap()).collect();
    assert!(lists.iter().all(|l| *l == "S15" || *l == "S22"), "{lists:?}");
    let b = week.iter().find(|r| r["eal_id"] == json!("B")).unwrap();
    let accepted = i
        .act("theatre-planner", "accept", "B", PLANNER, Purpose::DirectCare,
             json!({"theatre_session_id": b["theatre_session_id"], "reason": b["reason"]}))
        .await
        .unwrap();
    assert_eq!(accepted["status"], json!("requested"));
    assert_eq!(accepted["theatre_session_id"], json!("S15"));
    assert_eq!(*i.held.sources.lock().unwrap(), [fdp_fhir::booking_request::SOURCE]);
    let changes: Vec<_> = i.audit().into_iter().filter(|e| e.kind == "change" && e.outcome == "ok").collect();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].patients, ["P-B"]);
    assert_eq!(changes[0].principal, "Pat Planner");

    // The next proposal holds B on the list, as requested.
    let rows = by_entry(&view(&i, "proposal", &[]).await.unwrap());
    assert_eq!(rows["B"]["status"], json!("requested"));
    assert_eq!(rows["B"]["theatre_session_id"], json!("S15"));
    // Once is enough.
    let again = i
        .act("theatre-planner", "accept", "B", PLANNER, Purpose::DirectCare,
             json!({"theatre_session_id": "S15"}))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("a booking request is already open"), "{again}");
}

#[tokio::test]
async fn an_acceptance_that_breaks_a_rule_is_refused_by_name() {
    let i = trust();
    let accept = |entry: &'static str, list: &'static str| {
        let i = &i;
        async move {
            i.act("theatre-planner", "accept", entry, PLANNER, Purpose::DirectCare,
                  json!({"theatre_session_id": list}))
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert!(accept("A", "LOCKED").await.contains("locked"));
    assert!(accept("A", "AWAY").await.contains("on leave"));
    assert!(accept("NOPOA", "S15").await.contains("pre-operative"));
    assert!(accept("DEFER", "S15").await.contains("deferred"));
    assert!(accept("NOBODY", "S15").await.contains("no entry NOBODY"));
    assert!(accept("A", "NOLIST").await.contains("no list NOLIST"));
    // A on S15, then B and C cannot both follow.
    i.act("theatre-planner", "accept", "A", PLANNER, Purpose::DirectCare, json!({"theatre_session_id": "S15"}))
        .await
        .unwrap();
    let full = accept("B", "S15").await;
    assert!(full.contains("minutes free"), "{full}");
    // Only the one acceptance was kept.
    assert_eq!(i.held.sources.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn outside_direct_care_or_without_the_grant_the_planner_is_refused() {
    let i = trust();
    let as_at = today().to_string();
    for (role, purpose) in [
        ("theatre-scheduler", Purpose::Operations),
        ("analyst", Purpose::Operations),
        ("analyst", Purpose::Research),
    ] {
        let e = i
            .view("theatre-planner", role, purpose, "ui", "proposal", &[("as_at", &as_at)])
            .await
            .unwrap_err();
        assert!(e.is_refusal(), "{role} {purpose:?}: {e}");
    }
    // A bed manager has no grant to book.
    let e = i
        .act("theatre-planner", "accept", "A", ("Bo Beds", "bed-manager"), Purpose::DirectCare,
             json!({"theatre_session_id": "S15"}))
        .await
        .unwrap_err();
    assert!(e.is_refusal(), "{e}");
    assert!(i.held.sources.lock().unwrap().is_empty());
}

#[tokio::test]
async fn parameters_out_of_range_are_refused_by_name() {
    let i = trust();
    for (name, value) in [("weeks", "0"), ("weeks", "60"), ("moves", "-1"), ("moves", "999999999")] {
        let e = view(&i, "proposal", &[(name, value)]).await.unwrap_err();
        assert!(matches!(&e, ProductError::Param { name: n, .. } if n == name), "{name}={value}: {e}");
    }
    let e = view(&i, "week", &[("week", "next monday")]).await.unwrap_err();
    assert!(matches!(&e, ProductError::Param { name, .. } if name == "week"), "{e}");
    // A ward that tries to be SQL is only a ward nobody has: the
    // inpatient is left waiting for want of a bay, and nothing else moves.
    let as_at = today().to_string();
    let out = i
        .view(
            "theatre-planner",
            PLANNER.1,
            Purpose::DirectCare,
            "ui",
            "proposal",
            &[("as_at", &as_at), ("wards", "x') OR 1=1 --,RXX01:ELEC' --"), ("moves", "1000")],
        )
        .await
        .unwrap();
    let at = |n: &str| out.columns.iter().position(|c| c.name == n).unwrap();
    let inpatient = out.rows.iter().find(|r| r[at("eal_id")] == json!("IN")).unwrap();
    assert_eq!(inpatient[at("status")], json!("not booked"));
    assert!(inpatient[at("reason")].as_str().unwrap().contains("no elective ward's bays"), "{inpatient:?}");
}

/// Two men in the bay's two beds now, expected home on day 25: the woman
/// who needs a bed after S22 cannot have one until they leave, so she
/// waits for S29. The comparison says who is in the beds.
#[tokio::test]
async fn the_patients_in_the_beds_now_keep_them_until_their_expected_discharge() {
    let trust = || {
        Trust::new()
            .entry("IN", "P3", 10, 60, "fit", true, "female")
            .list("S22", 22, 240)
            .list("S29", 29, 240)
            .bay("Bay A", 2)
    };
    let rows = by_entry(&view(&trust().instance(), "proposal", &[]).await.unwrap());
    assert_eq!(rows["IN"]["theatre_session_id"], json!("S22"), "{:?}", rows["IN"]);

    let i = trust()
        .in_bed("Bay A", 0, "male", Some(25))
        .in_bed("Bay A", 1, "male", Some(25))
        .instance();
    let rows = by_entry(&view(&i, "proposal", &[]).await.unwrap());
    assert_eq!(rows["IN"]["theatre_session_id"], json!("S29"), "{:?}", rows["IN"]);
    assert_eq!(rows["IN"]["bay"], json!(format!("{WARD} Bay A")));
    let compare = view(&i, "compare", &[]).await.unwrap();
    assert_eq!(measure(&compare, "inpatients in the wards' beds now")["proposal"], json!(2));
    assert_eq!(measure(&compare, "of them, no expected discharge date")["proposal"], json!(0));
    assert_eq!(measure(&compare, "hard rules broken")["proposal"], json!(0));

    // With no date recorded they are taken to stay through the locked
    // fortnight only, so S22 is hers again.
    let i = trust()
        .in_bed("Bay A", 0, "male", None)
        .in_bed("Bay A", 1, "male", None)
        .instance();
    let rows = by_entry(&view(&i, "proposal", &[]).await.unwrap());
    assert_eq!(rows["IN"]["theatre_session_id"], json!("S22"), "{:?}", rows["IN"]);
    let compare = view(&i, "compare", &[]).await.unwrap();
    let missing = measure(&compare, "of them, no expected discharge date");
    assert_eq!(missing["proposal"], json!(2));
}

/// A token asking for plans in a loop: one person gets one search at a
/// time, turned away while theirs runs; someone else waits their turn; and
/// a search keeps its turn until it ends, even when the request that
/// started it has been dropped.
#[tokio::test]
async fn plans_are_made_one_at_a_time_and_one_per_person() {
    let i = trust();
    let session = |name: &str| {
        let mut req = crate::testing::request(PLANNER.1, Purpose::DirectCare, "ui");
        req.principal.name = name.into();
        let i = &i;
        async move { i.governance().session(&i.tables_now(), req).await.unwrap() }
    };
    let (pat, sam) = (session("Pat Planner").await, session("Sam Scheduler").await);
    let searches = super::Searches::default();

    let first = searches.take_turn(&pat).await.unwrap();
    let again = searches.take_turn(&pat).await.err().unwrap();
    assert!(matches!(&again, ProductError::Busy(m) if m.contains("already being made")), "{again}");
    // Sam waits while Pat's search runs.
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(200), searches.take_turn(&sam)).await;
    assert!(waiting.is_err(), "Sam went ahead of Pat's search");

    // Pat's request is dropped, but the search it started runs on, and
    // holds the turn until it ends.
    let (ended_tx, ended_rx) = std::sync::mpsc::channel();
    let search = tokio::task::spawn_blocking(move || {
        let _held = first;
        std::thread::sleep(std::time::Duration::from_millis(300));
        ended_tx.send(()).unwrap();
    });
    assert!(matches!(searches.take_turn(&pat).await, Err(ProductError::Busy(_))));
    let sams = searches.take_turn(&sam).await.unwrap();
    assert!(ended_rx.try_recv().is_ok(), "Sam's turn came before Pat's search ended");
    search.await.unwrap();
    drop(sams);
    // And Pat may ask again.
    searches.take_turn(&pat).await.unwrap();
}

/// Accepting a patient onto a list of a consultant who is not theirs is
/// refused by name, however open the list and however free its minutes,
/// and nothing is kept.
#[tokio::test]
async fn an_acceptance_onto_another_consultants_list_is_refused() {
    let i = Trust::new()
        .entry("A", "P4", 30, 60, "fit", false, "female")
        .list_of("OTHER", 15, 240, "C2", "Mr Ben Other")
        .list("MINE", 22, 240)
        .instance();
    let refused = i
        .act("theatre-planner", "accept", "A", PLANNER, Purpose::DirectCare,
             json!({"theatre_session_id": "OTHER"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("Mr Ben Other") && refused.contains(CONSULTANT), "{refused}");
    assert!(i.held.sources.lock().unwrap().is_empty());
    // Nor does the proposal put her there.
    let rows = by_entry(&view(&i, "proposal", &[]).await.unwrap());
    assert_eq!(rows["A"]["theatre_session_id"], json!("MINE"), "{:?}", rows["A"]);
}
