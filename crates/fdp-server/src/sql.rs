//! `POST /sql` and `POST /export`: a query under the caller's declared
//! purpose, through the same governed session as `fdp sql` and the
//! PostgreSQL endpoint, answered as JSON or as a CSV file.

use axum::extract::State;
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_govern::{GovernError, Principal, Purpose, SessionRequest};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One query; or, instead, `extract` and `file`.
    #[serde(default)]
    pub sql: Option<String>,
    /// A file of an extract the IG lead approved for the research
    /// `project`: its rows leave, shaped by the policy (see
    /// `GovernedSession::extract`).
    #[serde(default)]
    pub extract: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    /// direct-care, operations, planning or research.
    pub purpose: Purpose,
    pub role: Option<String>,
    pub project: Option<String>,
    pub justification: Option<String>,
}

fn problem(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// What a request asks for.
enum Asked {
    Query(String),
    /// An approved extract, and which of its files.
    Extract(String, String),
}

/// Open the caller's governed session for `body` and run its query: the
/// answer, or the response that says why not.
async fn run(
    state: &AppState,
    ext: &Extensions,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
    channel: &str,
) -> Result<(fdp_govern::GovernedSession, fdp_govern::QueryResult), Response> {
    let Json(body) = body.map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text()))?;
    // What is asked: one query, or one file of an approved extract, never
    // both (an extract's query is the one approved, not the caller's).
    let asked = match (body.sql, body.extract, body.file) {
        (Some(sql), None, None) => Ok(Asked::Query(sql)),
        (None, Some(x), Some(f)) => Ok(Asked::Extract(x, f)),
        (None, Some(_), None) => Err("name the extract's file (`file`) as well as the extract"),
        (None, None, _) => Err("send `sql`, or an approved `extract` and its `file`"),
        (Some(_), _, _) => Err("send `sql` or an `extract` and its `file`, not both: an extract's query is the one the information-governance lead approved"),
    }
    .map_err(|e| problem(StatusCode::BAD_REQUEST, e.into()))?;
    let Some(principal) = ext.get::<Principal>().cloned() else {
        return Err(problem(StatusCode::UNAUTHORIZED, "no principal".into()));
    };
    let mut req = SessionRequest::new(principal, body.purpose, channel);
    req.role = body.role;
    req.project = body.project;
    req.justification = body.justification;
    let tables = state.tables.clone();
    let session = match state.governance.session(&tables, req).await {
        Ok(s) => s,
        Err(GovernError::Refused(r)) => return Err(problem(StatusCode::FORBIDDEN, r.to_string())),
        Err(e) => return Err(problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let answered = match &asked {
        Asked::Query(sql) => session.query(sql).await,
        Asked::Extract(x, f) => session.extract(x, f).await,
    };
    match answered {
        Ok(r) => Ok((session, r)),
        Err(e @ (GovernError::Query(_) | GovernError::Arrow(_))) => {
            Err(problem(StatusCode::BAD_REQUEST, e.to_string()))
        }
        Err(e @ GovernError::Project(_)) => Err(problem(StatusCode::FORBIDDEN, e.to_string())),
        Err(e) => Err(problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `POST /export`: a query's answer as a CSV file, under the caller's
/// purpose, audited as an export. For planning and research it has passed
/// disclosure control like every other answer (suppressed cells are empty).
pub async fn export(
    State(state): State<AppState>,
    ext: Extensions,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (session, result) = match run(&state, &ext, body, "export").await {
        Ok(r) => r,
        Err(response) => return response,
    };
    csv_file(&result, &format!("export-{}.csv", session.purpose()))
}

/// An answer as a CSV file to download, with the disclosure control it
/// passed in a header.
pub(crate) fn csv_file(result: &fdp_govern::QueryResult, filename: &str) -> Response {
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        for b in &result.batches {
            if let Err(e) = csv_ready(b).and_then(|b| w.write(&b)) {
                return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
        }
    }
    if result.batches.is_empty() {
        let names: Vec<&str> = result
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        buf = format!("{}\n", names.join(",")).into_bytes();
    }
    let mut response = (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        buf,
    )
        .into_response();
    if let Some(d) = &result.disclosure {
        if let Ok(v) = d.summary().parse() {
            response.headers_mut().insert("x-disclosure-control", v);
        }
    }
    response
}

/// A batch CSV can hold: lists, structs, maps and binary columns as their
/// text (`[a, b]`, hex), everything else as it is.
fn csv_ready(
    b: &datafusion::arrow::record_batch::RecordBatch,
) -> Result<datafusion::arrow::record_batch::RecordBatch, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    use std::sync::Arc;

    let needs_text = |t: &DataType| {
        t.is_nested()
            || matches!(
                t,
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            )
    };
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| needs_text(f.data_type()))
    {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, a) in b.schema().fields().iter().zip(b.columns()) {
        if !needs_text(f.data_type()) {
            fields.push(f.as_ref().clone());
            columns.push(a.clone());
            continue;
        }
        let options = FormatOptions::default();
        let formatter = ArrayFormatter::try_new(a.as_ref(), &options)?;
        let mut text = StringBuilder::new();
        for i in 0..a.len() {
            if a.is_null(i) {
                text.append_null();
            } else {
                text.append_value(formatter.value(i).to_string());
            }
        }
        fields.push(Field::new(f.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    datafusion::arrow::record_batch::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

pub async fn query(
    State(state): State<AppState>,
    ext: Extensions,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (session, result) = match run(&state, &ext, body, "http").await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let rows = match result.rows_json() {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let columns = result.column_names();
    Json(json!({
        "purpose": session.purpose(),
        "role": session.role(),
        "columns": columns,
        "rows": rows,
        "row_count": result.row_count(),
        "disclosure_control": result.disclosure.as_ref().map(|d| d.summary()),
        "table_versions": result.versions,
    }))
    .into_response()
}
