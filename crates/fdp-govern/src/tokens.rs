//! Local API tokens.
//!
//! A token is 32 random bytes, shown once when created as `fdp_` + hex. The
//! instance keeps `name sha256(token)` lines in `secrets/tokens` (mode 0600);
//! a presented token is hashed and compared in constant time, so the file
//! alone never lets anyone in.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// A person or a service account: a local token's name, or the
    /// identity provider's subject.
    pub name: String,
    /// Roles from the identity provider's claims (empty for local tokens,
    /// whose roles come from the instance's policy).
    pub roles: Vec<String>,
    /// The organisation (ODS code) the identity provider says they act for.
    pub organisation: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: expected `NAME HASH` with a 64-character hex SHA-256 hash")]
    Malformed { path: PathBuf, line: usize },
    #[error("a token name is one word of letters, digits, '-', '_' or '.'; {0:?} is not")]
    BadName(String),
}

/// The instance's tokens, loaded from and saved to one file.
pub struct TokenStore {
    path: PathBuf,
    entries: RwLock<Vec<(String, [u8; 32])>>,
    /// Modification time of the file when last read, so that tokens created
    /// by `fdp token create` work without a restart.
    loaded: RwLock<Option<SystemTime>>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

use crate::{hex, unhex32 as unhex};

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenStore {
    /// The token file of a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("secrets").join("tokens")
    }

    /// Load the file; a missing file means no tokens yet.
    pub fn open(path: &Path) -> Result<Self, TokenError> {
        let store = TokenStore {
            path: path.to_path_buf(),
            entries: RwLock::new(Vec::new()),
            loaded: RwLock::new(None),
        };
        store.reload()?;
        Ok(store)
    }

    fn modified(&self) -> Option<SystemTime> {
        fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }

    /// Read the file again.
    fn reload(&self) -> Result<(), TokenError> {
        let path = &self.path;
        let modified = self.modified();
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut entries = Vec::new();
        match fs::read_to_string(path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let mut parts = line.split_whitespace();
                    let (Some(name), Some(h), None) = (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(TokenError::Malformed {
                            path: path.to_path_buf(),
                            line: n + 1,
                        });
                    };
                    let h = unhex(h).ok_or(TokenError::Malformed {
                        path: path.to_path_buf(),
                        line: n + 1,
                    })?;
                    entries.push((name.to_string(), h));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        *self.entries.write().expect("token lock") = entries;
        *self.loaded.write().expect("token lock") = modified;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.read().expect("token lock").is_empty()
    }

    /// Create a token for `name`, replacing any earlier token of that name.
    /// Returns the token; only its hash is kept.
    pub fn create(&self, name: &str) -> Result<String, TokenError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(TokenError::BadName(name.to_string()));
        }
        let token = format!("fdp_{}", random_hex(32));
        let mut entries = self.entries.write().expect("token lock");
        entries.retain(|(n, _)| n != name);
        entries.push((name.to_string(), hash(&token)));
        self.save(&entries)?;
        Ok(token)
    }

    fn save(&self, entries: &[(String, [u8; 32])]) -> Result<(), TokenError> {
        let io = |source| TokenError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = String::from("# name sha256(token); tokens themselves are never stored\n");
        for (name, h) in entries {
            text.push_str(&format!("{name} {}\n", hex(h)));
        }
        // Replaced whole: a reader sees the old list or the new, never half
        // of one.
        crate::files::replace_secret_durably(&self.path, text.as_bytes()).map_err(io)?;
        *self.loaded.write().expect("token lock") = self.modified();
        Ok(())
    }

    /// The principal a presented token belongs to, if any.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        let found = self.lookup(token);
        if found.is_some() {
            return found;
        }
        // Another process may have added a token since the file was read.
        let changed = self.modified() != *self.loaded.read().expect("token lock");
        if changed {
            if let Err(e) = self.reload() {
                // Keep the tokens already loaded; a half-written file must
                // not lock everyone out.
                let _ = e;
                return None;
            }
            return self.lookup(token);
        }
        None
    }

    fn lookup(&self, token: &str) -> Option<Principal> {
        let h = hash(token.trim());
        let entries = self.entries.read().expect("token lock");
        // Compare against every entry so timing does not reveal which
        // position matched.
        let mut found = None;
        for (name, stored) in entries.iter() {
            if ct_eq(&h, stored) && found.is_none() {
                found = Some(Principal {
                    name: name.clone(),
                    ..Principal::default()
                });
            }
        }
        found
    }
}

/// `bytes` random bytes as hex: for tokens and other unguessable ids.
pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    hex(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = TokenStore::path_in(dir.path());
        let store = TokenStore::open(&path).unwrap();
        assert!(store.is_empty());
        let t = store.create("bed-manager").unwrap();
        assert_eq!(store.verify(&t).unwrap().name, "bed-manager");
        assert!(store.verify("fdp_wrong").is_none());
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t));
        // Reloaded from disk, the token still works; a replaced one does not.
        let again = TokenStore::open(&path).unwrap();
        assert!(again.verify(&t).is_some());
        let t2 = again.create("bed-manager").unwrap();
        assert!(again.verify(&t).is_none());
        assert!(again.verify(&t2).is_some());
        assert!(store.create("two words").is_err());
        // A token created through another handle (another process) is seen.
        let t3 = TokenStore::open(&path).unwrap().create("service").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(store.verify(&t3).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "token file must not be readable by others");
        }
    }
}
