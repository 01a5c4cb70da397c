//! A discharge referral while the care provider's instance is down: the
//! trust refers a patient, the referral waits in the trust's outbox (through
//! a restart of the trust itself) for as long as the provider is down, and
//! arrives exactly once when it is back; the provider accepts and the trust
//! sees it. Both audits show every step.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// How long the care provider stays down (several minutes by default).
fn downtime() -> Duration {
    Duration::from_secs(
        std::env::var("FDP_TEST_PEER_DOWN_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200),
    )
}

fn config(listen: u16, peer: &str, role: &str, peer_port: u16, peer_data: &Path) -> String {
    format!(
        "[principal.tester]\nroles = [\"clinician\"]\n[principal.ana]\nroles = [\"analyst\"]\n[federation]\nlisten = \"127.0.0.1:{listen}\"\n[[federation.peer]]\nods = \"{peer}\"\nrole = \"{role}\"\naddress = \"127.0.0.1:{peer_port}\"\ncertificate = \"{}\"\n",
        peer_data.join("federation/instance.pem").display()
    )
}

fn referrals(server: &Server) -> Vec<Value> {
    let (status, body) = http_get(server.http, "/api/referrals", Some(&server.token));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_referral_waits_for_a_care_provider_that_is_down_and_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let trust = dir.path().join("RXX");
    let care = dir.path().join("CARE1");
    peer_init(&trust, "RXX", "trust", &ca);
    peer_init(&care, "CARE1", "care-provider", &ca);
    let (trust_port, care_port) = (free_port(), free_port());
    let trust_config = config(trust_port, "CARE1", "care-provider", care_port, &care);
    let care_config = config(care_port, "RXX", "trust", trust_port, &trust);

    // A patient admitted at the trust.
    let server = Server::start_configured(&trust, 0.5, "127.0.0.1:0", "127.0.0.1:0", &trust_config);
    let msg = "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01|R1|P|2.4\rEVN|A01|20261120080000\rPID|1||9434765919^^^NHS^NH~M1^^^RXX^MR||ALPHA^Test||19500101|F\rPV1|1|I|W1^B1^1^RXX01^^BED|21|||||||||||||||SPELL1\r";
    assert_eq!(
        mllp_roundtrip(server.mllp, &[msg.as_bytes().to_vec()]),
        vec!["AA"]
    );
    let body = json!({"admission_id": "SPELL1", "to": "CARE1",
        "lawful_basis": "UK GDPR 6(1)(e) and 9(2)(h): direct care",
        "care_needs": ["nursing care", "hoist for transfers"],
        "summary": "Medically optimised after pneumonia; needs nursing home placement."});
    let mut answer = (0, String::new());
    wait_until(10, "the admission to reach the census", || {
        answer = http_post(
            server.http,
            "/api/referrals",
            &server.token,
            &body.to_string(),
        );
        answer.0 != 404
    });
    assert_eq!(answer.0, 202, "{}", answer.1);
    let sent: Value = serde_json::from_str(&answer.1).unwrap();
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(sent["status"], "queued");

    // The provider is down. Half way through, the trust restarts too: the
    // referral is still in its outbox, still being tried.
    let down = downtime();
    let t0 = Instant::now();
    std::thread::sleep(down / 2);
    server.stop();
    let server = Server::start_configured(&trust, 0.5, "127.0.0.1:0", "127.0.0.1:0", &trust_config);
    let waiting = referrals(&server);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["status"], "queued", "{waiting:?}");
    assert!(
        waiting[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{waiting:?}"
    );
    // The federation page shows it waiting, and why.
    let (status, page) = http_get(server.http, "/federation", Some(&server.token));
    assert_eq!(status, 200);
    let row = page
        .split("<tr data-state=\"queued\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no queued message on the page: {page}"));
    assert!(
        row.contains("referral") && row.contains("unreachable"),
        "{row}"
    );
    // And the peer as not taking messages: one waits for it, never delivered.
    let peer = page
        .split("<tr data-peer=\"CARE1\" data-waiting=\"1\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("CARE1 is not shown with a message waiting: {page}"));
    assert!(
        peer.contains("never") && peer.contains("unreachable"),
        "{peer}"
    );
    std::thread::sleep(down.saturating_sub(t0.elapsed()));
    let outbox = fdp_ok!("peer", "outbox", "--data-dir", trust);
    assert!(
        outbox.contains("queued") && outbox.contains("referral"),
        "{outbox}"
    );

    // The provider comes back: the referral arrives, once.
    let provider = Server::start_configured(&care, 0.5, "127.0.0.1:0", "127.0.0.1:0", &care_config);
    wait_until(60, "the referral to be delivered", || {
        referrals(&server)[0]["status"] == "delivered"
    });
    let received = referrals(&provider);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["id"], id.as_str());
    assert_eq!(received[0]["from"], "RXX");
    let bundle = &received[0]["bundle"];
    assert_eq!(
        bundle["entry"][0]["resource"]["identifier"][0]["value"],
        "9434765919"
    );
    assert_eq!(
        bundle["entry"][3]["resource"]["activity"][1]["detail"]["description"],
        "hoist for transfers"
    );
    let messages = inbox_messages(&care);
    assert_eq!(messages, 1, "the referral is in the provider's inbox once");
    // The record came in through ingest under the trust's name: the
    // provider's FHIR API serves the patient, and its canonical tables hold
    // the referral, read under its policy like any other.
    let (status, patient) = http_get(provider.http, "/fhir/Patient/RXX.M1", Some(&provider.token));
    assert_eq!(status, 200, "{patient}");
    assert!(patient.contains("9434765919"), "{patient}");
    let query = json!({"sql": "SELECT referral_id, referring_organisation_ods_code, referral_notes, patient_id FROM referral",
        "purpose": "direct-care"});
    let (status, answer) = http_post(provider.http, "/sql", &provider.token, &query.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["rows"],
        json!([{"referral_id": id, "referring_organisation_ods_code": "RXX",
            "referral_notes": "nursing care\nhoist for transfers", "patient_id": "RXX.M1"}]),
        "{answer}"
    );

    // The provider accepts; the trust sees it.
    let (status, decided) = http_post(
        provider.http,
        &format!("/api/referrals/{id}/decision"),
        &provider.token,
        r#"{"accept": true, "reason": "bed available at Oak House from tomorrow"}"#,
    );
    assert_eq!(status, 200, "{decided}");
    wait_until(60, "the acceptance at the trust", || {
        referrals(&server)[0]["status"] == "accepted"
    });
    // Under planning, referrals are not listed patient by patient over the
    // API (class 1 of the adversarial suite): only aggregates leave.
    let ana = fdp_ok!("token", "create", "ana", "--data-dir", trust);
    let listed = http_request_with(
        server.http,
        "GET",
        "/api/referrals",
        Some(ana.trim()),
        &[("X-Purpose", "planning")],
        None,
    );
    assert_eq!(listed.status, 403, "{}", listed.body);
    assert!(listed.body.contains("one by one"), "{}", listed.body);
    assert!(!listed.body.contains("ALPHA"), "{}", listed.body);
    // The admission's page at the trust shows it, for a declared purpose.
    let cookie = purpose_cookie(server.http, &server.token, "direct-care");
    let page = http_request_with(
        server.http,
        "GET",
        "/bed-board/admission/SPELL1",
        Some(&server.token),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("<tr data-status=\"accepted\"><td>CARE1</td>"),
        "{}",
        page.body
    );
    // A second referral from the page's form goes the same way.
    let sent = http_form(
        server.http,
        "/bed-board/admission/SPELL1/referral",
        &server.token,
        &[("Cookie", &cookie)],
        &[
            ("to", "CARE1"),
            ("lawful_basis", "UK GDPR 6(1)(e) and 9(2)(h): direct care"),
            ("care_needs", "dementia care\nsupervision at night"),
            ("summary", "Second opinion requested by family"),
        ],
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    wait_until(60, "the second referral at the provider", || {
        referrals(&provider).len() == 2
    });
    // The care provider reads it on its referrals page and declines it there.
    let provider_cookie = purpose_cookie(provider.http, &provider.token, "direct-care");
    let page = http_request_with(
        provider.http,
        "GET",
        "/referrals",
        Some(&provider.token),
        &[("Cookie", &provider_cookie)],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("supervision at night"), "{}", page.body);
    assert!(
        page.body.contains("Second opinion requested by family"),
        "{}",
        page.body
    );
    let second = referrals(&provider)
        .iter()
        .find(|r| r["id"] != id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        page.body
            .contains(&format!("data-id=\"{second}\" data-status=\"delivered\"")),
        "{}",
        page.body
    );
    let declined = http_form(
        provider.http,
        &format!("/referrals/{second}/decision"),
        &provider.token,
        &[("Cookie", &provider_cookie)],
        &[
            ("decision", "decline"),
            ("reason", "no dementia place this week"),
        ],
    );
    assert_eq!(declined.status, 303, "{}", declined.body);
    // The trust's bed board shows where the admission's latest referral is.
    wait_until(60, "the decline on the trust's bed board", || {
        let board = http_request_with(
            server.http,
            "GET",
            "/bed-board",
            Some(&server.token),
            &[("Cookie", &cookie)],
            None,
        );
        board.body.contains("data-referral=\"declined (CARE1)\"")
    });
    let (status, again) = http_post(
        provider.http,
        &format!("/api/referrals/{id}/decision"),
        &provider.token,
        r#"{"accept": false}"#,
    );
    assert_eq!(status, 409, "{again}");
    server.stop();
    provider.stop();

    // Both sides audited it, naming the patient.
    let trust_audit = audit_entries(&trust);
    for kind in ["referral-sent", "referral-status"] {
        assert!(
            trust_audit
                .iter()
                .any(|e| e["kind"] == kind && e["patients"] == json!(["M1"])),
            "{kind}"
        );
    }
    assert!(trust_audit.iter().any(|e| e["kind"] == "federation-send"
        && e["outcome"] == "delivered"
        && e["what"]
            .as_str()
            .unwrap()
            .starts_with(&format!("referral {id}"))));
    let care_audit = audit_entries(&care);
    for kind in ["referral-received", "referral-decision"] {
        assert!(
            care_audit
                .iter()
                .any(|e| e["kind"] == kind && e["patients"] == json!(["M1"])),
            "{kind}"
        );
    }
}
