//! OIDC bearer tokens as an identity provider issues them: keys made here
//! (RSA 2048 and P-256), published as a JWKS document, tokens signed with
//! them and checked for signature, issuer, audience, expiry and algorithm.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fdp_govern::{OidcConfig, OidcError, OidcVerifier};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str =
    "https://login.example.nhs.uk/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare";
const AUDIENCE: &str = "openfdp-rxx";

struct Provider {
    rsa: EncodingKey,
    ec: EncodingKey,
    jwks: String,
}

fn provider() -> Provider {
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let public = rsa.public_key();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let rsa_jwk = json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero())});
    let rsa_der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
    let ec_pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref()).unwrap();
    // An uncompressed point: 0x04, then x and y.
    let point = ec.public_key().as_ref();
    let ec_jwk = json!({"kty": "EC", "kid": "ec-1", "use": "sig", "crv": "P-256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    // A key for encryption only, which must never verify a signature.
    let enc_jwk = json!({"kty": "RSA", "kid": "enc-1", "use": "enc",
        "n": rsa_jwk["n"], "e": rsa_jwk["e"]});
    Provider {
        rsa: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", rsa_der.as_ref()).as_bytes()).unwrap(),
        ec: EncodingKey::from_ec_der(ec_pkcs8.as_ref()),
        jwks: json!({"keys": [rsa_jwk, ec_jwk, enc_jwk]}).to_string(),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "555000111222", "preferred_username": "amelia.khan",
        "roles": ["bed-manager", "clinician"], "org": "RXX", "iat": now(), "exp": now() + 600})
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

#[test]
fn rs256_and_es256_tokens_from_the_provider_name_a_principal_with_roles_and_organisation() {
    let p = provider();
    let v = OidcVerifier::from_jwks(OidcConfig::new(ISSUER, AUDIENCE), &p.jwks).unwrap();
    for token in [
        sign(&p.rsa, Algorithm::RS256, "rsa-1", &claims()),
        sign(&p.ec, Algorithm::ES256, "ec-1", &claims()),
    ] {
        assert!(OidcVerifier::looks_like_jwt(&token));
        let who = v.verify(&token).unwrap();
        assert_eq!(who.name, "amelia.khan");
        assert_eq!(who.roles, ["bed-manager", "clinician"]);
        assert_eq!(who.organisation.as_deref(), Some("RXX"));
    }
    // Roles as a space-separated string, and no display name: the subject.
    let mut c = claims();
    c["roles"] = json!("operations-analyst");
    c.as_object_mut().unwrap().remove("preferred_username");
    let who = v
        .verify(&sign(&p.ec, Algorithm::ES256, "ec-1", &c))
        .unwrap();
    assert_eq!(
        (who.name.as_str(), who.roles.as_slice()),
        ("555000111222", &["operations-analyst".to_string()][..])
    );
}

#[test]
fn tokens_that_must_not_pass_are_refused_with_the_reason() {
    let p = provider();
    let v = OidcVerifier::from_jwks(OidcConfig::new(ISSUER, AUDIENCE), &p.jwks).unwrap();
    let refused = |c: &Value| {
        v.verify(&sign(&p.rsa, Algorithm::RS256, "rsa-1", c))
            .unwrap_err()
            .to_string()
    };

    let mut expired = claims();
    expired["exp"] = json!(now() - 120);
    assert!(
        refused(&expired).contains("ExpiredSignature"),
        "{}",
        refused(&expired)
    );
    // Within the allowed clock skew: accepted.
    let mut skewed = claims();
    skewed["exp"] = json!(now() - 10);
    assert!(v
        .verify(&sign(&p.rsa, Algorithm::RS256, "rsa-1", &skewed))
        .is_ok());

    let mut other_issuer = claims();
    other_issuer["iss"] = json!("https://evil.example.com");
    assert!(refused(&other_issuer).contains("InvalidIssuer"));

    let mut other_audience = claims();
    other_audience["aud"] = json!("another-app");
    assert!(refused(&other_audience).contains("InvalidAudience"));

    let mut not_yet = claims();
    not_yet["nbf"] = json!(now() + 3600);
    assert!(refused(&not_yet).contains("ImmatureSignature"));

    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(refused(&no_exp).contains("exp"), "{}", refused(&no_exp));

    // A token whose payload was changed after signing.
    let good = sign(&p.rsa, Algorithm::RS256, "rsa-1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["roles"] = json!(["admin"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert!(matches!(v.verify(&forged), Err(OidcError::Invalid(_))));

    // Signed by a key the provider does not publish.
    let stranger = provider();
    assert!(matches!(
        v.verify(&sign(&stranger.rsa, Algorithm::RS256, "rsa-1", &claims())),
        Err(OidcError::Invalid(_))
    ));
    assert!(matches!(
        v.verify(&sign(&p.rsa, Algorithm::RS256, "rsa-9", &claims())),
        Err(OidcError::UnknownKey(Some(k))) if k == "rsa-9"
    ));
    // The encryption key is not a signing key.
    assert!(matches!(
        v.verify(&sign(&p.rsa, Algorithm::RS256, "enc-1", &claims())),
        Err(OidcError::UnknownKey(_))
    ));
    // A shared-secret algorithm is never accepted, whatever the key.
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(p.jwks.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&hs),
        Err(OidcError::Algorithm(Algorithm::HS256))
    ));
    assert!(matches!(v.verify("fdp_0123"), Err(OidcError::Malformed(_))));
    assert!(!OidcVerifier::looks_like_jwt("fdp_0123456789abcdef"));
}

#[test]
fn keys_come_from_the_configured_jwks_file() {
    let p = provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = OidcConfig::new(ISSUER, AUDIENCE);
    assert!(matches!(
        OidcVerifier::load(config.clone()),
        Err(OidcError::NoKeys(_))
    ));
    config.jwks_file = Some(dir.path().join("jwks.json"));
    assert!(matches!(
        OidcVerifier::load(config.clone()),
        Err(OidcError::Io { .. })
    ));
    std::fs::write(dir.path().join("jwks.json"), "{\"keys\": 7}").unwrap();
    assert!(matches!(
        OidcVerifier::load(config.clone()),
        Err(OidcError::Jwks(_))
    ));
    std::fs::write(dir.path().join("jwks.json"), &p.jwks).unwrap();
    let v = OidcVerifier::load(config).unwrap();
    assert!(v
        .verify(&sign(&p.ec, Algorithm::ES256, "ec-1", &claims()))
        .is_ok());
}
