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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fdp_govern::ProductView;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::identity::OrgRole;
use crate::node::{Federation, SendError};

/// The kinds of place a feed may offer.
pub const KINDS: &[&str] = &[
    "residential",
    "nursing",
    "dementia",
    "virtual-ward",
    "theatre-slot",
];

/// Free places of one kind at one location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// residential, nursing, dementia, virtual-ward or theatre-slot.
    pub kind: String,
    /// The home, service or theatre.
    pub location: String,
    /// For a virtual ward or a theatre slot: the specialty.
    #[serde(default)]
    pub specialty: Option<String>,
    pub free: u32,
    #[serde(default)]
    pub total: Option<u32>,
    /// For a theatre slot: when, e.g. "2026-11-23 afternoon, 3 h 30 min".
    #[serde(default)]
    pub detail: Option<String>,
    /// When the figure was last checked by the publisher.
    pub updated_at: DateTime<Utc>,
}

impl Offer {
    /// What is wrong with the offer, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(format!(
                "kind {:?} is not one of {}",
                self.kind,
                KINDS.join(", ")
            ));
        }
        if self.location.trim().is_empty() {
            return Err(format!("a {} offer names no location", self.kind));
        }
        if let Some(t) = self.total {
            if self.free > t {
                return Err(format!(
                    "{} at {}: {} free of {t}",
                    self.kind, self.location, self.free
                ));
            }
        }
        Ok(())
    }
}

/// The model's table an offer's figures are columns of: what the policy
/// grants of capacity, for a product showing it.
pub const TABLE: &str = "care_capacity";

/// An offer as a product view lets it be seen: each figure by the
/// `care_capacity` column it is, `None` where the policy removes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownOffer {
    pub kind: Option<String>,
    pub location: Option<String>,
    pub specialty: Option<String>,
    pub free: Option<u32>,
    pub total: Option<u32>,
    pub detail: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Offer {
    /// The offer as `view` shows it (see [`ShownOffer`]).
    pub fn governed(&self, view: &ProductView) -> ShownOffer {
        let text = |column: &str, v: Option<&str>| view.field(TABLE, column, v);
        ShownOffer {
            kind: text("place_type", Some(&self.kind)),
            location: text("location", Some(&self.location)),
            specialty: text("specialty", self.specialty.as_deref()),
            free: view.number(TABLE, "places_free", Some(self.free)),
            total: view.number(TABLE, "places_total", self.total),
            detail: text("available_when", self.detail.as_deref()),
            updated_at: view.number(TABLE, "updated_timestamp", Some(self.updated_at)),
        }
    }
}

/// A publisher's offers as a product view lets them be seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownPublished {
    /// The publisher's ODS code (`provider_ods_code`).
    pub publisher: Option<String>,
    pub role: String,
    pub offers: Vec<ShownOffer>,
    pub published_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

impl Published {
    /// What `view` shows of this publisher's offers.
    pub fn governed(&self, view: &ProductView) -> ShownPublished {
        ShownPublished {
            publisher: view.field(TABLE, "provider_ods_code", Some(&self.publisher)),
            role: self.role.clone(),
            offers: self.offers.iter().map(|o| o.governed(view)).collect(),
            published_at: self.published_at,
            received_at: self.received_at,
        }
    }
}

/// One publisher's offers as the ICB holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub publisher: String,
    pub role: String,
    pub offers: Vec<Offer>,
    pub published_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

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
    let icbs: Vec<String> = fed
        .peers()
        .iter()
        .filter(|p| p.role == OrgRole::Icb)
        .map(|p| p.ods.clone())
        .collect();
    for icb in &icbs {
        fed.queue(
            icb,
            "capacity",
            json!({
                "role": fed.identity.role.to_string(),
                "offers": offers,
                "published_at": Utc::now(),
            }),
        )?;
    }
    Ok(icbs.len())
}

/// What an ICB has gathered (`federation/capacity-feed.json`): the latest
/// offers from each publisher.
pub struct CapacityFeed {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl CapacityFeed {
    pub fn open(data_dir: &Path) -> CapacityFeed {
        CapacityFeed {
            path: crate::identity::dir_in(data_dir).join("capacity-feed.json"),
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Every publisher's latest offers.
    pub fn all(&self) -> Result<Vec<Published>, String> {
        let map: BTreeMap<String, Published> = crate::store::read_json_or_default(&self.path)?;
        Ok(map.into_values().collect())
    }

    /// Keep a `capacity` message from `from`, unless a later one is held.
    pub fn received(&self, from: &str, body: &Value) -> Result<(), String> {
        let offers: Vec<Offer> = serde_json::from_value(body["offers"].clone())
            .map_err(|e| format!("not a capacity feed: {e}"))?;
        for o in &offers {
            o.check()?;
        }
        let published_at: DateTime<Utc> = serde_json::from_value(body["published_at"].clone())
            .map_err(|e| format!("not a capacity feed: published_at: {e}"))?;
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut map: BTreeMap<String, Published> = crate::store::read_json_or_default(&self.path)?;
        if map.get(from).is_some_and(|p| p.published_at > published_at) {
            return Ok(());
        }
        map.insert(
            from.to_string(),
            Published {
                publisher: from.to_string(),
                role: body["role"].as_str().unwrap_or_default().to_string(),
                offers,
                published_at,
                received_at: Utc::now(),
            },
        );
        crate::store::write_durably(
            &self.path,
            &serde_json::to_vec_pretty(&map).expect("the feed serialises"),
        )
        .map_err(|e| e.to_string())
    }
}

/// Ask the instance's ICB for everything it has gathered.
pub async fn fetch(fed: &Federation) -> Result<Vec<Published>, String> {
    let icb = fed
        .peers()
        .iter()
        .find(|p| p.role == OrgRole::Icb)
        .ok_or("no ICB is configured as a peer of this instance")?
        .ods
        .clone();
    let answer = fed
        .request(
            &icb,
            "capacity-query",
            json!({}),
            std::time::Duration::from_secs(3),
        )
        .await
        .map_err(|e| format!("{icb}: {e}"))?;
    if let Some(why) = answer.body["declined"].as_str() {
        return Err(format!("{icb} declined: {why}"));
    }
    serde_json::from_value(answer.body["answer"]["feed"].clone())
        .map_err(|e| format!("{icb} answered with something other than a feed: {e}"))
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

/// The kinds of place suited to a discharge pathway: 1, support at home
/// (a virtual ward); 2, rehabilitation or short-term care in a bed; 3, a
/// care home for the long term.
pub fn kinds_for_pathway(pathway: Option<u8>) -> &'static [&'static str] {
    match pathway {
        Some(1) => &["virtual-ward"],
        Some(2) => &["residential", "nursing"],
        Some(3) => &["residential", "nursing", "dementia"],
        _ => &[],
    }
}

/// A place a patient could go today: a publisher's offer with places free,
/// updated within `fresh_within`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Place {
    pub publisher: String,
    pub offer: Offer,
}

/// The offers in `feed` that suit `pathway`, with places free and fresh,
/// the freshest first.
pub fn places_for(
    feed: &[Published],
    pathway: Option<u8>,
    now: DateTime<Utc>,
    fresh_within: chrono::Duration,
) -> Vec<Place> {
    let kinds = kinds_for_pathway(pathway);
    let mut out: Vec<Place> = feed
        .iter()
        .flat_map(|p| {
            p.offers.iter().map(move |o| Place {
                publisher: p.publisher.clone(),
                offer: o.clone(),
            })
        })
        .filter(|o| {
            kinds.contains(&o.offer.kind.as_str())
                && o.offer.free > 0
                && now - o.offer.updated_at <= fresh_within
        })
        .collect();
    out.sort_by_key(|o| std::cmp::Reverse(o.offer.updated_at));
    out
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
        }
    }

    #[test]
    fn a_patient_is_offered_free_fresh_places_that_suit_the_pathway() {
        let feed = vec![Published {
            publisher: "VCH".into(),
            role: "care-provider".into(),
            offers: vec![
                offer("nursing", 2, 10),
                offer("dementia", 0, 5),
                offer("residential", 1, 60 * 48),
                offer("virtual-ward", 4, 1),
            ],
            published_at: Utc::now(),
            received_at: Utc::now(),
        }];
        let day = chrono::Duration::hours(24);
        let p3 = places_for(&feed, Some(3), Utc::now(), day);
        assert_eq!(
            p3.iter().map(|o| o.offer.kind.as_str()).collect::<Vec<_>>(),
            ["nursing"],
            "no dementia place is free and the residential figure is two days old"
        );
        let p1 = places_for(&feed, Some(1), Utc::now(), day);
        assert_eq!(p1[0].offer.kind, "virtual-ward");
        assert!(places_for(&feed, Some(0), Utc::now(), day).is_empty());
        assert!(places_for(&feed, None, Utc::now(), day).is_empty());
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
