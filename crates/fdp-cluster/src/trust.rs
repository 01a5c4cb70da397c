//! Who may talk to whom in a cluster: an authority of the cluster's own,
//! and the members it certifies, each in one role.
//!
//! Every connection in a cluster is mutual TLS against the cluster's
//! authority, and what a member may ask is fixed by the role its
//! certificate was issued for ([`Role`]): only an *instance* may submit a
//! plan, only an *executor* may take tasks. The role is a name in the
//! certificate that only the authority can put there, so a stolen executor
//! certificate cannot submit plans, and an instance certificate of a
//! federation (issued by another authority) is not accepted at all.
//!
//! Layout of a member's directory: `cluster.pem` (its certificate),
//! `cluster.key` (PKCS #8, readable by the owner only), `ca.pem` (the
//! cluster's authority) and `member.json` (name and role). The authority
//! keeps `ca.pem` and `ca.key` in a directory of its own, which belongs
//! off the cluster's machines.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ED25519,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// What a member of a cluster does, and so what it may ask of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Plans stages and hands out tasks.
    Scheduler,
    /// Runs tasks and serves their output.
    Executor,
    /// An OpenFDP instance: submits governed plans and reads their results.
    Instance,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Executor => "executor",
            Role::Instance => "instance",
        }
    }

    /// The name a certificate carries to say it was issued for this role.
    fn certified_name(self) -> String {
        format!("{}.role.fdp-cluster.invalid", self.as_str())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = TrustError;
    fn from_str(s: &str) -> Result<Role, TrustError> {
        match s {
            "scheduler" => Ok(Role::Scheduler),
            "executor" => Ok(Role::Executor),
            "instance" => Ok(Role::Instance),
            other => Err(TrustError::BadRole(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{} already exists: a cluster's authority and members are made once", .0.display())]
    Exists(PathBuf),
    #[error("{}: {message}", .path.display())]
    Bad { path: PathBuf, message: String },
    #[error("{0:?} is not a role: say scheduler, executor or instance")]
    BadRole(String),
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |e| TrustError::Io(path.to_path_buf(), e)
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), TrustError> {
    fdp_govern::files::write_identity_file(path, contents, secret, false).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TrustError::Exists(path.to_path_buf())
        } else {
            TrustError::Io(path.to_path_buf(), e)
        }
    })
}

fn read(path: &Path) -> Result<String, TrustError> {
    fs::read_to_string(path).map_err(io(path))
}

/// A private key must be readable by its owner alone.
fn check_secret(path: &Path) -> Result<(), TrustError> {
    match fdp_govern::files::key_readable_by_others(path).map_err(io(path))? {
        Some(message) => Err(TrustError::Bad {
            path: path.to_path_buf(),
            message,
        }),
        None => Ok(()),
    }
}

fn authority_params(name: &str) -> Result<CertificateParams, TrustError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{name} cluster authority"));
    dn.push(DnType::OrganizationName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A cluster's certificate authority.
pub struct ClusterAuthority {
    dir: PathBuf,
    name: String,
    key: KeyPair,
}

#[derive(Serialize, Deserialize)]
struct AuthorityFile {
    name: String,
}

impl ClusterAuthority {
    /// Make a new authority in `dir` (`ca.pem`, `ca.key`, `authority.json`).
    pub fn create(dir: &Path, name: &str) -> Result<ClusterAuthority, TrustError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let cert = authority_params(name)?.self_signed(&key)?;
        write_file(&dir.join("ca.key"), key.serialize_pem().as_bytes(), true)?;
        write_file(&dir.join("ca.pem"), cert.pem().as_bytes(), false)?;
        let meta = serde_json::to_string(&AuthorityFile {
            name: name.to_string(),
        })
        .expect("a name serialises");
        write_file(&dir.join("authority.json"), meta.as_bytes(), false)?;
        Ok(ClusterAuthority {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            key,
        })
    }

    /// The authority kept in `dir`.
    pub fn open(dir: &Path) -> Result<ClusterAuthority, TrustError> {
        let key_path = dir.join("ca.key");
        check_secret(&key_path)?;
        let key = KeyPair::from_pem(&read(&key_path)?)?;
        let meta_path = dir.join("authority.json");
        let meta: AuthorityFile =
            serde_json::from_str(&read(&meta_path)?).map_err(|e| TrustError::Bad {
                path: meta_path,
                message: e.to_string(),
            })?;
        Ok(ClusterAuthority {
            dir: dir.to_path_buf(),
            name: meta.name,
            key,
        })
    }

    /// Certify a new member `name` in `role`, reachable at `hosts` (names or
    /// addresses; loopback is always included), with its key made here and
    /// written to `member_dir`.
    pub fn issue(
        &self,
        member_dir: &Path,
        name: &str,
        role: Role,
        hosts: &[String],
    ) -> Result<ClusterMember, TrustError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .subject_alt_names
            .push(SanType::DnsName(role.certified_name().try_into()?));
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
        names.extend(hosts.iter().cloned());
        for host in names {
            params.subject_alt_names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.try_into()?),
            });
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::new(authority_params(&self.name)?, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        write_file(
            &member_dir.join("cluster.key"),
            key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(
            &member_dir.join("cluster.pem"),
            cert.pem().as_bytes(),
            false,
        )?;
        write_file(
            &member_dir.join("ca.pem"),
            read(&self.dir.join("ca.pem"))?.as_bytes(),
            false,
        )?;
        let meta = serde_json::to_string_pretty(&MemberFile {
            name: name.to_string(),
            role,
        })
        .expect("a member serialises");
        write_file(&member_dir.join("member.json"), meta.as_bytes(), false)?;
        ClusterMember::open(member_dir)
    }
}

#[derive(Serialize, Deserialize)]
struct MemberFile {
    name: String,
    role: Role,
}

/// A member's certificate and key, as its servers and clients use them.
#[derive(Clone)]
pub struct ClusterMember {
    pub name: String,
    pub role: Role,
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
    ca: CertificateDer<'static>,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterMember({} {})", self.name, self.role)
    }
}

impl ClusterMember {
    /// The member kept in `dir`.
    pub fn open(dir: &Path) -> Result<ClusterMember, TrustError> {
        let meta_path = dir.join("member.json");
        let meta: MemberFile =
            serde_json::from_str(&read(&meta_path)?).map_err(|e| TrustError::Bad {
                path: meta_path,
                message: format!("{e} (make a member with `fdp cluster issue`)"),
            })?;
        let key_path = dir.join("cluster.key");
        check_secret(&key_path)?;
        let ca_path = dir.join("ca.pem");
        let ca_pem = read(&ca_path)?;
        let ca =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| TrustError::Bad {
                path: ca_path,
                message: format!("not a PEM certificate: {e}"),
            })?;
        Ok(ClusterMember {
            name: meta.name,
            role: meta.role,
            cert_pem: read(&dir.join("cluster.pem"))?,
            key_pem: read(&key_path)?,
            ca_pem,
            ca,
        })
    }

    /// TLS for this member's servers: its certificate, and clients must
    /// show one from the cluster's authority.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// TLS for this member's connections to the others: servers must show
    /// a certificate from the cluster's authority, and it shows its own.
    pub fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// The role a peer's certificate (already checked against the cluster's
    /// authority by TLS) was issued for, if any.
    pub fn role_of(&self, peer: &CertificateDer<'_>) -> Option<Role> {
        let cert = webpki::EndEntityCert::try_from(peer).ok()?;
        [Role::Scheduler, Role::Executor, Role::Instance]
            .into_iter()
            .find(|role| {
                ServerName::try_from(role.certified_name())
                    .ok()
                    .is_some_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
    }

    /// The authority's certificate.
    pub fn authority(&self) -> &CertificateDer<'static> {
        &self.ca
    }
}
