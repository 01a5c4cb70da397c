//! # fdp-server: the instance over HTTP
//!
//! Owns the HTTP JSON API and the server-rendered web UI. Pages need no
//! JavaScript build step: HTML from [`maud`], charts as SVG drawn here, and
//! a few lines of inline script that apply live updates from a
//! server-sent-event stream.
//!
//! Every route except `/healthz`, `/login` and `/openapi.json` requires a
//! principal (a bearer token: a local API token or an OIDC token from the
//! identity provider; or the session cookie the login page sets). The server reads the
//! census and tables it is given; it never opens the data directory itself.

mod api;
mod approvals;
pub mod auth;
mod capacity;
mod checkpoint;
mod federation;
pub mod fhir;
mod governed;
mod marketplace;
pub mod mutual_aid;
pub mod objects;
mod pages;
pub mod pgwire;
mod products;
mod referrals;
mod returns;
pub mod routes;
mod sources;
mod sql;
pub mod supplies;
mod svg;
pub mod tls;
mod ui;

use std::sync::Arc;

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
    /// The instance's tables, opened once per committed version and shared
    /// by every governed session.
    pub tables: fdp_store::StoredTables,
    /// The instance in the federation, when it is configured.
    pub federation: Option<Arc<fdp_federation::Federation>>,
    /// Discharge referrals sent and received.
    pub referrals: Arc<fdp_federation::referrals::Referrals>,
    /// Mutual-aid booking requests sent and received.
    pub booking_requests: Arc<fdp_federation::mutual_aid::BookingRequests>,
    /// Supply offers between trusts, sent and received.
    pub supply_offers: Arc<fdp_federation::supplies::SupplyOffers>,
    /// The ICB's capacity feeds as last fetched, for the bed board.
    pub capacity: Arc<fdp_federation::capacity::FetchedFeed>,
    /// Browsers signed in to the UI.
    pub sessions: Arc<auth::BrowserSessions>,
    /// Whether the HTTP listener serves TLS: cookies are then `Secure`.
    pub https: bool,
    /// The products the instance serves: built in, and declared ones
    /// installed in its data directory.
    pub products: Arc<fdp_products::installed::Catalogue>,
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

/// The instance's routes (see [`routes`], which also makes the OpenAPI
/// document served at `/openapi.json`).
pub fn router(state: AppState) -> Router {
    routes::router(state)
}
