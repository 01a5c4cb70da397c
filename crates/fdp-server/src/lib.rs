//! # fdp-server: the instance over HTTP
//!
//! Owns the HTTP JSON API and the server-rendered web UI. Pages need no
//! JavaScript build step: HTML from [`maud`], charts as SVG drawn here, and
//! a few lines of inline script that apply live updates from a
//! server-sent-event stream.
//!
//! Every route except `/healthz` and `/login` requires a principal (a bearer
//! token: a local API token or an OIDC token from the identity provider; or
//! the session cookie the login page sets). The server reads the
//! census and tables it is given; it never opens the data directory itself.

mod api;
mod auth;
pub mod fhir;
mod fhir_import;
mod pages;
pub mod pgwire;
mod sources;
mod sql;
mod svg;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use fdp_govern::TokenStore;
use fdp_ingest::live::Live;
use fdp_ingest::mllp::MllpStats;
use fdp_store::Committer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub instance: Arc<InstanceInfo>,
    pub live: Arc<Live>,
    pub committer: Committer,
    pub tokens: Arc<TokenStore>,
    /// The organisation's identity provider, when the instance trusts one.
    pub oidc: Option<Arc<fdp_govern::OidcVerifier>>,
    /// Roles and organisation the instance grants by principal name.
    pub grants: Arc<fdp_govern::Grants>,
    pub mllp: Arc<MllpStats>,
    pub fhir: Arc<fhir::FhirService>,
    /// Policy, keys, opt-out and audit: every read of a table goes through it.
    pub governance: Arc<fdp_govern::Governance>,
}

/// Facts about the instance shown on its pages.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// ODS code of the organisation that runs the instance.
    pub ods: String,
    pub data_dir: std::path::PathBuf,
    pub mllp_addr: Option<std::net::SocketAddr>,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// The instance's routes.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/", get(pages::home))
        .route("/bed-board", get(pages::bed_board))
        .route("/bed-board/events", get(api::bed_board_events))
        .route("/bed-board/admission/{id}", get(pages::admission))
        .route(
            "/bed-board/admission/{id}/readiness",
            post(pages::readiness_form),
        )
        .route("/bed-board/bed-status", post(pages::bed_status_form))
        .route("/quarantine", get(pages::quarantine))
        .route("/sources", get(sources::sources_page))
        .route("/tables", get(sources::tables_page))
        .route("/tables/{name}", get(sources::table_page))
        .route("/lineage", get(sources::lineage_page))
        .route("/api/runs", get(sources::runs))
        .route("/api/lineage", get(sources::lineage_json))
        .route("/api/tables/{name}/history", get(sources::table_history))
        .route("/api/bed-board", get(api::bed_board))
        .route(
            "/api/admissions/{id}/discharge-readiness",
            post(api::set_readiness),
        )
        .route("/api/beds/{id}/status", post(api::set_bed_status))
        .route("/api/quarantine", get(api::quarantine))
        .route("/api/sources", get(api::sources))
        .route("/api/whoami", get(auth::whoami))
        .route("/sql", post(sql::query))
        .route("/fhir", post(fhir::bundle))
        .route("/fhir/metadata", get(fhir::metadata))
        .route("/fhir/$import", post(fhir_import::start))
        .route("/fhir/$import-status/{id}", get(fhir_import::status))
        .route("/fhir/$import-status/{id}/errors", get(fhir_import::errors))
        .route("/fhir/{rt}", get(fhir::search).post(fhir::create))
        .route(
            "/fhir/{rt}/{id}",
            get(fhir::read).put(fhir::update).delete(fhir::delete),
        )
        .route("/fhir/{rt}/{id}/_history", get(fhir::history))
        .route("/fhir/{rt}/{id}/_history/{vid}", get(fhir::vread))
        .route("/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(auth::login_page).post(auth::login_submit))
        .merge(protected)
        .with_state(state)
}
