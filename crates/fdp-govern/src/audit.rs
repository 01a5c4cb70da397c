//! The tamper-evident audit log.
//!
//! `<data-dir>/audit/audit.jsonl` holds one JSON object per line, appended
//! and never rewritten. Each entry carries its sequence number and the hash
//! of the entry before it, and ends with its own hash: SHA-256 over the
//! previous hash and the entry's bytes. Editing, removing or re-ordering
//! any entry breaks the chain from there on. Every `CHECKPOINT_EVERY`
//! entries (and when asked) a checkpoint, the sequence number and hash of the
//! latest entry signed with the instance's Ed25519 audit key, is appended to
//! `audit/checkpoints.jsonl`, so that cutting entries off the end is caught
//! too, and a copy of the checkpoints kept elsewhere anchors the log.
//!
//! Several processes may append (the server and `fdp sql`): an exclusive
//! file lock is held from reading the last entry to writing the next.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keystore::{Keystore, KeystoreError};
use crate::session::SessionRequest;

/// A checkpoint is written after this many entries.
pub const CHECKPOINT_EVERY: u64 = 50;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("{path} line {line}: {message}")]
    Damaged {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One audited event.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub prev: String,
    /// `query`, `refusal`, `export`, `ui-change`, `justification`, `re-identification`…
    pub kind: String,
    pub principal: String,
    pub organisation: Option<String>,
    pub role: Option<String>,
    pub purpose: Option<String>,
    pub project: Option<String>,
    pub justification: Option<String>,
    /// `sql`, `http`, `pgwire`, `ui`, `export`…
    pub channel: String,
    /// The statement or the endpoint.
    pub what: String,
    #[serde(default)]
    pub objects: Vec<String>,
    pub rows: Option<u64>,
    /// Patient identifiers the result carried.
    #[serde(default)]
    pub patients: Vec<String>,
    #[serde(default)]
    pub decisions: Vec<String>,
    /// SHA-256 of the policy in force.
    pub policy: Option<String>,
    pub outcome: String,
}

impl AuditEntry {
    pub fn for_request(req: &SessionRequest, what: &str) -> AuditEntry {
        AuditEntry {
            // What leaves the instance as a file is recorded as an export.
            kind: if req.channel == "export" {
                "export"
            } else {
                "query"
            }
            .into(),
            principal: req.principal.name.clone(),
            organisation: req.principal.organisation.clone(),
            role: req.role.clone(),
            purpose: Some(req.purpose.as_str().into()),
            project: req.project.clone(),
            justification: req.justification.clone(),
            channel: req.channel.clone(),
            what: what.to_string(),
            ..AuditEntry::default()
        }
    }
}

/// Which audit entries a review asks for: who looked at this patient, what
/// did this user see last week. Every field left empty matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    /// A person id, NHS number or pseudonym the result named.
    pub patient: Option<String>,
    pub purpose: Option<String>,
    /// `query`, `export`, `purpose`, `key-rotation`, `audit-review`…
    pub kind: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Entries before this instant.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        let at = chrono::DateTime::parse_from_rfc3339(&e.at).ok();
        self.principal.as_ref().is_none_or(|p| &e.principal == p)
            && self
                .purpose
                .as_ref()
                .is_none_or(|p| e.purpose.as_ref() == Some(p))
            && self.kind.as_ref().is_none_or(|k| &e.kind == k)
            && self.patient.as_ref().is_none_or(|p| e.patients.contains(p))
            && self.since.is_none_or(|s| at.is_none_or(|t| t >= s))
            && self.until.is_none_or(|u| at.is_none_or(|t| t < u))
    }

    /// The filter in words, for the audit entry the review itself makes.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("principal", &self.principal),
            ("patient", &self.patient),
            ("purpose", &self.purpose),
            ("kind", &self.kind),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name}={v}"));
            }
        }
        if let Some(s) = self.since {
            parts.push(format!("since={}", s.to_rfc3339()));
        }
        if let Some(u) = self.until {
            parts.push(format!("until={}", u.to_rfc3339()));
        }
        if parts.is_empty() {
            "audit: every entry".into()
        } else {
            format!("audit: {}", parts.join(" "))
        }
    }

    /// A date (2026-11-14, meaning its midnight UTC) or an RFC 3339 instant.
    pub fn parse_instant(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            })
    }
}

/// A signed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub at: String,
    /// Hex Ed25519 signature over `seq:hash:at`.
    pub signature: String,
}

/// The latest signed checkpoint and the public key that signed it: what to
/// publish outside the instance (to the ICB, a transparency log, a signed
/// email), so that cutting entries off the end together with their
/// checkpoints, or replacing the signing key and re-signing a rewritten
/// log, is caught by a later `fdp audit verify --head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    pub at: String,
    /// Hex Ed25519 signature over `seq:hash:at`.
    pub signature: String,
    /// Hex Ed25519 public key of the instance's audit signing key.
    pub public_key: String,
}

/// The audit log of one data directory.
pub struct AuditLog {
    path: PathBuf,
    checkpoints: PathBuf,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditLog({})", self.path.display())
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hash of an entry line without its trailing `,"hash":"…"}`.
fn hash_of(prev: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    crate::hex(&h.finalize())
}

/// Split a stored line into the hashed body and the hash it claims.
fn split_line(line: &str) -> Option<(String, &str)> {
    let at = line.rfind(",\"hash\":\"")?;
    let hash = line[at + 9..].strip_suffix("\"}")?;
    Some((format!("{}}}", &line[..at]), hash))
}

impl AuditLog {
    pub fn open(data_dir: &Path, keystore: &Keystore) -> Result<AuditLog, AuditError> {
        let dir = data_dir.join("audit");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let seed = keystore.secret("audit-signing.key")?;
        let key = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| AuditError::Damaged {
            path: keystore.dir().join("audit-signing.key"),
            line: 1,
            message: "not an Ed25519 seed".into(),
        })?;
        let public = dir.join("audit-signing.pub");
        let hex_pub = crate::hex(key.public_key().as_ref());
        if fs::read_to_string(&public).ok().as_deref() != Some(hex_pub.as_str()) {
            fs::write(&public, &hex_pub).map_err(io(&public))?;
        }
        Ok(AuditLog {
            path: dir.join("audit.jsonl"),
            checkpoints: dir.join("checkpoints.jsonl"),
            key,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one entry; durable when this returns.
    pub fn append(&self, mut entry: AuditEntry) -> Result<u64, AuditError> {
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        f.lock().map_err(io(&self.path))?;
        let (last_seq, last_hash) = last_entry(&mut f, &self.path)?;
        entry.seq = last_seq + 1;
        entry.prev = last_hash;
        entry.at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let body = serde_json::to_string(&entry).expect("audit entries serialise");
        let hash = hash_of(&entry.prev, &body);
        let line = format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1]);
        f.write_all(line.as_bytes()).map_err(io(&self.path))?;
        f.sync_data().map_err(io(&self.path))?;
        if entry.seq.is_multiple_of(CHECKPOINT_EVERY) {
            self.write_checkpoint(entry.seq, &hash)?;
        }
        Ok(entry.seq)
    }

    /// Sign the latest entry now (at shutdown, or after a command's work).
    pub fn checkpoint(&self) -> Result<Option<u64>, AuditError> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let (seq, hash) = last_entry(&mut f, &self.path)?;
        if seq == 0 {
            return Ok(None);
        }
        if let Some(last) = read_checkpoints(&self.checkpoints)?.last() {
            if last.seq == seq {
                return Ok(Some(seq));
            }
        }
        self.write_checkpoint(seq, &hash)?;
        Ok(Some(seq))
    }

    fn write_checkpoint(&self, seq: u64, hash: &str) -> Result<(), AuditError> {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let sig = self.key.sign(format!("{seq}:{hash}:{at}").as_bytes());
        let c = Checkpoint {
            seq,
            hash: hash.to_string(),
            at,
            signature: crate::hex(sig.as_ref()),
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.checkpoints)
            .map_err(io(&self.checkpoints))?;
        f.lock().map_err(io(&self.checkpoints))?;
        let line = serde_json::to_string(&c).expect("checkpoints serialise") + "\n";
        f.write_all(line.as_bytes())
            .map_err(io(&self.checkpoints))?;
        f.sync_data().map_err(io(&self.checkpoints))
    }

    /// Every entry, oldest first (for the IG lead's page and queries).
    pub fn entries(&self) -> Result<Vec<AuditEntry>, AuditError> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io(&self.path))?;
            let entry = serde_json::from_str(&line).map_err(|e| AuditError::Damaged {
                path: self.path.clone(),
                line: i + 1,
                message: e.to_string(),
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The public key checkpoints are signed with, in hex.
    pub fn public_key_hex(&self) -> String {
        crate::hex(self.key.public_key().as_ref())
    }

    /// Sign the latest entry (if not yet signed) and give the head to
    /// publish; `None` for an empty log.
    pub fn head(&self) -> Result<Option<Head>, AuditError> {
        if self.checkpoint()?.is_none() {
            return Ok(None);
        }
        Ok(read_checkpoints(&self.checkpoints)?.pop().map(|c| Head {
            seq: c.seq,
            hash: c.hash,
            at: c.at,
            signature: c.signature,
            public_key: self.public_key_hex(),
        }))
    }

    /// Check the whole chain and every checkpoint.
    pub fn verify(&self) -> Result<Verified, AuditError> {
        self.verify_anchored(None, &[])
    }

    /// [`AuditLog::verify`], anchored outside the data directory: every
    /// checkpoint must verify under `public_key` (hex; by default the key
    /// the heads were published with), which must be the key in the data
    /// directory; and the log must still hold each head published earlier.
    /// Someone with the data directory can cut entries and checkpoints off
    /// the end together, or make a new key and re-sign a rewritten log;
    /// neither survives a head kept elsewhere.
    pub fn verify_anchored(
        &self,
        public_key: Option<&str>,
        heads: &[Head],
    ) -> Result<Verified, AuditError> {
        let own = self.public_key_hex();
        let pinned = public_key
            .map(str::to_string)
            .or_else(|| heads.first().map(|h| h.public_key.clone()));
        let mut v = self.verify_with(pinned.as_deref().unwrap_or(&own), heads)?;
        if let Some(p) = &pinned {
            if *p != own {
                v.problems.insert(
                    0,
                    format!(
                        "the audit signing key in the data directory ({}…) is not the published one ({}…): the key was replaced",
                        &own[..16.min(own.len())],
                        &p[..16.min(p.len())]
                    ),
                );
            }
            if heads.iter().any(|h| h.public_key != *p) {
                v.problems
                    .push("the published heads were signed with different keys".into());
            }
        }
        Ok(v)
    }

    fn verify_with(&self, public_hex: &str, heads: &[Head]) -> Result<Verified, AuditError> {
        let mut problems = Vec::new();
        let mut hashes = vec![GENESIS.to_string()];
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let mut prev = GENESIS.to_string();
        let mut expected_seq = 1u64;
        for (i, line) in text.lines().enumerate() {
            let at = i + 1;
            let Some((body, claimed)) = split_line(line) else {
                problems.push(format!(
                    "line {at}: not an audit entry (no hash at its end)"
                ));
                continue;
            };
            let entry: AuditEntry = match serde_json::from_str(&body) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(format!("line {at}: not readable: {e}"));
                    continue;
                }
            };
            if entry.seq != expected_seq {
                problems.push(format!(
                    "line {at}: entry {} where entry {expected_seq} should be (an entry was removed or moved)",
                    entry.seq
                ));
            }
            if entry.prev != prev {
                problems.push(format!(
                    "line {at} (entry {}): does not follow the entry before it (its previous hash is {}…, the line before hashes to {}…)",
                    entry.seq,
                    &entry.prev.get(..12).unwrap_or(&entry.prev),
                    &prev[..12]
                ));
            }
            let actual = hash_of(&entry.prev, &body);
            if actual != claimed {
                problems.push(format!(
                    "line {at} (entry {}): edited: its content does not match its hash",
                    entry.seq
                ));
            }
            prev = claimed.to_string();
            expected_seq = entry.seq + 1;
            hashes.push(claimed.to_string());
        }
        let entries = hashes.len() as u64 - 1;
        let checkpoints = read_checkpoints(&self.checkpoints)?;
        let public = UnparsedPublicKey::new(&ED25519, crate::unhex(public_hex).unwrap_or_default());
        // A head published outside and a checkpoint kept beside the log say
        // the same thing: this entry had this hash when it was signed.
        for (i, h) in heads.iter().enumerate() {
            let what = format!("published head {}", i + 1);
            problems.extend(check_signed(
                &what,
                (h.seq, &h.hash, &h.at),
                &h.signature,
                &public,
                &hashes,
            ));
        }
        for (i, c) in checkpoints.iter().enumerate() {
            let what = format!("checkpoint {}", i + 1);
            problems.extend(check_signed(
                &what,
                (c.seq, &c.hash, &c.at),
                &c.signature,
                &public,
                &hashes,
            ));
        }
        Ok(Verified {
            entries,
            checkpoints: checkpoints.len(),
            last_checkpoint: checkpoints.last().map(|c| c.seq),
            problems,
        })
    }
}

/// What is wrong with a signature over entry `seq`'s `hash` at `at`, given
/// the hash of every entry in the log (index 0 the genesis), if anything.
fn check_signed(
    what: &str,
    (seq, hash, at): (u64, &str, &str),
    signature: &str,
    public: &UnparsedPublicKey<Vec<u8>>,
    hashes: &[String],
) -> Option<String> {
    let sig = crate::unhex(signature).unwrap_or_default();
    if public
        .verify(format!("{seq}:{hash}:{at}").as_bytes(), &sig)
        .is_err()
    {
        return Some(format!(
            "{what} (entry {seq} at {at}): its signature does not verify under the key it is checked with"
        ));
    }
    match hashes.get(seq as usize) {
        None => Some(format!(
            "{what} signed entry {seq} at {at}, but the log has only {} entries: entries were removed from the end",
            hashes.len() - 1
        )),
        Some(h) if h != hash => Some(format!(
            "{what} signed entry {seq} at {at} with a different hash: the log up to it was changed"
        )),
        Some(_) => None,
    }
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: usize,
    pub last_checkpoint: Option<u64>,
    /// Empty when the log is intact.
    pub problems: Vec<String>,
}

fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, AuditError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| AuditError::Damaged {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// The sequence number and hash of the last entry, read from the file's tail.
fn last_entry(f: &mut File, path: &Path) -> Result<(u64, String), AuditError> {
    let len = f.metadata().map_err(io(path))?.len();
    if len == 0 {
        return Ok((0, GENESIS.to_string()));
    }
    let mut window = 4096u64;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start)).map_err(io(path))?;
        let mut buf = Vec::new();
        f.take(len - start)
            .read_to_end(&mut buf)
            .map_err(io(path))?;
        let text = String::from_utf8_lossy(&buf);
        let trimmed = text.trim_end_matches('\n');
        match trimmed.rfind('\n') {
            Some(nl) => return parse_tail(&trimmed[nl + 1..], path),
            None if start == 0 => return parse_tail(trimmed, path),
            None => window *= 4,
        }
    }
}

fn parse_tail(line: &str, path: &Path) -> Result<(u64, String), AuditError> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    let damaged = |message: String| AuditError::Damaged {
        path: path.to_path_buf(),
        line: 0,
        message: format!("last entry: {message}; run `fdp audit verify`"),
    };
    let (body, hash) = split_line(line).ok_or_else(|| damaged("no hash at its end".into()))?;
    let s: Seq = serde_json::from_str(&body).map_err(|e| damaged(e.to_string()))?;
    Ok((s.seq, hash.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(what: &str) -> AuditEntry {
        AuditEntry {
            kind: "query".into(),
            principal: "amelia".into(),
            channel: "sql".into(),
            what: what.into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        }
    }

    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), &Keystore::open(dir.path())).unwrap();
        for i in 0..n {
            log.append(entry(&format!("SELECT {i}"))).unwrap();
        }
        (dir, log)
    }

    #[test]
    fn an_intact_log_verifies() {
        let (_d, log) = log_with(120);
        log.checkpoint().unwrap();
        let v = log.verify().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.entries, 120);
        assert_eq!(v.checkpoints, 3);
        assert_eq!(log.entries().unwrap()[7].what, "SELECT 7");
    }

    fn rewrite(log: &AuditLog, f: impl FnOnce(&mut Vec<String>)) {
        let mut lines: Vec<String> = fs::read_to_string(log.path())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        f(&mut lines);
        fs::write(log.path(), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn edits_removals_reorders_and_truncation_are_found_and_placed() {
        let (_d, log) = log_with(10);
        log.checkpoint().unwrap();
        rewrite(&log, |l| l[3] = l[3].replace("SELECT 3", "SELECT 4"));
        let p = log.verify().unwrap().problems;
        assert!(
            p.iter().any(|p| p.starts_with("line 4 (entry 4): edited")),
            "{p:?}"
        );

        let (_d, log) = log_with(10);
        rewrite(&log, |l| {
            l.remove(5);
        });
        let p = log.verify().unwrap().problems;
        assert!(
            p.iter()
                .any(|p| p.contains("line 6: entry 7 where entry 6 should be")),
            "{p:?}"
        );

        let (_d, log) = log_with(10);
        rewrite(&log, |l| l.swap(2, 3));
        let p = log.verify().unwrap().problems;
        assert!(
            p.iter()
                .any(|p| p.starts_with("line 3: entry 4 where entry 3")),
            "{p:?}"
        );

        let (_d, log) = log_with(10);
        log.checkpoint().unwrap();
        rewrite(&log, |l| l.truncate(8));
        let p = log.verify().unwrap().problems;
        assert!(
            p.iter().any(|p| p.contains("removed from the end")),
            "{p:?}"
        );
    }

    #[test]
    fn appends_carry_on_after_reopening() {
        let (d, log) = log_with(3);
        drop(log);
        let log = AuditLog::open(d.path(), &Keystore::open(d.path())).unwrap();
        assert_eq!(log.append(entry("again")).unwrap(), 4);
        assert!(log.verify().unwrap().problems.is_empty());
    }
}
