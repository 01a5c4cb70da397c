//! `fdp`: run an OpenFDP instance and work with its data.
//!
//! The binary only wires things together and talks to the person at the
//! terminal; everything it runs lives in the library crates.

mod audit;
mod bench;
mod bench_csv;
mod bench_distributed;
mod bench_elective;
mod bench_federation;
mod bench_fhir;
mod bench_flood;
mod bench_governed;
mod bench_plan;
mod bench_population;
mod bench_schedule;
mod bench_supply;
mod bench_year;
mod cluster;
mod demo;
mod demo_federation;
mod ingest;
mod instance;
mod keys;
mod marketplace;
mod mllp_client;
mod peer;
mod product;
mod projects;
mod quarantine;
mod reference;
mod schedule;
mod sql;
mod synth;
mod synth_population;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fdp",
    version,
    about = "OpenFDP: an open, federated data platform for health and care",
    long_about = "OpenFDP: an open, federated data platform for health and care.\n\n\
        Each organisation runs its own instance. It takes HL7 v2 ADT over MLLP, keeps every \
        record as received, maps it to the NHS FDP Canonical Data Model in versioned Delta \
        Lake tables, and serves a live bed board, an HTTP API and SQL.\n\n\
        Start with `fdp demo`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a federation on loopback: three synthetic trusts fed live by
    /// simulated PASes, their ICB, two care providers and the national
    /// instance
    Demo(demo::DemoArgs),
    /// Run an instance
    Serve(ServeArgs),
    /// Load files into an instance's data directory (the instance must not be running)
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// Query an instance's tables with SQL (works while the instance runs)
    Sql(sql::SqlArgs),
    /// List the canonical model's object types, or one type's properties
    Model(ModelArgs),
    /// Manage the access tokens of an instance
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure the instance's performance
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Records every source refused: list, show, and retry once fixed
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// The audit log: verify its chain, query who looked at what
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The access policy: check a draft before it goes live
    #[command(subcommand)]
    Policy(audit::PolicyCommand),
    /// The pseudonymisation keys: list them, rotate one
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The approved projects a research or planning session may name
    #[command(subcommand)]
    Projects(projects::ProjectsCommand),
    /// Products declared as data: check, install, roll back, list
    #[command(subcommand)]
    Product(product::ProductCommand),
    /// The instance's identity in the federation: an authority for a demo, the instance's certificate
    #[command(subcommand)]
    Peer(peer::PeerCommand),
    /// Write the synthetic trust's data to files
    #[command(subcommand)]
    Synth(synth::SynthCommand),
    /// Schedule admissions, theatres and nurses; price a schedule
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// UK reference data (postcodes, deprivation, geography, practices,
    /// ethnic categories, population) and each patient's area from it
    #[command(subcommand)]
    Reference(reference::ReferenceCommand),
    /// A cluster that runs instances' governed plans: its authority, the
    /// scheduler and the executors
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (keys: ods, data_dir, http, mllp, sql, canonical_interval_secs, import_dir, [[drop_folder]], [oidc])
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory (overrides the file)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address for the API and web UI, e.g. 127.0.0.1:8080
    #[arg(long)]
    http: Option<SocketAddr>,
    /// MLLP listen address for HL7 v2, e.g. 127.0.0.1:2575
    #[arg(long)]
    mllp: Option<SocketAddr>,
    /// PostgreSQL wire protocol listen address for SQL clients and BI tools, e.g. 127.0.0.1:5433
    #[arg(long)]
    sql: Option<SocketAddr>,
    /// ODS code of the organisation running the instance, e.g. RXX
    #[arg(long)]
    ods: Option<String>,
}

#[derive(Args)]
struct ModelArgs {
    /// An object type (name like WardStay or table like ward_stay); omit to list all
    object_type: Option<String>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create (or replace) a named token and print it once
    Create {
        /// Name of the person or service account
        name: String,
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // Delta's kernel logs an error for every table it is asked about that
    // does not exist yet, which a new data directory is full of.
    let quiet = |f: EnvFilter| match "buoyant_kernel::snapshot::builder=off".parse() {
        Ok(d)
            if !std::env::var("FDP_LOG")
                .unwrap_or_default()
                .contains("buoyant") =>
        {
            f.add_directive(d)
        }
        _ => f,
    };
    let filter = EnvFilter::try_from_env("FDP_LOG")
        .map(quiet)
        .unwrap_or_else(|_| {
            // Dependencies (Delta Lake above all) are chatty at info level.
            EnvFilter::new(
                "warn,fdp=info,fdp_store=info,fdp_ingest=info,fdp_server=info,\
             buoyant_kernel::snapshot::builder=off,deltalake_core::writer::stats=error",
            )
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// glibc gives threads that allocate at the same time arenas of their own,
/// up to eight per core, and seldom hands their free memory back. The
/// instance copies its census on one thread (the canonical writer, the
/// snapshots) and frees it on another; over a year of feed that held twice
/// the memory in use. On two cores (`fdp bench adt --year`, see
/// `docs/benchmarks.md`): 7.0 GiB at peak with glibc's sixteen arenas, 3.5
/// with four, 3.7 with two; `fdp bench adt`'s burst lost a fifth of its
/// throughput with two and none measurable with four. So two per core, at
/// most eight. An operator's own `MALLOC_ARENA_MAX` wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let arenas = std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).min(8));
        // SAFETY: called first thing in main, before any other thread
        // exists; mallopt only changes the allocator's tuning.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
    }
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Ingest(cmd) => ingest::run(cmd).await,
        Command::Sql(args) => sql::run(args).await,
        Command::Model(args) => model(args),
        Command::Token(TokenCommand::Create { name, data_dir }) => {
            let tokens = fdp_govern::TokenStore::open(&fdp_govern::TokenStore::path_in(&data_dir))?;
            let token = tokens.create(&name)?;
            println!("{token}");
            eprintln!("Token for {name} created. It is shown only now; the instance keeps its hash. A running instance picks it up on restart.");
            Ok(())
        }
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Quarantine(cmd) => quarantine::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd),
        Command::Policy(cmd) => audit::policy(cmd).await,
        Command::Keys(cmd) => keys::run(cmd),
        Command::Projects(cmd) => projects::run(cmd),
        Command::Product(cmd) => product::run(cmd).await,
        Command::Peer(cmd) => peer::run_async(cmd).await,
        Command::Synth(cmd) => synth::run(cmd).await,
        Command::Schedule(cmd) => schedule::run(cmd).await,
        Command::Reference(cmd) => reference::run(cmd).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => instance::InstanceConfig::load(path)?,
        None => instance::InstanceConfig::default(),
    };
    if args.data_dir.is_some() {
        config.data_dir = args.data_dir;
    }
    if args.http.is_some() {
        config.http = args.http;
    }
    if args.mllp.is_some() {
        config.mllp = args.mllp;
    }
    if args.sql.is_some() {
        config.sql = args.sql;
    }
    if args.ods.is_some() {
        config.ods = args.ods;
    }
    if config.http.is_none() && config.mllp.is_none() && config.sql.is_none() {
        anyhow::bail!("nothing to serve: give --http ADDR, --mllp ADDR and/or --sql ADDR (or set them in the configuration file)");
    }
    let running = instance::start(&config).await?;
    if let Some(token) = instance::ensure_admin_token(&running.tokens)? {
        eprintln!("Created the first access token, for `admin` (shown only now):\n  {token}");
    }
    if let Some(a) = running.mllp_addr {
        eprintln!("MLLP (HL7 v2) listening on {a}");
    }
    if let Some(a) = running.http_addr {
        let scheme = if config.http_tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        eprintln!("HTTP listening on {scheme}://{a}/  (sign in at {scheme}://{a}/login)");
    }
    if let Some(a) = running.sql_addr {
        eprintln!(
            "SQL (PostgreSQL protocol, TLS) listening on {a}  (psql \"host={} port={} dbname=<purpose> user=<name> sslmode=require\", password: your token)",
            a.ip(),
            a.port()
        );
    }
    if let Some(a) = running.federation_addr {
        eprintln!("Federation (mutual TLS) listening on {a}");
    }
    eprintln!("Press Ctrl-C to stop.");
    wait_for_signal().await;
    eprintln!("Stopping…");
    running.stop().await
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn model(args: ModelArgs) -> Result<()> {
    let model = fdp_model::Model::canonical();
    let text = match args.object_type {
        None => model.describe(),
        Some(name) => {
            let ot = model.find(&name).with_context(|| {
                format!("the model has no object type {name:?}; run `fdp model` for the list")
            })?;
            ot.describe()
        }
    };
    write_stdout(&text)
}

/// Print `text`; a reader that stops early (`fdp model | head`) is not an
/// error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
