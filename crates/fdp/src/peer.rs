//! `fdp peer`: the instance's identity in the federation.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_federation::questions::{Approvals, Question, Reach, ValueRange};
use fdp_federation::returns::ReturnDefinition;
use fdp_federation::{FederationCa, InstanceIdentity, OrgRole};

use crate::instance::InstanceConfig;

#[derive(Subcommand)]
pub enum PeerCommand {
    /// Make a federation certificate authority, for a demo or a test (in
    /// production the federation's own authority certifies instances)
    Ca {
        /// Directory to keep it in (ca.pem, and ca.key readable by you only)
        #[arg(long)]
        out: PathBuf,
        /// The federation's name, e.g. "West Yorkshire ICS"
        #[arg(long)]
        name: String,
    },
    /// Make this instance's key pair and have the authority certify it
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// The organisation's ODS code
        #[arg(long)]
        ods: String,
        /// trust, care-provider, icb or national
        #[arg(long)]
        role: String,
        /// The authority's directory (from `fdp peer ca`)
        #[arg(long)]
        ca: PathBuf,
    },
    /// Show this instance's identity and print its certificate, to give to peers
    Show {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Approve a federated question from a peer, as the IG lead (audited)
    Approve {
        #[arg(long)]
        data_dir: PathBuf,
        /// The asking instance's ODS code
        #[arg(long)]
        from: String,
        /// The question, as the asker published it (TOML: name, version,
        /// purpose, sql), or a return (name and `[[question]]`s): every
        /// question in it is approved
        #[arg(long, required_unless_present_any = ["daily_return", "offered"])]
        question: Option<PathBuf>,
        /// Approve the daily operational return's questions, as published
        /// with this release
        #[arg(long, conflicts_with_all = ["question", "offered"])]
        daily_return: bool,
        /// Approve the question a product installed here offers under this
        /// name (`product/question`, as `fdp product list` shows)
        #[arg(long, conflicts_with = "question")]
        offered: Option<String>,
        /// Who approves it
        #[arg(long)]
        by: String,
        /// Why, for the audit
        #[arg(long)]
        reason: String,
        /// The values a parameter may be asked with, NAME=MIN..MAX (a
        /// timestamp or date bound may be `now` or `now-Nd`); one for every
        /// parameter the question takes
        #[arg(long = "range", value_name = "NAME=MIN..MAX")]
        ranges: Vec<String>,
        /// How many days back the member's tables may be read (as_of);
        /// without it, only as they are now
        #[arg(long)]
        as_of_days: Option<u32>,
    },
    /// Withdraw an approval (audited); the question is declined from then on
    Withdraw {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        from: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: u32,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Ask the instance's peers a federated question and combine their answers
    Ask {
        #[arg(long)]
        data_dir: PathBuf,
        /// The configuration holding [federation] and its peers (default: instance.toml beside the data)
        #[arg(long)]
        config: Option<PathBuf>,
        /// The question (TOML: name, version, purpose, sql)
        #[arg(long, required_unless_present = "offered")]
        question: Option<PathBuf>,
        /// Ask the question a product installed here offers under this name
        /// (`product/question`)
        #[arg(long, conflicts_with = "question")]
        offered: Option<String>,
        /// A value for one of the question's parameters, NAME=VALUE
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        arguments: Vec<String>,
        /// Only these members (ODS codes, comma-separated); default every peer
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
        /// Who asks: named in this instance's audit and in every member's
        #[arg(long = "as")]
        asked_by: String,
    },
    /// Messages to peers: queued, delivered, failed with the reason
    Outbox {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub async fn run_async(cmd: PeerCommand) -> Result<()> {
    match cmd {
        PeerCommand::Ask {
            data_dir,
            config,
            question,
            offered,
            arguments,
            members,
            asked_by,
        } => {
            let config = InstanceConfig::for_data_dir(&data_dir, config.as_deref())?;
            let governance = config.governance(&data_dir)?;
            let fed = config.federation(&data_dir, &governance)?;
            let q = match (question, offered) {
                (Some(path), _) => Question::load(&path).map_err(anyhow::Error::msg)?,
                (None, Some(name)) => offered_question(&data_dir, &governance, &name)?,
                (None, None) => anyhow::bail!("name a --question file or an --offered question"),
            };
            let mut given = q.arguments.clone();
            for a in &arguments {
                let (name, value) = a
                    .split_once('=')
                    .with_context(|| format!("--arg {a}: give NAME=VALUE"))?;
                given.insert(name.trim().to_string(), value.trim().to_string());
            }
            let q = q.with_arguments(given);
            let members = if members.is_empty() {
                fed.peers().iter().map(|p| p.ods.clone()).collect()
            } else {
                members
            };
            let answers = fdp_federation::questions::ask(&fed, &q, &members, &asked_by)
                .await
                .map_err(anyhow::Error::msg)?;
            let combined = fdp_federation::questions::combine(&answers);
            let summed = combined_by_product(&data_dir, &governance, &q.name, &answers)?;
            let count = |s: &str| answers.iter().filter(|a| a.status == s).count();
            eprintln!(
                "{} v{}: {} answered, {} declined, {} unreachable, {} refused",
                q.name,
                q.version,
                count("answered"),
                count("declined"),
                count("unreachable"),
                count("refused")
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "question": q.name,
                    "version": q.version,
                    "members": answers,
                    "rows": combined,
                    "combined": summed,
                }))?
            );
            Ok(())
        }
        other => run(other),
    }
}

pub fn run(cmd: PeerCommand) -> Result<()> {
    match cmd {
        PeerCommand::Ca { out, name } => {
            FederationCa::create(&out, &name)
                .with_context(|| format!("making an authority in {}", out.display()))?;
            println!(
                "federation authority {name:?} made in {}: give ca.pem to every instance, keep ca.key safe",
                out.display()
            );
            Ok(())
        }
        PeerCommand::Init {
            data_dir,
            ods,
            role,
            ca,
        } => {
            let role: OrgRole = role.parse()?;
            let authority = FederationCa::open(&ca)
                .with_context(|| format!("opening the authority in {}", ca.display()))?;
            let id = InstanceIdentity::init(&data_dir, &ods, role, &authority)?;
            println!(
                "{} ({}) certified by the federation authority; certificate in {}",
                id.ods,
                id.role,
                fdp_federation::identity::dir_in(&data_dir)
                    .join("instance.pem")
                    .display()
            );
            Ok(())
        }
        PeerCommand::Approve {
            data_dir,
            from,
            question,
            daily_return,
            offered,
            by,
            reason,
            ranges,
            as_of_days,
        } => {
            let mut reach = Reach {
                as_of_days,
                ..Reach::default()
            };
            for r in &ranges {
                let (name, range) = r
                    .split_once('=')
                    .with_context(|| format!("--range {r}: give NAME=MIN..MAX"))?;
                let range: ValueRange = range
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--range {name}: {e}"))?;
                reach.ranges.insert(name.trim().to_string(), range);
            }
            let questions = match question {
                None if daily_return => ReturnDefinition::daily_operational().questions,
                None => match &offered {
                    Some(name) => vec![offered_question(
                        &data_dir,
                        &InstanceConfig::governance_of(&data_dir)?,
                        name,
                    )?],
                    None => anyhow::bail!("name a --question file, --daily-return or --offered"),
                },
                Some(path) => match Question::load(&path) {
                    Ok(q) => vec![q],
                    Err(as_question) => ReturnDefinition::load(&path)
                        .map(|r| r.questions)
                        .map_err(|_| anyhow::anyhow!("{as_question}"))
                        .context("not a question, nor a return of [[question]]s")?,
                },
            };
            let governance = InstanceConfig::governance_of(&data_dir)?;
            let approvals = Approvals::open(&data_dir);
            for q in &questions {
                approvals
                    .approve(&governance, &from, q, &by, &reason, reach.clone())
                    .map_err(anyhow::Error::msg)?;
                println!(
                    "{} v{} from {from} approved (sha256 {})",
                    q.name,
                    q.version,
                    q.digest()
                );
            }
            Ok(())
        }
        PeerCommand::Withdraw {
            data_dir,
            from,
            name,
            version,
            by,
            reason,
        } => {
            let governance = InstanceConfig::governance_of(&data_dir)?;
            Approvals::open(&data_dir)
                .withdraw(&governance, &from, &name, version, &by, &reason)
                .map_err(anyhow::Error::msg)?;
            println!("{name} v{version} from {from}: approval withdrawn");
            Ok(())
        }
        PeerCommand::Outbox { data_dir } => {
            let outbox =
                fdp_federation::Outbox::open(&fdp_federation::identity::dir_in(&data_dir))?;
            for m in outbox.list()? {
                println!(
                    "{}  {:<9} {:<12} to {:<8} attempts {}  {}",
                    m.queued_at.format("%Y-%m-%d %H:%M:%S"),
                    m.state.as_str(),
                    m.envelope.kind,
                    m.envelope.to,
                    m.attempts,
                    m.last_error.unwrap_or_default()
                );
            }
            Ok(())
        }
        PeerCommand::Ask { .. } => unreachable!("asked in run_async"),
        PeerCommand::Show { data_dir } => {
            let id = InstanceIdentity::open(&data_dir).with_context(|| {
                format!(
                    "no federation identity in {}: make one with `fdp peer init`",
                    data_dir.display()
                )
            })?;
            println!("# {} ({})", id.ods, id.role);
            print!("{}", id.cert_pem());
            Ok(())
        }
    }
}

/// The products in use at this instance: built in, or installed from a
/// folder or the marketplace.
fn catalogue(
    data_dir: &std::path::Path,
    governance: &fdp_govern::Governance,
) -> fdp_products::installed::Catalogue {
    fdp_products::installed::Catalogue::new(
        fdp_products::platform::Registry::builtin(),
        data_dir,
        std::sync::Arc::new(governance.policy().clone()),
    )
}

/// The members' answers combined by the product in use here that offers
/// the question, where it combines them.
fn combined_by_product(
    data_dir: &std::path::Path,
    governance: &fdp_govern::Governance,
    question: &str,
    answers: &[fdp_federation::questions::MemberAnswer],
) -> Result<Option<serde_json::Value>> {
    let catalogue = catalogue(data_dir, governance);
    fdp_federation::questions::combined_by_product(&catalogue.registry(), question, answers)
        .map_err(anyhow::Error::msg)
}

/// The question a product in use at this instance (built in, or installed
/// from a folder or the marketplace) offers the federation under `name`.
fn offered_question(
    data_dir: &std::path::Path,
    governance: &fdp_govern::Governance,
    name: &str,
) -> Result<Question> {
    let catalogue = catalogue(data_dir, governance);
    let offered: Vec<fdp_products::platform::QuestionSpec> = catalogue
        .registry()
        .manifests()
        .into_iter()
        .flat_map(|m| m.offers.questions)
        .collect();
    let spec = offered.iter().find(|q| q.name == name).with_context(|| {
        format!(
            "no product in use here offers a question {name:?}; offered: {}",
            offered
                .iter()
                .map(|q| q.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    Question::from_spec(spec).map_err(anyhow::Error::msg)
}
