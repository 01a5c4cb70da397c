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

use std::future::Future;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;

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
