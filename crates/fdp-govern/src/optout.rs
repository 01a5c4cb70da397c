//! The national data opt-out: patients who have said their confidential
//! information must not be used beyond their own care.
//!
//! The list is a text file of NHS numbers, one per line (`#` starts a
//! comment; spaces inside a number are allowed), as the organisation
//! receives it from the NHS Spine check; or FHIR (a `.json` Bundle or List,
//! or `.ndjson` resources): active Consent resources whose provision denies,
//! naming the patient by NHS number identifier, and Patients or List items
//! named by NHS number. It is applied to `planning` and
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
    #[error("{path}: {at}: {message}; the opt-out list was not applied")]
    BadFhir {
        path: PathBuf,
        at: String,
        message: String,
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
        let set = Arc::new(match self.path.extension().and_then(|e| e.to_str()) {
            Some("json") => parse_fhir_json(&self.path, &text)?,
            Some("ndjson") => parse_fhir_ndjson(&self.path, &text)?,
            _ => parse(&self.path, &text)?,
        });
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

const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

fn parse_fhir_json(path: &Path, text: &str) -> Result<BTreeSet<String>, OptOutError> {
    let bad = |at: &str, message: String| OptOutError::BadFhir {
        path: path.to_path_buf(),
        at: at.to_string(),
        message,
    };
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad("the file", format!("not JSON: {e}")))?;
    let mut out = BTreeSet::new();
    match doc.get("resourceType").and_then(|t| t.as_str()) {
        Some("Bundle") => {
            let entries = doc.get("entry").and_then(|e| e.as_array());
            for (i, e) in entries.into_iter().flatten().enumerate() {
                let at = format!("Bundle.entry[{i}].resource");
                let r = e
                    .get("resource")
                    .ok_or_else(|| bad(&at, "missing".into()))?;
                opted_out_by(r, &mut out).map_err(|m| bad(&at, m))?;
            }
        }
        Some("List") => {
            let entries = doc.get("entry").and_then(|e| e.as_array());
            for (i, e) in entries.into_iter().flatten().enumerate() {
                let at = format!("List.entry[{i}].item");
                let n = e
                    .get("item")
                    .and_then(|item| nhs_identifier(item.get("identifier")?))
                    .ok_or_else(|| bad(&at, "no NHS number identifier".into()))?;
                out.insert(checked(&n).map_err(|m| bad(&at, m))?);
            }
        }
        Some(_) => opted_out_by(&doc, &mut out).map_err(|m| bad("the resource", m))?,
        None => {
            return Err(bad(
                "the file",
                "not a FHIR resource (no resourceType)".into(),
            ))
        }
    }
    Ok(out)
}

fn parse_fhir_ndjson(path: &Path, text: &str) -> Result<BTreeSet<String>, OptOutError> {
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let bad = |message: String| OptOutError::BadFhir {
            path: path.to_path_buf(),
            at: at.clone(),
            message,
        };
        let r: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        opted_out_by(&r, &mut out).map_err(bad)?;
    }
    Ok(out)
}

/// Add the NHS number `r` opts out, if it does: an active Consent that
/// denies, or a Patient. Other resources, and Consents that are withdrawn
/// or permit, opt no one out.
fn opted_out_by(r: &serde_json::Value, out: &mut BTreeSet<String>) -> Result<(), String> {
    match r.get("resourceType").and_then(|t| t.as_str()) {
        Some("Consent") => {
            let active = r.get("status").and_then(|s| s.as_str()) == Some("active");
            let denies = r.pointer("/provision/type").and_then(|t| t.as_str()) == Some("deny");
            if active && denies {
                let n = r
                    .get("patient")
                    .and_then(|p| nhs_identifier(p.get("identifier")?))
                    .ok_or("Consent.patient names no NHS number identifier")?;
                out.insert(checked(&n)?);
            }
            Ok(())
        }
        Some("Patient") => {
            let n = r
                .get("identifier")
                .and_then(|ids| ids.as_array()?.iter().find_map(nhs_identifier))
                .ok_or("Patient has no NHS number identifier")?;
            out.insert(checked(&n)?);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn nhs_identifier(id: &serde_json::Value) -> Option<String> {
    (id.get("system")?.as_str()? == NHS_NUMBER_SYSTEM)
        .then(|| id.get("value")?.as_str().map(str::to_string))
        .flatten()
}

fn checked(value: &str) -> Result<String, String> {
    fdp_model::identifiers::parse_nhs_number(value)
        .map(|n| n.digits())
        .map_err(|e| format!("{value:?} is not a valid NHS number ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_consents_lists_and_patients_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let consent = |nhs: &str, status: &str, kind: &str| {
            serde_json::json!({"resourceType": "Consent", "status": status,
                "patient": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs}},
                "provision": {"type": kind}})
        };
        let path = dir.path().join("opt-out.json");
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": consent("9434765919", "active", "deny")},
            // Withdrawn, or a consent that permits: not opted out.
            {"resource": consent("9434765870", "inactive", "deny")},
            {"resource": consent("9999999468", "active", "permit")},
            {"resource": {"resourceType": "Patient", "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "943 476 5870"}]}},
        ]});
        std::fs::write(&path, bundle.to_string()).unwrap();
        let got = OptOut::new(&path).nhs_numbers().unwrap();
        assert_eq!(
            got.iter().map(String::as_str).collect::<Vec<_>>(),
            ["9434765870", "9434765919"]
        );
        // A bad NHS number names the entry and stops the list.
        let bad = serde_json::json!({"resourceType": "Bundle", "entry": [
            {"resource": consent("9434765919", "active", "deny")},
            {"resource": consent("9434765918", "active", "deny")}]});
        std::fs::write(&path, bad.to_string()).unwrap();
        let e = OptOut::new(&path).nhs_numbers().unwrap_err().to_string();
        assert!(
            e.contains("Bundle.entry[1].resource") && e.contains("9434765918"),
            "{e}"
        );
        // NDJSON, as a bulk export writes it.
        let path = dir.path().join("consent.ndjson");
        std::fs::write(
            &path,
            format!(
                "{}\n\n{}\n",
                consent("9434765919", "active", "deny"),
                consent("9434765870", "rejected", "deny")
            ),
        )
        .unwrap();
        let got = OptOut::new(&path).nhs_numbers().unwrap();
        assert_eq!(
            got.iter().map(String::as_str).collect::<Vec<_>>(),
            ["9434765919"]
        );
        // A List of patients by NHS number.
        let path = dir.path().join("list.json");
        std::fs::write(&path, serde_json::json!({"resourceType": "List", "status": "current", "mode": "snapshot",
            "entry": [{"item": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": "9434765919"}}}]}).to_string()).unwrap();
        assert_eq!(OptOut::new(&path).nhs_numbers().unwrap().len(), 1);
    }

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
