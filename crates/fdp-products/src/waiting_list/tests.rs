//! The RTT rules case by case, each a worked example over tables in
//! memory, asked through the platform behind the demo policy.

use std::collections::BTreeMap;

use fdp_govern::memory::MemoryTables;
use fdp_govern::Purpose;
use serde_json::{json, Value};

use crate::platform::ProductError;
use crate::testing::DemoInstance;

/// One pathway's activities and its entry on the list, written briefly.
#[derive(Default)]
struct Pathways {
    activities: Vec<Value>,
    entries: Vec<Value>,
    encounters: Vec<Value>,
    pathways: Vec<Value>,
}

impl Pathways {
    /// Activities of `pathway`, each `(date, sequence in the day, code)`.
    fn activities(mut self, pathway: &str, list: &[(&str, i32, &str)]) -> Self {
        for (i, (date, seq, code)) in list.iter().enumerate() {
            self.activities.push(json!({
                "activity_id": format!("{pathway}-{i}"), "pathway_id": pathway,
                "patient_id": format!("patient-{pathway}"), "activity_date": date,
                "activity_sequence": seq, "rtt_status_code": code,
                "source_system": "PAS", "source_reference": format!("rtt_activity line {i}")}));
        }
        self
    }

    /// An entry on the admission list for `pathway`, with `more` fields.
    fn entry(mut self, pathway: &str, more: Value) -> Self {
        let mut entry = json!({"eal_id": pathway, "pathway_id": pathway,
            "patient_id": format!("patient-{pathway}"), "patient_name": format!("Patient {pathway}")});
        for (k, v) in more.as_object().unwrap() {
            entry[k] = v.clone();
        }
        self.entries.push(entry);
        self
    }

    /// The planned procedure and specialty of `pathway`'s entry.
    fn planned(mut self, pathway: &str, specialty: &str, procedure: &str) -> Self {
        self.encounters.push(json!({"encounter_id": pathway, "eal_id": pathway,
            "specialty_name": specialty, "intended_primary_procedure_code": procedure}));
        self.pathways.push(json!({"pathway_id": pathway, "specialty_name": specialty,
            "consultant_name": format!("Consultant of {specialty}")}));
        self
    }

    fn instance(self) -> DemoInstance {
        self.instance_with("")
    }

    /// The instance under the demo policy with the roles in `more` added.
    fn instance_with(self, more: &str) -> DemoInstance {
        DemoInstance::with_policy(
            MemoryTables::new()
                .with_rows("pathway_activity", &self.activities)
                .unwrap()
                .with_rows("eal_entry", &self.entries)
                .unwrap()
                .with_rows("encounter", &self.encounters)
                .unwrap()
                .with_rows("patient_pathway", &self.pathways)
                .unwrap(),
            more,
        )
    }
}

/// The PTL as the waiting-list manager sees it for direct care on
/// `as_at`, filtered by `more`: one map of column to value per entry.
async fn ptl(
    instance: &DemoInstance,
    as_at: &str,
    more: &[(&str, &str)],
) -> Result<Vec<BTreeMap<String, Value>>, ProductError> {
    let mut params = vec![("as_at", as_at)];
    params.extend_from_slice(more);
    let out = instance
        .view(
            "waiting-list",
            "waiting-list-manager",
            Purpose::DirectCare,
            "ui",
            "ptl",
            &params,
        )
        .await?;
    Ok(out
        .rows
        .iter()
        .map(|row| {
            out.columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.clone(), v.clone()))
                .collect()
        })
        .collect())
}

/// The one entry of `pathway` on the PTL.
async fn entry(instance: &DemoInstance, as_at: &str, pathway: &str) -> BTreeMap<String, Value> {
    ptl(instance, as_at, &[])
        .await
        .unwrap()
        .into_iter()
        .find(|e| e["pathway_id"] == json!(pathway))
        .unwrap_or_else(|| panic!("{pathway} is not on the PTL"))
}

/// One pathway with `activities` and an entry with no extract figures.
fn one(activities: &[(&str, i32, &str)]) -> DemoInstance {
    Pathways::default()
        .activities("W1", activities)
        .entry("W1", json!({}))
        .instance()
}

#[tokio::test]
async fn a_referral_received_starts_the_clock_and_the_wait_counts_whole_weeks() {
    // Referral received on Monday 5 January 2026 (code 10), seen on
    // 5 February (20). On 30 November the clock has run 329 days: 47
    // whole weeks.
    let i = one(&[("2026-01-05", 0, "10"), ("2026-02-05", 0, "20")]);
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["clock"], json!("running"));
    assert_eq!(e["rtt_period_start_date"], json!("2026-01-05"));
    assert_eq!(e["clock_start_code"], json!("10"));
    assert_eq!(e["rtt_status_code"], json!("20"));
    assert_eq!(e["rtt_status_date"], json!("2026-02-05"));
    assert_eq!(e["rtt_period_length"], json!(329));
    assert_eq!(e["rtt_weeks_waiting"], json!(47));
    assert_eq!(e["rtt_time_bands"], json!("18-51 weeks"));
    assert_eq!(e["rtt_days_paused"], json!(0));
    assert_eq!(e["rtt_period_end_date"], Value::Null);
    // Breach dates: the start plus 7·N days.
    assert_eq!(e["date_of_18_week_rtt_breach"], json!("2026-05-11"));
    assert_eq!(e["days_to_18_week_rtt_breach"], json!(-203));
    assert_eq!(e["date_of_52_week_rtt_breach"], json!("2027-01-04"));
    assert_eq!(e["days_to_52_week_rtt_breach"], json!(35));
    assert_eq!(e["date_of_65_week_rtt_breach"], json!("2027-04-05"));
    assert_eq!(e["rtt_period_78_week_breach_date"], json!("2027-07-05"));
    assert_eq!(e["rtt_period_104_week_breach_date"], json!("2028-01-03"));
    assert_eq!(e["rtt_period_days_to_104_week_breach"], json!(399));
}

#[tokio::test]
async fn subsequent_activity_and_a_transfer_continue_the_clock() {
    let i = one(&[
        ("2026-03-02", 0, "10"),
        ("2026-04-01", 0, "20"),
        ("2026-05-01", 0, "21"),
        ("2026-06-01", 0, "20"),
    ]);
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["clock"], json!("running"));
    assert_eq!(e["rtt_period_start_date"], json!("2026-03-02"));
    assert_eq!(e["rtt_status_code"], json!("20"));
}

#[tokio::test]
async fn each_stop_code_stops_the_clock_on_its_day() {
    for code in ["30", "31", "32", "33", "34", "35", "36"] {
        let i = one(&[
            ("2026-03-02", 0, "10"),
            ("2026-04-01", 0, "20"),
            ("2026-06-15", 0, code),
        ]);
        let e = entry(&i, "2026-11-30", "W1").await;
        assert_eq!(e["clock"], json!("stopped"), "code {code}");
        assert_eq!(e["rtt_period_end_date"], json!("2026-06-15"), "code {code}");
        assert_eq!(e["clock_stop_code"], json!(code), "code {code}");
        assert_eq!(e["rtt_period_start_date"], Value::Null, "code {code}");
        assert_eq!(e["rtt_weeks_waiting"], Value::Null, "code {code}");
        // Before the stop the same clock was running.
        let before = entry(&i, "2026-06-14", "W1").await;
        assert_eq!(before["clock"], json!("running"), "code {code}");
        assert_eq!(before["rtt_weeks_waiting"], json!(14), "code {code}");
    }
}

#[tokio::test]
async fn the_end_of_active_monitoring_restarts_the_clock() {
    // Active monitoring by the clinician (32) stops the first clock; the
    // decision to treat after it (11) starts a new one, from zero.
    let i = one(&[
        ("2026-01-05", 0, "10"),
        ("2026-03-05", 0, "32"),
        ("2026-04-10", 0, "91"),
        ("2026-06-01", 0, "11"),
    ]);
    let during = entry(&i, "2026-05-01", "W1").await;
    assert_eq!(during["clock"], json!("stopped"));
    assert_eq!(during["clock_stop_code"], json!("32"));
    assert_eq!(during["rtt_status_code"], json!("91"));
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["clock"], json!("running"));
    assert_eq!(e["rtt_period_start_date"], json!("2026-06-01"));
    assert_eq!(e["clock_start_code"], json!("11"));
    assert_eq!(e["rtt_weeks_waiting"], json!(26));
}

#[tokio::test]
async fn a_new_period_after_treatment_starts_a_new_clock() {
    let i = one(&[
        ("2025-09-01", 0, "10"),
        ("2026-01-12", 0, "30"),
        ("2026-02-20", 0, "90"),
        ("2026-03-02", 0, "12"),
    ]);
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["clock"], json!("running"));
    assert_eq!(e["rtt_period_start_date"], json!("2026-03-02"));
    assert_eq!(e["clock_start_code"], json!("12"));
}

#[tokio::test]
async fn a_second_referral_letter_does_not_restart_a_running_clock() {
    let i = one(&[("2026-01-05", 0, "10"), ("2026-02-02", 0, "10")]);
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["rtt_period_start_date"], json!("2026-01-05"));
}

#[tokio::test]
async fn activities_outside_a_period_change_nothing() {
    // Not applicable (98) or not yet known (99) alone start no clock.
    let i = one(&[("2026-01-05", 0, "98"), ("2026-02-05", 0, "99")]);
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["clock"], json!("no clock"));
    assert_eq!(e["rtt_weeks_waiting"], Value::Null);
    // And after treatment (90), the clock stays stopped.
    let i = one(&[
        ("2026-01-05", 0, "10"),
        ("2026-03-05", 0, "30"),
        ("2026-04-05", 0, "90"),
    ]);
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["clock"], json!("stopped"));
    assert_eq!(e["rtt_period_end_date"], json!("2026-03-05"));
    assert_eq!(e["rtt_status_code"], json!("90"));
}

#[tokio::test]
async fn activities_after_the_day_asked_about_are_not_yet_counted() {
    let i = one(&[("2026-01-05", 0, "10"), ("2026-12-15", 0, "30")]);
    assert_eq!(entry(&i, "2026-11-30", "W1").await["clock"], json!("running"));
    assert_eq!(entry(&i, "2026-12-15", "W1").await["clock"], json!("stopped"));
    // Nor is a pathway whose first activity is later.
    let i = one(&[("2026-12-01", 0, "10")]);
    assert_eq!(entry(&i, "2026-11-30", "W1").await["clock"], json!("no clock"));
}

#[tokio::test]
async fn activities_on_one_day_count_in_their_sequence() {
    // Treated (30) and then, the same day, a new period (12): running.
    let i = one(&[
        ("2026-01-05", 0, "10"),
        ("2026-05-05", 1, "30"),
        ("2026-05-05", 2, "12"),
    ]);
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["clock"], json!("running"));
    assert_eq!(e["rtt_period_start_date"], json!("2026-05-05"));
    // The other way round: the new period is treated the same day.
    let i = one(&[
        ("2026-01-05", 0, "10"),
        ("2026-05-05", 1, "12"),
        ("2026-05-05", 2, "30"),
    ]);
    assert_eq!(entry(&i, "2026-11-30", "W1").await["clock"], json!("stopped"));
}

#[tokio::test]
async fn each_breach_threshold_is_reached_on_its_day_and_breached_the_day_after() {
    let i = one(&[("2025-01-06", 0, "10")]);
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 6).unwrap();
    for (weeks, days_col, band_before, band_at) in [
        (18, "days_to_18_week_rtt_breach", "00-17 weeks", "18-51 weeks"),
        (52, "days_to_52_week_rtt_breach", "18-51 weeks", "52-64 weeks"),
        (65, "days_to_65_week_rtt_breach", "52-64 weeks", "65-77 weeks"),
        (78, "rtt_period_days_to_78_week_breach", "65-77 weeks", "78-103 weeks"),
        (104, "rtt_period_days_to_104_week_breach", "78-103 weeks", "104+ weeks"),
    ] {
        let breach = start + chrono::Duration::days(7 * weeks);
        let day_before = (breach - chrono::Duration::days(1)).to_string();
        let e = entry(&i, &day_before, "W1").await;
        assert_eq!(e["rtt_weeks_waiting"], json!(weeks - 1), "{weeks}");
        assert_eq!(e[days_col], json!(1), "{weeks}");
        assert_eq!(e["rtt_time_bands"], json!(band_before), "{weeks}");
        let e = entry(&i, &breach.to_string(), "W1").await;
        assert_eq!(e["rtt_weeks_waiting"], json!(weeks), "{weeks}");
        assert_eq!(e[days_col], json!(0), "{weeks}");
        assert_eq!(e["rtt_time_bands"], json!(band_at), "{weeks}");
        let after = (breach + chrono::Duration::days(1)).to_string();
        assert_eq!(entry(&i, &after, "W1").await[days_col], json!(-1), "{weeks}");
        // The filter of clocks breaching within N weeks counts from today:
        // a week before, the breach is within 1 week (and not within 0).
        let week_before = (breach - chrono::Duration::days(7)).to_string();
        let within = |n: &'static str| {
            let i = &i;
            let day = week_before.clone();
            async move {
                ptl(i, &day, &[("breach_within_weeks", n)])
                    .await
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(within("2").await, 1, "{weeks}");
        assert_eq!(within("1").await, 0, "{weeks}: 7 days away is not within 1 week");
    }
}

#[tokio::test]
async fn the_look_ahead_flags_mark_ten_weeks_before_each_breach() {
    let i = one(&[("2025-01-06", 0, "10")]);
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 6).unwrap();
    let on = |days: i64| (start + chrono::Duration::days(days)).to_string();
    // Less than 10 weeks (70 days) to the 18-week breach: from day 57.
    assert_eq!(entry(&i, &on(56), "W1").await["less_than_10_weeks_to_rtt_breach"], json!(false));
    assert_eq!(entry(&i, &on(57), "W1").await["less_than_10_weeks_to_rtt_breach"], json!(true));
    assert_eq!(entry(&i, &on(126), "W1").await["less_than_10_weeks_to_rtt_breach"], json!(true));
    assert_eq!(entry(&i, &on(127), "W1").await["less_than_10_weeks_to_rtt_breach"], json!(false));
    // 68 weeks waited (10 to the 78-week breach), and 94 (10 to 104).
    assert_eq!(entry(&i, &on(68 * 7 - 1), "W1").await["rtt_period_is_68_week_waiter"], json!(false));
    assert_eq!(entry(&i, &on(68 * 7), "W1").await["rtt_period_is_68_week_waiter"], json!(true));
    assert_eq!(entry(&i, &on(94 * 7 - 1), "W1").await["rtt_period_is_94_week_waiter"], json!(false));
    assert_eq!(entry(&i, &on(94 * 7), "W1").await["rtt_period_is_94_week_waiter"], json!(true));
}

#[tokio::test]
async fn dates_count_across_leap_days_and_clock_changes() {
    // 126 days from 20 December 2027 crosses 29 February 2028.
    let i = one(&[("2027-12-20", 0, "10")]);
    let e = entry(&i, "2028-03-01", "W1").await;
    assert_eq!(e["date_of_18_week_rtt_breach"], json!("2028-04-24"));
    assert_eq!(e["rtt_period_length"], json!(72));
    // The same start a year earlier has no leap day to cross.
    let i = one(&[("2026-12-20", 0, "10")]);
    assert_eq!(
        entry(&i, "2027-03-01", "W1").await["date_of_18_week_rtt_breach"],
        json!("2027-04-25")
    );
    // A clock started on the leap day itself reaches 52 weeks on 27
    // February 2029 (364 days; 2029 has no 29 February).
    let i = one(&[("2028-02-29", 0, "10")]);
    let e = entry(&i, "2029-02-27", "W1").await;
    assert_eq!(e["date_of_52_week_rtt_breach"], json!("2029-02-27"));
    assert_eq!(e["rtt_weeks_waiting"], json!(52));
    // Five calendar weeks across the spring clock change (29 March 2026,
    // a day of 23 hours) are five weeks, not four weeks and six days; and
    // across the autumn one (25 October, 25 hours) not five weeks and a
    // day.
    let i = one(&[("2026-03-01", 0, "10")]);
    let e = entry(&i, "2026-04-05", "W1").await;
    assert_eq!((e["rtt_period_length"].clone(), e["rtt_weeks_waiting"].clone()), (json!(35), json!(5)));
    let i = one(&[("2026-10-04", 0, "10")]);
    let e = entry(&i, "2026-11-08", "W1").await;
    assert_eq!((e["rtt_period_length"].clone(), e["rtt_weeks_waiting"].clone()), (json!(35), json!(5)));
}

#[tokio::test]
async fn days_paused_recorded_on_the_entry_move_the_breach_dates_and_show() {
    let i = Pathways::default()
        .activities("W1", &[("2026-01-05", 0, "10")])
        .entry("W1", json!({"rtt_days_paused": 14}))
        .instance();
    let e = entry(&i, "2026-11-30", "W1").await;
    assert_eq!(e["rtt_days_paused"], json!(14));
    assert_eq!(e["rtt_period_length"], json!(329 - 14));
    assert_eq!(e["date_of_18_week_rtt_breach"], json!("2026-05-25"));
}

#[tokio::test]
async fn each_clinical_priority_has_its_limit_from_the_decision_to_admit() {
    let mut p = Pathways::default();
    for (id, priority) in [
        ("A", "P1a"),
        ("B", "P1b"),
        ("C", "P2"),
        ("D", "P3"),
        ("E", "P4"),
        ("F", "P5"),
        ("G", "P6"),
    ] {
        p = p
            .activities(id, &[("2026-09-01", 0, "10")])
            .entry(
                id,
                json!({"priority_type": priority, "decided_to_admit_date": "2026-11-30"}),
            );
    }
    let i = p.instance();
    let due = |e: &BTreeMap<String, Value>| e["priority_due_date"].clone();
    let check = |day: &'static str, expect: &'static [(&'static str, Option<&'static str>, bool)]| {
        let i = &i;
        async move {
            for (id, due_date, past) in expect {
                let e = entry(i, day, id).await;
                assert_eq!(due(&e), due_date.map_or(Value::Null, |d| json!(d)), "{id} on {day}");
                assert_eq!(e["past_priority_limit"], if due_date.is_some() { json!(past) } else { Value::Null }, "{id} on {day}");
            }
        }
    };
    // P1a: 24 hours; P1b: 72 hours; P2: four weeks; P3: three months (30
    // November to 28 February, the month's last day); P4 longer; P5, P6
    // deferred by the patient's choice: no limit.
    check(
        "2026-12-01",
        &[
            ("A", Some("2026-12-01"), false),
            ("B", Some("2026-12-03"), false),
            ("C", Some("2026-12-28"), false),
            ("D", Some("2027-02-28"), false),
            ("E", None, false),
            ("F", None, false),
            ("G", None, false),
        ],
    )
    .await;
    check(
        "2026-12-02",
        &[("A", Some("2026-12-01"), true), ("B", Some("2026-12-03"), false)],
    )
    .await;
    check(
        "2026-12-04",
        &[("B", Some("2026-12-03"), true), ("C", Some("2026-12-28"), false)],
    )
    .await;
    check(
        "2027-03-01",
        &[("C", Some("2026-12-28"), true), ("D", Some("2027-02-28"), true)],
    )
    .await;
}

#[tokio::test]
async fn a_patient_booked_ahead_of_a_longer_waiter_of_the_same_priority_and_procedure_is_flagged() {
    let mut p = Pathways::default();
    // Same priority and procedure: A waited longest and is booked for the
    // 20th; B, who started later, is booked for the 10th (ahead of A);
    // C, later still, for the 25th: after A, but ahead of D, who waited
    // longer and is not booked. D started the same day as B: no longer a
    // waiter than B. E has another procedure; F another priority.
    for (id, start, tci, priority, procedure) in [
        ("A", "2026-01-05", Some("2026-12-20"), "P3", "W401"),
        ("B", "2026-03-02", Some("2026-12-10"), "P3", "W401"),
        ("C", "2026-04-06", Some("2026-12-25"), "P3", "W401"),
        ("D", "2026-03-02", None, "P3", "W401"),
        ("E", "2026-05-04", Some("2026-12-08"), "P3", "W371"),
        ("F", "2026-05-04", Some("2026-12-08"), "P2", "W401"),
    ] {
        p = p
            .activities(id, &[(start, 0, "10")])
            .entry(id, json!({"priority_type": priority, "planned_date": tci}))
            .planned(id, "Trauma and orthopaedics", procedure);
    }
    let i = p.instance();
    let rows = ptl(&i, "2026-11-30", &[]).await.unwrap();
    let flagged: Vec<&str> = rows
        .iter()
        .filter(|e| e["booked_out_of_turn"] == json!(true))
        .map(|e| e["pathway_id"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, vec!["B", "C"]);
    // With only A before it, C is in turn when booked after A, and out of
    // turn when A is unbooked or booked later.
    for (a_tci, out_of_turn) in [(None, true), (Some("2026-12-20"), false), (Some("2026-12-30"), true)] {
        let mut p = Pathways::default();
        for (id, start, tci) in [("A", "2026-01-05", a_tci), ("C", "2026-04-06", Some("2026-12-25"))] {
            p = p
                .activities(id, &[(start, 0, "10")])
                .entry(id, json!({"priority_type": "P3", "planned_date": tci}))
                .planned(id, "Trauma and orthopaedics", "W401");
        }
        let rows = ptl(&p.instance(), "2026-11-30", &[]).await.unwrap();
        let c = rows.iter().find(|e| e["pathway_id"] == json!("C")).unwrap();
        assert_eq!(c["booked_out_of_turn"], json!(out_of_turn), "A booked {a_tci:?}");
    }
    // Two whose clocks started the same day have not waited longer than
    // each other, whichever is booked first, or if one is not booked.
    for h_tci in [None, Some("2026-12-20"), Some("2026-12-01"), Some("2026-12-10")] {
        let mut p = Pathways::default();
        for (id, tci) in [("G", Some("2026-12-10")), ("H", h_tci)] {
            p = p
                .activities(id, &[("2026-03-02", 0, "10")])
                .entry(id, json!({"priority_type": "P3", "planned_date": tci}))
                .planned(id, "Trauma and orthopaedics", "W401");
        }
        let rows = ptl(&p.instance(), "2026-11-30", &[]).await.unwrap();
        assert!(
            rows.iter().all(|e| e["booked_out_of_turn"] == json!(false)),
            "H booked {h_tci:?}: {rows:?}"
        );
    }
}

#[tokio::test]
async fn where_the_extract_disagrees_both_are_shown_with_why() {
    let i = Pathways::default()
        // Restarted after active monitoring; the extract still counts
        // from the referral.
        .activities("R", &[("2026-01-05", 0, "10"), ("2026-03-05", 0, "32"), ("2026-06-01", 0, "11")])
        .entry("R", json!({"rtt_period_start_date": "2026-01-05", "rtt_status_code": "20", "rtt_weeks_waiting": 47}))
        // Treated, and still listed as waiting.
        .activities("T", &[("2026-01-05", 0, "10"), ("2026-05-05", 0, "30")])
        .entry("T", json!({"rtt_period_start_date": "2026-01-05", "rtt_status_code": "20"}))
        // Agrees on the start, weeks counted on another day.
        .activities("S", &[("2026-01-05", 0, "10")])
        .entry("S", json!({"rtt_period_start_date": "2026-01-05", "rtt_weeks_waiting": 40}))
        // Agrees.
        .activities("A", &[("2026-01-05", 0, "10")])
        .entry("A", json!({"rtt_period_start_date": "2026-01-05", "rtt_weeks_waiting": 47}))
        // Nothing to compute from.
        .entry("N", json!({"rtt_period_start_date": "2026-01-05"}))
        .instance();
    let rows = ptl(&i, "2026-11-30", &[]).await.unwrap();
    let why = |id: &str| {
        let e = rows.iter().find(|e| e["pathway_id"] == json!(id)).unwrap();
        e["extract_disagrees"].clone()
    };
    assert_eq!(why("R"), json!("the clock restarted after active monitoring on 2026-06-01; the extract counts from 2026-01-05"));
    assert_eq!(why("T"), json!("the clock stopped on 2026-05-05 (code 30); the extract still counts it as waiting"));
    assert_eq!(why("S"), json!("the extract gives 40 weeks waited, counted on another day"));
    assert_eq!(why("A"), Value::Null);
    assert_eq!(why("N"), json!("no activity on the pathway by this date to compute the clock from"));
    // Both figures are there side by side.
    let r = rows.iter().find(|e| e["pathway_id"] == json!("R")).unwrap();
    assert_eq!(r["extract_rtt_period_start_date"], json!("2026-01-05"));
    assert_eq!(r["rtt_period_start_date"], json!("2026-06-01"));
    assert_eq!(r["extract_rtt_weeks_waiting"], json!(47));
    assert_eq!(r["rtt_weeks_waiting"], json!(26));
}

/// Eight pathways on the list across two specialties, priorities and
/// waits, and one removed.
fn mixed() -> DemoInstance {
    let mut p = Pathways::default();
    let rows: [(&str, &str, &str, &str); 8] = [
        ("1", "2026-11-02", "P2", "Urology"),
        ("2", "2026-07-06", "P3", "Urology"),
        ("3", "2026-06-01", "P3", "Urology"),
        ("4", "2025-11-10", "P4", "Urology"),
        ("5", "2025-08-04", "P4", "Trauma and orthopaedics"),
        ("6", "2025-05-26", "P4", "Trauma and orthopaedics"),
        ("7", "2024-11-25", "P5", "Trauma and orthopaedics"),
        ("8", "2026-08-03", "P3", "Trauma and orthopaedics"),
    ];
    for (id, start, priority, specialty) in rows {
        p = p
            .activities(id, &[(start, 0, "10")])
            .entry(id, json!({"priority_type": priority}))
            .planned(id, specialty, "W401");
    }
    // Removed from the list: not on the PTL.
    p = p
        .activities("9", &[("2026-01-05", 0, "10")])
        .entry("9", json!({"priority_type": "P3", "removal_date": "2026-10-01", "removal_reason": "2"}))
        .planned("9", "Urology", "W401");
    p.instance()
}

#[tokio::test]
async fn the_ptl_filters_by_specialty_consultant_priority_band_and_breach() {
    let i = mixed();
    let ids = |rows: Vec<BTreeMap<String, Value>>| -> Vec<String> {
        rows.iter().map(|e| e["pathway_id"].as_str().unwrap().to_string()).collect()
    };
    let all = ids(ptl(&i, "2026-11-30", &[]).await.unwrap());
    // Longest wait first; the removed entry is not there.
    assert_eq!(all, vec!["7", "6", "5", "4", "3", "2", "8", "1"]);
    let urology = ids(ptl(&i, "2026-11-30", &[("specialty", "Urology")]).await.unwrap());
    assert_eq!(urology, vec!["4", "3", "2", "1"]);
    let consultant = ids(ptl(&i, "2026-11-30", &[("consultant", "Consultant of Urology")]).await.unwrap());
    assert_eq!(consultant, urology);
    let p3_p5 = ids(ptl(&i, "2026-11-30", &[("priority", "P3,P5")]).await.unwrap());
    assert_eq!(p3_p5, vec!["7", "3", "2", "8"]);
    let band = ids(ptl(&i, "2026-11-30", &[("weeks_band", "52-64 weeks")]).await.unwrap());
    assert_eq!(band, vec!["4"]);
    // Within 4 weeks of 30 November only 8 reaches a breach: 18 weeks on
    // 7 December. (6 reached 78 weeks on 23 November: already breached.)
    let soon = ids(ptl(&i, "2026-11-30", &[("breach_within_weeks", "4")]).await.unwrap());
    assert_eq!(soon, vec!["8"]);
    // A band that is not one is refused, naming the bands.
    let err = ptl(&i, "2026-11-30", &[("weeks_band", "18+")]).await.unwrap_err();
    assert!(err.is_bad_request(), "{err}");
    assert!(err.to_string().contains("18-51 weeks"), "{err}");
}

#[tokio::test]
async fn the_breach_forecast_counts_clocks_reaching_each_threshold_week_by_week() {
    let i = mixed();
    let out = i
        .view(
            "waiting-list",
            "waiting-list-manager",
            Purpose::DirectCare,
            "ui",
            "breach-forecast",
            &[("as_at", "2026-11-30")],
        )
        .await
        .unwrap();
    assert_eq!(out.rows.len(), 12);
    let names: Vec<&str> = out.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["week", "week_starting", "breach_18", "breach_52", "breach_65", "breach_78", "breach_104"]
    );
    // Worked out from the start dates, week by week:
    let start = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let day = start("2026-11-30");
    let mut expected = vec![[0i64; 5]; 12];
    for s in ["2026-11-02", "2026-07-06", "2026-06-01", "2025-11-10", "2025-08-04", "2025-05-26", "2024-11-25", "2026-08-03"] {
        for (k, weeks) in [18, 52, 65, 78, 104].iter().enumerate() {
            let days = (start(s) + chrono::Duration::days(7 * weeks) - day).num_days();
            if (0..84).contains(&days) {
                expected[(days / 7) as usize][k] += 1;
            }
        }
    }
    let got: Vec<[i64; 5]> = out
        .rows
        .iter()
        .map(|r| std::array::from_fn(|k| r[2 + k].as_i64().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert!(expected.iter().flatten().sum::<i64>() >= 3, "the example exercises the forecast");
    assert_eq!(out.rows[0][1], json!("2026-11-30"));
    assert_eq!(out.rows[11][1], json!("2027-02-15"));
}

#[tokio::test]
async fn the_shape_counts_patients_by_weeks_band_and_priority() {
    let i = mixed();
    let out = i
        .view(
            "waiting-list",
            "waiting-list-manager",
            Purpose::DirectCare,
            "ui",
            "shape",
            &[("as_at", "2026-11-30")],
        )
        .await
        .unwrap();
    let rows: Vec<(String, Vec<i64>)> = out
        .rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1..].iter().map(|v| v.as_i64().unwrap()).collect(),
            )
        })
        .collect();
    // patients, P1, P2, P3, P4, deferred, none
    assert_eq!(
        rows,
        vec![
            ("00-17 weeks".to_string(), vec![2, 0, 1, 1, 0, 0, 0]),
            ("18-51 weeks".to_string(), vec![2, 0, 0, 2, 0, 0, 0]),
            ("52-64 weeks".to_string(), vec![1, 0, 0, 0, 1, 0, 0]),
            ("65-77 weeks".to_string(), vec![1, 0, 0, 0, 1, 0, 0]),
            ("78-103 weeks".to_string(), vec![1, 0, 0, 0, 1, 0, 0]),
            ("104+ weeks".to_string(), vec![1, 0, 0, 0, 0, 1, 0]),
        ]
    );
}

#[tokio::test]
async fn under_planning_patients_do_not_leave_and_names_are_never_read() {
    let i = mixed();
    let ask = |channel: &'static str, view: &'static str| {
        let i = &i;
        async move {
            i.view("waiting-list", "analyst", Purpose::Planning, channel, view, &[("as_at", "2026-11-30")])
                .await
                .unwrap()
        }
    };
    // Patient by patient, nothing leaves the instance under planning.
    assert!(ask("http", "ptl").await.rows.is_empty());
    // Inside it the analyst sees the list pseudonymised, without names.
    let out = ask("ui", "ptl").await;
    assert_eq!(out.rows.len(), 8);
    let col = |n: &str| out.columns.iter().position(|c| c.name == n).unwrap();
    for row in &out.rows {
        assert_eq!(row[col("patient_name")], Value::Null);
        assert!(!row[col("patient_id")].as_str().unwrap().starts_with("patient-"), "{row:?}");
    }
    // The shape comes out with its small counts suppressed.
    let out = ask("http", "shape").await;
    assert!(out.disclosure.is_some());
    assert!(
        out.rows.iter().flat_map(|r| &r[1..]).all(|v| v.is_null() || v == &json!(0)),
        "counts under 8 are suppressed: {:?}",
        out.rows
    );
    // Validation needs the PTL held, which is not done under disclosure
    // control: refused, not answered unprotected.
    let err = i
        .view("waiting-list", "analyst", Purpose::Planning, "http", "validation", &[("as_at", "2026-11-30")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disclosure control"), "{err}");
}

/// A synthetic trust's waiting list, loaded through the shipped mappings
/// from the files its PAS writes, and the list with its planted truth.
fn synthetic(pathways: usize) -> (DemoInstance, fdp_synth::ElectiveList) {
    let trust = fdp_synth::Trust::generate(3, fdp_synth::TrustSpec::default()).unwrap();
    let spec = fdp_synth::ElectiveSpec {
        pathways,
        ..fdp_synth::ElectiveSpec::default()
    };
    let list = fdp_synth::ElectiveList::generate(&trust, 5, &spec).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings");
    let mappings = fdp_ingest::extract::read_mappings(&dir).unwrap();
    let mut tables = MemoryTables::new();
    for (name, bytes) in [
        ("waiting_list_20261130.csv", list.waiting_list_csv()),
        ("rtt_activity_20261130.csv", list.rtt_activity_csv()),
    ] {
        let mut loaded = 0;
        for m in fdp_ingest::extract::mappings_for(&mappings, std::path::Path::new(name)) {
            let parsed = fdp_ingest::extract::parse(m, bytes.as_bytes(), name).unwrap();
            assert!(parsed.rejected.is_empty(), "{name} by {}: {:?}", m.name, parsed.rejected.first());
            tables = tables
                .with_batches(&parsed.plan.object_type.table, parsed.batches)
                .unwrap();
            loaded += 1;
        }
        assert!(loaded > 0, "no mapping takes {name}");
    }
    tables = tables.with_rows("procedure", &[]).unwrap();
    (DemoInstance::new(tables), list)
}

#[tokio::test]
async fn the_rules_find_the_planted_problems_and_leave_valid_entries_alone() {
    let (i, list) = synthetic(4_000);
    let out = i
        .view(
            "waiting-list",
            "waiting-list-manager",
            Purpose::DirectCare,
            "ui",
            "validation",
            &[("as_at", "2026-11-30")],
        )
        .await
        .unwrap();
    let col = |name: &str| out.columns.iter().position(|c| c.name == name).unwrap();
    let (rule, id, evidence) = (col("rule"), col("eal_id"), col("evidence"));
    let mut flags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &out.rows {
        let text = row[evidence].as_str().unwrap_or_default();
        assert!(text.len() > 10, "a flag without evidence: {row:?}");
        flags
            .entry(row[id].as_str().unwrap().to_string())
            .or_default()
            .push(row[rule].as_str().unwrap().to_string());
    }
    let truth: BTreeMap<&str, fdp_synth::Problem> = list.truth().collect();
    // Every planted problem found by its own rule.
    let mut missed = Vec::new();
    for (entry, problem) in &truth {
        if !flags.get(*entry).is_some_and(|r| r.iter().any(|r| r == problem.rule())) {
            missed.push(format!("{entry} {problem:?}: flagged {:?}", flags.get(*entry)));
        }
    }
    let valid = list.entries.len() - truth.len();
    let false_flags: Vec<_> = flags
        .iter()
        .filter(|(e, _)| !truth.contains_key(e.as_str()))
        .collect();
    assert!(
        missed.len() * 100 <= truth.len(),
        "{} of {} planted problems missed: {:?}",
        missed.len(),
        truth.len(),
        &missed[..missed.len().min(5)]
    );
    assert!(
        false_flags.len() * 100 <= valid,
        "{} of {valid} valid entries flagged: {:?}",
        false_flags.len(),
        &false_flags[..false_flags.len().min(5)]
    );
    assert!(truth.len() >= 200, "the list plants enough problems to test: {}", truth.len());
}

/// Two entries: W1 (P3) and W2 (P3), both waiting.
fn two_waiting() -> DemoInstance {
    Pathways::default()
        .activities("W1", &[("2026-01-05", 0, "10")])
        .entry("W1", json!({"priority_type": "P3"}))
        .activities("W2", &[("2026-02-02", 0, "10")])
        .entry("W2", json!({"priority_type": "P3"}))
        .instance()
}

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

const ADMIN: (&str, &str) = ("Ann Admin", "waiting-list-manager");
const CLINICIAN: (&str, &str) = ("Dr Bea Consultant", "clinician");

async fn propose(i: &DemoInstance, by: (&str, &str), entry: &str, inputs: Value) -> Result<Value, ProductError> {
    i.act("waiting-list", "propose", entry, by, Purpose::DirectCare, inputs)
        .await
}

async fn sign_off(i: &DemoInstance, by: (&str, &str), change: &str, inputs: Value) -> Result<Value, ProductError> {
    i.act("waiting-list", "sign-off", change, by, Purpose::DirectCare, inputs)
        .await
}

/// A view's rows as maps, asked by the waiting-list manager for direct care.
async fn rows(i: &DemoInstance, view: &str, params: &[(&str, &str)]) -> Vec<BTreeMap<String, Value>> {
    let out = i
        .view("waiting-list", "waiting-list-manager", Purpose::DirectCare, "ui", view, params)
        .await
        .unwrap();
    out.rows
        .iter()
        .map(|row| out.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), v.clone())).collect())
        .collect()
}

fn listed(ptl: &[BTreeMap<String, Value>]) -> Vec<String> {
    ptl.iter()
        .map(|e| e["eal_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_removal_proposed_then_signed_off_takes_the_entry_off_the_list_over_the_extract() {
    let i = two_waiting();
    let day = today();
    let proposed = propose(
        &i,
        ADMIN,
        "W1",
        json!({"reason": "deceased", "evidence": "patient_pathway.patient_deceased = true", "rule": "deceased"}),
    )
    .await
    .unwrap();
    assert_eq!(proposed["status"], json!("awaiting sign-off"));
    let change = proposed["change"].as_str().unwrap().to_string();

    // On the queue, and marked on the PTL, still listed.
    let queue = rows(&i, "queue", &[]).await;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0]["change_log_id"], json!(change));
    assert_eq!(queue[0]["eal_id"], json!("W1"));
    assert_eq!(queue[0]["patient_name"], json!("Patient W1"));
    assert_eq!(queue[0]["requested_by"], json!("Ann Admin"));
    assert_eq!(queue[0]["rule"], json!("deceased"));
    assert_eq!(
        queue[0]["description"],
        json!("removal: on the list → removed: The patient has died (national 3, Patient died)")
    );
    let ptl_now = ptl(&i, &day, &[]).await.unwrap();
    assert_eq!(listed(&ptl_now), ["W1", "W2"]);
    assert!(ptl_now[0]["awaiting_sign_off"].as_str().unwrap().starts_with("removal:"));
    assert_eq!(ptl_now[1]["awaiting_sign_off"], Value::Null);

    let signed = sign_off(&i, CLINICIAN, &change, json!({"comments": "Death confirmed"}))
        .await
        .unwrap();
    assert_eq!(signed["status"], json!("signed off"));

    // Off the list (the extract still holds it: the removal is applied
    // over it), off the queue, and in the entry's history.
    assert_eq!(listed(&ptl(&i, &day, &[]).await.unwrap()), ["W2"]);
    assert!(rows(&i, "queue", &[]).await.is_empty());
    let history = rows(&i, "history", &[("entry", "W1")]).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["decision"], json!("signed off"));
    assert_eq!(history[0]["decided_by"], json!("Dr Bea Consultant"));
    assert_eq!(history[0]["requested_by"], json!("Ann Admin"));
    assert_eq!(history[0]["record"], json!(format!("Task/{change}")));
    assert!(history[0]["comments"].as_str().unwrap().contains("Death confirmed"));
    // As the list stood before the sign-off, W1 was on it.
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Duration::days(1)).to_string();
    assert_eq!(listed(&ptl(&i, &yesterday, &[]).await.unwrap()), ["W1", "W2"]);

    // Both went through ingest as the product's own records, and both
    // were audited as changes about the patient.
    assert_eq!(
        *i.held.sources.lock().unwrap(),
        [fdp_fhir::change_request::SOURCE, fdp_fhir::change_request::SOURCE]
    );
    let changes: Vec<_> = i
        .audit()
        .into_iter()
        .filter(|e| e.kind == "change" && e.outcome == "ok")
        .collect();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|e| e.patients == ["patient-W1"]));
    assert_eq!(changes[0].principal, "Ann Admin");
    assert_eq!(changes[1].principal, "Dr Bea Consultant");
}

#[tokio::test]
async fn a_proposer_cannot_sign_off_their_own_change_and_a_role_without_the_grant_is_refused() {
    let i = two_waiting();
    let own = ("Dr Who", "clinician");
    let change = propose(&i, own, "W1", json!({"reason": "treated", "evidence": "procedure on 2026-11-02"}))
        .await
        .unwrap()["change"]
        .as_str()
        .unwrap()
        .to_string();
    let e = sign_off(&i, own, &change, json!({})).await.unwrap_err();
    assert!(e.is_refusal(), "{e}");
    assert!(e.to_string().contains("signed off by someone else"), "{e}");
    // A waiting-list manager may propose, not sign off.
    let e = sign_off(&i, ADMIN, &change, json!({})).await.unwrap_err();
    assert!(e.is_refusal(), "{e}");
    assert!(e.to_string().contains("changing `validated_changelog` is not granted"), "{e}");
    // An analyst changes nothing.
    let e = i
        .act("waiting-list", "propose", "W2", ("Al Analyst", "analyst"), Purpose::Operations,
             json!({"reason": "duplicate", "evidence": "x"}))
        .await
        .unwrap_err();
    assert!(e.is_refusal(), "{e}");
    // Each refusal audited; the entry still listed, its change still open.
    let refused = i.audit().into_iter().filter(|e| e.outcome.starts_with("refused")).count();
    assert!(refused >= 3, "{refused} refusals audited");
    assert_eq!(listed(&ptl(&i, &today(), &[]).await.unwrap()), ["W1", "W2"]);
    assert_eq!(rows(&i, "queue", &[]).await.len(), 1);
    // Someone else signs it off, once.
    sign_off(&i, CLINICIAN, &change, json!({})).await.unwrap();
    let e = sign_off(&i, ("Dr Three", "clinician"), &change, json!({})).await.unwrap_err();
    assert!(matches!(e, ProductError::Conflict(_)), "{e}");
}

#[tokio::test]
async fn a_rejected_removal_leaves_the_entry_and_a_signed_off_priority_replaces_the_extracts() {
    let i = two_waiting();
    let day = today();
    let removal = propose(&i, ADMIN, "W1", json!({"reason": "duplicate", "evidence": "same as W2"}))
        .await
        .unwrap()["change"]
        .as_str()
        .unwrap()
        .to_string();
    let rejected = sign_off(&i, CLINICIAN, &removal, json!({"decision": "reject", "comments": "different procedure"}))
        .await
        .unwrap();
    assert_eq!(rejected["status"], json!("rejected"));
    assert_eq!(listed(&ptl(&i, &day, &[]).await.unwrap()), ["W1", "W2"]);
    assert_eq!(rows(&i, "history", &[("entry", "W1")]).await[0]["decision"], json!("rejected"));

    let change = propose(
        &i,
        ADMIN,
        "W2",
        json!({"property": "priorityType", "new_value": "P2", "evidence": "clinic letter of 2026-11-20"}),
    )
    .await
    .unwrap()["change"]
    .as_str()
    .unwrap()
    .to_string();
    let before = ptl(&i, &day, &[]).await.unwrap();
    assert_eq!(before[1]["priority_type"], json!("P3"), "not until signed off");
    sign_off(&i, CLINICIAN, &change, json!({})).await.unwrap();
    let after = ptl(&i, &day, &[]).await.unwrap();
    assert_eq!(after[1]["eal_id"], json!("W2"));
    assert_eq!(after[1]["priority_type"], json!("P2"));
    assert_eq!(
        rows(&i, "history", &[("entry", "W2")]).await[0]["description"],
        json!("priorityType: P3 → P2")
    );
}

#[tokio::test]
async fn a_proposal_that_cannot_be_made_says_why() {
    let i = two_waiting();
    // An entry that is not there, or an id that tries to be SQL: absent.
    for target in ["W9", "W1' OR '1'='1"] {
        let e = propose(&i, ADMIN, target, json!({"reason": "treated", "evidence": "x"}))
            .await
            .unwrap_err();
        assert!(matches!(e, ProductError::NotFound(_)), "{target}: {e}");
    }
    let e = propose(&i, ADMIN, "W1", json!({"reason": "bored", "evidence": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a removal reason"), "{e}");
    let e = propose(&i, ADMIN, "W1", json!({"evidence": "x"})).await.unwrap_err();
    assert!(e.to_string().contains("needs its reason"), "{e}");
    let e = propose(&i, ADMIN, "W1", json!({"property": "patientName", "new_value": "X", "evidence": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot be changed here"), "{e}");
    let e = propose(&i, ADMIN, "W1", json!({"property": "priorityType", "new_value": "P9", "evidence": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a value of priorityType"), "{e}");
    let e = propose(&i, ADMIN, "W1", json!({"reason": "treated"})).await.unwrap_err();
    assert!(e.to_string().contains("evidence"), "{e}");
    // One change at a time awaits sign-off for an entry.
    propose(&i, ADMIN, "W1", json!({"reason": "treated", "evidence": "x"})).await.unwrap();
    let e = propose(&i, ADMIN, "W1", json!({"reason": "declined", "evidence": "y"}))
        .await
        .unwrap_err();
    assert!(matches!(e, ProductError::Conflict(_)), "{e}");
    // A change that is not there.
    let e = sign_off(&i, CLINICIAN, "nope", json!({})).await.unwrap_err();
    assert!(matches!(e, ProductError::NotFound(_)), "{e}");
}

/// Reads the list, but not how its clocks are computed, nor the changes
/// signed off over it.
const CLERK: &str = r#"
[role.list-clerk]
description = "Types up the waiting list"
[role.list-clerk.direct-care]
objects = ["patient", "eal_entry", "patient_pathway", "encounter", "procedure"]
identifying = "show"
quasi_identifying = "show"
clinical = "show"
operational = "show"
"#;

#[tokio::test]
async fn a_role_without_the_tables_the_ptl_needs_is_refused_rather_than_shown_a_partial_list() {
    let i = Pathways::default()
        .activities("W1", &[("2026-01-05", 0, "10")])
        .entry("W1", json!({}))
        .instance_with(CLERK);
    let e = i
        .view("waiting-list", "list-clerk", Purpose::DirectCare, "ui", "ptl", &[])
        .await
        .unwrap_err();
    // Without pathway_activity no clock could be computed; without
    // validated_changelog entries signed off as removed would come back.
    assert!(matches!(e, ProductError::NotGranted { .. }), "{e}");
    assert!(e.to_string().contains("pathway_activity"), "{e}");
    let refused = i
        .audit()
        .into_iter()
        .filter(|a| a.outcome.starts_with("refused") && a.what.contains("waiting-list/ptl"))
        .count();
    assert_eq!(refused, 1, "the refusal is audited");
}

#[tokio::test]
async fn a_filter_is_a_value_never_sql() {
    let i = mixed();
    let all = ptl(&i, "2026-11-30", &[]).await.unwrap().len();
    assert!(all > 1);
    for attack in ["x' OR '1'='1", "x') OR TRUE --", "Orthopaedics' UNION SELECT * FROM patient --"] {
        for filter in ["specialty", "consultant", "priority"] {
            let shown = ptl(&i, "2026-11-30", &[(filter, attack)]).await.unwrap();
            assert!(shown.is_empty(), "{filter}={attack:?} listed {} entries", shown.len());
        }
        let e = ptl(&i, "2026-11-30", &[("weeks_band", attack)]).await.unwrap_err();
        assert!(matches!(e, ProductError::Param { .. }), "{e}");
    }
}

/// Audits the list's validation, under a policy that removes free text
/// about patients.
const AUDITOR: &str = r#"
[role.validation-auditor]
description = "Audits how the list is validated"
[role.validation-auditor.direct-care]
objects = ["eal_entry", "pathway_activity", "procedure", "change_log_request", "validated_changelog"]
identifying = "remove"
quasi_identifying = "show"
clinical = "show"
operational = "show"
"#;

#[tokio::test]
async fn comments_a_policy_removes_are_never_shown_in_the_history_nor_round_it() {
    let i = Pathways::default()
        .activities("W1", &[("2026-01-05", 0, "10")])
        .entry("W1", json!({"priority_type": "P3"}))
        .instance_with(AUDITOR);
    let change = propose(&i, ADMIN, "W1", json!({"reason": "deceased", "evidence": "spine"}))
        .await
        .unwrap()["change"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = "died at home, per the GP's letter";
    sign_off(&i, CLINICIAN, &change, json!({"comments": secret}))
        .await
        .unwrap();

    // The decision is shown; the clinician's comments are not.
    let out = i
        .view("waiting-list", "validation-auditor", Purpose::DirectCare, "ui", "history", &[("entry", "W1")])
        .await
        .unwrap();
    assert_eq!(out.rows.len(), 1);
    let at = |name: &str| out.columns.iter().position(|c| c.name == name).unwrap();
    assert_eq!(out.rows[0][at("decision")], json!("signed off"));
    assert_eq!(out.rows[0][at("comments")], Value::Null);
    assert!(!serde_json::to_string(&out.rows).unwrap().contains("GP's letter"));
    // The waiting-list manager, whose policy shows them, reads them.
    let shown = rows(&i, "history", &[("entry", "W1")]).await;
    assert_eq!(shown[0]["comments"], json!(secret));

    // Round the product, straight at the table: the column is not there.
    let e = i
        .sql("validation-auditor", Purpose::DirectCare, "SELECT comments FROM validated_changelog")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("comments"), "{e}");
    let all = i
        .sql("validation-auditor", Purpose::DirectCare, "SELECT * FROM validated_changelog")
        .await
        .unwrap();
    assert_eq!(all.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    for batch in &all.batches {
        assert!(batch.schema().field_with_name("comments").is_err());
        let text = format!("{batch:?}");
        assert!(!text.contains("GP's letter"), "{text}");
    }
}

#[tokio::test]
async fn an_analyst_cannot_read_the_queue_or_the_history_for_any_purpose() {
    let i = two_waiting();
    let change = propose(&i, ADMIN, "W1", json!({"reason": "treated", "evidence": "procedure on 2026-11-02"}))
        .await
        .unwrap()["change"]
        .as_str()
        .unwrap()
        .to_string();
    sign_off(&i, CLINICIAN, &change, json!({"comments": "seen in clinic"}))
        .await
        .unwrap();
    propose(&i, ADMIN, "W2", json!({"reason": "declined", "evidence": "letter of 2026-11-20"}))
        .await
        .unwrap();
    // The queue names patients and staff and what is said of them: the
    // analyst is granted neither the proposals nor, for the history, the
    // requests the decisions answer, whether for operations or planning.
    for purpose in [Purpose::Operations, Purpose::Planning] {
        for (view, params) in [("queue", vec![]), ("history", vec![("entry", "W1")])] {
            let e = i
                .view("waiting-list", "analyst", purpose, "ui", view, &params)
                .await
                .unwrap_err();
            assert!(e.is_refusal(), "{view} for {purpose:?}: {e}");
        }
        // Round the product, in SQL: to a table not granted, there is no
        // such table.
        let e = i
            .sql("analyst", purpose, "SELECT * FROM change_log_request")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("change_log_request' not found"), "{purpose:?}: {e}");
    }
    let audit: Vec<_> = i
        .audit()
        .into_iter()
        .filter(|a| a.principal == "a analyst")
        .collect();
    let refused = audit.iter().filter(|a| a.outcome.starts_with("refused")).count();
    assert_eq!(refused, 4, "every view refused, and audited: {audit:?}");
    assert!(audit.iter().all(|a| a.outcome != "ok"), "{audit:?}");
}
