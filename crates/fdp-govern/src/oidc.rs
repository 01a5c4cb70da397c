//! OpenID Connect bearer tokens: JWTs an identity provider (NHS CIS2, an
//! organisation's Entra ID or Keycloak) signs with RS256 or ES256, checked
//! against its published keys (a JWKS document), its issuer, the audience
//! this instance is registered as, and the token's expiry.
//!
//! The keys are read from a JWKS file the operator keeps current (for
//! example from the provider's `jwks_uri` by the organisation's usual
//! configuration management), so the instance makes no outbound calls and
//! a key rotation is a file change and a restart.
//!
//! ```
//! use fdp_govern::{OidcConfig, OidcVerifier};
//! let config = OidcConfig::new("https://login.example.nhs.uk", "openfdp-rxx");
//! let jwks = r#"{"keys": []}"#;
//! let verifier = OidcVerifier::from_jwks(config, jwks).unwrap();
//! assert!(verifier.verify("not.a.token").is_err());
//! ```

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::Principal;

/// How the instance trusts its identity provider (`[oidc]` in the
/// instance configuration).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must include: this instance's client id.
    pub audience: String,
    /// The provider's keys, as a JWKS document.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The claim holding the person's roles (a list or a space-separated string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The claim holding the ODS code of the organisation they act for.
    #[serde(default = "default_organisation_claim")]
    pub organisation_claim: String,
    /// The claim naming the person (falls back to `sub`).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Clock skew allowed on expiry and not-before, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_roles_claim() -> String {
    "roles".into()
}
fn default_organisation_claim() -> String {
    "org".into()
}
fn default_name_claim() -> String {
    "preferred_username".into()
}
fn default_leeway() -> u64 {
    30
}

impl OidcConfig {
    pub fn new(issuer: &str, audience: &str) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_file: None,
            roles_claim: default_roles_claim(),
            organisation_claim: default_organisation_claim(),
            name_claim: default_name_claim(),
            leeway_secs: default_leeway(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JWKS document is not valid: {0}")]
    Jwks(String),
    #[error("no jwks_file is configured for the identity provider {0}")]
    NoKeys(String),
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("tokens signed with {0:?} are not accepted: use RS256 or ES256")]
    Algorithm(Algorithm),
    #[error("no key {0:?} among the identity provider's keys (has it rotated its keys? refresh the JWKS file)")]
    UnknownKey(Option<String>),
    #[error("the token was refused: {0}")]
    Invalid(String),
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Checks bearer tokens from one identity provider.
pub struct OidcVerifier {
    config: OidcConfig,
    keys: Vec<Key>,
}

impl OidcVerifier {
    /// Read the keys from the configured JWKS file.
    pub fn load(config: OidcConfig) -> Result<OidcVerifier, OidcError> {
        let path = config
            .jwks_file
            .clone()
            .ok_or_else(|| OidcError::NoKeys(config.issuer.clone()))?;
        let text = read(&path)?;
        OidcVerifier::from_jwks(config, &text)
    }

    /// Keys from a JWKS document. RSA keys verify RS256, P-256 keys ES256;
    /// keys for other algorithms or uses are left out.
    pub fn from_jwks(config: OidcConfig, jwks: &str) -> Result<OidcVerifier, OidcError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(|e| OidcError::Jwks(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec)
                    if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Jwks(e.to_string()))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        Ok(OidcVerifier { config, keys })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Whether `token` is shaped like a JWT (three base64url parts), as
    /// opposed to a local API token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && !token.starts_with("fdp_")
    }

    /// The principal a token names, if its signature, issuer, audience and
    /// lifetime all check out.
    pub fn verify(&self, token: &str) -> Result<Principal, OidcError> {
        let header = decode_header(token).map_err(|e| OidcError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(OidcError::Algorithm(header.alg));
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.algorithm == header.alg && (header.kid.is_none() || k.kid == header.kid))
            .ok_or_else(|| OidcError::UnknownKey(header.kid.clone()))?;
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        let claims = decode::<Value>(token, &key.key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let roles = match claims.get(&self.config.roles_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        Ok(Principal {
            name: text(&self.config.name_claim)
                .or_else(|| text("sub"))
                .unwrap_or_default(),
            roles,
            organisation: text(&self.config.organisation_claim),
        })
    }
}

fn read(path: &Path) -> Result<String, OidcError> {
    std::fs::read_to_string(path).map_err(|source| OidcError::Io {
        path: path.to_path_buf(),
        source,
    })
}
