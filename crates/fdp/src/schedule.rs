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

pub fn run(cmd: ScheduleCommand) -> Result<()> {
    match cmd {
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
