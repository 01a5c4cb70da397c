//! The generated trust and its bed register.

use std::collections::BTreeSet;

use fdp_synth::trust::{BedStatus, BedType, Division, WardKind};
use fdp_synth::{SynthError, Trust, TrustSpec};

#[test]
fn default_trust_is_a_mid_size_acute_trust() {
    let t = Trust::generate(1, TrustSpec::default()).unwrap();
    assert_eq!(t.ods_code, "RXX");
    assert_eq!(t.sites.len(), 3);
    for (i, s) in t.sites.iter().enumerate() {
        assert_eq!(s.code, format!("RXX{:02}", i + 1));
        assert!(!s.departments.is_empty());
    }
    let beds = t.bed_count();
    let wards: Vec<_> = t.wards().collect();
    eprintln!(
        "{beds} beds in {} wards, {} open",
        wards.len(),
        t.open_bed_count()
    );
    assert!((560..=660).contains(&beds), "{beds} beds");
    assert!((22..=30).contains(&wards.len()));
    let kinds: BTreeSet<WardKind> = wards.iter().map(|(_, w)| w.kind).collect();
    for k in [
        WardKind::AcuteMedicalUnit,
        WardKind::SurgicalAssessmentUnit,
        WardKind::IntensiveCare,
        WardKind::HighDependency,
        WardKind::GeneralMedicine,
        WardKind::CareOfTheElderly,
        WardKind::Respiratory,
        WardKind::Cardiology,
        WardKind::Stroke,
        WardKind::GeneralSurgery,
        WardKind::TraumaOrthopaedics,
        WardKind::Urology,
        WardKind::Gynaecology,
        WardKind::Paediatrics,
        WardKind::Maternity,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing");
    }
    let mut codes = BTreeSet::new();
    for (site, ward) in &wards {
        assert!(
            codes.insert(ward.code.clone()),
            "ward code {} repeats",
            ward.code
        );
        let n = ward.beds.len();
        if ward.kind.division() == Division::CriticalCare || ward.kind == WardKind::LabourWard {
            assert!((8..=20).contains(&n), "{} has {n}", ward.code);
        } else {
            assert!((12..=32).contains(&n), "{} has {n}", ward.code);
        }
        let mut bays: std::collections::BTreeMap<&str, usize> = Default::default();
        for bed in &ward.beds {
            *bays.entry(&bed.bay).or_default() += 1;
            assert!(bed
                .id
                .starts_with(&format!("{}-{}-{}-", site.code, ward.code, bed.bay)));
            if bed.bay.starts_with('B') {
                assert!(bed.label.starts_with("Bay "));
            }
        }
        for (bay, count) in bays {
            if bay.starts_with('B') {
                assert!(
                    (4..=6).contains(&count),
                    "{} bay {bay} has {count}",
                    ward.code
                );
            } else {
                assert_eq!(count, 1);
            }
        }
        if ward.kind.division() == Division::CriticalCare {
            assert!(ward
                .beds
                .iter()
                .all(|b| b.bed_type == BedType::CriticalCare));
        }
    }
    let ids: BTreeSet<_> = t.beds().map(|b| b.bed.id.clone()).collect();
    assert_eq!(ids.len(), beds, "bed ids are unique");
    let closed = t
        .beds()
        .filter(|b| matches!(b.bed.status, BedStatus::Closed { .. }))
        .count();
    assert!((1..=15).contains(&closed), "{closed} closed");
    assert!(t.beds().any(|b| b.bed.bed_type == BedType::SideRoom));
    assert!(!t.consultants.is_empty() && !t.clerks.is_empty());
    let first = t.beds().next().unwrap();
    let found = t
        .bed_at(
            &first.site.code,
            &first.ward.code,
            &first.bed.bay,
            &first.bed.label,
        )
        .unwrap();
    assert_eq!(found.bed.id, first.bed.id);
    assert_eq!(t.bed(&first.bed.id).unwrap().bed.id, first.bed.id);
}

#[test]
fn bed_register_csv() {
    let t = Trust::generate(2, TrustSpec::default()).unwrap();
    let csv = t.bed_register_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "site_code,site_name,ward_code,ward_name,specialty,bay,bed_id,bed_label,bed_type,status"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), t.bed_count());
    for row in &rows {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols.len(), 10, "{row}");
        assert!(matches!(cols[9], "open" | "closed"));
        assert!(cols[6].starts_with(cols[0]));
    }
    assert!(rows.iter().any(|r| r.ends_with(",closed")));
    assert!(csv.ends_with('\n'));
}

#[test]
fn generation_is_deterministic_and_serialisable() {
    let a = Trust::generate(5, TrustSpec::default()).unwrap();
    let b = Trust::generate(5, TrustSpec::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.bed_register_csv(), b.bed_register_csv());
    let c = Trust::generate(6, TrustSpec::default()).unwrap();
    assert_ne!(a, c);
    let json = serde_json::to_string(&a).unwrap();
    let back: Trust = serde_json::from_str(&json).unwrap();
    assert_eq!(a, back);
}

#[test]
fn custom_specs() {
    let spec = TrustSpec {
        ods_code: "RYY".into(),
        name: "Southvale Hospitals NHS Trust".into(),
        site_names: vec![
            "Southvale Royal Infirmary".into(),
            "Eastbrook Hospital".into(),
        ],
        target_beds: 900,
        ..TrustSpec::default()
    };
    let t = Trust::generate(3, spec).unwrap();
    assert_eq!(t.sites.len(), 2);
    assert!(t.beds().all(|b| b.bed.id.starts_with("RYY0")));
    let beds = t.bed_count();
    assert!((860..=960).contains(&beds), "{beds}");

    let small = Trust::generate(
        3,
        TrustSpec {
            site_names: vec!["Only Hospital".into()],
            target_beds: 300,
            ..TrustSpec::default()
        },
    )
    .unwrap();
    assert!(small.bed_count() < 450);

    for bad in [
        TrustSpec {
            ods_code: "rx".into(),
            ..TrustSpec::default()
        },
        TrustSpec {
            site_names: vec![],
            ..TrustSpec::default()
        },
        TrustSpec {
            closed_bed_share: 0.9,
            ..TrustSpec::default()
        },
    ] {
        assert!(matches!(
            Trust::generate(1, bad),
            Err(SynthError::InvalidTrustSpec(_))
        ));
    }
}
