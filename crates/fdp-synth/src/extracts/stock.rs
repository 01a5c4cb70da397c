//! Stock: vaccines in the pharmacy system, supplies counted on the wards,
//! and the inventory system's transactions.

use chrono::Duration;
use rand::seq::SliceRandom;
use rand::Rng;

use super::sheet::{Encoding, Sheet};
use super::supplies::{ward_items, wards, CATALOGUE, WARD_STOCK_HEADER};
use super::{dmy, impossible_day, stamp, ExtractFile, ExtractSpec, FaultKind};
use crate::rng::{pick, SynthRng};
use crate::trust::Trust;

/// dm+d code, description, doses per vial, cost per dose.
const VACCINES: &[(&str, &str, u32, &str)] = &[
    (
        "39115611000001103",
        "COVID-19 mRNA Vaccine Comirnaty 30micrograms/0.3ml dose concentrate for dispersion for injection multidose vials (Pfizer Ltd)",
        6,
        "15.00",
    ),
    (
        "39114911000001105",
        "COVID-19 Vaccine Vaxzevria 0.5ml dose solution for injection multidose vials (AstraZeneca UK Ltd)",
        10,
        "3.00",
    ),
    (
        "39373511000001104",
        "COVID-19 Vaccine Valneva 0.5ml dose suspension for injection multidose vials (Valneva UK Ltd)",
        10,
        "18.00",
    ),
    (
        "39230211000001104",
        "COVID-19 Vaccine Janssen 0.5ml dose suspension for injection multidose vials (Janssen-Cilag Ltd)",
        5,
        "8.50",
    ),
];

/// A batch of vaccine counted in a store, as the stock file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CountedBatch {
    pub site: String,
    pub store: String,
    pub item_code: &'static str,
    pub per_vial: u32,
    pub batch: String,
    pub expiry: chrono::NaiveDate,
    pub doses: u32,
}

/// The dm+d products the stock file holds: code, doses per vial.
pub(crate) fn vaccine_products() -> impl Iterator<Item = (&'static str, u32)> {
    VACCINES
        .iter()
        .map(|&(code, _, per_vial, _)| (code, per_vial))
}

/// The pharmacy system's stock on hand by store, product and batch:
/// pipe-separated Windows-1252 with typographic apostrophes in names; and
/// the batches its good lines count.
pub(crate) fn vaccines(
    trust: &Trust,
    spec: &ExtractSpec,
    rng: &mut SynthRng,
) -> (ExtractFile, Vec<CountedBatch>) {
    let mut sheet = Sheet::new('|', true, Encoding::Windows1252);
    sheet.header(&[
        "SITE",
        "STORE",
        "STORE_NAME",
        "DMD_CODE",
        "DESCRIPTION",
        "BATCH",
        "EXPIRY",
        "DOSES_ON_HAND",
        "DOSES_PER_VIAL",
        "UNIT_COST",
        "STOCK_DATE",
        "STOCK_TIME",
    ]);
    let mut stores: Vec<(&str, &str, String)> = Vec::new();
    for (i, site) in trust.sites.iter().enumerate() {
        stores.push((&site.code, "PHARM", format!("{} Pharmacy", site.name)));
        if i == 0 {
            stores.push((&site.code, "VACHUB", "Staff Vaccination Hub".into()));
        }
    }
    let date = stamp(spec.start);
    let mut used = std::collections::BTreeSet::new();
    let mut batch = |rng: &mut SynthRng| loop {
        let b = format!(
            "{}{}{:04}",
            char::from(rng.random_range(b'A'..=b'Z')),
            char::from(rng.random_range(b'A'..=b'Z')),
            rng.random_range(0..10_000)
        );
        if used.insert(b.clone()) {
            break b;
        }
    };
    let mut last = Vec::new();
    let mut counted = Vec::new();
    let mut near_expiry_done = false;
    for (site, store, name) in &stores {
        for (k, &(code, description, per_vial, cost)) in VACCINES.iter().enumerate() {
            if k > 0 && rng.random_bool(0.5) {
                continue;
            }
            let batches = rng.random_range(1..=3);
            for b in 0..batches {
                // One batch close to its expiry date, for wastage to show.
                let days = if !near_expiry_done && b == 0 && *store == "VACHUB" {
                    near_expiry_done = true;
                    rng.random_range(3..14)
                } else {
                    rng.random_range(20..270)
                };
                let expiry = spec.start + Duration::days(days);
                let doses = per_vial * rng.random_range(1..40);
                let batch = batch(rng);
                counted.push(CountedBatch {
                    site: site.to_string(),
                    store: store.to_string(),
                    item_code: code,
                    per_vial,
                    batch: batch.clone(),
                    expiry,
                    doses,
                });
                let fields = vec![
                    site.to_string(),
                    store.to_string(),
                    name.replace('\'', "’"),
                    code.to_string(),
                    description.to_string(),
                    batch,
                    expiry.format("%Y%m%d").to_string(),
                    doses.to_string(),
                    per_vial.to_string(),
                    cost.to_string(),
                    date.clone(),
                    "06:00".into(),
                ];
                sheet.record(&fields);
                last = fields;
            }
        }
    }
    let mut f = last.clone();
    f[5] = batch(rng);
    f.remove(5);
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::FieldCount, "BATCH missing");
    let mut f = last.clone();
    f[5] = batch(rng);
    let (d, m, y) = impossible_day(spec.start + Duration::days(90));
    f[6] = format!("{y}{m:02}{d:02}");
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::ImpossibleDate,
        format!("EXPIRY {}", f[6]),
    );
    let mut f = last;
    f[5] = batch(rng);
    // Two digits of the Comirnaty code swapped: the check digit catches it.
    f[3] = "39115611000001130".into();
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::UnknownCode,
        "DMD_CODE 39115611000001130, two digits swapped",
    );
    (sheet.finish(format!("vaccine_stock_{date}.txt")), counted)
}

/// Ward top-up (imprest) count: what each ward holds against its level.
pub(crate) fn ward_stock(trust: &Trust, spec: &ExtractSpec, rng: &mut SynthRng) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    sheet.header(WARD_STOCK_HEADER);
    let date = dmy(spec.start);
    let mut last = Vec::new();
    for (i, (site, code, name, cost_centre)) in wards(trust).into_iter().enumerate() {
        for item in ward_items(i) {
            let it = &CATALOGUE[item];
            let (npc, description, uoi, pack, price) = (
                it.npc,
                it.description,
                it.unit_of_issue,
                it.pack_size,
                it.unit_price,
            );
            let level: u32 = rng.random_range(2..=12);
            let on_hand = if rng.random_bool(0.08) {
                0
            } else {
                rng.random_range(0..=level)
            };
            let fields = vec![
                date.clone(),
                site.to_string(),
                code.to_string(),
                name.to_string(),
                cost_centre.clone(),
                npc.to_string(),
                description.to_string(),
                uoi.to_string(),
                pack.to_string(),
                level.to_string(),
                on_hand.to_string(),
                format!("{price:.2}"),
            ];
            sheet.record(&fields);
            last = fields;
        }
    }
    // Faulty lines count the main stores, which the good lines do not.
    let mut f = last.clone();
    f[2] = "STORES".into();
    f[3] = "Main Stores".into();
    f[5] = "ELW190".into();
    f[6] = "Dressing, foam, adhesive, 10cm x 10cm".into();
    let line = sheet.join_unquoted(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::FieldCount,
        "commas inside Description, unquoted",
    );
    let mut f = last.clone();
    f[2] = "STORES".into();
    f[3] = "Main Stores".into();
    f[5] = "FTR202".into();
    let (d, m, y) = impossible_day(spec.start);
    f[0] = format!("{d:02}/{m:02}/{y}");
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::ImpossibleDate,
        format!("Count Date {}", f[0]),
    );
    let mut f = last;
    f[2] = "STORES".into();
    f[3] = "Main Stores".into();
    f[5] = "FWC112".into();
    f[7] = "DZ".into();
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::UnknownCode,
        "UOI DZ (dozen), not a unit of issue",
    );
    sheet.finish(format!("ward_stock_{}.csv", stamp(spec.start)))
}

/// The inventory system's transactions over the days before the start:
/// headerless, ISO dates, one line per movement.
pub(crate) fn transactions(trust: &Trust, spec: &ExtractSpec, rng: &mut SynthRng) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    let wards = wards(trust);
    let main = trust.sites[0].code.as_str();
    let mut txn: u64 = rng.random_range(300_000_000..700_000_000);
    let mut last = Vec::new();
    let line = |txn: u64,
                day: chrono::NaiveDate,
                kind: &str,
                item: usize,
                qty: i64,
                site: &str,
                location: &str,
                cost_centre: &str,
                reference: String| {
        let it = &CATALOGUE[item];
        let (npc, description, uoi, price) =
            (it.npc, it.description, it.unit_of_issue, it.unit_price);
        vec![
            txn.to_string(),
            day.format("%Y-%m-%d").to_string(),
            kind.to_string(),
            npc.to_string(),
            description.to_string(),
            qty.to_string(),
            uoi.to_string(),
            site.to_string(),
            location.to_string(),
            cost_centre.to_string(),
            format!("{price:.2}"),
            format!("{:.2}", price * qty as f64),
            reference,
        ]
    };
    let first = spec.start - Duration::days(i64::from(spec.days));
    for day in first.iter_days().take(spec.days as usize) {
        for _ in 0..rng.random_range(3..=8) {
            txn += 1;
            let item = rng.random_range(0..CATALOGUE.len());
            let reference = format!("PO{}", rng.random_range(40_000_000..49_999_999));
            let fields = line(
                txn,
                day,
                "REC",
                item,
                rng.random_range(5..=40),
                main,
                "STORES",
                "419990",
                reference,
            );
            sheet.record(&fields);
        }
        for (i, (site, code, _, cost_centre)) in wards.iter().enumerate() {
            let mut items = ward_items(i);
            items.shuffle(rng);
            for &item in items.iter().take(rng.random_range(1..=3)) {
                txn += 1;
                let (kind, qty, reference) = match rng.random_range(0..100) {
                    0 | 1 => (
                        "RET",
                        1,
                        format!("RTN{}", rng.random_range(100_000..999_999)),
                    ),
                    2 => ("WST", 1, "Expired".to_string()),
                    3 => ("ADJ", -rng.random_range(1..=3), "Stock take".to_string()),
                    4 => {
                        let (_, from, _, _) = pick(rng, &wards);
                        ("TRF", rng.random_range(1..=2), format!("From {from}"))
                    }
                    _ => (
                        "ISS",
                        rng.random_range(1..=4),
                        format!("REQ{}", rng.random_range(1_000_000..9_999_999)),
                    ),
                };
                let fields = line(
                    txn,
                    day,
                    kind,
                    item,
                    qty,
                    site,
                    code,
                    cost_centre,
                    reference,
                );
                sheet.record(&fields);
                last = fields;
            }
        }
    }
    let mut f = last.clone();
    txn += 1;
    f[0] = txn.to_string();
    f.truncate(11);
    let text = sheet.join(&f);
    sheet.fault(
        rng,
        text,
        FaultKind::FieldCount,
        "line value and reference missing",
    );
    let mut f = last.clone();
    txn += 1;
    f[0] = txn.to_string();
    let (d, m, y) = impossible_day(spec.start - Duration::days(1));
    f[1] = format!("{y}-{m:02}-{d:02}");
    let text = sheet.join(&f);
    sheet.fault(
        rng,
        text,
        FaultKind::ImpossibleDate,
        format!("date {}", f[1]),
    );
    let mut f = last;
    txn += 1;
    f[0] = txn.to_string();
    f[2] = "XFR".into();
    let text = sheet.join(&f);
    sheet.fault(rng, text, FaultKind::UnknownCode, "transaction type XFR");
    sheet.finish(format!("supplies_transactions_{}.csv", stamp(spec.start)))
}
