//! UK reference data as versioned tables, and each patient's area derived
//! from it.
//!
//! Population health asks about people by where they live: deprivation
//! decile, LSOA, local authority, sub-ICB location, practice and primary
//! care network, ethnic group. None of that is in a trust's records except
//! the postcode and the registered practice. This crate brings in the
//! published lookups that turn them into areas ([`load`]), through the same
//! declared mappings as any flat extract (`mappings/uk-reference/`, built
//! into the binary), so each table keeps its files as received, its
//! rejected lines and its Delta history. It then derives, for every
//! patient, their area and deprivation decile ([`areas`]).
//!
//! Two LSOA vintages (2011 and 2021) share one code format, and most codes
//! exist in both. A 2021 LSOA's code given to the 2019 indices finds a
//! decile nine times in ten, silently, and the tenth time finds nothing.
//! So every table here names its LSOAs' vintage, and [`areas`] meets an
//! index of the other vintage only through the ONS lookup between them,
//! never by code alone. A patient with no postcode, or one not found, keeps
//! that as their area's status: it is its own category in every breakdown.
//!
//! ```no_run
//! # async fn run(data_dir: &std::path::Path, governance: &fdp_govern::Governance) -> Result<(), fdp_reference::ReferenceError> {
//! let loaded = fdp_reference::load(data_dir, "../shared/data/uk_reference".as_ref(), "reference-1").await?;
//! println!("{} files loaded", loaded.files.len());
//! let tables = fdp_store::StoredTables::new(data_dir);
//! let derived = fdp_reference::areas::derive(
//!     data_dir,
//!     governance,
//!     &tables,
//!     &fdp_reference::areas::AreaOptions::default(),
//! )
//! .await?;
//! println!("{} patients, {} matched", derived.patients, derived.count("matched"));
//! # Ok(()) }
//! ```

pub mod areas;

use std::path::{Path, PathBuf};

use fdp_ingest::extract::{self, FileReport, Mapping};

/// What went wrong, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{0}")]
    Store(#[from] fdp_store::StoreError),
    #[error("{0}")]
    Govern(#[from] fdp_govern::GovernError),
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the built-in reference mapping {name} is wrong: {reason}")]
    Mapping { name: &'static str, reason: String },
    #[error("{0}")]
    Derivation(String),
}

macro_rules! bundled {
    ($file:literal) => {
        (
            $file,
            include_str!(concat!("../../../mappings/uk-reference/", $file)),
        )
    };
}

/// The reference mappings built into the binary: file name and text.
pub const MAPPINGS: &[(&str, &str)] = &[
    bundled!("imd2019-lsoa11.toml"),
    bundled!("imd2025-lsoa21.toml"),
    bundled!("lsoa11-lsoa21.toml"),
    bundled!("lsoa11-health-geography-2022.toml"),
    bundled!("lsoa21-health-geography-2024.toml"),
    bundled!("onspd-postcodes.toml"),
    bundled!("gp-practices.toml"),
    bundled!("nhs-ethnic-category.toml"),
    bundled!("census2021-ethnicity-crosswalk.toml"),
    bundled!("ons-mye-countries.toml"),
    bundled!("ons-mye-trafford.toml"),
    bundled!("census2021-ethnic-group-ltla.toml"),
    bundled!("census2021-ethnic-group-lsoa.toml"),
];

/// The built-in reference mappings, parsed.
pub fn mappings() -> Result<Vec<Mapping>, ReferenceError> {
    MAPPINGS
        .iter()
        .map(|(name, text)| {
            Mapping::from_toml(text).map_err(|reason| ReferenceError::Mapping { name, reason })
        })
        .collect()
}

/// What [`load`] did.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Each file loaded, with the mapping that read it.
    pub files: Vec<FileReport>,
    /// Files in the folder no reference mapping reads (summaries, the
    /// same data in another shape), and why.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Loaded {
    /// Lines refused across all files.
    pub fn rejected(&self) -> usize {
        self.files.iter().map(|f| f.rejected.len()).sum()
    }
}

/// Load every file under `folder` that a reference mapping reads into the
/// data directory's canonical tables. Files already loaded with the same
/// content are recognised and skipped; a newer edition of a file replaces
/// rows by key, and the table's history keeps the old ones.
pub async fn load(data_dir: &Path, folder: &Path, run_id: &str) -> Result<Loaded, ReferenceError> {
    let mappings = mappings()?;
    let mut files = Vec::new();
    walk(folder, &mut files)?;
    files.sort();
    let mut loaded = Loaded::default();
    for path in files {
        let applying = extract::mappings_for(&mappings, &path);
        if applying.is_empty() {
            if path.extension().is_some_and(|x| x == "csv") {
                loaded
                    .skipped
                    .push((path, "no reference mapping reads this file".into()));
            }
            continue;
        }
        for m in applying {
            tracing::info!(file = %path.display(), mapping = %m.name, "loading reference file");
            loaded
                .files
                .push(extract::load_file(data_dir, m, &path, run_id).await?);
        }
    }
    Ok(loaded)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReferenceError> {
    let io = |source| ReferenceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
