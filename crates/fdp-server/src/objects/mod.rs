//! The FDP object API: NHS England's published ontology API
//! (`canonical-data-model-openapi.yaml`) over this instance's governed
//! tables, so code written against it moves here by changing only its base
//! URL.
//!
//! Every object type of the model is served at
//! `/api/v2/ontologies/palantirukhealth-ontology/objects/{objectType}`:
//! list with paging, get by primary key, search with the published `where`
//! operators, aggregate, count, and the links between types, in the
//! published JSON shapes (`__apiName`, `__primaryKey`, `nextPageToken`,
//! `AggregateObjectsResponseV2`). Each request opens a governed session for
//! the caller's declared purpose (`X-Purpose`, direct care by default), so
//! an object holds only what the purpose may see, a property the purpose
//! does not show cannot be asked about either, and what leaves under a
//! secondary purpose has passed disclosure control. Every query is audited
//! by the session.

mod query;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fdp_govern::{GovernError, GovernedSession};
use fdp_model::{Model, ObjectType};
use serde_json::{json, Value};

pub use query::ObjectError;
use query::{Direction, ObjectView, Page};

use crate::checkpoint::purpose_of;
use crate::AppState;

/// The ontology the published API names in every path.
pub const ONTOLOGY: &str = "palantirukhealth-ontology";

/// An answer in the published API's error shape.
fn error(e: &ObjectError) -> Response {
    let (code, name, status) = e.kind();
    let parameters = match e {
        ObjectError::UnknownType(t) => json!({ "objectType": t }),
        ObjectError::UnknownProperty { object, property }
        | ObjectError::NotVisible { object, property } => {
            json!({ "objectType": object, "properties": [property] })
        }
        ObjectError::UnknownLink { object, link } => {
            json!({ "objectType": object, "linkType": link })
        }
        ObjectError::NotFound { object, key } => json!({ "objectType": object, "primaryKey": key }),
        _ => json!({}),
    };
    failure(status, code, name, parameters, &e.to_string())
}

impl From<ObjectError> for Response {
    fn from(e: ObjectError) -> Response {
        error(&e)
    }
}

/// A handler's answer, whichever way it went.
fn answer(r: Result<Response, Response>) -> Response {
    r.unwrap_or_else(|refused| refused)
}

/// The caller's governed session, and `ty` as it sees it (`None`: no data
/// yet), for the audited step `what`.
async fn open(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    ty: &'static ObjectType,
    what: String,
) -> Result<(Reader, Option<ObjectView<'static>>), Response> {
    let reader = Reader::open(state, ext, headers).await?;
    let view = reader.view(ty, &what).await?;
    Ok((reader, view))
}

fn failure(status: u16, code: &str, name: &str, mut parameters: Value, message: &str) -> Response {
    parameters["message"] = Value::String(message.to_string());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({
        "errorCode": code,
        "errorName": name,
        "errorInstanceId": instance_id(),
        "parameters": parameters,
    });
    (status, Json(body)).into_response()
}

/// A governance refusal or failure, in the published error shape.
fn governed_failure(e: &GovernError) -> Response {
    match e {
        GovernError::Refused(_) => failure(
            403,
            "PERMISSION_DENIED",
            "PermissionDenied",
            json!({}),
            &e.to_string(),
        ),
        GovernError::Query(_) => failure(
            400,
            "INVALID_ARGUMENT",
            "InvalidRequest",
            json!({}),
            &e.to_string(),
        ),
        _ => failure(500, "INTERNAL", "Internal", json!({}), &e.to_string()),
    }
}

/// An id for one error, for a caller to quote: unique within the
/// instance's run.
fn instance_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        now >> 32,
        (now >> 16) & 0xffff,
        now & 0xfff,
        n & 0xfff,
        n
    )
}

/// The object type the published API calls `name`.
fn object_type(ontology: &str, name: &str) -> Result<&'static ObjectType, ObjectError> {
    if ontology != ONTOLOGY {
        return Err(ObjectError::Ontology(ontology.chars().take(64).collect()));
    }
    Model::canonical()
        .object_types()
        .iter()
        .find(|t| t.api_name.as_deref().unwrap_or(&t.name) == name)
        .ok_or_else(|| ObjectError::UnknownType(name.chars().take(64).collect()))
}

/// A caller's governed session and an object type as it sees it.
struct Reader {
    session: GovernedSession,
}

impl Reader {
    async fn open(
        state: &AppState,
        ext: &Extensions,
        headers: &HeaderMap,
    ) -> Result<Reader, Response> {
        let req = purpose_of(state, ext, headers, "http")?;
        let session = state
            .governance
            .session(&state.tables, req)
            .await
            .map_err(|e| governed_failure(&e))?;
        Ok(Reader { session })
    }

    /// `ty` as the session sees it: refused (and audited) when the grant
    /// does not cover it; `None` when it holds no data yet.
    async fn view(
        &self,
        ty: &'static ObjectType,
        what: &str,
    ) -> Result<Option<ObjectView<'static>>, Response> {
        if !self.session.covers(&ty.table) {
            let why = format!(
                "the {} purpose as granted does not cover {}",
                self.session.purpose(),
                ty.name
            );
            self.session
                .refused(what, &why)
                .map_err(|e| governed_failure(&e))?;
            return Err(failure(
                403,
                "PERMISSION_DENIED",
                "ObjectTypeNotVisible",
                json!({ "objectType": ty.api_name.as_deref().unwrap_or(&ty.name) }),
                &why,
            ));
        }
        Ok(self
            .session
            .visible_columns(&ty.table)
            .await
            .map(|columns| ObjectView::new(ty, columns)))
    }

    async fn rows(&self, sql: &str) -> Result<Vec<Value>, Response> {
        let result = self
            .session
            .query(sql)
            .await
            .map_err(|e| governed_failure(&e))?;
        match result.rows_json() {
            Ok(Value::Array(rows)) => Ok(rows),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(failure(
                500,
                "INTERNAL",
                "Internal",
                json!({}),
                &e.to_string(),
            )),
        }
    }

    /// One page of objects matching `predicate`.
    async fn page(
        &self,
        view: &ObjectView<'_>,
        select: &[String],
        predicate: Option<&str>,
        order: &[(String, Direction)],
        page: Page,
    ) -> Result<Value, Response> {
        if !view.key_shown() {
            return Err(no_key(view));
        }
        let sql = view.list_sql(select, predicate, order, page)?;
        let mut rows = self.rows(&sql).await?;
        let more = rows.len() > page.size;
        rows.truncate(page.size);
        let data: Vec<Value> = rows
            .iter()
            .filter_map(Value::as_object)
            .map(|r| view.object(r))
            .collect();
        let mut out = json!({ "data": data });
        if more {
            out["nextPageToken"] = Value::String(page.next_token());
        }
        Ok(out)
    }

    /// The one object whose primary key is `key`.
    async fn one(
        &self,
        view: &ObjectView<'_>,
        select: &[String],
        key: &str,
    ) -> Result<Value, Response> {
        if !view.key_shown() {
            return Err(no_key(view));
        }
        let pk = view.ty.primary_key_property();
        let predicate = format!(
            "\"{}\" = {}",
            pk.column,
            query::literal(
                pk.property_type,
                &Value::String(key.to_string()),
                "primaryKey"
            )?
        );
        let page = Page { size: 1, offset: 0 };
        let found = self.page(view, select, Some(&predicate), &[], page).await?;
        found["data"]
            .get(0)
            .cloned()
            .ok_or_else(|| error(&not_found(view, key)))
    }
}

fn not_found(view: &ObjectView<'_>, key: &str) -> ObjectError {
    ObjectError::NotFound {
        object: view.api_name().to_string(),
        key: key.chars().take(128).collect(),
    }
}

/// An object type whose primary key the purpose does not show can be
/// counted and aggregated, not listed.
fn no_key(view: &ObjectView<'_>) -> Response {
    failure(
        403,
        "PERMISSION_DENIED",
        "PropertiesNotVisible",
        json!({ "objectType": view.api_name(), "properties": [view.ty.primary_key] }),
        &format!(
            "{}.{} (the primary key) is not shown for this purpose, so {} objects cannot be listed: count or aggregate them instead",
            view.api_name(),
            view.ty.primary_key,
            view.api_name()
        ),
    )
}

/// The query parameters of a listing or a get.
struct Listing {
    page_size: Option<i64>,
    page_token: Option<String>,
    select: Vec<String>,
    order_by: Option<String>,
}

impl Listing {
    fn read(pairs: &[(String, String)]) -> Result<Listing, ObjectError> {
        let mut out = Listing {
            page_size: None,
            page_token: None,
            select: Vec::new(),
            order_by: None,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "pageSize" => {
                    out.page_size = Some(v.parse().map_err(|_| ObjectError::Invalid {
                        at: "pageSize".into(),
                        message: format!("{v:?} is not a whole number"),
                    })?)
                }
                "pageToken" => out.page_token = Some(v.clone()),
                "select" => out
                    .select
                    .extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from)),
                "orderBy" => out.order_by = Some(v.clone()),
                "excludeRid" | "snapshot" => {}
                other => {
                    return Err(ObjectError::Invalid {
                        at: other.chars().take(64).collect(),
                        message: "not a parameter of this operation (it takes pageSize, pageToken, select, orderBy, excludeRid)".into(),
                    })
                }
            }
        }
        Ok(out)
    }

    fn page(&self) -> Result<Page, ObjectError> {
        Page::parse(self.page_size, self.page_token.as_deref())
    }
}

fn empty_list() -> Response {
    Json(json!({ "data": [] })).into_response()
}

/// `GET …/objects/{objectType}`: a page of objects.
pub async fn list(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((ontology, name)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    answer(
        async {
            let ty = object_type(&ontology, &name)?;
            let listing = Listing::read(&pairs)?;
            let (reader, view) = open(&state, &ext, &headers, ty, format!("list {name}")).await?;
            let Some(view) = view else {
                return Ok(empty_list());
            };
            let order = view.order_by_text(listing.order_by.as_deref())?;
            let out = reader
                .page(&view, &listing.select, None, &order, listing.page()?)
                .await?;
            Ok(Json(out).into_response())
        }
        .await,
    )
}

/// `GET …/objects/{objectType}/{primaryKey}`: one object.
pub async fn get_one(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((ontology, name, key)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    answer(
        async {
            let ty = object_type(&ontology, &name)?;
            let listing = Listing::read(&pairs)?;
            let (reader, view) = open(&state, &ext, &headers, ty, format!("get {name}")).await?;
            let Some(view) = view else {
                return Err(not_found(&ObjectView::new(ty, Vec::new()), &key).into());
            };
            Ok(Json(reader.one(&view, &listing.select, &key).await?).into_response())
        }
        .await,
    )
}

/// A request body as JSON, or what is wrong with it.
fn body_json(body: &Bytes, optional: bool) -> Result<Value, ObjectError> {
    if body.iter().all(u8::is_ascii_whitespace) && optional {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ObjectError::Invalid {
        at: "body".into(),
        message: format!("not JSON: {e}"),
    })?;
    if !v.is_object() {
        return Err(ObjectError::Invalid {
            at: "body".into(),
            message: "expected a JSON object".into(),
        });
    }
    Ok(v)
}

/// `POST …/objects/{objectType}/search`: objects matching `where`, ordered
/// and paged.
pub async fn search(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((ontology, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    answer(
        async {
            let ty = object_type(&ontology, &name)?;
            let req = body_json(&body, false)?;
            let (reader, view) = open(&state, &ext, &headers, ty, format!("search {name}")).await?;
            let Some(view) = view else {
                return Ok(empty_list());
            };
            let asked = search_request(&view, &req)?;
            let out = reader
                .page(
                    &view,
                    &asked.select,
                    asked.predicate.as_deref(),
                    &asked.order,
                    asked.page,
                )
                .await?;
            Ok(Json(out).into_response())
        }
        .await,
    )
}

/// What a search asks for.
struct SearchRequest {
    predicate: Option<String>,
    order: Vec<(String, Direction)>,
    select: Vec<String>,
    page: Page,
}

/// The published `SearchObjectsRequestV2`, read against `view`.
fn search_request(view: &ObjectView<'_>, req: &Value) -> Result<SearchRequest, ObjectError> {
    let predicate = match req.get("where").filter(|w| !w.is_null()) {
        Some(w) => Some(view.predicate(w, "where")?),
        None => None,
    };
    let order = view.order_by_json(req.get("orderBy"))?;
    let select: Vec<String> = match req.get("select") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| ObjectError::Invalid {
                        at: "select".into(),
                        message: "a list of property names".into(),
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ObjectError::Invalid {
                at: "select".into(),
                message: "a list of property names".into(),
            })
        }
    };
    let page = Page::parse(
        req.get("pageSize").and_then(Value::as_i64),
        req.get("pageToken").and_then(Value::as_str),
    )?;
    Ok(SearchRequest {
        predicate,
        order,
        select,
        page,
    })
}

/// `POST …/objects/{objectType}/count`: how many objects there are.
pub async fn count(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((ontology, name)): Path<(String, String)>,
) -> Response {
    answer(
        async {
            let ty = object_type(&ontology, &name)?;
            let (reader, view) = open(&state, &ext, &headers, ty, format!("count {name}")).await?;
            let Some(view) = view else {
                return Ok(Json(json!({ "count": 0 })).into_response());
            };
            let rows = reader.rows(&view.count_sql(None)).await?;
            // A count disclosure control suppressed has no value to give.
            let n = rows
                .first()
                .and_then(|r| r.get("count"))
                .and_then(Value::as_i64);
            Ok(match n {
                Some(n) => Json(json!({ "count": n })).into_response(),
                None => Json(json!({ "suppressed": true })).into_response(),
            })
        }
        .await,
    )
}

/// `POST …/objects/{objectType}/aggregate`: metrics, grouped.
pub async fn aggregate(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((ontology, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    answer(
        async {
            let ty = object_type(&ontology, &name)?;
            let req = body_json(&body, false)?;
            let (reader, view) =
                open(&state, &ext, &headers, ty, format!("aggregate {name}")).await?;
            let Some(view) = view else {
                return Ok(Json(json!({ "accuracy": "ACCURATE", "data": [] })).into_response());
            };
            let aggregation = view.aggregation(&req)?;
            let rows = reader.rows(&aggregation.sql).await?;
            Ok(Json(aggregation.response(&rows)).into_response())
        }
        .await,
    )
}

/// The objects `link` of the object `key` leads to: a page of them, or the
/// one whose primary key is `linked`.
async fn follow(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    (ontology, name, key, link): (&str, &str, &str, &str),
    linked: Option<&str>,
    pairs: &[(String, String)],
) -> Result<Value, Response> {
    let ty = object_type(ontology, name)?;
    let listing = Listing::read(pairs)?;
    let unknown = || {
        error(&ObjectError::UnknownLink {
            object: name.to_string(),
            link: link.chars().take(64).collect(),
        })
    };
    let l = ty.link(link).ok_or_else(unknown)?;
    let fk = l.foreign_key.as_ref().ok_or_else(unknown)?;
    let target = Model::canonical()
        .object_type(&l.target)
        .ok_or_else(unknown)?;
    let reader = Reader::open(state, ext, headers).await?;
    let what = format!("links {name}/{link}");
    let source = reader.view(ty, &what).await?;
    let target_view = reader.view(target, &what).await?;
    let Some(source) = source else {
        return Err(error(&not_found(&ObjectView::new(ty, Vec::new()), key)));
    };
    // The source object must exist for the caller, whichever end holds the key.
    let source_object = reader.one(&source, &[], key).await?;
    let Some(target_view) = target_view else {
        return match linked {
            Some(k) => Err(error(&not_found(&ObjectView::new(target, Vec::new()), k))),
            None => Ok(json!({ "data": [] })),
        };
    };
    let predicate = if fk.object == ty.name {
        // The key is on this object: the linked object is the one it names.
        let p = source.property(&fk.property)?;
        let Some(value) = source_object.get(&p.name) else {
            return match linked {
                Some(k) => Err(error(&not_found(&target_view, k))),
                None => Ok(json!({ "data": [] })),
            };
        };
        let tk = target.primary_key_property();
        target_view.property(&tk.name)?;
        format!(
            "\"{}\" = {}",
            tk.column,
            query::literal(tk.property_type, value, "link")?
        )
    } else {
        // The key is on the linked objects: they are the ones naming this one.
        let p = target_view.property(&fk.property)?;
        let own = source_object["__primaryKey"].clone();
        format!(
            "\"{}\" = {}",
            p.column,
            query::literal(p.property_type, &own, "primaryKey")?
        )
    };
    match linked {
        None => {
            let order = target_view.order_by_text(listing.order_by.as_deref())?;
            let page = listing.page()?;
            reader
                .page(
                    &target_view,
                    &listing.select,
                    Some(&predicate),
                    &order,
                    page,
                )
                .await
        }
        Some(k) => {
            let tk = target.primary_key_property();
            let both = format!(
                "{predicate} AND \"{}\" = {}",
                tk.column,
                query::literal(
                    tk.property_type,
                    &Value::String(k.to_string()),
                    "linkedObjectPrimaryKey"
                )?
            );
            let found = reader
                .page(
                    &target_view,
                    &listing.select,
                    Some(&both),
                    &[],
                    Page { size: 1, offset: 0 },
                )
                .await?;
            found["data"]
                .get(0)
                .cloned()
                .ok_or_else(|| error(&not_found(&target_view, k)))
        }
    }
}

/// `GET …/objects/{objectType}/{primaryKey}/links/{linkType}`.
pub async fn links(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((ontology, name, key, link)): Path<(String, String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    match follow(
        &state,
        &ext,
        &headers,
        (&ontology, &name, &key, &link),
        None,
        &pairs,
    )
    .await
    {
        Ok(out) => Json(out).into_response(),
        Err(r) => r,
    }
}

/// `GET …/objects/{objectType}/{primaryKey}/links/{linkType}/{linkedObjectPrimaryKey}`.
pub async fn linked(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path((ontology, name, key, link, linked)): Path<(String, String, String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    match follow(
        &state,
        &ext,
        &headers,
        (&ontology, &name, &key, &link),
        Some(&linked),
        &pairs,
    )
    .await
    {
        Ok(out) => Json(out).into_response(),
        Err(r) => r,
    }
}
