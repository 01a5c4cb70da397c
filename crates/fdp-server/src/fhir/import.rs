//! `POST /fhir/$import`: bulk NDJSON import as the FHIR Bulk Data import
//! convention has it. The request names NDJSON files (or directories of
//! them) by `file://` URL or absolute path inside the instance's import
//! directory, as a `Parameters` resource or the simpler JSON manifest:
//!
//! ```json
//! {"resourceType": "Parameters", "parameter": [
//!   {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
//!   {"name": "input", "part": [
//!     {"name": "type", "valueCode": "Patient"},
//!     {"name": "url", "valueUri": "file:///srv/fdp/import/Patient.ndjson"}]}]}
//! ```
//!
//! With `Prefer: respond-async` the answer is `202 Accepted` and a
//! `Content-Location` to poll: `202` with `X-Progress` while it runs, then
//! `200` and a manifest of counts per resource type, with the refused
//! resources as OperationOutcomes at `…/errors` (NDJSON). Without it the
//! import runs before the answer and the manifest is the answer.
//!
//! The instance reads no URL from the network: an import names files an
//! operator or a transfer service put in the import directory, so a request
//! cannot make the instance fetch from, or read, anywhere else.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fdp_fhir::IssueCode;
use fdp_ingest::fhir::{Report, TypeCounts};
use serde_json::{json, Value};

use crate::fhir::{base_url, fhir_json, outcome};
use crate::AppState;

/// Resources loaded per commit: bounds memory on big files, and lets the
/// status show progress.
const CHUNK: usize = 100_000;

/// The import jobs of an instance, kept while it runs.
pub struct Imports {
    root: PathBuf,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

struct Job {
    /// The principal who started it: the only one its status and errors
    /// are shown to.
    owner: String,
    request_url: String,
    started: DateTime<Utc>,
    inputs: Vec<Input>,
    state: Mutex<JobState>,
}

#[derive(Clone)]
struct Input {
    declared_type: Option<String>,
    url: String,
    files: Vec<PathBuf>,
}

#[derive(Clone)]
enum JobState {
    Running {
        files_done: usize,
        resources: u64,
    },
    Done {
        finished: DateTime<Utc>,
        report: Report,
    },
    Failed(String),
}

impl Imports {
    pub fn new(root: PathBuf) -> Imports {
        Imports {
            root,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Job `id`, if `principal` started it. Someone else's job is not
    /// there for them, so its id tells them nothing.
    fn job(&self, id: &str, principal: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .get(id)
            .filter(|j| j.owner == principal)
            .cloned()
    }

    /// A path a request named, if it is inside the import directory.
    fn resolve(&self, url: &str) -> Result<PathBuf, String> {
        let path = match url.strip_prefix("file://") {
            Some(rest) => PathBuf::from(percent_decode(rest)),
            None if url.starts_with('/') => PathBuf::from(url),
            None => {
                return Err(format!(
                    "{url}: give a file:// URL or an absolute path in the import directory; \
                     the instance does not fetch from the network"
                ))
            }
        };
        let root = self.root.canonicalize().map_err(|_| {
            format!(
                "the import directory {} does not exist: create it and put the NDJSON files there",
                self.root.display()
            )
        })?;
        let real = path
            .canonicalize()
            .map_err(|e| format!("{url}: cannot be read ({e})"))?;
        if !real.starts_with(&root) {
            return Err(format!(
                "{url} is outside the import directory {}: only files there can be imported",
                root.display()
            ));
        }
        Ok(real)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The inputs of a request: `(type, url)` from a Parameters resource or a
/// manifest, after checking the input format.
fn inputs_of(body: &Value) -> Result<Vec<(Option<String>, String)>, String> {
    let mut format = None;
    let mut inputs = Vec::new();
    if body["resourceType"] == "Parameters" {
        for p in body["parameter"].as_array().into_iter().flatten() {
            match p["name"].as_str() {
                Some("inputFormat") => {
                    format = p["valueCode"]
                        .as_str()
                        .or(p["valueString"].as_str())
                        .map(str::to_string)
                }
                Some("input") => {
                    let part = |name: &str| {
                        p["part"].as_array().into_iter().flatten().find_map(|q| {
                            (q["name"] == name).then(|| {
                                q["valueUri"]
                                    .as_str()
                                    .or(q["valueUrl"].as_str())
                                    .or(q["valueCode"].as_str())
                                    .or(q["valueString"].as_str())
                                    .map(str::to_string)
                            })?
                        })
                    };
                    let url = part("url").ok_or("an input parameter has no url part")?;
                    inputs.push((part("type"), url));
                }
                _ => {}
            }
        }
    } else if body.get("input").is_some() {
        format = body["inputFormat"].as_str().map(str::to_string);
        for i in body["input"].as_array().ok_or("input must be an array")? {
            let url = i["url"].as_str().ok_or("an input has no url")?;
            inputs.push((i["type"].as_str().map(str::to_string), url.to_string()));
        }
    } else {
        return Err(
            "expected a Parameters resource with input parameters, or a manifest with an input array"
                .into(),
        );
    }
    if let Some(f) = format {
        if !f.starts_with("application/fhir+ndjson") && f != "application/ndjson" && f != "ndjson" {
            return Err(format!(
                "inputFormat {f} is not supported: give application/fhir+ndjson"
            ));
        }
    }
    if inputs.is_empty() {
        return Err("the request names no input".into());
    }
    Ok(inputs)
}

/// NDJSON files of an input: the file, or the `.ndjson` files of a directory.
fn files_of(path: &FsPath) -> Result<Vec<PathBuf>, String> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| fdp_ingest::fhir::is_ndjson(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{} has no .ndjson files", path.display()));
        }
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// `POST /fhir/$import`.
pub async fn start(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return outcome(
                StatusCode::BAD_REQUEST,
                IssueCode::Structure,
                format!("the request body is not JSON: {e}"),
            )
        }
    };
    let imports = &state.fhir.imports;
    let mut inputs = Vec::new();
    for (declared_type, url) in match inputs_of(&request) {
        Ok(i) => i,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, IssueCode::Invalid, e),
    } {
        let files = match imports.resolve(&url).and_then(|p| files_of(&p)) {
            Ok(f) => f,
            Err(e) => return outcome(StatusCode::BAD_REQUEST, IssueCode::NotFound, e),
        };
        inputs.push(Input {
            declared_type,
            url,
            files,
        });
    }
    // An import writes whole records of the types it declares; an input of
    // no declared type (or of one that fills no object type) may hold any,
    // and needs every change granted, records as received included.
    let declared: Option<Vec<&str>> = inputs
        .iter()
        .map(|i| {
            let types = fdp_fhir::map::object_types_of(i.declared_type.as_deref()?);
            (!types.is_empty()).then_some(types)
        })
        .collect::<Option<Vec<_>>>()
        .map(|t| t.concat());
    let mut types = declared.unwrap_or_default();
    types.sort_unstable();
    types.dedup();
    let change = match crate::fhir::may_change(&state, &ext, &headers, &types, "POST /fhir/$import")
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    // 122 random bits: a job's id is its only name, and must not be guessed.
    let id = format!("import-{}", fdp_ingest::fhir::new_id().replace('-', ""));
    let base = base_url(&headers);
    let job = Arc::new(Job {
        owner: crate::auth::principal(&ext).name,
        request_url: format!("{base}/$import"),
        started: Utc::now(),
        inputs,
        state: Mutex::new(JobState::Running {
            files_done: 0,
            resources: 0,
        }),
    });
    imports
        .jobs
        .lock()
        .expect("jobs lock")
        .insert(id.clone(), job.clone());
    let respond_async = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("respond-async"));
    let running = tokio::spawn(run(state.clone(), id.clone(), job.clone(), change));
    if respond_async {
        let status_url = format!("{base}/$import-status/{id}");
        return (
            StatusCode::ACCEPTED,
            [(header::CONTENT_LOCATION, status_url)],
        )
            .into_response();
    }
    let _ = running.await;
    status_response(&base, &id, &job)
}

async fn run(state: AppState, id: String, job: Arc<Job>, change: fdp_govern::RecordChange) {
    let loaded = load(&state, &id, &job).await;
    // Reads and searches answer from memory: add what this import stored.
    let stored = {
        let source = state.fhir.source.lock().await;
        source.versions_of_run(&id).await
    };
    // What the import changed is audited with the patients it is about.
    let mut patients = std::collections::BTreeSet::new();
    let mut changed = 0u64;
    match stored {
        Ok(versions) => {
            for v in versions {
                let body: Option<Value> = v.payload.and_then(|p| serde_json::from_str(&p).ok());
                if let Some(b) = &body {
                    patients.extend(crate::fhir::patient_of(&v.resource_type, &v.id, b));
                }
                changed += 1;
                let at = DateTime::from_timestamp_micros(v.received_at_us).unwrap_or_else(Utc::now);
                state
                    .fhir
                    .remember(&v.resource_type, &v.id, v.version, at, body);
            }
        }
        Err(e) => tracing::error!(error = %e, import = %id, "reading back an import"),
    }
    if let Err(e) = change.changed(changed, patients.into_iter().collect()) {
        tracing::error!(error = %e, import = %id, "a bulk import was stored but could not be audited");
        *job.state.lock().expect("job lock") = JobState::Failed(format!(
            "the import was stored but could not be audited: {e}"
        ));
        return;
    }
    match loaded {
        Ok((total, resources)) => {
            tracing::info!(import = %id, resources, rejected = total.rejected.len(), "bulk import done");
            *job.state.lock().expect("job lock") = JobState::Done {
                finished: Utc::now(),
                report: total,
            };
        }
        Err(why) => *job.state.lock().expect("job lock") = JobState::Failed(why),
    }
}

/// Load every input, a chunk per commit; on a failure, what was loaded so
/// far stays committed, and is audited by the caller.
async fn load(state: &AppState, id: &str, job: &Job) -> Result<(Report, u64), String> {
    let mut total = Report {
        run_id: id.to_string(),
        ..Default::default()
    };
    let mut files_done = 0;
    let mut resources = 0u64;
    for input in &job.inputs {
        for file in &input.files {
            let batch = match tokio::task::spawn_blocking({
                let f = file.clone();
                move || fdp_ingest::fhir::read_files(&[f])
            })
            .await
            {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    total.rejected.push((
                        file.display().to_string(),
                        format!("the file could not be read: {e}"),
                    ));
                    files_done += 1;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            let mut incoming = batch.incoming;
            let mut unreadable = batch.unreadable;
            // A resource of another type than the input declares is refused,
            // as a Bulk Data server would: the file is not what it says.
            if let Some(want) = &input.declared_type {
                let mut kept = Vec::with_capacity(incoming.len());
                for i in incoming {
                    let rt = resource_type_of(&i);
                    if rt.as_deref().is_some_and(|rt| rt != want) {
                        unreadable.push(fdp_ingest::fhir::Unreadable {
                            reason: format!(
                                "a {} in an input declared as {want}",
                                rt.unwrap_or_default()
                            ),
                            text: i.text.clone().unwrap_or_else(|| i.resource.to_string()),
                            source: i.source.clone(),
                            location: i.location.clone(),
                        });
                    } else {
                        kept.push(i);
                    }
                }
                incoming = kept;
            }
            while !incoming.is_empty() || !unreadable.is_empty() {
                let rest = incoming.split_off(incoming.len().min(CHUNK));
                let chunk = std::mem::replace(&mut incoming, rest);
                let bad = std::mem::take(&mut unreadable);
                let n = (chunk.len() + bad.len()) as u64;
                let loaded = {
                    let mut source = state.fhir.source.lock().await;
                    source.load(id, chunk, bad).await
                };
                match loaded {
                    Ok((_, report)) => total.merge(report),
                    Err(e) => {
                        tracing::error!(error = %e, import = %id, "bulk import failed");
                        return Err(format!("storing the resources failed: {e}"));
                    }
                }
                resources += n;
                *job.state.lock().expect("job lock") = JobState::Running {
                    files_done,
                    resources,
                };
            }
            files_done += 1;
            *job.state.lock().expect("job lock") = JobState::Running {
                files_done,
                resources,
            };
        }
    }
    Ok((total, resources))
}

fn resource_type_of(i: &fdp_ingest::fhir::Incoming) -> Option<String> {
    if let Some(rt) = i.resource["resourceType"].as_str() {
        return Some(rt.to_string());
    }
    // An NDJSON line is parsed into a resource later, on every core: here
    // only its type is read, skipping the rest without building it.
    #[derive(serde::Deserialize)]
    struct TypeOnly {
        #[serde(rename = "resourceType")]
        resource_type: Option<String>,
    }
    let text = i.text.as_deref()?;
    serde_json::from_str::<TypeOnly>(text).ok()?.resource_type
}

fn status_response(base: &str, id: &str, job: &Job) -> Response {
    let state = job.state.lock().expect("job lock").clone();
    match state {
        JobState::Running {
            files_done,
            resources,
        } => {
            let files: usize = job.inputs.iter().map(|i| i.files.len()).sum();
            (
                StatusCode::ACCEPTED,
                [
                    (
                        header::HeaderName::from_static("x-progress"),
                        format!("{files_done} of {files} files, {resources} resources"),
                    ),
                    (header::RETRY_AFTER, "1".to_string()),
                ],
            )
                .into_response()
        }
        JobState::Failed(e) => outcome(StatusCode::INTERNAL_SERVER_ERROR, IssueCode::Exception, e),
        JobState::Done { finished, report } => {
            fhir_json(StatusCode::OK, &manifest(base, id, job, finished, &report))
        }
    }
}

fn manifest(base: &str, id: &str, job: &Job, finished: DateTime<Utc>, report: &Report) -> Value {
    let counts = |t: &TypeCounts| t.accepted + t.not_mapped + t.unchanged;
    let by_type: BTreeMap<&String, &TypeCounts> = report.by_type.iter().collect();
    let output: Vec<Value> = by_type
        .iter()
        .map(|(rt, c)| {
            json!({
                "type": rt,
                "count": counts(c),
                "accepted": c.accepted,
                "unchanged": c.unchanged,
                "notMapped": c.not_mapped,
                "rejected": c.rejected,
            })
        })
        .collect();
    let mut error = Vec::new();
    if !report.rejected.is_empty() {
        error.push(json!({
            "type": "OperationOutcome",
            "count": report.rejected.len(),
            "url": format!("{base}/$import-status/{id}/errors"),
        }));
    }
    json!({
        "transactionTime": job.started.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "finished": finished.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "request": job.request_url,
        "requiresAccessToken": true,
        "input": job.inputs.iter().map(|i| json!({
            "type": i.declared_type,
            "url": i.url,
            "files": i.files.len(),
        })).collect::<Vec<_>>(),
        "output": output,
        "error": error,
    })
}

/// `GET /fhir/$import-status/{id}`.
pub async fn status(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match state
        .fhir
        .imports
        .job(&id, &crate::auth::principal(&ext).name)
    {
        Some(job) => status_response(&base_url(&headers), &id, &job),
        None => outcome(
            StatusCode::NOT_FOUND,
            IssueCode::NotFound,
            format!("no import {id} (imports are kept until the instance restarts)"),
        ),
    }
}

/// `GET /fhir/$import-status/{id}/errors`: one OperationOutcome per refused
/// resource, as NDJSON.
pub async fn errors(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    Path(id): Path<String>,
) -> Response {
    let Some(job) = state
        .fhir
        .imports
        .job(&id, &crate::auth::principal(&ext).name)
    else {
        return outcome(
            StatusCode::NOT_FOUND,
            IssueCode::NotFound,
            format!("no import {id}"),
        );
    };
    let JobState::Done { report, .. } = job.state.lock().expect("job lock").clone() else {
        return outcome(
            StatusCode::CONFLICT,
            IssueCode::Processing,
            format!("import {id} has not finished"),
        );
    };
    let mut out = String::new();
    for (location, reason) in &report.rejected {
        let oo = json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "processing",
                "diagnostics": format!("{location}: {reason}"),
                "location": [location],
            }]
        });
        out.push_str(&oo.to_string());
        out.push('\n');
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/fhir+ndjson")],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_manifests_name_their_inputs() {
        let p = json!({"resourceType": "Parameters", "parameter": [
            {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
            {"name": "input", "part": [
                {"name": "type", "valueCode": "Patient"},
                {"name": "url", "valueUri": "file:///x/Patient.ndjson"}]}]});
        assert_eq!(
            inputs_of(&p).unwrap(),
            vec![(Some("Patient".into()), "file:///x/Patient.ndjson".into())]
        );
        let m = json!({"inputFormat": "application/fhir+ndjson", "input": [{"url": "/x"}]});
        assert_eq!(inputs_of(&m).unwrap(), vec![(None, "/x".into())]);
        let csv = json!({"inputFormat": "text/csv", "input": [{"url": "/x"}]});
        assert!(inputs_of(&csv).unwrap_err().contains("text/csv"));
        assert!(inputs_of(&json!({"resourceType": "Parameters"}))
            .unwrap_err()
            .contains("no input"));
    }

    #[test]
    fn only_files_in_the_import_directory_can_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("import");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a b.ndjson"), "").unwrap();
        std::fs::write(dir.path().join("secret.ndjson"), "").unwrap();
        let imports = Imports::new(root.clone());
        let ok = format!("file://{}/a%20b.ndjson", root.display());
        assert!(imports.resolve(&ok).is_ok());
        let outside = format!("{}/../secret.ndjson", root.display());
        assert!(imports.resolve(&outside).unwrap_err().contains("outside"));
        assert!(imports
            .resolve("https://example.org/Patient.ndjson")
            .unwrap_err()
            .contains("does not fetch"));
    }
}
