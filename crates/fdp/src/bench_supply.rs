//! `fdp bench supply`: forecasts and days of cover for many item-location
//! series with years of daily history, as the supply-chain product works
//! them out for each line: the ledger (stock day by day from the counts and
//! every movement), the months with their days out of stock, AMC, the
//! demand pattern and its forecast, and the cover (safety stock, reorder
//! point, days of cover).
//!
//! The series are drawn here, each with a known daily rate: most used
//! most days, a share now and then (intermittent), topped up weekly to an
//! imprest level after a lead time, sometimes running out, and counted
//! every four weeks. Drawing them is not timed; working them out is, in
//! batches over every core. So that a fast wrong answer cannot pass, the
//! forecasts of smooth series are checked against the rate they were drawn
//! from.
//!
//! What is timed is the arithmetic alone (`fdp-supply`), which is what the
//! number of series scales; reading the movements through a governed
//! session is the product's and is measured by the product's own tests at a
//! trust's size.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use chrono::{Days, NaiveDate};
use clap::Args;
use fdp_supply::amc::{adjusted_series, amc, DEFAULT_MONTHS};
use fdp_supply::cover::{cover, Policy};
use fdp_supply::forecast::{forecast, Pattern};
use fdp_supply::ledger::{ledger, Count, Movement, MovementKind};

#[derive(Args, Clone)]
pub struct SupplyArgs {
    /// Item-location series
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Days of daily history in each
    #[arg(long, default_value_t = 730)]
    pub days: u32,
    /// The last day of the history
    #[arg(long, default_value = "2026-11-30")]
    pub end: NaiveDate,
    /// Threads working the series out (default: every core)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the series
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Seconds the whole run should take at most (the target)
    #[arg(long, default_value_t = 10.0)]
    pub target_secs: f64,
    /// A few thousand series: the same code path, so that the benchmark
    /// cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

/// Series drawn and worked out at a time: small enough that the batch's
/// movements stay in memory, large enough to keep every thread busy.
const BATCH: usize = 4_096;

/// A tiny deterministic generator (SplitMix64): the series only need to be
/// the same from run to run, not good randomness.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// A Poisson draw (Knuth; the means here are small).
    fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.unit();
            if p <= limit || k > 500 {
                return k;
            }
            k += 1;
        }
    }
}

/// One series as drawn: its counts and movements, and the rate it was drawn
/// from.
struct Series {
    counts: Vec<Count>,
    moves: Vec<Movement>,
    intermittent: bool,
    /// Expected use a day.
    daily_mean: f64,
    lead_days: f64,
}

fn draw(seed: u64, index: usize, first: NaiveDate, days: u32) -> Series {
    let mut rng = Rng::new(seed, index as u64);
    let intermittent = index % 10 >= 7;
    // Intermittent: a few units every few weeks; smooth: some most days.
    let (chance, size) = if intermittent {
        (rng.range(0.03, 0.15), rng.range(1.0, 6.0))
    } else {
        (1.0, rng.range(0.8, 8.0))
    };
    let daily_mean = chance * size;
    let lead = rng.range(2.0, 14.0).round();
    let imprest = (daily_mean * (14.0 + lead)).ceil() + 2.0;
    let review = (rng.next() % 7) as u32;
    let mut stock = imprest;
    let mut counts = vec![Count {
        date: first,
        quantity: stock,
    }];
    let mut moves = Vec::with_capacity(days as usize + days as usize / 7 + 8);
    let mut due: Option<(u32, f64)> = None;
    for d in 0..days {
        let date = first + Days::new(u64::from(d));
        if d > 0 && d % 28 == 0 {
            // A count now and then finds a unit or two less than the books.
            let lost = if rng.unit() < 0.1 { 1.0 } else { 0.0 };
            stock = (stock - lost).max(0.0);
            counts.push(Count {
                date,
                quantity: stock,
            });
        }
        if let Some((day, q)) = due {
            if day == d {
                moves.push(Movement {
                    date,
                    kind: MovementKind::Receipt,
                    quantity: q,
                });
                stock += q;
                due = None;
            }
        }
        let wanted = if rng.unit() < chance {
            f64::from(rng.poisson(size)).max(1.0)
        } else {
            0.0
        };
        let issued = wanted.min(stock);
        if issued > 0.0 {
            moves.push(Movement {
                date,
                kind: MovementKind::Issue,
                quantity: issued,
            });
            stock -= issued;
            if rng.unit() < 0.02 {
                moves.push(Movement {
                    date,
                    kind: MovementKind::Return,
                    quantity: 1.0,
                });
                stock += 1.0;
            }
        }
        if d % 7 == review && due.is_none() && stock < imprest {
            // A supplier misses now and then by a week.
            let late = if rng.unit() < 0.05 { 7 } else { 0 };
            due = Some((d + lead as u32 + late, imprest - stock));
        }
    }
    Series {
        counts,
        moves,
        intermittent,
        daily_mean,
        lead_days: lead,
    }
}

/// What working one series out gave, and how long each step took.
#[derive(Default, Clone)]
struct Worked {
    series: usize,
    movements: usize,
    /// Smooth, erratic, intermittent, lumpy, no demand.
    by_pattern: [usize; 5],
    short: usize,
    below_reorder_point: usize,
    /// |forecast − drawn rate| / drawn rate, for smooth series.
    smooth_errors: Vec<f64>,
    ledger: Duration,
    months: Duration,
    forecast: Duration,
    cover: Duration,
}

impl Worked {
    fn add(&mut self, o: Worked) {
        self.series += o.series;
        self.movements += o.movements;
        for (a, b) in self.by_pattern.iter_mut().zip(o.by_pattern) {
            *a += b;
        }
        self.short += o.short;
        self.below_reorder_point += o.below_reorder_point;
        self.smooth_errors.extend(o.smooth_errors);
        self.ledger += o.ledger;
        self.months += o.months;
        self.forecast += o.forecast;
        self.cover += o.cover;
    }
}

fn pattern_index(p: Pattern) -> usize {
    match p {
        Pattern::Smooth => 0,
        Pattern::Erratic => 1,
        Pattern::Intermittent => 2,
        Pattern::Lumpy => 3,
        Pattern::None => 4,
    }
}

fn work(series: &[Series], first: NaiveDate, last: NaiveDate) -> Worked {
    let mut out = Worked::default();
    for s in series {
        let t0 = Instant::now();
        let days = ledger(&s.counts, &s.moves, first, last);
        let t1 = Instant::now();
        let months = days.months();
        let history = adjusted_series(&months);
        let _amc = amc(&months, DEFAULT_MONTHS);
        let t2 = Instant::now();
        let f = forecast(&history);
        let t3 = Instant::now();
        let policy = Policy {
            lead_time_days: s.lead_days,
            max_months: 1.0,
            ..Policy::default()
        };
        let c = cover(days.on_hand(), &f, &policy, last);
        let t4 = Instant::now();
        out.ledger += t1 - t0;
        out.months += t2 - t1;
        out.forecast += t3 - t2;
        out.cover += t4 - t3;
        out.series += 1;
        out.movements += s.moves.len();
        out.by_pattern[pattern_index(f.pattern)] += 1;
        out.short += usize::from(c.short);
        out.below_reorder_point += usize::from(c.below_reorder_point);
        if !s.intermittent {
            let rate = s.daily_mean * fdp_supply::DAYS_PER_MONTH;
            out.smooth_errors.push((f.per_period - rate).abs() / rate);
        }
    }
    out
}

/// `items` split into `threads` parts, each worked on its own thread.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || f(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread panicked"))
            .collect()
    })
}

fn micros(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

pub fn run(args: SupplyArgs) -> Result<()> {
    let (series, days) = if args.quick {
        (args.series.min(3_000), args.days.min(730))
    } else {
        (args.series, args.days)
    };
    ensure!(series > 0, "--series: give at least one");
    ensure!(
        days >= 90,
        "--days {days}: give at least 90 days of history"
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let last = args.end;
    let first = last - Days::new(u64::from(days) - 1);
    println!(
        "fdp bench supply: {series} item-location series, {days} days each ({first} to {last}), {threads} threads"
    );
    let bar = indicatif::ProgressBar::new(series as u64).with_message("series worked out");
    let mut total = Worked::default();
    let mut drawing = Duration::ZERO;
    let mut working = Duration::ZERO;
    let mut start = 0;
    while start < series {
        let end = (start + BATCH).min(series);
        let t = Instant::now();
        let indices: Vec<usize> = (start..end).collect();
        let batch: Vec<Series> = in_parallel(&indices, threads, |part| {
            part.iter()
                .map(|&i| draw(args.seed, i, first, days))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
        drawing += t.elapsed();
        let t = Instant::now();
        for w in in_parallel(&batch, threads, |part| work(part, first, last)) {
            total.add(w);
        }
        working += t.elapsed();
        bar.inc((end - start) as u64);
        start = end;
    }
    bar.finish_and_clear();

    let n = total.series;
    let mut errors = total.smooth_errors.clone();
    errors.sort_by(f64::total_cmp);
    let median = errors.get(errors.len() / 2).copied().unwrap_or(0.0);
    let p90 = errors.get(errors.len() * 9 / 10).copied().unwrap_or(0.0);
    println!(
        "  history        {} movements and {} counts (drawn, not timed: {:.1} s)",
        total.movements,
        n * (days as usize / 28 + 1),
        drawing.as_secs_f64()
    );
    println!(
        "  worked out     {n} series in {:.2} s: {:.1} µs a series on the clock",
        working.as_secs_f64(),
        micros(working, n)
    );
    println!(
        "  per series     ledger {:.1} µs, months and AMC {:.1} µs, pattern and forecast {:.1} µs, cover {:.2} µs (thread time)",
        micros(total.ledger, n),
        micros(total.months, n),
        micros(total.forecast, n),
        micros(total.cover, n)
    );
    let [smooth, erratic, intermittent, lumpy, none] = total.by_pattern;
    println!(
        "  patterns       smooth {smooth}, erratic {erratic}, intermittent {intermittent}, lumpy {lumpy}, no demand {none} (drawn: {} used most days, {} now and then)",
        n - n * 3 / 10,
        n * 3 / 10
    );
    println!(
        "  smooth forecasts against the rate drawn: median error {:.1}%, 90th percentile {:.1}%",
        median * 100.0,
        p90 * 100.0
    );
    println!(
        "  cover          {} short within their lead time, {} below the reorder point",
        total.short, total.below_reorder_point
    );
    let met = working.as_secs_f64() <= args.target_secs;
    println!(
        "  target         {} series under {:.0} s: {}",
        n,
        args.target_secs,
        if met { "met" } else { "NOT met" }
    );
    // A forecast far from the rate its series was drawn from is wrong,
    // however fast.
    ensure!(
        median < 0.15,
        "smooth forecasts are {:.0}% from the rate drawn (median): the arithmetic is wrong",
        median * 100.0
    );
    ensure!(
        intermittent + lumpy > 0 && smooth > 0,
        "every pattern classified the same: smooth {smooth}, intermittent {intermittent}, lumpy {lumpy}"
    );
    Ok(())
}
