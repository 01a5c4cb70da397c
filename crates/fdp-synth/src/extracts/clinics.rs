//! Vaccination clinics at the trust's sites, around the pharmacy's stock
//! count: the bookings for the days after it, and in the four weeks before
//! it the doses given and the stock received and wasted.
//!
//! Each site and product the pharmacy holds gets a daily rate of bookings.
//! A known truth is planted and returned by [`truth`]:
//! - one site and product booked well beyond its stock, so its cover is a
//!   few days;
//! - one site booked for a product it holds none of, so it has no cover;
//! - the batch near its expiry date (see `stock::vaccines`) at risk of
//!   expiring before the bookings use it;
//! - wastage recorded with reasons, a known number of doses for each.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use rand::Rng;

use super::sheet::{Encoding, Sheet};
use super::stock::{vaccine_products, CountedBatch};
use super::{dmy, impossible_day, stamp, ExtractFile, ExtractSpec, FaultKind};
use crate::people::{NhsNumberAllocator, NhsNumberRange};
use crate::rng::SynthRng;

/// Days of history before the stock count: doses given, stock received
/// and wasted.
pub const HISTORY_DAYS: i64 = 28;

/// Why doses were wasted, as the pharmacy records it, and how often each
/// is chosen.
const REASONS: &[(&str, u32)] = &[
    ("Expired", 2),
    ("Cold chain failure", 1),
    ("Vial broken or damaged", 2),
    ("Vial not fully used", 4),
    ("Drawn up, not used", 2),
];

/// What the files plant, for a test to check a product against.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClinicTruth {
    /// The stock count's day; bookings run from it.
    pub as_at: NaiveDate,
    /// Days of bookings after the count.
    pub horizon_days: u32,
    /// Each site and product with stock or bookings.
    pub cover: Vec<CoverTruth>,
    /// Each site and product with stock received, given or wasted in the
    /// history.
    pub wastage: Vec<WastageTruth>,
}

/// Stock against bookings for one site and product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverTruth {
    /// The site's ODS code.
    pub site: String,
    /// The dm+d product.
    pub item_code: String,
    /// Doses on hand in date on the count's day.
    pub usable: u32,
    /// Booked appointments (not cancelled) in the horizon.
    pub booked: u32,
    /// Whole days from the count whose bookings the stock meets, first
    /// expiry first out and no dose used after its expiry date; past the
    /// horizon, at the horizon's mean rate. `None` with no bookings.
    pub days_of_cover: Option<u32>,
    /// Doses expiring within the horizon that its bookings will not use.
    pub at_risk: u32,
    /// Bookings in the horizon the stock cannot meet.
    pub unmet: u32,
}

/// What was received, given and wasted at one site of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WastageTruth {
    /// The site's ODS code.
    pub site: String,
    /// The dm+d product.
    pub item_code: String,
    /// Doses delivered.
    pub supplied: u32,
    /// Doses given.
    pub administered: u32,
    /// Doses wasted by recorded reason.
    pub wasted: BTreeMap<String, u32>,
}

/// The three files and the truth they plant.
pub(crate) struct Clinics {
    pub files: Vec<ExtractFile>,
    pub truth: ClinicTruth,
}

/// A site and product: its batches (all stores), its daily bookings in the
/// horizon, its daily rate of doses given in the history.
struct Line {
    site: String,
    item_code: &'static str,
    per_vial: u32,
    batches: Vec<(String, String, NaiveDate, u32)>,
    booked: Vec<u32>,
    rate: u32,
}

impl Line {
    /// A site and product with nothing counted or booked yet.
    fn new(site: &str, item_code: &'static str, per_vial: u32) -> Line {
        Line {
            site: site.to_string(),
            item_code,
            per_vial,
            batches: Vec::new(),
            booked: Vec::new(),
            rate: 0,
        }
    }
}

pub(crate) fn generate(
    batches: &[CountedBatch],
    sites: &[String],
    spec: &ExtractSpec,
    rng: &mut SynthRng,
) -> Clinics {
    let horizon = spec.days;
    let mut lines: BTreeMap<(String, &'static str), Line> = BTreeMap::new();
    for b in batches {
        let line = lines
            .entry((b.site.clone(), b.item_code))
            .or_insert_with(|| Line::new(&b.site, b.item_code, b.per_vial));
        line.batches
            .push((b.store.clone(), b.batch.clone(), b.expiry, b.doses));
    }
    // A site booked for a product it holds none of.
    let missing = sites.iter().find_map(|site| {
        vaccine_products()
            .find(|(code, _)| !lines.contains_key(&(site.clone(), *code)))
            .map(|(code, per_vial)| (site.clone(), code, per_vial))
    });
    if let Some((site, code, per_vial)) = missing {
        lines.insert((site.clone(), code), Line::new(&site, code, per_vial));
    }
    let largest = lines
        .iter()
        .filter(|(_, l)| !l.batches.is_empty())
        .max_by_key(|(_, l)| l.batches.iter().map(|b| b.3).sum::<u32>())
        .map(|(k, _)| k.clone());
    for (key, line) in lines.iter_mut() {
        let on_hand: u32 = line.batches.iter().map(|b| b.3).sum();
        // Doses a day: a few weeks' stock at most sites, a few days' at the
        // one booked beyond its stock, a steady clinic where there is none.
        let rate = if on_hand == 0 {
            8
        } else if Some(key) == largest.as_ref() {
            on_hand / 4 + 1
        } else {
            (on_hand / rng.random_range(20..60)).max(1)
        };
        line.rate = rate;
        line.booked = (0..horizon)
            .map(|_| rate.saturating_add_signed(rng.random_range(-2..=2)))
            .collect();
    }

    let mut truth = ClinicTruth {
        as_at: spec.start,
        horizon_days: horizon,
        cover: lines.values().map(|l| cover(l, spec.start)).collect(),
        wastage: Vec::new(),
    };
    let mut nhs = NhsNumberAllocator::new(rng, NhsNumberRange::Reserved999);
    let bookings = bookings(&lines, spec, &mut nhs, rng);
    let (given, administered) = given(&lines, spec, &mut nhs, rng);
    let (movements, supplied, wasted) = movements(&lines, &administered, spec, rng);
    for (key, line) in &lines {
        let supplied = supplied.get(key).copied().unwrap_or(0);
        let administered = administered.get(key).copied().unwrap_or(0);
        let wasted = wasted.get(key).cloned().unwrap_or_default();
        if supplied + administered > 0 || !wasted.is_empty() {
            truth.wastage.push(WastageTruth {
                site: line.site.clone(),
                item_code: line.item_code.to_string(),
                supplied,
                administered,
                wasted,
            });
        }
    }
    Clinics {
        files: vec![bookings, given, movements],
        truth,
    }
}

/// The planted figures of one site and product, by a day-by-day walk: each
/// morning the batches past their expiry go, then the day's bookings take
/// doses from the batch expiring first.
fn cover(line: &Line, day0: NaiveDate) -> CoverTruth {
    let horizon = line.booked.len() as i64;
    let mut left: Vec<(NaiveDate, u32)> = line
        .batches
        .iter()
        .filter(|b| b.2 >= day0)
        .map(|b| (b.2, b.3))
        .collect();
    left.sort();
    let usable = left.iter().map(|b| b.1).sum();
    let (mut at_risk, mut unmet) = (0, 0);
    let mut days_of_cover = None;
    for (d, &want) in line.booked.iter().enumerate() {
        let today = day0 + Duration::days(d as i64);
        left.retain(|&(expiry, doses)| {
            if expiry < today {
                at_risk += doses;
            }
            expiry >= today
        });
        let mut need = want;
        for b in left.iter_mut() {
            let take = need.min(b.1);
            b.1 -= take;
            need -= take;
        }
        left.retain(|b| b.1 > 0);
        if need > 0 && days_of_cover.is_none() {
            days_of_cover = Some(d as u32);
        }
        unmet += need;
    }
    let end = day0 + Duration::days(horizon);
    at_risk += left.iter().filter(|b| b.0 < end).map(|b| b.1).sum::<u32>();
    let booked: u32 = line.booked.iter().sum();
    if days_of_cover.is_none() && booked > 0 {
        let remaining: u64 = left.iter().filter(|b| b.0 >= end).map(|b| b.1 as u64).sum();
        days_of_cover = Some((horizon as u64 + remaining * horizon as u64 / booked as u64) as u32);
    }
    CoverTruth {
        site: line.site.clone(),
        item_code: line.item_code.to_string(),
        usable,
        booked,
        days_of_cover,
        at_risk,
        unmet,
    }
}

/// The booking system's export: UTF-8, one line per appointment, booked
/// or cancelled, for the days from the count.
fn bookings(
    lines: &BTreeMap<(String, &'static str), Line>,
    spec: &ExtractSpec,
    nhs: &mut NhsNumberAllocator,
    rng: &mut SynthRng,
) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    sheet.header(&[
        "Booking Reference",
        "NHS Number",
        "Site Code",
        "Vaccine Product",
        "Appointment Date",
        "Appointment Time",
        "Status",
        "Booked On",
    ]);
    let mut n = 0;
    let mut last = Vec::new();
    for line in lines.values() {
        for (d, &booked) in line.booked.iter().enumerate() {
            let day = spec.start + Duration::days(d as i64);
            // Cancelled appointments stay in the export beside the booked.
            let cancelled = rng.random_range(0..=booked / 5 + 1);
            for k in 0..booked + cancelled {
                n += 1;
                let minutes = 8 * 60 + 30 + (k * 5) % (9 * 60);
                let fields = vec![
                    format!("NBS{:07}", n),
                    nhs.allocate(),
                    line.site.clone(),
                    line.item_code.to_string(),
                    dmy(day),
                    format!("{:02}:{:02}", minutes / 60, minutes % 60),
                    if k < booked { "Booked" } else { "Cancelled" }.to_string(),
                    format!(
                        "{} {:02}:{:02}",
                        dmy(day - Duration::days(rng.random_range(1..21))),
                        rng.random_range(7..20),
                        rng.random_range(0..60)
                    ),
                ];
                sheet.record(&fields);
                last = fields;
            }
        }
    }
    let mut f = last.clone();
    f[0] = format!("NBS{:07}", n + 1);
    f.truncate(5);
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::FieldCount, "Status missing");
    let mut f = last.clone();
    f[0] = format!("NBS{:07}", n + 2);
    let (d, m, y) = impossible_day(spec.start);
    f[4] = format!("{d:02}/{m:02}/{y}");
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::ImpossibleDate,
        format!("Appointment Date {}", f[4]),
    );
    let mut f = last;
    f[0] = format!("NBS{:07}", n + 3);
    f[6] = "Provisional".into();
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::UnknownCode, "Status Provisional");
    sheet.finish(format!("vaccination_bookings_{}.csv", stamp(spec.start)))
}

/// The point-of-care system's record of each dose given in the history, by
/// batch; a few not given, with the reason. And the doses given by site
/// and product.
fn given(
    lines: &BTreeMap<(String, &'static str), Line>,
    spec: &ExtractSpec,
    nhs: &mut NhsNumberAllocator,
    rng: &mut SynthRng,
) -> (ExtractFile, BTreeMap<(String, &'static str), u32>) {
    let mut sheet = Sheet::new(',', true, Encoding::Utf8);
    sheet.header(&[
        "Event ID",
        "NHS Number",
        "Site Code",
        "Vaccine Product",
        "Batch",
        "Date Given",
        "Time Given",
        "Outcome",
        "Reason Not Given",
    ]);
    let mut administered = BTreeMap::new();
    let mut n = 0;
    let mut last = Vec::new();
    for (key, line) in lines {
        let Some(batch) = line.batches.first() else {
            continue;
        };
        for back in (1..=HISTORY_DAYS).rev() {
            let day = spec.start - Duration::days(back);
            let doses = line.rate.saturating_add_signed(rng.random_range(-2..=2));
            for k in 0..doses + u32::from(rng.random_bool(0.1)) {
                n += 1;
                let given = k < doses;
                let fields = vec![
                    format!("POC{n:08}"),
                    nhs.allocate(),
                    line.site.clone(),
                    line.item_code.to_string(),
                    batch.1.clone(),
                    day.format("%Y-%m-%d").to_string(),
                    format!("{:02}:{:02}", 9 + k % 8, (k * 7) % 60),
                    if given { "Given" } else { "Not given" }.to_string(),
                    if given { "" } else { "Patient unwell" }.to_string(),
                ];
                sheet.record(&fields);
                last = fields;
            }
            *administered.entry(key.clone()).or_insert(0) += doses;
        }
    }
    let mut f = last.clone();
    f[0] = format!("POC{:08}", n + 1);
    f.push("extra".into());
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::FieldCount, "a tenth field");
    let mut f = last.clone();
    f[0] = format!("POC{:08}", n + 2);
    let (d, m, y) = impossible_day(spec.start);
    f[5] = format!("{y}-{m:02}-{d:02}");
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::ImpossibleDate,
        format!("Date Given {}", f[5]),
    );
    let mut f = last;
    f[0] = format!("POC{:08}", n + 3);
    f[7] = "Deferred".into();
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::UnknownCode, "Outcome Deferred");
    (
        sheet.finish(format!("vaccinations_given_{}.csv", stamp(spec.start))),
        administered,
    )
}

type Supplied = BTreeMap<(String, &'static str), u32>;
type Wasted = BTreeMap<(String, &'static str), BTreeMap<String, u32>>;

/// The pharmacy's vaccine movements in the history: a delivery each week
/// of whole vials, enough for the week's doses, and wastage with its
/// reason. Semicolon-separated, as the pharmacy system exports.
fn movements(
    lines: &BTreeMap<(String, &'static str), Line>,
    administered: &BTreeMap<(String, &'static str), u32>,
    spec: &ExtractSpec,
    rng: &mut SynthRng,
) -> (ExtractFile, Supplied, Wasted) {
    let mut sheet = Sheet::new(';', false, Encoding::Utf8);
    sheet.header(&[
        "Movement ID",
        "Date",
        "Type",
        "Site Code",
        "Store",
        "Vaccine Product",
        "Batch",
        "Doses",
        "Reason",
    ]);
    let (mut supplied, mut wasted) = (Supplied::new(), Wasted::new());
    let mut n = 0;
    let mut last = Vec::new();
    let total_weight: u32 = REASONS.iter().map(|r| r.1).sum();
    for (key, line) in lines {
        let Some(batch) = line.batches.first() else {
            continue;
        };
        let given = administered.get(key).copied().unwrap_or(0);
        let weekly = (given / 4).div_ceil(line.per_vial) * line.per_vial + line.per_vial;
        for week in 0..4 {
            n += 1;
            let day = spec.start - Duration::days(HISTORY_DAYS - 7 * week);
            let fields = vec![
                format!("MV{n:07}"),
                day.format("%Y-%m-%d").to_string(),
                "RECEIPT".into(),
                line.site.clone(),
                batch.0.clone(),
                line.item_code.to_string(),
                batch.1.clone(),
                weekly.to_string(),
                String::new(),
            ];
            sheet.record(&fields);
            *supplied.entry(key.clone()).or_insert(0) += weekly;
        }
        for _ in 0..rng.random_range(1..6) {
            n += 1;
            let mut pick = rng.random_range(0..total_weight);
            let reason = REASONS
                .iter()
                .find(|r| {
                    if pick < r.1 {
                        true
                    } else {
                        pick -= r.1;
                        false
                    }
                })
                .map_or("Vial not fully used", |r| r.0);
            let doses = if reason == "Vial not fully used" {
                rng.random_range(1..line.per_vial.max(2))
            } else {
                line.per_vial * rng.random_range(1..4)
            };
            let day = spec.start - Duration::days(rng.random_range(1..=HISTORY_DAYS));
            let fields = vec![
                format!("MV{n:07}"),
                day.format("%Y-%m-%d").to_string(),
                "WASTAGE".into(),
                line.site.clone(),
                batch.0.clone(),
                line.item_code.to_string(),
                batch.1.clone(),
                doses.to_string(),
                reason.to_string(),
            ];
            sheet.record(&fields);
            *wasted
                .entry(key.clone())
                .or_default()
                .entry(reason.to_string())
                .or_insert(0) += doses;
            last = fields;
        }
    }
    let mut f = last.clone();
    f[0] = format!("MV{:07}", n + 1);
    f.truncate(7);
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::FieldCount, "Doses and Reason missing");
    let mut f = last.clone();
    f[0] = format!("MV{:07}", n + 2);
    let (d, m, y) = impossible_day(spec.start);
    f[1] = format!("{y}-{m:02}-{d:02}");
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::ImpossibleDate,
        format!("Date {}", f[1]),
    );
    let mut f = last;
    f[0] = format!("MV{:07}", n + 3);
    f[2] = "LOAN".into();
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::UnknownCode, "Type LOAN");
    (
        sheet.finish(format!("vaccine_movements_{}.csv", stamp(spec.start))),
        supplied,
        wasted,
    )
}
