//! `fdp demo` fills a bed board from its simulated PAS, stops cleanly on
//! Ctrl-C, and a second `fdp demo` on the same data carries on where the
//! first stopped, with the instance and the simulator still agreeing.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Demo {
    child: Child,
    http: SocketAddr,
    token: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(data: &std::path::Path) -> Demo {
    let child = fdp()
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--mllp",
            "127.0.0.1:0",
            "--rate",
            "40",
            "--data-dir",
        ])
        .arg(data)
        .env("FDP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Owned by the guard from here on, so that a failed start is cleaned up.
    let mut demo = Demo {
        child,
        http: "0.0.0.0:0".parse().unwrap(),
        token: String::new(),
    };
    let stdout = demo.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "fdp demo printed no address");
        let line = lines.next().expect("demo output").unwrap();
        if let Some(url) = line.trim().strip_prefix("bed board:") {
            let url = url.trim().trim_start_matches("http://");
            let (addr, rest) = url.split_once('/').unwrap();
            let query = rest.split_once('?').unwrap().1;
            let token = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .unwrap()
                .to_string();
            assert!(query.contains("next=/bed-board"), "{line}");
            std::thread::spawn(move || for _ in lines.by_ref() {});
            demo.http = addr.parse().unwrap();
            demo.token = token;
            return demo;
        }
    }
}

fn sources(d: &Demo) -> serde_json::Value {
    let (status, body) = http_get(d.http, "/api/sources", Some(&d.token));
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
fn demo_fills_the_board_stops_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = start_demo(&data);
    // The census fills the board, then the stream goes on.
    wait_until(60, "the board to fill", || {
        // The demo's principal holds two roles granted direct care.
        let r = http_request_with(
            d.http,
            "GET",
            "/api/bed-board",
            Some(&d.token),
            &[("X-Role", "bed-manager")],
            None,
        );
        let b: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        b["counts"]["occupied"].as_i64().unwrap_or(0) > 400
    });
    std::thread::sleep(Duration::from_secs(3));
    let first = sources(&d);
    assert_eq!(
        first["census"]["warnings"], 0,
        "{}",
        first["census"]["recent_warnings"]
    );
    stop(d);
    let sent_first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("demo-pas.json")).unwrap()).unwrap();
    let sent_first = sent_first["acked"].as_u64().unwrap();

    let d = start_demo(&data);
    std::thread::sleep(Duration::from_secs(4));
    let second = sources(&d);
    // The second run re-sent nothing already stored and diverged nowhere.
    assert_eq!(second["mllp"]["duplicates"], 0, "{second}");
    assert_eq!(
        second["census"]["warnings"], 0,
        "{}",
        second["census"]["recent_warnings"]
    );
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
        serde_json::from_slice(&std::fs::read(data.join("demo-pas.json")).unwrap()).unwrap();
    assert!(sent_second["acked"].as_u64().unwrap() > sent_first);
}
