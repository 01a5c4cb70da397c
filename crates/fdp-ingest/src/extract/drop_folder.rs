//! Watched drop folders: a source system (or a transfer service acting for
//! it) writes extracts into a folder, and the instance loads each file once
//! it has stopped changing, with the mappings whose file pattern it matches.
//!
//! A loaded file moves to `processed/`; one that no mapping applies to, or
//! that could not be loaded at all, moves to `failed/` with a `.error.txt`
//! beside it saying why. Lines refused inside a loaded file are in
//! quarantine as for `fdp ingest csv`. The folder is polled rather than
//! watched for events, which works the same on local disks and on network
//! shares, where extracts usually land.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{load_file, mappings_to_load, read_mappings, FileReport};

/// One source's drop folder, as the instance configuration declares it:
///
/// ```toml
/// [[drop_folder]]
/// name = "pas-ptl"
/// folder = "/srv/fdp/drop/pas"
/// mappings = "/srv/fdp/mappings"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropFolder {
    /// The source's name: in run ids, logs and the sources page.
    pub name: String,
    pub folder: PathBuf,
    /// A mapping file, or a directory of them (read again on every poll, so
    /// a corrected mapping applies to the next file without a restart).
    pub mappings: PathBuf,
    /// Seconds between looks at the folder.
    #[serde(default = "default_poll")]
    pub poll_secs: f64,
}

fn default_poll() -> f64 {
    5.0
}

/// What happened to one file taken from a drop folder.
#[derive(Debug)]
pub enum Taken {
    Loaded(Vec<FileReport>),
    Failed(String),
}

/// Files of the folder with their size and modification time.
fn listing(folder: &Path) -> std::io::Result<HashMap<PathBuf, (u64, SystemTime)>> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(folder)?.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        // Senders write under a temporary name and rename when done.
        if name.starts_with('.')
            || name.ends_with(".partial")
            || name.ends_with(".tmp")
            || name.ends_with(".filepart")
        {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_file() {
            out.insert(
                path,
                (
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ),
            );
        }
    }
    Ok(out)
}

/// Move a file into `processed/` or `failed/` under a name that says when.
fn move_to(file: &Path, sub: &str, note: Option<&str>) -> std::io::Result<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new(".")).join(sub);
    std::fs::create_dir_all(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let dest = dir.join(format!("{stamp}-{name}"));
    std::fs::rename(file, &dest)?;
    if let Some(note) = note {
        std::fs::write(dest.with_extension("error.txt"), format!("{note}\n"))?;
    }
    Ok(dest)
}

/// Load one file that has settled in the folder, and move it on.
pub async fn take(data_dir: &Path, source: &DropFolder, file: &Path) -> Taken {
    let fail = |why: String| {
        tracing::warn!(source = %source.name, file = %file.display(), reason = %why, "extract refused");
        if let Err(e) = move_to(file, "failed", Some(&why)) {
            tracing::error!(file = %file.display(), error = %e, "moving a refused extract to failed/");
        }
        Taken::Failed(why)
    };
    let mappings = match read_mappings(&source.mappings) {
        Ok(m) => m,
        // The file stays where it is: the mappings are what is wrong.
        Err(e) => return Taken::Failed(format!("reading the mappings: {e}")),
    };
    let applying = match mappings_to_load(&mappings, file) {
        Ok(a) => a,
        Err(why) => return fail(why),
    };
    let run_id = format!(
        "drop:{}:{}",
        source.name,
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let mut reports = Vec::new();
    for m in applying {
        match load_file(data_dir, m, file, &run_id).await {
            Ok(r) => reports.push(r),
            Err(e) => return fail(format!("loading with mapping {}: {e}", m.name)),
        }
    }
    for r in &reports {
        tracing::info!(
            source = %source.name, file = %r.file, mapping = %r.mapping, rows = r.rows_in,
            accepted = r.accepted, rejected = r.rejected.len(), already_loaded = r.already_loaded,
            "extract loaded from drop folder"
        );
    }
    if let Err(e) = move_to(file, "processed", None) {
        tracing::error!(file = %file.display(), error = %e, "moving a loaded extract to processed/");
    }
    Taken::Loaded(reports)
}

/// Watch a drop folder until `stop` turns true. A file is taken once two
/// looks in a row find it the same size with the same modification time:
/// a sender still writing it is left alone.
pub async fn watch(
    data_dir: PathBuf,
    source: DropFolder,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Err(e) = std::fs::create_dir_all(&source.folder) {
        tracing::error!(source = %source.name, folder = %source.folder.display(), error = %e, "cannot create the drop folder");
        return;
    }
    tracing::info!(source = %source.name, folder = %source.folder.display(), "watching drop folder");
    let every = Duration::from_secs_f64(source.poll_secs.max(0.05));
    let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    loop {
        match listing(&source.folder) {
            Ok(now) => {
                let mut settled: Vec<&PathBuf> = now
                    .iter()
                    .filter(|(p, v)| seen.get(*p) == Some(v))
                    .map(|(p, _)| p)
                    .collect();
                settled.sort();
                for file in settled {
                    if *stop.borrow() {
                        return;
                    }
                    take(&data_dir, &source, file).await;
                }
                seen = now;
            }
            Err(e) => {
                tracing::warn!(source = %source.name, folder = %source.folder.display(), error = %e, "reading the drop folder")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
