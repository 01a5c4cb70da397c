//! `fdp bench`: measured, printed performance figures.
//!
//! `fdp bench adt` starts a real instance in a temporary data directory and
//! drives it over MLLP on loopback, as a PAS would, with messages from the
//! synthetic trust. Three figures:
//! 1. sustained throughput: several connections, each pipelining messages
//!    and reading ACKs (each ACK sent only after a durable commit);
//! 2. ACK latency at a fixed offered rate (default 2,000 messages/s): send
//!    to ACK, p50 and p99;
//! 3. bed board freshness: from sending an admission to a known free bed to
//!    that bed appearing as occupied on the bed board's live event stream
//!    (the stream the web page listens to), p50 and p99.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::instance::{self, InstanceConfig};
use crate::mllp_client;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// HL7 v2 ADT over MLLP with durable ACK: throughput, ACK latency, bed board freshness
    Adt(AdtArgs),
    /// Bulk FHIR import (NDJSON) of a generated export: resources/s
    Fhir(crate::bench_fhir::FhirArgs),
    /// Flat extract (CSV) through a declared mapping, beside DuckDB: rows/s
    Csv(crate::bench_csv::CsvArgs),
    /// The PTL rebuilt and every validation rule run over a million-pathway waiting list, beside DuckDB
    Elective(crate::bench_elective::ElectiveArgs),
    /// The same aggregates over 10 million rows with and without the policy: what governance costs
    GovernedQuery(crate::bench_governed::GovernedQueryArgs),
    /// One federated question of 20 instances on loopback: end-to-end latency, p50 and p99
    Federation(crate::bench_federation::FederationArgs),
    /// Senders that flood and never read their ACKs beside one sending normal traffic: its ACK latency and the instance's peak memory
    Flood(crate::bench_flood::FloodArgs),
    /// The scheduler on IHTC-2024 instances at a time limit: cost, lower bound and gap to the best-known, beside the competition's published results
    Schedule(crate::bench_schedule::ScheduleArgs),
    /// The theatre planner on a synthetic trust's own list beside booking by hand, and a re-plan after a surgeon's week of leave
    Plan(crate::bench_plan::PlanArgs),
    /// Low uptake on a synthetic ICB of a million people under planning: the planted gaps flagged, and groups without a gap flagged no more than chance
    Uptake(crate::bench_population::UptakeArgs),
    /// A cohort of 10 million people by IMD decile and practice, governed under planning, beside DuckDB
    Cohort(crate::bench_population::CohortArgs),
    /// Forecasts and days of cover for 100,000 item-location series with two years of daily history
    Supply(crate::bench_supply::SupplyArgs),
    /// A governed aggregate over 100 million rows in process, on a two-executor Ballista cluster, and in DuckDB
    Distributed(crate::bench_distributed::DistributedArgs),
}

#[derive(Args, Clone)]
pub struct AdtArgs {
    /// Messages for the throughput run
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    /// Concurrent MLLP connections for the throughput run
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Messages in flight per connection (pipelining window)
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Offered rate for the latency run, messages/s
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Seconds of the latency run
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Bed board freshness samples
    #[arg(long, default_value_t = 200)]
    pub freshness_samples: usize,
    /// Seed of the synthetic trust
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the data directory here instead of a temporary one
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// A few seconds on tiny sizes: the same code path, so that the
    /// benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
    /// Instead of the three figures: a trust's year of feed through one
    /// connection in order, the bed board checked bed for bed, the data
    /// directory's size and peak memory, and the instance restarted, timed
    #[arg(long)]
    pub year: bool,
    /// Days of feed for --year
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Messages a day for --year (after the census that fills the hospital)
    #[arg(long, default_value_t = 8_640)]
    pub per_day: u32,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Adt(args) if args.year => crate::bench_year::run(args).await,
        BenchCommand::Adt(args) => adt(args).await.map(|r| r.print()),
        BenchCommand::Fhir(args) => crate::bench_fhir::fhir(args).await,
        BenchCommand::Csv(args) => crate::bench_csv::csv(args).await,
        BenchCommand::Elective(args) => crate::bench_elective::elective(args).await,
        BenchCommand::GovernedQuery(args) => crate::bench_governed::run(args).await,
        BenchCommand::Federation(args) => crate::bench_federation::run(args).await,
        BenchCommand::Flood(args) => crate::bench_flood::run(args).await,
        BenchCommand::Schedule(args) => crate::bench_schedule::run(args),
        BenchCommand::Plan(args) => crate::bench_plan::run(args).await,
        BenchCommand::Uptake(args) => crate::bench_population::uptake(args).await,
        BenchCommand::Cohort(args) => crate::bench_population::cohort(args).await,
        BenchCommand::Supply(args) => crate::bench_supply::run(args),
        BenchCommand::Distributed(args) => crate::bench_distributed::run(args).await,
    }
}

/// What `fdp bench adt` measured.
#[derive(Debug, Clone)]
pub struct AdtReport {
    pub messages: usize,
    pub connections: usize,
    pub throughput_per_s: f64,
    pub nacks: usize,
    pub rate: u32,
    pub latency_sent: usize,
    pub achieved_rate: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub fresh_samples: usize,
    pub fresh_p50_ms: f64,
    pub fresh_p99_ms: f64,
}

impl AdtReport {
    pub fn print(&self) {
        println!("fdp bench adt — HL7 v2 ADT over MLLP, ACK after durable commit (fsync)");
        println!(
            "  throughput: {} messages over {} connections: {:.0} messages/s ({} not AA)",
            self.messages, self.connections, self.throughput_per_s, self.nacks
        );
        println!(
            "  ACK latency at {} messages/s offered ({:.0}/s achieved, {} messages): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.rate, self.achieved_rate, self.latency_sent, self.ack_p50_ms, self.ack_p99_ms, self.ack_max_ms
        );
        println!(
            "  bed board freshness (admission sent → bed shown occupied on the live stream), {} samples: p50 {:.1} ms, p99 {:.1} ms",
            self.fresh_samples, self.fresh_p50_ms, self.fresh_p99_ms
        );
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn adt(args: AdtArgs) -> Result<AdtReport> {
    let mut args = args;
    if args.quick {
        args.messages = args.messages.min(3_000);
        args.connections = args.connections.min(2);
        args.window = args.window.min(64);
        args.rate = args.rate.min(500);
        args.seconds = args.seconds.min(1);
        args.freshness_samples = args.freshness_samples.min(5);
    }
    let tmp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let config = InstanceConfig {
        ods: Some("RXX".into()),
        data_dir: Some(data_dir.clone()),
        http: Some("127.0.0.1:0".parse()?),
        mllp: Some("127.0.0.1:0".parse()?),
        canonical_interval_secs: Some(5.0),
        // The freshness run watches the bed board as a bed manager would:
        // under a role granted direct care, with that purpose declared.
        principal: [(
            "bench".to_string(),
            fdp_govern::Grant {
                roles: vec!["bed-manager".into()],
                organisation: None,
            },
        )]
        .into(),
        ..InstanceConfig::default()
    };
    let running = instance::start(&config).await?;
    let token = running.tokens.create("bench")?;
    let mllp = running.mllp_addr.context("MLLP listener")?;
    let http = running.http_addr.context("HTTP listener")?;

    eprintln!("generating {} synthetic ADT messages…", args.messages);
    let mut workload = crate::demo::Workload::new(args.seed)?;
    crate::ingest::load_bed_register(
        &running.store.committer(),
        workload.bed_register().as_bytes(),
        "bench",
    )
    .await?;
    let messages = workload.take(args.messages);

    eprintln!("throughput run…");
    let (throughput, nacks) = throughput(mllp, &messages, args.connections, args.window).await?;

    eprintln!(
        "latency run at {} messages/s for {} s…",
        args.rate, args.seconds
    );
    let more = workload.take(args.rate as usize * args.seconds as usize);
    let (lat, achieved) = fixed_rate(mllp, &more, args.rate, 4).await?;

    eprintln!("freshness run…");
    let fresh = freshness(mllp, http, &token, &running, args.freshness_samples).await?;

    running.stop().await?;
    Ok(AdtReport {
        messages: messages.len(),
        connections: args.connections,
        throughput_per_s: throughput,
        nacks,
        rate: args.rate,
        latency_sent: lat.len(),
        achieved_rate: achieved,
        ack_p50_ms: percentile(&lat, 0.50),
        ack_p99_ms: percentile(&lat, 0.99),
        ack_max_ms: lat.last().copied().unwrap_or(f64::NAN),
        fresh_samples: fresh.len(),
        fresh_p50_ms: percentile(&fresh, 0.50),
        fresh_p99_ms: percentile(&fresh, 0.99),
    })
}

/// All messages as fast as the instance acknowledges them.
async fn throughput(
    addr: SocketAddr,
    messages: &[Vec<u8>],
    connections: usize,
    window: usize,
) -> Result<(f64, usize)> {
    let messages = Arc::new(messages.to_vec());
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..connections {
        let messages = messages.clone();
        handles.push(tokio::spawn(async move {
            let (mut tx, mut acks) = mllp_client::connect(addr).await?;
            // Each connection sends every `connections`-th message, so that
            // messages about one patient stay in order within a connection
            // as often as not; the census tolerates the rest.
            let mine: Vec<&Vec<u8>> = messages.iter().skip(c).step_by(connections).collect();
            let total = mine.len();
            let mut sent = 0usize;
            let mut got = 0usize;
            let mut nacks = 0usize;
            while got < total {
                while sent < total && sent - got < window {
                    tx.queue(mine[sent]);
                    sent += 1;
                }
                tx.flush().await?;
                let ack = acks.next().await?;
                if mllp_client::ack_code(&ack) != "AA" {
                    nacks += 1;
                }
                got += 1;
            }
            anyhow::Ok(nacks)
        }));
    }
    let mut nacks = 0;
    for h in handles {
        nacks += h.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((messages.len() as f64 / secs, nacks))
}

/// Messages at a fixed rate spread over `connections`; returns the sorted
/// ACK latencies in milliseconds and the rate achieved.
async fn fixed_rate(
    addr: SocketAddr,
    messages: &[Vec<u8>],
    rate: u32,
    connections: usize,
) -> Result<(Vec<f64>, f64)> {
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let messages = Arc::new(messages.to_vec());
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..connections {
        let messages = messages.clone();
        handles.push(tokio::spawn(async move {
            let (mut tx, mut acks) = mllp_client::connect(addr).await?;
            let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
            let mine: Vec<Vec<u8>> = messages
                .iter()
                .skip(c)
                .step_by(connections)
                .cloned()
                .collect();
            let n = mine.len();
            let stamps = sent_at.clone();
            let reader = tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n);
                for _ in 0..n {
                    acks.next().await?;
                    let t0 = stamps
                        .lock()
                        .expect("lock")
                        .pop_front()
                        .context("ACK without message")?;
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                anyhow::Ok(lat)
            });
            // Offset connections so sends interleave evenly.
            let start =
                tokio::time::Instant::now() + interval.mul_f64(c as f64 / connections as f64);
            let mut tick = tokio::time::interval_at(start, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for m in &mine {
                tick.tick().await;
                sent_at.lock().expect("lock").push_back(Instant::now());
                tx.send(m).await?;
            }
            reader.await?
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let achieved = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    Ok((all, achieved))
}

/// Admit patients one at a time to free beds and time how long each takes
/// to show on the bed board's live event stream.
async fn freshness(
    mllp: SocketAddr,
    http: SocketAddr,
    token: &str,
    running: &instance::Running,
    samples: usize,
) -> Result<Vec<f64>> {
    let free: Vec<fdp_ingest::adt::census::Bed> = {
        let census = running.live.read().await;
        census
            .beds
            .values()
            .filter(|b| {
                b.occupant.is_none() && b.status == fdp_ingest::adt::census::BedStatus::Open
            })
            .take(samples)
            .cloned()
            .collect()
    };
    if free.is_empty() {
        bail!("no free bed to admit to");
    }
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stream = tokio::spawn(watch_bed_board(http, token.to_string(), seen.clone()));
    // Let the stream connect and send its first full board.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut tx, mut acks) = mllp_client::connect(mllp).await?;
    let mut out = Vec::new();
    // Each sample admits to a free bed and discharges again afterwards, so
    // the free beds can be used in turn for as many samples as asked.
    for i in 0..samples {
        let bed = &free[i % free.len()];
        let msg = crate::demo::admission_to(bed, i);
        let t0 = Instant::now();
        tx.send(&msg).await?;
        acks.next().await?;
        let deadline = t0 + Duration::from_secs(5);
        loop {
            if let Some(t) = seen.lock().expect("lock").get(&bed.bed_id) {
                if *t >= t0 {
                    out.push(t.duration_since(t0).as_secs_f64() * 1000.0);
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("bed {} did not show as occupied within 5 s", bed.bed_id);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tx.send(&crate::demo::discharge_from(bed, i)).await?;
        acks.next().await?;
        // Spread the samples over the throttle window of the stream.
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    stream.abort();
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

/// Read the bed board event stream over plain HTTP/1.1 and note when each
/// bed was first reported occupied.
async fn watch_bed_board(
    http: SocketAddr,
    token: String,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
) -> Result<()> {
    let mut s = tokio::net::TcpStream::connect(http).await?;
    let req = format!(
        "GET /bed-board/events HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\nX-Purpose: direct-care\r\nX-Role: bed-manager\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut lines = BufReader::new(s).lines();
    let status = lines.next_line().await?.unwrap_or_default();
    if !status.contains(" 200 ") {
        let mut body = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            body.push(l);
            if body.len() > 20 {
                break;
            }
        }
        bail!(
            "the bed board's event stream answered {status:?}: {}",
            body.join(" ")
        );
    }
    while let Some(line) = lines.next_line().await? {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
            continue;
        };
        if let Some(beds) = v.get("beds").and_then(|b| b.as_object()) {
            let mut seen = seen.lock().expect("lock");
            for (id, cell) in beds {
                if cell.get("state").and_then(|s| s.as_str()) == Some("occupied") {
                    seen.insert(id.clone(), now);
                }
            }
        }
    }
    Ok(())
}

/// Each named canonical table's live Parquet files (of every part), for a
/// peer engine reading the same files; a table with none has an empty list.
pub(crate) async fn live_parquet_files(
    data: &std::path::Path,
    tables: &[&str],
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    use fdp_store::tables::{list_tables, table_location, Layer};
    let parts = list_tables(data, Layer::Canonical).await?;
    let mut out = std::collections::BTreeMap::new();
    for table in tables {
        let mut files = Vec::new();
        for name in &parts {
            if name != *table && !name.starts_with(&format!("{table}@")) {
                continue;
            }
            let at = table_location(data, Layer::Canonical, name)?;
            let delta = fdp_store::tables::open(&at, None).await?;
            for uri in delta.get_file_uris()? {
                files.push(uri.trim_start_matches("file://").to_string());
            }
        }
        files.sort();
        out.insert(table.to_string(), files);
    }
    Ok(out)
}

/// What every DuckDB peer does first: `spec` read from its JSON argument,
/// a connection `con`, and a view over each of `spec.tables`' Parquet
/// files; a table with no files is made instead by its statement in
/// `spec.empty`, if there is one.
fn duckdb_peer_prelude() -> &'static str {
    r#"
import json, sys, time
import duckdb
spec = json.load(open(sys.argv[1]))
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
for table, files in spec["tables"].items():
    if files:
        listed = ", ".join("'" + f + "'" for f in files)
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")
for table, ddl in spec.get("empty", {}).items():
    if not spec["tables"].get(table):
        con.execute(ddl)
"#
}

/// Run a DuckDB peer with `spec` as its JSON argument: `body`, a Python
/// script run after [`duckdb_peer_prelude`]. What it printed, or `None`,
/// having said why, where it could not run.
pub(crate) fn run_duckdb_peer(body: &str, spec: &serde_json::Value) -> Result<Option<String>> {
    let tmp = tempfile::tempdir()?;
    let spec_file = tmp.path().join("duckdb.json");
    std::fs::write(&spec_file, spec.to_string())?;
    let script = format!("{}{body}", duckdb_peer_prelude());
    let run = std::process::Command::new("python3")
        .args(["-c", &script])
        .arg(&spec_file)
        .output()
        .context("running python3 for the DuckDB comparison")?;
    if !run.status.success() {
        let stderr = String::from_utf8_lossy(&run.stderr);
        println!(
            "  DuckDB: not run ({})",
            stderr.lines().last().unwrap_or("python3 failed")
        );
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&run.stdout).into_owned()))
}

/// DuckDB's side of a timed query: after the views over each table's
/// Parquet files (`spec.tables`), a one-column table of strings for each
/// of `spec.lists` (a name to its values), then `spec.sql` run `spec.runs`
/// times; it prints the seconds of each run, then the answer as JSON.
fn duckdb_peer() -> &'static str {
    r#"
for table, (column, values) in spec.get("lists", {}).items():
    con.execute(f"CREATE TABLE {table} AS SELECT unnest(?::VARCHAR[]) AS {column}", [values])
rows = None
for run in range(spec["runs"]):
    t = time.perf_counter()
    rows = con.execute(spec["sql"]).fetchall()
    print(time.perf_counter() - t)
print(json.dumps([[str(v) if v is not None else None for v in r] for r in rows]))
"#
}

/// What DuckDB answered a timed query, and its median time in seconds.
pub(crate) struct DuckDbAnswer {
    pub rows: Vec<Vec<Option<String>>>,
    pub median_secs: f64,
}

/// `spec` (see [`duckdb_peer`]) run by DuckDB, or `None`, having
/// said why, where it could not run.
pub(crate) fn duckdb_timed_query(spec: &serde_json::Value) -> Result<Option<DuckDbAnswer>> {
    let Some(stdout) = run_duckdb_peer(duckdb_peer(), spec)? else {
        return Ok(None);
    };
    let mut lines: Vec<&str> = stdout.lines().collect();
    let rows = serde_json::from_str(lines.pop().context("DuckDB printed nothing")?)?;
    let mut times = lines
        .iter()
        .map(|l| l.trim().parse::<f64>())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(DuckDbAnswer {
        rows,
        median_secs: median(&mut times),
    }))
}

/// The median of some timings (the upper one of an even count).
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}
