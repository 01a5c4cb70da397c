//! Recognising a re-sent record, within a window of time.
//!
//! A source gives each record a dedup key: an identity (for HL7, the sender
//! and the control id) and, after [`DEDUP_CONTENT_SEPARATOR`], a digest of
//! the content. A record whose identity and content were both seen within
//! the window is a re-send: acknowledged again, never stored twice. The same
//! identity with other content is a new record (interface engines reset
//! their counters; some feeds reuse ids), stored and noted, never dropped.
//!
//! Keys are kept in memory only for the window (`StoreConfig::dedup_window`),
//! so a feed running for years does not grow the instance; they persist
//! across restarts because the raw tables hold every key, and start-up loads
//! the window's worth back.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// Separates a dedup key's identity from its content digest. A key without
/// it is identity only: the same key is always the same record.
pub const DEDUP_CONTENT_SEPARATOR: char = '\u{1e}';

/// What the window says of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen within the window.
    New,
    /// The same identity and content: a re-send of record `seq`.
    Duplicate(u64),
    /// The same identity with other content, first stored as record `seq`.
    Reused(u64),
}

/// The keys of the records received within the window.
pub struct DedupWindow {
    window_us: i64,
    /// Identity hash → (content hash, seq) of each record under it. Almost
    /// always one entry.
    by_identity: HashMap<u64, Vec<(u64, u64)>>,
    /// (received at, identity hash, seq), oldest first, for pruning.
    order: VecDeque<(i64, u64, u64)>,
    newest_us: i64,
}

fn hash_of(s: &str) -> u64 {
    // Only compared within one process's memory, so a fixed-key hasher is
    // enough; a collision of both hashes would need 2^64 work.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn split(key: &str) -> (u64, u64) {
    match key.rsplit_once(DEDUP_CONTENT_SEPARATOR) {
        Some((identity, content)) => (hash_of(identity), hash_of(content)),
        None => (hash_of(key), 0),
    }
}

/// The identity part of a key, for people: its fields joined by ` / `.
pub fn describe_identity(key: &str) -> String {
    let identity = key
        .rsplit_once(DEDUP_CONTENT_SEPARATOR)
        .map(|(i, _)| i)
        .unwrap_or(key);
    identity.replace('\u{1f}', " / ")
}

impl DedupWindow {
    pub fn new(window: Duration) -> Self {
        DedupWindow {
            window_us: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            by_identity: HashMap::new(),
            order: VecDeque::new(),
            newest_us: i64::MIN,
        }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// What `key` is, without recording it.
    pub fn check(&self, key: &str) -> Seen {
        let (identity, content) = split(key);
        match self.by_identity.get(&identity) {
            None => Seen::New,
            Some(seen) => match seen.iter().find(|(c, _)| *c == content) {
                Some((_, seq)) => Seen::Duplicate(*seq),
                None => Seen::Reused(seen[0].1),
            },
        }
    }

    /// Record `key` as stored under `seq`, received at `received_at_us`.
    pub fn insert(&mut self, key: &str, seq: u64, received_at_us: i64) {
        let (identity, content) = split(key);
        self.by_identity
            .entry(identity)
            .or_default()
            .push((content, seq));
        self.order.push_back((received_at_us, identity, seq));
        self.newest_us = self.newest_us.max(received_at_us);
    }

    /// Take back a key recorded under `seq` (its write failed).
    pub fn remove(&mut self, key: &str, seq: u64) {
        let (identity, _) = split(key);
        self.forget(identity, seq);
        if let Some(i) = self.order.iter().rposition(|(_, _, s)| *s == seq) {
            self.order.remove(i);
        }
    }

    fn forget(&mut self, identity: u64, seq: u64) {
        if let Some(seen) = self.by_identity.get_mut(&identity) {
            seen.retain(|(_, s)| *s != seq);
            if seen.is_empty() {
                self.by_identity.remove(&identity);
            }
        }
    }

    /// Drop keys received longer than the window before the newest one.
    /// Returns how many were dropped.
    pub fn prune(&mut self) -> usize {
        let horizon = self.newest_us.saturating_sub(self.window_us);
        let mut dropped = 0;
        while let Some(&(at, identity, seq)) = self.order.front() {
            if at >= horizon {
                break;
            }
            self.order.pop_front();
            self.forget(identity, seq);
            dropped += 1;
        }
        if dropped > 0 && self.order.capacity() > 4 * self.order.len().max(1024) {
            self.order.shrink_to_fit();
            self.by_identity.shrink_to_fit();
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ctl: &str, content: &str) -> String {
        format!("PAS\u{1f}RXX\u{1f}{ctl}{DEDUP_CONTENT_SEPARATOR}{content}")
    }

    #[test]
    fn resend_duplicate_reuse_new() {
        let mut w = DedupWindow::new(Duration::from_secs(3600));
        assert_eq!(w.check(&key("1", "a")), Seen::New);
        w.insert(&key("1", "a"), 1, 0);
        assert_eq!(w.check(&key("1", "a")), Seen::Duplicate(1));
        assert_eq!(w.check(&key("1", "b")), Seen::Reused(1));
        w.insert(&key("1", "b"), 2, 1);
        // Both contents are now known under the id.
        assert_eq!(w.check(&key("1", "a")), Seen::Duplicate(1));
        assert_eq!(w.check(&key("1", "b")), Seen::Duplicate(2));
        assert_eq!(w.check(&key("2", "a")), Seen::New);
        // Identity-only keys: the same key is the same record.
        w.insert("FHIR|Patient/1", 3, 2);
        assert_eq!(w.check("FHIR|Patient/1"), Seen::Duplicate(3));
        assert_eq!(describe_identity(&key("9", "x")), "PAS / RXX / 9");
    }

    #[test]
    fn keys_leave_the_window() {
        let hour = 3_600_000_000i64;
        let mut w = DedupWindow::new(Duration::from_secs(3600));
        w.insert(&key("1", "a"), 1, 0);
        w.insert(&key("2", "a"), 2, hour / 2);
        assert_eq!(w.prune(), 0);
        w.insert(&key("3", "a"), 3, hour + 1);
        assert_eq!(w.prune(), 1);
        assert_eq!(w.check(&key("1", "a")), Seen::New);
        assert_eq!(w.check(&key("2", "a")), Seen::Duplicate(2));
        assert_eq!(w.len(), 2);
        w.remove(&key("3", "a"), 3);
        assert_eq!(w.check(&key("3", "a")), Seen::New);
        assert_eq!(w.len(), 1);
    }
}
