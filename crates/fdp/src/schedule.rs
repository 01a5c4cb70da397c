//! `fdp schedule`: admission and theatre scheduling, starting from the
//! IHTC-2024 problem as the competition published it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use std::time::Duration;

use fdp_schedule::ihtc::{
    construct, evaluate, lower_bound, price, search, Instance, Problem, SearchOptions, Solution,
};

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Schedule an IHTC-2024 instance: admissions, rooms, theatres and
    /// nurses, built greedily without breaking a hard constraint where
    /// that can be helped, then improved by simulated annealing; writes the
    /// solution and prints its price
    Ihtc {
        /// The competition instance (JSON)
        instance: PathBuf,
        /// Where to write the solution (JSON)
        #[arg(short, long)]
        out: PathBuf,
        /// Seconds to search for (0: the greedy schedule alone)
        #[arg(long, default_value_t = 60.0)]
        time_limit: f64,
        /// Independent searches run in parallel; the best is kept
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seed of the search's random choices
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Propose the coming weeks' lists from the trust's own PTL, as the
    /// theatre planner does, read through a governed session of the
    /// principal named (direct care): the proposal beside booking by hand
    /// (by priority, then weeks waited, first fit) on the lists' booked
    /// utilisation, patients treated, breaches, priority limits and turn;
    /// writes every patient's placement and reason as CSV
    Plan(PlanArgs),
    /// Price an IHTC-2024 solution against its instance: the violations of
    /// each hard constraint and each soft cost, raw and weighted, in the
    /// competition validator's layout
    Validate {
        /// The competition instance (JSON)
        instance: PathBuf,
        /// The solution (JSON)
        solution: PathBuf,
    },
}

/// What `fdp schedule plan` is asked.
#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    at: crate::product::Instance,
    /// The principal (in the instance's configuration) the plan is read
    /// as: their role must grant the theatre planner's tables for direct
    /// care (the theatre scheduler)
    #[arg(long)]
    by: String,
    /// The day planned from (the lists from the day after); default today
    #[arg(long)]
    as_at: Option<chrono::NaiveDate>,
    /// Weeks planned, 1 to 12
    #[arg(long, default_value_t = 6)]
    weeks: u32,
    /// The wards (ward ids, site:ward) whose bays take elective inpatients
    #[arg(long, value_delimiter = ',')]
    wards: Vec<String>,
    /// Moves the search makes (the same tables and moves give the same plan)
    #[arg(long, default_value_t = 3_000_000)]
    moves: u64,
    /// Where to write each patient's placement and reason (CSV)
    #[arg(short, long)]
    out: Option<PathBuf>,
}

async fn plan(args: PlanArgs) -> Result<()> {
    use fdp_products::platform::{run_view, Registry};
    let data = &args.at.data_dir;
    let config = crate::instance::InstanceConfig::for_data_dir(data, args.at.config.as_deref())?;
    let governance = config.governance(data)?;
    let principal = config.local_principal(&args.by);
    anyhow::ensure!(
        !principal.roles.is_empty(),
        "{} has no role in the instance's configuration: add [principal.{}] with roles = [\"theatre-scheduler\"]",
        args.by,
        args.by
    );
    let tables = fdp_store::StoredTables::new(data);
    let session = governance
        .session(
            &tables,
            fdp_govern::SessionRequest::new(principal, fdp_govern::Purpose::DirectCare, "cli"),
        )
        .await
        .context("opening a governed session for direct care")?;
    let as_at = args
        .as_at
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let mut given = std::collections::BTreeMap::from([
        ("as_at".to_string(), as_at.to_string()),
        ("weeks".to_string(), args.weeks.to_string()),
        ("moves".to_string(), args.moves.to_string()),
    ]);
    if !args.wards.is_empty() {
        given.insert("wards".into(), args.wards.join(","));
    }
    let registry = Registry::builtin();
    let started = std::time::Instant::now();
    let compare = run_view(&registry, "theatre-planner", "compare", &session, &given)
        .await
        .context("the theatre planner's comparison")?;
    println!(
        "{:<34} {:>14} {:>14}  better",
        "measure", "by hand", "proposed"
    );
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    for row in &compare.rows {
        println!(
            "{:<34} {:>14} {:>14}  {}",
            cell(&row[0]),
            cell(&row[1]),
            cell(&row[2]),
            cell(&row[3])
        );
    }
    let proposal = run_view(&registry, "theatre-planner", "proposal", &session, &given)
        .await
        .context("the theatre planner's proposal")?;
    let status = proposal
        .columns
        .iter()
        .position(|c| c.name == "status")
        .context("a status column")?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for row in &proposal.rows {
        *counts.entry(cell(&row[status])).or_default() += 1;
    }
    eprintln!(
        "{} patients from {} for {} weeks: {} (planned twice, {:.1} s)",
        proposal.rows.len(),
        as_at + chrono::Duration::days(1),
        args.weeks,
        counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    if let Some(out) = &args.out {
        std::fs::write(out, proposal.to_csv())
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!(
            "each patient's placement and reason written to {}",
            out.display()
        );
    }
    governance.audit().checkpoint()?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an IHTC-2024 {what}: check it against the competition's file format",
            path.display()
        )
    })
}

/// A time limit given in seconds, refused by name where it is no length of
/// time a search could run for.
pub fn seconds(limit: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(limit).map_err(|_| {
        anyhow::anyhow!("--time-limit {limit}: give a number of seconds from 0 up, such as 60")
    })
}

/// How far `cost` is above `reference`, as a share of `reference`.
pub fn gap_percent(cost: i64, reference: i64) -> f64 {
    if reference <= 0 {
        return if cost <= 0 { 0.0 } else { f64::INFINITY };
    }
    (cost - reference) as f64 * 100.0 / reference as f64
}

pub async fn run(cmd: ScheduleCommand) -> Result<()> {
    match cmd {
        ScheduleCommand::Plan(args) => plan(args).await,
        ScheduleCommand::Ihtc {
            instance,
            out,
            time_limit,
            threads,
            seed,
        } => {
            let i: Instance = read_json(&instance, "instance")?;
            let started = std::time::Instant::now();
            let problem =
                Problem::new(&i).with_context(|| format!("reading {}", instance.display()))?;
            let first = construct(&problem);
            let greedy = price(&problem, &first);
            let (schedule, priced) = if time_limit > 0.0 {
                let options = SearchOptions {
                    time_limit: seconds(time_limit)?,
                    threads: threads.max(1),
                    max_moves: None,
                    seed,
                };
                let found = search(&problem, &first, &options);
                eprintln!(
                    "greedy start {} ({} violations); searched {:.0} s on {} thread(s), {:.0} moves/s",
                    greedy.total_cost(),
                    greedy.total_violations(),
                    time_limit,
                    options.threads,
                    found.moves_per_second
                );
                (found.schedule, found.evaluation)
            } else {
                (first, greedy)
            };
            let solution = problem.write(&schedule);
            let text = serde_json::to_string_pretty(&solution)?;
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            print!("{priced}");
            let bound = lower_bound(&problem).total();
            println!(
                "Lower bound = {bound} (this schedule is at most {:.1}% above the best possible)",
                gap_percent(priced.total_cost(), bound)
            );
            eprintln!(
                "{} written in {:.2} s: {}",
                out.display(),
                started.elapsed().as_secs_f64(),
                if priced.is_feasible() {
                    "feasible"
                } else {
                    "NOT feasible: see the violations"
                }
            );
            Ok(())
        }
        ScheduleCommand::Validate { instance, solution } => {
            let i: Instance = read_json(&instance, "instance")?;
            let s: Solution = read_json(&solution, "solution")?;
            let priced = evaluate(&i, &s).with_context(|| {
                format!(
                    "pricing {} against {}",
                    solution.display(),
                    instance.display()
                )
            })?;
            print!("{priced}");
            Ok(())
        }
    }
}
