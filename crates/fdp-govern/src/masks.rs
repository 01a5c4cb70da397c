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
