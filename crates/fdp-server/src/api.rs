//! The JSON API and the bed board's live event stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
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

pub async fn current_board(state: &AppState) -> BedBoard {
    let census = state.live.read().await;
    care::bed_board(&census, chrono::Utc::now())
}

pub async fn bed_board(State(state): State<AppState>) -> Json<BedBoard> {
    Json(current_board(&state).await)
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
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = state.live.subscribe();
    let stream = async_stream(move |tx| async move {
        let mut sent: HashMap<String, Cell> = HashMap::new();
        loop {
            let board = current_board(&state).await;
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
    Sse::new(stream).keep_alive(KeepAlive::default())
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

/// Check and record a readiness change; shared by the API and the form.
pub async fn apply_readiness(
    state: &AppState,
    admission_id: &str,
    input: ReadinessInput,
    by: &str,
) -> Result<DischargeReadiness, (StatusCode, String)> {
    {
        let census = state.live.read().await;
        if !census.spells.contains_key(admission_id) {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no admission {admission_id}"),
            ));
        }
    }
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
    Ok(readiness)
}

pub async fn set_readiness(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    Json(input): Json<ReadinessInput>,
) -> Response {
    let by = principal(&ext).name;
    match apply_readiness(&state, &id, input, &by).await {
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
    Json(input): Json<BedStatusInput>,
) -> Response {
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

pub async fn quarantine(State(state): State<AppState>) -> Response {
    match quarantined(&state).await {
        Ok(q) => Json(q).into_response(),
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
