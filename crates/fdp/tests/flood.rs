//! A misbehaving sender cannot push the instance out of memory, starve the
//! other feeds, or cost an acknowledged message.
//!
//! Eight connections send as fast as they can and never read an ACK; a
//! ninth sends a PAS's normal traffic and times each ACK. The instance's
//! `[limits]` state the memory it must stay within; its peak resident set
//! (VmHWM) is read from /proc. Then it is killed with SIGKILL, started
//! again, and every message the normal connection had acknowledged must be
//! in the raw table.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{msa1, read_frame, sql_count, Server};

const MEMORY_MIB: u64 = 1024;

fn frame(control_id: &str, patient: usize) -> Vec<u8> {
    let msg = format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A08^ADT_A01|{control_id}|P|2.4\r\
         EVN|A08|20261120080000\r\
         PID|1||M{patient}^^^RXX^MR||FLOOD^Test||19500101|F\r\
         PV1|1|I|W1^BAY1^B1^RXX01|21||||||300|||||||||V{patient}"
    );
    let mut f = vec![0x0b];
    f.extend_from_slice(msg.as_bytes());
    f.extend_from_slice(&[0x1c, 0x0d]);
    f
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

#[test]
fn a_flood_that_never_reads_acks_stays_within_memory_and_starves_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let limits = format!(
        "[principal.tester]\nroles = [\"clinician\"]\n\
         [limits]\nmemory_mib = {MEMORY_MIB}\nmllp_in_flight_mib = 16\nunflushed_mib = 128\n\
         mllp_in_flight_per_connection = 16\n"
    );
    let server = Server::start_configured(&data, 5.0, "127.0.0.1:0", "127.0.0.1:0", &limits);
    let addr = server.mllp;

    // The flood: bounded in time, and in count by what the instance lets in.
    let stop = Arc::new(AtomicBool::new(false));
    let flood_sent = Arc::new(AtomicU64::new(0));
    let mut flooders = Vec::new();
    for c in 0..8 {
        let (stop, sent) = (stop.clone(), flood_sent.clone());
        flooders.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            // Never read: the instance's ACKs pile up in our receive buffer.
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut n = 0usize;
            let mut batch = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                batch.clear();
                for _ in 0..64 {
                    batch.extend_from_slice(&frame(&format!("F{c}-{n}"), 100_000 + n % 5000));
                    n += 1;
                }
                match s.write_all(&batch) {
                    Ok(()) => {
                        sent.fetch_add(64, Ordering::Relaxed);
                    }
                    // Backpressure: the instance stopped reading us.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            s
        }));
    }
    std::thread::sleep(Duration::from_secs(1));

    // The normal feed: one message every 5 ms for 6 s, each ACK timed.
    let mut normal = TcpStream::connect(addr).unwrap();
    normal
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut latencies = Vec::new();
    let mut acked = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let ctl = format!("N{i}");
        let t0 = Instant::now();
        normal.write_all(&frame(&ctl, i)).unwrap();
        let ack = read_frame(&mut normal);
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(msa1(&ack), "AA", "{}", String::from_utf8_lossy(&ack));
        acked.push(ctl);
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let peak = peak_rss_mib(server.child.id());
    stop.store(true, Ordering::Relaxed);
    let flood_sockets: Vec<TcpStream> = flooders.into_iter().map(|h| h.join().unwrap()).collect();

    latencies.sort_by(|a, b| a.total_cmp(b));
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    let flood = flood_sent.load(Ordering::Relaxed);
    eprintln!(
        "flood: {flood} messages offered on 8 connections; normal feed: {} messages, ACK p50 {:.1} ms, p99 {p99:.1} ms; peak RSS {peak} MiB (limit {MEMORY_MIB} MiB)",
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(flood > 1_000, "the flood did send ({flood})");
    assert!(
        peak < MEMORY_MIB,
        "peak resident memory {peak} MiB over the configured {MEMORY_MIB} MiB"
    );
    // Not starved: a debug build on two cores shared with the flooding
    // client is far slower than a release instance, so the bound here only
    // catches starvation (a normal sender waiting behind the flood's whole
    // backlog); the figure itself is printed above.
    let bound = if cfg!(debug_assertions) {
        1_000.0
    } else {
        100.0
    };
    assert!(
        p99 < bound,
        "the normal connection's ACK p99 {p99:.1} ms under the flood (bound {bound} ms)"
    );
    assert!(
        latencies.len() >= 20,
        "the normal connection was served throughout"
    );

    // Read what the flood was answered, so its acknowledged messages can be
    // checked too.
    let mut flood_acked = 0u64;
    for mut s in flood_sockets {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            flood_acked += buf[..n].iter().filter(|b| **b == 0x1c).count() as u64;
        }
    }

    // A crash, and everything acknowledged is still there.
    server.crash();
    let server = Server::start_configured(&data, 5.0, "127.0.0.1:0", "127.0.0.1:0", &limits);
    server.stop();
    let normal_stored = sql_count(
        &data,
        "SELECT count(DISTINCT control_id) AS n FROM raw.hl7v2_message WHERE control_id LIKE 'N%'",
    );
    assert_eq!(
        normal_stored,
        acked.len() as i64,
        "every acknowledged message of the normal feed survives SIGKILL"
    );
    let flood_stored = sql_count(
        &data,
        "SELECT count(*) AS n FROM raw.hl7v2_message WHERE control_id LIKE 'F%'",
    );
    assert!(
        flood_stored as u64 >= flood_acked,
        "{flood_acked} flood messages were acknowledged, {flood_stored} are stored"
    );
}
