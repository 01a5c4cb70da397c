//! Mutual aid across an ICB, as three running instances: trust B publishes
//! the free time on its locked theatre lists to the ICB; trust A's
//! waiting-list manager sees B's slot with A's patients of greatest need
//! it suits, and sends a booking request for the longest-waiting suitable
//! patient while B is down; it arrives at B once B is back, exactly once;
//! B accepts, and both trusts' PTLs show the same clock, transferred (RTT
//! status 21). Both audits show every step; the attempts to get round it
//! are refused.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, Utc};
use common::*;
use serde_json::{json, Map, Value};

/// How long trust B stays down (a minute by default).
fn downtime() -> Duration {
    Duration::from_secs(
        std::env::var("FDP_TEST_PEER_DOWN_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

struct Site<'a> {
    ods: &'a str,
    role: &'a str,
    port: u16,
    data: &'a Path,
}

fn config(listen: u16, principals: &str, peers: &[&Site]) -> String {
    let mut c = format!("{principals}[federation]\nlisten = \"127.0.0.1:{listen}\"\n");
    for p in peers {
        c.push_str(&format!(
            "[[federation.peer]]\nods = \"{}\"\nrole = \"{}\"\naddress = \"127.0.0.1:{}\"\ncertificate = \"{}\"\n",
            p.ods,
            p.role,
            p.port,
            p.data.join("federation/instance.pem").display()
        ));
    }
    c
}

fn dmy(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// Trust B's theatre system: on `day` (a week ahead) Theatre 3's T&O
/// morning list has 120 of its 240 minutes booked (a cancelled booking
/// does not count), so 105 usable after a changeover; Theatre 4's urology
/// afternoon has nothing booked. A list released for leave, one past the
/// two-week lock and one last week are not offered.
fn theatre_extracts(dir: &Path, today: NaiveDate) -> NaiveDate {
    let day = today + chrono::Duration::days(7);
    let session = |id: &str,
                   d: NaiveDate,
                   theatre: &str,
                   half: &str,
                   from: &str,
                   to: &str,
                   tfc: &str,
                   specialty: &str,
                   status: &str| {
        format!(
            "{id},RYY01,Riverside General,{theatre},Theatre {theatre},{},{},{half},{from},{to},240,{tfc},{specialty},EL,C1234567,Ms Joint,A7654321,Dr Gas,Y,N,{status},0,240,\n",
            dmy(d),
            d.weekday()
        )
    };
    let mut sessions = String::from("Session ID,Site Code,Site Name,Theatre Code,Theatre Name,Session Date,Day,AM/PM,Planned Start,Planned End,Planned Mins,Specialty Code,Specialty,Session Type,Consultant Code,Consultant Name,Anaesthetist Code,Anaesthetist Name,Anaes Req,Consultant On Leave,Status,Booked Mins,Unbooked Mins,Comments\n");
    sessions += &session(
        "B-101",
        day,
        "3",
        "AM",
        "08:30",
        "12:30",
        "110",
        "Trauma and Orthopaedics",
        "CONF",
    );
    sessions += &session(
        "B-102", day, "4", "PM", "13:30", "17:30", "101", "Urology", "CONF",
    );
    sessions += &session(
        "B-103",
        day + chrono::Duration::days(1),
        "3",
        "AM",
        "08:30",
        "12:30",
        "110",
        "Trauma and Orthopaedics",
        "REL",
    );
    sessions += &session(
        "B-104",
        today + chrono::Duration::days(20),
        "3",
        "AM",
        "08:30",
        "12:30",
        "110",
        "Trauma and Orthopaedics",
        "CONF",
    );
    sessions += &session(
        "B-105",
        today - chrono::Duration::days(7),
        "3",
        "AM",
        "08:30",
        "12:30",
        "110",
        "Trauma and Orthopaedics",
        "CONF",
    );
    std::fs::write(dir.join("theatre_sessions_b.csv"), sessions).unwrap();
    let bookings = format!(
        "Booking Ref,Session ID,Session Date,Pathway ID,NHS Number,Hospital Number,Patient Name,Procedure,Priority,Expected Duration (mins),List Order,Anaesthetist Required,Post-Op Bed,Critical Care Bed,Booked On,Booking Status,Cancellation Reason,Cancellation Date,Consultant Code,Consultant Name\r\n\
         BK1,B-101,{d},RYYP1,{n1},RYY100,\"JONES, Ann\",Total knee replacement,P3,120,1,Y,Y,N,01/11/2026 10:00,Booked,,,C1234567,Ms Joint\r\n\
         BK2,B-101,{d},RYYP2,{n2},RYY101,\"SMITH, Bob\",Carpal tunnel release,P4,30,2,N,N,N,01/11/2026 10:05,Cancelled,Patient unwell,{t},C1234567,Ms Joint\r\n",
        d = dmy(day),
        t = dmy(today),
        n1 = nhs_number(943_476_591),
        n2 = nhs_number(943_476_592),
    );
    std::fs::write(dir.join("theatre_bookings_b.csv"), bookings).unwrap();
    day
}

fn ptl(server: &Server, token: &str) -> Vec<Map<String, Value>> {
    let (status, answer) =
        direct_care_call(server, "GET", "/api/products/waiting-list/ptl", token, None);
    assert_eq!(status, 200, "{answer}");
    rows(&answer)
}

fn requests(server: &Server, token: &str) -> Vec<Value> {
    let (status, list) = direct_care_call(server, "GET", "/api/mutual-aid/requests", token, None);
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().clone()
}

/// The urgency of a clinical priority, most urgent first; None for a
/// priority not offered a slot.
fn urgency(p: &str) -> Option<usize> {
    ["P1a", "P1b", "P1", "P2", "P3", "P4"]
        .iter()
        .position(|q| *q == p)
}

#[test]
fn a_free_slot_at_one_trust_goes_to_another_trusts_longest_waiting_suitable_patient_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let (a_data, b_data, icb_data) = (
        dir.path().join("RXX"),
        dir.path().join("RYY"),
        dir.path().join("QWE"),
    );
    peer_init(&a_data, "RXX", "trust", &ca);
    peer_init(&b_data, "RYY", "trust", &ca);
    peer_init(&icb_data, "QWE", "icb", &ca);
    let a = Site {
        ods: "RXX",
        role: "trust",
        port: free_port(),
        data: &a_data,
    };
    let b = Site {
        ods: "RYY",
        role: "trust",
        port: free_port(),
        data: &b_data,
    };
    let icb = Site {
        ods: "QWE",
        role: "icb",
        port: free_port(),
        data: &icb_data,
    };
    let a_config = config(
        a.port,
        "[principal.tester]\nroles = [\"clinician\"]\n[principal.wlm]\nroles = [\"waiting-list-manager\"]\n[principal.ana]\nroles = [\"analyst\"]\n",
        &[&b, &icb],
    );
    let b_config = config(
        b.port,
        "[principal.tester]\nroles = [\"clinician\"]\n[principal.sched]\nroles = [\"theatre-scheduler\"]\n[principal.wlm]\nroles = [\"waiting-list-manager\"]\n",
        &[&a, &icb],
    );
    let icb_config = config(
        icb.port,
        "[principal.tester]\nroles = [\"clinician\"]\n",
        &[&a, &b],
    );

    // Trust A's waiting list; trust B's theatre lists.
    let drop = dir.path().join("drop");
    fdp_ok!(
        "synth",
        "elective",
        "--out",
        drop,
        "--pathways",
        "400",
        "--problem-share",
        "0.05"
    );
    for file in ["waiting_list_20261130.csv", "rtt_activity_20261130.csv"] {
        fdp_ok!(
            "ingest",
            "csv",
            "--data-dir",
            a_data,
            "--mapping",
            mappings(),
            drop.join(file)
        );
    }
    let today = Utc::now().date_naive();
    let slot_day = theatre_extracts(&drop, today);
    for file in ["theatre_sessions_b.csv", "theatre_bookings_b.csv"] {
        fdp_ok!(
            "ingest",
            "csv",
            "--data-dir",
            b_data,
            "--mapping",
            mappings(),
            drop.join(file)
        );
    }
    let token = |who: &str, data: &Path| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let (wlm, ana, sched, b_wlm) = (
        token("wlm", &a_data),
        token("ana", &a_data),
        token("sched", &b_data),
        token("wlm", &b_data),
    );
    let icb_server =
        Server::start_configured(&icb_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &icb_config);
    let trust_b = Server::start_configured(&b_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &b_config);
    let trust_a = Server::start_configured(&a_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &a_config);

    // B publishes the free time inside its lock, derived from its lists.
    let (status, published) = direct_care_call(
        &trust_b,
        "POST",
        "/api/capacity/theatre-slots",
        &sched,
        None,
    );
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["published_to"], 1);
    let offered: Vec<(String, u64)> = published["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["slot"]["session_id"].as_str().unwrap().to_string(),
                o["slot"]["usable_minutes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        offered,
        [("B-101".to_string(), 105), ("B-102".to_string(), 225)]
    );
    // A waiting-list manager has no grant to publish capacity.
    let (status, refused) = direct_care_call(
        &trust_b,
        "POST",
        "/api/capacity/theatre-slots",
        &b_wlm,
        None,
    );
    assert_eq!(status, 403, "{refused}");
    wait_until(60, "B's slots at the ICB", || {
        let (_, feed) =
            direct_care_call(&icb_server, "GET", "/api/capacity", &icb_server.token, None);
        feed["gathered"].as_array().is_some_and(|g| {
            g.iter()
                .any(|p| p["publisher"] == "RYY" && p["offers"].as_array().unwrap().len() == 2)
        })
    });

    // A's waiting-list manager sees B's T&O slot with A's patients it suits.
    let (status, fits) = direct_care_call(&trust_a, "GET", "/api/mutual-aid/slots", &wlm, None);
    assert_eq!(status, 200, "{fits}");
    let fits = fits.as_array().unwrap().clone();
    let fit = |session: &str| {
        fits.iter()
            .find(|f| f["slot"]["session_id"] == session)
            .unwrap_or_else(|| panic!("no slot {session}: {fits:?}"))
            .clone()
    };
    let ortho = fit("B-101");
    assert_eq!(ortho["publisher"], "RYY");
    assert_eq!(ortho["slot"]["date"], slot_day.to_string());
    assert!(fit("B-102")["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["specialty"] == "Urology"));
    // Worked out here from A's own PTL: the T&O entries still waiting,
    // P1 to P4, not transferred nor booked before the slot, whose case fits
    // in 105 minutes; the most urgent, then the longest wait.
    let a_ptl = ptl(&trust_a, &wlm);
    let text = |r: &Map<String, Value>, c: &str| r[c].as_str().unwrap_or_default().to_string();
    let mut suitable: Vec<&Map<String, Value>> = a_ptl
        .iter()
        .filter(|r| {
            text(r, "specialty") == "Trauma and Orthopaedics"
                && text(r, "clock") == "running"
                && text(r, "rtt_status_code") != "21"
                && urgency(&text(r, "priority_type")).is_some()
                && r["expected_theatre_minutes"]
                    .as_i64()
                    .is_some_and(|m| m <= 105)
                && r["planned_date"]
                    .as_str()
                    .is_none_or(|d| d > slot_day.to_string().as_str())
        })
        .collect();
    assert!(suitable.len() >= 5, "{} suitable", suitable.len());
    suitable.sort_by_key(|r| {
        (
            urgency(&text(r, "priority_type")),
            -r["rtt_period_length"].as_i64().unwrap(),
            text(r, "eal_id"),
        )
    });
    let chosen = suitable[0];
    let candidates = ortho["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), suitable.len());
    assert_eq!(
        candidates[0]["eal_id"], chosen["eal_id"],
        "{:?}",
        candidates[0]
    );
    let eal = text(chosen, "eal_id");
    let pathway = text(chosen, "pathway_id");
    let minutes = chosen["expected_theatre_minutes"].as_i64().unwrap();
    // The page shows the same: the slot, and the patient with a form.
    let a_cookie = purpose_cookie(trust_a.http, &wlm, "direct-care");
    let page = http_request_with(
        trust_a.http,
        "GET",
        "/mutual-aid",
        Some(&wlm),
        &[("Cookie", &a_cookie)],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let slot = page
        .body
        .split("data-publisher=\"RYY\" data-session=\"B-101\"")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .unwrap_or_else(|| panic!("B-101 is not on A's page: {}", page.body));
    assert!(slot.contains(&format!("data-eal=\"{eal}\"")), "{slot}");

    // What does not fit is refused by name: a urology patient into the
    // T&O slot, a slot B does not offer, and an analyst sending at all.
    let urology = a_ptl
        .iter()
        .find(|r| text(r, "specialty") == "Urology" && text(r, "clock") == "running")
        .unwrap();
    let ask = |eal: &str, session: &str| {
        json!({"to": "RYY", "session_id": session, "eal_id": eal,
               "patient_choice": "agreed by phone to travel to Riverside General",
               "lawful_basis": "UK GDPR 6(1)(e) and 9(2)(h): direct care"})
    };
    let (status, refused) = direct_care_call(
        &trust_a,
        "POST",
        "/api/mutual-aid/requests",
        &wlm,
        Some(ask(&text(urology, "eal_id"), "B-101")),
    );
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("Urology"),
        "{refused}"
    );
    let (status, refused) = direct_care_call(
        &trust_a,
        "POST",
        "/api/mutual-aid/requests",
        &wlm,
        Some(ask(&eal, "B-103")),
    );
    assert_eq!(status, 404, "{refused}");
    let analyst = http_request_with(
        trust_a.http,
        "POST",
        "/api/mutual-aid/requests",
        Some(&ana),
        &[("X-Purpose", "operations")],
        Some(&ask(&eal, "B-101").to_string()),
    );
    assert_eq!(analyst.status, 403, "{}", analyst.body);
    let mut no_choice = ask(&eal, "B-101");
    no_choice["patient_choice"] = json!(" ");
    let (status, refused) = direct_care_call(
        &trust_a,
        "POST",
        "/api/mutual-aid/requests",
        &wlm,
        Some(no_choice),
    );
    assert_eq!(status, 422, "{refused}");

    // B goes down; A sends the request, which waits in A's outbox.
    trust_b.stop();
    let t0 = Instant::now();
    let (status, sent) = direct_care_call(
        &trust_a,
        "POST",
        "/api/mutual-aid/requests",
        &wlm,
        Some(ask(&eal, "B-101")),
    );
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["status"], "queued");
    let id = sent["id"].as_str().unwrap().to_string();
    std::thread::sleep(downtime().saturating_sub(t0.elapsed()));
    let waiting = requests(&trust_a, &wlm);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["status"], "queued", "{waiting:?}");
    assert!(
        waiting[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{waiting:?}"
    );

    // B is back: the request arrives, once, with the pathway's record;
    // the patient is not on B's list until B accepts.
    let trust_b = Server::start_configured(&b_data, 0.5, "127.0.0.1:0", "127.0.0.1:0", &b_config);
    wait_until(60, "the request at B", || {
        requests(&trust_a, &wlm)[0]["status"] == "delivered"
    });
    let received = requests(&trust_b, &sched);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["id"], id.as_str());
    assert_eq!(received[0]["from"], "RXX");
    assert_eq!(received[0]["pathway_id"], pathway.as_str());
    assert_eq!(
        received[0]["patient_choice"],
        "agreed by phone to travel to Riverside General"
    );
    let inbox = inbox_messages(&b_data);
    assert_eq!(inbox, 1, "the request is in B's inbox once");
    assert!(ptl(&trust_b, &sched)
        .iter()
        .all(|r| text(r, "pathway_id") != pathway));

    // B's theatre scheduler accepts on its page: the patient joins B's
    // list with the clock carried over.
    let b_cookie = purpose_cookie(trust_b.http, &sched, "direct-care");
    let page = http_request_with(
        trust_b.http,
        "GET",
        "/mutual-aid",
        Some(&sched),
        &[("Cookie", &b_cookie)],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("data-id=\"{id}\" data-status=\"delivered\"")),
        "{}",
        page.body
    );
    let decided = http_form(
        trust_b.http,
        &format!("/mutual-aid/requests/{id}/decision"),
        &sched,
        &[("Cookie", &b_cookie)],
        &[("decision", "accept")],
    );
    assert_eq!(decided.status, 303, "{}", decided.body);
    assert_eq!(requests(&trust_b, &sched)[0]["status"], "accepted");
    let (status, again) = direct_care_call(
        &trust_b,
        "POST",
        &format!("/api/mutual-aid/requests/{id}/decision"),
        &sched,
        Some(json!({"accept": false})),
    );
    assert_eq!(status, 409, "{again}");
    let (status, own) = direct_care_call(
        &trust_a,
        "POST",
        &format!("/api/mutual-aid/requests/{id}/decision"),
        &wlm,
        Some(json!({"accept": true})),
    );
    assert!(
        status == 403 || status == 409,
        "A decided its own request: {status} {own}"
    );
    let mut at_b = None;
    wait_until(30, "the pathway on B's PTL", || {
        at_b = ptl(&trust_b, &sched)
            .into_iter()
            .find(|r| text(r, "pathway_id") == pathway);
        at_b.is_some()
    });
    wait_until(60, "the acceptance at A", || {
        let r = requests(&trust_a, &wlm);
        assert_ne!(r[0]["status"], "failed", "{r:?}");
        r[0]["status"] == "accepted"
    });
    let mut at_a = None;
    wait_until(60, "the transfer on A's PTL", || {
        at_a = ptl(&trust_a, &wlm)
            .into_iter()
            .find(|r| text(r, "eal_id") == eal && text(r, "rtt_status_code") == "21");
        at_a.is_some()
    });
    let (at_a, at_b) = (at_a.unwrap(), at_b.unwrap());
    for column in [
        "clock",
        "rtt_status_code",
        "rtt_period_start_date",
        "rtt_weeks_waiting",
        "date_of_18_week_rtt_breach",
        "date_of_52_week_rtt_breach",
        "priority_type",
        "expected_theatre_minutes",
        "specialty",
    ] {
        assert_eq!(
            at_a[column], at_b[column],
            "{column}: A {at_a:?} B {at_b:?}"
        );
    }
    assert_eq!(text(&at_b, "rtt_status_code"), "21");
    assert_eq!(
        at_a["rtt_period_start_date"],
        chosen["rtt_period_start_date"]
    );
    assert_eq!(requests(&trust_a, &wlm)[0]["status"], "accepted");
    // The patient is offered no more slots, and B offers what is left.
    let (_, fits) = direct_care_call(&trust_a, "GET", "/api/mutual-aid/slots", &wlm, None);
    assert!(fits
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["candidates"].as_array().unwrap())
        .all(|c| c["eal_id"] != eal.as_str()));
    let left = 105 - (minutes + 15);
    wait_until(60, "B's slot reduced at the ICB", || {
        let (_, feed) =
            direct_care_call(&icb_server, "GET", "/api/capacity", &icb_server.token, None);
        let ortho = feed["gathered"]
            .as_array()
            .and_then(|g| g.iter().find(|p| p["publisher"] == "RYY"))
            .and_then(|p| {
                p["offers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["slot"]["session_id"] == "B-101")
                    .cloned()
            });
        match ortho {
            Some(o) => left >= 20 && o["slot"]["usable_minutes"] == left,
            None => left < 20,
        }
    });
    trust_a.stop();
    trust_b.stop();
    icb_server.stop();

    // Both sides audited every step, naming the patient.
    let patient = text(chosen, "patient_id");
    let a_audit = audit_entries(&a_data);
    for kind in ["booking-request-sent", "booking-request-status"] {
        assert!(
            a_audit
                .iter()
                .any(|e| e["kind"] == kind && e["patients"] == json!([patient])),
            "{kind}"
        );
    }
    let b_audit = audit_entries(&b_data);
    for kind in ["booking-request-received", "booking-request-decision"] {
        assert_eq!(
            b_audit
                .iter()
                .filter(|e| e["kind"] == kind && e["patients"] == json!([patient]))
                .count(),
            1,
            "{kind}"
        );
    }
}
