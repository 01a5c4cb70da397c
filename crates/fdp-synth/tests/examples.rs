//! Prints one message of each kind, segments on separate lines. Run with
//! `cargo test -p fdp-synth --test examples -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;

use common::{clock, start};
use fdp_synth::{MessageKind, PasConfig, PasSimulator, Trust, TrustSpec};

#[test]
#[ignore = "prints sample messages"]
fn print_one_of_each() {
    let trust = Trust::generate(42, TrustSpec::default()).unwrap();
    let config = PasConfig {
        malformed_share: 0.02,
        ..PasConfig::default()
    };
    let mut sim = PasSimulator::new(&trust, 42, config).unwrap();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for m in sim.census(start()).into_iter().take(1) {
        seen.insert("census A01".into(), m.text().replace('\r', "\n"));
    }
    for i in 0..20_000 {
        let m = sim.next(clock(i));
        let key = match m.kind {
            MessageKind::Valid => m.event.clone(),
            MessageKind::Unprocessed => "unprocessed ORU".into(),
            MessageKind::Malformed(r) => format!("malformed {r:?}"),
        };
        seen.entry(key).or_insert_with(|| {
            let text = m.text().replace('\r', "\n");
            if text.len() > 3000 {
                format!("{}...[{} bytes]", &text[..600], text.len())
            } else {
                text
            }
        });
    }
    for (k, v) in seen {
        println!("=== {k}\n{v}");
    }
}
