//! Every `fdp bench` subcommand, in its `--quick` mode: the same code path
//! as the real benchmark on tiny sizes, so that none of them can break
//! unseen. The figures themselves are not judged here (a timed assertion in
//! a test is not a benchmark); that each run completes and prints them is.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_fdp"))
        .arg("bench")
        .args(args)
        .arg("--quick")
        // Benchmarks that read shipped files (mappings) find them from the
        // repository root.
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("FDP_LOG", "warn")
        .output()
        .expect("run fdp bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fdp bench {} --quick failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" "),
        out.status
    );
    stdout
}

#[test]
fn adt_quick() {
    let out = bench(&["adt"]);
    assert!(out.contains("throughput:"), "{out}");
    assert!(out.contains("ACK latency"), "{out}");
    assert!(out.contains("bed board freshness"), "{out}");
    // The synthetic feed carries a realistic share of bad messages, which
    // are answered AE or AR; nearly all the rest is AA.
    let not_aa: usize = out
        .split(" not AA)")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of messages not AA: {out}"));
    assert!(not_aa < 3_000 / 20, "{not_aa} of 3,000 not AA: {out}");
}

#[test]
fn adt_year_quick() {
    let out = bench(&["adt", "--year"]);
    assert!(out.contains("load:"), "{out}");
    assert!(out.contains("matches the simulator bed for bed"), "{out}");
    assert!(out.contains("peak resident memory"), "{out}");
    assert!(out.contains("restart after a clean stop"), "{out}");
    assert!(out.contains("restart after SIGKILL"), "{out}");
}

#[test]
fn flood_quick() {
    let out = bench(&["flood"]);
    assert!(out.contains("flood offered:"), "{out}");
    assert!(out.contains("normal sender:"), "{out}");
    assert!(out.contains("peak resident memory"), "{out}");
}

#[test]
fn fhir_quick() {
    let out = bench(&["fhir"]);
    assert!(out.to_lowercase().contains("resources"), "{out}");
}

#[test]
fn csv_quick() {
    let out = bench(&["csv"]);
    assert!(out.to_lowercase().contains("rows"), "{out}");
    assert!(out.contains("DuckDB"), "the peer runs beside it: {out}");
}

#[test]
fn governed_query_quick() {
    let out = bench(&["governed-query"]);
    assert!(out.to_lowercase().contains("governed"), "{out}");
}

#[test]
fn federation_quick() {
    let out = bench(&["federation"]);
    assert!(out.contains("p50") && out.contains("p99"), "{out}");
}

#[test]
fn elective_quick() {
    let out = bench(&["elective", "--profile"]);
    assert!(out.contains("planted problems found"), "{out}");
    assert!(out.contains("the PTL's plan as run"), "{out}");
    assert!(out.contains("DuckDB"), "the peer runs beside it: {out}");
    assert!(out.contains("already-treated"), "each rule's flags: {out}");
}

#[test]
fn schedule_quick() {
    let out = bench(&["schedule"]);
    assert!(out.contains("at 1 s on 2 thread(s)"), "{out}");
    assert!(out.contains("small_1"), "{out}");
    assert!(out.contains("medium_1"), "{out}");
    // The planted schedules are feasible, so the scheduler must be too.
    assert!(out.contains("feasible on 2 of 2"), "{out}");
}

/// A long table is built over several sittings: the second sitting takes
/// the first one's runs, and prices each saved solution afresh rather than
/// trusting it, so a solution damaged in between is reported for what it is.
#[test]
fn schedule_quick_resumes_from_saved_solutions() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().to_str().unwrap();
    let first = bench(&["schedule", "--jobs", "2", "--solutions", saved, "--resume"]);
    assert!(first.contains("2 at a time"), "{first}");
    assert!(first.contains("feasible on 2 of 2"), "{first}");
    assert!(!first.contains("from the saved solution"), "{first}");
    for stem in ["small_1_1s", "medium_1_1s"] {
        assert!(dir.path().join(format!("{stem}.json")).exists());
        assert!(dir.path().join(format!("{stem}.run.json")).exists());
    }

    let again = bench(&["schedule", "--jobs", "2", "--solutions", saved, "--resume"]);
    assert!(again.contains("small_1 at 1 s: cost"), "{again}");
    assert!(again.contains("from the saved solution"), "{again}");
    assert!(
        again.contains("2 of these runs were made by an earlier sitting"),
        "{again}"
    );
    assert!(again.contains("feasible on 2 of 2"), "{again}");

    // Every patient taken off the saved schedule: the mandatory ones are
    // then unscheduled, which the validator must see.
    let path = dir.path().join("small_1_1s.json");
    let mut solution: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for p in solution["patients"].as_array_mut().unwrap() {
        *p = serde_json::json!({ "id": p["id"], "admission_day": "none" });
    }
    std::fs::write(&path, solution.to_string()).unwrap();
    let damaged = bench(&["schedule", "--solutions", saved, "--resume"]);
    assert!(damaged.contains("feasible on 1 of 2"), "{damaged}");

    // A run made another way (here, on one thread) is not taken for this one.
    let reseeded = bench(&[
        "schedule",
        "--seed",
        "1",
        "--threads",
        "1",
        "--solutions",
        saved,
        "--resume",
    ]);
    assert!(!reseeded.contains("from the saved solution"), "{reseeded}");
}

#[test]
fn plan_quick() {
    let out = bench(&["plan"]);
    assert!(out.contains("booked utilisation"), "{out}");
    assert!(
        out.contains("priority limits kept by hand and broken by the proposal: 0"),
        "{out}"
    );
    // The re-plan after a week of leave runs and breaks no rule (the bench
    // stops with an error where a proposal does).
    assert!(out.contains("bookings moved"), "{out}");
}

#[test]
fn uptake_quick() {
    let out = bench(&["uptake"]);
    // The bench fails by itself where a planted gap the population can
    // show is missed, or too many groups without a gap are flagged.
    assert!(out.contains("planted ethnic_group"), "{out}");
    assert!(out.contains("groups with no gap"), "{out}");
    assert!(
        out.contains("every planted gap the population can show was flagged"),
        "{out}"
    );
}

#[test]
fn cohort_quick() {
    let out = bench(&["cohort"]);
    assert!(out.contains("OpenFDP:"), "{out}");
    assert!(out.contains("DuckDB"), "the peer runs beside it: {out}");
    assert!(out.contains("the answers agree"), "{out}");
}

#[test]
fn supply_quick() {
    let out = bench(&["supply"]);
    assert!(out.contains("a series on the clock"), "{out}");
    assert!(out.contains("median error"), "{out}");
    assert!(out.contains("target"), "{out}");
}

#[test]
fn distributed_quick() {
    let out = bench(&["distributed"]);
    assert!(out.contains("on the cluster (2 executors"), "{out}");
    assert!(out.contains("both governed answers the same"), "{out}");
    assert!(
        out.contains("DuckDB's counts match the governed answer"),
        "{out}"
    );
}
