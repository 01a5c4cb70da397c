//! `fdp audit` and `fdp policy`: the information-governance lead's tools.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_govern::AuditFilter;

use crate::instance::InstanceConfig;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit log: every entry chained to the one before, every
    /// checkpoint's signature. Says where anything was edited, removed or
    /// re-ordered; exits non-zero if so.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Who looked at what: entries filtered by principal, patient, purpose
    /// or time, oldest first, as JSON lines.
    Query {
        #[arg(long)]
        data_dir: PathBuf,
        /// Only this principal's accesses
        #[arg(long)]
        principal: Option<String>,
        /// Only accesses whose result named this patient (person id, NHS number or pseudonym)
        #[arg(long)]
        patient: Option<String>,
        /// Only this purpose
        #[arg(long)]
        purpose: Option<String>,
        /// Only entries of this kind (query, export, purpose, key-rotation, audit-review…)
        #[arg(long)]
        kind: Option<String>,
        /// Only entries at or after this instant or date (2026-11-14)
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this instant or date
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and summarise what it grants.
    Check { file: PathBuf },
}

pub fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { data_dir } => {
            let gov = InstanceConfig::governance_of(&data_dir)?;
            let v = gov.audit().verify().context("reading the audit log")?;
            if v.problems.is_empty() {
                println!(
                    "audit log intact: {} entries, {} signed checkpoints (last at entry {})",
                    v.entries,
                    v.checkpoints,
                    v.last_checkpoint
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none".into())
                );
                Ok(())
            } else {
                for p in &v.problems {
                    println!("{p}");
                }
                anyhow::bail!(
                    "the audit log has been tampered with: {} problems in {}",
                    v.problems.len(),
                    gov.audit().path().display()
                )
            }
        }
        AuditCommand::Query {
            data_dir,
            principal,
            patient,
            purpose,
            kind,
            since,
            until,
        } => {
            let instant = |flag: &str, s: Option<String>| {
                s.map(|s| {
                    AuditFilter::parse_instant(&s).with_context(|| {
                        format!("{flag} {s:?}: give 2026-11-14 or an RFC 3339 instant")
                    })
                })
                .transpose()
            };
            let filter = AuditFilter {
                principal,
                patient,
                purpose,
                kind,
                since: instant("--since", since)?,
                until: instant("--until", until)?,
            };
            let gov = InstanceConfig::governance_of(&data_dir)?;
            for e in gov.audit().entries()? {
                if filter.matches(&e) {
                    println!("{}", serde_json::to_string(&e)?);
                }
            }
            Ok(())
        }
    }
}

pub fn policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Check { file } => {
            let p = fdp_govern::Policy::load(&file, fdp_model::Model::canonical())?;
            println!("{}: valid (sha256 {})", file.display(), p.digest);
            for (name, role) in &p.roles {
                let purposes: Vec<&str> = role.grants.keys().map(|p| p.as_str()).collect();
                println!("  {name}: {}", purposes.join(", "));
            }
            Ok(())
        }
    }
}
