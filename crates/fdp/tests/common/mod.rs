//! Running real `fdp` processes from tests, on loopback ports.

#![allow(dead_code)]

pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn fdp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fdp"));
    // `fdp sql` reads through a governed session: these tests ask as the
    // integration engineer, who may read raw and canonical tables unmasked,
    // for operations. Tests of the policy itself say otherwise.
    c.env("FDP_CONFIG", engineer_config())
        .env("FDP_PRINCIPAL", "engineer")
        .env("FDP_PURPOSE", "operations");
    c
}

fn engineer_config() -> &'static Path {
    static CONFIG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("engineer-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[principal.engineer]\nroles = [\"integration-engineer\"]\n",
        )
        .unwrap();
        path
    })
}

/// A running `fdp serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub http: SocketAddr,
    pub mllp: SocketAddr,
    /// The PostgreSQL endpoint, when the configuration gave `sql = ADDR`.
    pub sql: Option<SocketAddr>,
    pub token: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Start on free loopback ports. `canonical_secs` is how often the
    /// canonical tables are rewritten.
    pub fn start(data_dir: &Path, canonical_secs: f64) -> Server {
        Self::start_on(data_dir, canonical_secs, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// The token's principal, `tester`, is a clinician: direct care, every
    /// object type, whole records (what the FHIR API serves).
    pub fn start_on(data_dir: &Path, canonical_secs: f64, http: &str, mllp: &str) -> Server {
        Self::start_configured(
            data_dir,
            canonical_secs,
            http,
            mllp,
            "[principal.tester]\nroles = [\"clinician\"]\n",
        )
    }

    /// Start with more of the instance configuration (TOML) than the defaults.
    pub fn start_configured(
        data_dir: &Path,
        canonical_secs: f64,
        http: &str,
        mllp: &str,
        extra_config: &str,
    ) -> Server {
        let config = data_dir.with_extension("toml");
        std::fs::write(
            &config,
            format!("ods = \"RXX\"\ncanonical_interval_secs = {canonical_secs}\n{extra_config}"),
        )
        .unwrap();
        let mut child = fdp()
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", http, "--mllp", mllp])
            .env("FDP_LOG", "warn,fdp=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fdp serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line.clone()).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let (mut http_addr, mut mllp_addr, mut sql_addr) = (None, None, None);
        let wants_sql = extra_config
            .lines()
            .any(|l| l.trim_start().starts_with("sql ="));
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_addr.is_none() || mllp_addr.is_none() || (wants_sql && sql_addr.is_none()) {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("fdp serve did not report its addresses within 60 s");
            if let Some(rest) = line.strip_prefix("MLLP (HL7 v2) listening on ") {
                mllp_addr = Some(rest.trim().parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("SQL (PostgreSQL protocol, TLS) listening on ") {
                sql_addr = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
            }
            if let Some(rest) = line
                .strip_prefix("HTTP listening on http://")
                .or_else(|| line.strip_prefix("HTTP listening on https://"))
            {
                let addr = rest.split('/').next().unwrap();
                http_addr = Some(addr.parse().unwrap());
            }
        }
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let token = fdp()
            .args(["token", "create", "tester", "--data-dir"])
            .arg(data_dir)
            .output()
            .unwrap();
        let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
        assert!(token.starts_with("fdp_"), "token: {token}");
        // The running server read its tokens at start: restart-free sign-in
        // for tests goes through a second token file read. Keep it simple:
        // tests that need HTTP start the server after creating the token.
        Server {
            child,
            http: http_addr.unwrap(),
            mllp: mllp_addr.unwrap(),
            sql: sql_addr,
            token,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Start with an instance configuration file a test wrote (its `ods`
    /// line is the helper's own), with more top-level `settings` put before
    /// it and more `tables` after it, as TOML needs.
    #[allow(dead_code)]
    pub fn start_with_config_file(
        data_dir: &Path,
        config: &Path,
        settings: &str,
        tables: &str,
    ) -> Server {
        let written = std::fs::read_to_string(config)
            .unwrap()
            .replace("ods = \"RXX\"\n", "");
        Self::start_configured(
            data_dir,
            1.0,
            "127.0.0.1:0",
            "127.0.0.1:0",
            &format!("{settings}\n{written}\n{tables}\n"),
        )
    }

    /// SIGTERM and wait: the orderly stop.
    pub fn stop(mut self) {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("fdp serve did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

/// Run `fdp` with these arguments (strings or paths), require success, and
/// return what it printed.
#[macro_export]
macro_rules! fdp_ok {
    ($($arg:expr),+ $(,)?) => {
        $crate::common::run_ok(&[$(&$arg as &dyn AsRef<std::ffi::OsStr>),+])
    };
}

/// Run `fdp` with these arguments (strings or paths), require that it
/// fails, and return what it said on standard error.
#[macro_export]
macro_rules! fdp_err {
    ($($arg:expr),+ $(,)?) => {
        $crate::common::run_err(&[$(&$arg as &dyn AsRef<std::ffi::OsStr>),+])
    };
}

/// `fdp peer init`: certify the instance in `data` as `ods` in `role` by
/// the authority in `ca`; what it printed.
#[allow(dead_code)]
pub fn peer_init(data: &Path, ods: &str, role: &str, ca: &Path) -> String {
    fdp_ok!(
        "peer",
        "init",
        "--data-dir",
        data,
        "--ods",
        ods,
        "--role",
        role,
        "--ca",
        ca
    )
}

pub fn run_ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "fdp {:?} failed: {}",
        shown(args),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("fdp prints UTF-8")
}

#[allow(dead_code)]
pub fn run_err(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "fdp {:?} succeeded where it must fail: {}",
        shown(args),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    fdp()
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

fn shown(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<String> {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

/// `fdp sql` as JSON rows.
pub fn sql(data_dir: &Path, query: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let out = fdp_ok!("sql", "--format", "json", "--data-dir", data_dir, query);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("fdp sql output is not JSON ({e}): {out}"))
}

/// Like [`sql_count`], but `None` while the query cannot run yet (for
/// example before a table's first version is written).
pub fn try_sql_count(data_dir: &Path, query: &str) -> Option<i64> {
    let out = fdp()
        .args(["sql", "--format", "json", "--data-dir"])
        .arg(data_dir)
        .arg(query)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&out.stdout).ok()?;
    rows.first()?.values().next()?.as_i64()
}

/// One number from a query like `SELECT count(*) AS n …`.
pub fn sql_count(data_dir: &Path, query: &str) -> i64 {
    let rows = sql(data_dir, query);
    rows[0]
        .values()
        .next()
        .and_then(|v| v.as_i64())
        .expect("a number")
}

/// Send framed messages one at a time and return each ACK's MSA-1.
pub fn mllp_roundtrip(addr: SocketAddr, messages: &[Vec<u8>]) -> Vec<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    for m in messages {
        let mut frame = vec![0x0b];
        frame.extend_from_slice(m);
        frame.extend_from_slice(&[0x1c, 0x0d]);
        s.write_all(&frame).unwrap();
        out.push(msa1(&read_frame(&mut s)));
    }
    out
}

/// Read one MLLP frame's payload.
pub fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = s.read(&mut byte).expect("reading an ACK");
        assert!(n == 1, "connection closed while waiting for an ACK");
        if byte[0] == 0x0b {
            buf.clear();
            continue;
        }
        if byte[0] == 0x1c {
            let _ = s.read(&mut byte);
            return buf;
        }
        buf.push(byte[0]);
    }
}

pub fn msa1(ack: &[u8]) -> String {
    let text = String::from_utf8_lossy(ack);
    text.split(['\r', '\n'])
        .find(|l| l.starts_with("MSA|"))
        .and_then(|l| l.split('|').nth(1))
        .unwrap_or("??")
        .to_string()
}

/// Poll until `f` is true or `secs` pass.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shared test data directory beside the repository.
pub fn shared_data(rel: &str) -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../../shared/data")
        .join(rel)
}

/// The mappings shipped in the repository (`mappings/`).
pub fn mappings() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../mappings")
}

/// `fdp synth extracts` from `seed` written to `drop`, then loaded with
/// the shipped mappings into the instance at `data`: what the load printed.
#[allow(dead_code)]
pub fn load_synthetic_extracts(drop: &Path, data: &Path, seed: u64) -> String {
    fdp_ok!(
        "synth",
        "extracts",
        "--out",
        drop,
        "--seed",
        seed.to_string()
    );
    fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        mappings(),
        drop
    )
}

/// `fdp product view`: `product`'s `view` asked by the principal `by` of
/// the instance configured in `config`, under `purpose`, with `params`;
/// its JSON answer, or what it printed on refusing.
#[allow(dead_code)]
pub fn product_view(
    data: &Path,
    config: &Path,
    product: &str,
    view: &str,
    by: &str,
    purpose: &str,
    params: &[(&str, &str)],
) -> Result<serde_json::Value, String> {
    let mut args: Vec<String> = vec![
        "product".into(),
        "view".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--config".into(),
        config.display().to_string(),
        product.into(),
        view.into(),
        "--by".into(),
        by.into(),
        "--purpose".into(),
        purpose.into(),
    ];
    for (k, v) in params {
        args.push("--param".into());
        args.push(format!("{k}={v}"));
    }
    let out = fdp().args(&args).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// An HTTP GET with a bearer token; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    http(addr, "GET", path, token, None)
}

/// An HTTP POST of JSON with a bearer token; returns (status, body).
pub fn http_post(addr: SocketAddr, path: &str, token: &str, json: &str) -> (u16, String) {
    http(addr, "POST", path, Some(token), Some(json))
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    let r = http_request(addr, method, path, token, json);
    (r.status, r.body)
}

/// A response with its headers (names lower-cased).
#[allow(dead_code)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[allow(dead_code)]
impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 request with a bearer token and an optional JSON body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> HttpResponse {
    http_request_with(addr, method, path, token, &[], json)
}

/// A form post (`application/x-www-form-urlencoded`) as a browser sends
/// it, with a bearer token and extra headers.
#[allow(dead_code)]
pub fn http_form(
    addr: SocketAddr,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> HttpResponse {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}").unwrap();
    read_response(s)
}

/// [`http_request`] with extra request headers.
pub fn http_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    json: Option<&str>,
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    for (k, v) in headers {
        auth.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = match json {
        Some(j) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{j}",
            j.len()
        ),
        None => "Content-Length: 0\r\n\r\n".to_string(),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n{body}"
    )
    .unwrap();
    read_response(s)
}

fn read_response(mut s: TcpStream) -> HttpResponse {
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Load a generated trust's bed register (sites, wards, beds) into `data`,
/// as the instance's operator would before it starts.
#[allow(dead_code)]
pub fn load_bed_register(dir: &Path, data: &Path) {
    let trust = fdp_synth::Trust::generate(9, fdp_synth::TrustSpec::default()).unwrap();
    let register = dir.join("beds.csv");
    std::fs::write(&register, trust.bed_register_csv()).unwrap();
    fdp_ok!("ingest", "beds", "--data-dir", data, register);
}

/// A loopback port free now, for a listener a configuration must name
/// before it starts. It is chosen below the kernel's ephemeral range: a port
/// from that range, once released, can be handed to any listener on port 0 or
/// to an outgoing connection before its own listener binds it.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.max(12_000));
    let span = high - low;
    // Test binaries run one after another, and tests within one in parallel:
    // the process id spreads the first, the counter the second.
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let port = low + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port between {low} and {high}")
}

/// Declare `purpose` at the UI's checkpoint as the holder of `token`: the
/// `Cookie` header value that carries the declaration to later pages.
#[allow(dead_code)]
pub fn purpose_cookie(addr: SocketAddr, token: &str, purpose: &str) -> String {
    let declared = http_form(addr, "/purpose", token, &[], &[("purpose", purpose)]);
    assert_eq!(declared.status, 303, "{}", declared.body);
    declared
        .header("set-cookie")
        .expect("the declaration's cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Every entry of a data directory's audit log.
#[allow(dead_code)]
pub fn audit_entries(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("audit/audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `fdp sql --format json` as `who` for `purpose` under the configuration
/// `config`: the rows, or what it said when refused.
#[allow(dead_code)]
pub fn sql_as(
    config: &Path,
    data: &Path,
    who: &str,
    purpose: &str,
    extra: &[&str],
    query: &str,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, String> {
    let out = fdp()
        .args(["sql", "--format", "json", "--data-dir"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["--as", who, "--purpose", purpose])
        .args(extra)
        .arg(query)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// Sessions over the PostgreSQL wire protocol with psycopg, one connection
/// each, in one run of `tests/clients/pg_batch.py` (which says what a
/// session and its answer hold): each session's answer, or its error.
#[allow(dead_code)]
pub fn pg_batch(addr: SocketAddr, sessions: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let request = serde_json::json!({"host": addr.ip().to_string(), "port": addr.port(), "sessions": sessions});
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/pg_batch.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with psycopg");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pg_batch.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A row of a table as JSON.
#[allow(dead_code)]
pub type Row = serde_json::Map<String, serde_json::Value>;

/// Write `rows` as a new version of canonical table `table` (the model's
/// columns for `object`, plus `extra` text columns), replacing what it held.
#[allow(dead_code)]
pub async fn write_canonical(
    data: &Path,
    object: &str,
    extra: &[&str],
    rows: &[serde_json::Value],
) {
    use fdp_store::arrow::datatypes::{DataType, Field, Schema};
    let ot = fdp_model::Model::canonical().object_type(object).unwrap();
    let mut fields: Vec<Field> = ot
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(extra.iter().map(|c| Field::new(*c, DataType::Utf8, true)));
    let schema = std::sync::Arc::new(Schema::new(fields));
    let rows: Vec<Row> = rows
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect();
    let batch = fdp_store::rows::batch_from_rows(&schema, &rows).unwrap();
    let path =
        fdp_store::tables::table_location(data, fdp_store::tables::Layer::Canonical, &ot.table)
            .unwrap();
    let table = fdp_store::tables::open_or_create(&path, schema)
        .await
        .unwrap();
    let lineage = fdp_store::Lineage {
        transform: "adversarial-test".into(),
        through_seq: 0,
        raw_versions: Default::default(),
        run: None,
        targets: Vec::new(),
    };
    fdp_store::tables::overwrite(table, vec![batch], &lineage)
        .await
        .unwrap();
}

/// A valid NHS number (modulus 11 check digit) from nine digits.
#[allow(dead_code)]
pub fn nhs_number(nine: u64) -> String {
    let digits: Vec<u32> = format!("{nine:09}")
        .chars()
        .map(|c| c.to_digit(10).unwrap())
        .collect();
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| d * (10 - i as u32))
        .sum();
    let check = (11 - sum % 11) % 11;
    if check == 10 {
        return nhs_number(nine + 1);
    }
    format!("{nine:09}{check}")
}

/// The rows of a product view's JSON answer, as objects.
#[allow(dead_code)]
pub fn rows(answer: &serde_json::Value) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let names: Vec<&str> = answer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            names
                .iter()
                .zip(r.as_array().unwrap())
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect()
        })
        .collect()
}

/// `method path` on `server` as `token` for direct care, with a JSON
/// `body`: the status, and the answer as JSON (or as a string when it is
/// not JSON).
#[allow(dead_code)]
pub fn direct_care_call(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string());
    let r = http_request_with(
        server.http,
        method,
        path,
        Some(token),
        &[("X-Purpose", "direct-care")],
        body.as_deref(),
    );
    let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body.clone()));
    (r.status, v)
}

/// How many messages an instance's federation inbox holds.
#[allow(dead_code)]
pub fn inbox_messages(data: &Path) -> usize {
    std::fs::read_dir(data.join("federation/inbox"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}

/// Send a file of HL7 messages (separated as SimHospital writes them) to
/// `port` with `mllp_send`, an MLLP client that is not ours (the Python
/// `hl7` package): the ACK codes, one per message, in order.
#[allow(dead_code)]
pub fn mllp_send_file(file: &Path, port: u16) -> Vec<String> {
    // --loose: the file separates messages by blank lines; mllp_send
    // splits on each MSH and sends every message in its own frame.
    let out = Command::new("mllp_send")
        .args(["--loose", "--file"])
        .arg(file)
        .args(["--port", &port.to_string(), "127.0.0.1"])
        .output()
        .expect("mllp_send is installed by scripts/test (pip install hl7)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mllp_send failed: {}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
    String::from_utf8_lossy(&out.stdout)
        .split(['\r', '\n'])
        .filter(|l| l.starts_with("MSA|"))
        .map(|l| l.split('|').nth(1).unwrap_or("").to_string())
        .collect()
}

/// Start `fdp serve` with `config` on `data`, which must refuse to start:
/// what it said.
#[allow(dead_code)]
pub fn serve_refused(config: &Path, data: &Path) -> String {
    let out = fdp()
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--http", "127.0.0.1:0", "--mllp", "127.0.0.1:0"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "fdp serve started with {}: {said}",
        config.display()
    );
    said
}

/// moto's S3 on a loopback port, stopped when dropped.
#[allow(dead_code)]
pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

#[allow(dead_code)]
impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (scripts/test installs it)");
        let t0 = std::time::Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn make_bucket(&self, bucket: &str) {
        let made = http_request(
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            "PUT",
            &format!("/{bucket}"),
            None,
            None,
        );
        assert_eq!(made.status, 200, "making the bucket: {}", made.body);
    }

    /// The credentials and endpoint in this process's environment, which
    /// every `fdp` it starts inherits.
    pub fn set_aws_env(&self) {
        for (k, v) in [
            ("AWS_ENDPOINT", self.endpoint().as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "eu-west-2"),
            ("AWS_ACCESS_KEY_ID", "test-key"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ] {
            std::env::set_var(k, v);
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
