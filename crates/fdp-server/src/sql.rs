//! `POST /sql`: a query under the caller's declared purpose, through the
//! same governed session as `fdp sql` and the PostgreSQL endpoint.

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
    /// One query.
    pub sql: String,
    /// direct-care, operations, planning or research.
    pub purpose: Purpose,
    pub role: Option<String>,
    pub project: Option<String>,
    pub justification: Option<String>,
}

fn problem(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub async fn query(
    State(state): State<AppState>,
    ext: Extensions,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(principal) = ext.get::<Principal>().cloned() else {
        return problem(StatusCode::UNAUTHORIZED, "no principal".into());
    };
    let mut req = SessionRequest::new(principal, body.purpose, "http");
    req.role = body.role;
    req.project = body.project;
    req.justification = body.justification;
    let tables = fdp_store::StoredTables::new(&state.instance.data_dir);
    let session = match state.governance.session(&tables, req).await {
        Ok(s) => s,
        Err(GovernError::Refused(r)) => return problem(StatusCode::FORBIDDEN, r.to_string()),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let result = match session.query(&body.sql).await {
        Ok(r) => r,
        Err(e @ (GovernError::Query(_) | GovernError::Arrow(_))) => {
            return problem(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut buf = Vec::new();
    {
        let mut w = arrow_json::ArrayWriter::new(&mut buf);
        for b in &result.batches {
            if let Err(e) = w.write(b) {
                return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
        }
        if let Err(e) = w.finish() {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    }
    let rows: serde_json::Value = if buf.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&buf).unwrap_or_else(|_| json!([]))
    };
    let columns: Vec<&String> = result.schema.fields().iter().map(|f| f.name()).collect();
    Json(json!({
        "purpose": session.purpose(),
        "role": session.role(),
        "columns": columns,
        "rows": rows,
        "row_count": result.row_count(),
        "disclosure_control": result.disclosure.as_ref().map(|d| d.summary()),
    }))
    .into_response()
}
