//! A two-day instance small enough to price by hand, with every hard
//! constraint but one broken and every soft cost non-zero.
//!
//! Shifts are numbered day × 3 + shift (early, late, night). Nurse n0 has
//! skill 1 and works shifts 0 (max load 3), 1 (2) and 3 (5); n1 has skill 2
//! and works shifts 2 (10), 4 (1) and 5 (4).
//!
//! | who | gender, age | stay | placed |
//! |---|---|---|---|
//! | a0 (occupant) | A, elderly | day 0, r0 | |
//! | p0 mandatory, due 0, s0 60 min, not r1 | A, young | 2 days | day 0, r0, t0 |
//! | p1 optional, s0 60 min | B, adult | 1 | day 0, r0, t1 |
//! | p2 mandatory, release 1 | A, adult | 1 | none |
//! | p3 optional, s1 30 min, not r1 | A, young | 1 | day 1, r1, t0 |
//! | p4 optional, release 1, s1 10 min | B, elderly | 1 | day 0, r1, t1 |
//! | p5 optional | B, adult | 1 | left out of the file |
//!
//! Hard, by hand:
//! - gender mix: r0 on day 0 holds a0, p0 (A) and p1 (B): the minority, 1;
//! - compatibility: p3 in r1, which it may not use: 1;
//! - surgeon overtime: s0 operates 120 minutes on day 0 of 90: 30;
//! - theatre overtime: t1 on day 0 has 70 of 60, t0 on day 1 30 of 0: 40;
//! - mandatory unscheduled: p2, 1; admission day: p4 before its release, 1;
//! - room capacity: r0 (2 beds) holds 3 on day 0: 1;
//! - nurse presence: nobody covers a room in a shift off the roster: 0;
//! - uncovered: r0 in shift 4 (p0 there), r1 in shifts 1 and 2 (p4): 3.
//!
//! Soft, by hand (weights 2, 3, 1, 5, 7, 11, 13, 17):
//! - age mix: r0 on day 0 spans young to elderly, 2;
//! - skill: a0 needs 2 in shift 0 of n0 (1), p1 needs 3 in shift 2 of n1
//!   (2), p4 needs 2 in shift 0 of n0, p3 needs 3 in shift 5 of n1: 4;
//! - continuity: a0 2 nurses, p0 2, p1 2, p3 2, p4 1: 9;
//! - excess workload: n0 carries 5 of 3 in shift 0 and 4 of 2 in shift 1: 4;
//! - open theatres: t0 and t1 on day 0, t0 on day 1: 3;
//! - surgeon transfer: s0 in t0 and t1 on day 0: 1;
//! - delay: p3 admitted a day after its release: 1; unscheduled optional:
//!   p5, 1.
//!
//! Weighted: 4 + 12 + 9 + 20 + 21 + 11 + 13 + 17 = 107.

use serde_json::json;

use super::*;

fn instance() -> Instance {
    let patient = |id: &str,
                   mandatory: bool,
                   gender: &str,
                   age: &str,
                   los: usize,
                   release: usize,
                   due: Option<usize>,
                   minutes: i64,
                   surgeon: &str,
                   not: &[&str],
                   workload: &[i64],
                   skill: &[i64]| {
        let mut p = json!({"id": id, "mandatory": mandatory, "gender": gender, "age_group": age,
            "length_of_stay": los, "surgery_release_day": release, "surgery_duration": minutes,
            "surgeon_id": surgeon, "incompatible_room_ids": not,
            "workload_produced": workload, "skill_level_required": skill});
        if let Some(due) = due {
            p["surgery_due_day"] = json!(due);
        }
        p
    };
    let shift = |day: usize, shift: &str, max_load: i64| json!({"day": day, "shift": shift, "max_load": max_load});
    serde_json::from_value(json!({
        "days": 2,
        "skill_levels": 3,
        "shift_types": ["early", "late", "night"],
        "age_groups": ["young", "adult", "elderly"],
        "weights": {"room_mixed_age": 2, "room_nurse_skill": 3, "continuity_of_care": 1,
                    "nurse_eccessive_workload": 5, "open_operating_theater": 7,
                    "surgeon_transfer": 11, "patient_delay": 13, "unscheduled_optional": 17},
        "occupants": [{"id": "a0", "gender": "A", "age_group": "elderly", "length_of_stay": 1,
                       "workload_produced": [1, 1, 1], "skill_level_required": [2, 0, 1], "room_id": "r0"}],
        "patients": [
            patient("p0", true, "A", "young", 2, 0, Some(0), 60, "s0", &["r1"], &[1, 2, 1, 1, 1, 1], &[1, 1, 1, 0, 0, 0]),
            patient("p1", false, "B", "adult", 1, 0, None, 60, "s0", &[], &[1, 1, 1], &[0, 0, 3]),
            patient("p2", true, "A", "adult", 1, 1, Some(1), 50, "s1", &[], &[1, 1, 1], &[0, 0, 0]),
            patient("p3", false, "A", "young", 1, 0, None, 30, "s1", &["r1"], &[3, 1, 1], &[0, 2, 3]),
            patient("p4", false, "B", "elderly", 1, 1, None, 10, "s1", &[], &[2, 2, 2], &[2, 2, 2]),
            patient("p5", false, "B", "adult", 1, 0, None, 20, "s0", &[], &[1, 1, 1], &[0, 0, 0]),
        ],
        "surgeons": [{"id": "s0", "max_surgery_time": [90, 100]}, {"id": "s1", "max_surgery_time": [200, 200]}],
        "operating_theaters": [{"id": "t0", "availability": [120, 0]}, {"id": "t1", "availability": [60, 60]}],
        "rooms": [{"id": "r0", "capacity": 2}, {"id": "r1", "capacity": 1}],
        "nurses": [
            {"id": "n0", "skill_level": 1, "working_shifts": [shift(0, "early", 3), shift(0, "late", 2), shift(1, "early", 5)]},
            {"id": "n1", "skill_level": 2, "working_shifts": [shift(0, "night", 10), shift(1, "late", 1), shift(1, "night", 4)]}
        ]
    }))
    .unwrap()
}

fn solution() -> serde_json::Value {
    let rooms = |day: usize, shift: &str, rooms: &[&str]| json!({"day": day, "shift": shift, "rooms": rooms});
    json!({
        "patients": [
            {"id": "p0", "admission_day": 0, "room": "r0", "operating_theater": "t0"},
            {"id": "p1", "admission_day": 0, "room": "r0", "operating_theater": "t1"},
            {"id": "p2", "admission_day": "none"},
            {"id": "p3", "admission_day": 1, "room": "r1", "operating_theater": "t0"},
            {"id": "p4", "admission_day": 0, "room": "r1", "operating_theater": "t1"}
        ],
        "nurses": [
            {"id": "n0", "assignments": [rooms(0, "early", &["r0", "r1"]), rooms(0, "late", &["r0"]), rooms(1, "early", &["r0", "r1"])]},
            {"id": "n1", "assignments": [rooms(0, "night", &["r0"]), rooms(1, "late", &["r1"]), rooms(1, "night", &["r1", "r0"])]}
        ]
    })
}

fn priced(solution: serde_json::Value) -> Result<Evaluation, IhtcError> {
    evaluate(&instance(), &serde_json::from_value(solution).unwrap())
}

#[test]
fn every_constraint_and_cost_matches_the_hand_calculation() {
    let e = priced(solution()).unwrap();
    assert_eq!(e.violations, [1, 1, 30, 40, 1, 1, 1, 0, 3]);
    assert_eq!(e.total_violations(), 78);
    assert!(!e.is_feasible());
    assert_eq!(e.costs, [2, 4, 9, 4, 3, 1, 1, 1]);
    assert_eq!(e.weighted(), [4, 12, 9, 20, 21, 11, 13, 17]);
    assert_eq!(e.total_cost(), 107);
}

#[test]
fn the_breakdown_prints_in_the_validators_own_layout() {
    // The competition's first test solution's figures.
    let e = Evaluation {
        violations: [0; 9],
        costs: [7, 43, 177, 24, 11, 0, 132, 8],
        weights: [5, 1, 5, 1, 30, 1, 5, 150],
    };
    let want = "VIOLATIONS: \n\
        RoomGenderMix.....................0\n\
        PatientRoomCompatibility..........0\n\
        SurgeonOvertime...................0\n\
        OperatingTheaterOvertime..........0\n\
        MandatoryUnscheduledPatients......0\n\
        AdmissionDay......................0\n\
        RoomCapacity......................0\n\
        NursePresence.....................0\n\
        UncoveredRoom.....................0\n\
        Total violations = 0\n\
        \n\
        COSTS (weight X cost): \n\
        RoomAgeMix............................35 (  5 X   7)\n\
        RoomSkillLevel........................43 (  1 X  43)\n\
        ContinuityOfCare.....................885 (  5 X 177)\n\
        ExcessiveNurseWorkload................24 (  1 X  24)\n\
        OpenOperatingTheater.................330 ( 30 X  11)\n\
        SurgeonTransfer........................0 (  1 X   0)\n\
        PatientDelay.........................660 (  5 X 132)\n\
        ElectiveUnscheduledPatients.........1200 (150 X   8)\n\
        Total cost = 3177\n";
    assert_eq!(e.to_string(), want);
}

#[test]
fn a_patient_left_out_is_unscheduled_as_none_is_and_none_is_written_back() {
    let mut s = solution();
    s["patients"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["id"] != "p2");
    assert_eq!(priced(s).unwrap(), priced(solution()).unwrap());
    let read: Solution = serde_json::from_value(solution()).unwrap();
    let written = serde_json::to_value(&read).unwrap();
    assert_eq!(
        written["patients"][2],
        json!({"id": "p2", "admission_day": "none"})
    );
}

#[test]
fn a_room_given_to_a_nurse_off_the_roster_is_a_presence_violation() {
    let mut s = solution();
    // n1 does not work shift 3 (day 1, early).
    s["nurses"][1]["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"day": 1, "shift": "early", "rooms": ["r0"]}));
    let e = priced(s).unwrap();
    assert_eq!(e.violations[7], 1);
}

/// On a problem of two wards (the trust's own list), a nurse covering a
/// room of the other ward is where the roster does not put them; the
/// search, started from that, moves every room to its own ward's nurse.
#[test]
fn a_room_covered_from_another_ward_is_a_presence_violation_the_search_clears() {
    let mut problem = Problem::new(&instance()).unwrap();
    let schedule = problem
        .read(&serde_json::from_value(solution()).unwrap())
        .unwrap();
    assert_eq!(price(&problem, &schedule).violations[7], 0);
    // r1 and n1 on ward 1: n0 covered r1 early on days 0 and 1, and n1
    // covered r0 in both nights.
    problem.room_ward = vec![0, 1];
    problem.nurse_ward = vec![0, 1];
    assert_eq!(price(&problem, &schedule).violations[7], 4);

    // Everyone rostered every shift, so that each ward can be covered.
    for loads in &mut problem.nurse_max_load {
        for l in loads.iter_mut() {
            *l = Some(l.unwrap_or(5));
        }
    }
    let found = search(
        &problem,
        &schedule,
        &SearchOptions {
            time_limit: std::time::Duration::from_secs(5),
            threads: 1,
            max_moves: Some(20_000),
            seed: 3,
        },
    );
    assert_eq!(found.evaluation.violations[7], 0);
    assert_eq!(found.evaluation.violations[8], 0);
    for (r, shifts) in found.schedule.cover.iter().enumerate() {
        for n in shifts.iter().flatten() {
            assert_eq!(problem.nurse_ward[*n], problem.room_ward[r]);
        }
    }
}

#[test]
fn names_the_instance_does_not_hold_and_a_patient_placed_twice_are_refused_by_name() {
    let cases = [
        (
            json!({"id": "p9", "admission_day": 0, "room": "r0", "operating_theater": "t0"}),
            "\"p9\"",
        ),
        (
            json!({"id": "p5", "admission_day": 0, "room": "r7", "operating_theater": "t0"}),
            "r7",
        ),
        (
            json!({"id": "p5", "admission_day": 0, "room": "r0", "operating_theater": "t9"}),
            "t9",
        ),
        (
            json!({"id": "p1", "admission_day": 0, "room": "r0", "operating_theater": "t1"}),
            "placed twice",
        ),
    ];
    for (line, named) in cases {
        let mut s = solution();
        s["patients"].as_array_mut().unwrap().push(line.clone());
        let e = priced(s).unwrap_err();
        assert!(e.to_string().contains(named), "{line}: {e}");
    }
    let mut s = solution();
    s["nurses"][0]["assignments"][0]["shift"] = json!("twilight");
    assert!(priced(s).unwrap_err().to_string().contains("twilight"));
    let e = serde_json::from_value::<Solution>(
        json!({"patients": [{"id": "p0", "admission_day": "soon"}]}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("soon"), "{e}");
}

#[test]
fn an_instance_whose_figures_do_not_fit_is_refused_by_name() {
    let mut i = instance();
    i.patients[1].workload_produced.pop();
    let e = Problem::new(&i).unwrap_err();
    assert!(
        e.to_string().contains("p1") && e.to_string().contains("3 values"),
        "{e}"
    );
    let mut i = instance();
    i.patients[0].surgeon_id = "s7".into();
    assert!(Problem::new(&i).unwrap_err().to_string().contains("s7"));
}

#[test]
fn an_admission_outside_the_horizon_is_a_violation_and_counts_nowhere_else() {
    let mut s = solution();
    s["patients"][4]["admission_day"] = json!(5);
    let e = priced(s).unwrap();
    // p4 is now past its last day; r1 is empty on day 0, t1 carries only p1.
    assert_eq!(e.violations[5], 1);
    assert_eq!(e.violations[3], 30);
}

#[test]
fn a_constructed_schedule_breaks_no_rule_it_can_keep_and_prices_the_same_written_out() {
    let i = instance();
    let problem = Problem::new(&i).unwrap();
    let schedule = construct(&problem);
    let priced = price(&problem, &schedule);
    // Rooms single-sex and within their beds, rooms allowed, theatres and
    // surgeons within their minutes, admissions inside their windows,
    // nurses only on their shifts.
    for k in [0, 1, 2, 3, 5, 6, 7] {
        assert_eq!(priced.violations[k], 0, "{}: {priced}", VIOLATIONS[k]);
    }
    // The mandatory patients first: p0 (due on day 0) that day, p2 (day 1
    // only) in t1, the one theatre open on day 1. Then p1, optional, fits
    // nowhere: s0 has 30 of its 90 minutes left on day 0 after p0, and t1
    // 10 of its 60 on day 1 after p2.
    assert_eq!(schedule.admission[0].map(|a| a.day), Some(0));
    assert_eq!(
        schedule.admission[2].map(|a| (a.day, a.theater)),
        Some((1, 1))
    );
    assert_eq!(schedule.admission[1], None);
    // The written file prices the same, and reads back to the same.
    let written = problem.write(&schedule);
    let text = serde_json::to_string(&written).unwrap();
    let again: Solution = serde_json::from_str(&text).unwrap();
    assert_eq!(evaluate(&i, &again).unwrap(), priced);
    assert_eq!(again, written);
}
