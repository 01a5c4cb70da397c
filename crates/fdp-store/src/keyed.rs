//! Canonical tables written as changes.
//!
//! A derived table's writer hands over the whole new state each time, as it
//! knows it; this module commits only what differs from the state it wrote
//! last. It remembers, for each primary key, a digest of the row and the
//! Parquet file that holds it. A new state is compared row by row: only the
//! files holding changed or removed rows are rewritten, and new and changed
//! rows go to files of their own, so the rows that keep changing (a patient
//! still in a bed) gather in a few small files while finished ones settle
//! into files that are never touched again. The commit removes the touched
//! files and adds the new ones in one Delta version, recorded as a `MERGE`
//! on the key, so any Delta reader sees a table that changed row by row.
//!
//! The first write after a start, a table whose columns changed, and a state
//! in which more than half the rows changed are written whole: the writer's
//! memory of the files is not kept across restarts, and a table written
//! mostly anew is cheaper to write as a whole. Small files left by updates
//! are gathered into the next commit once there are enough of them.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use deltalake::arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::{cast, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::{DeltaOperation, MergePredicate, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTable;
use serde::Serialize;

use crate::tables::{self, Lineage};
use crate::StoreError;

/// Rows per Parquet file written. Small enough that rewriting a file for one
/// changed row is cheap, large enough that a year's table is a few hundred
/// files.
pub const ROWS_PER_FILE: usize = 8192;

/// Files under a quarter of [`ROWS_PER_FILE`] count as small; once there are
/// more than this many, the next commit gathers them.
const MAX_SMALL_FILES: usize = 16;

/// What one write of a derived state did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSummary {
    /// The version committed, or `None` when nothing had changed.
    pub version: Option<u64>,
    /// Written whole (first write after a start, new columns, or most rows
    /// changed) rather than as changes.
    pub whole: bool,
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Rows encoded into new files: the changed ones and those sharing a
    /// file with them.
    pub rows_written: usize,
    pub files_added: usize,
    pub files_removed: usize,
    /// Rows in the table after the write.
    pub rows: usize,
}

/// Where the writer last left a table: the version, and for each file the
/// keys it holds.
#[derive(Debug, Default)]
pub struct Layout {
    version: u64,
    columns: Vec<(String, DataType)>,
    files: HashMap<u32, FileEntry>,
    rows: HashMap<String, RowAt>,
    next_file: u32,
}

#[derive(Debug)]
struct FileEntry {
    add: Add,
    keys: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct RowAt {
    digest: u64,
    file: u32,
}

impl Layout {
    /// Active files this writer knows of.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Remember a file just written and the rows (indices into the state)
    /// it holds.
    fn record_file(&mut self, add: Add, rows: &[u32], keys: &[String], digests: &[u64]) {
        let id = self.next_file;
        self.next_file += 1;
        let mut file_keys = Vec::with_capacity(rows.len());
        for &i in rows {
            let k = keys[i as usize].clone();
            self.rows.insert(
                k.clone(),
                RowAt {
                    digest: digests[i as usize],
                    file: id,
                },
            );
            file_keys.push(k);
        }
        self.files.insert(
            id,
            FileEntry {
                add,
                keys: file_keys,
            },
        );
    }
}

/// Write `state`, the whole new content of the table at `table`, as changes
/// against `layout` (what this writer committed last), updating `layout`.
/// `key` names the primary key column; keys must be unique.
pub async fn write_state(
    table: DeltaTable,
    layout: &mut Option<Layout>,
    state: RecordBatch,
    key: &str,
    lineage: &Lineage,
) -> Result<ChangeSummary, StoreError> {
    let state = tables::without_metadata(state)?;
    let (keys, digests) = keys_and_digests(&state, key)?;
    let columns = column_types(state.schema_ref());
    let version = table.version().unwrap_or(0);
    let table_columns = column_types(&table.snapshot()?.snapshot().arrow_schema());

    if table_columns != columns {
        // New or changed columns: Delta's own overwrite replaces the schema.
        // The layout is unknown afterwards, so the next write is whole too.
        let table = tables::overwrite(table, vec![state], lineage).await?;
        *layout = None;
        return Ok(ChangeSummary {
            version: table.version(),
            whole: true,
            inserted: keys.len(),
            rows_written: keys.len(),
            rows: keys.len(),
            ..Default::default()
        });
    }
    let unique = {
        let mut seen = HashSet::with_capacity(keys.len());
        keys.iter().all(|k| seen.insert(k.as_str()))
    };
    let known = layout
        .as_ref()
        .filter(|l| unique && l.version == version && l.columns == columns);
    let Some(known) = known else {
        if !unique {
            tracing::warn!(key, "a derived state repeats a key; writing it whole");
        }
        return write_whole(
            table, layout, state, keys, digests, columns, lineage, unique,
        )
        .await;
    };

    let plan = plan_changes(known, &keys, &digests);
    if plan.inserted + plan.updated + plan.deleted == 0 {
        return Ok(ChangeSummary {
            version: None,
            rows: keys.len(),
            ..Default::default()
        });
    }
    if 2 * (plan.cold.len() + plan.hot.len()) > keys.len().max(1) {
        return write_whole(table, layout, state, keys, digests, columns, lineage, true).await;
    }
    let known = layout.as_mut().expect("checked above");
    let mut actions: Vec<Action> = plan
        .touched
        .iter()
        .map(|f| Action::Remove(remove_for(&known.files[f].add)))
        .collect();
    let mut new_files = Vec::new();
    for rows in [&plan.cold, &plan.hot] {
        for chunk in rows.chunks(ROWS_PER_FILE) {
            let add = write_file(&table, &state, chunk).await?;
            actions.push(Action::Add(add.clone()));
            new_files.push((add, chunk.to_vec()));
        }
    }
    let summary = ChangeSummary {
        version: None,
        whole: false,
        inserted: plan.inserted,
        updated: plan.updated,
        deleted: plan.deleted,
        rows_written: plan.cold.len() + plan.hot.len(),
        files_added: new_files.len(),
        files_removed: plan.touched.len(),
        rows: keys.len(),
    };
    let predicate = format!("target.\"{key}\" = source.\"{key}\"");
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(predicate),
        matched_predicates: vec![
            MergePredicate {
                action_type: "update".into(),
                predicate: None,
            },
            MergePredicate {
                action_type: "delete".into(),
                predicate: Some("source row absent".into()),
            },
        ],
        not_matched_predicates: vec![MergePredicate {
            action_type: "insert".into(),
            predicate: None,
        }],
        not_matched_by_source_predicates: Vec::new(),
    };
    let new_version = commit(&table, actions, operation, lineage, &summary).await?;

    for f in &plan.touched {
        if let Some(gone) = known.files.remove(f) {
            for k in gone.keys {
                known.rows.remove(&k);
            }
        }
    }
    for (add, rows) in new_files {
        known.record_file(add, &rows, &keys, &digests);
    }
    known.version = new_version;
    Ok(ChangeSummary {
        version: Some(new_version),
        ..summary
    })
}

/// What a new state changes against a layout, as row indices into the state.
struct Plan {
    /// Files to remove: those holding a changed or deleted row, and the small
    /// ones when there are too many.
    touched: Vec<u32>,
    /// Unchanged rows that lived in a touched file.
    cold: Vec<u32>,
    /// New and changed rows.
    hot: Vec<u32>,
    inserted: usize,
    updated: usize,
    deleted: usize,
}

fn plan_changes(layout: &Layout, keys: &[String], digests: &[u64]) -> Plan {
    let mut touched = HashSet::new();
    let mut hot = Vec::new();
    let (mut inserted, mut updated) = (0, 0);
    let mut index = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        index.insert(k.as_str(), i as u32);
        match layout.rows.get(k) {
            None => {
                inserted += 1;
                hot.push(i as u32);
            }
            Some(at) if at.digest != digests[i] => {
                updated += 1;
                touched.insert(at.file);
                hot.push(i as u32);
            }
            Some(_) => {}
        }
    }
    let mut deleted = 0;
    for (k, at) in &layout.rows {
        if !index.contains_key(k.as_str()) {
            deleted += 1;
            touched.insert(at.file);
        }
    }
    let small: Vec<u32> = layout
        .files
        .iter()
        .filter(|(_, f)| f.keys.len() < ROWS_PER_FILE / 4)
        .map(|(id, _)| *id)
        .collect();
    if small.len() > MAX_SMALL_FILES {
        touched.extend(small);
    }
    let mut touched: Vec<u32> = touched.into_iter().collect();
    touched.sort_unstable();
    let hot_set: HashSet<u32> = hot.iter().copied().collect();
    let mut cold = Vec::new();
    for f in &touched {
        for k in &layout.files[f].keys {
            if let Some(&i) = index.get(k.as_str()) {
                if !hot_set.contains(&i) {
                    cold.push(i);
                }
            }
        }
    }
    cold.sort_unstable();
    Plan {
        touched,
        cold,
        hot,
        inserted,
        updated,
        deleted,
    }
}

/// Replace every file of the table with the state, in files of
/// [`ROWS_PER_FILE`] rows, and remember where each row went.
#[allow(clippy::too_many_arguments)]
async fn write_whole(
    table: DeltaTable,
    layout: &mut Option<Layout>,
    state: RecordBatch,
    keys: Vec<String>,
    digests: Vec<u64>,
    columns: Vec<(String, DataType)>,
    lineage: &Lineage,
    remember: bool,
) -> Result<ChangeSummary, StoreError> {
    let mut actions: Vec<Action> = table
        .snapshot()?
        .log_data()
        .iter()
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect();
    let files_removed = actions.len();
    let all: Vec<u32> = (0..state.num_rows() as u32).collect();
    let mut new_layout = Layout {
        columns,
        ..Default::default()
    };
    let mut files_added = 0;
    for chunk in all.chunks(ROWS_PER_FILE) {
        let add = write_file(&table, &state, chunk).await?;
        actions.push(Action::Add(add.clone()));
        files_added += 1;
        new_layout.record_file(add, chunk, &keys, &digests);
    }
    let summary = ChangeSummary {
        version: None,
        whole: true,
        inserted: keys.len(),
        updated: 0,
        deleted: 0,
        rows_written: keys.len(),
        files_added,
        files_removed,
        rows: keys.len(),
    };
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: None,
        predicate: None,
    };
    let version = commit(&table, actions, operation, lineage, &summary).await?;
    new_layout.version = version;
    *layout = remember.then_some(new_layout);
    Ok(ChangeSummary {
        version: Some(version),
        ..summary
    })
}

/// Encode the given rows of `state` as one Parquet file of the table.
async fn write_file(
    table: &DeltaTable,
    state: &RecordBatch,
    rows: &[u32],
) -> Result<Add, StoreError> {
    let indices = UInt32Array::from(rows.to_vec());
    let batch = take_record_batch(state, &indices)
        .map_err(|e| StoreError::Config(format!("selecting rows to write: {e}")))?;
    let mut writer = RecordBatchWriter::for_table(table)?;
    writer.write(batch).await?;
    let mut adds = writer.flush().await?;
    match adds.len() {
        1 => Ok(adds.remove(0)),
        n => Err(StoreError::Config(format!(
            "expected one Parquet file for {} rows, the writer made {n}",
            rows.len()
        ))),
    }
}

fn remove_for(add: &Add) -> Remove {
    Remove {
        path: add.path.clone(),
        data_change: true,
        deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
        extended_file_metadata: Some(true),
        partition_values: Some(add.partition_values.clone()),
        size: Some(add.size),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

async fn commit(
    table: &DeltaTable,
    actions: Vec<Action>,
    operation: DeltaOperation,
    lineage: &Lineage,
    summary: &ChangeSummary,
) -> Result<u64, StoreError> {
    // Delta's own writers record these; `DESCRIBE HISTORY` shows them.
    let metrics = serde_json::json!({
        "num_added_rows": summary.rows_written,
        "num_target_rows_inserted": summary.inserted,
        "num_target_rows_updated": summary.updated,
        "num_target_rows_deleted": summary.deleted,
        "num_target_rows_copied": summary.rows_written - summary.inserted.min(summary.rows_written) - summary.updated,
        "num_target_files_added": summary.files_added,
        "num_target_files_removed": summary.files_removed,
    });
    let props = tables::commit_properties_with(
        lineage,
        "openfdp-canonical",
        lineage.through_seq as i64,
        [("operationMetrics".to_string(), metrics)],
    );
    let done = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    Ok(done.version())
}

/// Each row's key as text, and a digest of the whole row.
fn keys_and_digests(state: &RecordBatch, key: &str) -> Result<(Vec<String>, Vec<u64>), StoreError> {
    let text = key_text(state, key)?;
    let keys = (0..text.len())
        .map(|i| {
            if text.is_null(i) {
                Err(StoreError::Config(format!(
                    "row {} of the derived state has no {key}",
                    i + 1
                )))
            } else {
                Ok(text.value(i).to_string())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fields = state
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)
        .map_err(|e| StoreError::Config(format!("comparing rows: {e}")))?;
    let rows = converter
        .convert_columns(state.columns())
        .map_err(|e| StoreError::Config(format!("comparing rows: {e}")))?;
    let digests = rows
        .iter()
        .map(|r| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r.as_ref().hash(&mut h);
            h.finish()
        })
        .collect();
    Ok((keys, digests))
}

/// Column names and types, with list element names left out: Delta stores
/// them under its own name.
fn column_types(schema: &SchemaRef) -> Vec<(String, DataType)> {
    fn plain(t: &DataType) -> DataType {
        match t {
            DataType::List(f) | DataType::LargeList(f) => DataType::List(Arc::new(
                deltalake::arrow::datatypes::Field::new("item", plain(f.data_type()), true),
            )),
            other => other.clone(),
        }
    }
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), plain(f.data_type())))
        .collect()
}

/// The schema of a table as the writer sees it, for callers creating one.
pub fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<_>>(),
    ))
}

/// Which keys each file of an appended table (an archive part) holds, read
/// from each file once. With it, deleting a few keys rewrites only the files
/// that hold them, in one commit, rather than scanning and rewriting the
/// table once per slice of keys.
#[derive(Debug, Default)]
pub struct FileKeys {
    column: String,
    /// File path (relative to the table) to the hashes of the keys in it.
    /// A hash that collides costs a file read, never a wrong delete: rows
    /// are compared by value before they are dropped.
    files: HashMap<String, HashSet<u64>>,
}

impl FileKeys {
    /// Files whose keys are known.
    pub fn files(&self) -> usize {
        self.files.len()
    }
}

/// What a delete by key did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeleteSummary {
    /// The version committed, or `None` when no row matched.
    pub version: Option<u64>,
    pub deleted: usize,
    /// Rows of the touched files kept, and so written again.
    pub rows_written: usize,
    pub files_removed: usize,
    pub files_added: usize,
    /// Files whose keys had to be read (not yet known to `index`).
    pub files_read: usize,
}

fn key_hash(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Delete the rows whose `key` column is one of `keys`, rewriting only the
/// files that hold one, in one Delta `DELETE` commit with the lineage and
/// the application watermark `(app_id, reached)`.
pub async fn delete_keys(
    table: DeltaTable,
    index: &mut FileKeys,
    key: &str,
    keys: &[String],
    lineage: &Lineage,
    (app_id, reached): (&str, i64),
) -> Result<DeleteSummary, StoreError> {
    if index.column != key {
        *index = FileKeys {
            column: key.to_string(),
            ..Default::default()
        };
    }
    let wanted: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let hashes: HashSet<u64> = wanted.iter().map(|k| key_hash(k)).collect();
    let snapshot = table.snapshot()?;
    let files: Vec<_> = snapshot.log_data().iter().collect();
    // Forget files no longer in the table (compacted, or rewritten here).
    let active: HashSet<String> = files.iter().map(|f| f.path().into_owned()).collect();
    index.files.retain(|p, _| active.contains(p));
    let store = table.object_store();
    let mut summary = DeleteSummary::default();
    for f in &files {
        if let std::collections::hash_map::Entry::Vacant(e) =
            index.files.entry(f.path().into_owned())
        {
            let batch = read_file(&store, f, Some(key)).await?;
            let column = key_text(&batch, key)?;
            e.insert(
                (0..column.len())
                    .filter(|&i| !column.is_null(i))
                    .map(|i| key_hash(column.value(i)))
                    .collect(),
            );
            summary.files_read += 1;
        }
    }
    let mut actions = Vec::new();
    let mut rewritten = Vec::new();
    for f in &files {
        let path = f.path().into_owned();
        if index.files[&path].is_disjoint(&hashes) {
            continue;
        }
        let batch = read_file(&store, f, None).await?;
        let column = key_text(&batch, key)?;
        let kept: Vec<u32> = (0..column.len())
            .filter(|&i| column.is_null(i) || !wanted.contains(column.value(i)))
            .map(|i| i as u32)
            .collect();
        if kept.len() == batch.num_rows() {
            continue;
        }
        summary.deleted += batch.num_rows() - kept.len();
        summary.files_removed += 1;
        actions.push(Action::Remove(f.remove_action(true)));
        if !kept.is_empty() {
            let batch = conform(&table, batch)?;
            let add = write_file(&table, &batch, &kept).await?;
            summary.rows_written += kept.len();
            summary.files_added += 1;
            rewritten.push((add.path.clone(), column_hashes(&batch, key, &kept)?));
            actions.push(Action::Add(add));
        }
    }
    if actions.is_empty() {
        return Ok(summary);
    }
    let metrics = serde_json::json!({
        "num_deleted_rows": summary.deleted,
        "num_copied_rows": summary.rows_written,
        "num_added_files": summary.files_added,
        "num_removed_files": summary.files_removed,
    });
    let props = tables::commit_properties_with(
        lineage,
        app_id,
        reached,
        [("operationMetrics".to_string(), metrics)],
    );
    let operation = DeltaOperation::Delete {
        predicate: Some(format!("\"{key}\" IN ({} keys)", wanted.len())),
    };
    let done = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    for (path, set) in rewritten {
        index.files.insert(path, set);
    }
    Ok(DeleteSummary {
        version: Some(done.version()),
        ..summary
    })
}

/// One data file of a table as a single batch, or only its `column`.
async fn read_file(
    store: &deltalake::logstore::ObjectStoreRef,
    file: &deltalake::kernel::LogicalFileView,
    column: Option<&str>,
) -> Result<RecordBatch, StoreError> {
    use deltalake::logstore::object_store::ObjectStoreExt;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use deltalake::parquet::arrow::ProjectionMask;
    let failed = |e: &dyn std::fmt::Display| {
        StoreError::Config(format!("reading data file {}: {e}", file.path()))
    };
    // Files are at most a few megabytes: read each whole, then decode.
    let bytes = store
        .get(&file.object_store_path())
        .await
        .map_err(|e| failed(&e))?
        .bytes()
        .await
        .map_err(|e| failed(&e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| failed(&e))?;
    if let Some(c) = column {
        let mask = ProjectionMask::columns(builder.parquet_schema(), [c]);
        builder = builder.with_projection(mask);
    }
    let schema = builder.schema().clone();
    let batches = builder
        .build()
        .map_err(|e| failed(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&e))?;
    let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
    deltalake::arrow::compute::concat_batches(&schema, &batches).map_err(|e| failed(&e))
}

/// A batch read back from a file, labelled as the table's writer expects.
fn conform(table: &DeltaTable, batch: RecordBatch) -> Result<RecordBatch, StoreError> {
    let schema = plain_schema(&table.snapshot()?.snapshot().arrow_schema());
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column_by_name(f.name()).ok_or_else(|| {
                StoreError::Config(format!("a data file lacks column {}", f.name()))
            })?;
            cast(c, f.data_type())
                .map_err(|e| StoreError::Config(format!("reading column {}: {e}", f.name())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
        .map_err(|e| StoreError::Config(format!("re-labelling a data file: {e}")))
}

/// A batch's key column as text, whatever its type.
fn key_text(batch: &RecordBatch, key: &str) -> Result<StringArray, StoreError> {
    let column = batch
        .column_by_name(key)
        .ok_or_else(|| StoreError::Config(format!("no key column {key} in the rows")))?;
    let text = cast(column, &DataType::Utf8)
        .map_err(|e| StoreError::Config(format!("reading key column {key}: {e}")))?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 gives a StringArray")
        .clone())
}

fn column_hashes(batch: &RecordBatch, key: &str, rows: &[u32]) -> Result<HashSet<u64>, StoreError> {
    let column = key_text(batch, key)?;
    Ok(rows
        .iter()
        .filter(|&&i| !column.is_null(i as usize))
        .map(|&i| key_hash(column.value(i as usize)))
        .collect())
}
