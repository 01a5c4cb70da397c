//! Flat extracts through the shipped mappings: the Synthea CSV export, the
//! ODS trust file and the nhs.uk hospital list load without a hand-edited
//! byte; loads are idempotent; bad lines are named and kept.

mod common;

use common::*;

#[test]
fn synthea_ods_and_nhs_uk_files_load_through_the_shipped_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("icb");
    let out = fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        mappings(),
        shared_data("synthea_csv/dbt_synthea_27pt"),
        shared_data("nhs_operational_csv/ods/etrust.csv"),
        shared_data("nhs_operational_csv/nhs_uk_website/Hospital.csv")
    );
    let row = |file: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(file))
            .unwrap_or_else(|| panic!("{file} missing from\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("patients.csv")[2..5], ["27", "27", "0"]);
    assert_eq!(row("encounters.csv")[2..5], ["604", "604", "0"]);
    assert_eq!(row("observations.csv")[2..5], ["990", "990", "0"]);
    assert_eq!(row("etrust.csv")[2..5], ["29955", "29955", "0"]);
    assert_eq!(row("Hospital.csv")[2..5], ["1231", "1231", "0"]);
    // Synthea writes one SNOMED CT id with a wrong check digit; those four
    // lines are refused by name and kept.
    assert_eq!(row("conditions.csv")[2..5], ["438", "434", "4"]);
    assert!(out.contains("conditions.csv line 98: diagnosis_snomed_ct_code: SNOMED CT: `10939881000119104` fails its Verhoeff check digit"), "{out}");

    assert_eq!(sql_count(&data, "SELECT count(*) AS n FROM patient"), 27);
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM raw.extract_rejected"),
        4
    );
    // Joins work as in the export.
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM encounter e WHERE e.patient_id NOT IN (SELECT person_id FROM patient)"),
        0
    );
    // ODS: 234 trusts, 29,721 sites, each site under its trust, except one
    // whose trust (RER) the extract no longer lists.
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) AS n FROM organisation WHERE organisation_type = 'NHS Trust'"
        ),
        234
    );
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) AS n FROM organisation s JOIN organisation t ON t.organisation_id = s.parent_ods_code \
             AND t.organisation_type = 'NHS Trust' WHERE s.organisation_type = 'NHS Trust Site'"
        ),
        29720
    );
    let orphans = sql(
        &data,
        "SELECT organisation_id FROM organisation WHERE organisation_type = 'NHS Trust Site' \
         AND parent_ods_code NOT IN (SELECT organisation_id FROM organisation WHERE organisation_type = 'NHS Trust')",
    );
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0]["organisation_id"], "RERRK");
    assert_eq!(
        sql(&data, "SELECT CAST(open_date AS VARCHAR) AS d FROM organisation WHERE organisation_id = 'R0A'")[0]["d"],
        "2017-10-01"
    );
    // nhs.uk: the ¬-separated ISO-8859-1 file, scientific-notation latitudes included.
    let h = sql(
        &data,
        "SELECT name, postcode, latitude FROM organisation WHERE organisation_id = 'NDA07'",
    );
    assert_eq!(
        h[0]["name"],
        "Walton Community Hospital - Virgin Care Services Ltd"
    );
    assert_eq!(h[0]["postcode"], "KT12 3LD");
    let nmv = sql(
        &data,
        "SELECT longitude FROM organisation WHERE organisation_id = 'NMV01'",
    );
    assert!(
        (nmv[0]["longitude"].as_f64().unwrap() + 0.030604055151343346).abs() < 1e-12,
        "{nmv:?}"
    );

    // Each file is kept as received, byte for byte, named by its hash.
    let kept = sql(
        &data,
        "SELECT file, raw_copy, content_sha256 FROM raw.extract_file",
    );
    assert!(kept.len() >= 10, "{kept:?}");
    for k in &kept {
        let original = std::fs::read(k["file"].as_str().unwrap()).unwrap();
        let copy = std::fs::read(k["raw_copy"].as_str().unwrap()).unwrap();
        assert!(original == copy, "{} differs from its raw copy", k["file"]);
        assert!(k["raw_copy"]
            .as_str()
            .unwrap()
            .contains(k["content_sha256"].as_str().unwrap()));
    }
    let leftovers: Vec<_> = std::fs::read_dir(data.join("raw_files"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same files again: recognised, nothing added.
    let again = fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        mappings(),
        shared_data("nhs_operational_csv/ods/etrust.csv")
    );
    assert!(
        again.contains("already loaded with mapping ods-etrust (same content): skipped"),
        "{again}"
    );
    // The copy begun before the content was known to be loaded is gone.
    assert!(!std::fs::read_dir(data.join("raw_files"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".partial")));
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) AS n FROM organisation WHERE organisation_type = 'NHS Trust'"
        ),
        234
    );
}

#[test]
fn bad_lines_are_named_and_kept_and_a_fixed_file_replaces_rows_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let maps = dir.path().join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    std::fs::write(
        maps.join("wl.toml"),
        r#"
name = "waiting-list"
object_type = "EalEntry"
file_pattern = "wl_*.csv"
encoding = "utf-8"
[columns]
eal_id = { from = "Pathway ID" }
patient_id = { from = "NHS Number", parse = "nhs_number" }
priority_type = { from = "Priority", map = { "1" = "P1", "2" = "P2", "3" = "P3", "4" = "P4" } }
rtt_period_start_date = { from = "RTT Clock Start", format = "%d/%m/%Y" }
"#,
    )
    .unwrap();
    let file = dir.path().join("wl_2026-11.csv");
    std::fs::write(
        &file,
        "Pathway ID,NHS Number,Priority,RTT Clock Start\n\
         P001,943 476 5919,2,01/02/2026\n\
         P002,9434765918,1,03/02/2026\n\
         P003,9434765870,1,2026-02-03\n\
         P004,9434765889,3\n\
         P005,9434765897,9,05/02/2026\n\
         P001,9434765919,1,01/02/2026\n",
    )
    .unwrap();
    let out = fdp_ok!("ingest", "csv", "--data-dir", data, "--mapping", maps, file);
    for needle in [
        "line 3: patient_id: \"9434765918\" is not a valid NHS number",
        "line 4: rtt_period_start_date: \"2026-02-03\" is not a date in the format %d/%m/%Y",
        "line 5: expected 4 fields, found 3",
        "line 6: priority_type: \"9\" is not one of the mapped values",
        "line 7: duplicate key \"P001\": line 2 has it already",
    ] {
        assert!(out.contains(needle), "{needle} not in\n{out}");
    }
    assert_eq!(sql_count(&data, "SELECT count(*) AS n FROM eal_entry"), 1);
    let kept = sql(
        &data,
        "SELECT line, reason, raw FROM raw.extract_rejected ORDER BY line",
    );
    assert_eq!(kept.len(), 5);
    assert_eq!(kept[0]["raw"], "P002,9434765918,1,03/02/2026");

    // The file fixed and sent again: the good rows are replaced, not doubled.
    std::fs::write(
        &file,
        "Pathway ID,NHS Number,Priority,RTT Clock Start\n\
         P001,943 476 5919,3,01/02/2026\n\
         P002,9434765870,1,03/02/2026\n",
    )
    .unwrap();
    fdp_ok!("ingest", "csv", "--data-dir", data, "--mapping", maps, file);
    let rows = sql(
        &data,
        "SELECT eal_id, priority_type FROM eal_entry ORDER BY eal_id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["priority_type"], "P3");

    // A Latin-1 file given to a UTF-8 mapping: the lines are refused, saying why.
    let latin = dir.path().join("wl_latin1.csv");
    std::fs::write(
        &latin,
        b"Pathway ID,NHS Number,Priority,RTT Clock Start\nP9\xe9,9434765919,1,01/02/2026\n",
    )
    .unwrap();
    let out = fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        maps,
        latin
    );
    assert!(out.contains("line 2: not valid UTF-8 (byte 0xE9"), "{out}");
    assert!(
        out.contains("is the file ISO-8859-1 or Windows-1252?"),
        "{out}"
    );

    // A file no mapping applies to is refused before anything is loaded.
    let other = dir.path().join("theatre.csv");
    std::fs::write(&other, "a,b\n").unwrap();
    let err = fdp_err!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        maps,
        other
    );
    assert!(err.contains("no mapping applies to"), "{err}");
}

/// A watched drop folder: a file is loaded once it has settled, moved to
/// `processed/`; a file no mapping applies to goes to `failed/` with the
/// reason beside it; a file still being written (a `.partial` name) waits.
#[test]
fn a_watched_drop_folder_loads_settled_files_and_sets_aside_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let drop = dir.path().join("drop").join("ods");
    std::fs::create_dir_all(&drop).unwrap();
    let mappings = mappings();
    let config = format!(
        "[[drop_folder]]\nname = \"ods-reference\"\nfolder = \"{}\"\nmappings = \"{}\"\npoll_secs = 0.2\n",
        drop.display(),
        mappings.display()
    );
    let server = Server::start_configured(&data, 1.0, "127.0.0.1:0", "127.0.0.1:0", &config);
    std::fs::copy(
        shared_data("nhs_operational_csv/ods/etrust.csv"),
        drop.join("etrust.csv.partial"),
    )
    .unwrap();
    std::fs::write(drop.join("theatre list.xlsx"), b"PK\x03\x04 not an extract").unwrap();
    // Still arriving: left alone.
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(drop.join("etrust.csv.partial").exists());
    std::fs::rename(drop.join("etrust.csv.partial"), drop.join("etrust.csv")).unwrap();
    let listing = |sub: &str| -> Vec<String> {
        std::fs::read_dir(drop.join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(60, "etrust.csv to be loaded and moved", || {
        listing("processed")
            .iter()
            .any(|n| n.ends_with("-etrust.csv"))
    });
    assert!(!drop.join("etrust.csv").exists());
    let failed = listing("failed");
    let note = failed
        .iter()
        .find(|n| n.ends_with(".error.txt"))
        .unwrap_or_else(|| panic!("no reason in failed/: {failed:?}"));
    let why = std::fs::read_to_string(drop.join("failed").join(note)).unwrap();
    assert!(why.contains("no mapping applies"), "{why}");
    assert!(
        failed.iter().any(|n| n.ends_with("-theatre list.xlsx")),
        "{failed:?}"
    );
    server.stop();
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) AS n FROM organisation WHERE organisation_type = 'NHS Trust'"
        ),
        234
    );
    let runs = sql(&data, "SELECT run_id, rows_in FROM raw.extract_file");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0]["run_id"]
            .as_str()
            .unwrap()
            .starts_with("drop:ods-reference:"),
        "{runs:?}"
    );
    assert_eq!(runs[0]["rows_in"], 29955);
}

/// Quarantine a data engineer can work with: every refused record from
/// every source in one list with its place, rule and raw content; after the
/// mapping is corrected, a retry puts the refused lines through without
/// duplicating those already accepted.
#[test]
fn quarantine_lists_every_source_and_a_retry_after_fixing_the_mapping_loads_the_lines_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("icb");
    let conditions = shared_data("synthea_csv/dbt_synthea_27pt/conditions.csv");
    fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        mappings(),
        conditions
    );
    let accepted_before = sql_count(&data, "SELECT count(*) AS n FROM patient_diagnosis");
    // A FHIR resource refused too.
    let ndjson = dir.path().join("Patient.ndjson");
    std::fs::write(
        &ndjson,
        r#"{"resourceType":"Patient","id":"pt-9","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765918"}]}"#,
    )
    .unwrap();
    fdp_ok!("ingest", "fhir", "--data-dir", data, ndjson);

    let listed: Vec<serde_json::Value> =
        fdp_ok!("quarantine", "list", "--data-dir", data, "--json")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let csv: Vec<&serde_json::Value> = listed.iter().filter(|e| e["kind"] == "csv").collect();
    assert_eq!(csv.len(), 4, "{listed:#?}");
    for e in &csv {
        assert!(
            e["reason"].as_str().unwrap().contains("10939881000119104"),
            "{e}"
        );
        assert!(e["position"].as_str().unwrap().starts_with("line "), "{e}");
        assert!(
            e["source"].as_str().unwrap().ends_with("conditions.csv"),
            "{e}"
        );
        assert!(
            e["raw"].as_str().unwrap().contains("10939881000119104"),
            "{e}"
        );
    }
    let fhir: Vec<&serde_json::Value> = listed.iter().filter(|e| e["kind"] == "fhir").collect();
    assert_eq!(fhir.len(), 1, "{listed:#?}");
    assert!(fhir[0]["reason"].as_str().unwrap().contains("9434765918"));
    assert_eq!(fhir[0]["what"], "Patient/pt-9");
    let table = fdp_ok!("quarantine", "list", "--data-dir", data);
    assert!(table.contains("5 in quarantine"), "{table}");
    let one = csv[0]["id"].as_str().unwrap();
    let shown = fdp_ok!("quarantine", "show", "--data-dir", data, one);
    assert!(
        shown.contains("problem:") && shown.contains("raw content as received:"),
        "{shown}"
    );

    // Retrying with the mapping unchanged refuses them again, for the same reason.
    let again = fdp_ok!(
        "quarantine",
        "retry",
        "--data-dir",
        data,
        "--all",
        "--kind",
        "csv",
        "--mapping",
        mappings()
    );
    assert!(again.contains("0 of 4 put through"), "{again}");
    // The engineer decides the export's codes are to be kept as given.
    let fixed = dir.path().join("fixed");
    std::fs::create_dir_all(&fixed).unwrap();
    let original = std::fs::read_to_string(mappings().join("synthea-conditions.toml")).unwrap();
    std::fs::write(
        fixed.join("synthea-conditions.toml"),
        original.replace(
            r#"{ from = "CODE", parse = "snomed" }"#,
            r#"{ from = "CODE" }"#,
        ),
    )
    .unwrap();
    let out = fdp_ok!(
        "quarantine",
        "retry",
        "--data-dir",
        data,
        "--all",
        "--mapping",
        fixed
    );
    assert!(
        out.contains("4 of 5 put through; 1 still in quarantine"),
        "{out}"
    );
    assert!(out.contains("not a valid NHS number"), "{out}");
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM patient_diagnosis"),
        accepted_before + 4
    );
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) AS n FROM (SELECT diagnosis_id FROM patient_diagnosis GROUP BY diagnosis_id HAVING count(*) > 1)"
        ),
        0
    );
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM patient_diagnosis WHERE diagnosis_snomed_ct_code = '10939881000119104'"),
        4
    );
    let left: Vec<String> = fdp_ok!("quarantine", "list", "--data-dir", data, "--json")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    // Nothing is lost: the refusals stay in raw, with the retries recorded.
    assert_eq!(
        sql_count(&data, "SELECT count(*) AS n FROM raw.extract_rejected"),
        8
    );
    assert_eq!(
        sql_count(
            &data,
            "SELECT count(*) AS n FROM raw.quarantine_resolution WHERE outcome = 'accepted'"
        ),
        4
    );
    let gone = fdp_ok!(
        "quarantine",
        "retry",
        "--data-dir",
        data,
        "--mapping",
        fixed,
        one
    );
    assert!(gone.contains("not in quarantine"), "{gone}");
}
