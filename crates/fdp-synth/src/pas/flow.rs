//! Clinical flow: which wards take admissions, where patients move on to,
//! how they leave, and how long today's inpatients have already stayed.

use chrono::Duration;
use rand::Rng;

use crate::people::Sex;
use crate::rng::pick_weighted_by;
use crate::trust::WardKind;

/// Relative pull of a ward for emergency admissions (scaled by its free
/// beds). Most emergencies come through the assessment units; elective and
/// rehabilitation wards only fill by planned admission or transfer.
pub(super) fn emergency_weight(kind: WardKind) -> f64 {
    use WardKind::*;
    match kind {
        AcuteMedicalUnit => 6.0,
        SurgicalAssessmentUnit => 3.0,
        LabourWard => 2.0,
        Paediatrics => 2.0,
        Maternity => 1.0,
        TraumaOrthopaedics => 1.0,
        Cardiology | Stroke => 0.8,
        GeneralMedicine | CareOfTheElderly | Gynaecology => 0.5,
        GeneralSurgery => 0.4,
        Respiratory | Gastroenterology | Urology => 0.3,
        IntensiveCare | HighDependency => 0.2,
        ElectiveSurgery | ElectiveOrthopaedics | Rehabilitation => 0.0,
    }
}

/// Relative pull of a ward for planned admissions.
pub(super) fn elective_weight(kind: WardKind) -> f64 {
    use WardKind::*;
    match kind {
        ElectiveOrthopaedics | ElectiveSurgery => 3.0,
        Urology => 1.5,
        GeneralSurgery | Gynaecology => 1.0,
        TraumaOrthopaedics | Cardiology => 0.5,
        Gastroenterology => 0.3,
        _ => 0.0,
    }
}

/// Ward kinds a patient on a `kind` ward may be transferred to (including
/// a bed move within the same kind where that happens).
pub(super) fn transfer_targets(kind: WardKind) -> &'static [WardKind] {
    use WardKind::*;
    const MEDICAL: &[WardKind] = &[
        GeneralMedicine,
        CareOfTheElderly,
        Respiratory,
        Cardiology,
        Stroke,
        Gastroenterology,
        Rehabilitation,
        HighDependency,
    ];
    const SURGICAL: &[WardKind] = &[
        GeneralSurgery,
        TraumaOrthopaedics,
        Urology,
        ElectiveSurgery,
        ElectiveOrthopaedics,
        CareOfTheElderly,
        HighDependency,
    ];
    match kind {
        AcuteMedicalUnit => &[
            GeneralMedicine,
            CareOfTheElderly,
            Respiratory,
            Cardiology,
            Stroke,
            Gastroenterology,
            HighDependency,
        ],
        SurgicalAssessmentUnit => &[
            GeneralSurgery,
            TraumaOrthopaedics,
            Urology,
            Gynaecology,
            ElectiveSurgery,
            HighDependency,
        ],
        IntensiveCare => &[
            HighDependency,
            GeneralMedicine,
            GeneralSurgery,
            Respiratory,
            Cardiology,
            TraumaOrthopaedics,
            Gastroenterology,
            CareOfTheElderly,
        ],
        HighDependency => &[
            IntensiveCare,
            GeneralMedicine,
            GeneralSurgery,
            Respiratory,
            Cardiology,
            TraumaOrthopaedics,
            Gastroenterology,
            Urology,
            CareOfTheElderly,
        ],
        GeneralMedicine | CareOfTheElderly | Respiratory | Cardiology | Stroke
        | Gastroenterology => MEDICAL,
        GeneralSurgery | ElectiveSurgery | TraumaOrthopaedics | ElectiveOrthopaedics | Urology => {
            SURGICAL
        }
        Gynaecology => &[Gynaecology, GeneralSurgery, HighDependency],
        Paediatrics => &[Paediatrics],
        Maternity | LabourWard => &[Maternity, LabourWard],
        Rehabilitation => &[Rehabilitation, CareOfTheElderly],
    }
}

/// Whether a consultant of treatment function `tfc` would see this patient
/// in clinic.
pub(super) fn clinic_suits(tfc: u16, sex: Sex, age: u32) -> bool {
    match tfc {
        420 => age < 16,
        501 => sex == Sex::Female && (16..=50).contains(&age),
        502 => sex == Sex::Female && age >= 16,
        430 | 314 => age >= 65,
        // Critical care and acute medicine do not run clinics.
        192 | 326 => false,
        _ => age >= 16,
    }
}

/// NHS Data Dictionary admission method for an unplanned admission.
pub(super) fn emergency_method<R: Rng + ?Sized>(rng: &mut R, kind: WardKind) -> &'static str {
    if matches!(kind, WardKind::Maternity | WardKind::LabourWard) {
        // 31 ante partum, 32 post partum.
        return pick_weighted_by(rng, &[("31", 0.8), ("32", 0.2)], |m| m.1).0;
    }
    // 21 via A&E, 22 GP, 23 bed bureau, 24 consultant clinic, 28 other.
    pick_weighted_by(
        rng,
        &[
            ("21", 0.62),
            ("22", 0.18),
            ("23", 0.02),
            ("24", 0.08),
            ("28", 0.10),
        ],
        |m| m.1,
    )
    .0
}

/// Admission method for a planned admission: 11 waiting list, 12 booked,
/// 13 planned.
pub(super) fn elective_method<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    pick_weighted_by(rng, &[("11", 0.6), ("12", 0.25), ("13", 0.15)], |m| m.1).0
}

/// Discharge destination (PV1-36): 19 usual residence, 29 temporary
/// residence, 51 another NHS hospital, 54 care home, 65 local authority
/// residential care, 79 not applicable (patient died).
pub(super) fn discharge_destination<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    pick_weighted_by(
        rng,
        &[
            ("19", 0.82),
            ("29", 0.03),
            ("51", 0.04),
            ("54", 0.05),
            ("65", 0.02),
            ("79", 0.04),
        ],
        |d| d.1,
    )
    .0
}

/// Time already spent in hospital by patients on ordinary wards at a census,
/// as (cumulative share, days) points of its quantile function. Chosen so
/// that, together with the short-stay units, the whole hospital has a median
/// of about four days with roughly 22% over a week, 10% over two weeks and
/// 5% over three: current inpatients are dominated by long stayers even
/// though most admissions are short.
const WARD_STAY_QUANTILES: &[(f64, f64)] = &[
    (0.0, 0.02),
    (0.10, 0.5),
    (0.25, 1.5),
    (0.42, 4.0),
    (0.744, 7.0),
    (0.884, 14.0),
    (0.942, 21.0),
    (0.985, 45.0),
    (1.0, 120.0),
];

fn from_quantiles(u: f64, table: &[(f64, f64)]) -> f64 {
    for pair in table.windows(2) {
        let ((p0, d0), (p1, d1)) = (pair[0], pair[1]);
        if u <= p1 {
            return d0 + (d1 - d0) * (u - p0) / (p1 - p0);
        }
    }
    table[table.len() - 1].1
}

/// How long ago a current inpatient on a `kind` ward was admitted.
pub(super) fn elapsed_stay<R: Rng + ?Sized>(rng: &mut R, kind: WardKind) -> Duration {
    let hours = match kind {
        WardKind::AcuteMedicalUnit | WardKind::SurgicalAssessmentUnit => {
            rng.random_range(0.5..48.0)
        }
        WardKind::LabourWard => rng.random_range(1.0..36.0),
        WardKind::Maternity => rng.random_range(4.0..96.0),
        _ => from_quantiles(rng.random::<f64>(), WARD_STAY_QUANTILES) * 24.0,
    };
    Duration::seconds((hours * 3600.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert!((from_quantiles(0.42, WARD_STAY_QUANTILES) - 4.0).abs() < 1e-9);
        assert!((from_quantiles(1.0, WARD_STAY_QUANTILES) - 120.0).abs() < 1e-9);
        assert!(from_quantiles(0.0, WARD_STAY_QUANTILES) > 0.0);
    }

    #[test]
    fn every_transfer_list_is_non_empty() {
        use WardKind::*;
        for k in [
            AcuteMedicalUnit,
            SurgicalAssessmentUnit,
            IntensiveCare,
            HighDependency,
            GeneralMedicine,
            CareOfTheElderly,
            Respiratory,
            Cardiology,
            Stroke,
            Gastroenterology,
            GeneralSurgery,
            ElectiveSurgery,
            TraumaOrthopaedics,
            ElectiveOrthopaedics,
            Urology,
            Gynaecology,
            Paediatrics,
            Maternity,
            LabourWard,
            Rehabilitation,
        ] {
            assert!(!transfer_targets(k).is_empty());
        }
    }
}
