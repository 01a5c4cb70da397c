//! `fdp bench governed-query`: what governance costs a query.
//!
//! Generates a trust's encounters (10 million by default) and patients into
//! a fresh data directory, then runs the same aggregates two ways in one
//! run, alternately: in a governed session for an analyst under `planning`
//! (the demo policy's views: patient ids pseudonymised, identifying columns
//! removed, restricted-view rows filtered out, the national data opt-out
//! applied, disclosure control on the answer, every query audited) and,
//! as the baseline, straight over the same Delta table with no policy at
//! all, both through delta-rs's table provider and as DataFusion's own
//! scan of the same Parquet files (the scan a governed session uses). Prints
//! the median of each and the governed one's ratio to both.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use datafusion::arrow::array::{ArrayRef, Date32Builder, Int64Builder, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use fdp_govern::{Purpose, SessionRequest};
use fdp_store::{tables, Layer, Lineage};
use fdp_synth::Xorshift;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args, Clone)]
pub struct GovernedQueryArgs {
    /// Encounters to generate
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Patients they belong to
    #[arg(long, default_value_t = 100_000)]
    pub patients: usize,
    /// Times each query is run each way
    #[arg(long, default_value_t = 9)]
    pub runs: usize,
    /// Print each plan as run (EXPLAIN ANALYZE), governed and ungoverned
    #[arg(long)]
    pub explain: bool,
    /// Keep the generated data here (default: a temporary directory)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A few seconds on tiny sizes: the same code path, so that the
    /// benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

/// The aggregates compared. The first is the headline: a planning
/// question that reads no identifier. The second counts distinct patients,
/// so under the policy every row's patient id is pseudonymised first.
pub(crate) const QUERIES: &[(&str, &str)] = &[
    (
        "activity by specialty and type",
        "SELECT specialty_name, encounter_type, count(*) AS n, \
         avg(patient_cancellation_count) AS mean_cancellations \
         FROM encounter GROUP BY specialty_name, encounter_type ORDER BY 1, 2",
    ),
    (
        "distinct patients by site",
        "SELECT site, count(DISTINCT patient_id) AS patients FROM encounter GROUP BY site ORDER BY 1",
    ),
];

const SPECIALTIES: &[&str] = &[
    "Trauma & Orthopaedics",
    "General Surgery",
    "Urology",
    "Ophthalmology",
    "ENT",
    "Gynaecology",
    "Cardiology",
    "Respiratory Medicine",
];
const TYPES: &[&str] = &["AMB", "IMP", "EMER", "VR"];
const SITES: &[&str] = &[
    "St Aidan's Hospital",
    "Riverside General",
    "Northgate Community",
];
const PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4"];

/// The `i`th of a run of distinct valid NHS numbers.
fn nhs_number(i: usize) -> String {
    fdp_model::identifiers::nhs_number_from(400_000_000 + i as u64 * 7)
        .expect("a benchmark's patients fit below 999 999 999")
}

fn person_id(i: usize) -> String {
    format!("pat-{i:08}")
}

async fn write_table(
    data_dir: &Path,
    name: &str,
    batches: Vec<RecordBatch>,
) -> Result<fdp_store::DeltaTable> {
    let path = tables::table_location(data_dir, Layer::Canonical, name)?;
    let table = tables::open_or_create(&path, batches[0].schema()).await?;
    let lineage = Lineage {
        transform: "bench".into(),
        ..Lineage::default()
    };
    Ok(tables::overwrite(table, batches, &lineage).await?)
}

/// Writes `patients` patients and `rows` encounters into `data_dir`'s
/// canonical tables, the encounters in commits of `commit_rows` (so never
/// more than that many rows are held in memory), and answers the patients'
/// NHS numbers in order.
pub(crate) async fn generate(
    data_dir: &Path,
    rows: usize,
    patients: usize,
    commit_rows: usize,
) -> Result<Vec<String>> {
    let mut rng = Xorshift::new(0x9E37_79B9_7F4A_7C15);
    // Patients: the opt-out is recorded against their NHS numbers.
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("nhs_number", DataType::Utf8, true),
        Field::new("date_of_birth", DataType::Date32, true),
        Field::new("postcode", DataType::Utf8, true),
        Field::new("sex", DataType::Utf8, true),
    ]));
    let (mut id, mut nhs, mut dob, mut pc, mut sex) = (
        StringBuilder::new(),
        StringBuilder::new(),
        Date32Builder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut numbers = Vec::with_capacity(patients);
    for i in 0..patients {
        id.append_value(person_id(i));
        let n = nhs_number(i);
        nhs.append_value(&n);
        numbers.push(n);
        dob.append_value(-7000 + rng.below(30_000) as i32);
        pc.append_value(format!("LS{} {}AB", 1 + rng.below(28), rng.below(10)));
        sex.append_value(if rng.below(2) == 0 { "female" } else { "male" });
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(nhs.finish()),
        Arc::new(dob.finish()),
        Arc::new(pc.finish()),
        Arc::new(sex.finish()),
    ];
    write_table(
        data_dir,
        "patient",
        vec![RecordBatch::try_new(schema, columns)?],
    )
    .await?;

    let schema = Arc::new(Schema::new(vec![
        Field::new("encounter_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, true),
        Field::new("encounter_type", DataType::Utf8, true),
        Field::new("specialty_name", DataType::Utf8, true),
        Field::new("site", DataType::Utf8, true),
        Field::new("ward", DataType::Utf8, true),
        Field::new("priority", DataType::Utf8, true),
        Field::new("created_date", DataType::Date32, true),
        Field::new("patient_cancellation_count", DataType::Int64, true),
        Field::new(
            "rv_group_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let bar = ProgressBar::new(rows as u64).with_style(
        ProgressStyle::with_template("generating encounters {bar:40} {pos}/{len} {per_sec}")
            .expect("template"),
    );
    let mut batches = Vec::new();
    let batch_rows = 1_000_000.min(commit_rows.max(1));
    let mut start = 0;
    let mut table = None;
    while start < rows {
        let n = batch_rows.min(rows - start);
        let mut b_id = StringBuilder::new();
        let mut b_patient = StringBuilder::new();
        let mut b_type = StringBuilder::new();
        let mut b_spec = StringBuilder::new();
        let mut b_site = StringBuilder::new();
        let mut b_ward = StringBuilder::new();
        let mut b_prio = StringBuilder::new();
        let mut b_date = Date32Builder::new();
        let mut b_cancel = Int64Builder::new();
        let mut b_rv = ListBuilder::new(StringBuilder::new());
        for i in start..start + n {
            b_id.append_value(format!("enc-{i:09}"));
            b_patient.append_value(person_id(rng.below(patients as u64) as usize));
            b_type.append_value(*rng.pick(TYPES));
            b_spec.append_value(*rng.pick(SPECIALTIES));
            b_site.append_value(*rng.pick(SITES));
            b_ward.append_value(format!("Ward {}", 1 + rng.below(24)));
            b_prio.append_value(*rng.pick(PRIORITIES));
            b_date.append_value(19_000 + rng.below(1_500) as i32);
            b_cancel.append_value(rng.below(4) as i64);
            // One encounter in a hundred is in a restricted-view group.
            if rng.below(100) == 0 {
                b_rv.values().append_value("safeguarding");
                b_rv.append(true);
            } else {
                b_rv.append_null();
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(b_id.finish()),
            Arc::new(b_patient.finish()),
            Arc::new(b_type.finish()),
            Arc::new(b_spec.finish()),
            Arc::new(b_site.finish()),
            Arc::new(b_ward.finish()),
            Arc::new(b_prio.finish()),
            Arc::new(b_date.finish()),
            Arc::new(b_cancel.finish()),
            Arc::new(b_rv.finish()),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        start += n;
        bar.set_position(start as u64);
        let held: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if held >= commit_rows || start == rows {
            let batches = std::mem::take(&mut batches);
            table = Some(match table {
                None => write_table(data_dir, "encounter", batches).await?,
                Some(t) => tables::append(t, batches, Default::default()).await?,
            });
        }
    }
    bar.finish_and_clear();
    Ok(numbers)
}

/// How the baseline reads the table.
#[derive(Clone, Copy)]
enum Baseline {
    /// Through delta-rs's table provider, as any engine reading the Delta
    /// table would.
    Delta,
    /// The table's current Parquet files scanned by DataFusion directly, the
    /// scan a governed session uses, so the difference is the policy alone.
    Parquet,
}

/// The baseline: the query straight over the stored table, with no policy,
/// no opt-out, no disclosure control and no audit. Only this benchmark
/// reads a table this way, and only the table it generated.
async fn ungoverned_baseline(
    data_dir: &Path,
    sql: &str,
    how: Baseline,
) -> Result<(Duration, usize)> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    let ctx = datafusion::prelude::SessionContext::new();
    let table = tables::open(
        &tables::table_location(data_dir, Layer::Canonical, "encounter")?,
        None,
    )
    .await?;
    match how {
        Baseline::Delta => {
            table.update_datafusion_session(&ctx.state())?;
            ctx.register_table("encounter", table.table_provider().await?)?;
        }
        Baseline::Parquet => {
            let files = table
                .get_file_uris()?
                .map(|u| ListingTableUrl::parse(&u))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(files)
                .with_listing_options(options)
                .infer_schema(&ctx.state())
                .await?;
            ctx.register_table("encounter", Arc::new(ListingTable::try_new(config)?))?;
        }
    }
    let started = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    if sql.starts_with("EXPLAIN") {
        println!(
            "ungoverned:\n{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)?
        );
    }
    Ok((
        started.elapsed(),
        batches.iter().map(|b| b.num_rows()).sum(),
    ))
}

/// A trust's instance with the opt-out list at `opt_out` and one
/// principal, `bench-analyst`, in the demo policy's analyst role.
pub(crate) fn analyst_config(opt_out: PathBuf) -> crate::instance::InstanceConfig {
    let mut config = crate::instance::InstanceConfig {
        ods: Some("RXX".into()),
        opt_out_file: Some(opt_out),
        ..Default::default()
    };
    config.principal.insert(
        "bench-analyst".into(),
        fdp_govern::Grant {
            roles: vec!["analyst".into()],
            organisation: None,
        },
    );
    config
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(args: GovernedQueryArgs) -> Result<()> {
    let mut args = args;
    if args.quick {
        args.rows = args.rows.min(50_000);
        args.patients = args.patients.min(2_000);
        args.runs = args.runs.min(2);
    }
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let started = Instant::now();
    let numbers = generate(&data_dir, args.rows, args.patients, args.rows)
        .await
        .context("generating the benchmark's tables")?;
    println!(
        "generated {} encounters of {} patients in {:.1} s",
        args.rows,
        args.patients,
        started.elapsed().as_secs_f64()
    );
    // One patient in a hundred has opted out.
    let opt_out = data_dir.join("opt-out.txt");
    let listed: Vec<&str> = numbers.iter().step_by(100).map(String::as_str).collect();
    std::fs::write(&opt_out, listed.join("\n") + "\n")?;

    let config = analyst_config(opt_out);
    let governance = config.governance(&data_dir)?;
    let source = fdp_store::StoredTables::new(&data_dir);
    let request = SessionRequest::new(
        config.local_principal("bench-analyst"),
        Purpose::Planning,
        "bench",
    );
    // The first session decides, for every stored file, which rows the
    // opt-out and restricted-view rules leave out; later sessions over the
    // same files reuse that.
    let opened = Instant::now();
    governance.session(&source, request.clone()).await?;
    let first_open = opened.elapsed();
    let opened = Instant::now();
    let session = governance.session(&source, request).await?;
    let open_time = opened.elapsed();
    println!(
        "governed session opened in {} the first time over these files, then {} \
         (policy views over every table, {} opted-out patients resolved)",
        ms(first_open),
        ms(open_time),
        listed.len()
    );
    for d in session.decisions() {
        println!("  policy: {d}");
    }

    // What every governed query pays whatever it reads: planning over the
    // policy's views, disclosure control and the audit entry (made durable
    // before the answer is returned).
    let mut fixed = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        session
            .query("SELECT count(*) AS n FROM encounter WHERE encounter_type = 'none'")
            .await?;
        fixed.push(t.elapsed());
    }
    println!(
        "a governed query that reads no rows (planning, disclosure control, audit): {}",
        ms(median(fixed))
    );
    println!();
    println!(
        "{:<32} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "query (median of runs)", "delta-rs", "parquet", "governed", "÷delta", "÷parquet"
    );
    for (name, sql) in QUERIES {
        if args.explain {
            let (_, profile) = session.profile(sql).await?;
            println!("{name}, governed:\n{profile}");
            let explain = format!("EXPLAIN ANALYZE {sql}");
            ungoverned_baseline(&data_dir, &explain, Baseline::Parquet).await?;
        }
        let (mut delta, mut parquet, mut governed) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let (d, delta_rows) = ungoverned_baseline(&data_dir, sql, Baseline::Delta).await?;
            delta.push(d);
            let (d, parquet_rows) = ungoverned_baseline(&data_dir, sql, Baseline::Parquet).await?;
            parquet.push(d);
            let t = Instant::now();
            let r = session.query(sql).await?;
            governed.push(t.elapsed());
            tracing::debug!(
                delta_rows,
                parquet_rows,
                governed_rows = r.row_count(),
                "answers"
            );
        }
        let (d, p, g) = (median(delta), median(parquet), median(governed));
        println!(
            "{:<32} {:>12} {:>12} {:>12} {:>8.2}× {:>8.2}×",
            name,
            ms(d),
            ms(p),
            ms(g),
            g.as_secs_f64() / d.as_secs_f64(),
            g.as_secs_f64() / p.as_secs_f64()
        );
    }
    Ok(())
}
