//! `fdp ingest`: load files into a data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use fdp_ingest::hl7v2::{self, Verdict};
use fdp_ingest::live::{BED_REGISTER_HEADER, BED_REGISTER_STREAM};
use fdp_store::{Committed, RecordStatus, Submission};
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};

use crate::instance::{self, InstanceConfig};

#[derive(Subcommand)]
pub enum IngestCommand {
    /// HL7 v2 messages: files of messages one after another (CR, LF or CRLF
    /// segment ends, optionally MLLP-framed)
    Hl7 {
        #[arg(long)]
        data_dir: PathBuf,
        /// ODS code of the instance
        #[arg(long, default_value = "LOCAL")]
        ods: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// FHIR R4: NDJSON files (one resource per line, as a Bulk Data export
    /// writes them), JSON resources and batch, transaction or collection
    /// Bundles, or directories of them. References between the Bundles
    /// given are resolved.
    Fhir {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Flat extracts (CSV and other delimited files) through declared
    /// mappings: each file is loaded with the mapping whose file_pattern
    /// matches its name (see docs/extracts.md and the mappings/ folder)
    Csv {
        #[arg(long)]
        data_dir: PathBuf,
        /// A mapping file, or a folder of them
        #[arg(long)]
        mapping: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A bed register: the sites, wards and beds of the trust
    Beds {
        #[arg(long)]
        data_dir: PathBuf,
        /// CSV with the header site_code,site_name,ward_code,ward_name,specialty,bay,bed_id,bed_label,bed_type,status
        file: PathBuf,
    },
}

/// Split a file into messages. Segments are kept byte for byte; segment ends
/// are normalised to CR, as the standard has them.
pub fn split_messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.contains(&0x0b) {
        let mut d = fdp_hl7::MllpDecoder::with_max_frame_bytes(usize::MAX / 2);
        d.push(bytes);
        return d
            .frames()
            .filter_map(|f| f.ok())
            .map(|f| f.into_payload())
            .collect();
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in bytes.split(|b| *b == b'\r' || *b == b'\n') {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let starts_message = line.starts_with(b"MSH") || line.starts_with(b"\xef\xbb\xbfMSH");
        match out.last_mut() {
            Some(cur) if !starts_message => {
                cur.extend_from_slice(line);
                cur.push(b'\r');
            }
            _ => {
                let mut m = line.to_vec();
                m.push(b'\r');
                out.push(m);
            }
        }
    }
    out
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("progress template")
        .progress_chars("=> "),
    );
    pb
}

pub async fn run(cmd: IngestCommand) -> Result<()> {
    match cmd {
        IngestCommand::Hl7 {
            data_dir,
            ods,
            files,
        } => hl7(&data_dir, &ods, &files).await,
        IngestCommand::Beds { data_dir, file } => beds(&data_dir, &file).await,
        IngestCommand::Csv {
            data_dir,
            mapping,
            files,
        } => csv(&data_dir, &mapping, &files).await.map(|_| ()),
        IngestCommand::Fhir { data_dir, paths } => fhir(&data_dir, &paths).await.map(|_| ()),
    }
}

#[derive(Default, Debug)]
struct Summary {
    accepted: u64,
    unprocessed: u64,
    quarantined: u64,
    duplicates: u64,
}

async fn hl7(data_dir: &Path, ods: &str, files: &[PathBuf]) -> Result<()> {
    let config = InstanceConfig {
        ods: Some(ods.into()),
        data_dir: Some(data_dir.into()),
        ..Default::default()
    };
    let running = instance::start(&config).await?;
    let committer = running.store.committer();
    let mut summary = Summary::default();
    let mut problems: Vec<String> = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let messages = split_messages(&bytes);
        let pb = progress(messages.len() as u64, &file.display().to_string());
        let source = Arc::new(format!("file://{}", std::path::absolute(file)?.display()));
        let results: Vec<(usize, Verdict, Result<Committed, fdp_store::StoreError>)> =
            stream::iter(messages.into_iter().enumerate())
                .map(|(i, m)| {
                    let (c, source, pb) = (committer.clone(), source.clone(), pb.clone());
                    async move {
                        let classified =
                            hl7v2::classify(&m, &source, chrono::Utc::now().timestamp_micros());
                        let verdict = classified.verdict.clone();
                        let r = c.commit(classified.submission).await;
                        pb.inc(1);
                        (i, verdict, r)
                    }
                })
                .buffered(1024)
                .collect()
                .await;
        pb.finish_and_clear();
        for (i, verdict, r) in results {
            let committed = r.with_context(|| format!("{} message {}", file.display(), i + 1))?;
            match (verdict, committed) {
                (_, Committed::Duplicate(_)) => summary.duplicates += 1,
                (Verdict::Accept, _) => summary.accepted += 1,
                (Verdict::Unprocessed, _) => summary.unprocessed += 1,
                (
                    Verdict::Quarantine {
                        reason, location, ..
                    },
                    _,
                ) => {
                    summary.quarantined += 1;
                    problems.push(format!(
                        "{} message {}: {location}: {reason}",
                        file.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    let through = committer.committed_through();
    running.live.applied_through(through).await;
    let census_warnings = running.live.read().await.warning_count;
    running.stop().await?;
    println!(
        "accepted {}, kept unprocessed {}, quarantined {}, already present {}; census warnings {}",
        summary.accepted,
        summary.unprocessed,
        summary.quarantined,
        summary.duplicates,
        census_warnings
    );
    for p in problems.iter().take(20) {
        println!("  quarantined: {p}");
    }
    if problems.len() > 20 {
        println!("  … and {} more (see the quarantine page, or raw.hl7v2_message where status = 'quarantined')", problems.len() - 20);
    }
    Ok(())
}

async fn beds(data_dir: &Path, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let beds = fdp_ingest::live::parse_bed_register(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (expected columns {BED_REGISTER_HEADER})",
            file.display()
        )
    })?;
    load_bed_register_into(data_dir, &bytes, &file.display().to_string()).await?;
    println!("bed register loaded: {} beds", beds.len());
    Ok(())
}

/// Load a bed register into the data directory of an instance that is not
/// running.
pub async fn load_bed_register_into(data_dir: &Path, bytes: &[u8], source: &str) -> Result<()> {
    let config = InstanceConfig {
        data_dir: Some(data_dir.into()),
        ..Default::default()
    };
    let running = instance::start(&config).await?;
    load_bed_register(&running.store.committer(), bytes, source).await?;
    running
        .live
        .applied_through(running.store.committer().committed_through())
        .await;
    running.stop().await?;
    Ok(())
}

/// Commit a bed register extract as a raw record.
pub async fn load_bed_register(
    committer: &fdp_store::Committer,
    bytes: &[u8],
    source: &str,
) -> Result<()> {
    committer
        .commit(Submission {
            received_at_us: chrono::Utc::now().timestamp_micros(),
            status: RecordStatus::Accepted,
            stream: BED_REGISTER_STREAM.into(),
            source: source.into(),
            message_type: "BedRegister".into(),
            control_id: String::new(),
            dedup_key: None,
            reason: String::new(),
            location: String::new(),
            payload: bytes.to_vec(),
        })
        .await?;
    Ok(())
}

/// Load the extract at `path` into `data_dir` with each of `mappings` that
/// applies to it, as part of load `run_id`.
pub async fn load_extract(
    data_dir: &Path,
    mappings: &[fdp_ingest::extract::Mapping],
    path: &Path,
    run_id: &str,
) -> Result<Vec<fdp_ingest::extract::FileReport>> {
    use fdp_ingest::extract;
    let applying = extract::mappings_to_load(mappings, path)
        .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    let mut reports = Vec::new();
    for m in applying {
        let r = extract::load_file(data_dir, m, path, run_id)
            .await
            .with_context(|| format!("loading {} with mapping {}", path.display(), m.name))?;
        reports.push(r);
    }
    Ok(reports)
}

/// Load flat extracts with declared mappings and print what happened.
pub async fn csv(
    data_dir: &Path,
    mapping: &Path,
    files: &[PathBuf],
) -> Result<Vec<fdp_ingest::extract::FileReport>> {
    use fdp_ingest::extract;
    anyhow::ensure!(
        mapping.exists(),
        "no mapping file or folder at {}: the shipped mappings are the project's `mappings/` \
         folder, so run from the project's root or give that folder's path",
        mapping.display()
    );
    let mappings =
        extract::read_mappings(mapping).map_err(|e| anyhow::anyhow!("reading mappings: {e}"))?;
    anyhow::ensure!(
        !mappings.is_empty(),
        "{} holds no mapping files (*.toml)",
        mapping.display()
    );
    let mut paths = Vec::new();
    for f in files {
        if f.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(f)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            inside.sort();
            paths.extend(
                inside
                    .into_iter()
                    .filter(|p| !extract::mappings_for(&mappings, p).is_empty()),
            );
        } else {
            paths.push(f.clone());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let run_id = format!(
        "extract-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let pb = progress(paths.len() as u64, "files");
    let mut reports = Vec::new();
    for p in &paths {
        reports.extend(load_extract(data_dir, &mappings, p, &run_id).await?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!(
        "{:<40} {:<24} {:>10} {:>10} {:>10} {:>10}",
        "FILE", "TABLE", "ROWS", "ACCEPTED", "REJECTED", "ROWS/S"
    );
    for r in &reports {
        let name = Path::new(&r.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if r.already_loaded {
            println!(
                "{name:<40} {:<24} already loaded with mapping {} (same content): skipped",
                "", r.mapping
            );
            continue;
        }
        println!(
            "{name:<40} {:<24} {:>10} {:>10} {:>10} {:>10.0}",
            r.table,
            r.rows_in,
            r.accepted,
            r.rejected.len(),
            r.rows_in as f64 / r.seconds.max(1e-9)
        );
    }
    for r in &reports {
        for (line, why) in r.rejected.iter().take(10) {
            println!("  rejected: {} line {line}: {why}", r.file);
        }
        if r.rejected.len() > 10 {
            println!(
                "  … and {} more in {} (fdp sql \"SELECT line, reason FROM raw.extract_rejected WHERE file = '{}'\")",
                r.rejected.len() - 10,
                r.file,
                r.file
            );
        }
    }
    Ok(reports)
}

/// Resources per load: each is one raw commit and one commit per canonical table.
const FHIR_CHUNK: usize = 100_000;

/// Expand directories into the FHIR files they hold.
fn fhir_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    f.extension()
                        .is_some_and(|x| x == "json" || x == "ndjson" || x == "jsonl")
                })
                .collect();
            inside.sort();
            out.extend(inside);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Load FHIR files into a data directory and print what happened.
pub async fn fhir(data_dir: &Path, paths: &[PathBuf]) -> Result<fdp_ingest::fhir::Report> {
    use fdp_ingest::fhir::{self, FhirSource};
    let files = fhir_files(paths)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let source = FhirSource::open(data_dir)
        .await
        .with_context(|| format!("opening the FHIR tables in {}", data_dir.display()))?;
    let run_id = format!("fhir-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let mut loader = FhirLoader::new(source, data_dir, run_id);
    let (ndjson, json): (Vec<PathBuf>, Vec<PathBuf>) =
        files.into_iter().partition(|f| fhir::is_ndjson(f));

    // Bundles are read together so references between them resolve.
    if !json.is_empty() {
        let batch = fhir::read_files(&json).context("reading FHIR files")?;
        for (at, r) in batch.unresolved.iter().take(10) {
            eprintln!("warning: {at} refers to {r}, which none of the files given holds");
        }
        let pb = progress(batch.incoming.len() as u64, "resources");
        let mut incoming = batch.incoming;
        let mut unreadable = Some(batch.unreadable);
        while !incoming.is_empty() || unreadable.is_some() {
            let rest = incoming.split_off(incoming.len().min(FHIR_CHUNK));
            let chunk = std::mem::replace(&mut incoming, rest);
            let n = chunk.len() as u64;
            loader
                .push(chunk, unreadable.take().unwrap_or_default())
                .await?;
            pb.inc(n);
        }
        pb.finish_and_clear();
    }
    for file in &ndjson {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading {} (NDJSON must be UTF-8)", file.display()))?;
        let name = file.display().to_string();
        let pb = progress(text.lines().count() as u64, &name);
        let mut chunk = Vec::with_capacity(FHIR_CHUNK);
        for (n, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                chunk.push(fhir::ndjson_line(line, &name, n + 1));
            }
            if chunk.len() == FHIR_CHUNK {
                let c = std::mem::replace(&mut chunk, Vec::with_capacity(FHIR_CHUNK));
                let len = c.len() as u64;
                loader.push(c, Vec::new()).await?;
                pb.inc(len);
            }
        }
        if !chunk.is_empty() {
            let len = chunk.len() as u64;
            loader.push(chunk, Vec::new()).await?;
            pb.inc(len);
        }
        pb.finish_and_clear();
    }
    let report = loader.finish().await?;
    print_fhir_report(&report);
    Ok(report)
}

/// Loads chunks of resources so that checking and mapping one chunk (CPU)
/// overlaps committing the one before it (Parquet encoding and I/O).
struct FhirLoader {
    source: fdp_ingest::fhir::FhirSource,
    data_dir: PathBuf,
    run_id: String,
    inflight:
        Option<tokio::task::JoinHandle<Result<fdp_ingest::fhir::Committed, fdp_store::StoreError>>>,
    report: fdp_ingest::fhir::Report,
}

impl FhirLoader {
    fn new(source: fdp_ingest::fhir::FhirSource, data_dir: &Path, run_id: String) -> Self {
        FhirLoader {
            source,
            data_dir: data_dir.to_path_buf(),
            report: fdp_ingest::fhir::Report {
                run_id: run_id.clone(),
                ..Default::default()
            },
            run_id,
            inflight: None,
        }
    }

    async fn push(
        &mut self,
        chunk: Vec<fdp_ingest::fhir::Incoming>,
        unreadable: Vec<fdp_ingest::fhir::Unreadable>,
    ) -> Result<()> {
        let staged =
            tokio::task::block_in_place(|| self.source.stage(&self.run_id, chunk, unreadable));
        self.wait().await?;
        let raw = self.source.take_raw();
        let data_dir = self.data_dir.clone();
        self.inflight = Some(tokio::spawn(fdp_ingest::fhir::commit(
            data_dir, raw, staged,
        )));
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        if let Some(h) = self.inflight.take() {
            let done = h
                .await
                .context("the commit task failed")?
                .context("committing FHIR resources")?;
            self.source.set_raw(done.raw);
            self.report.merge(done.report);
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<fdp_ingest::fhir::Report> {
        self.wait().await?;
        Ok(self.report)
    }
}

fn print_fhir_report(report: &fdp_ingest::fhir::Report) {
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10}",
        "RESOURCE TYPE", "ACCEPTED", "UNCHANGED", "NOT MAPPED", "REJECTED"
    );
    for (t, c) in &report.by_type {
        println!(
            "{t:<24} {:>10} {:>10} {:>10} {:>10}",
            c.accepted, c.unchanged, c.not_mapped, c.rejected
        );
    }
    let t = report.total();
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10}",
        "total", t.accepted, t.unchanged, t.not_mapped, t.rejected
    );
    if !report.canonical_rows.is_empty() {
        let tables: Vec<String> = report
            .canonical_rows
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("canonical rows written: {}", tables.join(", "));
    }
    for (at, why) in report.rejected.iter().take(20) {
        println!("  rejected: {at}: {why}");
    }
    if report.rejected.len() > 20 {
        println!(
            "  … and {} more (fdp sql \"SELECT location, reason FROM raw.fhir_resource WHERE status = 'quarantined'\")",
            report.rejected.len() - 20
        );
    }
}

#[cfg(test)]
mod tests {
    use super::split_messages;

    #[test]
    fn messages_split_on_msh_whatever_the_line_ends() {
        let f = b"MSH|^~\\&|A\rPID|1\r\nMSH|^~\\&|B\nPV1|1\n\nMSH|^~\\&|C\r";
        let m = split_messages(f);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], b"MSH|^~\\&|A\rPID|1\r");
        assert_eq!(m[1], b"MSH|^~\\&|B\rPV1|1\r");
        let framed = b"\x0bMSH|^~\\&|A\rPID|1\r\x1c\r\x0bMSH|^~\\&|B\r\x1c\r";
        assert_eq!(split_messages(framed).len(), 2);
    }
}
