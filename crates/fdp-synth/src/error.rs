//! Errors for generator inputs that cannot produce a sensible world.

/// A spec or configuration the generators cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynthError {
    /// The trust spec is unusable (e.g. no sites, malformed ODS code).
    #[error("invalid trust spec: {0}")]
    InvalidTrustSpec(String),
    /// The PAS simulator configuration is unusable (e.g. a share outside 0..=1).
    #[error("invalid PAS config: {0}")]
    InvalidPasConfig(String),
    /// The extract spec is unusable (e.g. no days to cover).
    #[error("invalid extract spec: {0}")]
    InvalidExtractSpec(String),
    /// The inputs of a population are unusable (e.g. no areas or no codes).
    #[error("invalid population inputs: {0}")]
    Input(String),
}
