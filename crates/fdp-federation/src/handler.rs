//! What an instance does with each kind of message it receives.

use std::sync::Arc;

use fdp_govern::{AuditLog, TableSource};
use serde_json::{json, Value};

use crate::capacity::CapacityFeed;
use crate::envelope::Envelope;
use crate::marketplace::Marketplace;
use crate::node::{Handler, Peer};
use crate::questions::{Question, QuestionAnswerer};
use crate::referrals::Referrals;

/// Questions are answered through governance; referrals and their status
/// are recorded; capacity feeds are gathered and handed to members that
/// ask for them; product packages offered are checked and kept, listed to
/// members that ask, and the decisions on them audited.
pub struct InstanceMessages<S> {
    pub questions: QuestionAnswerer<S>,
    pub referrals: Arc<Referrals>,
    pub audit: Arc<AuditLog>,
    /// What an ICB has gathered from its members' capacity feeds.
    pub capacity: Arc<CapacityFeed>,
    /// Products offered to this instance, and what it offers on.
    pub marketplace: Arc<Marketplace>,
    /// The federation's authority, which every package's publisher must be
    /// certified by.
    pub ca: rustls::pki_types::CertificateDer<'static>,
}

#[async_trait::async_trait]
impl<S: TableSource + Send + Sync> Handler for InstanceMessages<S> {
    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        match message.kind.as_str() {
            "question" => {
                let q: Question = serde_json::from_value(message.body.clone())
                    .map_err(|e| format!("not a question: {e}"))?;
                self.questions.answer(&from.ods, &q).await
            }
            "referral" => {
                self.referrals
                    .received(&self.audit, message)
                    .map_err(|e| e.to_string())?;
                Ok(json!({"received": true}))
            }
            "referral-status" => {
                self.referrals
                    .status_arrived(&self.audit, message)
                    .map_err(|e| e.to_string())?;
                Ok(json!({"received": true}))
            }
            "capacity" => {
                self.capacity.received(&from.ods, &message.body)?;
                Ok(json!({"received": true}))
            }
            "capacity-query" => Ok(json!({"feed": self.capacity.all()?})),
            "product-offer" => {
                self.marketplace
                    .arrived(&self.audit, &from.ods, &message.body, &self.ca)
            }
            "marketplace-list" => self.marketplace.listed(&self.audit, &from.ods),
            "product-decision" => {
                self.marketplace
                    .decision_arrived(&self.audit, &from.ods, &message.body)
            }
            other => Err(format!("this instance does not take `{other}` messages")),
        }
    }
}
