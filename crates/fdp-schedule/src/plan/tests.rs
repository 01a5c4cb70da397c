use chrono::{Duration, NaiveDate};

use super::*;
use crate::ihtc::SearchOptions;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The plan starts on Monday 7 December 2026.
fn start() -> NaiveDate {
    day("2026-12-07")
}

fn session(id: &str, date: NaiveDate, consultant: &str, minutes: i64) -> Session {
    Session {
        id: id.into(),
        theatre: "MT1".into(),
        date,
        am_pm: "AM".into(),
        specialty: "General Surgery".into(),
        consultant: Some(consultant.into()),
        anaesthetist: Some("ANA1".into()),
        minutes,
        cancelled: false,
        booked_minutes: Vec::new(),
    }
}

fn listed(id: &str, priority: Priority, weeks_waited: i64, minutes: i64) -> Listed {
    Listed {
        id: id.into(),
        priority,
        consultant: "C1".into(),
        specialty: "General Surgery".into(),
        procedure: "T202".into(),
        minutes,
        nights: 0,
        sex: Sex::Female,
        age: 50,
        clock_start: start() - Duration::weeks(weeks_waited),
        decided_to_admit: start() - Duration::weeks(weeks_waited.min(2)),
        pre_op: PreOp::Fit {
            valid_until: start() + Duration::weeks(12),
        },
        booked_on: None,
    }
}

fn plan(listed: Vec<Listed>, sessions: Vec<Session>) -> Plan {
    Plan {
        start: start(),
        weeks: 6,
        listed,
        sessions,
        leave: Vec::new(),
        bays: Vec::new(),
        nurses: Vec::new(),
    }
}

fn quick() -> PlanOptions {
    PlanOptions {
        search: SearchOptions {
            time_limit: std::time::Duration::from_secs(5),
            threads: 1,
            max_moves: Some(200_000),
            seed: 7,
        },
    }
}

fn placement<'a>(p: &'a Proposal, id: &str) -> &'a Placement {
    p.placements.iter().find(|x| x.id == id).unwrap()
}

/// One list of 240 minutes in week 3. First fit by turn books the longest
/// waiter's 150-minute case and then nothing else fits; two shorter cases
/// of 120 and 100 minutes, with a changeover, fill it. The longest waiter
/// goes to the list in week 4.
#[test]
fn the_search_fills_a_list_the_first_fit_leaves_half_empty() {
    let w3 = start() + Duration::weeks(3);
    let w4 = start() + Duration::weeks(4);
    let p = plan(
        vec![
            listed("A", Priority::P4, 30, 150),
            listed("B", Priority::P4, 20, 120),
            listed("C", Priority::P4, 19, 100),
        ],
        vec![session("S3", w3, "C1", 240), session("S4", w4, "C1", 160)],
    );
    let base = baseline(&p).unwrap();
    let best = propose(&p, &quick()).unwrap();
    let (mb, mo) = (Measures::of(&p, &base), Measures::of(&p, &best));
    assert!(mb.rule_breaks.is_empty(), "{:?}", mb.rule_breaks);
    assert!(mo.rule_breaks.is_empty(), "{:?}", mo.rule_breaks);
    assert_eq!(placement(&base, "A").session.as_deref(), Some("S3"));
    assert_eq!(mb.treated, 2, "first fit: A on S3, B on S4, C left off");
    assert_eq!(placement(&best, "B").session.as_deref(), Some("S3"));
    assert_eq!(placement(&best, "C").session.as_deref(), Some("S3"));
    assert_eq!(placement(&best, "A").session.as_deref(), Some("S4"));
    assert_eq!(mo.treated, 3);
    assert_eq!(mo.booked_minutes, 370);
    assert!(mo.utilisation > mb.utilisation);
    assert!(
        placement(&base, "C").reason.contains("full"),
        "{}",
        placement(&base, "C").reason
    );
}

#[test]
fn a_priority_limit_is_kept_before_a_longer_wait() {
    // One list before the P2 patient's limit, room for one case.
    let w2 = start() + Duration::days(15);
    let mut urgent = listed("P2", Priority::P2, 1, 120);
    urgent.decided_to_admit = start() - Duration::days(7);
    let p = plan(
        vec![listed("OLD", Priority::P4, 40, 120), urgent],
        vec![
            session("EARLY", w2, "C1", 150),
            session("LATE", start() + Duration::weeks(5), "C1", 150),
        ],
    );
    for proposal in [baseline(&p).unwrap(), propose(&p, &quick()).unwrap()] {
        let m = Measures::of(&p, &proposal);
        assert_eq!(placement(&proposal, "P2").session.as_deref(), Some("EARLY"));
        assert!(placement(&proposal, "P2")
            .reason
            .contains("within the limit of 2026-12-28"));
        assert_eq!(m.past_priority_limit, 0);
        assert!(m.rule_breaks.is_empty(), "{:?}", m.rule_breaks);
    }
}

#[test]
fn nobody_is_booked_without_a_valid_assessment_onto_a_locked_list_or_a_list_lost_to_leave() {
    let mut lapsing = listed("LAPSING", Priority::P4, 10, 60);
    lapsing.pre_op = PreOp::Fit {
        valid_until: start() + Duration::days(20),
    };
    let mut unassessed = listed("NONE", Priority::P4, 30, 60);
    unassessed.pre_op = PreOp::None;
    let mut waiting = listed("BOOKED", Priority::P4, 30, 60);
    waiting.pre_op = PreOp::Booked {
        on: start() + Duration::days(3),
    };
    let mut deferred = listed("P5", Priority::P5, 30, 60);
    deferred.decided_to_admit = start() - Duration::weeks(30);
    let mut p = plan(
        vec![
            lapsing,
            unassessed,
            waiting,
            deferred,
            listed("READY", Priority::P4, 5, 60),
        ],
        vec![
            session("LOCKED", start() + Duration::days(3), "C1", 240),
            session("AWAY", start() + Duration::days(16), "C1", 240),
            session("OPEN", start() + Duration::days(23), "C1", 240),
        ],
    );
    p.leave.push(Leave {
        person: "C1".into(),
        from: start() + Duration::days(14),
        to: start() + Duration::days(18),
    });
    let best = propose(&p, &quick()).unwrap();
    let m = Measures::of(&p, &best);
    assert!(m.rule_breaks.is_empty(), "{:?}", m.rule_breaks);
    assert_eq!(placement(&best, "READY").session.as_deref(), Some("OPEN"));
    let reason = |id| placement(&best, id).reason.clone();
    assert!(
        reason("NONE").contains("no pre-operative assessment"),
        "{}",
        reason("NONE")
    );
    assert!(
        reason("BOOKED").contains("booked for 2026-12-10"),
        "{}",
        reason("BOOKED")
    );
    assert!(reason("P5").contains("deferred"), "{}", reason("P5"));
    // Valid to day 20: the only list open before then is lost to leave.
    assert_eq!(placement(&best, "LAPSING").session, None);
    assert_eq!(m.sessions, 2, "the list lost to leave does not run");
}

#[test]
fn a_bay_holds_one_sex_and_its_beds() {
    // Two inpatients, a man and a woman, one bay of two beds: only one may
    // be in it on a day, so the second goes to the next list.
    let w3 = start() + Duration::weeks(3);
    let mut man = listed("MAN", Priority::P4, 20, 60);
    man.sex = Sex::Male;
    man.nights = 2;
    let mut woman = listed("WOMAN", Priority::P4, 19, 60);
    woman.nights = 2;
    let mut p = plan(
        vec![man, woman],
        vec![
            session("S1", w3, "C1", 240),
            session("S2", w3 + Duration::days(7), "C1", 240),
        ],
    );
    p.bays.push(Bay {
        id: "Ward A bay 1".into(),
        ward: "Ward A".into(),
        beds: 2,
        occupied: Vec::new(),
    });
    for proposal in [baseline(&p).unwrap(), propose(&p, &quick()).unwrap()] {
        let m = Measures::of(&p, &proposal);
        assert!(m.rule_breaks.is_empty(), "{:?}", m.rule_breaks);
        assert_eq!(m.treated, 2);
        assert_ne!(
            placement(&proposal, "MAN").session,
            placement(&proposal, "WOMAN").session
        );
        assert_eq!(
            placement(&proposal, "MAN").bay.as_deref(),
            Some("Ward A bay 1")
        );
    }
}

#[test]
fn measures_catch_a_proposal_that_breaks_the_rules() {
    // A hand-made proposal: a patient with no assessment onto a locked list
    // of another consultant, past its minutes.
    let mut p = plan(
        vec![listed("X", Priority::P4, 10, 300)],
        vec![session("LOCKED", start() + Duration::days(2), "C2", 240)],
    );
    p.listed[0].pre_op = PreOp::None;
    let bad = Proposal {
        placements: vec![Placement {
            id: "X".into(),
            session: Some("LOCKED".into()),
            date: Some(start() + Duration::days(2)),
            bay: None,
            status: Status::Proposed,
            reason: String::new(),
        }],
        cost: 0,
    };
    let m = Measures::of(&p, &bad);
    let text = m.rule_breaks.join("\n");
    for needle in ["locked", "not of C1", "pre-operative", "minutes booked"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn a_surgeons_week_of_leave_moves_only_the_bookings_it_takes_away() {
    let mut listed_all = Vec::new();
    let mut sessions = Vec::new();
    for w in 2..6 {
        for d in 0..3 {
            let date = start() + Duration::weeks(w) + Duration::days(d);
            sessions.push(session(&format!("C1-w{w}d{d}"), date, "C1", 240));
            let mut s = session(&format!("C2-w{w}d{d}"), date, "C2", 240);
            s.theatre = "MT2".into();
            sessions.push(s);
        }
    }
    for k in 0..40 {
        let mut l = listed(&format!("E{k}"), Priority::P4, 10 + k, 50 + (k * 7) % 60);
        if k % 2 == 1 {
            l.consultant = "C2".into();
        }
        listed_all.push(l);
    }
    let p = plan(listed_all, sessions);
    let before = propose(&p, &quick()).unwrap();
    let leave = [Leave {
        person: "C1".into(),
        from: start() + Duration::weeks(3),
        to: start() + Duration::weeks(3) + Duration::days(6),
    }];
    let lost: Vec<&str> = before
        .placements
        .iter()
        .filter(|x| x.session.as_deref().is_some_and(|s| s.starts_with("C1-w3")))
        .map(|x| x.id.as_str())
        .collect();
    assert!(!lost.is_empty(), "the week of leave takes bookings away");
    let disruption = Disruption {
        leave: leave.to_vec(),
        ..Disruption::default()
    };
    let warm = replan(&p, &before, &disruption, &quick()).unwrap();
    let mut moved = warm.moved.clone();
    moved.sort();
    let mut expect: Vec<String> = lost.iter().map(|s| s.to_string()).collect();
    expect.sort();
    assert_eq!(moved, expect, "only the bookings on lost lists move");
    let mut after = p.clone();
    after.leave.extend(leave.iter().cloned());
    let m = Measures::of(&after, &warm.proposal);
    assert!(m.rule_breaks.is_empty(), "{:?}", m.rule_breaks);
    let afresh = propose(&after, &quick()).unwrap();
    assert!(warm.moved.len() < afresh.moved(&before).len());

    // A list cancelled: its patients move, nobody else.
    let on_it: Vec<String> = warm
        .proposal
        .placements
        .iter()
        .filter(|x| x.session.as_deref() == Some("C2-w4d1"))
        .map(|x| x.id.clone())
        .collect();
    assert!(!on_it.is_empty());
    let mut now = after.clone();
    let again = replan(
        &now,
        &warm.proposal,
        &Disruption {
            cancelled: vec!["C2-w4d1".into()],
            ..Disruption::default()
        },
        &quick(),
    )
    .unwrap();
    let mut moved = again.moved.clone();
    moved.sort();
    let mut expect = on_it.clone();
    expect.sort();
    assert_eq!(moved, expect);
    now.sessions
        .iter_mut()
        .find(|s| s.id == "C2-w4d1")
        .unwrap()
        .cancelled = true;
    let m = Measures::of(&now, &again.proposal);
    assert!(m.rule_breaks.is_empty(), "{:?}", m.rule_breaks);
    assert!(again
        .proposal
        .placements
        .iter()
        .all(|x| x.session.as_deref() != Some("C2-w4d1")));
}

#[test]
fn bad_plans_are_refused_by_name() {
    let mut p = plan(
        vec![
            listed("A", Priority::P4, 1, 60),
            listed("A", Priority::P4, 1, 60),
        ],
        vec![],
    );
    assert_eq!(
        propose(&p, &quick()).unwrap_err(),
        PlanError::DuplicateEntry("A".into())
    );
    p.listed.pop();
    p.listed[0].minutes = -5;
    assert!(matches!(
        propose(&p, &quick()).unwrap_err(),
        PlanError::Entry { .. }
    ));
    p.listed[0].minutes = 60;
    p.weeks = 0;
    assert_eq!(baseline(&p).unwrap_err(), PlanError::NoWeeks);
    p.weeks = 400;
    assert_eq!(baseline(&p).unwrap_err(), PlanError::TooLong(400));
}

#[test]
fn priority_is_read_as_written_and_limits_run_from_the_decision() {
    assert_eq!(Priority::parse("P1a"), Some(Priority::P1a));
    assert_eq!(Priority::parse(" 2 "), Some(Priority::P2));
    assert_eq!(Priority::parse("p6"), Some(Priority::P6));
    assert_eq!(Priority::parse("urgent"), None);
    let d = day("2026-11-30");
    assert_eq!(Priority::P1b.limit(d), Some(day("2026-12-03")));
    assert_eq!(Priority::P2.limit(d), Some(day("2026-12-28")));
    assert_eq!(Priority::P3.limit(d), Some(day("2027-02-28")));
    assert_eq!(Priority::P4.limit(d), None);
}

fn bay(id: &str, ward: &str, beds: usize) -> Bay {
    Bay {
        id: id.into(),
        ward: ward.into(),
        beds,
        occupied: Vec::new(),
    }
}

/// A registered nurse on `ward` for every shift of the plan's days but
/// `except`.
fn nurse_all_shifts(id: &str, ward: &str, p: &Plan, except: &[NaiveDate]) -> RosteredNurse {
    RosteredNurse {
        id: id.into(),
        ward: ward.into(),
        shifts: (0..p.days() as i64)
            .map(|d| p.start + Duration::days(d))
            .filter(|d| !except.contains(d))
            .flat_map(|d| Shift::ALL.map(|s| (d, s)))
            .collect(),
    }
}

/// Six patients back from theatre on one day in a ward with one
/// registered nurse: 18 units of nursing where one nurse carries 16 by
/// day and 20 at night, so the early and the late are short. Past the
/// ward's last rostered day the shifts are not yet rostered; with no
/// roster at all nothing is counted, and the measures say so.
#[test]
fn measures_count_ward_shifts_short_of_safe_nursing() {
    let w3 = start() + Duration::days(15);
    let patients: Vec<Listed> = (0..6)
        .map(|k| {
            let mut l = listed(&format!("IN{k}"), Priority::P4, 20, 30);
            l.nights = 3;
            l
        })
        .collect();
    let mut p = plan(patients, vec![session("S1", w3, "C1", 480)]);
    p.bays.push(bay("Ward A bay 1", "Ward A", 6));
    let by_hand = baseline(&p).unwrap();
    let m = Measures::of(&p, &by_hand);
    assert_eq!(m.treated, 6);
    assert!(!m.nursing_checked);
    assert_eq!((m.understaffed_shifts, m.unrostered_shifts), (0, 0));

    // Rostered up to the day after the operations, not beyond: the third
    // day of the stay is past the published roster.
    let mut rostered = nurse_all_shifts("RN1", "Ward A", &p, &[]);
    rostered
        .shifts
        .retain(|&(d, _)| d <= w3 + Duration::days(1));
    p.nurses.push(rostered);
    let m = Measures::of(&p, &by_hand);
    assert!(m.nursing_checked);
    assert_eq!(
        m.understaffed_shifts, 2,
        "the early and the late of the day of surgery"
    );
    assert_eq!(m.unrostered_shifts, 3, "the third day's three shifts");
}

/// The published roster has nobody on the ward one Tuesday. Booking by
/// hand takes the Tuesday list, the first that fits; the proposal waits
/// for Thursday's, so no patient is on the ward without a registered
/// nurse.
#[test]
fn a_gap_in_the_roster_moves_admissions_off_it() {
    let tuesday = start() + Duration::days(15);
    let thursday = tuesday + Duration::days(2);
    let mut l = listed("IN", Priority::P4, 20, 60);
    l.nights = 1;
    let mut p = plan(
        vec![l],
        vec![
            session("TUE", tuesday, "C1", 240),
            session("THU", thursday, "C1", 240),
        ],
    );
    p.bays.push(bay("Ward A bay 1", "Ward A", 4));
    p.nurses
        .push(nurse_all_shifts("RN1", "Ward A", &p, &[tuesday]));
    let by_hand = baseline(&p).unwrap();
    assert_eq!(placement(&by_hand, "IN").session.as_deref(), Some("TUE"));
    assert_eq!(Measures::of(&p, &by_hand).understaffed_shifts, 3);
    let proposed = propose(&p, &quick()).unwrap();
    assert_eq!(placement(&proposed, "IN").session.as_deref(), Some("THU"));
    let m = Measures::of(&p, &proposed);
    assert_eq!(m.understaffed_shifts, 0);
    assert!(m.rule_breaks.is_empty(), "{:?}", m.rule_breaks);
}

/// A nurse covers only their own ward. Ward B comes first and has no
/// registered nurse in its published roster until the plan's last day;
/// ward A's nurse works every shift. An inpatient goes to ward A: were A's
/// nurse allowed onto B's bay, B would cost nothing more and, coming
/// first, be kept.
#[test]
fn nurses_cover_only_their_own_ward() {
    let w3 = start() + Duration::days(15);
    let mut l = listed("IN", Priority::P4, 20, 60);
    l.nights = 2;
    let mut p = plan(vec![l], vec![session("S1", w3, "C1", 240)]);
    p.bays.push(bay("Ward B bay 1", "Ward B", 4));
    p.bays.push(bay("Ward A bay 1", "Ward A", 4));
    p.nurses.push(nurse_all_shifts("RN-A", "Ward A", &p, &[]));
    let last = p.start + Duration::days(p.days() as i64 - 1);
    p.nurses.push(RosteredNurse {
        id: "RN-B".into(),
        ward: "Ward B".into(),
        shifts: vec![(last, Shift::Night)],
    });
    let proposed = propose(&p, &quick()).unwrap();
    assert_eq!(placement(&proposed, "IN").session.as_deref(), Some("S1"));
    assert_eq!(
        placement(&proposed, "IN").bay.as_deref(),
        Some("Ward A bay 1")
    );
    assert_eq!(Measures::of(&p, &proposed).understaffed_shifts, 0);
}
