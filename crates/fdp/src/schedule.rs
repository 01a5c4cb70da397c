//! `fdp schedule`: admission and theatre scheduling, starting from the
//! IHTC-2024 problem as the competition published it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_schedule::ihtc::{construct, evaluate, price, Instance, Problem, Solution};

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Schedule an IHTC-2024 instance: admissions, rooms, theatres and
    /// nurses, built greedily without breaking a hard constraint where
    /// that can be helped; writes the solution and prints its price
    Ihtc {
        /// The competition instance (JSON)
        instance: PathBuf,
        /// Where to write the solution (JSON)
        #[arg(short, long)]
        out: PathBuf,
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

pub fn run(cmd: ScheduleCommand) -> Result<()> {
    match cmd {
        ScheduleCommand::Ihtc { instance, out } => {
            let i: Instance = read_json(&instance, "instance")?;
            let started = std::time::Instant::now();
            let problem =
                Problem::new(&i).with_context(|| format!("reading {}", instance.display()))?;
            let schedule = construct(&problem);
            let priced = price(&problem, &schedule);
            let solution = problem.write(&schedule);
            let text = serde_json::to_string_pretty(&solution)?;
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            print!("{priced}");
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
