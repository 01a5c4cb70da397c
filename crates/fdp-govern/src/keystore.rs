//! The instance's keystore: pseudonymisation keys, one per purpose and
//! project, and the key that signs audit checkpoints.
//!
//! Keys are files under `<data-dir>/keystore/` readable by the instance's
//! user only; a key file anyone else can read is refused, with the `chmod`
//! that fixes it. A pseudonymisation key has versions: rotating adds a new
//! version, and pseudonyms made from then on use it (they carry the version,
//! `p2-…`), so two extracts made either side of a rotation cannot be joined.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use rand::RngCore;

use crate::purpose::Purpose;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path}: not a key file (expected 64 hex characters)")]
    Malformed { path: PathBuf },
    #[error("a project name is letters, digits, '-' and '_' (at most 64); {0:?} is not")]
    BadProject(String),
}

/// The keystore of one data directory.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

/// A pseudonymisation key: the secret and its version.
#[derive(Clone)]
pub struct PseudonymKey {
    pub version: u32,
    key: hmac::Key,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PseudonymKey(v{})", self.version)
    }
}

impl PseudonymKey {
    /// The pseudonym of one identifier: `p<version>-` and 20 hex characters
    /// (80 bits) of HMAC-SHA-256. Not reversible; re-identification is a
    /// separate, audited request under direct care.
    pub fn pseudonym(&self, value: &str) -> String {
        let tag = hmac::sign(&self.key, value.trim().as_bytes());
        format!("p{}-{}", self.version, &crate::hex(&tag.as_ref()[..10]))
    }
}

fn valid_project(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Keystore {
    pub fn open(data_dir: &Path) -> Keystore {
        Keystore {
            dir: data_dir.join("keystore"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self) -> Result<(), KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: self.dir.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(())
    }

    /// The file name stem of a key; the project name becomes part of a
    /// path, so it is checked here.
    fn key_stem(purpose: Purpose, project: &str) -> Result<String, KeystoreError> {
        if !valid_project(project) {
            return Err(KeystoreError::BadProject(project.to_string()));
        }
        Ok(format!("pseudonym.{}.{}", purpose.as_str(), project))
    }

    fn versions(&self, stem: &str) -> Result<Vec<(u32, PathBuf)>, KeystoreError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(KeystoreError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(stem) else {
                continue;
            };
            if let Some(v) = rest
                .strip_prefix(".v")
                .and_then(|r| r.strip_suffix(".key"))
                .and_then(|v| v.parse::<u32>().ok())
            {
                out.push((v, e.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The current key for `purpose` and `project`, made on first use.
    pub fn pseudonym_key(
        &self,
        purpose: Purpose,
        project: &str,
    ) -> Result<PseudonymKey, KeystoreError> {
        let stem = Keystore::key_stem(purpose, project)?;
        match self.versions(&stem)?.pop() {
            Some((version, path)) => Ok(PseudonymKey {
                version,
                key: hmac::Key::new(hmac::HMAC_SHA256, &read_secret(&path)?),
            }),
            None => self.rotate(purpose, project),
        }
    }

    /// Add a new version of the key for `purpose` and `project`.
    pub fn rotate(&self, purpose: Purpose, project: &str) -> Result<PseudonymKey, KeystoreError> {
        let stem = Keystore::key_stem(purpose, project)?;
        self.ensure_dir()?;
        let version = self
            .versions(&stem)?
            .last()
            .map(|(v, _)| v + 1)
            .unwrap_or(1);
        let path = self.dir.join(format!("{stem}.v{version}.key"));
        let secret = self.write_new_secret(&path)?;
        Ok(PseudonymKey {
            version,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    /// The 32-byte secret in `name`, made on first use.
    pub fn secret(&self, name: &str) -> Result<[u8; 32], KeystoreError> {
        let path = self.dir.join(name);
        if path.exists() {
            return read_secret(&path);
        }
        self.ensure_dir()?;
        self.write_new_secret(&path)
    }

    fn write_new_secret(&self, path: &Path) -> Result<[u8; 32], KeystoreError> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let io = |source| KeystoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(crate::hex(&secret).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(secret)
    }
}

fn read_secret(path: &Path) -> Result<[u8; 32], KeystoreError> {
    let io = |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = fs::read_to_string(path).map_err(io)?;
    crate::unhex32(text.trim()).ok_or_else(|| KeystoreError::Malformed {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_purpose_and_project_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path());
        let a = ks.pseudonym_key(Purpose::Research, "asthma-2026").unwrap();
        let b = ks.pseudonym_key(Purpose::Research, "copd-2026").unwrap();
        let c = ks.pseudonym_key(Purpose::Planning, "asthma-2026").unwrap();
        let again = ks.pseudonym_key(Purpose::Research, "asthma-2026").unwrap();
        let nhs = "9434765919";
        assert_eq!(a.pseudonym(nhs), again.pseudonym(nhs));
        assert_ne!(a.pseudonym(nhs), b.pseudonym(nhs));
        assert_ne!(a.pseudonym(nhs), c.pseudonym(nhs));
        assert!(a.pseudonym(nhs).starts_with("p1-"));
        let rotated = ks.rotate(Purpose::Research, "asthma-2026").unwrap();
        assert_eq!(rotated.version, 2);
        assert_ne!(rotated.pseudonym(nhs), a.pseudonym(nhs));
        assert_eq!(
            ks.pseudonym_key(Purpose::Research, "asthma-2026")
                .unwrap()
                .pseudonym(nhs),
            rotated.pseudonym(nhs)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path());
        ks.pseudonym_key(Purpose::Planning, "planning").unwrap();
        let path = ks.dir().join("pseudonym.planning.planning.v1.key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = ks
            .pseudonym_key(Purpose::Planning, "planning")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(ks.pseudonym_key(Purpose::Planning, "../x").is_err());
    }
}
