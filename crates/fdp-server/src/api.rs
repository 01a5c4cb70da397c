//! The JSON API and the bed board's live event stream.

// The checks return the error response itself, which a handler returns at
// once; boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_ingest::adt::census::DischargeReadiness;
use fdp_ingest::live::{record_action, StaffAction};
use fdp_products::care::{self, BedBoard, BedView};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::principal;
use crate::AppState;
use fdp_govern::{GovernError, ProductView, Purpose, SessionRequest};

pub async fn current_board(state: &AppState) -> BedBoard {
    let census = state.live.read().await;
    care::bed_board(&census, chrono::Utc::now())
}

/// What the bed board is made of: a purpose must be granted all of these.
pub(crate) const BED_BOARD_TABLES: &[&str] = &["bed", "ward", "ward_stay"];

/// The request a read acts under: the purpose declared at the UI's
/// checkpoint when the browser holds one, else `X-Purpose` (default
/// `direct-care`), with `X-Role` and `X-Justification`, for API clients.
pub(crate) fn purpose_of(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    channel: &str,
) -> Result<SessionRequest, Response> {
    let p = principal(ext);
    if let Some(req) = crate::checkpoint::declared(state, headers, &p, channel) {
        return Ok(req);
    }
    declared_in_headers(p, headers, channel)
        .map_err(|e| (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response())
}

/// The request an API client declares in headers: `X-Purpose` (default
/// `direct-care`), `X-Role`, `X-Project`, `X-Justification`; or what is
/// wrong with them.
pub(crate) fn declared_in_headers(
    principal: fdp_govern::Principal,
    headers: &HeaderMap,
    channel: &str,
) -> Result<SessionRequest, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let purpose = match header("x-purpose") {
        None => Purpose::DirectCare,
        Some(v) => v
            .parse()
            .map_err(|e: fdp_govern::purpose::UnknownPurpose| format!("X-Purpose: {e}"))?,
    };
    let mut req = SessionRequest::new(principal, purpose, channel);
    req.role = header("x-role");
    req.project = header("x-project");
    req.justification = header("x-justification");
    Ok(req)
}

/// The policy's view of a product for `req`, or the refusal (JSON for the
/// API, a page for the UI).
pub(crate) fn product_view(
    state: &AppState,
    req: &SessionRequest,
    tables: &[&str],
    what: &str,
    page: bool,
) -> Result<ProductView, Response> {
    refusal_response(
        state,
        state.governance.product_view(req, tables, what),
        page,
    )
}

/// [`product_view`] for a change to `tables`.
pub(crate) fn change_view(
    state: &AppState,
    req: &SessionRequest,
    tables: &[&str],
    what: &str,
    page: bool,
) -> Result<ProductView, Response> {
    refusal_response(state, state.governance.change_view(req, tables, what), page)
}

fn refusal_response(
    state: &AppState,
    decided: Result<ProductView, GovernError>,
    page: bool,
) -> Result<ProductView, Response> {
    decided.map_err(|e| {
        let status = match e {
            GovernError::Refused(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if page {
            crate::governed::refused(state, status, &e.to_string())
        } else {
            (status, Json(json!({"error": e.to_string()}))).into_response()
        }
    })
}

/// The bed board as `view` lets it be seen (see [`BedBoard::governed`]).
pub(crate) fn governed_board(board: BedBoard, view: &ProductView) -> BedBoard {
    board.governed(view)
}

/// A change through the API needs a purpose whose grant covers the table
/// it changes; the decision is audited.
fn may_change(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    table: &str,
    what: &str,
) -> Result<(), Response> {
    let req = purpose_of(state, ext, headers, "http")?;
    change_allowed(state, &req, table, what, false)
}

/// Whether `req` may change `table` (the decision audited as a change),
/// or the refusal as JSON or, for the UI, a page.
pub(crate) fn change_allowed(
    state: &AppState,
    req: &SessionRequest,
    table: &str,
    what: &str,
    page: bool,
) -> Result<(), Response> {
    let view = change_view(state, req, &[table], what, page)?;
    view.changed(vec![])
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// The patients a board names, for the audit.
fn patients_on(board: &BedBoard) -> Vec<String> {
    board
        .sites
        .iter()
        .flat_map(|s| &s.wards)
        .flat_map(|w| &w.beds)
        .filter_map(|b| b.occupant.as_ref())
        .filter(|o| o.patient_id != "[masked]")
        .map(|o| o.patient_id.clone())
        .collect()
}

/// The governed board for `req`, audited, or the refusal.
pub(crate) async fn board_for(
    state: &AppState,
    req: &SessionRequest,
    what: &str,
    page: bool,
) -> Result<(BedBoard, ProductView), Response> {
    let view = product_view(state, req, BED_BOARD_TABLES, what, page)?;
    let view = refusal_response(state, view.one_by_one("the bed board"), page)?;
    let board = governed_board(current_board(state).await, &view);
    view.served(board.counts.beds as u64, patients_on(&board))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?;
    Ok((board, view))
}

pub async fn bed_board(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    match board_for(&state, &req, "GET /api/bed-board", false).await {
        Ok((board, _)) => Json(board).into_response(),
        Err(r) => r,
    }
}

/// What one bed cell shows, for live updates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub state: &'static str,
    pub text: String,
    pub flags: String,
}

pub fn cell(b: &BedView) -> Cell {
    match &b.occupant {
        Some(o) => {
            let mut flags = Vec::new();
            if let Some(d) = o.long_stay {
                flags.push(format!("los{d}"));
            }
            if o.on_leave {
                flags.push("leave".to_string());
            }
            if o.readiness.as_ref().is_some_and(|r| r.medically_optimised) {
                flags.push("mo".to_string());
            }
            if o.nhs_number_flag {
                // `nhs-missing`, `nhs-invalid`, `nhs-unverified`: no
                // verified NHS number yet.
                flags.push(format!("nhs-{}", o.nhs_number_status.unwrap_or("missing")));
            }
            Cell {
                state: b.state.as_str(),
                text: format!("{} · {}d", o.name, o.length_of_stay_days),
                flags: flags.join(" "),
            }
        }
        None => Cell {
            state: b.state.as_str(),
            text: b.closed_reason.clone().unwrap_or_default(),
            flags: String::new(),
        },
    }
}

fn cells(board: &BedBoard) -> HashMap<String, Cell> {
    board
        .sites
        .iter()
        .flat_map(|s| &s.wards)
        .flat_map(|w| &w.beds)
        .map(|b| (b.bed_id.clone(), cell(b)))
        .collect()
}

/// Server-sent events: after each change to the census (at most ten a
/// second), the beds whose cells changed and the new totals.
pub async fn bed_board_events(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let req = match purpose_of(&state, &ext, &headers, "ui") {
        Ok(r) => r,
        Err(r) => return r,
    };
    // Audited as it opens, with the patients it showed then, and again each
    // time a patient appears on it who was not on the board it last sent.
    let (first, view) = match board_for(&state, &req, "GET /bed-board/events", false).await {
        Ok(opened) => opened,
        Err(r) => return r,
    };
    let mut changes = state.live.subscribe();
    let stream = async_stream(move |tx| async move {
        let mut sent: HashMap<String, Cell> = HashMap::new();
        let mut shown: HashSet<String> = patients_on(&first).into_iter().collect();
        loop {
            let board = governed_board(current_board(&state).await, &view);
            let on_board: HashSet<String> = patients_on(&board).into_iter().collect();
            let appeared: Vec<String> = on_board.difference(&shown).cloned().collect();
            if !appeared.is_empty() {
                if let Err(e) = view.served(appeared.len() as u64, appeared) {
                    // What cannot be audited is not shown: the stream ends.
                    tracing::error!(error = %e, "the live bed board could not be audited");
                    return;
                }
            }
            shown = on_board;
            let now = cells(&board);
            let diff: HashMap<&String, &Cell> = now
                .iter()
                .filter(|(k, v)| sent.get(*k) != Some(*v))
                .collect();
            let payload = json!({
                "seq": board.through_seq,
                "counts": board.counts,
                "occupancy": format!("{:.1}", board.counts.occupancy_percent()),
                "beds": diff,
            });
            if tx
                .send(Event::default().event("beds").data(payload.to_string()))
                .await
                .is_err()
            {
                return;
            }
            sent = now;
            if changes.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Everything that arrived during the pause is in the next board.
            changes.borrow_and_update();
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A stream fed by a task, closed when the client goes away.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

/// A request to record discharge readiness.
#[derive(Debug, Deserialize)]
pub struct ReadinessInput {
    pub medically_optimised: bool,
    pub medically_optimised_date: Option<String>,
    pub discharge_pathway: Option<u8>,
    #[serde(default)]
    pub waiting_for: Vec<String>,
    pub expected_discharge_date: Option<String>,
}

/// Check and record a readiness change the grant allows (`view`, a change
/// to `discharge_readiness`), audited with the admission's patient once
/// made; shared by the API and the form.
pub async fn apply_readiness(
    state: &AppState,
    view: &ProductView,
    admission_id: &str,
    input: ReadinessInput,
    by: &str,
) -> Result<DischargeReadiness, (StatusCode, String)> {
    let patient = {
        let census = state.live.read().await;
        match census.spells.get(admission_id) {
            Some(spell) => spell.patient_id.clone(),
            None => {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("no admission {admission_id}"),
                ))
            }
        }
    };
    if let Some(p) = input.discharge_pathway {
        if p > 3 {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("discharge_pathway must be 0, 1, 2 or 3, not {p}"),
            ));
        }
    }
    for (name, d) in [
        ("medically_optimised_date", &input.medically_optimised_date),
        ("expected_discharge_date", &input.expected_discharge_date),
    ] {
        if let Some(d) = d {
            if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                return Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{name} must be a date YYYY-MM-DD, not {d:?}"),
                ));
            }
        }
    }
    let readiness = DischargeReadiness {
        admission_id: admission_id.to_string(),
        medically_optimised: input.medically_optimised,
        medically_optimised_date: input.medically_optimised_date,
        discharge_pathway: input.discharge_pathway,
        waiting_for: input
            .waiting_for
            .into_iter()
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect(),
        expected_discharge_date: input.expected_discharge_date,
        updated_by: by.to_string(),
        updated_at_us: chrono::Utc::now().timestamp_micros(),
    };
    let action = StaffAction::DischargeReadiness {
        readiness: readiness.clone(),
    };
    record_action(&state.committer, &state.live, &action, by)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    view.changed(vec![patient])
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(readiness)
}

pub async fn set_readiness(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    Json(input): Json<ReadinessInput>,
) -> Response {
    let view = match purpose_of(&state, &ext, &headers, "http").and_then(|req| {
        change_view(
            &state,
            &req,
            &["discharge_readiness"],
            &format!("POST /api/admissions/{id}/discharge-readiness"),
            false,
        )
    }) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let by = principal(&ext).name;
    match apply_readiness(&state, &view, &id, input, &by).await {
        Ok(r) => Json(r).into_response(),
        Err((code, msg)) => (code, Json(json!({ "error": msg }))).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct BedStatusInput {
    pub closed: bool,
    pub reason: Option<String>,
}

pub async fn apply_bed_status(
    state: &AppState,
    bed_id: &str,
    input: BedStatusInput,
    by: &str,
) -> Result<(), (StatusCode, String)> {
    if !state.live.read().await.beds.contains_key(bed_id) {
        return Err((StatusCode::NOT_FOUND, format!("no bed {bed_id}")));
    }
    let action = StaffAction::BedStatus {
        bed_id: bed_id.to_string(),
        closed: input.closed,
        reason: input.reason.filter(|r| !r.trim().is_empty()),
        by: by.to_string(),
        at_us: chrono::Utc::now().timestamp_micros(),
    };
    record_action(&state.committer, &state.live, &action, by)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(())
}

pub async fn set_bed_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    Json(input): Json<BedStatusInput>,
) -> Response {
    if let Err(r) = may_change(
        &state,
        &ext,
        &headers,
        "bed",
        &format!("POST /api/beds/{id}/status"),
    ) {
        return r;
    }
    let by = principal(&ext).name;
    match apply_bed_status(&state, &id, input, &by).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err((code, msg)) => (code, Json(json!({ "error": msg }))).into_response(),
    }
}

/// Everything in quarantine from every source, newest first.
pub async fn quarantined(state: &AppState) -> Result<Vec<fdp_ingest::quarantine::Entry>, String> {
    fdp_ingest::quarantine::list(&state.governance, &state.instance.data_dir)
        .await
        .map_err(|e| e.to_string())
}

/// Quarantined records are records as received: for roles granted the raw
/// layer under the request's purpose. The refusal or the view is audited.
pub(crate) fn may_see_quarantine(
    state: &AppState,
    req: &SessionRequest,
    what: &str,
    page: bool,
) -> Result<ProductView, Response> {
    refusal_response(state, state.governance.raw_records_view(req, what), page)
}

pub async fn quarantine(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let view = match purpose_of(&state, &ext, &headers, "http")
        .and_then(|req| may_see_quarantine(&state, &req, "GET /api/quarantine", false))
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    match quarantined(&state).await {
        Ok(q) => match view.served(q.len() as u64, vec![]) {
            Ok(()) => Json(q).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e })),
        )
            .into_response(),
    }
}

/// The sources feeding the instance and what they have sent.
pub async fn sources(State(state): State<AppState>) -> Json<serde_json::Value> {
    let m = &state.mllp;
    let census = state.live.read().await;
    Json(json!({
        "mllp": {
            "address": state.instance.mllp_addr.map(|a| a.to_string()),
            "connections": m.connections.load(Ordering::Relaxed),
            "frames": m.frames.load(Ordering::Relaxed),
            "acked": m.acked.load(Ordering::Relaxed),
            "nacked": m.nacked.load(Ordering::Relaxed),
            "duplicates": m.duplicates.load(Ordering::Relaxed),
            "garbage_bytes": m.garbage_bytes.load(Ordering::Relaxed),
        },
        "census": {
            "applied_seq": census.applied_seq,
            "events": census.events,
            "warnings": census.warning_count,
            "recent_warnings": census.recent_warnings.iter().rev().take(50).collect::<Vec<_>>(),
        }
    }))
}
