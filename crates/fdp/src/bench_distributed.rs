//! `fdp bench distributed`: one governed aggregate over a national-sized
//! table (100 million encounters by default), three ways in one run.
//!
//! 1. In the instance's own process, as a trust's instance runs it.
//! 2. On a Ballista cluster: a scheduler and two executors, each an
//!    `fdp cluster` process of its own, on loopback behind mutual TLS. The
//!    instance plans the query under the policy and ships the governed
//!    physical plan; the executors split the table's files.
//! 3. DuckDB over the same Parquet files, with the policy's row filters
//!    (the opt-out, restricted-view rows) written into its SQL by hand, and
//!    nothing else of governance: no audit, no disclosure control.
//!
//! Runs alternate; each figure is the median. The two governed answers
//! must be the same, and DuckDB's counts must match ours within the
//! rounding disclosure control applies, or the benchmark fails.
//!
//! Here every process shares the machine's cores, so the cluster cannot be
//! faster than one process: what this measures is what shipping a plan
//! costs. `docs/benchmarks.md` says what a real cluster adds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fdp_cluster::{ClusterAuthority, ClusterConfig, Role};
use fdp_govern::{Purpose, QueryResult, SessionRequest};

#[derive(Args, Clone)]
pub struct DistributedArgs {
    /// Encounters to generate
    #[arg(long, default_value_t = 100_000_000)]
    pub rows: usize,
    /// Patients they belong to
    #[arg(long, default_value_t = 1_000_000)]
    pub patients: usize,
    /// Times the query is run each way
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Tasks each of the two executors runs at once
    #[arg(long, default_value_t = 1)]
    pub slots: usize,
    /// Keep the generated tables here and reuse them on the next run
    /// (default: a temporary directory)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip the DuckDB comparison
    #[arg(long)]
    pub no_duckdb: bool,
    /// A few seconds on tiny sizes: the same code path, so that the
    /// benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

/// Encounters written per commit: bounds the memory generation holds, and
/// gives the table the many files a cluster splits.
const COMMIT_ROWS: usize = 5_000_000;

/// A member of the benchmark's cluster, stopped when dropped.
struct Member {
    child: Child,
    /// Where it listens, as it printed on starting.
    said: String,
}

impl Member {
    fn start(args: &[&dyn AsRef<std::ffi::OsStr>], log: &Path) -> Result<Member> {
        let exe = std::env::current_exe().context("finding the fdp binary")?;
        let mut cmd = std::process::Command::new(exe);
        for a in args {
            cmd.arg(a);
        }
        let mut child = cmd
            .env("FDP_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting a cluster member")?;
        let mut said = String::new();
        BufReader::new(child.stdout.take().context("member's stdout")?).read_line(&mut said)?;
        if said.is_empty() {
            let _ = child.kill();
            bail!(
                "a cluster member did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(Member {
            child,
            said: said.trim().to_string(),
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scheduler and two executors on loopback, certified by an authority
/// made for this run, the executors holding a copy of the instance's keys.
struct LoopbackCluster {
    scheduler_url: String,
    instance_dir: PathBuf,
    _members: Vec<Member>,
}

fn start_cluster(dir: &Path, data_dir: &Path, slots: usize) -> Result<LoopbackCluster> {
    let authority = ClusterAuthority::create(&dir.join("ca"), "bench")?;
    for (name, role) in [
        ("scheduler", Role::Scheduler),
        ("executor-1", Role::Executor),
        ("executor-2", Role::Executor),
        ("instance", Role::Instance),
    ] {
        authority.issue(&dir.join(name), name, role, &[])?;
    }
    let keys = dir.join("executor-keys");
    copy_dir(&data_dir.join("keystore"), &keys.join("keystore"))?;
    let scheduler = Member::start(
        &[
            &"cluster",
            &"scheduler",
            &"--member",
            &dir.join("scheduler"),
            &"--listen",
            &"127.0.0.1:0",
        ],
        &dir.join("scheduler.log"),
    )?;
    let scheduler_url = scheduler
        .said
        .strip_prefix("scheduler ")
        .with_context(|| format!("the scheduler said {:?}", scheduler.said))?
        .to_string();
    let mut members = vec![scheduler];
    for name in ["executor-1", "executor-2"] {
        let slots = slots.to_string();
        members.push(Member::start(
            &[
                &"cluster",
                &"executor",
                &"--member",
                &dir.join(name),
                &"--scheduler",
                &scheduler_url,
                &"--flight",
                &"127.0.0.1:0",
                &"--keys",
                &keys,
                &"--work-dir",
                &dir.join(format!("{name}-work")),
                &"--slots",
                &slots,
            ],
            &dir.join(format!("{name}.log")),
        )?);
    }
    Ok(LoopbackCluster {
        scheduler_url,
        instance_dir: dir.join("instance"),
        _members: members,
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

/// The headline aggregate with the policy's row filters for an analyst
/// under planning written out, for an engine that has no policy.
const DUCKDB_SQL: &str = "SELECT specialty_name, encounter_type, count(*) AS n, \
     avg(patient_cancellation_count) AS mean_cancellations \
     FROM encounter \
     WHERE rv_group_ids IS NULL \
     AND patient_id NOT IN (SELECT person_id FROM patient \
         WHERE nhs_number IN (SELECT nhs_number FROM opt_out)) \
     GROUP BY specialty_name, encounter_type ORDER BY 1, 2";

/// Whether two governed answers are the same: equal cells, floating
/// averages to within what the order of summation changes.
fn same_answer(a: &QueryResult, b: &QueryResult) -> Result<bool> {
    let (a, b) = (a.rows_json()?, b.rows_json()?);
    let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
        return Ok(false);
    };
    if a.len() != b.len() {
        return Ok(false);
    }
    for (x, y) in a.iter().zip(b) {
        let (Some(x), Some(y)) = (x.as_object(), y.as_object()) else {
            return Ok(false);
        };
        for (k, v) in x {
            let w = y.get(k);
            let same = match (v.as_f64(), w.and_then(|w| w.as_f64())) {
                (Some(p), Some(q)) if v.is_f64() => (p - q).abs() <= 1e-9 * p.abs().max(1.0),
                _ => Some(v) == w,
            };
            if !same {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Every group's count in our answer is DuckDB's, to within the rounding
/// disclosure control applies; a group may be withheld but none is made up.
fn check_against_duckdb(ours: &QueryResult, theirs: &[Vec<Option<String>>]) -> Result<()> {
    let rows = ours.rows_json()?;
    let rows = rows.as_array().context("rows")?;
    if rows.len() != theirs.len() {
        bail!(
            "DuckDB found {} groups, the governed query {}",
            theirs.len(),
            rows.len()
        );
    }
    for (r, t) in rows.iter().zip(theirs) {
        let key = (
            r["specialty_name"].as_str().map(str::to_string),
            r["encounter_type"].as_str().map(str::to_string),
        );
        if key != (t[0].clone(), t[1].clone()) {
            bail!("group {key:?} where DuckDB has {:?}", (&t[0], &t[1]));
        }
        let Some(n) = r["n"].as_i64() else { continue };
        let their: i64 = t[2].as_deref().unwrap_or("0").parse()?;
        if (n - their).abs() > 5 {
            bail!("{key:?}: governed count {n}, DuckDB's {their}");
        }
    }
    Ok(())
}

pub async fn run(args: DistributedArgs) -> Result<()> {
    let mut args = args;
    if args.quick {
        args.rows = args.rows.min(60_000);
        args.patients = args.patients.min(2_000);
        args.runs = args.runs.min(2);
    }
    let runs = args.runs.max(1);
    let temp = tempfile::tempdir()?;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => temp.path().join("data"),
    };
    std::fs::create_dir_all(&data_dir)?;
    println!(
        "fdp bench distributed — a governed aggregate under planning over {} encounters: \
         in process, on a two-executor cluster, and DuckDB",
        args.rows
    );

    // The tables, made once per data directory: the opt-out file is the
    // mark that the generation finished.
    let opt_out = data_dir.join("opt-out.txt");
    let numbers: Vec<String> = if opt_out.exists() {
        println!("  reusing the tables in {}", data_dir.display());
        std::fs::read_to_string(&opt_out)?
            .lines()
            .map(str::to_string)
            .collect()
    } else {
        let started = Instant::now();
        let commit_rows = if args.quick {
            args.rows / 4
        } else {
            COMMIT_ROWS
        };
        let numbers = crate::bench_governed::generate(
            &data_dir,
            args.rows,
            args.patients,
            commit_rows.max(1),
        )
        .await
        .context("generating the benchmark's tables")?;
        // One patient in a hundred has opted out.
        let listed: Vec<String> = numbers.iter().step_by(100).cloned().collect();
        std::fs::write(&opt_out, listed.join("\n") + "\n")?;
        println!(
            "  generated {} encounters of {} patients in {:.1} s",
            args.rows,
            args.patients,
            started.elapsed().as_secs_f64()
        );
        listed
    };
    let files = crate::bench::live_parquet_files(&data_dir, &["encounter", "patient"]).await?;
    let bytes: u64 = files["encounter"]
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "  encounter: {} Parquet files, {:.0} MiB",
        files["encounter"].len(),
        bytes as f64 / (1024.0 * 1024.0)
    );

    let mut config = crate::bench_governed::analyst_config(opt_out);
    let request = SessionRequest::new(
        config.local_principal("bench-analyst"),
        Purpose::Planning,
        "bench",
    );
    let source = fdp_store::StoredTables::new(&data_dir);
    let (_, sql) = crate::bench_governed::QUERIES[0];

    // In process first: it also makes the instance's keys, which the
    // executors are given a copy of.
    let local = config.governance(&data_dir)?;
    let local_session = local.session(&source, request.clone()).await?;
    let warm = local_session.query(sql).await?;

    let cluster = start_cluster(temp.path(), &data_dir, args.slots)?;
    config.cluster = Some(ClusterConfig {
        scheduler: cluster.scheduler_url.clone(),
        member_dir: cluster.instance_dir.clone(),
        distributed_from_bytes: 0,
        timeout_secs: 3600,
    });
    let distributed = config.governance(&data_dir)?;
    let cluster_session = distributed.session(&source, request).await?;
    // The executors' first job pays for their registering with the
    // scheduler; not part of a query's cost.
    let first = cluster_session.query(sql).await?;
    if !same_answer(&warm, &first)? {
        bail!("the cluster's answer differs from the instance's own");
    }

    let (mut here, mut there) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let a = local_session.query(sql).await?;
        here.push(t.elapsed());
        let t = Instant::now();
        let b = cluster_session.query(sql).await?;
        there.push(t.elapsed());
        if !same_answer(&a, &b)? {
            bail!("the cluster's answer differs from the instance's own");
        }
    }
    let (here, there) = (
        crate::bench_governed::median(here),
        crate::bench_governed::median(there),
    );
    println!(
        "  in process (one process, {} cores):               {:>8.3} s",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        here.as_secs_f64()
    );
    println!(
        "  on the cluster (2 executors × {} slot(s), mTLS):    {:>8.3} s   {:.2}× in process",
        args.slots,
        there.as_secs_f64(),
        there.as_secs_f64() / here.as_secs_f64()
    );
    println!(
        "  both governed answers the same ({} groups)",
        warm.row_count()
    );

    if args.no_duckdb {
        return Ok(());
    }
    let spec = serde_json::json!({
        "tables": files,
        "lists": {"opt_out": ["nhs_number", numbers]},
        "sql": DUCKDB_SQL,
        "runs": runs,
    });
    let Some(duckdb) = crate::bench::duckdb_timed_query(&spec)? else {
        return Ok(());
    };
    let theirs = duckdb.median_secs;
    println!(
        "  DuckDB {} (the policy's row filters by hand; no pseudonyms, disclosure control or audit): \
         {theirs:.3} s   in process {:.2}×, cluster {:.2}× DuckDB",
        crate::bench_csv::duckdb_version(),
        here.as_secs_f64() / theirs,
        there.as_secs_f64() / theirs,
    );
    check_against_duckdb(&warm, &duckdb.rows)
        .context("checking the governed answer against DuckDB's")?;
    println!("  DuckDB's counts match the governed answer within disclosure rounding");
    Ok(())
}
