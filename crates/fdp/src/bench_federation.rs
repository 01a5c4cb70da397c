//! `fdp bench federation`: one federated question asked of many instances.
//!
//! Starts `--members` instances (default 20) as separate `fdp serve`
//! processes on loopback, each with its own data directory, keys, policy
//! and a copy of the same synthetic trust, each having approved the
//! question. This process is the ICB: it asks the question `--asks` times
//! and times each from the first send to the last member's answer
//! (mutual-TLS connection, signed question, the member's governed session
//! with opt-out and disclosure control, signed answer, checked). Prints
//! p50 and p99.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use fdp_federation::questions::{self, Approvals, Question};
use fdp_federation::{Federation, FederationCa, InstanceIdentity, OrgRole, Peer};
use fdp_govern::Purpose;

use crate::bench::percentile;
use crate::instance::InstanceConfig;

#[derive(Args, Clone)]
pub struct FederationArgs {
    /// Member instances to ask
    #[arg(long, default_value_t = 20)]
    pub members: usize,
    /// Synthetic patients in each member's data
    #[arg(long, default_value_t = 200)]
    pub patients: usize,
    /// Times to ask the question (after one warm-up)
    #[arg(long, default_value_t = 100)]
    pub asks: usize,
    /// A few seconds on tiny sizes: the same code path, so that the
    /// benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

/// The member processes, stopped when dropped.
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

pub async fn run(args: FederationArgs) -> Result<()> {
    let mut args = args;
    if args.quick {
        args.members = args.members.min(3);
        args.patients = args.patients.min(50);
        args.asks = args.asks.min(5);
    }
    if args.members == 0 || args.asks == 0 {
        bail!("--members and --asks must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let started = Instant::now();
    let ca = FederationCa::create(&root.join("ca"), "Benchmark ICS")?;
    let icb_dir = root.join("QWO");
    InstanceIdentity::init(&icb_dir, "QWO", OrgRole::Icb, &ca)?;
    let question = Question {
        name: "admissions-by-method".into(),
        version: 1,
        purpose: Purpose::Planning,
        sql: "SELECT method_of_admission_code AS method, count(*) AS admissions, count(DISTINCT patient_id) AS patients FROM admission GROUP BY method_of_admission_code".into(),
        description: "Admissions and patients by method of admission".into(),
        parameters: Default::default(),
        arguments: Default::default(),
        as_of: None,
        asked_by: None,
    };

    // One trust's data, copied to every member.
    let template = root.join("template");
    let export = root.join("export");
    fdp_synth::fhir_export::write(&export, args.patients * fdp_synth::fhir_export::PER_PATIENT)?;
    let files: Vec<PathBuf> = std::fs::read_dir(&export)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    crate::ingest::fhir(&template, &files).await?;

    let exe = std::env::current_exe().context("finding the fdp binary")?;
    let progress =
        indicatif::ProgressBar::new(args.members as u64).with_message("starting member instances");
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
            .expect("a valid template"),
    );
    let mut children = Members(Vec::new());
    let mut peers = Vec::new();
    let icb_pem = icb_dir.join("federation/instance.pem");
    for i in 0..args.members {
        let ods = format!("R{i:02}");
        let data = root.join(&ods);
        copy_dir(&template, &data)?;
        let id = InstanceIdentity::init(&data, &ods, OrgRole::Trust, &ca)?;
        let governance = InstanceConfig::governance_of(&data)?;
        Approvals::open(&data)
            .approve(
                &governance,
                "QWO",
                &question,
                "ig.lead",
                "benchmark",
                Default::default(),
            )
            .map_err(anyhow::Error::msg)?;
        let config = data.join("instance.toml");
        std::fs::write(
            &config,
            format!(
                "ods = \"{ods}\"\n[federation]\nlisten = \"127.0.0.1:0\"\n[[federation.peer]]\nods = \"QWO\"\nrole = \"icb\"\ncertificate = \"{}\"\n",
                icb_pem.display()
            ),
        )?;
        let mut child = Command::new(&exe)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--http", "127.0.0.1:0"])
            .env("FDP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a member instance")?;
        let stderr = child.stderr.take().expect("piped");
        children.0.push(child);
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("Federation (mutual TLS) listening on ") {
                        break a.trim().to_string();
                    }
                }
                _ => bail!("member {ods} stopped before it listened"),
            }
        };
        // Keep reading so the member never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        peers.push(Peer {
            ods,
            role: OrgRole::Trust,
            address: Some(addr),
            cert: id.cert.clone(),
        });
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!(
        "{} member instances ({} patients each) started in {:.1} s",
        args.members,
        args.patients,
        started.elapsed().as_secs_f64()
    );

    let governance = InstanceConfig::governance_of(&icb_dir)?;
    let fed = Arc::new(
        Federation::open(&icb_dir, peers, governance.audit().clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let members: Vec<String> = fed.peers().iter().map(|p| p.ods.clone()).collect();
    // Warm-up: each member opens its tables once.
    let first = questions::ask(&fed, &question, &members, "bench")
        .await
        .map_err(anyhow::Error::msg)?;
    let answered = first.iter().filter(|a| a.status == "answered").count();
    if answered != members.len() {
        let missing: Vec<String> = first
            .iter()
            .filter(|a| a.status != "answered")
            .map(|a| {
                format!(
                    "{} {} ({})",
                    a.member,
                    a.status,
                    a.reason.clone().unwrap_or_default()
                )
            })
            .collect();
        bail!(
            "not every member answered the warm-up: {}",
            missing.join("; ")
        );
    }
    let mut latencies = Vec::with_capacity(args.asks);
    let progress = indicatif::ProgressBar::new(args.asks as u64).with_message("asking");
    for _ in 0..args.asks {
        let t = Instant::now();
        let answers = questions::ask(&fed, &question, &members, "bench")
            .await
            .map_err(anyhow::Error::msg)?;
        let elapsed = t.elapsed();
        let ok = answers.iter().filter(|a| a.status == "answered").count();
        if ok != members.len() {
            bail!("{} of {} members answered", ok, members.len());
        }
        latencies.push(elapsed.as_secs_f64() * 1000.0);
        progress.inc(1);
    }
    progress.finish_and_clear();
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "one federated question of {} instances on loopback, {} asks (end to end: signed question out over mutual TLS, each member's governed session with opt-out and disclosure control, signed answers back and checked):",
        members.len(),
        latencies.len()
    );
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms   (target: p50 < 300 ms, p99 < 1 s)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[0],
        latencies[latencies.len() - 1]
    );
    drop(children);
    // Give the members a moment to go before the directory is removed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
