//! Vaccine stock against bookings (vaccination): for the vaccination lead,
//! each site's doses on hand by dm+d product and batch against the
//! appointments booked for the coming days; the days of cover, the doses at
//! risk of expiring before use, and what was received, given and wasted.
//!
//! The figures, for a site and product on a day (the `as_at`):
//! - **on hand**: the latest stock count of each store on or before the
//!   day, batches whose expiry date has not passed (a dose is usable on
//!   its expiry date);
//! - **booked**: appointments with `booking_status` booked (not cancelled)
//!   in the `days` from the day, `category` vaccination and `code` the
//!   product;
//! - **days of cover**: the whole days from the day whose bookings the
//!   stock meets when doses go first expiry, first out and none is used
//!   after its expiry date. If the stock outlasts the booked days, what is
//!   left (of batches expiring after them) is spread at the booked days'
//!   mean rate. None where nothing is booked;
//! - **at risk**: doses of batches expiring within the booked days that
//!   the bookings before their expiry will not use. Beyond the booked
//!   days no booking is known, so no later batch is counted at risk;
//! - **wastage**: over a period, doses received (`stock_movement`
//!   receipts), doses given (`vaccination` completed at the site), their
//!   difference, and doses recorded as wasted (`stock_movement` wastage)
//!   by the reason recorded.
//!
//! Counts of appointments and vaccinations name no patient; the product
//! serves operations, where the service is run.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, Utc};
use fdp_govern::{GovernedSession, Purpose};
use serde_json::{json, Value};

use crate::query_rows::{date, number, rows, text};
use crate::platform::{
    column, Answer, Chart, Input, Manifest, Offers, OutputColumn, ParamKind, ParamSpec, Params,
    Priority, Product, ProductError, Reads, Source, ViewSpec,
};

/// The product's id.
pub const ID: &str = "vaccine-stock";

/// Booked days looked ahead when none is asked for.
const DEFAULT_DAYS: i64 = 14;

/// One batch of a product at a site: its expiry date and doses on hand.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Batch {
    pub expiry: NaiveDate,
    pub batch: String,
    pub doses: u64,
}

/// What a product at a site has and is booked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteStock {
    pub item_name: Option<String>,
    /// In date on the day, in order of expiry.
    pub batches: Vec<Batch>,
    /// Doses booked on each day from the day.
    pub booked: Vec<u64>,
}

/// A batch's fate under the bookings: doses used before its expiry, and
/// at risk, or `None` for a batch expiring after the booked days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutlook {
    pub used: Option<u64>,
    pub at_risk: Option<u64>,
}

/// Stock against bookings for a product at a site.
#[derive(Debug, Clone, PartialEq)]
pub struct Cover {
    pub usable: u64,
    pub booked: u64,
    pub days_of_cover: Option<u64>,
    pub at_risk: u64,
    pub unmet: u64,
    pub batches: Vec<BatchOutlook>,
}

impl SiteStock {
    /// The figures of the module's documentation.
    ///
    /// A batch's use is found from cumulative bookings: under first expiry,
    /// first out, the batches expiring by a batch's expiry date together
    /// give every booking up to that date they can, so what they have
    /// given by then is the lesser of those bookings and their doses less
    /// what the earlier ones left to expire.
    pub fn cover(&self, day0: NaiveDate) -> Cover {
        let horizon = self.booked.len() as i64;
        // Bookings up to the end of each booked day.
        let cumulative: Vec<u64> = self
            .booked
            .iter()
            .scan(0, |sum, b| {
                *sum += b;
                Some(*sum)
            })
            .collect();
        let booked = cumulative.last().copied().unwrap_or(0);
        let mut used_by = 0u64;
        let mut outlooks = Vec::with_capacity(self.batches.len());
        for b in &self.batches {
            let last_day = (b.expiry - day0).num_days();
            if last_day >= horizon {
                outlooks.push(BatchOutlook {
                    used: None,
                    at_risk: None,
                });
                continue;
            }
            let demand = usize::try_from(last_day)
                .ok()
                .and_then(|d| cumulative.get(d))
                .copied()
                .unwrap_or(0);
            let now = (used_by + b.doses).min(demand.max(used_by));
            let used = now - used_by;
            used_by = now;
            outlooks.push(BatchOutlook {
                used: Some(used),
                at_risk: Some(b.doses - used),
            });
        }
        let at_risk = outlooks.iter().filter_map(|o| o.at_risk).sum();
        let (days_of_cover, unmet, left) = self.walk(day0);
        let days_of_cover = match days_of_cover {
            Some(d) => Some(d),
            None if booked > 0 => Some(horizon as u64 + left * horizon as u64 / booked),
            None => None,
        };
        Cover {
            usable: self.batches.iter().map(|b| b.doses).sum(),
            booked,
            days_of_cover,
            at_risk,
            unmet,
            batches: outlooks,
        }
    }

    /// The first booked day not met in full, the bookings not met, and the
    /// doses left after the booked days in batches still in date then.
    fn walk(&self, day0: NaiveDate) -> (Option<u64>, u64, u64) {
        let mut left: Vec<(NaiveDate, u64)> =
            self.batches.iter().map(|b| (b.expiry, b.doses)).collect();
        let mut first_short = None;
        let mut unmet = 0;
        let mut next = 0;
        for (d, &want) in self.booked.iter().enumerate() {
            let today = day0 + Duration::days(d as i64);
            while next < left.len() && left[next].0 < today {
                next += 1;
            }
            let mut need = want;
            let mut i = next;
            while need > 0 && i < left.len() {
                let take = need.min(left[i].1);
                left[i].1 -= take;
                need -= take;
                if left[i].1 == 0 && i == next {
                    next += 1;
                }
                i += 1;
            }
            if need > 0 {
                first_short.get_or_insert(d as u64);
                unmet += need;
            }
        }
        let end = day0 + Duration::days(self.booked.len() as i64);
        let remaining = left.iter().filter(|b| b.0 >= end).map(|b| b.1).sum();
        (first_short, unmet, remaining)
    }
}

/// The product.
#[derive(Default)]
pub struct VaccineStock;

fn as_at(params: &Params) -> NaiveDate {
    params.date("as_at").unwrap_or_else(|| Utc::now().date_naive())
}

fn days(params: &Params) -> Result<i64, ProductError> {
    let days = params.integer("days").unwrap_or(DEFAULT_DAYS);
    if !(1..=92).contains(&days) {
        return Err(ProductError::Param {
            name: "days".into(),
            message: format!("{days} days: give 1 to 92"),
        });
    }
    Ok(days)
}

/// `'text'`, quoted for SQL.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `AND <column> = '<site>'` where a site is asked for.
fn site_filter(params: &Params, column: &str) -> String {
    params
        .text("site")
        .map(|s| format!(" AND {column} = {}", quote(s.trim())))
        .unwrap_or_default()
}

/// A site and product, as a row names them.
fn line_of(r: &Value, site: &str) -> (String, String) {
    (
        text(r, site).unwrap_or_default(),
        text(r, "item_code").unwrap_or_default(),
    )
}

/// A count a row gives; none, or below none, is 0.
fn doses(r: &Value, column: &str) -> u64 {
    number(r, column).map_or(0, |n| n.max(0) as u64)
}

/// Each site and product's stock on `day0` and bookings for `days` days.
async fn stock_and_bookings(
    session: &GovernedSession,
    params: &Params,
    day0: NaiveDate,
    days: i64,
) -> Result<Lines<SiteStock>, ProductError> {
    let day = quote(&day0.to_string());
    // A count belongs to its day in England: one taken just after
    // midnight in the summer is still the day before in UTC.
    let day_over = crate::platform::ParamValue::Timestamp(
        crate::query_rows::end_of_day_in_england(day0),
    )
    .sql_literal();
    let end = quote(&(day0 + Duration::days(days)).to_string());
    let stock = rows(
        session,
        &format!(
            "SELECT s.site_id, s.item_code, max(s.item_name) AS item_name, s.batch_number, \
               s.expiry_date, sum(s.quantity) AS doses \
             FROM stock_level s \
             JOIN (SELECT location_id, item_code, max(as_of_timestamp) AS counted FROM stock_level \
                   WHERE category = 'vaccine' AND as_of_timestamp < {day_over} \
                   GROUP BY location_id, item_code) latest \
               ON latest.location_id = s.location_id AND latest.item_code = s.item_code \
              AND latest.counted = s.as_of_timestamp \
             WHERE s.category = 'vaccine' AND s.expiry_date >= DATE {day} AND s.quantity > 0{site} \
             GROUP BY s.site_id, s.item_code, s.batch_number, s.expiry_date",
            site = site_filter(params, "s.site_id"),
        ),
    )
    .await?;
    let booked = rows(
        session,
        &format!(
            "SELECT healthcare_provider_ods_code AS site_id, code AS item_code, \
               CAST(start_date_time AS DATE) AS day, count(*) AS booked \
             FROM appointment \
             WHERE category = 'vaccination' AND booking_status = 'booked' \
               AND CAST(start_date_time AS DATE) >= DATE {day} AND CAST(start_date_time AS DATE) < DATE {end}{site} \
             GROUP BY healthcare_provider_ods_code, code, CAST(start_date_time AS DATE)",
            site = site_filter(params, "healthcare_provider_ods_code"),
        ),
    )
    .await?;
    let mut out: Lines<SiteStock> = BTreeMap::new();
    let blank = || SiteStock {
        booked: vec![0; days as usize],
        ..SiteStock::default()
    };
    for r in &stock {
        let Some(expiry) = date(r, "expiry_date") else {
            continue;
        };
        let line = out.entry(line_of(r, "site_id")).or_insert_with(blank);
        if line.item_name.is_none() {
            line.item_name = text(r, "item_name");
        }
        line.batches.push(Batch {
            expiry,
            batch: text(r, "batch_number").unwrap_or_default(),
            doses: doses(r, "doses"),
        });
    }
    for r in &booked {
        let Some(day) = date(r, "day") else {
            continue;
        };
        let line = out.entry(line_of(r, "site_id")).or_insert_with(blank);
        let at = (day - day0).num_days();
        if let Some(slot) = usize::try_from(at).ok().and_then(|i| line.booked.get_mut(i)) {
            *slot += doses(r, "booked");
        }
    }
    for line in out.values_mut() {
        line.batches.sort();
    }
    Ok(out)
}

fn cover_columns() -> Vec<OutputColumn> {
    let stock = |c: &str| Source::column("stock_level", c);
    vec![
        column("site", "Site", stock("site_id")),
        column("item_code", "Product (dm+d)", stock("item_code")),
        column("item_name", "Product", stock("item_name")),
        column("on_hand", "Doses on hand in date", Source::derived(&[("stock_level", "quantity"), ("stock_level", "expiry_date")])),
        column("booked", "Booked", Source::count("appointment")),
        column("booked_per_day", "Booked a day", Source::derived(&[("appointment", "start_date_time")])),
        column("days_of_cover", "Days of cover", Source::derived(&[("stock_level", "quantity"), ("appointment", "start_date_time")])),
        column("unmet", "Bookings not met", Source::derived(&[("stock_level", "quantity"), ("appointment", "start_date_time")])),
        column("at_risk", "Doses at risk of expiry", Source::derived(&[("stock_level", "quantity"), ("stock_level", "expiry_date")])),
        column("earliest_expiry", "Earliest expiry", stock("expiry_date")),
    ]
}

fn batch_columns() -> Vec<OutputColumn> {
    let stock = |c: &str| Source::column("stock_level", c);
    vec![
        column("site", "Site", stock("site_id")),
        column("item_code", "Product (dm+d)", stock("item_code")),
        column("batch", "Batch", stock("batch_number")),
        column("expiry", "Expiry", stock("expiry_date")),
        column("doses", "Doses on hand", stock("quantity")),
        column("used_before_expiry", "Booked before expiry", Source::derived(&[("appointment", "start_date_time")])),
        column("at_risk", "At risk of expiry", Source::derived(&[("stock_level", "quantity"), ("appointment", "start_date_time")])),
    ]
}

fn wastage_columns() -> Vec<OutputColumn> {
    let movement = |c: &str| Source::column("stock_movement", c);
    vec![
        column("site", "Site", movement("site_id")),
        column("item_code", "Product (dm+d)", movement("item_code")),
        column("supplied", "Doses supplied", movement("quantity")),
        column("administered", "Doses given", Source::count("vaccination")),
        column("supplied_less_given", "Supplied less given", Source::derived(&[("stock_movement", "quantity"), ("vaccination", "status")])),
        column("wasted", "Wasted (recorded)", movement("quantity")),
        column("wasted_percent", "Wasted, % of supplied", Source::derived(&[("stock_movement", "quantity")])),
        column("reasons", "Reasons recorded", movement("reason")),
    ]
}

fn reason_columns() -> Vec<OutputColumn> {
    let movement = |c: &str| Source::column("stock_movement", c);
    vec![
        column("reason", "Reason", movement("reason")),
        column("site", "Site", movement("site_id")),
        column("item_code", "Product (dm+d)", movement("item_code")),
        column("doses", "Doses wasted", movement("quantity")),
    ]
}

/// Doses of a product at a site over a period.
#[derive(Debug, Default)]
struct Moved {
    supplied: u64,
    given: u64,
    /// By the reason recorded.
    wasted: BTreeMap<String, u64>,
}

/// Received, given and wasted at each site and product between `from`
/// and `to` (inclusive).
async fn wastage(
    session: &GovernedSession,
    params: &Params,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Lines<Moved>, ProductError> {
    let (from_q, to_q) = (quote(&from.to_string()), quote(&to.to_string()));
    let moved = rows(
        session,
        &format!(
            "SELECT site_id, item_code, movement_type, coalesce(reason, 'not recorded') AS reason, \
               sum(quantity) AS doses \
             FROM stock_movement \
             WHERE category = 'vaccine' AND movement_type IN ('receipt', 'wastage') \
               AND movement_date >= DATE {from_q} AND movement_date <= DATE {to_q}{site} \
             GROUP BY site_id, item_code, movement_type, coalesce(reason, 'not recorded')",
            site = site_filter(params, "site_id"),
        ),
    )
    .await?;
    let given = rows(
        session,
        &format!(
            "SELECT site_ods_code AS site_id, vaccine_code AS item_code, count(*) AS given \
             FROM vaccination \
             WHERE status = 'completed' AND site_ods_code IS NOT NULL \
               AND CAST(occurrence_timestamp AS DATE) >= DATE {from_q} \
               AND CAST(occurrence_timestamp AS DATE) <= DATE {to_q}{site} \
             GROUP BY site_ods_code, vaccine_code",
            site = site_filter(params, "site_ods_code"),
        ),
    )
    .await?;
    let mut out: Lines<Moved> = BTreeMap::new();
    for r in &moved {
        let line = out.entry(line_of(r, "site_id")).or_default();
        if text(r, "movement_type").as_deref() == Some("receipt") {
            line.supplied += doses(r, "doses");
        } else {
            *line
                .wasted
                .entry(text(r, "reason").unwrap_or_default())
                .or_insert(0) += doses(r, "doses");
        }
    }
    for r in &given {
        out.entry(line_of(r, "site_id")).or_default().given += doses(r, "given");
    }
    Ok(out)
}

fn view_spec(name: &str, title: &str, description: &str, params: Vec<ParamSpec>, chart: Option<Chart>) -> ViewSpec {
    ViewSpec {
        name: name.into(),
        title: title.into(),
        description: description.into(),
        params,
        input: Input::Tables,
        chart,
        as_of: None,
        needs: vec![],
    }
}


#[async_trait::async_trait]
impl Product for VaccineStock {
    fn manifest(&self) -> Manifest {
        let day = || ParamSpec::optional("as_at", ParamKind::Date, "The day stock is counted on and bookings run from (default today)");
        let days = || ParamSpec::optional("days", ParamKind::Integer, "Days of bookings to look ahead (default 14)");
        let site = || ParamSpec::optional("site", ParamKind::Text, "Only this site (ODS code)");
        Manifest {
            id: ID.into(),
            title: "Vaccine stock against bookings".into(),
            version: "1.0.0".into(),
            priority: Priority::Vaccination,
            description: "Each site's vaccine doses on hand by dm+d product and batch expiry against the appointments booked for the coming days: days of cover, doses at risk of expiring before use, and wastage (supplied less given, and what was recorded wasted, by reason)".into(),
            publisher: None,
            purposes: vec![Purpose::Operations],
            reads: vec![
                Reads::new("stock_level", &["site_id", "item_code", "item_name", "batch_number", "expiry_date", "quantity", "location_id", "as_of_timestamp", "category"]),
                Reads::new("appointment", &["healthcare_provider_ods_code", "code", "start_date_time", "booking_status", "category"]),
                Reads::new("stock_movement", &["site_id", "item_code", "movement_type", "reason", "quantity", "movement_date", "category"]),
                Reads::new("vaccination", &["site_ods_code", "vaccine_code", "status", "occurrence_timestamp"]),
            ],
            views: vec![
                view_spec(
                    "cover",
                    "Stock against bookings",
                    "Each site and product: doses on hand in date, appointments booked in the coming days, days of cover (first expiry, first out) and doses at risk of expiring before use; shortest cover first",
                    vec![day(), days(), site()],
                    Some(Chart::bars("site", "days_of_cover")),
                ),
                view_spec(
                    "batches",
                    "Batches and expiry",
                    "Each batch on hand in date: its expiry, the doses the bookings before it will use, and the doses at risk (for a batch expiring within the booked days)",
                    vec![day(), days(), site()],
                    Some(Chart::bars("batch", "used_before_expiry").stacked(&["at_risk"])),
                ),
                view_spec(
                    "wastage",
                    "Wastage",
                    "Each site and product over a period (default the 28 days before as_at): doses supplied, doses given, supplied less given, and doses recorded wasted with their reasons",
                    vec![day(), ParamSpec::optional("from", ParamKind::Date, "The first day of the period (default 28 days before as_at)"), site()],
                    Some(Chart::bars("site", "supplied").stacked(&["administered", "wasted"])),
                ),
                view_spec(
                    "wastage-by-reason",
                    "Wastage by reason",
                    "Doses recorded wasted over the period by the reason recorded, site and product",
                    vec![day(), ParamSpec::optional("from", ParamKind::Date, "The first day of the period (default 28 days before as_at)"), site()],
                    Some(Chart::bars("reason", "doses")),
                ),
            ],
            actions: Vec::new(),
            offers: Offers::default(),
        }
    }

    async fn view(&self, view: &str, session: &GovernedSession, params: &Params) -> Result<Answer, ProductError> {
        let day0 = as_at(params);
        Ok(match view {
            "cover" => {
                let days = days(params)?;
                cover_answer(&stock_and_bookings(session, params, day0, days).await?, day0, days)
            }
            "batches" => {
                let days = days(params)?;
                batches_answer(&stock_and_bookings(session, params, day0, days).await?, day0)
            }
            "wastage" => wastage_answer(&wastage(session, params, period_start(params, day0)?, day0).await?),
            "wastage-by-reason" => reasons_answer(&wastage(session, params, period_start(params, day0)?, day0).await?),
            other => return Err(self.no_view(other)),
        })
    }
}

type Lines<T> = BTreeMap<(String, String), T>;

/// Each site and product's cover, the shortest first and a line with
/// nothing booked last.
fn cover_answer(lines: &Lines<SiteStock>, day0: NaiveDate, days: i64) -> Answer {
    let mut rows: Vec<Vec<Value>> = lines
        .iter()
        .map(|((site, item), line)| {
            let c = line.cover(day0);
            vec![
                json!(site),
                json!(item),
                json!(line.item_name),
                json!(c.usable),
                json!(c.booked),
                json!(((c.booked as f64 / days as f64) * 10.0).round() / 10.0),
                json!(c.days_of_cover),
                json!(c.unmet),
                json!(c.at_risk),
                json!(line.batches.first().map(|b| b.expiry.to_string())),
            ]
        })
        .collect();
    rows.sort_by_key(|r| (r[6].as_u64().unwrap_or(u64::MAX), r[0].as_str().map(str::to_string)));
    Answer::without_patients(cover_columns(), rows)
}

/// Each batch's outlook, the earliest expiry first.
fn batches_answer(lines: &Lines<SiteStock>, day0: NaiveDate) -> Answer {
    let mut rows = Vec::new();
    for ((site, item), line) in lines {
        let c = line.cover(day0);
        for (b, o) in line.batches.iter().zip(&c.batches) {
            rows.push(vec![
                json!(site),
                json!(item),
                json!(b.batch),
                json!(b.expiry.to_string()),
                json!(b.doses),
                json!(o.used),
                json!(o.at_risk),
            ]);
        }
    }
    rows.sort_by(|a, b| a[3].as_str().cmp(&b[3].as_str()).then(a[0].as_str().cmp(&b[0].as_str())));
    Answer::without_patients(batch_columns(), rows)
}

/// The first day of a wastage period: `from`, or 28 days before `day0`.
fn period_start(params: &Params, day0: NaiveDate) -> Result<NaiveDate, ProductError> {
    let from = params.date("from").unwrap_or(day0 - Duration::days(28));
    if from > day0 {
        return Err(ProductError::Param {
            name: "from".into(),
            message: format!("{from} is after as_at {day0}"),
        });
    }
    Ok(from)
}

fn wastage_answer(lines: &Lines<Moved>) -> Answer {
    let rows = lines
        .iter()
        .map(|((site, item), Moved { supplied, given, wasted })| {
            let total: u64 = wasted.values().sum();
            let reasons: Vec<String> = wasted.iter().map(|(r, d)| format!("{r}: {d}")).collect();
            vec![
                json!(site),
                json!(item),
                json!(supplied),
                json!(given),
                json!(*supplied as i64 - *given as i64),
                json!(total),
                json!((*supplied > 0).then(|| (total as f64 * 1000.0 / *supplied as f64).round() / 10.0)),
                json!(reasons.join("; ")),
            ]
        })
        .collect();
    Answer::without_patients(wastage_columns(), rows)
}

/// Doses wasted by reason, site and product, the most first.
fn reasons_answer(lines: &Lines<Moved>) -> Answer {
    let mut rows: Vec<Vec<Value>> = lines
        .iter()
        .flat_map(|((site, item), m)| {
            m.wasted
                .iter()
                .map(move |(reason, doses)| vec![json!(reason), json!(site), json!(item), json!(doses)])
        })
        .collect();
    rows.sort_by(|a, b| b[3].as_u64().cmp(&a[3].as_u64()).then(a[0].as_str().cmp(&b[0].as_str())));
    Answer::without_patients(reason_columns(), rows)
}

