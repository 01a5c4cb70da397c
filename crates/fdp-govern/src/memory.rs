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

    /// Add `batches` (as a mapping or the store made them, with the
    /// model's columns for `table`) to the model's `table`.
    pub fn with_batches(
        mut self,
        table: &str,
        batches: Vec<RecordBatch>,
    ) -> Result<MemoryTables, MemoryError> {
        let object = Model::canonical()
            .object_type_by_table(table)
            .ok_or_else(|| MemoryError::UnknownTable(table.to_string()))?;
        let schema: SchemaRef = Arc::new(object.arrow_schema());
        for b in &batches {
            let names = |s: &datafusion::arrow::datatypes::Schema| {
                s.fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect::<Vec<_>>()
            };
            if names(&b.schema()) != names(&schema) {
                return Err(MemoryError::Rows {
                    table: table.to_string(),
                    message: "a batch's columns are not the model's".into(),
                });
            }
        }
        let entry = self
            .tables
            .entry(table.to_string())
            .or_insert_with(|| (schema.clone(), Vec::new()));
        for b in batches {
            entry.1.push(
                b.with_schema(schema.clone())
                    .map_err(|e| MemoryError::Rows {
                        table: table.to_string(),
                        message: e.to_string(),
                    })?,
            );
        }
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

    fn session_request(role: &str, purpose: crate::Purpose) -> crate::SessionRequest {
        let principal = crate::Principal {
            name: format!("a {role}"),
            roles: vec![role.to_string()],
            organisation: Some("RXX".into()),
        };
        crate::SessionRequest::new(principal, purpose, "ui")
    }

    #[tokio::test]
    async fn a_granted_table_nothing_has_written_reads_as_empty_and_an_answer_can_be_held() {
        let dir = tempfile::tempdir().unwrap();
        let policy = crate::Policy::demo(Model::canonical());
        let governance = crate::Governance::open(dir.path(), policy, "RXX", None).unwrap();
        let tables = MemoryTables::new()
            .with_rows(
                "admission",
                &[
                    json!({"admission_id": "A1", "admission_timestamp": "2026-11-20T08:00:00Z"}),
                    json!({"admission_id": "A2", "admission_timestamp": "2026-11-21T08:00:00Z"}),
                ],
            )
            .unwrap();
        let session = governance
            .session(
                &tables,
                session_request("clinician", crate::Purpose::DirectCare),
            )
            .await
            .unwrap();
        // No procedure has been written: none, not an error.
        let none = session
            .query("SELECT count(*) AS n FROM procedure")
            .await
            .unwrap();
        assert_eq!(none.rows_json().unwrap(), json!([{"n": 0}]));
        // An answer held is a table for the session's next queries, and
        // goes when the guard does.
        {
            let _held = session
                .hold("recent", "SELECT admission_id FROM admission WHERE admission_timestamp > TIMESTAMP '2026-11-21T00:00:00Z'")
                .await
                .unwrap();
            let n = session
                .query("SELECT count(*) AS n FROM recent")
                .await
                .unwrap();
            assert_eq!(n.rows_json().unwrap(), json!([{"n": 1}]));
            // A name the session already has cannot be taken.
            assert!(session.hold("admission", "SELECT 1").await.is_err());
        }
        // An answer of many batches, dealt across the session's
        // partitions, is held whole.
        {
            let _held = session
                .hold("many", "SELECT value FROM generate_series(1, 200000)")
                .await
                .unwrap();
            let n = session
                .query("SELECT count(*) AS n, sum(value) AS total, count(DISTINCT value) AS distinct_values FROM many")
                .await
                .unwrap();
            assert_eq!(
                n.rows_json().unwrap(),
                json!([{"n": 200000, "total": 20000100000_i64, "distinct_values": 200000}])
            );
        }
        assert!(session.query("SELECT * FROM recent").await.is_err());
        // Under disclosure control nothing is held.
        let planning = governance
            .session(
                &tables,
                session_request("analyst", crate::Purpose::Planning),
            )
            .await
            .unwrap();
        let e = planning
            .hold("recent", "SELECT admission_id FROM admission")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("disclosure control"), "{e}");
        // Nor profiled as it would be held.
        let e = planning
            .profile_hold("SELECT admission_id FROM admission")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("disclosure control"), "{e}");
    }

    /// A held answer is planned in a context of its own (larger batches):
    /// it must see no more than the session's questions do, and change
    /// nothing.
    #[tokio::test]
    async fn a_held_answer_reads_only_what_the_grant_shows_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let policy = crate::Policy::demo(Model::canonical());
        let governance = crate::Governance::open(dir.path(), policy, "RXX", None).unwrap();
        let tables = MemoryTables::new()
            .with_rows("admission", &[json!({"admission_id": "A1"})])
            .unwrap();
        // The waiting-list manager is granted the list, not admissions.
        let session = governance
            .session(
                &tables,
                session_request("waiting-list-manager", crate::Purpose::DirectCare),
            )
            .await
            .unwrap();
        for sql in [
            "SELECT admission_id FROM admission",
            "SELECT * FROM datafusion.public.admission",
        ] {
            let e = session.hold("seen", sql).await.unwrap_err();
            assert!(e.to_string().contains("admission"), "{sql}: {e}");
            let e = session.profile_hold(sql).await.unwrap_err();
            assert!(e.to_string().contains("admission"), "{sql}: {e}");
        }
        let _listed = session
            .hold(
                "listed",
                "SELECT table_name FROM information_schema.tables WHERE table_name = 'admission'",
            )
            .await
            .unwrap();
        let n = session
            .query("SELECT count(*) AS n FROM listed")
            .await
            .unwrap();
        assert_eq!(n.rows_json().unwrap(), json!([{"n": 0}]));
        for sql in [
            "CREATE TABLE kept AS SELECT eal_id FROM eal_entry",
            "INSERT INTO eal_entry (eal_id) VALUES ('X1')",
            "DROP TABLE eal_entry",
        ] {
            assert!(session.hold("changed", sql).await.is_err(), "{sql}");
        }
        let n = session
            .query("SELECT count(*) AS n FROM eal_entry")
            .await
            .unwrap();
        assert_eq!(n.rows_json().unwrap(), json!([{"n": 0}]));
        assert!(session.query("SELECT * FROM kept").await.is_err());
    }
}
