//! Reading the supplies tables through the caller's governed session and
//! putting each item at each location together: its counts and movements
//! as a day-by-day ledger, its months, AMC, forecast and cover, its
//! batches and what is on order.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate};
use fdp_govern::GovernedSession;
use fdp_supply::amc::{adjusted_series, amc, Amc, DEFAULT_MONTHS};
use fdp_supply::cover::{cover, Cover, Policy};
use fdp_supply::forecast::{forecast, Forecast};
use fdp_supply::ledger::{ledger, Count, Ledger, Month, Movement, MovementKind};
use fdp_supply::transfer::{Batch, Holding};
use serde_json::Value;

use crate::platform::{ParamValue, Params, ProductError};
use crate::query_rows::{date, end_of_day_in_england, rows, text};

/// Lead time where the catalogue does not give one.
pub const DEFAULT_LEAD_DAYS: f64 = 7.0;
/// History read when none is asked for, in months.
pub const DEFAULT_HISTORY_MONTHS: u32 = 12;
/// The most a ward should hold, in months of its use, when not asked:
/// wards are topped up weekly, so a month's use is plenty.
pub const DEFAULT_MAX_MONTHS: f64 = 1.0;

/// What the catalogue says of an item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogueItem {
    pub name: Option<String>,
    pub gtin: Option<String>,
    pub category: Option<String>,
    pub lead_time_days: Option<f64>,
    pub critical: bool,
    pub equivalence_group: Option<String>,
}

/// One item at one location.
#[derive(Debug, Clone)]
pub struct Line {
    pub site: String,
    pub location: String,
    pub location_name: Option<String>,
    pub item: String,
    pub item_name: Option<String>,
    pub ledger: Ledger,
    pub months: Vec<Month>,
    pub amc: Option<Amc>,
    pub forecast: Forecast,
    pub cover: Cover,
    /// In-date batches on hand, earliest expiry first, where the source
    /// gives them.
    pub batches: Vec<Batch>,
    /// Ordered and not yet received.
    pub on_order: f64,
    pub last_count: Option<NaiveDate>,
}

impl Line {
    /// Holding more than its maximum.
    pub fn above_maximum(&self) -> bool {
        self.cover.on_hand > self.cover.maximum && self.cover.daily_use > 0.0
    }

    /// In words, the worst first: short, below the reorder point, above
    /// the maximum, or fine.
    pub fn status(&self) -> &'static str {
        if self.cover.daily_use <= 0.0 {
            "no use"
        } else if self.cover.on_hand <= 0.0 {
            "out of stock"
        } else if self.cover.short && self.on_order <= 0.0 {
            "short"
        } else if self.cover.below_reorder_point && self.on_order <= 0.0 {
            "below reorder point"
        } else if self.above_maximum() {
            "above maximum"
        } else {
            "ok"
        }
    }

    /// What the transfer planner needs of the line: stock on order counts
    /// as held, so nothing already ordered is suggested again.
    pub fn holding(&self) -> Holding {
        let mut cover = self.cover.clone();
        cover.on_hand += self.on_order;
        Holding {
            location: self.location.clone(),
            cover,
            batches: self.batches.clone(),
        }
    }
}

/// Every item at every location, on one day.
#[derive(Debug, Clone)]
pub struct Position {
    pub as_at: NaiveDate,
    pub lines: Vec<Line>,
    pub catalogue: BTreeMap<String, CatalogueItem>,
    pub max_months: f64,
}

impl Position {
    /// The catalogue's word on `item`, or nothing.
    pub fn item(&self, item: &str) -> CatalogueItem {
        self.catalogue.get(item).cloned().unwrap_or_default()
    }

    /// What could stand in for `item` at `location`: the other items of
    /// its equivalence group in the catalogue, each with the stock the
    /// location holds of it beyond its own reorder point (so that using
    /// it does not make a second shortage), most first. Items without a
    /// group have none.
    pub fn alternatives(&self, item: &str, location: &str) -> Vec<(String, f64)> {
        let Some(group) = self.item(item).equivalence_group.filter(|g| !g.is_empty()) else {
            return Vec::new();
        };
        let mut out: Vec<(String, f64)> = self
            .catalogue
            .iter()
            .filter(|(code, c)| code.as_str() != item && c.equivalence_group.as_deref() == Some(group.as_str()))
            .filter_map(|(code, _)| {
                let line = self.lines.iter().find(|l| l.location == location && &l.item == code)?;
                let spare = line.cover.on_hand - line.cover.reorder_point.max(0.0);
                (spare >= 1.0).then(|| (code.clone(), spare.floor()))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// The parameters every view of the product takes.
pub struct Ask {
    pub as_at: NaiveDate,
    pub months: u32,
    pub site: Option<String>,
    pub location: Option<String>,
    pub item: Option<String>,
    pub max_months: f64,
}

impl Ask {
    pub fn from(params: &Params) -> Result<Ask, ProductError> {
        let months = params.integer("months").unwrap_or(i64::from(DEFAULT_HISTORY_MONTHS));
        if !(2..=36).contains(&months) {
            return Err(ProductError::Param {
                name: "months".into(),
                message: format!("{months} months of history: give 2 to 36"),
            });
        }
        let max_months = match params.text("max_months") {
            None => DEFAULT_MAX_MONTHS,
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|m| (0.1..=24.0).contains(m))
                .ok_or_else(|| ProductError::Param {
                    name: "max_months".into(),
                    message: format!("{s:?}: give a number of months from 0.1 to 24"),
                })?,
        };
        Ok(Ask {
            as_at: params
                .date("as_at")
                .unwrap_or_else(|| chrono::Utc::now().date_naive()),
            months: months as u32,
            site: params.text("site").map(|s| s.trim().to_string()),
            location: params.text("location").map(|s| s.trim().to_string()),
            item: params.text("item").map(|s| s.trim().to_uppercase()),
            max_months,
        })
    }

    /// The first day of history: the first of the month `months` before.
    pub fn from_day(&self) -> NaiveDate {
        let first = self.as_at.with_day(1).expect("every month has a first day");
        first
            .checked_sub_months(Months::new(self.months))
            .unwrap_or(first)
    }

    /// `AND` clauses for the asked site, location and item.
    fn filter(&self) -> String {
        self.filter_on("site_id", "location_id")
    }

    /// [`Ask::filter`] with the site and location in other columns.
    fn filter_on(&self, site: &str, location: &str) -> String {
        let mut out = String::new();
        let q = |s: &str| ParamValue::Text(s.to_string()).sql_literal();
        if let Some(s) = &self.site {
            out.push_str(&format!(" AND {site} = {}", q(s)));
        }
        if let Some(l) = &self.location {
            out.push_str(&format!(" AND {location} = {}", q(l)));
        }
        if let Some(i) = &self.item {
            out.push_str(&format!(" AND item_code = {}", q(i)));
        }
        out
    }
}

type Key = (String, String);

#[derive(Default)]
struct Gathered {
    site: Option<String>,
    location_name: Option<String>,
    item_name: Option<String>,
    counts: Vec<Count>,
    moves: Vec<Movement>,
    batches: Vec<Batch>,
    ordered: Vec<(NaiveDate, f64)>,
    received: Vec<(NaiveDate, f64)>,
}

fn f(row: &Value, column: &str) -> f64 {
    match row.get(column) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// The day in England of a row's instant (RFC 3339, or without an offset
/// taken as UTC).
fn day_in_england(row: &Value, column: &str) -> Option<NaiveDate> {
    let t = text(row, column)?;
    let utc = chrono::DateTime::parse_from_rfc3339(&t)
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })?;
    Some(utc.with_timezone(&chrono_tz::Europe::London).date_naive())
}

/// The line a row is about, with what the row says of its names.
fn note<'a>(by: &'a mut BTreeMap<Key, Gathered>, r: &Value) -> Option<&'a mut Gathered> {
    let g = by.entry(key(r)?).or_default();
    g.site = g.site.take().or_else(|| text(r, "site_id"));
    g.item_name = g.item_name.take().or_else(|| text(r, "item_name"));
    g.location_name = g.location_name.take().or_else(|| text(r, "location_name"));
    Some(g)
}

fn key(row: &Value) -> Option<Key> {
    Some((text(row, "location_id")?, text(row, "item_code")?.to_uppercase()))
}

/// Everything the views need, as the session lets the caller see it.
pub async fn position(session: &GovernedSession, ask: &Ask) -> Result<Position, ProductError> {
    let day = ParamValue::Date(ask.as_at).sql_literal();
    let from = ParamValue::Date(ask.from_day()).sql_literal();
    // Counts are instants; the day they belong to is the day in England.
    let day_over = ParamValue::Timestamp(end_of_day_in_england(ask.as_at)).sql_literal();
    let filter = ask.filter();
    let counts = rows(
        session,
        &format!(
            "SELECT location_id, max(site_id) AS site_id, item_code, max(item_name) AS item_name, \
               max(location_name) AS location_name, as_of_timestamp AS at, sum(quantity) AS quantity \
             FROM stock_level \
             WHERE category = 'supplies' AND batch_number IS NULL \
               AND as_of_timestamp < {day_over}{filter} \
             GROUP BY location_id, item_code, as_of_timestamp \
             ORDER BY as_of_timestamp"
        ),
    )
    .await?;
    let moves = rows(
        session,
        &format!(
            "SELECT location_id, max(site_id) AS site_id, item_code, max(item_name) AS item_name, \
               movement_date AS day, movement_type, \
               sum(CASE WHEN quantity >= 0 THEN quantity ELSE 0 END) AS plus, \
               sum(CASE WHEN quantity < 0 THEN -quantity ELSE 0 END) AS minus \
             FROM stock_movement \
             WHERE category = 'supplies' AND movement_date >= {from} AND movement_date <= {day}{filter} \
             GROUP BY location_id, item_code, movement_date, movement_type \
             UNION ALL \
             SELECT from_location_id AS location_id, split_part(from_location_id, ':', 1) AS site_id, \
               item_code, max(item_name) AS item_name, movement_date AS day, movement_type, \
               sum(CASE WHEN quantity < 0 THEN -quantity ELSE 0 END) AS plus, \
               sum(CASE WHEN quantity >= 0 THEN quantity ELSE 0 END) AS minus \
             FROM stock_movement \
             WHERE category = 'supplies' AND from_location_id IS NOT NULL \
               AND movement_date >= {from} AND movement_date <= {day}{from_filter} \
             GROUP BY from_location_id, item_code, movement_date, movement_type",
            from_filter = ask.filter_on("split_part(from_location_id, ':', 1)", "from_location_id"),
        ),
    )
    .await?;
    let batches = rows(
        session,
        &format!(
            "SELECT s.location_id, s.item_code, s.expiry_date, sum(s.quantity) AS quantity \
             FROM stock_level s \
             JOIN (SELECT location_id, item_code, max(as_of_timestamp) AS at FROM stock_level \
                   WHERE category = 'supplies' AND batch_number IS NOT NULL \
                     AND as_of_timestamp < {day_over}{filter} \
                   GROUP BY location_id, item_code) latest \
               ON latest.location_id = s.location_id AND latest.item_code = s.item_code \
              AND latest.at = s.as_of_timestamp \
             WHERE s.category = 'supplies' AND s.batch_number IS NOT NULL AND s.expiry_date >= {day} \
             GROUP BY s.location_id, s.item_code, s.expiry_date"
        ),
    )
    .await?;
    // The catalogue is optional: a grant without it still sees its stock.
    let catalogue_rows = if session.covers("supply_item") {
        rows(
            session,
            "SELECT item_code, gtin, item_name, product_category, lead_time_days, critical, equivalence_group \
             FROM supply_item",
        )
        .await?
    } else {
        Vec::new()
    };
    let mut catalogue = BTreeMap::new();
    for r in &catalogue_rows {
        let Some(code) = text(r, "item_code") else {
            continue;
        };
        catalogue.insert(
            code.to_uppercase(),
            CatalogueItem {
                name: text(r, "item_name"),
                gtin: text(r, "gtin"),
                category: text(r, "product_category"),
                lead_time_days: r
                    .get("lead_time_days")
                    .and_then(Value::as_f64)
                    .filter(|d| *d > 0.0),
                critical: r.get("critical").and_then(Value::as_bool).unwrap_or(false),
                equivalence_group: text(r, "equivalence_group"),
            },
        );
    }

    let mut by: BTreeMap<Key, Gathered> = BTreeMap::new();
    for r in &counts {
        let (Some(d), Some(g)) = (day_in_england(r, "at"), note(&mut by, r)) else {
            continue;
        };
        g.counts.push(Count {
            date: d,
            quantity: f(r, "quantity"),
        });
    }
    for r in &moves {
        let (Some(d), Some(kind), Some(g)) = (
            date(r, "day"),
            text(r, "movement_type"),
            note(&mut by, r),
        ) else {
            continue;
        };
        let (plus, minus) = (f(r, "plus"), f(r, "minus"));
        let mut push = |kind: MovementKind, quantity: f64| {
            if quantity != 0.0 {
                g.moves.push(Movement { date: d, kind, quantity });
            }
        };
        use MovementKind::*;
        match kind.to_ascii_lowercase().as_str() {
            // A negative line of a kind undoes it.
            "receipt" => {
                push(Receipt, plus);
                push(Adjustment, -minus);
                g.received.push((d, plus - minus));
            }
            "issue" => {
                push(Issue, plus);
                push(Return, minus);
            }
            "return" => {
                push(Return, plus);
                push(Issue, minus);
            }
            "wastage" => {
                push(Wastage, plus);
                push(Adjustment, minus);
            }
            "transfer" => {
                push(Transfer, plus);
                push(Transfer, -minus);
            }
            // Sent to another organisation: it leaves, and is not use.
            "dispatch" => {
                push(Transfer, -plus);
                push(Transfer, minus);
            }
            "adjustment" => push(Adjustment, plus - minus),
            "order" => g.ordered.push((d, plus - minus)),
            _ => {}
        }
    }
    for r in &batches {
        let (Some(expires), Some(k)) = (date(r, "expiry_date"), key(r)) else {
            continue;
        };
        by.entry(k).or_default().batches.push(Batch {
            expires,
            quantity: f(r, "quantity"),
        });
    }

    let mut lines = Vec::with_capacity(by.len());
    for ((location, item), g) in by {
        let known = catalogue.get(&item).cloned().unwrap_or_default();
        // History from the month the records begin, so that months before
        // any record are not taken for months of no use.
        let first_record = g
            .counts
            .iter()
            .map(|c| c.date)
            .chain(g.moves.iter().map(|m| m.date))
            .min()
            .and_then(|d| d.with_day(1));
        let from_day = first_record.map_or(ask.from_day(), |d| d.max(ask.from_day()));
        let ledger = ledger(&g.counts, &g.moves, from_day, ask.as_at);
        let months = ledger.months();
        let series = adjusted_series(&months);
        let forecast = forecast(&series);
        let lead = known.lead_time_days.unwrap_or(DEFAULT_LEAD_DAYS);
        let policy = Policy {
            lead_time_days: lead,
            max_months: ask.max_months,
            ..Policy::default()
        };
        let cover = cover(ledger.on_hand(), &forecast, &policy, ask.as_at);
        let on_order = outstanding(&g.ordered, &g.received, ask.as_at, lead);
        let batches = in_hand(g.batches, cover.on_hand);
        lines.push(Line {
            site: g.site.unwrap_or_default(),
            location,
            location_name: g.location_name,
            item_name: g.item_name.or(known.name.clone()),
            item,
            amc: amc(&months, DEFAULT_MONTHS),
            months,
            forecast,
            cover,
            batches,
            on_order,
            last_count: g.counts.iter().map(|c| c.date).max(),
            ledger,
        });
    }
    Ok(Position {
        as_at: ask.as_at,
        lines,
        catalogue,
        max_months: ask.max_months,
    })
}

/// Orders placed within twice the lead time that receipts since have not
/// yet covered: an order older than that is taken to have arrived or been
/// cancelled. A receipt on the day of the first such order is for an
/// earlier one: nothing ordered arrives the day it is ordered.
fn outstanding(ordered: &[(NaiveDate, f64)], received: &[(NaiveDate, f64)], as_at: NaiveDate, lead: f64) -> f64 {
    let window = as_at - Days::new((lead * 2.0).ceil() as u64);
    let recent: Vec<&(NaiveDate, f64)> = ordered.iter().filter(|(d, _)| *d >= window).collect();
    let Some(first) = recent.iter().map(|(d, _)| *d).min() else {
        return 0.0;
    };
    let asked: f64 = recent.iter().map(|(_, q)| q).sum();
    let came: f64 = received.iter().filter(|(d, _)| *d > first).map(|(_, q)| q).sum();
    (asked - came).max(0.0)
}

/// The batches reported, less what has gone since, first expiry first:
/// never more than is on hand.
fn in_hand(mut batches: Vec<Batch>, on_hand: f64) -> Vec<Batch> {
    batches.sort_by_key(|b| b.expires);
    let reported: f64 = batches.iter().map(|b| b.quantity).sum();
    let mut gone = (reported - on_hand.max(0.0)).max(0.0);
    for b in &mut batches {
        let take = b.quantity.min(gone);
        b.quantity -= take;
        gone -= take;
    }
    batches.retain(|b| b.quantity >= 1.0);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_belongs_to_its_day_in_england() {
        let row = serde_json::json!({"at": "2025-04-30T23:00:00Z", "winter": "2026-01-01T00:00:00Z"});
        assert_eq!(day_in_england(&row, "at"), NaiveDate::from_ymd_opt(2025, 5, 1));
        assert_eq!(day_in_england(&row, "winter"), NaiveDate::from_ymd_opt(2026, 1, 1));
        let summer = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap();
        assert_eq!(end_of_day_in_england(summer).to_rfc3339(), "2025-07-01T23:00:00+00:00");
    }

    #[test]
    fn an_order_is_outstanding_until_received() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
        assert_eq!(outstanding(&[(d(10), 50.0)], &[], d(12), 7.0), 50.0);
        assert_eq!(outstanding(&[(d(10), 50.0)], &[(d(14), 30.0)], d(15), 7.0), 20.0);
        // Receipts before the order, or the same day, do not count against it.
        assert_eq!(outstanding(&[(d(10), 50.0)], &[(d(9), 30.0)], d(12), 7.0), 50.0);
        assert_eq!(outstanding(&[(d(10), 50.0)], &[(d(10), 30.0)], d(10), 7.0), 50.0);
        // Long ago: arrived or cancelled.
        assert_eq!(outstanding(&[(d(1), 50.0)], &[], d(30), 7.0), 0.0);
    }

    #[test]
    fn batches_are_trimmed_to_what_is_on_hand_first_expiry_first() {
        let d = |m| NaiveDate::from_ymd_opt(2026, m, 1).unwrap();
        let b = |m, q| Batch { expires: d(m), quantity: q };
        assert_eq!(in_hand(vec![b(9, 10.0), b(5, 10.0)], 15.0), [b(5, 5.0), b(9, 10.0)]);
        assert_eq!(in_hand(vec![b(5, 10.0)], 40.0), [b(5, 10.0)]);
    }
}
