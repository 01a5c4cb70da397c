//! Who an instance is to its peers: an ODS code, a role, and an Ed25519 key
//! pair whose certificate a federation certificate authority signed.
//!
//! The same key does both jobs: it authenticates the instance in mutual TLS
//! and signs every message it sends, so a message relayed through another
//! instance can still be checked against its sender's certificate.
//!
//! Layout of `<data-dir>/federation/`: `instance.pem` (certificate),
//! `instance.key` (PKCS #8, readable by the owner only), `ca.pem` (the
//! federation's authority, the only issuer peers are trusted from), and
//! `identity.toml` (ODS code and role).

use std::path::{Path, PathBuf};

use fdp_pki::{check_secret, new_key, read, Authority, KeyPair, Leaf, PkiError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// What kind of organisation an instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum OrgRole {
    Trust,
    CareProvider,
    Icb,
    National,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Trust => "trust",
            OrgRole::CareProvider => "care-provider",
            OrgRole::Icb => "icb",
            OrgRole::National => "national",
        }
    }
}

impl std::fmt::Display for OrgRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrgRole {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<OrgRole, IdentityError> {
        match s {
            "trust" => Ok(OrgRole::Trust),
            "care-provider" => Ok(OrgRole::CareProvider),
            "icb" => Ok(OrgRole::Icb),
            "national" => Ok(OrgRole::National),
            other => Err(IdentityError::BadRole(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
    #[error("making a certificate: {0}")]
    Certificate(#[from] fdp_pki::CertificateError),
    #[error("{0:?} is not an organisation role: use trust, care-provider, icb or national")]
    BadRole(String),
    #[error("{0:?} is not an ODS code: 3 to 8 letters and digits")]
    BadOds(String),
    #[error("{0} already holds a federation identity; remove it first to make a new one")]
    Exists(PathBuf),
}

impl From<PkiError> for IdentityError {
    fn from(e: PkiError) -> IdentityError {
        match e {
            PkiError::Io { path, source } => IdentityError::Io { path, source },
            PkiError::Exists(path) => IdentityError::Exists(path),
            PkiError::Bad { path, message } => IdentityError::Bad { path, message },
            PkiError::Certificate(e) => IdentityError::Certificate(e),
        }
    }
}

/// An ODS organisation or site code: 3 to 8 letters and digits.
pub fn check_ods(ods: &str) -> Result<(), IdentityError> {
    if (3..=8).contains(&ods.len()) && ods.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(IdentityError::BadOds(ods.to_string()))
    }
}

/// Write `contents` to `path`, readable by the owner only when `secret`.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), IdentityError> {
    Ok(fdp_pki::write_file(path, contents, secret, true)?)
}

fn authority_subject(name: &str) -> String {
    format!("{name} federation authority")
}

/// A federation certificate authority, for a demo or a test: in production
/// the federation's own authority issues instance certificates.
pub struct FederationCa {
    pub dir: PathBuf,
    authority: Authority,
}

impl FederationCa {
    /// Make a new authority in `dir` (`ca.pem`, `ca.key`, `ca.toml`).
    pub fn create(dir: &Path, name: &str) -> Result<FederationCa, IdentityError> {
        let authority = Authority::create(dir, &authority_subject(name), name)?;
        write_file(
            &dir.join("ca.toml"),
            format!("name = {}\n", toml_string(name)).as_bytes(),
            false,
        )?;
        Ok(FederationCa {
            dir: dir.to_path_buf(),
            authority,
        })
    }

    /// The authority kept in `dir`.
    pub fn open(dir: &Path) -> Result<FederationCa, IdentityError> {
        let meta = read(&dir.join("ca.toml"))?;
        let name = meta
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .and_then(|v| serde_json::from_str::<String>(v.trim()).ok())
            .ok_or_else(|| IdentityError::Bad {
                path: dir.join("ca.toml"),
                message: "no name".into(),
            })?;
        let authority = Authority::open(dir, &authority_subject(&name), &name)?;
        Ok(FederationCa {
            dir: dir.to_path_buf(),
            authority,
        })
    }

    pub fn cert_pem(&self) -> Result<String, IdentityError> {
        Ok(self.authority.cert_pem()?)
    }

    /// Issue an instance certificate for `ods` and `role` over `public`.
    fn issue(&self, ods: &str, role: OrgRole, public: &KeyPair) -> Result<String, IdentityError> {
        // The names let a peer be reached on loopback in a demo, or by its
        // ODS code where the network names instances that way.
        let names = [
            ods.to_ascii_lowercase(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        Ok(self.authority.certify(
            &Leaf {
                common_name: ods,
                unit: role.as_str(),
                names: &names,
            },
            public,
        )?)
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// This instance's federation identity.
#[derive(Clone)]
pub struct InstanceIdentity {
    pub ods: String,
    pub role: OrgRole,
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The federation authority's certificate, DER.
    pub ca: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for InstanceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InstanceIdentity({} {})", self.ods, self.role)
    }
}

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    ods: String,
    role: OrgRole,
}

/// Where an instance keeps its federation identity.
pub fn dir_in(data_dir: &Path) -> PathBuf {
    data_dir.join("federation")
}

impl InstanceIdentity {
    /// Make this instance's key pair and have `ca` certify it.
    pub fn init(
        data_dir: &Path,
        ods: &str,
        role: OrgRole,
        ca: &FederationCa,
    ) -> Result<InstanceIdentity, IdentityError> {
        check_ods(ods)?;
        let dir = dir_in(data_dir);
        if dir.join("instance.key").exists() {
            return Err(IdentityError::Exists(dir));
        }
        let key = new_key()?;
        let cert = ca.issue(ods, role, &key)?;
        write_file(
            &dir.join("instance.key"),
            key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&dir.join("instance.pem"), cert.as_bytes(), false)?;
        write_file(&dir.join("ca.pem"), ca.cert_pem()?.as_bytes(), false)?;
        let meta = IdentityFile {
            ods: ods.to_string(),
            role,
        };
        write_file(
            &dir.join("identity.json"),
            serde_json::to_string_pretty(&meta)
                .expect("identity serialises")
                .as_bytes(),
            false,
        )?;
        InstanceIdentity::open(data_dir)
    }

    /// The identity kept in the data directory.
    pub fn open(data_dir: &Path) -> Result<InstanceIdentity, IdentityError> {
        let dir = dir_in(data_dir);
        let meta_path = dir.join("identity.json");
        let meta: IdentityFile =
            serde_json::from_str(&read(&meta_path)?).map_err(|e| IdentityError::Bad {
                path: meta_path.clone(),
                message: e.to_string(),
            })?;
        let key_path = dir.join("instance.key");
        check_secret(&key_path)?;
        let key = PrivateKeyDer::from_pem_slice(read(&key_path)?.as_bytes()).map_err(|e| {
            IdentityError::Bad {
                path: key_path.clone(),
                message: format!("not a PEM private key: {e}"),
            }
        })?;
        let key_pkcs8 = key.secret_der().to_vec();
        Ok(InstanceIdentity {
            ods: meta.ods,
            role: meta.role,
            cert: cert_from_pem(&dir.join("instance.pem"))?,
            ca: cert_from_pem(&dir.join("ca.pem"))?,
            key_pkcs8,
        })
    }

    /// The private key, for TLS.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_pkcs8.clone().into())
    }

    /// Sign `message` with the instance's key.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.key_pkcs8)
            .expect("the instance key was checked when it was read");
        pair.sign(message).as_ref().to_vec()
    }

    /// The certificate as PEM, to give to peers.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }
}

/// A certificate read from a PEM file.
pub fn cert_from_pem(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    Ok(fdp_pki::cert_from_pem(path)?)
}

fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Check that `cert` was issued by `ca` for use in the federation, now.
pub fn verify_issued_by(cert: &CertificateDer<'_>, ca: &CertificateDer<'_>) -> Result<(), String> {
    let anchor =
        webpki::anchor_from_trusted_cert(ca).map_err(|e| format!("the authority: {e:?}"))?;
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("{e:?}"))?;
    let now = rustls::pki_types::UnixTime::now();
    ee.verify_for_usage(
        &[webpki::ring::ED25519],
        &[anchor],
        &[],
        now,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("not issued by the federation's authority: {e:?}"))
}

/// Check that `cert` names the instance of `ods` (the name the authority
/// certified it under).
pub fn verify_names(cert: &CertificateDer<'_>, ods: &str) -> Result<(), String> {
    let name = rustls::pki_types::ServerName::try_from(ods.to_ascii_lowercase())
        .map_err(|e| format!("{ods:?} is not an ODS code: {e}"))?;
    webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("{e:?}"))?
        .verify_is_valid_for_subject_name(&name)
        .map_err(|e| format!("it is certified for another instance ({e:?})"))
}

/// Check `signature` over `message` against `cert`'s key.
pub fn verify_signature(cert: &CertificateDer<'_>, message: &[u8], signature: &[u8]) -> bool {
    webpki::EndEntityCert::try_from(cert)
        .and_then(|ee| ee.verify_signature(webpki::ring::ED25519, message, signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_certified_by_the_authority_signs_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FederationCa::create(&dir.path().join("ca"), "Test ICS").unwrap();
        let trust =
            InstanceIdentity::init(&dir.path().join("rxx"), "RXX", OrgRole::Trust, &ca).unwrap();
        assert_eq!((trust.ods.as_str(), trust.role), ("RXX", OrgRole::Trust));
        verify_issued_by(&trust.cert, &trust.ca).unwrap();
        let sig = trust.sign(b"hello");
        assert!(verify_signature(&trust.cert, b"hello", &sig));
        assert!(!verify_signature(&trust.cert, b"hullo", &sig));
        // Reopened from disk: the same key.
        let again = InstanceIdentity::open(&dir.path().join("rxx")).unwrap();
        assert!(verify_signature(&trust.cert, b"x", &again.sign(b"x")));
        // The PEM we hand out reads back as the same certificate.
        let pem_path = dir.path().join("rxx.pem");
        std::fs::write(&pem_path, trust.cert_pem()).unwrap();
        assert_eq!(cert_from_pem(&pem_path).unwrap(), trust.cert);
        // A certificate from another authority is not trusted.
        let other = FederationCa::create(&dir.path().join("other"), "Elsewhere").unwrap();
        let stranger =
            InstanceIdentity::init(&dir.path().join("x"), "XYZ01", OrgRole::Icb, &other).unwrap();
        assert!(verify_issued_by(&stranger.cert, &trust.ca).is_err());
        // A reopened authority issues certificates that chain to it.
        let ca = FederationCa::open(&dir.path().join("ca")).unwrap();
        let icb =
            InstanceIdentity::init(&dir.path().join("icb"), "QWO", OrgRole::Icb, &ca).unwrap();
        verify_issued_by(&icb.cert, &trust.ca).unwrap();
        assert!(matches!(
            InstanceIdentity::init(&dir.path().join("icb"), "QWO", OrgRole::Icb, &ca),
            Err(IdentityError::Exists(_))
        ));
        assert!(check_ods("R-1").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = FederationCa::create(&dir.path().join("ca"), "Test").unwrap();
        InstanceIdentity::init(dir.path(), "RXX", OrgRole::Trust, &ca).unwrap();
        let key = dir_in(dir.path()).join("instance.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = InstanceIdentity::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
