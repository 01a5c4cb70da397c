//! `fdp bench flood`: a sender that floods and never reads its ACKs, beside
//! one sending normal traffic.
//!
//! The instance runs as its own process (`fdp serve`) with stated
//! `[limits]`. Several connections send ADT as fast as the instance lets
//! them and never read a reply; one more sends a message every 5 ms and
//! times each ACK. Printed: what the flood offered, the normal sender's ACK
//! latency (p50, p99, max) and the instance's peak resident memory against
//! the bound in its configuration. `crates/fdp/tests/flood.rs` runs the same
//! scenario with a SIGKILL after it, and checks nothing acknowledged is lost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::bench::percentile;
use crate::bench_year::Instance;

#[derive(Args, Clone)]
pub struct FloodArgs {
    /// Connections that flood and never read
    #[arg(long, default_value_t = 8)]
    pub flooders: usize,
    /// Seconds of normal traffic measured under the flood
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The instance's memory bound ([limits] memory_mib)
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u64,
    /// A second or so on two flooders: the same code path
    #[arg(long)]
    pub quick: bool,
}

fn frame(control_id: &str, patient: usize) -> Vec<u8> {
    let msg = format!(
        "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20261120080000||ADT^A08^ADT_A01|{control_id}|P|2.4\r\
         EVN|A08|20261120080000\r\
         PID|1||M{patient}^^^RXX^MR||FLOOD^Test||19500101|F\r\
         PV1|1|I|W1^BAY1^B1^RXX01|21||||||300|||||||||V{patient}"
    );
    fdp_hl7::encode_frame(msg.as_bytes())
}

/// Read one MLLP frame's payload.
fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>> {
    let mut decoder = fdp_hl7::MllpDecoder::new();
    decoder.push(buf);
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame() {
            return match frame {
                Ok(f) => Ok(f.into_payload()),
                Err(e) => bail!("a bad frame from the instance: {e}"),
            };
        }
        let n = s.read(&mut chunk).context("reading an ACK")?;
        if n == 0 {
            bail!("the instance closed the connection");
        }
        decoder.push(&chunk[..n]);
    }
}

pub async fn run(args: FloodArgs) -> Result<()> {
    let (flooders, seconds) = if args.quick {
        (args.flooders.min(2), args.seconds.min(1))
    } else {
        (args.flooders, args.seconds)
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let config = dir.path().join("instance.toml");
    std::fs::write(
        &config,
        format!(
            "ods = \"RXX\"\ncanonical_interval_secs = 5.0\n\
             [limits]\nmemory_mib = {}\nmllp_in_flight_mib = 16\nunflushed_mib = 128\n\
             mllp_in_flight_per_connection = 16\n",
            args.memory_mib
        ),
    )?;
    let instance = Instance::start(&config, &data)?;
    let addr = instance.mllp;
    println!(
        "fdp bench flood — {flooders} connections send as fast as they can and never read an ACK; one more sends a message every 5 ms; [limits] memory_mib = {}",
        args.memory_mib
    );

    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for c in 0..flooders {
        let (stop, offered) = (stop.clone(), offered.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut s = TcpStream::connect(addr)?;
            s.set_write_timeout(Some(Duration::from_millis(200)))?;
            let (mut n, mut batch) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                batch.clear();
                for _ in 0..64 {
                    batch.extend_from_slice(&frame(&format!("F{c}-{n}"), 100_000 + n % 5000));
                    n += 1;
                }
                match s.write_all(&batch) {
                    Ok(()) => {
                        offered.fetch_add(64, Ordering::Relaxed);
                    }
                    // Backpressure: the instance has stopped reading us.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            Ok(())
        }));
    }
    std::thread::sleep(Duration::from_secs(1));

    let normal = std::thread::spawn(move || -> Result<Vec<f64>> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut buf = Vec::new();
        let mut latencies = Vec::new();
        let started = Instant::now();
        let mut i = 0;
        while started.elapsed() < Duration::from_secs(seconds) {
            let t0 = Instant::now();
            s.write_all(&frame(&format!("N{i}"), i))?;
            let ack = read_frame(&mut s, &mut buf)?;
            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
            let code = crate::mllp_client::ack_code(&ack);
            if code != "AA" {
                bail!("the normal sender's message {i} was answered {code}");
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(latencies)
    });
    let mut latencies = normal
        .join()
        .map_err(|_| anyhow::anyhow!("the normal sender panicked"))??;
    let peak = instance.peak_rss_mib()?;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a flooder panicked"))??;
    }
    instance.stop()?;

    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  flood offered: {} messages in {:.0} s on {flooders} connections",
        offered.load(Ordering::Relaxed),
        seconds as f64 + 1.0
    );
    println!(
        "  normal sender: {} messages, ACK p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  peak resident memory: {peak:.0} MiB (bound {} MiB)",
        args.memory_mib
    );
    if peak > args.memory_mib as f64 {
        bail!(
            "peak resident memory {peak:.0} MiB over the configured {} MiB",
            args.memory_mib
        );
    }
    Ok(())
}
