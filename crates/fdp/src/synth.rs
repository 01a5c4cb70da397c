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
}

pub fn run(cmd: SynthCommand) -> Result<()> {
    match cmd {
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
