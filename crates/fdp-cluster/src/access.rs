//! What each role may call on a cluster server.
//!
//! TLS has already checked that the caller holds a certificate from the
//! cluster's authority; this layer checks that the certificate's role may
//! make this call, before the call reaches Ballista. A call not listed is
//! refused, so a method added to the protocol is closed until it is
//! given to a role here.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::trust::{ClusterMember, Role};

/// Which roles may call `path` (`/package.Service/Method`).
pub type Rules = fn(&str) -> &'static [Role];

/// The scheduler: executors register, poll for tasks and report them;
/// instances submit plans and follow their jobs.
pub fn scheduler_rules(path: &str) -> &'static [Role] {
    let Some(method) = path.strip_prefix("/ballista.protobuf.SchedulerGrpc/") else {
        return &[];
    };
    match method {
        "PollWork"
        | "RegisterExecutor"
        | "HeartBeatFromExecutor"
        | "UpdateTaskStatus"
        | "ExecutorStopped" => &[Role::Executor],
        "ExecuteQuery"
        | "ExecuteQueryPush"
        | "GetJobStatus"
        | "GetJobMetrics"
        | "CancelJob"
        | "CleanJobData"
        | "CreateUpdateSession"
        | "RemoveSession" => &[Role::Instance],
        _ => &[],
    }
}

/// An executor's Flight service: executors fetch each other's shuffle
/// output, and instances fetch a job's result.
pub fn executor_rules(path: &str) -> &'static [Role] {
    if path.starts_with("/arrow.flight.protocol.FlightService/") {
        &[Role::Executor, Role::Instance]
    } else {
        &[]
    }
}

/// A tower layer that applies `rules` for `member`'s server.
#[derive(Clone)]
pub struct RoleCheckLayer {
    member: Arc<ClusterMember>,
    rules: Rules,
}

impl RoleCheckLayer {
    pub fn new(member: ClusterMember, rules: Rules) -> RoleCheckLayer {
        RoleCheckLayer {
            member: Arc::new(member),
            rules,
        }
    }
}

impl<S> tower::Layer<S> for RoleCheckLayer {
    type Service = RoleCheck<S>;
    fn layer(&self, inner: S) -> RoleCheck<S> {
        RoleCheck {
            inner,
            member: self.member.clone(),
            rules: self.rules,
        }
    }
}

#[derive(Clone)]
pub struct RoleCheck<S> {
    inner: S,
    member: Arc<ClusterMember>,
    rules: Rules,
}

impl<S> RoleCheck<S> {
    /// Why `request` may not go on, if it may not.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<String> {
        let path = request.uri().path();
        let allowed = (self.rules)(path);
        let peer = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs());
        let Some(cert) = peer.as_ref().and_then(|certs| certs.first()) else {
            return Some(format!("{path}: no client certificate"));
        };
        match self.member.role_of(cert) {
            Some(role) if allowed.contains(&role) => None,
            Some(role) => Some(format!("{path}: not for a cluster {role}")),
            None => Some(format!("{path}: the certificate names no cluster role")),
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for RoleCheck<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(why) = self.refusal(&request) {
            tracing::warn!(member = %self.member.name, "refused: {why}");
            let refused = tonic::Status::permission_denied(why).into_http();
            return Box::pin(async move { Ok(refused) });
        }
        // The service that was made ready is the one that is called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}
