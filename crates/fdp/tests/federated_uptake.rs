//! The ICB's federated uptake question across three trusts, each its own
//! `fdp serve` with its own synthetic population, reference data, keys and
//! IG lead's approval: the ICB asks the question the population-health
//! product offers, for a date, over mutual TLS; every trust answers under
//! its own governance and disclosure control; the ICB's combined figures
//! add up, group by group, to the figures each trust's own analyst sees.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const TRUSTS: [&str; 3] = ["RXA", "RXB", "RXC"];
const QUESTION: &str = "population-health/flu-2026-27-uptake";
const AS_AT: &str = "2026-12-31";
const CUTS: [&str; 8] = [
    "age_band",
    "sex",
    "ethnic_group",
    "imd_decile",
    "practice",
    "pcn",
    "lsoa",
    "local_authority",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cert(data: &Path) -> PathBuf {
    data.join("federation/instance.pem")
}

/// A column of an answer by name, row by row.
fn col<'a>(out: &'a Value, name: &str) -> Vec<&'a Value> {
    let i = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c["name"] == name || c == name)
        .unwrap_or_else(|| panic!("no column {name} in {out}"));
    out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r[i])
        .collect()
}

#[test]
fn the_icbs_uptake_adds_up_to_the_trusts_own_figures() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let reference = repo().join("../shared/data/uk_reference");
    let icb = dir.path().join("QWO");
    peer_init(&icb, "QWO", "icb", &ca);
    let mut trusts = Vec::new();
    for (i, ods) in TRUSTS.iter().enumerate() {
        let data = dir.path().join(ods);
        fdp_ok!(
            "synth",
            "population",
            "--data-dir",
            data,
            "--people",
            "8000",
            "--reference",
            reference,
            "--cohorts",
            repo().join("cohorts"),
            "--as-at",
            AS_AT,
            "--seed",
            (i + 1).to_string(),
            "--first-id",
            (1 + i * 1_000_000).to_string()
        );
        fdp_ok!("reference", "load", "--data-dir", data, reference);
        peer_init(&data, ods, "trust", &ca);
        // The trust's IG lead approves the offered question from the ICB,
        // for dates in these two years.
        fdp_ok!(
            "peer",
            "approve",
            "--data-dir",
            data,
            "--from",
            "QWO",
            "--offered",
            QUESTION,
            "--by",
            "ig.lead",
            "--reason",
            "ICB flu uptake by group, winter 2026/27",
            "--range",
            "as_at=2026-01-01..2027-12-31"
        );
        trusts.push((ods.to_string(), data, free_port()));
    }
    let servers: Vec<Server> = trusts
        .iter()
        .map(|(_, data, port)| {
            Server::start_configured(
                data,
                1.0,
                "127.0.0.1:0",
                "127.0.0.1:0",
                &format!(
                    "[principal.analyst]\nroles = [\"population-health-analyst\"]\n\
                     [federation]\nlisten = \"127.0.0.1:{port}\"\n\
                     [[federation.peer]]\nods = \"QWO\"\nrole = \"icb\"\ncertificate = \"{}\"\n",
                    cert(&icb).display()
                ),
            )
        })
        .collect();
    let mut icb_config = String::from("ods = \"QWO\"\n[federation]\n");
    for (ods, data, port) in &trusts {
        icb_config.push_str(&format!(
            "[[federation.peer]]\nods = \"{ods}\"\nrole = \"trust\"\naddress = \"127.0.0.1:{port}\"\ncertificate = \"{}\"\n",
            cert(data).display()
        ));
    }
    std::fs::write(icb.join("instance.toml"), icb_config).unwrap();
    let out = fdp_ok!(
        "peer",
        "ask",
        "--data-dir",
        icb,
        "--offered",
        QUESTION,
        "--arg",
        format!("as_at={AS_AT}"),
        "--as",
        "icb.analyst"
    );
    // Attack: the ICB slides the date outside what the IG leads approved.
    let outside = fdp_ok!(
        "peer",
        "ask",
        "--data-dir",
        icb,
        "--offered",
        QUESTION,
        "--arg",
        "as_at=2030-03-31",
        "--as",
        "icb.analyst"
    );
    let outside: Value = serde_json::from_str(&outside).unwrap();
    for m in outside["members"].as_array().unwrap() {
        assert_eq!(m["status"], "declined", "{m}");
        assert!(m["reason"].as_str().unwrap().contains("as_at"), "{m}");
    }
    assert!(
        outside["combined"]["rows"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{outside}"
    );
    for s in servers {
        s.stop();
    }
    let asked: Value = serde_json::from_str(&out).unwrap();
    for m in asked["members"].as_array().unwrap() {
        assert_eq!(m["status"], "answered", "{m}");
        // Nothing leaves a trust below the threshold.
        for r in m["answer"]["rows"].as_array().unwrap() {
            for k in ["people", "outcome_1"] {
                if let Some(n) = r[k].as_u64() {
                    assert!(n == 0 || (n >= 8 && n % 5 == 0), "{} sent {n}", m["member"]);
                }
            }
        }
    }
    let combined = &asked["combined"];
    assert!(combined.is_object(), "the product combines: {asked}");

    // Each trust's own figures: its analyst's uptake view, cut by cut,
    // under planning.
    let mut own: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut whole = (0u64, 0u64);
    for (ods, data, _) in &trusts {
        let config = data.with_extension("toml");
        for cut in CUTS {
            let out = fdp_ok!(
                "product",
                "view",
                "--data-dir",
                data,
                "--config",
                config,
                "population-health",
                "uptake",
                "--by",
                "analyst",
                "--purpose",
                "planning",
                "--param",
                "cohort=flu-2026-27",
                "--param",
                format!("cut={cut}"),
                "--param",
                format!("as_at={AS_AT}")
            );
            let view: Value = serde_json::from_str(&out).unwrap();
            let groups = col(&view, "group");
            let people = col(&view, "people");
            let with = col(&view, "with_outcome");
            for i in 0..groups.len() {
                let e = own
                    .entry((cut.to_string(), groups[i].as_str().unwrap().to_string()))
                    .or_default();
                e.0 += people[i].as_u64().unwrap();
                e.1 += with[i].as_u64().unwrap();
            }
        }
        // The whole cohort, as the trust sent it.
        let member = asked["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == ods.as_str())
            .unwrap();
        let total = member["answer"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| CUTS.iter().all(|c| r[*c].is_null()))
            .expect("the whole cohort's row");
        whole.0 += total["people"].as_u64().unwrap();
        whole.1 += total["outcome_1"].as_u64().unwrap();
    }

    // The ICB's combined figures, group by group.
    let cuts = col(combined, "cut");
    let groups = col(combined, "group");
    let people = col(combined, "people");
    let with = col(combined, "with_outcome");
    let suppressed = col(combined, "suppressed_at");
    let mut checked = 0;
    for i in 0..cuts.len() {
        let key = (
            cuts[i].as_str().unwrap().to_string(),
            groups[i].as_str().unwrap().to_string(),
        );
        if key.0 == "all" {
            assert_eq!(
                (people[i].as_u64().unwrap(), with[i].as_u64().unwrap()),
                whole,
                "the whole cohort"
            );
            continue;
        }
        let theirs = own.get(&key).copied().unwrap_or_default();
        assert_eq!(
            (people[i].as_u64().unwrap(), with[i].as_u64().unwrap()),
            theirs,
            "{key:?}: the ICB's sum against the trusts' own (suppressed at {})",
            suppressed[i]
        );
        checked += 1;
    }
    // And every group any trust shows is in the ICB's figures.
    let shown: std::collections::BTreeSet<(String, String)> = cuts
        .iter()
        .zip(&groups)
        .map(|(c, g)| (c.as_str().unwrap().into(), g.as_str().unwrap().into()))
        .collect();
    for key in own.keys() {
        assert!(
            shown.contains(key),
            "{key:?} is missing from the ICB's figures"
        );
    }
    assert!(checked > 50, "only {checked} groups combined");
    assert!(whole.0 > 1000, "{whole:?}");
}
