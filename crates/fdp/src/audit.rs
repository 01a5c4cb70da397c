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
    /// Write the instance's policy as Spark SQL views over its stored Delta
    /// tables, for Spark or Databricks (see docs/scale.md)
    ExportViews {
        /// The instance's data directory (its tables and their columns)
        #[arg(long)]
        data_dir: PathBuf,
        /// The instance's configuration (its policy file, storage)
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only this role's grants (default: every role's)
        #[arg(long)]
        role: Option<String>,
        /// Only grants for this purpose (default: every purpose)
        #[arg(long)]
        purpose: Option<fdp_govern::Purpose>,
        /// The schema the stored tables are registered in; grant it to no one
        #[arg(long, default_value = "fdp_canonical")]
        source_schema: String,
        /// Views go in schemas named PREFIX_ROLE_PURPOSE
        #[arg(long, default_value = "fdp")]
        schema_prefix: String,
        /// Write the SQL here instead of to standard output
        #[arg(long)]
        out: Option<PathBuf>,
    },
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

pub async fn policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::ExportViews {
            data_dir,
            config,
            role,
            purpose,
            source_schema,
            schema_prefix,
            out,
        } => {
            let config = InstanceConfig::for_data_dir(&data_dir, config.as_deref())?;
            let governance = config.governance(&data_dir)?;
            let stored = stored_tables(&data_dir).await?;
            let options = fdp_govern::spark_views::ExportOptions {
                source_schema,
                schema_prefix,
                role,
                purpose,
            };
            let sql = fdp_govern::spark_views::spark_views(
                governance.policy(),
                fdp_model::Model::canonical(),
                &stored,
                &options,
            )?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &sql)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "views over {} stored tables written to {}",
                        stored.len(),
                        path.display()
                    );
                }
                None => print!("{sql}"),
            }
            Ok(())
        }
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

/// Every stored canonical table (each part of one) with its location and
/// its columns as stored now.
async fn stored_tables(
    data_dir: &std::path::Path,
) -> Result<Vec<fdp_govern::spark_views::StoredTable>> {
    use fdp_store::tables::{self, Layer};
    let mut out = Vec::new();
    for name in tables::list_tables(data_dir, Layer::Canonical).await? {
        let at = tables::table_location(data_dir, Layer::Canonical, &name)?;
        let table = tables::open(&at, None)
            .await
            .with_context(|| format!("opening the stored table {name}"))?;
        let schema = table
            .snapshot()
            .with_context(|| format!("reading {name}'s schema"))?
            .snapshot()
            .arrow_schema();
        let (table_name, part) = tables::split_part(&name);
        let url = at.url();
        out.push(fdp_govern::spark_views::StoredTable {
            table: table_name.to_string(),
            part: part.map(str::to_string),
            location: if url.scheme() == "file" {
                url.to_file_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| url.to_string())
            } else {
                url.to_string()
            },
            schema: schema.as_ref().clone(),
        });
    }
    Ok(out)
}
