//! Discharge referrals (care coordination): a trust refers a patient
//! leaving hospital to the care provider that may take them, with their
//! record; the provider accepts or declines.
//!
//! This is what a referral is and what a policy lets be seen of one. The
//! record travels as a FHIR document (`fdp_fhir::referral`); carrying it
//! between instances, and keeping where each referral has got to, is
//! `fdp-federation`'s. The record a provider receives is stored through
//! ingest like every record, so it is in raw with its lineage, versioned in
//! the canonical tables and read under the same policy as any other.

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use fdp_fhir::referral::{DischargeReferral, ReferralRecord, ReferredPatient};
use fdp_govern::{Governance, ProductView, Purpose, RowFacts, SessionRequest};
use fdp_ingest::live::Live;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::ProductError;

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

    /// Whether the provider has answered it.
    pub fn is_decided(self) -> bool {
        matches!(self, Status::Accepted | Status::Declined)
    }
}

/// One referral, as either side keeps it: where it has got to, and (on the
/// provider's side) where its record is stored. The record itself is
/// never kept here.
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
    /// The resources the record was stored as (`Patient/RXX.M1`), on the
    /// provider's side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record: Vec<String>,
    /// The record as a FHIR Bundle, where it is served: reassembled from
    /// what is stored, and only to a grant that shows it whole.
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
    /// A FHIR R4 Bundle of type `collection` (`fdp_fhir::referral`).
    pub bundle: Value,
}

/// What staff ask for when they refer a patient.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The admission (spell) the patient is being discharged from.
    pub admission_id: String,
    /// The care provider's ODS code.
    pub to: String,
    /// Why the record may be shared, e.g. "UK GDPR 6(1)(e) and 9(2)(h):
    /// direct care".
    pub lawful_basis: String,
    pub care_needs: Vec<String>,
    /// The discharge summary.
    pub summary: String,
}

const PRODUCT: &str = "discharge referrals";

/// The referral `asked` makes, from trust `from`, for `req`: its record
/// taken from the live census. Sending a whole record needs a direct-care
/// grant that shows patients and admissions whole, and the read is audited
/// with the patient, under the lawful basis given, before it is answered.
pub async fn discharge_referral(
    live: &Live,
    governance: &Governance,
    mut req: SessionRequest,
    from: &str,
    asked: Asked,
) -> Result<NewReferral, ProductError> {
    if asked.lawful_basis.trim().is_empty() {
        return Err(ProductError::Param {
            name: "lawful_basis".into(),
            message: "a referral records its lawful basis".into(),
        });
    }
    if req.purpose != Purpose::DirectCare {
        return Err(ProductError::Purpose {
            product: PRODUCT.into(),
            allowed: Purpose::DirectCare.to_string(),
            asked: req.purpose,
        });
    }
    req.justification = Some(asked.lawful_basis.clone());
    let census = live.read().await;
    let spell = census
        .spells
        .get(&asked.admission_id)
        .ok_or_else(|| ProductError::NotFound(format!("no admission {}", asked.admission_id)))?;
    let read = governance.whole_records(
        &req,
        &["Patient", "Admission"],
        &format!(
            "discharge referral of admission {} to {}",
            asked.admission_id, asked.to
        ),
    )?;
    let details = census.patients.get(&spell.patient_id);
    let patient = ReferredPatient {
        id: spell.patient_id.clone(),
        nhs_number: details.and_then(|p| p.nhs_number.clone()),
        mrn: details.and_then(|p| p.mrn.clone()),
        family: details.and_then(|p| p.surname.clone()),
        given: details.and_then(|p| p.first_name.clone()),
        birth_date: details.and_then(|p| p.date_of_birth.clone()),
    };
    let document = DischargeReferral {
        patient,
        admission_id: asked.admission_id.clone(),
        admitted_at: spell
            .admitted_at_us
            .and_then(DateTime::from_timestamp_micros),
        from: from.to_string(),
        to: asked.to.clone(),
        summary: asked.summary,
        care_needs: asked.care_needs.clone(),
        authored_at: Utc::now(),
    };
    let patient_id = spell.patient_id.clone();
    drop(census);
    read.served(1, vec![patient_id.clone()])?;
    Ok(NewReferral {
        to: asked.to,
        patient: patient_id,
        admission: Some(asked.admission_id),
        lawful_basis: asked.lawful_basis,
        care_needs: asked.care_needs,
        bundle: document.bundle(),
    })
}

/// The NHS number the live census holds for each patient of `referrals`
/// whose record this instance does not keep with the referral (those it
/// sent), by patient id.
pub async fn nhs_numbers(live: &Live, referrals: &[Referral]) -> HashMap<String, String> {
    let census = live.read().await;
    referrals
        .iter()
        .filter(|r| r.bundle.is_null())
        .filter_map(|r| {
            let nhs = census.patients.get(&r.patient)?.nhs_number.clone()?;
            Some((r.patient.clone(), nhs))
        })
        .collect()
}

/// Referrals as `view` lets them be seen.
///
/// - A referral of a patient the row rules do not admit (the national data
///   opt-out, for a secondary purpose) is left out.
/// - The patient's id and the admission are shaped by their model columns,
///   and the care needs as the referral's notes (`referral.referral_notes`).
/// - The record itself (`bundle`, with where it is stored) is kept only
///   where the grant shows every column of the patient and the admission,
///   since a whole record cannot be shown with a field masked.
///
/// `nhs_numbers` gives the number of each patient whose record is not in
/// the referral (see [`nhs_numbers`]).
pub fn governed(
    all: Vec<Referral>,
    view: &ProductView,
    nhs_numbers: &HashMap<String, String>,
) -> Vec<Referral> {
    let whole = view.shows_whole("patient") && view.shows_whole("admission");
    all.into_iter()
        .filter(|r| {
            let nhs = ReferralRecord::read(&r.bundle)
                .nhs_number
                .or_else(|| nhs_numbers.get(&r.patient).cloned());
            view.admits(&RowFacts {
                nhs_number: nhs.as_deref(),
                ..Default::default()
            })
        })
        .map(|mut r| {
            r.patient = view
                .field("patient", "person_id", Some(&r.patient))
                .unwrap_or_else(|| crate::bed_board::board::MASKED.into());
            r.admission = view.field("admission", "admission_id", r.admission.as_deref());
            r.care_needs = std::mem::take(&mut r.care_needs)
                .into_iter()
                .filter_map(|n| view.field("referral", "referral_notes", Some(&n)))
                .collect();
            if !whole {
                r.bundle = Value::Null;
                r.record.clear();
            }
            r
        })
        .collect()
}
