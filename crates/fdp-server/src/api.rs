//! The JSON API: how a request declares its purpose, the bed board's
//! routes and live event stream (the board itself is the `bed-board`
//! product's), quarantine and the sources.

// The checks return the error response itself, which a handler returns at
// once; boxing it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_products::bed_board::{self, feed::BoardFeed, BedBoard};
use fdp_products::platform::ActionRequest;
use futures::Stream;
use serde_json::json;

use crate::checkpoint::purpose_of;
use crate::AppState;
use fdp_govern::{GovernError, ProductView, SessionRequest};

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

/// The governed board for `req`, audited, or the refusal (JSON for the
/// API, a page for the UI).
pub(crate) async fn board_for(
    state: &AppState,
    req: &SessionRequest,
    what: &str,
    page: bool,
) -> Result<(BedBoard, ProductView), Response> {
    bed_board::board_for(&state.governance, req, &state.live, what)
        .await
        .map_err(|e| crate::products::failed(state, &e, page))
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

/// Server-sent events: after each change to the census (at most ten a
/// second), the beds whose cells changed and the new totals (see
/// [`BoardFeed`]).
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
    let mut feed = BoardFeed::opened(&first, view);
    let mut changes = state.live.subscribe();
    let stream = async_stream(move |tx| async move {
        loop {
            let update = match feed.next(&state.live).await {
                Ok(u) => u,
                Err(e) => {
                    // What cannot be audited is not shown: the stream ends.
                    tracing::error!(error = %e, "the live bed board could not be audited");
                    return;
                }
            };
            if tx
                .send(Event::default().event("beds").data(update.to_string()))
                .await
                .is_err()
            {
                return;
            }
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

/// `POST /api/admissions/{id}/discharge-readiness`: the bed board's
/// readiness action, answered with the readiness recorded.
pub async fn set_readiness(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    Json(inputs): Json<serde_json::Value>,
) -> Response {
    let what = format!("POST /api/admissions/{id}/discharge-readiness");
    let asked = ActionRequest {
        product: bed_board::ID,
        action: bed_board::actions::READINESS,
        target: &id,
        inputs: &inputs,
        what: &what,
    };
    match crate::products::act_over_api(&state, &ext, &headers, asked).await {
        Ok(answer) => Json(answer).into_response(),
        Err(r) => r,
    }
}

/// `POST /api/beds/{id}/status`: the bed board's bed-status action,
/// answered with no content.
pub async fn set_bed_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    Json(inputs): Json<serde_json::Value>,
) -> Response {
    let what = format!("POST /api/beds/{id}/status");
    let asked = ActionRequest {
        product: bed_board::ID,
        action: bed_board::actions::BED_STATUS,
        target: &id,
        inputs: &inputs,
        what: &what,
    };
    match crate::products::act_over_api(&state, &ext, &headers, asked).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
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
    let census = state.live.status().await;
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
        "census": census,
    }))
}
