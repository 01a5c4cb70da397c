//! The national data opt-out: patients who have said their confidential
//! information must not be used beyond their own care.
//!
//! The list is a text file of NHS numbers, one per line (`#` starts a
//! comment; spaces inside a number are allowed), as the organisation
//! receives it from the NHS Spine check. It is applied to `planning` and
//! `research` sessions, never to `direct-care`. A line that is not a valid
//! NHS number makes the whole list refused: an opt-out silently dropped is a
//! patient's choice ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum OptOutError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {value:?} is not a valid NHS number ({reason}); the opt-out list was not applied")]
    BadNumber {
        path: PathBuf,
        line: usize,
        value: String,
        reason: String,
    },
}

/// The opt-out list of one instance, re-read when the file changes.
#[derive(Debug)]
pub struct OptOut {
    path: PathBuf,
    loaded: RwLock<(Option<SystemTime>, Arc<BTreeSet<String>>)>,
}

impl OptOut {
    /// The list at `path`; a missing file is an empty list.
    pub fn new(path: &Path) -> OptOut {
        OptOut {
            path: path.to_path_buf(),
            loaded: RwLock::new((None, Arc::new(BTreeSet::new()))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The opted-out NHS numbers (ten digits, no spaces).
    pub fn nhs_numbers(&self) -> Result<Arc<BTreeSet<String>>, OptOutError> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Arc::new(BTreeSet::new()))
            }
            Err(source) => {
                return Err(OptOutError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        {
            let l = self.loaded.read().expect("opt-out lock");
            if l.0.is_some() && l.0 == modified {
                return Ok(l.1.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(|source| OptOutError::Io {
            path: self.path.clone(),
            source,
        })?;
        let set = Arc::new(parse(&self.path, &text)?);
        *self.loaded.write().expect("opt-out lock") = (modified, set.clone());
        Ok(set)
    }
}

fn parse(path: &Path, text: &str) -> Result<BTreeSet<String>, OptOutError> {
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let value = line.split('#').next().unwrap_or("").trim();
        if value.is_empty() {
            continue;
        }
        match fdp_model::identifiers::parse_nhs_number(value) {
            Ok(n) => {
                out.insert(n.digits());
            }
            Err(e) => {
                return Err(OptOutError::BadNumber {
                    path: path.to_path_buf(),
                    line: i + 1,
                    value: value.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_and_the_line_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt-out.txt");
        let list = OptOut::new(&path);
        assert!(list.nhs_numbers().unwrap().is_empty());
        std::fs::write(
            &path,
            "# from the Spine\n943 476 5919\n\n9434765870 # second\n",
        )
        .unwrap();
        let set = list.nhs_numbers().unwrap();
        assert!(set.contains("9434765919") && set.contains("9434765870"));
        std::fs::write(&path, "9434765919\n9434765918\n").unwrap();
        let list = OptOut::new(&path);
        let e = list.nhs_numbers().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("9434765918"), "{e}");
    }
}
