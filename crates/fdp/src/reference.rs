//! `fdp reference`: UK reference data into an instance, and each patient's
//! area derived from it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use fdp_reference::areas::{self, AreaOptions, ImdEdition};

#[derive(Subcommand)]
pub enum ReferenceCommand {
    /// Load the UK reference files under a folder (postcode directory,
    /// Indices of Deprivation, LSOA and health geography lookups, GP
    /// practices and networks, ethnic category codes, population
    /// estimates) as versioned tables, then derive every patient's area
    /// and deprivation decile. Files already loaded are recognised.
    Load {
        #[command(flatten)]
        at: crate::product::Instance,
        /// The folder, e.g. ../shared/data/uk_reference
        folder: PathBuf,
        #[command(flatten)]
        areas: AreaArgs,
    },
    /// Derive every patient's area and deprivation decile again (after
    /// patients were loaded, or to use another edition of the indices)
    Areas {
        #[command(flatten)]
        at: crate::product::Instance,
        #[command(flatten)]
        areas: AreaArgs,
    },
    /// The built-in reference mappings: which file each reads, into which table
    Mappings,
}

#[derive(clap::Args, Default)]
pub struct AreaArgs {
    /// The edition of the English Indices of Deprivation: IoD2025 (2021
    /// LSOAs) or IoD2019 (2011 LSOAs, reached through the ONS lookup)
    #[arg(long, default_value = "IoD2025")]
    imd_edition: ImdEdition,
    /// The postcode directory, where more than one is loaded
    #[arg(long)]
    postcode_directory: Option<String>,
}

pub async fn run(cmd: ReferenceCommand) -> Result<()> {
    match cmd {
        ReferenceCommand::Mappings => {
            for m in fdp_reference::mappings()? {
                println!("{:<38} {:<22} {}", m.name, m.object_type, m.file_pattern);
            }
            Ok(())
        }
        ReferenceCommand::Load { at, folder, areas } => {
            anyhow::ensure!(
                folder.is_dir(),
                "{} is not a folder: give the folder that holds the reference files",
                folder.display()
            );
            let run_id = format!("reference-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"));
            let loaded = fdp_reference::load(&at.data_dir, &folder, &run_id)
                .await
                .with_context(|| format!("loading reference data from {}", folder.display()))?;
            for f in &loaded.files {
                let name = std::path::Path::new(&f.file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| f.file.clone());
                if f.already_loaded {
                    println!("{name}: already loaded ({})", f.mapping);
                } else {
                    println!(
                        "{name}: {} rows into {} ({}), {} lines refused",
                        f.accepted,
                        f.table,
                        f.mapping,
                        f.rejected.len()
                    );
                }
                for (line, reason) in f.rejected.iter().take(3) {
                    println!("    line {line}: {reason}");
                }
            }
            for (path, why) in &loaded.skipped {
                println!(
                    "{}: not loaded, {why}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
            }
            derive(&at, &areas, Some(run_id)).await
        }
        ReferenceCommand::Areas { at, areas } => derive(&at, &areas, None).await,
    }
}

async fn derive(
    at: &crate::product::Instance,
    args: &AreaArgs,
    run_id: Option<String>,
) -> Result<()> {
    let config = crate::instance::InstanceConfig::for_data_dir(&at.data_dir, at.config.as_deref())?;
    let governance = config.governance(&at.data_dir)?;
    let tables = fdp_store::StoredTables::new(&at.data_dir);
    let options = AreaOptions {
        imd_edition: args.imd_edition,
        postcode_directory: args.postcode_directory.clone(),
        run_id,
    };
    let d = areas::derive(&at.data_dir, &governance, &tables, &options)
        .await
        .context("deriving patients' areas")?;
    println!(
        "patient areas: {} patients, postcodes from {} ({} LSOAs), deprivation from {} ({})",
        d.patients, d.postcode_directory, d.lsoa_vintage, d.imd_edition, d.crosswalk
    );
    for (status, n) in &d.by_status {
        println!("  {status}: {n}");
    }
    Ok(())
}
