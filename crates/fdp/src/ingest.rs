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
    let config = InstanceConfig {
        data_dir: Some(data_dir.into()),
        ..Default::default()
    };
    let running = instance::start(&config).await?;
    load_bed_register(
        &running.store.committer(),
        &bytes,
        &file.display().to_string(),
    )
    .await?;
    running
        .live
        .applied_through(running.store.committer().committed_through())
        .await;
    running.stop().await?;
    println!("bed register loaded: {} beds", beds.len());
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
