//! `fdp bench adt --year`: a trust's year of ADT feed, then a restart.
//!
//! The instance runs as its own process (`fdp serve`), so that its memory is
//! its own. The synthetic PAS's year (see `fdp synth adt`) is made as it is
//! sent, in order over one MLLP connection with a window of messages in
//! flight, as an interface engine sends it. Then:
//! - the bed board is compared bed for bed with the simulator's own record
//!   of who is in which bed;
//! - the data directory's size and the instance's peak resident memory
//!   (VmHWM) are read;
//! - the instance is stopped and started again, and the time from starting
//!   the process to the bed board answering with the same census is the
//!   restart figure; then once more after SIGKILL (no snapshot on the way
//!   down: the last periodic one and the raw records after it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::TimeZone;
use fdp_synth::{pas::Feed, Trust, TrustSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::AdtArgs;
use crate::mllp_client;

/// A running `fdp serve`, killed when dropped.
pub(crate) struct Instance {
    child: Child,
    pub(crate) mllp: SocketAddr,
    pub(crate) http: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    pub(crate) fn start(config: &Path, data_dir: &Path) -> Result<Instance> {
        let exe = std::env::current_exe().context("finding the fdp binary")?;
        let mut child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0", "--mllp", "127.0.0.1:0"])
            .env(
                "FDP_LOG",
                std::env::var("FDP_LOG").unwrap_or("warn,fdp=info,fdp_ingest=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting fdp serve")?;
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let (mut mllp, mut http) = (None, None);
        let mut said = Vec::new();
        while mllp.is_none() || http.is_none() {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("MLLP (HL7 v2) listening on ") {
                        mllp = Some(a.trim().parse()?);
                    } else if let Some(a) = line.strip_prefix("HTTP listening on http://") {
                        let a = a.split('/').next().unwrap_or_default();
                        http = Some(a.parse()?);
                    } else {
                        said.push(line);
                    }
                }
                _ => bail!(
                    "the instance stopped before it listened: {}",
                    said.join("\n")
                ),
            }
        }
        // Keep reading so the instance never blocks on a full pipe, and keep
        // what it says beside its data directory.
        let log_path = data_dir.with_extension("log");
        std::thread::spawn(move || {
            use std::io::Write;
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .ok();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        Ok(Instance {
            child,
            mllp: mllp.expect("set"),
            http: http.expect("set"),
        })
    }

    pub(crate) fn peak_rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("reading the instance's memory from /proc")?;
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .context("no VmHWM in /proc/PID/status")?;
        Ok(kib / 1024.0)
    }

    /// Stop as an operator does (SIGTERM), waiting for the instance to
    /// write its snapshot and flush.
    pub(crate) fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!(
                        "the instance stopped with {status}; its log is beside the data directory"
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the instance did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// GET a JSON document over HTTP/1.1.
async fn get_json(addr: SocketAddr, path: &str, token: &str) -> Result<(u16, serde_json::Value)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nX-Purpose: direct-care\r\nX-Role: bed-manager\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("an HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP status")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("{path} answered in chunks; expected a whole JSON document");
    }
    Ok((status, serde_json::from_str(body).unwrap_or_default()))
}

/// Who the bed board shows in each bed: bed id → admission id.
fn board_occupants(board: &serde_json::Value) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for site in board["sites"].as_array().into_iter().flatten() {
        for ward in site["wards"].as_array().into_iter().flatten() {
            for bed in ward["beds"].as_array().into_iter().flatten() {
                let id = bed["bed_id"].as_str().unwrap_or_default().to_string();
                let adm = bed["occupant"]["admission_id"].as_str().map(str::to_string);
                out.insert(id, adm);
            }
        }
    }
    out
}

/// Poll the bed board from `since` until it shows `expected`; the time it
/// took, or an error after `limit`.
async fn time_to_board(
    instance: &Instance,
    token: &str,
    expected: &BTreeMap<String, Option<String>>,
    since: Instant,
    limit: Duration,
) -> Result<Duration> {
    loop {
        if let Ok((200, board)) = get_json(instance.http, "/api/bed-board", token).await {
            if &board_occupants(&board) == expected {
                return Ok(since.elapsed());
            }
        }
        if since.elapsed() > limit {
            bail!(
                "the bed board did not show the census of before the restart within {} s",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += dir_size(&entry.path()),
            Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => {}
        }
    }
    total
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub async fn run(args: AdtArgs) -> Result<()> {
    let (days, per_day) = if args.quick {
        (args.days.min(2), args.per_day.min(1_500))
    } else {
        (args.days, args.per_day)
    };
    let tmp;
    let data_dir: PathBuf = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("data")
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let config = data_dir.with_extension("toml");
    std::fs::write(
        &config,
        "ods = \"RXX\"\ncanonical_interval_secs = 5.0\n\
         [principal.bench]\nroles = [\"bed-manager\"]\n",
    )?;
    let tokens = fdp_govern::TokenStore::open(&fdp_govern::TokenStore::path_in(&data_dir))?;
    let token = tokens.create("bench")?;

    let trust = Trust::generate(args.seed, TrustSpec::default())?;
    crate::ingest::load_bed_register_into(&data_dir, trust.bed_register_csv().as_bytes(), "bench")
        .await?;
    let start = chrono::Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap();
    // A day more than the year, sent later to measure a restart after SIGKILL.
    let mut feed = Feed::new(&trust, args.seed, start, days + 1, per_day)?;
    let total = feed.census_len() as u64 + u64::from(days) * u64::from(per_day);

    let instance = Instance::start(&config, &data_dir)?;
    println!(
        "fdp bench adt --year — {days} days of a synthetic trust's ADT feed ({} beds), {total} messages, one MLLP connection in order, ACK after durable commit",
        trust.bed_count()
    );
    let progress = indicatif::ProgressBar::new(total);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {human_pos}/{human_len} ({per_sec}, {eta})",
        )
        .expect("a valid template"),
    );
    progress.set_message("sending the year");

    let started = Instant::now();
    let sent = send(&instance, &mut feed, total, args.window, Some(&progress)).await?;
    let load_secs = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    println!(
        "  load: {} messages in {load_secs:.1} s: {:.0} messages/s ({})",
        sent.messages,
        sent.messages as f64 / load_secs,
        sent.describe_refusals()
    );

    // The board after the year, against the simulator's own record.
    let expected = expected_board(&trust, &feed);
    let caught_up = match time_to_board(
        &instance,
        &token,
        &expected,
        Instant::now(),
        Duration::from_secs(600),
    )
    .await
    {
        Ok(t) => t,
        Err(_) => {
            let (_, board) = get_json(instance.http, "/api/bed-board", &token).await?;
            let ours = board_occupants(&board);
            let differ = expected
                .iter()
                .filter(|(bed, adm)| ours.get(*bed) != Some(adm))
                .count();
            bail!("after the year the bed board differs from the simulator in {differ} beds");
        }
    };
    let board = expected;
    let occupied = board.values().filter(|a| a.is_some()).count();
    println!(
        "  bed board after the year: matches the simulator bed for bed ({occupied} of {} beds occupied), {:.1} s after the last ACK",
        board.len(),
        caught_up.as_secs_f64()
    );

    // Let the canonical tables and the snapshot catch up, as a running
    // instance would within a minute, then measure.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let peak = instance.peak_rss_mib()?;
    instance.stop()?;
    let size = |p: &str| mib(dir_size(&data_dir.join(p)));
    println!(
        "  data directory: {:.1} MiB (raw tables {:.1}, canonical tables {:.1}, WAL {:.1}, census snapshot {:.1}); peak resident memory {peak:.0} MiB",
        mib(dir_size(&data_dir)),
        size("tables/raw"),
        size("tables/canonical"),
        size("wal"),
        size("census"),
    );

    // Restart after a clean stop: the snapshot of the stop, nothing after.
    let since = Instant::now();
    let instance = Instance::start(&config, &data_dir)?;
    let clean = time_to_board(&instance, &token, &board, since, Duration::from_secs(120)).await?;
    println!(
        "  restart after a clean stop: answering with the same bed board {:.2} s after the process started",
        clean.as_secs_f64()
    );

    // Restart after SIGKILL: the last periodic snapshot, then the raw
    // records after it (another day of feed, sent after the snapshot).
    let more = send(&instance, &mut feed, u64::from(per_day), args.window, None).await?;
    let board = expected_board(&trust, &feed);
    time_to_board(
        &instance,
        &token,
        &board,
        Instant::now(),
        Duration::from_secs(60),
    )
    .await?;
    drop(instance);
    let since = Instant::now();
    let instance = Instance::start(&config, &data_dir)?;
    let killed = time_to_board(&instance, &token, &board, since, Duration::from_secs(120)).await?;
    println!(
        "  restart after SIGKILL, a day ({} messages) after the last snapshot: answering with the same bed board {:.2} s after the process started",
        more.messages,
        killed.as_secs_f64()
    );
    instance.stop()?;
    Ok(())
}

/// Who should be in each bed (census bed id → admission id) once every
/// message taken from the feed has been applied.
fn expected_board(trust: &Trust, feed: &Feed) -> BTreeMap<String, Option<String>> {
    let ids: BTreeMap<String, String> = trust
        .beds()
        .map(|b| {
            (
                b.bed.id.clone(),
                fdp_ingest::adt::event::bed_id(
                    &b.site.code,
                    &b.ward.code,
                    &b.bed.bay,
                    &b.bed.label,
                ),
            )
        })
        .collect();
    feed.simulator()
        .expected_occupancy()
        .into_iter()
        .map(|(bed, o)| (ids[&bed].clone(), o.map(|o| o.spell_id)))
        .collect()
}

struct Sent {
    messages: u64,
    refused: BTreeMap<String, u64>,
}

impl Sent {
    fn describe_refusals(&self) -> String {
        let n: u64 = self.refused.values().sum();
        if n == 0 {
            return "all AA".into();
        }
        let codes: Vec<String> = self
            .refused
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        format!("{n} not AA: {}", codes.join(", "))
    }
}

/// Send up to `limit` messages of the feed in order over one connection,
/// made as they are sent, `window` of them ahead of the ACKs.
async fn send(
    instance: &Instance,
    feed: &mut Feed,
    limit: u64,
    window: usize,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Sent> {
    let (mut tx, mut acks) = mllp_client::connect(instance.mllp).await?;
    let window = window.max(1) as u64;
    let (mut sent, mut got) = (0u64, 0u64);
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut done = false;
    loop {
        while !done && sent < limit && sent - got < window {
            match feed.next() {
                Some(m) => {
                    tx.queue(&m.bytes);
                    sent += 1;
                }
                None => done = true,
            }
        }
        if got == sent {
            break;
        }
        tx.flush().await?;
        let ack = acks.next().await?;
        let code = mllp_client::ack_code(&ack);
        if code != "AA" {
            *refused.entry(code).or_default() += 1;
        }
        got += 1;
        if let Some(p) = progress {
            if got % 1024 == 0 {
                p.set_position(got);
            }
        }
    }
    Ok(Sent {
        messages: sent,
        refused,
    })
}
