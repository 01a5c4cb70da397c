//! Tables held in memory: a [`TableSource`] for testing a product, or any
//! query, behind real governance without a data directory's store.
//!
//! Rows are given as JSON objects and typed by the canonical model's schema
//! for the table, so a test writes what the model calls things and gets the
//! same types a stored table has. Governance compiles its policy over these
//! tables exactly as over stored ones (row rules as plan filters, since
//! nothing here is a stored file).
//!
//! ```
//! use fdp_govern::memory::MemoryTables;
//! use serde_json::json;
//!
//! let tables = MemoryTables::new()
//!     .with_rows("ward", &[json!({"ward_id": "RXX:W1", "ward_code": "W1"})])
//!     .unwrap();
//! assert_eq!(tables.len(), 1);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use fdp_model::Model;

use crate::access::{AsOf, SourceTable, TableAccess, TableSource};

/// Why rows could not be held.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("{0} is not a table of the canonical model")]
    UnknownTable(String),
    #[error("{table}: the rows do not fit the model's schema: {message}")]
    Rows { table: String, message: String },
}

/// Canonical tables in memory, by name.
#[derive(Debug, Clone, Default)]
pub struct MemoryTables {
    tables: BTreeMap<String, (SchemaRef, Vec<RecordBatch>)>,
}

impl MemoryTables {
    pub fn new() -> MemoryTables {
        MemoryTables::default()
    }

    /// Add `rows` (JSON objects keyed by column) to the model's `table`;
    /// a column left out is null.
    pub fn with_rows(
        mut self,
        table: &str,
        rows: &[serde_json::Value],
    ) -> Result<MemoryTables, MemoryError> {
        let object = Model::canonical()
            .object_type_by_table(table)
            .ok_or_else(|| MemoryError::UnknownTable(table.to_string()))?;
        let schema: SchemaRef = Arc::new(object.arrow_schema());
        let fail = |message: String| MemoryError::Rows {
            table: table.to_string(),
            message,
        };
        // Strict: a column the model does not have is a mistake to name.
        let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_strict_mode(true)
            .build_decoder()
            .map_err(|e| fail(e.to_string()))?;
        decoder.serialize(rows).map_err(|e| fail(e.to_string()))?;
        let batch = decoder
            .flush()
            .map_err(|e| fail(e.to_string()))?
            .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
        self.tables
            .entry(table.to_string())
            .or_insert_with(|| (schema, Vec::new()))
            .1
            .push(batch);
        Ok(self)
    }

    /// How many tables are held.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl TableSource for MemoryTables {
    type Error = datafusion::error::DataFusionError;

    async fn canonical_tables(
        &self,
        _access: &TableAccess,
        _ctx: &SessionContext,
        _as_of: AsOf,
    ) -> Result<Vec<SourceTable>, Self::Error> {
        self.tables
            .iter()
            .map(|(name, (schema, batches))| {
                Ok(SourceTable {
                    name: name.clone(),
                    provider: Arc::new(MemTable::try_new(schema.clone(), vec![batches.clone()])?),
                    masking: None,
                    versions: vec![(name.clone(), 0)],
                })
            })
            .collect()
    }

    async fn raw_tables(
        &self,
        _access: &TableAccess,
        _ctx: &SessionContext,
        _as_of: AsOf,
    ) -> Result<Vec<SourceTable>, Self::Error> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_are_typed_by_the_model_and_bad_ones_named() {
        let tables = MemoryTables::new()
            .with_rows(
                "admission",
                &[json!({"admission_id": "A1", "admission_timestamp": "2026-11-20T08:00:00Z"})],
            )
            .unwrap();
        assert_eq!(tables.len(), 1);
        let e = MemoryTables::new()
            .with_rows("no_such", &[json!({})])
            .unwrap_err();
        assert!(e.to_string().contains("no_such"), "{e}");
        let e = MemoryTables::new()
            .with_rows(
                "admission",
                &[json!({"admission_id": "A1", "admission_timestamp": "yesterday"})],
            )
            .unwrap_err();
        assert!(e.to_string().contains("admission"), "{e}");
        let e = MemoryTables::new()
            .with_rows(
                "admission",
                &[json!({"admission_id": "A1", "not_a_column": 1})],
            )
            .unwrap_err();
        assert!(e.to_string().contains("not_a_column"), "{e}");
    }
}
