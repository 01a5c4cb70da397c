//! Generation speed. Run with
//! `cargo test -p fdp-synth --release --test throughput -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::{clock, start};
use fdp_synth::{PasConfig, PasSimulator, Trust, TrustSpec};

#[test]
#[ignore = "timing; run in release"]
fn messages_per_second() {
    let trust = Trust::generate(1, TrustSpec::default()).unwrap();
    let mut sim = PasSimulator::new(&trust, 1, PasConfig::default()).unwrap();
    let census = sim.census(start());
    let n = 1_000_000;
    let t0 = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        bytes += sim.next(clock(i)).bytes.len();
    }
    let secs = t0.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    eprintln!(
        "{n} messages in {secs:.2}s: {rate:.0} messages/s, {:.0} MB/s, mean {} bytes (census {} messages)",
        bytes as f64 / secs / 1e6,
        bytes / n,
        census.len()
    );
    assert!(rate > 100_000.0, "{rate:.0} messages/s");
}
