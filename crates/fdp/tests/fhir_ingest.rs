//! FHIR R4 files loaded from the command line: the Synthea export with its
//! references resolved and answering SQL, loads that are idempotent, and bad
//! input answered by location and kept in quarantine.

mod common;

use common::*;
use serde_json::json;

const SYNTHEA: &str = "synthea_fhir_r4/nimbus_covid_juvenile_10pt";

#[test]
fn synthea_bundles_load_with_every_reference_resolved_and_answer_sql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("icb");
    let out = fdp_ok!("ingest", "fhir", "--data-dir", data, shared_data(SYNTHEA));
    let total = out.lines().find(|l| l.starts_with("total")).unwrap();
    let counts: Vec<u64> = total
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    // 1,000 distinct resource versions; Organization and Practitioner entries
    // repeat across the bundles (same id, same content): 4 unchanged.
    assert_eq!(counts, vec![666, 4, 330, 0], "{out}");

    assert_eq!(sql_count(&data, "SELECT count(*) AS n FROM patient"), 10);
    assert_eq!(sql_count(&data, "SELECT count(*) AS n FROM encounter"), 139);
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM patient_diagnosis"),
        54
    );
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM observation"),
        144
    );
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM vaccination"),
        242
    );
    // Every reference from a mapped resource points at a row that exists.
    for (table, column, target, key) in [
        ("encounter", "patient_id", "patient", "person_id"),
        ("encounter", "site_id", "organisation", "organisation_id"),
        (
            "encounter",
            "primary_consultant_id",
            "care_professional",
            "care_professional_id",
        ),
        ("patient_diagnosis", "patient_id", "patient", "person_id"),
        (
            "patient_diagnosis",
            "encounter_id",
            "encounter",
            "encounter_id",
        ),
        ("observation", "patient_id", "patient", "person_id"),
        ("observation", "encounter_id", "encounter", "encounter_id"),
        ("vaccination", "patient_id", "patient", "person_id"),
        ("vaccination", "encounter_id", "encounter", "encounter_id"),
        ("procedure", "encounter_id", "encounter", "encounter_id"),
    ] {
        let q = format!(
            "SELECT count(*) AS n FROM {table} t WHERE t.{column} IS NOT NULL \
             AND t.{column} NOT IN (SELECT {key} FROM {target})"
        );
        assert_eq!(sql_count(&data, &q), 0, "{table}.{column} → {target}");
        let present = format!("SELECT count(*) AS n FROM {table} WHERE {column} IS NOT NULL");
        assert!(
            sql_count(&data, &present) > 0,
            "{table}.{column} is never filled"
        );
    }
    // No reference in the stored resources is left as a urn:uuid.
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) AS n FROM raw.fhir_resource WHERE payload LIKE '%urn:uuid:%'"
        ),
        0
    );
    // A question a clinician would ask: COVID-19 diagnoses with a body temperature.
    let rows = sql(
        &data,
        "SELECT p.full_name, max(o.value_double) AS max_temp FROM patient_diagnosis d \
         JOIN patient p ON p.person_id = d.patient_id \
         JOIN observation o ON o.patient_id = p.person_id AND o.code = '8310-5' \
         WHERE d.diagnosis_snomed_ct_code = '840539006' GROUP BY p.full_name ORDER BY p.full_name",
    );
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["max_temp"].as_f64().unwrap() > 35.0),
        "{rows:?}"
    );

    // Loading the same files again changes nothing.
    let again = fdp_ok!("ingest", "fhir", "--data-dir", data, shared_data(SYNTHEA));
    assert!(
        again.contains("total                             0       1000          0          0"),
        "{again}"
    );
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM raw.fhir_resource"),
        996
    );
    assert_eq!(sql_count(&data, "SELECT count(*) AS n FROM encounter"), 139);
}

fn patient(id: &str, nhs: &str, birth: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "id": id,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "birthDate": birth})
}

#[test]
fn bad_input_is_answered_by_location_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let files = dir.path().join("in");
    std::fs::create_dir_all(&files).unwrap();
    let entry = |r: serde_json::Value, n: usize| {
        json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-00000000000{n}"), "resource": r,
               "request": {"method": "POST", "url": r["resourceType"]}})
    };
    let good = patient("a", "9434765919", "1970-01-31");
    let bad_nhs = patient("b", "9434765918", "1970-01-31");
    let condition_unknown_system = json!({"resourceType": "Condition",
        "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"},
        "code": {"coding": [{"system": "http://example.org/local", "code": "X"}]}});
    // Transaction: one bad entry refuses the whole Bundle, naming the entry.
    let tx = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [entry(good.clone(), 1), entry(bad_nhs.clone(), 2)]});
    std::fs::write(files.join("tx.json"), tx.to_string()).unwrap();
    // Batch: the good entries are accepted, each bad one refused on its own.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        entry(patient("c", "9434765870", "1980-05-05"), 3),
        entry(bad_nhs, 4),
        entry(condition_unknown_system, 5),
        entry(patient("d", "9434765889", "05/06/1981"), 6)]});
    std::fs::write(files.join("batch.json"), batch.to_string()).unwrap();
    std::fs::write(
        files.join("lines.ndjson"),
        format!("{}\n{{not json\n", patient("e", "9434765897", "1990-01-01")),
    )
    .unwrap();
    std::fs::write(
        files.join("latin1.json"),
        b"{\"resourceType\": \"Patient\", \"name\": [{\"family\": \"Bront\xeb\"}]}",
    )
    .unwrap();

    let out = fdp_ok!("ingest", "fhir", "--data-dir", data, files);
    let rejected: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("rejected:"))
        .collect();
    let has = |needle: &str| rejected.iter().any(|l| l.contains(needle));
    assert!(
        has("tx.json Bundle.entry[0]: transaction refused as a whole"),
        "{out}"
    );
    assert!(has("Bundle.entry[1]: Patient.identifier[0].value: \"9434765918\" is not a valid NHS number"), "{out}");
    assert!(has("batch.json Bundle.entry[2]: Condition.code.coding: unknown code system http://example.org/local"), "{out}");
    assert!(
        has("batch.json Bundle.entry[3]: Patient.birthDate: \"05/06/1981\" is not a FHIR date"),
        "{out}"
    );
    assert!(has("lines.ndjson line 2: not JSON"), "{out}");
    assert!(has("latin1.json: not UTF-8"), "{out}");

    // Accepted: patient c from the batch (POSTed, so stored under its
    // fullUrl's uuid) and e from the NDJSON; nothing of the transaction.
    let ids: Vec<String> = sql(&data, "SELECT person_id FROM patient ORDER BY person_id")
        .into_iter()
        .map(|r| r["person_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["00000000-0000-4000-8000-000000000003", "e"]);
    // Everything refused is kept with its location, reason and content.
    let kept = sql(
        &data,
        "SELECT location, reason, payload FROM raw.fhir_resource WHERE status = 'quarantined' ORDER BY location",
    );
    assert_eq!(kept.len(), 2 + 3 + 1 + 1, "{kept:?}");
    assert!(kept
        .iter()
        .all(|r| !r["reason"].as_str().unwrap().is_empty()));
    assert!(kept
        .iter()
        .any(|r| r["payload"].as_str().unwrap().contains("05/06/1981")));
}

#[test]
fn time_travel_by_instant_sees_the_tables_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let first = dir.path().join("first.ndjson");
    let second = dir.path().join("second.ndjson");
    std::fs::write(
        &first,
        format!("{}\n", patient("a", "9434765919", "1970-01-31")),
    )
    .unwrap();
    std::fs::write(
        &second,
        format!("{}\n", patient("b", "9434765870", "1980-05-05")),
    )
    .unwrap();
    fdp_ok!("ingest", "fhir", "--data-dir", data, first);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fdp_ok!("ingest", "fhir", "--data-dir", data, second);
    let count_at = |as_of: &str| {
        let out = fdp_ok!(
            "sql",
            "--format",
            "csv",
            "--as-of",
            as_of,
            "--data-dir",
            data,
            "SELECT count(*) AS n FROM patient"
        );
        out.lines().nth(1).unwrap().to_string()
    };
    assert_eq!(count_at(&between), "1");
    assert_eq!(sql_count(&data, "SELECT count(*) AS n FROM patient"), 2);
    // Version numbers still work, and a bad value is refused with a hint.
    assert_eq!(count_at("1"), "1");
    let bad = fdp_err!(
        "sql",
        "--as-of",
        "yesterday",
        "--data-dir",
        data,
        "SELECT 1"
    );
    assert!(
        bad.contains("neither a version number nor an instant"),
        "{bad}"
    );
}
