//! Cohorts as data: who has diabetes, who is eligible for flu vaccination,
//! which children had MMR by their second birthday.
//!
//! A cohort definition is a TOML file a clinician or analyst can review
//! ([`Cohort`]): value sets of codes with the published list each was taken
//! from, inclusion and exclusion rules with time windows ("the latest
//! diabetes code with no later resolved code", "a foot examination in the
//! last 12 months"), age on a reference date, and registration. It
//! compiles to one SQL query ([`compile()`]) over people and their coded
//! records, which the caller supplies as SQL over the tables its governed
//! session has; this crate does no I/O and knows nothing of governance.
//! Definitions written in OHDSI ATLAS can be brought in where they use
//! only what maps onto these rules ([`atlas`]); the rest is refused by
//! name. [`uptake`] measures an outcome across groups of a cohort with
//! confidence intervals and flags the groups falling behind.
//!
//! ```
//! let cohort = fdp_cohort::Cohort::from_toml(r#"
//!     name = "diabetes-register"
//!     title = "Diabetes register"
//!     reference_date = "2027-03-31"
//!     [value_sets.DM_COD]
//!     title = "Diabetes mellitus"
//!     codes = ["44054006"]
//!     [value_sets.DMRES_COD]
//!     title = "Diabetes resolved"
//!     codes = ["315051004"]
//!     [[include]]
//!     latest = "DM_COD"
//!     not_followed_by = "DMRES_COD"
//!     [[include]]
//!     age = { at_least = "17 years" }
//! "#)?;
//! let inputs = fdp_cohort::Inputs {
//!     people: "SELECT patient_id, date_of_birth, sex, registered_gp, date_of_death FROM person".into(),
//!     events: "SELECT patient_id, code, event_date FROM coded_record".into(),
//! };
//! let compiled = fdp_cohort::compile(&cohort, None, &inputs)?;
//! assert!(compiled.sql.contains("DATE '2010-03-31'"));
//! # Ok::<(), fdp_cohort::CohortError>(())
//! ```

pub mod atlas;
pub mod compile;
pub mod definition;
pub mod uptake;

pub use compile::{compile, compile_at, Compiled, Inputs, ReferenceDate};
pub use definition::{AgeRule, Cohort, Criterion, Population, Span, ValueSet};

/// What is wrong with a definition, named so its author can fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CohortError {
    #[error("the cohort definition is not valid TOML: {0}")]
    Syntax(String),
    #[error("cohort {cohort}:\n  {}", .problems.join("\n  "))]
    Invalid {
        cohort: String,
        problems: Vec<String>,
    },
    #[error("cohort {0} fixes no reference date: give the date it is taken on")]
    NoReferenceDate(String),
    #[error("the ATLAS definition uses what this platform's cohorts cannot express:\n  {}", .0.join("\n  "))]
    AtlasUnsupported(Vec<String>),
    #[error("the ATLAS definition is not cohort JSON: {0}")]
    AtlasSyntax(String),
}
