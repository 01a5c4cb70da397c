//! `fdp product`: products declared as data (a folder with `product.toml`
//! and SQL). Installing checks the folder against the canonical model and
//! the instance's policy; every version is kept and an upgrade can be
//! rolled back. Installing and rolling back are for a principal whose role
//! reviews the audit (the information-governance lead), and are audited.
//!
//! Products are also offered across the federation (see
//! [`crate::marketplace`]): `publish`, `list --offered`, `approve`,
//! `decline`, and `install --offered` once approved.

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
        #[command(flatten)]
        at: Instance,
        /// Instead, the products offered to this instance by its peers (asked
        /// of every peer that listens), each with what it reads, for which
        /// purposes, and whether it is new, an update, approved or declined
        #[arg(long)]
        offered: bool,
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
        /// The product's folder
        #[arg(required_unless_present = "offered", conflicts_with = "offered")]
        dir: Option<PathBuf>,
        /// Instead, a product offered through the federation (ID or
        /// ID@VERSION), which the IG lead has approved
        #[arg(long)]
        offered: Option<String>,
    },
    /// Offer a declared product to the federation's peers, signed with this
    /// instance's key (the IG lead; audited). Only its definition leaves.
    Publish {
        #[command(flatten)]
        at: Instance,
        #[arg(long)]
        by: String,
        /// Only these peers (ODS codes, comma-separated); default every peer
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        dir: PathBuf,
    },
    /// Approve a product offered through the federation, after reviewing
    /// what it reads and for which purposes, and install it (the IG lead;
    /// audited, and the peer that offered it is told)
    Approve(Decision),
    /// Decline a product offered through the federation (the IG lead;
    /// audited, and the peer that offered it is told)
    Decline(Decision),
    /// Put back in use the version installed before the one in use
    Rollback {
        #[command(flatten)]
        at: Instance,
        #[arg(long)]
        by: String,
        id: String,
    },
    /// Answer one of a product's views as a principal of the instance's
    /// configuration, for a declared purpose, through the same governed
    /// path as the API: JSON (the columns, with where each comes from, and
    /// the rows) or CSV
    View {
        #[command(flatten)]
        at: Instance,
        /// The product, e.g. population-health
        product: String,
        /// The view, e.g. uptake
        view: String,
        /// The principal (in the instance's configuration) asking
        #[arg(long)]
        by: String,
        /// direct-care, operations, planning or research
        #[arg(long)]
        purpose: fdp_govern::Purpose,
        /// The approved project, for research or a project's planning
        #[arg(long)]
        project: Option<String>,
        /// A parameter, NAME=VALUE (repeat for each)
        #[arg(long = "param", value_parser = name_value)]
        params: Vec<(String, String)>,
        /// json or csv
        #[arg(long, default_value = "json")]
        format: String,
    },
}

fn name_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, v)| (n.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// Answer a product's view through a governed session of `by` for `purpose`.
#[allow(clippy::too_many_arguments)]
async fn view(
    at: &Instance,
    product: &str,
    view: &str,
    by: &str,
    purpose: fdp_govern::Purpose,
    project: Option<String>,
    params: Vec<(String, String)>,
    format: &str,
) -> Result<()> {
    anyhow::ensure!(
        matches!(format, "json" | "csv"),
        "--format is json or csv, not {format:?}"
    );
    let config = crate::instance::InstanceConfig::for_data_dir(&at.data_dir, at.config.as_deref())?;
    let governance = config.governance(&at.data_dir)?;
    let principal = config.local_principal(by);
    let tables = fdp_store::StoredTables::new(&at.data_dir);
    let mut req = fdp_govern::SessionRequest::new(principal, purpose, "cli");
    req.project = project;
    let session = governance
        .session(&tables, req)
        .await
        .with_context(|| format!("opening a governed session for {by} ({purpose})"))?;
    let given: std::collections::BTreeMap<String, String> = params.into_iter().collect();
    let registry = fdp_products::platform::Registry::builtin();
    let output = fdp_products::platform::run_view(&registry, product, view, &session, &given)
        .await
        .with_context(|| format!("{product}/{view}"))?;
    if format == "csv" {
        print!("{}", output.to_csv());
    } else {
        println!("{}", serde_json::to_string_pretty(&output)?);
    }
    Ok(())
}

/// The IG lead's decision on a product offered.
#[derive(Args)]
pub struct Decision {
    #[command(flatten)]
    at: Instance,
    #[arg(long)]
    by: String,
    /// Why, for the audit
    #[arg(long)]
    reason: String,
    /// The product, ID or ID@VERSION (default its latest version offered)
    product: String,
}

impl Decision {
    async fn decide(self, approve: bool) -> Result<()> {
        crate::marketplace::decide(
            &self.at.data_dir,
            self.at.config.as_deref(),
            &self.by,
            &self.product,
            approve,
            &self.reason,
        )
        .await
    }
}

/// The instance a command acts on.
#[derive(Args)]
pub struct Instance {
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The instance's configuration, for the policy and the roles of `--by`
    /// (default: instance.toml in the data directory, if there is one)
    #[arg(long, env = "FDP_CONFIG")]
    pub config: Option<PathBuf>,
}

pub async fn run(cmd: ProductCommand) -> Result<()> {
    match cmd {
        ProductCommand::View {
            at,
            product,
            view: name,
            by,
            purpose,
            project,
            params,
            format,
        } => view(&at, &product, &name, &by, purpose, project, params, &format).await,
        ProductCommand::List { at, offered: true } => {
            crate::marketplace::list_offered(&at.data_dir, at.config.as_deref()).await
        }
        ProductCommand::Install {
            at,
            by,
            offered: Some(product),
            ..
        } => crate::marketplace::install_offered(&at.data_dir, at.config.as_deref(), &by, &product),
        ProductCommand::Publish { at, by, to, dir } => {
            crate::marketplace::publish(&at.data_dir, at.config.as_deref(), &by, &to, &dir).await
        }
        ProductCommand::Approve(d) => d.decide(true).await,
        ProductCommand::Decline(d) => d.decide(false).await,
        ProductCommand::List { at, .. } => {
            let data_dir = at.data_dir;
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
        ProductCommand::Install { at, by, dir, .. } => {
            let dir = dir.context("name the product's folder, or --offered ID")?;
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
