//! The opt-out and restricted-view rules applied per stored file give
//! exactly the rows the same rules give as plan filters.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, ListBuilder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use fdp_govern::{
    AsOf, Governance, Policy, Principal, Purpose, SessionRequest, SourceTable, TableAccess,
    TableSource,
};
use fdp_store::tables::{self, Layer};
use fdp_store::{StoreError, StoredTables};

/// The store's tables with the per-file path turned off, so the policy's
/// row rules go into the plan as filters.
struct AsFilters(StoredTables);

impl TableSource for AsFilters {
    type Error = StoreError;

    async fn canonical_tables(
        &self,
        access: &TableAccess,
        ctx: &SessionContext,
        as_of: AsOf,
    ) -> Result<Vec<SourceTable>, StoreError> {
        let mut tables = self.0.canonical_tables(access, ctx, as_of).await?;
        for t in &mut tables {
            assert!(t.masking.is_some(), "{} should be maskable", t.name);
            t.masking = None;
        }
        Ok(tables)
    }

    async fn raw_tables(
        &self,
        access: &TableAccess,
        ctx: &SessionContext,
        as_of: AsOf,
    ) -> Result<Vec<SourceTable>, StoreError> {
        self.0.raw_tables(access, ctx, as_of).await
    }
}

const PATIENTS: usize = 30;
const OPTED_OUT: [usize; 3] = [0, 5, 10];

fn nhs_number(i: usize) -> String {
    fdp_model::identifiers::nhs_number_from(900_000_000 + i as u64 * 11).unwrap()
}

/// Encounter `i`: its patient and its restricted-view groups (`None` is
/// unrestricted, as is an empty list).
fn encounter(i: usize) -> (usize, Option<Vec<&'static str>>) {
    let groups = if i.is_multiple_of(17) {
        Some(vec!["safeguarding"])
    } else if i.is_multiple_of(23) {
        Some(vec![])
    } else {
        None
    };
    (i % PATIENTS, groups)
}

async fn write_patients(dir: &std::path::Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("nhs_number", DataType::Utf8, true),
    ]));
    let ids: Vec<String> = (0..PATIENTS).map(|i| format!("pat-{i:03}")).collect();
    let numbers: Vec<String> = (0..PATIENTS).map(nhs_number).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(datafusion::arrow::array::StringArray::from(ids)) as ArrayRef,
            Arc::new(datafusion::arrow::array::StringArray::from(numbers)),
        ],
    )
    .unwrap();
    let path = tables::table_location(dir, Layer::Canonical, "patient").unwrap();
    let table = tables::open_or_create(&path, schema).await.unwrap();
    tables::append(table, vec![batch], CommitProperties::default())
        .await
        .unwrap();
}

/// One more stored file of encounters `range`.
async fn append_encounters(dir: &std::path::Path, range: std::ops::Range<usize>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("encounter_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, true),
        Field::new("specialty_name", DataType::Utf8, true),
        Field::new(
            "rv_group_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let (mut id, mut patient, mut spec) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut rv = ListBuilder::new(StringBuilder::new());
    for i in range {
        let (p, groups) = encounter(i);
        id.append_value(format!("enc-{i:05}"));
        patient.append_value(format!("pat-{p:03}"));
        spec.append_value(["Urology", "ENT", "Cardiology"][i % 3]);
        match groups {
            Some(g) => {
                for x in g {
                    rv.values().append_value(x);
                }
                rv.append(true);
            }
            None => rv.append_null(),
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(patient.finish()),
        Arc::new(spec.finish()),
        Arc::new(rv.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let path = tables::table_location(dir, Layer::Canonical, "encounter").unwrap();
    let table = tables::open_or_create(&path, schema).await.unwrap();
    tables::append(table, vec![batch], CommitProperties::default())
        .await
        .unwrap();
}

fn principal(role: &str) -> Principal {
    Principal {
        name: format!("a {role}"),
        roles: vec![role.into()],
        organisation: Some("RXX".into()),
    }
}

/// The query's answer both ways, which must agree.
async fn both_ways(
    gov: &Governance,
    dir: &std::path::Path,
    role: &str,
    purpose: Purpose,
    sql: &str,
) -> String {
    let req = SessionRequest::new(principal(role), purpose, "sql");
    let per_file = gov
        .session(&StoredTables::new(dir), req.clone())
        .await
        .unwrap();
    let per_file = pretty_format_batches(&per_file.query(sql).await.unwrap().batches)
        .unwrap()
        .to_string();
    let filtered = gov
        .session(&AsFilters(StoredTables::new(dir)), req)
        .await
        .unwrap();
    let filtered = pretty_format_batches(&filtered.query(sql).await.unwrap().batches)
        .unwrap()
        .to_string();
    assert!(
        per_file == filtered,
        "{role} under {purpose:?}: {sql}: {} rows per file, {} rows filtered",
        per_file.lines().count(),
        filtered.lines().count()
    );
    per_file
}

/// The encounter ids a purpose should see of encounters `0..n`.
fn expected(n: usize, opt_out: bool) -> BTreeSet<String> {
    (0..n)
        .filter(|&i| {
            let (p, groups) = encounter(i);
            let unrestricted = groups.is_none_or(|g| g.is_empty());
            unrestricted && !(opt_out && OPTED_OUT.contains(&p))
        })
        .map(|i| format!("enc-{i:05}"))
        .collect()
}

fn ids_in(table: &str) -> BTreeSet<String> {
    table
        .lines()
        .filter_map(|l| l.split('|').nth(1))
        .map(|c| c.trim().to_string())
        .filter(|c| c.starts_with("enc-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_per_file_give_the_rows_filters_give() {
    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path()).await;
    append_encounters(dir.path(), 0..400).await;
    append_encounters(dir.path(), 400..700).await;
    append_encounters(dir.path(), 700..1000).await;
    let opt_out = dir.path().join("opt-out.txt");
    let listed: Vec<String> = OPTED_OUT.iter().map(|&i| nhs_number(i)).collect();
    std::fs::write(&opt_out, listed.join("\n") + "\n").unwrap();
    let policy = format!(
        "{}\n{}",
        fdp_govern::policy::DEMO_POLICY,
        r#"
[role.safeguarding-lead]
description = "Safeguarding team"

[role.safeguarding-lead.direct-care]
objects = ["encounter"]
organisation = "own"
rv_groups = ["safeguarding"]
identifying = "show"
quasi_identifying = "show"
clinical = "show"
operational = "show"
"#
    );
    let gov = Governance::open(
        dir.path(),
        Policy::parse("test policy", &policy, fdp_model::Model::canonical()).unwrap(),
        "RXX",
        Some(&opt_out),
    )
    .unwrap();

    let ids = "SELECT encounter_id FROM encounter ORDER BY encounter_id";
    // Direct care: every opted-out patient's encounters, no restricted ones.
    let direct = both_ways(&gov, dir.path(), "clinician", Purpose::DirectCare, ids).await;
    assert_eq!(ids_in(&direct), expected(1000, false));
    // A role granted a restricted-view group sees that group's rows.
    let safeguarding = both_ways(
        &gov,
        dir.path(),
        "safeguarding-lead",
        Purpose::DirectCare,
        ids,
    )
    .await;
    assert_eq!(ids_in(&safeguarding).len(), 1000);

    // Planning: opted-out patients gone too; the rows themselves (patient ids
    // pseudonymised) are the same both ways.
    let rows = "SELECT * FROM encounter ORDER BY encounter_id";
    let planning = both_ways(&gov, dir.path(), "analyst", Purpose::Planning, rows).await;
    assert_eq!(
        planning.lines().count() - 4,
        expected(1000, true).len(),
        "{planning}"
    );
    for i in OPTED_OUT {
        assert!(!planning.contains(&format!("pat-{i:03}")));
    }
    both_ways(
        &gov,
        dir.path(),
        "analyst",
        Purpose::Planning,
        "SELECT specialty_name, count(*) AS n FROM encounter GROUP BY 1 ORDER BY 1",
    )
    .await;

    // A new version adds a file; the files already decided on are reused
    // and the new one is decided too.
    append_encounters(dir.path(), 1000..1300).await;
    let direct = both_ways(&gov, dir.path(), "clinician", Purpose::DirectCare, ids).await;
    assert_eq!(ids_in(&direct), expected(1300, false));
    let planning = both_ways(&gov, dir.path(), "analyst", Purpose::Planning, rows).await;
    assert_eq!(planning.lines().count() - 4, expected(1300, true).len());

    // A changed opt-out list is a different rule: a patient who opts out
    // now is gone from the next session.
    std::fs::write(&opt_out, listed.join("\n") + "\n" + &nhs_number(7) + "\n").unwrap();
    let planning = both_ways(&gov, dir.path(), "analyst", Purpose::Planning, rows).await;
    let sevens = expected(1300, false)
        .into_iter()
        .filter(|id| {
            let i: usize = id[4..].parse().unwrap();
            encounter(i).0 == 7 && !OPTED_OUT.contains(&7)
        })
        .count();
    assert_eq!(
        planning.lines().count() - 4,
        expected(1300, true).len() - sevens
    );
}
