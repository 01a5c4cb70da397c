//! `fdp peer`: the instance's identity in the federation.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_federation::{FederationCa, InstanceIdentity, OrgRole};

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
