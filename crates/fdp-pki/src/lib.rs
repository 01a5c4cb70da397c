//! A certificate authority kept in a directory, and the certificates it
//! issues for mutual TLS.
//!
//! OpenFDP runs two kinds of private authority: the federation's, which
//! certifies instances by ODS code and organisation role
//! (`fdp-federation`'s `identity`), and a cluster's, which certifies its
//! schedulers, executors and instances by role (`fdp-cluster`'s `trust`).
//! What each certifies, and the files each keeps beside the certificates,
//! are theirs. What they share is here, so that it is written once:
//!
//! - an authority is an Ed25519 key pair and a self-signed certificate,
//!   `ca.key` and `ca.pem` in a directory of its own, made once;
//! - a private key is written readable by its owner alone, and a key file
//!   others can read is refused with what to do about it;
//! - a certificate it issues is good for both ends of mutual TLS, under
//!   the names (host names or addresses) its holder is reached by.
//!
//! ```
//! use fdp_pki::{new_key, Authority, Leaf};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ca = Authority::create(dir.path(), "Test cluster authority", "Test").unwrap();
//! let key = new_key().unwrap();
//! let pem = ca
//!     .certify(&Leaf { common_name: "exec-1", unit: "executor", names: &["localhost".into()] }, &key)
//!     .unwrap();
//! assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, PKCS_ED25519,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

pub use rcgen::Error as CertificateError;
pub use rcgen::KeyPair;

/// What went wrong with an authority's or a holder's files or certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is made once is already there.
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    #[error("{}: {message}", .path.display())]
    Bad { path: PathBuf, message: String },
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write a key, certificate or other small file of an authority or a
/// holder, synced, making its directory if need be. A `secret` one is
/// created readable by its owner alone. With `replace` false a file already
/// there is refused ([`PkiError::Exists`]) rather than overwritten.
pub fn write_file(
    path: &Path,
    contents: &[u8],
    secret: bool,
    replace: bool,
) -> Result<(), PkiError> {
    fdp_govern::files::write_identity_file(path, contents, secret, replace).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::Exists(path.to_path_buf())
        } else {
            io(path)(e)
        }
    })
}

/// A file of an authority or a holder, as text.
pub fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Refuse a private key that anyone but its owner may read: a key others
/// could have copied no longer says who holds it.
pub fn check_secret(path: &Path) -> Result<(), PkiError> {
    match fdp_govern::files::key_readable_by_others(path).map_err(io(path))? {
        Some(message) => Err(PkiError::Bad {
            path: path.to_path_buf(),
            message,
        }),
        None => Ok(()),
    }
}

/// A certificate read from a PEM file.
pub fn cert_from_pem(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(read(path)?.as_bytes()).map_err(|e| PkiError::Bad {
        path: path.to_path_buf(),
        message: format!("not a PEM certificate: {e}"),
    })
}

/// A new Ed25519 key pair, the only kind these authorities sign or issue
/// for.
pub fn new_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&PKCS_ED25519)?)
}

/// Who a certificate is issued to.
#[derive(Debug, Clone, Copy)]
pub struct Leaf<'a> {
    /// The holder's name (an ODS code, a cluster member's name).
    pub common_name: &'a str,
    /// What the holder is (an organisation role, a cluster role).
    pub unit: &'a str,
    /// The names it is certified under: host names, addresses, and any
    /// name an authority uses to certify a role. An address is certified as
    /// an address.
    pub names: &'a [String],
}

/// A certificate authority kept in a directory (`ca.key`, `ca.pem`).
pub struct Authority {
    dir: PathBuf,
    common_name: String,
    organisation: String,
    key: KeyPair,
}

impl Authority {
    /// Make a new authority in `dir`. An authority is made once: a
    /// directory that already holds one is refused, so that no certificate
    /// it issued is orphaned.
    pub fn create(
        dir: &Path,
        common_name: &str,
        organisation: &str,
    ) -> Result<Authority, PkiError> {
        for existing in [dir.join("ca.key"), dir.join("ca.pem")] {
            if existing.exists() {
                return Err(PkiError::Exists(existing));
            }
        }
        let key = new_key()?;
        let cert = authority_params(common_name, organisation)?.self_signed(&key)?;
        write_file(
            &dir.join("ca.key"),
            key.serialize_pem().as_bytes(),
            true,
            false,
        )?;
        write_file(&dir.join("ca.pem"), cert.pem().as_bytes(), false, false)?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            common_name: common_name.to_string(),
            organisation: organisation.to_string(),
            key,
        })
    }

    /// The authority kept in `dir`, named as when it was made (the name is
    /// its subject, which every certificate it issues names as issuer).
    pub fn open(dir: &Path, common_name: &str, organisation: &str) -> Result<Authority, PkiError> {
        let key_path = dir.join("ca.key");
        check_secret(&key_path)?;
        let key = KeyPair::from_pem(&read(&key_path)?)?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            common_name: common_name.to_string(),
            organisation: organisation.to_string(),
            key,
        })
    }

    /// Where the authority is kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The authority's certificate, PEM, as its holders trust it.
    pub fn cert_pem(&self) -> Result<String, PkiError> {
        read(&self.dir.join("ca.pem"))
    }

    /// Certify `public` for `leaf`, for both ends of mutual TLS: the
    /// certificate, PEM.
    pub fn certify(&self, leaf: &Leaf<'_>, public: &KeyPair) -> Result<String, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for name in leaf.names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            });
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, leaf.common_name);
        dn.push(DnType::OrganizationalUnitName, leaf.unit);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::new(
            authority_params(&self.common_name, &self.organisation)?,
            &self.key,
        );
        Ok(params.signed_by(public, &issuer)?.pem())
    }
}

fn authority_params(common_name: &str, organisation: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organisation);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{ServerName, UnixTime};

    fn chains_to(cert_pem: &str, ca: &Authority) -> Result<(), String> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let ca_der = cert_from_pem(&ca.dir().join("ca.pem")).unwrap();
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).map_err(|e| format!("{e:?}"))?;
        let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| format!("{e:?}"))?;
        for usage in [
            webpki::KeyUsage::client_auth(),
            webpki::KeyUsage::server_auth(),
        ] {
            ee.verify_for_usage(
                &[webpki::ring::ED25519],
                std::slice::from_ref(&anchor),
                &[],
                UnixTime::now(),
                usage,
                None,
                None,
            )
            .map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    #[test]
    fn a_reopened_authority_issues_for_both_ends_under_the_names_given() {
        let dir = tempfile::tempdir().unwrap();
        let made = Authority::create(dir.path(), "T authority", "T").unwrap();
        let key = new_key().unwrap();
        let leaf = Leaf {
            common_name: "rxx",
            unit: "trust",
            names: &["rxx".into(), "localhost".into(), "127.0.0.1".into()],
        };
        chains_to(&made.certify(&leaf, &key).unwrap(), &made).unwrap();

        let reopened = Authority::open(dir.path(), "T authority", "T").unwrap();
        let pem = reopened.certify(&leaf, &new_key().unwrap()).unwrap();
        chains_to(&pem, &made).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let ee = webpki::EndEntityCert::try_from(&der).unwrap();
        for name in ["rxx", "localhost", "127.0.0.1"] {
            let name = ServerName::try_from(name).unwrap();
            ee.verify_is_valid_for_subject_name(&name).unwrap();
        }
        let other = ServerName::try_from("ryy").unwrap();
        assert!(ee.verify_is_valid_for_subject_name(&other).is_err());

        // Another authority's certificate does not chain to this one.
        let elsewhere = tempfile::tempdir().unwrap();
        let stranger = Authority::create(elsewhere.path(), "S authority", "S").unwrap();
        let foreign = stranger.certify(&leaf, &new_key().unwrap()).unwrap();
        assert!(chains_to(&foreign, &made).is_err());
    }

    #[test]
    fn an_authority_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        Authority::create(dir.path(), "T authority", "T").unwrap();
        let first = std::fs::read(dir.path().join("ca.key")).unwrap();
        assert!(matches!(
            Authority::create(dir.path(), "T authority", "T"),
            Err(PkiError::Exists(p)) if p.ends_with("ca.key")
        ));
        assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), first);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused_and_says_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Authority::create(dir.path(), "T authority", "T").unwrap();
        let key = dir.path().join("ca.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "made readable by its owner alone");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Authority::open(dir.path(), "T authority", "T")
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
