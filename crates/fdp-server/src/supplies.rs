//! Supplies across the ICB over HTTP. A trust's supplies lead publishes
//! the trust's position (the supply-chain product's `demand` view) to the
//! ICB; the ICB, and each trust through it, sees per item where spare stock
//! sits, where it is needed and what the area must buy; a trust offers
//! another stock it can spare, and the other accepts it onto one of its
//! locations or declines. What is spare and what is needed is the
//! product's, run in the caller's own governed session; carrying the
//! position and the offer is the federation's (`fdp_federation::supplies`).
//!
//! [`Supplies`] is the work itself, over one instance's parts, so that
//! `fdp demo` takes the same steps the API does; the handlers below adapt
//! it to HTTP.

use std::collections::{BTreeMap, HashMap};
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDate, Utc};
use fdp_federation::supplies::{
    self, area, AreaItem, Decision, NewSupplyOffer, Published, RecordIntake, Status, SupplyError,
    SupplyFeed, SupplyOffer, SupplyOffers,
};
use fdp_federation::{Federation, OrgRole};
use fdp_govern::{Governance, ProductView, Purpose, SessionRequest};
use fdp_products::mutual_aid::objects;
use fdp_products::platform::{column, run_view, Output, Registry, Source};
use fdp_products::supply_chain::{self, area::ItemPosition};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::principal;
use crate::checkpoint::purpose_of;
use crate::mutual_aid::{field, Problem};
use crate::AppState;

/// What changes stock, and so what offering, accepting and publishing
/// need a grant to change: the supplies lead's.
const STOCK: &str = "stock_movement";

impl From<SupplyError> for Problem {
    fn from(e: SupplyError) -> Problem {
        let status = match &e {
            SupplyError::NotFound(_) => StatusCode::NOT_FOUND,
            SupplyError::AlreadyDecided(_) | SupplyError::NotTheReceiver(_) => StatusCode::CONFLICT,
            SupplyError::Invalid(_)
            | SupplyError::Send(fdp_federation::SendError::UnknownPeer(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

/// What a supplies lead offers (`POST /api/supplies/offers`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskedOffer {
    /// The trust offered to (ODS code).
    pub to: String,
    /// The item (NPC).
    pub item_code: String,
    /// This trust's location the stock is at.
    pub from_location: String,
    pub quantity: f64,
    #[serde(default)]
    pub note: Option<String>,
}

/// The receiving trust's answer (`POST /api/supplies/offers/{id}/decision`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferDecision {
    pub accept: bool,
    /// Where the stock goes; by default the location that most needs it.
    #[serde(default)]
    pub to_location: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// One instance's parts that supplies across the ICB work with.
pub struct Supplies<'a> {
    pub governance: &'a Governance,
    pub tables: &'a fdp_store::StoredTables,
    pub registry: Registry,
    pub federation: Option<&'a Arc<Federation>>,
    pub offers: &'a SupplyOffers,
    /// Where stock movements are stored (the instance's FHIR source).
    pub intake: &'a dyn RecordIntake,
    pub data_dir: &'a FsPath,
}

impl<'a> Supplies<'a> {
    /// The parts the HTTP handlers work with.
    pub fn of(state: &'a AppState) -> Supplies<'a> {
        Supplies {
            governance: &state.governance,
            tables: &state.tables,
            registry: state.products.registry(),
            federation: state.federation.as_ref(),
            offers: &state.supply_offers,
            intake: state.fhir.as_ref(),
            data_dir: &state.instance.data_dir,
        }
    }

    fn federation(&self) -> Result<&'a Arc<Federation>, Problem> {
        self.federation.ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "this instance is not in a federation: configure [federation] and its peers",
            )
        })
    }

    /// The federation, where this instance is a trust.
    fn trust(&self, what: &str) -> Result<&'a Arc<Federation>, Problem> {
        let fed = self.federation()?;
        if fed.identity.role != OrgRole::Trust {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "this instance is {} ({}): only a trust {what}",
                    fed.identity.ods, fed.identity.role
                ),
            ));
        }
        Ok(fed)
    }

    /// Whether `req` may change stock (the decision audited as a change).
    fn may_change(&self, req: &SessionRequest, what: &str) -> Result<(), Problem> {
        self.governance
            .change_view(req, &[STOCK], what)?
            .changed(vec![])
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }

    fn view(&self, req: &SessionRequest, table: &str, what: &str) -> Result<ProductView, Problem> {
        Ok(self.governance.product_view(req, &[table], what)?)
    }

    /// Rows of the supply-chain product's `view` with `given`, in `req`'s
    /// own governed session (so audited, and refused as the caller would
    /// be).
    async fn view_rows(
        &self,
        req: &SessionRequest,
        view: &str,
        given: &[(&str, &str)],
    ) -> Result<Vec<Map<String, Value>>, Problem> {
        let given: BTreeMap<String, String> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let session = self.governance.session(self.tables, req.clone()).await?;
        let out = run_view(&self.registry, supply_chain::ID, view, &session, &given).await?;
        Ok(objects(&out.columns, &out.rows))
    }

    /// This trust's position as `req` sees it: the `demand` view, item by
    /// item.
    pub async fn position(&self, req: &SessionRequest) -> Result<Vec<ItemPosition>, Problem> {
        let rows = self.view_rows(req, "demand", &[]).await?;
        ItemPosition::from_rows(&rows)
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e))
    }

    /// Publish this trust's position today to the ICB, as `req`, who must
    /// be able to change stock: the day, the position, and how many ICBs it
    /// was queued to.
    pub async fn publish(
        &self,
        req: &SessionRequest,
    ) -> Result<(NaiveDate, Vec<ItemPosition>, usize), Problem> {
        let fed = self.trust("publishes a supplies position")?;
        self.may_change(req, "publish the supplies position to the ICB")?;
        self.publish_as_allowed(fed, req).await
    }

    /// [`Self::publish`] for a caller already allowed to change stock
    /// (whose change is already audited). Stock offered to another trust
    /// and not yet answered is promised: it is not spare, though it has
    /// not left yet.
    async fn publish_as_allowed(
        &self,
        fed: &Federation,
        req: &SessionRequest,
    ) -> Result<(NaiveDate, Vec<ItemPosition>, usize), Problem> {
        let mut items = self.position(req).await?;
        let promised = self.promised(fed)?;
        for item in &mut items {
            if let Some(q) = promised.get(&item.item_code) {
                item.spare = (item.spare - q).max(0.0);
            }
        }
        let today = Utc::now().date_naive();
        let icbs = supplies::publish(fed, today, &items).map_err(SupplyError::from)?;
        Ok((today, items, icbs))
    }

    /// Stock this trust has offered and not yet had answered, by item.
    fn promised(&self, fed: &Federation) -> Result<BTreeMap<String, f64>, Problem> {
        let mut out = BTreeMap::new();
        for o in self.unanswered(fed)? {
            *out.entry(o.item_code).or_insert(0.0) += o.quantity;
        }
        Ok(out)
    }

    /// The offers this trust has made that are not yet answered.
    fn unanswered(&self, fed: &Federation) -> Result<Vec<SupplyOffer>, Problem> {
        Ok(self
            .offers
            .list()?
            .into_iter()
            .filter(|o| o.from == fed.identity.ods && !o.status.is_decided())
            .collect())
    }

    /// Publish again after a change of stock, where the caller may; a
    /// failure is logged and left to the next publication.
    async fn publish_again(&self, fed: &Federation, req: &SessionRequest) -> bool {
        match self.publish_as_allowed(fed, req).await {
            Ok(_) => true,
            Err(p) => {
                tracing::warn!(problem = %p, "the supplies position could not be published again");
                false
            }
        }
    }

    /// Every trust's latest position: on an ICB what it has gathered, on a
    /// trust what its ICB answers. Items and stock, no patient; read under a
    /// purpose like any stock table.
    pub async fn gathered(
        &self,
        req: &SessionRequest,
        what: &str,
    ) -> Result<Vec<Published>, Problem> {
        let view = self.view(req, "stock_level", what)?;
        let fed = self.federation()?;
        let feed = if fed.identity.role == OrgRole::Icb {
            SupplyFeed::open(self.data_dir)
                .all()
                .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
        } else {
            supplies::fetch(fed)
                .await
                .map_err(|e| Problem::new(StatusCode::BAD_GATEWAY, e))?
        };
        let items: usize = feed.iter().map(|p| p.items.len()).sum();
        view.served(items as u64, vec![])
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(feed)
    }

    /// The offers sent and received, as they stand.
    pub fn shown_offers(
        &self,
        req: &SessionRequest,
        what: &str,
    ) -> Result<Vec<SupplyOffer>, Problem> {
        let fed = self.federation()?;
        let view = self.view(req, STOCK, what)?;
        let all = self.offers.current(fed)?;
        view.served(all.len() as u64, vec![])
            .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(all)
    }

    /// Offer another trust stock this trust can spare, as `by`: no more
    /// than the location has to spare today once this trust's own short
    /// locations are met (the product's `spare` view as `req` sees it),
    /// less what is already offered from there and not yet answered.
    pub async fn offer(
        &self,
        req: &SessionRequest,
        by: &str,
        asked: AskedOffer,
    ) -> Result<SupplyOffer, Problem> {
        let fed = self.trust("offers stock to another trust")?;
        if asked.to == fed.identity.ods {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "to: a trust does not offer stock to itself; move it between its own locations with the suggestions",
            ));
        }
        self.may_change(req, "offer stock to another trust")?;
        let item = asked.item_code.trim().to_uppercase();
        let from = asked.from_location.trim().to_string();
        let spare_rows = self.view_rows(req, "spare", &[("item", &item)]).await?;
        let at: Vec<&Map<String, Value>> = spare_rows
            .iter()
            .filter(|r| r.get("location").and_then(Value::as_str) == Some(from.as_str()))
            .collect();
        let spare: f64 = at
            .iter()
            .filter_map(|r| r.get("quantity").and_then(Value::as_f64))
            .sum();
        let pending: f64 = self
            .unanswered(fed)?
            .iter()
            .filter(|o| o.item_code == item && o.from_location == from)
            .map(|o| o.quantity)
            .sum();
        let free = (spare - pending).max(0.0);
        if asked.quantity > free {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "{from} has {free} of {item} to spare today ({spare} spare once this trust's own locations are met, {pending} already offered): GET /api/products/supply-chain/spare lists what is spare"
                ),
            ));
        }
        let first = at.first();
        let text = |k: &str| {
            first
                .and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let new = NewSupplyOffer {
            to: asked.to,
            item_code: item,
            item_name: text("item_name"),
            quantity: asked.quantity,
            from_location: from,
            why_spare: text("reason"),
            expires: text("expires").and_then(|d| d.parse().ok()),
            note: asked.note.filter(|n| !n.trim().is_empty()),
        };
        let sent = self.offers.send(fed, self.governance.audit(), by, new)?;
        // What is offered is no longer spare: the ICB is told at once, so
        // it does not send a second trust to the same stock.
        self.publish_again(fed, req).await;
        Ok(sent)
    }

    /// The receiving trust's decision on offer `id`, as `by`, taking
    /// effect today. Accepted, the stock goes to `to_location` (one of this
    /// trust's locations that stocks the item) or, where none is named, to
    /// the one most in need of it; then this trust's position is published
    /// again where `req` may (whether it was is the second value).
    pub async fn decide(
        &self,
        req: &SessionRequest,
        by: &str,
        id: &str,
        asked: OfferDecision,
    ) -> Result<(SupplyOffer, bool), Problem> {
        let fed = self.trust("takes stock offered by another trust")?;
        self.may_change(req, &format!("decide supply offer {id}"))?;
        let held = self
            .offers
            .list()?
            .into_iter()
            .find(|o| o.id == id)
            .ok_or_else(|| SupplyError::NotFound(id.to_string()))?;
        if held.to != fed.identity.ods {
            return Err(SupplyError::NotTheReceiver(id.to_string()).into());
        }
        if held.status.is_decided() {
            return Err(SupplyError::AlreadyDecided(id.to_string()).into());
        }
        let decision = if asked.accept {
            Decision::Accept {
                to_location: self
                    .receiving_location(req, &held.item_code, asked.to_location)
                    .await?,
            }
        } else {
            Decision::Decline {
                reason: asked.reason.filter(|r| !r.trim().is_empty()),
            }
        };
        let today = Utc::now().date_naive();
        let decided = self
            .offers
            .decide(
                fed,
                self.governance.audit(),
                self.intake,
                by,
                id,
                decision,
                today,
            )
            .await?;
        // The stock on its way changes what this trust needs: the ICB is
        // told, under the change already allowed and audited above.
        let republished = self.publish_again(fed, req).await;
        Ok((decided, republished))
    }

    /// Where offered stock of `item` goes: `named`, if this trust stocks
    /// the item there; else the location an order is suggested for, most
    /// urgent first; else the one with the fewest days of cover.
    async fn receiving_location(
        &self,
        req: &SessionRequest,
        item: &str,
        named: Option<String>,
    ) -> Result<String, Problem> {
        let stock = self.view_rows(req, "stock", &[("item", item)]).await?;
        let location = |r: &Map<String, Value>| {
            r.get("location")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        if let Some(named) = named
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
        {
            if stock
                .iter()
                .any(|r| location(r).as_deref() == Some(named.as_str()))
            {
                return Ok(named);
            }
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("to_location: this trust holds no record of {item} at {named}; name a location that stocks it"),
            ));
        }
        let suggested = self
            .view_rows(req, "suggestions", &[("item", item)])
            .await?;
        if let Some(to) = suggested
            .iter()
            .find(|r| r.get("kind").and_then(Value::as_str) == Some("order"))
            .and_then(|r| r.get("to").and_then(Value::as_str))
        {
            return Ok(to.to_string());
        }
        stock
            .iter()
            .min_by(|a, b| {
                let d = |r: &Map<String, Value>| {
                    r.get("days_of_cover")
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::INFINITY)
                };
                d(a).total_cmp(&d(b))
            })
            .and_then(location)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("no location of this trust stocks {item}: name one (to_location)"),
                )
            })
    }
}

/// The area's items as a table (for CSV).
fn area_output(items: &[AreaItem]) -> Output {
    let from_feed =
        || Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity")]);
    let who = |v: &[supplies::TrustQuantity]| {
        json!(v
            .iter()
            .map(|t| format!("{} {}", t.trust, t.quantity))
            .collect::<Vec<_>>()
            .join("; "))
    };
    Output {
        product: supply_chain::ID.into(),
        view: "area".into(),
        title: "Supplies across the ICB".into(),
        purpose: Purpose::Operations,
        columns: vec![
            column(
                "item_code",
                "Item (NPC)",
                Source::column("stock_level", "item_code"),
            ),
            column(
                "item_name",
                "Item",
                Source::column("stock_level", "item_name"),
            ),
            column(
                "category",
                "Category",
                Source::column("supply_item", "product_category"),
            ),
            column(
                "critical",
                "Critical",
                Source::column("supply_item", "critical"),
            ),
            column("trusts", "Trusts", from_feed()),
            column("forecast_per_month", "Forecast a month", from_feed()),
            column("on_hand", "On hand", from_feed()),
            column("spare", "Spare", from_feed()),
            column("to_order", "Still to order", from_feed()),
            column("to_buy", "To buy together", from_feed()),
            column("spare_at", "Spare at", from_feed()),
            column("needed_at", "Needed at", from_feed()),
        ],
        rows: items
            .iter()
            .map(|a| {
                vec![
                    json!(a.item_code),
                    json!(a.item_name),
                    json!(a.category),
                    json!(a.critical),
                    json!(a.trusts),
                    json!(a.forecast_per_month),
                    json!(a.on_hand),
                    json!(a.spare),
                    json!(a.to_order),
                    json!(a.to_buy),
                    who(&a.spare_at),
                    who(&a.needed_at),
                ]
            })
            .collect(),
        disclosure: None,
    }
}

#[allow(clippy::result_large_err)] // returned at once as the response
fn asked_by(
    state: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
) -> Result<SessionRequest, Response> {
    purpose_of(state, ext, headers, "http")
}

/// `POST /api/supplies/publish`: publish this trust's supplies position
/// (the supply-chain product's `demand` view) to the ICB. Reads the
/// supplies tables and needs a grant to change stock, under the caller's
/// purpose (operations).
pub async fn publish(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match Supplies::of(&state).publish(&req).await {
        Ok((as_at, items, icbs)) => Json(json!({
            "as_at": as_at,
            "items": items,
            "published_to": icbs,
        }))
        .into_response(),
        Err(p) => p.into_response(),
    }
}

/// `GET /api/supplies/area`: every trust's latest position and, per item,
/// the area's use, stock, where spare stock sits, where it is needed and
/// what to buy together; `format=csv` for the items as a CSV file.
pub async fn area_api(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let feed = match Supplies::of(&state)
        .gathered(&req, "GET /api/supplies/area")
        .await
    {
        Ok(f) => f,
        Err(p) => return p.into_response(),
    };
    let items = area(&feed);
    if query.get("format").map(String::as_str) == Some("csv") {
        return (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"supplies-area.csv\"".to_string(),
                ),
            ],
            area_output(&items).to_csv(),
        )
            .into_response();
    }
    Json(json!({
        "organisation": state.instance.ods,
        "gathered": feed,
        "area": items,
    }))
    .into_response()
}

/// `GET /api/supplies/offers`: offers sent and received, with where each
/// has got to.
pub async fn offers(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match Supplies::of(&state).shown_offers(&req, "GET /api/supplies/offers") {
        Ok(all) => Json(all).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `POST /api/supplies/offers`: offer another trust stock this trust can
/// spare (see [`Supplies::offer`]).
pub async fn offer(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Json<AskedOffer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(asked) = match body {
        Ok(b) => b,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match Supplies::of(&state)
        .offer(&req, &principal(&ext).name, asked)
        .await
    {
        Ok(o) => (StatusCode::ACCEPTED, Json(o)).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `POST /api/supplies/offers/{id}/decision`: the receiving trust accepts
/// (the stock is on order at the location, and leaves the sender's when it
/// is told) or declines.
pub async fn decide(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<OfferDecision>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(asked) = match body {
        Ok(b) => b,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    let req = match asked_by(&state, &ext, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match Supplies::of(&state)
        .decide(&req, &principal(&ext).name, &id, asked)
        .await
    {
        Ok((decided, republished)) => {
            let mut answer = serde_json::to_value(&decided).unwrap_or_default();
            answer["position_republished"] = json!(republished);
            Json(answer).into_response()
        }
        Err(p) => p.into_response(),
    }
}

/// `GET /supplies/area`: per item across the ICB, where spare stock sits
/// and where it is needed; on a trust, a form to offer what this trust can
/// spare to a trust that needs it, the offers received to accept or
/// decline, and those sent.
pub async fn page(State(state): State<AppState>, ext: Extensions, headers: HeaderMap) -> Response {
    use maud::html;
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/supplies/area");
    };
    let s = Supplies::of(&state);
    let Ok(fed) = s.federation() else {
        return crate::governed::refused(
            &state,
            StatusCode::CONFLICT,
            "this instance is not in a federation",
        );
    };
    let me = fed.identity.ods.clone();
    let is_trust = fed.identity.role == OrgRole::Trust;
    let feed = s.gathered(&req, "GET /supplies/area").await;
    let items = feed.as_deref().map(area).unwrap_or_default();
    // What this trust can offer: its own spare, where another trust needs
    // the item.
    let own_spare = if is_trust {
        s.view_rows(&req, "spare", &[]).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let offers = if is_trust {
        s.shown_offers(&req, "GET /supplies/area").ok()
    } else {
        None
    };
    let needing = |item: &str| -> Vec<String> {
        items
            .iter()
            .filter(|a| a.item_code == item)
            .flat_map(|a| a.needed_at.iter().filter(|t| t.trust != me))
            .map(|t| t.trust.clone())
            .collect()
    };
    let offerable: Vec<(&Map<String, Value>, Vec<String>)> = own_spare
        .iter()
        .map(|r| (r, needing(&cell(r, "item_code"))))
        .filter(|(_, to)| !to.is_empty())
        .collect();
    let n = |x: f64| format!("{x}");
    let who = |v: &[supplies::TrustQuantity]| {
        v.iter()
            .map(|t| format!("{} {}", t.trust, t.quantity))
            .collect::<Vec<_>>()
            .join(", ")
    };
    crate::ui::layout(
        "Supplies across the ICB",
        Some(&me),
        html! {
            h1 { "Supplies across the ICB" }
            p.muted { "Each trust's position as it last published it: for every item, what it can spare once its own wards are met and what it must still order. To buy together is what the area needs once spare stock elsewhere has been used. " a href="/api/supplies/area?format=csv" { "CSV" } }
            @if is_trust {
                form method="post" action="/supplies/publish" {
                    button type="submit" { "Publish this trust's position to the ICB" }
                }
            }
            @match &feed {
                Err(p) => { p.muted { "Not shown: " (p.message) } }
                Ok(feed) => {
                    p.muted { @for f in feed { (f.publisher) ": as at " (f.as_at) ", published " (crate::capacity::age(f.published_at)) ". " } }
                    table #area {
                        thead { tr { th { "Item" } th { "Critical" } th { "Trusts" } th { "Use a month" } th { "On hand" } th { "Spare at" } th { "Needed at" } th { "To buy together" } } }
                        tbody { @for a in &items {
                            tr data-item=(a.item_code) {
                                td { (a.item_code) " " (a.item_name.clone().unwrap_or_default()) }
                                td { @if a.critical { "critical" } }
                                td { (a.trusts) } td { (n(a.forecast_per_month)) } td { (n(a.on_hand)) }
                                td { (who(&a.spare_at)) } td { (who(&a.needed_at)) } td { (n(a.to_buy)) }
                            }
                        } }
                    }
                }
            }
            @if is_trust {
                h2 { "Offer what this trust can spare" }
                @if offerable.is_empty() { p.muted { "Nothing this trust can spare is needed by another trust." } }
                @else {
                    table #offerable {
                        thead { tr { th { "Location" } th { "Item" } th { "Spare" } th { "Why" } th { "Offer to" } } }
                        tbody { @for (r, to) in &offerable {
                            @let get = |k: &str| cell(r, k);
                            tr {
                                td { (get("location")) } td { (get("item_code")) " " (get("item_name")) } td { (get("quantity")) } td { (get("reason")) }
                                td {
                                    form method="post" action="/supplies/offers" {
                                        input type="hidden" name="item_code" value=(get("item_code"));
                                        input type="hidden" name="from_location" value=(get("location"));
                                        select name="to" aria-label="Trust" { @for t in to { option value=(t) { (t) } } }
                                        " "
                                        input type="number" name="quantity" min="1" max=(get("quantity")) value=(get("quantity")) aria-label="Quantity";
                                        " "
                                        button type="submit" { "Offer" }
                                    }
                                }
                            }
                        } }
                    }
                }
                @match &offers {
                    None => { h2 { "Offers" } p.muted { "Not shown under this grant." } }
                    Some(all) => {
                        @let received: Vec<&SupplyOffer> = all.iter().filter(|o| o.to == me).collect();
                        @let sent: Vec<&SupplyOffer> = all.iter().filter(|o| o.from == me).collect();
                        h2 { "Offers received (" (received.len()) ")" }
                        @if received.is_empty() { p.muted { "None." } }
                        @for o in received.iter().rev() {
                            section.offer data-id=(o.id) data-status=(o.status.as_str()) {
                                h3 { (o.from) " offers " (o.quantity) " of " (o.item_code) " " (o.item_name.clone().unwrap_or_default()) }
                                p { "From " (o.from_location) @if let Some(w) = &o.why_spare { " (" (w) ")" }
                                    @if let Some(e) = o.expires { ", expires " (e) } ". Status: " strong { (o.status.as_str()) }
                                    @if let Some(l) = &o.to_location { " to " (l) } }
                                @if o.status == Status::Delivered {
                                    form method="post" action=(format!("/supplies/offers/{}/decision", o.id)) {
                                        label for=(format!("to-{}", o.id)) { "To location (blank: the one most in need)" }
                                        input id=(format!("to-{}", o.id)) name="to_location" size="16";
                                        label for=(format!("why-{}", o.id)) { "Reason (sent to the trust)" }
                                        input id=(format!("why-{}", o.id)) name="reason" size="30";
                                        button type="submit" name="decision" value="accept" { "Accept" }
                                        " "
                                        button type="submit" name="decision" value="decline" { "Decline" }
                                    }
                                }
                            }
                        }
                        h2 { "Offers sent (" (sent.len()) ")" }
                        table #sent {
                            thead { tr { th { "To" } th { "Item" } th { "Quantity" } th { "From" } th { "Status" } th { "Where / why" } } }
                            tbody { @for o in sent.iter().rev() {
                                tr data-status=(o.status.as_str()) {
                                    td { (o.to) } td { (o.item_code) } td { (o.quantity) } td { (o.from_location) }
                                    td { (o.status.as_str()) }
                                    td { (o.to_location.clone().or(o.reason.clone()).unwrap_or_default()) }
                                }
                            } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// A row's value as text for the page.
fn cell(r: &Map<String, Value>, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

/// Back to the page, or the refusal as a page.
fn back(state: &AppState, done: Result<(), Problem>) -> Response {
    match done {
        Ok(()) => axum::response::Redirect::to("/supplies/area").into_response(),
        Err(p) => crate::governed::refused(state, p.status, &p.message),
    }
}

/// `POST /supplies/publish`: the page's publication.
pub async fn publish_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/supplies/area");
    };
    let done = Supplies::of(&state).publish(&req).await.map(|_| ());
    back(&state, done)
}

/// `POST /supplies/offers`: the page's offer.
pub async fn offer_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: String,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/supplies/area");
    };
    let get = |k: &str| field(&body, k).unwrap_or_default();
    let Ok(quantity) = get("quantity").parse::<f64>() else {
        return crate::governed::refused(
            &state,
            StatusCode::BAD_REQUEST,
            "quantity: give a number of units",
        );
    };
    let asked = AskedOffer {
        to: get("to"),
        item_code: get("item_code"),
        from_location: get("from_location"),
        quantity,
        note: field(&body, "note"),
    };
    let done = Supplies::of(&state)
        .offer(&req, &p.name, asked)
        .await
        .map(|_| ());
    back(&state, done)
}

/// `POST /supplies/offers/{id}/decision`: the page's accept or decline.
pub async fn decision_form(
    State(state): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let p = principal(&ext);
    let Some(req) = crate::checkpoint::declared(&state, &headers, &p, "ui") else {
        return crate::ui::to_checkpoint("/supplies/area");
    };
    let accept = match field(&body, "decision").as_deref() {
        Some("accept") => true,
        Some("decline") => false,
        _ => {
            return crate::governed::refused(
                &state,
                StatusCode::BAD_REQUEST,
                "choose Accept or Decline",
            )
        }
    };
    let asked = OfferDecision {
        accept,
        to_location: field(&body, "to_location"),
        reason: field(&body, "reason"),
    };
    let done = Supplies::of(&state)
        .decide(&req, &p.name, &id, asked)
        .await
        .map(|_| ());
    back(&state, done)
}
