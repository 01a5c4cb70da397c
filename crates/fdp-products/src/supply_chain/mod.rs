//! Supply chain: for a trust's supplies lead, every item at every ward at a
//! glance, the shortages coming before they happen, and stock moved
//! between wards before more is bought.
//!
//! Everything is computed from the supplies tables as the caller's session
//! shows them (operations): the ward counts (`stock_level` without a
//! batch), every movement since (`stock_movement`: receipts, issues,
//! returns, transfers, adjustments, wastage, and orders accepted here), the
//! inventory system's batches with their expiry (`stock_level` with a
//! batch), and the catalogue (`supply_item`: category, lead time, critical
//! items, equivalent items). The arithmetic is `fdp-supply`'s:
//!
//! - **on hand**: the last count and every movement since, a count that
//!   disagrees with the movements shown as a discrepancy;
//! - **AMC**: the last three complete months' consumption (issues less
//!   returns; transfers are not use), each corrected for its days out of
//!   stock as OpenLMIS does;
//! - **forecast**: by the demand's pattern, exponential smoothing for
//!   smooth demand, Croston (SBA) or TSB for intermittent, fitted to the
//!   months' corrected consumption, with its error;
//! - **cover**: days the stock lasts at the forecast, the reorder point
//!   (lead-time demand and 95% safety stock) and the maximum (months of use,
//!   one by default, as wards are topped up weekly);
//! - **suggestions**: for each item, short wards are met first from stock
//!   that would expire unused elsewhere, then from wards above their
//!   maximum, and only then by an order. Accepting one records it
//!   (`accept`): a transfer moves the stock between the two wards, an order
//!   is held as on order, and either is audited as a change.

pub mod area;
mod load;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use fdp_govern::{GovernedSession, Purpose};
use fdp_supply::accuracy::{by_pattern, held_back};
use fdp_supply::transfer::{plan, unusable_before_expiry, Plan, Reason};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use load::{position, Ask, Line, Position};

use crate::platform::{
    column, ActionSpec, Answer, Chart, Input, Manifest, MessageSpec, OfferedOn, Offers, OutputColumn,
    ParamKind, ParamSpec, Params, Priority, Product, ProductError, Reads, RecordIntake,
    RecordsChange, Source, ViewSpec,
};

/// The product's id.
pub const ID: &str = "supply-chain";

/// The action that accepts a suggested transfer or order.
pub const ACCEPT: &str = "accept";

/// Months held back to measure forecasts against.
pub const HELD_BACK_MONTHS: usize = 3;

/// A suggestion: a transfer between two locations or an order for one.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// Stable for the same stock on the same day, so the page can name it.
    pub id: String,
    pub kind: &'static str,
    pub item: String,
    pub item_name: Option<String>,
    pub from: Option<String>,
    pub to: String,
    pub quantity: f64,
    pub reason: String,
    pub expires: Option<NaiveDate>,
    /// The receiving location's days of cover now.
    pub to_days_of_cover: Option<f64>,
}

/// Each item's plan across the locations the caller sees, with its lines:
/// transfers, then orders, and what is left to spare.
pub fn plans(position: &Position) -> BTreeMap<&str, (Vec<&Line>, Plan)> {
    let mut by_item: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for l in &position.lines {
        by_item.entry(l.item.as_str()).or_default().push(l);
    }
    by_item
        .into_iter()
        .map(|(item, lines)| {
            let holdings: Vec<_> = lines.iter().map(|l| l.holding()).collect();
            let p = plan(&holdings, position.as_at);
            (item, (lines, p))
        })
        .collect()
}

/// Every suggestion on the position's day: per item, across the
/// locations the caller sees.
pub fn suggestions(position: &Position) -> Vec<Suggestion> {
    let mut out = Vec::new();
    for (item, (lines, p)) in plans(position) {
        let name = lines.iter().find_map(|l| l.item_name.clone());
        let cover_of = |loc: &str| {
            lines
                .iter()
                .find(|l| l.location == loc)
                .and_then(|l| l.cover.days_of_cover)
        };
        for t in p.transfers {
            out.push(Suggestion {
                id: suggestion_id(position.as_at, "transfer", item, Some(&t.from), &t.to, t.quantity),
                kind: "transfer",
                item: item.to_string(),
                item_name: name.clone(),
                to_days_of_cover: cover_of(&t.to),
                from: Some(t.from),
                to: t.to,
                quantity: t.quantity,
                reason: match t.reason {
                    Reason::NearExpiry => "would expire unused where it is".into(),
                    Reason::AboveMaximum => "held above its maximum".into(),
                },
                expires: t.expires,
            });
        }
        for o in p.orders {
            out.push(Suggestion {
                id: suggestion_id(position.as_at, "order", item, None, &o.to, o.quantity),
                kind: "order",
                item: item.to_string(),
                item_name: name.clone(),
                to_days_of_cover: cover_of(&o.to),
                from: None,
                to: o.to,
                quantity: o.quantity,
                reason: "no other location can spare it".into(),
                expires: None,
            });
        }
    }
    out.sort_by(|a, b| {
        let d = |s: &Suggestion| s.to_days_of_cover.unwrap_or(f64::INFINITY);
        d(a).total_cmp(&d(b)).then(a.kind.cmp(b.kind)).then(a.id.cmp(&b.id))
    });
    out
}

fn suggestion_id(day: NaiveDate, kind: &str, item: &str, from: Option<&str>, to: &str, quantity: f64) -> String {
    let mut h = Sha256::new();
    h.update(format!("{day}|{kind}|{item}|{}|{to}|{quantity}", from.unwrap_or("")));
    let hex: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &kind[..1].to_uppercase())
}

/// The product.
#[derive(Default)]
pub struct SupplyChain;

fn params_common() -> Vec<ParamSpec> {
    vec![
        ParamSpec::optional("as_at", ParamKind::Date, "The day looked at (default today)"),
        ParamSpec::optional("site", ParamKind::Text, "Only this site (ODS code)"),
        ParamSpec::optional("location", ParamKind::Text, "Only this location (site:ward)"),
        ParamSpec::optional("item", ParamKind::Text, "Only this item (NPC)"),
        ParamSpec::optional("months", ParamKind::Integer, "Months of history (default 12)"),
        ParamSpec::optional("max_months", ParamKind::Text, "The most a location should hold, in months of its use (default 1)"),
    ]
}

fn view_spec(name: &str, title: &str, description: &str, chart: Option<Chart>) -> ViewSpec {
    ViewSpec {
        name: name.into(),
        title: title.into(),
        description: description.into(),
        params: params_common(),
        input: Input::Tables,
        chart,
        as_of: None,
        needs: vec![],
    }
}

#[async_trait::async_trait]
impl Product for SupplyChain {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: ID.into(),
            title: "Supply chain".into(),
            version: "1.0.0".into(),
            priority: Priority::SupplyChain,
            description: "Every supplies item at every ward: stock on hand from counts and movements, average monthly consumption corrected for days out of stock, a forecast by demand pattern with its error, days of cover and reorder points; the shortages coming within their lead time; and transfers between wards suggested before orders, which a supplies lead accepts".into(),
            publisher: None,
            purposes: vec![Purpose::Operations],
            reads: vec![
                Reads::new("stock_level", &["site_id", "location_id", "location_name", "item_code", "item_name", "category", "batch_number", "expiry_date", "quantity", "as_of_timestamp"]),
                Reads::new("stock_movement", &["site_id", "location_id", "from_location_id", "item_code", "item_name", "category", "movement_type", "movement_date", "quantity"]),
                Reads::optional("supply_item", &["item_code", "gtin", "item_name", "product_category", "lead_time_days", "critical", "equivalence_group"]),
            ],
            views: vec![
                view_spec("stock", "Stock on hand", "Each item at each location: on hand from the last count and the movements since, AMC, the forecast and its method, days of cover, reorder point and maximum, stock that will expire unused, and the status; the worst first", Some(Chart::bars("location", "days_of_cover"))),
                view_spec("shortages", "Shortages coming", "Items at locations that run out within their lead time at the forecast, and the day they run out, soonest first, with what is suggested", Some(Chart::bars("location", "days_of_cover"))),
                view_spec("suggestions", "Suggested transfers and orders", "For each short location: stock from a location that would otherwise let it expire, or holds it above its maximum, then an order for what is left", Some(Chart::bars("to", "quantity"))),
                view_spec("heat-map", "Stock by ward and category", "Each location and item category: items held, items short or out, and the fewest days of cover among them", Some(Chart::heat("location", "category", "fewest_days_of_cover"))),
                view_spec("history", "Item history and forecast", "One item at one location (give location and item) month by month: use, days out of stock, use corrected for them, the one-step forecast, then the months ahead with a 95% band", Some(Chart::lines("month", &["corrected_use", "forecast", "lower", "upper"]))),
                view_spec("forecast-accuracy", "Forecast accuracy", "The forecasts' error on the last three complete months, held back and forecast each from the months before, against last month's use as the forecast (the naive one): MASE by demand pattern", Some(Chart::bars("pattern", "mase_forecast").stacked(&["mase_naive"]))),
                view_spec("discrepancies", "Counts that disagree", "Each count that found other than the movements since the last one imply", None),
                view_spec("demand", "Demand across the trust", "Each item across the locations: use a month forecast, on hand, stock above maximum and the shortfall below reorder points; once the short locations are met from the others, what is left to spare and what must still be ordered. What the trust publishes to its ICB", Some(Chart::bars("item_code", "forecast_per_month"))),
                view_spec("spare", "Stock to spare", "Each location's stock left over once the trust's own short locations are met (near expiry, or above its maximum): what could be offered to another trust", Some(Chart::bars("location", "quantity"))),
            ],
            actions: vec![ActionSpec {
                name: ACCEPT.into(),
                title: "Accept".into(),
                description: "Accept a suggested transfer (the stock moves between the two locations) or order (held as on order until received)".into(),
                target: "suggestion".into(),
                changes: vec!["stock_movement".into()],
                inputs: vec![ParamSpec::optional("as_at", ParamKind::Date, "The day the suggestion was made for (default today)")],
                input: Input::Tables,
                offered_on: vec![OfferedOn {
                    view: "suggestions".into(),
                    column: "suggestion".into(),
                }],
            }],
            offers: Offers {
                questions: Vec::new(),
                messages: vec![
                    MessageSpec::new("supply-position", "A trust's supplies position (its demand view: use, stock, spare and still to order, item by item), published to its ICB"),
                    MessageSpec::new("supply-query", "A member asking its ICB for every trust's latest supplies position"),
                    MessageSpec::new("supply-offer", "A trust offering another stock it can spare"),
                    MessageSpec::new("supply-offer-status", "The receiving trust's acceptance or decline of a supply offer"),
                ],
            },
        }
    }

    async fn view(&self, view: &str, session: &GovernedSession, params: &Params) -> Result<Answer, ProductError> {
        let ask = Ask::from(params)?;
        if view == "history" && (ask.location.is_none() || ask.item.is_none()) {
            return Err(ProductError::Param {
                name: "location".into(),
                message: "give the location and the item whose history to show".into(),
            });
        }
        if !self.manifest().views.iter().any(|v| v.name == view) {
            return Err(self.no_view(view));
        }
        let position = position(session, &ask).await?;
        Ok(match view {
            "stock" => stock_answer(&position),
            "shortages" => shortages_answer(&position),
            "suggestions" => suggestions_answer(&position),
            "heat-map" => heat_answer(&position),
            "history" => history_answer(&position),
            "forecast-accuracy" => accuracy_answer(&position),
            "discrepancies" => discrepancies_answer(&position),
            "demand" => demand_answer(&position),
            "spare" => spare_answer(&position),
            other => return Err(self.no_view(other)),
        })
    }

    async fn act_on_tables(
        &self,
        action: &str,
        target: &str,
        session: &GovernedSession,
        _held: &dyn RecordIntake,
        inputs: &Params,
        by: &str,
    ) -> Result<RecordsChange, ProductError> {
        if action != ACCEPT {
            return Err(ProductError::UnknownAction {
                product: ID.into(),
                action: action.into(),
            });
        }
        let as_at = inputs.date("as_at").unwrap_or_else(|| Utc::now().date_naive());
        let ask = Ask::from(&Params::default())?;
        let ask = Ask { as_at, ..ask };
        let position = position(session, &ask).await?;
        let Some(s) = suggestions(&position).into_iter().find(|s| s.id == target) else {
            return Err(ProductError::NotAdmitted(format!(
                "no suggestion {target} stands on {as_at}: the stock has changed since, or the caller does not see it"
            )));
        };
        let request = supply_request(&s, as_at, by);
        let id = request["id"].as_str().unwrap_or_default().to_string();
        Ok(RecordsChange {
            records: vec![(request, id.clone())],
            patients: Vec::new(),
            answer: json!({
                "suggestion": s.id,
                "kind": s.kind,
                "item": s.item,
                "from": s.from,
                "to": s.to,
                "quantity": s.quantity,
                "record": format!("SupplyRequest/{id}"),
                "status": if s.kind == "transfer" { "moved" } else { "on order" },
            }),
        })
    }
}

/// The FHIR SupplyRequest that records an accepted suggestion: a transfer
/// names where the stock comes from (`deliverFrom`) and is done; an order
/// is active until received.
pub fn supply_request(s: &Suggestion, day: NaiveDate, by: &str) -> Value {
    let location = |l: &str| json!({ "identifier": { "system": fdp_fhir::systems::SUPPLY_LOCATION, "value": l } });
    let mut r = json!({
        "resourceType": "SupplyRequest",
        "id": format!("{}-{}", s.id.to_lowercase(), Utc::now().timestamp_millis()),
        "identifier": [{ "system": fdp_fhir::systems::SUPPLY_SUGGESTION, "value": s.id }],
        "status": if s.kind == "transfer" { "completed" } else { "active" },
        "category": { "text": if s.kind == "transfer" { "transfer" } else { "order" } },
        "itemCodeableConcept": { "coding": [{ "system": fdp_fhir::systems::NHS_SUPPLY_CHAIN_NPC, "code": s.item }], "text": s.item_name },
        "quantity": { "value": s.quantity },
        "occurrenceDateTime": day.to_string(),
        "authoredOn": Utc::now().to_rfc3339(),
        "requester": { "display": by },
        "reasonCode": [{ "text": s.reason }],
        "deliverTo": location(&s.to),
    });
    if let Some(from) = &s.from {
        r["deliverFrom"] = location(from);
    }
    r
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn opt1(x: Option<f64>) -> Value {
    json!(x.filter(|v| v.is_finite()).map(round1))
}

fn stock_columns() -> Vec<OutputColumn> {
    let level = |c: &str| Source::column("stock_level", c);
    let derived = || Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity"), ("stock_movement", "movement_type")]);
    vec![
        column("location", "Location", level("location_id")),
        column("site", "Site", level("site_id")),
        column("item_code", "Item (NPC)", level("item_code")),
        column("item_name", "Item", level("item_name")),
        column("category", "Category", Source::column("supply_item", "product_category")),
        column("on_hand", "On hand", derived()),
        column("last_count", "Last counted", level("as_of_timestamp")),
        column("on_order", "On order", Source::derived(&[("stock_movement", "quantity"), ("stock_movement", "movement_type")])),
        column("amc", "AMC", derived()),
        column("pattern", "Demand pattern", derived()),
        column("method", "Forecast method", derived()),
        column("forecast_per_month", "Forecast a month", derived()),
        column("days_of_cover", "Days of cover", derived()),
        column("runs_out", "Runs out", derived()),
        column("lead_time_days", "Lead time (days)", Source::column("supply_item", "lead_time_days")),
        column("reorder_point", "Reorder point", derived()),
        column("maximum", "Maximum", derived()),
        column("expiring_unused", "Will expire unused", Source::derived(&[("stock_level", "expiry_date"), ("stock_level", "quantity")])),
        column("earliest_expiry", "Earliest expiry", level("expiry_date")),
        column("status", "Status", derived()),
    ]
}

fn status_rank(s: &str) -> u8 {
    match s {
        "out of stock" => 0,
        "short" => 1,
        "below reorder point" => 2,
        "above maximum" => 3,
        "ok" => 4,
        _ => 5,
    }
}

fn stock_answer(p: &Position) -> Answer {
    let mut lines: Vec<&Line> = p.lines.iter().collect();
    lines.sort_by(|a, b| {
        status_rank(a.status())
            .cmp(&status_rank(b.status()))
            .then(a.cover.days_of_cover.unwrap_or(f64::INFINITY).total_cmp(&b.cover.days_of_cover.unwrap_or(f64::INFINITY)))
            .then((&a.location, &a.item).cmp(&(&b.location, &b.item)))
    });
    let rows = lines
        .into_iter()
        .map(|l| {
            let expiring: f64 = unusable_before_expiry(&l.holding(), p.as_at).iter().map(|b| b.quantity).sum();
            vec![
                json!(l.location),
                json!(l.site),
                json!(l.item),
                json!(l.item_name),
                json!(p.item(&l.item).category),
                json!(l.cover.on_hand),
                json!(l.last_count.map(|d| d.to_string())),
                json!(l.on_order),
                opt1(l.amc.as_ref().map(|a| a.value)),
                json!(l.forecast.pattern.as_str()),
                json!(l.forecast.method.name()),
                json!(round1(l.forecast.per_period)),
                opt1(l.cover.days_of_cover),
                json!(l.cover.runs_out.map(|d| d.to_string())),
                json!(l.cover.lead_time_days),
                json!(round1(l.cover.reorder_point)),
                json!(round1(l.cover.maximum)),
                json!(expiring),
                json!(l.batches.first().map(|b| b.expires.to_string())),
                json!(l.status()),
            ]
        })
        .collect();
    Answer::without_patients(stock_columns(), rows)
}

fn shortages_answer(p: &Position) -> Answer {
    let suggested = suggestions(p);
    let derived = || Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity"), ("stock_movement", "movement_type")]);
    let columns = vec![
        column("location", "Location", Source::column("stock_level", "location_id")),
        column("item_code", "Item (NPC)", Source::column("stock_level", "item_code")),
        column("item_name", "Item", Source::column("stock_level", "item_name")),
        column("critical", "Critical", Source::column("supply_item", "critical")),
        column("on_hand", "On hand", derived()),
        column("daily_use", "Use a day", derived()),
        column("days_of_cover", "Days of cover", derived()),
        column("runs_out", "Runs out", derived()),
        column("lead_time_days", "Lead time (days)", Source::column("supply_item", "lead_time_days")),
        column("suggested", "Suggested", derived()),
        column("alternatives", "Alternatives held here", Source::derived(&[("supply_item", "equivalence_group"), ("stock_level", "quantity")])),
    ];
    let mut lines: Vec<&Line> = p
        .lines
        .iter()
        .filter(|l| l.cover.short && l.on_order <= 0.0)
        .collect();
    lines.sort_by(|a, b| {
        a.cover.days_of_cover.unwrap_or(0.0).total_cmp(&b.cover.days_of_cover.unwrap_or(0.0)).then((&a.location, &a.item).cmp(&(&b.location, &b.item)))
    });
    let rows = lines
        .into_iter()
        .map(|l| {
            let what: Vec<String> = suggested
                .iter()
                .filter(|s| s.to == l.location && s.item == l.item)
                .map(|s| match &s.from {
                    Some(from) => format!("transfer {} from {from}", s.quantity),
                    None => format!("order {}", s.quantity),
                })
                .collect();
            vec![
                json!(l.location),
                json!(l.item),
                json!(l.item_name),
                json!(p.item(&l.item).critical),
                json!(l.cover.on_hand),
                json!(round1(l.cover.daily_use)),
                opt1(l.cover.days_of_cover),
                json!(l.cover.runs_out.map(|d| d.to_string())),
                json!(l.cover.lead_time_days),
                json!(what.join("; ")),
                json!(p
                    .alternatives(&l.item, &l.location)
                    .iter()
                    .map(|(code, spare)| format!("{code} ({spare} spare)"))
                    .collect::<Vec<_>>()
                    .join("; ")),
            ]
        })
        .collect();
    Answer::without_patients(columns, rows)
}

fn suggestions_answer(p: &Position) -> Answer {
    let derived = || Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity"), ("stock_movement", "movement_type")]);
    let columns = vec![
        column("suggestion", "Suggestion", derived()),
        column("kind", "Transfer or order", derived()),
        column("item_code", "Item (NPC)", Source::column("stock_level", "item_code")),
        column("item_name", "Item", Source::column("stock_level", "item_name")),
        column("from", "From", Source::column("stock_level", "location_id")),
        column("to", "To", Source::column("stock_level", "location_id")),
        column("quantity", "Quantity", derived()),
        column("reason", "Why", derived()),
        column("expires", "Expires", Source::column("stock_level", "expiry_date")),
        column("to_days_of_cover", "Receiver's days of cover", derived()),
        column("as_at", "For the day", derived()),
    ];
    let rows = suggestions(p)
        .into_iter()
        .map(|s| {
            vec![
                json!(s.id),
                json!(s.kind),
                json!(s.item),
                json!(s.item_name),
                json!(s.from),
                json!(s.to),
                json!(s.quantity),
                json!(s.reason),
                json!(s.expires.map(|d| d.to_string())),
                opt1(s.to_days_of_cover),
                json!(p.as_at.to_string()),
            ]
        })
        .collect();
    Answer::without_patients(columns, rows)
}

fn heat_answer(p: &Position) -> Answer {
    let derived = || Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity")]);
    let columns = vec![
        column("location", "Location", Source::column("stock_level", "location_id")),
        column("category", "Category", Source::column("supply_item", "product_category")),
        column("items", "Items held", derived()),
        column("short", "Short or out", derived()),
        column("fewest_days_of_cover", "Fewest days of cover", derived()),
    ];
    let mut cells: BTreeMap<(String, String), (u32, u32, Option<f64>)> = BTreeMap::new();
    for l in &p.lines {
        let category = p.item(&l.item).category.unwrap_or_else(|| "uncategorised".into());
        let cell = cells.entry((l.location.clone(), category)).or_default();
        cell.0 += 1;
        cell.1 += u32::from(matches!(l.status(), "short" | "out of stock"));
        if let Some(d) = l.cover.days_of_cover {
            cell.2 = Some(cell.2.map_or(d, |m: f64| m.min(d)));
        }
    }
    let rows = cells
        .into_iter()
        .map(|((location, category), (items, short, fewest))| {
            vec![json!(location), json!(category), json!(items), json!(short), opt1(fewest)]
        })
        .collect();
    Answer::without_patients(columns, rows)
}

fn history_answer(p: &Position) -> Answer {
    let derived = || Source::derived(&[("stock_movement", "quantity"), ("stock_movement", "movement_type")]);
    let columns = vec![
        column("month", "Month", Source::column("stock_movement", "movement_date")),
        column("use", "Use", derived()),
        column("days_out_of_stock", "Days out of stock", derived()),
        column("corrected_use", "Use corrected for days out", derived()),
        column("forecast", "Forecast", derived()),
        column("lower", "95% band, low", derived()),
        column("upper", "95% band, high", derived()),
    ];
    let mut rows = Vec::new();
    if let Some(l) = p.lines.first() {
        let complete: Vec<_> = l.months.iter().filter(|m| m.complete()).collect();
        let series = fdp_supply::amc::adjusted_series(&l.months);
        let (fitted, _) = l.forecast.method.run(&series);
        for (i, m) in complete.iter().enumerate() {
            rows.push(vec![
                json!(m.month.format("%Y-%m").to_string()),
                json!(m.consumed),
                json!(m.days_out_of_stock),
                json!(round1(series[i])),
                json!((i > 0).then(|| round1(fitted[i]))),
                Value::Null,
                Value::Null,
            ]);
        }
        let mut month = complete
            .last()
            .map(|m| m.month)
            .unwrap_or(p.as_at)
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(p.as_at);
        for h in 1..=3 {
            let sigma = 1.96 * l.forecast.sigma_ahead(h);
            let f = l.forecast.per_period;
            rows.push(vec![
                json!(month.format("%Y-%m").to_string()),
                Value::Null,
                Value::Null,
                Value::Null,
                json!(round1(f)),
                json!(round1((f - sigma).max(0.0))),
                json!(round1(f + sigma)),
            ]);
            month = month.checked_add_months(chrono::Months::new(1)).unwrap_or(month);
        }
    }
    Answer::without_patients(columns, rows)
}

fn accuracy_answer(p: &Position) -> Answer {
    let derived = || Source::derived(&[("stock_movement", "quantity"), ("stock_movement", "movement_type")]);
    let columns = vec![
        column("pattern", "Demand pattern", derived()),
        column("series", "Items at locations", derived()),
        column("not_measurable", "Not measurable (no change to scale by)", derived()),
        column("mase_forecast", "MASE, forecast", derived()),
        column("mase_naive", "MASE, last month's use", derived()),
        column("forecast_better", "Series the forecast did better on", derived()),
    ];
    let results: Vec<_> = p
        .lines
        .iter()
        .filter_map(|l| held_back(&fdp_supply::amc::adjusted_series(&l.months), HELD_BACK_MONTHS))
        .collect();
    let rows = by_pattern(&results)
        .into_iter()
        .map(|(pattern, s)| {
            let measured = s.series > s.undefined;
            vec![
                json!(pattern.as_str()),
                json!(s.series),
                json!(s.undefined),
                json!(measured.then(|| (s.forecast_mase * 1000.0).round() / 1000.0)),
                json!(measured.then(|| (s.naive_mase * 1000.0).round() / 1000.0)),
                json!(s.forecast_better),
            ]
        })
        .collect();
    Answer::without_patients(columns, rows)
}

fn discrepancies_answer(p: &Position) -> Answer {
    let columns = vec![
        column("location", "Location", Source::column("stock_level", "location_id")),
        column("item_code", "Item (NPC)", Source::column("stock_level", "item_code")),
        column("date", "Counted", Source::column("stock_level", "as_of_timestamp")),
        column("counted", "Count", Source::column("stock_level", "quantity")),
        column("expected", "The movements implied", Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity")])),
        column("difference", "Difference", Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity")])),
    ];
    let mut rows = Vec::new();
    for l in &p.lines {
        for d in l.ledger.discrepancies() {
            let counted = d.counted.unwrap_or(0.0);
            let diff = d.discrepancy.unwrap_or(0.0);
            rows.push(vec![
                json!(l.location),
                json!(l.item),
                json!(d.date.to_string()),
                json!(counted),
                json!(counted - diff),
                json!(diff),
            ]);
        }
    }
    Answer::without_patients(columns, rows)
}

/// The `demand` view's columns, which are also what a trust publishes to
/// its ICB (see [`area`]).
fn demand_columns() -> Vec<OutputColumn> {
    let derived = || Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity"), ("stock_movement", "movement_type")]);
    vec![
        column("item_code", "Item (NPC)", Source::column("stock_level", "item_code")),
        column("item_name", "Item", Source::column("stock_level", "item_name")),
        column("category", "Category", Source::column("supply_item", "product_category")),
        column("critical", "Critical", Source::column("supply_item", "critical")),
        column("locations", "Locations", derived()),
        column("forecast_per_month", "Forecast a month", derived()),
        column("on_hand", "On hand", derived()),
        column("surplus", "Above maximum", derived()),
        column("shortfall", "Below reorder point", derived()),
        column("spare", "Spare once the wards are met", derived()),
        column("to_order", "To order once the wards are met", derived()),
    ]
}

fn demand_answer(p: &Position) -> Answer {
    /// One item across the locations.
    #[derive(Default)]
    struct Area {
        name: Option<String>,
        locations: u32,
        per_month: f64,
        on_hand: f64,
        surplus: f64,
        shortfall: f64,
        spare: f64,
        to_order: f64,
    }
    let mut by: BTreeMap<&str, Area> = BTreeMap::new();
    for (item, (lines, plan)) in plans(p) {
        let e = by.entry(item).or_default();
        for l in lines {
            e.name = e.name.take().or_else(|| l.item_name.clone());
            e.locations += 1;
            e.per_month += l.forecast.per_period;
            e.on_hand += l.cover.on_hand;
            e.surplus += (l.cover.on_hand - l.cover.maximum).max(0.0).floor();
            e.shortfall += (l.cover.reorder_point - l.cover.on_hand - l.on_order).max(0.0).ceil();
        }
        e.spare = plan.spare.iter().map(|s| s.quantity).sum();
        e.to_order = plan.orders.iter().map(|o| o.quantity).sum();
    }
    let rows = by
        .into_iter()
        .map(|(item, a)| {
            let c = p.item(item);
            vec![
                json!(item),
                json!(a.name),
                json!(c.category),
                json!(c.critical),
                json!(a.locations),
                json!(round1(a.per_month)),
                json!(a.on_hand),
                json!(a.surplus),
                json!(a.shortfall),
                json!(a.spare),
                json!(a.to_order),
            ]
        })
        .collect();
    Answer::without_patients(demand_columns(), rows)
}

/// Each location's stock to spare once the trust's own short locations
/// are met: what it could offer another trust.
fn spare_answer(p: &Position) -> Answer {
    let derived = || Source::derived(&[("stock_level", "quantity"), ("stock_movement", "quantity"), ("stock_movement", "movement_type")]);
    let columns = vec![
        column("location", "Location", Source::column("stock_level", "location_id")),
        column("item_code", "Item (NPC)", Source::column("stock_level", "item_code")),
        column("item_name", "Item", Source::column("stock_level", "item_name")),
        column("critical", "Critical", Source::column("supply_item", "critical")),
        column("quantity", "Spare", derived()),
        column("reason", "Why", derived()),
        column("expires", "Expires", Source::column("stock_level", "expiry_date")),
    ];
    let mut rows = Vec::new();
    for (item, (lines, plan)) in plans(p) {
        let name = lines.iter().find_map(|l| l.item_name.clone());
        for s in plan.spare {
            rows.push(vec![
                json!(s.from),
                json!(item),
                json!(name),
                json!(p.item(item).critical),
                json!(s.quantity),
                json!(s.reason.as_str()),
                json!(s.expires.map(|d| d.to_string())),
            ]);
        }
    }
    Answer::without_patients(columns, rows)
}

