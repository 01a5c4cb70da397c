//! The instance's side: a [`PlanExecutor`] that sends governed physical
//! plans to the cluster when their scans are large enough to be worth it,
//! and runs the rest in process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use fdp_govern::plan_codec::GovernedFunctions;
use fdp_govern::{InProcess, PlanExecutor};
use fdp_store::plan_codec::{for_shipping, GovernedPlanCodec};
use futures::future::BoxFuture;
use futures::TryStreamExt;
use serde::Deserialize;

use crate::codec::ClusterCodec;
use crate::trust::{ClusterMember, Role};
use crate::ClusterError;

/// `[cluster]` in an instance's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The scheduler, `https://host:port`.
    pub scheduler: String,
    /// The instance's cluster certificate (`fdp cluster issue --role
    /// instance`).
    pub member_dir: std::path::PathBuf,
    /// Plans whose scans read at least this many bytes of files run on the
    /// cluster; smaller ones run in process, where starting a job would
    /// cost more than it saves. 0 sends every plan that scans a table.
    #[serde(default = "default_from_bytes")]
    pub distributed_from_bytes: u64,
    /// How long a query may take on the cluster before the instance gives
    /// up on it with an error, rather than wait on a cluster that has lost
    /// its way.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    1800
}

fn default_from_bytes() -> u64 {
    256 * 1024 * 1024
}

/// Where a plan ran, for the log and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    InProcess,
    Cluster,
}

/// Runs governed plans on a Ballista cluster, by size.
pub struct Cluster {
    scheduler: String,
    member: ClusterMember,
    from_bytes: u64,
    codec: ClusterCodec,
    session_id: String,
    timeout: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cluster({} from {} bytes)",
            self.scheduler, self.from_bytes
        )
    }
}

impl Cluster {
    pub fn open(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        crate::use_ring();
        let member = ClusterMember::open(&config.member_dir)?;
        if member.role != Role::Instance {
            return Err(ClusterError::WrongRole {
                name: member.name.clone(),
                role: member.role,
                wanted: Role::Instance,
            });
        }
        Ok(Cluster {
            scheduler: config.scheduler.clone(),
            session_id: format!("fdp-{}-{}", member.name, std::process::id()),
            member,
            from_bytes: config.distributed_from_bytes,
            timeout: Duration::from_secs(config.timeout_secs),
            codec: ClusterCodec::new(GovernedPlanCodec::new(GovernedFunctions::writer())),
        })
    }

    /// Where `plan` would run: on the cluster if its scans are large enough
    /// and it can be written for the cluster, with the plan as written.
    /// What cannot be written (a raw table's Delta scan, say) runs here.
    pub fn placement(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
    ) -> (Placement, Option<Arc<dyn ExecutionPlan>>) {
        match scanned_bytes(plan) {
            Some(bytes) if bytes >= self.from_bytes => {}
            _ => return (Placement::InProcess, None),
        }
        let shipped = for_shipping(plan.clone()).and_then(|p| {
            PhysicalPlanNode::try_from_physical_plan(p.clone(), &self.codec)?;
            Ok(p)
        });
        match shipped {
            Ok(p) => (Placement::Cluster, Some(p)),
            Err(e) => {
                tracing::info!("a plan runs on the instance, not the cluster: {e}");
                (Placement::InProcess, None)
            }
        }
    }

    async fn on_cluster(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<RecordBatch>> {
        tokio::time::timeout(self.timeout, self.run_on_cluster(plan))
            .await
            .unwrap_or_else(|_| {
                Err(DataFusionError::Execution(format!(
                    "the cluster at {} gave no answer within {} s ([cluster] timeout_secs); \
                     see the scheduler's log for the job",
                    self.scheduler,
                    self.timeout.as_secs()
                )))
            })
    }

    async fn run_on_cluster(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<RecordBatch>> {
        let config = crate::executor::with_tls(
            datafusion::prelude::SessionConfig::new_with_ballista()
                .with_ballista_grpc_client_max_message_size(crate::scheduler::MAX_MESSAGE),
            &self.member.client_tls(),
        );
        let started = Instant::now();
        let stream = execute_physical_plan::<PhysicalPlanNode>(
            self.scheduler.clone(),
            &BallistaConfig::default(),
            plan,
            &self.codec,
            self.session_id.clone(),
            config,
        )
        .await
        .map_err(|e| {
            DataFusionError::Execution(format!("the cluster at {}: {e}", self.scheduler))
        })?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        tracing::info!(
            scheduler = %self.scheduler,
            ms = started.elapsed().as_millis() as u64,
            rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            "plan ran on the cluster"
        );
        Ok(batches)
    }
}

impl PlanExecutor for Cluster {
    fn collect(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> BoxFuture<'_, Result<Vec<RecordBatch>>> {
        match self.placement(&plan) {
            (Placement::Cluster, Some(shipped)) => Box::pin(self.on_cluster(shipped)),
            _ => InProcess.collect(plan, task),
        }
    }

    fn ships_plans(&self) -> bool {
        true
    }
}

/// The bytes of files `plan`'s scans read, if it scans any.
pub fn scanned_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let mut total = None;
    let mut stack = vec![plan.clone()];
    while let Some(node) = stack.pop() {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(exec) = any.downcast_ref::<DataSourceExec>() {
            let source: &dyn std::any::Any = exec.data_source().as_ref();
            if let Some(config) = source.downcast_ref::<FileScanConfig>() {
                let bytes: u64 = config
                    .file_groups
                    .iter()
                    .flat_map(FileGroup::iter)
                    .map(|f| f.object_meta.size)
                    .sum();
                *total.get_or_insert(0) += bytes;
            }
        }
        stack.extend(node.children().into_iter().cloned());
    }
    total
}
