//! `fdp bench uptake` and `fdp bench cohort`: population health on a
//! synthetic ICB, made the way an instance gets its data (`fdp synth
//! population`, then `fdp reference load`).
//!
//! **uptake** asks whether the groups falling behind are the ones that
//! were planted. The product's low-uptake view runs governed under
//! planning, as the population-health analyst, for flu, foot examinations
//! and MMR1. The planted truth (each person's chance of the outcome, in
//! the CSV the generator writes beside the instance, never in it) gives
//! every group's expected uptake, grouped by the very SQL the product
//! groups by. Then:
//! - every group planted low that the population is large enough to show
//!   (its expected shortfall at least twice the flag's margin) must be
//!   flagged;
//! - a group whose expected uptake is not below the area's has no gap, and
//!   is flagged only by chance: about one in a thousand, the rate the
//!   99.8% flag states. More than that, by a margin a binomial count
//!   allows, fails the bench.
//!
//! Groups with a real gap nobody named (an LSOA where many of a planted
//! group live, an age band whose people are mostly in a programme's
//! lower-uptake eligibility group) are counted apart: flagging them is
//! right.
//!
//! **cohort** times the diabetes-without-a-foot-check cohort by IMD decile
//! and practice, through the product's view in a governed planning session
//! (opt-out, dates of birth to the month, disclosure control, audit), and
//! the same SQL in DuckDB over the same Parquet files in the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Args;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use fdp_govern::{Purpose, SessionRequest};
use fdp_products::population_health;
use fdp_synth::population::{GapGroup, PlantedGap, PopulationSpec, Programme};
use serde_json::Value;

const AS_AT: &str = "2026-12-31";

/// The tables the product reads, each a canonical table of one or more parts.
const TABLES: &[&str] = &[
    "patient",
    "patient_diagnosis",
    "observation",
    "vaccination",
    "patient_area",
    "general_practice",
    "ethnic_category_code",
];

/// Where an ICB is made, or found from an earlier run.
#[derive(Args, Clone)]
pub struct IcbArgs {
    /// People in the synthetic ICB
    #[arg(long)]
    pub people: Option<u64>,
    /// Make the ICB here and keep it (data/, instance.toml, truth.csv), or
    /// use the one an earlier run made here with as many people
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The UK reference folder
    #[arg(long, default_value = "../shared/data/uk_reference")]
    pub reference: PathBuf,
    /// The shipped cohorts, whose value sets the records are coded from
    #[arg(long, default_value = "cohorts")]
    pub cohorts: PathBuf,
    /// A few seconds on tiny sizes: the same code path, so that the
    /// benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

#[derive(Args, Clone)]
pub struct UptakeArgs {
    #[command(flatten)]
    pub icb: IcbArgs,
}

#[derive(Args, Clone)]
pub struct CohortArgs {
    #[command(flatten)]
    pub icb: IcbArgs,
    /// Times each side is run (the median is reported)
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Skip the DuckDB comparison
    #[arg(long)]
    pub no_duckdb: bool,
    /// Also print the SQL, and its plan as the engine ran it under
    /// planning with what each step measured, to see where the time goes
    #[arg(long)]
    pub profile: bool,
}

/// An ICB's instance: its data directory, its configuration (with an
/// analyst for planning), and the truth planted in it.
struct Icb {
    _tmp: Option<tempfile::TempDir>,
    data: PathBuf,
    config: PathBuf,
    truth: PathBuf,
    areas: fdp_synth::population::AreaInputs,
    people: u64,
}

/// Make the ICB, or find the one made before in `--dir`.
async fn icb(args: &IcbArgs, people: u64) -> Result<Icb> {
    let (tmp, dir) = match &args.dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data");
    let config = dir.join("instance.toml");
    let truth = dir.join("truth.csv");
    let made = dir.join("made.json");
    let areas = crate::synth_population::read_areas(&args.reference, "02A")
        .with_context(|| format!("reading the areas from {}", args.reference.display()))?;
    let icb = Icb {
        _tmp: tmp,
        data,
        config,
        truth,
        areas,
        people,
    };
    let asked = serde_json::json!({ "people": people, "as_at": AS_AT });
    if std::fs::read(&made)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v == asked)
    {
        println!(
            "  the ICB of {people} people made before in {}",
            dir.display()
        );
        return Ok(icb);
    }
    anyhow::ensure!(
        !icb.data.exists(),
        "{} holds data that is not an ICB this bench made with {people} people: give another --dir",
        icb.data.display()
    );
    std::fs::write(
        &icb.config,
        "ods = \"RXX\"\n\
         [principal.analyst]\nroles = [\"population-health-analyst\"]\n\
         [principal.lead]\nroles = [\"vaccination-lead\"]\n",
    )?;
    let started = Instant::now();
    crate::synth::population(crate::synth::PopulationArgs {
        data_dir: icb.data.clone(),
        people,
        reference: args.reference.clone(),
        sub_icb: "02A".into(),
        cohorts: args.cohorts.clone(),
        as_at: AS_AT.parse()?,
        seed: 42,
        first_id: 1,
        truth: Some(icb.truth.clone()),
    })
    .await?;
    let synthesised = started.elapsed();
    let started = Instant::now();
    crate::reference::run(crate::reference::ReferenceCommand::Load {
        at: crate::product::Instance {
            data_dir: icb.data.clone(),
            config: Some(icb.config.clone()),
        },
        folder: args.reference.clone(),
        areas: crate::reference::AreaArgs::default(),
    })
    .await?;
    println!(
        "  made an ICB of {people} people in {:.1} s, its reference data loaded and areas derived in {:.1} s",
        synthesised.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    std::fs::write(&made, asked.to_string())?;
    Ok(icb)
}

impl Icb {
    /// A governed session of `by` for `purpose`.
    async fn session(&self, by: &str, purpose: Purpose) -> Result<fdp_govern::GovernedSession> {
        let config = crate::instance::InstanceConfig::for_data_dir(&self.data, Some(&self.config))?;
        let governance = config.governance(&self.data)?;
        let tables = fdp_store::StoredTables::new(&self.data);
        Ok(governance
            .session(
                &tables,
                SessionRequest::new(config.local_principal(by), purpose, "bench"),
            )
            .await?)
    }

    /// A view of the population-health product in a governed session.
    async fn view(
        &self,
        by: &str,
        purpose: Purpose,
        view: &str,
        params: &[(&str, &str)],
    ) -> Result<fdp_products::platform::Output> {
        let session = self.session(by, purpose).await?;
        let given = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let registry = fdp_products::platform::Registry::builtin();
        fdp_products::platform::run_view(&registry, "population-health", view, &session, &given)
            .await
            .with_context(|| format!("population-health/{view}"))
    }

    /// A plain engine over the instance's files and the truth: no policy,
    /// so only for checking the product against what was planted.
    async fn truth_context(&self) -> Result<datafusion::prelude::SessionContext> {
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::datasource::listing::{
            ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
        };
        let ctx = datafusion::prelude::SessionContext::new();
        for (table, files) in parquet_files(&self.data).await? {
            let urls = files
                .iter()
                .map(|f| ListingTableUrl::parse(format!("file://{f}")))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()));
            let schema = options.infer_schema(&ctx.state(), &urls[0]).await?;
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema);
            ctx.register_table(table.as_str(), Arc::new(ListingTable::try_new(config)?))?;
        }
        ctx.register_csv(
            "truth",
            self.truth
                .to_str()
                .context("the truth's path is not UTF-8")?,
            datafusion::prelude::CsvReadOptions::new(),
        )
        .await?;
        Ok(ctx)
    }
}

/// Each table the product reads: its live Parquet files, of every part.
async fn parquet_files(data: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let files = crate::bench::live_parquet_files(data, TABLES).await?;
    for (table, found) in &files {
        anyhow::ensure!(
            !found.is_empty(),
            "no Parquet files for {table} under {}",
            data.join("tables/canonical").display()
        );
    }
    Ok(files)
}

/// A programme whose planted gaps are looked for.
struct Check {
    programme: Programme,
    cohort: &'static str,
    outcome: &'static str,
    /// The truth's column with each person's chance of the outcome.
    chance: &'static str,
}

const CHECKS: &[Check] = &[
    Check {
        programme: Programme::Flu,
        cohort: "flu-2026-27",
        outcome: "vaccinated",
        chance: "flu_probability",
    },
    Check {
        programme: Programme::FootExamination,
        cohort: "diabetes-care-processes",
        outcome: "foot examination",
        chance: "foot_examination_probability",
    },
    Check {
        programme: Programme::Mmr1,
        cohort: "mmr-24-months",
        outcome: "MMR1 by 24 months",
        chance: "mmr1_probability",
    },
];

/// A group as the product names it: the cut (`ethnic_group`, or a pair
/// `imd_decile × practice`) and its value in each.
type GroupKey = (String, String);

/// What the truth says of one group.
struct Expected {
    people: u64,
    /// The mean of its members' chances.
    uptake: f64,
}

pub async fn uptake(args: UptakeArgs) -> Result<()> {
    let people = match (args.icb.people, args.icb.quick) {
        (Some(n), _) => n,
        (None, true) => 60_000,
        (None, false) => 1_000_000,
    };
    println!("fdp bench uptake — are the groups planted low the ones flagged, and only they?");
    let icb = icb(&args.icb, people).await?;
    let ctx = icb.truth_context().await?;
    let spec = PopulationSpec::with_default_gaps(&icb.areas, icb.people, AS_AT.parse()?);
    let mut failures = Vec::new();
    for check in CHECKS {
        let started = Instant::now();
        let out = icb
            .view(
                "analyst",
                Purpose::Planning,
                "low-uptake",
                &[
                    ("cohort", check.cohort),
                    ("outcome", check.outcome),
                    ("as_at", AS_AT),
                ],
            )
            .await?;
        let took = started.elapsed();
        let flagged = flagged_groups(&out)?;
        let (area, expected) = expected_uptake(&ctx, check).await?;
        let planted = planted_labels(&ctx, &spec.gaps, check.programme).await?;
        println!(
            "\n  {} / {}: {} groups of {} cuts and pairs assessed from the truth; the product flagged {} under planning in {:.1} s; area uptake expected {:.1}%",
            check.cohort,
            check.outcome,
            expected.len(),
            population_health::CUTS.len() * (population_health::CUTS.len() + 1) / 2,
            flagged.len(),
            took.as_secs_f64(),
            area * 100.0
        );
        // The planted groups.
        for (gap, key) in &planted {
            let Some(e) = expected.get(key) else {
                println!(
                    "    planted {:?} ×{}: no such group in this ICB",
                    gap.group, gap.factor
                );
                continue;
            };
            // The shortfall the flag needs to see: z at 99.8% standard
            // errors; twice that is found nearly always.
            let se = (e.uptake * (1.0 - e.uptake) / e.people as f64).sqrt();
            let z = (area - e.uptake) / se.max(1e-12);
            let found = flagged.contains(key);
            let must = z >= 2.0 * fdp_cohort::uptake::Z998;
            println!(
                "    planted {} = {} ×{}: {} people, expected {:.1}% (z {:.1}), {}",
                key.0,
                key.1,
                gap.factor,
                e.people,
                e.uptake * 100.0,
                z,
                match (found, must) {
                    (true, _) => "flagged",
                    (false, true) => "NOT flagged",
                    (false, false) => "not flagged (too few people to show it)",
                }
            );
            if must && !found {
                failures.push(format!(
                    "{}: planted {} {} not flagged",
                    check.cohort, key.0, key.1
                ));
            }
        }
        // Groups with no gap at all, and those with one nobody named.
        let no_gap: Vec<&GroupKey> = expected
            .iter()
            .filter(|(_, e)| e.uptake >= area)
            .map(|(k, _)| k)
            .collect();
        let false_flags: Vec<&&GroupKey> =
            no_gap.iter().filter(|k| flagged.contains(**k)).collect();
        let planted_keys: BTreeSet<&GroupKey> = planted.iter().map(|(_, k)| k).collect();
        let unnamed = expected
            .iter()
            .filter(|(k, e)| e.uptake < area && !planted_keys.contains(k))
            .count();
        // How far below the area the unnamed gaps that were flagged truly
        // are: a flag on a group a hair below would be chance in all but name.
        let unnamed_gaps: Vec<f64> = flagged
            .iter()
            .filter(|k| !planted_keys.contains(k))
            .filter_map(|k| expected.get(k))
            .filter(|e| e.uptake < area)
            .map(|e| (area - e.uptake) * 100.0)
            .collect();
        let unnamed_flagged = unnamed_gaps.len();
        let smallest = unnamed_gaps.iter().copied().fold(f64::INFINITY, f64::min);
        // The upper end of a 99.8% interval is below the truth one time in
        // a thousand.
        let rate = 0.001;
        let lambda = rate * no_gap.len() as f64;
        let allowed = (lambda + 3.0 * lambda.sqrt()).ceil() as usize + 1;
        println!(
            "    groups with no gap: {} of which flagged {} ({:.3}%; the flag's one-sided rate is {:.1}%, at most {allowed} allowed by chance)",
            no_gap.len(),
            false_flags.len(),
            100.0 * false_flags.len() as f64 / no_gap.len().max(1) as f64,
            100.0 * rate
        );
        for k in false_flags.iter().take(5) {
            println!("      flagged without a gap: {} = {}", k.0, k.1);
        }
        println!(
            "    groups with a real gap nobody named (they hold planted people, or a programme's lower-uptake group): {unnamed}, of which flagged {unnamed_flagged}{}",
            if unnamed_flagged > 0 {
                format!(
                    ", truly {smallest:.1} points or more below the area, {} of them by less than 1 point",
                    unnamed_gaps.iter().filter(|g| **g < 1.0).count()
                )
            } else {
                String::new()
            }
        );
        if false_flags.len() > allowed {
            failures.push(format!(
                "{}: {} groups with no gap flagged, more than the {allowed} chance allows",
                check.cohort,
                false_flags.len()
            ));
        }
        let unknown: Vec<&GroupKey> = flagged
            .iter()
            .filter(|k| !expected.contains_key(*k))
            .collect();
        if !unknown.is_empty() {
            failures.push(format!(
                "{}: flagged groups the truth does not know: {:?}",
                check.cohort,
                &unknown[..unknown.len().min(3)]
            ));
        }
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("; "));
    println!("\n  every planted gap the population can show was flagged, and no more groups without a gap than chance");
    Ok(())
}

/// The flagged groups of a low-uptake answer.
fn flagged_groups(out: &fdp_products::platform::Output) -> Result<BTreeSet<GroupKey>> {
    let at = |name: &str| {
        out.columns
            .iter()
            .position(|c| c.name == name)
            .with_context(|| format!("the low-uptake view has no {name} column"))
    };
    let (cut, group, flagged) = (at("cut")?, at("group")?, at("flagged")?);
    Ok(out
        .rows
        .iter()
        .filter(|r| r[flagged] == Value::Bool(true))
        .filter_map(|r| Some((r[cut].as_str()?.to_string(), r[group].as_str()?.to_string())))
        .collect())
}

/// The cuts and pairs the low-uptake view assesses, as grouping sets.
fn grouping_sets(n: usize) -> String {
    let key = |i: usize| format!("g{i}");
    let mut sets = vec!["()".to_string()];
    for i in 0..n {
        sets.push(format!("({})", key(i)));
    }
    for i in 0..n {
        for j in i + 1..n {
            sets.push(format!("({}, {})", key(i), key(j)));
        }
    }
    sets.join(", ")
}

/// Each group's expected uptake by the truth, and the area's.
async fn expected_uptake(
    ctx: &datafusion::prelude::SessionContext,
    check: &Check,
) -> Result<(f64, BTreeMap<GroupKey, Expected>)> {
    let cohort = population_health::cohort(check.cohort)?;
    let as_at: NaiveDate = AS_AT.parse()?;
    let (members, _) = population_health::members_by_every_cut(&cohort, as_at)?;
    let cuts: Vec<&str> = population_health::CUTS.iter().map(|(n, _)| *n).collect();
    let keys: Vec<String> = (0..cuts.len()).map(|i| format!("g{i}")).collect();
    let sql = format!(
        "SELECT {keys}, count(*) AS people, avg(CAST(t.{chance} AS DOUBLE)) AS expected \
         FROM ({members}) x JOIN truth t ON t.person_id = x.patient_id \
         GROUP BY GROUPING SETS ({sets})",
        keys = keys.join(", "),
        chance = check.chance,
        sets = grouping_sets(cuts.len()),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut area = None;
    let mut out = BTreeMap::new();
    for b in &batches {
        let text: Vec<_> = (0..keys.len())
            .map(|i| datafusion::arrow::compute::cast(b.column(i), &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()?;
        let people = datafusion::arrow::compute::cast(b.column(keys.len()), &DataType::Int64)?;
        let people = people.as_primitive::<Int64Type>();
        let expected = b.column(keys.len() + 1).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let present: Vec<usize> = (0..keys.len()).filter(|&i| text[i].is_valid(r)).collect();
            let uptake = expected.value(r);
            if present.is_empty() {
                area = Some(uptake);
                continue;
            }
            let cut = present
                .iter()
                .map(|&i| cuts[i])
                .collect::<Vec<_>>()
                .join(" × ");
            let group = present
                .iter()
                .map(|&i| text[i].as_string::<i32>().value(r).to_string())
                .collect::<Vec<_>>()
                .join(" × ");
            out.insert(
                (cut, group),
                Expected {
                    people: people.value(r) as u64,
                    uptake,
                },
            );
        }
    }
    let area = area.context("the truth query gave no whole-cohort row")?;
    Ok((area, out))
}

/// The groups planted low for `programme`, named as the product names
/// them.
async fn planted_labels(
    ctx: &datafusion::prelude::SessionContext,
    gaps: &[PlantedGap],
    programme: Programme,
) -> Result<Vec<(PlantedGap, GroupKey)>> {
    let mut out = Vec::new();
    for gap in gaps.iter().filter(|g| g.programme == programme) {
        let key = match &gap.group {
            GapGroup::Ethnic(code) => {
                let sql = format!(
                    "SELECT display FROM ethnic_category_code WHERE code = '{}'",
                    code.replace('\'', "''")
                );
                let batches = ctx.sql(&sql).await?.collect().await?;
                let display = batches
                    .iter()
                    .find(|b| b.num_rows() > 0)
                    .map(|b| -> Result<String> {
                        let c = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
                        Ok(c.as_string::<i32>().value(0).to_string())
                    })
                    .transpose()?
                    .with_context(|| format!("no ethnic category {code} in the reference data"))?;
                ("ethnic_group".to_string(), display)
            }
            GapGroup::Practice(code) => ("practice".to_string(), code.clone()),
            GapGroup::Decile(d) => ("imd_decile".to_string(), d.to_string()),
            GapGroup::Lsoa(code) => ("lsoa".to_string(), code.clone()),
        };
        out.push((gap.clone(), key));
    }
    Ok(out)
}

pub async fn cohort(args: CohortArgs) -> Result<()> {
    let mut args = args;
    let people = match (args.icb.people, args.icb.quick) {
        (Some(n), _) => n,
        (None, true) => 30_000,
        (None, false) => 10_000_000,
    };
    if args.icb.quick {
        args.runs = args.runs.min(2);
    }
    let runs = args.runs.max(1);
    println!(
        "fdp bench cohort — people with diabetes and no foot check in 12 months, by IMD decile and practice, governed under planning"
    );
    let icb = icb(&args.icb, people).await?;
    let cohort = population_health::cohort("diabetes-foot-check-overdue")?;
    let cuts = ["imd_decile", "practice"];
    let sql = population_health::size_sql(&cohort, &cuts, AS_AT.parse()?)?;
    if args.profile {
        println!("  the SQL:\n{sql}");
        let session = icb.session("analyst", Purpose::Planning).await?;
        let (_, plan) = session.profile(&sql).await?;
        println!("  its plan as run under planning:\n{plan}");
    }
    let mut ours = Vec::new();
    let mut answer = None;
    for _ in 0..runs {
        let started = Instant::now();
        let out = icb
            .view(
                "analyst",
                Purpose::Planning,
                "size",
                &[
                    ("cohort", "diabetes-foot-check-overdue"),
                    ("cut", "imd_decile,practice"),
                    ("as_at", AS_AT),
                ],
            )
            .await?;
        ours.push(started.elapsed().as_secs_f64());
        answer = Some(out);
    }
    let answer = answer.context("no run")?;
    let ours = crate::bench::median(&mut ours);
    let shown: u64 = answer
        .rows
        .iter()
        .filter_map(|r| r.last().and_then(Value::as_u64))
        .sum();
    println!(
        "  OpenFDP: {ours:.3} s median of {runs} runs (a governed session opened, the product's view, opt-out, dates of birth to the month, disclosure control and audit): {} cells, {} people shown, {}",
        answer.rows.len(),
        shown,
        answer.disclosure.as_deref().unwrap_or("no disclosure control")
    );
    if args.no_duckdb {
        return Ok(());
    }
    let spec = serde_json::json!({
        "tables": parquet_files(&icb.data).await?,
        "sql": sql,
        "runs": runs,
    });
    let Some(duckdb) = crate::bench::duckdb_timed_query(&spec)? else {
        return Ok(());
    };
    let theirs = duckdb.median_secs;
    println!(
        "  DuckDB {}: {theirs:.3} s median of {runs} runs (the same SQL over the same Parquet files, no policy)",
        crate::bench_csv::duckdb_version(),
    );
    println!("  OpenFDP time / DuckDB time: {:.2}", ours / theirs);
    check_against_duckdb(&answer, &duckdb.rows)
}

/// Each cell of ours is DuckDB's count rounded to 5, or withheld (a count
/// of 1 to 7, or one suppressed to protect another); none is made up.
fn check_against_duckdb(
    ours: &fdp_products::platform::Output,
    theirs: &[Vec<Option<String>>],
) -> Result<()> {
    let their: BTreeMap<(Option<String>, Option<String>), u64> = theirs
        .iter()
        .filter_map(|r| Some(((r[0].clone(), r[1].clone()), r[2].as_deref()?.parse().ok()?)))
        .collect();
    let members: u64 = their.values().sum();
    let mut withheld = 0;
    for r in &ours.rows {
        let key = (
            r[0].as_str().map(str::to_string),
            r[1].as_str().map(str::to_string),
        );
        let exact = their
            .get(&key)
            .copied()
            .with_context(|| format!("a cell DuckDB does not have: {key:?}"))?;
        match r[2].as_u64() {
            Some(n) => anyhow::ensure!(
                n.abs_diff(exact) <= 2 && n % 5 == 0,
                "{key:?}: {n} shown where DuckDB counts {exact}"
            ),
            None => {
                withheld += 1;
            }
        }
    }
    let missing = their.len() - ours.rows.len().min(their.len());
    println!(
        "  the answers agree: {} cells and {members} members in DuckDB; OpenFDP shows each rounded to 5, with {withheld} cells suppressed and {missing} rows withheld",
        their.len()
    );
    Ok(())
}
