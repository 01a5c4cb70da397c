//! Vaccine stock against bookings end to end: a trust's pharmacy stock
//! count, vaccination bookings, doses given and stock movements, as
//! `fdp synth extracts` writes them, loaded through the shipped mappings;
//! the vaccine-stock product, asked as the vaccination lead under
//! operations, finds the truth the generator planted: each site's days of
//! cover, bookings it cannot meet, doses at risk of expiry, and what was
//! supplied, given and wasted by reason.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use fdp_synth::{extracts, ExtractSpec, Trust, TrustSpec};
use serde_json::Value;

const SEED: u64 = 7;

/// `view` of the product, asked by the vaccination lead under operations.
fn view(data: &Path, config: &Path, view: &str, params: &[(&str, &str)]) -> Value {
    product_view(
        data,
        config,
        "vaccine-stock",
        view,
        "lead",
        "operations",
        params,
    )
    .unwrap_or_else(|e| panic!("{view}: {e}"))
}

/// Each row by site and product, as a map of column to value.
fn by_site_and_product(out: &Value) -> BTreeMap<(String, String), BTreeMap<String, Value>> {
    let names: Vec<String> = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let row: BTreeMap<String, Value> = names
                .iter()
                .cloned()
                .zip(r.as_array().unwrap().iter().cloned())
                .collect();
            let key = (
                row["site"].as_str().unwrap().to_string(),
                row["item_code"].as_str().unwrap().to_string(),
            );
            (key, row)
        })
        .collect()
}

#[test]
fn the_vaccination_lead_sees_the_planted_cover_risk_and_wastage_at_every_site() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    let data = dir.path().join("trust");
    let config = dir.path().join("instance.toml");
    std::fs::write(
        &config,
        "ods = \"RXX\"\n[principal.lead]\nroles = [\"vaccination-lead\"]\n",
    )
    .unwrap();
    load_synthetic_extracts(&drop, &data, SEED);
    let trust = Trust::generate(SEED, TrustSpec::default()).unwrap();
    let spec = ExtractSpec::default();
    let truth = extracts::clinic_truth(&trust, SEED, &spec).unwrap();
    let as_at = truth.as_at.to_string();
    let days = truth.horizon_days.to_string();

    let cover = by_site_and_product(&view(
        &data,
        &config,
        "cover",
        &[("as_at", &as_at), ("days", &days)],
    ));
    let planted: BTreeMap<(String, String), &extracts::CoverTruth> = truth
        .cover
        .iter()
        .map(|c| ((c.site.clone(), c.item_code.clone()), c))
        .collect();
    assert_eq!(
        cover.keys().collect::<Vec<_>>(),
        planted.keys().collect::<Vec<_>>()
    );
    for (key, t) in &planted {
        let row = &cover[key];
        let got = (
            row["on_hand"].as_u64(),
            row["booked"].as_u64(),
            row["days_of_cover"].as_u64(),
            row["unmet"].as_u64(),
            row["at_risk"].as_u64(),
        );
        let want = (
            Some(t.usable as u64),
            Some(t.booked as u64),
            t.days_of_cover.map(u64::from),
            Some(t.unmet as u64),
            Some(t.at_risk as u64),
        );
        assert_eq!(got, want, "{key:?}");
    }
    // What was planted is there to find: a site with no stock for its
    // bookings, one whose stock runs out within the booked days, and a
    // batch expiring before the bookings use it.
    assert!(truth
        .cover
        .iter()
        .any(|c| c.usable == 0 && c.days_of_cover == Some(0)));
    assert!(truth
        .cover
        .iter()
        .any(|c| c.usable > 0 && c.unmet > 0 && c.days_of_cover < Some(truth.horizon_days)));
    assert!(truth.cover.iter().any(|c| c.at_risk > 0));
    // The shortest cover comes first.
    let first = &view(
        &data,
        &config,
        "cover",
        &[("as_at", &as_at), ("days", &days)],
    )["rows"][0];
    assert_eq!(first[6], serde_json::json!(0));

    let from = (truth.as_at - chrono::Duration::days(28)).to_string();
    let end = (truth.as_at - chrono::Duration::days(1)).to_string();
    let wastage = by_site_and_product(&view(
        &data,
        &config,
        "wastage",
        &[("as_at", &end), ("from", &from)],
    ));
    assert_eq!(wastage.len(), truth.wastage.len());
    for t in &truth.wastage {
        let row = &wastage[&(t.site.clone(), t.item_code.clone())];
        let reasons: Vec<String> = t.wasted.iter().map(|(r, d)| format!("{r}: {d}")).collect();
        assert_eq!(
            (
                row["supplied"].as_u64(),
                row["administered"].as_u64(),
                row["wasted"].as_u64(),
                row["reasons"].as_str(),
            ),
            (
                Some(t.supplied as u64),
                Some(t.administered as u64),
                Some(t.wasted.values().sum::<u32>() as u64),
                Some(reasons.join("; ").as_str()),
            ),
            "{}/{}",
            t.site,
            t.item_code
        );
        assert_eq!(
            row["supplied_less_given"].as_i64(),
            Some(t.supplied as i64 - t.administered as i64)
        );
    }
}
