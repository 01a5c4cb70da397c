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
        /// A head published earlier (`fdp audit head`), as a file: the log
        /// must still hold it. Repeat for several.
        #[arg(long = "head")]
        heads: Vec<PathBuf>,
        /// The audit signing key's public half as published (hex); by
        /// default the one the heads carry. Checkpoints signed by any other
        /// key are refused.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Sign the latest entry and print the head (JSON) to keep outside the
    /// instance: with it, `verify --head` catches entries cut off the end
    /// or a signing key replaced together with the log.
    Head {
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
        AuditCommand::Head { data_dir } => {
            let gov = InstanceConfig::governance_of(&data_dir)?;
            match gov.audit().head().context("signing the audit log's head")? {
                Some(h) => println!("{}", serde_json::to_string_pretty(&h)?),
                None => anyhow::bail!("the audit log is empty: nothing to sign yet"),
            }
            Ok(())
        }
        AuditCommand::Verify {
            data_dir,
            heads,
            public_key,
        } => {
            let heads = heads
                .iter()
                .map(|p| {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading the head {}", p.display()))?;
                    serde_json::from_str::<fdp_govern::audit::Head>(&text).with_context(|| {
                        format!("{} is not a head printed by `fdp audit head`", p.display())
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let gov = InstanceConfig::governance_of(&data_dir)?;
            let v = gov
                .audit()
                .verify_anchored(public_key.as_deref(), &heads)
                .context("reading the audit log")?;
            if v.problems.is_empty() {
                println!(
                    "audit log intact: {} entries, {} signed checkpoints (last at entry {}){}",
                    v.entries,
                    v.checkpoints,
                    v.last_checkpoint
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none".into()),
                    if heads.is_empty() {
                        String::new()
                    } else {
                        format!(", holding the {} published heads", heads.len())
                    }
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
