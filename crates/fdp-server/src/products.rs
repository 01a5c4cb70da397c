//! Every registered product, mounted the same way: its manifest, each view
//! as JSON or CSV under the caller's declared purpose, and as a page under
//! the purpose declared at the checkpoint; each action as a JSON `POST`,
//! or a form. No product logic lives here: the answer is the platform's
//! (`run_view` from the caller's governed session, `run_census_view` from
//! the live census as the caller's grant shows it, `run_action` for a
//! change), and a change is recorded by the instance's committer.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use fdp_govern::{GovernError, SessionRequest};
use fdp_ingest::live::{record_action, StaffAction};
use fdp_products::platform::{
    as_of, is_table_action, run_action, run_census_view, run_table_action, run_view, ActionRequest,
    ActionSpec, Chart, ChartKind, Input, Output, OutputColumn, ParamKind, ProductError, Recorder,
};
use maud::html;
use serde_json::{json, Value};

use crate::checkpoint::purpose_of;
use crate::ui::layout;
use crate::AppState;

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub(crate) fn status_of(e: &ProductError) -> StatusCode {
    match e {
        _ if e.is_refusal() => StatusCode::FORBIDDEN,
        ProductError::NotFound(_) => StatusCode::NOT_FOUND,
        _ if e.is_bad_request() => StatusCode::BAD_REQUEST,
        ProductError::Govern(GovernError::Query(_)) => StatusCode::BAD_REQUEST,
        ProductError::Conflict(_) => StatusCode::CONFLICT,
        ProductError::NotRecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
        ProductError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An action that was not made: as [`status_of`], except that inputs
/// understood and wrong are unprocessable, not a bad request.
pub(crate) fn action_status(e: &ProductError) -> StatusCode {
    match e {
        ProductError::Param { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        other => status_of(other),
    }
}

/// What a product answered instead: JSON for the API, a page for the UI.
pub(crate) fn failed(state: &AppState, e: &ProductError, page: bool) -> Response {
    if page {
        crate::governed::refused(state, status_of(e), &e.to_string())
    } else {
        problem(status_of(e), e.to_string())
    }
}

/// Where a product's change is recorded: the instance's committer, then
/// the live census, before the caller is answered.
struct Committed<'a>(&'a AppState);

#[async_trait::async_trait]
impl Recorder for Committed<'_> {
    async fn record(&self, action: &StaffAction, by: &str) -> Result<(), String> {
        record_action(&self.0.committer, &self.0.live, action, by)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Make `asked` as `req`: the platform's one path for a change. An action
/// over the tables reads them through the caller's own governed session
/// and stores its records through the instance's FHIR source; one over
/// the census is recorded by the committer.
pub(crate) async fn act(
    state: &AppState,
    req: &SessionRequest,
    asked: ActionRequest<'_>,
) -> Result<serde_json::Value, ProductError> {
    let registry = state.products.registry();
    if is_table_action(&registry, &asked) {
        let session = state.governance.session(&state.tables, req.clone()).await?;
        return run_table_action(
            &registry,
            asked,
            &state.governance,
            req,
            &session,
            state.fhir.as_ref(),
        )
        .await;
    }
    run_action(
        &registry,
        asked,
        &state.governance,
        req,
        &state.live,
        &Committed(state),
    )
    .await
}

/// [`act`] for an API client, under the purpose its headers declare; the
/// failure as JSON.
pub(crate) async fn act_over_api(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    asked: ActionRequest<'_>,
) -> Result<serde_json::Value, Response> {
    let req = purpose_of(state, ext, headers, "http")?;
    act(state, &req, asked)
        .await
        .map_err(|e| problem(action_status(&e), e.to_string()))
}

/// A form's fields as an action's inputs, by their declared types: a
/// checkbox (boolean) is true when sent as `yes`, `on` or `true` and false
/// when not sent; a list takes every value sent under its name; a field
/// left empty is not given. Fields the action does not take are left out
/// (a form also carries the ids it was posted for).
pub(crate) fn form_inputs(
    state: &AppState,
    product: &str,
    action: &str,
    pairs: &[(String, String)],
) -> serde_json::Value {
    let spec = state
        .products
        .registry()
        .get(product)
        .and_then(|p| p.manifest().actions.into_iter().find(|a| a.name == action));
    let mut inputs = serde_json::Map::new();
    for input in spec.map(|a| a.inputs).unwrap_or_default() {
        let mut sent = pairs
            .iter()
            .filter(|(k, _)| *k == input.name)
            .map(|(_, v)| v.trim());
        let value = match input.kind {
            ParamKind::Boolean => json!(sent.any(|v| matches!(v, "yes" | "on" | "true"))),
            ParamKind::TextList => json!(sent.filter(|v| !v.is_empty()).collect::<Vec<_>>()),
            ParamKind::Integer => match sent.find(|v| !v.is_empty()) {
                // A number the form could not have sent is passed on as
                // text, for the platform to name.
                Some(v) => v
                    .parse::<i64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(v)),
                None => continue,
            },
            _ => match sent.find(|v| !v.is_empty()) {
                Some(v) => json!(v),
                None => continue,
            },
        };
        inputs.insert(input.name.clone(), value);
    }
    serde_json::Value::Object(inputs)
}

/// `POST /api/products/{id}/actions/{action}/{target}`: make the action
/// under `X-Purpose` with the JSON body as its inputs; the answer is what
/// was recorded.
pub async fn action_api(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((id, action, target)): Path<(String, String, String)>,
    Json(inputs): Json<serde_json::Value>,
) -> Response {
    let what = format!("POST /api/products/{id}/actions/{action}/{target}");
    let asked = ActionRequest {
        product: &id,
        action: &action,
        target: &target,
        inputs: &inputs,
        what: &what,
    };
    match act_over_api(&state, &ext, &headers, asked).await {
        Ok(answer) => Json(answer).into_response(),
        Err(r) => r,
    }
}

/// A product's view over the live census, as `req` may see it.
async fn census_view(
    state: &AppState,
    req: &SessionRequest,
    (id, view): (&str, &str),
    what: &str,
    given: &BTreeMap<String, String>,
) -> Result<Output, ProductError> {
    run_census_view(
        &state.products.registry(),
        id,
        view,
        &state.governance,
        req,
        &state.live,
        what,
        given,
    )
    .await
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
    let mut req = match purpose_of(&state, &ext, &headers, "http") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let registry = state.products.registry();
    let spec = registry.view_spec(&id, &view);
    if let Some(spec) = &spec {
        req.as_of = as_of(spec, &given);
    }
    let answered = match spec.map(|v| v.input) {
        Some(Input::Census) => {
            let what = format!("GET /api/products/{id}/{view}");
            census_view(&state, &req, (&id, &view), &what, &given).await
        }
        _ => match state.governance.session(&state.tables, req).await {
            Ok(session) => run_view(&registry, &id, &view, &session, &given).await,
            Err(e) => Err(e.into()),
        },
    };
    let out = match answered {
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

/// The view's chart. Bars: one a row, labelled by `c.label`, in parts as
/// long as `c.value` and each of `c.stack` (a row whose value was withheld
/// or is not a number has no part). Lines: one for each of those columns
/// across the rows.
fn chart(out: &Output, c: &Chart) -> maud::Markup {
    const CLASSES: [&str; 4] = ["series-0", "series-1", "series-2", "series-3"];
    let at = |name: &str| out.columns.iter().position(|col| col.name == name);
    let Some(label) = at(&c.label) else {
        return html! {};
    };
    let Some(values) = c
        .values()
        .into_iter()
        .map(|name| at(name).map(|i| (i, out.columns[i].title.as_str())))
        .collect::<Option<Vec<_>>>()
    else {
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
    let names: Vec<&str> = values.iter().map(|(_, title)| *title).collect();
    let title = format!("{} by {}", names.join(", "), out.columns[label].title);
    match c.kind {
        ChartKind::Heat => {
            let Some(across) = c.across.as_deref().and_then(at) else {
                return html! {};
            };
            let mut rows: Vec<String> = Vec::new();
            let mut columns: Vec<String> = Vec::new();
            let mut cells = Vec::new();
            let name = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            for (r, l) in out.rows.iter().zip(&labels) {
                let col = name(&r[across]);
                let i = rows.iter().position(|x| x == l).unwrap_or_else(|| {
                    rows.push(l.clone());
                    rows.len() - 1
                });
                let j = columns.iter().position(|x| *x == col).unwrap_or_else(|| {
                    columns.push(col);
                    columns.len() - 1
                });
                if let Some(v) = r[values[0].0].as_f64() {
                    cells.push((i, j, v));
                }
            }
            let title = format!(
                "{} by {} and {}",
                values[0].1, out.columns[label].title, out.columns[across].title
            );
            crate::svg::heat(&title, &rows, &columns, &cells)
        }
        ChartKind::Lines => {
            let lines: Vec<crate::svg::Line> = values
                .iter()
                .zip(CLASSES.iter().cycle())
                .map(|(&(i, name), class)| crate::svg::Line {
                    name,
                    class,
                    values: out.rows.iter().map(|r| r[i].as_f64()).collect(),
                })
                .collect();
            crate::svg::lines(&title, &labels, &lines)
        }
        ChartKind::Bars => {
            // One value is the plain bar; stacked parts each take a series colour.
            let classes: Vec<&'static str> = if values.len() == 1 {
                vec!["bar"]
            } else {
                CLASSES.iter().cycle().take(values.len()).copied().collect()
            };
            let bars: Vec<crate::svg::StackedBar> = out
                .rows
                .iter()
                .zip(&labels)
                .filter_map(|(r, l)| {
                    let parts: Vec<(usize, &'static str, &str)> = values
                        .iter()
                        .zip(&classes)
                        .filter_map(|(&(i, name), class)| {
                            let v = r[i].as_f64().filter(|v| *v >= 0.0)?;
                            Some((v.round() as usize, *class, name))
                        })
                        .collect();
                    (!parts.is_empty()).then_some(crate::svg::StackedBar { label: l, parts })
                })
                .collect();
            html! {
                @if values.len() > 1 {
                    p.legend { @for ((_, name), class) in values.iter().zip(&classes) {
                        span { svg width="14" height="14" class="chart" { rect class=(class) width="14" height="14" {} } (name) }
                    } }
                }
                (crate::svg::stacked_bars(&title, &bars))
            }
        }
    }
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
                    @if let Some(publisher) = &m.publisher { p.muted { "Published by " (publisher) "." } }
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

fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The form making action `a` on one row of a view: its target the row's
/// value at `target_at`, each input starting with the row's value of the
/// column of the same name, if any; back to `back` once made.
fn row_action(
    product: &str,
    a: &ActionSpec,
    columns: &[OutputColumn],
    row: &[Value],
    target_at: usize,
    back: &str,
) -> maud::Markup {
    let target = row.get(target_at).map(cell_text).unwrap_or_default();
    let prefill = |name: &str| {
        columns
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| row.get(i))
            .map(cell_text)
            .unwrap_or_default()
    };
    let to = format!(
        "/products/{product}/actions/{}/{}",
        a.name,
        crate::ui::path_segment(&target)
    );
    html! {
        form.row-action method="post" action=(to) data-action=(a.name) data-target=(target) {
            input type="hidden" name="back" value=(back);
            @for i in &a.inputs {
                @if i.kind == ParamKind::Boolean {
                    label { input type="checkbox" name=(i.name) value="yes"; " " (i.description) }
                } @else {
                    input type="text" name=(i.name) placeholder=(i.name) title=(i.description)
                        value=(prefill(&i.name)) required[i.required];
                }
            }
            button type="submit" { (a.title) }
        }
    }
}

/// `POST /products/{id}/actions/{action}/{target}`: an action made from a
/// form on a view's page (see [`row_action`]), under the purpose declared
/// at the checkpoint; then back to the page it was made from.
pub async fn action_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((id, action, target)): Path<(String, String, String)>,
    body: String,
) -> Response {
    let pairs = crate::ui::form_pairs(&body);
    let back = crate::ui::safe_next(
        pairs
            .iter()
            .find(|(k, _)| k == "back")
            .map(|(_, v)| v.as_str()),
    );
    let path = format!("/products/{id}/actions/{action}/{target}");
    act_from_form(
        &state,
        &ext,
        &headers,
        &path,
        (&id, &action, &target),
        &body,
        &back,
    )
    .await
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
    let registry = state.products.registry();
    let spec = registry.view_spec(&id, &view);
    let (answered, role) = if spec.as_ref().is_some_and(|v| v.input == Input::Census) {
        let p = crate::auth::principal(&ext);
        let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
            return crate::ui::to_checkpoint(&uri.to_string());
        };
        let what = format!("GET /products/{id}/{view}");
        let role = req.role.clone().unwrap_or_else(|| p.roles.join(", "));
        let out = census_view(&state, &req, (&id, &view), &what, &given).await;
        (out, role)
    } else {
        let tables_as_of = spec
            .as_ref()
            .map(|v| as_of(v, &given))
            .unwrap_or(fdp_govern::AsOf::Latest);
        let session =
            match crate::governed::session_as_of(&state, &ext, &headers, &uri, "ui", tables_as_of)
                .await
            {
                Ok(s) => s,
                Err(r) => return r,
            };
        let out = run_view(&registry, &id, &view, &session, &given).await;
        (out, session.role().to_string())
    };
    let out = match answered {
        Ok(out) => out,
        Err(e) => return failed(&state, &e, true),
    };
    let params = spec.as_ref().map(|v| v.params.clone()).unwrap_or_default();
    let chart = spec.and_then(|v| v.chart).map(|c| chart(&out, &c));
    let cell = cell_text;
    // Actions the product offers on each row of this view.
    let offered: Vec<(ActionSpec, usize)> = registry
        .get(&id)
        .map(|p| p.manifest().actions)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| {
            let column = a.offered_on.iter().find(|o| o.view == view)?.column.clone();
            let at = out.columns.iter().position(|c| c.name == column)?;
            Some((a, at))
        })
        .collect();
    let here = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| format!("/products/{id}/{view}"));
    layout(
        &out.title,
        Some(&state.instance.ods),
        html! {
            p { a href="/products" { "← Products" } }
            h1 { (out.title) }
            p.muted { "Under " (out.purpose) " as " (role) "." }
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
                thead { tr {
                    @for c in &out.columns { th scope="col" data-column=(c.name) { (c.title) } }
                    @for (a, _) in &offered { th scope="col" data-action=(a.name) { (a.title) } }
                } }
                tbody { @for r in &out.rows {
                    tr {
                        @for v in r { td { (cell(v)) } }
                        @for (a, at) in &offered {
                            td { (row_action(&out.product, a, &out.columns, r, *at, &here)) }
                        }
                    }
                } }
            }
            @if out.rows.is_empty() { p.muted { "Nothing to show." } }
            @if let Some(d) = &out.disclosure { p.muted { (d) } }
        },
    )
    .into_response()
}

/// Make a product's action from a page's form posted to `path`, under
/// the purpose declared at the checkpoint; then back to `back`, or a page
/// saying what was wrong.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn act_from_form(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    path: &str,
    (product, action, target): (&str, &str, &str),
    body: &str,
    back: &str,
) -> Response {
    let p = crate::auth::principal(ext);
    let Some(req) = crate::checkpoint::declared(state, headers, &p, "ui") else {
        return crate::ui::to_checkpoint(back);
    };
    let inputs = form_inputs(state, product, action, &crate::ui::form_pairs(body));
    let what = format!("POST {path}");
    let asked = ActionRequest {
        product,
        action,
        target,
        inputs: &inputs,
        what: &what,
    };
    match act(state, &req, asked).await {
        Ok(_) => Redirect::to(back).into_response(),
        Err(e) if e.is_refusal() => failed(state, &e, true),
        Err(e) => not_saved(state, action_status(&e), &e.to_string(), back),
    }
}

/// The page for a change that was refused: what was wrong, and the way back.
fn not_saved(state: &AppState, code: StatusCode, msg: &str, back: &str) -> Response {
    let page = layout(
        "Not saved",
        Some(&state.instance.ods),
        html! {
            h1 { "Not saved" } p.error role="alert" { (msg) }
            p { a href=(back) { "Back" } }
        },
    );
    (code, page).into_response()
}
