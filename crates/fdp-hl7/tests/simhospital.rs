//! Parses the Google Simulated Hospital sample stream: 1,013 UK-flavoured
//! messages, CR segment terminators, messages separated by a blank line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use fdp_hl7::{encode_frame, Ack, AckCode, Message, MllpDecoder};

fn sample() -> String {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../../shared/data/hl7v2_simhospital/messages.out");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read sample {}: {e}", path.display()))
}

fn split_messages(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|m| !m.trim().is_empty())
        .collect()
}

#[test]
fn parses_every_sample_message() {
    let text = sample();
    let messages = split_messages(&text);
    assert_eq!(messages.len(), 1013);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw) in messages.iter().enumerate() {
        let msg = Message::parse(raw).unwrap_or_else(|e| panic!("message {i}: {e}"));
        let ty = msg.message_type();
        *counts
            .entry(format!("{}^{}", ty.code, ty.trigger))
            .or_default() += 1;
        assert_eq!(msg.version(), "2.3");
        assert_eq!(msg.sending_application(), "SIMHOSP");
        assert!(msg.segment("PID").is_some(), "message {i} has no PID");
    }
    let expected: BTreeMap<String, usize> = [
        ("ADT^A01", 400),
        ("ORU^R01", 610),
        ("MDM^T02", 2),
        ("ADT^A34", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts, expected);
}

#[test]
fn first_message_fields() {
    let text = sample();
    let msg = Message::parse(split_messages(&text)[0]).unwrap();
    assert_eq!(msg.get("MSH-9"), Some("ORU^R01"));
    assert_eq!(msg.control_id(), "1");
    assert_eq!(msg.processing_id(), "T");
    assert_eq!(msg.timestamp(), "20200501140643");
    assert_eq!(msg.receiving_application(), "RAPP");
    assert_eq!(msg.receiving_facility(), "RFAC");
    assert_eq!(msg.sending_facility(), "SFAC");
    assert_eq!(msg.declared_charset(), "ASCII");
    assert_eq!(msg.get("PID-3[2].1"), Some("2478684691"));
    assert_eq!(msg.get("PID-3[2].4"), Some("NHSNBR"));
    assert_eq!(msg.get("PID-3[2].5"), Some("NHSNMBR"));
    assert_eq!(msg.get("PID-3.4"), Some("SIMULATOR MRN"));
    assert_eq!(msg.get("PID-5.1"), Some("Esterkin"));
    let pid = msg.segment("PID").unwrap();
    let ids: Vec<&str> = pid
        .field(3)
        .unwrap()
        .repetitions()
        .map(|r| r.component(1).unwrap().as_str())
        .collect();
    assert_eq!(ids, ["2590157853", "2478684691"]);
    assert_eq!(msg.segments_named("OBX").count(), 1);
    assert_eq!(msg.get("OBX-5"), Some("98.00"));
}

#[test]
fn admission_location() {
    let text = sample();
    let a01 = split_messages(&text)
        .into_iter()
        .map(|m| Message::parse(m).unwrap())
        .find(|m| m.message_type().trigger == "A01")
        .unwrap();
    assert_eq!(a01.control_id(), "5");
    assert_eq!(a01.get("EVN-1"), Some("A01"));
    let pv1_3 = a01.segment("PV1").unwrap().field(3).unwrap();
    let components: Vec<&str> = pv1_3
        .repetition(1)
        .unwrap()
        .components()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(
        components,
        [
            "RenalWard",
            "MainRoom",
            "Bed 1",
            "Simulated Hospital",
            "",
            "BED",
            "Main Building",
            "5"
        ]
    );
    assert_eq!(a01.get("PV1-2"), Some("I"));
    assert_eq!(a01.get("PV1-3.1"), Some("RenalWard"));
    assert_eq!(a01.get("PV1-3.3"), Some("Bed 1"));
    assert_eq!(a01.get("PV1-3.9"), None);
    assert_eq!(a01.get("PV1-19.1"), Some("6145914547062969032"));

    let ack = Ack::new(&a01, AckCode::ApplicationAccept, "20200508130644", "ACK5").build();
    assert_eq!(
        ack,
        "MSH|^~\\&|RAPP|RFAC|SIMHOSP|SFAC|20200508130644||ACK^A01^ACK|ACK5|T|2.3||||||ASCII\r\
         MSA|AA|5\r"
    );
}

#[test]
fn merge_message() {
    let text = sample();
    let a34 = split_messages(&text)
        .into_iter()
        .map(|m| Message::parse(m).unwrap())
        .find(|m| m.message_type().trigger == "A34")
        .unwrap();
    assert_eq!(a34.get("MRG-1.1"), Some("618454581"));
}

#[test]
fn sample_survives_mllp_round_trip() {
    let text = sample();
    let messages = split_messages(&text);
    let mut wire = Vec::new();
    for m in &messages {
        fdp_hl7::write_frame(&mut wire, m.as_bytes());
    }
    let mut dec = MllpDecoder::new();
    let mut parsed = 0;
    for chunk in wire.chunks(1460) {
        dec.push(chunk);
        while let Some(frame) = dec.next_frame() {
            let frame = frame.unwrap();
            assert_eq!(frame.payload(), messages[parsed].as_bytes());
            Message::parse_bytes(frame.payload()).unwrap();
            parsed += 1;
        }
    }
    assert_eq!(parsed, messages.len());
    assert_eq!(encode_frame(b"").len(), 3);
}

/// On-CPU time of this thread in seconds where Linux exposes it, so that
/// timings are not skewed by other processes on a shared machine; wall-clock
/// time otherwise.
fn cpu_seconds(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|&ns| ns > 0)
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns as f64 / 1e9)
}

fn timed(f: impl FnOnce()) -> f64 {
    let wall = Instant::now();
    let before = cpu_seconds(wall);
    f();
    cpu_seconds(wall) - before
}

/// Prints parse throughput. Run with
/// `cargo test --release -p fdp-hl7 --test simhospital -- --ignored --nocapture`.
#[test]
#[ignore = "timing only; run in release"]
fn throughput() {
    let text = sample();
    let messages = split_messages(&text);
    let bytes: usize = messages.iter().map(|m| m.len()).sum();
    let rounds = 300;
    let n = (rounds * messages.len()) as f64;
    let mut segments = 0usize;

    let secs = timed(|| {
        for _ in 0..rounds {
            for m in &messages {
                segments += Message::parse(m).unwrap().segment_count();
            }
        }
    });
    println!(
        "parse: {:.0} messages/s, {:.0} MB/s",
        n / secs,
        (rounds * bytes) as f64 / secs / 1e6
    );

    let secs = timed(|| {
        for _ in 0..rounds {
            for m in &messages {
                segments += Message::parse_bytes(m.as_bytes()).unwrap().segment_count();
            }
        }
    });
    println!("parse_bytes: {:.0} messages/s", n / secs);

    let parsed: Vec<Message<'_>> = messages
        .iter()
        .map(|m| Message::parse(m).unwrap())
        .collect();
    let paths = [
        "PID-3[1].1",
        "PID-3[2].1",
        "PID-3[2].4",
        "PID-5.1",
        "PID-5.2",
        "PID-7",
        "PID-8",
        "PID-11.5",
        "PV1-2",
        "PV1-3.1",
        "PV1-3.3",
        "PV1-19.1",
    ];
    let mut found = 0usize;
    let secs = timed(|| {
        for _ in 0..rounds {
            for msg in &parsed {
                let ty = msg.message_type();
                found += usize::from(!ty.code.is_empty());
                found += usize::from(!msg.control_id().is_empty());
                for path in paths {
                    found += usize::from(msg.get(path).is_some());
                }
            }
        }
    });
    println!(
        "header + 12 path reads: {:.0} messages/s, {:.0} ns per read",
        n / secs,
        secs * 1e9 / (n * 14.0)
    );
    assert!(segments > 0 && found > 0);
}
