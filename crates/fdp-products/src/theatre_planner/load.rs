//! The plan as the caller's governed session shows the tables: the PTL
//! (computed as the waiting list computes it), each entry's planned
//! procedure and pre-operative assessment, the patients' sex and age, the
//! theatre lists to come with what is booked on them and the booking
//! requests already accepted, approved leave, the bays of the wards
//! named with who is in their beds now, and those wards' registered nurses
//! from the e-roster.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use fdp_govern::GovernedSession;
use fdp_schedule::plan::{
    self, Bay, Leave, Listed, Plan, PreOp, Priority, RosteredNurse, Session, Sex, Shift,
};
use serde_json::Value;

use crate::platform::{ParamValue, ProductError};
use crate::query_rows::{date, number, rows, text};
use crate::waiting_list::ptl_query;

/// Nights after the operation for an inpatient (intended management 1),
/// by the procedure's OPCS-4 category: joint replacements stay longest.
fn nights_for(procedure: &str) -> u32 {
    match procedure.get(..3) {
        Some("W37" | "W38" | "W39" | "W40" | "W41" | "W42" | "W43") => 3,
        Some("Q07" | "Q08" | "J18" | "M61" | "M65") => 2,
        _ => 1,
    }
}

/// The e-roster's staff group of registered nurses and midwives (NHS
/// Occupation Codes' "Nursing and Midwifery Registered").
const REGISTERED: &str = "Nursing and Midwifery Registered";

/// A PTL entry the plan cannot hold, and why: still shown to the planner.
#[derive(Debug, Clone)]
pub struct Unplannable {
    pub eal_id: String,
    pub reason: String,
}

/// What the planner's views are built from.
pub struct Loaded {
    pub plan: Plan,
    pub unplannable: Vec<Unplannable>,
    /// Per PTL entry in the plan: patient id and name (as the session
    /// shows them), weeks waited, breach date, priority limit.
    pub shown: HashMap<String, Value>,
    /// Entries on a list through a booking request already accepted.
    pub requested: HashMap<String, String>,
    /// Consultant names by the code the sessions and leave use.
    pub consultant_code: HashMap<String, String>,
    pub inpatients: Inpatients,
}

/// The patients in the wards' beds when the plan is made.
#[derive(Debug, Clone, Default)]
pub struct Inpatients {
    pub in_beds: usize,
    /// Of them, with no expected discharge date recorded: taken to stay
    /// through the locked fortnight.
    pub no_discharge_date: usize,
    /// Of them, with no sex recorded and alone in their bay: their bed is
    /// taken out of the bay instead.
    pub bed_taken_out: usize,
}

fn instant(row: &Value, column: &str) -> Option<NaiveDateTime> {
    let t = text(row, column)?;
    let t = t.trim_end_matches('Z').replace('T', " ");
    NaiveDateTime::parse_from_str(t.get(..19)?, "%Y-%m-%d %H:%M:%S")
        .ok()
        .or_else(|| date(row, column).and_then(|d| d.and_hms_opt(0, 0, 0)))
}

/// Each patient's sex and date of birth, one row a patient, as `pt`.
const PATIENT_SEX_AND_BIRTH: &str = "(SELECT person_id, max(sex) AS sex, \
     max(date_of_birth) AS date_of_birth FROM patient GROUP BY person_id) pt";

/// The row's `sex`, where recorded as female or male.
fn sex(row: &Value) -> Option<Sex> {
    match text(row, "sex").as_deref() {
        Some("female") => Some(Sex::Female),
        Some("male") => Some(Sex::Male),
        _ => None,
    }
}

/// Whole years from the row's `date_of_birth` to `on`; 50 where not
/// recorded (the age mix of a bay is a preference, not a rule).
fn age(row: &Value, on: NaiveDate) -> u32 {
    date(row, "date_of_birth")
        .map(|b| ((on - b).num_days() / 365).clamp(0, 120) as u32)
        .unwrap_or(50)
}

fn literal(d: NaiveDate) -> String {
    ParamValue::Date(d).sql_literal()
}

/// Read the plan for the `weeks` from the day after `as_at`, with the bays
/// of `wards`.
pub async fn load(
    session: &GovernedSession,
    as_at: NaiveDate,
    weeks: u32,
    wards: &[String],
) -> Result<Loaded, ProductError> {
    let start = as_at + Duration::days(1);
    let end = start + Duration::days(7 * i64::from(weeks));
    let names = session
        .visible_columns("eal_entry")
        .await
        .is_some_and(|c| c.iter().any(|c| c == "patient_name"));
    let ptl = ptl_query(&literal(as_at), names);
    let entries = rows(
        session,
        &format!(
            "SELECT p.eal_id, p.patient_id, p.patient_name, p.specialty, p.consultant, \
                    p.procedure_code, p.expected_theatre_minutes, p.priority_type, \
                    p.decided_to_admit_date, p.planned_date, p.rtt_period_start_date, p.clock, \
                    n.intended_management_code, n.last_poa_outcome, n.last_poa_expiry_date, \
                    n.last_poa_booking_status, n.last_poa_scheduled_or_attended_datetime, \
                    pt.sex, pt.date_of_birth \
             FROM ({ptl}) p \
             LEFT JOIN (SELECT eal_id, max(intended_management_code) AS intended_management_code, \
                               max(last_poa_outcome) AS last_poa_outcome, \
                               max(last_poa_expiry_date) AS last_poa_expiry_date, \
                               max(last_poa_booking_status) AS last_poa_booking_status, \
                               max(last_poa_scheduled_or_attended_datetime) AS last_poa_scheduled_or_attended_datetime \
                        FROM encounter GROUP BY eal_id) n ON n.eal_id = p.eal_id \
             LEFT JOIN {PATIENT_SEX_AND_BIRTH} ON pt.person_id = p.patient_id \
             ORDER BY p.rtt_period_start_date, p.eal_id"
        ),
    )
    .await?;
    let sessions = rows(
        session,
        &format!(
            "SELECT theatre_session_id, date, am_pm, theatre_name, specialty_name, \
                    primary_consultant_id, primary_consultant_name, primary_anaesthetist_id, \
                    planned_duration_minutes, status, cancelled \
             FROM theatre_session WHERE date >= {} AND date < {} \
             ORDER BY date, am_pm, theatre_name, theatre_session_id",
            literal(start),
            literal(end)
        ),
    )
    .await?;
    let bookings = rows(
        session,
        &format!(
            "SELECT b.theatre_session_id, b.eal_id, b.expected_duration \
             FROM theatre_booking b JOIN theatre_session s \
               ON s.theatre_session_id = b.theatre_session_id \
             WHERE NOT coalesce(b.booking_cancelled, false) AND s.date >= {} AND s.date < {}",
            literal(start),
            literal(end)
        ),
    )
    .await?;
    let requests = rows(
        session,
        "SELECT encounter_id, theatre_session_id FROM booking_request \
         WHERE status = 'requested' AND task_type = 'Theatre booking'",
    )
    .await?;
    let leave_rows = rows(
        session,
        &format!(
            "SELECT care_professional_id, leave_start_time, leave_end_time \
             FROM staff_unavailability WHERE leave_state = 'approved' \
               AND CAST(leave_end_time AS DATE) >= {} AND CAST(leave_start_time AS DATE) < {}",
            literal(start),
            literal(end)
        ),
    )
    .await?;
    let beds = if wards.is_empty() {
        Vec::new()
    } else {
        rows(
            session,
            &format!(
                "SELECT ward_id, bay, count(*) AS beds FROM bed \
                 WHERE ward_id IN {} AND coalesce(status, 'open') <> 'closed' \
                   AND coalesce(bed_type, 'general') IN ('general', 'side_room') \
                 GROUP BY ward_id, bay ORDER BY ward_id, bay",
                ParamValue::TextList(wards.to_vec()).sql_literal()
            ),
        )
        .await?
    };

    // Who is in the wards' beds now, and until when: the expected
    // discharge date the ward recorded (discharge readiness), else the
    // admission's estimate, where the caller may read them.
    let occupied_beds = if wards.is_empty() {
        Vec::new()
    } else {
        let (mut joins, mut leaves) = (String::new(), Vec::new());
        // In order of preference: the ward's own, then the admission's.
        for (table, column, alias) in [
            ("discharge_readiness", "expected_discharge_date", "r"),
            ("admission", "estimated_discharge_date", "a"),
        ] {
            if session.has_table(table) {
                joins.push_str(&format!(
                    " LEFT JOIN (SELECT admission_id, max({column}) AS leaves \
                                 FROM {table} GROUP BY admission_id) {alias} \
                       ON {alias}.admission_id = b.admission_id"
                ));
                leaves.push(format!("{alias}.leaves"));
            }
        }
        leaves.push("CAST(NULL AS DATE)".into());
        rows(
            session,
            &format!(
                "SELECT b.ward_id, b.bay, pt.sex, pt.date_of_birth, coalesce({}) AS leaves \
                 FROM bed b \
                 LEFT JOIN {PATIENT_SEX_AND_BIRTH} ON pt.person_id = b.patient_id{joins} \
                 WHERE b.ward_id IN {} AND b.patient_id IS NOT NULL \
                   AND coalesce(b.status, 'open') <> 'closed' \
                   AND coalesce(b.bed_type, 'general') IN ('general', 'side_room')",
                leaves.join(", "),
                ParamValue::TextList(wards.to_vec()).sql_literal()
            ),
        )
        .await?
    };

    // The wards' registered nurses, shift by shift, from the e-roster; a
    // long day is an early and a late, and a twilight (support workers)
    // is no ward shift of its own.
    let duties = if wards.is_empty() {
        Vec::new()
    } else {
        rows(
            session,
            &format!(
                "SELECT staff_id, ward_id, shift_date, shift_type FROM staff_shift \
                 WHERE ward_id IN {} AND staff_group = '{REGISTERED}' \
                   AND shift_date >= {} AND shift_date < {} \
                 ORDER BY staff_id, shift_date",
                ParamValue::TextList(wards.to_vec()).sql_literal(),
                literal(start),
                literal(end)
            ),
        )
        .await?
    };

    // Lists, named by their consultant's name as the PTL names them.
    let mut consultant_code = HashMap::new();
    let mut plan_sessions = Vec::new();
    for s in &sessions {
        let Some(id) = text(s, "theatre_session_id") else {
            continue;
        };
        let Some(day) = date(s, "date") else { continue };
        let name = text(s, "primary_consultant_name");
        if let (Some(code), Some(name)) = (text(s, "primary_consultant_id"), &name) {
            consultant_code.insert(code, name.clone());
        }
        let status = text(s, "status").unwrap_or_default();
        let cancelled = matches!(status.as_str(), "cancelled" | "released")
            || s.get("cancelled")
                .is_some_and(|c| c == &Value::Bool(true) || c == "true");
        plan_sessions.push(Session {
            id,
            theatre: text(s, "theatre_name").unwrap_or_default(),
            date: day,
            am_pm: text(s, "am_pm").unwrap_or_default(),
            specialty: text(s, "specialty_name").unwrap_or_default(),
            consultant: name,
            anaesthetist: text(s, "primary_anaesthetist_id"),
            minutes: number(s, "planned_duration_minutes").unwrap_or(0).max(0),
            cancelled,
            booked_minutes: Vec::new(),
        });
    }
    let leave = leave_rows
        .iter()
        .filter_map(|l| {
            let who = text(l, "care_professional_id")?;
            Some(Leave {
                person: consultant_code.get(&who).cloned().unwrap_or(who),
                from: instant(l, "leave_start_time")?.date(),
                to: instant(l, "leave_end_time")?.date(),
            })
        })
        .collect();

    // Bookings: the PTL's own patients are on their list; the minutes of
    // anyone else's booking are taken from it.
    let listed_ids: std::collections::HashSet<String> =
        entries.iter().filter_map(|e| text(e, "eal_id")).collect();
    let mut booked_on: HashMap<String, String> = HashMap::new();
    let session_at: HashMap<String, usize> = plan_sessions
        .iter()
        .enumerate()
        .map(|(k, s)| (s.id.clone(), k))
        .collect();
    for b in &bookings {
        let Some(sid) = text(b, "theatre_session_id") else {
            continue;
        };
        let Some(&k) = session_at.get(&sid) else {
            continue;
        };
        match text(b, "eal_id") {
            Some(eal) if listed_ids.contains(&eal) => {
                booked_on.insert(eal, sid);
            }
            _ => plan_sessions[k]
                .booked_minutes
                .push(number(b, "expected_duration").unwrap_or(0).max(0)),
        }
    }
    let mut requested = HashMap::new();
    for r in &requests {
        if let (Some(eal), Some(sid)) = (text(r, "encounter_id"), text(r, "theatre_session_id")) {
            if session_at.contains_key(&sid) && !booked_on.contains_key(&eal) {
                booked_on.insert(eal.clone(), sid.clone());
                requested.insert(eal, sid);
            }
        }
    }

    let mut bays: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for b in &beds {
        let ward = text(b, "ward_id").unwrap_or_default();
        let bay = text(b, "bay").unwrap_or_else(|| "beds".into());
        bays.entry(format!("{ward} {bay}"))
            .or_insert_with(|| (ward, 0))
            .1 += number(b, "beds").unwrap_or(0).max(0) as usize;
    }
    // Each inpatient stays in their bay until their expected discharge;
    // with none recorded, through the locked fortnight (no list inside it
    // takes a new booking, so the guess moves nobody's date, only the beds
    // of bookings already made). Where the sex is not recorded the bay's
    // others' is theirs (a bay holds one sex); alone, their bed is taken
    // out of the bay for the weeks planned.
    let mut inpatients = Inpatients::default();
    let mut in_bay: BTreeMap<String, Vec<(Option<Sex>, u32, u32)>> = BTreeMap::new();
    for o in &occupied_beds {
        let ward = text(o, "ward_id").unwrap_or_default();
        let bay = text(o, "bay").unwrap_or_else(|| "beds".into());
        let nights = match date(o, "leaves") {
            Some(leaves) => (leaves - start).num_days().clamp(0, 7 * i64::from(weeks)) as u32,
            None => {
                inpatients.no_discharge_date += 1;
                plan::LOCKED_DAYS as u32
            }
        };
        inpatients.in_beds += 1;
        if nights == 0 {
            continue;
        }
        let (sex, age) = (sex(o), age(o, as_at));
        in_bay
            .entry(format!("{ward} {bay}"))
            .or_default()
            .push((sex, age, nights));
    }
    let mut occupied: BTreeMap<String, Vec<(Sex, u32, u32)>> = BTreeMap::new();
    for (key, people) in in_bay {
        let known = people.iter().find_map(|p| p.0);
        let Some((_, beds)) = bays.get_mut(&key) else {
            continue;
        };
        for (sex, age, nights) in people {
            match sex.or(known) {
                Some(sex) => occupied.entry(key.clone()).or_default().push((sex, age, nights)),
                None => {
                    *beds = beds.saturating_sub(1);
                    inpatients.bed_taken_out += 1;
                }
            }
        }
    }

    let mut nurses: BTreeMap<(String, String), RosteredNurse> = BTreeMap::new();
    for d in &duties {
        let (Some(id), Some(ward), Some(day)) =
            (text(d, "staff_id"), text(d, "ward_id"), date(d, "shift_date"))
        else {
            continue;
        };
        let shifts: &[Shift] = match text(d, "shift_type").as_deref() {
            Some("early") => &[Shift::Early],
            Some("late") => &[Shift::Late],
            Some("long day") => &[Shift::Early, Shift::Late],
            Some("night") => &[Shift::Night],
            _ => &[],
        };
        let nurse = nurses
            .entry((ward.clone(), id.clone()))
            .or_insert_with(|| RosteredNurse {
                id,
                ward,
                shifts: Vec::new(),
            });
        nurse.shifts.extend(shifts.iter().map(|&s| (day, s)));
    }

    let mut listed = Vec::new();
    let mut unplannable = Vec::new();
    let mut shown = HashMap::new();
    for e in &entries {
        let Some(eal_id) = text(e, "eal_id") else {
            continue;
        };
        let mut refuse = |why: String| {
            unplannable.push(Unplannable {
                eal_id: eal_id.clone(),
                reason: why,
            })
        };
        if text(e, "clock").as_deref() != Some("running") {
            refuse("no RTT clock running: for the validation team, not for booking".into());
            continue;
        }
        let Some(consultant) = text(e, "consultant") else {
            refuse("no consultant recorded".into());
            continue;
        };
        let priority_text = text(e, "priority_type").unwrap_or_default();
        let Some(priority) = Priority::parse(&priority_text) else {
            refuse(format!(
                "clinical priority {priority_text:?} is not one of P1a, P1b, P2, P3, P4, P5, P6"
            ));
            continue;
        };
        let Some(minutes) = number(e, "expected_theatre_minutes").filter(|m| (1..=1440).contains(m))
        else {
            refuse("no expected minutes in theatre recorded for the planned procedure".into());
            continue;
        };
        let Some(clock_start) = date(e, "rtt_period_start_date") else {
            refuse("no clock start".into());
            continue;
        };
        let decided = date(e, "decided_to_admit_date").unwrap_or(clock_start);
        let procedure = text(e, "procedure_code").unwrap_or_default();
        let inpatient = text(e, "intended_management_code").as_deref() == Some("1");
        let nights = if inpatient { nights_for(&procedure) } else { 0 };
        let Some(sex) = sex(e).or((!inpatient).then_some(Sex::Female)) else {
            refuse("an inpatient whose sex is not recorded: no single-sex bay can be chosen; record it on the PAS".into());
            continue;
        };
        let age = age(e, as_at);
        let outcome = text(e, "last_poa_outcome");
        let attended = instant(e, "last_poa_scheduled_or_attended_datetime").map(|t| t.date());
        let pre_op = match (
            outcome.as_deref(),
            text(e, "last_poa_booking_status").as_deref(),
        ) {
            (Some("fit"), _) => match date(e, "last_poa_expiry_date") {
                Some(valid_until) => PreOp::Fit { valid_until },
                None => PreOp::None,
            },
            (Some("unfit"), _) => PreOp::Unfit,
            (Some("awaiting results"), _) => PreOp::AwaitingResults,
            (_, Some("booked")) => match attended {
                Some(on) => PreOp::Booked { on },
                None => PreOp::None,
            },
            _ => PreOp::None,
        };
        // A date to come in with no list named: left as the PAS has it.
        if let Some(tci) = date(e, "planned_date").filter(|d| *d >= start) {
            if !booked_on.contains_key(&eal_id) {
                refuse(format!(
                    "a date to come in ({tci}) is already given, with no theatre list named"
                ));
                continue;
            }
        }
        let l = Listed {
            id: eal_id.clone(),
            priority,
            consultant,
            specialty: text(e, "specialty").unwrap_or_default(),
            procedure,
            minutes,
            nights,
            sex,
            age,
            clock_start,
            decided_to_admit: decided,
            pre_op,
            booked_on: booked_on.get(&eal_id).cloned(),
        };
        shown.insert(
            eal_id.clone(),
            serde_json::json!({
                "patient_id": e.get("patient_id").cloned().unwrap_or(Value::Null),
                "patient_name": e.get("patient_name").cloned().unwrap_or(Value::Null),
                "priority_type": priority.as_str(),
                "weeks_waited": l.weeks_waited(as_at),
                "breach_date_18_weeks": l.breach(18).to_string(),
                "priority_limit_date": l.priority_limit().map(|d| d.to_string()),
                "procedure_code": l.procedure,
                "expected_theatre_minutes": minutes,
                "consultant": l.consultant,
            }),
        );
        listed.push(l);
    }
    let plan = Plan {
        start,
        weeks,
        listed,
        sessions: plan_sessions,
        leave,
        bays: bays
            .into_iter()
            .map(|(id, (ward, beds))| Bay {
                occupied: occupied.remove(&id).unwrap_or_default(),
                id,
                ward,
                beds,
            })
            .collect(),
        nurses: nurses.into_values().collect(),
    };
    Ok(Loaded {
        plan,
        unplannable,
        shown,
        requested,
        consultant_code,
        inpatients,
    })
}
