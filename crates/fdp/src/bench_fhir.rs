//! `fdp bench fhir`: bulk FHIR import of a generated Bulk Data export of
//! realistic shape ([`fdp_synth::fhir_export`]).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Clone)]
pub struct FhirArgs {
    /// Resources to generate and load (rounded to whole patients)
    #[arg(long, default_value_t = 1_000_000)]
    pub resources: usize,
    /// Keep the data directory here instead of a temporary one
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A few seconds on tiny sizes: the same code path, so that the
    /// benchmark cannot break unseen (the test suite runs it)
    #[arg(long)]
    pub quick: bool,
}

pub async fn fhir(args: FhirArgs) -> Result<()> {
    let mut args = args;
    if args.quick {
        args.resources = args.resources.min(2_000);
    }
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("data"));
    let export = tmp.path().join("export");
    let started = Instant::now();
    let (files, n) =
        fdp_synth::fhir_export::write(&export, args.resources).context("generating the export")?;
    let bytes: u64 = files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "fdp bench fhir — bulk import of a generated FHIR R4 export (NDJSON, UK Core)\n  generated {n} resources, {:.0} MB, in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let report = crate::ingest::fhir(&data_dir, &files).await?;
    let secs = started.elapsed().as_secs_f64();
    let t = report.total();
    println!(
        "  imported {n} resources in {secs:.2} s: {:.0} resources/s ({:.0} MB/s); accepted {}, rejected {}",
        n as f64 / secs,
        bytes as f64 / 1e6 / secs,
        t.accepted,
        t.rejected
    );
    anyhow::ensure!(
        t.rejected == 0,
        "the generated export should load without rejections"
    );
    let started = Instant::now();
    let again = crate::ingest::fhir(&data_dir, &files).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  the same export again (idempotent): {} unchanged, {} stored, in {secs:.2} s: {:.0} resources/s",
        again.total().unchanged,
        again.total().accepted,
        n as f64 / secs
    );
    Ok(())
}
