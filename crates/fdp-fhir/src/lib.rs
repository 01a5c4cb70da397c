//! FHIR R4 as an OpenFDP instance receives it.
//!
//! This crate knows the format and nothing about storage: it checks a
//! resource the way a FHIR server must before accepting it ([`validate`]),
//! answers problems as an `OperationOutcome` ([`outcome`]), unpacks batch and
//! transaction Bundles and resolves their `urn:uuid` references ([`bundle`]),
//! maps each resource to rows of the canonical model ([`map`]), and
//! says which resources a search matches ([`search`]). What it
//! cannot map is reported as such, so the caller keeps it in raw rather than
//! dropping it.
//!
//! UK Core conventions are understood: NHS numbers under
//! `https://fhir.nhs.uk/Id/nhs-number` (checked by modulus 11), ODS codes under
//! `https://fhir.nhs.uk/Id/ods-organization-code` and `ods-site-code`, and the
//! ethnic-category extension.

pub mod booking_request;
pub mod bundle;
pub mod change_request;
pub mod map;
pub mod outcome;
pub mod pathway_transfer;
pub mod primitives;
pub mod referral;
pub mod search;
pub mod validate;

pub use map::{map_resource, Mapped, MAPPED_TYPES};
pub use outcome::{Issue, IssueCode, OperationOutcome, Severity};

/// Code systems and identifier systems by their canonical URLs.
pub mod systems {
    pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
    pub const ODS_ORGANISATION: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
    pub const ODS_SITE: &str = "https://fhir.nhs.uk/Id/ods-site-code";
    pub const UBRN: &str = "https://fhir.nhs.uk/Id/UBRN";
    pub const GMC: &str = "https://fhir.hl7.org.uk/Id/gmc-number";
    pub const NMC: &str = "https://fhir.hl7.org.uk/Id/nmc-number";
    pub const ETHNIC_CATEGORY_EXT: &str =
        "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory";
    pub const SNOMED_CT: &str = "http://snomed.info/sct";
    pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
    pub const ICD10_UK: &str = "https://fhir.hl7.org.uk/Id/icd-10-uk";
    pub const OPCS4: &str = "https://fhir.hl7.org.uk/Id/opcs-4";
    pub const LOINC: &str = "http://loinc.org";
    pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
    pub const DMD: &str = "https://dmd.nhs.uk";
    /// NHS Supply Chain's product codes (NPC).
    pub const NHS_SUPPLY_CHAIN_NPC: &str = "https://www.supplychain.nhs.uk/npc";
    /// A ward or store as the supplies tables name it (`site:ward`).
    pub const SUPPLY_LOCATION: &str = "https://openfdp.nhs.uk/Id/supply-location";
    /// A transfer or order the supply-chain product suggested.
    pub const SUPPLY_SUGGESTION: &str = "https://openfdp.nhs.uk/Id/supply-suggestion";
}
