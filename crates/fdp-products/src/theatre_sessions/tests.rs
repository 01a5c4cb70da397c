//! Utilisation against a week worked by hand from the CDM's definitions,
//! the product alone behind the demo policy over tables in memory.
//!
//! Week beginning Monday 23 November 2026 (GMT, so clock time is UTC):
//!
//! | session | planned | cases in theatre (minutes) | capped | uncapped |
//! |---|---|---|---|---|
//! | S1 Theatre 1 Mon AM, General Surgery | 08:30–12:30, 240 | 08:40 (90), 10:25 (100), 12:15 (45, 15 inside) | 205 → 0.8542 Yellow | 235 → 0.9792 Green |
//! | S2 Theatre 1 Mon PM, General Surgery | 13:30–17:30, 240 | 13:20 (60, 50 inside), 14:40 (120) | 170 → 0.7083 Red | 180 → 0.7500 Orange |
//! | S3 Theatre 2 Mon AM, released | — | not counted | | |
//! | S4 Theatre 1 Tue all day, T&O | 08:30–17:30, 480 planned (lunch is not list time) | 08:30 (240), 14:00 (270, 210 to 17:30) | 450 → 0.9375 Green | 510 → 1.0625 Blue |
//! | S5 Theatre 2 Mon AM, Urology | 08:30–12:30, 240 | none | 0 → 0 Red | 0 → 0 Red |
//! | S6 Theatre 1 next Monday | outside the week asked for | | | |
//!
//! Theatre 1's week: 960 available, 825 capped (0.8594 Yellow), 925
//! uncapped (0.9635 Green). By specialty, General Surgery: 480 available,
//! 375 capped (0.7813 Orange), 415 uncapped (0.8646 Yellow).

use std::collections::BTreeMap;

use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::{json, Value};

use crate::platform::ProductError;
use crate::testing::DemoInstance;

fn at(day: &str, time: &str) -> String {
    format!("2026-11-{day}T{time}:00Z")
}

fn tables() -> MemoryTables {
    let session = |id: &str, day: &str, theatre: &str, specialty: &str, from: &str, to: &str, status: &str| {
        json!({"theatre_session_id": id, "date": format!("2026-11-{day}"),
               "theatre_id": format!("RXX:{theatre}"), "theatre_name": theatre,
               "specialty_name": specialty, "primary_consultant_name": "Ms Cutter",
               "planned_start_time": at(day, from), "planned_end_time": at(day, to),
               "status": status, "cancelled": false})
    };
    let mut s1 = session("S1", "23", "Theatre 1", "General Surgery", "08:30", "12:30", "confirmed");
    s1["start_time"] = json!(at("23", "08:40"));
    s1["end_time"] = json!(at("23", "13:00"));
    let mut s4 = session("S4", "24", "Theatre 1", "Trauma and Orthopaedics", "08:30", "17:30", "confirmed");
    s4["planned_duration_minutes"] = json!(480);
    let sessions = vec![
        s1,
        session("S2", "23", "Theatre 1", "General Surgery", "13:30", "17:30", "confirmed"),
        session("S3", "23", "Theatre 2", "Urology", "13:30", "17:30", "released"),
        s4,
        session("S5", "23", "Theatre 2", "Urology", "08:30", "12:30", "confirmed"),
        session("S6", "30", "Theatre 1", "General Surgery", "08:30", "12:30", "confirmed"),
    ];
    let mut n = 0;
    let mut case = |session: &str, day: &str, into: &str, minutes: i64| {
        n += 1;
        json!({"procedure_id": format!("P{n}"), "patient_id": format!("patient-{n}"),
               "theatre_session_id": session, "procedure_timestamp": at(day, into),
               "actual_procedure_time_total_theatre_time": minutes})
    };
    let procedures = vec![
        case("S1", "23", "08:40", 90),
        case("S1", "23", "10:25", 100),
        case("S1", "23", "12:15", 45),
        case("S2", "23", "13:20", 60),
        case("S2", "23", "14:40", 120),
        case("S3", "23", "13:40", 60),
        case("S4", "24", "08:30", 240),
        case("S4", "24", "14:00", 270),
        case("S6", "30", "08:30", 200),
    ];
    let booking = |id: &str, session: &str, minutes: i64, cancelled: bool| {
        json!({"theatre_booking_id": id, "theatre_session_id": session,
               "expected_duration": minutes, "booking_cancelled": cancelled})
    };
    let bookings = vec![
        booking("B1", "S1", 90, false),
        booking("B2", "S1", 100, false),
        {
            let mut b = booking("B3", "S1", 60, true);
            b["cancellation_date"] = json!("2026-11-23");
            b["cancellation_reason"] = json!("Patient unwell");
            b
        },
        {
            let mut b = booking("B7", "S2", 90, true);
            b["cancellation_date"] = json!("2026-11-20");
            b["cancellation_reason"] = json!("No post-operative bed");
            b
        },
        booking("B4", "S2", 200, false),
        booking("B5", "S4", 470, false),
        booking("B6", "S3", 240, false),
    ];
    MemoryTables::new()
        .with_rows("theatre_session", &sessions)
        .unwrap()
        .with_rows("procedure", &procedures)
        .unwrap()
        .with_rows("theatre_booking", &bookings)
        .unwrap()
}

async fn view(view: &str, params: &[(&str, &str)]) -> Result<Vec<BTreeMap<String, Value>>, ProductError> {
    view_over(tables(), "analyst", view, params).await
}

async fn view_over(
    tables: MemoryTables,
    role: &str,
    view: &str,
    params: &[(&str, &str)],
) -> Result<Vec<BTreeMap<String, Value>>, ProductError> {
    let mut given = vec![("from", "2026-11-23"), ("to", "2026-11-29")];
    given.extend_from_slice(params);
    let out = DemoInstance::new(tables)
        .view("theatre-sessions", role, Purpose::Operations, "http", view, &given)
        .await?;
    Ok(out
        .rows
        .iter()
        .map(|row| out.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), v.clone())).collect())
        .collect())
}

#[tokio::test]
async fn each_sessions_utilisation_matches_the_hand_calculation() {
    let rows = view("sessions", &[]).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["theatre_session_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["S1", "S2", "S5", "S4"], "released and next week's sessions are not counted");
    let expect = [
        ("S1", 240, 3, 205, 235, 0.8542, "Yellow", 0.9792, "Green"),
        ("S2", 240, 2, 170, 180, 0.7083, "Red", 0.75, "Orange"),
        ("S5", 240, 0, 0, 0, 0.0, "Red", 0.0, "Red"),
        ("S4", 480, 2, 450, 510, 0.9375, "Green", 1.0625, "Blue"),
    ];
    for (row, (id, available, cases, capped, uncapped, ratio_c, band_c, ratio_u, band_u)) in rows.iter().zip(expect) {
        assert_eq!(row["available_minutes"], json!(available), "{id}");
        assert_eq!(row["cases"], json!(cases), "{id}");
        assert_eq!(row["touch_minutes_capped"], json!(capped), "{id}");
        assert_eq!(row["touch_minutes_uncapped"], json!(uncapped), "{id}");
        assert_eq!(row["utilisation_capped"].as_f64(), Some(ratio_c), "{id}");
        assert_eq!(row["utilisation_capped_status"], json!(band_c), "{id}");
        assert_eq!(row["utilisation_uncapped"].as_f64(), Some(ratio_u), "{id}");
        assert_eq!(row["utilisation_uncapped_status"], json!(band_u), "{id}");
    }
    // S1 started ten minutes late and ran thirty past its planned end.
    assert_eq!(rows[0]["late_start_minutes"], json!(10));
    assert_eq!(rows[0]["overrun_minutes"], json!(30));
    assert_eq!(rows[1]["late_start_minutes"], Value::Null, "no actual times recorded");
}

#[tokio::test]
async fn a_weeks_utilisation_is_of_its_sums_by_theatre_and_by_specialty() {
    let theatres = view("utilisation", &[]).await.unwrap();
    assert_eq!(theatres.len(), 2);
    let t1 = &theatres[0];
    assert_eq!(t1["week"], json!("2026-11-23"));
    assert_eq!(t1["theatre_name"], json!("Theatre 1"));
    assert_eq!(t1["sessions"], json!(3));
    assert_eq!(t1["cases"], json!(7));
    assert_eq!(t1["available_minutes"], json!(960));
    assert_eq!(t1["touch_minutes_capped"], json!(825));
    assert_eq!(t1["touch_minutes_uncapped"], json!(925));
    assert_eq!(t1["utilisation_capped"].as_f64(), Some(0.8594));
    assert_eq!(t1["utilisation_capped_status"], json!("Yellow"));
    assert_eq!(t1["utilisation_uncapped"].as_f64(), Some(0.9635));
    assert_eq!(t1["utilisation_uncapped_status"], json!("Green"));
    assert_eq!(theatres[1]["theatre_name"], json!("Theatre 2"));
    assert_eq!(theatres[1]["sessions"], json!(1), "the released session is not counted");
    assert_eq!(theatres[1]["utilisation_capped_status"], json!("Red"));

    let specialties = view("utilisation", &[("by", "specialty")]).await.unwrap();
    let names: Vec<&str> = specialties.iter().map(|r| r["specialty_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["General Surgery", "Trauma and Orthopaedics", "Urology"]);
    let gs = &specialties[0];
    assert_eq!(gs["available_minutes"], json!(480));
    assert_eq!(gs["touch_minutes_capped"], json!(375));
    assert_eq!(gs["touch_minutes_uncapped"], json!(415));
    assert_eq!(gs["utilisation_capped"].as_f64(), Some(0.7813));
    assert_eq!(gs["utilisation_capped_status"], json!("Orange"));
    assert_eq!(gs["utilisation_uncapped"].as_f64(), Some(0.8646));
    assert_eq!(gs["utilisation_uncapped_status"], json!("Yellow"));
}

#[tokio::test]
async fn a_grouping_that_is_not_offered_or_a_missing_day_is_refused_by_name() {
    let e = view("utilisation", &[("by", "consultant; DROP TABLE x")]).await.unwrap_err();
    assert!(matches!(e, ProductError::Param { .. }), "{e}");
    let e = DemoInstance::new(tables())
        .view("theatre-sessions", "analyst", Purpose::Operations, "http", "sessions", &[("from", "2026-11-23")])
        .await
        .unwrap_err();
    assert!(matches!(&e, ProductError::Param { name, .. } if name == "to"), "{e}");
}

#[tokio::test]
async fn a_role_without_the_procedures_is_refused_rather_than_shown_no_touch_time() {
    // The bed manager sees theatre sessions for operations but not
    // procedures: every session would read 0%.
    let e = DemoInstance::new(tables())
        .view(
            "theatre-sessions",
            "bed-manager",
            Purpose::Operations,
            "http",
            "sessions",
            &[("from", "2026-11-23"), ("to", "2026-11-29")],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ProductError::NotGranted { .. }), "{e}");
    assert!(e.to_string().contains("procedure"), "{e}");
}

#[tokio::test]
async fn under_planning_or_research_the_product_is_refused_and_a_day_is_never_sql() {
    // Offered for direct care and operations only: session by session,
    // with consultants named, it is not an aggregate to leave the trust.
    for purpose in [Purpose::Planning, Purpose::Research] {
        let e = DemoInstance::new(tables())
            .view(
                "theatre-sessions",
                "analyst",
                purpose,
                "http",
                "sessions",
                &[("from", "2026-11-23"), ("to", "2026-11-29")],
            )
            .await
            .unwrap_err();
        assert!(e.is_refusal(), "{purpose:?}: {e}");
    }
    // The days are typed: text that tries to be SQL is refused by name.
    let e = view("sessions", &[("to", "2026-11-29' OR '1'='1")]).await.unwrap_err();
    assert!(matches!(&e, ProductError::Param { name, .. } if name == "to"), "{e}");
}

/// Free time on the week's lists: S1 has 240 minutes, 190 booked (a
/// cancelled booking of 60 does not count), so 50 unbooked and 35 usable
/// after a changeover; S2's 40 unbooked leave 25; S4's 10 leave none;
/// S5, with nothing booked, offers 225; S3 was released.
#[tokio::test]
async fn free_time_is_the_minutes_left_after_the_bookings_and_a_changeover() {
    let rows = view("free-time", &[]).await.unwrap();
    let got: Vec<(String, i64, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            let n = |c: &str| r[c].as_i64().unwrap();
            (
                r["theatre_session_id"].as_str().unwrap().to_string(),
                n("available_minutes"),
                n("booked_minutes"),
                n("unbooked_minutes"),
                n("usable_unbooked_minutes"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("S1".into(), 240, 190, 50, 35),
            ("S2".into(), 240, 200, 40, 25),
            ("S5".into(), 240, 0, 240, 225),
            ("S4".into(), 480, 470, 10, 0),
        ]
    );
    // Each list is named for the theatre week's chart by its day, theatre
    // and half.
    assert_eq!(rows[0]["list"], json!("Mon 23 Nov · Theatre 1"));
}

/// A booking cancelled on the day of its list and one cancelled days
/// before, each with its reason; bookings not cancelled are not listed.
#[tokio::test]
async fn cancellations_carry_their_reason_and_whether_on_the_day() {
    let rows = view("cancellations", &[]).await.unwrap();
    let got: Vec<(String, String, String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["theatre_session_id"].as_str().unwrap().to_string(),
                r["theatre_booking_id"].as_str().unwrap().to_string(),
                r["cancellation_reason"].as_str().unwrap().to_string(),
                r["cancelled_on_the_day"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("S1".into(), "B3".into(), "Patient unwell".into(), true),
            ("S2".into(), "B7".into(), "No post-operative bed".into(), false),
        ]
    );
}

/// Lists of the week of 23 November with one risk each, or two ways of
/// seeing one double-booking:
/// - R1 (Theatre 1) and R2 (Theatre 2) share consultant C1 on Monday
///   morning;
/// - R3 and R4 overlap in Theatre 3 from 12:00 to 12:30;
/// - R5's consultant C5 is on approved annual leave on Tuesday;
/// - R6 names no anaesthetist, and its consultant's leave that day was
///   declined (no risk);
/// - R7's anaesthetist A2 has asked for study leave that afternoon;
/// - R8 was released: not a risk, whoever is on it.
fn risk_tables() -> MemoryTables {
    let list = |id: &str, day: &str, theatre: &str, from: &str, to: &str, consultant: &str, anaesthetist: Option<&str>, status: &str| {
        json!({"theatre_session_id": id, "date": format!("2026-11-{day}"),
               "theatre_id": format!("RXX:{theatre}"), "theatre_name": theatre,
               "specialty_name": "General Surgery", "primary_consultant_id": consultant,
               "primary_consultant_name": format!("Consultant {consultant}"),
               "primary_anaesthetist_id": anaesthetist,
               "planned_start_time": at(day, from), "planned_end_time": at(day, to),
               "status": status, "cancelled": false})
    };
    let sessions = vec![
        list("R1", "23", "Theatre 1", "08:30", "12:30", "C1", Some("A1"), "confirmed"),
        list("R2", "23", "Theatre 2", "08:30", "12:30", "C1", Some("A2"), "confirmed"),
        list("R3", "23", "Theatre 3", "08:30", "12:30", "C3", Some("A3"), "confirmed"),
        list("R4", "23", "Theatre 3", "12:00", "14:00", "C4", Some("A4"), "confirmed"),
        list("R5", "24", "Theatre 1", "08:30", "17:30", "C5", Some("A1"), "confirmed"),
        list("R6", "25", "Theatre 1", "08:30", "12:30", "C6", None, "confirmed"),
        list("R7", "25", "Theatre 2", "13:30", "17:30", "C7", Some("A2"), "confirmed"),
        list("R8", "26", "Theatre 2", "08:30", "12:30", "C1", None, "released"),
    ];
    let leave = |who: &str, kind: &str, day: &str, from: &str, to: &str, state: &str| {
        json!({"id": format!("{who}-{day}"), "care_professional_id": who, "title": kind,
               "leave_start_time": at(day, from), "leave_end_time": at(day, to),
               "leave_state": state})
    };
    let unavailable = vec![
        leave("C5", "Annual leave", "24", "00:00", "23:59", "approved"),
        leave("C6", "Annual leave", "25", "00:00", "23:59", "declined"),
        leave("A2", "Study leave", "25", "12:00", "18:00", "requested"),
        // Leave that ends before its list starts is no risk.
        leave("A1", "Professional leave", "24", "06:00", "08:30", "approved"),
    ];
    MemoryTables::new()
        .with_rows("theatre_session", &sessions)
        .unwrap()
        .with_rows("procedure", &[])
        .unwrap()
        .with_rows("staff_unavailability", &unavailable)
        .unwrap()
}

#[tokio::test]
async fn a_list_is_at_risk_for_leave_a_double_booking_or_no_anaesthetist() {
    let rows = view_over(risk_tables(), "theatre-scheduler", "at-risk", &[])
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["theatre_session_id"].as_str().unwrap().to_string(),
                r["risk"].as_str().unwrap().to_string(),
                r["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("R1", "consultant double-booked", "also on session R2 in Theatre 2"),
        ("R2", "consultant double-booked", "also on session R1 in Theatre 1"),
        ("R3", "theatre double-booked", "also on session R4 in Theatre 3"),
        ("R4", "theatre double-booked", "also on session R3 in Theatre 3"),
        ("R5", "consultant on leave", "Annual leave (approved)"),
        ("R6", "no anaesthetist", "no anaesthetist named on the list"),
        ("R7", "anaesthetist on leave", "Study leave (requested)"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, want);
    // Without the leave table in the grant, the view is refused rather
    // than shown with no leave.
    let e = DemoInstance::new(risk_tables())
        .view(
            "theatre-sessions",
            "analyst",
            Purpose::Operations,
            "http",
            "at-risk",
            &[("from", "2026-11-23"), ("to", "2026-11-29")],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("staff_unavailability"), "{e}");
}

/// A line of a generated file split into fields (quotes honoured).
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.trim_end_matches('\r').chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// The good lines of a generated file.
fn lines(f: &fdp_synth::ExtractFile) -> Vec<Vec<String>> {
    let bad: Vec<u64> = f.faults.iter().map(|x| x.line).collect();
    String::from_utf8_lossy(&f.bytes)
        .split('\n')
        .enumerate()
        .skip(1)
        .filter(|(i, l)| !l.is_empty() && !bad.contains(&(*i as u64 + 1)))
        .map(|(_, l)| fields(l))
        .collect()
}

fn local(at: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(at, "%d/%m/%Y %H:%M").unwrap()
}

/// A synthetic trust's theatre extracts, loaded through the shipped
/// mappings, with the files and the first and last days whose lists ran.
fn synthetic() -> (MemoryTables, Vec<fdp_synth::ExtractFile>, String, String) {
    let trust = fdp_synth::Trust::generate(11, fdp_synth::TrustSpec::default()).unwrap();
    // Six weeks of lists to come, for 6-4-2.
    let spec = fdp_synth::ExtractSpec {
        days: 42,
        ..Default::default()
    };
    let files: Vec<_> = fdp_synth::extracts::generate(&trust, 11, &spec)
        .unwrap()
        .into_iter()
        .filter(|f| f.name.starts_with("theatre_") || f.name.starts_with("pre_op_"))
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings");
    let mappings = fdp_ingest::extract::read_mappings(&dir).unwrap();
    let mut tables = MemoryTables::new();
    for f in &files {
        for m in fdp_ingest::extract::mappings_for(&mappings, std::path::Path::new(&f.name)) {
            let parsed = fdp_ingest::extract::parse(m, &f.bytes, &f.name).unwrap();
            assert_eq!(parsed.rejected.len(), f.faults.len(), "{}", f.name);
            tables = tables.with_batches(&parsed.plan.object_type.table, parsed.batches).unwrap();
        }
    }
    let first = spec.start - chrono::Duration::days(fdp_synth::extracts::HISTORY_DAYS);
    let last = spec.start - chrono::Duration::days(1);
    (tables, files, first.to_string(), last.to_string())
}

/// A list's figures worked by hand from the files.
#[derive(Clone, Copy)]
struct ByHand {
    available: i64,
    capped: i64,
    uncapped: i64,
    late_start: Option<i64>,
    overrun: Option<i64>,
}

#[tokio::test]
async fn a_synthetic_trusts_lists_show_the_utilisation_their_case_times_give() {
    let (tables, files, first, last) = synthetic();
    let file = |prefix: &str| files.iter().find(|f| f.name.starts_with(prefix)).unwrap();
    // By hand, from the files: each list that could run, its planned
    // minutes, and its cases' minutes inside and beyond its planned times.
    let mut want: BTreeMap<String, ByHand> = BTreeMap::new();
    let sessions: BTreeMap<String, Vec<String>> =
        lines(file("theatre_sessions_")).into_iter().map(|r| (r[0].clone(), r)).collect();
    for (id, r) in &sessions {
        let day = chrono::NaiveDate::parse_from_str(&r[5], "%d/%m/%Y").unwrap().to_string();
        if day < first || day > last || r[20] == "REL" || r[20] == "CANC" {
            continue;
        }
        let (from, to) = (local(&format!("{} {}", r[5], r[8])), local(&format!("{} {}", r[5], r[9])));
        let after = |at: &str, planned: chrono::NaiveDateTime| (!at.is_empty()).then(|| (local(at) - planned).num_minutes().max(0));
        want.insert(
            id.clone(),
            ByHand {
                available: r[10].parse().unwrap(),
                capped: 0,
                uncapped: 0,
                late_start: after(&r[24], from),
                overrun: after(&r[25], to),
            },
        );
    }
    for c in lines(file("theatre_case_times_")) {
        let r = &sessions[&c[1]];
        let (from, to) = (local(&format!("{} {}", r[5], r[8])), local(&format!("{} {}", r[5], r[9])));
        let (into, out) = (local(&c[9]), local(&c[12]));
        let w = want.get_mut(&c[1]).unwrap();
        w.capped += (out.min(to) - into.max(from)).num_minutes().max(0);
        w.uncapped += (out - into).num_minutes();
    }
    let i = DemoInstance::new(tables);
    let out = i
        .view("theatre-sessions", "analyst", Purpose::Operations, "http", "sessions", &[("from", first.as_str()), ("to", last.as_str())])
        .await
        .unwrap();
    let col = |name: &str| out.columns.iter().position(|c| c.name == name).unwrap();
    assert_eq!(out.rows.len(), want.len());
    let (mut late, mut overran) = (0, 0);
    for row in &out.rows {
        let id = row[col("theatre_session_id")].as_str().unwrap();
        let ByHand { available, capped, uncapped, late_start, overrun } = want[id];
        assert_eq!(row[col("available_minutes")], json!(available), "{id}");
        assert_eq!(row[col("touch_minutes_capped")], json!(capped), "{id}");
        assert_eq!(row[col("touch_minutes_uncapped")], json!(uncapped), "{id}");
        let ratio = row[col("utilisation_capped")].as_f64().unwrap();
        assert!((ratio - capped as f64 / available as f64).abs() < 0.00006, "{id}: {ratio}");
        assert_eq!(row[col("late_start_minutes")].as_i64(), late_start, "{id}");
        assert_eq!(row[col("overrun_minutes")].as_i64(), overrun, "{id}");
        late += usize::from(late_start.unwrap_or(0) >= 10);
        overran += usize::from(overrun.unwrap_or(0) > 0);
    }
    assert!(late > 20 && overran > 10, "{late} late starts, {overran} overruns");

    // The weeks' figures are the sums of their lists'.
    let weeks = i
        .view("theatre-sessions", "analyst", Purpose::Operations, "http", "utilisation", &[("from", first.as_str()), ("to", last.as_str()), ("by", "specialty")])
        .await
        .unwrap();
    let total = |name: &str| -> i64 {
        let at = weeks.columns.iter().position(|c| c.name == name).unwrap();
        weeks.rows.iter().map(|r| r[at].as_i64().unwrap()).sum()
    };
    assert_eq!(total("available_minutes"), want.values().map(|w| w.available).sum::<i64>());
    assert_eq!(total("touch_minutes_capped"), want.values().map(|w| w.capped).sum::<i64>());
    assert_eq!(total("touch_minutes_uncapped"), want.values().map(|w| w.uncapped).sum::<i64>());

    // Every case cancelled on the day of a list that ran is among the
    // cancellations, marked as on the day.
    let on_the_day: Vec<String> = lines(file("theatre_bookings_"))
        .into_iter()
        .filter(|b| b[15] == "Cancelled" && b[17] == b[2])
        .map(|b| b[0].clone())
        .collect();
    assert!(on_the_day.len() > 5, "{on_the_day:?}");
    let cancelled = i
        .view("theatre-sessions", "theatre-scheduler", Purpose::Operations, "http", "cancellations", &[("from", first.as_str()), ("to", last.as_str())])
        .await
        .unwrap();
    let (id, otd) = (
        cancelled.columns.iter().position(|c| c.name == "theatre_booking_id").unwrap(),
        cancelled.columns.iter().position(|c| c.name == "cancelled_on_the_day").unwrap(),
    );
    let mut got: Vec<String> = cancelled
        .rows
        .iter()
        .filter(|r| r[otd] == json!(true))
        .map(|r| r[id].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want_otd = on_the_day;
    want_otd.sort();
    assert_eq!(got, want_otd);
}

#[tokio::test]
async fn the_trend_is_each_weeks_sums_for_every_list_or_one_specialtys() {
    // The week of 23 November (S1, S2, S5, S4): 1,200 minutes available,
    // 825 capped (0.6875, Red) and 925 uncapped (0.7708, Orange). The week
    // of 30 November (S6 alone): 200 of 240 (0.8333, Orange) both ways.
    let weeks = view("trend", &[("to", "2026-12-06")]).await.unwrap();
    let columns = [
        "week",
        "available_minutes",
        "touch_minutes_capped",
        "touch_minutes_uncapped",
        "utilisation_capped",
        "utilisation_capped_status",
        "utilisation_uncapped_status",
    ];
    let got: Vec<Vec<Value>> = weeks.iter().map(|r| columns.iter().map(|c| r[*c].clone()).collect()).collect();
    assert_eq!(
        got,
        [
            [json!("2026-11-23"), json!(1200), json!(825), json!(925), json!(0.6875), json!("Red"), json!("Orange")],
            [json!("2026-11-30"), json!(240), json!(200), json!(200), json!(0.8333), json!("Orange"), json!("Orange")],
        ]
    );
    assert_eq!(weeks[0]["utilisation_uncapped"].as_f64(), Some(0.7708));
    assert_eq!(weeks[0]["sessions"], json!(4));
    assert_eq!(weeks[0]["cases"], json!(7));

    // General Surgery's first week is S1 and S2: as the by-specialty view.
    let gs = view("trend", &[("specialty", "General Surgery")]).await.unwrap();
    assert_eq!(gs.len(), 1);
    assert_eq!(gs[0]["available_minutes"], json!(480));
    assert_eq!(gs[0]["utilisation_capped"].as_f64(), Some(0.7813));
    // A specialty's name is a value, never SQL.
    let none = view("trend", &[("specialty", "x' OR '1'='1")]).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
}

/// Six weeks of lists from Monday 23 November 2026, worked by hand:
///
/// | list | day (days to go) | stage | minutes | booked | patients | to do |
/// |---|---|---|---|---|---|---|
/// | L1 | Wed 25 Nov (2) | locked | 240 | 210 (B1 90, B2 60, B3 60; B4 cancelled) = 88% | B1 fit to 31 Dec; B2 fit but lapses 24 Nov; B3 none | 2 of 3 patients not ready |
/// | L4 | Thu 26 Nov (3) | locked | 240 | 230 (B6 200, B7 30) = 96% | both fit and valid | none: on track |
/// | L2 | Wed 9 Dec (16) | built | 240 | 120 (B5) = 50% | B5's assessment booked | booked 50% of 240 minutes (patients are not yet counted) |
/// | L3 | Mon 28 Dec (35) | fixed | 240 | 0 | none | no anaesthetist named |
///
/// L5 (released), L6 (Tue 5 Jan, 43 days) and L7 (past) are not listed.
fn readiness_tables() -> MemoryTables {
    let list = |id: &str, date: &str, anaesthetist: Option<&str>, status: &str| {
        json!({"theatre_session_id": id, "date": date, "theatre_id": "RXX:T1", "theatre_name": "Theatre 1",
               "specialty_name": "General Surgery", "am_pm": "AM", "primary_consultant_name": "Ms Cutter",
               "primary_anaesthetist_id": anaesthetist,
               "planned_start_time": format!("{date}T08:30:00Z"), "planned_end_time": format!("{date}T12:30:00Z"),
               "status": status, "cancelled": false})
    };
    let sessions = vec![
        list("L1", "2026-11-25", Some("C1"), "confirmed"),
        list("L4", "2026-11-26", Some("C1"), "confirmed"),
        list("L2", "2026-12-09", Some("C1"), "provisional"),
        list("L3", "2026-12-28", None, "provisional"),
        list("L5", "2026-11-27", Some("C1"), "released"),
        list("L6", "2027-01-05", Some("C1"), "provisional"),
        list("L7", "2026-11-20", Some("C1"), "completed"),
    ];
    let booking = |id: &str, session: &str, minutes: i64, cancelled: bool| {
        json!({"theatre_booking_id": id, "theatre_session_id": session, "patient_id": format!("999000000{}", &id[1..]),
               "expected_duration": minutes, "booking_cancelled": cancelled})
    };
    let bookings = vec![
        booking("B1", "L1", 90, false),
        booking("B2", "L1", 60, false),
        booking("B3", "L1", 60, false),
        booking("B4", "L1", 30, true),
        booking("B5", "L2", 120, false),
        booking("B6", "L4", 200, false),
        booking("B7", "L4", 30, false),
        booking("B8", "L6", 240, false),
    ];
    let assessed = |id: &str, booking: &str, status: &str, outcome: Option<&str>, until: Option<&str>| {
        json!({"procedure_status_id": id, "theatre_booking_id": booking, "poa_booking_status": status,
               "poa_scheduled_or_attended_datetime": "2026-10-01T10:00:00Z",
               "poa_outcome": outcome, "poa_expiry_date": until})
    };
    let statuses = vec![
        assessed("A1", "B1", "attended", Some("fit"), Some("2026-12-31")),
        assessed("A2", "B2", "attended", Some("fit"), Some("2026-11-24")),
        assessed("A5", "B5", "booked", None, None),
        assessed("A6", "B6", "attended", Some("fit"), Some("2027-01-10")),
        assessed("A7", "B7", "attended", Some("fit"), Some("2027-01-01")),
    ];
    MemoryTables::new()
        .with_rows("theatre_session", &sessions)
        .unwrap()
        .with_rows("theatre_booking", &bookings)
        .unwrap()
        .with_rows("procedure_status", &statuses)
        .unwrap()
        .with_rows("procedure", &[])
        .unwrap()
}

async fn readiness_view(role: &str, purpose: Purpose, view: &str) -> Result<crate::platform::Output, ProductError> {
    DemoInstance::new(readiness_tables())
        .view("theatre-sessions", role, purpose, "http", view, &[("as_at", "2026-11-23")])
        .await
}

#[tokio::test]
async fn each_list_to_come_is_held_to_its_6_4_2_stage() {
    let out = readiness_view("theatre-scheduler", Purpose::Operations, "readiness").await.unwrap();
    let names = ["theatre_session_id", "days_to_list", "stage", "booked_minutes", "booked_percent", "bookings", "patients_ready", "patients_not_ready", "on_track", "to_do"];
    let at: Vec<usize> = names.iter().map(|n| out.columns.iter().position(|c| c.name == *n).unwrap()).collect();
    let got: Vec<Vec<Value>> = out.rows.iter().map(|r| at.iter().map(|i| r[*i].clone()).collect()).collect();
    let want = [
        json!(["L1", 2, "2 weeks: locked", 210, 88, 3, 1, 2, false, "2 of 3 patients not ready for theatre"]),
        json!(["L4", 3, "2 weeks: locked", 230, 96, 2, 2, 0, true, ""]),
        json!(["L2", 16, "4 weeks: built", 120, 50, 1, 0, 1, false, "booked 50% of 240 minutes"]),
        json!(["L3", 35, "6 weeks: fixed", 0, 0, 0, 0, 0, false, "no anaesthetist named"]),
    ];
    let want: Vec<Vec<Value>> = want.iter().map(|w| w.as_array().unwrap().clone()).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn each_patient_not_ready_is_named_with_why_to_direct_care_and_masked_to_operations() {
    let out = readiness_view("theatre-scheduler", Purpose::DirectCare, "not-ready").await.unwrap();
    let col = |n: &str| out.columns.iter().position(|c| c.name == n).unwrap();
    let got: Vec<(String, String, String)> = out
        .rows
        .iter()
        .map(|r| {
            (
                r[col("theatre_booking_id")].as_str().unwrap().to_string(),
                r[col("readiness")].as_str().unwrap().to_string(),
                r[col("patient_id")].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("B2", "assessment lapses before the list", "9990000002"),
        ("B3", "no assessment", "9990000003"),
        ("B5", "assessment booked, not yet held", "9990000005"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, want);

    // Under operations the same patients are there, their NHS numbers not.
    let out = readiness_view("theatre-scheduler", Purpose::Operations, "not-ready").await.unwrap();
    let at = out.columns.iter().position(|c| c.name == "patient_id").unwrap();
    assert_eq!(out.rows.len(), 3);
    for r in &out.rows {
        assert!(!r[at].as_str().unwrap_or_default().starts_with("999000000"), "{r:?}");
    }

    // An analyst has no grant of the assessments: refused, not shown every
    // patient unassessed.
    let e = readiness_view("analyst", Purpose::Operations, "readiness").await.unwrap_err();
    assert!(e.to_string().contains("procedure_status"), "{e}");
}

#[tokio::test]
async fn a_synthetic_trusts_patients_not_ready_are_those_its_assessments_leave_out() {
    let (tables, files, _, last_ran) = synthetic();
    let file = |prefix: &str| files.iter().find(|f| f.name.starts_with(prefix)).unwrap();
    let as_at = (chrono::NaiveDate::parse_from_str(&last_ran, "%Y-%m-%d").unwrap() + chrono::Duration::days(1)).to_string();
    // By hand: each patient still booked on a list to come, and where their
    // assessment leaves them.
    let sessions: BTreeMap<String, Vec<String>> =
        lines(file("theatre_sessions_")).into_iter().map(|r| (r[0].clone(), r)).collect();
    let assessed: BTreeMap<String, Vec<String>> =
        lines(file("pre_op_assessments_")).into_iter().map(|r| (r[1].clone(), r)).collect();
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    let mut booked = 0;
    for b in lines(file("theatre_bookings_")) {
        let s = &sessions[&b[1]];
        let day = chrono::NaiveDate::parse_from_str(&s[5], "%d/%m/%Y").unwrap().to_string();
        if day < as_at || b[15] == "Cancelled" || s[20] == "REL" || s[20] == "CANC" {
            continue;
        }
        booked += 1;
        let why = match assessed.get(&b[0]) {
            None => "no assessment",
            Some(a) if a[6] == "Fit" => {
                let until = chrono::NaiveDate::parse_from_str(&a[8], "%d/%m/%Y").unwrap().to_string();
                if until >= day {
                    continue;
                }
                "assessment lapses before the list"
            }
            Some(a) if a[6] == "Unfit" => "unfit at assessment",
            Some(a) if a[6] == "Awaiting Results" => "assessment results awaited",
            Some(a) if a[5] == "Booked" => "assessment booked, not yet held",
            Some(a) => panic!("{a:?}"),
        };
        want.insert(b[0].clone(), why.to_string());
    }
    let i = DemoInstance::new(tables);
    let out = i
        .view("theatre-sessions", "theatre-scheduler", Purpose::DirectCare, "ui", "not-ready", &[("as_at", as_at.as_str())])
        .await
        .unwrap();
    let col = |n: &str| out.columns.iter().position(|c| c.name == n).unwrap();
    let got: BTreeMap<String, String> = out
        .rows
        .iter()
        .map(|r| (r[col("theatre_booking_id")].as_str().unwrap().to_string(), r[col("readiness")].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(got, want);
    // Most patients inside the lock are ready; further out, fewer.
    let stage_share = |stage: &str| {
        let rows: Vec<_> = out.rows.iter().filter(|r| r[col("stage")] == json!(stage)).collect();
        rows.len()
    };
    assert!(stage_share("2 weeks: locked") > 0 && stage_share("6 weeks: fixed") > stage_share("2 weeks: locked"));
    assert!(want.len() * 2 < booked, "{} of {booked} not ready", want.len());

    // The lists' own counts agree with their patients'.
    let lists = i
        .view("theatre-sessions", "theatre-scheduler", Purpose::Operations, "http", "readiness", &[("as_at", as_at.as_str())])
        .await
        .unwrap();
    let at = |n: &str| lists.columns.iter().position(|c| c.name == n).unwrap();
    let not_ready: i64 = lists.rows.iter().map(|r| r[at("patients_not_ready")].as_i64().unwrap()).sum();
    assert_eq!(not_ready as usize, want.len());
    let locked_behind = lists
        .rows
        .iter()
        .filter(|r| r[at("stage")] == json!("2 weeks: locked") && r[at("on_track")] == json!(false))
        .count();
    assert!(locked_behind > 0, "some locked lists have patients to chase");
}
