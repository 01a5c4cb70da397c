//! Feeds to an ICB: what its members publish and it keeps, the latest from
//! each publisher, and what a member asks of it. Capacity and supplies
//! positions are both such feeds; each says what a publication holds and
//! checks it, and this module does the rest.
//!
//! A publication goes to every ICB the instance has as a peer through the
//! outbox, so an ICB that is down has it when it is back. An ICB keeps, per
//! publisher, the publication with the latest `published_at`: one that
//! arrives late, after a newer one, is dropped.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::identity::OrgRole;
use crate::node::{Federation, SendError};

/// Queue `body`, stamped with when it was published, to every ICB peer as
/// a message of `kind`; how many ICBs it was queued to.
pub fn queue_to_icbs(fed: &Federation, kind: &str, mut body: Value) -> Result<usize, SendError> {
    body["published_at"] = json!(Utc::now());
    let icbs: Vec<String> = fed
        .peers()
        .iter()
        .filter(|p| p.role == OrgRole::Icb)
        .map(|p| p.ods.clone())
        .collect();
    for icb in &icbs {
        fed.queue(icb, kind, body.clone())?;
    }
    Ok(icbs.len())
}

/// Ask this instance's ICB for what it has gathered (a `kind` question,
/// answered within `wait`): its answer's `feed`, as `T`. `what` names the
/// feed in errors.
pub async fn ask_icb<T: DeserializeOwned>(
    fed: &Federation,
    kind: &str,
    wait: Duration,
    what: &str,
) -> Result<T, String> {
    let icb = fed
        .peers()
        .iter()
        .find(|p| p.role == OrgRole::Icb)
        .ok_or("no ICB is configured as a peer of this instance")?
        .ods
        .clone();
    let answer = fed
        .request(&icb, kind, json!({}), wait)
        .await
        .map_err(|e| format!("{icb}: {e}"))?;
    if let Some(why) = answer.body["declined"].as_str() {
        return Err(format!("{icb} declined: {why}"));
    }
    serde_json::from_value(answer.body["answer"]["feed"].clone())
        .map_err(|e| format!("{icb} answered with something other than {what}: {e}"))
}

/// A publication an ICB keeps: when it was published decides which of a
/// publisher's is the latest.
pub trait Publication: Serialize + DeserializeOwned {
    fn published_at(&self) -> DateTime<Utc>;
}

/// When a publication says it was published.
pub fn published_at(body: &Value, what: &str) -> Result<DateTime<Utc>, String> {
    serde_json::from_value(body["published_at"].clone())
        .map_err(|e| format!("not {what}: published_at: {e}"))
}

/// The latest publication from each publisher, in one JSON file under the
/// federation's directory.
pub struct LatestByPublisher<T> {
    path: PathBuf,
    lock: Mutex<()>,
    _kind: PhantomData<fn() -> T>,
}

impl<T: Publication> LatestByPublisher<T> {
    pub fn open(data_dir: &Path, file_name: &str) -> LatestByPublisher<T> {
        LatestByPublisher {
            path: crate::identity::dir_in(data_dir).join(file_name),
            lock: Mutex::new(()),
            _kind: PhantomData,
        }
    }

    /// Every publisher's latest, by publisher.
    pub fn all(&self) -> Result<Vec<T>, String> {
        let map: BTreeMap<String, T> = crate::store::read_json_or_default(&self.path)?;
        Ok(map.into_values().collect())
    }

    /// Keep `publication` from `from`, unless a later one is held.
    pub fn keep(&self, from: &str, publication: T) -> Result<(), String> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut map: BTreeMap<String, T> = crate::store::read_json_or_default(&self.path)?;
        if map
            .get(from)
            .is_some_and(|p| p.published_at() > publication.published_at())
        {
            return Ok(());
        }
        map.insert(from.to_string(), publication);
        crate::store::write_durably(
            &self.path,
            &serde_json::to_vec_pretty(&map).expect("a feed serialises"),
        )
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Figure {
        n: u32,
        published_at: DateTime<Utc>,
    }

    impl Publication for Figure {
        fn published_at(&self) -> DateTime<Utc> {
            self.published_at
        }
    }

    #[test]
    fn the_latest_from_each_publisher_is_kept_whatever_order_they_arrive_in() {
        let dir = tempfile::tempdir().unwrap();
        let feed: LatestByPublisher<Figure> = LatestByPublisher::open(dir.path(), "figures.json");
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let newer = Figure {
            n: 2,
            published_at: at("2026-12-01T10:00:00Z"),
        };
        let older = Figure {
            n: 1,
            published_at: at("2026-12-01T09:00:00Z"),
        };
        feed.keep("RXA", newer.clone()).unwrap();
        // Late, after the newer one: dropped.
        feed.keep("RXA", older.clone()).unwrap();
        feed.keep("RXB", older.clone()).unwrap();
        assert_eq!(feed.all().unwrap(), vec![newer.clone(), older]);
        // Kept durably: a new handle reads the same.
        let again: LatestByPublisher<Figure> = LatestByPublisher::open(dir.path(), "figures.json");
        assert_eq!(again.all().unwrap()[0], newer);
    }
}
