//! The FHIR R4 REST API at `/fhir`: create, read, vread, update, delete,
//! history, search, batch and transaction Bundles, and the
//! CapabilityStatement. JSON only (`application/fhir+json`).
//!
//! Writes go through the instance's FHIR source, so a resource accepted here
//! is in raw and in the canonical tables before the answer is sent, exactly
//! as one loaded from a file. Reads are answered from the versions held in
//! memory, loaded from raw when the instance starts.
//!
//! A read serves whole records as received, so governance allows it only
//! where the policy would show every column of what the resource type maps
//! to (see `Governance::whole_records`), for the purpose the request names
//! in `X-Purpose` (default `direct-care`, what a FHIR API is for); every
//! read and refusal is audited with the patients it named.

// The checks return the error response itself, which a handler returns at
// once; boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

pub(crate) mod import;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use fdp_fhir::bundle::{self, BundleKind, Method};
use fdp_fhir::primitives::is_valid_id;
use fdp_fhir::search::Search;
use fdp_fhir::validate::is_r4_resource_type;
use fdp_fhir::{Issue, IssueCode, OperationOutcome};
use fdp_ingest::fhir::{FhirSource, Incoming, Outcome};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::AppState;
use fdp_govern::{GovernError, RecordChange, RecordRead, SessionRequest};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The purpose a read is made for: `X-Purpose` (default `direct-care`),
/// with `X-Justification` and `X-Project` where the policy asks for them.
pub(crate) fn read_request(
    ext: &Extensions,
    headers: &HeaderMap,
) -> Result<SessionRequest, Response> {
    crate::checkpoint::declared_in_headers(crate::auth::principal(ext), headers, "fhir")
        .map_err(|e| outcome(StatusCode::BAD_REQUEST, IssueCode::Value, e))
}

/// Whole records of type `rt` for `req`, or the OperationOutcome refusing
/// them (the refusal is audited).
fn may_read(
    state: &AppState,
    req: &SessionRequest,
    rt: &str,
    what: &str,
) -> Result<RecordRead, Response> {
    state
        .governance
        .whole_records(req, fdp_fhir::map::object_types_of(rt), what)
        .map_err(refused_outcome)
}

/// A change to records filling `object_types` for the purpose the request
/// names, or the OperationOutcome refusing it (the refusal is audited).
pub(crate) fn may_change(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    object_types: &[&str],
    what: &str,
) -> Result<RecordChange, Response> {
    let req = read_request(ext, headers)?;
    state
        .governance
        .change_records(&req, object_types, what)
        .map_err(refused_outcome)
}

/// A governance error as the OperationOutcome a FHIR client expects: 403
/// for a refusal, 500 for anything else.
fn refused_outcome(e: GovernError) -> Response {
    match e {
        GovernError::Refused(r) => {
            outcome(StatusCode::FORBIDDEN, IssueCode::Forbidden, r.to_string())
        }
        e => outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueCode::Exception,
            e.to_string(),
        ),
    }
}

/// Audit what `change` did, then answer with `response`. The change is
/// already durable, so an audit that fails is reported as a failure the
/// operator must see, never passed over.
fn change_audited(
    change: &RecordChange,
    records: u64,
    patients: Vec<String>,
    response: Response,
) -> Response {
    match change.changed(records, patients) {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, "a FHIR change was stored but could not be audited");
            outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueCode::Exception,
                format!("the change was stored but could not be audited: {e}"),
            )
        }
    }
}

/// How many of `outcomes` changed a record, and the patients those are about.
fn changed_by(outcomes: &[Outcome], items: &[(Value, String, String)]) -> (u64, Vec<String>) {
    let mut records = 0;
    let mut patients = std::collections::BTreeSet::new();
    for (o, (r, id, _)) in outcomes.iter().zip(items) {
        if let Outcome::Stored { resource_type, .. } = o {
            records += 1;
            patients.extend(patient_of(resource_type, id, r));
        }
    }
    (records, patients.into_iter().collect())
}

/// Audit what `read` served, then answer with `response`; an answer that
/// cannot be audited is not given.
fn audited(read: RecordRead, records: u64, patients: Vec<String>, response: Response) -> Response {
    match read.served(records, patients) {
        Ok(()) => response,
        Err(e) => outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueCode::Exception,
            format!("the read could not be audited, so it is not answered: {e}"),
        ),
    }
}

/// The patients a resource is about: a Patient's own id, or the patient
/// its `subject` or `patient` refers to.
pub(crate) fn patient_of(rt: &str, id: &str, body: &Value) -> Option<String> {
    if rt == "Patient" {
        return Some(id.to_string());
    }
    ["subject", "patient"].iter().find_map(|k| {
        body.get(k)?
            .get("reference")?
            .as_str()?
            .strip_prefix("Patient/")
            .map(str::to_string)
    })
}

/// One version of a resource held for reads; `body` is `None` when deleted.
#[derive(Debug, Clone)]
struct Version {
    version: i64,
    at: DateTime<Utc>,
    body: Option<Arc<Value>>,
}

/// The FHIR API's state: the single writer, and every version for reads.
pub struct FhirService {
    pub(crate) source: Mutex<FhirSource>,
    versions: RwLock<HashMap<(String, String), Vec<Version>>>,
    pub(crate) imports: import::Imports,
}

impl FhirService {
    /// Open the FHIR source of a data directory and load what it holds.
    pub async fn open(data_dir: &std::path::Path) -> Result<FhirService, fdp_store::StoreError> {
        let source = FhirSource::open(data_dir).await?;
        let mut versions: HashMap<(String, String), Vec<Version>> = HashMap::new();
        for v in source.versions().await? {
            let body = v
                .payload
                .and_then(|p| serde_json::from_str::<Value>(&p).ok())
                .map(Arc::new);
            versions
                .entry((v.resource_type, v.id))
                .or_default()
                .push(Version {
                    version: v.version,
                    at: Utc
                        .timestamp_micros(v.received_at_us)
                        .single()
                        .unwrap_or_else(Utc::now),
                    body,
                });
        }
        Ok(FhirService {
            source: Mutex::new(source),
            versions: RwLock::new(versions),
            imports: import::Imports::new(data_dir.join("import")),
        })
    }

    /// Where `$import` may read files from (by default `import/` in the data
    /// directory): the only part of the file system a request can name.
    pub fn with_import_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.imports = import::Imports::new(dir);
        self
    }

    /// Store `items` (each a resource, the id to store it under and where
    /// in the request it was) as received from `source`, remembering each
    /// version stored for reads. With `same_as_any_version`, content held
    /// before in any version is unchanged (a message delivered again).
    pub(crate) async fn load(
        &self,
        source: &str,
        items: &[(Value, String, String)],
        same_as_any_version: bool,
    ) -> Result<Vec<Outcome>, fdp_store::StoreError> {
        let incoming: Vec<Incoming> = items
            .iter()
            .map(|(r, id, location)| Incoming {
                resource: r.clone(),
                id: Some(id.clone()),
                text: None,
                source: source.to_string(),
                location: location.clone(),
                same_as_any_version,
            })
            .collect();
        let mut fhir_source = self.source.lock().await;
        let (outcomes, _) = fhir_source.load(&run_id(), incoming, Vec::new()).await?;
        for (o, (r, id, _)) in outcomes.iter().zip(items) {
            if let Outcome::Stored {
                resource_type,
                version,
                last_updated,
                ..
            } = o
            {
                let at = DateTime::parse_from_rfc3339(last_updated)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                self.remember(resource_type, id, *version, at, Some(r.clone()));
            }
        }
        Ok(outcomes)
    }

    /// The patient the current version of `rt/id` is about, if any.
    fn patients_of(&self, rt: &str, id: &str) -> Vec<String> {
        self.current(rt, id)
            .and_then(|v| v.body)
            .and_then(|b| patient_of(rt, id, &b))
            .into_iter()
            .collect()
    }

    fn current(&self, rt: &str, id: &str) -> Option<Version> {
        let v = self.versions.read().expect("versions lock");
        v.get(&(rt.to_string(), id.to_string()))
            .and_then(|vs| vs.last().cloned())
    }

    pub(crate) fn remember(
        &self,
        rt: &str,
        id: &str,
        version: i64,
        at: DateTime<Utc>,
        body: Option<Value>,
    ) {
        let mut v = self.versions.write().expect("versions lock");
        v.entry((rt.to_string(), id.to_string()))
            .or_default()
            .push(Version {
                version,
                at,
                body: body.map(Arc::new),
            });
    }
}

/// A referral's record, received from a peer, is stored as any FHIR
/// resource is: in raw under the peer's name, and in the canonical tables.
#[async_trait::async_trait]
impl fdp_federation::referrals::RecordIntake for FhirService {
    async fn take(
        &self,
        source: &str,
        resources: Vec<(Value, String)>,
    ) -> Result<Vec<String>, String> {
        let items: Vec<(Value, String, String)> = resources
            .into_iter()
            .enumerate()
            .map(|(i, (r, id))| (r, id, format!("Bundle.entry[{i}]")))
            .collect();
        let outcomes = self
            .load(source, &items, true)
            .await
            .map_err(|e| format!("the record could not be stored: {e}"))?;
        let refused: Vec<String> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Rejected(oo) => Some(oo.summary()),
                _ => None,
            })
            .collect();
        if !refused.is_empty() {
            return Err(refused.join("; "));
        }
        Ok(items
            .iter()
            .map(|(r, id, _)| format!("{}/{id}", r["resourceType"].as_str().unwrap_or_default()))
            .collect())
    }

    fn current(&self, record: &[String]) -> Vec<Value> {
        record
            .iter()
            .filter_map(|r| r.split_once('/'))
            .filter_map(|(rt, id)| FhirService::current(self, rt, id)?.body)
            .map(|b| (*b).clone())
            .collect()
    }
}

fn run_id() -> String {
    format!("rest-{}", Utc::now().format("%Y%m%dT%H%M%S%.6fZ"))
}

pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/fhir")
}

fn instant(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The resource as served: its id and meta filled in.
fn served(body: &Value, id: &str, v: &Version) -> Value {
    let mut r = body.clone();
    if let Some(o) = r.as_object_mut() {
        o.insert("id".into(), json!(id));
        let meta = o.entry("meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert("versionId".into(), json!(v.version.to_string()));
            m.insert("lastUpdated".into(), json!(instant(v.at)));
        }
    }
    r
}

pub(crate) fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn outcome(
    status: StatusCode,
    code: IssueCode,
    diagnostics: impl Into<String>,
) -> Response {
    fhir_json(status, &issue_json(code, diagnostics.into()))
}

/// An OperationOutcome with one error.
fn issue_json(code: IssueCode, diagnostics: String) -> Value {
    OperationOutcome::single(Issue {
        severity: fdp_fhir::Severity::Error,
        code,
        expression: None,
        diagnostics,
    })
    .to_json()
}

fn with_version_headers(mut resp: Response, v: &Version) -> Response {
    let h = resp.headers_mut();
    if let Ok(e) = HeaderValue::from_str(&format!("W/\"{}\"", v.version)) {
        h.insert(header::ETAG, e);
    }
    if let Ok(l) = HeaderValue::from_str(&v.at.to_rfc2822().replace("+0000", "GMT")) {
        h.insert(header::LAST_MODIFIED, l);
    }
    resp
}

/// Refuse XML politely: this server speaks JSON.
fn check_format(headers: &HeaderMap, params: &HashMap<String, String>) -> Result<(), Response> {
    let wants = |s: &str| s.contains("json") || s.contains("*/*") || s.is_empty();
    if let Some(f) = params.get("_format") {
        if !wants(f) {
            return Err(outcome(
                StatusCode::NOT_ACCEPTABLE,
                IssueCode::NotSupported,
                format!("_format={f}: this server answers application/fhir+json only"),
            ));
        }
    }
    if let Some(a) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) {
        if !wants(a) {
            return Err(outcome(
                StatusCode::NOT_ACCEPTABLE,
                IssueCode::NotSupported,
                format!("Accept: {a}: this server answers application/fhir+json only"),
            ));
        }
    }
    Ok(())
}

fn check_type(rt: &str) -> Result<(), Response> {
    if is_r4_resource_type(rt) {
        Ok(())
    } else {
        Err(outcome(
            StatusCode::NOT_FOUND,
            IssueCode::NotSupported,
            format!("{rt:?} is not a FHIR R4 resource type"),
        ))
    }
}

/// Refuses a write of a type only products' actions write: a Task here is
/// a change to the waiting list, valid only with who proposed it and who
/// signed it off, which the actions take from the signed-in principals.
fn check_writable(rt: &str) -> Result<(), Response> {
    check_type(rt)?;
    if rt == "Task" {
        return Err(outcome(
            StatusCode::FORBIDDEN,
            IssueCode::Forbidden,
            fdp_fhir::change_request::WRITTEN_ONLY_BY_ACTIONS.to_string(),
        ));
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), Response> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(outcome(
            StatusCode::BAD_REQUEST,
            IssueCode::Value,
            format!("{id:?} is not a valid id (1-64 letters, digits, '-' or '.')"),
        ))
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice::<Value>(body).map_err(|e| {
        outcome(
            StatusCode::BAD_REQUEST,
            IssueCode::Structure,
            format!("the body is not JSON: {e}"),
        )
    })
}

pub async fn metadata(State(state): State<AppState>) -> Response {
    let types: Vec<Value> = fdp_fhir::MAPPED_TYPES
        .iter()
        .map(|t| {
            let interactions: Vec<Value> = [
                "read",
                "vread",
                "update",
                "delete",
                "history-instance",
                "create",
                "search-type",
            ]
            .iter()
            .map(|c| json!({"code": c}))
            .collect();
            let params: Vec<Value> = fdp_fhir::search::parameters(t)
                .iter()
                .map(|(n, ty)| json!({"name": n, "type": ty.as_str()}))
                .collect();
            json!({
                "type": t,
                "interaction": interactions,
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "searchParam": params,
            })
        })
        .collect();
    fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": instant(state.instance.started_at),
            "publisher": format!("OpenFDP instance {}", state.instance.ods),
            "kind": "instance",
            "software": {"name": "OpenFDP", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": format!("OpenFDP instance of {}", state.instance.ods)},
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "rest": [{
                "mode": "server",
                "security": {"description": "Authorization: Bearer <token> on every request"},
                "resource": types,
                "interaction": [{"code": "batch"}, {"code": "transaction"}, {"code": "history-system"}],
            }],
        }),
    )
}

pub async fn read(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    ext: Extensions,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let read = match check_format(&headers, &params)
        .and(check_type(&rt))
        .and(check_id(&id))
        .and_then(|()| read_request(&ext, &headers))
        .and_then(|req| may_read(&state, &req, &rt, &format!("GET /fhir/{rt}/{id}")))
    {
        Ok(read) => read,
        Err(r) => return r,
    };
    let found = state.fhir.current(&rt, &id);
    one_version(
        read,
        &rt,
        &id,
        found,
        format!("{rt}/{id} is not known"),
        |v| format!("{rt}/{id} was deleted (version {v})"),
    )
}

/// Answer a read of one version, audited: 404 when there is none, 410 when
/// it is the resource's deletion, else the resource with its version.
fn one_version(
    read: RecordRead,
    rt: &str,
    id: &str,
    found: Option<Version>,
    not_found: String,
    deleted: impl FnOnce(i64) -> String,
) -> Response {
    match found {
        None => audited(
            read,
            0,
            vec![],
            outcome(StatusCode::NOT_FOUND, IssueCode::NotFound, not_found),
        ),
        Some(v) => match &v.body {
            None => audited(
                read,
                0,
                vec![],
                outcome(StatusCode::GONE, IssueCode::Processing, deleted(v.version)),
            ),
            Some(body) => audited(
                read,
                1,
                patient_of(rt, id, body).into_iter().collect(),
                with_version_headers(fhir_json(StatusCode::OK, &served(body, id, &v)), &v),
            ),
        },
    }
}

pub async fn vread(
    State(state): State<AppState>,
    Path((rt, id, vid)): Path<(String, String, String)>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let read = match check_type(&rt)
        .and(check_id(&id))
        .and_then(|()| read_request(&ext, &headers))
        .and_then(|req| {
            may_read(
                &state,
                &req,
                &rt,
                &format!("GET /fhir/{rt}/{id}/_history/{vid}"),
            )
        }) {
        Ok(read) => read,
        Err(r) => return r,
    };
    let found = {
        let all = state.fhir.versions.read().expect("versions lock");
        all.get(&(rt.clone(), id.clone()))
            .and_then(|vs| vs.iter().find(|v| v.version.to_string() == vid).cloned())
    };
    one_version(
        read,
        &rt,
        &id,
        found,
        format!("{rt}/{id} has no version {vid}"),
        |_| format!("version {vid} of {rt}/{id} is its deletion"),
    )
}

pub async fn history(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let read = match check_type(&rt)
        .and(check_id(&id))
        .and_then(|()| read_request(&ext, &headers))
        .and_then(|req| may_read(&state, &req, &rt, &format!("GET /fhir/{rt}/{id}/_history")))
    {
        Ok(read) => read,
        Err(r) => return r,
    };
    let versions = {
        let all = state.fhir.versions.read().expect("versions lock");
        all.get(&(rt.clone(), id.clone()))
            .cloned()
            .unwrap_or_default()
    };
    if versions.is_empty() {
        return audited(
            read,
            0,
            vec![],
            outcome(
                StatusCode::NOT_FOUND,
                IssueCode::NotFound,
                format!("{rt}/{id} is not known"),
            ),
        );
    }
    let patients: std::collections::BTreeSet<String> = versions
        .iter()
        .filter_map(|v| v.body.as_ref().and_then(|b| patient_of(&rt, &id, b)))
        .collect();
    let base = base_url(&headers);
    let entries: Vec<Value> = versions
        .iter()
        .rev()
        .map(|v| {
            let mut e = json!({
                "fullUrl": format!("{base}/{rt}/{id}"),
                "request": {"method": if v.body.is_none() { "DELETE" } else if v.version == 1 { "POST" } else { "PUT" },
                            "url": format!("{rt}/{id}")},
                "response": {"status": if v.version == 1 { "201 Created" } else { "200 OK" },
                             "etag": format!("W/\"{}\"", v.version), "lastModified": instant(v.at)},
            });
            if let Some(b) = &v.body {
                e["resource"] = served(b, &id, v);
            }
            e
        })
        .collect();
    audited(
        read,
        entries.len() as u64,
        patients.into_iter().collect(),
        fhir_json(
            StatusCode::OK,
            &json!({"resourceType": "Bundle", "type": "history", "total": entries.len(),
                    "link": [{"relation": "self", "url": format!("{base}/{rt}/{id}/_history")}],
                    "entry": entries}),
        ),
    )
}

/// Store resources through the FHIR source, remembering what was stored.
async fn store(
    state: &AppState,
    items: Vec<(Value, String, String)>,
) -> Result<Vec<Outcome>, Response> {
    state.fhir.load("rest", &items, false).await.map_err(|e| {
        tracing::error!(error = %e, "storing FHIR resources");
        outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueCode::Exception,
            format!("the resources could not be stored: {e}"),
        )
    })
}

/// The answer to one stored (or refused) resource.
fn write_response(state: &AppState, base: &str, o: &Outcome, id: &str) -> Response {
    match o {
        Outcome::Rejected(oo) => {
            let code = if oo.issues.iter().any(|i| i.code == IssueCode::Structure) {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            fhir_json(code, &oo.to_json())
        }
        Outcome::Stored { resource_type, .. } | Outcome::Unchanged { resource_type, .. } => {
            let created = matches!(o, Outcome::Stored { created: true, .. });
            let Some(v) = state.fhir.current(resource_type, id) else {
                return outcome(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueCode::Exception,
                    "stored but not found",
                );
            };
            let body = v
                .body
                .as_ref()
                .map(|b| served(b, id, &v))
                .unwrap_or(Value::Null);
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut resp = with_version_headers(fhir_json(status, &body), &v);
            if let Ok(l) = HeaderValue::from_str(&format!(
                "{base}/{resource_type}/{id}/_history/{}",
                v.version
            )) {
                resp.headers_mut().insert(header::LOCATION, l.clone());
                resp.headers_mut().insert(header::CONTENT_LOCATION, l);
            }
            resp
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    Path(rt): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let change = match check_writable(&rt).and_then(|()| {
        may_change(
            &state,
            &ext,
            &headers,
            fdp_fhir::map::object_types_of(&rt),
            &format!("POST /fhir/{rt}"),
        )
    }) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let resource = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if resource.get("resourceType").and_then(Value::as_str) != Some(rt.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            IssueCode::Invalid,
            format!("the body is not a {rt} resource"),
        );
    }
    let id = fdp_ingest::fhir::new_id();
    let mut resource = resource;
    if let Some(o) = resource.as_object_mut() {
        o.insert("id".into(), json!(id));
    }
    let items = vec![(resource, id.clone(), format!("POST {rt}"))];
    match store(&state, items.clone()).await {
        Ok(outcomes) => {
            let (records, patients) = changed_by(&outcomes, &items);
            let resp = write_response(&state, &base_url(&headers), &outcomes[0], &id);
            change_audited(&change, records, patients, resp)
        }
        Err(r) => r,
    }
}

pub async fn update(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    ext: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let change = match check_writable(&rt).and(check_id(&id)).and_then(|()| {
        may_change(
            &state,
            &ext,
            &headers,
            fdp_fhir::map::object_types_of(&rt),
            &format!("PUT /fhir/{rt}/{id}"),
        )
    }) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let resource = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if resource.get("resourceType").and_then(Value::as_str) != Some(rt.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            IssueCode::Invalid,
            format!("the body is not a {rt} resource"),
        );
    }
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id != id => {
            return outcome(
                StatusCode::BAD_REQUEST,
                IssueCode::Invalid,
                format!("the resource's id {body_id:?} is not the id in the URL {id:?}"),
            )
        }
        None => {
            return outcome(
                StatusCode::BAD_REQUEST,
                IssueCode::Required,
                "an update must carry the resource's id",
            )
        }
        _ => {}
    }
    let items = vec![(resource, id.clone(), format!("PUT {rt}/{id}"))];
    match store(&state, items.clone()).await {
        Ok(outcomes) => {
            let (records, patients) = changed_by(&outcomes, &items);
            let resp = write_response(&state, &base_url(&headers), &outcomes[0], &id);
            change_audited(&change, records, patients, resp)
        }
        Err(r) => r,
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let change = match check_writable(&rt).and(check_id(&id)).and_then(|()| {
        may_change(
            &state,
            &ext,
            &headers,
            fdp_fhir::map::object_types_of(&rt),
            &format!("DELETE /fhir/{rt}/{id}"),
        )
    }) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let patients = state.fhir.patients_of(&rt, &id);
    let mut source = state.fhir.source.lock().await;
    match source.delete(&run_id(), &rt, &id).await {
        Ok(Some(version)) => {
            state.fhir.remember(&rt, &id, version, Utc::now(), None);
            change_audited(&change, 1, patients, StatusCode::NO_CONTENT.into_response())
        }
        // Deleting what is not there (or already deleted) succeeds too.
        Ok(None) => change_audited(&change, 0, vec![], StatusCode::NO_CONTENT.into_response()),
        Err(e) => outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueCode::Exception,
            format!("could not delete {rt}/{id}: {e}"),
        ),
    }
}

pub async fn search(
    State(state): State<AppState>,
    Path(rt): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let map: HashMap<String, String> = params.iter().cloned().collect();
    let asked: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let read = match check_format(&headers, &map)
        .and(check_type(&rt))
        .and_then(|()| read_request(&ext, &headers))
        .and_then(|req| {
            may_read(
                &state,
                &req,
                &rt,
                &format!("GET /fhir/{rt}?{}", asked.join("&")),
            )
        }) {
        Ok(read) => read,
        Err(r) => return r,
    };
    let search = match Search::parse(&rt, &params) {
        Ok(s) => s,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, IssueCode::NotSupported, e),
    };
    let mut hits: Vec<(String, Version, Arc<Value>)> = {
        let all = state.fhir.versions.read().expect("versions lock");
        all.iter()
            .filter(|((t, _), _)| t == &rt)
            .filter_map(|((_, id), vs)| {
                let v = vs.last()?;
                let body = v.body.as_ref()?;
                search
                    .matches(id, v.at, body)
                    .then(|| (id.clone(), v.clone(), body.clone()))
            })
            .collect()
    };
    hits.sort_by(|a, b| a.0.cmp(&b.0));
    let total = hits.len();
    let base = base_url(&headers);
    let links = search.links(&base, total);
    let (count, offset) = (search.count, search.offset);
    let page: Vec<&(String, Version, Arc<Value>)> = hits.iter().skip(offset).take(count).collect();
    let patients: std::collections::BTreeSet<String> = page
        .iter()
        .filter_map(|(id, _, body)| patient_of(&rt, id, body))
        .collect();
    let entries: Vec<Value> = page
        .iter()
        .map(|(id, v, body)| json!({"fullUrl": format!("{base}/{rt}/{id}"), "resource": served(body, id, v), "search": {"mode": "match"}}))
        .collect();
    audited(
        read,
        entries.len() as u64,
        patients.into_iter().collect(),
        fhir_json(
            StatusCode::OK,
            &json!({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links, "entry": entries}),
        ),
    )
}

/// A Bundle's changes: the decision for each resource type it changes,
/// and what was changed under each, audited once the Bundle is done.
#[derive(Default)]
struct BundleChanges {
    decided: HashMap<String, Result<RecordChange, (StatusCode, Value)>>,
    made: HashMap<String, (u64, std::collections::BTreeSet<String>)>,
}

impl BundleChanges {
    /// May the Bundle's request change records of type `rt`? Decided (and
    /// a refusal audited) once per type.
    fn decide(
        &mut self,
        state: &AppState,
        req: &Result<SessionRequest, String>,
        rt: &str,
    ) -> Result<(), (StatusCode, Value)> {
        let decided = self.decided.entry(rt.to_string()).or_insert_with(|| {
            let req = req.as_ref().map_err(|bad| {
                (
                    StatusCode::BAD_REQUEST,
                    issue_json(IssueCode::Value, bad.clone()),
                )
            })?;
            if rt == "Task" {
                return Err((
                    StatusCode::FORBIDDEN,
                    issue_json(
                        IssueCode::Forbidden,
                        fdp_fhir::change_request::WRITTEN_ONLY_BY_ACTIONS.to_string(),
                    ),
                ));
            }
            state
                .governance
                .change_records(
                    req,
                    fdp_fhir::map::object_types_of(rt),
                    &format!("POST /fhir (Bundle) {rt}"),
                )
                .map_err(|e| match e {
                    GovernError::Refused(r) => (
                        StatusCode::FORBIDDEN,
                        issue_json(IssueCode::Forbidden, r.to_string()),
                    ),
                    e => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        issue_json(IssueCode::Exception, e.to_string()),
                    ),
                })
        });
        decided.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    fn made(&mut self, rt: &str, patients: impl IntoIterator<Item = String>) {
        let (n, p) = self.made.entry(rt.to_string()).or_default();
        *n += 1;
        p.extend(patients);
    }

    /// Audit every allowed decision with what was changed under it.
    fn audit(self) -> Result<(), GovernError> {
        let mut made = self.made;
        for (rt, decided) in self.decided {
            if let Ok(change) = decided {
                let (n, patients) = made.remove(&rt).unwrap_or_default();
                change.changed(n, patients.into_iter().collect())?;
            }
        }
        Ok(())
    }
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// `POST /fhir` with a batch or transaction Bundle.
pub async fn bundle(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let b = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if b.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return outcome(
            StatusCode::BAD_REQUEST,
            IssueCode::Invalid,
            "POST /fhir takes a batch or transaction Bundle",
        );
    }
    let (kind, mut entries) = match bundle::unpack(&b) {
        Ok(x) => x,
        Err(issue) => {
            return fhir_json(
                StatusCode::BAD_REQUEST,
                &OperationOutcome::single(issue).to_json(),
            )
        }
    };
    if kind == BundleKind::Collection {
        return outcome(
            StatusCode::BAD_REQUEST,
            IssueCode::Invalid,
            "POST /fhir takes a batch or transaction Bundle",
        );
    }
    let urls = bundle::assign_ids(&mut entries, fdp_ingest::fhir::new_id);
    let base = base_url(&headers);
    // Reads in the Bundle are governed like reads on their own, and writes
    // like writes on their own: one decision per resource type changed.
    let read_req = read_request(&ext, &headers).map_err(|_| {
        "X-Purpose is not one of direct-care, operations, planning, research".to_string()
    });
    let mut changes = BundleChanges::default();
    // Check every writing entry first; a transaction stops at the first problem.
    let mut writes: Vec<(usize, Value, String)> = Vec::new();
    let mut responses: Vec<Option<Value>> = vec![None; entries.len()];
    for e in &mut entries {
        let changing = match (e.method, &e.target, &e.url) {
            (Method::Post | Method::Put, Some((rt, _)), _) => Some(rt.clone()),
            (Method::Delete, _, Some(url)) => url
                .split_once('/')
                .filter(|(rt, id)| is_r4_resource_type(rt) && is_valid_id(id))
                .map(|(rt, _)| rt.to_string()),
            _ => None,
        };
        if let Some(rt) = changing {
            if let Err((status, oo)) = changes.decide(&state, &read_req, &rt) {
                if kind == BundleKind::Transaction {
                    return fhir_json(status, &oo);
                }
                responses[e.index] = Some(json!({"status": status_line(status), "outcome": oo}));
                continue;
            }
        }
        match e.method {
            Method::Post | Method::Put => {
                let Some(mut r) = e.resource.take() else {
                    let issue = Issue::error(
                        IssueCode::Required,
                        format!("{}.resource", e.path()),
                        "a POST or PUT entry needs a resource",
                    );
                    if kind == BundleKind::Transaction {
                        return fhir_json(
                            StatusCode::BAD_REQUEST,
                            &OperationOutcome::single(issue).to_json(),
                        );
                    }
                    responses[e.index] = Some(
                        json!({"status": "400 Bad Request", "outcome": OperationOutcome::single(issue).to_json()}),
                    );
                    continue;
                };
                bundle::resolve_references(&mut r, &urls);
                let (_, id) = e.target.clone().expect("writing entries have targets");
                if let Some(o) = r.as_object_mut() {
                    o.insert("id".into(), json!(id));
                }
                let errors: Vec<Issue> = fdp_fhir::validate::validate(&r)
                    .into_iter()
                    .filter(Issue::is_error)
                    .collect();
                if !errors.is_empty() {
                    let path = e.path();
                    let oo = OperationOutcome::new(
                        errors
                            .into_iter()
                            .map(|i| i.within(&format!("{path}.resource")))
                            .collect(),
                    );
                    if kind == BundleKind::Transaction {
                        return fhir_json(StatusCode::UNPROCESSABLE_ENTITY, &oo.to_json());
                    }
                    responses[e.index] = Some(
                        json!({"status": "422 Unprocessable Entity", "outcome": oo.to_json()}),
                    );
                    continue;
                }
                writes.push((e.index, r, id));
            }
            Method::Get | Method::Delete | Method::None => {}
        }
    }
    let items: Vec<(Value, String, String)> = writes
        .iter()
        .map(|(i, r, id)| (r.clone(), id.clone(), format!("Bundle.entry[{i}]")))
        .collect();
    let outcomes = match store(&state, items.clone()).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    for (o, (r, id, _)) in outcomes.iter().zip(&items) {
        if let Outcome::Stored { resource_type, .. } = o {
            changes.made(resource_type, patient_of(resource_type, id, r));
        }
    }
    for ((index, _, id), o) in writes.iter().zip(&outcomes) {
        let resp = write_response(&state, &base, o, id);
        let status = resp.status();
        let mut r = json!({"status": status_line(status)});
        if let Some(l) = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
        {
            r["location"] = json!(l);
        }
        if let Some(t) = resp
            .headers()
            .get(header::ETAG)
            .and_then(|l| l.to_str().ok())
        {
            r["etag"] = json!(t);
        }
        if let Outcome::Rejected(oo) = o {
            r["outcome"] = oo.to_json();
        }
        responses[*index] = Some(r);
    }
    for e in &entries {
        match (e.method, &e.url) {
            // Refused when the writes were checked.
            (Method::Delete, Some(_)) if responses[e.index].is_some() => {}
            (Method::Delete, Some(url)) => {
                let status = match url.split_once('/') {
                    Some((rt, id)) if is_r4_resource_type(rt) && is_valid_id(id) => {
                        let patients = state.fhir.patients_of(rt, id);
                        let mut source = state.fhir.source.lock().await;
                        match source.delete(&run_id(), rt, id).await {
                            Ok(Some(v)) => {
                                state.fhir.remember(rt, id, v, Utc::now(), None);
                                changes.made(rt, patients);
                                "204 No Content"
                            }
                            Ok(None) => "204 No Content",
                            Err(_) => "500 Internal Server Error",
                        }
                    }
                    _ => "400 Bad Request",
                };
                responses[e.index] = Some(json!({"status": status}));
            }
            (Method::Get, Some(url)) => {
                let (rt, id) = url.split_once('/').unwrap_or((url, ""));
                let read = match &read_req {
                    Err(bad) => Err(json!({"status": "400 Bad Request", "outcome": issue_json(IssueCode::Value, bad.clone())})),
                    Ok(req) => state
                        .governance
                        .whole_records(
                            req,
                            fdp_fhir::map::object_types_of(rt),
                            &format!("GET /fhir/{url} (Bundle.entry[{}])", e.index),
                        )
                        .map_err(|e| json!({"status": "403 Forbidden", "outcome": issue_json(IssueCode::Forbidden, e.to_string())})),
                };
                responses[e.index] = Some(match read {
                    Err(refused) => refused,
                    Ok(read) => match state.fhir.current(rt, id) {
                        Some(v) if v.body.is_some() => {
                            let body = v.body.as_ref().expect("checked");
                            match read.served(1, patient_of(rt, id, body).into_iter().collect()) {
                                Ok(()) => {
                                    json!({"status": "200 OK", "resource": served(body, id, &v)})
                                }
                                Err(_) => json!({"status": "500 Internal Server Error"}),
                            }
                        }
                        _ => match read.served(0, vec![]) {
                            Ok(()) => json!({"status": "404 Not Found"}),
                            Err(_) => json!({"status": "500 Internal Server Error"}),
                        },
                    },
                });
            }
            _ => {}
        }
    }
    if let Err(e) = changes.audit() {
        tracing::error!(error = %e, "a FHIR Bundle's changes were stored but could not be audited");
        return outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueCode::Exception,
            format!("the Bundle's changes were stored but could not be audited: {e}"),
        );
    }
    let response_type = if kind == BundleKind::Transaction {
        "transaction-response"
    } else {
        "batch-response"
    };
    let entries: Vec<Value> = responses
        .into_iter()
        .map(|r| {
            let mut entry = Map::new();
            entry.insert(
                "response".into(),
                r.unwrap_or_else(|| json!({"status": "400 Bad Request"})),
            );
            Value::Object(entry)
        })
        .collect();
    fhir_json(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": response_type, "entry": entries}),
    )
}
