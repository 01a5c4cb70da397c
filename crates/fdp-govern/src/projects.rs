//! Approved projects: the ones the information-governance lead registered,
//! and who is on each.
//!
//! A project picks its own pseudonymisation key, so pseudonyms made under
//! one project cannot be joined with another's extract. That holds only if
//! a session can name no project but its own: a session naming a project
//! the registry does not hold, one that is closed, one approved for another
//! purpose, or one its principal is not on is refused, and no key is ever
//! made for it. Registering, adding and removing people and closing are
//! audited by [`crate::Governance`], which checks that whoever does it
//! reviews the audit.
//!
//! A research project may also hold extract specifications the IG lead
//! approved ([`ExtractSpec`]): the one way rows leave the instance under a
//! secondary purpose. Each file of an extract is one query fixed at
//! approval; a researcher names the extract and the file, never the SQL,
//! and the answer is shaped by the policy like any other under research
//! (identifiers removed, ids pseudonymised with the project's key, opted-out
//! patients left out).
//!
//! The registry is one JSON file in the data directory
//! (`governance/projects.json`), replaced whole and durably on each change.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Purpose;

/// One approved project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// What sessions name it by: letters, digits, `-` and `_`.
    pub name: String,
    /// The purpose it is approved for (research, or planning).
    pub purpose: Purpose,
    /// What it is, and its approval (ethics reference, DARS agreement…).
    pub title: String,
    /// The principals on it.
    pub principals: BTreeSet<String>,
    pub registered_by: String,
    pub registered_at: DateTime<Utc>,
    /// Once closed, no session may name it; its keys are kept, so that a
    /// pseudonym it made can still be re-identified for direct care.
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// The extract specifications approved for it, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extracts: BTreeMap<String, ExtractSpec>,
}

/// An extract specification: the pseudonymised row-level files a research
/// project may take out of the instance, as the IG lead approved them.
///
/// Written as TOML:
///
/// ```toml
/// name = "asthma-cohort"
/// description = "Adults with asthma and their admissions, 2020-2026"
///
/// [[file]]
/// name = "patients"
/// sql = "SELECT person_id, sex, date_of_birth, postcode FROM patient"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractSpec {
    pub name: String,
    /// What it is for, for the audit and the researcher.
    pub description: String,
    #[serde(rename = "file", default)]
    pub files: Vec<ExtractFile>,
    /// Who approved it, and when: set at approval, not by the author.
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approved_at: Option<DateTime<Utc>>,
}

/// One file of an extract: its name and the query that fills it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractFile {
    pub name: String,
    pub sql: String,
}

impl ExtractSpec {
    /// A specification as its author wrote it (TOML), checked.
    pub fn from_toml(text: &str) -> Result<ExtractSpec, ProjectError> {
        let spec: ExtractSpec =
            toml::from_str(text).map_err(|e| ProjectError::BadExtract(e.to_string()))?;
        if spec.approved_by.is_some() || spec.approved_at.is_some() {
            return Err(ProjectError::BadExtract(
                "approved_by and approved_at are set when the IG lead approves it, not written in"
                    .into(),
            ));
        }
        spec.check()?;
        Ok(spec)
    }

    /// What is wrong with it, if anything: names that can name files, at
    /// least one file, each named once, each one read-only query.
    pub fn check(&self) -> Result<(), ProjectError> {
        let bad = |why: String| Err(ProjectError::BadExtract(why));
        if !valid_name(&self.name) {
            return bad(format!(
                "{:?} is not an extract name: use 1–64 letters, digits, `-` or `_`",
                self.name
            ));
        }
        if self.description.trim().is_empty() {
            return bad("say what the extract is for (description)".into());
        }
        if self.files.is_empty() {
            return bad("an extract has at least one [[file]]".into());
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            if !valid_name(&f.name) {
                return bad(format!(
                    "{:?} is not a file name: use 1–64 letters, digits, `-` or `_`",
                    f.name
                ));
            }
            if !seen.insert(f.name.as_str()) {
                return bad(format!("file {:?} is named twice", f.name));
            }
            match datafusion::sql::parser::DFParser::parse_sql(&f.sql) {
                Ok(statements) => {
                    let query = statements.len() == 1
                        && matches!(
                            statements.front(),
                            Some(datafusion::sql::parser::Statement::Statement(s))
                                if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_))
                        );
                    if !query {
                        return bad(format!("file {:?}: the sql is not one query", f.name));
                    }
                }
                Err(e) => return bad(format!("file {:?}: {e}", f.name)),
            }
        }
        Ok(())
    }

    /// The names of its files, for people: `patients, admissions`.
    pub fn file_names(&self) -> String {
        self.files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A digest of what was approved (the name and each file's query), for
    /// the audit: the extract a researcher takes can be matched to it.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        for f in &self.files {
            h.update([0]);
            h.update(f.name.as_bytes());
            h.update([0]);
            h.update(f.sql.as_bytes());
        }
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Project {
    /// The principals on it, for people: `alice, bob`.
    pub fn principals_listed(&self) -> String {
        self.principals
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a registry change or a session's project was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("no approved project {0:?}: the information-governance lead registers projects (`fdp projects register`)")]
    Unknown(String),
    #[error("project {0:?} is closed")]
    Closed(String),
    #[error("project {project:?} is approved for {approved}, not {asked}")]
    OtherPurpose {
        project: String,
        approved: Purpose,
        asked: Purpose,
    },
    #[error("{principal} is not on project {project:?}; the information-governance lead adds people to a project")]
    NotOnProject { principal: String, project: String },
    #[error("project {0:?} is already registered")]
    Exists(String),
    #[error("{0:?} is not a project name: use 1–64 letters, digits, `-` or `_`")]
    BadName(String),
    #[error("a project is approved for research or planning, not {0}")]
    NotSecondary(Purpose),
    #[error("not an extract specification: {0}")]
    BadExtract(String),
    #[error("project {project:?} is approved for {purpose}: only a research project takes rows out, as an extract")]
    ExtractNotResearch { project: String, purpose: Purpose },
    #[error("project {project:?} has no approved extract {extract:?}; the information-governance lead approves extracts (`fdp projects approve-extract`)")]
    NoExtract { project: String, extract: String },
    #[error("extract {extract:?} has no file {file:?}: it has {files}")]
    NoExtractFile {
        extract: String,
        file: String,
        files: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {message}")]
    Damaged { path: PathBuf, message: String },
}

/// Whether `name` can name a project (and so a key file).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The registry of an instance's approved projects.
pub struct Projects {
    path: PathBuf,
    // One change at a time, so that two changes never lose one another.
    lock: Mutex<()>,
}

impl Projects {
    pub fn open(data_dir: &Path) -> Projects {
        Projects {
            path: data_dir.join("governance").join("projects.json"),
            lock: Mutex::new(()),
        }
    }

    /// Every project, by name.
    pub fn all(&self) -> Result<BTreeMap<String, Project>, ProjectError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => {
                return Err(ProjectError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let list: Vec<Project> =
            serde_json::from_slice(&bytes).map_err(|e| ProjectError::Damaged {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(list.into_iter().map(|p| (p.name.clone(), p)).collect())
    }

    /// May `principal` name `project` in a session for `purpose`?
    pub fn check(
        &self,
        project: &str,
        purpose: Purpose,
        principal: &str,
    ) -> Result<Project, ProjectError> {
        let p = self
            .all()?
            .remove(project)
            .ok_or_else(|| ProjectError::Unknown(project.chars().take(64).collect()))?;
        if p.closed_at.is_some() {
            return Err(ProjectError::Closed(p.name));
        }
        if p.purpose != purpose {
            return Err(ProjectError::OtherPurpose {
                project: p.name,
                approved: p.purpose,
                asked: purpose,
            });
        }
        if !p.principals.contains(principal) {
            return Err(ProjectError::NotOnProject {
                principal: principal.to_string(),
                project: p.name,
            });
        }
        Ok(p)
    }

    /// Register a new project.
    pub fn register(&self, project: Project) -> Result<(), ProjectError> {
        if !valid_name(&project.name) {
            return Err(ProjectError::BadName(project.name));
        }
        if !project.purpose.is_secondary() {
            return Err(ProjectError::NotSecondary(project.purpose));
        }
        self.change(|all| {
            if all.contains_key(&project.name) {
                return Err(ProjectError::Exists(project.name.clone()));
            }
            all.insert(project.name.clone(), project.clone());
            Ok(())
        })
    }

    /// Approve `spec` for research project `project`, replacing an extract
    /// of the same name; `by` is recorded as its approver.
    pub fn approve_extract(
        &self,
        project: &str,
        mut spec: ExtractSpec,
        by: &str,
    ) -> Result<Project, ProjectError> {
        spec.check()?;
        spec.approved_by = Some(by.to_string());
        spec.approved_at = Some(Utc::now());
        self.change_one(project, |p| {
            if p.closed_at.is_some() {
                return Err(ProjectError::Closed(p.name.clone()));
            }
            if p.purpose != Purpose::Research {
                return Err(ProjectError::ExtractNotResearch {
                    project: p.name.clone(),
                    purpose: p.purpose,
                });
            }
            p.extracts.insert(spec.name.clone(), spec);
            Ok(())
        })
    }

    /// Withdraw an approved extract: no session may take it from now on.
    pub fn withdraw_extract(&self, project: &str, extract: &str) -> Result<Project, ProjectError> {
        self.change_one(project, |p| match p.extracts.remove(extract) {
            Some(_) => Ok(()),
            None => Err(ProjectError::NoExtract {
                project: project.to_string(),
                extract: extract.to_string(),
            }),
        })
    }

    /// Change an existing project with `f`; returns it as changed.
    pub fn update(
        &self,
        name: &str,
        f: impl FnOnce(&mut Project),
    ) -> Result<Project, ProjectError> {
        self.change_one(name, |p| {
            f(p);
            Ok(())
        })
    }

    /// Change project `name` with `f`, which may refuse, read and written
    /// under the registry's lock; returns it as changed.
    fn change_one(
        &self,
        name: &str,
        f: impl FnOnce(&mut Project) -> Result<(), ProjectError>,
    ) -> Result<Project, ProjectError> {
        let mut changed = None;
        self.change(|all| {
            let p = all
                .get_mut(name)
                .ok_or_else(|| ProjectError::Unknown(name.chars().take(64).collect()))?;
            f(p)?;
            changed = Some(p.clone());
            Ok(())
        })?;
        Ok(changed.expect("set by the change"))
    }

    fn change(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Project>) -> Result<(), ProjectError>,
    ) -> Result<(), ProjectError> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.all()?;
        f(&mut all)?;
        let list: Vec<&Project> = all.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("projects serialise");
        self.write_durably(&bytes)
    }

    fn write_durably(&self, bytes: &[u8]) -> Result<(), ProjectError> {
        crate::files::replace_durably(&self.path, bytes).map_err(|source| ProjectError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(name: &str, purpose: Purpose, on: &[&str]) -> Project {
        Project {
            extracts: BTreeMap::new(),
            name: name.into(),
            purpose,
            title: "asthma outcomes, REC 26/YH/0001".into(),
            principals: on.iter().map(|s| s.to_string()).collect(),
            registered_by: "ig".into(),
            registered_at: Utc::now(),
            closed_at: None,
        }
    }

    #[test]
    fn only_a_registered_open_project_its_principal_is_on_may_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let projects = Projects::open(dir.path());
        assert!(matches!(
            projects.check("p1", Purpose::Research, "res"),
            Err(ProjectError::Unknown(_))
        ));
        projects
            .register(project("p1", Purpose::Research, &["res"]))
            .unwrap();
        assert!(projects.check("p1", Purpose::Research, "res").is_ok());
        assert!(matches!(
            projects.check("p1", Purpose::Research, "other"),
            Err(ProjectError::NotOnProject { .. })
        ));
        assert!(matches!(
            projects.check("p1", Purpose::Planning, "res"),
            Err(ProjectError::OtherPurpose { .. })
        ));
        assert!(matches!(
            projects.register(project("p1", Purpose::Research, &[])),
            Err(ProjectError::Exists(_))
        ));
        let long = "x".repeat(65);
        for bad in ["../p", "", "p 1", long.as_str()] {
            assert!(matches!(
                projects.register(project(bad, Purpose::Research, &[])),
                Err(ProjectError::BadName(_))
            ));
        }
        assert!(matches!(
            projects.register(project("care", Purpose::DirectCare, &[])),
            Err(ProjectError::NotSecondary(_))
        ));
        // Reopened from the file: the same registry.
        let again = Projects::open(dir.path());
        again
            .update("p1", |p| {
                p.principals.insert("res2".into());
            })
            .unwrap();
        assert!(projects.check("p1", Purpose::Research, "res2").is_ok());
        again
            .update("p1", |p| p.closed_at = Some(Utc::now()))
            .unwrap();
        assert!(matches!(
            projects.check("p1", Purpose::Research, "res"),
            Err(ProjectError::Closed(_))
        ));
    }

    fn spec(files: &str) -> String {
        format!("name = \"cohort\"\ndescription = \"asthma cohort\"\n{files}")
    }

    #[test]
    fn an_extract_is_named_files_of_one_query_each_approved_only_for_open_research() {
        let ok = spec("[[file]]\nname = \"patients\"\nsql = \"SELECT * FROM patient\"\n");
        let approved = ExtractSpec::from_toml(&ok).unwrap();
        for (bad, why) in [
            (spec(""), "at least one"),
            (spec("[[file]]\nname = \"a\"\nsql = \"DELETE FROM patient\"\n"), "not one query"),
            (spec("[[file]]\nname = \"a\"\nsql = \"SELECT 1; SELECT 2\"\n"), "not one query"),
            (spec("[[file]]\nname = \"a\"\nsql = \"SELEC\"\n"), "file \"a\""),
            (spec("[[file]]\nname = \"../a\"\nsql = \"SELECT 1\"\n"), "not a file name"),
            (
                spec("[[file]]\nname = \"a\"\nsql = \"SELECT 1\"\n[[file]]\nname = \"a\"\nsql = \"SELECT 2\"\n"),
                "named twice",
            ),
            (format!("approved_by = \"me\"\n{ok}"), "not written in"),
        ] {
            let e = ExtractSpec::from_toml(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // The digest follows what was approved, and only that.
        let changed = ExtractSpec::from_toml(&ok.replace("SELECT *", "SELECT person_id")).unwrap();
        assert_ne!(approved.digest(), changed.digest());
        let mut stamped = approved.clone();
        stamped.approved_by = Some("ig".into());
        assert_eq!(approved.digest(), stamped.digest());

        let dir = tempfile::tempdir().unwrap();
        let projects = Projects::open(dir.path());
        projects
            .register(project("p1", Purpose::Research, &["res"]))
            .unwrap();
        projects
            .register(project("plan", Purpose::Planning, &["ana"]))
            .unwrap();
        assert!(matches!(
            projects.approve_extract("plan", approved.clone(), "ig"),
            Err(ProjectError::ExtractNotResearch { .. })
        ));
        assert!(matches!(
            projects.approve_extract("nope", approved.clone(), "ig"),
            Err(ProjectError::Unknown(_))
        ));
        let p = projects.approve_extract("p1", approved, "ig").unwrap();
        assert_eq!(p.extracts["cohort"].approved_by.as_deref(), Some("ig"));
        assert!(p.extracts["cohort"].approved_at.is_some());
        let p = projects.withdraw_extract("p1", "cohort").unwrap();
        assert!(p.extracts.is_empty());
        assert!(matches!(
            projects.withdraw_extract("p1", "cohort"),
            Err(ProjectError::NoExtract { .. })
        ));
        projects
            .update("p1", |p| p.closed_at = Some(Utc::now()))
            .unwrap();
        assert!(matches!(
            projects.approve_extract("p1", changed, "ig"),
            Err(ProjectError::Closed(_))
        ));
    }
}
