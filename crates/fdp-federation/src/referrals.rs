//! Discharge referrals for direct care: a trust sends a patient's record (a
//! FHIR Bundle: the Patient, the Encounter, the discharge summary and the
//! care needs) to the care provider that may take them; the provider
//! accepts or declines; the trust sees the answer.
//!
//! A referral travels through the outbox like every message, so a provider
//! that is down receives it once it is back, exactly once. The provider
//! stores the record it carries through ingest ([`RecordIntake`]). Each
//! side keeps where its referrals have got to (no record) in
//! `federation/referrals.json` and audits every step with the patient
//! named.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use fdp_govern::{AuditEntry, AuditLog};
use serde_json::{json, Value};

use crate::envelope::Envelope;
use crate::node::{Federation, SendError};
use crate::store::Delivery;

pub use fdp_products::referrals::{NewReferral, Referral, Status};

/// Where the record a referral carries is kept when it arrives: the
/// instance's FHIR source, so the record is in raw with its lineage and
/// mapped to the canonical tables, versioned and governed like any other.
pub use fdp_products::platform::RecordIntake;

#[derive(Debug, thiserror::Error)]
pub enum ReferralError {
    #[error("{0}")]
    Store(String),
    /// The record a referral carries could not be taken.
    #[error("the referral's record was not taken: {0}")]
    Record(String),
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

    /// [`Self::current`], each referral received with its record as it is
    /// stored now (a FHIR Bundle, in `bundle`).
    pub fn current_with_records(
        &self,
        fed: &Federation,
        intake: &dyn RecordIntake,
    ) -> Result<Vec<Referral>, ReferralError> {
        let mut all = self.current(fed)?;
        for r in all.iter_mut().filter(|r| !r.record.is_empty()) {
            r.bundle = fdp_fhir::referral::collection(intake.current(&r.record));
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
            record: Vec::new(),
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

    /// A referral arrived from a trust (the message is already in the
    /// inbox): its record is stored through `intake` under the sender's
    /// name (`federation:RXX`), then the referral is kept, once, however
    /// often the message is delivered.
    pub async fn received(
        &self,
        audit: &AuditLog,
        intake: &dyn RecordIntake,
        e: &Envelope,
    ) -> Result<(), ReferralError> {
        let b = &e.body;
        let resources = fdp_fhir::referral::to_store(&b["bundle"], &e.from, &e.id)
            .map_err(ReferralError::Record)?;
        let record = intake
            .take(&format!("federation:{}", e.from), resources)
            .await
            .map_err(ReferralError::Record)?;
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
            record,
            bundle: Value::Null,
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
            if r.status.is_decided() {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Utc;
    use fdp_fhir::referral::{DischargeReferral, ReferredPatient};
    use fdp_govern::keystore::Keystore;

    use super::*;

    /// An intake that keeps what it takes in memory, or refuses all.
    #[derive(Default)]
    struct Kept {
        refuse: bool,
        taken: Mutex<Vec<(String, Vec<String>)>>,
    }

    #[async_trait::async_trait]
    impl RecordIntake for Kept {
        async fn take(
            &self,
            source: &str,
            resources: Vec<(Value, String)>,
        ) -> Result<Vec<String>, String> {
            if self.refuse {
                return Err("Patient.birthDate: not a date".into());
            }
            let ids: Vec<String> = resources
                .iter()
                .map(|(r, id)| format!("{}/{id}", r["resourceType"].as_str().unwrap()))
                .collect();
            self.taken
                .lock()
                .unwrap()
                .push((source.to_string(), ids.clone()));
            Ok(ids)
        }

        fn current(&self, _record: &[String]) -> Vec<Value> {
            Vec::new()
        }
    }

    fn message(bundle: Value) -> Envelope {
        Envelope::new(
            "RXX",
            "CARE1",
            "referral",
            json!({"patient": "M1", "admission": "V1", "lawful_basis": "direct care",
                "care_needs": ["hoist"], "bundle": bundle}),
        )
    }

    fn bundle() -> Value {
        DischargeReferral {
            patient: ReferredPatient {
                id: "M1".into(),
                ..Default::default()
            },
            admission_id: "V1".into(),
            admitted_at: None,
            from: "RXX".into(),
            to: "CARE1".into(),
            summary: "home".into(),
            care_needs: vec!["hoist".into()],
            authored_at: Utc::now(),
        }
        .bundle()
    }

    #[tokio::test]
    async fn a_referral_received_is_stored_through_ingest_and_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(dir.path(), &Keystore::open(dir.path())).unwrap();
        let referrals = Referrals::open(dir.path());
        let intake = Kept::default();
        let m = message(bundle());
        referrals.received(&audit, &intake, &m).await.unwrap();
        // Delivered again (a retry after a lost answer): kept once.
        referrals.received(&audit, &intake, &m).await.unwrap();
        let kept = referrals.list().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].status, Status::Delivered);
        assert!(kept[0].bundle.is_null(), "the record is not kept here");
        assert_eq!(kept[0].record[0], "Patient/RXX.M1");
        assert_eq!(kept[0].record[4], format!("ServiceRequest/{}", m.id));
        let taken = intake.taken.lock().unwrap();
        assert_eq!(taken[0].0, "federation:RXX");
    }

    #[tokio::test]
    async fn a_record_not_taken_is_not_a_referral() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(dir.path(), &Keystore::open(dir.path())).unwrap();
        let referrals = Referrals::open(dir.path());
        let refused = Kept {
            refuse: true,
            ..Default::default()
        };
        let e = referrals
            .received(&audit, &refused, &message(bundle()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Patient.birthDate"), "{e}");
        // Not a Bundle at all: refused before anything is stored.
        let intake = Kept::default();
        let e = referrals
            .received(
                &audit,
                &intake,
                &message(json!({"resourceType": "Patient"})),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("record was not taken"), "{e}");
        assert!(intake.taken.lock().unwrap().is_empty());
        assert!(referrals.list().unwrap().is_empty());
    }
}
