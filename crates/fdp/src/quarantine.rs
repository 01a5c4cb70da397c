//! `fdp quarantine`: what every source refused, one record at a time, and
//! putting records through again once the cause is fixed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fdp_ingest::quarantine;

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// List what is in quarantine, newest first
    List(ListArgs),
    /// Show one record: where it came from, what is wrong, and its raw content
    Show {
        #[arg(long)]
        data_dir: PathBuf,
        /// The record's id, as `list` prints it
        id: String,
    },
    /// Put records through again (the instance must not be running): extract
    /// lines with the corrected mapping, FHIR resources through today's checks
    Retry(RetryArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Only this source kind: hl7v2, fhir or csv
    #[arg(long)]
    kind: Option<String>,
    /// Print JSON lines instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RetryArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Mapping file or directory to read extract lines with (the corrected mapping)
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Every record in quarantine (of --kind, if given)
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// Only this source kind with --all: fhir or csv
    #[arg(long)]
    kind: Option<String>,
    /// Ids of the records, as `list` prints them
    ids: Vec<String>,
}

fn one_line(s: &str, width: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > width {
        format!("{}…", flat.chars().take(width - 1).collect::<String>())
    } else {
        flat
    }
}

pub async fn run(cmd: QuarantineCommand) -> Result<()> {
    match cmd {
        QuarantineCommand::List(args) => {
            let mut entries = quarantine::list(
                &crate::instance::InstanceConfig::governance_of(&args.data_dir)?,
                &args.data_dir,
            )
            .await
            .context("reading quarantine")?;
            if let Some(k) = &args.kind {
                entries.retain(|e| &e.kind == k);
            }
            if args.json {
                for e in &entries {
                    println!("{}", serde_json::to_string(e)?);
                }
                return Ok(());
            }
            if entries.is_empty() {
                println!("Nothing in quarantine.");
                return Ok(());
            }
            println!(
                "{:<44} {:<6} {:<26} {:<34} REASON",
                "ID", "KIND", "RECEIVED", "WHERE"
            );
            for e in &entries {
                let source = std::path::Path::new(&e.source)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| e.source.clone());
                let place = if e.position.contains(&source) {
                    e.position.clone()
                } else {
                    format!("{source} {}", e.position)
                };
                println!(
                    "{:<44} {:<6} {:<26} {:<34} {}",
                    e.id,
                    e.kind,
                    one_line(&e.received_at, 26),
                    one_line(&place, 34),
                    one_line(&e.reason, 100)
                );
            }
            println!(
                "{} in quarantine. `fdp quarantine show ID` for one; `fdp quarantine retry` once fixed.",
                entries.len()
            );
            Ok(())
        }
        QuarantineCommand::Show { data_dir, id } => {
            let Some(e) = quarantine::show(
                &crate::instance::InstanceConfig::governance_of(&data_dir)?,
                &data_dir,
                &id,
            )
            .await?
            else {
                anyhow::bail!(
                    "{id} is not in quarantine (see `fdp quarantine list --data-dir {}`)",
                    data_dir.display()
                );
            };
            println!("id:        {}", e.id);
            println!("kind:      {}", e.kind);
            println!("what:      {}", e.what);
            println!("received:  {}", e.received_at);
            println!("source:    {}", e.source);
            println!("where:     {}", e.position);
            println!("problem:   {}", e.reason);
            println!("raw content as received:\n{}", e.raw);
            Ok(())
        }
        QuarantineCommand::Retry(args) => {
            let mappings = match &args.mapping {
                Some(m) => fdp_ingest::extract::read_mappings(m)
                    .map_err(|e| anyhow::anyhow!("reading mappings: {e}"))?,
                None => Vec::new(),
            };
            let ids: Vec<String> = if args.all {
                quarantine::list(
                    &crate::instance::InstanceConfig::governance_of(&args.data_dir)?,
                    &args.data_dir,
                )
                .await?
                .into_iter()
                .filter(|e| e.kind != "hl7v2")
                .filter(|e| args.kind.as_ref().is_none_or(|k| &e.kind == k))
                .map(|e| e.id)
                .collect()
            } else {
                args.ids.clone()
            };
            anyhow::ensure!(
                !ids.is_empty(),
                "nothing to retry: give record ids, or --all"
            );
            if mappings.is_empty() && ids.iter().any(|i| i.starts_with("csv:")) {
                anyhow::bail!("extract lines are read with their mapping: pass --mapping FILE|DIR with the corrected mapping");
            }
            let results = quarantine::retry(
                &crate::instance::InstanceConfig::governance_of(&args.data_dir)?,
                &args.data_dir,
                &ids,
                &mappings,
            )
            .await?;
            let accepted = results.iter().filter(|r| r.accepted).count();
            for r in &results {
                println!(
                    "{:<44} {:<13} {}",
                    r.id,
                    if r.accepted {
                        "accepted"
                    } else {
                        "still refused"
                    },
                    r.detail
                );
            }
            println!(
                "{accepted} of {} put through; {} still in quarantine.",
                results.len(),
                results.len() - accepted
            );
            Ok(())
        }
    }
}
