//! Places outside hospital: the Capacity Tracker's care homes and the
//! trust's virtual wards.

use chrono::{Duration, NaiveDate, NaiveTime};
use rand::Rng;

use super::sheet::{Encoding, Sheet};
use super::{impossible_day, stamp, ExtractFile, ExtractSpec, FaultKind};
use crate::rng::{pick, SynthRng};
use crate::trust::Trust;

const HOME_NAMES: &[&str] = &[
    "Rose Court",
    "Elmfield House",
    "Beech Lodge",
    "The Laurels",
    "Oakwood Grange",
    "Meadowbank",
    "St Catherine's",
    "Fernlea",
    "Holly Bank",
    "Moorview",
    "Willow Court",
    "Ashgrove",
    "Bramley House",
    "Cedar Lodge",
    "Chestnut Manor",
    "Heathfield",
    "Kirkgate House",
    "Lime Tree Court",
    "Priory View",
    "Redwood",
    "Sycamore House",
    "Thornhill Lodge",
    "Westfield Manor",
    "Calder View",
];

const PROVIDERS: &[&str] = &[
    "Aire Valley Care Ltd",
    "Pennine Care Homes Ltd",
    "Heritage Lodge Healthcare Ltd",
    "Calder Homes Ltd",
    "Moorland Care Group Ltd",
    "Hargreaves, Lund & Co Care Ltd",
];

fn local_authority(town: &str) -> &'static str {
    match town {
        "WAKEFIELD" | "PONTEFRACT" | "CASTLEFORD" => "Wakefield",
        "DEWSBURY" | "BATLEY" | "HUDDERSFIELD" => "Kirklees",
        "HALIFAX" => "Calderdale",
        "BRADFORD" | "KEIGHLEY" => "Bradford",
        "LEEDS" => "Leeds",
        "HARROGATE" => "North Yorkshire",
        "YORK" => "York",
        _ => "Unknown",
    }
}

/// Beds and vacancies of one type: none, or a number and up to a few free.
fn beds(rng: &mut SynthRng, has: bool, lo: u32, hi: u32) -> (u32, u32) {
    if !has {
        return (0, 0);
    }
    let total = rng.random_range(lo..=hi);
    let free = if rng.random_bool(0.35) {
        0
    } else {
        rng.random_range(1..=4.min(total))
    };
    (total, free)
}

/// One line per care home: beds and vacancies by type, as the Capacity
/// Tracker's export lays them out.
pub(crate) fn care_homes(trust: &Trust, spec: &ExtractSpec, rng: &mut SynthRng) -> ExtractFile {
    let mut sheet = Sheet::new(',', true, Encoding::Utf8Bom);
    sheet.header(&[
        "CQC Location ID",
        "ODS Code",
        "Location Name",
        "Provider Name",
        "Local Authority",
        "Postcode",
        "Residential Beds",
        "Residential Vacancies",
        "Nursing Beds",
        "Nursing Vacancies",
        "Dementia Beds",
        "Dementia Vacancies",
        "Accepting Admissions",
        "Last Updated",
    ]);
    const ODS_CHARS: &[u8] = b"ABCDEFGHJKLMNPQRTUVWXY0123456789";
    let mut last = Vec::new();
    let mut used_ids = std::collections::BTreeSet::new();
    for i in 0..spec.care_homes {
        let location = loop {
            let id = format!("1-{}", rng.random_range(100_000_000u64..9_999_999_999));
            if used_ids.insert(id.clone()) {
                break id;
            }
        };
        // Most homes have an ODS code; the tracker shows "-" for those without.
        let ods = if rng.random_bool(0.85) {
            let mut c = String::from("V");
            for _ in 0..4 {
                c.push(char::from(*pick(rng, ODS_CHARS)));
            }
            c
        } else {
            "-".to_string()
        };
        let stem = HOME_NAMES[i % HOME_NAMES.len()];
        let round = i / HOME_NAMES.len();
        let nursing_home = rng.random_bool(0.5);
        let name = match (round, nursing_home) {
            (0, true) => format!("{stem} Nursing Home"),
            (0, false) => format!("{stem} Care Home"),
            (n, _) => format!("{stem} {}", n + 1),
        };
        let address = trust.catchment.random_address(rng);
        let has_residential = !nursing_home || rng.random_bool(0.4);
        let has_dementia = rng.random_bool(0.45);
        let residential = beds(rng, has_residential, 18, 45);
        let nursing = beds(rng, nursing_home, 24, 60);
        let dementia = beds(rng, has_dementia, 8, 30);
        let free = residential.1 + nursing.1 + dementia.1;
        let updated = spec.start.and_time(NaiveTime::MIN)
            - Duration::minutes(rng.random_range(60..7 * 24 * 60));
        let fields = vec![
            location,
            ods,
            name,
            pick(rng, PROVIDERS).to_string(),
            local_authority(&address.town).to_string(),
            address.postcode,
            residential.0.to_string(),
            residential.1.to_string(),
            nursing.0.to_string(),
            nursing.1.to_string(),
            dementia.0.to_string(),
            dementia.1.to_string(),
            if free > 0 { "Yes" } else { "No" }.to_string(),
            updated.format("%d/%m/%Y %H:%M").to_string(),
        ];
        sheet.record(&fields);
        last = fields;
    }
    let mut f = last.clone();
    f[0] = "1-1000000001".into();
    f[2] = "Rose Court, Ossett".into();
    let line = sheet.join_unquoted(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::FieldCount,
        "a comma inside Location Name, unquoted",
    );
    let mut f = last.clone();
    f[0] = "1-1000000002".into();
    let (d, m, y) = impossible_day(spec.start);
    f[13] = format!("{d:02}/{m:02}/{y} 09:15");
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::ImpossibleDate,
        format!("Last Updated {}", f[13]),
    );
    let mut f = last;
    f[0] = "1-1000000003".into();
    f[1] = "VN-3K".into();
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::UnknownCode,
        "ODS Code VN-3K, not an ODS code",
    );
    sheet.finish(format!("capacity_tracker_{}.csv", stamp(spec.start)))
}

/// Pathway code and name of each virtual ward.
const PATHWAYS: &[(&str, &str)] = &[
    ("FRA", "Frailty"),
    ("ARI", "Acute respiratory infection"),
    ("HF", "Heart failure"),
    ("PAED", "Paediatrics"),
];

/// The virtual ward platform's capacity snapshot, the day before the start
/// and on it: the second replaces the first row for row.
pub(crate) fn virtual_wards(
    trust: &Trust,
    spec: &ExtractSpec,
    rng: &mut SynthRng,
) -> Vec<ExtractFile> {
    let commissioned: Vec<u32> = PATHWAYS
        .iter()
        .map(|(code, _)| match *code {
            "FRA" => rng.random_range(30..60),
            "ARI" => rng.random_range(20..40),
            _ => rng.random_range(8..20),
        })
        .collect();
    [spec.start - Duration::days(1), spec.start]
        .into_iter()
        .map(|day| snapshot(trust, day, &commissioned, rng))
        .collect()
}

fn snapshot(
    trust: &Trust,
    day: NaiveDate,
    commissioned: &[u32],
    rng: &mut SynthRng,
) -> ExtractFile {
    let mut sheet = Sheet::new(',', false, Encoding::Utf8);
    sheet.header(&[
        "virtual_ward_id",
        "virtual_ward_name",
        "provider_ods_code",
        "pathway_code",
        "commissioned_beds",
        "occupied_beds",
        "available_beds",
        "snapshot_at",
    ]);
    let at = format!("{}T07:00:00Z", day.format("%Y-%m-%d"));
    let mut last = Vec::new();
    for (&(code, name), &beds) in PATHWAYS.iter().zip(commissioned) {
        let occupied = rng.random_range(beds * 6 / 10..=beds);
        let fields = vec![
            format!("{}-VW-{code}", trust.ods_code),
            format!("{} Virtual Ward", name),
            trust.ods_code.clone(),
            code.to_string(),
            beds.to_string(),
            occupied.to_string(),
            (beds - occupied).to_string(),
            at.clone(),
        ];
        sheet.record(&fields);
        last = fields;
    }
    let mut f = last.clone();
    f[0] = format!("{}-VW-COPD", trust.ods_code);
    f[1] = "COPD Virtual Ward".into();
    f.remove(6);
    let line = sheet.join(&f);
    sheet.fault(rng, line, FaultKind::FieldCount, "available_beds missing");
    let mut f = last.clone();
    f[0] = format!("{}-VW-OPAT", trust.ods_code);
    f[1] = "Antibiotic therapy Virtual Ward".into();
    let (d, m, y) = impossible_day(day);
    f[7] = format!("{y}-{m:02}-{d:02}T07:00:00Z");
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::ImpossibleDate,
        format!("snapshot_at {}", f[7]),
    );
    let mut f = last;
    f[0] = format!("{}-VW-RESP", trust.ods_code);
    f[1] = "Respiratory Virtual Ward".into();
    f[3] = "RESP".into();
    let line = sheet.join(&f);
    sheet.fault(
        rng,
        line,
        FaultKind::UnknownCode,
        "pathway_code RESP, not in the platform's published list",
    );
    sheet.finish(format!("virtual_ward_capacity_{}.csv", stamp(day)))
}
