//! Supplies across an ICB: each trust's position published to its ICB,
//! and stock one trust can spare offered to another.
//!
//! - **The feed.** A trust sends its supplies position (its `demand` view,
//!   item by item: use, stock, what it can spare once its own wards are
//!   met and what it must still order) to its ICB through the outbox (kind
//!   `supply-position`), so nothing is lost while the ICB is down. The ICB
//!   keeps the latest from each trust ([`SupplyFeed`]) and answers a
//!   member's `supply-query` with all of them; [`area`] puts them together.
//! - **Offers.** A trust offers another stock it can spare (kind
//!   `supply-offer`, through the outbox, so a trust that is down has it
//!   once it is back, exactly once). The receiver accepts it onto one of
//!   its locations, where it is held as on order, or declines; the sender
//!   is told (`supply-offer-status`) and, accepted, records the stock
//!   leaving its location. Each side keeps where its offers have got to in
//!   `federation/supply-offers.json` and audits every step.
//!
//! No patient is in any of it: items, locations and quantities only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use fdp_govern::{AuditEntry, AuditLog};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use fdp_products::platform::RecordIntake;
pub use fdp_products::referrals::Status;
pub use fdp_products::supply_chain::area::{
    area, AreaItem, ItemPosition, Published, TrustQuantity, TrustTransfer,
};

use crate::envelope::Envelope;
use crate::handler::MessageKind;
use crate::icb_feed::{LatestByPublisher, Publication};
use crate::identity::OrgRole;
use crate::node::{Federation, Peer, SendError};
use crate::store::Delivery;

/// Where the records an offer leaves at either trust are stored from.
pub const SOURCE: &str = "supply-offer";

#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    #[error("{0}")]
    Store(String),
    /// The stock movement an offer leaves could not be recorded.
    #[error("the offer's stock movement was not recorded: {0}")]
    Record(String),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("no supply offer {0}")]
    NotFound(String),
    #[error("supply offer {0} was already decided")]
    AlreadyDecided(String),
    #[error("supply offer {0} was made by this trust: the trust it was offered to decides it")]
    NotTheReceiver(String),
    #[error("{0}")]
    Invalid(String),
}

/// Queue this trust's position on `as_at` to every ICB peer; answers how
/// many it was queued to.
pub fn publish(
    fed: &Federation,
    as_at: NaiveDate,
    items: &[ItemPosition],
) -> Result<usize, SendError> {
    crate::icb_feed::queue_to_icbs(
        fed,
        "supply-position",
        json!({"as_at": as_at, "items": items}),
    )
}

impl Publication for Published {
    fn published_at(&self) -> DateTime<Utc> {
        self.published_at
    }
}

/// What an ICB has gathered (`federation/supply-feed.json`): each trust's
/// latest position.
pub struct SupplyFeed(LatestByPublisher<Published>);

impl SupplyFeed {
    pub fn open(data_dir: &Path) -> SupplyFeed {
        SupplyFeed(LatestByPublisher::open(data_dir, "supply-feed.json"))
    }

    /// Every trust's latest position, by trust.
    pub fn all(&self) -> Result<Vec<Published>, String> {
        self.0.all()
    }

    /// Keep a `supply-position` from `from`, unless a later one is held.
    /// A position with an item that is not one is refused whole.
    pub fn received(&self, from: &str, body: &Value) -> Result<(), String> {
        let items: Vec<ItemPosition> = serde_json::from_value(body["items"].clone())
            .map_err(|e| format!("not a supplies position: items: {e}"))?;
        for i in &items {
            i.check()?;
        }
        let as_at: NaiveDate = serde_json::from_value(body["as_at"].clone())
            .map_err(|e| format!("not a supplies position: as_at: {e}"))?;
        let published_at = crate::icb_feed::published_at(body, "a supplies position")?;
        self.0.keep(
            from,
            Published {
                publisher: from.to_string(),
                as_at,
                items,
                published_at,
                received_at: Utc::now(),
            },
        )
    }
}

/// Ask the instance's ICB for every trust's latest position.
pub async fn fetch(fed: &Federation) -> Result<Vec<Published>, String> {
    crate::icb_feed::ask_icb(
        fed,
        "supply-query",
        std::time::Duration::from_secs(5),
        "a supplies feed",
    )
    .await
}

/// One offer of stock from one trust to another, as either side keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupplyOffer {
    /// The message's id.
    pub id: String,
    /// The trust offering and the trust offered to (ODS codes).
    pub from: String,
    pub to: String,
    pub item_code: String,
    pub item_name: Option<String>,
    pub quantity: f64,
    /// Where the stock is at the trust offering.
    pub from_location: String,
    /// Why it is spare there (near expiry, above maximum).
    pub why_spare: Option<String>,
    /// The batch's expiry, for stock spare because of it.
    pub expires: Option<NaiveDate>,
    pub note: Option<String>,
    pub status: Status,
    /// The receiver's reason, where it gave one.
    pub reason: Option<String>,
    /// Where the receiver takes it.
    pub to_location: Option<String>,
    pub accepted_on: Option<NaiveDate>,
    pub sent_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The stock movement recorded at this side, once accepted.
    #[serde(default)]
    pub record: Option<String>,
}

impl SupplyOffer {
    fn transfer(&self, day: NaiveDate) -> Option<TrustTransfer<'_>> {
        Some(TrustTransfer {
            offer: &self.id,
            item: &self.item_code,
            item_name: self.item_name.as_deref(),
            quantity: self.quantity,
            from_trust: &self.from,
            from_location: &self.from_location,
            to_trust: &self.to,
            to_location: self.to_location.as_deref()?,
            day,
        })
    }
}

/// What a supplies lead offers.
#[derive(Debug, Clone)]
pub struct NewSupplyOffer {
    pub to: String,
    pub item_code: String,
    pub item_name: Option<String>,
    pub quantity: f64,
    pub from_location: String,
    pub why_spare: Option<String>,
    pub expires: Option<NaiveDate>,
    pub note: Option<String>,
}

/// The supply offers of one trust, sent and received.
pub struct SupplyOffers {
    path: PathBuf,
    lock: Mutex<()>,
}

impl SupplyOffers {
    pub fn open(data_dir: &Path) -> SupplyOffers {
        SupplyOffers {
            path: crate::identity::dir_in(data_dir).join("supply-offers.json"),
            lock: Mutex::new(()),
        }
    }

    pub fn list(&self) -> Result<Vec<SupplyOffer>, SupplyError> {
        crate::store::read_json_or_default(&self.path).map_err(SupplyError::Store)
    }

    fn change<T>(
        &self,
        f: impl FnOnce(&mut Vec<SupplyOffer>) -> Result<T, SupplyError>,
    ) -> Result<T, SupplyError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.list()?;
        let out = f(&mut all)?;
        let bytes = serde_json::to_vec_pretty(&all).expect("supply offers serialise");
        crate::store::write_durably(&self.path, &bytes)
            .map_err(|e| SupplyError::Store(e.to_string()))?;
        Ok(out)
    }

    /// The offers as they stand, with delivery read from the outbox.
    pub fn current(&self, fed: &Federation) -> Result<Vec<SupplyOffer>, SupplyError> {
        let mut all = self.list()?;
        for o in &mut all {
            if o.status == Status::Queued && o.from == fed.identity.ods {
                if let Ok(m) = fed.outbox.get(&o.id) {
                    match m.state {
                        Delivery::Delivered => o.status = Status::Delivered,
                        Delivery::Failed | Delivery::Queued => o.reason = m.last_error.clone(),
                    }
                }
            }
        }
        Ok(all)
    }

    /// Send an offer: committed to the outbox and recorded before this
    /// returns; delivered when the other trust's instance can take it.
    /// What may be offered is the caller's to check.
    pub fn send(
        &self,
        fed: &Federation,
        audit: &AuditLog,
        by: &str,
        o: NewSupplyOffer,
    ) -> Result<SupplyOffer, SupplyError> {
        if !(o.quantity >= 1.0 && o.quantity.fract() == 0.0) {
            return Err(SupplyError::Invalid(format!(
                "quantity {}: offer a whole number of units, at least one",
                o.quantity
            )));
        }
        if fed.peer(&o.to).is_none_or(|p| p.role != OrgRole::Trust) {
            return Err(SupplyError::Invalid(format!(
                "{} is not a trust this instance exchanges messages with",
                o.to
            )));
        }
        let queued = fed.queue(
            &o.to,
            "supply-offer",
            json!({
                "item_code": o.item_code,
                "item_name": o.item_name,
                "quantity": o.quantity,
                "from_location": o.from_location,
                "why_spare": o.why_spare,
                "expires": o.expires,
                "note": o.note,
            }),
        )?;
        let now = Utc::now();
        let offer = SupplyOffer {
            id: queued.envelope.id.clone(),
            from: fed.identity.ods.clone(),
            to: o.to,
            item_code: o.item_code,
            item_name: o.item_name,
            quantity: o.quantity,
            from_location: o.from_location,
            why_spare: o.why_spare,
            expires: o.expires,
            note: o.note,
            status: Status::Queued,
            reason: None,
            to_location: None,
            accepted_on: None,
            sent_at: now,
            updated_at: now,
            record: None,
        };
        let kept = offer.clone();
        self.change(move |all| {
            all.push(kept);
            Ok(())
        })?;
        audit_step(
            audit,
            "supply-offer-sent",
            by,
            &offer,
            "queued for delivery",
        );
        Ok(offer)
    }

    /// An offer arrived from a trust (the message is already in the
    /// inbox): kept once, however often it is delivered.
    pub fn received(&self, audit: &AuditLog, e: &Envelope) -> Result<(), SupplyError> {
        let b = &e.body;
        let text = |k: &str| {
            b[k].as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let quantity = b["quantity"].as_f64().unwrap_or(0.0);
        if !(quantity >= 1.0 && quantity.fract() == 0.0) {
            return Err(SupplyError::Invalid(format!(
                "not a supply offer: quantity {}",
                b["quantity"]
            )));
        }
        let (Some(item_code), Some(from_location)) = (text("item_code"), text("from_location"))
        else {
            return Err(SupplyError::Invalid(
                "not a supply offer: it names no item_code or from_location".into(),
            ));
        };
        let offer = SupplyOffer {
            id: e.id.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            item_code: item_code.to_uppercase(),
            item_name: text("item_name"),
            quantity,
            from_location,
            why_spare: text("why_spare"),
            expires: serde_json::from_value(b["expires"].clone()).ok(),
            note: text("note"),
            status: Status::Delivered,
            reason: None,
            to_location: None,
            accepted_on: None,
            sent_at: e.sent_at,
            updated_at: Utc::now(),
            record: None,
        };
        let kept = offer.clone();
        let new = self.change(move |all| {
            if all.iter().any(|o| o.id == kept.id) {
                return Ok(false);
            }
            all.push(kept);
            Ok(true)
        })?;
        if new {
            audit_step(
                audit,
                "supply-offer-received",
                &format!("peer:{}", e.from),
                &offer,
                "received",
            );
        }
        Ok(())
    }

    /// The receiving trust's decision on `id`, taking effect on `on`.
    /// Accepted, the stock is recorded through `intake` as on order at
    /// `to_location`; either way the sender is told through the outbox.
    /// Where the stock may go is the caller's to check.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        fed: &Federation,
        audit: &AuditLog,
        intake: &dyn RecordIntake,
        by: &str,
        id: &str,
        decision: Decision,
        on: NaiveDate,
    ) -> Result<SupplyOffer, SupplyError> {
        let mut held = self
            .list()?
            .into_iter()
            .find(|o| o.id == id)
            .ok_or_else(|| SupplyError::NotFound(id.to_string()))?;
        if held.to != fed.identity.ods {
            return Err(SupplyError::NotTheReceiver(id.to_string()));
        }
        if held.status.is_decided() {
            return Err(SupplyError::AlreadyDecided(id.to_string()));
        }
        let (status, to_location, reason) = match decision {
            Decision::Accept { to_location } => (Status::Accepted, Some(to_location), None),
            Decision::Decline { reason } => (Status::Declined, None, reason),
        };
        let mut record = None;
        if let Some(to) = &to_location {
            held.to_location = Some(to.clone());
            let transfer = held.transfer(on).expect("the location is set");
            let (receipt, rid) = transfer.receipt();
            intake
                .take(SOURCE, vec![(receipt, rid.clone())])
                .await
                .map_err(SupplyError::Record)?;
            record = Some(format!("SupplyRequest/{rid}"));
        }
        let why = reason.clone();
        let decided = self.change(|all| {
            let o = all
                .iter_mut()
                .find(|o| o.id == id)
                .ok_or_else(|| SupplyError::NotFound(id.to_string()))?;
            if o.status.is_decided() {
                return Err(SupplyError::AlreadyDecided(id.to_string()));
            }
            o.status = status;
            o.reason = why;
            o.to_location = to_location.clone();
            o.accepted_on = (status == Status::Accepted).then_some(on);
            o.record = record.clone();
            o.updated_at = Utc::now();
            Ok(o.clone())
        })?;
        fed.queue(
            &decided.from,
            "supply-offer-status",
            json!({"offer": id, "status": status, "reason": reason,
                   "to_location": decided.to_location, "accepted_on": decided.accepted_on}),
        )?;
        audit_step(
            audit,
            "supply-offer-decision",
            by,
            &decided,
            status.as_str(),
        );
        Ok(decided)
    }

    /// The receiver's decision arrived at the trust that offered: accepted,
    /// the stock is recorded as leaving its location.
    pub async fn status_arrived(
        &self,
        audit: &AuditLog,
        intake: &dyn RecordIntake,
        e: &Envelope,
    ) -> Result<(), SupplyError> {
        let id = e.body["offer"].as_str().unwrap_or_default().to_string();
        let status: Status = serde_json::from_value(e.body["status"].clone())
            .map_err(|err| SupplyError::Invalid(format!("supply-offer-status: {err}")))?;
        if !status.is_decided() {
            return Err(SupplyError::Invalid(format!(
                "supply-offer-status: {} is not a decision",
                status.as_str()
            )));
        }
        let mut held = self
            .list()?
            .into_iter()
            .find(|o| o.id == id && o.from == e.to && o.to == e.from)
            .ok_or_else(|| SupplyError::NotFound(id.clone()))?;
        if held.status.is_decided() {
            // Told before (a resend): the first answer stands.
            return Ok(());
        }
        let on: Option<NaiveDate> = serde_json::from_value(e.body["accepted_on"].clone()).ok();
        let to_location = e.body["to_location"].as_str().map(str::to_string);
        let mut record = None;
        if status == Status::Accepted {
            let (Some(on), Some(to)) = (on, to_location.clone()) else {
                return Err(SupplyError::Invalid(
                    "supply-offer-status: an acceptance names its day and location".into(),
                ));
            };
            held.to_location = Some(to);
            let transfer = held.transfer(on).expect("the location is set");
            let (dispatch, rid) = transfer.dispatch();
            intake
                .take(SOURCE, vec![(dispatch, rid.clone())])
                .await
                .map_err(SupplyError::Record)?;
            record = Some(format!("SupplyRequest/{rid}"));
        }
        let changed = self.change(|all| {
            let o = all
                .iter_mut()
                .find(|o| o.id == id)
                .ok_or_else(|| SupplyError::NotFound(id.clone()))?;
            o.status = status;
            o.reason = e.body["reason"].as_str().map(str::to_string);
            o.to_location = to_location;
            o.accepted_on = on;
            o.record = record;
            o.updated_at = Utc::now();
            Ok(o.clone())
        })?;
        audit_step(
            audit,
            "supply-offer-status",
            &format!("peer:{}", e.from),
            &changed,
            status.as_str(),
        );
        Ok(())
    }
}

/// What the receiving trust decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Taken onto one of its locations.
    Accept {
        to_location: String,
    },
    Decline {
        reason: Option<String>,
    },
}

fn audit_step(audit: &AuditLog, kind: &str, principal: &str, o: &SupplyOffer, outcome: &str) {
    let entry = AuditEntry {
        kind: kind.into(),
        principal: principal.to_string(),
        purpose: Some("operations".into()),
        channel: "federation".into(),
        what: format!(
            "supply offer {} from {} to {}: {} of {} from {}{}",
            o.id,
            o.from,
            o.to,
            o.quantity,
            o.item_code,
            o.from_location,
            o.to_location
                .as_deref()
                .map(|l| format!(" to {l}"))
                .unwrap_or_default()
        ),
        outcome: outcome.to_string(),
        ..AuditEntry::default()
    };
    if let Err(e) = audit.append(entry) {
        tracing::error!(error = %e, "the supply offer could not be audited");
    }
}

/// Supplies messages: positions and queries at an ICB, offers and their
/// answers between trusts.
pub struct SupplyMessages {
    /// This instance's own role: an ICB gathers, trusts offer.
    pub role: OrgRole,
    pub feed: Arc<SupplyFeed>,
    pub offers: Arc<SupplyOffers>,
    pub audit: Arc<AuditLog>,
    /// Where the stock movements an offer leaves are stored.
    pub intake: Arc<dyn RecordIntake>,
}

#[async_trait::async_trait]
impl MessageKind for SupplyMessages {
    fn kinds(&self) -> &'static [&'static str] {
        &[
            "supply-position",
            "supply-query",
            "supply-offer",
            "supply-offer-status",
        ]
    }

    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        match message.kind.as_str() {
            "supply-position" | "supply-query" if self.role != OrgRole::Icb => Err(format!(
                "this instance is not an ICB: it gathers no supplies positions ({} sent `{}`)",
                from.ods, message.kind
            )),
            "supply-position" => {
                if from.role != OrgRole::Trust {
                    return Err(format!(
                        "{} is not a trust: only trusts publish supplies positions",
                        from.ods
                    ));
                }
                self.feed.received(&from.ods, &message.body)?;
                Ok(json!({"received": true}))
            }
            "supply-query" => Ok(json!({"feed": self.feed.all()?})),
            _ if self.role != OrgRole::Trust || from.role != OrgRole::Trust => Err(format!(
                "supply offers are between trusts ({} is {}, this instance {})",
                from.ods,
                from.role.as_str(),
                self.role.as_str()
            )),
            "supply-offer" => {
                self.offers
                    .received(&self.audit, message)
                    .map_err(|e| e.to_string())?;
                Ok(json!({"received": true}))
            }
            _ => {
                self.offers
                    .status_arrived(&self.audit, self.intake.as_ref(), message)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({"received": true}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fdp_govern::keystore::Keystore;

    use super::*;

    /// An intake that keeps what it takes.
    #[derive(Default)]
    struct Intake {
        taken: Mutex<Vec<(String, Value)>>,
    }

    #[async_trait::async_trait]
    impl RecordIntake for Intake {
        async fn take(
            &self,
            _: &str,
            resources: Vec<(Value, String)>,
        ) -> Result<Vec<String>, String> {
            let mut taken = self.taken.lock().unwrap();
            let mut ids = Vec::new();
            for (r, id) in resources {
                ids.push(format!("SupplyRequest/{id}"));
                taken.push((id, r));
            }
            Ok(ids)
        }

        fn current(&self, _: &[String]) -> Vec<Value> {
            Vec::new()
        }
    }

    fn parts(dir: &Path, role: OrgRole) -> (SupplyMessages, Arc<Intake>) {
        let intake = Arc::new(Intake::default());
        let audit = AuditLog::open(dir, &Keystore::open(dir)).unwrap();
        let part = SupplyMessages {
            role,
            feed: Arc::new(SupplyFeed::open(dir)),
            offers: Arc::new(SupplyOffers::open(dir)),
            audit: Arc::new(audit),
            intake: intake.clone(),
        };
        (part, intake)
    }

    fn peer(ods: &str, role: OrgRole) -> Peer {
        Peer {
            ods: ods.into(),
            role,
            address: None,
            cert: rustls::pki_types::CertificateDer::from(Vec::new()),
        }
    }

    fn position(spare: f64) -> Value {
        json!({"as_at": "2026-12-07", "published_at": Utc::now(), "items": [{
            "item_code": "FTA001", "item_name": "Gloves", "category": "gloves", "critical": true,
            "locations": 4, "forecast_per_month": 310.5, "on_hand": 900, "surplus": 120,
            "shortfall": 0, "spare": spare, "to_order": 0}]})
    }

    fn offer() -> Envelope {
        Envelope::new(
            "RXA",
            "RXB",
            "supply-offer",
            json!({"item_code": "fta001", "item_name": "Gloves", "quantity": 40,
                   "from_location": "RXA01:W3", "why_spare": "above maximum"}),
        )
    }

    #[tokio::test]
    async fn only_trusts_publish_and_only_an_icb_gathers() {
        let dir = tempfile::tempdir().unwrap();
        let (icb, _) = parts(dir.path(), OrgRole::Icb);
        let m = |body| Envelope::new("RXA", "QXA", "supply-position", body);
        icb.handle(&peer("RXA", OrgRole::Trust), &m(position(120.0)))
            .await
            .unwrap();
        let e = icb
            .handle(&peer("VCH", OrgRole::CareProvider), &m(position(1.0)))
            .await
            .unwrap_err();
        assert!(e.contains("not a trust"), "{e}");
        // A figure that is not a quantity is refused, and the last good
        // position stands.
        let e = icb
            .handle(&peer("RXA", OrgRole::Trust), &m(position(-5.0)))
            .await
            .unwrap_err();
        assert!(e.contains("spare"), "{e}");
        let all = icb.feed.all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].publisher, "RXA");
        assert_eq!(all[0].items[0].spare, 120.0);
        let q = Envelope::new("RXB", "QXA", "supply-query", json!({}));
        let answer = icb.handle(&peer("RXB", OrgRole::Trust), &q).await.unwrap();
        assert_eq!(answer["feed"][0]["items"][0]["item_code"], "FTA001");

        let trust_dir = tempfile::tempdir().unwrap();
        let (trust, _) = parts(trust_dir.path(), OrgRole::Trust);
        let e = trust
            .handle(&peer("RXA", OrgRole::Trust), &m(position(1.0)))
            .await
            .unwrap_err();
        assert!(e.contains("not an ICB"), "{e}");
        assert!(trust.feed.all().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_offer_is_kept_once_and_only_from_a_trust() {
        let dir = tempfile::tempdir().unwrap();
        let (trust, _) = parts(dir.path(), OrgRole::Trust);
        let m = offer();
        trust
            .handle(&peer("RXA", OrgRole::Trust), &m)
            .await
            .unwrap();
        trust
            .handle(&peer("RXA", OrgRole::Trust), &m)
            .await
            .unwrap();
        let kept = trust.offers.list().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].item_code, "FTA001");
        assert_eq!(kept[0].status, Status::Delivered);
        let received: Vec<_> = trust
            .audit
            .entries()
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "supply-offer-received")
            .collect();
        assert_eq!(received.len(), 1);
        for role in [OrgRole::Icb, OrgRole::CareProvider, OrgRole::National] {
            let e = trust
                .handle(&peer("QXA", role), &offer())
                .await
                .unwrap_err();
            assert!(e.contains("between trusts"), "{e}");
        }
        let mut bad = offer();
        bad.body["quantity"] = json!(-4);
        assert!(trust
            .handle(&peer("RXA", OrgRole::Trust), &bad)
            .await
            .unwrap_err()
            .contains("quantity"));
        assert_eq!(trust.offers.list().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_acceptance_records_the_dispatch_once_and_a_stranger_cannot_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (sender, intake) = parts(dir.path(), OrgRole::Trust);
        let sent = offer();
        // The sender's own record of the offer, as `send` keeps it.
        sender
            .offers
            .change(|all| {
                all.push(SupplyOffer {
                    id: sent.id.clone(),
                    from: "RXA".into(),
                    to: "RXB".into(),
                    item_code: "FTA001".into(),
                    item_name: Some("Gloves".into()),
                    quantity: 40.0,
                    from_location: "RXA01:W3".into(),
                    why_spare: None,
                    expires: None,
                    note: None,
                    status: Status::Delivered,
                    reason: None,
                    to_location: None,
                    accepted_on: None,
                    sent_at: Utc::now(),
                    updated_at: Utc::now(),
                    record: None,
                });
                Ok(())
            })
            .unwrap();
        let status = |from: &str| {
            Envelope::new(
                from,
                "RXA",
                "supply-offer-status",
                json!({"offer": sent.id, "status": "accepted", "to_location": "RXB01:W7",
                       "accepted_on": "2026-12-07"}),
            )
        };
        // Only the trust it was offered to may answer it.
        let e = sender
            .handle(&peer("RXC", OrgRole::Trust), &status("RXC"))
            .await
            .unwrap_err();
        assert!(e.contains("no supply offer"), "{e}");
        assert!(intake.taken.lock().unwrap().is_empty());
        sender
            .handle(&peer("RXB", OrgRole::Trust), &status("RXB"))
            .await
            .unwrap();
        sender
            .handle(&peer("RXB", OrgRole::Trust), &status("RXB"))
            .await
            .unwrap();
        let taken = intake.taken.lock().unwrap().clone();
        assert_eq!(taken.len(), 1, "{taken:?}");
        assert_eq!(taken[0].0, format!("offer-{}-dispatch", sent.id));
        assert_eq!(taken[0].1["deliverFrom"]["identifier"]["value"], "RXA01:W3");
        assert_eq!(taken[0].1["deliverTo"]["identifier"]["value"], "RXB");
        let o = &sender.offers.list().unwrap()[0];
        assert_eq!(o.status, Status::Accepted);
        assert_eq!(o.to_location.as_deref(), Some("RXB01:W7"));
    }
}
