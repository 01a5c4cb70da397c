//! `fdp synth`: write the synthetic trust's data to files, to load with
//! `fdp ingest` or to look at.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Subcommand;
use fdp_synth::{ExtractSpec, Trust, TrustSpec};

#[derive(Subcommand)]
pub enum SynthCommand {
    /// The flat extracts of the synthetic trust's operational systems:
    /// theatre sessions and bookings, consultant leave, the e-roster,
    /// Capacity Tracker and virtual-ward capacity, vaccine stock, ward
    /// supplies stock and supplies transactions, each as its system writes
    /// it and with a few faulty lines. Load them with
    /// `fdp ingest csv --mapping mappings/ DIR`.
    Extracts {
        /// Folder to write into (created if missing)
        #[arg(long)]
        out: PathBuf,
        /// Seed of the synthetic trust and its extracts
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The day the extracts are taken (plans start on it)
        #[arg(long, default_value = "2026-03-02")]
        start: NaiveDate,
        /// Days covered by plans and by the transaction history
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Care homes in the Capacity Tracker export
        #[arg(long, default_value_t = 24)]
        care_homes: usize,
    },
    /// A year of a trust's ward supplies: the catalogue
    /// (`supplies_catalogue_<date>.csv`), counts at the start of every
    /// month (`ward_stock_<date>.csv`), every movement
    /// (`supplies_transactions_<date>.csv`) and the batches on hand with
    /// their expiry on the last day (`batch_stock_<date>.csv`), with what
    /// was planted (a ward about to run short of a critical item while
    /// another holds spare, a short-dated batch, counts that disagree) as
    /// `supplies_truth.json` beside them. Load the files with `fdp ingest
    /// csv --mapping mappings/ DIR`; the truth file is no extract.
    Supplies {
        /// Folder to write into (created if missing)
        #[arg(long)]
        out: PathBuf,
        /// Seed of the synthetic trust and its year
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The last day of the year (the last count is taken on it)
        #[arg(long, default_value = "2026-03-01")]
        end: NaiveDate,
        /// Days of history
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// A trust's elective waiting list as its PAS exports it
    /// (`waiting_list_<date>.csv`) with every pathway's RTT activity
    /// (`rtt_activity_<date>.csv`), and the planted validation problems as
    /// known truth (`planted_<date>.csv`: pathway and problem). Load the
    /// two exports with `fdp ingest csv --mapping mappings/ DIR`.
    Elective {
        /// Folder to write into (created if missing)
        #[arg(long)]
        out: PathBuf,
        /// Seed of the synthetic trust and its list
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The day the list is extracted
        #[arg(long, default_value = "2026-11-30")]
        as_at: NaiveDate,
        /// Entries on the list
        #[arg(long, default_value_t = 200_000)]
        pathways: usize,
        /// The share of entries carrying each of the eight kinds of planted problem
        #[arg(long, default_value_t = 0.01)]
        problem_share: f64,
    },
    /// A FHIR R4 Bulk Data export of UK Core patients with their
    /// encounters, observations, conditions, immunisations, procedures,
    /// referrals and appointments (36 resources a patient), one NDJSON file
    /// per resource type. Load it with `fdp ingest fhir DIR`.
    Fhir {
        /// Folder to write into (created if missing)
        #[arg(long)]
        out: PathBuf,
        /// Patients to write
        #[arg(long, default_value_t = 100)]
        patients: usize,
    },
    /// A trust's HL7 v2 ADT feed over a span of days (a year by default,
    /// a little over three million messages): the census that fills the
    /// hospital, then a steady stream of admissions, transfers, discharges,
    /// updates and merges with half a percent of malformed messages, as
    /// MLLP frames one after another. Load it with `fdp ingest hl7`, or
    /// send it to a running instance.
    Adt {
        /// File to write
        #[arg(long)]
        out: PathBuf,
        /// Seed of the synthetic trust and its PAS
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The day the feed starts
        #[arg(long, default_value = "2025-12-01")]
        start: NaiveDate,
        /// Days of feed
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Messages a day after the census
        #[arg(long, default_value_t = 8_640)]
        per_day: u32,
    },
    /// Admission and theatre scheduling problems in the IHTC-2024
    /// competition's format (`<size>_<seed>.json`), each with the feasible
    /// schedule planted in it (`<size>_<seed>_planted.json`), whose cost any
    /// scheduler must match. Schedule one with `fdp schedule ihtc`.
    Ihtc {
        /// Folder to write into (created if missing)
        #[arg(long)]
        out: PathBuf,
        /// small (14 days, 30 patients), medium (21 days, 150) or
        /// competition (21 days, 400, 25 rooms, 50 nurses)
        #[arg(long, default_value = "medium")]
        size: String,
        /// The first seed
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Instances to write, one per seed from the first
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// An ICB's registered population written into an instance's data
    /// directory: people on the real areas, postcodes, practices and
    /// ethnic mix of a sub-ICB location (from the UK reference folder),
    /// with diabetes and its care processes, flu eligibility and
    /// vaccinations and MMR, coded from the shipped cohorts' value sets,
    /// and uptake gaps planted. The truth goes to a CSV, never into the
    /// instance. Then `fdp reference load` gives everyone their area.
    Population(PopulationArgs),
}

/// What `fdp synth population` is asked.
#[derive(clap::Args)]
pub struct PopulationArgs {
    /// The instance's data directory to write into
    #[arg(long)]
    pub data_dir: PathBuf,
    /// People to make (about; each area's share is rounded)
    #[arg(long, default_value_t = 1_000_000)]
    pub people: u64,
    /// The UK reference folder
    #[arg(long, default_value = "../shared/data/uk_reference")]
    pub reference: PathBuf,
    /// The sub-ICB location whose areas the population lives in
    #[arg(long, default_value = "02A")]
    pub sub_icb: String,
    /// The cohorts whose value sets the records are coded from
    #[arg(long, default_value = "cohorts")]
    pub cohorts: PathBuf,
    /// The date the records run to
    #[arg(long, default_value = "2026-12-31")]
    pub as_at: NaiveDate,
    /// Seed
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The first person's number (populations of several members must not overlap)
    #[arg(long, default_value_t = 1)]
    pub first_id: u64,
    /// Where to write the planted truth (CSV, one row per person)
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Write a synthetic ICB population into a data directory.
pub async fn population(args: PopulationArgs) -> Result<()> {
    let areas =
        crate::synth_population::read_areas(&args.reference, &args.sub_icb).with_context(|| {
            format!(
                "reading the areas of {} from {}",
                args.sub_icb,
                args.reference.display()
            )
        })?;
    let codes = crate::synth_population::read_codes(&args.cohorts)?;
    let mut spec =
        fdp_synth::population::PopulationSpec::with_default_gaps(&areas, args.people, args.as_at);
    spec.first_id = args.first_id;
    for g in &spec.gaps {
        println!(
            "planted: {:?} uptake x{} in {:?}",
            g.programme, g.factor, g.group
        );
    }
    let (lsoas, practices) = (areas.lsoas.len(), areas.practices.len());
    let population = fdp_synth::population::Population::new(args.seed, areas, codes, spec)?;
    let t0 = std::time::Instant::now();
    let written =
        crate::synth_population::write(&args.data_dir, &population, args.truth.as_deref()).await?;
    println!(
        "{} people in {lsoas} LSOAs registered with {practices} practices, in {:.1} s",
        written.people,
        t0.elapsed().as_secs_f64()
    );
    for (table, rows) in &written.rows {
        println!("  {table}: {rows} rows");
    }
    Ok(())
}

pub async fn run(cmd: SynthCommand) -> Result<()> {
    match cmd {
        SynthCommand::Population(args) => population(args).await,
        SynthCommand::Extracts {
            out,
            seed,
            start,
            days,
            care_homes,
        } => {
            let trust = Trust::generate(seed, TrustSpec::default())?;
            let spec = ExtractSpec {
                start,
                days,
                care_homes,
            };
            let files = fdp_synth::extracts::generate(&trust, seed, &spec)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            println!("{:<40} {:>10} {:>8}", "FILE", "RECORDS", "FAULTY");
            for f in &files {
                let path = out.join(&f.name);
                std::fs::write(&path, &f.bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{:<40} {:>10} {:>8}", f.name, f.records, f.faults.len());
            }
            for f in &files {
                for fault in &f.faults {
                    println!(
                        "  {} line {}: {}: {}",
                        f.name,
                        fault.line,
                        fault.kind.as_str(),
                        fault.detail
                    );
                }
            }
            Ok(())
        }
        SynthCommand::Adt {
            out,
            seed,
            start,
            days,
            per_day,
        } => write_adt(&out, seed, start, days, per_day),
        SynthCommand::Elective {
            out,
            seed,
            as_at,
            pathways,
            problem_share,
        } => write_elective(&out, seed, as_at, pathways, problem_share),
        SynthCommand::Supplies {
            out,
            seed,
            end,
            days,
        } => {
            let trust = Trust::generate(seed, TrustSpec::default())?;
            let year = fdp_synth::extracts::supply_year(
                &trust,
                seed,
                &fdp_synth::extracts::SupplyYearSpec { end, days },
            );
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            println!("{:<40} {:>10}", "FILE", "RECORDS");
            for f in &year.files {
                let path = out.join(&f.name);
                std::fs::write(&path, &f.bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{:<40} {:>10}", f.name, f.records);
            }
            let truth = out.join("supplies_truth.json");
            std::fs::write(&truth, serde_json::to_vec_pretty(&year.truth)?)
                .with_context(|| format!("writing {}", truth.display()))?;
            let p = &year.truth.imbalance;
            println!(
                "planted: {} at {} holds {} and runs out about {}; {} holds {} of it",
                p.npc,
                p.short_location,
                p.short_on_hand,
                p.runs_out,
                p.spare_location,
                p.spare_on_hand
            );
            Ok(())
        }
        SynthCommand::Ihtc {
            out,
            size,
            seed,
            count,
        } => write_ihtc(&out, &size, seed, count),
        SynthCommand::Fhir { out, patients } => {
            let (files, n) =
                fdp_synth::fhir_export::write(&out, patients * fdp_synth::fhir_export::PER_PATIENT)
                    .with_context(|| format!("writing into {}", out.display()))?;
            println!(
                "{n} resources in {} files under {}",
                files.len(),
                out.display()
            );
            Ok(())
        }
    }
}

fn write_ihtc(out: &std::path::Path, size: &str, seed: u64, count: u64) -> Result<()> {
    use fdp_synth::ihtc::{generate, IhtcSize};
    let Some(spec) = IhtcSize::named(size) else {
        anyhow::bail!("no instance size {size:?}: use small, medium or competition");
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for seed in seed..seed + count {
        let drawn = generate(seed, &spec);
        let priced = fdp_schedule::ihtc::evaluate(&drawn.instance, &drawn.planted)?;
        for (name, text) in [
            (
                format!("{size}_{seed}.json"),
                serde_json::to_string_pretty(&drawn.instance)?,
            ),
            (
                format!("{size}_{seed}_planted.json"),
                serde_json::to_string_pretty(&drawn.planted)?,
            ),
        ] {
            let path = out.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        println!(
            "{size}_{seed}.json: {} patients ({} mandatory), {} rooms; the planted schedule costs {}",
            drawn.instance.patients.len(),
            drawn.instance.patients.iter().filter(|p| p.mandatory).count(),
            drawn.instance.rooms.len(),
            priced.total_cost()
        );
    }
    Ok(())
}

fn write_adt(
    out: &std::path::Path,
    seed: u64,
    start: NaiveDate,
    days: u32,
    per_day: u32,
) -> Result<()> {
    use std::io::Write;
    let trust = Trust::generate(seed, TrustSpec::default())?;
    let start = start.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let feed = fdp_synth::pas::Feed::new(&trust, seed, start, days, per_day)?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let progress = indicatif::ProgressBar::new(feed.remaining());
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {human_pos}/{human_len} ({per_sec}, {eta})",
        )
        .expect("a valid template"),
    );
    progress.set_message("writing the feed");
    let (mut total, mut bad, mut bytes) = (0u64, 0u64, 0u64);
    for m in feed {
        let frame = fdp_hl7::encode_frame(&m.bytes);
        w.write_all(&frame)
            .with_context(|| format!("writing {}", out.display()))?;
        total += 1;
        bytes += frame.len() as u64;
        if !m.is_valid() {
            bad += 1;
        }
        if total % 4096 == 0 {
            progress.set_position(total);
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    progress.finish_and_clear();
    println!(
        "{total} messages ({bad} malformed or not processed) over {days} days, {:.1} MiB, in {}",
        bytes as f64 / (1024.0 * 1024.0),
        out.display()
    );
    Ok(())
}

/// Write the elective list, its activity and its truth into `out`.
fn write_elective(
    out: &std::path::Path,
    seed: u64,
    as_at: NaiveDate,
    pathways: usize,
    problem_share: f64,
) -> Result<()> {
    let trust = Trust::generate(seed, TrustSpec::default())?;
    let spec = fdp_synth::ElectiveSpec {
        as_at,
        pathways,
        problem_share,
    };
    let list = fdp_synth::ElectiveList::generate(&trust, seed, &spec)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let day = as_at.format("%Y%m%d");
    let mut truth = String::from("pathway_id,problem,rule\n");
    let mut planted = std::collections::BTreeMap::new();
    for (id, p) in list.truth() {
        truth.push_str(&format!("{id},{p:?},{}\n", p.rule()));
        *planted.entry(p.rule()).or_insert(0usize) += 1;
    }
    for (name, text) in [
        (format!("waiting_list_{day}.csv"), list.waiting_list_csv()),
        (format!("rtt_activity_{day}.csv"), list.rtt_activity_csv()),
        (format!("planted_{day}.csv"), truth),
    ] {
        let path = out.join(&name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!(
        "{} entries; planted problems by the rule that should find them:",
        list.entries.len()
    );
    for (rule, n) in planted {
        println!("  {rule:<42} {n:>7}");
    }
    Ok(())
}
