//! Mutual aid between trusts: a booking request for a patient to take
//! another trust's free theatre time, carried with the pathway's record,
//! and the provider's answer.
//!
//! - The trust sends the request through the outbox (kind
//!   `booking-request`) with the patient's choice and the pathway's record
//!   (see [`fdp_fhir::pathway_transfer`]), so a provider that is down has
//!   it once it is back, exactly once.
//! - The provider stores the record through ingest on arrival (the patient,
//!   the pathway and its clock start, all with lineage to the message); the
//!   patient is not on its list until it accepts.
//! - Accepting makes the transfer `active`: RTT status 21 on the day, and a
//!   list entry at the provider with the clock carried over. The trust is
//!   told (`booking-status`) and records the same status 21 on its own
//!   pathway, so both PTLs show the same clock.
//!
//! Each side keeps where its requests have got to in
//! `federation/booking-requests.json` and audits every step with the
//! patient named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use fdp_fhir::pathway_transfer::{self, TransferredPathway};
use fdp_govern::{AuditEntry, AuditLog};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::envelope::Envelope;
use crate::handler::MessageKind;
use crate::node::{Federation, Peer, SendError};
use crate::store::Delivery;

pub use fdp_products::capacity::TheatreSlot;
pub use fdp_products::platform::RecordIntake;
pub use fdp_products::referrals::Status;

/// Where the provider's acceptance and the trust's record of it are
/// stored from: the mutual-aid step, not the peer's message.
pub const SOURCE: &str = "mutual-aid";

#[derive(Debug, thiserror::Error)]
pub enum MutualAidError {
    #[error("{0}")]
    Store(String),
    /// The record a request carries could not be taken.
    #[error("the booking request's record was not taken: {0}")]
    Record(String),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("no booking request {0}")]
    NotFound(String),
    #[error("booking request {0} was already decided")]
    AlreadyDecided(String),
    #[error("booking request {0} was sent by this instance: the provider decides it")]
    NotTheProvider(String),
}

/// One booking request, as either side keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRequest {
    /// The message's id.
    pub id: String,
    /// The trust asking and the trust offering the slot (ODS codes).
    pub from: String,
    pub to: String,
    /// The slot asked for, at `to`.
    pub location: String,
    pub specialty: Option<String>,
    pub slot: TheatreSlot,
    /// The list entry and pathway at the trust asking.
    pub eal_id: String,
    pub pathway_id: String,
    /// The patient, by the sender's id, and name.
    pub patient: String,
    pub patient_name: Option<String>,
    pub priority_type: Option<String>,
    pub rtt_weeks_waiting: Option<i64>,
    pub rtt_period_start_date: Option<NaiveDate>,
    pub expected_theatre_minutes: Option<i64>,
    /// What the patient said when offered the slot.
    pub patient_choice: String,
    /// Why the record may be shared.
    pub lawful_basis: String,
    pub status: Status,
    pub reason: Option<String>,
    /// The list entry the provider made on accepting.
    pub entry_at_provider: Option<String>,
    /// The day the transfer took effect.
    pub accepted_on: Option<NaiveDate>,
    pub sent_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where the record it carried is kept (at the provider).
    #[serde(default)]
    pub record: Vec<String>,
    /// The transfer as sent (at the trust asking), recorded once accepted.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub transfer: Value,
}

/// What a waiting-list manager asks for.
#[derive(Debug, Clone)]
pub struct NewBookingRequest {
    pub to: String,
    pub location: String,
    pub specialty: Option<String>,
    pub slot: TheatreSlot,
    pub eal_id: String,
    pub pathway: TransferredPathway,
    pub patient_name: Option<String>,
    pub rtt_weeks_waiting: Option<i64>,
    pub patient_choice: String,
    pub lawful_basis: String,
}

/// The booking requests of one instance.
pub struct BookingRequests {
    path: PathBuf,
    lock: Mutex<()>,
}

impl BookingRequests {
    pub fn open(data_dir: &Path) -> BookingRequests {
        BookingRequests {
            path: crate::identity::dir_in(data_dir).join("booking-requests.json"),
            lock: Mutex::new(()),
        }
    }

    pub fn list(&self) -> Result<Vec<BookingRequest>, MutualAidError> {
        crate::store::read_json_or_default(&self.path).map_err(MutualAidError::Store)
    }

    fn change<T>(
        &self,
        f: impl FnOnce(&mut Vec<BookingRequest>) -> Result<T, MutualAidError>,
    ) -> Result<T, MutualAidError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.list()?;
        let out = f(&mut all)?;
        let bytes = serde_json::to_vec_pretty(&all).expect("booking requests serialise");
        crate::store::write_durably(&self.path, &bytes)
            .map_err(|e| MutualAidError::Store(e.to_string()))?;
        Ok(out)
    }

    /// The requests as they stand, with delivery read from the outbox.
    pub fn current(&self, fed: &Federation) -> Result<Vec<BookingRequest>, MutualAidError> {
        let mut all = self.list()?;
        for r in &mut all {
            if r.status == Status::Queued && r.from == fed.identity.ods {
                if let Ok(m) = fed.outbox.get(&r.id) {
                    match m.state {
                        Delivery::Delivered => r.status = Status::Delivered,
                        Delivery::Failed | Delivery::Queued => r.reason = m.last_error.clone(),
                    }
                }
            }
        }
        Ok(all)
    }

    /// Send a request: committed to the outbox and recorded before this
    /// returns; delivered when the provider's instance can take it.
    pub fn send(
        &self,
        fed: &Federation,
        audit: &AuditLog,
        by: &str,
        r: NewBookingRequest,
    ) -> Result<BookingRequest, MutualAidError> {
        let now = Utc::now();
        let bundle = r.pathway.bundle(now);
        // The trust's own copy of the transfer, recorded once accepted,
        // refers to the patient as the trust holds them; the pathway is its
        // own, so the Bundle's links to it are dropped.
        let mut transfer = bundle["entry"][3]["resource"].clone();
        transfer["subject"] = json!({"reference": format!("Patient/{}", r.pathway.patient.id)});
        if let Some(t) = transfer.as_object_mut() {
            t.remove("supportingInfo");
        }
        let queued = fed.queue(
            &r.to,
            "booking-request",
            json!({
                "location": r.location,
                "specialty": r.specialty,
                "slot": r.slot,
                "eal_id": r.eal_id,
                "pathway_id": r.pathway.pathway_id,
                "patient": r.pathway.patient.id,
                "patient_name": r.patient_name,
                "priority_type": r.pathway.priority,
                "rtt_weeks_waiting": r.rtt_weeks_waiting,
                "rtt_period_start_date": r.pathway.clock_start,
                "expected_theatre_minutes": r.pathway.expected_theatre_minutes,
                "patient_choice": r.patient_choice,
                "lawful_basis": r.lawful_basis,
                "bundle": bundle,
            }),
        )?;
        let request = BookingRequest {
            id: queued.envelope.id.clone(),
            from: fed.identity.ods.clone(),
            to: r.to,
            location: r.location,
            specialty: r.specialty,
            slot: r.slot,
            eal_id: r.eal_id,
            pathway_id: r.pathway.pathway_id.clone(),
            patient: r.pathway.patient.id.clone(),
            patient_name: r.patient_name,
            priority_type: r.pathway.priority.clone(),
            rtt_weeks_waiting: r.rtt_weeks_waiting,
            rtt_period_start_date: Some(r.pathway.clock_start),
            expected_theatre_minutes: r.pathway.expected_theatre_minutes.map(i64::from),
            patient_choice: r.patient_choice,
            lawful_basis: r.lawful_basis,
            status: Status::Queued,
            reason: None,
            entry_at_provider: None,
            accepted_on: None,
            sent_at: now,
            updated_at: now,
            record: Vec::new(),
            transfer,
        };
        let kept = request.clone();
        self.change(move |all| {
            all.push(kept);
            Ok(())
        })?;
        audit_step(
            audit,
            "booking-request-sent",
            by,
            &request,
            "queued for delivery",
        );
        Ok(request)
    }

    /// A request arrived from a trust (the message is already in the
    /// inbox): its record is stored through `intake` under the sender's
    /// name, then the request is kept, once, however often it is delivered.
    pub async fn received(
        &self,
        audit: &AuditLog,
        intake: &dyn RecordIntake,
        e: &Envelope,
    ) -> Result<(), MutualAidError> {
        if self.list()?.iter().any(|r| r.id == e.id) {
            return Ok(());
        }
        let b = &e.body;
        let slot: TheatreSlot = serde_json::from_value(b["slot"].clone())
            .map_err(|err| MutualAidError::Record(format!("slot: {err}")))?;
        let resources = pathway_transfer::to_store(&b["bundle"], &e.from, &e.id)
            .map_err(MutualAidError::Record)?;
        let record = intake
            .take(&format!("federation:{}", e.from), resources)
            .await
            .map_err(MutualAidError::Record)?;
        let text = |k: &str| b[k].as_str().map(str::to_string);
        let request = BookingRequest {
            id: e.id.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            location: text("location").unwrap_or_default(),
            specialty: text("specialty"),
            slot,
            eal_id: text("eal_id").unwrap_or_default(),
            pathway_id: text("pathway_id").unwrap_or_default(),
            patient: text("patient").unwrap_or_default(),
            patient_name: text("patient_name"),
            priority_type: text("priority_type"),
            rtt_weeks_waiting: b["rtt_weeks_waiting"].as_i64(),
            rtt_period_start_date: serde_json::from_value(b["rtt_period_start_date"].clone()).ok(),
            expected_theatre_minutes: b["expected_theatre_minutes"].as_i64(),
            patient_choice: text("patient_choice").unwrap_or_default(),
            lawful_basis: text("lawful_basis").unwrap_or_default(),
            status: Status::Delivered,
            reason: None,
            entry_at_provider: None,
            accepted_on: None,
            sent_at: e.sent_at,
            updated_at: Utc::now(),
            record,
            transfer: Value::Null,
        };
        let kept = request.clone();
        let new = self.change(move |all| {
            if all.iter().any(|r| r.id == kept.id) {
                return Ok(false);
            }
            all.push(kept);
            Ok(true)
        })?;
        if new {
            audit_step(
                audit,
                "booking-request-received",
                &format!("peer:{}", e.from),
                &request,
                "received",
            );
        }
        Ok(())
    }

    /// The provider's decision on `id`, taking effect on `on`. Accepted,
    /// the transfer becomes its list entry (through `intake`); either way
    /// the trust is told through the outbox.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        fed: &Federation,
        audit: &AuditLog,
        intake: &dyn RecordIntake,
        by: &str,
        id: &str,
        accept: bool,
        reason: Option<String>,
        on: NaiveDate,
    ) -> Result<BookingRequest, MutualAidError> {
        let held = self
            .list()?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| MutualAidError::NotFound(id.to_string()))?;
        if held.to != fed.identity.ods {
            return Err(MutualAidError::NotTheProvider(id.to_string()));
        }
        if held.status.is_decided() {
            return Err(MutualAidError::AlreadyDecided(id.to_string()));
        }
        let entry = accept.then(|| format!("MA-{id}"));
        if let Some(entry) = &entry {
            let reference = format!("ServiceRequest/{id}");
            let transfer = intake
                .current(std::slice::from_ref(&reference))
                .into_iter()
                .next()
                .ok_or_else(|| {
                    MutualAidError::Store(format!(
                        "request {id}'s transfer ({reference}) is not held"
                    ))
                })?;
            let accepted = pathway_transfer::accepted(&transfer, on, Some(entry));
            intake
                .take(SOURCE, vec![(accepted, id.to_string())])
                .await
                .map_err(MutualAidError::Record)?;
        }
        let status = if accept {
            Status::Accepted
        } else {
            Status::Declined
        };
        let why = reason.clone();
        let decided = self.change(|all| {
            let r = all
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or_else(|| MutualAidError::NotFound(id.to_string()))?;
            if r.status.is_decided() {
                return Err(MutualAidError::AlreadyDecided(id.to_string()));
            }
            r.status = status;
            r.reason = why;
            r.entry_at_provider = entry.clone();
            r.accepted_on = accept.then_some(on);
            r.updated_at = Utc::now();
            Ok(r.clone())
        })?;
        fed.queue(
            &decided.from,
            "booking-status",
            json!({"request": id, "status": status, "reason": reason,
                   "accepted_on": decided.accepted_on, "entry_at_provider": decided.entry_at_provider}),
        )?;
        audit_step(
            audit,
            "booking-request-decision",
            by,
            &decided,
            if accept { "accepted" } else { "declined" },
        );
        Ok(decided)
    }

    /// The provider's decision arrived at the trust: accepted, the trust
    /// records the transfer (RTT status 21) on its own pathway.
    pub async fn status_arrived(
        &self,
        audit: &AuditLog,
        intake: &dyn RecordIntake,
        e: &Envelope,
    ) -> Result<(), MutualAidError> {
        let id = e.body["request"].as_str().unwrap_or_default().to_string();
        let status: Status = serde_json::from_value(e.body["status"].clone())
            .map_err(|err| MutualAidError::Store(format!("booking-status: {err}")))?;
        let on: Option<NaiveDate> = serde_json::from_value(e.body["accepted_on"].clone()).ok();
        let held = self
            .list()?
            .into_iter()
            .find(|r| r.id == id && r.to == e.from)
            .ok_or_else(|| MutualAidError::NotFound(id.clone()))?;
        if held.status == status {
            return Ok(());
        }
        if status == Status::Accepted {
            let on = on.ok_or_else(|| {
                MutualAidError::Store("booking-status: an acceptance names its day".into())
            })?;
            let accepted = pathway_transfer::accepted(&held.transfer, on, None);
            intake
                .take(SOURCE, vec![(accepted, id.clone())])
                .await
                .map_err(MutualAidError::Record)?;
        }
        let changed = self.change(|all| {
            let r = all
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or_else(|| MutualAidError::NotFound(id.clone()))?;
            r.status = status;
            r.reason = e.body["reason"].as_str().map(str::to_string);
            r.accepted_on = on;
            r.entry_at_provider = e.body["entry_at_provider"].as_str().map(str::to_string);
            r.updated_at = Utc::now();
            Ok(r.clone())
        })?;
        audit_step(
            audit,
            "booking-request-status",
            &format!("peer:{}", e.from),
            &changed,
            status.as_str(),
        );
        Ok(())
    }

    /// At the provider: the minutes of requests accepted onto each session
    /// (by session id), with the pathways, for the free time offered.
    pub fn accepted_onto_sessions(
        &self,
        own: &str,
    ) -> Result<BTreeMap<String, Vec<(String, i64)>>, MutualAidError> {
        let mut out: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for r in self.list()? {
            if r.to == own && r.status == Status::Accepted {
                out.entry(r.slot.session_id.clone()).or_default().push((
                    r.pathway_id.clone(),
                    r.expected_theatre_minutes.unwrap_or(0),
                ));
            }
        }
        Ok(out)
    }
}

fn audit_step(audit: &AuditLog, kind: &str, principal: &str, r: &BookingRequest, outcome: &str) {
    let entry = AuditEntry {
        kind: kind.into(),
        principal: principal.to_string(),
        purpose: Some("direct-care".into()),
        justification: Some(r.lawful_basis.clone()),
        channel: "federation".into(),
        what: format!(
            "mutual-aid booking request {} from {} to {}: pathway {} onto session {} on {}",
            r.id, r.from, r.to, r.pathway_id, r.slot.session_id, r.slot.date
        ),
        patients: vec![r.patient.clone()],
        outcome: outcome.to_string(),
        ..AuditEntry::default()
    };
    if let Err(e) = audit.append(entry) {
        tracing::error!(error = %e, "the booking request could not be audited");
    }
}

/// Booking requests received, and the answers to those sent.
pub struct MutualAidMessages {
    pub requests: Arc<BookingRequests>,
    pub audit: Arc<AuditLog>,
    /// Where the record a request carries is stored.
    pub intake: Arc<dyn RecordIntake>,
}

#[async_trait::async_trait]
impl MessageKind for MutualAidMessages {
    fn kinds(&self) -> &'static [&'static str] {
        &["booking-request", "booking-status"]
    }

    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String> {
        if from.role != crate::identity::OrgRole::Trust {
            return Err(format!(
                "{} is not a trust: mutual aid is between trusts",
                from.ods
            ));
        }
        let recorded = if message.kind == "booking-request" {
            self.requests
                .received(&self.audit, self.intake.as_ref(), message)
                .await
        } else {
            self.requests
                .status_arrived(&self.audit, self.intake.as_ref(), message)
                .await
        };
        recorded.map_err(|e| e.to_string())?;
        Ok(json!({"received": true}))
    }
}

#[cfg(test)]
mod tests {
    use fdp_fhir::referral::ReferredPatient;
    use fdp_govern::keystore::Keystore;

    use super::*;
    use crate::identity::OrgRole;

    /// An intake that keeps the ids it takes, or refuses everything.
    #[derive(Default)]
    struct Intake {
        refuse: bool,
        taken: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl RecordIntake for Intake {
        async fn take(
            &self,
            _: &str,
            resources: Vec<(Value, String)>,
        ) -> Result<Vec<String>, String> {
            if self.refuse {
                return Err("Patient.birthDate: not a date".into());
            }
            let ids: Vec<String> = resources
                .iter()
                .map(|(r, id)| format!("{}/{id}", r["resourceType"].as_str().unwrap_or_default()))
                .collect();
            self.taken.lock().unwrap().extend(ids.clone());
            Ok(ids)
        }

        fn current(&self, _: &[String]) -> Vec<Value> {
            Vec::new()
        }
    }

    fn request() -> Envelope {
        let pathway = TransferredPathway {
            patient: ReferredPatient {
                id: "9434765919".into(),
                ..Default::default()
            },
            pathway_id: "PW1".into(),
            clock_start: NaiveDate::from_ymd_opt(2025, 6, 2).unwrap(),
            clock_start_code: "10".into(),
            from: "RXX".into(),
            to: "RYY".into(),
            session_id: "S1".into(),
            ..Default::default()
        };
        Envelope::new(
            "RXX",
            "RYY",
            "booking-request",
            json!({"slot": {"session_id": "S1", "date": "2026-12-10", "usable_minutes": 105},
                   "eal_id": "E1", "pathway_id": "PW1", "patient": "9434765919",
                   "patient_choice": "agreed", "lawful_basis": "direct care",
                   "bundle": pathway.bundle(Utc::now())}),
        )
    }

    fn messages(dir: &Path, refuse: bool) -> (MutualAidMessages, Arc<Intake>) {
        let intake = Arc::new(Intake {
            refuse,
            ..Default::default()
        });
        let audit = AuditLog::open(dir, &Keystore::open(dir)).unwrap();
        let part = MutualAidMessages {
            requests: Arc::new(BookingRequests::open(dir)),
            audit: Arc::new(audit),
            intake: intake.clone(),
        };
        (part, intake)
    }

    fn peer(role: OrgRole) -> Peer {
        Peer {
            ods: "RXX".into(),
            role,
            address: None,
            cert: rustls::pki_types::CertificateDer::from(Vec::new()),
        }
    }

    #[tokio::test]
    async fn only_a_trust_may_send_a_booking_request_or_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (part, intake) = messages(dir.path(), false);
        for role in [OrgRole::Icb, OrgRole::CareProvider] {
            let e = part.handle(&peer(role), &request()).await.unwrap_err();
            assert!(e.contains("not a trust"), "{e}");
            let mut status = request();
            status.kind = "booking-status".into();
            assert!(part.handle(&peer(role), &status).await.is_err());
        }
        assert!(intake.taken.lock().unwrap().is_empty());
        assert!(part.requests.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_request_is_kept_once_and_not_at_all_if_its_record_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (part, intake) = messages(dir.path(), false);
        let m = request();
        part.handle(&peer(OrgRole::Trust), &m).await.unwrap();
        part.handle(&peer(OrgRole::Trust), &m).await.unwrap();
        let kept = part.requests.list().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].status, Status::Delivered);
        assert_eq!(kept[0].slot.usable_minutes, 105);
        assert_eq!(
            intake.taken.lock().unwrap().clone(),
            [
                "Patient/RXX.9434765919".to_string(),
                "EpisodeOfCare/RXX.PW1".into(),
                format!("ServiceRequest/{}.start", m.id),
                format!("ServiceRequest/{}", m.id),
            ]
        );
        let refused_dir = tempfile::tempdir().unwrap();
        let (refusing, _) = messages(refused_dir.path(), true);
        let e = refusing
            .handle(&peer(OrgRole::Trust), &request())
            .await
            .unwrap_err();
        assert!(e.contains("Patient.birthDate"), "{e}");
        assert!(refusing.requests.list().unwrap().is_empty());
    }
}
