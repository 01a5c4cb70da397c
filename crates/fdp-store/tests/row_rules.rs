//! The opt-out and restricted-view rules applied per stored file give
//! exactly the rows the same rules give as plan filters, and the same rows
//! again when the governed physical plan is written out, read back in
//! another context with its own keystore, and run there.

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
    let per_file = answer(gov, &StoredTables::new(dir), role, purpose, sql)
        .await
        .unwrap();
    let filtered = answer(gov, &AsFilters(StoredTables::new(dir)), role, purpose, sql)
        .await
        .unwrap();
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

/// Runs each governed physical plan as an executor would: written with the
/// codec, read back in a context of its own with the keystore it was given,
/// and run there. It keeps what it was sent.
#[derive(Debug)]
struct Elsewhere {
    writer: fdp_store::plan_codec::GovernedPlanCodec,
    reader: fdp_store::plan_codec::GovernedPlanCodec,
    sent: std::sync::Mutex<Vec<Vec<u8>>>,
    plans: std::sync::Mutex<Vec<Arc<dyn datafusion::physical_plan::ExecutionPlan>>>,
    /// Files that arrived with a row selection, over every plan read back.
    selected_on_arrival: std::sync::atomic::AtomicUsize,
}

impl fdp_govern::PlanExecutor for Elsewhere {
    fn collect(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _task: Arc<datafusion::execution::TaskContext>,
    ) -> futures::future::BoxFuture<'_, datafusion::error::Result<Vec<RecordBatch>>> {
        Box::pin(async move {
            self.plans.lock().unwrap().push(plan.clone());
            let bytes = self.writer.write(plan)?;
            self.sent.lock().unwrap().push(bytes.clone());
            let executor = SessionContext::new();
            let plan = self.reader.read(&bytes, &executor.task_ctx())?;
            self.selected_on_arrival.fetch_add(
                fdp_store::plan_codec::row_selected_files(&plan),
                std::sync::atomic::Ordering::Relaxed,
            );
            datafusion::physical_plan::collect(plan, executor.task_ctx()).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_governed_plan_run_elsewhere_gives_the_rows_it_gives_here_and_carries_no_key() {
    use fdp_govern::plan_codec::GovernedFunctions;
    use fdp_store::plan_codec::GovernedPlanCodec;

    let dir = tempfile::tempdir().unwrap();
    write_patients(dir.path()).await;
    append_encounters(dir.path(), 0..400).await;
    append_encounters(dir.path(), 400..1000).await;
    let opt_out = dir.path().join("opt-out.txt");
    let listed: Vec<String> = OPTED_OUT.iter().map(|&i| nhs_number(i)).collect();
    std::fs::write(&opt_out, listed.join("\n") + "\n").unwrap();
    let open = || {
        Governance::open(
            dir.path(),
            Policy::parse(
                "demo",
                fdp_govern::policy::DEMO_POLICY,
                fdp_model::Model::canonical(),
            )
            .unwrap(),
            "RXX",
            Some(&opt_out),
        )
        .unwrap()
    };
    let here = open();
    // The executor's keystore is its own copy of the instance's keys.
    let executor_keys = tempfile::tempdir().unwrap();
    let elsewhere = Arc::new(Elsewhere {
        writer: GovernedPlanCodec::new(GovernedFunctions::writer()),
        reader: GovernedPlanCodec::new(GovernedFunctions::with_keystore(
            fdp_govern::keystore::Keystore::open(executor_keys.path()),
        )),
        sent: Default::default(),
        selected_on_arrival: Default::default(),
        plans: Default::default(),
    });
    let there = open().with_executor(elsewhere.clone());
    let tables = StoredTables::new(dir.path());
    let ids = "SELECT encounter_id FROM encounter ORDER BY encounter_id";
    let rows = "SELECT * FROM encounter ORDER BY encounter_id";
    let counts = "SELECT specialty_name, count(*) AS n FROM encounter GROUP BY 1 ORDER BY 1";
    // Planning pseudonymises with a key the executor has not been given:
    // it refuses the plan rather than answer without the key.
    let refused = answer(&there, &tables, "analyst", Purpose::Planning, rows)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("does not hold"), "{refused}");
    // Given the instance's keys, it answers as the instance does.
    copy_dir(
        &dir.path().join("keystore"),
        &executor_keys.path().join("keystore"),
    );
    for (role, purpose, sql) in [
        ("clinician", Purpose::DirectCare, ids),
        ("analyst", Purpose::Planning, rows),
        ("analyst", Purpose::Planning, counts),
    ] {
        let local = answer(&here, &tables, role, purpose, sql).await.unwrap();
        let remote = answer(&there, &tables, role, purpose, sql).await.unwrap();
        assert!(
            local == remote,
            "{role} {purpose:?} {sql}:\nhere {local}\nthere {remote}"
        );
    }
    let planning = answer(&there, &tables, "analyst", Purpose::Planning, rows)
        .await
        .unwrap();
    assert_eq!(planning.lines().count() - 4, expected(1000, true).len());
    for i in OPTED_OUT {
        assert!(!planning.contains(&format!("pat-{i:03}")));
    }

    // What was sent: the row selections went with the scans, and no
    // pseudonym key's secret, nor any patient's NHS number, is in a plan.
    let sent = elsewhere.sent.lock().unwrap().clone();
    assert!(!sent.is_empty());
    let secrets: Vec<String> = std::fs::read_dir(dir.path().join("keystore"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pseudonym."))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert!(!secrets.is_empty());
    for plan in &sent {
        let text = String::from_utf8_lossy(plan);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a key's secret is in a plan");
        }
        for i in OPTED_OUT {
            assert!(
                !text.contains(&nhs_number(i)),
                "an opted-out NHS number is in a plan"
            );
        }
    }
    assert!(
        elsewhere
            .selected_on_arrival
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "no scan travelled with its selections"
    );

    // Written as DataFusion alone writes it, the same plan loses the
    // selections, and with them the opt-out: why the codec wraps scans.
    elsewhere.plans.lock().unwrap().clear();
    answer(&there, &tables, "clinician", Purpose::DirectCare, ids)
        .await
        .unwrap();
    let plan = elsewhere.plans.lock().unwrap()[0].clone();
    let naive = datafusion_proto::bytes::physical_plan_to_bytes(plan).unwrap();
    let ctx = SessionContext::new();
    let leaked =
        datafusion_proto::bytes::physical_plan_from_bytes(&naive, &ctx.task_ctx()).unwrap();
    let n: usize = datafusion::physical_plan::collect(leaked, ctx.task_ctx())
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert!(
        n > expected(1000, false).len(),
        "{n} rows: the naive plan kept the selections"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// `sql`'s answer in `role`'s session for `purpose`, as text.
async fn answer<S: TableSource>(
    gov: &Governance,
    tables: &S,
    role: &str,
    purpose: Purpose,
    sql: &str,
) -> Result<String, fdp_govern::session::GovernError> {
    let req = SessionRequest::new(principal(role), purpose, "sql");
    let session = gov.session(tables, req).await?;
    let result = session.query(sql).await?;
    Ok(pretty_format_batches(&result.batches).unwrap().to_string())
}
