//! The policy's row rules evaluated once per stored file.
//!
//! The national data opt-out and the restricted-view rule decide on
//! columns (patient ids, `rv_group_ids`) that most questions never ask
//! for. Put into the plan as filters, every query would read and test
//! them on every row: on ten million encounters that is most of the cost
//! of a governed aggregate. Stored files never change, so whether a row
//! passes a given rule never changes either. This cache holds, per file
//! and rule, which rows pass, and the store scans each file reading only
//! those rows. A new table version adds files; only those are evaluated.
//!
//! The rule is the same expression the plan filter would be, evaluated by
//! the same engine, so both ways give the same rows (a test compares
//! them); a row whose rule evaluates to null is left out, as a filter
//! would leave it out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::compute::{concat, prep_null_mask_filter};
use datafusion::catalog::TableProvider;
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::{Expr, SessionContext};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::access::{RowMasking, StoredFile};

/// At most this many rows' answers are kept (one bit each, 128 MiB);
/// past it the cache starts again empty.
const MAX_ROWS: usize = 1 << 30;

/// Which rows of which file pass which rule.
#[derive(Default)]
pub(crate) struct MaskCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_file: HashMap<(StoredFile, [u8; 32]), Arc<BooleanArray>>,
    rows: usize,
    /// Per file and patient column: see [`RowBound`].
    bounds: HashMap<(StoredFile, String), RowBound>,
}

/// How many rows one patient can have in a table, at most, and how many
/// rows name no patient: enough to prove from a group's rows alone that
/// enough patients stand behind it (see `behind`). For a table, the sum
/// over its files: a patient's rows in the table are at most the sum of
/// their most in each file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RowBound {
    pub most_per_patient: u64,
    pub without_patient: u64,
}

impl std::ops::Add for RowBound {
    type Output = RowBound;
    fn add(self, o: RowBound) -> RowBound {
        RowBound {
            most_per_patient: self.most_per_patient + o.most_per_patient,
            without_patient: self.without_patient + o.without_patient,
        }
    }
}

impl MaskCache {
    /// The table scanned with only the rows for which `rule` is true.
    pub(crate) async fn scan_keeping(
        &self,
        table: &dyn RowMasking,
        rule: &Expr,
        ctx: &SessionContext,
    ) -> Result<Arc<dyn TableProvider>> {
        // The rule's text names the opted-out patients and the granted
        // groups, so a changed list or grant is a different rule.
        let digest: [u8; 32] = Sha256::digest(format!("{rule:?}").as_bytes()).into();
        let mut columns: Vec<String> = rule
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .collect();
        columns.sort();
        let files = table.files();
        let keep: HashMap<StoredFile, Arc<BooleanArray>> = futures::stream::iter(files)
            .map(|file| {
                let columns = &columns;
                async move {
                    if let Some(mask) = self.get(&file, &digest) {
                        return Ok((file, mask));
                    }
                    let mask = Arc::new(evaluate(table, &file, columns, rule, ctx).await?);
                    self.put(file.clone(), digest, mask.clone());
                    Ok::<_, DataFusionError>((file, mask))
                }
            })
            .buffer_unordered(4)
            .try_collect()
            .await?;
        table.keeping(&keep)
    }

    /// The [`RowBound`] of `table` by its patient column `key`: each file
    /// read once (its key column only) and kept, since files never change.
    pub(crate) async fn row_bound(&self, table: &dyn RowMasking, key: &str) -> Result<RowBound> {
        let columns = [key.to_string()];
        let bounds: Vec<RowBound> = futures::stream::iter(table.files())
            .map(|file| {
                let columns = &columns;
                async move {
                    let at = (file, key.to_string());
                    let known = {
                        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                        inner.bounds.get(&at).copied()
                    };
                    if let Some(b) = known {
                        return Ok(b);
                    }
                    let batches = table.read_file(&at.0, columns).await?;
                    let b = file_bound(&batches)?;
                    let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                    inner.bounds.insert(at, b);
                    Ok::<_, DataFusionError>(b)
                }
            })
            .buffer_unordered(4)
            .try_collect()
            .await?;
        Ok(bounds.into_iter().fold(RowBound::default(), |a, b| a + b))
    }

    fn get(&self, file: &StoredFile, digest: &[u8; 32]) -> Option<Arc<BooleanArray>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_file.get(&(file.clone(), *digest)).cloned()
    }

    fn put(&self, file: StoredFile, digest: [u8; 32], mask: Arc<BooleanArray>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.rows + mask.len() > MAX_ROWS {
            inner.by_file.clear();
            inner.rows = 0;
        }
        inner.rows += mask.len();
        inner.by_file.insert((file, digest), mask);
    }
}

/// One file's [`RowBound`] from its patient column. Keys are counted by a
/// 64-bit hash: two patients hashing alike count as one with both's rows,
/// which can only make the bound larger, the safe direction.
fn file_bound(batches: &[datafusion::arrow::array::RecordBatch]) -> Result<RowBound> {
    let mut rows: HashMap<u64, u64> = HashMap::new();
    let mut without_patient = 0;
    let state = datafusion::common::hash_utils::RandomState::with_seed(0);
    for b in batches {
        let keys = b.column(0);
        let mut hashes = vec![0u64; keys.len()];
        datafusion::common::hash_utils::create_hashes([keys], &state, &mut hashes)?;
        for (row, h) in hashes.into_iter().enumerate() {
            if keys.is_null(row) {
                without_patient += 1;
            } else {
                *rows.entry(h).or_default() += 1;
            }
        }
    }
    Ok(RowBound {
        most_per_patient: rows.values().copied().max().unwrap_or(0),
        without_patient,
    })
}

/// The rule over every row of one file, nulls as false.
async fn evaluate(
    table: &dyn RowMasking,
    file: &StoredFile,
    columns: &[String],
    rule: &Expr,
    ctx: &SessionContext,
) -> Result<BooleanArray> {
    let batches = table.read_file(file, columns).await?;
    let Some(first) = batches.first() else {
        return Ok(BooleanArray::from(Vec::<bool>::new()));
    };
    // One file's batches share its schema: plan the rule once (its opt-out
    // list is a set built when planned).
    let schema = DFSchema::try_from(first.schema().as_ref().clone())?;
    let expr = ctx.create_physical_expr(rule.clone(), &schema)?;
    let mut parts = Vec::with_capacity(batches.len());
    for batch in &batches {
        let value = expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let passes = value.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("row rule {rule} is not a condition"))
        })?;
        parts.push(if passes.null_count() > 0 {
            prep_null_mask_filter(passes)
        } else {
            passes.clone()
        });
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|p| p as &dyn Array).collect();
    Ok(concat(&refs)?.as_boolean().clone())
}
