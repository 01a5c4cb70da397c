//! Capacity (care coordination): free places published by care providers
//! and virtual-ward services, and theatre slots a trust will not use; what
//! a policy lets be seen of them; and, for each medically optimised patient
//! on the bed board, the places that suit their discharge pathway today.
//!
//! This is what capacity means; carrying it between instances (a
//! publisher's feed to its ICB, a member's query) is `fdp-federation`'s.
//! No patient data is in a feed: places, types and times only.

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use fdp_govern::ProductView;
use serde::{Deserialize, Serialize};

use crate::bed_board::BedBoard;

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
    /// For a theatre slot derived from the publisher's sessions: which
    /// session, when, and the minutes a further case could take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<TheatreSlot>,
}

/// Free time on one of a trust's theatre sessions to come, as offered to
/// other trusts (see `crate::mutual_aid`). No patient is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TheatreSlot {
    /// The publisher's theatre session id.
    pub session_id: String,
    pub date: chrono::NaiveDate,
    /// AM, PM or All day.
    #[serde(default)]
    pub am_pm: Option<String>,
    /// Planned start and end, local time (`HH:MM`).
    #[serde(default)]
    pub starts: Option<String>,
    #[serde(default)]
    pub ends: Option<String>,
    /// The minutes a further case could take (after a changeover).
    pub usable_minutes: u32,
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
        if let Some(slot) = &self.slot {
            if self.kind != "theatre-slot" {
                return Err(format!(
                    "a {} offer at {} carries a theatre session; only a theatre-slot does",
                    self.kind, self.location
                ));
            }
            if slot.session_id.trim().is_empty() || slot.usable_minutes == 0 {
                return Err(format!(
                    "the theatre slot at {} names no session or no usable minutes",
                    self.location
                ));
            }
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
    /// Shown with `available_when`, which it is the detail of.
    pub slot: Option<TheatreSlot>,
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
            slot: text("available_when", Some("shown")).and(self.slot.clone()),
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

/// How long a published figure counts as current.
pub fn fresh_within() -> chrono::Duration {
    chrono::Duration::hours(24)
}

/// A medically optimised patient on the board and where they could go.
#[derive(Debug, Clone, Serialize)]
pub struct DischargeOption {
    pub admission_id: String,
    /// As the board shows it.
    pub name: String,
    pub pathway: Option<u8>,
    pub length_of_stay_days: i64,
    /// Up to three places, the freshest first, as the view shows them.
    pub places: Vec<ShownPlace>,
    /// How many places suit in all.
    pub suitable: usize,
}

/// A place as the view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ShownPlace {
    pub publisher: Option<String>,
    pub offer: ShownOffer,
}

/// Each medically optimised patient on `board` (already shaped by `view`)
/// and the places from `feed` that suit their pathway, free and fresh at
/// `now`, as `view` shows capacity. `feed` is `None` where there is none
/// to read (the reason is the caller's to say); a view that does not cover
/// capacity matches no place.
pub fn discharge_options(
    board: &BedBoard,
    feed: Option<&[Published]>,
    view: &ProductView,
    now: DateTime<Utc>,
) -> Vec<DischargeOption> {
    let feed = feed.filter(|_| view.reads(TABLE)).unwrap_or_default();
    board
        .sites
        .iter()
        .flat_map(|s| &s.wards)
        .flat_map(|w| &w.beds)
        .filter_map(|b| b.occupant.as_ref())
        .filter(|o| o.readiness.as_ref().is_some_and(|r| r.medically_optimised))
        .map(|o| {
            let pathway = o.readiness.as_ref().and_then(|r| r.discharge_pathway);
            let places = places_for(feed, pathway, now, fresh_within());
            DischargeOption {
                admission_id: o.admission_id.clone(),
                name: o.name.clone(),
                pathway,
                length_of_stay_days: o.length_of_stay_days,
                suitable: places.len(),
                places: places
                    .iter()
                    .take(3)
                    .map(|p| ShownPlace {
                        publisher: view.field(TABLE, "provider_ods_code", Some(&p.publisher)),
                        offer: p.offer.governed(view),
                    })
                    .collect(),
            }
        })
        .collect()
}
