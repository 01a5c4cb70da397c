//! Delta Lake tables in the instance's data directory.
//!
//! Two layers: `raw` (one table per kind of received record, append-only) and
//! `canonical` (one table per object type of the model, derived from raw).
//! Every write is a Delta commit, so every table has a version history that
//! Spark, DuckDB or polars can read too.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use serde::Serialize;

pub use crate::location::{list_tables, table_location, TableLocation};
use crate::StoreError;

/// The application id under which raw appends record the last WAL sequence
/// they contain, so that a replay after a crash never appends a record twice.
pub const WAL_APP_ID: &str = "openfdp-wal";

/// Which layer a table lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Raw,
    Canonical,
}

impl Layer {
    pub fn dir_name(self) -> &'static str {
        match self {
            Layer::Raw => "raw",
            Layer::Canonical => "canonical",
        }
    }
}

/// Open a table, creating it empty with `schema` if it does not exist yet.
pub async fn open_or_create(
    at: &TableLocation,
    schema: SchemaRef,
) -> Result<DeltaTable, StoreError> {
    crate::location::ensure_registered();
    if let Some(dir) = at.local_path() {
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    }
    let table = DeltaTable::try_from_url(at.url().clone()).await?;
    if table.version().is_some() {
        return Ok(table);
    }
    let empty = RecordBatch::new_empty(schema);
    Ok(table
        .write(vec![empty])
        .with_save_mode(SaveMode::ErrorIfExists)
        .await?)
}

/// Open an existing table at its newest version, or at `version`.
pub async fn open(at: &TableLocation, version: Option<u64>) -> Result<DeltaTable, StoreError> {
    crate::location::ensure_registered();
    let mut table = DeltaTable::try_from_url(at.url().clone()).await?;
    if table.version().is_none() {
        return Err(StoreError::NoSuchTable(at.to_string()));
    }
    if let Some(v) = version {
        table.load_version(v).await?;
    }
    Ok(table)
}

/// Append raw records' batch, recording the highest WAL sequence it holds.
pub async fn append_raw(
    table: DeltaTable,
    batch: RecordBatch,
    last_seq: u64,
) -> Result<DeltaTable, StoreError> {
    let props = CommitProperties::default()
        .with_application_transaction(Transaction::new(WAL_APP_ID, last_seq as i64))
        .with_metadata([("openfdp.last_seq".to_string(), last_seq.into())]);
    Ok(table
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .with_commit_properties(props)
        .await?)
}

/// The highest WAL sequence already appended to a raw table.
pub async fn raw_watermark(table: &DeltaTable) -> Result<u64, StoreError> {
    let snapshot = table.snapshot()?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), WAL_APP_ID)
        .await?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

/// Replace a canonical table's contents with a newly derived state, noting in
/// the commit which raw versions it was derived from.
pub async fn overwrite(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    lineage: &Lineage,
) -> Result<DeltaTable, StoreError> {
    let lineage_json = serde_json::to_value(lineage).expect("lineage serialises");
    let batches = batches
        .into_iter()
        .map(without_metadata)
        .collect::<Result<Vec<_>, _>>()?;
    let props =
        CommitProperties::default().with_metadata([("openfdp.lineage".to_string(), lineage_json)]);
    // The model may gain properties between versions, and Delta's stored
    // types differ in small ways from the model's (list element names), so
    // a derived table takes the schema of the state that replaces it.
    Ok(table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_commit_properties(props)
        .await?)
}

/// The separator between a canonical table's name and the writer that owns
/// one part of it: `patient` is written by the ADT census, `patient@fhir` by
/// the FHIR source. One writer per Delta table means writers never conflict;
/// queries see the union of the parts under the plain name.
pub const PART_SEPARATOR: char = '@';

/// The directory name of `writer`'s part of canonical table `table`.
pub fn part_name(table: &str, writer: &str) -> String {
    format!("{table}{PART_SEPARATOR}{writer}")
}

/// The canonical table a directory belongs to, and its writer if it is a part.
pub fn split_part(name: &str) -> (&str, Option<&str>) {
    match name.split_once(PART_SEPARATOR) {
        Some((t, w)) => (t, Some(w)),
        None => (name, None),
    }
}

/// Commit properties recording what a commit was derived from and, under
/// `app_id`, how far through its source it reached, so a writer restarted
/// after a crash can tell what it still has to apply.
pub fn commit_properties(lineage: &Lineage, app_id: &str, reached: i64) -> CommitProperties {
    commit_properties_with(lineage, app_id, reached, [])
}

/// [`commit_properties`] with more commit metadata beside the lineage (Delta
/// replaces the metadata as a whole, so it must be given at once).
pub(crate) fn commit_properties_with(
    lineage: &Lineage,
    app_id: &str,
    reached: i64,
    more: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> CommitProperties {
    let lineage_json = serde_json::to_value(lineage).expect("lineage serialises");
    CommitProperties::default()
        .with_application_transaction(Transaction::new(app_id, reached))
        .with_metadata(std::iter::once(("openfdp.lineage".to_string(), lineage_json)).chain(more))
}

/// How far a table's writer under `app_id` had reached at its last commit.
pub async fn app_watermark(table: &DeltaTable, app_id: &str) -> Result<Option<i64>, StoreError> {
    let snapshot = table.snapshot()?;
    Ok(snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await?)
}

/// Append batches in one commit.
pub async fn append(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    props: CommitProperties,
) -> Result<DeltaTable, StoreError> {
    let batches = batches
        .into_iter()
        .map(without_metadata)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(table
        .write(batches)
        .with_save_mode(SaveMode::Append)
        .with_commit_properties(props)
        .await?)
}

/// Append large batches in one commit, encoding Parquet on every core: one
/// writer per core, each writing its own files, and one commit of all of
/// them. Delta's own write path encodes through a single writer, which
/// leaves a multi-core machine idle for most of a big load.
pub async fn append_parallel(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    lineage: &Lineage,
    app_id: &str,
) -> Result<DeltaTable, StoreError> {
    use deltalake::kernel::transaction::CommitBuilder;
    use deltalake::kernel::Action;
    use deltalake::protocol::DeltaOperation;
    use deltalake::writer::{DeltaWriter, RecordBatchWriter};

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = cores.min(batches.len());
    if workers <= 1 {
        return append(table, batches, commit_properties(lineage, app_id, 0)).await;
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut groups: Vec<Vec<RecordBatch>> = vec![Vec::new(); workers];
    for (i, b) in batches.into_iter().enumerate() {
        groups[i % workers].push(without_metadata(b)?);
    }
    let mut writing = tokio::task::JoinSet::new();
    for group in groups {
        let mut writer = RecordBatchWriter::for_table(&table)?;
        writing.spawn(async move {
            for b in group {
                writer.write(b).await?;
            }
            writer.flush().await
        });
    }
    let mut adds = Vec::new();
    while let Some(done) = writing.join_next().await {
        let files =
            done.map_err(|e| StoreError::Config(format!("a Parquet writer failed: {e}")))??;
        adds.extend(files.into_iter().map(Action::Add));
    }
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    // Delta's own writer records these; history shows rows written from them.
    let metrics = serde_json::json!({ "num_added_rows": rows, "num_added_files": adds.len() });
    let props = commit_properties_with(
        lineage,
        app_id,
        0,
        [("operationMetrics".to_string(), metrics)],
    );
    CommitBuilder::from(props)
        .with_actions(adds)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    let mut table = table;
    table.update_state().await?;
    Ok(table)
}

/// Replace a table's contents in one commit.
pub async fn replace(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    props: CommitProperties,
) -> Result<DeltaTable, StoreError> {
    let batches = batches
        .into_iter()
        .map(without_metadata)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_commit_properties(props)
        .await?)
}

/// Insert rows, replacing those whose `key` column matches, in one commit.
/// The rows must not repeat a key.
pub async fn upsert(
    table: DeltaTable,
    batch: RecordBatch,
    key: &str,
    props: CommitProperties,
) -> Result<DeltaTable, StoreError> {
    use datafusion::prelude::{col, SessionContext};
    let batch = without_metadata(batch)?;
    let columns: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let ctx = SessionContext::new();
    let source = ctx.read_batch(batch)?;
    let quoted = |c: &str| format!("\"{c}\"");
    let (table, _metrics) = table
        .merge(
            source,
            col(format!("target.{}", quoted(key))).eq(col(format!("source.{}", quoted(key)))),
        )
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(props)
        .when_matched_update(|mut u| {
            for c in &columns {
                u = u.update(
                    format!("target.{}", quoted(c)),
                    col(format!("source.{}", quoted(c))),
                );
            }
            u
        })?
        .when_not_matched_insert(|mut i| {
            for c in &columns {
                i = i.set(
                    format!("target.{}", quoted(c)),
                    col(format!("source.{}", quoted(c))),
                );
            }
            i
        })?
        .await?;
    Ok(table)
}

/// Delete the rows whose `key` column is one of `keys`, in one commit.
pub async fn delete_keys(
    table: DeltaTable,
    key: &str,
    keys: &[String],
    props: CommitProperties,
) -> Result<DeltaTable, StoreError> {
    use datafusion::prelude::{col, lit};
    let list = keys.iter().map(|k| lit(k.clone())).collect();
    let (table, _metrics) = table
        .delete()
        .with_predicate(col(format!("\"{key}\"")).in_list(list, false))
        .with_commit_properties(props)
        .await?;
    Ok(table)
}

/// The writer compares schemas exactly, metadata included, against the
/// schema it derives from the Delta log, which keeps none.
pub(crate) fn without_metadata(batch: RecordBatch) -> Result<RecordBatch, StoreError> {
    let fields: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    let schema = std::sync::Arc::new(deltalake::arrow::datatypes::Schema::new(fields));
    RecordBatch::try_new(schema, batch.columns().to_vec())
        .map_err(|e| StoreError::Config(format!("re-labelling a batch: {e}")))
}

/// Compact small files into larger ones when a table has more than
/// `max_files` active files. Returns how many files were rewritten.
pub async fn compact(table: DeltaTable, max_files: usize) -> Result<(DeltaTable, u64), StoreError> {
    let files = table.get_file_uris()?.count();
    if files <= max_files {
        return Ok((table, 0));
    }
    let (table, metrics) = table
        .optimize()
        .with_target_size(NonZeroU64::new(128 * 1024 * 1024).expect("non-zero"))
        .await?;
    Ok((table, metrics.num_files_removed))
}

/// What a canonical version was derived from: for each raw table, the WAL
/// sequence and the raw table version it had reached.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Lineage {
    /// The transform that produced the version, e.g. `hl7v2-adt`.
    pub transform: String,
    /// The source run (an import, a file load) that produced it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// On a raw commit: the derived tables its records are to update, so a
    /// writer restarted after a crash can tell which ones missed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Highest raw sequence number applied.
    pub through_seq: u64,
    /// Raw table name → the version of it that held `through_seq`.
    pub raw_versions: BTreeMap<String, u64>,
}

/// One entry of a table's history.
#[derive(Debug, Clone, Serialize)]
pub struct TableVersion {
    pub version: u64,
    pub timestamp_ms: Option<i64>,
    pub operation: Option<String>,
    pub rows_written: Option<i64>,
    pub lineage: Option<serde_json::Value>,
}

/// The newest `limit` versions of a table, newest first.
pub async fn history(table: &DeltaTable, limit: usize) -> Result<Vec<TableVersion>, StoreError> {
    use futures::StreamExt;
    let newest = table.version().unwrap_or(0);
    let infos: Vec<_> = table.history(Some(limit)).collect().await;
    let mut out = Vec::new();
    for (i, info) in infos.into_iter().enumerate() {
        let info = info?;
        let version = info
            .read_version
            .map(|v| v + 1)
            .unwrap_or(newest.saturating_sub(i as u64));
        let rows_written = info
            .info
            .get("operationMetrics")
            .and_then(|m| m.get("num_added_rows"))
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            });
        out.push(TableVersion {
            version,
            timestamp_ms: info.timestamp,
            operation: info.operation.clone(),
            rows_written,
            lineage: info.info.get("openfdp.lineage").cloned(),
        });
    }
    Ok(out)
}
