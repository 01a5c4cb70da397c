//! Identity at the instance's door: an OIDC bearer token from the
//! organisation's identity provider (keys made here, published as the JWKS
//! file the configuration names) is accepted on every protected route; an
//! expired, foreign or tampered one is refused with the reason; local API
//! tokens keep working; only the health check and login page are open.

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.example.nhs.uk/realms/rxx";
const AUDIENCE: &str = "openfdp-rxx";

fn key() -> (EncodingKey, Value) {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "kid": "k1", "use": "sig", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn token(key: &EncodingKey, exp_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "555000111222",
        "preferred_username": "amelia.khan", "roles": ["bed-manager"], "org": "RXX",
        "iat": now, "exp": now + exp_in});
    encode(&header, &claims, key).unwrap()
}

#[test]
fn oidc_bearer_tokens_from_the_identity_provider_open_the_instance_and_bad_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (signing, jwk) = key();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let config = format!(
        "[oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n\
         [principal.tester]\nroles = [\"operations-analyst\"]\n\
         [principal.\"amelia.khan\"]\nroles = [\"information-governance-lead\"]\n",
        jwks.display()
    );
    let server = Server::start_configured(
        &dir.path().join("trust"),
        1.0,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &config,
    );
    let a = server.http;
    let good = token(&signing, 600);
    for path in ["/api/bed-board", "/api/runs", "/fhir/metadata"] {
        assert_eq!(
            http_request(a, "GET", path, Some(&good), None).status,
            200,
            "{path}"
        );
    }
    // Known, but the policy decides: records as received are not granted
    // to a bed manager or an IG lead.
    let refused = http_request(a, "GET", "/api/quarantine", Some(&good), None);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("raw"), "{}", refused.body);
    // Pages too, for a browser holding the token.
    assert_eq!(http_get(a, "/sources", Some(&good)).0, 200);
    // Who the instance sees: the provider's claims, plus roles granted here.
    let me: Value =
        serde_json::from_str(&http_request(a, "GET", "/api/whoami", Some(&good), None).body)
            .unwrap();
    assert_eq!(
        me,
        json!({"name": "amelia.khan", "roles": ["bed-manager", "information-governance-lead"], "organisation": "RXX"})
    );
    // A local token's roles come from the configuration alone.
    let me: Value = serde_json::from_str(
        &http_request(a, "GET", "/api/whoami", Some(&server.token), None).body,
    )
    .unwrap();
    assert_eq!(
        me,
        json!({"name": "tester", "roles": ["operations-analyst"], "organisation": "RXX"})
    );

    let expired = http_request(
        a,
        "GET",
        "/api/bed-board",
        Some(&token(&signing, -300)),
        None,
    );
    assert_eq!(expired.status, 401);
    let challenge = expired.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\"") && challenge.contains("Expired"),
        "{challenge}"
    );
    let (stranger, _) = key();
    assert_eq!(
        http_request(
            a,
            "GET",
            "/api/bed-board",
            Some(&token(&stranger, 600)),
            None
        )
        .status,
        401
    );
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "roles": ["admin"], "exp": chrono::Utc::now().timestamp() + 600}).to_string(),
    );
    assert_eq!(
        http_request(a, "GET", "/api/bed-board", Some(&parts.join(".")), None).status,
        401
    );

    // Local API tokens for service accounts still work; nothing else is open.
    assert_eq!(
        http_request(a, "GET", "/api/runs", Some(&server.token), None).status,
        200
    );
    // A role the policy does not know is granted nothing.
    let r = http_request(a, "GET", "/api/bed-board", Some(&server.token), None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("no role that is granted"), "{}", r.body);
    assert_eq!(
        http_request(a, "GET", "/api/bed-board", None, None).status,
        401
    );
    assert_eq!(http_get(a, "/healthz", None).0, 200);
    server.stop();
}

#[test]
fn an_instance_whose_identity_provider_keys_are_missing_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let config = dir.path().join("instance.toml");
    std::fs::write(
        &config,
        format!(
            "ods = \"RXX\"\n[oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n",
            dir.path().join("missing.json").display()
        ),
    )
    .unwrap();
    let err = serve_refused(&config, &data);
    assert!(
        err.contains("jwks_file") && err.contains("missing.json"),
        "{err}"
    );
}
