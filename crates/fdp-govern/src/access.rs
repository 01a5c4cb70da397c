//! The only way to a table's rows.
//!
//! The store hands out readable tables only against a [`TableAccess`], and
//! only this crate can make one: its field is private and it has no public
//! constructor, `Clone` or `Default`. This crate makes one inside
//! [`GovernedSession::open`](crate::GovernedSession::open) (a principal's
//! query, compiled with the policy) and inside
//! [`GovernedSession::instance`](crate::GovernedSession::instance) (the
//! instance's own bookkeeping over its raw tables), both audited. So a crate
//! that wants rows has to go through a governed session; the architecture
//! test in `crates/fdp/tests/architecture.rs` keeps it that way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;

/// Proof that a governed session is asking. Deliberately not `Clone`.
pub struct TableAccess {
    _sealed: (),
}

impl TableAccess {
    pub(crate) fn new() -> TableAccess {
        TableAccess { _sealed: () }
    }
}

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

/// One table a source can open: its name and how to scan it.
pub struct SourceTable {
    /// Canonical tables under the model's snake_case name (`ward_stay`);
    /// raw tables under their own (`hl7v2_message`).
    pub name: String,
    pub provider: Arc<dyn TableProvider>,
    /// Present when the table's stored files can be scanned with rows left
    /// out (see [`RowMasking`]); otherwise the policy's row rules are
    /// applied as filters in the plan.
    pub masking: Option<Arc<dyn RowMasking>>,
    /// The stored tables it is read from (a canonical table's parts) and
    /// the version of each: what an answer was computed from.
    pub versions: Vec<(String, u64)>,
}

/// One immutable stored file of a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredFile {
    /// Unique across the instance and never reused for other contents.
    pub id: String,
}

/// A table whose stored files are immutable and can be scanned with some
/// of their rows left out.
///
/// The national data opt-out and restricted-view rules exclude rows by
/// columns a query may never read (the patient id, `rv_group_ids`). As plan
/// filters they would be evaluated on every row of every query; a governed
/// session instead evaluates them once per stored file (the file never
/// changes, so neither does the answer), keeps the result, and scans each
/// file with only its kept rows selected.
pub trait RowMasking: Send + Sync {
    /// The files that make up the table at the version opened.
    fn files(&self) -> Vec<StoredFile>;

    /// Every row of one file, in stored order, with only `columns` (by name,
    /// in the table's schema: a column the file lacks reads as nulls).
    fn read_file<'a>(
        &'a self,
        file: &'a StoredFile,
        columns: &'a [String],
    ) -> BoxFuture<'a, datafusion::error::Result<Vec<RecordBatch>>>;

    /// The table scanned with each file's rows limited to those `keep`
    /// marks true (one entry per row in stored order). A file absent from
    /// `keep` is scanned whole; every file must be present for the rules to
    /// hold, which the caller ensures.
    fn keeping(
        &self,
        keep: &HashMap<StoredFile, Arc<BooleanArray>>,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>>;
}

/// Where the tables are: the store implements this for a data directory.
pub trait TableSource: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The canonical tables (parts already combined under the table's name).
    /// `ctx` is the session the providers will be scanned in.
    fn canonical_tables(
        &self,
        access: &TableAccess,
        ctx: &SessionContext,
        as_of: AsOf,
    ) -> impl Future<Output = Result<Vec<SourceTable>, Self::Error>> + Send;

    /// The raw tables: every record as received.
    fn raw_tables(
        &self,
        access: &TableAccess,
        ctx: &SessionContext,
        as_of: AsOf,
    ) -> impl Future<Output = Result<Vec<SourceTable>, Self::Error>> + Send;
}
