//! The instance's keystore: pseudonymisation keys, one per purpose and
//! project, and the key that signs audit checkpoints.
//!
//! Keys are files under `<data-dir>/keystore/` readable by the instance's
//! user only; a key file anyone else can read is refused, with the `chmod`
//! that fixes it. A pseudonymisation key has versions: rotating adds a new
//! version, and pseudonyms made from then on use it (they carry the version,
//! `p2-…`), so two extracts made either side of a rotation cannot be joined.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::hmac;
use rand::RngCore;
use sha2::{Digest, Sha256};

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
#[derive(Clone)]
pub struct Keystore {
    dir: PathBuf,
    /// One memo per key, shared by every session using that key.
    memos: Arc<Mutex<HashMap<[u8; 32], Arc<Memo>>>>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore").field("dir", &self.dir).finish()
    }
}

/// A pseudonymisation key: the secret and its version.
#[derive(Clone)]
pub struct PseudonymKey {
    pub version: u32,
    /// Which key this is, without the secret: what a plan sent to another
    /// process carries in its place.
    pub id: KeyId,
    key: hmac::Key,
    memo: Arc<Memo>,
}

/// A pseudonymisation key's name: its purpose, project and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyId {
    pub purpose: Purpose,
    pub project: String,
    pub version: u32,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PseudonymKey(v{})", self.version)
    }
}

/// The bytes of HMAC-SHA-256 a pseudonym keeps (80 bits).
const TAG_BYTES: usize = 10;

/// At most this many identifiers' pseudonyms are remembered per key version
/// (about 100 MB); past it the memo starts again empty.
const MEMO_ENTRIES: usize = 1 << 21;

/// Pseudonyms already made with one key version. A query over ten million
/// encounters of a hundred thousand patients would otherwise compute each
/// patient's HMAC a hundred times; the memo lives as long as the instance,
/// so every session with the same key shares it.
#[derive(Default)]
struct Memo {
    tags: RwLock<HashMap<Box<str>, [u8; TAG_BYTES]>>,
}

impl PseudonymKey {
    /// Whether `other` hashes with the same secret: keys share their memo
    /// exactly when they do.
    pub(crate) fn same_key(&self, other: &PseudonymKey) -> bool {
        self.version == other.version && Arc::ptr_eq(&self.memo, &other.memo)
    }

    /// The pseudonym of one identifier: `p<version>-` and 20 hex characters
    /// (80 bits) of HMAC-SHA-256. Not reversible; re-identification is a
    /// separate, audited request under direct care.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut out = String::new();
        self.write_pseudonym(&self.tag(value.trim()), &mut out);
        out
    }

    fn write_pseudonym(&self, tag: &[u8; TAG_BYTES], out: &mut String) {
        use std::fmt::Write;
        write!(out, "p{}-", self.version).expect("writing to a String");
        crate::push_hex(tag, out);
    }

    fn tag(&self, value: &str) -> [u8; TAG_BYTES] {
        let mac = hmac::sign(&self.key, value.as_bytes());
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&mac.as_ref()[..TAG_BYTES]);
        tag
    }

    /// The pseudonyms of a column's values, as [`pseudonym`](Self::pseudonym)
    /// makes them, passed to `out` in order (`None` for `None`).
    pub(crate) fn pseudonyms<'a>(
        &self,
        values: impl Iterator<Item = Option<&'a str>>,
        mut out: impl FnMut(Option<&str>),
    ) {
        let values: Vec<Option<&str>> = values.map(|v| v.map(str::trim)).collect();
        let mut tags: Vec<Option<[u8; TAG_BYTES]>> = Vec::with_capacity(values.len());
        let mut missing = Vec::new();
        {
            let memo = self.memo.tags.read().unwrap_or_else(|e| e.into_inner());
            for (i, v) in values.iter().enumerate() {
                let known = v.and_then(|v| memo.get(v).copied());
                if v.is_some() && known.is_none() {
                    missing.push(i);
                }
                tags.push(known);
            }
        }
        if !missing.is_empty() {
            let made: Vec<(usize, [u8; TAG_BYTES])> = missing
                .iter()
                .map(|&i| (i, self.tag(values[i].expect("only values are missing"))))
                .collect();
            let mut memo = self.memo.tags.write().unwrap_or_else(|e| e.into_inner());
            if memo.len() + made.len() > MEMO_ENTRIES {
                memo.clear();
            }
            for (i, tag) in made {
                memo.insert(values[i].expect("only values are missing").into(), tag);
                tags[i] = Some(tag);
            }
        }
        let mut text = String::new();
        for tag in tags {
            match tag {
                Some(tag) => {
                    text.clear();
                    self.write_pseudonym(&tag, &mut text);
                    out(Some(&text));
                }
                None => out(None),
            }
        }
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
            memos: Arc::default(),
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
            Some((version, path)) => {
                let secret = read_secret(&path)?;
                Ok(self.key(purpose, project, version, &secret))
            }
            None => self.rotate(purpose, project),
        }
    }

    /// Version `version` of the key for `purpose` and `project`, if it was
    /// ever made (for re-identifying a pseudonym made before a rotation).
    pub fn pseudonym_key_version(
        &self,
        purpose: Purpose,
        project: &str,
        version: u32,
    ) -> Result<Option<PseudonymKey>, KeystoreError> {
        let stem = Keystore::key_stem(purpose, project)?;
        match self
            .versions(&stem)?
            .into_iter()
            .find(|(v, _)| *v == version)
        {
            Some((version, path)) => {
                let secret = read_secret(&path)?;
                Ok(Some(self.key(purpose, project, version, &secret)))
            }
            None => Ok(None),
        }
    }

    /// The memo of the key with this secret (found by the secret's digest,
    /// so a key file replaced by another never shares the old one's memo).
    fn memo(&self, secret: &[u8]) -> Arc<Memo> {
        let id: [u8; 32] = Sha256::digest(secret).into();
        let mut memos = self.memos.lock().unwrap_or_else(|e| e.into_inner());
        memos.entry(id).or_default().clone()
    }

    /// Every pseudonymisation key: its purpose and project (as the file
    /// names them) and its versions, oldest first. Secrets are not read.
    pub fn pseudonym_keys(&self) -> Result<Vec<(String, String, Vec<u32>)>, KeystoreError> {
        let mut stems = std::collections::BTreeSet::new();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some((stem, _)) = name
                    .strip_prefix("pseudonym.")
                    .and_then(|n| n.strip_suffix(".key"))
                    .and_then(|n| n.rsplit_once(".v"))
                {
                    stems.insert(stem.to_string());
                }
            }
        }
        let mut out = Vec::new();
        for stem in stems {
            let Some((purpose, project)) = stem.split_once('.') else {
                continue;
            };
            let versions = self
                .versions(&format!("pseudonym.{stem}"))?
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            out.push((purpose.to_string(), project.to_string(), versions));
        }
        Ok(out)
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
        Ok(self.key(purpose, project, version, &secret))
    }

    fn key(&self, purpose: Purpose, project: &str, version: u32, secret: &[u8]) -> PseudonymKey {
        PseudonymKey {
            version,
            id: KeyId {
                purpose,
                project: project.to_string(),
                version,
            },
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            memo: self.memo(secret),
        }
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
        // Never over a key already there: data pseudonymised with it
        // could no longer be linked.
        crate::files::write_identity_file(path, crate::hex(&secret).as_bytes(), true, false)
            .map_err(io)?;
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

    #[test]
    fn a_column_of_pseudonyms_matches_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path());
        let key = ks.pseudonym_key(Purpose::Planning, "planning").unwrap();
        let values = [
            Some("9434765919"),
            None,
            Some(" 9434765919 "),
            Some("943 476 5870"),
        ];
        let column = |key: &PseudonymKey| {
            let mut out = Vec::new();
            key.pseudonyms(values.iter().copied(), |p| out.push(p.map(str::to_string)));
            out
        };
        let expected: Vec<Option<String>> =
            values.iter().map(|v| v.map(|v| key.pseudonym(v))).collect();
        // Made, then remembered, then remembered by another session's key.
        assert_eq!(column(&key), expected);
        assert_eq!(column(&key), expected);
        let again = ks.pseudonym_key(Purpose::Planning, "planning").unwrap();
        assert_eq!(column(&again), expected);
        // Another project's key has its own memo and its own pseudonyms.
        let other = ks.pseudonym_key(Purpose::Planning, "other").unwrap();
        assert_ne!(column(&other)[0], expected[0]);
        assert_eq!(column(&other)[0], Some(other.pseudonym("9434765919")));
        let rotated = ks.rotate(Purpose::Planning, "planning").unwrap();
        assert_eq!(column(&rotated)[0], Some(rotated.pseudonym("9434765919")));
        assert_ne!(column(&rotated)[0], expected[0]);
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
