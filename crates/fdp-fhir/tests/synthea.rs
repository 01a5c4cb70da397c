//! The Synthea export in shared data validates and maps without a hand edit.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use fdp_fhir::bundle;
use serde_json::Value;

fn bundles() -> Vec<(String, Value)> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../../shared/data/synthea_fhir_r4/nimbus_covid_juvenile_10pt");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("shared data present")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_resource_validates_every_reference_resolves_and_mapped_types_map() {
    let mut all_entries = Vec::new();
    let mut urls = HashMap::new();
    for (name, b) in bundles() {
        let (kind, mut entries) = bundle::unpack(&b).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(kind, bundle::BundleKind::Batch);
        urls.extend(bundle::assign_ids(&mut entries, || {
            unreachable!("every entry has a uuid")
        }));
        all_entries.extend(entries);
    }
    let mut mapped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unmapped = 0;
    for e in &mut all_entries {
        let mut r = e.resource.take().unwrap();
        let issues: Vec<_> = fdp_fhir::validate::validate(&r)
            .into_iter()
            .filter(|i| i.is_error())
            .collect();
        assert!(issues.is_empty(), "entry {}: {issues:?}", e.index);
        let unresolved = bundle::resolve_references(&mut r, &urls);
        assert!(unresolved.is_empty(), "{unresolved:?}");
        let (_, id) = e.target.clone().unwrap();
        match fdp_fhir::map_resource(&r, &id) {
            Some(m) => m
                .rows
                .iter()
                .for_each(|(t, _)| *mapped.entry(t).or_default() += 1),
            None => unmapped += 1,
        }
    }
    assert_eq!(mapped["Patient"], 10);
    assert_eq!(mapped["Encounter"], 139);
    assert_eq!(mapped["PatientDiagnosis"], 54);
    assert_eq!(mapped["Observation"], 144);
    assert_eq!(mapped["Vaccination"], 242);
    assert_eq!(mapped["Organisation"], 36);
    assert_eq!(mapped["CareProfessional"], 36);
    // Claim, ExplanationOfBenefit, DiagnosticReport, CareTeam, CarePlan
    assert_eq!(unmapped, 139 + 139 + 18 + 17 + 17);
}
