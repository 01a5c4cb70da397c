//! Declared products installed in an instance, every version kept.
//!
//! `<data-dir>/products/<id>/<version>/` holds each version's files as
//! they were checked at install; `<data-dir>/products/installed.json` says
//! which version of each product is in use and the versions installed
//! before it, so an upgrade can be rolled back. A version once installed
//! is never changed: installing the same version with other contents is
//! refused (give it a new version).
//!
//! [`Catalogue`] is what a running instance serves: the products built in
//! and the versions installed, read again whenever an install or a
//! rollback changes `installed.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use fdp_govern::files::replace_durably;
use fdp_govern::Policy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::declared::{DeclareError, DeclaredProduct};
use crate::platform::{Product, Registry};

/// Why an install or a rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Declared(#[from] DeclareError),
    #[error(
        "{id} {version} is already installed with other contents: give the change a new version"
    )]
    VersionChanged { id: String, version: String },
    #[error("{id} is a product built into OpenFDP: a declared product takes another id")]
    BuiltIn { id: String },
    #[error("no installed product {0:?}")]
    Unknown(String),
    #[error("{id} has no version installed before {version} to roll back to")]
    NothingBefore { id: String, version: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// One version of a product as installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledVersion {
    pub version: String,
    /// SHA-256 of its files (names and contents).
    pub digest: String,
    pub installed_at: DateTime<Utc>,
}

/// A product's versions, the one in use last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledProduct {
    pub id: String,
    pub publisher: String,
    /// Every version installed, in the order installed; the one in use is
    /// `active`.
    pub versions: Vec<InstalledVersion>,
    pub active: String,
}

/// The digest of a product's files.
pub fn digest(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (name, text) in files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The declared products installed in a data directory.
pub struct Installed {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl Installed {
    pub fn open(data_dir: &Path) -> Installed {
        Installed {
            dir: data_dir.join("products"),
            lock: Mutex::new(()),
        }
    }

    fn index(&self) -> PathBuf {
        self.dir.join("installed.json")
    }

    fn io(path: &Path, e: impl std::fmt::Display) -> InstallError {
        InstallError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    /// Every installed product, by id.
    pub fn all(&self) -> Result<BTreeMap<String, InstalledProduct>, InstallError> {
        let path = self.index();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Self::io(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Self::io(&path, e)),
        }
    }

    fn write_index(&self, all: &BTreeMap<String, InstalledProduct>) -> Result<(), InstallError> {
        let path = self.index();
        let bytes = serde_json::to_vec_pretty(all).expect("the index serialises");
        replace_durably(&path, &bytes).map_err(|e| Self::io(&path, e))
    }

    /// Install `product` (checked already) and put it in use. The same
    /// version installed again with the same files puts it back in use.
    pub fn install(
        &self,
        product: &DeclaredProduct,
        builtin: &Registry,
    ) -> Result<InstalledProduct, InstallError> {
        let manifest = product.manifest();
        if builtin.get(&manifest.id).is_some() {
            return Err(InstallError::BuiltIn { id: manifest.id });
        }
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.all()?;
        let digest = digest(&product.files);
        let entry = all
            .entry(manifest.id.clone())
            .or_insert_with(|| InstalledProduct {
                id: manifest.id.clone(),
                publisher: product.publisher().to_string(),
                versions: Vec::new(),
                active: manifest.version.clone(),
            });
        match entry
            .versions
            .iter()
            .find(|v| v.version == manifest.version)
        {
            Some(v) if v.digest != digest => {
                return Err(InstallError::VersionChanged {
                    id: manifest.id,
                    version: manifest.version,
                })
            }
            Some(_) => {}
            None => {
                let dir = self.dir.join(&manifest.id).join(&manifest.version);
                for (name, text) in &product.files {
                    let path = dir.join(name);
                    replace_durably(&path, text.as_bytes()).map_err(|e| Self::io(&path, e))?;
                }
                entry.versions.push(InstalledVersion {
                    version: manifest.version.clone(),
                    digest,
                    installed_at: Utc::now(),
                });
            }
        }
        entry.active = manifest.version;
        entry.publisher = product.publisher().to_string();
        let installed = entry.clone();
        self.write_index(&all)?;
        Ok(installed)
    }

    /// Put back in use the version installed before the one in use.
    pub fn rollback(&self, id: &str) -> Result<InstalledProduct, InstallError> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.all()?;
        let p = all
            .get_mut(id)
            .ok_or_else(|| InstallError::Unknown(id.chars().take(64).collect()))?;
        let at = p
            .versions
            .iter()
            .position(|v| v.version == p.active)
            .unwrap_or(0);
        if at == 0 {
            return Err(InstallError::NothingBefore {
                id: id.to_string(),
                version: p.active.clone(),
            });
        }
        p.active = p.versions[at - 1].version.clone();
        let rolled = p.clone();
        self.write_index(&all)?;
        Ok(rolled)
    }

    /// The version of `id` in use, loaded from its installed files and
    /// checked again against `policy`.
    pub fn load(
        &self,
        p: &InstalledProduct,
        policy: &Policy,
    ) -> Result<DeclaredProduct, InstallError> {
        let dir = self.dir.join(&p.id).join(&p.active);
        let product = DeclaredProduct::load(&dir, policy)?;
        let expected = p.versions.iter().find(|v| v.version == p.active);
        if expected.is_some_and(|v| v.digest != digest(&product.files)) {
            return Err(InstallError::Io {
                path: dir,
                message: "its files were changed after they were installed".into(),
            });
        }
        Ok(product)
    }

    fn changed_at(&self) -> Option<SystemTime> {
        std::fs::metadata(self.index())
            .and_then(|m| m.modified())
            .ok()
    }
}

/// What a running instance serves: the built-in products and the declared
/// versions in use, read again when `installed.json` changes.
pub struct Catalogue {
    builtin: Registry,
    installed: Installed,
    policy: Arc<Policy>,
    cache: Mutex<Option<(Option<SystemTime>, Registry)>>,
}

impl Catalogue {
    pub fn new(builtin: Registry, data_dir: &Path, policy: Arc<Policy>) -> Catalogue {
        Catalogue {
            builtin,
            installed: Installed::open(data_dir),
            policy,
            cache: Mutex::new(None),
        }
    }

    /// The products served now. An installed product that no longer loads
    /// (the policy changed, say) is left out and logged, never half served.
    pub fn registry(&self) -> Registry {
        let changed = self.installed.changed_at();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, registry)) = cache.as_ref() {
            if *at == changed {
                return registry.clone();
            }
        }
        let mut registry = self.builtin.clone();
        match self.installed.all() {
            Ok(all) => {
                for p in all.values() {
                    match self.installed.load(p, &self.policy) {
                        Ok(product) => registry = registry.with(product),
                        Err(e) => {
                            tracing::error!(product = %p.id, version = %p.active, error = %e, "an installed product does not load")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "the installed products cannot be read"),
        }
        *cache = Some((changed, registry.clone()));
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/products")
            .join(name)
    }

    #[test]
    fn versions_are_kept_and_an_upgrade_rolls_back() {
        let policy = Arc::new(Policy::demo(fdp_model::Model::canonical()));
        let data = tempfile::tempdir().unwrap();
        let installed = Installed::open(data.path());
        let builtin = Registry::builtin();
        let v1 = DeclaredProduct::load(&example("discharge-delays-summary"), &policy).unwrap();
        installed.install(&v1, &builtin).unwrap();

        // Version 1.1.0: a new title.
        let src = tempfile::tempdir().unwrap();
        for (name, text) in &v1.files {
            let text = text
                .replace("version = \"1.0.0\"", "version = \"1.1.0\"")
                .replace(
                    "title = \"Discharge delays summary\"",
                    "title = \"Delays by ward\"",
                );
            std::fs::write(src.path().join(name), text).unwrap();
        }
        let v2 = DeclaredProduct::load(src.path(), &policy).unwrap();
        let now = installed.install(&v2, &builtin).unwrap();
        assert_eq!(now.active, "1.1.0");
        assert_eq!(now.versions.len(), 2);
        let catalogue = Catalogue::new(builtin.clone(), data.path(), policy.clone());
        let title = |c: &Catalogue| {
            c.registry()
                .get("discharge-delays-summary")
                .map(|p| p.manifest().title)
                .unwrap()
        };
        assert_eq!(title(&catalogue), "Delays by ward");

        // The same version with other contents is refused.
        std::fs::write(
            src.path().join("by-ward.sql"),
            std::fs::read_to_string(src.path().join("by-ward.sql")).unwrap() + "\n-- changed\n",
        )
        .unwrap();
        let changed = DeclaredProduct::load(src.path(), &policy).unwrap();
        assert!(matches!(
            installed.install(&changed, &builtin),
            Err(InstallError::VersionChanged { .. })
        ));

        // Rolled back: 1.0.0 is served again; nothing before it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            installed
                .rollback("discharge-delays-summary")
                .unwrap()
                .active,
            "1.0.0"
        );
        assert_eq!(title(&catalogue), "Discharge delays summary");
        assert!(matches!(
            installed.rollback("discharge-delays-summary"),
            Err(InstallError::NothingBefore { .. })
        ));

        // A built-in product's id cannot be taken.
        let src2 = tempfile::tempdir().unwrap();
        for (name, text) in &v1.files {
            std::fs::write(
                src2.path().join(name),
                text.replace(
                    "id = \"discharge-delays-summary\"",
                    "id = \"discharge-delays\"",
                ),
            )
            .unwrap();
        }
        let taken = DeclaredProduct::load(src2.path(), &policy).unwrap();
        assert!(matches!(
            installed.install(&taken, &builtin),
            Err(InstallError::BuiltIn { .. })
        ));

        // Files changed after install are not served.
        let installed_file = data
            .path()
            .join("products/discharge-delays-summary/1.0.0/by-ward.sql");
        std::fs::write(&installed_file, "SELECT 1").unwrap();
        let fresh = Catalogue::new(builtin, data.path(), policy);
        assert!(fresh.registry().get("discharge-delays-summary").is_none());
    }
}
