//! `fdp policy export-views` run by Spark itself (PySpark, local mode):
//! for each of several roles and purposes, the rows and values a view
//! gives in Spark are the ones the governed session gives in OpenFDP,
//! less the columns OpenFDP pseudonymises, which the views leave out.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use fdp_store::arrow::array::{ArrayRef, Date32Array, Int64Array, ListBuilder, StringBuilder};
use fdp_store::arrow::datatypes::{Field, Schema};
use fdp_store::tables::{self, Layer};

const PATIENTS: usize = 30;
const ENCOUNTERS: usize = 200;
const OPTED_OUT: [usize; 3] = [2, 11, 17];

fn patient_nhs(i: usize) -> String {
    nhs_number(600_000_000 + i as u64 * 13)
}

async fn write(data: &Path, name: &str, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(c, a)| Field::new(*c, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = fdp_store::RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let at = tables::table_location(data, Layer::Canonical, name).unwrap();
    let table = tables::open_or_create(&at, schema).await.unwrap();
    tables::append(table, vec![batch], Default::default())
        .await
        .unwrap();
}

/// Patients in two parts (as the ADT census and the FHIR source each keep
/// their own), and their encounters, some in a restricted-view group.
async fn write_tables(data: &Path) {
    let strings = |f: &dyn Fn(usize) -> Option<String>, range: std::ops::Range<usize>| {
        let mut b = StringBuilder::new();
        for i in range {
            b.append_option(f(i));
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let half = PATIENTS / 2;
    for (name, range) in [
        ("patient".to_string(), 0..half),
        (tables::part_name("patient", "fhir"), half..PATIENTS),
    ] {
        let dob: Date32Array = range
            .clone()
            .map(|i| Some(-3000 + i as i32 * 997))
            .collect();
        write(
            data,
            &name,
            vec![
                (
                    "person_id",
                    strings(&|i| Some(format!("pat-{i:03}")), range.clone()),
                ),
                (
                    "nhs_number",
                    strings(&|i| Some(patient_nhs(i)), range.clone()),
                ),
                ("date_of_birth", Arc::new(dob)),
                (
                    "postcode",
                    strings(
                        &|i| match i % 5 {
                            0 => None,
                            1 => Some("not a postcode".into()),
                            _ => Some(format!("LS{} {}AB", i % 9 + 1, i % 10)),
                        },
                        range.clone(),
                    ),
                ),
                (
                    "sex",
                    strings(&|i| Some(["female", "male"][i % 2].into()), range),
                ),
            ],
        )
        .await;
    }
    let mut rv = ListBuilder::new(StringBuilder::new());
    for i in 0..ENCOUNTERS {
        match i % 10 {
            0 => {
                rv.values().append_value("safeguarding");
                rv.append(true);
            }
            1 => rv.append(true),
            _ => rv.append_null(),
        }
    }
    let created: Date32Array = (0..ENCOUNTERS).map(|i| Some(19_000 + i as i32)).collect();
    let cancellations: Int64Array = (0..ENCOUNTERS).map(|i| Some((i % 3) as i64)).collect();
    write(
        data,
        "encounter",
        vec![
            (
                "encounter_id",
                strings(&|i| Some(format!("enc-{i:04}")), 0..ENCOUNTERS),
            ),
            (
                "patient_id",
                strings(
                    &|i| (i % 13 != 0).then(|| format!("pat-{:03}", i % PATIENTS)),
                    0..ENCOUNTERS,
                ),
            ),
            (
                "specialty_name",
                strings(&|i| Some(["ENT", "Urology"][i % 2].into()), 0..ENCOUNTERS),
            ),
            ("rv_group_ids", Arc::new(rv.finish())),
            ("created_date", Arc::new(created)),
            ("patient_cancellation_count", Arc::new(cancellations)),
        ],
    )
    .await;
}

/// Runs the exported script in Spark over the stored Parquet files (Spark
/// here has no Delta reader, so the Delta tables it would register are
/// registered from their files), loads the opt-out, and prints each
/// view's rows as JSON.
const SPARK: &str = r#"
import json, sys
from pyspark.sql import SparkSession
spec = json.load(open(sys.argv[1]))
spark = (SparkSession.builder.master("local[1]")
         .config("spark.sql.warehouse.dir", spec["warehouse"])
         .config("spark.ui.enabled", "false")
         .config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
for statement in open(spec["script"]).read().split(";\n"):
    lines = [l for l in statement.splitlines() if not l.startswith("--")]
    sql = "\n".join(lines).strip()
    if not sql:
        continue
    if sql.startswith("CREATE TABLE IF NOT EXISTS"):
        name = sql.split()[5]
        if name.endswith("national_data_opt_out"):
            spark.createDataFrame([(n,) for n in spec["opt_out"]], "nhs_number STRING").write.saveAsTable(name)
        else:
            location = sql.split("LOCATION '")[1].rstrip("'")
            spark.sql(f"CREATE TABLE {name} USING PARQUET LOCATION '{location}'")
        continue
    spark.sql(sql)
out = {}
for view in spec["views"]:
    df = spark.table(view)
    out[view] = {"columns": df.columns,
                 "rows": [[None if v is None else (list(v) if isinstance(v, list) else str(v)) for v in r] for r in df.collect()]}
print(json.dumps(out))
"#;

fn cell(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Null => serde_json::Value::Null,
        serde_json::Value::String(s) => serde_json::Value::String(s.clone()),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(cell).collect()),
        other => serde_json::Value::String(other.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_reads_through_the_exported_views_what_openfdp_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tables(&data).await;
    let listed: Vec<String> = OPTED_OUT.iter().map(|&i| patient_nhs(i)).collect();
    std::fs::write(data.join("opt-out.txt"), listed.join("\n") + "\n").unwrap();
    let config = dir.path().join("instance.toml");
    std::fs::write(
        &config,
        "ods = \"RXX\"\n\n\
         [principal.an]\nroles = [\"analyst\"]\n\n\
         [principal.bm]\nroles = [\"bed-manager\"]\n\n\
         [principal.dr]\nroles = [\"clinician\"]\n",
    )
    .unwrap();

    let script = dir.path().join("views.sql");
    run_ok(&[
        &"policy",
        &"export-views",
        &"--data-dir",
        &data,
        &"--config",
        &config,
        &"--out",
        &script,
    ]);
    let sql = std::fs::read_to_string(&script).unwrap();
    assert!(
        sql.contains("pseudonymised in OpenFDP, so left out here"),
        "{sql}"
    );
    // A role the policy does not have is named, not exported as nothing.
    let err = fdp_err!(
        "policy",
        "export-views",
        "--role",
        "janitor",
        "--data-dir",
        data,
        "--config",
        config
    );
    assert!(err.contains("no role `janitor`"), "{err}");

    let cases = [
        ("an", "planning", "fdp_analyst_planning", "patient"),
        ("an", "planning", "fdp_analyst_planning", "encounter"),
        ("bm", "operations", "fdp_bed_manager_operations", "patient"),
        ("dr", "direct-care", "fdp_clinician_direct_care", "patient"),
        (
            "dr",
            "direct-care",
            "fdp_clinician_direct_care",
            "encounter",
        ),
    ];
    let spec = serde_json::json!({
        "script": script,
        "warehouse": dir.path().join("warehouse"),
        "opt_out": listed,
        "views": cases.iter().map(|(_, _, s, t)| format!("{s}.{t}")).collect::<Vec<_>>(),
    });
    let spec_file = dir.path().join("spark.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let spark = std::process::Command::new("python3")
        .args(["-c", SPARK])
        .arg(&spec_file)
        .output()
        .expect("python3");
    assert!(
        spark.status.success(),
        "Spark could not run the exported views: {}",
        String::from_utf8_lossy(&spark.stderr)
    );
    let stdout = String::from_utf8_lossy(&spark.stdout);
    let answers: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();

    for (who, purpose, schema, table) in cases {
        let view = &answers[format!("{schema}.{table}")];
        let columns: Vec<String> = serde_json::from_value(view["columns"].clone()).unwrap();
        let mut theirs: Vec<Vec<serde_json::Value>> =
            serde_json::from_value(view["rows"].clone()).unwrap();
        let ours = sql_as(
            &config,
            &data,
            who,
            purpose,
            &[],
            &format!("SELECT * FROM {table}"),
        )
        .unwrap_or_else(|e| panic!("{who} {purpose} {table}: {e}"));
        // `fdp sql` leaves a null out of its row.
        let ours_shows: std::collections::BTreeSet<&String> =
            ours.iter().flat_map(|row| row.keys()).collect();
        for (i, c) in columns.iter().enumerate() {
            let all_null = theirs.iter().all(|r| r[i].is_null());
            assert!(
                all_null || ours_shows.contains(c),
                "{schema}.{table} has {c}, which OpenFDP does not show"
            );
        }
        let mut ours: Vec<Vec<serde_json::Value>> = ours
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|c| cell(row.get(c).unwrap_or(&serde_json::Value::Null)))
                    .collect()
            })
            .collect();
        let key = |r: &Vec<serde_json::Value>| r.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        theirs.sort_by_key(key);
        ours.sort_by_key(key);
        assert!(!ours.is_empty(), "{who} {purpose} {table}: no rows at all");
        assert_eq!(
            theirs, ours,
            "{who} {purpose} {table}: Spark's view differs from OpenFDP over columns {columns:?}"
        );
        // What OpenFDP shows that the view leaves out is what it
        // pseudonymises, nothing else.
        let shown: BTreeMap<&str, bool> = columns.iter().map(|c| (c.as_str(), true)).collect();
        if let Some(first) = sql_as(
            &config,
            &data,
            who,
            purpose,
            &[],
            &format!("SELECT * FROM {table} LIMIT 1"),
        )
        .unwrap()
        .first()
        {
            for (c, v) in first {
                if !shown.contains_key(c.as_str()) {
                    let pseudonym = |s: &str| {
                        s.strip_prefix('p')
                            .and_then(|rest| rest.split_once('-'))
                            .is_some_and(|(version, _)| version.parse::<u32>().is_ok())
                    };
                    assert!(
                        v.as_str().is_some_and(pseudonym) || v.is_null(),
                        "{schema}.{table} leaves out {c}, which OpenFDP shows as {v}"
                    );
                }
            }
        }
        if purpose == "planning" {
            let text = serde_json::to_string(view).unwrap();
            assert!(!text.contains("pat-"), "an identifier in {schema}.{table}");
            for i in 0..PATIENTS {
                assert!(!text.contains(&patient_nhs(i)));
            }
        }
    }
    // The restricted-view rule took the safeguarding group's rows out for
    // roles not in it; the opt-out took more out under planning only.
    let count = |view: &str| answers[view]["rows"].as_array().unwrap().len();
    assert_eq!(
        count("fdp_clinician_direct_care.encounter"),
        ENCOUNTERS - ENCOUNTERS / 10
    );
    assert!(count("fdp_analyst_planning.encounter") < ENCOUNTERS - ENCOUNTERS / 10);
    assert_eq!(
        count("fdp_analyst_planning.patient"),
        PATIENTS - OPTED_OUT.len()
    );
}
