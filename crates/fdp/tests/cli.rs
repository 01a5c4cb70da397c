//! The command line as a data engineer uses it: loading files, SQL in every
//! format, the model listing, and discharge readiness recorded through the
//! API and kept as an audited staff action.

mod common;

use common::*;

#[test]
fn ingest_sql_and_model_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let messages = shared_data("hl7v2_simhospital/messages.out");
    let summary = fdp_ok!("ingest", "hl7", "--data-dir", data, messages);
    assert!(
        summary.contains("accepted 401, kept unprocessed 612, quarantined 0"),
        "{summary}"
    );
    // Loading the same file again adds nothing.
    let again = fdp_ok!("ingest", "hl7", "--data-dir", data, messages);
    assert!(again.contains("already present 1013"), "{again}");
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM raw.hl7v2_message"),
        1013
    );

    // The three output formats.
    let q = "SELECT ward_id, count(*) AS stays FROM ward_stay WHERE end_timestamp IS NULL GROUP BY ward_id ORDER BY ward_id";
    let csv = fdp_ok!("sql", "--format", "csv", "--data-dir", data, q);
    assert!(csv.starts_with("ward_id,stays\n"), "{csv}");
    assert!(csv.contains("Simulated Hospital:RenalWard,"), "{csv}");
    let table = fdp_ok!("sql", "--data-dir", data, q);
    assert!(table.contains("| ward_id"), "{table}");
    let rows = sql(&data, q);
    assert!(!rows.is_empty());
    // Time travel: version 0 of a canonical table is its empty creation.
    let v0 = fdp_ok!(
        "sql",
        "--format",
        "json",
        "--as-of",
        "0",
        "--data-dir",
        data,
        "SELECT count(*) AS n FROM admission"
    );
    assert!(v0.contains("\"n\":0"), "{v0}");
    // Lineage: the canonical commit names the raw version it came from.
    let log = std::fs::read_dir(data.join("tables/canonical/admission/_delta_log"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .find(|t| t.contains("openfdp.lineage"))
        .expect("a canonical commit with lineage");
    assert!(
        log.contains("hl7v2_message") && log.contains("through_seq"),
        "{log}"
    );

    // A clear error for a bad query.
    let bad = fdp_err!("sql", "--data-dir", data, "SELECT * FROM no_such_table");
    assert!(bad.contains("no_such_table"), "{bad}");

    // A mapping path that is not there says where the shipped ones are,
    // not only that a file is missing.
    let err = fdp_err!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        "no/such/mappings",
        messages
    );
    assert!(
        err.contains("no mapping file or folder at no/such/mappings")
            && err.contains("the shipped mappings are the project's `mappings/` folder"),
        "{err}"
    );

    let model = fdp_ok!("model");
    assert!(model.contains("WardStay") && model.contains("[OpenFDP extension]"));
    let ws = fdp_ok!("model", "ward_stay");
    assert!(
        ws.contains("start_timestamp") && ws.contains("end_timestamp"),
        "{ws}"
    );
    // A reader that stops early (`fdp model | head -1`) is not an error.
    let mut child = fdp()
        .arg("model")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn discharge_readiness_is_recorded_with_who_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let server = Server::start_configured(
        &data,
        0.5,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.tester]\nroles = [\"clinician\"]\n\
         [principal.bed]\nroles = [\"bed-manager\"]\n\
         [principal.ana]\nroles = [\"analyst\"]\n",
    );
    // Admitted 15 days ago: a 14+ day stay.
    let admitted = (chrono::Utc::now() - chrono::Duration::days(15)).format("%Y%m%d%H%M%S+0000");
    let msg = format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|{admitted}||ADT^A01|R1|P|2.4\rEVN|A01|{admitted}\rPID|1||9434765919^^^NHS^NH~M1^^^RXX^MR||ALPHA^Test||19500101|F\rPV1|1|I|W1^B1^1^RXX01^^BED|21|||||||||||||||SPELL1|||||||||||||||||||||||||{admitted}\r"
    );
    assert_eq!(
        mllp_roundtrip(server.mllp, &[msg.as_bytes().to_vec()]),
        vec!["AA"]
    );

    let body = r#"{"medically_optimised": true, "medically_optimised_date": "2026-11-19", "discharge_pathway": 3, "waiting_for": ["care home placement"], "expected_discharge_date": "2026-11-25"}"#;
    // AA means stored; the census applies the admission a moment later.
    let mut answer = (0, String::new());
    wait_until(10, "the admission to reach the census", || {
        answer = http_post(
            server.http,
            "/api/admissions/SPELL1/discharge-readiness",
            &server.token,
            body,
        );
        answer.0 != 404
    });
    let (status, resp) = answer;
    assert_eq!(status, 200, "{resp}");
    let bad = r#"{"medically_optimised": true, "discharge_pathway": 7}"#;
    let (status, resp) = http_post(
        server.http,
        "/api/admissions/SPELL1/discharge-readiness",
        &server.token,
        bad,
    );
    assert_eq!(status, 422, "{resp}");
    assert!(resp.contains("discharge_pathway"));

    let (_, board) = http_get(server.http, "/api/bed-board", Some(&server.token));
    let board: serde_json::Value = serde_json::from_str(&board).unwrap();
    let occ = &board["sites"][0]["wards"][0]["beds"][0]["occupant"];
    assert_eq!(occ["readiness"]["discharge_pathway"], 3);
    assert_eq!(occ["readiness"]["updated_by"], "tester");
    assert_eq!(occ["length_of_stay_days"], 15);
    assert_eq!(occ["long_stay"], 14);
    assert_eq!(board["counts"]["medically_optimised"], 1);
    assert_eq!(occ["name"], "ALPHA, Test");
    assert_eq!(occ["nhs_number"], "9434765919");

    // The board under other purposes shows what the policy shows: a bed
    // manager running operations sees names but not NHS numbers; an analyst
    // sees the beds and stays, and no one's name; a purpose not granted is
    // refused, and so is a change under it.
    let bed = fdp_ok!("token", "create", "bed", "--data-dir", data);
    let ana = fdp_ok!("token", "create", "ana", "--data-dir", data);
    let (bed, ana) = (bed.trim(), ana.trim());
    let board_as = |token: &str, purpose: &str| {
        let r = http_request_with(
            server.http,
            "GET",
            "/api/bed-board",
            Some(token),
            &[("X-Purpose", purpose)],
            None,
        );
        (
            r.status,
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
        )
    };
    let (status, board) = board_as(bed, "operations");
    assert_eq!(status, 200, "{board}");
    let occ = &board["sites"][0]["wards"][0]["beds"][0]["occupant"];
    assert_eq!(occ["name"], "ALPHA, Test");
    // The policy masks identifying columns for operations, as SQL does.
    assert_eq!(occ["nhs_number"], "[masked]", "{occ}");
    let (status, board) = board_as(ana, "operations");
    assert_eq!(status, 200, "{board}");
    let occ = &board["sites"][0]["wards"][0]["beds"][0]["occupant"];
    assert_eq!(occ["name"], "[masked]");
    // The analyst's policy pseudonymises every patient_id.
    let id = occ["patient_id"].as_str().unwrap();
    assert!(
        id != "M1" && id.starts_with('p') && id.contains('-'),
        "{occ}"
    );
    assert!(occ["nhs_number"].is_null() && occ["age"].is_null(), "{occ}");
    assert_eq!(board["counts"]["occupied"], 1);
    assert!(!board.to_string().contains("9434765919"));
    let (status, refused) = board_as(ana, "direct-care");
    assert_eq!(status, 403, "{refused}");
    let r = http_request_with(
        server.http,
        "POST",
        "/api/admissions/SPELL1/discharge-readiness",
        Some(ana),
        &[("X-Purpose", "planning")],
        Some(body),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("never for a secondary purpose"),
        "{}",
        r.body
    );

    // The change is a durable raw record naming who made it.
    wait_until(30, "the staff action in raw", || {
        try_sql_count(
            &data,
            "SELECT count(*) AS n FROM raw.ui_event WHERE source = 'user:tester'",
        ) == Some(1)
    });
    wait_until(30, "readiness in the canonical table", || {
        try_sql_count(
            &data,
            "SELECT count(*) AS n FROM discharge_readiness WHERE discharge_pathway = 3",
        ) == Some(1)
    });

    // The bed board is a product like any other: its views over the live
    // census as JSON and CSV, and its actions through the generic path.
    let (status, beds) = http_get(
        server.http,
        "/api/products/bed-board/beds",
        Some(&server.token),
    );
    assert_eq!(status, 200, "{beds}");
    let beds: serde_json::Value = serde_json::from_str(&beds).unwrap();
    let at = |name: &str| {
        beds["columns"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["name"] == name)
            .unwrap()
    };
    let row = &beds["rows"][0];
    assert_eq!(row[at("admission_id")], "SPELL1", "{beds}");
    assert_eq!(row[at("discharge_pathway")], 3, "{beds}");
    assert_eq!(
        beds["columns"][at("name")]["source"],
        serde_json::json!({"kind": "column", "table": "admission", "column": "patient_name"})
    );
    let (status, csv) = http_get(
        server.http,
        "/api/products/bed-board/beds?format=csv",
        Some(&server.token),
    );
    assert_eq!(status, 200, "{csv}");
    assert!(
        csv.starts_with("site,ward,bay,bed,state,admission_id"),
        "{csv}"
    );
    assert!(csv.contains("\"ALPHA, Test\""), "{csv}");
    let r = http_request_with(
        server.http,
        "GET",
        "/api/products/bed-board/beds",
        Some(ana),
        &[("X-Purpose", "planning")],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("one by one"), "{}", r.body);
    let (status, made) = http_post(
        server.http,
        "/api/products/bed-board/actions/discharge-readiness/SPELL1",
        &server.token,
        r#"{"medically_optimised": true, "discharge_pathway": 2, "waiting_for": ["transport"]}"#,
    );
    assert_eq!(status, 200, "{made}");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    assert_eq!(made["discharge_pathway"], 2);
    let (_, board) = http_get(server.http, "/api/bed-board", Some(&server.token));
    let board: serde_json::Value = serde_json::from_str(&board).unwrap();
    let readiness = &board["sites"][0]["wards"][0]["beds"][0]["occupant"]["readiness"];
    assert_eq!(readiness["waiting_for"], serde_json::json!(["transport"]));
    for (path, want) in [
        (
            "/api/products/bed-board/actions/discharge-readiness/NO-SUCH",
            404,
        ),
        ("/api/products/bed-board/actions/discharge-now/SPELL1", 400),
        ("/api/products/no-such-product/actions/x/SPELL1", 400),
    ] {
        let (status, body) = http_post(
            server.http,
            path,
            &server.token,
            r#"{"medically_optimised": true}"#,
        );
        assert_eq!(status, want, "{path}: {body}");
    }
    server.stop();
}

#[test]
fn peer_identities_are_made_and_certified_by_the_federation_authority() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let data = dir.path().join("trust");
    let made = fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    assert!(made.contains("Test ICS"), "{made}");
    let init = peer_init(&data, "RXX", "trust", &ca);
    assert!(init.contains("RXX (trust) certified"), "{init}");
    let shown = fdp_ok!("peer", "show", "--data-dir", data);
    assert!(
        shown.starts_with("# RXX (trust)\n-----BEGIN CERTIFICATE-----"),
        "{shown}"
    );
    // Once only, a role that exists, and a key no one else can read.
    let again = fdp_err!(
        "peer",
        "init",
        "--data-dir",
        data,
        "--ods",
        "RXX",
        "--role",
        "trust",
        "--ca",
        ca
    );
    assert!(
        again.contains("already holds a federation identity"),
        "{again}"
    );
    let bad = fdp_err!(
        "peer",
        "init",
        "--data-dir",
        dir.path().join("other"),
        "--ods",
        "RYY",
        "--role",
        "hospital",
        "--ca",
        ca
    );
    assert!(
        bad.contains("trust, care-provider, icb or national"),
        "{bad}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [ca.join("ca.key"), data.join("federation/instance.key")] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}", key.display());
        }
    }
}

/// `fdp schedule validate` prices an IHTC-2024 solution in the
/// competition validator's layout, and names a file that is not one.
#[test]
fn schedule_validate_prices_a_solution_and_names_a_file_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("instance.json");
    let solution = dir.path().join("solution.json");
    // One optional patient (weight 10 unscheduled, 3 a day of delay), one
    // room, one nurse on every shift of the two days.
    let shifts: Vec<serde_json::Value> = (0..2)
        .flat_map(|day| {
            ["early", "late", "night"]
                .map(|s| serde_json::json!({"day": day, "shift": s, "max_load": 1}))
        })
        .collect();
    std::fs::write(
        &instance,
        serde_json::json!({
            "days": 2, "skill_levels": 2, "shift_types": ["early", "late", "night"],
            "age_groups": ["adult", "elderly"],
            "weights": {"room_mixed_age": 1, "room_nurse_skill": 1, "continuity_of_care": 1,
                        "nurse_eccessive_workload": 1, "open_operating_theater": 5,
                        "surgeon_transfer": 1, "patient_delay": 3, "unscheduled_optional": 10},
            "occupants": [],
            "patients": [{"id": "p0", "mandatory": false, "gender": "A", "age_group": "adult",
                          "length_of_stay": 1, "surgery_release_day": 0, "surgery_duration": 60,
                          "surgeon_id": "s0", "incompatible_room_ids": [],
                          "workload_produced": [1, 1, 2], "skill_level_required": [0, 1, 0]}],
            "surgeons": [{"id": "s0", "max_surgery_time": [480, 480]}],
            "operating_theaters": [{"id": "t0", "availability": [480, 480]}],
            "rooms": [{"id": "r0", "capacity": 1}],
            "nurses": [{"id": "n0", "skill_level": 0, "working_shifts": shifts}]
        })
        .to_string(),
    )
    .unwrap();
    // Admitted a day late, covered by n0 in each shift of that day: delay
    // 3, one theatre open 5, one nurse 1, skill short by 1 in the late
    // shift, load 2 of 1 at night.
    let cover: Vec<serde_json::Value> = ["early", "late", "night"]
        .map(|s| serde_json::json!({"day": 1, "shift": s, "rooms": ["r0"]}))
        .to_vec();
    std::fs::write(
        &solution,
        serde_json::json!({
            "patients": [{"id": "p0", "admission_day": 1, "room": "r0", "operating_theater": "t0"}],
            "nurses": [{"id": "n0", "assignments": cover}]
        })
        .to_string(),
    )
    .unwrap();
    let out = fdp_ok!("schedule", "validate", instance, solution);
    assert!(out.contains("Total violations = 0\n"), "{out}");
    assert!(
        out.contains("RoomSkillLevel.........................1 (  1 X   1)\n"),
        "{out}"
    );
    assert!(
        out.contains("ExcessiveNurseWorkload.................1 (  1 X   1)\n"),
        "{out}"
    );
    assert!(
        out.contains("PatientDelay...........................3 (  3 X   1)\n"),
        "{out}"
    );
    assert!(out.contains("Total cost = 11\n"), "{out}");

    let err = fdp_err!("schedule", "validate", solution, solution);
    assert!(
        err.contains("is not an IHTC-2024 instance") && err.contains("solution.json"),
        "{err}"
    );
}

fn total_cost(out: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix("Total cost = "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total cost in {out}"))
}

/// `fdp synth ihtc` draws an instance with a feasible schedule planted;
/// `fdp schedule ihtc` schedules it on two threads, writes a solution the
/// validator prices the same, no dearer than the plant, and prints a lower
/// bound no schedule beats.
#[test]
fn schedule_ihtc_beats_the_planted_schedule_and_prints_a_bound_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = fdp_ok!(
        "synth",
        "ihtc",
        "--out",
        dir.path(),
        "--size",
        "small",
        "--seed",
        "3"
    );
    assert!(out.contains("small_3.json: 30 patients"), "{out}");
    let instance = dir.path().join("small_3.json");
    let planted = dir.path().join("small_3_planted.json");
    let solution = dir.path().join("solution.json");
    let plant = fdp_ok!("schedule", "validate", &instance, &planted);
    assert!(plant.contains("Total violations = 0\n"), "{plant}");

    let out = fdp_ok!(
        "schedule",
        "ihtc",
        &instance,
        "-o",
        &solution,
        "--time-limit",
        "2",
        "--threads",
        "2"
    );
    assert!(out.contains("Total violations = 0\n"), "{out}");
    let cost = total_cost(&out);
    assert!(
        cost <= total_cost(&plant),
        "{cost} against the plant's\n{plant}"
    );
    let bound: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Lower bound = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lower bound in {out}"));
    assert!(0 < bound && bound <= cost, "bound {bound}, cost {cost}");

    let again = fdp_ok!("schedule", "validate", &instance, &solution);
    assert_eq!(total_cost(&again), cost, "{again}");
    assert!(again.contains("Total violations = 0\n"), "{again}");

    // A time limit no search could run for is refused by name, not a panic.
    let out = fdp()
        .args(["schedule", "ihtc"])
        .arg(&instance)
        .arg("-o")
        .arg(&solution)
        .args(["--time-limit", "1e30"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--time-limit 1000000"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
