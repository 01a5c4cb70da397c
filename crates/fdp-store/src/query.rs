//! The instance's tables as a [`TableSource`] for governed sessions.
//!
//! Canonical tables are offered under the model's snake_case names
//! (`ward_stay`, `admission`), their parts (one per writer) combined into
//! one; raw tables under their own names (`hl7v2_message`). Reads see
//! committed Delta versions only, so a query may run while the instance is
//! writing. Nothing here hands out a table without a
//! [`TableAccess`](fdp_govern::TableAccess): only a governed session can
//! read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use fdp_govern::{AsOf, RowMasking, SourceTable, TableAccess, TableSource};

use crate::masked::MaskableTable;

use crate::tables::{self, Layer, TableLocation};
use crate::StoreError;

/// The tables of one data directory.
///
/// Clones share what has been opened: each table at its latest version is
/// kept until a newer version is committed, so a long-lived reader (a
/// server answering many sessions) reads a table's log once per change
/// rather than once per session.
#[derive(Clone)]
pub struct StoredTables {
    data_dir: PathBuf,
    opened: Arc<Mutex<Opened>>,
}

/// A canonical table's parts: their tables, frames, and names with versions.
type CanonicalParts = (Vec<DeltaTable>, Vec<DataFrame>, Vec<(String, u64)>);

/// Each table open at its latest version, with when it was made.
type Opened = HashMap<TableLocation, (DeltaTable, Option<SystemTime>)>;

impl std::fmt::Debug for StoredTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredTables({})", self.data_dir.display())
    }
}

impl StoredTables {
    pub fn new(data_dir: &Path) -> StoredTables {
        StoredTables {
            data_dir: data_dir.to_path_buf(),
            opened: Arc::default(),
        }
    }

    /// The table at `at` as of `as_of`; the latest version from what is
    /// already open when nothing newer has been committed.
    async fn open(
        &self,
        at: &TableLocation,
        as_of: AsOf,
    ) -> Result<Option<DeltaTable>, StoreError> {
        if as_of != AsOf::Latest {
            return open_as_of(at, as_of).await;
        }
        let made = at.created().await?;
        let held = {
            let opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            opened
                .get(at)
                .filter(|(_, when)| *when == made)
                .map(|(t, _)| t.clone())
        };
        // Only what was committed since the version held is looked for,
        // where the table is known to be the same one.
        let known = held
            .as_ref()
            .filter(|_| made.is_some())
            .and_then(|t| t.version());
        let latest = at.latest_version(known).await?;
        if let Some(t) = held {
            if latest.is_some() && t.version() == latest {
                return Ok(Some(t));
            }
        }
        let table = open_as_of(at, as_of).await?;
        if let Some(t) = &table {
            self.opened
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(at.clone(), (t.clone(), made));
        }
        Ok(table)
    }

    async fn open_layer(
        &self,
        ctx: &SessionContext,
        layer: Layer,
        as_of: AsOf,
    ) -> Result<Vec<(String, DeltaTable, DataFrame)>, StoreError> {
        let mut out = Vec::new();
        for name in tables::list_tables(&self.data_dir, layer).await? {
            let path = tables::table_location(&self.data_dir, layer, &name)?;
            let Some(table) = self.open(&path, as_of).await? else {
                continue;
            };
            table.update_datafusion_session(&ctx.state())?;
            let provider = table.table_provider().await?;
            let df = scan_named(ctx, &name, provider)?;
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
        let mut by_name: BTreeMap<String, CanonicalParts> = Default::default();
        for (name, table, df) in self.open_layer(ctx, Layer::Canonical, as_of).await? {
            let (base, _) = tables::split_part(&name);
            let entry = by_name.entry(base.to_string()).or_default();
            entry
                .2
                .push((name.clone(), table.version().unwrap_or_default()));
            entry.0.push(table);
            entry.1.push(df);
        }
        let mut out = Vec::new();
        for (name, (parts, frames, versions)) in by_name {
            let parts: Vec<(String, DeltaTable, SchemaRef)> = parts
                .into_iter()
                .zip(&frames)
                .zip(&versions)
                .map(|((t, df), (part, _))| {
                    (part.clone(), t, Arc::new(df.schema().as_arrow().clone()))
                })
                .collect();
            let masking =
                MaskableTable::new(&parts, ctx)?.map(|m| Arc::new(m) as Arc<dyn RowMasking>);
            out.push(SourceTable {
                name,
                provider: parts_as_one(frames)?,
                masking,
                versions,
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
            .map(|(name, table, df)| SourceTable {
                versions: vec![(name.clone(), table.version().unwrap_or_default())],
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

/// A scan of `provider` planned under a stored table's name, so that a
/// query's plan says which stored tables it read.
pub(crate) fn scan_named(
    ctx: &SessionContext,
    name: &str,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
) -> datafusion::error::Result<DataFrame> {
    let plan = datafusion::logical_expr::LogicalPlanBuilder::scan(
        name,
        datafusion::datasource::provider_as_source(provider),
        None,
    )?
    .build()?;
    Ok(DataFrame::new(ctx.state(), plan))
}

/// A table as of `as_of`, or `None` when it did not exist then.
async fn open_as_of(
    path: &TableLocation,
    as_of: AsOf,
) -> Result<Option<deltalake::DeltaTable>, StoreError> {
    match as_of {
        AsOf::Latest => tables::open(path, None).await.map(Some),
        // A table created after the requested version has no such version;
        // leave it out rather than fail the whole query.
        AsOf::Version(v) => Ok(tables::open(path, Some(v)).await.ok()),
        AsOf::Timestamp(t) => {
            let mut table = tables::open(path, None).await?;
            match table.load_with_datetime(t).await {
                // Version 0 is the empty table made before its first
                // write: at that instant the table held no data yet, which
                // is not the same as data saying "none".
                Ok(()) if table.version() == Some(0) && table.get_file_uris()?.next().is_none() => {
                    Ok(None)
                }
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
