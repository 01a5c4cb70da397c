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
//! The registry is one JSON file in the data directory
//! (`governance/projects.json`), replaced whole and durably on each change.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
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

    /// Change an existing project with `f`; returns it as changed.
    pub fn update(
        &self,
        name: &str,
        f: impl FnOnce(&mut Project),
    ) -> Result<Project, ProjectError> {
        let mut changed = None;
        self.change(|all| {
            let p = all
                .get_mut(name)
                .ok_or_else(|| ProjectError::Unknown(name.to_string()))?;
            f(p);
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
        let dir = self.path.parent().expect("a file in a directory");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ProjectError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(name: &str, purpose: Purpose, on: &[&str]) -> Project {
        Project {
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
}
