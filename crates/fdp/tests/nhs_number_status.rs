//! Patients admitted without a usable NHS number, tried as an attacker
//! would: the analyst (planning), the bed manager (operations) and someone
//! holding a stolen token try every path that shows them (the bed board's
//! JSON, its live event stream, the page, the admission page and SQL) for
//! the number that was received, the name and the hospital number. The
//! flag that tells staff to check identity must reach those who care for
//! the patient; the received value only those shown NHS numbers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A mistyped NHS number (the check digit should be 9).
const MISTYPED: &str = "9434765911";
const VALID: &str = "9434765919";
const SURNAME_MISTYPED: &str = "QUEXLEY";
const SURNAME_PLACEHOLDER: &str = "ZANTHORPE";
const SURNAME_UNPLACED: &str = "MORDWELL";
const MRN_MISTYPED: &str = "H4471";

fn adt(control: &str, pid: &str, location: &str, visit: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01^ADT_A01|{control}|P|2.4\rEVN|A01|20261120080000\r{pid}\rPV1|1|I|{location}|21|||||||||||||||{visit}^^^RXX^VN|||||||||||||||||||||||||20261120080000\r"
    )
    .into_bytes()
}

/// The first event of the bed board's live stream, as a browser gets it.
fn first_event(addr: std::net::SocketAddr, token: &str, headers: &[(&str, &str)]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET /bed-board/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{extra}Accept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        let text = String::from_utf8_lossy(&got);
        if !text.starts_with("HTTP/1.1 200") && text.contains("\r\n\r\n") {
            return text.into_owned();
        }
        if text.contains("\ndata: ") && text.ends_with("\n\n") {
            return text.into_owned();
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn occupants(board: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["wards"].as_array().unwrap().iter())
        .flat_map(|w| w["beds"].as_array().unwrap().iter())
        .filter_map(|b| b.get("occupant").filter(|o| !o.is_null()).cloned())
        .collect();
    out.extend(
        board["unplaced"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["occupant"].clone()),
    );
    out
}

#[test]
fn a_received_invalid_nhs_number_reaches_only_those_shown_nhs_numbers() {
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
    let acks = mllp_roundtrip(
        server.mllp,
        &[
            adt(
                "1",
                &format!("PID|1||{MISTYPED}^^^NHS^NH~{MRN_MISTYPED}^^^RXX^MR||{SURNAME_MISTYPED}^Ann||19500101|F"),
                "W1^B1^1^RXX01^^BED",
                "V1",
            ),
            adt(
                "2",
                &format!("PID|1||9999999999^^^NHS^NH~H4472^^^RXX^MR||{SURNAME_PLACEHOLDER}^Bo||19600101|M"),
                "W1^B1^2^RXX01^^BED",
                "V2",
            ),
            // Admitted to the ward with no bed named yet: the board lists
            // the patient apart, and must mask them all the same.
            adt(
                "3",
                &format!("PID|1||^^^NHS^NH~H4473^^^RXX^MR||{SURNAME_UNPLACED}^Cy||19700101|F"),
                "W1^^^RXX01",
                "V3",
            ),
            adt(
                "4",
                &format!("PID|1||{VALID}^^^NHS^NH~H4474^^^RXX^MR||TRACED^Di||19800101|M"),
                "W1^B1^3^RXX01^^BED",
                "V4",
            ),
        ],
    );
    assert_eq!(
        acks,
        vec!["AA"; 4],
        "no patient refused for a poor NHS number"
    );
    let token = |who: &str| {
        fdp_ok!("token", "create", who, "--data-dir", data)
            .trim()
            .to_string()
    };
    let (bed, ana) = (token("bed"), token("ana"));

    // The clinician caring for them sees the flag, and the received value
    // on the admission page; the number is never shown as if valid.
    let as_doc = http_request_with(
        server.http,
        "GET",
        "/api/bed-board",
        Some(&server.token),
        &[("X-Purpose", "direct-care")],
        None,
    );
    assert_eq!(as_doc.status, 200, "{}", as_doc.body);
    let board: Value = serde_json::from_str(&as_doc.body).unwrap();
    let by_name = |name: &str| {
        occupants(&board)
            .into_iter()
            .find(|o| o["name"].as_str().unwrap_or("").contains(name))
            .unwrap_or_else(|| panic!("{name} on the board: {}", as_doc.body))
    };
    let mistyped = by_name(SURNAME_MISTYPED);
    assert_eq!(mistyped["nhs_number_status"], "invalid");
    assert_eq!(mistyped["nhs_number_flag"], true);
    assert!(mistyped["nhs_number"].is_null(), "{mistyped}");
    assert_eq!(by_name(SURNAME_PLACEHOLDER)["nhs_number_status"], "invalid");
    assert_eq!(by_name(SURNAME_UNPLACED)["nhs_number_status"], "missing");
    assert_eq!(by_name("TRACED")["nhs_number"], VALID);
    assert_eq!(by_name("TRACED")["nhs_number_flag"], false);
    let doc_cookie = purpose_cookie(server.http, &server.token, "direct-care");
    let page = http_request_with(
        server.http,
        "GET",
        "/bed-board/admission/V1",
        Some(&server.token),
        &[("Cookie", &doc_cookie)],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("(received: {MISTYPED})")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("check digit does not match"),
        "{}",
        page.body
    );

    // What must not reach a role that is not shown NHS numbers: the value
    // received, and (under planning) who the patients are.
    let secrets_for_ops = [MISTYPED, "9999999999", VALID];
    let mut secrets_for_planning = secrets_for_ops.to_vec();
    secrets_for_planning.extend([
        SURNAME_MISTYPED,
        SURNAME_PLACEHOLDER,
        SURNAME_UNPLACED,
        MRN_MISTYPED,
    ]);
    for (who, tok, purpose, secrets) in [
        ("bed manager", &bed, "operations", &secrets_for_ops[..]),
        ("analyst", &ana, "planning", &secrets_for_planning[..]),
    ] {
        let headers = [("X-Purpose", purpose)];
        let json = http_request_with(
            server.http,
            "GET",
            "/api/bed-board",
            Some(tok),
            &headers,
            None,
        );
        // Under planning the API gives no board of patients one by one:
        // only aggregates leave the instance.
        let expected = if purpose == "planning" { 403 } else { 200 };
        assert_eq!(json.status, expected, "{who}: {}", json.body);
        let events = first_event(server.http, tok, &headers);
        assert!(events.contains("\ndata: "), "{who}: no event: {events}");
        let cookie = purpose_cookie(server.http, tok, purpose);
        let page_headers = [("Cookie", cookie.as_str())];
        let board_page = http_request_with(
            server.http,
            "GET",
            "/bed-board",
            Some(tok),
            &page_headers,
            None,
        );
        assert_eq!(board_page.status, 200, "{who}: {}", board_page.body);
        let mut answers = vec![
            ("bed board JSON", json.body.clone()),
            ("live events", events),
            ("bed board page", board_page.body),
        ];
        for visit in ["V1", "V2", "V3"] {
            let page = http_request_with(
                server.http,
                "GET",
                &format!("/bed-board/admission/{visit}"),
                Some(tok),
                &page_headers,
                None,
            );
            answers.push(("admission page", format!("{} {}", page.status, page.body)));
        }
        let sql = http_request_with(
            server.http,
            "POST",
            "/sql",
            Some(tok),
            &[],
            Some(&format!(
                r#"{{"sql": "SELECT * FROM patient", "purpose": "{purpose}"}}"#
            )),
        );
        answers.push(("SQL", format!("{} {}", sql.status, sql.body)));
        for (path, body) in &answers {
            for secret in secrets {
                assert!(
                    !body.contains(secret),
                    "{who} under {purpose} got {secret} from the {path}: {body}"
                );
            }
        }
        // The flag itself is operational: those running the beds see that
        // identity needs checking.
        if json.status != 200 {
            continue;
        }
        let board: Value = serde_json::from_str(&json.body).unwrap();
        assert!(
            occupants(&board)
                .iter()
                .any(|o| o["nhs_number_status"] == "invalid" && o["nhs_number_flag"] == true),
            "{who}: the flag is shown: {}",
            json.body
        );
    }

    // A stolen token without a declared purpose gets nothing.
    for path in ["/api/bed-board", "/bed-board/events"] {
        let r = http_request_with(server.http, "GET", path, Some(&ana), &[], None);
        assert!(
            r.status >= 400 && !r.body.contains(MISTYPED) && !r.body.contains(SURNAME_MISTYPED),
            "{path} without a purpose: {} {}",
            r.status,
            r.body
        );
    }
    // Nor without a token.
    let r = http_request_with(
        server.http,
        "GET",
        "/api/bed-board",
        None,
        &[("X-Purpose", "direct-care")],
        None,
    );
    assert_eq!(r.status, 401, "{}", r.body);
    server.stop();
}
