//! `fdp cluster`: an Apache Ballista cluster that runs instances' governed
//! plans, on a private network with mutual TLS (see `docs/scale.md`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_cluster::executor::ExecutorOptions;
use fdp_cluster::scheduler::SchedulerOptions;
use fdp_cluster::{ClusterAuthority, ClusterMember, Role};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Make the cluster's certificate authority (keep its directory off the
    /// cluster's machines)
    Ca {
        /// Directory to keep it in (ca.pem, and ca.key readable by you only)
        #[arg(long)]
        out: PathBuf,
        /// The cluster's name, e.g. "national"
        #[arg(long)]
        name: String,
    },
    /// Certify a member: a scheduler, an executor, or an instance that may
    /// submit plans
    Issue {
        /// The authority's directory (from `fdp cluster ca`)
        #[arg(long)]
        ca: PathBuf,
        /// Directory to write the member's certificate and key to
        #[arg(long)]
        out: PathBuf,
        /// The member's name, e.g. executor-1 or the instance's ODS code
        #[arg(long)]
        name: String,
        /// scheduler, executor or instance
        #[arg(long)]
        role: Role,
        /// Names or addresses other members reach it at (loopback is always
        /// included)
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Run the scheduler
    Scheduler {
        /// Its certificate (from `fdp cluster issue --role scheduler`)
        #[arg(long)]
        member: PathBuf,
        /// Listen address, e.g. 10.0.0.5:50050 (port 0 picks one, printed)
        #[arg(long)]
        listen: SocketAddr,
        /// Seconds an executor may go without polling before its tasks go
        /// to another
        #[arg(long, default_value_t = 30)]
        executor_timeout_secs: u64,
        /// Times a task may fail, an executor lost under it included,
        /// before its query fails
        #[arg(long, default_value_t = 4)]
        task_max_failures: usize,
    },
    /// Run an executor
    Executor {
        /// Its certificate (from `fdp cluster issue --role executor`)
        #[arg(long)]
        member: PathBuf,
        /// The scheduler, https://host:port
        #[arg(long)]
        scheduler: String,
        /// Listen address of its Flight service, from which results and
        /// shuffles are fetched (port 0 picks one, printed)
        #[arg(long)]
        flight: SocketAddr,
        /// The host the others reach its Flight service at (default: the
        /// listen address's)
        #[arg(long)]
        advertise_host: Option<String>,
        /// A directory holding a copy of the instance's `keystore/`, for
        /// the pseudonyms its plans make
        #[arg(long)]
        keys: PathBuf,
        /// Where shuffle output is written
        #[arg(long)]
        work_dir: PathBuf,
        /// Tasks it runs at once
        #[arg(long, default_value_t = 2)]
        slots: usize,
    },
}

pub async fn run(cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Ca { out, name } => {
            ClusterAuthority::create(&out, &name)?;
            println!(
                "Cluster authority {name:?} made in {}. Keep ca.key off the cluster's machines.",
                out.display()
            );
            Ok(())
        }
        ClusterCommand::Issue {
            ca,
            out,
            name,
            role,
            hosts,
        } => {
            let authority = ClusterAuthority::open(&ca)
                .with_context(|| format!("opening the cluster authority in {}", ca.display()))?;
            authority.issue(&out, &name, role, &hosts)?;
            println!("{role} {name} certified in {}", out.display());
            Ok(())
        }
        ClusterCommand::Scheduler {
            member,
            listen,
            executor_timeout_secs,
            task_max_failures,
        } => {
            let member = ClusterMember::open(&member)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let addr = listener.local_addr()?;
            println!("scheduler {}", fdp_cluster::scheduler::url_of(addr));
            let options = SchedulerOptions {
                member,
                executor_timeout: Duration::from_secs(executor_timeout_secs),
                task_max_failures,
            };
            fdp_cluster::scheduler::run(options, listener, crate::wait_for_signal()).await?;
            Ok(())
        }
        ClusterCommand::Executor {
            member,
            scheduler,
            flight,
            advertise_host,
            keys,
            work_dir,
            slots,
        } => {
            let member = ClusterMember::open(&member)?;
            if member.role != Role::Executor {
                anyhow::bail!(
                    "{} is certified as a cluster {}: an executor needs `fdp cluster issue --role executor`",
                    member.name,
                    member.role
                );
            }
            let listener = tokio::net::TcpListener::bind(flight)
                .await
                .with_context(|| format!("listening on {flight}"))?;
            let addr = listener.local_addr()?;
            println!("executor flight {addr}");
            let options = ExecutorOptions {
                member,
                scheduler,
                advertise_host: advertise_host.unwrap_or_else(|| addr.ip().to_string()),
                keystore_dir: keys,
                work_dir,
                task_slots: slots,
            };
            fdp_cluster::executor::run(options, listener, crate::wait_for_signal()).await?;
            Ok(())
        }
    }
}
