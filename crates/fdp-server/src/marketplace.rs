//! `GET /marketplace` and `GET /api/marketplace`: the products peers have
//! offered this instance, with what each reads, for which purposes, who
//! published it and whether it is new, an update, approved, declined or in
//! use. Offers hold definitions, never data; the IG lead decides on them
//! with `fdp product approve` or `decline`, which are audited.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_federation::marketplace::{Marketplace, Offer};
use fdp_products::installed::Installed;
use maud::html;
use serde_json::{json, Value};

use crate::ui::layout;
use crate::AppState;

struct Listed {
    offer: Offer,
    status: String,
    reads: String,
    purposes: String,
}

fn offered(state: &AppState) -> Result<Vec<Listed>, String> {
    let data = &state.instance.data_dir;
    let own = &state.instance.ods;
    let installed = Installed::open(data).all().map_err(|e| e.to_string())?;
    let offers = Marketplace::open(data)
        .offers()
        .map_err(|e| e.to_string())?;
    Ok(offers
        .into_values()
        .filter(|o| o.package.publisher != *own)
        .map(|offer| {
            let status = offer.status(installed.get(&offer.package.id));
            let (reads, purposes) = offer.package.review();
            Listed {
                offer,
                status,
                reads,
                purposes,
            }
        })
        .collect())
}

/// `GET /api/marketplace`.
pub async fn api(State(state): State<AppState>) -> Response {
    match offered(&state) {
        Ok(list) => {
            let offers: Vec<Value> = list
                .iter()
                .map(|l| {
                    let p = &l.offer.package;
                    json!({
                        "id": p.id, "version": p.version, "title": p.title,
                        "publisher": p.publisher, "via": l.offer.via, "digest": p.digest,
                        "reads": l.reads, "purposes": l.purposes, "status": l.status,
                        "files": p.files.keys().collect::<Vec<_>>(),
                    })
                })
                .collect();
            Json(json!({ "offers": offers })).into_response()
        }
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e })),
        )
            .into_response(),
    }
}

/// `GET /marketplace`.
pub async fn page(State(state): State<AppState>) -> Response {
    let list = offered(&state).unwrap_or_default();
    layout(
        "Marketplace",
        Some(&state.instance.ods),
        html! {
            h1 { "Marketplace" }
            p { "Products other organisations in the federation have offered this instance. "
                "Each is a definition signed by its publisher's instance, never data. "
                "The IG lead reviews what it reads and for which purposes, then runs "
                code { "fdp product approve ID --by NAME --reason …" } " or " code { "decline" } "." }
            @if list.is_empty() { p.muted { "Nothing has been offered yet." } }
            @for l in &list {
                section.offer data-product=(l.offer.package.id) {
                    h2 { (l.offer.package.title) " " span.muted { "v" (l.offer.package.version) } }
                    p { "From " strong { (l.offer.package.publisher) } ", offered through " (l.offer.via.join(", ")) ". "
                        span.status { (l.status) } }
                    p { "Reads " (l.reads) }
                    p { "For " (l.purposes) }
                    p.muted { "Files " (l.offer.package.files.keys().cloned().collect::<Vec<_>>().join(", "))
                        "; digest " code { (l.offer.package.digest) } }
                }
            }
        },
    )
    .into_response()
}
