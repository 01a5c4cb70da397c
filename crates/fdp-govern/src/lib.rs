//! # fdp-govern: who is asking
//!
//! Owns identity for the instance: the principals that may use it and how
//! they prove it. Today that is local API tokens, stored only as SHA-256
//! hashes in the data directory; every HTTP endpoint but the health check
//! and the login page requires one.
//!
//! It must not read or write tables; the rest of the instance asks it who a
//! request comes from and records that principal with whatever it does.

pub mod tokens;

pub use tokens::{Principal, TokenError, TokenStore};
