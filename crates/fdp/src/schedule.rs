//! `fdp schedule`: admission and theatre scheduling, starting from the
//! IHTC-2024 problem as the competition published it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_schedule::ihtc::{evaluate, Instance, Solution};

#[derive(Subcommand)]
pub enum ScheduleCommand {
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
