//! The flat extracts a trust's operational systems send, as those systems
//! write them, for the mappings in `mappings/` to load.
//!
//! | file | written as | system |
//! |---|---|---|
//! | `theatre_sessions_<date>.csv` | UTF-8, `dd/mm/yyyy` dates with separate `HH:MM` times | theatre management system: session plan |
//! | `theatre_bookings_<date>.csv` | Windows-1252, CRLF, quoted `SURNAME, Given` names, `dd/mm/yyyy HH:MM` | theatre management system: cases booked on those sessions |
//! | `pre_op_assessments_<date>.csv` | UTF-8 with BOM, CRLF, `dd/mm/yyyy` and `dd/mm/yyyy HH:MM` | pre-operative assessment clinic: each booked patient's assessment, outcome, validity and MRSA screen |
//! | `theatre_case_times_<date>.csv` | UTF-8, `dd/mm/yyyy HH:MM` | theatre management system: each case operated on in the four weeks before, into theatre to out |
//! | `medic_leave_<date>.txt` | tab-separated, `dd-Mon-yyyy HH:MM` | consultants' leave from the medical rostering system |
//! | `roster_duties_<date>.csv` | UTF-8 with BOM, CRLF, two title lines, `dd/mm/yyyy HH:MM` | e-rostering (HealthRoster "Assigned Duties by Person") |
//! | `capacity_tracker_<date>.csv` | UTF-8 with BOM, CRLF, one line per care home with beds and vacancies by type | Capacity Tracker export for the ICB's care homes |
//! | `virtual_ward_capacity_<date>.csv` | UTF-8, RFC 3339 times; the day before's file too | virtual ward platform |
//! | `vaccine_stock_<date>.txt` | Windows-1252, CRLF, pipe-separated, dm+d codes, `yyyymmdd` expiry | pharmacy stock system |
//! | `ward_stock_<date>.csv` | UTF-8, NHS Supply Chain codes, `dd/mm/yyyy` | ward top-up (imprest) count |
//! | `supplies_transactions_<date>.csv` | headerless, ISO dates | inventory system: receipts, issues, returns, transfers, wastage |
//! | `vaccination_bookings_<date>.csv` | UTF-8, `dd/mm/yyyy` dates, booked and cancelled | vaccination booking system: appointments by site and dm+d product for the days from the count |
//! | `vaccinations_given_<date>.csv` | UTF-8, CRLF, ISO dates | point-of-care vaccination record: each dose given (or not) by batch, in the four weeks before |
//! | `vaccine_movements_<date>.csv` | semicolon-separated, ISO dates | pharmacy stock system: vaccine deliveries and wastage with its reason |
//!
//! [`supply_year`] writes a year of ward supplies instead of a fortnight:
//! `supplies_catalogue_<date>.csv` (each item's NPC, GTIN, category, lead
//! time, shelf life, criticality and equivalent items), `ward_stock_<date>.csv`
//! with every month-end count, `supplies_transactions_<date>.csv` with
//! every movement of the year, and `batch_stock_<date>.csv` (batches on
//! hand with their expiry on the last day), with what it planted as truth.
//!
//! Everything is consistent with the [`Trust`]: theatres and stores sit on
//! its sites, rosters cover its wards (a unit's site and ward code are the
//! instance's ward id `site:ward`), sessions are led by its consultants and
//! anaesthetised by its critical-care consultants, a session whose
//! consultant has approved leave that day is released and carries no
//! bookings, and each session's booked minutes are the sum of its cases.
//!
//! Each file also holds a few lines of the kinds real extracts carry: a
//! wrong number of fields, a date that cannot exist, a code the receiving
//! mapping does not know. [`ExtractFile::faults`] says where they are.
//!
//! dm+d codes are real ids of COVID-19 vaccine products (valid SNOMED CT
//! check digits); NHS Supply Chain codes are shaped like NPCs (three letters
//! and three digits) but are not looked up in the catalogue; NHS numbers are
//! from the 999 range that is never issued.

mod capacity;
mod clinics;
mod pre_op;
mod roster;
mod sheet;
mod stock;
mod supplies;
mod theatre;
mod theatre_day;

pub use clinics::{ClinicTruth, CoverTruth, WastageTruth};
pub use supplies::{
    supply_year, PlantedDiscrepancy, PlantedExpiry, PlantedImbalance, SeriesTruth, SupplyItem,
    SupplyTruth, SupplyYear, SupplyYearSpec, CATALOGUE as SUPPLY_CATALOGUE,
};
pub use theatre::HISTORY_DAYS;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::SynthError;
use crate::rng::{rng_for, stream, SynthRng};
use crate::trust::Trust;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractSpec {
    /// The day the extracts are taken: plans (theatre lists, rosters) run
    /// from it, stock counts are made on it, transactions run up to it. The
    /// theatre plan also holds the four weeks of lists before it, which
    /// have run.
    pub start: NaiveDate,
    /// Days covered by plans and by the transaction history.
    pub days: u32,
    /// Care homes in the Capacity Tracker export.
    pub care_homes: usize,
}

impl Default for ExtractSpec {
    fn default() -> Self {
        ExtractSpec {
            start: NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date"),
            days: 14,
            care_homes: 24,
        }
    }
}

impl ExtractSpec {
    fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: &str| Err(SynthError::InvalidExtractSpec(m.to_string()));
        if !(1..=92).contains(&self.days) {
            return bad("days must be 1 to 92");
        }
        if !(1..=2000).contains(&self.care_homes) {
            return bad("care_homes must be 1 to 2000");
        }
        if !(2000..=2200).contains(&self.start.year()) {
            return bad("start must be between the years 2000 and 2200");
        }
        Ok(())
    }
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractFile {
    /// File name, e.g. `theatre_sessions_20260302.csv`.
    pub name: String,
    /// The file's bytes, in the source system's encoding.
    pub bytes: Vec<u8>,
    /// Good data lines (header and title lines excluded).
    pub records: usize,
    /// The faulty lines, in line order.
    pub faults: Vec<Fault>,
}

/// A line written wrong on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// 1-based line number in the file, counting title and header lines.
    pub line: u64,
    /// What is wrong with it.
    pub kind: FaultKind,
    /// The field and value concerned, in words.
    pub detail: String,
}

/// The kinds of faulty line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Too many fields (an unquoted delimiter inside a value) or too few (a
    /// line cut short).
    FieldCount,
    /// A date or time that does not exist, such as 30 February.
    ImpossibleDate,
    /// A code the receiving mapping does not know.
    UnknownCode,
}

impl FaultKind {
    /// In words, for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::FieldCount => "wrong number of fields",
            FaultKind::ImpossibleDate => "impossible date",
            FaultKind::UnknownCode => "unknown code",
        }
    }
}

/// Generate every extract for `trust`. The same trust, seed and spec always
/// give byte-identical files.
pub fn generate(
    trust: &Trust,
    seed: u64,
    spec: &ExtractSpec,
) -> Result<Vec<ExtractFile>, SynthError> {
    spec.validate()?;
    let rng = |k: u64| -> SynthRng { rng_for(seed, stream::EXTRACTS + k) };
    let mut files = theatre::generate(trust, spec, &mut rng(0));
    files.push(roster::generate(trust, spec, &mut rng(1)));
    files.push(capacity::care_homes(trust, spec, &mut rng(2)));
    files.extend(capacity::virtual_wards(trust, spec, &mut rng(3)));
    let (vaccines, counted) = stock::vaccines(trust, spec, &mut rng(4));
    files.push(vaccines);
    files.push(stock::ward_stock(trust, spec, &mut rng(5)));
    files.push(stock::transactions(trust, spec, &mut rng(6)));
    files.extend(clinics::generate(&counted, &sites(trust), spec, &mut rng(7)).files);
    Ok(files)
}

/// The truth the vaccination clinics' files of [`generate`] plant: each
/// site's stock against its bookings, and what it received, gave and
/// wasted.
pub fn clinic_truth(
    trust: &Trust,
    seed: u64,
    spec: &ExtractSpec,
) -> Result<ClinicTruth, SynthError> {
    spec.validate()?;
    let rng = |k: u64| -> SynthRng { rng_for(seed, stream::EXTRACTS + k) };
    let (_, counted) = stock::vaccines(trust, spec, &mut rng(4));
    Ok(clinics::generate(&counted, &sites(trust), spec, &mut rng(7)).truth)
}

fn sites(trust: &Trust) -> Vec<String> {
    trust.sites.iter().map(|s| s.code.clone()).collect()
}

/// `yyyymmdd`, as file names carry the extract date.
fn stamp(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// UK-style `dd/mm/yyyy`.
fn dmy(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// A day that cannot exist in the month of `d`: the 30th of February, or
/// the 31st of a thirty-day month.
fn impossible_day(d: NaiveDate) -> (u32, u32, i32) {
    match d.month() {
        1..=3 => (30, 2, d.year()),
        4..=6 => (31, 4, d.year()),
        7..=9 => (31, 9, d.year()),
        _ => (31, 11, d.year()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrustSpec;

    #[test]
    fn every_file_has_records_and_faults_of_all_three_kinds() {
        let trust = Trust::generate(5, TrustSpec::default()).unwrap();
        let files = generate(&trust, 5, &ExtractSpec::default()).unwrap();
        assert_eq!(files.len(), 15);
        for f in &files {
            assert!(f.records > 0, "{}", f.name);
            let mut kinds: Vec<FaultKind> = f.faults.iter().map(|x| x.kind).collect();
            kinds.sort_by_key(|k| k.as_str());
            kinds.dedup();
            assert_eq!(kinds.len(), 3, "{}: {:?}", f.name, f.faults);
            let lines = f.bytes.split(|&b| b == b'\n').count() as u64;
            assert!(f.faults.iter().all(|x| x.line <= lines), "{}", f.name);
        }
        let again = generate(&trust, 5, &ExtractSpec::default()).unwrap();
        assert_eq!(files, again);
        let other = generate(&trust, 6, &ExtractSpec::default()).unwrap();
        assert_ne!(files[0].bytes, other[0].bytes);
    }

    #[test]
    fn impossible_days_are_impossible() {
        for m in 1..=12 {
            let (d, m2, y) = impossible_day(NaiveDate::from_ymd_opt(2028, m, 1).unwrap());
            assert!(NaiveDate::from_ymd_opt(y, m2, d).is_none());
        }
    }
}
