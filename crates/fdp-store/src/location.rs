//! Where a data directory's tables live: under the directory itself, or in
//! an object store.
//!
//! By default the raw and canonical Delta tables are under
//! `data-dir/tables/`. A data directory may instead keep them at an
//! `s3://`, `az://` (or `abfss://`) or `gs://` location, named once in
//! `data-dir/tables.url` when the store is first opened with
//! [`StoreConfig::tables_url`](crate::StoreConfig::tables_url). Everything
//! that opens the directory (`fdp serve`, `fdp sql`, a product's tests)
//! then finds its tables there. The WAL, the keystore and the audit stay on
//! local disk: they must be fsynced before a source is acknowledged, and a
//! key must never leave the machine.
//!
//! Credentials are never part of the location. They come from the
//! environment as the object store's own tools read it (`AWS_*`,
//! `AZURE_*`, `GOOGLE_*`) or from options the instance's configuration
//! gives through [`configure`].
//!
//! Commits are safe with several writers: a Delta commit writes its log
//! entry with a conditional put (`If-None-Match: *` on S3 and Azure, a
//! generation match on GCS), so two writers can never both commit the same
//! version.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use deltalake::logstore::{
    default_logstore, logstore_factories, object_store_factories, LogStore, LogStoreFactory,
    ObjectStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake::{DeltaResult, DeltaTableError};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::tables::Layer;
use crate::StoreError;

/// The file in a data directory that names where its tables live, when
/// not under the directory itself.
pub const TABLES_URL_FILE: &str = "tables.url";

/// The URL schemes tables may live under besides `file`.
pub const OBJECT_STORE_SCHEMES: &[&str] = &["s3", "s3a", "az", "azure", "abfs", "abfss", "gs"];

/// One Delta table's location: a directory URL (ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableLocation {
    url: Url,
}

impl TableLocation {
    /// The table at `url`, a directory.
    pub fn new(mut url: Url) -> TableLocation {
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        TableLocation { url }
    }

    /// The table in a local directory.
    pub fn local(path: &Path) -> Result<TableLocation, StoreError> {
        let path = std::path::absolute(path).map_err(|e| StoreError::io(path, e))?;
        let url = Url::from_directory_path(&path).map_err(|_| {
            StoreError::Config(format!("{} is not an absolute path", path.display()))
        })?;
        Ok(TableLocation { url })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The directory, where the table is on local disk.
    pub fn local_path(&self) -> Option<PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }

    /// The table's name: the last part of its location.
    pub fn name(&self) -> &str {
        self.url
            .path_segments()
            .and_then(|mut s| s.rfind(|p| !p.is_empty()))
            .unwrap_or_default()
    }

    fn store(&self) -> Result<(Arc<dyn ObjectStore>, ObjectPath), StoreError> {
        object_store_for(&self.url)
    }

    /// The versions committed after `after` (all, when `None`), from the
    /// log's file names: no log entry is read. In an object store only the
    /// entries after `after` are listed, so a reader that knows its table
    /// pays for what is new, not for the table's whole history.
    async fn commits_after(&self, after: Option<u64>) -> Result<Vec<u64>, StoreError> {
        if let Some(dir) = self.local_path() {
            let log = dir.join("_delta_log");
            let entries = match std::fs::read_dir(&log) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(StoreError::io(&log, e)),
            };
            return Ok(entries
                .filter_map(|e| e.ok())
                .filter_map(|e| commit_version(e.file_name().to_str()?))
                .filter(|v| after.is_none_or(|a| *v > a))
                .collect());
        }
        let (store, root) = self.store()?;
        let log = root.clone().join("_delta_log");
        let listed: Vec<_> = match after {
            Some(v) => {
                let offset = log.clone().join(format!("{v:020}.json"));
                store
                    .list_with_offset(Some(&log), &offset)
                    .try_collect()
                    .await
            }
            None => store.list(Some(&log)).try_collect().await,
        }
        .map_err(|e| self.error(e))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| commit_version(m.location.filename()?))
            .filter(|v| after.is_none_or(|a| *v > a))
            .collect())
    }

    /// Whether a Delta table has been committed here: the log is read
    /// only as far as its first commit.
    pub async fn exists(&self) -> Result<bool, StoreError> {
        if let Some(dir) = self.local_path() {
            let log = dir.join("_delta_log");
            return match std::fs::read_dir(&log) {
                Ok(entries) => Ok(entries
                    .flatten()
                    .any(|e| e.file_name().to_str().and_then(commit_version).is_some())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(StoreError::io(&log, e)),
            };
        }
        let (store, root) = self.store()?;
        let log = root.join("_delta_log");
        let mut listed = store.list(Some(&log));
        while let Some(m) = listed.try_next().await.map_err(|e| self.error(e))? {
            if m.location.filename().and_then(commit_version).is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The newest committed version, where it is newer than `known` (a
    /// version the caller has already seen committed): `known` itself when
    /// nothing newer is, `None` where there is no table.
    pub async fn latest_version(&self, known: Option<u64>) -> Result<Option<u64>, StoreError> {
        let newer = self.commits_after(known).await?.into_iter().max();
        Ok(newer.or(known))
    }

    /// When the table's first commit was written: a table removed and made
    /// again at the same location is a different table, whatever its
    /// version.
    pub async fn created(&self) -> Result<Option<SystemTime>, StoreError> {
        let first = format!("{:020}.json", 0);
        if let Some(dir) = self.local_path() {
            return Ok(std::fs::metadata(dir.join("_delta_log").join(first))
                .and_then(|m| m.modified())
                .ok());
        }
        let (store, root) = self.store()?;
        match store
            .head(&root.clone().join("_delta_log").join(first.as_str()))
            .await
        {
            Ok(m) => Ok(Some(SystemTime::from(m.last_modified))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    fn error(&self, e: object_store::Error) -> StoreError {
        StoreError::Config(format!("{}: {e}", self))
    }
}

impl std::fmt::Display for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.local_path() {
            Some(p) => write!(f, "{}", p.display()),
            None => write!(f, "{}", self.url),
        }
    }
}

/// `00000000000000000012.json` is version 12; checkpoints and temporary
/// files are not commits.
fn commit_version(file_name: &str) -> Option<u64> {
    let stem = file_name.strip_suffix(".json")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Where the data directory's tables live: its `tables/` directory, or
/// the location its [`TABLES_URL_FILE`] names.
pub fn tables_root(data_dir: &Path) -> Result<Url, StoreError> {
    let named = data_dir.join(TABLES_URL_FILE);
    match std::fs::read_to_string(&named) {
        Ok(text) => parse_tables_url(text.trim())
            .map_err(|e| StoreError::Config(format!("{}: {e}", named.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(TableLocation::local(&data_dir.join("tables"))?.url)
        }
        Err(e) => Err(StoreError::io(&named, e)),
    }
}

/// A tables location as configured: an object store URL with a bucket (or
/// container), made a directory.
pub fn parse_tables_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !OBJECT_STORE_SCHEMES.contains(&url.scheme()) {
        return Err(format!(
            "{text}: tables go in an object store ({}); leave the location out to keep them in the data directory",
            OBJECT_STORE_SCHEMES.join(", ")
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text}: name the bucket, as in s3://bucket/prefix"));
    }
    // `abfss://container@account...` names its container as a user.
    let user_is_container = matches!(url.scheme(), "abfs" | "abfss");
    if (!url.username().is_empty() && !user_is_container)
        || url.password().is_some()
        || url.query().is_some()
    {
        return Err(format!(
            "{}: credentials do not belong in the location; give them in the environment or under [storage.options]",
            url.scheme()
        ));
    }
    Ok(TableLocation::new(url).url)
}

/// Record that `data_dir`'s tables live at `url`, or check that they
/// already do; with no `url`, wherever the directory says. A data
/// directory never moves its tables by itself: a location other than the
/// one its tables are in is refused rather than started empty.
pub fn bind_tables_root(data_dir: &Path, url: Option<&Url>) -> Result<Url, StoreError> {
    let current = tables_root(data_dir)?;
    let named = data_dir.join(TABLES_URL_FILE);
    let local_dir = data_dir.join("tables");
    let local_tables = [Layer::Raw, Layer::Canonical].iter().any(|l| {
        local_table_names(&local_dir.join(l.dir_name()))
            .next()
            .is_some()
    });
    match url {
        // The directory knows where its tables are.
        None => Ok(current),
        Some(url) if named.exists() => {
            if &current == url {
                Ok(current)
            } else {
                Err(StoreError::Config(format!(
                    "the configuration puts the tables at {url}, but this data directory's are at {current}: copy them there first, then change {}",
                    named.display()
                )))
            }
        }
        Some(_) if local_tables => Err(StoreError::Config(format!(
            "this data directory already holds tables in {}: copy them to the object store first, or start a new data directory",
            data_dir.join("tables").display()
        ))),
        Some(url) => {
            let tmp = named.with_extension("url.partial");
            std::fs::write(&tmp, format!("{url}\n")).map_err(|e| StoreError::io(&tmp, e))?;
            std::fs::rename(&tmp, &named).map_err(|e| StoreError::io(&named, e))?;
            Ok(url.clone())
        }
    }
}

/// Where table `name` of `layer` lives in `data_dir`.
pub fn table_location(
    data_dir: &Path,
    layer: Layer,
    name: &str,
) -> Result<TableLocation, StoreError> {
    let root = tables_root(data_dir)?;
    let url = root
        .join(&format!("{}/{}/", layer.dir_name(), name))
        .map_err(|e| StoreError::Config(format!("{name}: not a table name ({e})")))?;
    Ok(TableLocation::new(url))
}

/// The names of the tables in `layer`, sorted.
pub async fn list_tables(data_dir: &Path, layer: Layer) -> Result<Vec<String>, StoreError> {
    let root = tables_root(data_dir)?;
    let dir = TableLocation::new(
        root.join(&format!("{}/", layer.dir_name()))
            .map_err(|e| StoreError::Config(e.to_string()))?,
    );
    if let Some(dir) = dir.local_path() {
        let mut names: Vec<String> = local_table_names(&dir).collect();
        names.sort();
        return Ok(names);
    }
    let (store, prefix) = dir.store()?;
    let listed = store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| dir.error(e))?;
    let mut names = Vec::new();
    for p in listed.common_prefixes {
        let Some(name) = p.filename().map(str::to_string) else {
            continue;
        };
        // A table is a folder with a commit in its log; a folder left by
        // a failed first write is not.
        let table = dir
            .url
            .join(&format!("{name}/"))
            .map_err(|e| StoreError::Config(format!("{name}: {e}")))?;
        if TableLocation::new(table).exists().await? {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The tables in a local layer directory: its folders with a Delta log.
fn local_table_names(dir: &Path) -> impl Iterator<Item = String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_delta_log").is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
}

/// The object stores in use, by `scheme://bucket`: one client each, built
/// from the configuration's options where it gave any, else from the
/// environment alone.
type Registry = HashMap<String, Arc<dyn ObjectStore>>;

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        register_with_delta();
        Mutex::default()
    })
}

/// `s3://bucket`: what one store serves.
fn store_key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.authority())
}

/// Give the store at `url` (its bucket) options beyond the environment:
/// an endpoint, a region, credentials from the instance's configuration.
/// Keys are the object store's own (`aws_endpoint`, `aws_allow_http`,
/// `azure_storage_account_name`, `google_service_account`, ...); an
/// unknown key is refused by name.
pub fn configure(url: &Url, options: BTreeMap<String, String>) -> Result<(), StoreError> {
    // Built now, so that a wrong key is refused at start-up.
    let store = build_store(url, &options)?;
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(store_key(url), store);
    Ok(())
}

/// The store serving `url`, rooted at its bucket, and the path within it.
pub fn object_store_for(url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath), StoreError> {
    let path = ObjectPath::from_url_path(url.path())
        .map_err(|e| StoreError::Config(format!("{url}: {e}")))?;
    if url.scheme() == "file" {
        return Ok((Arc::new(LocalFileSystem::new()), path));
    }
    let key = store_key(url);
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = r.get(&key) {
        return Ok((s.clone(), path));
    }
    let store = build_store(url, &BTreeMap::new())?;
    r.insert(key, store.clone());
    Ok((store, path))
}

fn build_store(
    url: &Url,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let bad = |e: &dyn std::fmt::Display| StoreError::Config(format!("{}: {e}", store_key(url)));
    let unknown = |k: &str| {
        StoreError::Config(format!(
            "[storage.options] {k}: not an option of {} object stores",
            url.scheme()
        ))
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build().map_err(|e| bad(&e))?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build().map_err(|e| bad(&e))?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build().map_err(|e| bad(&e))?)
        }
        other => {
            return Err(StoreError::Config(format!(
                "{url}: tables cannot live under {other}://"
            )))
        }
    };
    Ok(store)
}

/// Delta Lake finds a table's store by its URL's scheme; this answers for
/// the object store schemes with the stores above, so that a table opened
/// by URL anywhere in the instance shares one configured client.
struct Stores;

impl ObjectStoreFactory for Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        _config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, ObjectPath)> {
        object_store_for(url).map_err(|e| DeltaTableError::Generic(e.to_string()))
    }
}

impl LogStoreFactory for Stores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // The default log store commits with a conditional put: exactly
        // what every one of these stores supports.
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_with_delta() {
    for scheme in OBJECT_STORE_SCHEMES {
        let url = Url::parse(&format!("{scheme}://")).expect("a scheme makes a URL");
        object_store_factories().insert(url.clone(), Arc::new(Stores));
        logstore_factories().insert(url, Arc::new(Stores));
    }
}

/// Make the object store schemes known to Delta Lake. Called before any
/// table is opened by URL; cheap after the first time.
pub fn ensure_registered() {
    let _ = registry();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_store_urls_with_a_bucket_and_no_credentials_are_tables_locations() {
        assert_eq!(
            parse_tables_url("s3://nhs-fdp/rxa").unwrap().as_str(),
            "s3://nhs-fdp/rxa/"
        );
        assert!(parse_tables_url("gs://b/").is_ok());
        assert!(parse_tables_url("abfss://c@account.dfs.core.windows.net/t").is_ok());
        assert!(parse_tables_url("abfss://c:key@account.dfs.core.windows.net/t").is_err());
        assert!(parse_tables_url("/var/lib/fdp")
            .unwrap_err()
            .contains("not a URL"));
        assert!(parse_tables_url("http://example.org/t")
            .unwrap_err()
            .contains("object store"));
        assert!(parse_tables_url("s3:///t").unwrap_err().contains("bucket"));
        assert!(parse_tables_url("s3://key:secret@b/t")
            .unwrap_err()
            .contains("credentials"));
        assert!(parse_tables_url("s3://b/t?aws_secret_access_key=x")
            .unwrap_err()
            .contains("credentials"));
    }

    #[test]
    fn commit_files_are_told_from_checkpoints_and_temporary_files() {
        assert_eq!(commit_version("00000000000000000012.json"), Some(12));
        assert_eq!(
            commit_version("00000000000000000010.checkpoint.parquet"),
            None
        );
        assert_eq!(commit_version("_commit_1b2c.json.tmp"), None);
        assert_eq!(commit_version("12.json"), None);
    }

    #[test]
    fn a_data_directory_keeps_its_tables_where_they_were_first_put() {
        let dir = tempfile::tempdir().unwrap();
        let s3 = parse_tables_url("s3://bucket/rxa").unwrap();
        // Bound once, then the same location is accepted again.
        assert_eq!(bind_tables_root(dir.path(), Some(&s3)).unwrap(), s3);
        assert_eq!(bind_tables_root(dir.path(), Some(&s3)).unwrap(), s3);
        let t = table_location(dir.path(), Layer::Canonical, "ward_stay@adt").unwrap();
        assert_eq!(t.url().as_str(), "s3://bucket/rxa/canonical/ward_stay@adt/");
        assert_eq!(t.name(), "ward_stay@adt");
        assert_eq!(t.local_path(), None);
        // Elsewhere, or nowhere, is refused: it would start empty.
        let other = parse_tables_url("s3://bucket/rxb").unwrap();
        assert!(bind_tables_root(dir.path(), Some(&other))
            .unwrap_err()
            .to_string()
            .contains("copy them"));
        // A command given no location finds the tables where they are.
        assert_eq!(bind_tables_root(dir.path(), None).unwrap(), s3);

        // A directory with local tables is not moved by configuration.
        let local = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(local.path().join("tables/raw/hl7v2_message/_delta_log")).unwrap();
        assert!(bind_tables_root(local.path(), Some(&s3)).is_err());
        let t = table_location(local.path(), Layer::Raw, "hl7v2_message").unwrap();
        assert_eq!(
            t.local_path().unwrap(),
            std::path::absolute(local.path().join("tables/raw/hl7v2_message")).unwrap()
        );
    }

    #[test]
    fn an_unknown_store_option_is_named() {
        let url = parse_tables_url("s3://bucket/t").unwrap();
        let e = configure(
            &url,
            BTreeMap::from([("aws_endpoitn".to_string(), "x".to_string())]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("aws_endpoitn"), "{e}");
    }
}
