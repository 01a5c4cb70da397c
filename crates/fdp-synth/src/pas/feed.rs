//! A PAS's feed over a span of days, as one stream of messages.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use super::{AdtMessage, PasConfig, PasSimulator};
use crate::error::SynthError;
use crate::trust::Trust;

/// A trust's ADT feed from `start` for a number of days: the census that
/// fills the hospital at `start`, then `per_day` messages a day, evenly
/// spaced, with the configuration's share of malformed ones.
///
/// A year at the default 8,640 a day (one every ten seconds, about what a
/// large acute trust's PAS sends once updates are counted) is a little over
/// three million messages. Messages are made as they are taken, so a year
/// needs no more memory than a day.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use fdp_synth::{pas::Feed, Trust, TrustSpec};
///
/// let trust = Trust::generate(3, TrustSpec::default())?;
/// let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
/// let feed = Feed::new(&trust, 3, start, 1, 100)?;
/// let census = feed.census_len();
/// let messages: Vec<_> = feed.collect();
/// assert_eq!(messages.len(), census + 100);
/// # Ok::<(), fdp_synth::SynthError>(())
/// ```
pub struct Feed {
    sim: PasSimulator,
    census: VecDeque<AdtMessage>,
    census_len: usize,
    clock: DateTime<Utc>,
    tick: Duration,
    remaining: u64,
}

impl Feed {
    /// The feed of `trust`'s PAS (seeded with `seed`, default configuration).
    pub fn new(
        trust: &Trust,
        seed: u64,
        start: DateTime<Utc>,
        days: u32,
        per_day: u32,
    ) -> Result<Feed, SynthError> {
        Self::with_config(
            trust,
            seed,
            PasConfig::for_trust(trust),
            start,
            days,
            per_day,
        )
    }

    /// The feed with a given PAS configuration.
    pub fn with_config(
        trust: &Trust,
        seed: u64,
        config: PasConfig,
        start: DateTime<Utc>,
        days: u32,
        per_day: u32,
    ) -> Result<Feed, SynthError> {
        if per_day == 0 {
            return Err(SynthError::InvalidPasConfig(
                "a feed needs at least one message a day".into(),
            ));
        }
        let mut sim = PasSimulator::new(trust, seed, config)?;
        let census: VecDeque<AdtMessage> = sim.census(start).into();
        Ok(Feed {
            census_len: census.len(),
            sim,
            census,
            clock: start,
            tick: Duration::microseconds(86_400_000_000 / i64::from(per_day)),
            remaining: u64::from(days) * u64::from(per_day),
        })
    }

    /// Messages of the census that opens the feed.
    pub fn census_len(&self) -> usize {
        self.census_len
    }

    /// Messages still to come, the census included.
    pub fn remaining(&self) -> u64 {
        self.census.len() as u64 + self.remaining
    }

    /// The simulator behind the feed: its
    /// [`expected_occupancy`](PasSimulator::expected_occupancy) is who should
    /// be in each bed once every message taken so far has been applied.
    pub fn simulator(&self) -> &PasSimulator {
        &self.sim
    }

    /// The simulated time of the last message taken.
    pub fn clock(&self) -> DateTime<Utc> {
        self.clock
    }
}

impl Iterator for Feed {
    type Item = AdtMessage;

    fn next(&mut self) -> Option<AdtMessage> {
        if let Some(m) = self.census.pop_front() {
            return Some(m);
        }
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.clock += self.tick;
        Some(self.sim.next(self.clock))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}
