//! Every registered product, mounted the same way: its manifest, each view
//! as JSON or CSV under the caller's declared purpose, and as a page under
//! the purpose declared at the checkpoint. No product logic lives here: the
//! answer is `fdp_products::platform::run_view`'s, from the caller's
//! governed session.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_govern::GovernError;
use fdp_products::platform::{run_view, Chart, Output, ProductError};
use maud::html;
use serde_json::{json, Value};

use crate::api::purpose_of;
use crate::ui::layout;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn status_of(e: &ProductError) -> StatusCode {
    if e.is_refusal() {
        StatusCode::FORBIDDEN
    } else if e.is_bad_request() {
        StatusCode::BAD_REQUEST
    } else if let ProductError::Govern(GovernError::Query(_)) = e {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// `GET /api/products`: what each product is, reads and offers.
pub async fn list(State(state): State<AppState>) -> Response {
    Json(json!({ "products": state.products.registry().manifests() })).into_response()
}

/// `GET /api/products/{id}/{view}`: the view's answer under `X-Purpose`
/// (direct care by default), as JSON, or as CSV with `format=csv`; every
/// other query parameter is one of the view's.
pub async fn view_api(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((id, view)): Path<(String, String)>,
    Query(mut given): Query<BTreeMap<String, String>>,
) -> Response {
    // A format no one can be answered in is said before anything is read.
    let csv = match given.remove("format").as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: use json or csv"),
            )
        }
    };
    let req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let session = match state.governance.session(&state.tables, req).await {
        Ok(s) => s,
        Err(e @ GovernError::Refused(_)) => return problem(StatusCode::FORBIDDEN, e.to_string()),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let out = match run_view(&state.products.registry(), &id, &view, &session, &given).await {
        Ok(out) => out,
        Err(e) => return problem(status_of(&e), e.to_string()),
    };
    if !csv {
        return Json(out).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-{view}.csv\""),
            ),
        ],
        out.to_csv(),
    )
        .into_response()
}

/// The view's bar chart: one bar a row, labelled by `c.label`, as long as
/// `c.value` (a row whose value was withheld or is not a number has no bar).
fn chart(out: &Output, c: &Chart) -> maud::Markup {
    let at = |name: &str| out.columns.iter().position(|col| col.name == name);
    let (Some(label), Some(value)) = (at(&c.label), at(&c.value)) else {
        return html! {};
    };
    let labels: Vec<String> = out
        .rows
        .iter()
        .map(|r| match &r[label] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let bars: Vec<crate::svg::StackedBar> = out
        .rows
        .iter()
        .zip(&labels)
        .filter_map(|(r, l)| {
            let v = r[value].as_f64().filter(|v| *v >= 0.0)?;
            Some(crate::svg::StackedBar {
                label: l,
                parts: vec![(v.round() as usize, "bar", "")],
            })
        })
        .collect();
    let title = out
        .columns
        .get(value)
        .map(|col| format!("{} by {}", col.title, c.label))
        .unwrap_or_default();
    crate::svg::stacked_bars(&title, &bars)
}

/// `GET /products`: every product and its views.
pub async fn index(State(state): State<AppState>) -> Response {
    let manifests = state.products.registry().manifests();
    layout(
        "Products",
        Some(&state.instance.ods),
        html! {
            h1 { "Products" }
            @for m in &manifests {
                section.product data-product=(m.id) {
                    h2 { (m.title) " " span.muted { "v" (m.version) } }
                    p { (m.description) }
                    p.muted { "For " (m.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "))
                        ". Reads " (m.reads.iter().map(|r| r.table.as_str()).collect::<Vec<_>>().join(", ")) "." }
                    ul { @for v in &m.views {
                        li { a href=(format!("/products/{}/{}", m.id, v.name)) { (v.title) } " — " (v.description) }
                    } }
                }
            }
        },
    )
    .into_response()
}

/// `GET /products/{id}/{view}`: the view as a page, under the purpose
/// declared at the checkpoint, with a form for its parameters.
pub async fn view_page(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    uri: Uri,
    Path((id, view)): Path<(String, String)>,
    Query(given): Query<BTreeMap<String, String>>,
) -> Response {
    let session = match crate::governed::session_as_of(
        &state,
        &ext,
        &headers,
        &uri,
        "ui",
        fdp_govern::AsOf::Latest,
    )
    .await
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    let registry = state.products.registry();
    let out = match run_view(&registry, &id, &view, &session, &given).await {
        Ok(out) => out,
        Err(e) => return crate::governed::refused(&state, status_of(&e), &e.to_string()),
    };
    let spec = registry
        .get(&id)
        .map(|p| p.manifest())
        .and_then(|m| m.views.into_iter().find(|v| v.name == view));
    let params = spec.as_ref().map(|v| v.params.clone()).unwrap_or_default();
    let chart = spec.and_then(|v| v.chart).map(|c| chart(&out, &c));
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    layout(
        &out.title,
        Some(&state.instance.ods),
        html! {
            p { a href="/products" { "← Products" } }
            h1 { (out.title) }
            p.muted { "Under " (out.purpose) " as " (session.role()) "." }
            @if !params.is_empty() {
                form method="get" {
                    @for p in &params {
                        label for=(p.name) { (p.description) }
                        input id=(p.name) name=(p.name) value=(given.get(&p.name).cloned().unwrap_or_default());
                    }
                    button type="submit" { "Show" }
                }
            }
            @if let Some(chart) = chart { (chart) }
            table #product-view data-product=(out.product) data-view=(out.view) {
                thead { tr { @for c in &out.columns { th scope="col" data-column=(c.name) { (c.title) } } } }
                tbody { @for r in &out.rows {
                    tr { @for v in r { td { (cell(v)) } } }
                } }
            }
            @if out.rows.is_empty() { p.muted { "Nothing to show." } }
            @if let Some(d) = &out.disclosure { p.muted { (d) } }
        },
    )
    .into_response()
}
