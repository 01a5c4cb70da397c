//! `fdp keys`: the instance's pseudonymisation keys.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_govern::{AuditEntry, Purpose};

use crate::instance::InstanceConfig;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the pseudonymisation keys: purpose, project and versions (never
    /// the secrets).
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Start a new version of a purpose's and project's key. Pseudonyms made
    /// from then on use it (`p2-…`), so extracts made either side of the
    /// rotation cannot be joined. Works while the instance runs: each new
    /// session picks up the newest version. Audited.
    Rotate {
        #[arg(long)]
        data_dir: PathBuf,
        /// direct-care, operations, planning or research
        #[arg(long)]
        purpose: Purpose,
        /// The project (for planning without one, `planning`)
        #[arg(long)]
        project: String,
        /// Who is rotating it, for the audit (default: the login name)
        #[arg(long)]
        by: Option<String>,
        /// Why, for the audit
        #[arg(long)]
        reason: String,
    },
}

pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::List { data_dir } => {
            let keys = fdp_govern::keystore::Keystore::open(&data_dir)
                .pseudonym_keys()
                .context("reading the keystore")?;
            if keys.is_empty() {
                println!("no pseudonymisation keys yet (one is made on first use)");
            }
            for (purpose, project, versions) in keys {
                let list: Vec<String> = versions.iter().map(|v| format!("v{v}")).collect();
                println!(
                    "{purpose:<12} {project:<24} {} (current v{})",
                    list.join(" "),
                    versions.last().copied().unwrap_or_default()
                );
            }
            Ok(())
        }
        KeysCommand::Rotate {
            data_dir,
            purpose,
            project,
            by,
            reason,
        } => {
            if reason.trim().is_empty() {
                anyhow::bail!("say why the key is rotated (--reason), for the audit");
            }
            let gov = InstanceConfig::governance_of(&data_dir)?;
            let key = gov
                .keystore()
                .rotate(purpose, &project)
                .with_context(|| format!("rotating the {purpose} key of {project}"))?;
            let who = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            gov.audit()
                .append(AuditEntry {
                    kind: "key-rotation".into(),
                    principal: who,
                    purpose: Some(purpose.as_str().into()),
                    project: Some(project.clone()),
                    justification: Some(reason),
                    channel: "cli".into(),
                    what: format!("rotate the pseudonymisation key to v{}", key.version),
                    outcome: "ok".into(),
                    ..AuditEntry::default()
                })
                .context("auditing the rotation")?;
            println!(
                "{purpose} key of {project} is now v{}; new pseudonyms start p{}-",
                key.version, key.version
            );
            Ok(())
        }
    }
}
