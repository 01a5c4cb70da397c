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
use serde_json::{json, Value};

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

/// How long trust B stays down while trust A offers it stock (seconds).
fn offer_downtime() -> std::time::Duration {
    std::time::Duration::from_secs(
        std::env::var("FDP_TEST_PEER_DOWN_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

/// `method path` on `server` as `token` for operations.
fn ops(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let r = http_request_with(
        server.http,
        method,
        path,
        Some(token),
        &[("X-Purpose", "operations")],
        body.as_deref(),
    );
    let v = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    (r.status, v)
}

/// A product view over HTTP as rows keyed by column.
fn view_rows(
    server: &Server,
    token: &str,
    view: &str,
    query: &str,
) -> Vec<BTreeMap<String, Value>> {
    let (status, out) = ops(
        server,
        "GET",
        &format!("/api/products/supply-chain/{view}{query}"),
        token,
        None,
    );
    assert_eq!(status, 200, "{view}: {out}");
    rows(&out)
        .into_iter()
        .map(|r| r.into_iter().collect())
        .collect()
}

/// What the ICB holds of `trust`'s position, by item.
fn gathered_of(area: &Value, trust: &str) -> Option<BTreeMap<String, Value>> {
    let p = area["gathered"]
        .as_array()?
        .iter()
        .find(|p| p["publisher"] == trust)?;
    Some(
        p["items"]
            .as_array()?
            .iter()
            .map(|i| (i["item_code"].as_str().unwrap().to_string(), i.clone()))
            .collect(),
    )
}

/// The ICB's copy of `trust`'s position is the trust's own `demand` view,
/// item for item and figure for figure.
fn assert_icb_matches(area: &Value, trust: &str, own: &[BTreeMap<String, Value>]) {
    let held = gathered_of(area, trust).unwrap_or_else(|| panic!("nothing from {trust}: {area}"));
    assert_eq!(held.len(), own.len(), "{trust}: items");
    for row in own {
        let item = row["item_code"].as_str().unwrap();
        let at_icb = &held[item];
        for k in [
            "item_name",
            "critical",
            "locations",
            "forecast_per_month",
            "on_hand",
            "surplus",
            "shortfall",
            "spare",
            "to_order",
        ] {
            let (a, b) = (&row[k], &at_icb[k]);
            let same = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => a == b,
            };
            assert!(same, "{trust} {item} {k}: own {a}, at the ICB {b}");
        }
    }
}

fn site_config(listen: u16, principals: &str, peers: &[(&str, &str, u16, &Path)]) -> String {
    let mut c = format!("{principals}[federation]\nlisten = \"127.0.0.1:{listen}\"\n");
    for (ods, role, port, data) in peers {
        c.push_str(&format!(
            "[[federation.peer]]\nods = \"{ods}\"\nrole = \"{role}\"\naddress = \"127.0.0.1:{port}\"\ncertificate = \"{}\"\n",
            data.join("federation/instance.pem").display()
        ));
    }
    c
}

fn on_hand_at(rows: &[BTreeMap<String, Value>], location: &str) -> (f64, f64) {
    let r = rows
        .iter()
        .find(|r| r["location"] == location)
        .unwrap_or_else(|| panic!("no {location} in {rows:?}"));
    (
        r["on_hand"].as_f64().unwrap(),
        r["on_order"].as_f64().unwrap_or(0.0),
    )
}

/// Two trusts and their ICB as running instances: each trust's supplies
/// lead publishes its position, and the ICB's copy matches each trust's
/// own; trust A offers trust B stock it can spare while B is down; the
/// offer reaches B once B is back, exactly once; B accepts it onto the
/// location that needs it (on order there) and A records it leaving. Both
/// audits show every step; the attempts to get round it are refused.
#[test]
fn a_trust_offers_spare_stock_to_another_once_and_the_icb_sees_both_positions() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let (a_data, b_data, icb_data) = (
        dir.path().join("RXA"),
        dir.path().join("RXB"),
        dir.path().join("QXA"),
    );
    peer_init(&a_data, "RXA", "trust", &ca);
    peer_init(&b_data, "RXB", "trust", &ca);
    peer_init(&icb_data, "QXA", "icb", &ca);
    let (a_port, b_port, icb_port) = (free_port(), free_port(), free_port());
    let trust_principals =
        "[principal.sam]\nroles = [\"supplies-lead\"]\n[principal.ana]\nroles = [\"analyst\"]\n";
    let a_config = site_config(
        a_port,
        trust_principals,
        &[
            ("RXB", "trust", b_port, &b_data),
            ("QXA", "icb", icb_port, &icb_data),
        ],
    );
    let b_config = site_config(
        b_port,
        trust_principals,
        &[
            ("RXA", "trust", a_port, &a_data),
            ("QXA", "icb", icb_port, &icb_data),
        ],
    );
    let icb_config = site_config(
        icb_port,
        "[principal.ana]\nroles = [\"analyst\"]\n",
        &[
            ("RXA", "trust", a_port, &a_data),
            ("RXB", "trust", b_port, &b_data),
        ],
    );
    // Each trust's year of supplies, to a fixed day, so that the test reads
    // the same two trusts whatever day it runs: generated to the day it
    // ran, RXA's seed left it no critical item to spare on some days
    // (2026-12-08). The positions are still read as of today, as the
    // supplies API reads them.
    let end = "2026-12-07";
    for (seed, data) in [(7u64, &a_data), (8, &b_data)] {
        let drop = dir.path().join(format!("drop-{seed}"));
        fdp_ok!(
            "synth",
            "supplies",
            "--out",
            &drop,
            "--seed",
            seed.to_string(),
            "--end",
            end
        );
        std::fs::remove_file(drop.join("supplies_truth.json")).unwrap();
        fdp_ok!(
            "ingest",
            "csv",
            "--data-dir",
            data,
            "--mapping",
            mappings(),
            &drop
        );
    }
    let token = |who: &str, data: &Path| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let (a_sam, a_ana, b_sam, b_ana, icb_ana) = (
        token("sam", &a_data),
        token("ana", &a_data),
        token("sam", &b_data),
        token("ana", &b_data),
        token("ana", &icb_data),
    );
    let icb = Server::start_configured(&icb_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &icb_config);
    let trust_b = Server::start_configured(&b_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &b_config);
    let trust_a = Server::start_configured(&a_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &a_config);

    // Each trust's supplies lead publishes; an analyst may not.
    for (server, sam) in [(&trust_a, &a_sam), (&trust_b, &b_sam)] {
        let (status, published) = ops(server, "POST", "/api/supplies/publish", sam, None);
        assert_eq!(status, 200, "{published}");
        assert_eq!(published["published_to"], 1);
        assert!(!published["items"].as_array().unwrap().is_empty());
    }
    let (status, refused) = ops(&trust_a, "POST", "/api/supplies/publish", &a_ana, None);
    assert_eq!(status, 403, "{refused}");
    // An ICB publishes no position of its own.
    let (status, refused) = ops(&icb, "POST", "/api/supplies/publish", &icb_ana, None);
    assert_eq!(status, 409, "{refused}");

    // The ICB's view of each trust is the trust's own.
    let mut area = Value::Null;
    wait_until(60, "both positions at the ICB", || {
        let (_, got) = ops(&icb, "GET", "/api/supplies/area", &icb_ana, None);
        area = got;
        gathered_of(&area, "RXA").is_some() && gathered_of(&area, "RXB").is_some()
    });
    let a_own = view_rows(&trust_a, &a_sam, "demand", "");
    let b_own = view_rows(&trust_b, &b_sam, "demand", "");
    assert_icb_matches(&area, "RXA", &a_own);
    assert_icb_matches(&area, "RXB", &b_own);
    // The area's figures are the trusts' added together.
    for item in area["area"].as_array().unwrap() {
        let code = item["item_code"].as_str().unwrap();
        let sum = |k: &str| -> f64 {
            a_own
                .iter()
                .chain(&b_own)
                .filter(|r| r["item_code"] == code)
                .map(|r| r[k].as_f64().unwrap())
                .sum()
        };
        assert_eq!(item["spare"].as_f64().unwrap(), sum("spare"), "{item}");
        assert_eq!(
            item["to_order"].as_f64().unwrap(),
            sum("to_order"),
            "{item}"
        );
        assert_eq!(
            item["to_buy"].as_f64().unwrap(),
            (sum("to_order") - sum("spare")).max(0.0),
            "{item}"
        );
    }
    // A trust sees the same through its ICB, and as CSV.
    let (status, through) = ops(&trust_b, "GET", "/api/supplies/area", &b_sam, None);
    assert_eq!(status, 200, "{through}");
    assert_eq!(through["area"], area["area"]);
    let csv = http_request_with(
        icb.http,
        "GET",
        "/api/supplies/area?format=csv",
        Some(&icb_ana),
        &[("X-Purpose", "operations")],
        None,
    );
    assert_eq!(csv.status, 200);
    assert!(
        csv.body
            .starts_with("item_code,item_name,category,critical,trusts"),
        "{}",
        csv.body
    );
    assert_eq!(
        csv.body.lines().count(),
        area["area"].as_array().unwrap().len() + 1
    );
    // Not under direct care: the analyst's grant there has no stock.
    let refused = http_request_with(
        icb.http,
        "GET",
        "/api/supplies/area",
        Some(&icb_ana),
        &[("X-Purpose", "direct-care")],
        None,
    );
    assert_eq!(refused.status, 403, "{}", refused.body);

    // What A can spare: the critical item it holds most spare of.
    let spare = view_rows(&trust_a, &a_sam, "spare", "");
    let chosen = spare
        .iter()
        .filter(|r| r["critical"] == true)
        .max_by(|x, y| {
            x["quantity"]
                .as_f64()
                .unwrap()
                .total_cmp(&y["quantity"].as_f64().unwrap())
        })
        .unwrap_or_else(|| panic!("RXA has no critical item to spare: {spare:?}"))
        .clone();
    let item = chosen["item_code"].as_str().unwrap().to_string();
    let from = chosen["location"].as_str().unwrap().to_string();
    // Near-expiry stock and stock above the maximum are rows of their own.
    let spare_there: f64 = spare
        .iter()
        .filter(|r| r["item_code"] == item.as_str() && r["location"] == from.as_str())
        .map(|r| r["quantity"].as_f64().unwrap())
        .sum();
    let quantity = spare_there.min(20.0);
    let ask = |to: &str, q: f64| json!({"to": to, "item_code": item, "from_location": from, "quantity": q});
    let a_before = view_rows(&trust_a, &a_sam, "stock", &format!("?item={item}"));
    let (a_on_hand, _) = on_hand_at(&a_before, &from);

    // The attempts to get round it.
    let (status, refused) = ops(
        &trust_a,
        "POST",
        "/api/supplies/offers",
        &a_ana,
        Some(ask("RXB", 1.0)),
    );
    assert_eq!(status, 403, "an analyst offered stock: {refused}");
    let (status, refused) = ops(
        &trust_a,
        "POST",
        "/api/supplies/offers",
        &a_sam,
        Some(ask("RXB", spare_there + 1.0)),
    );
    assert_eq!(status, 409, "more than is spare: {refused}");
    let (status, refused) = ops(
        &trust_a,
        "POST",
        "/api/supplies/offers",
        &a_sam,
        Some(ask("RXA", 1.0)),
    );
    assert_eq!(status, 422, "to itself: {refused}");
    let (status, refused) = ops(
        &trust_a,
        "POST",
        "/api/supplies/offers",
        &a_sam,
        Some(ask("QXA", 1.0)),
    );
    assert_eq!(status, 422, "to the ICB: {refused}");
    let (status, refused) = ops(
        &trust_a,
        "POST",
        "/api/supplies/offers",
        &a_sam,
        Some(ask("RZZ", 1.0)),
    );
    assert_eq!(status, 422, "to a stranger: {refused}");

    // B goes down; A offers, and the offer waits in A's outbox.
    trust_b.stop();
    let t0 = std::time::Instant::now();
    let (status, sent) = ops(
        &trust_a,
        "POST",
        "/api/supplies/offers",
        &a_sam,
        Some(ask("RXB", quantity)),
    );
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["status"], "queued");
    let id = sent["id"].as_str().unwrap().to_string();
    // The same stock cannot be offered twice.
    let (status, refused) = ops(
        &trust_a,
        "POST",
        "/api/supplies/offers",
        &a_sam,
        Some(ask("RXB", spare_there - quantity + 1.0)),
    );
    assert_eq!(status, 409, "offered twice: {refused}");
    // What A offered is promised, not spare: the ICB hears so at once.
    let spare_of = |area: &Value| {
        gathered_of(area, "RXA").and_then(|held| held.get(&item).and_then(|i| i["spare"].as_f64()))
    };
    let published_spare = spare_of(&area).unwrap();
    wait_until(60, "A's offer taken off its spare at the ICB", || {
        let (_, got) = ops(&icb, "GET", "/api/supplies/area", &icb_ana, None);
        spare_of(&got) == Some((published_spare - quantity).max(0.0))
    });
    std::thread::sleep(offer_downtime().saturating_sub(t0.elapsed()));
    let (_, waiting) = ops(&trust_a, "GET", "/api/supplies/offers", &a_sam, None);
    assert_eq!(waiting[0]["status"], "queued", "{waiting}");

    // B is back: the offer arrives, once.
    let trust_b = Server::start_configured(&b_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &b_config);
    wait_until(90, "the offer at B", || {
        let (_, o) = ops(&trust_a, "GET", "/api/supplies/offers", &a_sam, None);
        o[0]["status"] == "delivered"
    });
    let (_, received) = ops(&trust_b, "GET", "/api/supplies/offers", &b_sam, None);
    let received = received.as_array().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["id"], id.as_str());
    assert_eq!(received[0]["from"], "RXA");
    assert_eq!(received[0]["item_code"], item.as_str());
    assert_eq!(received[0]["quantity"].as_f64(), Some(quantity));
    assert_eq!(inbox_messages(&b_data), 1, "the offer is in B's inbox once");

    // Only B's supplies lead decides it.
    let decision = |accept: bool| Some(json!({"accept": accept}));
    let path = format!("/api/supplies/offers/{id}/decision");
    let (status, refused) = ops(&trust_b, "POST", &path, &b_ana, decision(true));
    assert_eq!(status, 403, "{refused}");
    let (status, refused) = ops(&trust_a, "POST", &path, &a_sam, decision(true));
    assert_eq!(status, 409, "A decided its own offer: {refused}");
    let (status, refused) = ops(
        &trust_b,
        "POST",
        &path,
        &b_sam,
        Some(json!({"accept": true, "to_location": "NOWHERE:W0"})),
    );
    assert_eq!(status, 422, "{refused}");
    let b_before = view_rows(&trust_b, &b_sam, "stock", &format!("?item={item}"));
    let (status, accepted) = ops(&trust_b, "POST", &path, &b_sam, decision(true));
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["position_republished"], true);
    let to = accepted["to_location"].as_str().unwrap().to_string();
    let (status, again) = ops(&trust_b, "POST", &path, &b_sam, decision(false));
    assert_eq!(status, 409, "{again}");

    // The stock is on order at B's location, and has left A's.
    let (b_on_hand, b_on_order) = on_hand_at(&b_before, &to);
    let b_after = view_rows(&trust_b, &b_sam, "stock", &format!("?item={item}"));
    assert_eq!(
        on_hand_at(&b_after, &to),
        (b_on_hand, b_on_order + quantity)
    );
    let t0 = std::time::Instant::now();
    loop {
        let (_, o) = ops(&trust_a, "GET", "/api/supplies/offers", &a_sam, None);
        if o[0]["status"] == "accepted" {
            break;
        }
        if t0.elapsed() > std::time::Duration::from_secs(90) {
            // Say what B's attempts to tell A met.
            let tried: Vec<String> = audit_entries(&b_data)
                .iter()
                .filter(|e| {
                    e["kind"] == "federation-send"
                        && e["what"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("supply-offer-status")
                })
                .map(|e| e["outcome"].to_string())
                .collect();
            let declined: Vec<String> = audit_entries(&a_data)
                .iter()
                .filter(|e| {
                    e["outcome"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("declined")
                })
                .map(|e| e["outcome"].to_string())
                .collect();
            panic!("the acceptance did not reach A: {o}; B's attempts: {tried:?}; A declined: {declined:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let mut a_after = Vec::new();
    wait_until(30, "the stock leaving A's location", || {
        a_after = view_rows(&trust_a, &a_sam, "stock", &format!("?item={item}"));
        on_hand_at(&a_after, &from).0 == a_on_hand - quantity
    });

    // B's new position reached the ICB, and is still B's own.
    let b_own = view_rows(&trust_b, &b_sam, "demand", "");
    wait_until(60, "B's new position at the ICB", || {
        let (_, got) = ops(&icb, "GET", "/api/supplies/area", &icb_ana, None);
        area = got;
        gathered_of(&area, "RXB").is_some_and(|held| {
            b_own.iter().all(|r| {
                held[r["item_code"].as_str().unwrap()]["to_order"].as_f64()
                    == r["to_order"].as_f64()
            })
        })
    });
    assert_icb_matches(&area, "RXB", &b_own);
    trust_a.stop();
    trust_b.stop();
    icb.stop();

    // Both sides audited every step, once.
    let count = |data: &Path, kind: &str| {
        audit_entries(data)
            .iter()
            .filter(|e| e["kind"] == kind && e["what"].as_str().unwrap_or_default().contains(&id))
            .count()
    };
    assert_eq!(count(&a_data, "supply-offer-sent"), 1);
    assert_eq!(count(&a_data, "supply-offer-status"), 1);
    assert_eq!(count(&b_data, "supply-offer-received"), 1);
    assert_eq!(count(&b_data, "supply-offer-decision"), 1);
}
