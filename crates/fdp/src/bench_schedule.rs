//! `fdp bench schedule`: the scheduler on IHTC-2024 instances, each given
//! a time limit, beside the competition's published results.
//!
//! For every instance: the greedy start, the schedule found and whether it
//! is feasible, the lower bound, and the reference cost, with the gap to
//! each. On the competition's instances (`--instances DIR`) the reference
//! is the best-known cost, the lowest any team reached in the published
//! results file (`--results`); the same file gives each team's mean gap
//! over the instances run, so the scheduler's mean gap is ranked among the
//! teams' in the same run. Without `--instances`, instances drawn by
//! `fdp-synth` are scheduled instead, with their planted schedule's cost as
//! the reference.
//!
//! Several time limits (`--time-limit 60,600`) give one table each.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use fdp_schedule::ihtc::{
    construct, evaluate, lower_bound, price, search, Evaluation, Instance, Problem, SearchOptions,
    Solution,
};

use crate::schedule::{gap_percent, seconds};

#[derive(Args, Clone)]
pub struct ScheduleArgs {
    /// A folder of competition instances (`*.json`); without it, instances
    /// drawn by fdp-synth (small, medium and competition size)
    #[arg(long)]
    pub instances: Option<PathBuf>,
    /// The competition's published results (`ihtc2024_ph1_results.csv`:
    /// an instance per row, a team per column): the best-known cost of each
    /// instance and each team's gap. Looked for in the instances' folder
    /// when not given
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Seconds for each instance; several, comma-separated, give a table each
    #[arg(long, value_delimiter = ',', default_value = "600")]
    pub time_limit: Vec<f64>,
    /// Searches in parallel on each instance
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seed of the search
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Synthetic instances of each size, when no --instances
    #[arg(long, default_value_t = 2)]
    pub count: u64,
    /// Write each solution here, as `<instance>_<seconds>s.json`
    #[arg(long)]
    pub solutions: Option<PathBuf>,
    /// Instances run at once, each on --threads threads (`--jobs 2
    /// --threads 1` keeps both cores of a two-core machine busy)
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Do not run again an instance whose solution at this time limit, with
    /// the same threads and seed, is already in --solutions DIR: its cost is
    /// checked afresh from the saved solution, so a long table can be built
    /// over several sittings
    #[arg(long)]
    pub resume: bool,
    /// A few seconds on small synthetic instances: the same code path, so
    /// that the benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

/// An instance to run, and the cost to measure against.
struct Case {
    name: String,
    instance: Instance,
    reference: Option<i64>,
}

/// The published results: per instance, each team's cost.
struct Published {
    teams: Vec<String>,
    by_instance: Vec<(String, Vec<Option<i64>>)>,
}

impl Published {
    fn read(path: &Path) -> Result<Published> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the results file {}", path.display()))?;
        let mut lines = text.lines();
        let header = lines
            .next()
            .with_context(|| format!("{} is empty", path.display()))?;
        let teams: Vec<String> = header.split(',').skip(1).map(str::to_string).collect();
        let mut by_instance = Vec::new();
        for (n, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut cells = line.split(',');
            let name = cells.next().unwrap_or_default();
            let name = name.trim().trim_end_matches(".json").to_string();
            let costs: Vec<Option<i64>> = cells.map(|c| c.trim().parse().ok()).collect();
            if costs.len() != teams.len() {
                bail!(
                    "{} line {}: {} costs for {} teams; expected the competition's results layout (instance, then a cost per team)",
                    path.display(),
                    n + 2,
                    costs.len(),
                    teams.len()
                );
            }
            by_instance.push((name, costs));
        }
        Ok(Published { teams, by_instance })
    }

    fn costs(&self, instance: &str) -> Option<&[Option<i64>]> {
        self.by_instance
            .iter()
            .find(|(n, _)| n == instance)
            .map(|(_, c)| c.as_slice())
    }

    fn best_known(&self, instance: &str) -> Option<i64> {
        self.costs(instance)?.iter().flatten().min().copied()
    }

    /// Each team's mean gap to the best known over `instances` (a team
    /// with no cost for one of them is left out).
    fn team_gaps(&self, instances: &[String]) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (t, team) in self.teams.iter().enumerate() {
            let gaps: Option<Vec<f64>> = instances
                .iter()
                .map(|i| {
                    let cost = (*self.costs(i)?.get(t)?)?;
                    Some(gap_percent(cost, self.best_known(i)?))
                })
                .collect();
            if let Some(gaps) = gaps.filter(|g| !g.is_empty()) {
                out.push((team.clone(), gaps.iter().sum::<f64>() / gaps.len() as f64));
            }
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out
    }
}

fn competition_cases(dir: &Path, published: Option<&Published>) -> Result<Vec<Case>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the instances folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // Solutions and other files beside the instances are passed over.
        let Ok(instance) = serde_json::from_str::<Instance>(&text) else {
            continue;
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reference = published.and_then(|p| p.best_known(&name));
        cases.push(Case {
            name,
            instance,
            reference,
        });
    }
    if cases.is_empty() {
        bail!(
            "no IHTC-2024 instance in {}: give the folder of the competition's instance files",
            dir.display()
        );
    }
    Ok(cases)
}

fn synthetic_cases(sizes: &[&str], count: u64, seed: u64) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for size in sizes {
        let spec = fdp_synth::ihtc::IhtcSize::named(size).expect("a known size");
        for k in seed..seed + count {
            let drawn = fdp_synth::ihtc::generate(k, &spec);
            let planted = evaluate(&drawn.instance, &drawn.planted)?;
            cases.push(Case {
                name: format!("{size}_{k}"),
                instance: drawn.instance,
                reference: Some(planted.total_cost()),
            });
        }
    }
    Ok(cases)
}

/// One instance's figures at one time limit.
struct Row {
    name: String,
    greedy: i64,
    cost: i64,
    feasible: bool,
    bound: i64,
    reference: Option<i64>,
    moves_per_second: f64,
    /// Taken from a solution saved by an earlier sitting (`--resume`).
    resumed: bool,
}

impl Row {
    /// The figures of a schedule priced as `evaluation`, found from a
    /// greedy start costing `greedy`.
    fn of(
        case: &Case,
        problem: &Problem,
        greedy: i64,
        evaluation: &Evaluation,
        moves_per_second: f64,
        resumed: bool,
    ) -> Row {
        Row {
            name: case.name.clone(),
            greedy,
            cost: evaluation.total_cost(),
            feasible: evaluation.is_feasible(),
            bound: lower_bound(problem).total(),
            reference: case.reference,
            moves_per_second,
            resumed,
        }
    }

    /// The run's figures on one line, printed as soon as it ends.
    fn line(&self, limit: &str) -> String {
        format!(
            "{} at {limit}: cost {}{}, {}{}",
            self.name,
            self.cost,
            self.reference.map_or(String::new(), |b| format!(
                " ({:.1}% from {b})",
                gap_percent(self.cost, b)
            )),
            if self.feasible {
                "feasible"
            } else {
                "NOT feasible"
            },
            if self.resumed {
                ", from the saved solution"
            } else {
                ""
            }
        )
    }
}

/// What a run leaves beside its solution, so that `--resume` knows how the
/// solution was found. Its cost is not kept here: it is recomputed from the
/// solution itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunRecord {
    instance: String,
    time_limit: f64,
    threads: usize,
    seed: u64,
    greedy: i64,
    moves_per_second: f64,
    fdp_version: String,
}

/// Runs one instance for `limit` seconds, or, under `--resume`, takes the
/// run an earlier sitting saved.
fn run_one(case: &Case, limit: f64, args: &ScheduleArgs) -> Result<Row> {
    let problem = Problem::new(&case.instance).with_context(|| format!("reading {}", case.name))?;
    let stem = format!("{}_{limit}s", case.name);
    if let (true, Some(dir)) = (args.resume, &args.solutions) {
        if let Some(row) = resume_one(case, &problem, limit, dir, &stem, args)? {
            return Ok(row);
        }
    }
    let started = Instant::now();
    let first = construct(&problem);
    let greedy = price(&problem, &first).total_cost();
    let found = search(
        &problem,
        &first,
        &SearchOptions {
            time_limit: seconds(limit)?
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1)),
            threads: args.threads.max(1),
            max_moves: None,
            seed: args.seed,
        },
    );
    if let Some(dir) = &args.solutions {
        // The solution first and its record last, each written whole: a run
        // killed part way leaves no record, so it is run again on resuming.
        let solution = serde_json::to_vec_pretty(&problem.write(&found.schedule))?;
        write_whole(&dir.join(format!("{stem}.json")), &solution)?;
        let record = RunRecord {
            instance: case.name.clone(),
            time_limit: limit,
            threads: args.threads.max(1),
            seed: args.seed,
            greedy,
            moves_per_second: found.moves_per_second,
            fdp_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        write_whole(
            &dir.join(format!("{stem}.run.json")),
            &serde_json::to_vec_pretty(&record)?,
        )?;
    }
    Ok(Row::of(
        case,
        &problem,
        greedy,
        &found.evaluation,
        found.moves_per_second,
        false,
    ))
}

/// The saved run of `case` at `limit`, if there is one made the same way:
/// the solution is read back and priced by the validator, so a solution
/// edited or damaged since is caught, not trusted.
fn resume_one(
    case: &Case,
    problem: &Problem,
    limit: f64,
    dir: &Path,
    stem: &str,
    args: &ScheduleArgs,
) -> Result<Option<Row>> {
    let record_path = dir.join(format!("{stem}.run.json"));
    let Ok(text) = std::fs::read_to_string(&record_path) else {
        return Ok(None);
    };
    let record: RunRecord = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a run record: delete it to run {} again",
            record_path.display(),
            case.name
        )
    })?;
    if record.threads != args.threads.max(1)
        || record.seed != args.seed
        || record.time_limit != limit
    {
        tracing::warn!(
            instance = %case.name,
            "the saved run used {} thread(s) and seed {}; running again with {} and {}",
            record.threads,
            record.seed,
            args.threads.max(1),
            args.seed
        );
        return Ok(None);
    }
    let solution_path = dir.join(format!("{stem}.json"));
    let solution: Solution = serde_json::from_str(
        &std::fs::read_to_string(&solution_path)
            .with_context(|| format!("reading the saved solution {}", solution_path.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is not an IHTC-2024 solution: delete it and {} to run {} again",
            solution_path.display(),
            record_path.display(),
            case.name
        )
    })?;
    let evaluation = evaluate(&case.instance, &solution)
        .with_context(|| format!("checking the saved solution {}", solution_path.display()))?;
    Ok(Some(Row::of(
        case,
        problem,
        record.greedy,
        &evaluation,
        record.moves_per_second,
        true,
    )))
}

/// Writes `bytes` to `path` whole or not at all.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    fdp_govern::files::replace_durably(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: ScheduleArgs) -> Result<()> {
    let (limits, cases, published, reference_name) = if args.quick {
        (
            vec![1.0],
            synthetic_cases(&["small", "medium"], 1, args.seed)?,
            None,
            "planted",
        )
    } else if let Some(dir) = &args.instances {
        let results = args.results.clone().or_else(|| {
            let beside = dir.join("ihtc2024_ph1_results.csv");
            beside.exists().then_some(beside)
        });
        let published = results.as_deref().map(Published::read).transpose()?;
        let cases = competition_cases(dir, published.as_ref())?;
        (args.time_limit.clone(), cases, published, "best known")
    } else {
        (
            args.time_limit.clone(),
            synthetic_cases(&["small", "medium", "competition"], args.count, args.seed)?,
            None,
            "planted",
        )
    };
    if limits.iter().any(|&l| !l.is_finite() || l <= 0.0) {
        bail!("--time-limit must be a number of seconds above 0");
    }
    for &l in &limits {
        seconds(l)?;
    }
    if let Some(dir) = &args.solutions {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if args.resume && args.solutions.is_none() {
        bail!("--resume reads the runs already made from --solutions DIR: give that folder");
    }
    let total: f64 = limits.iter().sum::<f64>() * cases.len() as f64;
    let jobs = args.jobs.clamp(1, cases.len().max(1));
    println!(
        "fdp bench schedule — {} instance(s), {} at a time on {} thread(s) each, time limit(s) {} s: at most {:.0} min",
        cases.len(),
        jobs,
        args.threads.max(1),
        limits
            .iter()
            .map(|l| format!("{l}"))
            .collect::<Vec<_>>()
            .join(", "),
        total / 60.0 / jobs as f64
    );
    let progress = indicatif::ProgressBar::new(total.ceil() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} s ({eta})")
            .expect("a valid template"),
    );
    // Every (time limit, instance) pair is one run; `--jobs` of them go at
    // once, each taking the next run not yet started, so a slow instance
    // never holds up a free core.
    let runs: Vec<(f64, &Case)> = limits
        .iter()
        .flat_map(|&l| cases.iter().map(move |c| (l, c)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<Row>>> =
        std::sync::Mutex::new((0..runs.len()).map(|_| None).collect());
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(limit, case)) = runs.get(k) else {
                            return Ok(());
                        };
                        progress.set_message(format!("{} at {limit} s", case.name));
                        let row = run_one(case, limit, &args).inspect_err(|_| {
                            // The other jobs stop once their current run ends.
                            next.store(runs.len(), std::sync::atomic::Ordering::Relaxed);
                        })?;
                        // To stdout, so that a run saved to a file keeps them.
                        progress.suspend(|| println!("{}", row.line(&format!("{limit} s"))));
                        progress.inc(limit.ceil() as u64);
                        done.lock().expect("no run panicked")[k] = Some(row);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a run does not panic")?;
        }
        Ok(())
    })?;
    let mut done = done.into_inner().expect("no run panicked").into_iter();
    let tables: Vec<(f64, Vec<Row>)> = limits
        .iter()
        .map(|&l| (l, done.by_ref().take(cases.len()).flatten().collect()))
        .collect();
    progress.finish_and_clear();
    for (limit, rows) in &tables {
        print_table(
            *limit,
            args.threads.max(1),
            jobs,
            rows,
            published.as_ref(),
            reference_name,
        );
    }
    Ok(())
}

fn print_table(
    limit: f64,
    threads: usize,
    jobs: usize,
    rows: &[Row],
    published: Option<&Published>,
    reference_name: &str,
) {
    println!();
    let at_once = if jobs > 1 {
        format!(", {jobs} instances at a time")
    } else {
        String::new()
    };
    println!(
        "at {limit} s on {threads} thread(s) each{at_once}, gaps to the {reference_name} cost:"
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>11} {:>8} {:>9} {:>9} {:>10}",
        "instance",
        "greedy",
        "cost",
        "bound",
        reference_name,
        "gap",
        "to bound",
        "feasible",
        "moves/s"
    );
    let mut gaps = Vec::new();
    for r in rows {
        let gap = r.reference.map(|b| gap_percent(r.cost, b));
        if let (Some(g), true) = (gap, r.feasible) {
            gaps.push(g);
        }
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:>11} {:>8} {:>8.1}% {:>9} {:>10.0}",
            r.name,
            r.greedy,
            r.cost,
            r.bound,
            r.reference.map_or("-".to_string(), |b| b.to_string()),
            gap.map_or("-".to_string(), |g| format!("{g:.1}%")),
            gap_percent(r.cost, r.bound),
            if r.feasible { "yes" } else { "NO" },
            r.moves_per_second
        );
    }
    let feasible = rows.iter().filter(|r| r.feasible).count();
    let mean = (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64);
    println!(
        "feasible on {feasible} of {}; mean gap to the {reference_name} cost {}",
        rows.len(),
        mean.map_or("-".to_string(), |m| format!("{m:.2}%"))
    );
    let resumed = rows.iter().filter(|r| r.resumed).count();
    if resumed > 0 {
        println!(
            "{resumed} of these runs were made by an earlier sitting: their costs are the validator's on the saved solutions"
        );
    }
    let (Some(published), Some(mean)) = (published, mean) else {
        return;
    };
    if feasible != rows.len() {
        return;
    }
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let teams = published.team_gaps(&names);
    if teams.is_empty() {
        return;
    }
    let rank = teams.iter().filter(|(_, g)| *g < mean).count() + 1;
    let at = |k: usize| teams.get(k - 1).map_or(f64::NAN, |t| t.1);
    println!(
        "published teams' mean gaps over these instances: best {:.2}%, 9th {:.2}%, median {:.2}%; this run would rank {rank} of {}",
        at(1),
        at(9),
        at(teams.len().div_ceil(2)),
        teams.len() + 1
    );
}
