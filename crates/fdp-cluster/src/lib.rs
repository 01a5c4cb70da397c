//! Governed queries executed by an Apache Ballista cluster.
//!
//! An instance plans every query under its policy as it always does; what
//! leaves it is the governed *physical* plan, which a Ballista scheduler
//! cuts into stages and executors run. No member of the cluster ever sees
//! a plan without the policy in it, nor a pseudonym key in a plan:
//!
//! - [`client::Cluster`] is the instance's [`fdp_govern::PlanExecutor`]:
//!   it sends a plan whose scans are large enough, and runs the rest in
//!   process;
//! - [`scheduler`] and [`executor`] are `fdp cluster scheduler` and
//!   `fdp cluster executor`: Ballista's own scheduler and executor,
//!   assembled behind mutual TLS, with OpenFDP's codec ([`codec`]);
//! - [`trust`] is the cluster's own certificate authority, whose
//!   certificates say each member's role, and [`access`] what each role
//!   may call.
//!
//! `docs/scale.md` says how to run it and what is governed on each path.

pub mod access;
pub mod client;
pub mod codec;
pub mod executor;
pub mod scheduler;
pub mod stores;
pub mod trust;

pub use client::{Cluster, ClusterConfig, Placement};
pub use trust::{ClusterAuthority, ClusterMember, Role, TrustError};

/// tonic builds its TLS configurations with the process's default crypto
/// provider, which two providers in the build leave unchosen: choose ring,
/// the one the rest of OpenFDP uses.
pub(crate) fn use_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("{name} is certified as a cluster {role}, not a {wanted}: issue it a {wanted}'s certificate with `fdp cluster issue --role {wanted}`")]
    WrongRole {
        name: String,
        role: Role,
        wanted: Role,
    },
    #[error("{0}")]
    Io(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("serving: {0}")]
    Serve(String),
    #[error("{0}")]
    Config(String),
    #[error("Ballista: {0}")]
    Ballista(String),
}
