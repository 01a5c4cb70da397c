//! One admission's record as the policy shows it: who, where they have
//! been, and discharge readiness, each value by the model column it comes
//! from; refused where the row rules do not admit the admission.

use fdp_govern::{Governance, ProductView, RowFacts, SessionRequest};
use fdp_ingest::adt::census::{DischargeReadiness, SpellStatus};
use fdp_ingest::adt::event::NhsNumberStatus;
use fdp_ingest::live::Live;

use super::board::MASKED;
use crate::platform::{GovernedCensus, ProductError};

/// What the admission's page shows. A text is empty where there is no
/// value, and `[masked]` where the policy removes it; a detail whose
/// column the policy does not show as it is is `None`.
#[derive(Debug, Clone)]
pub struct AdmissionRecord {
    pub admission_id: String,
    /// "Forename Surname".
    pub name: String,
    pub nhs_number: String,
    pub nhs_number_status: NhsNumberShown,
    pub mrn: String,
    pub date_of_birth: String,
    /// The spell's status (`admitted`, `discharged`, …) and whether the
    /// patient is on leave.
    pub status: Option<(String, bool)>,
    pub admitted_at_us: Option<Option<i64>>,
    /// Only for a discharged spell.
    pub discharged_at_us: Option<Option<i64>>,
    /// The bed held now (`none`), where beds are granted.
    pub bed: Option<String>,
    pub stays: Vec<StayShown>,
    pub readiness: Option<ReadinessShown>,
    /// Whether the grant covers referrals (the page then lists them).
    pub referrals: bool,
}

/// The NHS number's status as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NhsNumberShown {
    Masked,
    NotRecorded,
    Recorded {
        /// The model's local code: `verified`, `unverified`, `missing`,
        /// `invalid`.
        code: &'static str,
        text: String,
        /// No verified NHS number: identity to be checked before sharing.
        needs_attention: bool,
        /// The invalid value received, only where NHS numbers are shown
        /// (it is as identifying as a valid one).
        received: Option<String>,
    },
}

/// One ward stay, each part shown where its column is.
#[derive(Debug, Clone, Default)]
pub struct StayShown {
    pub ward: Option<String>,
    pub bay: Option<String>,
    pub bed: Option<String>,
    pub from_us: Option<i64>,
    pub to_us: Option<Option<i64>>,
}

/// Discharge readiness now and as recorded over time (newest last), with
/// who recorded each as the policy shows them.
#[derive(Debug, Clone)]
pub struct ReadinessShown {
    pub current: DischargeReadiness,
    pub history: Vec<DischargeReadiness>,
}

/// The record of `admission_id` as `req` may see it, audited as served
/// with its patient, and the view (its purpose, what it reads); or the
/// refusal, audited. Not found is [`ProductError::NotFound`].
pub async fn admission_for(
    governance: &Governance,
    req: &SessionRequest,
    live: &Live,
    admission_id: &str,
    what: &str,
) -> Result<(AdmissionRecord, ProductView), ProductError> {
    let view = governance.product_view(req, &["admission", "ward_stay"], what)?;
    let shown = {
        let census = live.read().await;
        record(
            &GovernedCensus::new(&census, &view, chrono::Utc::now()),
            admission_id,
        )
    };
    match shown {
        Ok((record, patient)) => {
            view.served(1, vec![patient])?;
            Ok((record, view))
        }
        // The refusal, audited (or why it could not be).
        Err(ProductError::NotAdmitted(why)) => Err(view.refuse(&why).into()),
        Err(e) => Err(e),
    }
}

/// The record, and its patient's id (for the audit).
pub fn record(
    census: &GovernedCensus<'_>,
    admission_id: &str,
) -> Result<(AdmissionRecord, String), ProductError> {
    let (c, view) = (census.census(), census.view());
    let spell = c
        .spells
        .get(admission_id)
        .ok_or_else(|| ProductError::NotFound(format!("no admission {admission_id}")))?;
    let patient = c.patients.get(&spell.patient_id);
    // The same row rules as the tables': the sites and wards granted, and
    // the national data opt-out for a secondary purpose.
    let location = spell.current_stay().map(|st| &st.location);
    let facts = RowFacts {
        site: location.map(|l| l.site.as_str()),
        ward: location.map(|l| l.ward.as_str()),
        nhs_number: patient.and_then(|p| p.nhs_number.as_deref()),
        ..Default::default()
    };
    if !view.admits(&facts) {
        return Err(ProductError::NotAdmitted(
            "this admission is outside the sites, wards or patients the grant shows under this purpose".into(),
        ));
    }
    let shown = |table: &str, column: &str, value: Option<String>| match value {
        None => String::new(),
        Some(v) => view
            .field(table, column, Some(&v))
            .unwrap_or_else(|| MASKED.to_string()),
    };
    let nhs_number_status = if !view.shows("patient", "nhs_number_status_indicator") {
        NhsNumberShown::Masked
    } else {
        match patient.and_then(|p| p.nhs_number_status.as_ref()) {
            None => NhsNumberShown::NotRecorded,
            Some(st) => NhsNumberShown::Recorded {
                code: st.local_code(),
                text: st.describe(),
                needs_attention: st.needs_attention(),
                received: match st {
                    NhsNumberStatus::Invalid { value, .. } if view.shows("patient", "nhs_number") => {
                        Some(value.clone())
                    }
                    _ => None,
                },
            },
        }
    };
    let (wards, beds, times) = (
        view.shows("ward_stay", "ward_id"),
        view.reads("bed"),
        view.shows("ward_stay", "start_timestamp"),
    );
    let stays = spell
        .stays
        .iter()
        .map(|s| StayShown {
            ward: wards.then(|| s.location.ward.clone()),
            bay: beds.then(|| s.location.room.clone()),
            bed: beds.then(|| s.location.bed.clone()),
            from_us: times.then_some(s.start_us),
            to_us: times.then_some(s.end_us),
        })
        .collect();
    let readiness = view.reads("discharge_readiness").then(|| {
        let by = |mut r: DischargeReadiness| {
            r.updated_by = view
                .field("discharge_readiness", "updated_by", Some(&r.updated_by))
                .unwrap_or_default();
            r
        };
        ReadinessShown {
            current: by(c.readiness.get(admission_id).cloned().unwrap_or_default()),
            history: c
                .readiness_history
                .get(admission_id)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(by)
                .collect(),
        }
    });
    let record = AdmissionRecord {
        admission_id: admission_id.to_string(),
        name: shown(
            "admission",
            "patient_name",
            patient.map(|p| {
                format!(
                    "{} {}",
                    p.first_name.clone().unwrap_or_default(),
                    p.surname.clone().unwrap_or_default()
                )
            }),
        )
        .trim()
        .to_string(),
        nhs_number: shown("patient", "nhs_number", patient.and_then(|p| p.nhs_number.clone())),
        nhs_number_status,
        mrn: shown("patient", "mrn", patient.and_then(|p| p.mrn.clone())),
        date_of_birth: shown(
            "patient",
            "date_of_birth",
            patient.and_then(|p| p.date_of_birth.clone()),
        ),
        status: view
            .shows("admission", "admission_status")
            .then(|| (spell.status.as_str().to_string(), spell.on_leave)),
        admitted_at_us: view
            .shows("admission", "admission_timestamp")
            .then_some(spell.admitted_at_us),
        discharged_at_us: (spell.status == SpellStatus::Discharged
            && view.shows("admission", "discharge_timestamp"))
        .then_some(spell.discharged_at_us),
        bed: view
            .reads("bed")
            .then(|| spell.bed_id.clone().unwrap_or_else(|| "none".into())),
        stays,
        readiness,
        referrals: view.reads("referral"),
    };
    Ok((record, spell.patient_id.clone()))
}
