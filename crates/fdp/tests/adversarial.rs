//! The adversarial suite: each test is an attack on the promise that
//! governance cannot be got round, made the way an analyst, a researcher,
//! a peer instance or someone with the data directory would make it, and
//! each asserts the refusal or the protected result. Every test names the
//! class of attack it covers (see `docs/governance.md`, "Threat model"):
//!
//! - class 6: identifiers from outside used as file names (a peer's message
//!   id: `crates/fdp-federation/tests/wire.rs`, which runs two instances'
//!   federation endpoints over mutual TLS);
//! - class 9: settings and data that would fail open (here).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use fdp_model::Model;
use fdp_store::tables::{self, Layer};
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

/// Principals of the demo policy these attacks act as.
fn config(dir: &Path, opt_out: &Path) -> std::path::PathBuf {
    let text = format!(
        "ods = \"RXX\"\nopt_out_file = \"{}\"\n\
         [principal.eng]\nroles = [\"integration-engineer\"]\n\
         [principal.ana]\nroles = [\"analyst\"]\n\
         [principal.doc]\nroles = [\"clinician\"]\n",
        opt_out.display()
    );
    let path = dir.join("instance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `fdp sql` as `who` for `purpose`; Err(stderr) when refused.
fn sql_as(
    config: &Path,
    data: &Path,
    who: &str,
    purpose: &str,
    extra: &[&str],
    query: &str,
) -> Result<Vec<Row>, String> {
    let out = fdp()
        .args(["sql", "--format", "json", "--data-dir"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["--as", who, "--purpose", purpose])
        .args(extra)
        .arg(query)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// Write `rows` as a new version of canonical table `table` (the model's
/// columns for `object`, plus `extra` text columns), replacing what it held.
async fn write_canonical(data: &Path, object: &str, extra: &[&str], rows: &[Value]) {
    use fdp_store::arrow::datatypes::{DataType, Field, Schema};
    let ot = Model::canonical().object_type(object).unwrap();
    let mut fields: Vec<Field> = ot
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(extra.iter().map(|c| Field::new(*c, DataType::Utf8, true)));
    let schema = Arc::new(Schema::new(fields));
    let rows: Vec<Row> = rows
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect();
    let batch = fdp_store::rows::batch_from_rows(&schema, &rows).unwrap();
    let path = tables::table_path(data, Layer::Canonical, &ot.table);
    let table = tables::open_or_create(&path, schema).await.unwrap();
    let lineage = fdp_store::Lineage {
        transform: "adversarial-test".into(),
        through_seq: 0,
        raw_versions: Default::default(),
        run: None,
        targets: Vec::new(),
    };
    tables::overwrite(table, vec![batch], &lineage)
        .await
        .unwrap();
}

/// A valid NHS number (modulus 11 check digit) from nine digits.
fn nhs_number(nine: u64) -> String {
    let digits: Vec<u32> = format!("{nine:09}")
        .chars()
        .map(|c| c.to_digit(10).unwrap())
        .collect();
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| d * (10 - i as u32))
        .sum();
    let check = (11 - sum % 11) % 11;
    if check == 10 {
        return nhs_number(nine + 1);
    }
    format!("{nine:09}{check}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_9_a_stored_column_the_model_does_not_know_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, "").unwrap();
    let config = config(dir.path(), &opt_out);
    // Someone with the data directory (or a newer writer) adds a column the
    // model has never heard of, full of free text about the patient.
    let rows: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "person_id": format!("P{i}"),
                "nhs_number": nhs_number(943_476_591 + i),
                "free_text_note": format!("SECRET-NOTE-{i}: lives with daughter, HIV+"),
            })
        })
        .collect();
    write_canonical(&data, "Patient", &["free_text_note"], &rows).await;

    // The integration engineer is shown every tag for operations: still
    // not a column with no tag.
    for (who, purpose) in [("eng", "operations"), ("doc", "direct-care")] {
        let got = sql_as(&config, &data, who, purpose, &[], "SELECT * FROM patient").unwrap();
        assert_eq!(got.len(), 3, "{who}");
        for r in &got {
            assert!(!r.contains_key("free_text_note"), "{who}: {r:?}");
            assert!(!format!("{r:?}").contains("SECRET-NOTE"), "{who}: {r:?}");
        }
        let named = sql_as(
            &config,
            &data,
            who,
            purpose,
            &[],
            "SELECT free_text_note FROM patient",
        );
        assert!(
            named.as_ref().is_err_and(|e| e.contains("free_text_note")),
            "{who}: {named:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_9_time_travel_never_brings_an_opted_out_patient_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opt_out = dir.path().join("opt-out.txt");
    let config = config(dir.path(), &opt_out);
    // Twenty patients arrive untraced (no NHS number yet) beside twenty
    // traced ones; each has an admission.
    let traced_later: Vec<String> = (0..20).map(|i| nhs_number(600_000_000 + 17 * i)).collect();
    let traced: Vec<String> = (0..20).map(|i| nhs_number(700_000_000 + 13 * i)).collect();
    let patients = |later_known: bool| -> Vec<Value> {
        (0..20)
            .map(|i| {
                json!({
                    "person_id": format!("OPT{i:02}"),
                    "nhs_number": later_known.then(|| traced_later[i].clone()),
                })
            })
            .chain(
                (0..20)
                    .map(|i| json!({"person_id": format!("KEEP{i:02}"), "nhs_number": traced[i]})),
            )
            .collect()
    };
    // Version 0 of each table is its creation; 1 the first rows.
    write_canonical(&data, "Patient", &[], &patients(false)).await; // version 1
    write_canonical(&data, "Patient", &[], &patients(true)).await; // version 2: traced
    let admissions: Vec<Value> = (0..20)
        .map(|i| json!({"admission_id": format!("A-OPT{i:02}"), "patient_id": format!("OPT{i:02}")}))
        .chain((0..20).map(|i| json!({"admission_id": format!("A-KEEP{i:02}"), "patient_id": format!("KEEP{i:02}")})))
        .collect();
    write_canonical(&data, "Admission", &[], &admissions).await; // version 1
    write_canonical(&data, "Admission", &[], &admissions).await; // version 2
                                                                 // Once traced, the twenty turn out to have opted out.
    std::fs::write(&opt_out, traced_later.join("\n") + "\n").unwrap();

    let count = |as_of: Option<&str>| -> i64 {
        let mut extra = vec![];
        if let Some(v) = as_of {
            extra = vec!["--as-of", v];
        }
        let got = sql_as(
            &config,
            &data,
            "ana",
            "planning",
            &extra,
            "SELECT count(*) AS n FROM admission",
        )
        .unwrap();
        got[0]["n"].as_i64().unwrap()
    };
    assert_eq!(count(None), 20, "today");
    // Back to when the patient table did not yet link the numbers to the
    // person ids the admissions carry.
    assert_eq!(count(Some("1")), 20, "as of version 1");
}
