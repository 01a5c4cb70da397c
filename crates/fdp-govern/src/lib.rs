//! # fdp-govern: who is asking
//!
//! Owns identity for the instance: the principals that may use it and how
//! they prove it: local API tokens for service accounts, stored only as
//! SHA-256 hashes in the data directory ([`tokens`]), and OpenID Connect
//! bearer tokens from the organisation's identity provider, signed JWTs
//! checked against its published keys ([`oidc`]). Every HTTP endpoint but
//! the health check and the login page requires one or the other.
//!
//! It must not read or write tables; the rest of the instance asks it who a
//! request comes from and records that principal with whatever it does.

pub mod grants;
pub mod oidc;
pub mod tokens;

pub use grants::{Grant, Grants};
pub use oidc::{OidcConfig, OidcError, OidcVerifier};
pub use tokens::{Principal, TokenError, TokenStore};
