//! # fdp-govern: who is asking, why, and what they may see
//!
//! Every read of the instance's tables goes through here. It owns:
//!
//! - **identity**: local API tokens for service accounts, stored only as
//!   SHA-256 hashes ([`tokens`]); OpenID Connect bearer tokens from the
//!   organisation's identity provider ([`oidc`]); roles and organisation for
//!   each principal ([`grants`]);
//! - **purpose and policy**: the four purposes ([`purpose`]) and the
//!   instance's policy file, validated at start-up ([`policy`]);
//! - **governed sessions** ([`session`]): the policy compiled into the
//!   DataFusion plan as row filters and column rewrites, with keyed
//!   pseudonyms ([`keystore`]), the national data opt-out ([`optout`]) and
//!   disclosure control on secondary uses ([`disclosure`]);
//! - **the audit** ([`audit`]): every access, hash-chained and signed.
//! - **the PostgreSQL wire protocol** ([`wire`]): governed sessions answering
//!   psql, psycopg and BI tools.
//!
//! The store gives out readable tables only against a [`access::TableAccess`],
//! which only this crate can make, so no other crate can read a row around
//! the policy.

pub mod access;
pub mod audit;
mod behind;
mod day_arithmetic;
pub mod disclosure;
pub mod execution;
pub mod files;
pub mod grants;
pub mod keystore;
mod late_pseudonyms;
mod masks;
pub mod memory;
pub mod oidc;
pub mod optout;
pub mod plan_codec;
pub mod policy;
pub mod projects;
pub mod purpose;
mod running_window;
pub mod session;
pub mod spark_views;
pub mod statement;
pub mod tokens;
mod udf;
pub mod wire;

pub use access::{AsOf, RowMasking, SourceTable, StoredFile, TableAccess, TableSource};
pub use audit::{AuditEntry, AuditFilter, AuditLog};
pub use execution::{InProcess, PlanExecutor};
pub use grants::{Grant, Grants};
pub use oidc::{OidcConfig, OidcError, OidcVerifier};
pub use policy::{Policy, PolicyError, Refusal};
pub use purpose::Purpose;
pub use session::{
    Declared, GovernError, Governance, GovernedSession, Held, OptOutExclusion, ProductView,
    QueryResult, RecordChange, RecordRead, Reidentified, RowFacts, SessionRequest,
};
pub use tokens::{Principal, TokenError, TokenStore};

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    push_hex(bytes, &mut out);
    out
}

/// Lower-case hex of `bytes`, appended to `out`.
pub(crate) fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    unhex(s)?.try_into().ok()
}
