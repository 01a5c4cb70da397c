//! SQL for analysts and BI tools over the PostgreSQL wire protocol.
//!
//! psql, psycopg, DBeaver, Power BI and Tableau connect as to PostgreSQL:
//!
//! ```text
//! psql "host=fdp.trust.nhs.uk port=5433 dbname=planning user=alice sslmode=require"
//! ```
//!
//! - **TLS always.** A connection that does not ask for TLS is refused
//!   before it can send a password.
//! - **The password is a token**: a local API token or an OIDC token from
//!   the organisation's identity provider, for the principal named as the
//!   user. Wrong passwords are answered more slowly each time (per client
//!   address and user), and every refusal is audited.
//! - **The database is the purpose** (`direct-care`, `operations`,
//!   `planning`, `research`), because that is the one thing every BI tool
//!   lets a user type. The role, project and justification go in the
//!   connection's options: `options='-c role=analyst -c project=p1'`
//!   (`purpose` may also go there).
//!
//! Once signed in, the connection's statements run in a governed session
//! ([`fdp_govern::wire`]), the same path as `POST /sql` and `fdp sql`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fdp_govern::wire::GovernedQueries;
use fdp_govern::{AuditEntry, GovernError, Principal, Purpose, SessionRequest};
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::AppState;

/// Failed sign-ins from one address for one user before answers slow down.
const FREE_FAILURES: u32 = 2;
/// The first delay, doubled with each further failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// Serve the PostgreSQL protocol on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        startup: Arc::new(SignIn {
            state,
            throttle: Throttle::default(),
            keys: RandomPidSecretKeyGenerator::default(),
            connections: connections.clone(),
        }),
        queries: Arc::new(GovernedQueries::new()),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, addr)) => {
                    let (handlers, tls) = (handlers.clone(), tls.clone());
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, Some(tls), handlers).await {
                            tracing::debug!(%addr, error = %e, "PostgreSQL connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The TLS identity the endpoint presents: the configured certificate and
/// key, or else a self-signed certificate made once for this instance and
/// kept in `<data-dir>/tls/` (clients that verify the server need the
/// organisation's own certificate configured instead).
pub fn tls_acceptor(
    data_dir: &Path,
    configured: Option<(&Path, &Path)>,
) -> Result<TlsAcceptor, TlsSetupError> {
    let (cert_path, key_path) = match configured {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
        None => self_signed(data_dir)?,
    };
    crate::tls::acceptor(&cert_path, &key_path, &[])
}

pub use crate::tls::TlsSetupError;

fn self_signed(data_dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsSetupError> {
    let dir = data_dir.join("tls");
    let (cert, key) = (dir.join("sql-wire.crt"), dir.join("sql-wire.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let write_err = |e| TlsSetupError::Write(dir.display().to_string(), e);
    std::fs::create_dir_all(&dir).map_err(write_err)?;
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| TlsSetupError::Generate(e.to_string()))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes()).map_err(write_err)?;
    std::fs::write(&cert, made.cert.pem()).map_err(write_err)?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate for the SQL endpoint");
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

struct Handlers {
    startup: Arc<SignIn>,
    queries: Arc<GovernedQueries>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Failed sign-ins by client address and user name.
#[derive(Debug, Default)]
struct Throttle {
    failures: Mutex<HashMap<(IpAddr, String), (u32, Instant)>>,
}

impl Throttle {
    /// Record a failure; how long to hold the answer.
    fn failed(&self, ip: IpAddr, user: &str) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, at)| now.duration_since(*at) < FAILURE_MEMORY);
        let entry = map.entry((ip, user.to_string())).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
        delay_after(entry.0)
    }

    fn succeeded(&self, ip: IpAddr, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(ip, user.to_string()));
    }
}

/// The delay after the `n`th failure in a row.
fn delay_after(n: u32) -> Duration {
    if n <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (n - FREE_FAILURES - 1).min(16);
    (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

/// Authenticates a connection and opens its governed session.
struct SignIn {
    state: AppState,
    throttle: Throttle,
    keys: RandomPidSecretKeyGenerator,
    connections: Arc<ConnectionManager>,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

/// What the connection asked for: purpose from the database name or the
/// options; role, project and justification from the options.
#[derive(Debug, Default, PartialEq)]
struct Requested {
    purpose: Option<String>,
    role: Option<String>,
    project: Option<String>,
    justification: Option<String>,
}

/// `-c name=value` and `--name=value` settings from the `options` startup
/// parameter, with PostgreSQL's backslash escapes (`\ ` for a space).
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("-c").map(str::to_string)
        };
        if let Some((k, v)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((k.trim().to_lowercase(), v.to_string()));
        }
    }
    out
}

fn requested(metadata: &HashMap<String, String>) -> Requested {
    let mut r = Requested {
        purpose: metadata
            .get(METADATA_DATABASE)
            .filter(|d| !d.is_empty())
            .cloned(),
        ..Requested::default()
    };
    for (k, v) in parse_options(metadata.get("options").map(String::as_str).unwrap_or("")) {
        let slot = match k.strip_prefix("fdp.").unwrap_or(&k) {
            "purpose" => &mut r.purpose,
            "role" => &mut r.role,
            "project" => &mut r.project,
            "justification" => &mut r.justification,
            _ => continue,
        };
        *slot = Some(v);
    }
    r
}

impl SignIn {
    fn audit_refusal(&self, user: &str, ip: IpAddr, why: &str) {
        let entry = AuditEntry {
            kind: "refusal".into(),
            principal: user.to_string(),
            channel: "pgwire".into(),
            what: format!("sign in from {ip}"),
            outcome: format!("refused: {why}"),
            ..AuditEntry::default()
        };
        if let Err(e) = self.state.governance.audit().append(entry) {
            tracing::error!(error = %e, "could not audit a refused PostgreSQL sign-in");
        }
    }

    async fn open_session(
        &self,
        principal: Principal,
        asked: Requested,
    ) -> Result<fdp_govern::GovernedSession, PgWireError> {
        let purpose_text = asked.purpose.ok_or_else(|| {
            fatal(
                "3D000",
                "say the purpose: connect to the database named after it \
                 (direct-care, operations, planning or research), \
                 e.g. dbname=planning"
                    .into(),
            )
        })?;
        let purpose: Purpose = purpose_text.parse().map_err(|_| {
            fatal(
                "3D000",
                format!(
                    "database \"{purpose_text}\" does not exist: the databases are the purposes \
                     direct-care, operations, planning and research"
                ),
            )
        })?;
        let mut req = SessionRequest::new(principal, purpose, "pgwire");
        req.role = asked.role;
        req.project = asked.project;
        req.justification = asked.justification;
        let tables = self.state.tables.clone();
        match self.state.governance.session(&tables, req).await {
            Ok(s) => Ok(s),
            Err(GovernError::Refused(r)) => Err(fatal("42501", r.to_string())),
            Err(e) => Err(fatal("58000", e.to_string())),
        }
    }
}

#[async_trait]
impl StartupHandler for SignIn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this server accepts only encrypted connections: connect with \
                         sslmode=require"
                            .into(),
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let token = pwd.into_password()?.password;
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let ip = client.socket_addr().ip();
                let principal = match crate::auth::authenticate(&self.state, token.trim()) {
                    Ok(p) if p.name == user => Ok(p),
                    Ok(p) => Err(format!("the token names {}, not {user}", p.name)),
                    Err(why) => Err(why.unwrap_or_else(|| "unknown token".into())),
                };
                let principal = match principal {
                    Ok(p) => p,
                    Err(why) => {
                        self.audit_refusal(&user, ip, &why);
                        tokio::time::sleep(self.throttle.failed(ip, &user)).await;
                        // PostgreSQL's own words, which clients recognise.
                        return Err(fatal(
                            "28P01",
                            format!("password authentication failed for user \"{user}\""),
                        ));
                    }
                };
                self.throttle.succeeded(ip, &user);
                let session = self
                    .open_session(principal, requested(client.metadata()))
                    .await?;
                fdp_govern::wire::attach(client, session)
                    .map_err(|e| fatal("58000", e.to_string()))?;
                let (pid, secret) = self.keys.generate(client);
                client.set_pid_and_secret_key(pid, secret.clone());
                let (handle, guard) = self.connections.register(pid, secret);
                client
                    .session_extensions()
                    .insert::<Arc<ConnectionHandle>>(handle);
                client.session_extensions().insert(guard);
                let mut parameters = DefaultServerParameterProvider::default();
                parameters.server_version = format!("16.6 (OpenFDP {})", env!("CARGO_PKG_VERSION"));
                parameters.is_superuser = false;
                parameters.default_transaction_read_only = true;
                finish_authentication(client, &parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_settings_with_escaped_spaces() {
        let got =
            parse_options(r"-c role=analyst -cproject=p1 --fdp.justification=ward\ audit\ 2026");
        assert_eq!(
            got,
            vec![
                ("role".to_string(), "analyst".to_string()),
                ("project".to_string(), "p1".to_string()),
                (
                    "fdp.justification".to_string(),
                    "ward audit 2026".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_database_is_the_purpose_unless_the_options_say_otherwise() {
        let mut m = HashMap::new();
        m.insert(METADATA_DATABASE.to_string(), "planning".to_string());
        assert_eq!(requested(&m).purpose.as_deref(), Some("planning"));
        m.insert(
            "options".to_string(),
            "-c purpose=research -c project=p2".to_string(),
        );
        let r = requested(&m);
        assert_eq!(r.purpose.as_deref(), Some("research"));
        assert_eq!(r.project.as_deref(), Some("p2"));
    }

    #[test]
    fn answers_slow_down_after_repeated_failures() {
        assert_eq!(delay_after(1), Duration::ZERO);
        assert_eq!(delay_after(2), Duration::ZERO);
        assert_eq!(delay_after(3), Duration::from_millis(500));
        assert_eq!(delay_after(4), Duration::from_secs(1));
        assert_eq!(delay_after(5), Duration::from_secs(2));
        assert_eq!(delay_after(40), MAX_DELAY);
        let t = Throttle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            t.failed(ip, "alice");
        }
        assert_eq!(t.failed(ip, "alice"), Duration::from_secs(1));
        assert_eq!(t.failed(ip, "bob"), Duration::ZERO);
        t.succeeded(ip, "alice");
        assert_eq!(t.failed(ip, "alice"), Duration::ZERO);
    }
}
