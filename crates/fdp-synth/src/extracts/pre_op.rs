//! The pre-operative assessment clinic's report: for each patient booked on
//! a list, their assessment (booked, attended, or missed), its outcome, the
//! day it stops being valid, and their MRSA swab.
//!
//! How ready patients are follows the 6-4-2 timetable: a list that ran had
//! every patient assessed (except those it cancelled on the day for want
//! of an assessment); on a list inside the two-week lock most patients are
//! assessed and fit, and the rest are the ones a scheduler must chase (an
//! assessment still to come, one that lapses before the list, results
//! awaited, found unfit, or none at all); lists further out are still
//! being assessed.

use chrono::{Duration, NaiveDate};
use rand::Rng;

use super::sheet::{Encoding, Sheet};
use super::{dmy, impossible_day, ExtractFile, FaultKind};

/// Days an assessment found fit stays valid.
pub(super) const VALID_DAYS: i64 = 84;

/// Where a booked patient stands with their assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Readiness {
    /// Assessed fit, valid on the day of the list.
    Fit,
    /// Assessed fit, but the assessment lapses before the list.
    Lapses,
    /// An assessment booked, not yet attended.
    Booked,
    /// Assessed; results (bloods, ECG) awaited.
    AwaitingResults,
    /// Assessed and found unfit for now.
    Unfit,
    /// No assessment at all.
    None,
}

impl Readiness {
    /// How ready a patient booked on a list `days_out` days after the
    /// extract day is (negative: the list has run).
    pub(super) fn draw(rng: &mut impl Rng, days_out: i64) -> Readiness {
        let x: f64 = rng.random();
        let shares: &[(f64, Readiness)] = if days_out < 0 {
            &[(1.0, Readiness::Fit)]
        } else if days_out < 14 {
            &[
                (0.84, Readiness::Fit),
                (0.05, Readiness::Booked),
                (0.03, Readiness::Lapses),
                (0.02, Readiness::AwaitingResults),
                (0.01, Readiness::Unfit),
                (0.05, Readiness::None),
            ]
        } else if days_out < 28 {
            &[
                (0.55, Readiness::Fit),
                (0.30, Readiness::Booked),
                (0.15, Readiness::None),
            ]
        } else {
            &[
                (0.2, Readiness::Fit),
                (0.3, Readiness::Booked),
                (0.5, Readiness::None),
            ]
        };
        let mut at = 0.0;
        for &(share, r) in shares {
            at += share;
            if x < at {
                return r;
            }
        }
        shares[shares.len() - 1].1
    }
}

/// A time on `d` in clinic hours, on the quarter hour.
fn appointment(rng: &mut impl Rng, d: NaiveDate) -> String {
    format!(
        "{} {:02}:{:02}",
        dmy(d),
        rng.random_range(8..17),
        15 * rng.random_range(0..4)
    )
}

/// The report being written.
pub(super) struct PreOpReport {
    sheet: Sheet,
    next: u32,
    last: Vec<String>,
}

impl PreOpReport {
    pub(super) fn new(rng: &mut impl Rng) -> PreOpReport {
        let mut sheet = Sheet::new(',', true, Encoding::Utf8Bom);
        sheet.header(&[
            "POA ID",
            "Booking Ref",
            "NHS Number",
            "Referred To POA",
            "Appointment",
            "Attendance",
            "Outcome",
            "Outcome Date",
            "Valid Until",
            "MRSA Screen",
            "Notes",
        ]);
        PreOpReport {
            sheet,
            next: rng.random_range(10_000..90_000),
            last: Vec::new(),
        }
    }

    /// The assessment of the patient booked as `booking_ref` (NHS number
    /// `nhs`) on a list on `list_day`, as `readiness` says, the report run
    /// on `today`. Nothing is written for a patient never sent.
    pub(super) fn record(
        &mut self,
        rng: &mut impl Rng,
        booking_ref: &str,
        nhs: &str,
        list_day: NaiveDate,
        today: NaiveDate,
        readiness: Readiness,
    ) {
        if readiness == Readiness::None {
            return;
        }
        // When the assessment was (or is to be) held.
        let seen = match readiness {
            Readiness::Booked => {
                // Still to come, before the list.
                let lead = (list_day - today).num_days().max(2);
                today + Duration::days(rng.random_range(1..lead))
            }
            Readiness::Lapses => {
                list_day - Duration::days(rng.random_range(VALID_DAYS + 1..VALID_DAYS + 30))
            }
            _ => {
                // Held before today, and recently enough to be valid on
                // the day of the list.
                let nearest = ((list_day - today).num_days() + 1).max(3);
                let furthest = (VALID_DAYS - 7).max(nearest);
                list_day - Duration::days(rng.random_range(nearest..=furthest))
            }
        };
        let referred = seen - Duration::days(rng.random_range(3..21));
        let (attendance, outcome, outcome_date, valid, mrsa, notes) = match readiness {
            Readiness::Booked => ("Booked", "", String::new(), String::new(), "", ""),
            Readiness::AwaitingResults => (
                "Attended",
                "Awaiting Results",
                String::new(),
                String::new(),
                "Awaiting",
                "ECG to be reviewed by anaesthetist",
            ),
            Readiness::Unfit => (
                "Attended",
                "Unfit",
                dmy(seen),
                String::new(),
                "Negative",
                "HbA1c 81; refer to GP for optimisation",
            ),
            _ => (
                "Attended",
                "Fit",
                dmy(seen),
                dmy(seen + Duration::days(VALID_DAYS)),
                if rng.random_bool(0.03) {
                    "Positive"
                } else {
                    "Negative"
                },
                "",
            ),
        };
        self.next += 1;
        let fields = vec![
            format!("POA{}", self.next),
            booking_ref.to_string(),
            nhs.to_string(),
            appointment(rng, referred),
            appointment(rng, seen),
            attendance.to_string(),
            outcome.to_string(),
            outcome_date,
            valid,
            mrsa.to_string(),
            notes.to_string(),
        ];
        self.sheet.record(&fields);
        if readiness == Readiness::Fit {
            self.last = fields;
        }
    }

    /// The report with its faulty lines, as `name`, run on `today`.
    pub(super) fn finish(
        mut self,
        rng: &mut impl Rng,
        today: NaiveDate,
        name: String,
    ) -> ExtractFile {
        if !self.last.is_empty() {
            let mut f = self.last.clone();
            self.next += 1;
            f[0] = format!("POA{}", self.next);
            f[10] = "Latex allergy, first on list".into();
            let line = self.sheet.join_unquoted(&f);
            self.sheet.fault(
                rng,
                line,
                FaultKind::FieldCount,
                "a comma inside Notes, unquoted",
            );
            let mut f = self.last.clone();
            self.next += 1;
            f[0] = format!("POA{}", self.next);
            let (d, m, y) = impossible_day(today);
            f[8] = format!("{d:02}/{m:02}/{y}");
            let line = self.sheet.join(&f);
            self.sheet.fault(
                rng,
                line,
                FaultKind::ImpossibleDate,
                format!("Valid Until {}", f[8]),
            );
            let mut f = self.last.clone();
            self.next += 1;
            f[0] = format!("POA{}", self.next);
            f[6] = "Fit?".into();
            let line = self.sheet.join(&f);
            self.sheet
                .fault(rng, line, FaultKind::UnknownCode, "Outcome Fit?");
        }
        self.sheet.finish(name)
    }
}
