//! `fdp product`: products declared as data (a folder with `product.toml`
//! and SQL). Installing checks the folder against the canonical model and
//! the instance's policy; every version is kept and an upgrade can be
//! rolled back. Installing and rolling back are for a principal whose role
//! reviews the audit (the information-governance lead), and are audited.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fdp_products::declared::DeclaredProduct;
use fdp_products::installed::Installed;
use fdp_products::platform::{Product, Registry};

use crate::instance::InstanceConfig;

#[derive(Subcommand)]
pub enum ProductCommand {
    /// The products this instance serves: built in, and installed with the version in use
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Check a declared product's folder against the model and the policy, without installing it
    Check {
        #[command(flatten)]
        at: Instance,
        /// The product's folder (product.toml and its SQL files)
        dir: PathBuf,
    },
    /// Install a declared product's folder (or a new version of it) and put it in use
    Install {
        #[command(flatten)]
        at: Instance,
        /// A principal whose role reviews the audit (the IG lead)
        #[arg(long)]
        by: String,
        dir: PathBuf,
    },
    /// Put back in use the version installed before the one in use
    Rollback {
        #[command(flatten)]
        at: Instance,
        #[arg(long)]
        by: String,
        id: String,
    },
}

/// The instance a command acts on.
#[derive(Args)]
pub struct Instance {
    #[arg(long)]
    data_dir: PathBuf,
    /// The instance's configuration, for the policy and the roles of `--by`
    /// (default: instance.toml in the data directory, if there is one)
    #[arg(long, env = "FDP_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(cmd: ProductCommand) -> Result<()> {
    match cmd {
        ProductCommand::List { data_dir } => {
            for m in Registry::builtin().manifests() {
                println!("{:<28} {:<8} built in    {}", m.id, m.version, m.title);
            }
            let installed = Installed::open(&data_dir).all()?;
            for p in installed.values() {
                println!(
                    "{:<28} {:<8} installed   from {}; versions {}",
                    p.id,
                    p.active,
                    p.publisher,
                    p.versions
                        .iter()
                        .map(|v| v.version.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
        ProductCommand::Check { at, dir } => {
            let config = InstanceConfig::for_data_dir(&at.data_dir, at.config.as_deref())?;
            let gov = config.governance(&at.data_dir)?;
            let p = DeclaredProduct::load(&dir, gov.policy())?;
            let m = p.manifest();
            println!(
                "{} {}: {} view(s), reads {}, for {}",
                m.id,
                m.version,
                m.views.len(),
                m.reads
                    .iter()
                    .map(|r| r.table.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                m.purposes
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        ProductCommand::Install { at, by, dir } => {
            let config = InstanceConfig::for_data_dir(&at.data_dir, at.config.as_deref())?;
            let gov = config.governance(&at.data_dir)?;
            let who = config.local_principal(&by);
            let product = DeclaredProduct::load(&dir, gov.policy())?;
            let m = product.manifest();
            let what = format!("install product {} {}", m.id, m.version);
            let installed = Installed::open(&at.data_dir);
            let p = gov
                .reviewed_change(&who, "product", "cli", what.clone(), || {
                    installed.install(&product, &Registry::builtin()).map(|p| {
                        let digest = p
                            .versions
                            .iter()
                            .find(|v| v.version == p.active)
                            .map(|v| v.digest.clone())
                            .unwrap_or_default();
                        let decisions = vec![
                            format!("publisher {}; files digest {digest}", p.publisher),
                            format!(
                                "reads {}",
                                m.reads
                                    .iter()
                                    .map(|r| format!("{}({})", r.table, r.columns.join(", ")))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ),
                            format!(
                                "for {}",
                                m.purposes
                                    .iter()
                                    .map(|p| p.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ];
                        (p, decisions)
                    })
                })
                .with_context(|| what.clone())?;
            println!("{} {} installed and in use", p.id, p.active);
            Ok(())
        }
        ProductCommand::Rollback { at, by, id } => {
            let config = InstanceConfig::for_data_dir(&at.data_dir, at.config.as_deref())?;
            let gov = config.governance(&at.data_dir)?;
            let who = config.local_principal(&by);
            let what = format!("roll back product {id}");
            let installed = Installed::open(&at.data_dir);
            let p = gov
                .reviewed_change(&who, "product", "cli", what.clone(), || {
                    installed
                        .rollback(&id)
                        .map(|p| (p.clone(), vec![format!("now in use: {}", p.active)]))
                })
                .with_context(|| what.clone())?;
            println!("{} rolled back: {} in use", p.id, p.active);
            Ok(())
        }
    }
}
