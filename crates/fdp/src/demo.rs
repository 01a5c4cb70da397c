//! `fdp demo`: synthetic acute trusts whose PASes feed live instances, in a
//! federation (see [`crate::demo_federation`]).
//!
//! Each trust's PAS simulator is deterministic for a seed and a sequence of clock
//! readings, so the demo keeps its own simulated clock (`started_at` plus
//! one tick per message) and a count of messages acknowledged. A second
//! `fdp demo` on the same data directory regenerates the same stream, skips
//! what was acknowledged, and carries on: the instance's state and the
//! simulator's agree again. Messages in flight when the demo stopped are
//! re-sent and recognised as duplicates by the instance.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use fdp_synth::{PasConfig, PasSimulator, Trust, TrustSpec};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::instance;
use crate::mllp_client;

#[derive(Args)]
pub struct DemoArgs {
    /// Where the demo keeps its instances' data directories, keys and
    /// configuration (kept between runs)
    #[arg(long, default_value = "fdp-demo")]
    pub data_dir: PathBuf,
    /// HTTP address of the first instance's web UI and API; the others
    /// take the ports after it (port 0: any free port for each)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// MLLP address the first trust's simulated PAS sends to; the other
    /// trusts take the ports after it (port 0: any free port for each)
    #[arg(long, default_value = "127.0.0.1:2575")]
    pub mllp: SocketAddr,
    /// ADT messages per second from each trust's simulated PAS
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Seed of the first synthetic trust, the others following (used on
    /// the first run; later runs keep theirs)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Minutes between the national instance's census instants for the
    /// daily operational return (a real return is daily, at 08:00)
    #[arg(long, default_value_t = 2)]
    pub return_every_minutes: u32,
    /// The UK reference folder: on the first run each trust gets a
    /// synthetic registered population on its areas, and the ICB can ask
    /// the trusts for flu uptake by group (skipped where it is missing)
    #[arg(long, default_value = "../shared/data/uk_reference")]
    pub reference: PathBuf,
}

/// Where the simulated PAS has got to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    seed: u64,
    started_at: DateTime<Utc>,
    /// Simulated seconds between messages.
    tick_secs: f64,
    /// Messages acknowledged by the instance (the census counts as its length).
    acked: u64,
}

fn progress_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo-pas.json")
}

fn load_progress(data_dir: &Path) -> Result<Option<Progress>> {
    match std::fs::read(progress_path(data_dir)) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).context("reading demo-pas.json")?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn save_progress(data_dir: &Path, p: &Progress) -> Result<()> {
    let tmp = data_dir.join("demo-pas.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(p)?)?;
    std::fs::rename(&tmp, progress_path(data_dir))?;
    Ok(())
}

/// The synthetic trust and its PAS as a message source.
pub struct Workload {
    trust: Trust,
    sim: PasSimulator,
    clock: DateTime<Utc>,
    tick: chrono::Duration,
    census: Option<Vec<Vec<u8>>>,
}

impl Workload {
    /// A workload whose clock starts 30 days ago and ticks 15 s a message.
    pub fn new(seed: u64) -> Result<Self> {
        Self::with_clock(seed, Utc::now() - chrono::Duration::days(30), 15.0)
    }

    fn with_clock(seed: u64, start: DateTime<Utc>, tick_secs: f64) -> Result<Self> {
        let trust = Trust::generate(seed, TrustSpec::default())?;
        let mut sim = PasSimulator::new(&trust, seed, PasConfig::for_trust(&trust))?;
        let census = sim.census(start).into_iter().map(|m| m.bytes).collect();
        Ok(Workload {
            trust,
            sim,
            clock: start,
            tick: chrono::Duration::microseconds((tick_secs * 1e6) as i64),
            census: Some(census),
        })
    }

    pub fn bed_register(&self) -> String {
        self.trust.bed_register_csv()
    }

    /// The next message and the simulated time it is sent at.
    pub fn next_message(&mut self) -> (Vec<u8>, DateTime<Utc>) {
        if let Some(c) = &mut self.census {
            if !c.is_empty() {
                return (c.remove(0), self.clock);
            }
            self.census = None;
        }
        self.clock += self.tick;
        (self.sim.next(self.clock).bytes, self.clock)
    }

    /// The next `n` messages.
    pub fn take(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.next_message().0).collect()
    }
}

/// An emergency admission of a new patient to `bed`, for measuring how fast
/// the bed board shows it.
pub fn admission_to(bed: &fdp_ingest::adt::census::Bed, i: usize) -> Vec<u8> {
    sample_message("A01", bed, i)
}

/// The discharge that frees `bed` again after [`admission_to`] with the same `i`.
pub fn discharge_from(bed: &fdp_ingest::adt::census::Bed, i: usize) -> Vec<u8> {
    sample_message("A03", bed, i)
}

fn sample_message(event: &str, bed: &fdp_ingest::adt::census::Bed, i: usize) -> Vec<u8> {
    // NHS numbers in the 999 range are set aside for testing.
    let mut n = i as u64;
    let nhs = loop {
        let first9 = format!("999{:06}", n % 1_000_000);
        match fdp_model::identifiers::nhs_number_check_digit(&first9) {
            Ok(d) => break format!("{first9}{d}"),
            Err(_) => n += 1,
        }
    };
    let now = Utc::now().format("%Y%m%d%H%M%S+0000");
    format!(
        "MSH|^~\\&|BENCH|RXX|OPENFDP|RXX|{now}||ADT^{event}^ADT_A01|FRESH{event}{i:08}|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r\
         EVN|{event}|{now}\r\
         PID|1||{nhs}^^^NHS^NH~F{i:07}^^^RXX^MR||FRESH^Patient{i}||19600101|F\r\
         PV1|1|I|{ward}^{bay}^{label}^{site}^^BED|21{to19}FV{i:08}^^^RXX^VN{pad}{now}\r",
        ward = bed.ward,
        bay = bed.room,
        label = bed.label,
        site = bed.site,
        to19 = "|".repeat(15),
        pad = "|".repeat(25),
    )
    .into_bytes()
}

pub async fn run(args: DemoArgs) -> Result<()> {
    crate::demo_federation::run(args).await
}

/// One trust of the demo: its simulated PAS feeding the running instance,
/// from where an earlier run stopped.
pub(crate) async fn start_pas(
    running: &instance::Running,
    data_dir: &Path,
    seed: u64,
    rate: f64,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let progress = match load_progress(data_dir)? {
        Some(p) => p,
        None => Progress {
            seed,
            started_at: Utc::now(),
            tick_secs: 1.0 / rate.max(0.01),
            acked: 0,
        },
    };
    let mut workload =
        Workload::with_clock(progress.seed, progress.started_at, progress.tick_secs)?;
    if running.live.read().await.beds.is_empty() {
        crate::ingest::load_bed_register(
            &running.store.committer(),
            workload.bed_register().as_bytes(),
            "fdp-synth bed register",
        )
        .await?;
    }
    let mllp = running.mllp_addr.context("MLLP listener")?;
    for _ in 0..progress.acked {
        workload.next_message();
    }
    Ok(tokio::spawn(run_pas(
        mllp,
        workload,
        progress,
        data_dir.to_path_buf(),
        stop,
    )))
}

/// Send the stream: the census at once, then each event when the wall
/// clock reaches its simulated time (one tick per message), so events are
/// never sent before they happen nor fall behind because acknowledgements
/// take time. After a pause the backlog is sent as fast as it is taken.
async fn run_pas(
    mllp: SocketAddr,
    mut workload: Workload,
    mut progress: Progress,
    data_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let (mut tx, mut acks) = mllp_client::connect(mllp).await?;
    let mut last_saved = progress.acked;
    loop {
        if *stop.borrow() {
            break;
        }
        let in_census = workload.census.as_ref().is_some_and(|c| !c.is_empty());
        let (msg, at) = workload.next_message();
        if !in_census {
            if let Ok(wait) = (at - Utc::now()).to_std() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {},
                    _ = stop.changed() => break,
                }
            }
        }
        tx.send(&msg).await?;
        acks.next().await?;
        progress.acked += 1;
        if progress.acked - last_saved >= 50 || !in_census {
            save_progress(&data_dir, &progress)?;
            last_saved = progress.acked;
        }
    }
    save_progress(&data_dir, &progress)?;
    Ok(())
}
