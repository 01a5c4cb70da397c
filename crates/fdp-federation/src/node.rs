//! One instance's place in the federation: its peers, the endpoint peers
//! send to, and the sending side (the outbox and its worker).
//!
//! A message is received at `POST /federation/v1/messages` over mutual TLS:
//! the caller's certificate must be a configured peer's, the envelope must
//! be signed by that peer, addressed here, fresh and new. It is committed
//! to the inbox, audited, and handed to the instance's [`Handler`], whose
//! answer goes back signed. Everything refused is audited with the reason.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use chrono::Utc;
use fdp_govern::{AuditEntry, AuditLog};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::envelope::{self, Envelope, Refused, Signed, Window};
use crate::identity::{InstanceIdentity, OrgRole};
use crate::store::{Arrival, Delivery, Inbox, Outbox, Outgoing, StoreError};
use crate::transport::{PeerCert, PeerClient, TransportError};

/// The path peers send messages to.
pub const MESSAGES: &str = "/federation/v1/messages";

/// A configured peer.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ods: String,
    pub role: OrgRole,
    /// Where it listens; none for a site that only connects out.
    pub address: Option<String>,
    pub cert: CertificateDer<'static>,
}

/// What the instance does with a message once it has arrived and been
/// committed: the answer, which goes back to the sender signed, or why it
/// was declined.
#[async_trait::async_trait]
pub trait Handler: Send + Sync {
    async fn handle(&self, from: &Peer, message: &Envelope) -> Result<Value, String>;
}

/// Why a send did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0} is not a configured peer")]
    UnknownPeer(String),
    #[error("{0} has no address: it collects its messages by polling")]
    NoAddress(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unreachable: {0}")]
    Unreachable(#[from] TransportError),
    #[error("refused by {peer} ({status}): {reason}")]
    Refused {
        peer: String,
        status: u16,
        reason: String,
    },
    #[error("the answer from {0} is not signed by it")]
    BadReply(String),
}

impl SendError {
    /// Worth trying again later (the peer may come back).
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Unreachable(_))
            || matches!(self, SendError::Refused { status, .. } if *status >= 500)
    }
}

/// A peer's answer to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub from: String,
    pub body: Value,
}

/// This instance in the federation.
pub struct Federation {
    pub identity: InstanceIdentity,
    peers: Vec<Peer>,
    pub outbox: Outbox,
    pub inbox: Inbox,
    window: Window,
    client: PeerClient,
    audit: Arc<AuditLog>,
    handler: RwLock<Option<Arc<dyn Handler>>>,
    wake: tokio::sync::Notify,
    /// Requests to sites that only connect out, waiting for their answer to
    /// arrive as a message of its own.
    waiting: std::sync::Mutex<HashMap<String, tokio::sync::oneshot::Sender<Value>>>,
}

impl Federation {
    /// The federation side of the instance in `data_dir`, with its peers.
    pub fn open(
        data_dir: &std::path::Path,
        peers: Vec<Peer>,
        audit: Arc<AuditLog>,
    ) -> Result<Federation, Box<dyn std::error::Error + Send + Sync>> {
        let identity = InstanceIdentity::open(data_dir)?;
        for p in &peers {
            crate::identity::verify_issued_by(&p.cert, &identity.ca)
                .map_err(|e| format!("peer {}: {e}", p.ods))?;
        }
        let dir = crate::identity::dir_in(data_dir);
        Ok(Federation {
            client: PeerClient::new(&identity, Duration::from_secs(10))?,
            identity,
            peers,
            outbox: Outbox::open(&dir)?,
            inbox: Inbox::open(&dir)?,
            window: Window::default(),
            audit,
            handler: RwLock::new(None),
            wake: tokio::sync::Notify::new(),
            waiting: Default::default(),
        })
    }

    /// The audit this instance's federation traffic is recorded in.
    pub fn audit_log(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// How old a message may be on arrival (default five minutes).
    pub fn with_window(mut self, window: Window) -> Federation {
        self.window = window;
        self
    }

    /// What to do with messages that arrive.
    pub fn set_handler(&self, handler: Arc<dyn Handler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    pub fn peer(&self, ods: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.ods == ods)
    }

    fn audit(&self, kind: &str, peer: &str, what: String, outcome: String) {
        let entry = AuditEntry {
            kind: kind.into(),
            principal: format!("peer:{peer}"),
            organisation: Some(peer.to_string()),
            channel: "federation".into(),
            what,
            outcome,
            ..AuditEntry::default()
        };
        if let Err(e) = self.audit.append(entry) {
            tracing::error!(error = %e, "federation: the audit could not be written");
        }
    }

    /// The endpoint peers send to, to be served by [`crate::transport::serve`].
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(MESSAGES, post(receive))
            .with_state(self.clone())
    }

    fn refuse(&self, status: StatusCode, peer: &str, what: String, why: String) -> Response {
        self.audit("federation-refused", peer, what, format!("refused: {why}"));
        (status, axum::Json(json!({ "error": why }))).into_response()
    }

    /// Commit a message to the outbox and wake the sender.
    pub fn queue(&self, to: &str, kind: &str, body: Value) -> Result<Outgoing, SendError> {
        if self.peer(to).is_none() {
            return Err(SendError::UnknownPeer(to.to_string()));
        }
        let m = self
            .outbox
            .queue(Envelope::new(&self.identity.ods, to, kind, body))?;
        self.wake.notify_one();
        Ok(m)
    }

    /// Commit a message to the outbox, then try it at once: the answer
    /// where the peer listens, or why not (a transient failure leaves it
    /// for the outbox to deliver later; see [`SendError::is_transient`]).
    /// A command that ends before the outbox runs again uses this.
    pub async fn queue_and_send(
        &self,
        to: &str,
        kind: &str,
        body: Value,
    ) -> Result<Answer, SendError> {
        let queued = self.queue(to, kind, body)?;
        self.send(&queued.envelope.id).await
    }

    /// Commit a message that the caller sends now and settles itself: the
    /// outbox's sender leaves it alone.
    pub fn queue_for_caller(
        &self,
        to: &str,
        kind: &str,
        body: Value,
    ) -> Result<Outgoing, SendError> {
        if self.peer(to).is_none() {
            return Err(SendError::UnknownPeer(to.to_string()));
        }
        Ok(self.outbox.queue_held(
            Envelope::new(&self.identity.ods, to, kind, body),
            chrono::Duration::hours(1),
        )?)
    }

    /// Ask `to` something and wait for its answer: sent at once to a peer
    /// that listens; left for a site that only connects out to collect
    /// when it polls, its answer arriving as a message of its own within
    /// `wait`. Settled either way: the outbox's sender does not retry it.
    pub async fn request(
        &self,
        to: &str,
        kind: &str,
        body: Value,
        wait: Duration,
    ) -> Result<Answer, SendError> {
        let queued = self.queue_for_caller(to, kind, body)?;
        let id = queued.envelope.id.clone();
        let peer = self.peer(to).expect("checked when queued").clone();
        if peer.address.is_some() {
            // Asked now, the answer may be a query: up to `wait` for it, and
            // never less than any other message is given.
            let sent = self.send_within(&id, wait.max(self.client.timeout())).await;
            if let Err(e) = &sent {
                if e.is_transient() {
                    let _ = self
                        .outbox
                        .attempt_failed(&id, "unreachable when asked", true);
                }
            }
            return sent;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        let answer = tokio::time::timeout(wait, rx).await;
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match answer {
            Ok(Ok(body)) => Ok(Answer {
                from: peer.ods.clone(),
                body,
            }),
            _ => {
                let why = format!(
                    "{to} did not collect and answer within {} s",
                    wait.as_secs()
                );
                let _ = self.outbox.attempt_failed(&id, &why, true);
                Err(SendError::Unreachable(TransportError::Unreachable {
                    addr: format!("{to} (connects out)"),
                    message: why,
                }))
            }
        }
    }

    /// Collect what `icb` holds for this instance (a site that only
    /// connects out), act on each message as if it had arrived here, and
    /// send each answer back through the outbox. Answers how many
    /// messages were collected.
    pub async fn poll(&self, icb: &str, acked: &mut Vec<String>) -> Result<usize, SendError> {
        let peer = self
            .peer(icb)
            .ok_or_else(|| SendError::UnknownPeer(icb.to_string()))?
            .clone();
        let poll = Envelope::new(
            &self.identity.ods,
            icb,
            "poll",
            json!({ "ack": acked.clone() }),
        );
        let reply = self.attempt(&poll, self.client.timeout()).await?;
        acked.clear();
        let mut n = 0;
        for m in reply.body["answer"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (Some(bytes), Some(signature)) = (
                m["message"].as_str(),
                m["signature"].as_str().and_then(Signed::parse_signature),
            ) else {
                continue;
            };
            let e = match envelope::open(
                bytes.as_bytes(),
                &signature,
                &self.identity.ods,
                |ods| (ods == peer.ods).then_some(&peer.cert),
                self.window,
                Utc::now(),
            ) {
                Ok(e) => e,
                Err(r) => {
                    self.audit(
                        "federation-refused",
                        &peer.ods,
                        "a collected message".into(),
                        format!("refused: {r}"),
                    );
                    continue;
                }
            };
            n += 1;
            acked.push(e.id.clone());
            if self.inbox.receive(&e)? == Arrival::AlreadyReceived {
                continue;
            }
            let what = format!("{} {} from {} (collected)", e.kind, e.id, e.from);
            let body = self.act_on(&peer, &e, what).await;
            self.queue(&peer.ods, "answer", body)?;
        }
        Ok(n)
    }

    /// Hand a message that arrived to the instance's handler, audit it, and
    /// make the answer to send back (or why it was declined).
    async fn act_on(&self, peer: &Peer, e: &Envelope, what: String) -> Value {
        let handler = self
            .handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let answer = match handler {
            Some(h) => h.handle(peer, e).await,
            None => Ok(json!({"received": true})),
        };
        let (body, outcome) = match answer {
            Ok(v) => (
                json!({"in_reply_to": e.id, "answer": v}),
                "received".to_string(),
            ),
            Err(why) => (
                json!({"in_reply_to": e.id, "declined": why}),
                format!("received; declined: {why}"),
            ),
        };
        self.audit("federation-receive", &peer.ods, what, outcome);
        body
    }

    /// Poll `icb` every `every` for as long as the instance runs.
    pub async fn run_poller(self: Arc<Self>, icb: String, every: Duration) {
        let mut acked = Vec::new();
        loop {
            match self.poll(&icb, &mut acked).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "federation: polling {icb}"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// What a polling site collects: its queued messages, sealed now; the
    /// ones it acknowledged are marked delivered.
    fn collect_for(&self, peer: &Peer, acked: &[String]) -> Value {
        for id in acked {
            if let Ok(m) = self.outbox.get(id) {
                if m.envelope.to == peer.ods && m.state == Delivery::Queued {
                    let _ = self.outbox.delivered(id);
                    self.audit(
                        "federation-send",
                        &peer.ods,
                        format!("{} {} to {} (collected)", m.envelope.kind, id, peer.ods),
                        "delivered".into(),
                    );
                }
            }
        }
        let messages: Vec<Value> = self
            .outbox
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.state == Delivery::Queued && m.envelope.to == peer.ods)
            .take(100)
            .map(|m| {
                let sealed = Signed::seal(&self.identity, &m.envelope);
                json!({
                    "message": String::from_utf8_lossy(&sealed.bytes),
                    "signature": sealed.signature_hex(),
                })
            })
            .collect();
        json!({ "messages": messages })
    }

    /// One attempt to deliver a queued message; its state in the outbox is
    /// updated either way, and the attempt audited.
    pub async fn send(&self, id: &str) -> Result<Answer, SendError> {
        self.send_within(id, self.client.timeout()).await
    }

    /// [`Self::send`], waiting up to `wait` for the peer's answer.
    async fn send_within(&self, id: &str, wait: Duration) -> Result<Answer, SendError> {
        let m = self.outbox.get(id)?;
        let e = &m.envelope;
        let result = self.attempt(e, wait).await;
        let what = format!("{} {} to {}", e.kind, e.id, e.to);
        match &result {
            Ok(_) => {
                self.outbox.delivered(id)?;
                self.audit("federation-send", &e.to, what, "delivered".into());
            }
            Err(err) => {
                self.outbox
                    .attempt_failed(id, &err.to_string(), !err.is_transient())?;
                self.audit(
                    "federation-send",
                    &e.to,
                    what,
                    format!("not delivered: {err}"),
                );
            }
        }
        result
    }

    async fn attempt(&self, e: &Envelope, wait: Duration) -> Result<Answer, SendError> {
        let peer = self
            .peer(&e.to)
            .ok_or_else(|| SendError::UnknownPeer(e.to.clone()))?;
        let addr = peer
            .address
            .as_deref()
            .ok_or_else(|| SendError::NoAddress(e.to.clone()))?;
        let sealed = Signed::seal(&self.identity, e);
        let signature = sealed.signature_hex();
        let reply = self
            .client
            .post_within(
                addr,
                (&peer.ods, &peer.cert),
                MESSAGES,
                sealed.bytes,
                &signature,
                wait,
            )
            .await?;
        match reply.status {
            200 => {
                let signature = reply
                    .signature
                    .as_deref()
                    .and_then(Signed::parse_signature)
                    .ok_or_else(|| SendError::BadReply(peer.ods.clone()))?;
                let answer = envelope::open(
                    &reply.body,
                    &signature,
                    &self.identity.ods,
                    |ods| (ods == peer.ods).then_some(&peer.cert),
                    self.window,
                    Utc::now(),
                )
                .map_err(|_| SendError::BadReply(peer.ods.clone()))?;
                Ok(Answer {
                    from: peer.ods.clone(),
                    body: answer.body,
                })
            }
            // The peer already has it: our earlier attempt arrived but its
            // answer did not reach us.
            409 => Ok(Answer {
                from: peer.ods.clone(),
                body: json!({"already_received": true}),
            }),
            status => Err(SendError::Refused {
                peer: peer.ods.clone(),
                status,
                reason: serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned()),
            }),
        }
    }

    /// Deliver what the outbox holds, for as long as the instance runs:
    /// whatever is due, then wait to be woken or for the next retry.
    pub async fn run_outbox(self: Arc<Self>) {
        loop {
            match self.outbox.due(Utc::now()) {
                Ok(due) => {
                    // Messages to a site that only connects out wait for
                    // it to poll.
                    for m in due.iter().filter(|m| {
                        self.peer(&m.envelope.to)
                            .is_some_and(|p| p.address.is_some())
                    }) {
                        let _ = self.send(&m.envelope.id).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "federation: reading the outbox"),
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), self.wake.notified()).await;
        }
    }

    /// Messages still waiting for a peer.
    pub fn pending(&self) -> Result<Vec<Outgoing>, StoreError> {
        Ok(self
            .outbox
            .list()?
            .into_iter()
            .filter(|m| m.state == Delivery::Queued)
            .collect())
    }
}

async fn receive(
    State(fed): State<Arc<Federation>>,
    Extension(PeerCert(cert)): Extension<PeerCert>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(peer) = fed.peers.iter().find(|p| p.cert == cert).cloned() else {
        return fed.refuse(
            StatusCode::FORBIDDEN,
            "unknown",
            "a message".into(),
            "the certificate presented is not a configured peer's".into(),
        );
    };
    let what = "a message".to_string();
    let Some(signature) = headers
        .get("fdp-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(Signed::parse_signature)
    else {
        return fed.refuse(
            StatusCode::UNAUTHORIZED,
            &peer.ods,
            what,
            "no FDP-Signature header".into(),
        );
    };
    let opened = envelope::open(
        &body,
        &signature,
        &fed.identity.ods,
        |ods| fed.peers.iter().find(|p| p.ods == ods).map(|p| &p.cert),
        fed.window,
        Utc::now(),
    );
    let e = match opened {
        Ok(e) if e.from != peer.ods => {
            return fed.refuse(
                StatusCode::FORBIDDEN,
                &peer.ods,
                format!("{} {}", e.kind, e.id),
                format!("signed by {} but sent by {}", e.from, peer.ods),
            )
        }
        Ok(e) => e,
        Err(r) => {
            let status = match r {
                Refused::Malformed(_) | Refused::BadId(_) => StatusCode::BAD_REQUEST,
                Refused::BadSignature(_) => StatusCode::UNAUTHORIZED,
                _ => StatusCode::FORBIDDEN,
            };
            return fed.refuse(status, &peer.ods, what, r.to_string());
        }
    };
    // A poll is a request, not a message to keep: it collects what waits.
    if e.kind == "poll" {
        let acked: Vec<String> = e.body["ack"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let collected = fed.collect_for(&peer, &acked);
        return signed_reply(
            &fed,
            &peer,
            json!({"in_reply_to": e.id, "answer": collected}),
        );
    }
    let what = format!("{} {} from {}", e.kind, e.id, e.from);
    match fed.inbox.receive(&e) {
        Ok(Arrival::New) => {}
        Ok(Arrival::AlreadyReceived) => {
            return fed.refuse(
                StatusCode::CONFLICT,
                &peer.ods,
                what,
                Refused::Replayed(e.id.clone()).to_string(),
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "federation: the inbox could not be written");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "the message could not be kept; send it again"})),
            )
                .into_response();
        }
    }
    // A polling site's answer to something asked of it.
    if e.kind == "answer" {
        if let Some(waiter) = e.body["in_reply_to"].as_str().and_then(|id| {
            fed.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id)
        }) {
            let _ = waiter.send(e.body.clone());
        }
        fed.audit("federation-receive", &peer.ods, what, "received".into());
        return signed_reply(
            &fed,
            &peer,
            json!({"in_reply_to": e.id, "answer": {"received": true}}),
        );
    }
    let body = fed.act_on(&peer, &e, what).await;
    signed_reply(&fed, &peer, body)
}

/// A reply to `peer`, signed.
fn signed_reply(fed: &Federation, peer: &Peer, body: Value) -> Response {
    let reply = Envelope::new(&fed.identity.ods, &peer.ods, "reply", body);
    let sealed = Signed::seal(&fed.identity, &reply);
    (
        StatusCode::OK,
        [
            ("fdp-signature", sealed.signature_hex()),
            ("content-type", "application/json".to_string()),
        ],
        sealed.bytes,
    )
        .into_response()
}

/// The `[federation]` section of an instance's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Where peers reach this instance over mutual TLS; none for a site
    /// that only connects out.
    pub listen: Option<std::net::SocketAddr>,
    /// The instance's peers: `[[federation.peer]]`.
    #[serde(default)]
    pub peer: Vec<PeerConfig>,
    /// For a site whose firewall allows only outbound connections: the ODS
    /// code of the ICB instance it collects its messages from.
    pub poll: Option<String>,
    /// How often to collect them, in milliseconds (default 1000).
    pub poll_every_ms: Option<u64>,
    /// For an instance that collects returns from its members (the
    /// national instance, or an ICB): when they fall due and from whom.
    pub returns: Option<crate::returns::ReturnSchedule>,
}

/// One configured peer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub ods: String,
    /// trust, care-provider, icb or national
    pub role: String,
    /// host:port it listens on.
    pub address: Option<String>,
    /// Its certificate (PEM), as `fdp peer show` prints it.
    pub certificate: std::path::PathBuf,
}

impl FederationConfig {
    /// The configured peers, their certificates read.
    pub fn peers(&self) -> Result<Vec<Peer>, String> {
        self.peer
            .iter()
            .map(|p| {
                Ok(Peer {
                    ods: p.ods.clone(),
                    role: p.role.parse().map_err(|e| format!("peer {}: {e}", p.ods))?,
                    address: p.address.clone(),
                    cert: crate::identity::cert_from_pem(&p.certificate)
                        .map_err(|e| format!("peer {}: {e}", p.ods))?,
                })
            })
            .collect()
    }
}
