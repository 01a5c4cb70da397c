//! SQL over the instance's tables with DataFusion.
//!
//! Canonical tables are in the default schema under the model's snake_case
//! names (`ward_stay`, `admission`); raw tables are in the `raw` schema
//! (`raw.hl7v2_message`). Reads see committed Delta versions only, so a query
//! may run while the instance is writing.

use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
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
    /// The state each table had at this instant.
    Timestamp(chrono::DateTime<chrono::Utc>),
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
    // Canonical tables may be written in parts, one per writer; a query sees
    // their union under the table's own name.
    let mut canonical: std::collections::BTreeMap<String, Vec<DataFrame>> = Default::default();
    for layer in [Layer::Canonical, Layer::Raw] {
        for name in tables::list_tables(data_dir, layer) {
            let path = tables::table_path(data_dir, layer, &name);
            let Some(table) = open_as_of(&path, as_of).await? else {
                continue;
            };
            table.update_datafusion_session(&ctx.state())?;
            let provider = table.table_provider().await?;
            match layer {
                Layer::Canonical => {
                    let (base, _) = tables::split_part(&name);
                    let df = ctx.read_table(provider)?;
                    canonical.entry(base.to_string()).or_default().push(df);
                }
                Layer::Raw => {
                    ctx.register_table(format!("raw.{name}").as_str(), provider)?;
                }
            }
        }
    }
    for (name, mut parts) in canonical {
        let mut df = parts.remove(0);
        for other in parts {
            df = df.union_by_name(other)?;
        }
        ctx.register_table(name.as_str(), df.into_view())?;
    }
    Ok(ctx)
}

/// A table as of `as_of`, or `None` when it did not exist then.
async fn open_as_of(path: &Path, as_of: AsOf) -> Result<Option<deltalake::DeltaTable>, StoreError> {
    match as_of {
        AsOf::Latest => tables::open(path, None).await.map(Some),
        // A table created after the requested version has no such version;
        // leave it out rather than fail the whole query.
        AsOf::Version(v) => Ok(tables::open(path, Some(v)).await.ok()),
        AsOf::Timestamp(t) => {
            let mut table = tables::open(path, None).await?;
            match table.load_with_datetime(t).await {
                Ok(()) => Ok(Some(table)),
                Err(_) => Ok(None),
            }
        }
    }
}

/// Run one SQL statement and collect its result.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
    let df = ctx.sql(sql).await?;
    Ok(df.collect().await?)
}

/// Run a query over `table` and return its rows as text (binary columns
/// decoded as UTF-8, invalid bytes replaced; NULL as `None`), or no rows when
/// the table does not exist yet: for pages and reports that list what a
/// source has written, before it has written anything.
pub async fn text_rows(
    ctx: &SessionContext,
    table: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, StoreError> {
    use deltalake::arrow::array::{Array, ArrayRef, AsArray, StringArray};
    use deltalake::arrow::compute::cast;
    use deltalake::arrow::datatypes::DataType;
    if ctx.table_exist(table).ok() != Some(true) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for b in run(ctx, sql).await? {
        let columns: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                    let bytes = cast(c, &DataType::Binary)?;
                    let text: StringArray = bytes
                        .as_binary::<i32>()
                        .iter()
                        .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                        .collect();
                    Ok(std::sync::Arc::new(text) as ArrayRef)
                }
                _ => cast(c, &DataType::Utf8),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Config(format!("reading {table}: {e}")))?;
        for r in 0..b.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        (!s.is_null(r)).then(|| s.value(r).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}
