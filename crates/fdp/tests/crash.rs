//! `kill -9` in the middle of a 5,000 messages/s stream, then a restart:
//! every message that was acknowledged is there exactly once, and the
//! messages the sender re-sends because it saw no ACK are not applied twice.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::*;
use fdp_synth::{PasConfig, PasSimulator, Trust, TrustSpec};

/// (control id, message) for a stream of valid ADT messages.
fn stream(n: usize) -> Vec<(String, Vec<u8>)> {
    let trust = Trust::generate(5, TrustSpec::default()).unwrap();
    let mut cfg = PasConfig::for_trust(&trust);
    cfg.malformed_share = 0.0;
    let mut sim = PasSimulator::new(&trust, 5, cfg).unwrap();
    let mut now = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = sim
        .census(now)
        .into_iter()
        .map(|m| (m.control_id, m.bytes))
        .collect();
    while out.len() < n {
        now += chrono::Duration::seconds(20);
        let m = sim.next(now);
        out.push((m.control_id, m.bytes));
    }
    out.truncate(n);
    out
}

/// MSA-2 (the control id acknowledged) and MSA-1 of an ACK.
fn msa(ack: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(ack);
    let msa = text.split(['\r', '\n']).find(|l| l.starts_with("MSA|"))?;
    let mut f = msa.split('|').skip(1);
    let code = f.next()?.to_string();
    let id = f.next()?.to_string();
    Some((id, code))
}

/// Send at `rate` per second until told to stop or the connection dies;
/// returns the ids sent and the ids acknowledged AA.
fn send_at_rate(
    addr: std::net::SocketAddr,
    messages: &[(String, Vec<u8>)],
    rate: usize,
    stop_after: Option<Duration>,
) -> (Vec<String>, HashSet<String>) {
    let mut w = TcpStream::connect(addr).unwrap();
    w.set_nodelay(true).unwrap();
    let mut r = w.try_clone().unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let acked_r = acked.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut pending = Vec::new();
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|b| *b == 0x1c) {
                let frame: Vec<u8> = pending.drain(..=end).collect();
                if let Some((id, code)) = msa(&frame) {
                    if code == "AA" {
                        acked_r.lock().unwrap().insert(id);
                    }
                }
                if pending.first() == Some(&0x0d) {
                    pending.remove(0);
                }
            }
        }
    });
    let started = Instant::now();
    let mut sent = Vec::new();
    let per_ms = (rate / 1000).max(1);
    'outer: for chunk in messages.chunks(per_ms) {
        if let Some(limit) = stop_after {
            if started.elapsed() >= limit {
                break;
            }
        }
        let due = started + Duration::from_micros((sent.len() as u64 * 1_000_000) / rate as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut out = Vec::new();
        for (id, m) in chunk {
            out.push(0x0b);
            out.extend_from_slice(m);
            out.extend_from_slice(&[0x1c, 0x0d]);
            sent.push(id.clone());
        }
        if w.write_all(&out).is_err() {
            break 'outer;
        }
    }
    if stop_after.is_none() {
        // Wait for the last ACKs.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < sent.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = w.shutdown(std::net::Shutdown::Both);
    }
    let _ = reader.join().ok();
    let acked = acked.lock().unwrap().clone();
    (sent, acked)
}

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged_and_applies_nothing_twice() {
    let messages = stream(30_000);
    let by_id: HashMap<&str, &Vec<u8>> = messages.iter().map(|(i, m)| (i.as_str(), m)).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");

    let server = Server::start(&data, 1.0);
    let addr = server.mllp;
    // Kill the instance while the stream runs at 5,000 messages/s.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        server.crash();
    });
    let (sent, acked_before) = send_at_rate(addr, &messages, 5_000, Some(Duration::from_secs(6)));
    killer.join().unwrap();
    assert!(
        acked_before.len() > 2_000,
        "only {} ACKs before the crash",
        acked_before.len()
    );
    assert!(
        sent.len() > acked_before.len(),
        "the crash left nothing unacknowledged"
    );

    // Restart; the sender re-sends everything it saw no ACK for, and, as
    // real senders do after reconnecting, a few it had seen ACKed.
    let server = Server::start(&data, 0.5);
    let mut resend: Vec<(String, Vec<u8>)> = sent
        .iter()
        .filter(|id| !acked_before.contains(*id))
        .map(|id| (id.clone(), by_id[id.as_str()].clone()))
        .collect();
    let unacked = resend.len();
    resend.extend(
        sent.iter()
            .filter(|id| acked_before.contains(*id))
            .rev()
            .take(200)
            .map(|id| (id.clone(), by_id[id.as_str()].clone())),
    );
    let (_, acked_after) = send_at_rate(server.mllp, &resend, 5_000, None);
    assert_eq!(
        acked_after.len(),
        resend.len(),
        "every re-sent message is acknowledged"
    );

    // Every message sent is in raw exactly once.
    let sent_count = sent.len() as i64;
    wait_until(60, "every sent message in raw", || {
        try_sql_count(
            &data,
            "SELECT count(DISTINCT control_id) AS n FROM raw.hl7v2_message",
        ) == Some(sent_count)
    });
    let rows = sql_count(&data, "SELECT count(*) AS n FROM raw.hl7v2_message");
    assert_eq!(rows, sent_count, "no message stored twice");
    let ids = sql(&data, "SELECT control_id FROM raw.hl7v2_message");
    let stored: HashSet<String> = ids
        .iter()
        .map(|r| r["control_id"].as_str().unwrap().to_string())
        .collect();
    for id in &acked_before {
        assert!(stored.contains(id), "ACKed message {id} lost");
    }

    // Each accepted message was applied to the census once.
    let (status, body) = http_get(server.http, "/api/sources", Some(&server.token));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let applied: i64 = v["census"]["events"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_i64().unwrap())
        .sum();
    let accepted = sql_count(
        &data,
        "SELECT count(*) AS n FROM raw.hl7v2_message WHERE status = 'accepted'",
    );
    assert_eq!(applied, accepted);
    eprintln!(
        "sent {}, ACKed before the crash {}, re-sent without ACK {unacked}, stored {rows}",
        sent.len(),
        acked_before.len()
    );
    server.stop();
}
