//! The marketplace: products declared as data, offered across the
//! federation.
//!
//! A [`Package`] is a declared product's files with their digest, signed by
//! the publishing instance's key over its id, version, publisher and
//! digest, and carrying the publisher's certificate. Any member can check a
//! package against the federation's authority however it reached them
//! (offered directly, or listed by the ICB), so a package altered on the
//! way, or by a member that only passed it on, is refused. A package holds
//! a definition and never data: files are limited to `product.toml` and
//! SQL, by plain name, within a size bound.
//!
//! Each instance keeps what it has been offered ([`Marketplace`]): the
//! package as received, who it came through, and the decision of its
//! information-governance lead (approved or declined, by whom, why). An
//! offered product is installed only once it is approved, and only if the
//! package still checks: see `fdp product approve`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use fdp_govern::files::replace_durably;
use fdp_govern::{AuditEntry, AuditLog};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use fdp_products::installed::InstalledProduct;

use crate::identity::{verify_issued_by, verify_signature, InstanceIdentity};

/// The most files a package may hold, and their total size.
const MAX_FILES: usize = 64;
const MAX_BYTES: usize = 1 << 20;

/// Why a package was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PackageError {
    #[error("{id} {version} from {publisher}: {why}")]
    Refused {
        id: String,
        version: String,
        publisher: String,
        why: String,
    },
    #[error("{0}")]
    Store(String),
    #[error("no product {0} has been offered to this instance")]
    NotOffered(String),
}

/// A declared product as published: its files, signed by its publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub id: String,
    pub version: String,
    /// The ODS code of the publishing organisation.
    pub publisher: String,
    pub title: String,
    /// SHA-256 of the files, as `fdp_products::installed::digest` makes it.
    pub digest: String,
    pub files: BTreeMap<String, String>,
    pub published_at: DateTime<Utc>,
    /// The publishing instance's certificate (PEM).
    pub certificate: String,
    /// Its signature over [`Package::signed_bytes`], hex.
    pub signature: String,
}

/// A package's files and what they say about themselves.
struct Declared<'a> {
    id: &'a str,
    version: &'a str,
    publisher: &'a str,
    title: &'a str,
}

/// Whether `name` is a file a package may hold: a plain name in the
/// product's folder, `product.toml` or SQL.
fn plain_file(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && (name == "product.toml" || name.ends_with(".sql"))
}

impl Package {
    /// Sign `files` (a declared product's, checked already) as this
    /// instance. Refused if `product.toml` names another publisher.
    pub fn seal(
        identity: &InstanceIdentity,
        files: BTreeMap<String, String>,
    ) -> Result<Package, PackageError> {
        let toml = files.get("product.toml").map(String::as_str).unwrap_or("");
        let parsed: toml::Table = toml::from_str(toml).unwrap_or_default();
        let d = declared(&parsed);
        if d.publisher != identity.ods {
            return Err(PackageError::Refused {
                id: d.id.into(),
                version: d.version.into(),
                publisher: d.publisher.into(),
                why: format!(
                    "product.toml names publisher {:?}, but this instance is {}: an instance publishes only its own organisation's products",
                    d.publisher, identity.ods
                ),
            });
        }
        let mut p = Package {
            id: d.id.into(),
            version: d.version.into(),
            publisher: identity.ods.clone(),
            title: d.title.into(),
            digest: fdp_products::installed::digest(&files),
            files,
            published_at: Utc::now(),
            certificate: identity.cert_pem(),
            signature: String::new(),
        };
        p.signature = crate::envelope::hex(&identity.sign(&p.signed_bytes()));
        Ok(p)
    }

    /// What the signature covers: the package's identity and digest, so
    /// that no file, name or version can change under it.
    pub fn signed_bytes(&self) -> Vec<u8> {
        [
            "openfdp-product-package/1",
            &self.id,
            &self.version,
            &self.publisher,
            &self.digest,
            &self.published_at.to_rfc3339(),
        ]
        .join("\0")
        .into_bytes()
    }

    /// The key offers are kept under: publisher, id and version.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.publisher, self.id, self.version)
    }

    fn refused(&self, why: impl Into<String>) -> PackageError {
        PackageError::Refused {
            id: self.id.chars().take(64).collect(),
            version: self.version.chars().take(32).collect(),
            publisher: self.publisher.chars().take(16).collect(),
            why: why.into(),
        }
    }

    /// Check the package whole: its files are a product definition and
    /// nothing else, they match the digest, the digest and identity are
    /// signed by the publisher's instance, and that instance is certified
    /// by the federation's authority `ca` for the publisher's ODS code.
    pub fn verify(&self, ca: &CertificateDer<'_>) -> Result<(), PackageError> {
        if self.files.len() > MAX_FILES
            || self.files.values().map(String::len).sum::<usize>() > MAX_BYTES
        {
            return Err(self.refused(format!(
                "a package holds at most {MAX_FILES} files and {MAX_BYTES} bytes"
            )));
        }
        if let Some(bad) = self.files.keys().find(|n| !plain_file(n)) {
            return Err(self.refused(format!(
                "it holds {:?}: a package holds product.toml and .sql files, by plain name, and never data",
                bad.chars().take(64).collect::<String>()
            )));
        }
        if fdp_products::installed::digest(&self.files) != self.digest {
            return Err(self.refused(
                "its files do not match its signed digest: it was changed after it was published",
            ));
        }
        let toml = self
            .files
            .get("product.toml")
            .map(String::as_str)
            .unwrap_or("");
        let parsed: toml::Table = toml::from_str(toml)
            .map_err(|e| self.refused(format!("product.toml: {}", e.message())))?;
        let d = declared(&parsed);
        if (d.id, d.version, d.publisher) != (&self.id, &self.version, &self.publisher) {
            return Err(self.refused(format!(
                "product.toml says {} {} from {}, not what the package is signed as",
                d.id, d.version, d.publisher
            )));
        }
        let cert = CertificateDer::from_pem_slice(self.certificate.as_bytes())
            .map_err(|e| self.refused(format!("its certificate is not PEM: {e}")))?;
        verify_issued_by(&cert, ca).map_err(|e| self.refused(format!("its certificate is {e}")))?;
        crate::identity::verify_names(&cert, &self.publisher).map_err(|e| {
            self.refused(format!("its certificate is not {}'s: {e}", self.publisher))
        })?;
        let signature =
            crate::envelope::Signed::parse_signature(&self.signature).unwrap_or_default();
        if !verify_signature(&cert, &self.signed_bytes(), &signature) {
            return Err(self.refused(format!(
                "its signature is not {}'s: it was changed after it was published",
                self.publisher
            )));
        }
        Ok(())
    }

    /// What the package's `product.toml` says it reads (tables and
    /// columns) and is for (purposes), for the IG lead to review.
    pub fn review(&self) -> (String, String) {
        let t: toml::Table = self
            .files
            .get("product.toml")
            .and_then(|t| toml::from_str(t).ok())
            .unwrap_or_default();
        let reads = t
            .get("reads")
            .and_then(|r| r.as_array())
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        let cols: Vec<&str> = r
                            .get("columns")
                            .and_then(|c| c.as_array())
                            .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
                            .unwrap_or_default();
                        format!(
                            "{}({})",
                            r.get("table").and_then(|t| t.as_str()).unwrap_or("?"),
                            cols.join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let purposes = t
            .get("purposes")
            .and_then(|r| r.as_array())
            .map(|ps| {
                ps.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        (reads, purposes)
    }

    /// The files written to `dir`, for the product to be loaded from.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, text) in &self.files {
            // Names were checked plain by `verify`.
            std::fs::write(dir.join(name), text)?;
        }
        Ok(())
    }
}

fn declared(t: &toml::Table) -> Declared<'_> {
    let s = |k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or("");
    Declared {
        id: s("id"),
        version: s("version"),
        publisher: s("publisher"),
        title: s("title"),
    }
}

/// What an IG lead decided about an offered package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// The digest decided on: a decision is about these files only.
    pub digest: String,
}

/// One package offered to this instance, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub package: Package,
    /// The peers it came through, first first.
    pub via: Vec<String>,
    pub received_at: DateTime<Utc>,
    #[serde(default)]
    pub decision: Option<Decision>,
}

impl Offer {
    /// What this instance makes of an offer: installed, approved, declined, an
    /// update, or new.
    pub fn status(&self, installed: Option<&InstalledProduct>) -> String {
        let v = &self.package.version;
        if let Some(p) = installed {
            if p.active == *v
                && p.versions
                    .iter()
                    .any(|i| i.version == *v && i.digest == self.package.digest)
            {
                return "installed, in use".into();
            }
        }
        if let Some(d) = &self.decision {
            if d.digest == self.package.digest {
                return format!(
                    "{} by {} ({})",
                    if d.approved { "approved" } else { "declined" },
                    d.by,
                    d.reason
                );
            }
        }
        match installed {
            Some(p) if compare_versions(v, &p.active).is_gt() => {
                format!("update ({} in use)", p.active)
            }
            Some(p) => format!("older than {} in use", p.active),
            None => "new".into(),
        }
    }
}

/// The packages offered to this instance and the decisions on them, kept
/// in `<data-dir>/marketplace/offers.json`.
pub struct Marketplace {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl Marketplace {
    pub fn open(data_dir: &Path) -> Marketplace {
        Marketplace {
            dir: data_dir.join("marketplace"),
            lock: Mutex::new(()),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("offers.json")
    }

    /// Every package offered, by key.
    pub fn offers(&self) -> Result<BTreeMap<String, Offer>, PackageError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| PackageError::Store(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(PackageError::Store(format!("{}: {e}", path.display()))),
        }
    }

    fn change<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Offer>) -> Result<T, PackageError>,
    ) -> Result<T, PackageError> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.offers()?;
        let out = f(&mut all)?;
        let bytes = serde_json::to_vec_pretty(&all).expect("offers serialise");
        replace_durably(&self.path(), &bytes)
            .map_err(|e| PackageError::Store(format!("{}: {e}", self.path().display())))?;
        Ok(out)
    }

    /// Keep `package`, offered through `via` (this instance's own ODS code
    /// for what it publishes), once it checks against `ca`. The same
    /// package offered again through another peer is noted, not kept
    /// twice; another package signed with the same version is refused.
    /// Answers whether it was new.
    pub fn offered(
        &self,
        package: Package,
        via: &str,
        ca: &CertificateDer<'_>,
    ) -> Result<bool, PackageError> {
        package.verify(ca)?;
        self.change(|all| match all.get_mut(&package.key()) {
            // What is kept here was altered: the checked package replaces it.
            Some(held) if held.package.verify(ca).is_err() => {
                held.package = package;
                held.decision = None;
                if !held.via.iter().any(|v| v == via) {
                    held.via.push(via.to_string());
                }
                Ok(true)
            }
            Some(held) if held.package.digest != package.digest => Err(package.refused(
                "another package was offered with this version before: a change takes a new version",
            )),
            Some(held) => {
                if !held.via.iter().any(|v| v == via) {
                    held.via.push(via.to_string());
                }
                Ok(false)
            }
            None => {
                all.insert(
                    package.key(),
                    Offer {
                        package,
                        via: vec![via.to_string()],
                        received_at: Utc::now(),
                        decision: None,
                    },
                );
                Ok(true)
            }
        })
    }

    /// The offer `id` (its latest version, or `version`), checked again
    /// against `ca` so that nothing altered where it is kept is acted on.
    pub fn checked(
        &self,
        id: &str,
        version: Option<&str>,
        ca: &CertificateDer<'_>,
    ) -> Result<Offer, PackageError> {
        let all = self.offers()?;
        let offer = all
            .values()
            .filter(|o| o.package.id == id && version.is_none_or(|v| o.package.version == v))
            .max_by(|a, b| compare_versions(&a.package.version, &b.package.version))
            .cloned()
            .ok_or_else(|| {
                PackageError::NotOffered(match version {
                    Some(v) => format!("{id} {v}"),
                    None => id.to_string(),
                })
            })?;
        offer.package.verify(ca)?;
        Ok(offer)
    }

    /// Record the IG lead's decision on the package `key`.
    pub fn decide(&self, key: &str, decision: Decision) -> Result<(), PackageError> {
        self.change(|all| {
            let offer = all
                .get_mut(key)
                .ok_or_else(|| PackageError::NotOffered(key.to_string()))?;
            offer.decision = Some(decision);
            Ok(())
        })
    }
}

/// Audit one marketplace step: `principal` did `what` (a peer as
/// `peer:ODS`), with `outcome`.
pub fn audit(
    log: &AuditLog,
    principal: &str,
    organisation: Option<&str>,
    what: String,
    outcome: String,
) {
    let entry = AuditEntry {
        kind: "marketplace".into(),
        principal: principal.to_string(),
        organisation: organisation.map(str::to_string),
        channel: "federation".into(),
        what,
        outcome,
        ..AuditEntry::default()
    };
    if let Err(e) = log.append(entry) {
        tracing::error!(error = %e, "marketplace: the audit could not be written");
    }
}

/// What a peer says about a package it was offered: approved or declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionNotice {
    pub id: String,
    pub version: String,
    pub publisher: String,
    pub digest: String,
    pub approved: bool,
    pub reason: String,
}

impl Marketplace {
    /// A `product-offer` message from `from`: the package checked and
    /// kept, or refused; audited either way.
    pub fn arrived(
        &self,
        log: &AuditLog,
        from: &str,
        body: &Value,
        ca: &CertificateDer<'_>,
    ) -> Result<Value, String> {
        let peer = format!("peer:{from}");
        let package: Package = match serde_json::from_value(body.clone()) {
            Ok(p) => p,
            Err(e) => {
                let why = format!("not a product package: {e}");
                audit(
                    log,
                    &peer,
                    Some(from),
                    "product offer".into(),
                    format!("refused: {why}"),
                );
                return Err(why);
            }
        };
        let what = format!(
            "offer of product {} {} from {} via {from}",
            package.id, package.version, package.publisher
        );
        match self.offered(package, from, ca) {
            Ok(new) => {
                let outcome = if new {
                    "ok: kept, for the IG lead to decide"
                } else {
                    "ok: already offered"
                };
                audit(log, &peer, Some(from), what, outcome.into());
                Ok(json!({ "received": true, "new": new }))
            }
            Err(e) => {
                audit(log, &peer, Some(from), what, format!("refused: {e}"));
                Err(e.to_string())
            }
        }
    }

    /// A `marketplace-list` request from `from`: every package this
    /// instance holds (its own and those offered to it), each still signed
    /// by its publisher; audited.
    pub fn listed(&self, log: &AuditLog, from: &str) -> Result<Value, String> {
        let offers = self.offers().map_err(|e| e.to_string())?;
        let packages: Vec<&Package> = offers.values().map(|o| &o.package).collect();
        audit(
            log,
            &format!("peer:{from}"),
            Some(from),
            "list the marketplace".into(),
            format!("ok: {} package(s)", packages.len()),
        );
        Ok(json!({ "offers": packages }))
    }

    /// A `product-decision` message: a peer approved or declined a package
    /// this instance offered on; audited.
    pub fn decision_arrived(
        &self,
        log: &AuditLog,
        from: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let notice: DecisionNotice = serde_json::from_value(body.clone())
            .map_err(|e| format!("not a product decision: {e}"))?;
        audit(
            log,
            &format!("peer:{from}"),
            Some(from),
            format!(
                "product {} {} from {} {} at {from}",
                notice.id,
                notice.version,
                notice.publisher,
                if notice.approved {
                    "approved"
                } else {
                    "declined"
                }
            ),
            format!("ok: {}", notice.reason),
        );
        Ok(json!({ "received": true }))
    }
}

/// Versions compared by their dotted numbers where they have them
/// (`1.10.0` after `1.9.0`), else as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a).cmp(&parts(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{FederationCa, OrgRole};

    fn files(publisher: &str, version: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "product.toml".to_string(),
                format!("id = \"demo\"\ntitle = \"Demo\"\nversion = \"{version}\"\npublisher = \"{publisher}\"\n"),
            ),
            ("by-ward.sql".to_string(), "SELECT 1".to_string()),
        ])
    }

    #[test]
    fn a_package_checks_only_as_its_publisher_signed_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FederationCa::create(&dir.path().join("ca"), "Test").unwrap();
        let rxx =
            InstanceIdentity::init(&dir.path().join("rxx"), "RXX", OrgRole::Trust, &ca).unwrap();
        let icb =
            InstanceIdentity::init(&dir.path().join("icb"), "QWO", OrgRole::Icb, &ca).unwrap();
        let p = Package::seal(&rxx, files("RXX", "1.0.0")).unwrap();
        p.verify(&icb.ca).unwrap();

        // Another organisation's product, a changed file, a changed version,
        // a file that is not a definition, another instance's signature.
        assert!(Package::seal(&rxx, files("RYY", "1.0.0")).is_err());
        let mut changed = p.clone();
        changed
            .files
            .insert("by-ward.sql".into(), "SELECT 2".into());
        assert!(changed
            .verify(&icb.ca)
            .unwrap_err()
            .to_string()
            .contains("digest"));
        changed.digest = fdp_products::installed::digest(&changed.files);
        assert!(changed
            .verify(&icb.ca)
            .unwrap_err()
            .to_string()
            .contains("signature"));
        let mut renamed = p.clone();
        renamed.version = "1.0.1".into();
        assert!(renamed.verify(&icb.ca).is_err());
        let mut data = p.clone();
        data.files
            .insert("../patients.csv".into(), "9434765919".into());
        data.digest = fdp_products::installed::digest(&data.files);
        assert!(data
            .verify(&icb.ca)
            .unwrap_err()
            .to_string()
            .contains("never data"));
        let mut forged = Package::seal(&icb, files("QWO", "1.0.0")).unwrap();
        forged.publisher = "RXX".into();
        forged.files = p.files.clone();
        forged.digest = p.digest.clone();
        assert!(forged.verify(&icb.ca).is_err());

        // Kept once; the same version with other files is refused.
        let market = Marketplace::open(&dir.path().join("icb"));
        assert!(market.offered(p.clone(), "RXX", &icb.ca).unwrap());
        assert!(!market.offered(p.clone(), "QWO", &icb.ca).unwrap());
        let other = Package::seal(&rxx, {
            let mut f = files("RXX", "1.0.0");
            f.insert("extra.sql".into(), "SELECT 3".into());
            f
        })
        .unwrap();
        assert!(market.offered(other, "RXX", &icb.ca).is_err());
        let newer = Package::seal(&rxx, files("RXX", "1.10.0")).unwrap();
        market.offered(newer, "RXX", &icb.ca).unwrap();
        assert_eq!(
            market
                .checked("demo", None, &icb.ca)
                .unwrap()
                .package
                .version,
            "1.10.0"
        );
        assert_eq!(
            market.offers().unwrap()["RXX/demo/1.0.0"].via,
            ["RXX", "QWO"]
        );
    }
}
