//! `fdp bench csv`: a generated waiting-list extract (the shape PAS PTL
//! exports have) loaded through the shipped `waiting-list` mapping, and the
//! same file read, typed and written to Parquet by DuckDB in the same run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Clone)]
pub struct CsvArgs {
    /// Rows to generate and load
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// The mapping to load with
    #[arg(long, default_value = "mappings/waiting-list.toml")]
    pub mapping: PathBuf,
    /// Skip the DuckDB comparison
    #[arg(long)]
    pub no_duckdb: bool,
    /// A few seconds on tiny sizes: the same code path, so that the
    /// benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

const SPECIALTIES: &[&str] = &[
    "Trauma & Orthopaedics",
    "General Surgery",
    "Urology",
    "Ophthalmology",
    "ENT",
    "Gynaecology",
    "Plastic Surgery",
];
const PROCEDURES: &[(&str, &str)] = &[
    (
        "W401",
        "Total prosthetic replacement of knee joint using cement",
    ),
    (
        "W371",
        "Total prosthetic replacement of hip joint using cement",
    ),
    ("C751", "Insertion of prosthetic replacement for lens"),
    (
        "T201",
        "Primary repair of inguinal hernia using insert of prosthetic material",
    ),
    ("J183", "Total cholecystectomy"),
    ("M653", "Endoscopic resection of prostate"),
];
const SURNAMES: &[&str] = &[
    "SMITH", "JONES", "WILLIAMS", "TAYLOR", "BROWN", "DAVIES", "EVANS", "WILSON", "PATEL", "KHAN",
];
const GIVEN: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Oliver", "George", "Arthur", "Noah", "Muhammad", "Leo",
];

/// Write the extract; returns its size in bytes.
pub fn generate(path: &Path, rows: usize) -> Result<u64> {
    let mut w = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    writeln!(w, "Pathway ID,NHS Number,Patient Name,Specialty,Priority,RTT Clock Start,Decision To Admit,Planned Procedure,Procedure Description,Intended Management,TCI Date,RTT Status")?;
    let mut rng = fdp_synth::Xorshift::new(0x2545_F491_4F6C_DD1D);
    let mut next = move || rng.next();
    for i in 0..rows {
        let r = next();
        // A valid NHS number: nine digits and their check digit.
        let nhs = loop {
            let mut d = [0u8; 9];
            let mut v = next();
            d[0] = 4 + (v % 6) as u8;
            for x in d.iter_mut().skip(1) {
                v /= 10;
                *x = (v % 10) as u8;
            }
            // All-same-digit numbers pass modulus 11 but are never issued.
            if d.iter().all(|&x| x == d[0]) {
                continue;
            }
            if let Some(c) = fdp_model::identifiers::nhs_number_check_digit_of(&d) {
                let mut s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
                s.push(char::from(b'0' + c));
                break s;
            }
        };
        let (code, desc) = PROCEDURES[(r % PROCEDURES.len() as u64) as usize];
        let spec = SPECIALTIES[((r >> 8) % SPECIALTIES.len() as u64) as usize];
        let priority = [2, 3, 4, 4, 2, 3, 1][((r >> 16) % 7) as usize];
        let (d, m, y) = ((r >> 20) % 28 + 1, (r >> 28) % 12 + 1, 2023 + (r >> 32) % 3);
        let tci = if (r >> 40) % 4 == 0 {
            format!("{:02}/{:02}/2026", (r >> 44) % 28 + 1, (r >> 50) % 12 + 1)
        } else {
            String::new()
        };
        writeln!(
            w,
            "RXX{i:09},{nhs},\"{}, {}\",{spec},{priority},{d:02}/{m:02}/{y},{:02}/{:02}/{y},{code},{desc},{},{tci},{}",
            SURNAMES[((r >> 4) % 10) as usize],
            GIVEN[((r >> 12) % 10) as usize],
            (d % 27) + 1,
            m,
            1 + (r >> 56) % 2,
            [10, 20, 30][((r >> 58) % 3) as usize],
        )?;
    }
    w.flush()?;
    // On disk before the clock starts, as a delivered extract would be.
    w.get_ref().sync_all()?;
    Ok(std::fs::metadata(path)?.len())
}

const DUCKDB: &str = r#"
import sys, time
import duckdb
path, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
t = time.perf_counter()
con.sql(f"""COPY (SELECT * FROM read_csv('{path}', header = true, dateformat = '%d/%m/%Y',
    types = {{'NHS Number': 'VARCHAR', 'Priority': 'VARCHAR', 'Intended Management': 'VARCHAR', 'RTT Status': 'VARCHAR'}}))
    TO '{out}' (FORMAT parquet)""")
print(time.perf_counter() - t)
"#;

pub async fn csv(args: CsvArgs) -> Result<()> {
    let mut args = args;
    if args.quick {
        args.rows = args.rows.min(20_000);
    }
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("waiting_list_bench.csv");
    let started = Instant::now();
    let bytes = generate(&file, args.rows)?;
    println!(
        "fdp bench csv — a waiting-list extract through the `waiting-list` mapping\n  generated {} rows, {:.0} MB, in {:.1} s",
        args.rows,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(&args.mapping)
        .with_context(|| format!("reading {}", args.mapping.display()))?;
    let mapping = fdp_ingest::extract::Mapping::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.mapping.display()))?;
    let data = tmp.path().join("data");
    let started = Instant::now();
    let report = fdp_ingest::extract::load_file(&data, &mapping, &file, "bench").await?;
    let ours = started.elapsed().as_secs_f64();
    println!(
        "  OpenFDP: {} rows in {ours:.2} s: {:.0} rows/s ({:.0} MB/s); accepted {}, rejected {} (parsed, checked, typed, written as a Delta table)",
        report.rows_in,
        report.rows_in as f64 / ours,
        bytes as f64 / 1e6 / ours,
        report.accepted,
        report.rejected.len()
    );
    anyhow::ensure!(
        report.rejected.is_empty(),
        "the generated extract should load without rejections: {:?}",
        report.rejected.first()
    );
    if args.no_duckdb {
        return Ok(());
    }
    let out = tmp.path().join("duckdb.parquet");
    let run = std::process::Command::new("python3")
        .args(["-c", DUCKDB])
        .arg(&file)
        .arg(&out)
        .output()
        .context("running python3 for the DuckDB comparison")?;
    if !run.status.success() {
        let stderr = String::from_utf8_lossy(&run.stderr);
        let hint = if stderr.contains("No module named") {
            "; install it with `python3 -m pip install duckdb`"
        } else {
            ""
        };
        println!(
            "  DuckDB: not run ({}){hint}",
            stderr.lines().last().unwrap_or("python3 failed")
        );
        return Ok(());
    }
    let theirs: f64 = String::from_utf8_lossy(&run.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .parse()
        .context("reading DuckDB's time")?;
    println!(
        "  DuckDB {}: the same file read_csv → Parquet in {theirs:.2} s: {:.0} rows/s",
        duckdb_version(),
        args.rows as f64 / theirs
    );
    println!("  OpenFDP time / DuckDB time: {:.2}", ours / theirs);
    Ok(())
}

pub(crate) fn duckdb_version() -> String {
    std::process::Command::new("python3")
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
