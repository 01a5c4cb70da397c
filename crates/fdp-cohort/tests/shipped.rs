//! Every shipped cohort reads, checks and compiles, and cites its sources.

use chrono::NaiveDate;

#[test]
fn every_shipped_cohort_compiles_and_cites_its_sources() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cohorts");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let cohort = fdp_cohort::Cohort::from_toml(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !cohort.sources.is_empty(),
            "{} cites no source",
            cohort.name
        );
        for (name, vs) in &cohort.value_sets {
            assert!(
                vs.source.is_some(),
                "{}: value set {name} cites no source",
                cohort.name
            );
            assert!(
                vs.codes
                    .iter()
                    .all(|c| c.bytes().all(|b| b.is_ascii_digit())),
                "{}: {name}",
                cohort.name
            );
        }
        let inputs = fdp_cohort::Inputs {
            people: "SELECT * FROM people".into(),
            events: "SELECT * FROM events".into(),
        };
        let compiled = fdp_cohort::compile(&cohort, NaiveDate::from_ymd_opt(2026, 12, 31), &inputs)
            .unwrap_or_else(|e| panic!("{}: {e}", cohort.name));
        assert_eq!(compiled.outcomes.len(), cohort.outcomes.len());
        names.push(cohort.name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "diabetes-care-processes",
            "diabetes-foot-check-overdue",
            "flu-2026-27",
            "mmr-24-months",
            "mmr-5-years",
            "qof-diabetes-register"
        ]
    );
}
