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

use std::path::{Path, PathBuf};

use fdp_pki::{check_secret, new_key, read, Authority, Leaf, PkiError};
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
    Certificate(#[from] fdp_pki::CertificateError),
}

impl From<PkiError> for TrustError {
    fn from(e: PkiError) -> TrustError {
        match e {
            PkiError::Io { path, source } => TrustError::Io(path, source),
            PkiError::Exists(path) => TrustError::Exists(path),
            PkiError::Bad { path, message } => TrustError::Bad { path, message },
            PkiError::Certificate(e) => TrustError::Certificate(e),
        }
    }
}

/// A cluster's files are made once: one already there is refused.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), TrustError> {
    Ok(fdp_pki::write_file(path, contents, secret, false)?)
}

fn authority_subject(name: &str) -> String {
    format!("{name} cluster authority")
}

/// A cluster's certificate authority.
pub struct ClusterAuthority {
    authority: Authority,
}

#[derive(Serialize, Deserialize)]
struct AuthorityFile {
    name: String,
}

impl ClusterAuthority {
    /// Make a new authority in `dir` (`ca.pem`, `ca.key`, `authority.json`).
    pub fn create(dir: &Path, name: &str) -> Result<ClusterAuthority, TrustError> {
        let authority = Authority::create(dir, &authority_subject(name), name)?;
        let meta = serde_json::to_string(&AuthorityFile {
            name: name.to_string(),
        })
        .expect("a name serialises");
        write_file(&dir.join("authority.json"), meta.as_bytes(), false)?;
        Ok(ClusterAuthority { authority })
    }

    /// The authority kept in `dir`.
    pub fn open(dir: &Path) -> Result<ClusterAuthority, TrustError> {
        let meta_path = dir.join("authority.json");
        let meta: AuthorityFile =
            serde_json::from_str(&read(&meta_path)?).map_err(|e| TrustError::Bad {
                path: meta_path,
                message: e.to_string(),
            })?;
        let authority = Authority::open(dir, &authority_subject(&meta.name), &meta.name)?;
        Ok(ClusterAuthority { authority })
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
        let key = new_key()?;
        // The role is certified as a name only the authority can give.
        let mut names = vec![
            role.certified_name(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        names.extend(hosts.iter().cloned());
        let cert = self.authority.certify(
            &Leaf {
                common_name: name,
                unit: role.as_str(),
                names: &names,
            },
            &key,
        )?;
        write_file(
            &member_dir.join("cluster.key"),
            key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&member_dir.join("cluster.pem"), cert.as_bytes(), false)?;
        write_file(
            &member_dir.join("ca.pem"),
            self.authority.cert_pem()?.as_bytes(),
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
