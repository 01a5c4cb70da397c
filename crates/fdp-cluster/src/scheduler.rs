//! `fdp cluster scheduler`: Ballista's scheduler behind mutual TLS.
//!
//! It decodes each governed plan only to cut it into stages and hand the
//! stages to executors; it holds no keys, so a pseudonym in a plan passes
//! through it sealed (see `fdp_govern::plan_codec`). Executors pull their
//! tasks, so the scheduler never dials them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::{BallistaCodec, BallistaLogicalExtensionCodec};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use fdp_govern::plan_codec::GovernedFunctions;
use fdp_store::plan_codec::GovernedPlanCodec;
use futures::Future;
use tokio::net::TcpListener;

use crate::access::{scheduler_rules, RoleCheckLayer};
use crate::codec::ClusterCodec;
use crate::trust::{ClusterMember, Role};
use crate::ClusterError;

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Its certificate, which must be a scheduler's.
    pub member: ClusterMember,
    /// How long an executor may go without polling before its tasks are
    /// given to another.
    pub executor_timeout: Duration,
    /// How many times a task may fail (an executor lost under it counts)
    /// before its job fails.
    pub task_max_failures: usize,
}

/// Serve as the cluster's scheduler on `listener` until `shutdown`.
pub async fn run(
    options: SchedulerOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ClusterError> {
    crate::use_ring();
    let member = options.member.clone();
    if member.role != Role::Scheduler {
        return Err(ClusterError::WrongRole {
            name: member.name.clone(),
            role: member.role,
            wanted: Role::Scheduler,
        });
    }
    let addr = listener.local_addr().map_err(ClusterError::Io)?;
    let codec = Arc::new(ClusterCodec::new(GovernedPlanCodec::new(
        GovernedFunctions::relay(),
    )));
    let client_tls = member.client_tls();
    let timeout = options.executor_timeout.as_secs().max(1);
    let config = SchedulerConfig {
        bind_host: addr.ip().to_string(),
        external_host: addr.ip().to_string(),
        bind_port: addr.port(),
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: timeout.div_ceil(3).max(1),
        no_executors_grace_period_seconds: timeout,
        task_max_failures: options.task_max_failures,
        override_physical_codec: Some(codec.clone()),
        // It reads no table, but a plan's scans are checked against their
        // stores as it is read.
        override_session_builder: Some(Arc::new(|config| {
            let state = ballista_core::utils::default_session_builder(config)?;
            Ok(
                datafusion::execution::SessionStateBuilder::new_from_existing(state)
                    .with_runtime_env(crate::stores::runtime(None)?)
                    .build(),
            )
        })),
        override_create_grpc_client_endpoint: Some(Arc::new(move |endpoint| {
            Ok(endpoint.tls_config(client_tls.clone())?)
        })),
        use_tls: true,
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| ClusterError::Ballista(e.to_string()))?;
    let ballista_codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode> =
        BallistaCodec::new(Arc::new(BallistaLogicalExtensionCodec::default()), codec);
    let metrics = ballista_scheduler::metrics::default_metrics_collector()
        .map_err(|e| ClusterError::Ballista(e.to_string()))?;
    let mut scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> = SchedulerServer::new(
        format!("https://{addr}"),
        cluster,
        ballista_codec,
        Arc::new(config),
        metrics,
    );
    scheduler
        .init()
        .await
        .map_err(|e| ClusterError::Ballista(e.to_string()))?;
    let service = SchedulerGrpcServer::new(scheduler)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    tracing::info!(%addr, member = %member.name, "cluster scheduler listening (mutual TLS)");
    serve(member, listener, service, scheduler_rules, shutdown).await
}

/// The largest plan or status message a member accepts.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Serve `service` with mutual TLS and `rules` on `listener`.
pub(crate) async fn serve<S>(
    member: ClusterMember,
    listener: TcpListener,
    service: S,
    rules: crate::access::Rules,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ClusterError>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .tls_config(member.server_tls())
        .map_err(|e| ClusterError::Tls(e.to_string()))?
        .layer(RoleCheckLayer::new(member, rules))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ClusterError::Serve(e.to_string()))
}

/// Where a scheduler listens, as executors and instances name it.
pub fn url_of(addr: SocketAddr) -> String {
    format!("https://{addr}")
}
