//! Discharge referrals for direct care: a trust sends a patient's record (a
//! FHIR Bundle: the Patient, the Encounter, the discharge summary and the
//! care needs) to the care provider that may take them; the provider
//! accepts or declines; the trust sees the answer.
//!
//! A referral travels through the outbox like every message, so a provider
//! that is down receives it once it is back, exactly once. Each side keeps
//! its referrals in `federation/referrals.json` and audits every step with
//! the patient named.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use fdp_govern::{AuditEntry, AuditLog};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::envelope::Envelope;
use crate::node::{Federation, SendError};
use crate::store::Delivery;

/// Where a referral has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In the outbox, waiting for the provider's instance.
    Queued,
    /// The provider's instance has it.
    Delivered,
    Accepted,
    Declined,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Delivered => "delivered",
            Status::Accepted => "accepted",
            Status::Declined => "declined",
        }
    }
}

/// One referral, as either side keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    /// The id of the message that carried it.
    pub id: String,
    /// The referring trust and the care provider.
    pub from: String,
    pub to: String,
    pub patient: String,
    pub admission: Option<String>,
    /// Why the record may be shared (recorded with the referral).
    pub lawful_basis: String,
    pub care_needs: Vec<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The FHIR Bundle (kept by the receiving side).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub bundle: Value,
}

/// What a trust refers.
#[derive(Debug, Clone)]
pub struct NewReferral {
    pub to: String,
    pub patient: String,
    pub admission: Option<String>,
    pub lawful_basis: String,
    pub care_needs: Vec<String>,
    /// A FHIR R4 Bundle of type `collection`.
    pub bundle: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferralError {
    #[error("{0}")]
    Store(String),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("no referral {0}")]
    NotFound(String),
    #[error("referral {0} was already decided")]
    AlreadyDecided(String),
}

/// The referrals of one instance.
pub struct Referrals {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Referrals {
    pub fn open(data_dir: &Path) -> Referrals {
        Referrals {
            path: crate::identity::dir_in(data_dir).join("referrals.json"),
            lock: Mutex::new(()),
        }
    }

    pub fn list(&self) -> Result<Vec<Referral>, ReferralError> {
        crate::store::read_json_or_default(&self.path).map_err(ReferralError::Store)
    }

    fn change(
        &self,
        f: impl FnOnce(&mut Vec<Referral>) -> Result<(), ReferralError>,
    ) -> Result<(), ReferralError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.list()?;
        f(&mut all)?;
        let bytes = serde_json::to_vec_pretty(&all).expect("referrals serialise");
        crate::store::write_durably(&self.path, &bytes)
            .map_err(|e| ReferralError::Store(e.to_string()))
    }

    /// The referrals as they stand, with delivery read from the outbox.
    pub fn current(&self, fed: &Federation) -> Result<Vec<Referral>, ReferralError> {
        let mut all = self.list()?;
        for r in &mut all {
            if r.status == Status::Queued && r.from == fed.identity.ods {
                if let Ok(m) = fed.outbox.get(&r.id) {
                    match m.state {
                        Delivery::Delivered => r.status = Status::Delivered,
                        Delivery::Failed => r.reason = m.last_error.clone(),
                        Delivery::Queued => r.reason = m.last_error.clone(),
                    }
                }
            }
        }
        Ok(all)
    }

    /// Send a referral: committed to the outbox and recorded before this
    /// returns; delivered when the provider's instance can take it.
    pub fn refer(
        &self,
        fed: &Federation,
        audit: &AuditLog,
        by: &str,
        r: NewReferral,
    ) -> Result<Referral, ReferralError> {
        let queued = fed.queue(
            &r.to,
            "referral",
            json!({
                "patient": r.patient,
                "admission": r.admission,
                "lawful_basis": r.lawful_basis,
                "care_needs": r.care_needs,
                "bundle": r.bundle,
            }),
        )?;
        let now = Utc::now();
        let referral = Referral {
            id: queued.envelope.id.clone(),
            from: fed.identity.ods.clone(),
            to: r.to.clone(),
            patient: r.patient.clone(),
            admission: r.admission.clone(),
            lawful_basis: r.lawful_basis.clone(),
            care_needs: r.care_needs.clone(),
            status: Status::Queued,
            reason: None,
            sent_at: now,
            updated_at: now,
            bundle: Value::Null,
        };
        let kept = referral.clone();
        self.change(move |all| {
            all.push(kept);
            Ok(())
        })?;
        audit_step(audit, "referral-sent", by, &referral, "queued for delivery");
        Ok(referral)
    }

    /// A referral arrived from a trust (the message is already in the inbox).
    pub fn received(&self, audit: &AuditLog, e: &Envelope) -> Result<(), ReferralError> {
        let b = &e.body;
        let referral = Referral {
            id: e.id.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            patient: b["patient"].as_str().unwrap_or_default().to_string(),
            admission: b["admission"].as_str().map(str::to_string),
            lawful_basis: b["lawful_basis"].as_str().unwrap_or_default().to_string(),
            care_needs: b["care_needs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            status: Status::Delivered,
            reason: None,
            sent_at: e.sent_at,
            updated_at: Utc::now(),
            bundle: b["bundle"].clone(),
        };
        let kept = referral.clone();
        self.change(move |all| {
            if !all.iter().any(|r| r.id == kept.id) {
                all.push(kept);
            }
            Ok(())
        })?;
        audit_step(
            audit,
            "referral-received",
            &format!("peer:{}", e.from),
            &referral,
            "received",
        );
        Ok(())
    }

    /// The care provider's decision, sent back to the trust.
    pub fn decide(
        &self,
        fed: &Federation,
        audit: &AuditLog,
        by: &str,
        id: &str,
        accept: bool,
        reason: Option<String>,
    ) -> Result<Referral, ReferralError> {
        let mut decided = None;
        let status = if accept {
            Status::Accepted
        } else {
            Status::Declined
        };
        let why = reason.clone();
        self.change(|all| {
            let r = all
                .iter_mut()
                .find(|r| r.id == id && r.to == fed.identity.ods)
                .ok_or_else(|| ReferralError::NotFound(id.to_string()))?;
            if matches!(r.status, Status::Accepted | Status::Declined) {
                return Err(ReferralError::AlreadyDecided(id.to_string()));
            }
            r.status = status;
            r.reason = why;
            r.updated_at = Utc::now();
            decided = Some(r.clone());
            Ok(())
        })?;
        let r = decided.expect("set above");
        fed.queue(
            &r.from,
            "referral-status",
            json!({"referral": r.id, "status": r.status, "reason": reason}),
        )?;
        audit_step(
            audit,
            "referral-decision",
            by,
            &r,
            if accept { "accepted" } else { "declined" },
        );
        Ok(r)
    }

    /// The provider's decision arrived at the trust.
    pub fn status_arrived(&self, audit: &AuditLog, e: &Envelope) -> Result<(), ReferralError> {
        let id = e.body["referral"].as_str().unwrap_or_default().to_string();
        let status: Status = serde_json::from_value(e.body["status"].clone())
            .map_err(|err| ReferralError::Store(format!("referral-status: {err}")))?;
        let mut changed = None;
        self.change(|all| {
            let r = all
                .iter_mut()
                .find(|r| r.id == id && r.to == e.from)
                .ok_or_else(|| ReferralError::NotFound(id.clone()))?;
            r.status = status;
            r.reason = e.body["reason"].as_str().map(str::to_string);
            r.updated_at = Utc::now();
            changed = Some(r.clone());
            Ok(())
        })?;
        let r = changed.expect("set above");
        audit_step(
            audit,
            "referral-status",
            &format!("peer:{}", e.from),
            &r,
            &format!("{:?}", r.status).to_lowercase(),
        );
        Ok(())
    }
}

fn audit_step(audit: &AuditLog, kind: &str, principal: &str, r: &Referral, outcome: &str) {
    let entry = AuditEntry {
        kind: kind.into(),
        principal: principal.to_string(),
        purpose: Some("direct-care".into()),
        justification: Some(r.lawful_basis.clone()),
        channel: "federation".into(),
        what: format!("discharge referral {} from {} to {}", r.id, r.from, r.to),
        patients: vec![r.patient.clone()],
        outcome: outcome.to_string(),
        ..AuditEntry::default()
    };
    if let Err(e) = audit.append(entry) {
        tracing::error!(error = %e, "the referral could not be audited");
    }
}
