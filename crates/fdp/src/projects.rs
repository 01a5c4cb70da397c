//! `fdp projects`: the approved projects a research or planning session may
//! name, and who is on each. Only a principal whose role reviews the audit
//! (the information-governance lead) changes them; every change is audited.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fdp_govern::projects::{ExtractSpec, Project};
use fdp_govern::Purpose;

use crate::instance::InstanceConfig;

#[derive(Subcommand)]
pub enum ProjectsCommand {
    /// List the projects: name, purpose, status, who is on each
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Register an approved project
    Register {
        #[command(flatten)]
        by: Acting,
        /// The name sessions give (`--project`, `X-Project`, the UI)
        name: String,
        /// research, or planning
        #[arg(long)]
        purpose: Purpose,
        /// What it is and its approval (ethics reference, data sharing agreement)
        #[arg(long)]
        title: String,
        /// A principal on the project (repeat for each)
        #[arg(long = "principal")]
        principals: Vec<String>,
    },
    /// Add principals to a project
    Add {
        #[command(flatten)]
        by: Acting,
        name: String,
        #[arg(long = "principal", required = true)]
        principals: Vec<String>,
    },
    /// Take principals off a project
    Remove {
        #[command(flatten)]
        by: Acting,
        name: String,
        #[arg(long = "principal", required = true)]
        principals: Vec<String>,
    },
    /// Close a project: no session may name it from now on (its keys are
    /// kept, for re-identification in direct care)
    Close {
        #[command(flatten)]
        by: Acting,
        name: String,
    },
    /// Approve an extract specification for a research project: the
    /// pseudonymised files a researcher on it may take out, row by row, each
    /// one query fixed now (replaces an extract of the same name)
    ApproveExtract {
        #[command(flatten)]
        by: Acting,
        /// The research project
        name: String,
        /// The specification (TOML: name, description, [[file]] name and sql)
        #[arg(long)]
        spec: PathBuf,
    },
    /// Withdraw an approved extract: no session may take it from now on
    WithdrawExtract {
        #[command(flatten)]
        by: Acting,
        /// The research project
        name: String,
        /// The extract's name
        extract: String,
    },
}

/// Who makes a change, in which instance.
#[derive(Args)]
pub struct Acting {
    #[arg(long)]
    data_dir: PathBuf,
    /// The instance's configuration, for the policy and the roles of `--by`
    /// (default: instance.toml in the data directory, if there is one)
    #[arg(long, env = "FDP_CONFIG")]
    config: Option<PathBuf>,
    /// A principal whose role reviews the audit (the IG lead)
    #[arg(long)]
    by: String,
}

impl Acting {
    /// The instance's governance, and the principal `--by` names in it.
    fn open(&self) -> Result<(fdp_govern::Governance, fdp_govern::Principal)> {
        let config = InstanceConfig::for_data_dir(&self.data_dir, self.config.as_deref())?;
        Ok((
            config.governance(&self.data_dir)?,
            config.local_principal(&self.by),
        ))
    }
}

pub fn run(cmd: ProjectsCommand) -> Result<()> {
    type Change = Box<dyn FnOnce(&mut Project)>;
    let (acting, name, what, change): (Acting, String, String, Change) = match cmd {
        ProjectsCommand::List { data_dir } => {
            let gov = InstanceConfig::governance_of(&data_dir)?;
            let all = gov.projects().all()?;
            if all.is_empty() {
                println!("no approved projects (register one with `fdp projects register`)");
            }
            for p in all.values() {
                println!(
                    "{:<24} {:<9} {:<7} {} — {}",
                    p.name,
                    p.purpose,
                    if p.closed_at.is_some() {
                        "closed"
                    } else {
                        "open"
                    },
                    p.principals_listed(),
                    p.title
                );
                for x in p.extracts.values() {
                    println!(
                        "    extract {} (spec {}), approved by {}: {}",
                        x.name,
                        x.digest(),
                        x.approved_by.as_deref().unwrap_or("?"),
                        x.file_names()
                    );
                }
            }
            return Ok(());
        }
        ProjectsCommand::Register {
            by,
            name,
            purpose,
            title,
            principals,
        } => {
            if title.trim().is_empty() {
                anyhow::bail!("say what the project is and its approval (--title), for the audit");
            }
            let (gov, who) = by.open()?;
            let project = Project {
                name: name.clone(),
                purpose,
                title,
                principals: principals.into_iter().collect(),
                registered_by: who.name.clone(),
                registered_at: chrono::Utc::now(),
                closed_at: None,
                extracts: Default::default(),
            };
            let p = gov
                .manage_project(
                    &who,
                    "cli",
                    format!("register project {name}"),
                    |projects| projects.register(project.clone()).map(|()| project),
                )
                .with_context(|| format!("registering project {name}"))?;
            println!("project {} registered for {}", p.name, p.purpose);
            return Ok(());
        }
        ProjectsCommand::Add {
            by,
            name,
            principals,
        } => (
            by,
            name.clone(),
            format!("add {} to project {name}", principals.join(", ")),
            Box::new(move |p: &mut Project| p.principals.extend(principals)),
        ),
        ProjectsCommand::Remove {
            by,
            name,
            principals,
        } => (
            by,
            name.clone(),
            format!("remove {} from project {name}", principals.join(", ")),
            Box::new(move |p: &mut Project| {
                for r in &principals {
                    p.principals.remove(r);
                }
            }),
        ),
        ProjectsCommand::ApproveExtract { by, name, spec } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec = ExtractSpec::from_toml(&text)
                .with_context(|| format!("checking {}", spec.display()))?;
            let (gov, who) = by.open()?;
            let extract = spec.name.clone();
            let what = format!("approve extract {extract} for project {name}");
            gov.manage_project(&who, "cli", what.clone(), |projects| {
                projects.approve_extract(&name, spec, &who.name)
            })
            .with_context(|| what.clone())?;
            println!("extract {extract} approved for project {name}");
            return Ok(());
        }
        ProjectsCommand::WithdrawExtract { by, name, extract } => {
            let (gov, who) = by.open()?;
            let what = format!("withdraw extract {extract} from project {name}");
            gov.manage_project(&who, "cli", what.clone(), |projects| {
                projects.withdraw_extract(&name, &extract)
            })
            .with_context(|| what.clone())?;
            println!("extract {extract} withdrawn from project {name}");
            return Ok(());
        }
        ProjectsCommand::Close { by, name } => (
            by,
            name.clone(),
            format!("close project {name}"),
            Box::new(|p: &mut Project| p.closed_at = Some(chrono::Utc::now())),
        ),
    };
    let (gov, who) = acting.open()?;
    let p = gov
        .manage_project(&who, "cli", what.clone(), |projects| {
            projects.update(&name, change)
        })
        .with_context(|| what.clone())?;
    println!(
        "project {}: {}{}",
        p.name,
        p.principals_listed(),
        if p.closed_at.is_some() {
            " (closed)"
        } else {
            ""
        }
    );
    Ok(())
}
