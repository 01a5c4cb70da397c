//! `fdp demo` starts a federation: three trusts whose simulated PASes fill
//! their bed boards, an ICB gathering capacity, two care providers and the
//! national instance collecting the daily operational return, which matches
//! what each trust reports for itself. It stops cleanly on Ctrl-C, and a
//! second `fdp demo` on the same data carries on where the first stopped,
//! with each instance and its simulator still agreeing.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Demo {
    child: Child,
    /// Each instance's HTTP address and the demo principal's token, by ODS code.
    instances: BTreeMap<String, (SocketAddr, String)>,
    started_in_secs: f64,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn http(&self, ods: &str) -> SocketAddr {
        self.instances[ods].0
    }

    fn token(&self, ods: &str) -> &str {
        &self.instances[ods].1
    }

    /// `GET path` on `ods` as the demo principal acting in `role`.
    fn get(&self, ods: &str, path: &str, role: &str) -> serde_json::Value {
        self.request(ods, path, &[("X-Role", role)])
    }

    /// `get`, under a purpose other than the path's own default.
    fn get_for(&self, ods: &str, path: &str, role: &str, purpose: &str) -> serde_json::Value {
        self.request(ods, path, &[("X-Role", role), ("X-Purpose", purpose)])
    }

    fn request(&self, ods: &str, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
        let r = http_request_with(
            self.http(ods),
            "GET",
            path,
            Some(self.token(ods)),
            headers,
            None,
        );
        assert_eq!(r.status, 200, "{ods} {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }
}

fn start_demo(data: &std::path::Path) -> Demo {
    // Kept beside the data so that a demo that fails to start says why.
    let log = data.with_extension("stderr.log");
    let child = fdp()
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--mllp",
            "127.0.0.1:0",
            "--rate",
            "40",
            "--return-every-minutes",
            "1",
            "--reference",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/data/uk_reference"
            ),
            "--data-dir",
        ])
        .arg(data)
        .env("FDP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    // Owned by the guard from here on, so that a failed start is cleaned up.
    let mut demo = Demo {
        child,
        instances: BTreeMap::new(),
        started_in_secs: f64::NAN,
    };
    let stdout = demo.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // The first run sets the federation up: keys, waiting lists, and each
    // trust's registered population with its areas.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(Instant::now() < deadline, "fdp demo printed no addresses");
        let Some(line) = lines.next() else {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("fdp demo stopped before it was ready:\n{said}");
        };
        let line = line.unwrap();
        if let Some(rest) = line.split_once("(started in ").map(|(_, r)| r) {
            demo.started_in_secs = rest.trim_end_matches(" s)").parse().unwrap();
        }
        if line.starts_with("Press Ctrl-C") {
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return demo;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [ods, _role, url, ..] = words[..] {
            let Some(url) = url.strip_prefix("http://") else {
                continue;
            };
            let (addr, _) = url.split_once('/').unwrap();
            // The token is printed beside the address, never in it.
            let token = words
                .windows(2)
                .find(|w| w[0] == "token")
                .map(|w| w[1].to_string())
                .expect("the instance's token");
            demo.instances
                .insert(ods.to_string(), (addr.parse().unwrap(), token));
        }
    }
}

fn sources(d: &Demo) -> serde_json::Value {
    let (status, body) = http_get(d.http("RXA"), "/api/sources", Some(d.token("RXA")));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn stop(mut d: Demo) {
    // Ctrl-C, then wait for the orderly stop.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &d.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert!(status.success(), "fdp demo exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "fdp demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_federation_reports_daily_stops_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = start_demo(&data);
    assert_eq!(
        d.instances.keys().cloned().collect::<Vec<_>>(),
        ["QXA", "RXA", "RXB", "RXC", "VCH", "VVW", "X24"]
    );
    assert!(
        d.started_in_secs < 60.0,
        "started in {} s",
        d.started_in_secs
    );
    // The marketplace: RXA's own product, offered to the ICB, is installed
    // at RXB by its IG lead, and the ICB audited the offer and the decision.
    let products = d.get("RXB", "/api/products", "analyst");
    assert!(
        products["products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "discharge-delays-summary"),
        "{products}"
    );
    let offered = d.get("RXB", "/api/marketplace", "analyst");
    assert_eq!(
        offered["offers"][0]["status"], "installed, in use",
        "{offered}"
    );
    let icb_audit = audit_entries(&data.join("QXA"));
    for what in [
        "offer of product discharge-delays-summary 1.0.0 from RXA via RXA",
        "product discharge-delays-summary 1.0.0 from RXA approved at RXB",
    ] {
        assert!(
            icb_audit.iter().any(|e| e["what"] == what),
            "{what} not in the ICB's audit"
        );
    }

    // The ICB asks its three trusts for flu uptake by group, a question
    // each trust's IG lead approved; what comes back adds up.
    let products = d.get("QXA", "/api/products", "analyst");
    let question = products["products"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["offers"]["questions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|q| q["name"] == "population-health/flu-2026-27-uptake")
        .expect("the population-health product offers the flu uptake question");
    let mut question = question.clone();
    question["arguments"] =
        serde_json::json!({ "as_at": chrono::Utc::now().date_naive().to_string() });
    let (status, body) = http_post(
        d.http("QXA"),
        "/api/federation/questions",
        d.token("QXA"),
        &question.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let asked: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut whole = 0;
    for m in asked["members"].as_array().unwrap() {
        // The care providers hold no registered population and approved
        // nothing: they decline.
        if m["member"].as_str().unwrap().starts_with('V') {
            assert_eq!(m["status"], "declined", "{m}");
            continue;
        }
        assert_eq!(m["status"], "answered", "{m}");
        whole += m["answer"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                [
                    "age_band",
                    "sex",
                    "ethnic_group",
                    "imd_decile",
                    "practice",
                    "pcn",
                    "lsoa",
                    "local_authority",
                ]
                .iter()
                .all(|c| r[*c].is_null())
            })
            .and_then(|r| r["people"].as_u64())
            .expect("each trust's whole cohort");
    }
    assert_eq!(
        asked["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["status"] == "answered")
            .count(),
        3,
        "{asked}"
    );
    let combined = &asked["combined"];
    let at = |name: &str| {
        combined["columns"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c == name)
            .unwrap()
    };
    let all = combined["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[at("cut")] == "all")
        .expect("the ICB's whole cohort");
    assert_eq!(all[at("people")].as_u64(), Some(whole), "{all:?}");
    assert!(whole > 500, "{whole}");

    // The census fills each trust's board, then the stream goes on.
    for trust in ["RXA", "RXB", "RXC"] {
        wait_until(90, "the boards to fill", || {
            // The demo's principal holds two roles granted direct care.
            let b = d.get(trust, "/api/bed-board", "bed-manager");
            b["counts"]["occupied"].as_i64().unwrap_or(0) > 400
        });
    }

    // The national instance collects the daily return from every trust,
    // and each trust's own instance reports the same for the same census
    // instant, section by section.
    // A census instant before the boards filled is a true picture of a
    // trust still loading (or, before its first data, "no-data"), so the
    // figures are checked on an instant after every board was full.
    let filled_at = chrono::Utc::now();
    let mut national = serde_json::Value::Null;
    // What was last seen, so that a timeout says which trusts missed which
    // census instants, and why.
    let mut seen = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut collected = || {
        let c = d.get("X24", "/api/returns/collected", "analyst");
        seen = c["returns"].clone();
        let returns = c["returns"].as_array().unwrap();
        // No return ever counts a trust with no data at its instant.
        for r in returns {
            for m in r["members"].as_array().unwrap() {
                if m["status"] == "submitted" {
                    assert_eq!(m["sections"].as_object().map(|s| s.len()), Some(5), "{m}");
                }
            }
        }
        match returns.iter().find(|r| {
            r["submitted"] == 3
                && r["census_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t >= filled_at)
        }) {
            Some(r) => {
                national = r.clone();
                true
            }
            None => false,
        }
    };
    while !collected() {
        if std::time::Instant::now() > deadline {
            let last: Vec<String> = seen
                .as_array()
                .into_iter()
                .flatten()
                .take(6)
                .map(|r| {
                    let members: Vec<String> = r["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| format!("{} {} {}", m["member"], m["status"], m["reason"]))
                        .collect();
                    format!(
                        "{} (filled at {filled_at}): {}",
                        r["census_at"],
                        members.join("; ")
                    )
                })
                .collect();
            panic!(
                "no daily return submitted by all three trusts within 300 s; the latest:\n{}",
                last.join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let census_at = national["census_at"]
        .as_str()
        .unwrap()
        .replace("+00:00", "Z");
    let mut beds_nationally = 0;
    for m in national["members"].as_array().unwrap() {
        let trust = m["member"].as_str().unwrap();
        assert_eq!(m["status"], "submitted", "{m}");
        let own = d.get(
            trust,
            &format!("/api/returns/daily?census_at={census_at}"),
            "analyst",
        );
        assert_eq!(
            own["census_at"].as_str().unwrap().replace("+00:00", "Z"),
            census_at
        );
        let sections = m["sections"].as_object().unwrap();
        assert_eq!(sections.len(), 5, "{m}");
        for (name, submitted) in sections {
            assert_eq!(
                submitted["rows"], own["sections"][name]["rows"],
                "{trust} {name}: the national instance holds what the trust reports"
            );
            assert!(
                submitted["tables"]
                    .as_object()
                    .is_some_and(|t| !t.is_empty()),
                "{trust} {name}: the table versions it was computed from"
            );
        }
        let beds: i64 = sections["daily-return/beds-occupied"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["beds_occupied"].as_i64())
            .sum();
        assert!(beds > 400, "{trust} occupies {beds} beds");
        beds_nationally += beds;
        // No patient-level data: every cell is a count or a category.
        for submitted in sections.values() {
            for row in submitted["rows"].as_array().unwrap() {
                for (column, v) in row.as_object().unwrap() {
                    assert!(
                        v.is_null()
                            || v.is_i64()
                            || column.contains("type")
                            || column.contains("pathway"),
                        "{trust}: {column} = {v}"
                    );
                    if let Some(n) = v.as_i64() {
                        assert!(n == 0 || n >= 8, "{trust}: {column} = {n} leaves the trust");
                    }
                }
            }
        }
    }
    let picture: i64 = national["picture"]["daily-return/beds-occupied"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["beds_occupied"].as_i64())
        .sum();
    assert_eq!(
        picture, beds_nationally,
        "the national picture adds up the trusts"
    );
    let (status, page) = http_get(
        d.http("X24"),
        &format!("/returns?census_at={census_at}"),
        Some(d.token("X24")),
    );
    assert_eq!(status, 200, "{page}");
    for trust in ["RXA", "RXB", "RXC"] {
        assert!(
            page.contains(&format!(
                "data-member=\"{trust}\" data-status=\"submitted\""
            )),
            "{page}"
        );
    }

    // The ICB has gathered every publisher's capacity, and a trust's bed
    // board shows where its medically optimised patients could go.
    wait_until(60, "the ICB to gather every feed", || {
        d.get_for("QXA", "/api/capacity", "analyst", "operations")["gathered"]
            .as_array()
            .unwrap()
            .len()
            == 5
    });
    let gathered = d.get_for("QXA", "/api/capacity", "analyst", "operations");
    let care_home = gathered["gathered"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["publisher"] == "VCH")
        .unwrap()
        .clone();
    assert!(
        care_home["offers"].as_array().unwrap().len() >= 3,
        "{care_home}"
    );
    // Supplies: every trust published its position, and the ICB's copy of
    // each is the trust's own demand view, item for item.
    wait_until(240, "every trust's supplies position at the ICB", || {
        d.get_for("QXA", "/api/supplies/area", "analyst", "operations")["gathered"]
            .as_array()
            .unwrap()
            .len()
            == 3
    });
    let area = d.get_for("QXA", "/api/supplies/area", "analyst", "operations");
    for trust in ["RXA", "RXB", "RXC"] {
        let own = rows(&d.get_for(
            trust,
            "/api/products/supply-chain/demand",
            "supplies-lead",
            "operations",
        ));
        let held = area["gathered"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["publisher"] == trust)
            .unwrap_or_else(|| panic!("no position from {trust}"));
        let items = held["items"].as_array().unwrap();
        assert!(!own.is_empty());
        assert_eq!(items.len(), own.len(), "{trust}");
        for r in &own {
            let at_icb = items
                .iter()
                .find(|i| i["item_code"] == r["item_code"])
                .unwrap_or_else(|| panic!("{trust}: {} not at the ICB", r["item_code"]));
            for k in ["on_hand", "forecast_per_month", "spare", "to_order"] {
                assert_eq!(
                    at_icb[k].as_f64(),
                    r[k].as_f64(),
                    "{trust} {} {k}",
                    r["item_code"]
                );
            }
        }
    }
    assert!(
        area["area"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["critical"] == true && i["trusts"] == 3),
        "{area}"
    );
    // Mutual aid: the trusts carry waiting lists and theatre lists; a slot
    // RXB offers went to a patient on RXA's list, RXB accepted, and both
    // PTLs show the pathway transferred (RTT status 21).
    let mut pathway = String::new();
    wait_until(120, "RXB's acceptance of RXA's booking request", || {
        let sent = d.get("RXA", "/api/mutual-aid/requests", "waiting-list-manager");
        match sent.as_array().and_then(|a| a.first()) {
            Some(r) if r["status"] == "accepted" => {
                pathway = r["pathway_id"].as_str().unwrap().to_string();
                true
            }
            _ => false,
        }
    });
    for ods in ["RXA", "RXB"] {
        wait_until(60, "the transfer on both trusts' PTLs", || {
            rows(&d.get(
                ods,
                "/api/products/waiting-list/ptl",
                "waiting-list-manager",
            ))
            .iter()
            .any(|r| r["pathway_id"] == pathway.as_str() && r["rtt_status_code"] == "21")
        });
    }
    // Each trust's vaccine stock against its clinics' bookings, counted
    // today: the site booked for a product it holds none of comes first.
    for ods in ["RXA", "RXB"] {
        let cover = rows(&d.get_for(
            ods,
            "/api/products/vaccine-stock/cover",
            "vaccination-lead",
            "operations",
        ));
        assert!(cover.len() >= 3, "{ods}: {cover:?}");
        assert_eq!(cover[0]["days_of_cover"], 0, "{ods}: {cover:?}");
        assert!(
            cover.iter().any(|r| r["on_hand"].as_u64() > Some(0)),
            "{ods}: {cover:?}"
        );
    }
    let declared = http_form(
        d.http("RXA"),
        "/purpose",
        d.token("RXA"),
        &[],
        &[("purpose", "direct-care"), ("role", "bed-manager")],
    );
    assert_eq!(declared.status, 303, "{}", declared.body);
    let cookie = declared
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    wait_until(
        60,
        "a medically optimised patient with somewhere to go",
        || {
            let r = http_request_with(
                d.http("RXA"),
                "GET",
                "/bed-board",
                Some(d.token("RXA")),
                &[("Cookie", &cookie)],
                None,
            );
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.contains("id=\"mo-patients\"") && r.body.contains("class=\"place\"")
        },
    );

    std::thread::sleep(Duration::from_secs(3));
    let first = sources(&d);
    assert_no_census_inconsistency(&first);
    stop(d);
    let progress = data.join("RXA").join("demo-pas.json");
    let sent_first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    let sent_first = sent_first["acked"].as_u64().unwrap();

    let d = start_demo(&data);
    std::thread::sleep(Duration::from_secs(4));
    let second = sources(&d);
    // The second run re-sent nothing already stored and diverged nowhere.
    assert_eq!(second["mllp"]["duplicates"], 0, "{second}");
    assert_no_census_inconsistency(&second);
    let applied = |v: &serde_json::Value| -> i64 {
        v["census"]["events"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_i64().unwrap())
            .sum()
    };
    assert!(applied(&second) > applied(&first), "the stream carried on");
    stop(d);
    let sent_second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    assert!(sent_second["acked"].as_u64().unwrap() > sent_first);
}

/// The census applied the feed without an inconsistency. The simulated PAS
/// plants a few A08s whose NHS number fails its check: those are accepted,
/// flagged and warned about by design, and are the only warnings allowed.
fn assert_no_census_inconsistency(sources: &serde_json::Value) {
    let total = sources["census"]["warnings"].as_u64().unwrap();
    let recent = sources["census"]["recent_warnings"].as_array().unwrap();
    assert_eq!(total as usize, recent.len(), "every warning is listed");
    let others: Vec<&serde_json::Value> = recent
        .iter()
        .filter(|w| !w["message"].as_str().unwrap().contains("NHS number"))
        .collect();
    assert!(others.is_empty(), "{others:?}");
}
