//! One running instance: store, live census, MLLP listener and HTTP server,
//! started together and stopped in order so that nothing acknowledged is
//! lost and the canonical tables end up current.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fdp_govern::TokenStore;
use fdp_ingest::hl7v2::Receiver;
use fdp_ingest::live::{self, Live};
use fdp_ingest::mllp::{self, MllpConfig, MllpStats};
use fdp_server::{AppState, InstanceInfo};
use fdp_store::{Store, StoreConfig};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How an instance is configured: a TOML file, overridden by flags.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// ODS code of the organisation running the instance, e.g. `RXX`.
    pub ods: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address (API and web UI).
    pub http: Option<SocketAddr>,
    /// The HTTP listener's TLS certificate chain and key (PEM): with them it
    /// serves HTTPS only, and the UI's cookies are `Secure`. Without them it
    /// serves plain HTTP, for loopback or behind a proxy that ends TLS.
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    /// MLLP listen address (HL7 v2).
    pub mllp: Option<SocketAddr>,
    /// PostgreSQL wire protocol listen address (SQL for analysts and BI
    /// tools; TLS only).
    pub sql: Option<SocketAddr>,
    /// The SQL endpoint's TLS certificate and key (PEM). Without them the
    /// instance makes a self-signed certificate in `<data-dir>/tls/`.
    pub sql_tls_cert: Option<PathBuf>,
    pub sql_tls_key: Option<PathBuf>,
    /// Seconds between rewrites of the canonical tables.
    pub canonical_interval_secs: Option<f64>,
    /// Where `POST /fhir/$import` may read NDJSON from (default: `import/`
    /// in the data directory).
    pub import_dir: Option<PathBuf>,
    /// Folders a source drops flat extracts into, each read with its mappings.
    #[serde(default)]
    pub drop_folder: Vec<fdp_ingest::extract::drop_folder::DropFolder>,
    /// The organisation's OpenID Connect identity provider, whose bearer
    /// tokens the instance accepts beside its local API tokens.
    pub oidc: Option<fdp_govern::OidcConfig>,
    /// Roles (and organisation) granted by principal name: `[principal.NAME]`.
    #[serde(default)]
    pub principal: std::collections::BTreeMap<String, fdp_govern::Grant>,
    /// The access policy (default: `policy.toml` in the data directory if
    /// there is one, else the built-in demo policy).
    pub policy: Option<PathBuf>,
    /// The national data opt-out list (default: `opt-out.txt` in the data
    /// directory).
    pub opt_out_file: Option<PathBuf>,
    /// The instance in the federation: where peers reach it, and its peers.
    pub federation: Option<fdp_federation::FederationConfig>,
    /// How long a message's dedup key is remembered (default 168 hours): a
    /// re-send arriving later than this is stored again.
    pub dedup_window_hours: Option<u64>,
    /// Seconds between census snapshots (default 60); a restart replays
    /// only what was committed after the last one.
    pub snapshot_interval_secs: Option<u64>,
    /// Days a finished spell, and a patient not heard of, stay in the live
    /// census (default 30). Their rows move to the canonical tables'
    /// `@adt-archive` parts; the census, its snapshot and a restart stay
    /// the size of the last month, not of all history.
    pub census_retention_days: Option<u32>,
    /// Bounds on what a misbehaving sender can make the instance hold.
    pub limits: Option<Limits>,
    /// Where the tables live, when not in the data directory.
    pub storage: Option<Storage>,
    /// A cluster that runs the governed plans of large scans.
    pub cluster: Option<fdp_cluster::ClusterConfig>,
}

/// `[storage]`: keep the raw and canonical tables in an object store. The
/// WAL, keystore and audit stay in the data directory, which records the
/// location on first start and refuses to start against another.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// `s3://bucket/prefix`, `az://container/prefix`,
    /// `abfss://container@account.dfs.core.windows.net/prefix` or
    /// `gs://bucket/prefix`.
    pub tables: Option<String>,
    /// The object store's own options (`aws_endpoint`, `aws_region`,
    /// `azure_storage_account_name`, `google_service_account`, ...), over
    /// what the environment gives (`AWS_*`, `AZURE_*`, `GOOGLE_*`). Keep
    /// credentials in the environment or in a configuration file that is
    /// not shared.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

impl Storage {
    /// The tables' location, with its store configured.
    pub fn tables_url(&self) -> Result<Option<url::Url>> {
        let Some(text) = &self.tables else {
            return Ok(None);
        };
        let url = fdp_store::location::parse_tables_url(text)
            .map_err(|e| anyhow::anyhow!("[storage] tables: {e}"))?;
        fdp_store::location::configure(&url, self.options.clone())?;
        Ok(Some(url))
    }
}

/// `[limits]`: what the instance holds in memory for its feeds, however
/// fast they send. Past a limit it stops reading (TCP backpressure); it
/// never drops a message.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Frames one MLLP connection may have read ahead of their ACKs
    /// (default 128).
    pub mllp_in_flight_per_connection: Option<usize>,
    /// Bytes of frames all MLLP connections together may hold awaiting
    /// their commits, in MiB (default 64). Every connection may always
    /// have one frame in flight, so a flood cannot starve the others.
    pub mllp_in_flight_mib: Option<u64>,
    /// Committed records waiting for the raw tables, in MiB of payload
    /// (default 256): past it the committer waits for the flusher.
    pub unflushed_mib: Option<u64>,
    /// The resident memory the instance is sized to stay under, in MiB
    /// (default 1536). The limits above are set so that a flood on every
    /// connection stays within it; `fdp bench adt --flood` checks it.
    pub memory_mib: Option<u64>,
}

impl Limits {
    pub fn memory_mib(&self) -> u64 {
        self.memory_mib.unwrap_or(1536)
    }

    /// Refuse limits that cannot fit the stated memory: frames in flight
    /// and the unflushed backlog (held twice while a batch is encoded),
    /// beside what the census, the tables and the server need.
    pub fn check(&self) -> Result<()> {
        let in_flight = self.mllp_in_flight_mib.unwrap_or(64);
        let unflushed = self.unflushed_mib.unwrap_or(256);
        let needed = in_flight + 2 * unflushed + BASELINE_MIB;
        anyhow::ensure!(
            needed <= self.memory_mib(),
            "[limits] memory_mib = {} is too small for mllp_in_flight_mib = {in_flight} and \
             unflushed_mib = {unflushed}: they need about {needed} MiB with the instance's own \
             {BASELINE_MIB} MiB; raise memory_mib or lower the others",
            self.memory_mib()
        );
        Ok(())
    }
}

/// What an instance holds besides its feeds' backlog: the census, open
/// tables, the query engine and the server, measured for a trust's feed.
const BASELINE_MIB: u64 = 512;

impl InstanceConfig {
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid instance configuration (keys: ods, data_dir, http, http_tls_cert, http_tls_key, mllp, sql, sql_tls_cert, sql_tls_key, canonical_interval_secs, import_dir, drop_folder, oidc, principal, policy, opt_out_file, federation, dedup_window_hours, snapshot_interval_secs, census_retention_days, limits, storage, cluster)",
                path.display()
            )
        })
    }

    /// The configuration commands that take only a data directory act
    /// under: the file given, else `instance.toml` beside the data (as
    /// `fdp demo` keeps it), else the defaults.
    pub fn for_data_dir(
        data_dir: &std::path::Path,
        given: Option<&std::path::Path>,
    ) -> Result<Self> {
        let beside = data_dir.join("instance.toml");
        let config = match given {
            Some(p) => InstanceConfig::load(p)?,
            None if beside.exists() => InstanceConfig::load(&beside)?,
            None => InstanceConfig::default(),
        };
        // Tables in an object store are read with the store's options.
        if let Some(storage) = &config.storage {
            storage.tables_url()?;
        }
        Ok(config)
    }

    /// The organisation running the instance.
    pub fn ods(&self) -> String {
        self.ods.clone().unwrap_or_else(|| "LOCAL".into())
    }

    /// The instance's governance: its policy (validated here, so a bad
    /// policy stops the instance from starting), keys, opt-out and audit.
    /// The instance's federation, as a command opens it: the peers this
    /// configuration names, the identity in `data_dir`, and `gov`'s audit.
    pub fn federation(
        &self,
        data_dir: &std::path::Path,
        gov: &fdp_govern::Governance,
    ) -> Result<fdp_federation::Federation> {
        let fc = self
            .federation
            .clone()
            .context("the configuration has no [federation] section naming the peers")?;
        let peers = fc.peers().map_err(anyhow::Error::msg)?;
        fdp_federation::Federation::open(data_dir, peers, gov.audit().clone())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("opening the federation identity (make one with `fdp peer init`)")
    }

    pub fn governance(&self, data_dir: &std::path::Path) -> Result<fdp_govern::Governance> {
        let model = fdp_model::Model::canonical();
        let in_data_dir = data_dir.join("policy.toml");
        let policy = match &self.policy {
            Some(p) => fdp_govern::Policy::load(p, model)?,
            None if in_data_dir.exists() => fdp_govern::Policy::load(&in_data_dir, model)?,
            None => {
                tracing::debug!("no policy file configured: using the built-in demo policy");
                fdp_govern::Policy::demo(model)
            }
        };
        let governance = fdp_govern::Governance::open(
            data_dir,
            policy,
            &self.ods(),
            self.opt_out_file.as_deref(),
        )
        .context("opening the instance's keystore and audit log")?;
        Ok(match &self.cluster {
            Some(cluster) => governance.with_executor(std::sync::Arc::new(
                fdp_cluster::Cluster::open(cluster).context("[cluster]")?,
            )),
            None => governance,
        })
    }

    /// The governance of a data directory, for commands given only that.
    pub fn governance_of(data_dir: &std::path::Path) -> Result<fdp_govern::Governance> {
        InstanceConfig::for_data_dir(data_dir, None)?.governance(data_dir)
    }

    /// A principal named in `[principal.NAME]`, as the command line acts.
    pub fn local_principal(&self, name: &str) -> fdp_govern::Principal {
        fdp_govern::Grants::new(self.principal.clone(), &self.ods()).local(fdp_govern::Principal {
            name: name.to_string(),
            ..Default::default()
        })
    }

    pub fn data_dir(&self) -> Result<PathBuf> {
        self.data_dir
            .clone()
            .context("no data directory: pass --data-dir or set data_dir in the configuration file")
    }
}

/// A runtime owned by the instance, shut down without blocking when dropped
/// (dropping a runtime the ordinary way inside async code is not allowed).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A started instance.
pub struct Running {
    pub federation_addr: Option<SocketAddr>,
    /// The instance in the federation, when it is configured.
    pub federation: Option<Arc<fdp_federation::Federation>>,
    federation_tasks: Vec<JoinHandle<()>>,
    pub http_addr: Option<SocketAddr>,
    pub mllp_addr: Option<SocketAddr>,
    pub sql_addr: Option<SocketAddr>,
    pub live: Arc<Live>,
    pub store: Arc<Store>,
    pub tokens: Arc<TokenStore>,
    /// What an in-process caller (the demo) reads and acts through, as the
    /// HTTP API does.
    pub governance: Arc<fdp_govern::Governance>,
    pub tables: fdp_store::StoredTables,
    pub fhir: Arc<fdp_server::fhir::FhirService>,
    pub booking_requests: Arc<fdp_federation::mutual_aid::BookingRequests>,
    pub supply_offers: Arc<fdp_federation::supplies::SupplyOffers>,
    shutdown: watch::Sender<bool>,
    writer_stop: watch::Sender<bool>,
    audit: Arc<fdp_govern::AuditLog>,
    _mllp_runtime: Option<BackgroundRuntime>,
    tasks: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
}

/// Start an instance. Listeners are started only for the addresses given.
pub async fn start(config: &InstanceConfig) -> Result<Running> {
    let data_dir = std::path::absolute(config.data_dir()?)?;
    let ods = config.ods();
    config.limits.clone().unwrap_or_default().check()?;
    let tables_url = match &config.storage {
        Some(s) => s.tables_url()?,
        None => None,
    };
    let governance = Arc::new(config.governance(&data_dir)?);
    let tables = fdp_store::StoredTables::new(&data_dir);
    // The census as last saved: only what was committed after it is read
    // back and replayed.
    let replay_started = std::time::Instant::now();
    let snapshot = live::snapshot::load(&data_dir);
    let from_seq = snapshot.as_ref().map(|c| c.applied_seq).unwrap_or(0);
    let mut store_config = StoreConfig::new(&data_dir);
    store_config.history_after_seq = from_seq;
    store_config.tables_url = tables_url;
    if let Some(hours) = config.dedup_window_hours {
        store_config.dedup_window = Duration::from_secs(hours * 3600);
    }
    if let Some(mib) = config.limits.as_ref().and_then(|l| l.unflushed_mib) {
        store_config.max_unflushed_bytes = mib << 20;
    }
    let opened = Store::open(store_config)
        .await
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    let mut census = snapshot.unwrap_or_default();
    census.retention_days = Some(config.census_retention_days.unwrap_or(30).max(1));
    let mut census = live::replay(census, &opened.history);
    // History holds only accepted records; the census has seen everything
    // committed so far, whatever its status.
    census.applied_seq = census
        .applied_seq
        .max(opened.store.committer().committed_through());
    tracing::info!(
        snapshot_seq = from_seq,
        records = opened.history.len(),
        beds = census.beds.len(),
        admitted = census.admitted().count(),
        elapsed_ms = replay_started.elapsed().as_millis() as u64,
        "census rebuilt from the raw tables"
    );
    let live = Live::new(census);
    let store = Arc::new(opened.store);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(live::run_applier(live.clone(), opened.feed)));

    let tokens = Arc::new(TokenStore::open(&TokenStore::path_in(&data_dir))?);
    let mllp_stats = Arc::new(MllpStats::default());

    // The feed gets its own runtime, so that encoding tables or serving
    // pages on the main one never delays an acknowledgement.
    let mut mllp_runtime = None;
    let mllp_addr = match config.mllp {
        Some(addr) => {
            let std_listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("listening for MLLP on {addr}"))?;
            std_listener.set_nonblocking(true)?;
            let bound = std_listener.local_addr()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("fdp-mllp")
                .enable_all()
                .build()?;
            let (committer, stats, stop) =
                (store.committer(), mllp_stats.clone(), shutdown_rx.clone());
            let receiver = Arc::new(Receiver::new(&ods));
            let limits = config.limits.clone().unwrap_or_default();
            let defaults = MllpConfig::default();
            let mllp_config = MllpConfig {
                max_in_flight: limits
                    .mllp_in_flight_per_connection
                    .unwrap_or(defaults.max_in_flight)
                    .max(1),
                max_in_flight_bytes: limits
                    .mllp_in_flight_mib
                    .map(|m| (m as usize) << 20)
                    .unwrap_or(defaults.max_in_flight_bytes),
                ..defaults
            };
            tasks.push(rt.spawn(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(listener) => {
                        mllp::serve(listener, committer, receiver, stats, mllp_config, stop).await
                    }
                    Err(e) => tracing::error!(error = %e, "MLLP listener failed"),
                }
            }));
            mllp_runtime = Some(BackgroundRuntime(Some(rt)));
            Some(bound)
        }
        None => None,
    };

    // The federation's listener and sender hold no data of their own that
    // a stop must wait for (the outbox is on disk): they are cut off.
    let mut federation_tasks = Vec::new();
    // The FHIR source is the one writer of FHIR records, whether they come
    // over the API or in a referral from a peer.
    let fhir = Arc::new(
        fdp_server::fhir::FhirService::open(&data_dir)
            .await
            .context("opening the FHIR resources")?
            .with_import_dir(
                config
                    .import_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("import")),
            ),
    );
    let referrals = Arc::new(fdp_federation::referrals::Referrals::open(&data_dir));
    let booking_requests = Arc::new(fdp_federation::mutual_aid::BookingRequests::open(&data_dir));
    let supply_offers = Arc::new(fdp_federation::supplies::SupplyOffers::open(&data_dir));
    let mut federation: Option<Arc<fdp_federation::Federation>> = None;
    let federation_addr = match &config.federation {
        Some(fc) => {
            let peers = fc
                .peers()
                .map_err(anyhow::Error::msg)
                .context("reading [federation] peers")?;
            let fed = Arc::new(
                fdp_federation::Federation::open(&data_dir, peers, governance.audit().clone())
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .context("opening the federation identity (make one with `fdp peer init`)")?,
            );
            let audit = governance.audit().clone();
            let messages = fdp_federation::handler::Messages::new()
                .register_platform(fdp_federation::questions::QuestionAnswerer::new(
                    governance.clone(),
                    tables.clone(),
                    &data_dir,
                ))
                .and_then(|m| {
                    m.register(fdp_federation::handler::ReferralMessages {
                        referrals: referrals.clone(),
                        audit: audit.clone(),
                        intake: fhir.clone(),
                    })
                })
                .and_then(|m| {
                    m.register(fdp_federation::mutual_aid::MutualAidMessages {
                        requests: booking_requests.clone(),
                        audit: audit.clone(),
                        intake: fhir.clone(),
                    })
                })
                .and_then(|m| m.register(fdp_federation::capacity::CapacityFeed::open(&data_dir)))
                .and_then(|m| {
                    m.register(fdp_federation::supplies::SupplyMessages {
                        role: fed.identity.role,
                        feed: Arc::new(fdp_federation::supplies::SupplyFeed::open(&data_dir)),
                        offers: supply_offers.clone(),
                        audit: audit.clone(),
                        intake: fhir.clone(),
                    })
                })
                .and_then(|m| {
                    m.register_platform(fdp_federation::handler::MarketplaceMessages {
                        marketplace: Arc::new(fdp_federation::marketplace::Marketplace::open(
                            &data_dir,
                        )),
                        audit,
                        ca: fed.identity.ca.clone(),
                    })
                })
                .map_err(anyhow::Error::msg)?;
            messages
                .check_declared(&fdp_products::platform::Registry::builtin().message_kinds())
                .map_err(anyhow::Error::msg)
                .context("matching the federation's message kinds to the products")?;
            fed.set_handler(Arc::new(messages));
            federation_tasks.push(tokio::spawn(fed.clone().run_outbox()));
            federation = Some(fed.clone());
            if let Some(icb) = &fc.poll {
                anyhow::ensure!(
                    fed.peer(icb).is_some_and(|p| p.address.is_some()),
                    "[federation] poll = {icb:?}: name a configured peer with an address"
                );
                federation_tasks.push(tokio::spawn(fed.clone().run_poller(
                    icb.clone(),
                    Duration::from_millis(fc.poll_every_ms.unwrap_or(1000)),
                )));
            }
            if let Some(schedule) = &fc.returns {
                let definition = match &schedule.definition {
                    Some(path) => fdp_federation::returns::ReturnDefinition::load(path)
                        .map_err(anyhow::Error::msg)
                        .context("reading [federation.returns] definition")?,
                    None => fdp_federation::returns::ReturnDefinition::daily_operational(),
                };
                federation_tasks.push(tokio::spawn(fdp_federation::returns::run_schedule(
                    fed.clone(),
                    definition,
                    schedule.clone(),
                    fdp_federation::returns::ReturnStore::open(&data_dir),
                    Duration::from_secs(60),
                )));
            }
            match fc.listen {
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("listening for peers on {addr}"))?;
                    let bound = listener.local_addr()?;
                    let tls = fdp_federation::transport::server_config(&fed.identity)
                        .context("setting up mutual TLS for peers")?;
                    federation_tasks.push(tokio::spawn(fdp_federation::transport::serve(
                        listener,
                        tls,
                        fed.router(),
                    )));
                    Some(bound)
                }
                None => None,
            }
        }
        None => None,
    };

    let http_tls = match (&config.http_tls_cert, &config.http_tls_key) {
        (Some(c), Some(k)) => Some(
            fdp_server::tls::acceptor(c, k, fdp_server::tls::TlsListener::ALPN)
                .context("setting up TLS for the HTTP listener (http_tls_cert, http_tls_key)")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!(
            "give both http_tls_cert and http_tls_key to serve HTTPS, or neither to serve plain HTTP"
        ),
    };
    let state = if config.http.is_some() || config.sql.is_some() {
        let oidc = match &config.oidc {
            Some(c) => Some(Arc::new(
                fdp_govern::OidcVerifier::load(c.clone())
                    .context("loading the identity provider's keys ([oidc] jwks_file)")?,
            )),
            None => None,
        };
        Some(AppState {
            federation: federation.clone(),
            referrals: referrals.clone(),
            booking_requests: booking_requests.clone(),
            supply_offers: supply_offers.clone(),
            capacity: Arc::new(fdp_federation::capacity::FetchedFeed::new(
                Duration::from_secs(30),
            )),
            sessions: Arc::new(fdp_server::auth::BrowserSessions::new(
                fdp_server::auth::SHIFT,
            )),
            https: http_tls.is_some(),
            products: Arc::new(fdp_products::installed::Catalogue::new(
                fdp_products::platform::Registry::builtin(),
                &data_dir,
                Arc::new(governance.policy().clone()),
            )),
            governance: governance.clone(),
            tables: tables.clone(),
            oidc,
            grants: Arc::new(fdp_govern::Grants::new(config.principal.clone(), &ods)),
            instance: Arc::new(InstanceInfo {
                ods: ods.clone(),
                data_dir: data_dir.clone(),
                mllp_addr,
                started_at: chrono::Utc::now(),
            }),
            live: live.clone(),
            committer: store.committer(),
            tokens: tokens.clone(),
            mllp: mllp_stats.clone(),
            fhir: fhir.clone(),
        })
    } else {
        None
    };

    let http_addr = match (config.http, &state) {
        (Some(addr), Some(state)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for HTTP on {addr}"))?;
            let bound = listener.local_addr()?;
            let app = fdp_server::router(state.clone());
            let mut rx = shutdown_rx.clone();
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let served = match http_tls.clone() {
                Some(tls) => {
                    let listener = fdp_server::tls::TlsListener::new(listener, tls)?;
                    tokio::spawn(async move {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stop)
                            .await
                    })
                }
                None => tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                }),
            };
            tasks.push(tokio::spawn(async move {
                match served.await {
                    Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
                    Err(e) => tracing::error!(error = %e, "HTTP server stopped"),
                    Ok(Ok(())) => {}
                }
            }));
            Some(bound)
        }
        _ => None,
    };

    let sql_addr = match (config.sql, state) {
        (Some(addr), Some(state)) => {
            let configured = match (&config.sql_tls_cert, &config.sql_tls_key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                (None, None) => None,
                _ => anyhow::bail!("give both sql_tls_cert and sql_tls_key, or neither (the instance then makes a self-signed certificate)"),
            };
            let tls = fdp_server::pgwire::tls_acceptor(&data_dir, configured)
                .context("setting up TLS for the SQL endpoint")?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for PostgreSQL clients on {addr}"))?;
            let bound = listener.local_addr()?;
            tasks.push(tokio::spawn(fdp_server::pgwire::serve(
                listener,
                state,
                tls,
                shutdown_rx.clone(),
            )));
            Some(bound)
        }
        _ => None,
    };

    for source in &config.drop_folder {
        tasks.push(tokio::spawn(fdp_ingest::extract::drop_folder::watch(
            data_dir.clone(),
            source.clone(),
            shutdown_rx.clone(),
        )));
    }

    // Sign the audit's latest entry every minute, so that entries cut off
    // the end (the instance stopped or not) are caught by `fdp audit verify`.
    tasks.push(tokio::spawn(sign_audit_head(
        governance.audit().clone(),
        Duration::from_secs(60),
        shutdown_rx.clone(),
    )));

    let interval = Duration::from_secs_f64(config.canonical_interval_secs.unwrap_or(5.0).max(0.1));
    let (writer_stop, writer_stop_rx) = watch::channel(false);
    let snapshot_every = Duration::from_secs(config.snapshot_interval_secs.unwrap_or(60).max(1));
    let writer = tokio::spawn(live::run_canonical_writer(
        live.clone(),
        store.clone(),
        interval,
        Some(snapshot_every),
        writer_stop_rx,
    ));
    Ok(Running {
        federation_addr,
        federation,
        federation_tasks,
        http_addr,
        mllp_addr,
        sql_addr,
        live,
        store,
        tokens,
        shutdown,
        writer_stop,
        audit: governance.audit().clone(),
        governance,
        tables,
        fhir,
        booking_requests,
        supply_offers,
        _mllp_runtime: mllp_runtime,
        tasks,
        writer,
    })
}

impl Running {
    /// Stop listening, write the canonical tables once more, flush the raw
    /// tables and release the data directory.
    pub async fn stop(self) -> Result<()> {
        for t in &self.federation_tasks {
            t.abort();
        }
        let _ = self.shutdown.send(true);
        // Listeners first, so nothing new arrives while the rest winds down.
        let mut tasks = self.tasks.into_iter();
        let applier = tasks.next();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        // The applier must see everything committed before the last write.
        let through = self.store.committer().committed_through();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.live.applied_through(through)).await;
        let _ = self.writer_stop.send(true);
        // A canonical write waits for the raw tables; if Delta cannot be
        // written the WAL still holds everything, so do not wait forever.
        if tokio::time::timeout(Duration::from_secs(60), self.writer)
            .await
            .is_err()
        {
            tracing::warn!(
                "canonical tables not rewritten at shutdown; they will be at the next start"
            );
        }
        drop(applier);
        // The last entries of this run, signed: cutting them off while the
        // instance is stopped breaks a checkpoint.
        let audit = self.audit.clone();
        match tokio::task::spawn_blocking(move || audit.checkpoint()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "signing the audit log at shutdown failed"),
            Err(e) => tracing::error!(error = %e, "signing the audit log at shutdown failed"),
        }
        match Arc::try_unwrap(self.store) {
            Ok(store) => store.shutdown().await,
            Err(_) => {
                tracing::warn!("store still in use at shutdown; the WAL keeps what is not flushed")
            }
        }
        Ok(())
    }
}

/// Sign the audit log's latest entry every `every` (when there is a new
/// one), until shutdown.
async fn sign_audit_head(
    audit: Arc<fdp_govern::AuditLog>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let a = audit.clone();
        match tokio::task::spawn_blocking(move || a.checkpoint()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "signing the audit log failed"),
            Err(e) => tracing::error!(error = %e, "signing the audit log failed"),
        }
    }
}

/// Make sure the instance has at least one token, printing a new one once.
pub fn ensure_admin_token(tokens: &TokenStore) -> Result<Option<String>> {
    if tokens.is_empty() {
        return Ok(Some(tokens.create("admin")?));
    }
    Ok(None)
}
