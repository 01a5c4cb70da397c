//! Shape and check-digit validation for the identifiers that appear in NHS data.
//!
//! These checks say whether a value *could* be a real identifier. None of them asks a
//! national service whether it *is* one (that would be I/O, which this crate never does).

mod codes;
mod gtin;
mod nhs_number;
mod ods;
mod postcode;
mod snomed;

use thiserror::Error;

pub use codes::{parse_icd10, parse_opcs4, Icd10Code, Opcs4Code};
pub use gtin::{gtin_check_digit, parse_gtin, Gtin};
pub use nhs_number::{
    is_valid_nhs_number, nhs_number_check_digit, nhs_number_check_digit_of, nhs_number_from,
    parse_nhs_number, NhsNumber, NhsNumberError,
};
pub use ods::{parse_ods_code, OdsCode, OdsCodeKind};
pub use postcode::{parse_postcode, Postcode};
pub use snomed::{parse_sctid, parse_snomed_concept_id, verhoeff_check, SctId, SctPartition};

/// Why a value is not a well-formed identifier of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentifierError {
    #[error("{kind}: value is empty")]
    Empty { kind: &'static str },
    #[error("{kind}: `{value}` {reason}")]
    Shape {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("SNOMED CT: `{0}` fails its Verhoeff check digit")]
    CheckDigit(String),
    #[error("GTIN: `{value}` ends in {found}, but its check digit is {expected}")]
    GtinCheckDigit {
        value: String,
        found: u32,
        expected: u32,
    },
    #[error("SNOMED CT: `{value}` is a {partition} identifier, not a concept identifier")]
    NotAConcept {
        value: String,
        partition: SctPartition,
    },
}

fn shape(kind: &'static str, value: &str, reason: &'static str) -> IdentifierError {
    IdentifierError::Shape {
        kind,
        value: value.to_string(),
        reason,
    }
}
