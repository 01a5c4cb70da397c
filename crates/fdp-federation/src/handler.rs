//! What an instance does with each kind of message it receives.
//!
//! Each part of the instance that takes messages from peers says which
//! kinds it takes and handles them ([`MessageKind`]); the instance
//! registers each part once in [`Messages`], which answers a kind no part
//! took by naming the kinds it does take. A new kind is a new
//! [`MessageKind`] and one more registration, never an edit to a central
//! list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fdp_govern::{AuditLog, TableSource};
use serde_json::{json, Value};

use crate::capacity::CapacityFeed;
use crate::envelope::Envelope;
use crate::marketplace::Marketplace;
use crate::node::{Handler, Peer};
use crate::questions::{Question, QuestionAnswerer};
use crate::referrals::{RecordIntake, Referrals};

/// Kinds of message taken from peers, and what is done with each.
#[async_trait::async_trait]
pub trait MessageKind: Send + Sync {
    /// The kinds it takes (`capacity`, `capacity-query`).
    fn kinds(&self) -> &'static [&'static str];

    /// Handle `message` (of one of [`Self::kinds`]) from `from`: the value
    /// to answer with, or why it was declined.
    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String>;
}

/// The message kinds an instance takes, each handled by the one part that
/// registered it.
#[derive(Default, Clone)]
pub struct Messages {
    by_kind: BTreeMap<&'static str, Arc<dyn MessageKind>>,
    /// Kinds the platform itself takes, whatever the products (see
    /// [`Messages::register_platform`]).
    platform: BTreeSet<&'static str>,
}

impl Messages {
    pub fn new() -> Messages {
        Messages::default()
    }

    /// Take `part`'s kinds from now on. A kind another part already takes
    /// is refused, naming it: an instance answers each kind one way.
    pub fn register(mut self, part: impl MessageKind + 'static) -> Result<Messages, String> {
        let part: Arc<dyn MessageKind> = Arc::new(part);
        for kind in part.kinds() {
            if self.by_kind.insert(kind, part.clone()).is_some() {
                return Err(format!("the message kind `{kind}` is registered twice"));
            }
        }
        Ok(self)
    }

    /// [`Self::register`] for a part of the platform itself (federated
    /// questions, which products offer by name rather than by kind; the
    /// marketplace): its kinds need no product to declare them.
    pub fn register_platform(self, part: impl MessageKind + 'static) -> Result<Messages, String> {
        let kinds = part.kinds();
        let mut me = self.register(part)?;
        me.platform.extend(kinds.iter().copied());
        Ok(me)
    }

    /// Every kind taken, in order.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.by_kind.keys().copied().collect()
    }

    /// Check the kinds taken against what products declare they take
    /// (`(kind, product)`, from their manifests' offers): every kind a
    /// product declares is taken by some part, and every kind taken is
    /// declared by a product or is the platform's own
    /// ([`Self::register_platform`]).
    /// The error names each kind out of place.
    pub fn check_declared(&self, declared: &[(String, String)]) -> Result<(), String> {
        let mut wrong = Vec::new();
        for (kind, product) in declared {
            if !self.by_kind.contains_key(kind.as_str()) {
                wrong.push(format!(
                    "{product} declares the message kind `{kind}`, which no part of this instance takes"
                ));
            }
        }
        for kind in self.by_kind.keys() {
            if !self.platform.contains(kind) && !declared.iter().any(|(k, _)| k == kind) {
                wrong.push(format!(
                    "the message kind `{kind}` is taken, but no product declares it"
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

#[async_trait::async_trait]
impl Handler for Messages {
    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        match self.by_kind.get(message.kind.as_str()) {
            Some(part) => part.handle(from, message).await,
            None => Err(format!(
                "this instance does not take `{}` messages (it takes {})",
                message.kind.chars().take(64).collect::<String>(),
                self.kinds().join(", ")
            )),
        }
    }
}

/// Federated questions, answered through governance once approved.
#[async_trait::async_trait]
impl<S: TableSource + Send + Sync> MessageKind for QuestionAnswerer<S> {
    fn kinds(&self) -> &'static [&'static str] {
        &["question"]
    }

    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        let q: Question = serde_json::from_value(message.body.clone())
            .map_err(|e| format!("not a question: {e}"))?;
        self.answer(&from.ods, &q).await
    }
}

/// Discharge referrals received, and where referrals sent have got to.
pub struct ReferralMessages {
    pub referrals: Arc<Referrals>,
    pub audit: Arc<AuditLog>,
    /// Where the record a referral carries is stored.
    pub intake: Arc<dyn RecordIntake>,
}

#[async_trait::async_trait]
impl MessageKind for ReferralMessages {
    fn kinds(&self) -> &'static [&'static str] {
        &["referral", "referral-status"]
    }

    async fn handle(&self, _from: &Peer, message: &Envelope) -> Result<Value, String> {
        let recorded = if message.kind == "referral" {
            self.referrals
                .received(&self.audit, self.intake.as_ref(), message)
                .await
        } else {
            self.referrals.status_arrived(&self.audit, message)
        };
        recorded.map_err(|e| e.to_string())?;
        Ok(json!({"received": true}))
    }
}

/// Capacity feeds gathered (on an ICB), and handed to members that ask.
#[async_trait::async_trait]
impl MessageKind for CapacityFeed {
    fn kinds(&self) -> &'static [&'static str] {
        &["capacity", "capacity-query"]
    }

    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        if message.kind == "capacity" {
            self.received(&from.ods, &message.body)?;
            Ok(json!({"received": true}))
        } else {
            Ok(json!({"feed": self.all()?}))
        }
    }
}

/// Product packages offered, listed to members that ask, and the decisions
/// on them.
pub struct MarketplaceMessages {
    pub marketplace: Arc<Marketplace>,
    pub audit: Arc<AuditLog>,
    /// The federation's authority, which every package's publisher must be
    /// certified by.
    pub ca: rustls::pki_types::CertificateDer<'static>,
}

#[async_trait::async_trait]
impl MessageKind for MarketplaceMessages {
    fn kinds(&self) -> &'static [&'static str] {
        &["product-offer", "marketplace-list", "product-decision"]
    }

    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        match message.kind.as_str() {
            "product-offer" => {
                self.marketplace
                    .arrived(&self.audit, &from.ods, &message.body, &self.ca)
            }
            "marketplace-list" => self.marketplace.listed(&self.audit, &from.ods),
            _ => self
                .marketplace
                .decision_arrived(&self.audit, &from.ods, &message.body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(&'static [&'static str]);

    #[async_trait::async_trait]
    impl MessageKind for Echo {
        fn kinds(&self) -> &'static [&'static str] {
            self.0
        }
        async fn handle(&self, _from: &Peer, message: &Envelope) -> Result<Value, String> {
            Ok(json!({"echo": message.kind}))
        }
    }

    #[tokio::test]
    async fn each_kind_goes_to_the_part_that_took_it_and_no_kind_is_taken_twice() {
        let messages = Messages::new()
            .register(Echo(&["a", "b"]))
            .unwrap()
            .register(Echo(&["c"]))
            .unwrap()
            .register_platform(Echo(&["p"]))
            .unwrap();
        assert_eq!(messages.kinds(), ["a", "b", "c", "p"]);
        let peer = Peer {
            ods: "RXX".into(),
            role: crate::OrgRole::Trust,
            address: None,
            cert: rustls::pki_types::CertificateDer::from(Vec::new()),
        };
        let envelope = |kind: &str| Envelope::new("RXX", "QXX", kind, json!({}));
        assert_eq!(
            messages.handle(&peer, &envelope("c")).await.unwrap()["echo"],
            "c"
        );
        let declared = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, p)| (k.to_string(), p.to_string()))
                .collect()
        };
        assert!(messages
            .check_declared(&declared(&[("a", "x"), ("b", "x"), ("c", "y")]))
            .is_ok());
        let e = messages
            .check_declared(&declared(&[("a", "x"), ("b", "x"), ("z", "y")]))
            .unwrap_err();
        assert_eq!(
            e,
            "y declares the message kind `z`, which no part of this instance takes; the message kind `c` is taken, but no product declares it"
        );
        let refused = messages.handle(&peer, &envelope("d")).await.unwrap_err();
        assert_eq!(
            refused,
            "this instance does not take `d` messages (it takes a, b, c, p)"
        );
        let twice = messages.register(Echo(&["b"])).err().unwrap();
        assert!(twice.contains("`b` is registered twice"), "{twice}");
    }
}
