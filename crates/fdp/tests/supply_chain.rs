//! The supply chain end to end on a synthetic year: `fdp synth supplies`
//! writes a trust's catalogue, a year of ward counts and transactions and
//! the last day's batches; they are loaded through the shipped mappings;
//! the supply-chain product, asked as the supplies lead under operations,
//! must find what the generator planted: the ward about to run short (met
//! by a transfer from the ward holding spare, not by an order), the batch
//! that will expire unused, the counts that disagree; and its forecasts
//! must beat last month's use on the held-back months for smooth and
//! intermittent items alike.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

const SEED: u64 = 7;
const END: &str = "2026-03-01";

fn view(
    data: &Path,
    config: &Path,
    view: &str,
    params: &[(&str, &str)],
) -> Vec<BTreeMap<String, Value>> {
    let out = product_view(
        data,
        config,
        "supply-chain",
        view,
        "sam",
        "operations",
        params,
    )
    .unwrap_or_else(|e| panic!("{view}: {e}"));
    rows(&out)
        .into_iter()
        .map(|r| r.into_iter().collect())
        .collect()
}

/// The year loaded into a new instance whose principal `sam` is the
/// supplies lead: the instance, its configuration and the planted truth.
fn loaded(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Value) {
    let drop = dir.join("drop");
    let data = dir.join("trust");
    let config = dir.join("instance.toml");
    std::fs::write(
        &config,
        "ods = \"RXX\"\n[principal.sam]\nroles = [\"supplies-lead\"]\n",
    )
    .unwrap();
    fdp_ok!(
        "synth",
        "supplies",
        "--out",
        &drop,
        "--seed",
        SEED.to_string(),
        "--end",
        END
    );
    let truth: Value =
        serde_json::from_slice(&std::fs::read(drop.join("supplies_truth.json")).unwrap()).unwrap();
    std::fs::remove_file(drop.join("supplies_truth.json")).unwrap();
    let loaded = fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        &data,
        "--mapping",
        mappings(),
        &drop
    );
    assert!(!loaded.contains("quarantine"), "{loaded}");
    (data, config, truth)
}

#[test]
fn the_planted_shortage_is_found_before_it_happens_and_met_by_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config, truth) = loaded(dir.path());
    let planted = &truth["imbalance"];
    let item = planted["npc"].as_str().unwrap();
    let short = planted["short_location"].as_str().unwrap();
    let spare = planted["spare_location"].as_str().unwrap();

    let stock = view(&data, &config, "stock", &[("as_at", END), ("item", item)]);
    let line = |loc: &str| {
        stock
            .iter()
            .find(|r| r["location"] == loc)
            .unwrap_or_else(|| panic!("no {loc} in {stock:?}"))
            .clone()
    };
    let s = line(short);
    // What the books say is on hand is what the generator left there.
    assert_eq!(
        s["on_hand"].as_f64(),
        planted["short_on_hand"].as_f64(),
        "{s:?}"
    );
    assert_eq!(s["status"], "short", "{s:?}");
    // Not yet out: found before it happens, and the day it runs out is
    // within its lead time.
    assert!(s["on_hand"].as_f64().unwrap() >= 1.0);
    let runs_out = s["runs_out"].as_str().unwrap();
    assert!(runs_out >= END, "{s:?}");
    assert_eq!(line(spare)["status"], "above maximum");

    let shortages = view(&data, &config, "shortages", &[("as_at", END)]);
    assert!(
        shortages
            .iter()
            .any(|r| r["location"] == short && r["item_code"] == item),
        "{shortages:?}"
    );

    let suggested = view(
        &data,
        &config,
        "suggestions",
        &[("as_at", END), ("item", item)],
    );
    let to_short: Vec<_> = suggested.iter().filter(|r| r["to"] == short).collect();
    assert!(!to_short.is_empty(), "{suggested:?}");
    assert!(
        to_short.iter().all(|r| r["kind"] == "transfer"),
        "an order where a transfer would do: {to_short:?}"
    );
    assert_eq!(to_short[0]["from"], spare, "{to_short:?}");
}

#[test]
fn expiring_stock_and_disagreeing_counts_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config, truth) = loaded(dir.path());
    let expiring = &truth["near_expiry"];
    let stock = view(
        &data,
        &config,
        "stock",
        &[
            ("as_at", END),
            ("location", expiring["location"].as_str().unwrap()),
            ("item", expiring["npc"].as_str().unwrap()),
        ],
    );
    assert_eq!(stock.len(), 1, "{stock:?}");
    assert!(
        stock[0]["expiring_unused"].as_f64().unwrap() >= 1.0,
        "{stock:?}"
    );
    assert_eq!(
        stock[0]["earliest_expiry"], expiring["expires"],
        "{stock:?}"
    );

    let found = view(&data, &config, "discrepancies", &[("as_at", END)]);
    let found: Vec<(String, String, String, f64)> = found
        .iter()
        .map(|r| {
            (
                r["location"].as_str().unwrap().to_string(),
                r["item_code"].as_str().unwrap().to_string(),
                r["date"].as_str().unwrap().to_string(),
                r["difference"].as_f64().unwrap(),
            )
        })
        .collect();
    let planted: Vec<(String, String, String, f64)> = truth["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["location"].as_str().unwrap().to_string(),
                d["npc"].as_str().unwrap().to_string(),
                d["date"].as_str().unwrap().to_string(),
                d["difference"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(!planted.is_empty());
    let mut found_sorted = found.clone();
    found_sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(found_sorted, planted);
}

#[test]
fn forecasts_beat_last_months_use_for_smooth_and_intermittent_items() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config, _) = loaded(dir.path());
    let scores = view(&data, &config, "forecast-accuracy", &[("as_at", END)]);
    println!(
        "{:<14} {:>7} {:>10} {:>10} {:>8}",
        "pattern", "series", "MASE", "naive", "better"
    );
    for r in &scores {
        println!(
            "{:<14} {:>7} {:>10} {:>10} {:>8}",
            r["pattern"].as_str().unwrap(),
            r["series"],
            r["mase_forecast"],
            r["mase_naive"],
            r["forecast_better"]
        );
    }
    for pattern in ["smooth", "intermittent"] {
        let r = scores
            .iter()
            .find(|r| r["pattern"] == pattern)
            .unwrap_or_else(|| panic!("no {pattern} items: {scores:?}"));
        let (f, n) = (
            r["mase_forecast"].as_f64().unwrap(),
            r["mase_naive"].as_f64().unwrap(),
        );
        assert!(r["series"].as_u64().unwrap() >= 10, "{r:?}");
        assert!(
            f < n,
            "{pattern}: MASE {f} against the naive forecast's {n}"
        );
    }
}
