//! ADT events as the census understands them, independent of HL7 syntax.

use serde::{Deserialize, Serialize};

/// A place in the hospital as PV1-3 names it: site (facility), ward (point
/// of care), room or bay, and bed. Any part may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Location {
    pub site: String,
    pub ward: String,
    pub room: String,
    pub bed: String,
}

impl Location {
    /// The instance's id for the ward: `site:ward`.
    pub fn ward_id(&self) -> String {
        format!("{}:{}", self.site, self.ward)
    }
    /// The instance's id for the bed, or `None` when no bed is named.
    pub fn bed_id(&self) -> Option<String> {
        if self.bed.is_empty() || self.ward.is_empty() {
            return None;
        }
        Some(bed_id(&self.site, &self.ward, &self.room, &self.bed))
    }
}

/// How every part of the instance names a bed, from its location parts.
pub fn bed_id(site: &str, ward: &str, room: &str, bed: &str) -> String {
    format!("{site}:{ward}:{room}:{bed}")
}

/// Who the message is about (PID), as far as the message says.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PatientDetails {
    /// The instance's key for the patient: the local hospital number when
    /// there is one (a PAS's own key), otherwise `NHS:<nhs number>`.
    pub patient_id: String,
    pub mrn: Option<String>,
    pub nhs_number: Option<String>,
    pub title: Option<String>,
    pub first_name: Option<String>,
    pub surname: Option<String>,
    /// ISO date `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    pub sex: Option<String>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub address_city: Option<String>,
    pub postcode: Option<String>,
    pub phone_number: Option<String>,
    pub ethnic_category_code: Option<String>,
    pub registered_gp: Option<String>,
}

/// The hospital spell the message is about (PV1).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VisitDetails {
    /// PV1-19 visit number, or one derived from patient and admit time.
    pub admission_id: String,
    /// PV1-2: I inpatient, O outpatient, E emergency, P pre-admit …
    pub patient_class: String,
    pub location: Option<Location>,
    pub prior_location: Option<Location>,
    /// PV1-44, microseconds since the epoch.
    pub admit_at_us: Option<i64>,
    /// PV1-45.
    pub discharge_at_us: Option<i64>,
    /// PV1-4 admission type / method.
    pub admission_method: Option<String>,
    /// PV1-10 hospital service (treatment function).
    pub specialty: Option<String>,
    /// PV1-7 attending doctor, as `code^name`.
    pub consultant: Option<String>,
}

/// One ADT event, with what it says about the patient and the spell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdtEvent {
    /// Trigger event code, e.g. `A02`.
    pub trigger: String,
    /// When it happened (EVN-6, else EVN-2, else MSH-7), µs since the epoch.
    pub occurred_at_us: i64,
    pub patient: PatientDetails,
    pub visit: Option<VisitDetails>,
    /// MRG-1 (and MRG-2/3) identifiers of the record being merged away.
    pub merged_ids: Vec<String>,
    /// The second patient of an A17 swap.
    pub swap_with: Option<(PatientDetails, VisitDetails)>,
}
