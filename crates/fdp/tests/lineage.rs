//! Sources, tables and lineage as the data engineer sees them in the web
//! UI and the API: each source's runs with what was accepted and refused,
//! each table's versions with the run behind each, and the path from every
//! source through raw tables to the canonical tables.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

#[test]
fn sources_tables_and_lineage_pages_show_runs_versions_and_the_path_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("icb");
    fdp_ok!(
        "ingest",
        "csv",
        "--data-dir",
        data,
        "--mapping",
        mappings(),
        shared_data("nhs_operational_csv/ods/etrust.csv"),
        shared_data("synthea_csv/dbt_synthea_27pt/conditions.csv")
    );
    let bundles: Vec<PathBuf> =
        std::fs::read_dir(shared_data("synthea_fhir_r4/nimbus_covid_juvenile_10pt"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"ingest", &"fhir", &"--data-dir", &data];
    for b in &bundles {
        args.push(b);
    }
    run_ok(&args);

    // The integration engineer: sources, lineage and the quarantine.
    let server = Server::start_configured(
        &data,
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.tester]\nroles = [\"integration-engineer\"]\n",
    );
    let (a, t) = (server.http, server.token.as_str());

    let runs: Vec<Value> = serde_json::from_str(&http_get(a, "/api/runs", Some(t)).1).unwrap();
    let run = |source: &str| {
        runs.iter()
            .find(|r| r["source"] == source)
            .unwrap_or_else(|| panic!("no run of {source} in {runs:#?}"))
            .clone()
    };
    let ods = run("ods-etrust");
    assert_eq!(
        (
            ods["records_in"].as_i64(),
            ods["accepted"].as_i64(),
            ods["rejected"].as_i64()
        ),
        (Some(29955), Some(29955), Some(0))
    );
    assert!(ods["seconds"].as_f64().unwrap() > 0.0);
    let conditions = run("synthea-conditions");
    assert_eq!(conditions["rejected"], 4);
    let fhir = run("files (fdp ingest fhir)");
    assert_eq!(fhir["kind"], "fhir");
    assert!(fhir["accepted"].as_i64().unwrap() > 600, "{fhir}");

    let (status, page) = http_get(a, "/sources", Some(t));
    assert_eq!(status, 200);
    for needle in [
        "ods-etrust",
        "synthea-conditions",
        "files (fdp ingest fhir)",
        "29955",
        "/quarantine?kind=csv",
    ] {
        assert!(page.contains(needle), "{needle} not on /sources");
    }

    // Tables: versions with the run behind each, and how to time-travel.
    let (status, page) = http_get(a, "/tables", Some(t));
    assert_eq!(status, 200);
    assert!(page.contains("/tables/patient@fhir") && page.contains("/tables/raw.extract_file"));
    let history: Vec<Value> = serde_json::from_str(
        &http_get(
            a,
            "/api/tables/organisation@csv-ods-etrust/history",
            Some(t),
        )
        .1,
    )
    .unwrap();
    // Oldest first: the table's creation, then the load.
    let first = history
        .iter()
        .rev()
        .find(|v| v["operation"] == "WRITE" && !v["lineage"].is_null())
        .unwrap_or_else(|| panic!("no write in {history:#?}"));
    assert_eq!(first["lineage"]["transform"], "extract:ods-etrust");
    assert_eq!(first["lineage"]["run"], ods["run_id"]);
    assert_eq!(first["rows_written"], 29955);
    let (status, page) = http_get(a, "/tables/patient@fhir", Some(t));
    assert_eq!(status, 200);
    assert!(
        page.contains("--as-of") && page.contains(fhir["run_id"].as_str().unwrap()),
        "{page}"
    );
    assert_eq!(http_get(a, "/tables/no_such_table", Some(t)).0, 404);

    // Lineage: every source to its raw table, raw to parts, parts to tables.
    let l: Value = serde_json::from_str(&http_get(a, "/api/lineage", Some(t)).1).unwrap();
    let name = |i: &Value| {
        l["nodes"][i.as_u64().unwrap() as usize]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let edges: Vec<(String, String)> = l["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (name(&e[0]), name(&e[1])))
        .collect();
    for (from, to) in [
        ("extract: ods-etrust", "raw.extract_file"),
        ("raw.extract_file", "organisation@csv-ods-etrust"),
        ("organisation@csv-ods-etrust", "organisation"),
        ("FHIR files (fdp ingest fhir)", "raw.fhir_resource"),
        ("raw.fhir_resource", "patient@fhir"),
        ("patient@fhir", "patient"),
        (
            "raw.extract_file",
            "patient_diagnosis@csv-synthea-conditions",
        ),
        ("patient_diagnosis@fhir", "patient_diagnosis"),
    ] {
        assert!(
            edges.contains(&(from.to_string(), to.to_string())),
            "{from} -> {to} missing from {edges:#?}"
        );
    }
    let (status, page) = http_get(a, "/lineage", Some(t));
    assert_eq!(status, 200);
    assert!(
        page.contains("<svg")
            && page.contains("Canonical tables")
            && page.contains("raw.fhir_resource")
    );
    assert_eq!(page.matches("<path").count(), edges.len());
    // The quarantine page lists the refused lines and resources of every kind.
    // Records as received: the page asks for the purpose first.
    let r = http_get(a, "/quarantine?kind=csv", Some(t));
    assert_eq!(r.0, 303);
    let cookie = purpose_cookie(a, t, "operations");
    let r = http_request_with(
        a,
        "GET",
        "/quarantine?kind=csv",
        Some(t),
        &[("Cookie", &cookie)],
        None,
    );
    let (status, page) = (r.status, r.body);
    assert_eq!(status, 200);
    assert!(
        page.contains("Extracts (4)") && page.contains("10939881000119104"),
        "{page}"
    );
    // Without a principal: pages send the browser to sign in, the API (and
    // anything that is not a browser asking for a page) refuses.
    let browser = http_request_with(a, "GET", "/lineage", None, &[("Accept", "text/html")], None);
    assert_eq!(browser.status, 303);
    assert_eq!(http_get(a, "/lineage", None).0, 401);
    assert_eq!(http_get(a, "/api/lineage", None).0, 401);
    server.stop();
}
