//! Definitions are read, checked and compiled as written; mistakes are
//! named; the ATLAS subset comes in meaning the same, and the rest is
//! refused by name.

use chrono::NaiveDate;
use fdp_cohort::{atlas, compile, compile_at, Cohort, CohortError, Inputs, ReferenceDate, Span};

fn inputs() -> Inputs {
    Inputs {
        people: "SELECT * FROM person".into(),
        events: "SELECT * FROM coded".into(),
    }
}

const REGISTER: &str = r#"
name = "dm"
title = "Diabetes register"
reference_date = "2027-03-31"
[value_sets.DM_COD]
title = "Diabetes mellitus"
codes = ["44054006", "46635009"]
[value_sets.DMRES_COD]
title = "Diabetes resolved"
codes = ["315051004"]
[value_sets.FOOT]
title = "Foot examination"
codes = ["401191002"]
[[include]]
name = "diabetes, not resolved since"
latest = "DM_COD"
not_followed_by = "DMRES_COD"
[[include]]
age = { at_least = "17 years" }
[[exclude]]
name = "a foot examination in the last 12 months"
event = "FOOT"
within = "12 months"
"#;

#[test]
fn spans_read_as_people_write_them() {
    assert_eq!("12 months".parse::<Span>(), Ok(Span::Months(12)));
    assert_eq!("1 year".parse::<Span>(), Ok(Span::Months(12)));
    assert_eq!("5 years".parse::<Span>(), Ok(Span::Months(60)));
    assert_eq!("2 weeks".parse::<Span>(), Ok(Span::Days(14)));
    assert!("twelve months".parse::<Span>().is_err());
    assert!("12".parse::<Span>().is_err());
    // A birthday on 29 February is reached on 1 March in a common year.
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert_eq!(
        Span::Months(216).before(d("2026-02-28")),
        Some(d("2008-02-28"))
    );
    assert_eq!(
        Span::Months(216).before(d("2026-03-01")),
        Some(d("2008-03-01"))
    );
}

#[test]
fn a_register_compiles_to_one_pass_with_its_dates() {
    let c = Cohort::from_toml(REGISTER).unwrap();
    let sql = compile(&c, None, &inputs()).unwrap().sql;
    // Aged 17 on 31 March 2027: born on or before 31 March 2010.
    assert!(
        sql.contains("people.date_of_birth <= DATE '2010-03-31'"),
        "{sql}"
    );
    // The last 12 months: after 31 March 2026.
    assert!(sql.contains("event_date > DATE '2026-03-31'"), "{sql}");
    assert!(
        sql.contains("WHERE e.event_date <= DATE '2027-03-31'"),
        "{sql}"
    );
    assert!(sql.contains("p.registered_gp IS NOT NULL"), "{sql}");
    assert_eq!(
        sql.matches("FROM (SELECT * FROM coded) e").count(),
        1,
        "{sql}"
    );
    assert!(sql.contains("('DM_COD', '46635009')"), "{sql}");
    // Another date moves every window with it.
    let later = compile(&c, NaiveDate::from_ymd_opt(2028, 3, 31), &inputs()).unwrap();
    assert!(later.sql.contains("DATE '2011-03-31'"));
}

#[test]
fn a_reference_date_can_be_a_parameter_of_the_query() {
    // One approved question for every date: each window is written from
    // the parameter, and no day of the definition's own is left in.
    let c = Cohort::from_toml(REGISTER).unwrap();
    let day = ReferenceDate::Parameter("as_at".into());
    let sql = compile_at(&c, &day, &inputs()).unwrap().sql;
    assert!(
        sql.contains("people.date_of_birth <= (CAST(:as_at AS DATE) - INTERVAL '204 months')"),
        "{sql}"
    );
    assert!(
        sql.contains("event_date > (CAST(:as_at AS DATE) - INTERVAL '12 months')"),
        "{sql}"
    );
    assert!(
        sql.contains("WHERE e.event_date <= CAST(:as_at AS DATE)"),
        "{sql}"
    );
    assert!(!sql.contains("DATE '"), "{sql}");
    // An age on a date the definition fixes stays that date's.
    let fixed = REGISTER.replace(
        "age = { at_least = \"17 years\" }",
        "age = { at_least = \"65 years\", on = \"2027-03-31\" }",
    );
    let sql = compile_at(&Cohort::from_toml(&fixed).unwrap(), &day, &inputs())
        .unwrap()
        .sql;
    assert!(
        sql.contains("people.date_of_birth <= DATE '1962-03-31'"),
        "{sql}"
    );
}

#[test]
fn mistakes_are_named_where_they_are() {
    let e = Cohort::from_toml(&REGISTER.replace(
        "not_followed_by = \"DMRES_COD\"",
        "not_followed_by = \"DMRES\"",
    ))
    .unwrap_err();
    let CohortError::Invalid { problems, .. } = e else {
        panic!("{e}")
    };
    assert!(
        problems
            .iter()
            .any(|p| p.contains("include 1 (diabetes, not resolved since): no value set DMRES")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("value set DMRES_COD is declared but no rule uses it")),
        "{problems:?}"
    );

    let e = Cohort::from_toml(&REGISTER.replace(
        "age = { at_least = \"17 years\" }",
        "age = { at_least = \"17 years\" }\nsex = [\"female\"]",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("exactly one of event, latest, age, sex"),
        "{e}"
    );
    let e = Cohort::from_toml(&REGISTER.replace("17 years", "seventeen")).unwrap_err();
    assert!(e.to_string().contains("not a span of time"), "{e}");
    let e = Cohort::from_toml(&REGISTER.replace("within = \"12 months\"", "min_count = 0"))
        .unwrap_err();
    assert!(
        e.to_string().contains("put the rule under [[exclude]]"),
        "{e}"
    );
    let e = Cohort::from_toml(&REGISTER.replace(
        "codes = [\"401191002\"]",
        "codes = [\"401191002\", \"x'); DROP TABLE patient; --\"]",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("is not a code"), "{e}");
    let no_date =
        Cohort::from_toml(&REGISTER.replace("reference_date = \"2027-03-31\"\n", "")).unwrap();
    assert!(matches!(
        compile(&no_date, None, &inputs()),
        Err(CohortError::NoReferenceDate(_))
    ));
}

#[test]
fn a_rule_by_age_joins_the_birth_date_and_counts_days() {
    let c = Cohort::from_toml(
        r#"
name = "mmr2-at-5"
title = "MMR1 and MMR2 by the fifth birthday"
population = "everyone"
[value_sets.MMR]
title = "MMR or MMRV given"
codes = ["38598009"]
[[include]]
age = { at_least = "5 years", under = "6 years" }
[[include]]
event = "MMR"
min_count = 2
by_age = "5 years"
"#,
    )
    .unwrap();
    let sql = compile(&c, NaiveDate::from_ymd_opt(2026, 12, 31), &inputs())
        .unwrap()
        .sql;
    assert!(
        sql.contains("event_date <= date_of_birth + INTERVAL '60 months'"),
        "{sql}"
    );
    assert!(sql.contains("count(DISTINCT CASE"), "{sql}");
    assert!(sql.contains(">= 2"), "{sql}");
    assert!(
        sql.contains("JOIN people ON people.patient_id = e.patient_id"),
        "{sql}"
    );
    assert!(!sql.contains("registered_gp IS NOT NULL"), "{sql}");
}

const ATLAS_DM: &str = r#"{
  "ConceptSets": [
    {"id": 0, "name": "Diabetes mellitus", "expression": {"items": [
      {"concept": {"CONCEPT_ID": 201820, "CONCEPT_CODE": "73211009", "VOCABULARY_ID": "SNOMED"},
       "isExcluded": false, "includeDescendants": true, "includeMapped": false}]}},
    {"id": 1, "name": "Diabetes resolved", "expression": {"items": [
      {"concept": {"CONCEPT_ID": 0, "CONCEPT_CODE": "315051004", "VOCABULARY_ID": "SNOMED"},
       "isExcluded": false, "includeDescendants": false, "includeMapped": false}]}}
  ],
  "PrimaryCriteria": {
    "CriteriaList": [{"ConditionOccurrence": {"CodesetId": 0}}],
    "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
    "PrimaryCriteriaLimit": {"Type": "Last"}
  },
  "QualifiedLimit": {"Type": "Last"},
  "ExpressionLimit": {"Type": "Last"},
  "InclusionRules": [
    {"name": "Aged 17+ at index", "expression": {"Type": "ALL", "CriteriaList": [],
      "DemographicCriteriaList": [{"Age": {"Value": 17, "Op": "gte"}}], "Groups": []}},
    {"name": "No resolved code on/after latest diagnosis", "expression": {"Type": "ALL",
      "CriteriaList": [{
        "Criteria": {"Observation": {"CodesetId": 1}},
        "StartWindow": {"Start": {"Days": 0, "Coeff": 1}, "End": {"Coeff": 1}},
        "Occurrence": {"Type": 0, "Count": 0}}],
      "DemographicCriteriaList": [], "Groups": []}},
    {"name": "Seen in the last year", "expression": {"Type": "ALL",
      "CriteriaList": [{
        "Criteria": {"Observation": {"CodesetId": 1}},
        "StartWindow": {"Start": {"Days": 365, "Coeff": -1}, "End": {"Days": 0, "Coeff": 1}},
        "Occurrence": {"Type": 2, "Count": 2}}],
      "DemographicCriteriaList": [], "Groups": []}}
  ],
  "CensoringCriteria": [],
  "CollapseSettings": {"CollapseType": "ERA", "EraPad": 0},
  "CensorWindow": {}
}"#;

#[test]
fn an_atlas_register_imports_as_latest_not_followed_by() {
    let im = atlas::import(ATLAS_DM, "atlas-dm", "Diabetes (ATLAS)").unwrap();
    let c = &im.cohort;
    assert_eq!(c.value_sets["CS0"].codes, vec!["73211009"]);
    let latest = c
        .include
        .iter()
        .find(|r| r.latest.is_some())
        .expect("latest rule");
    assert_eq!(latest.latest.as_deref(), Some("CS0"));
    assert_eq!(latest.not_followed_by.as_deref(), Some("CS1"));
    assert!(
        c.include
            .iter()
            .all(|r| r.name.as_deref() != Some("index event")),
        "{:#?}",
        c.include
    );
    let age = c
        .include
        .iter()
        .find_map(|r| r.age.clone())
        .expect("age rule");
    assert_eq!(age.at_least, Some(Span::Months(204)));
    let seen = c
        .include
        .iter()
        .find(|r| r.event.is_some())
        .expect("event rule");
    assert_eq!(
        (seen.min_count, seen.within),
        (Some(2), Some(Span::Days(365)))
    );
    assert!(
        im.warnings
            .iter()
            .any(|w| w.contains("descendants are not added")),
        "{:?}",
        im.warnings
    );
    // It compiles like a written one.
    compile(c, NaiveDate::from_ymd_opt(2027, 3, 31), &inputs()).unwrap();
}

#[test]
fn what_atlas_can_say_and_cohorts_cannot_is_refused_by_name() {
    let cases = [
        (
            ATLAS_DM.replace(
                "\"CensoringCriteria\": []",
                "\"CensoringCriteria\": [{\"Death\": {}}]",
            ),
            "CensoringCriteria",
        ),
        (
            ATLAS_DM.replace(
                "\"VOCABULARY_ID\": \"SNOMED\"}",
                "\"VOCABULARY_ID\": \"ICD10CM\"}",
            ),
            "ICD10CM",
        ),
        (
            ATLAS_DM.replace(
                "{\"ConditionOccurrence\": {\"CodesetId\": 0}}",
                "{\"VisitOccurrence\": {\"CodesetId\": 0}}",
            ),
            "VisitOccurrence",
        ),
        (
            ATLAS_DM.replace("\"Type\": 2, \"Count\": 2", "\"Type\": 1, \"Count\": 3"),
            "occurrence type 1 count 3",
        ),
        (
            ATLAS_DM.replace(
                "{\"Days\": 365, \"Coeff\": -1}, \"End\": {\"Days\": 0, \"Coeff\": 1}",
                "{\"Days\": 30, \"Coeff\": 1}, \"End\": {\"Days\": 60, \"Coeff\": 1}",
            ),
            "a window after the index event",
        ),
        (
            ATLAS_DM.replace(
                "\"Type\": \"ALL\", \"CriteriaList\": [],",
                "\"Type\": \"AT_LEAST\", \"Count\": 1, \"CriteriaList\": [],",
            ),
            "group type AT_LEAST",
        ),
        (
            ATLAS_DM.replace(
                "{\"CodesetId\": 0}}]",
                "{\"CodesetId\": 0, \"OccurrenceStartDate\": {}}}]",
            ),
            "ConditionOccurrence.OccurrenceStartDate",
        ),
    ];
    for (json, named) in cases {
        let e = atlas::import(&json, "x", "x").unwrap_err();
        assert!(matches!(e, CohortError::AtlasUnsupported(_)), "{e}");
        assert!(e.to_string().contains(named), "expected {named:?} in: {e}");
    }
    assert!(matches!(
        atlas::import("[1", "x", "x"),
        Err(CohortError::AtlasSyntax(_))
    ));
}
