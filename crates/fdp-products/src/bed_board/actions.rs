//! The changes staff make through the bed board, each checked against the
//! census as the caller's grant shows it before it is recorded.

use fdp_govern::RowFacts;
use fdp_ingest::adt::census::DischargeReadiness;
use fdp_ingest::live::StaffAction;
use serde_json::json;

use crate::platform::{Change, GovernedCensus, Params, ProductError};

/// Record an admission's discharge readiness.
pub const READINESS: &str = "discharge-readiness";
/// Close or reopen a bed.
pub const BED_STATUS: &str = "bed-status";

/// The readiness `inputs` record for `admission_id`: the admission must be
/// in the census and on a ward the grant shows; the pathway one of the
/// four.
pub fn readiness(
    census: &GovernedCensus<'_>,
    admission_id: &str,
    inputs: &Params,
    by: &str,
) -> Result<Change, ProductError> {
    let c = census.census();
    let spell = c
        .spells
        .get(admission_id)
        .ok_or_else(|| ProductError::NotFound(format!("no admission {admission_id}")))?;
    let location = spell.current_stay().map(|st| &st.location);
    let facts = RowFacts {
        site: location.map(|l| l.site.as_str()),
        ward: location.map(|l| l.ward.as_str()),
        nhs_number: c
            .patients
            .get(&spell.patient_id)
            .and_then(|p| p.nhs_number.as_deref()),
        ..RowFacts::default()
    };
    if !census.view().admits(&facts) {
        return Err(ProductError::NotAdmitted(format!(
            "admission {admission_id} is outside the sites, wards or patients the grant shows"
        )));
    }
    let pathway = match inputs.integer("discharge_pathway") {
        None => None,
        Some(p @ 0..=3) => Some(p as u8),
        Some(p) => {
            return Err(ProductError::Param {
                name: "discharge_pathway".into(),
                message: format!("must be 0, 1, 2 or 3, not {p}"),
            })
        }
    };
    let readiness = DischargeReadiness {
        admission_id: admission_id.to_string(),
        medically_optimised: inputs.boolean("medically_optimised").unwrap_or(false),
        medically_optimised_date: inputs.text("medically_optimised_date"),
        discharge_pathway: pathway,
        waiting_for: inputs.list("waiting_for"),
        expected_discharge_date: inputs.text("expected_discharge_date"),
        updated_by: by.to_string(),
        updated_at_us: census.now().timestamp_micros(),
    };
    Ok(Change {
        answer: json!(readiness),
        patients: vec![spell.patient_id.clone()],
        action: StaffAction::DischargeReadiness { readiness },
    })
}

/// Close (with the reason) or reopen `bed_id`, which must be on a ward the
/// grant shows.
pub fn bed_status(
    census: &GovernedCensus<'_>,
    bed_id: &str,
    inputs: &Params,
    by: &str,
) -> Result<Change, ProductError> {
    let bed = census
        .census()
        .beds
        .get(bed_id)
        .ok_or_else(|| ProductError::NotFound(format!("no bed {bed_id}")))?;
    let facts = RowFacts {
        site: Some(&bed.site),
        ward: Some(&bed.ward),
        ..RowFacts::default()
    };
    if !census.view().admits(&facts) {
        return Err(ProductError::NotAdmitted(format!(
            "bed {bed_id} is on a ward the grant does not show"
        )));
    }
    let closed = inputs.boolean("closed").unwrap_or(false);
    let reason = inputs.text("reason").filter(|r| !r.trim().is_empty());
    Ok(Change {
        answer: json!({"bed_id": bed_id, "closed": closed, "reason": reason}),
        patients: Vec::new(),
        action: StaffAction::BedStatus {
            bed_id: bed_id.to_string(),
            closed,
            reason,
            by: by.to_string(),
            at_us: census.now().timestamp_micros(),
        },
    })
}
