//! Where a governed session's physical plans run.
//!
//! A session plans every query on the instance, with the policy in the
//! plan; what runs the *physical* plan is a [`PlanExecutor`]: the
//! instance's own process by default ([`InProcess`]), or a cluster that is
//! handed the governed physical plan and nothing else (see
//! `docs/scale.md`). Whatever runs it, the rows come back to the session,
//! which applies disclosure control and audits as it always does.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;

/// Runs a governed physical plan to its rows.
pub trait PlanExecutor: Send + Sync + std::fmt::Debug {
    fn collect(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> BoxFuture<'_, Result<Vec<RecordBatch>>>;

    /// Whether plans may leave the process. If so, every table that can be
    /// scanned as plain Parquet files is planned that way, since only such
    /// a scan can be written for another process.
    fn ships_plans(&self) -> bool {
        false
    }
}

/// The instance's own process.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcess;

impl PlanExecutor for InProcess {
    fn collect(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> BoxFuture<'_, Result<Vec<RecordBatch>>> {
        Box::pin(datafusion::physical_plan::collect(plan, task))
    }
}
