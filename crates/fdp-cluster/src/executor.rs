//! `fdp cluster executor`: Ballista's executor, pulling tasks from the
//! scheduler and serving their output, both over mutual TLS.
//!
//! It rebuilds each task's plan with [`ClusterCodec`]: governed scans with
//! their row selections, and pseudonyms with keys from its *own* keystore,
//! so a plan naming a key it was not given is refused. It reads the tables
//! where the plan says they are ([`crate::stores`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::executor_resource::Resource;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    ExecutorOperatingSystemSpecification, ExecutorRegistration, ExecutorResource,
    ExecutorSpecification,
};
use ballista_core::serde::{BallistaCodec, BallistaLogicalExtensionCodec};
use ballista_core::{ConfigProducer, RuntimeProducer, BALLISTA_PROTOCOL_VERSION};
use ballista_executor::execution_loop;
use ballista_executor::executor::Executor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::metrics::LoggingMetricsCollector;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use fdp_govern::keystore::Keystore;
use fdp_govern::plan_codec::GovernedFunctions;
use fdp_store::plan_codec::GovernedPlanCodec;
use futures::Future;
use tokio::net::TcpListener;

use crate::access::executor_rules;
use crate::codec::ClusterCodec;
use crate::scheduler::{serve, MAX_MESSAGE};
use crate::trust::{ClusterMember, Role};
use crate::ClusterError;

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Its certificate, which must be an executor's.
    pub member: ClusterMember,
    /// The scheduler, `https://host:port`.
    pub scheduler: String,
    /// The host other members reach its Flight service at.
    pub advertise_host: String,
    /// Where its keystore is: a copy of the instance's, holding the keys of
    /// the purposes it is to run plans for.
    pub keystore_dir: PathBuf,
    /// Where shuffle output is written.
    pub work_dir: PathBuf,
    /// Tasks it runs at once.
    pub task_slots: usize,
}

/// Run as an executor, serving Flight on `flight`, until `shutdown`.
pub async fn run(
    options: ExecutorOptions,
    flight: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ClusterError> {
    crate::use_ring();
    let member = options.member.clone();
    if member.role != Role::Executor {
        return Err(ClusterError::WrongRole {
            name: member.name.clone(),
            role: member.role,
            wanted: Role::Executor,
        });
    }
    let flight_addr: SocketAddr = flight.local_addr().map_err(ClusterError::Io)?;
    std::fs::create_dir_all(&options.work_dir).map_err(ClusterError::Io)?;
    let work_dir = options.work_dir.to_string_lossy().into_owned();
    let slots = options.task_slots.max(1);

    let registration = ExecutorRegistration {
        id: format!("{}-{}", member.name, std::process::id()),
        host: Some(options.advertise_host.clone()),
        port: u32::from(flight_addr.port()),
        // Tasks are pulled: the scheduler never calls the executor.
        grpc_port: 0,
        specification: Some(ExecutorSpecification {
            resources: vec![ExecutorResource {
                resource: Some(Resource::Vcores(slots as u32)),
            }],
        }),
        // The scheduler requires it; it only shows it.
        os_info: Some(ExecutorOperatingSystemSpecification {
            system_name: std::env::consts::OS.into(),
            physical_cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            ..Default::default()
        }),
        ballista_protocol_version: BALLISTA_PROTOCOL_VERSION,
    };

    let temp = work_dir.clone();
    let runtime_producer: RuntimeProducer =
        Arc::new(move |_| crate::stores::runtime(Some(temp.as_str())));
    let config_producer = tls_config_producer(&member);
    let executor = Arc::new(Executor::with_default_execution_engine(
        registration,
        &work_dir,
        runtime_producer,
        config_producer,
        Default::default(),
        Arc::new(LoggingMetricsCollector::default()),
        slots,
    ));

    let flight_service = arrow_flight::flight_service_server::FlightServiceServer::new(
        BallistaFlightService::new(work_dir),
    )
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flight_member = member.clone();
    let mut flight_stop = stop_rx.clone();
    let flight_task = tokio::spawn(async move {
        serve(
            flight_member,
            flight,
            flight_service,
            executor_rules,
            async move {
                let _ = flight_stop.wait_for(|s| *s).await;
            },
        )
        .await
    });

    let endpoint =
        ballista_core::utils::create_grpc_client_endpoint(options.scheduler.clone(), None)
            .map_err(|e| ClusterError::Ballista(e.to_string()))?
            .tls_config(member.client_tls())
            .map_err(|e| ClusterError::Tls(e.to_string()))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ClusterError::Connect(options.scheduler.clone(), e.to_string()))?;
    let scheduler = SchedulerGrpcClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE)
        .max_decoding_message_size(MAX_MESSAGE);
    let keystore = Keystore::open(&options.keystore_dir);
    let codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode> = BallistaCodec::new(
        Arc::new(BallistaLogicalExtensionCodec::default()),
        Arc::new(ClusterCodec::new(GovernedPlanCodec::new(
            GovernedFunctions::with_keystore(keystore),
        ))),
    );
    tracing::info!(
        flight = %flight_addr,
        scheduler = %options.scheduler,
        member = %member.name,
        slots,
        "cluster executor polling for tasks (mutual TLS)"
    );
    let health = ballista_executor::health::ExecutorHealth::new();
    let poll = execution_loop::poll_loop(scheduler, executor, codec, None, None, health);
    let outcome = tokio::select! {
        r = poll => r.map_err(|e| ClusterError::Ballista(e.to_string())),
        () = shutdown => Ok(()),
    };
    let _ = stop_tx.send(true);
    match flight_task.await {
        Ok(r) => r?,
        Err(e) => return Err(ClusterError::Serve(e.to_string())),
    }
    outcome
}

/// The session configuration a member's own Ballista clients use: TLS with
/// its certificate for every connection (shuffle fetches among them).
pub(crate) fn tls_config_producer(member: &ClusterMember) -> ConfigProducer {
    let client_tls = member.client_tls();
    Arc::new(move || {
        with_tls(
            datafusion::prelude::SessionConfig::new_with_ballista()
                .with_ballista_grpc_client_max_message_size(MAX_MESSAGE),
            &client_tls,
        )
    })
}

pub(crate) fn with_tls(
    config: datafusion::prelude::SessionConfig,
    client_tls: &tonic::transport::ClientTlsConfig,
) -> datafusion::prelude::SessionConfig {
    let tls = client_tls.clone();
    config
        .with_ballista_use_tls(true)
        .with_ballista_override_create_grpc_client_endpoint(Arc::new(move |endpoint| {
            Ok(endpoint.tls_config(tls.clone())?)
        }))
}
