//! The instance's tables as a [`TableSource`] for governed sessions.
//!
//! Canonical tables are offered under the model's snake_case names
//! (`ward_stay`, `admission`), their parts (one per writer) combined into
//! one; raw tables under their own names (`hl7v2_message`). Reads see
//! committed Delta versions only, so a query may run while the instance is
//! writing. Nothing here hands out a table without a
//! [`TableAccess`](fdp_govern::TableAccess): only a governed session can
//! read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use fdp_govern::{AsOf, RowMasking, SourceTable, TableAccess, TableSource};

use crate::masked::MaskableTable;

use crate::tables::{self, Layer};
use crate::StoreError;

/// The tables of one data directory.
#[derive(Debug, Clone)]
pub struct StoredTables {
    data_dir: PathBuf,
}

impl StoredTables {
    pub fn new(data_dir: &Path) -> StoredTables {
        StoredTables {
            data_dir: data_dir.to_path_buf(),
        }
    }

    async fn open_layer(
        &self,
        ctx: &SessionContext,
        layer: Layer,
        as_of: AsOf,
    ) -> Result<Vec<(String, DeltaTable, DataFrame)>, StoreError> {
        let mut out = Vec::new();
        for name in tables::list_tables(&self.data_dir, layer) {
            let path = tables::table_path(&self.data_dir, layer, &name);
            let Some(table) = open_as_of(&path, as_of).await? else {
                continue;
            };
            table.update_datafusion_session(&ctx.state())?;
            let provider = table.table_provider().await?;
            let df = ctx.read_table(provider)?;
            out.push((name, table, df));
        }
        Ok(out)
    }
}

impl TableSource for StoredTables {
    type Error = StoreError;

    async fn canonical_tables(
        &self,
        _access: &TableAccess,
        ctx: &SessionContext,
        as_of: AsOf,
    ) -> Result<Vec<SourceTable>, StoreError> {
        // Canonical tables may be written in parts, one per writer; a query
        // sees their union under the table's own name.
        let mut by_name: BTreeMap<String, (Vec<DeltaTable>, Vec<DataFrame>)> = Default::default();
        for (name, table, df) in self.open_layer(ctx, Layer::Canonical, as_of).await? {
            let (base, _) = tables::split_part(&name);
            let entry = by_name.entry(base.to_string()).or_default();
            entry.0.push(table);
            entry.1.push(df);
        }
        let mut out = Vec::new();
        for (name, (parts, frames)) in by_name {
            let parts: Vec<(DeltaTable, SchemaRef)> = parts
                .into_iter()
                .zip(&frames)
                .map(|(t, df)| (t, Arc::new(df.schema().as_arrow().clone())))
                .collect();
            let masking =
                MaskableTable::new(&parts, ctx)?.map(|m| Arc::new(m) as Arc<dyn RowMasking>);
            out.push(SourceTable {
                name,
                provider: parts_as_one(frames)?,
                masking,
            });
        }
        Ok(out)
    }

    async fn raw_tables(
        &self,
        _access: &TableAccess,
        ctx: &SessionContext,
        as_of: AsOf,
    ) -> Result<Vec<SourceTable>, StoreError> {
        Ok(self
            .open_layer(ctx, Layer::Raw, as_of)
            .await?
            .into_iter()
            .map(|(name, _, df)| SourceTable {
                name,
                provider: df.into_view(),
                masking: None,
            })
            .collect())
    }
}

/// A canonical table written in parts (one per writer) read as one: the
/// union of the parts by column name.
pub(crate) fn parts_as_one(
    frames: Vec<DataFrame>,
) -> datafusion::error::Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let mut frames = frames.into_iter();
    let mut df = frames
        .next()
        .ok_or_else(|| datafusion::error::DataFusionError::Plan("a table with no parts".into()))?;
    for other in frames {
        df = df.union_by_name(other)?;
    }
    Ok(df.into_view())
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

/// Run one SQL statement over a context and collect its result (the
/// store's own reads of tables it is writing).
pub(crate) async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
    let df = ctx.sql(sql).await?;
    Ok(df.collect().await?)
}
