//! Where a cluster member finds the tables' object stores.
//!
//! A plan names its files by URL (`s3://bucket/...`). A member registers
//! no buckets in advance: the first time a plan names one, it is opened
//! as the instance opens it (`fdp_store::location`), with the credentials
//! in the member's own environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`), and
//! kept.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use url::Url;

/// Local files as DataFusion finds them; object stores as OpenFDP does.
#[derive(Debug, Default)]
pub struct TableStores {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for TableStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match self.known.get_store(url) {
            Ok(store) => Ok(store),
            Err(_) if fdp_store::location::OBJECT_STORE_SCHEMES.contains(&url.scheme()) => {
                let (store, _) = fdp_store::location::object_store_for(url)
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                self.known.register_store(url, store.clone());
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }
}

/// A runtime that finds the tables' stores, its spill files in `temp`.
pub fn runtime(temp: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut builder =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(TableStores::default()));
    if let Some(dir) = temp {
        builder = builder.with_temp_file_path(dir);
    }
    Ok(Arc::new(builder.build()?))
}
