//! Mutual TLS between instances.
//!
//! Both ends present a certificate from the federation's authority; a
//! connection with any other certificate fails in the handshake. Over it
//! runs plain HTTP/1.1. The listener hands each request the certificate the
//! caller presented ([`PeerCert`]), so the receiving side can say which
//! configured peer it is; the client checks that the instance that answered
//! is the peer it meant to reach, not merely some member of the federation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::identity::InstanceIdentity;

/// The certificate the caller presented in the TLS handshake.
#[derive(Debug, Clone)]
pub struct PeerCert(pub CertificateDer<'static>);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the federation authority's certificate: {0}")]
    Authority(String),
    #[error("{addr}: {message}")]
    Unreachable { addr: String, message: String },
    #[error("{addr}: the instance that answered is not {expected}")]
    WrongPeer { addr: String, expected: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &InstanceIdentity) -> Result<Arc<rustls::RootCertStore>, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(identity.ca.clone())
        .map_err(|e| TransportError::Authority(e.to_string()))?;
    Ok(Arc::new(roots))
}

/// The listener's TLS: our certificate, and a client certificate from the
/// federation's authority required of every caller.
pub fn server_config(identity: &InstanceIdentity) -> Result<rustls::ServerConfig, TransportError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(identity)?, provider())
            .build()
            .map_err(|e| TransportError::Authority(e.to_string()))?;
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.private_key())?)
}

/// The caller's TLS: the federation's authority as the only root, and our
/// certificate presented to the peer.
pub fn client_config(identity: &InstanceIdentity) -> Result<rustls::ClientConfig, TransportError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.private_key())?)
}

/// Serve `router` over mutual TLS on `listener` until the task is dropped.
/// Each request carries the caller's certificate as a [`PeerCert`].
pub async fn serve(listener: TcpListener, config: rustls::ServerConfig, router: Router) {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "federation listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            // A handshake that never finishes must not hold a task for ever.
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "federation: TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let Some(cert) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned())
            else {
                return;
            };
            let app = router.layer(axum::Extension(PeerCert(cert)));
            let service = hyper_util::service::TowerToHyperService::new(app);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%remote, error = %e, "federation connection ended");
            }
        });
    }
}

/// Calls to peers over mutual TLS.
#[derive(Clone)]
pub struct PeerClient {
    connector: TlsConnector,
    timeout: Duration,
}

/// A peer's answer: status, headers we read, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

impl PeerClient {
    pub fn new(
        identity: &InstanceIdentity,
        timeout: Duration,
    ) -> Result<PeerClient, TransportError> {
        Ok(PeerClient {
            connector: TlsConnector::from(Arc::new(client_config(identity)?)),
            timeout,
        })
    }

    /// How long a call waits for its answer unless told otherwise.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POST `body` to `path` at `addr`, which must be the instance holding
    /// `expected` (its configured certificate); `signature` goes in the
    /// `FDP-Signature` header.
    pub async fn post(
        &self,
        addr: &str,
        expected: (&str, &CertificateDer<'_>),
        path: &str,
        body: Vec<u8>,
        signature: &str,
    ) -> Result<Reply, TransportError> {
        self.post_within(addr, expected, path, body, signature, self.timeout)
            .await
    }

    /// [`Self::post`], waiting up to `timeout` for the answer: a question
    /// the peer answers with a query may take longer than a message it
    /// only stores.
    pub async fn post_within(
        &self,
        addr: &str,
        expected: (&str, &CertificateDer<'_>),
        path: &str,
        body: Vec<u8>,
        signature: &str,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        let unreachable = |message: String| TransportError::Unreachable {
            addr: addr.to_string(),
            message,
        };
        let work = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            stream.set_nodelay(true).ok();
            let host = addr
                .parse::<SocketAddr>()
                .map(|a| ServerName::IpAddress(a.ip().into()))
                .or_else(|_| {
                    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
                    ServerName::try_from(host.to_string())
                })
                .map_err(|e| unreachable(format!("not an address: {e}")))?;
            let tls = self
                .connector
                .connect(host, stream)
                .await
                .map_err(|e| unreachable(format!("TLS: {e}")))?;
            let presented = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            if presented.as_deref() != Some(expected.1.as_ref()) {
                return Err(TransportError::WrongPeer {
                    addr: addr.to_string(),
                    expected: expected.0.to_string(),
                });
            }
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let request = hyper::Request::post(path)
                .header(hyper::header::HOST, addr)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header("fdp-signature", signature)
                .body(Body::from(body))
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let signature = response
                .headers()
                .get("fdp-signature")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes()
                .to_vec();
            Ok(Reply {
                status,
                signature,
                body,
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                timeout.as_secs_f64()
            ))),
        }
    }
}
