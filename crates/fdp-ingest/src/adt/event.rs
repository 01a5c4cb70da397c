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
    /// A valid NHS number only: a number that fails its checks is never
    /// kept here (see `nhs_number_status`), so it can never become a key.
    pub nhs_number: Option<String>,
    /// How far the NHS number can be trusted. `None` on records written
    /// before the status was read (they only ever held valid numbers).
    #[serde(default)]
    pub nhs_number_status: Option<NhsNumberStatus>,
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

/// Whether a patient's NHS number can be relied on, after the Data
/// Dictionary's NHS NUMBER STATUS INDICATOR CODE (PID-32 in UK feeds).
///
/// Real feeds carry patients without a usable number (an unconscious
/// patient in ED, an overseas visitor, a newborn not yet registered): they
/// are admitted under their hospital number and flagged, never refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NhsNumberStatus {
    /// A valid number the PAS reports traced (`01`), or reports nothing
    /// about: a PAS's own NHS number is the one it traced on the Spine.
    Verified,
    /// A valid number the PAS says is not (yet) traced: `code` is the
    /// indicator it sent (`02`–`08`).
    Unverified { code: String },
    /// No NHS number in the message; `code` is PID-32 if it said why
    /// (`03` trace required, `07` not required, `08` baby under six weeks…).
    Missing { code: Option<String> },
    /// A number that fails its checks (a placeholder such as `9999999999`,
    /// a mistyped check digit): the value as received and why it fails, in
    /// words that quote no digit of it (the status is operational data,
    /// shown where numbers are not).
    Invalid { value: String, why: String },
}

impl NhsNumberStatus {
    /// The short word the model's local code column and the bed board use.
    pub fn local_code(&self) -> &'static str {
        match self {
            NhsNumberStatus::Verified => "verified",
            NhsNumberStatus::Unverified { .. } => "unverified",
            NhsNumberStatus::Missing { .. } => "missing",
            NhsNumberStatus::Invalid { .. } => "invalid",
        }
    }

    /// The Data Dictionary's code, where one applies. An invalid number has
    /// none: whatever the PAS claimed about it, it is not a traced number.
    pub fn data_dictionary_code(&self) -> Option<&str> {
        match self {
            NhsNumberStatus::Verified => Some("01"),
            NhsNumberStatus::Unverified { code } => Some(code),
            NhsNumberStatus::Missing { code } => code.as_deref(),
            NhsNumberStatus::Invalid { .. } => None,
        }
    }

    /// A sentence for staff, without the number itself (the status is
    /// operational data; the number is identifying).
    pub fn describe(&self) -> String {
        match self {
            NhsNumberStatus::Verified => "present and verified".into(),
            NhsNumberStatus::Unverified { code } => {
                format!("present, not verified ({})", indicator_meaning(code))
            }
            NhsNumberStatus::Missing { code: Some(code) } => {
                format!("missing ({})", indicator_meaning(code))
            }
            NhsNumberStatus::Missing { code: None } => "missing".into(),
            NhsNumberStatus::Invalid { why, .. } => format!("invalid: {why}"),
        }
    }

    /// Whether the record should be flagged for staff: anything short of
    /// a verified number.
    pub fn needs_attention(&self) -> bool {
        !matches!(self, NhsNumberStatus::Verified)
    }
}

/// The Data Dictionary's meaning of an NHS NUMBER STATUS INDICATOR CODE.
pub fn indicator_meaning(code: &str) -> &'static str {
    match code {
        "01" => "number present and verified",
        "02" => "number present but not traced",
        "03" => "trace required",
        "04" => "trace attempted, no match or multiple matches",
        "05" => "trace needs to be resolved",
        "06" => "trace in progress",
        "07" => "number not present and trace not required",
        "08" => "trace postponed (baby under six weeks old)",
        _ => "status code not in the Data Dictionary",
    }
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
    /// Fields too poor to use, left empty: the message is applied all the
    /// same and the data engineer warned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}
