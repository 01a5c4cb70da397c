//! The durable outbox and inbox.
//!
//! A message to a peer is written to the outbox (and synced) before any
//! attempt to send it; it stays there, retried with backoff while the peer
//! cannot be reached, until the peer has it. A message from a peer is
//! written to the inbox, and its id recorded, before the sender is told it
//! arrived, so a restart on either side loses nothing and a message sent
//! twice is taken once.
//!
//! Layout: `outbox/<id>.json` (the envelope and its delivery state) and
//! `inbox/<id>.json` (the envelope as received) with `inbox/seen.log`, one
//! id per line.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Damaged { path: PathBuf, message: String },
    #[error("no message {0} in the outbox")]
    NoSuchMessage(String),
    #[error(
        "{0:?} is not a message id (32 lowercase hex digits); refused before it could name a file"
    )]
    BadId(String),
}

/// The file holding message `id` in `dir`, for an id that cannot name
/// anything else.
fn message_file(dir: &Path, id: &str) -> Result<PathBuf, StoreError> {
    if !crate::envelope::valid_id(id) {
        return Err(StoreError::BadId(id.chars().take(80).collect()));
    }
    Ok(dir.join(format!("{id}.json")))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` so that it is either all there or not at all.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    fdp_govern::files::replace_durably(path, bytes).map_err(io(path))
}

/// The JSON document at `path`, or the empty value when there is none yet.
pub(crate) fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> Result<T, String> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Where a message to a peer has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Waiting to be sent, or to be tried again.
    Queued,
    /// The peer has it.
    Delivered,
    /// The peer refused it; it will not be tried again.
    Failed,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Queued => "queued",
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
        }
    }
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub envelope: Envelope,
    pub state: Delivery,
    pub queued_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The longest wait between two attempts.
const MAX_BACKOFF_SECS: i64 = 30;

/// Messages to peers, kept until delivered.
pub struct Outbox {
    dir: PathBuf,
    // One writer at a time, so that two workers never send a message twice.
    lock: Mutex<()>,
}

impl Outbox {
    pub fn open(federation_dir: &Path) -> Result<Outbox, StoreError> {
        let dir = federation_dir.join("outbox");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Outbox {
            dir,
            lock: Mutex::new(()),
        })
    }

    fn path(&self, id: &str) -> Result<PathBuf, StoreError> {
        message_file(&self.dir, id)
    }

    fn save(&self, m: &Outgoing) -> Result<(), StoreError> {
        write_durably(
            &self.path(&m.envelope.id)?,
            &serde_json::to_vec_pretty(m).expect("an outgoing message serialises"),
        )
    }

    /// Commit `envelope` to the outbox; it is sent from there.
    pub fn queue(&self, envelope: Envelope) -> Result<Outgoing, StoreError> {
        self.queue_held(envelope, Duration::zero())
    }

    /// Commit `envelope` to the outbox, but keep the sender off it for
    /// `hold`: for a message its caller sends at once and settles itself
    /// (a question, whose late answer no one waits for).
    pub fn queue_held(&self, envelope: Envelope, hold: Duration) -> Result<Outgoing, StoreError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let now = Utc::now();
        let m = Outgoing {
            envelope,
            state: Delivery::Queued,
            queued_at: now,
            attempts: 0,
            next_attempt: now + hold,
            last_error: None,
            delivered_at: None,
        };
        self.save(&m)?;
        Ok(m)
    }

    /// One message by id.
    pub fn get(&self, id: &str) -> Result<Outgoing, StoreError> {
        let path = self.path(id)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchMessage(id.to_string()))
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            path,
            message: e.to_string(),
        })
    }

    /// Every message, oldest first.
    pub fn list(&self) -> Result<Vec<Outgoing>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io(&path))?;
            out.push(serde_json::from_slice::<Outgoing>(&bytes).map_err(|e| {
                StoreError::Damaged {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?);
        }
        out.sort_by(|a, b| (a.queued_at, &a.envelope.id).cmp(&(b.queued_at, &b.envelope.id)));
        Ok(out)
    }

    /// Queued messages whose next attempt is due.
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<Outgoing>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|m| m.state == Delivery::Queued && m.next_attempt <= now)
            .collect())
    }

    /// The peer has the message (it took it, or says it already had it).
    pub fn delivered(&self, id: &str) -> Result<Outgoing, StoreError> {
        self.update(id, |m| {
            m.attempts += 1;
            m.state = Delivery::Delivered;
            m.delivered_at = Some(Utc::now());
            m.last_error = None;
        })
    }

    /// An attempt failed. A refusal by the peer is final; anything else (the
    /// peer down, the network) is tried again after a wait that doubles
    /// each time, up to half a minute.
    pub fn attempt_failed(
        &self,
        id: &str,
        reason: &str,
        final_: bool,
    ) -> Result<Outgoing, StoreError> {
        self.update(id, |m| {
            m.attempts += 1;
            m.last_error = Some(reason.to_string());
            if final_ {
                m.state = Delivery::Failed;
            } else {
                let wait = (1i64 << m.attempts.min(6)).min(MAX_BACKOFF_SECS);
                m.next_attempt = Utc::now() + Duration::seconds(wait);
            }
        })
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Outgoing)) -> Result<Outgoing, StoreError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = self.get(id)?;
        f(&mut m);
        self.save(&m)?;
        Ok(m)
    }
}

/// Whether a message was new to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    New,
    /// Its id was received before: a replay, or a resend after a lost reply.
    AlreadyReceived,
}

/// Messages from peers.
pub struct Inbox {
    dir: PathBuf,
    seen: Mutex<(HashSet<String>, File)>,
}

impl Inbox {
    pub fn open(federation_dir: &Path) -> Result<Inbox, StoreError> {
        let dir = federation_dir.join("inbox");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let log = dir.join("seen.log");
        let seen: HashSet<String> = match fs::read_to_string(&log) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(io(&log)(e)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(&log))?;
        Ok(Inbox {
            dir,
            seen: Mutex::new((seen, file)),
        })
    }

    /// Keep a message that opened, durably, before its sender is answered.
    pub fn receive(&self, e: &Envelope) -> Result<Arrival, StoreError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.0.contains(&e.id) {
            return Ok(Arrival::AlreadyReceived);
        }
        write_durably(
            &message_file(&self.dir, &e.id)?,
            &serde_json::to_vec_pretty(e).expect("an envelope serialises"),
        )?;
        let log = self.dir.join("seen.log");
        writeln!(seen.1, "{}", e.id).map_err(io(&log))?;
        seen.1.sync_data().map_err(io(&log))?;
        seen.0.insert(e.id.clone());
        Ok(Arrival::New)
    }

    /// One received message.
    pub fn get(&self, id: &str) -> Result<Option<Envelope>, StoreError> {
        // An id that cannot name a message file names no message.
        let Ok(path) = message_file(&self.dir, id) else {
            return Ok(None);
        };
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Damaged {
                    path,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Every received message of `kind`, oldest first.
    pub fn of_kind(&self, kind: &str) -> Result<Vec<Envelope>, StoreError> {
        Ok(self.all()?.into_iter().filter(|e| e.kind == kind).collect())
    }

    /// Every received message, oldest first.
    pub fn all(&self) -> Result<Vec<Envelope>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io(&path))?;
            let e: Envelope =
                serde_json::from_slice(&bytes).map_err(|err| StoreError::Damaged {
                    path: path.clone(),
                    message: err.to_string(),
                })?;
            out.push(e);
        }
        out.sort_by(|a, b| (a.sent_at, &a.id).cmp(&(b.sent_at, &b.id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_outbox_keeps_messages_across_a_restart_and_backs_off() {
        let dir = tempfile::tempdir().unwrap();
        let e = Envelope::new("RXX", "CARE1", "referral", json!({"patient": "p"}));
        {
            let outbox = Outbox::open(dir.path()).unwrap();
            outbox.queue(e.clone()).unwrap();
            let m = outbox
                .attempt_failed(&e.id, "connection refused", false)
                .unwrap();
            assert_eq!((m.state, m.attempts), (Delivery::Queued, 1));
            assert!(m.next_attempt > Utc::now());
            assert!(outbox.due(Utc::now()).unwrap().is_empty());
        }
        let outbox = Outbox::open(dir.path()).unwrap();
        let due = outbox.due(Utc::now() + Duration::seconds(3)).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].envelope, e);
        for _ in 0..10 {
            outbox
                .attempt_failed(&e.id, "connection refused", false)
                .unwrap();
        }
        let m = outbox.get(&e.id).unwrap();
        assert!(m.next_attempt <= Utc::now() + Duration::seconds(MAX_BACKOFF_SECS));
        let m = outbox.delivered(&e.id).unwrap();
        assert_eq!(m.state, Delivery::Delivered);
        assert!(outbox
            .due(Utc::now() + Duration::days(1))
            .unwrap()
            .is_empty());
        let refused = Envelope::new("RXX", "CARE1", "referral", json!({}));
        outbox.queue(refused.clone()).unwrap();
        let m = outbox
            .attempt_failed(&refused.id, "bad signature", true)
            .unwrap();
        assert_eq!(m.state, Delivery::Failed);
        assert_eq!(outbox.list().unwrap().len(), 2);
    }

    #[test]
    fn the_inbox_takes_each_message_once_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let e = Envelope::new("RXX", "CARE1", "referral", json!({"n": 1}));
        {
            let inbox = Inbox::open(dir.path()).unwrap();
            assert_eq!(inbox.receive(&e).unwrap(), Arrival::New);
            assert_eq!(inbox.receive(&e).unwrap(), Arrival::AlreadyReceived);
        }
        let inbox = Inbox::open(dir.path()).unwrap();
        assert_eq!(inbox.receive(&e).unwrap(), Arrival::AlreadyReceived);
        assert_eq!(inbox.get(&e.id).unwrap(), Some(e.clone()));
        assert_eq!(inbox.of_kind("referral").unwrap(), vec![e]);
        assert!(inbox.of_kind("answer").unwrap().is_empty());
    }
}
