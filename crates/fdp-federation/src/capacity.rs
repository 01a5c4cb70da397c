//! Capacity feeds: free places published by care providers and virtual-ward
//! services, and theatre slots a trust will not use, gathered by the ICB so
//! that a discharge coordinator can see where a patient could go today.
//!
//! A publisher keeps its own offers ([`OwnCapacity`]) and, whenever they
//! change, sends the whole list to its ICB through the outbox (kind
//! `capacity`), so a provider that is down or a link that drops loses
//! nothing. The ICB keeps the latest list from each publisher
//! ([`CapacityFeed`]) and answers a member's `capacity-query` with all of
//! them. Each offer says when its figure was last updated, and the ICB when
//! it received it, so stale figures show as stale.
//!
//! No patient data is in a feed: places, types and times only.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub use fdp_products::capacity::{
    kinds_for_pathway, places_for, Offer, Place, Published, ShownOffer, ShownPublished, KINDS,
    TABLE,
};

use crate::icb_feed::{LatestByPublisher, Publication};
use crate::node::{Federation, SendError};

/// This instance's own offers (`federation/capacity.json`).
pub struct OwnCapacity {
    path: PathBuf,
}

impl OwnCapacity {
    pub fn open(data_dir: &Path) -> OwnCapacity {
        OwnCapacity {
            path: crate::identity::dir_in(data_dir).join("capacity.json"),
        }
    }

    pub fn offers(&self) -> Result<Vec<Offer>, String> {
        crate::store::read_json_or_default(&self.path)
    }

    /// Replace the offers (each checked), and send them to the ICB.
    pub fn set(&self, fed: Option<&Federation>, offers: Vec<Offer>) -> Result<usize, String> {
        for o in &offers {
            o.check()?;
        }
        crate::store::write_durably(
            &self.path,
            &serde_json::to_vec_pretty(&offers).expect("offers serialise"),
        )
        .map_err(|e| e.to_string())?;
        match fed {
            Some(fed) => publish(fed, &offers).map_err(|e| e.to_string()),
            None => Ok(0),
        }
    }
}

/// Queue `offers` to every ICB peer; answers how many were queued.
pub fn publish(fed: &Federation, offers: &[Offer]) -> Result<usize, SendError> {
    crate::icb_feed::queue_to_icbs(
        fed,
        "capacity",
        json!({"role": fed.identity.role.to_string(), "offers": offers}),
    )
}

impl Publication for Published {
    fn published_at(&self) -> DateTime<Utc> {
        self.published_at
    }
}

/// What an ICB has gathered (`federation/capacity-feed.json`): the latest
/// offers from each publisher.
pub struct CapacityFeed(LatestByPublisher<Published>);

impl CapacityFeed {
    pub fn open(data_dir: &Path) -> CapacityFeed {
        CapacityFeed(LatestByPublisher::open(data_dir, "capacity-feed.json"))
    }

    /// Every publisher's latest offers.
    pub fn all(&self) -> Result<Vec<Published>, String> {
        self.0.all()
    }

    /// Keep a `capacity` message from `from`, unless a later one is held.
    pub fn received(&self, from: &str, body: &Value) -> Result<(), String> {
        let offers: Vec<Offer> = serde_json::from_value(body["offers"].clone())
            .map_err(|e| format!("not a capacity feed: {e}"))?;
        for o in &offers {
            o.check()?;
        }
        let published_at = crate::icb_feed::published_at(body, "a capacity feed")?;
        self.0.keep(
            from,
            Published {
                publisher: from.to_string(),
                role: body["role"].as_str().unwrap_or_default().to_string(),
                offers,
                published_at,
                received_at: Utc::now(),
            },
        )
    }
}

/// Ask the instance's ICB for everything it has gathered.
pub async fn fetch(fed: &Federation) -> Result<Vec<Published>, String> {
    crate::icb_feed::ask_icb(
        fed,
        "capacity-query",
        std::time::Duration::from_secs(3),
        "a feed",
    )
    .await
}

/// A member's copy of its ICB's gathered feeds, fetched at most once per
/// `max_age` however often pages ask.
pub struct FetchedFeed {
    max_age: std::time::Duration,
    held: tokio::sync::Mutex<Option<(std::time::Instant, Vec<Published>)>>,
}

impl FetchedFeed {
    pub fn new(max_age: std::time::Duration) -> FetchedFeed {
        FetchedFeed {
            max_age,
            held: tokio::sync::Mutex::new(None),
        }
    }

    /// The feeds, from the copy if it is recent enough, else from the ICB.
    pub async fn get(&self, fed: &Federation) -> Result<Vec<Published>, String> {
        let mut held = self.held.lock().await;
        if let Some((at, feed)) = held.as_ref() {
            if at.elapsed() < self.max_age {
                return Ok(feed.clone());
            }
        }
        let feed = fetch(fed).await?;
        *held = Some((std::time::Instant::now(), feed.clone()));
        Ok(feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(kind: &str, free: u32, minutes_ago: i64) -> Offer {
        Offer {
            kind: kind.into(),
            location: format!("{kind} place"),
            specialty: None,
            free,
            total: Some(10),
            detail: None,
            updated_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
            slot: None,
        }
    }

    #[test]
    fn a_later_feed_replaces_an_earlier_one_and_not_the_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let feed = CapacityFeed::open(dir.path());
        let newer = Utc::now();
        let older = newer - chrono::Duration::minutes(5);
        let body = |free: u32, at: DateTime<Utc>| json!({"role": "care-provider", "offers": [offer("nursing", free, 0)], "published_at": at});
        feed.received("VCH", &body(3, newer)).unwrap();
        feed.received("VCH", &body(9, older)).unwrap();
        assert_eq!(feed.all().unwrap()[0].offers[0].free, 3);
        let bad = json!({"offers": [{"kind": "ward", "location": "x", "free": 1, "updated_at": newer}], "published_at": newer});
        assert!(feed.received("VCH", &bad).unwrap_err().contains("ward"));
    }
}
