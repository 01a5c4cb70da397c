//! SQL over the instance's tables with DataFusion.
//!
//! Canonical tables are in the default schema under the model's snake_case
//! names (`ward_stay`, `admission`); raw tables are in the `raw` schema
//! (`raw.hl7v2_message`). Reads see committed Delta versions only, so a query
//! may run while the instance is writing.

use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::arrow::array::RecordBatch;

use crate::tables::{self, Layer};
use crate::StoreError;

/// Which version of the tables a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AsOf {
    #[default]
    Latest,
    /// A Delta version number, applied to every table that has it.
    Version(u64),
}

/// A DataFusion session with every table of the data directory registered.
pub async fn session(data_dir: &Path, as_of: AsOf) -> Result<SessionContext, StoreError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let ctx = SessionContext::new_with_config(config);
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| StoreError::Config("default catalog missing".into()))?;
    catalog.register_schema("raw", Arc::new(MemorySchemaProvider::new()))?;
    for layer in [Layer::Canonical, Layer::Raw] {
        for name in tables::list_tables(data_dir, layer) {
            let version = match as_of {
                AsOf::Latest => None,
                AsOf::Version(v) => Some(v),
            };
            let path = tables::table_path(data_dir, layer, &name);
            let table = match tables::open(&path, version).await {
                Ok(t) => t,
                // A table created after the requested version has no such
                // version; leave it out rather than fail the whole query.
                Err(_) if version.is_some() => continue,
                Err(e) => return Err(e),
            };
            table.update_datafusion_session(&ctx.state())?;
            let provider = table.table_provider().await?;
            let qualified = match layer {
                Layer::Canonical => name.clone(),
                Layer::Raw => format!("raw.{name}"),
            };
            ctx.register_table(qualified.as_str(), provider)?;
        }
    }
    Ok(ctx)
}

/// Run one SQL statement and collect its result.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
    let df = ctx.sql(sql).await?;
    Ok(df.collect().await?)
}
