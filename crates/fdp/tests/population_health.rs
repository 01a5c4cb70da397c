//! Population health end to end: a synthetic ICB population in an
//! instance, the reference data loaded and every patient's area derived,
//! and the shipped cohorts counted through the product's governed views;
//! each count equals an independent implementation (Python with DuckDB
//! over the same Parquet files), and what each purpose may have holds.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::fdp;
use serde_json::Value;

const AS_AT: &str = "2026-12-31";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference() -> PathBuf {
    repo().join("../shared/data/uk_reference")
}

fn run(args: &[&str]) -> String {
    let out = fdp().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fdp {}:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Icb {
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

fn icb(people: u64) -> Icb {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("instance.toml");
    std::fs::write(
        &config,
        "ods = \"RXX\"\n\
         [principal.lead]\nroles = [\"vaccination-lead\"]\n\
         [principal.analyst]\nroles = [\"population-health-analyst\"]\n\
         [principal.gp]\nroles = [\"clinician\"]\n",
    )
    .unwrap();
    let cohorts = repo().join("cohorts");
    run(&[
        "synth",
        "population",
        "--data-dir",
        data.to_str().unwrap(),
        "--people",
        &people.to_string(),
        "--reference",
        reference().to_str().unwrap(),
        "--cohorts",
        cohorts.to_str().unwrap(),
        "--as-at",
        AS_AT,
    ]);
    let loaded = run(&[
        "reference",
        "load",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        reference().to_str().unwrap(),
    ]);
    assert!(loaded.contains("matched:"), "{loaded}");
    Icb {
        _dir: dir,
        data,
        config,
    }
}

impl Icb {
    fn view(
        &self,
        by: &str,
        purpose: &str,
        view: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, String> {
        common::product_view(
            &self.data,
            &self.config,
            "population-health",
            view,
            by,
            purpose,
            params,
        )
    }
}

/// A column of an output by name, row by row.
fn col<'a>(out: &'a Value, name: &str) -> Vec<&'a Value> {
    let i = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r[i])
        .collect()
}

fn sum(out: &Value, name: &str) -> u64 {
    col(out, name).iter().map(|v| v.as_u64().unwrap_or(0)).sum()
}

#[test]
fn cohort_counts_equal_an_independent_implementation() {
    let icb = icb(30_000);
    let reference = std::process::Command::new("python3")
        .arg(repo().join("crates/fdp/tests/clients/cohort_reference.py"))
        .arg(&icb.data)
        .arg(repo().join("cohorts"))
        .arg(AS_AT)
        .output()
        .unwrap();
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let expected: BTreeMap<String, Value> = serde_json::from_slice(&reference.stdout).unwrap();
    assert_eq!(expected.len(), 6);
    for (cohort, counts) in &expected {
        let members = counts["members"].as_u64().unwrap();
        assert!(members > 0, "{cohort} has no members in the synthetic ICB");
        let size = icb
            .view(
                "lead",
                "operations",
                "size",
                &[("cohort", cohort), ("cut", "sex"), ("as_at", AS_AT)],
            )
            .unwrap();
        assert_eq!(sum(&size, "people"), members, "{cohort}: members");
        for (outcome, n) in counts["outcomes"].as_object().unwrap() {
            let uptake = icb
                .view(
                    "lead",
                    "operations",
                    "uptake",
                    &[
                        ("cohort", cohort),
                        ("outcome", outcome),
                        ("cut", "sex"),
                        ("as_at", AS_AT),
                    ],
                )
                .unwrap();
            assert_eq!(
                sum(&uptake, "people"),
                members,
                "{cohort}: {outcome} denominator"
            );
            assert_eq!(
                sum(&uptake, "with_outcome"),
                n.as_u64().unwrap(),
                "{cohort}: {outcome}"
            );
        }
    }

    // Under planning: no cell of 1 to 7, and no one named.
    let planning = icb
        .view(
            "analyst",
            "planning",
            "uptake",
            &[
                ("cohort", "flu-2026-27"),
                ("cut", "practice,imd_decile"),
                ("as_at", AS_AT),
            ],
        )
        .unwrap();
    for name in ["people", "with_outcome"] {
        for v in col(&planning, name) {
            if let Some(n) = v.as_u64() {
                assert!(n == 0 || n >= 8, "a planning cell of {n}");
            }
        }
    }
    // Invitation lists are for direct care: refused under planning and
    // operations, given to the practice's clinician.
    for (by, purpose) in [("analyst", "planning"), ("lead", "operations")] {
        let refused = icb
            .view(
                by,
                purpose,
                "invitations",
                &[("cohort", "diabetes-foot-check-overdue"), ("as_at", AS_AT)],
            )
            .unwrap_err();
        assert!(refused.contains("direct care only"), "{refused}");
    }
    let list = icb
        .view(
            "gp",
            "direct-care",
            "invitations",
            &[("cohort", "diabetes-foot-check-overdue"), ("as_at", AS_AT)],
        )
        .unwrap();
    assert_eq!(
        list["rows"].as_array().unwrap().len() as u64,
        expected["diabetes-foot-check-overdue"]["members"]
            .as_u64()
            .unwrap()
    );
    let numbers: Vec<&str> = col(&list, "nhs_number")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(numbers.iter().all(|s| s.len() == 10));

    // Every one of them opts out of the national data opt-out: planning no
    // longer counts them, while their practices still invite them.
    let overdue = |by: &str, purpose: &str| {
        let out = icb
            .view(
                by,
                purpose,
                "size",
                &[
                    ("cohort", "diabetes-foot-check-overdue"),
                    ("cut", "sex"),
                    ("as_at", AS_AT),
                ],
            )
            .unwrap();
        sum(&out, "people")
    };
    assert!(overdue("analyst", "planning") > 0);
    std::fs::write(icb.data.join("opt-out.txt"), numbers.join("\n")).unwrap();
    assert_eq!(overdue("analyst", "planning"), 0);
    let register = |purpose: &str, by: &str| {
        let out = icb
            .view(
                by,
                purpose,
                "size",
                &[
                    ("cohort", "qof-diabetes-register"),
                    ("cut", "sex"),
                    ("as_at", AS_AT),
                ],
            )
            .unwrap();
        sum(&out, "people")
    };
    let on_register = expected["qof-diabetes-register"]["members"]
        .as_u64()
        .unwrap();
    let left = on_register - numbers.len() as u64;
    let planned = register("planning", "analyst");
    assert!(
        planned.abs_diff(left) <= 5,
        "the register under planning is {planned}; {left} have not opted out"
    );
    let again = icb
        .view(
            "gp",
            "direct-care",
            "invitations",
            &[("cohort", "diabetes-foot-check-overdue"), ("as_at", AS_AT)],
        )
        .unwrap();
    assert_eq!(
        again["rows"], list["rows"],
        "direct care ignores the opt-out"
    );
}
