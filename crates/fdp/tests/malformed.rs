//! Bad input over MLLP gets a clear answer, is quarantined where there is a
//! message to keep, and never crashes or stalls the listener.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const GOOD_PID: &str = "PID|1||9434765919^^^NHS^NH~M1^^^RXX^MR||ALPHA^Test||19500101|F";

fn adt(control: &str, pid: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01^ADT_A01|{control}|P|2.4\rEVN|A01|20261120080000\r{pid}\rPV1|1|I|W1^B1^1^RXX01^^BED|21|||||||||||||||V-{control}\r"
    )
    .into_bytes()
}

fn ack_of(s: &mut TcpStream, payload: &[u8]) -> String {
    let mut frame = vec![0x0b];
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&[0x1c, 0x0d]);
    s.write_all(&frame).unwrap();
    String::from_utf8_lossy(&read_frame(s)).into_owned()
}

#[test]
fn malformed_input_is_answered_quarantined_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    // Quarantine holds records as received: the integration engineer's.
    let server = Server::start_configured(
        &data,
        0.5,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.tester]\nroles = [\"integration-engineer\"]\n",
    );
    let mut s = TcpStream::connect(server.mllp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();

    // A connection that starts a frame and never finishes it must not hold
    // up anyone else.
    let mut stalled = TcpStream::connect(server.mllp).unwrap();
    stalled.write_all(b"\x0bMSH|^~\\&|PAS|RXX|OPENFDP").unwrap();

    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "truncated MSH",
            b"MSH|^~\\&|PAS|RXX\rPID|1".to_vec(),
            "AR",
            "MSH-",
        ),
        (
            "an unknown segment where PID should be",
            b"MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01|BADSEG|P|2.4\rP1D|1||x\r"
                .to_vec(),
            "AE",
            "no PID segment",
        ),
        (
            "a malformed segment id",
            b"MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A01|BADID|P|2.4\rpi d|1||x\r"
                .to_vec(),
            "AR",
            "segment",
        ),
        (
            // With a hospital number it would be admitted and flagged; with
            // nothing else the patient cannot be identified at all.
            "bad NHS number and no hospital number",
            adt(
                "BADNHS",
                "PID|1||9434765918^^^NHS^NH||BETA^Test||19500101|F",
            ),
            "AE",
            "NHS number",
        ),
        (
            "wrong encoding",
            {
                let mut m = adt("BADENC", GOOD_PID);
                let at = m.windows(5).position(|w| w == b"ALPHA").unwrap();
                m[at] = 0xC3;
                m[at + 1] = 0x28;
                m
            },
            "AR",
            "byte",
        ),
        (
            "oversized field",
            adt(
                "BIG",
                &format!("PID|1||9434765919^^^NHS^NH||{}^Test", "X".repeat(70_000)),
            ),
            "AR",
            "limit",
        ),
    ];
    for (what, msg, code, reason) in &cases {
        let ack = ack_of(&mut s, msg);
        assert_eq!(msa1(ack.as_bytes()), *code, "{what}: {ack}");
        assert!(
            ack.contains("ERR|"),
            "{what}: the NACK names the error: {ack}"
        );
        assert!(
            ack.to_lowercase().contains(&reason.to_lowercase()),
            "{what}: reason {reason:?} not in {ack}"
        );
    }

    // Garbage bytes outside any frame are skipped; the next message is fine.
    s.write_all(b"\x00\xff garbage \x01\x02\r\n").unwrap();
    assert_eq!(msa1(ack_of(&mut s, &adt("OK1", GOOD_PID)).as_bytes()), "AA");

    // A frame over the 1 MiB limit is refused, and the connection carries on.
    let mut huge = vec![0x0b];
    huge.extend(std::iter::repeat_n(b'A', 1_100_000));
    huge.extend_from_slice(&[0x1c, 0x0d]);
    s.write_all(&huge).unwrap();
    let nack = String::from_utf8_lossy(&read_frame(&mut s)).into_owned();
    assert_eq!(msa1(nack.as_bytes()), "AR", "{nack}");
    assert_eq!(msa1(ack_of(&mut s, &adt("OK2", GOOD_PID)).as_bytes()), "AA");

    // A new connection is served too: the listener is alive.
    assert_eq!(
        mllp_roundtrip(server.mllp, &[adt("OK3", GOOD_PID)]),
        vec!["AA"]
    );

    // Every bad message with content is in quarantine with its reason and
    // its raw bytes.
    wait_until(30, "quarantined records", || {
        try_sql_count(
            &data,
            "SELECT count(*) AS n FROM raw.hl7v2_message WHERE status = 'quarantined'",
        ) == Some(6)
    });
    let r = http_request_with(
        server.http,
        "GET",
        "/api/quarantine",
        Some(&server.token),
        &[("X-Purpose", "operations")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let q: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(q.len(), 6);
    let nhs = q
        .iter()
        .find(|r| r["what"].as_str().unwrap().contains("control id BADNHS"))
        .expect("BADNHS quarantined");
    assert_eq!(nhs["kind"], "hl7v2");
    assert!(nhs["reason"].as_str().unwrap().contains("NHS number"));
    assert!(nhs["position"].as_str().unwrap().contains("PID"));
    assert!(nhs["raw"].as_str().unwrap().contains("9434765918"));
    // The page, once the purpose is declared.
    let cookie = purpose_cookie(server.http, &server.token, "operations");
    let page = http_request_with(
        server.http,
        "GET",
        "/quarantine",
        Some(&server.token),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(page.status, 200);
    assert!(page.body.contains("BADNHS") || page.body.contains("9434765918"));

    // Without a token, nothing but the login page.
    let (status, _) = http_get(server.http, "/api/quarantine", None);
    assert_eq!(status, 401);
    drop(stalled);
    server.stop();
}
