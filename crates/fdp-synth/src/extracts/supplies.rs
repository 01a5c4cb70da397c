//! A year of ward supplies: the catalogue, every ward's top-ups, use,
//! returns, transfers, write-offs and monthly counts, and a batch report
//! on the last day, with what was planted in them kept as truth.
//!
//! Each ward keeps a set of catalogue items. Use of each is simulated day by
//! day: smooth items are used most days, a little more in winter, with the
//! day-to-day spread real ward use has; intermittent items (a catheter, a
//! sterile glove size) a few at a time every few weeks. Wards are topped up
//! weekly to their imprest level, delivered after the item's lead time,
//! which a supplier now and then misses by a week or two: then the ward
//! runs out, and what it could not issue is demand the issues never show.
//! Batches of items with a shelf life expire; what is left of one on its
//! expiry is written off. Wards lend each other stock. A count at the start
//! of a month now and then finds less than the books say.
//!
//! Planted for the supply-chain product to find:
//! - **an imbalance**: on one site, one ward's top-ups of a critical item
//!   stopped three weeks before the end, so on the last day it holds less
//!   than its lead time's use and will run out before an order could
//!   arrive; another ward on the same site received a duplicated delivery
//!   of the same item and holds far above its maximum;
//! - **near-expiry stock**: a short-dated delivery at one ward that it will
//!   not use before expiry;
//! - **count discrepancies**: counts lower than the books, by how much.

use chrono::{Datelike, Days, NaiveDate};
use rand::Rng;
use serde::Serialize;

use super::sheet::{Encoding, Sheet};
use super::{stamp, ExtractFile};
use crate::rng::{rng_for, SynthRng};
use crate::trust::Trust;

/// An item in the NHS Supply Chain catalogue as the trust buys it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupplyItem {
    /// NHS Supply Chain product code (shaped like one; not looked up).
    pub npc: &'static str,
    /// GTIN-13 of the unit of issue, with a valid check digit (made up
    /// under a UK GS1 prefix).
    pub gtin: &'static str,
    /// As the catalogue describes it.
    pub description: &'static str,
    /// The heat map's rows.
    pub category: &'static str,
    /// The unit of issue's code (`BX`, `EA`, `PR`, ...).
    pub unit_of_issue: &'static str,
    /// Units in the unit of issue.
    pub pack_size: u32,
    /// Price of the unit of issue, in pounds.
    pub unit_price: f64,
    /// Supplier's days from order to ward.
    pub lead_days: u32,
    /// Days from delivery to expiry, for items that expire.
    pub shelf_life_days: Option<u32>,
    /// Used a few at a time every few weeks rather than most days.
    pub intermittent: bool,
    /// A ward cannot safely run out of it.
    pub critical: bool,
    /// Items that stand in for each other share a group: the same thing
    /// from another maker, never another size.
    pub equivalence_group: &'static str,
}

const fn item(
    npc: &'static str,
    gtin: &'static str,
    description: &'static str,
    category: &'static str,
    unit_of_issue: &'static str,
    pack_size: u32,
    unit_price: f64,
) -> SupplyItem {
    SupplyItem {
        npc,
        gtin,
        description,
        category,
        unit_of_issue,
        pack_size,
        unit_price,
        lead_days: 3,
        shelf_life_days: None,
        intermittent: false,
        critical: false,
        equivalence_group: "",
    }
}

impl SupplyItem {
    const fn lead(mut self, days: u32) -> Self {
        self.lead_days = days;
        self
    }
    const fn expires(mut self, days: u32) -> Self {
        self.shelf_life_days = Some(days);
        self
    }
    const fn intermittent(mut self) -> Self {
        self.intermittent = true;
        self
    }
    const fn critical(mut self) -> Self {
        self.critical = true;
        self
    }
    const fn group(mut self, g: &'static str) -> Self {
        self.equivalence_group = g;
        self
    }
}

/// The catalogue the trust's wards and stores hold.
pub const CATALOGUE: &[SupplyItem] = &[
    item(
        "FTR201",
        "5012345002019",
        "Gloves examination nitrile powder-free small",
        "Gloves",
        "BX",
        100,
        3.10,
    )
    .lead(4)
    .critical()
    .group("gloves-exam-small"),
    item(
        "FTR202",
        "5012345002026",
        "Gloves examination nitrile powder-free medium",
        "Gloves",
        "BX",
        100,
        3.10,
    )
    .lead(4)
    .critical()
    .group("gloves-exam-medium"),
    item(
        "FTR203",
        "5012345002033",
        "Gloves examination nitrile powder-free large",
        "Gloves",
        "BX",
        100,
        3.10,
    )
    .lead(4)
    .critical()
    .group("gloves-exam-large"),
    item(
        "FWC112",
        "5012345001128",
        "Apron disposable polythene white on a roll",
        "Aprons and masks",
        "RL",
        200,
        4.20,
    )
    .lead(5),
    item(
        "FSA054",
        "5012345000541",
        "Syringe luer lock 10ml",
        "Syringes and needles",
        "BX",
        100,
        6.80,
    )
    .lead(5)
    .expires(1095)
    .group("syringe-10"),
    item(
        "FSA051",
        "5012345000510",
        "Syringe luer slip 5ml",
        "Syringes and needles",
        "BX",
        100,
        4.90,
    )
    .lead(5)
    .expires(1095),
    item(
        "FSW228",
        "5012345002286",
        "Needle hypodermic 21G x 38mm green",
        "Syringes and needles",
        "BX",
        100,
        2.40,
    )
    .lead(5)
    .expires(1095),
    item(
        "ELW190",
        "5012345001906",
        "Dressing foam adhesive 10cm x 10cm",
        "Dressings",
        "BX",
        10,
        9.75,
    )
    .lead(7)
    .expires(720)
    .group("foam-10"),
    item(
        "ELY105",
        "5012345001050",
        "Dressing film IV cannula 7cm x 8.5cm",
        "Dressings",
        "BX",
        100,
        18.50,
    )
    .lead(7)
    .expires(720),
    item(
        "FDF344",
        "5012345003443",
        "Wipes detergent and disinfectant chlorine",
        "Cleaning",
        "PK",
        200,
        5.20,
    )
    .lead(3)
    .expires(540),
    item(
        "FLH031",
        "5012345000312",
        "Sharps container 1 litre yellow lid",
        "Waste",
        "EA",
        1,
        1.35,
    )
    .lead(6)
    .intermittent(),
    item(
        "MRB602",
        "5012345006024",
        "Catheter Foley 2-way 14Ch 10ml balloon",
        "Continence and urology",
        "EA",
        1,
        2.10,
    )
    .lead(8)
    .expires(900)
    .intermittent()
    .critical(),
    item(
        "FWM510",
        "5012345005102",
        "Incontinence pad all-in-one medium",
        "Continence and urology",
        "PK",
        28,
        7.90,
    )
    .lead(6),
    item(
        "FTP116",
        "5012345001166",
        "Tape surgical microporous 2.5cm x 9.1m",
        "Dressings",
        "BX",
        12,
        4.40,
    )
    .lead(5),
    item(
        "FWF020",
        "5012345000206",
        "Face mask fluid-resistant type IIR",
        "Aprons and masks",
        "BX",
        50,
        3.30,
    )
    .lead(4)
    .critical(),
    item(
        "FSK411",
        "5012345004112",
        "Cannula IV 20G pink with injection port",
        "IV access",
        "BX",
        50,
        22.00,
    )
    .lead(7)
    .expires(1095)
    .critical(),
    item(
        "FSL150",
        "5012345001500",
        "Blood collection needle 21G",
        "Syringes and needles",
        "BX",
        100,
        8.00,
    )
    .lead(5)
    .expires(1095),
    item(
        "EAR089",
        "5012345000893",
        "Oxygen mask adult medium concentration with tubing",
        "Respiratory",
        "EA",
        1,
        0.62,
    )
    .lead(6)
    .intermittent()
    .critical(),
    item(
        "FPR230",
        "5012345002309",
        "Bedpan pulp disposable",
        "Continence and urology",
        "CS",
        200,
        26.00,
    )
    .lead(5),
    item(
        "FWP077",
        "5012345000770",
        "Gloves sterile surgical latex-free size 7",
        "Gloves",
        "PR",
        1,
        0.58,
    )
    .lead(5)
    .expires(1095)
    .intermittent(),
];

/// The ward top-up count's columns, as `supplies-ward-stock` reads them.
pub(crate) const WARD_STOCK_HEADER: &[&str] = &[
    "Count Date",
    "Site Code",
    "Location Code",
    "Location",
    "Cost Centre",
    "NPC",
    "Description",
    "UOI",
    "Pack Size",
    "Imprest Level",
    "Qty On Hand",
    "Unit Price (£)",
];

/// Which catalogue items a ward keeps: the same in every file, without
/// sharing a random stream between them.
pub(crate) fn ward_items(ward: usize) -> Vec<usize> {
    (0..CATALOGUE.len())
        .filter(|&i| matches!(i, 1 | 3 | 10) || !(ward * 7 + i * 3).is_multiple_of(5))
        .collect()
}

/// Every ward as the supplies files name it: site code, ward code, ward
/// name, cost centre.
pub(crate) fn wards(trust: &Trust) -> Vec<(&str, &str, &str, String)> {
    trust
        .wards()
        .enumerate()
        .map(|(i, (site, ward))| {
            (
                site.code.as_str(),
                ward.code.as_str(),
                ward.name.as_str(),
                (412_000 + i * 10).to_string(),
            )
        })
        .collect()
}

/// How the year is made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupplyYearSpec {
    /// The last day: the final count and the batch report are taken on it.
    pub end: NaiveDate,
    /// Days of history, the last ending on `end`.
    pub days: u32,
}

impl Default for SupplyYearSpec {
    fn default() -> Self {
        SupplyYearSpec {
            end: NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date"),
            days: 365,
        }
    }
}

/// The year's files and what was planted in them.
#[derive(Debug, Clone)]
pub struct SupplyYear {
    /// `supplies_catalogue_<end>.csv`, `ward_stock_<end>.csv` (counts at
    /// the start of each month and of the last day, before its movements), `supplies_transactions_<end>.csv` (every
    /// movement of the year) and `batch_stock_<end>.csv` (batches on hand
    /// with their expiry on the last day).
    pub files: Vec<ExtractFile>,
    /// What was planted in the files.
    pub truth: SupplyTruth,
}

/// What a product should find in the year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupplyTruth {
    /// The last day.
    pub end: NaiveDate,
    /// Every item at every ward.
    pub series: Vec<SeriesTruth>,
    /// The ward that will run short and the ward holding spare.
    pub imbalance: PlantedImbalance,
    /// The short-dated batch.
    pub near_expiry: PlantedExpiry,
    /// Counts that found less than the books.
    pub discrepancies: Vec<PlantedDiscrepancy>,
}

/// One item at one ward.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesTruth {
    /// The location as the mappings write it: `site:ward`.
    pub location: String,
    /// The site's ODS code.
    pub site: String,
    /// The item.
    pub npc: String,
    /// Used a few at a time every few weeks.
    pub intermittent: bool,
    /// Mean use a day the demand was drawn around.
    pub daily_mean: f64,
    /// On hand at the end of the last day.
    pub on_hand: i64,
    /// Days that ended with none on hand.
    pub days_out_of_stock: u32,
    /// What the ward wanted each calendar month, issued or not, oldest first.
    pub monthly_demand: Vec<u32>,
    /// What it issued each month (less returns).
    pub monthly_issued: Vec<i64>,
}

/// A ward that will run short of a critical item while another on its site
/// holds far more than it needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlantedImbalance {
    /// The critical item.
    pub npc: String,
    /// The ward whose top-ups stopped.
    pub short_location: String,
    /// The ward that received a duplicated delivery.
    pub spare_location: String,
    /// What the short ward holds at the end of the last day.
    pub short_on_hand: i64,
    /// What the spare ward holds then.
    pub spare_on_hand: i64,
    /// The day the short ward runs out at its mean use.
    pub runs_out: NaiveDate,
}

/// A short-dated batch its ward will not use before it expires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlantedExpiry {
    /// Where it is held (`site:ward`).
    pub location: String,
    /// The item.
    pub npc: String,
    /// The batch number.
    pub batch: String,
    /// The batch's expiry date.
    pub expires: NaiveDate,
    /// Left of it at the end of the last day.
    pub quantity: i64,
}

/// A count lower than the books.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlantedDiscrepancy {
    /// Where it was counted (`site:ward`).
    pub location: String,
    /// The item.
    pub npc: String,
    /// The day of the count (taken before that day's movements).
    pub date: NaiveDate,
    /// The count less the book balance (negative: stock went missing).
    pub difference: i64,
}

/// One line of the transactions file, before it is written.
#[derive(Debug, Clone)]
struct Move {
    date: NaiveDate,
    kind: &'static str,
    quantity: i64,
    reference: String,
}

/// A batch on a ward's shelf.
#[derive(Debug, Clone)]
struct OnShelf {
    batch: String,
    expires: Option<NaiveDate>,
    quantity: i64,
}

/// One item at one ward: how it is used and restocked.
#[derive(Debug, Clone)]
struct Series {
    ward: usize,
    item: usize,
    daily_mean: f64,
    /// Winter's extra use, as a share of the mean.
    seasonal: f64,
    /// Chance of a day with use, for intermittent items.
    chance: f64,
    /// The level weekly top-ups restore.
    imprest: i64,
    /// The weekday (0 = Monday) the ward's top-up is ordered.
    review_day: u32,
}

/// How a series is bent to plant something.
#[derive(Debug, Clone, Copy, Default)]
struct Plant {
    /// No top-up is ordered from this day.
    stop_orders_from: Option<NaiveDate>,
    /// A duplicated delivery of this many arrives on this day.
    extra_delivery: Option<(NaiveDate, i64)>,
    /// A short-dated delivery: day, quantity, days to expiry.
    short_dated: Option<(NaiveDate, i64, u32)>,
    /// The top-up arriving this day comes this many short.
    short_delivery: Option<(NaiveDate, i64)>,
}

/// What one series left behind.
#[derive(Debug, Clone)]
struct Run {
    moves: Vec<Move>,
    /// Counts: day, quantity on hand.
    counts: Vec<(NaiveDate, i64)>,
    /// Batches on hand at the end.
    shelf: Vec<OnShelf>,
    /// The last day that ended with none on hand.
    last_out: Option<NaiveDate>,
    /// Each day's top-ups delivered: day, quantity.
    delivered: Vec<(NaiveDate, i64)>,
    /// On hand at the end of each day.
    closing: Vec<(NaiveDate, i64)>,
    truth: SeriesTruth,
    discrepancies: Vec<PlantedDiscrepancy>,
}

/// Generate the year for `trust`. The same trust, seed and spec give
/// byte-identical files.
pub fn supply_year(trust: &Trust, seed: u64, spec: &SupplyYearSpec) -> SupplyYear {
    let first = spec.end - Days::new(u64::from(spec.days.max(28)) - 1);
    let wards = wards(trust);
    let mut setup = rng_for(seed, crate::rng::stream::SUPPLIES);
    let mut series = Vec::new();
    for (w, _) in wards.iter().enumerate() {
        let review_day = setup.random_range(0..5);
        for i in ward_items(w) {
            let it = &CATALOGUE[i];
            let daily_mean = if it.intermittent {
                setup.random_range(0.06..0.2)
            } else {
                setup.random_range(0.6..6.0)
            };
            series.push(Series {
                ward: w,
                item: i,
                daily_mean,
                seasonal: setup.random_range(0.03..0.1),
                chance: setup.random_range(1.0 / 40.0..1.0 / 15.0),
                // A fortnight's use and the lead time's, as ward imprest
                // levels are set.
                imprest: ((daily_mean * f64::from(14 + it.lead_days)).ceil() as i64 + 2).max(4),
                review_day,
            });
        }
    }
    let (short_idx, spare_idx) = imbalance_pair(&series, &wards);
    // The near-expiry batch: an item that expires, at the ward using it
    // most slowly, away from the imbalance.
    let expiry_idx = (0..series.len())
        .filter(|&k| {
            let it = &CATALOGUE[series[k].item];
            k != short_idx && k != spare_idx && it.shelf_life_days.is_some() && !it.intermittent
        })
        .min_by(|&a, &b| series[a].daily_mean.total_cmp(&series[b].daily_mean))
        .expect("the catalogue has items that expire");
    let short_dated_on = spec.end - Days::new(10);
    let short_dated_life = 30;

    let mut plants = vec![Plant::default(); series.len()];
    plants[spare_idx].extra_delivery =
        Some((spec.end - Days::new(40), series[spare_idx].imprest * 6));
    plants[expiry_idx].short_dated = Some((
        short_dated_on,
        series[expiry_idx].imprest * 3,
        short_dated_life,
    ));

    // Each item is simulated across its wards together, so that a ward that
    // runs out can borrow from another.
    let mut runs: Vec<Option<Run>> = vec![None; series.len()];
    for (item, it) in CATALOGUE.iter().enumerate() {
        let members: Vec<usize> = (0..series.len())
            .filter(|&k| series[k].item == item)
            .collect();
        if members.is_empty() {
            continue;
        }
        let group = if members.contains(&short_idx) {
            plant_shortage(
                &series,
                &members,
                &wards,
                &mut plants,
                short_idx,
                it,
                first,
                spec.end,
                seed,
            )
        } else {
            simulate_item(&series, &members, &wards, &plants, first, spec.end, seed)
        };
        for (k, run) in members.iter().zip(group) {
            runs[*k] = Some(run);
        }
    }
    let runs: Vec<Run> = runs
        .into_iter()
        .map(|r| r.expect("every series simulated"))
        .collect();

    let short = &runs[short_idx].truth;
    let imbalance = PlantedImbalance {
        npc: short.npc.clone(),
        short_location: short.location.clone(),
        spare_location: runs[spare_idx].truth.location.clone(),
        short_on_hand: short.on_hand,
        spare_on_hand: runs[spare_idx].truth.on_hand,
        runs_out: spec.end
            + Days::new((short.on_hand as f64 / series[short_idx].daily_mean).floor() as u64),
    };
    let batch = short_dated_batch(short_dated_on);
    let near_expiry = PlantedExpiry {
        location: runs[expiry_idx].truth.location.clone(),
        npc: runs[expiry_idx].truth.npc.clone(),
        quantity: runs[expiry_idx]
            .shelf
            .iter()
            .filter(|b| b.batch == batch)
            .map(|b| b.quantity)
            .sum(),
        batch,
        expires: short_dated_on + Days::new(u64::from(short_dated_life)),
    };
    let files = vec![
        catalogue_file(spec.end),
        counts_file(&runs, &series, &wards, spec.end),
        transactions_file(&runs, &series, &wards, seed, spec.end),
        batch_file(&runs, &series, &wards, spec.end),
    ];
    let mut discrepancies: Vec<PlantedDiscrepancy> =
        runs.iter().flat_map(|r| r.discrepancies.clone()).collect();
    discrepancies.sort_by(|a, b| (&a.location, &a.npc, a.date).cmp(&(&b.location, &b.npc, b.date)));
    SupplyYear {
        files,
        truth: SupplyTruth {
            end: spec.end,
            series: runs.into_iter().map(|r| r.truth).collect(),
            imbalance,
            near_expiry,
            discrepancies,
        },
    }
}

/// Simulate the item whose ward is to run short: its top-ups stop some
/// weeks before the end, and the last one to arrive comes short, by as
/// much as leaves the ward, on the last day, about four-tenths of a lead
/// time's use, having not run out since that delivery. A delivery cut
/// while stock stays on the shelf changes no issue, so the second run
/// differs from the first only by the cut; it is checked all the same.
#[allow(clippy::too_many_arguments)]
fn plant_shortage(
    series: &[Series],
    members: &[usize],
    wards: &[(&str, &str, &str, String)],
    plants: &mut [Plant],
    short_idx: usize,
    item: &SupplyItem,
    first: NaiveDate,
    end: NaiveDate,
    seed: u64,
) -> Vec<Run> {
    let at = members
        .iter()
        .position(|&k| k == short_idx)
        .expect("a member");
    let mean = series[short_idx].daily_mean;
    let lead_use = mean * f64::from(item.lead_days);
    let target = ((0.4 * lead_use).floor() as i64).max(1);
    let fits = |r: &Run, since: NaiveDate| {
        r.truth.on_hand >= 1
            && (r.truth.on_hand as f64) < 0.7 * lead_use
            && r.last_out.is_none_or(|d| d < since)
    };
    for back in 12..60u64 {
        let stop = end - Days::new(back);
        plants[short_idx].stop_orders_from = Some(stop);
        plants[short_idx].short_delivery = None;
        let group = simulate_item(series, members, wards, plants, first, end, seed);
        let r = &group[at];
        let Some(&(arrived, quantity)) = r.delivered.last() else {
            continue;
        };
        if r.last_out.is_some_and(|d| d >= arrived) {
            continue;
        }
        if fits(r, arrived) {
            return group;
        }
        let lowest = r
            .closing
            .iter()
            .filter(|(d, _)| *d >= arrived)
            .map(|(_, q)| *q)
            .min()
            .unwrap_or(0);
        let cut = r.truth.on_hand - target;
        if cut <= 0 || cut > quantity || lowest - cut < 1 {
            continue;
        }
        plants[short_idx].short_delivery = Some((arrived, cut));
        let group = simulate_item(series, members, wards, plants, first, end, seed);
        if fits(&group[at], arrived) {
            return group;
        }
    }
    simulate_item(series, members, wards, plants, first, end, seed)
}

fn short_dated_batch(day: NaiveDate) -> String {
    format!("SD{}", day.format("%y%m%d"))
}

/// The short ward and the spare ward: two wards of one site keeping the
/// same critical item that is used most days.
fn imbalance_pair(series: &[Series], wards: &[(&str, &str, &str, String)]) -> (usize, usize) {
    let candidates: Vec<usize> = (0..series.len())
        .filter(|&k| {
            let it = &CATALOGUE[series[k].item];
            it.critical && !it.intermittent
        })
        .collect();
    for &a in &candidates {
        for &b in &candidates {
            let (sa, sb) = (&series[a], &series[b]);
            if a != b && sa.item == sb.item && wards[sa.ward].0 == wards[sb.ward].0 {
                return (a, b);
            }
        }
    }
    // With one ward a site, the two are on different sites.
    let b = candidates
        .iter()
        .copied()
        .find(|&b| series[b].item == series[candidates[0]].item && b != candidates[0])
        .unwrap_or(candidates[0]);
    (candidates[0], b)
}

/// A draw from a Poisson distribution (Knuth's method; the means here are
/// small).
fn poisson(rng: &mut SynthRng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= limit || k > 1000 {
            return k;
        }
        k += 1;
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut SynthRng) -> f64 {
    let u: f64 = rng.random::<f64>().max(1e-12);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A day's demand for a series: smooth items around their mean, a little
/// more in winter, spread as ward use is (a log-normal day factor on a
/// Poisson count); intermittent items a few at a time on few days.
fn demand(s: &Series, day: NaiveDate, rng: &mut SynthRng) -> u32 {
    if CATALOGUE[s.item].intermittent {
        if rng.random::<f64>() >= s.chance {
            return 0;
        }
        let size = s.daily_mean / s.chance;
        return 1 + poisson(rng, (size - 1.0).max(0.0));
    }
    // Peaks in mid-January.
    let season = (std::f64::consts::TAU * (f64::from(day.ordinal()) - 15.0) / 365.25).cos();
    let spread = 0.45;
    let factor = (spread * normal(rng) - spread * spread / 2.0).exp();
    poisson(rng, s.daily_mean * (1.0 + s.seasonal * season) * factor)
}

/// The state of one series while simulating.
struct Ward {
    shelf: Vec<OnShelf>,
    /// Orders on their way: arrival day, quantity.
    on_order: Vec<(NaiveDate, i64)>,
    run: Run,
    month_demand: u32,
    month_issued: i64,
    deliveries: u32,
}

impl Ward {
    fn on_hand(&self) -> i64 {
        self.shelf.iter().map(|b| b.quantity).sum()
    }

    /// Take up to `want` first-expiry-first-out; what was taken.
    fn take(&mut self, want: i64) -> i64 {
        self.shelf
            .sort_by_key(|b| b.expires.unwrap_or(NaiveDate::MAX));
        let mut left = want;
        for b in &mut self.shelf {
            let n = b.quantity.min(left);
            b.quantity -= n;
            left -= n;
        }
        self.shelf.retain(|b| b.quantity > 0);
        want - left
    }
}

/// Simulate the wards `members` keeping one item over the days from `first`
/// to `end`, each on its own random stream.
fn simulate_item(
    series: &[Series],
    members: &[usize],
    wards: &[(&str, &str, &str, String)],
    plants: &[Plant],
    first: NaiveDate,
    end: NaiveDate,
    seed: u64,
) -> Vec<Run> {
    let item = &CATALOGUE[series[members[0]].item];
    let mut rngs: Vec<SynthRng> = members
        .iter()
        .map(|&k| rng_for(seed, crate::rng::stream::SUPPLIES_SERIES + k as u64))
        .collect();
    let mut state: Vec<Ward> = members
        .iter()
        .zip(&mut rngs)
        .map(|(&k, rng)| {
            let s = &series[k];
            let (site, ward, _, _) = wards[s.ward];
            let expires = item
                .shelf_life_days
                .map(|life| first + Days::new(rng.random_range(60..u64::from(life))));
            Ward {
                shelf: vec![OnShelf {
                    batch: format!("B{}{:03}", first.format("%y%m%d"), k % 1000),
                    expires,
                    quantity: s.imprest,
                }],
                on_order: Vec::new(),
                run: Run {
                    moves: Vec::new(),
                    counts: Vec::new(),
                    shelf: Vec::new(),
                    last_out: None,
                    delivered: Vec::new(),
                    closing: Vec::new(),
                    truth: SeriesTruth {
                        location: format!("{site}:{ward}"),
                        site: site.to_string(),
                        npc: item.npc.to_string(),
                        intermittent: item.intermittent,
                        daily_mean: s.daily_mean,
                        on_hand: 0,
                        days_out_of_stock: 0,
                        monthly_demand: Vec::new(),
                        monthly_issued: Vec::new(),
                    },
                    discrepancies: Vec::new(),
                },
                month_demand: 0,
                month_issued: 0,
                deliveries: 0,
            }
        })
        .collect();
    let mut transfers = 0u32;
    for day in first.iter_days().take_while(|d| *d <= end) {
        let month_end = day.succ_opt().is_none_or(|n| n.month() != day.month());
        // Counted before the day's movements on the first day, each month's
        // first day and the last day; now and then less is found than the
        // books say.
        let count_day = day == first || day.day() == 1 || day == end;
        for (j, &k) in members.iter().enumerate() {
            let s = &series[k];
            let plant = plants[k];
            let rng = &mut rngs[j];
            let w = &mut state[j];
            if count_day {
                if day != end && day != first && rng.random_bool(0.03) && w.on_hand() >= 3 {
                    let lost = rng.random_range(1..=3);
                    w.take(lost);
                    w.run.discrepancies.push(PlantedDiscrepancy {
                        location: w.run.truth.location.clone(),
                        npc: item.npc.to_string(),
                        date: day,
                        difference: -lost,
                    });
                }
                w.run.counts.push((day, w.on_hand()));
            }
            // Deliveries due today.
            let mut arriving: Vec<i64> = Vec::new();
            w.on_order.retain(|(due, q)| {
                if *due == day {
                    arriving.push(*q);
                    false
                } else {
                    true
                }
            });
            if let Some((d, q)) = plant.extra_delivery.filter(|(d, _)| *d == day) {
                let _ = d;
                arriving.push(q);
            }
            let short_by = plant
                .short_delivery
                .filter(|(d, _)| *d == day)
                .map_or(0, |(_, c)| c);
            if let Some(first) = arriving.first_mut() {
                *first = (*first - short_by).max(0);
                w.run.delivered.push((day, *first));
            }
            for q in arriving.into_iter().filter(|q| *q > 0) {
                w.deliveries += 1;
                let batch = format!("B{}{:03}", day.format("%y%m%d"), w.deliveries % 1000);
                // Now and then a batch arrives short-dated.
                let expires = item.shelf_life_days.map(|life| {
                    if rng.random_bool(0.04) {
                        day + Days::new(rng.random_range(20..=60))
                    } else {
                        day + Days::new(rng.random_range(u64::from(life) / 2..=u64::from(life)))
                    }
                });
                w.shelf.push(OnShelf {
                    batch,
                    expires,
                    quantity: q,
                });
                w.run.moves.push(Move {
                    date: day,
                    kind: "REC",
                    quantity: q,
                    reference: format!("PO{}", 40_000_000 + rng.random_range(0..9_999_999)),
                });
            }
            if let Some((_, q, life)) = plant.short_dated.filter(|(d, _, _)| *d == day) {
                w.shelf.push(OnShelf {
                    batch: short_dated_batch(day),
                    expires: Some(day + Days::new(u64::from(life))),
                    quantity: q,
                });
                w.run.moves.push(Move {
                    date: day,
                    kind: "REC",
                    quantity: q,
                    reference: format!(
                        "PO{} short-dated",
                        40_000_000 + rng.random_range(0..9_999_999)
                    ),
                });
            }
            // Use.
            let wanted = demand(s, day, rng);
            w.month_demand += wanted;
            let issued = w.take(i64::from(wanted));
            if issued > 0 {
                w.month_issued += issued;
                w.run.moves.push(Move {
                    date: day,
                    kind: "ISS",
                    quantity: issued,
                    reference: format!("REQ{}", 1_000_000 + rng.random_range(0..8_999_999)),
                });
                if rng.random_bool(0.01) {
                    w.month_issued -= 1;
                    match w.shelf.first_mut() {
                        Some(b) => b.quantity += 1,
                        None => w.shelf.push(OnShelf {
                            batch: "RTN".into(),
                            expires: None,
                            quantity: 1,
                        }),
                    }
                    w.run.moves.push(Move {
                        date: day,
                        kind: "RET",
                        quantity: 1,
                        reference: format!("RTN{}", rng.random_range(100_000..999_999)),
                    });
                }
            }
            // Expired stock is written off at the end of its last day.
            let mut expired = 0;
            w.shelf.retain(|b| {
                if b.expires.is_some_and(|e| e <= day) {
                    expired += b.quantity;
                    false
                } else {
                    true
                }
            });
            if expired > 0 {
                w.run.moves.push(Move {
                    date: day,
                    kind: "WST",
                    quantity: expired,
                    reference: "Expired".into(),
                });
            }
            // The weekly top-up order, unless planted away; now and then the
            // supplier is a week or two late.
            let stopped = plant.stop_orders_from.is_some_and(|d| day >= d);
            if day.weekday().num_days_from_monday() == s.review_day && !stopped {
                let coming: i64 = w.on_order.iter().map(|(_, q)| q).sum();
                let want = s.imprest - w.on_hand() - coming;
                if want > 0 {
                    let late = if rng.random_bool(0.06) {
                        rng.random_range(7..=14)
                    } else {
                        0
                    };
                    w.on_order
                        .push((day + Days::new(u64::from(item.lead_days + late)), want));
                }
            }
        }
        // A ward with none left borrows a few days' use from the ward of the
        // same item holding most, if that one can spare it.
        for j in 0..members.len() {
            if state[j].on_hand() > 0 || !rngs[j].random_bool(0.3) {
                continue;
            }
            let Some(donor) = (0..members.len())
                .filter(|&d| d != j)
                .max_by_key(|&d| state[d].on_hand())
            else {
                continue;
            };
            let spare = state[donor].on_hand() - series[members[donor]].imprest / 2;
            let lend = ((series[members[j]].daily_mean * 3.0).ceil() as i64).min(spare);
            if lend < 1 {
                continue;
            }
            let taken = state[donor].take(lend);
            transfers += 1;
            let reference = format!("TRF{:06}", transfers);
            let (from, to) = (
                state[donor].run.truth.location.clone(),
                state[j].run.truth.location.clone(),
            );
            let batch = state[donor].shelf.first().and_then(|b| b.expires);
            state[j].shelf.push(OnShelf {
                batch: reference.clone(),
                expires: batch,
                quantity: taken,
            });
            state[donor].run.moves.push(Move {
                date: day,
                kind: "TRF",
                quantity: -taken,
                reference: format!("{reference} to {to}"),
            });
            state[j].run.moves.push(Move {
                date: day,
                kind: "TRF",
                quantity: taken,
                reference: format!("{reference} from {from}"),
            });
        }
        for w in state.iter_mut() {
            w.run.closing.push((day, w.on_hand()));
            if w.on_hand() <= 0 {
                w.run.truth.days_out_of_stock += 1;
                w.run.last_out = Some(day);
            }
            if month_end || day == end {
                w.run.truth.monthly_demand.push(w.month_demand);
                w.run.truth.monthly_issued.push(w.month_issued);
                w.month_demand = 0;
                w.month_issued = 0;
            }
        }
    }
    state
        .into_iter()
        .map(|mut w| {
            w.run.truth.on_hand = w.on_hand();
            w.run.shelf = w.shelf;
            w.run
        })
        .collect()
}

fn catalogue_file(end: NaiveDate) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    sheet.header(&[
        "NPC",
        "GTIN",
        "Description",
        "Category",
        "UOI",
        "Pack Size",
        "Unit Price",
        "Lead Time Days",
        "Shelf Life Days",
        "Critical",
        "Equivalence Group",
    ]);
    for it in CATALOGUE {
        sheet.record(&[
            it.npc.to_string(),
            it.gtin.to_string(),
            it.description.to_string(),
            it.category.to_string(),
            it.unit_of_issue.to_string(),
            it.pack_size.to_string(),
            format!("{:.2}", it.unit_price),
            it.lead_days.to_string(),
            it.shelf_life_days
                .map(|d| d.to_string())
                .unwrap_or_default(),
            if it.critical { "Y" } else { "N" }.to_string(),
            it.equivalence_group.to_string(),
        ]);
    }
    sheet.finish(format!("supplies_catalogue_{}.csv", stamp(end)))
}

/// The counts, in the ward top-up count's layout.
fn counts_file(
    runs: &[Run],
    series: &[Series],
    wards: &[(&str, &str, &str, String)],
    end: NaiveDate,
) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    sheet.header(WARD_STOCK_HEADER);
    for (run, s) in runs.iter().zip(series) {
        let it = &CATALOGUE[s.item];
        let (site, code, name, cost_centre) = &wards[s.ward];
        for (day, q) in &run.counts {
            sheet.record(&[
                day.format("%d/%m/%Y").to_string(),
                site.to_string(),
                code.to_string(),
                name.to_string(),
                cost_centre.clone(),
                it.npc.to_string(),
                it.description.to_string(),
                it.unit_of_issue.to_string(),
                it.pack_size.to_string(),
                s.imprest.to_string(),
                q.to_string(),
                format!("{:.2}", it.unit_price),
            ]);
        }
    }
    sheet.finish(format!("ward_stock_{}.csv", stamp(end)))
}

/// The year's movements in the inventory system's headerless layout.
fn transactions_file(
    runs: &[Run],
    series: &[Series],
    wards: &[(&str, &str, &str, String)],
    seed: u64,
    end: NaiveDate,
) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    let mut lines: Vec<(NaiveDate, usize, &Move)> = Vec::new();
    for (k, run) in runs.iter().enumerate() {
        for m in &run.moves {
            lines.push((m.date, k, m));
        }
    }
    // In date order, as the system exports them.
    lines.sort_by_key(|(d, k, _)| (*d, *k));
    let mut txn: u64 = 300_000_000 + seed % 100_000_000;
    for (_, k, m) in lines {
        let s = &series[k];
        let it = &CATALOGUE[s.item];
        let (site, code, _, cost_centre) = &wards[s.ward];
        txn += 1;
        sheet.record(&[
            txn.to_string(),
            m.date.format("%Y-%m-%d").to_string(),
            m.kind.to_string(),
            it.npc.to_string(),
            it.description.to_string(),
            m.quantity.to_string(),
            it.unit_of_issue.to_string(),
            site.to_string(),
            code.to_string(),
            cost_centre.clone(),
            format!("{:.2}", it.unit_price),
            format!("{:.2}", it.unit_price * m.quantity as f64),
            m.reference.clone(),
        ]);
    }
    sheet.finish(format!("supplies_transactions_{}.csv", stamp(end)))
}

/// Batches on hand on the last day, for items that expire.
fn batch_file(
    runs: &[Run],
    series: &[Series],
    wards: &[(&str, &str, &str, String)],
    end: NaiveDate,
) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    sheet.header(&[
        "Report Date",
        "Site Code",
        "Location Code",
        "NPC",
        "GTIN",
        "Description",
        "Batch",
        "Expiry",
        "Qty",
    ]);
    for (run, s) in runs.iter().zip(series) {
        let it = &CATALOGUE[s.item];
        let (site, code, _, _) = &wards[s.ward];
        let mut shelf = run.shelf.clone();
        shelf.sort_by(|a, b| (a.expires, &a.batch).cmp(&(b.expires, &b.batch)));
        for b in shelf.iter().filter(|b| b.quantity > 0) {
            let Some(expires) = b.expires else { continue };
            sheet.record(&[
                end.format("%d/%m/%Y").to_string(),
                site.to_string(),
                code.to_string(),
                it.npc.to_string(),
                it.gtin.to_string(),
                it.description.to_string(),
                b.batch.clone(),
                expires.format("%d/%m/%Y").to_string(),
                b.quantity.to_string(),
            ]);
        }
    }
    sheet.finish(format!("batch_stock_{}.csv", stamp(end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::TrustSpec;

    fn year() -> SupplyYear {
        let trust = Trust::generate(7, TrustSpec::default()).unwrap();
        supply_year(&trust, 7, &SupplyYearSpec::default())
    }

    #[test]
    fn the_same_seed_gives_the_same_files() {
        let (a, b) = (year(), year());
        assert_eq!(a.files, b.files);
        assert_eq!(a.truth, b.truth);
    }

    #[test]
    fn gtins_carry_valid_check_digits() {
        for it in CATALOGUE {
            let digits: Vec<u32> = it.gtin.chars().map(|c| c.to_digit(10).unwrap()).collect();
            let (body, check) = digits.split_at(digits.len() - 1);
            let sum: u32 = body
                .iter()
                .rev()
                .enumerate()
                .map(|(i, d)| if i % 2 == 0 { 3 * d } else { *d })
                .sum();
            assert_eq!((10 - sum % 10) % 10, check[0], "{} {}", it.npc, it.gtin);
        }
    }

    #[test]
    fn the_imbalance_is_planted_before_it_bites() {
        let y = year();
        let p = &y.truth.imbalance;
        assert_ne!(p.short_location, p.spare_location);
        assert!(p.short_on_hand >= 1, "{p:?}");
        assert!(p.runs_out > y.truth.end, "{p:?}");
        let spare = y
            .truth
            .series
            .iter()
            .find(|s| s.location == p.spare_location && s.npc == p.npc)
            .unwrap();
        assert!(spare.on_hand as f64 > spare.daily_mean * 60.0, "{spare:?}");
    }

    #[test]
    fn the_year_has_stock_outs_transfers_write_offs_and_counts_that_disagree() {
        let y = year();
        let text = String::from_utf8(y.files[2].bytes.clone()).unwrap();
        for kind in [",REC,", ",ISS,", ",RET,", ",TRF,", ",WST,"] {
            assert!(text.contains(kind), "no {kind}");
        }
        assert!(y.truth.series.iter().any(|s| s.days_out_of_stock > 0));
        assert!(!y.truth.discrepancies.is_empty());
        assert!(
            y.truth.near_expiry.quantity > 0,
            "{:?}",
            y.truth.near_expiry
        );
        // Twelve month ends and the last day.
        let months = y.truth.series[0].monthly_demand.len();
        assert!((12..=13).contains(&months), "{months}");
    }
}
