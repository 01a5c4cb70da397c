//! Capacity over HTTP: a care provider, virtual-ward service or trust keeps
//! its free places (and theatre slots it will not use) and publishes them
//! to its ICB; the ICB shows what it has gathered; a trust's bed board
//! shows, for each medically optimised patient, where they could go today.

#![allow(clippy::result_large_err)]

use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use fdp_federation::capacity::{
    self, CapacityFeed, Offer, OwnCapacity, ShownOffer, ShownPublished,
};
use fdp_govern::{ProductView, SessionRequest};
use fdp_products::bed_board::BedBoard;
use maud::{html, Markup};
use serde_json::json;

use crate::api::{change_allowed, product_view};
use crate::auth::principal;
use crate::checkpoint::purpose_of;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Changing what the instance offers is a change to `care_capacity`.
const TABLE: &str = capacity::TABLE;

pub(crate) fn age(t: DateTime<Utc>) -> String {
    let mins = (Utc::now() - t).num_minutes().max(0);
    match mins {
        0 => "just now".into(),
        m if m < 120 => format!("{m} min ago"),
        m if m < 48 * 60 => format!("{} h ago", m / 60),
        m => format!("{} days ago", m / (24 * 60)),
    }
}

/// The capacity `req` may see, shaped by the policy, and audited; or the
/// refusal (JSON for the API, a page for the UI). Capacity names no
/// patient, but is read under a purpose like any table: a role whose grant
/// does not cover `care_capacity` sees none of it.
fn capacity_for(
    state: &AppState,
    req: &SessionRequest,
    what: &str,
    page: bool,
) -> Result<(Vec<ShownOffer>, Vec<ShownPublished>), Response> {
    let view = product_view(state, req, &[capacity::TABLE], what, page)?;
    let own = OwnCapacity::open(&state.instance.data_dir).offers();
    let gathered = CapacityFeed::open(&state.instance.data_dir).all();
    let (own, gathered) = match (own, gathered) {
        (Ok(own), Ok(gathered)) => (own, gathered),
        (Err(e), _) | (_, Err(e)) => {
            return Err(problem(StatusCode::INTERNAL_SERVER_ERROR, e));
        }
    };
    let offers = own.len() + gathered.iter().map(|p| p.offers.len()).sum::<usize>();
    view.served(offers as u64, vec![])
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        own.iter().map(|o| o.governed(&view)).collect(),
        gathered.iter().map(|p| p.governed(&view)).collect(),
    ))
}

/// `GET /api/capacity`: what this instance offers, and (on an ICB) what it
/// has gathered from each publisher, as the caller's purpose (`X-Purpose`,
/// direct care by default) lets them see `care_capacity`.
pub async fn get_capacity(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    match capacity_for(&state, &req, "GET /api/capacity", false) {
        Ok((own, gathered)) => Json(json!({
            "organisation": state.instance.ods,
            "offers": own,
            "gathered": gathered,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// `PUT /api/capacity`: replace what this instance offers (a JSON list of
/// offers) and publish it to the ICB. A change to `care_capacity` under
/// the caller's purpose, audited.
pub async fn put_capacity(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Json<Vec<Offer>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(offers) = match body {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = change_allowed(&state, &req, TABLE, "PUT /api/capacity", false) {
        return r;
    }
    let n = offers.len();
    match OwnCapacity::open(&state.instance.data_dir).set(state.federation.as_deref(), offers) {
        Ok(icbs) => Json(json!({"offers": n, "published_to": icbs})).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e),
    }
}

/// `POST /capacity`: the page's form, one `free` field per offer (by its
/// position); each figure updated is stamped now.
pub async fn form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: String,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/capacity");
    };
    if let Err(r) = change_allowed(&state, &req, TABLE, "POST /capacity", true) {
        return r;
    }
    let own = OwnCapacity::open(&state.instance.data_dir);
    let mut offers = match own.offers() {
        Ok(o) => o,
        Err(e) => return crate::governed::refused(&state, StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    for (k, v) in crate::ui::form_pairs(&body) {
        let Some(i) = k
            .strip_prefix("free-")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(o) = offers.get_mut(i) else { continue };
        match v.trim().parse::<u32>() {
            Ok(free) => {
                o.free = free;
                o.updated_at = Utc::now();
            }
            Err(_) => {
                return crate::governed::refused(
                    &state,
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "free places at {} ({}): {v:?} is not a number",
                        o.location, o.kind
                    ),
                )
            }
        }
    }
    match own.set(state.federation.as_deref(), offers) {
        Ok(_) => Redirect::to("/capacity").into_response(),
        Err(e) => crate::governed::refused(&state, StatusCode::BAD_REQUEST, &e),
    }
}

/// `GET /capacity`: this instance's offers with a form to update them, and
/// on an ICB everything it has gathered, under the purpose declared at the
/// checkpoint.
pub async fn page(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/capacity");
    };
    let (own, gathered) = match capacity_for(&state, &req, "GET /capacity", true) {
        Ok(shown) => shown,
        Err(r) => return r,
    };
    crate::ui::layout(
        "Capacity",
        Some(&state.instance.ods),
        html! {
            h1 { "Capacity" }
            h2 { "What this instance offers" }
            @if own.is_empty() {
                p.muted { "Nothing offered. Set the offers with " code { "PUT /api/capacity" } "." }
            } @else {
                form method="post" action="/capacity" {
                    table #offers {
                        thead { tr { th { "Kind" } th { "Location" } th { "Specialty / when" } th.num { "Free" } th.num { "Of" } th { "Updated" } } }
                        tbody { @for (i, o) in own.iter().enumerate() {
                            tr data-kind=(text(&o.kind)) {
                                td { (text(&o.kind)) } td { (text(&o.location)) }
                                td { (text(&o.specialty)) " " (text(&o.detail)) }
                                td.num { input name=(format!("free-{i}")) value=(number(o.free)) size="4" aria-label=(format!("free {} places at {}", text(&o.kind), text(&o.location))); }
                                td.num { (number(o.total)) }
                                td { (o.updated_at.map(age).unwrap_or_default()) }
                            }
                        } }
                    }
                    button type="submit" { "Update and publish" }
                }
            }
            @if !gathered.is_empty() {
                h2 { "Gathered from members" }
                (gathered_table(&gathered))
            }
        },
    )
    .into_response()
}

/// A text the policy may have removed, as a page shows it.
fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// A figure the policy may have removed, as a page shows it.
fn number(v: Option<u32>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

fn gathered_table(gathered: &[ShownPublished]) -> Markup {
    html! {
        table #gathered {
            thead { tr { th { "Publisher" } th { "Kind" } th { "Location" } th { "Specialty / when" } th.num { "Free" } th.num { "Of" } th { "Figure updated" } th { "Received" } } }
            tbody { @for p in gathered { @for o in &p.offers {
                tr data-publisher=(text(&p.publisher)) data-kind=(text(&o.kind)) {
                    td { (text(&p.publisher)) } td { (text(&o.kind)) } td { (text(&o.location)) }
                    td { (text(&o.specialty)) " " (text(&o.detail)) }
                    td.num { (number(o.free)) } td.num { (number(o.total)) }
                    td { (o.updated_at.map(age).unwrap_or_default()) } td { (age(p.received_at)) }
                }
            } } }
        }
    }
}

/// The bed board's panel: each medically optimised patient on the board,
/// and the places that suit their discharge pathway, free today, from the
/// ICB's gathered feeds, as `view` (the board's) shows `care_capacity`
/// (see [`fdp_products::capacity::discharge_options`]).
pub(crate) async fn discharge_options(
    state: &AppState,
    board: &BedBoard,
    view: &ProductView,
) -> Markup {
    // No one to place: the ICB is not asked.
    if board.counts.medically_optimised == 0 {
        return html! {};
    }
    let feed = if !view.reads(capacity::TABLE) {
        Err(format!(
            "capacity ({}) is not granted under {}",
            capacity::TABLE,
            view.purpose()
        ))
    } else {
        match state.federation.as_deref() {
            Some(fed) => state.capacity.get(fed).await,
            None => Err("this instance is not in a federation".to_string()),
        }
    };
    let waiting =
        fdp_products::capacity::discharge_options(board, feed.as_deref().ok(), view, Utc::now());
    if waiting.is_empty() {
        return html! {};
    }
    html! {
        h2 #discharge-options { "Medically optimised: where each could go today (" (waiting.len()) ")" }
        @match &feed {
            Err(e) => p.muted { "Places from the ICB are not available: " (e) },
            Ok(_) => p.muted { "Free places that suit each patient's discharge pathway, from the ICB's capacity feeds, updated in the last 24 hours." },
        }
        table #mo-patients {
            thead { tr { th { "Patient" } th { "Pathway" } th.num { "Days" } th { "Could go to" } } }
            tbody { @for o in &waiting {
                tr data-admission=(o.admission_id) data-options=(o.suitable) {
                    td { a href=(format!("/bed-board/admission/{}", o.admission_id)) { (o.name) } }
                    td { (o.pathway.map(|p| format!("pathway {p}")).unwrap_or_else(|| "not recorded".into())) }
                    td.num { (o.length_of_stay_days) }
                    td {
                        @if o.places.is_empty() {
                            span.muted { @if o.pathway.is_none_or(|p| p == 0) { "record a pathway of 1 to 3" } @else { "no free place found" } }
                        }
                        @for (i, pl) in o.places.iter().enumerate() {
                            @let publisher = text(&pl.publisher);
                            @if i > 0 { "; " }
                            span.place data-publisher=(publisher) data-kind=(text(&pl.offer.kind)) {
                                (text(&pl.offer.location)) " (" (publisher) ", " (text(&pl.offer.kind)) ": " (number(pl.offer.free)) " free, " (pl.offer.updated_at.map(age).unwrap_or_default()) ")"
                            }
                        }
                    }
                }
            } }
        }
    }
}
