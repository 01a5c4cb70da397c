//! The MLLP listener: HL7 v2 over TCP, acknowledged after a durable commit.
//!
//! Each connection is read continuously; every complete frame is handed to
//! the HL7 receiver and its ACK written back in the order the frames came,
//! so a sender may pipeline messages without waiting for each ACK. An ACK
//! (AA, or AE/AR for a quarantined message) is only written once the store
//! has fsynced the message. Bytes outside a frame are skipped and counted;
//! a connection that sends nothing but such bytes is closed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fdp_hl7::MllpError;
use fdp_hl7::{encode_frame, MllpDecoder};
use fdp_store::Committer;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::hl7v2::{self, Receiver};

/// Counters a data engineer or a benchmark reads.
#[derive(Debug, Default)]
pub struct MllpStats {
    pub connections: AtomicU64,
    pub frames: AtomicU64,
    pub acked: AtomicU64,
    pub nacked: AtomicU64,
    pub duplicates: AtomicU64,
    pub garbage_bytes: AtomicU64,
}

/// Listener limits.
#[derive(Debug, Clone)]
pub struct MllpConfig {
    /// Largest frame accepted; a larger one is answered with AR.
    pub max_frame: usize,
    /// Frames read ahead of their ACKs on one connection.
    pub max_in_flight: usize,
    /// Bytes of frames all connections together may hold awaiting their
    /// commits. Each connection may always have one frame in flight beyond
    /// this, so a flood on some connections never starves the others.
    pub max_in_flight_bytes: usize,
    /// Close a connection that sends this many bytes outside any frame.
    pub max_garbage: usize,
    /// Close a connection idle this long.
    pub idle_timeout: Duration,
}

impl Default for MllpConfig {
    fn default() -> Self {
        MllpConfig {
            max_frame: 1 << 20,
            max_in_flight: 128,
            max_in_flight_bytes: 64 << 20,
            max_garbage: 64 * 1024,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

type AckFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>>;

/// The shared in-flight budget is counted in KiB.
const BUDGET_UNIT: usize = 1024;

fn budget_units(frame_len: usize) -> u32 {
    u32::try_from(frame_len.div_ceil(BUDGET_UNIT).max(1)).unwrap_or(u32::MAX)
}

/// Accept connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    committer: Committer,
    receiver: Arc<Receiver>,
    stats: Arc<MllpStats>,
    config: MllpConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let budget = Arc::new(Semaphore::new(
        (config.max_in_flight_bytes / BUDGET_UNIT).clamp(1, Semaphore::MAX_PERMITS),
    ));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    let (c, r, s, cfg, sd) = (committer.clone(), receiver.clone(), stats.clone(), config.clone(), shutdown.clone());
                    let b = budget.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, peer, c, r, s, cfg, b, sd).await {
                            tracing::debug!(%peer, error = %e, "MLLP connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, "MLLP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() { return; }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    committer: Committer,
    receiver: Arc<Receiver>,
    stats: Arc<MllpStats>,
    config: MllpConfig,
    budget: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let source = format!("mllp://{peer}");
    let mut decoder = MllpDecoder::with_max_frame_bytes(config.max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let mut in_flight: FuturesOrdered<AckFuture> = FuturesOrdered::new();
    // Frames read but not yet given a share of the budget (at most one
    // read's worth: reading stops while any wait).
    let mut waiting: VecDeque<Vec<u8>> = VecDeque::new();
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut garbage_run = 0usize;
    let mut eof = false;
    loop {
        // A connection with nothing in flight takes its next frame without
        // the shared budget: whatever others send, it makes progress.
        while in_flight.is_empty() {
            let Some(frame) = waiting.pop_front() else {
                break;
            };
            in_flight.push_back(commit_and_ack(
                &committer, &receiver, &stats, &source, frame, None,
            ));
        }
        if eof && in_flight.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        let can_read = !eof && waiting.is_empty() && in_flight.len() < config.max_in_flight;
        let wants_budget = !waiting.is_empty() && in_flight.len() < config.max_in_flight;
        let next_units = waiting.front().map(|f| budget_units(f.len())).unwrap_or(1);
        tokio::select! {
            biased;
            Some(ack) = in_flight.next(), if !in_flight.is_empty() => {
                let ack: Vec<u8> = ack;
                out.clear();
                out.extend_from_slice(&ack);
                // Write every ACK that is ready together.
                while let Some(Some(more)) = futures::FutureExt::now_or_never(in_flight.next()) {
                    out.extend_from_slice(&more);
                }
                stream.write_all(&out).await?;
            }
            permit = budget.clone().acquire_many_owned(next_units), if wants_budget => {
                let Ok(permit) = permit else { return Ok(()) };
                if let Some(frame) = waiting.pop_front() {
                    in_flight.push_back(commit_and_ack(&committer, &receiver, &stats, &source, frame, Some(permit)));
                }
            }
            read = tokio::time::timeout(config.idle_timeout, stream.read(&mut buf)), if can_read => {
                let n = match read {
                    Ok(r) => r?,
                    Err(_) => {
                        tracing::info!(%peer, "closing idle MLLP connection");
                        eof = true;
                        continue;
                    }
                };
                if n == 0 {
                    eof = true;
                    continue;
                }
                decoder.push(&buf[..n]);
                while let Some(item) = decoder.next_frame() {
                    match item {
                        Ok(frame) => {
                            garbage_run = 0;
                            stats.frames.fetch_add(1, Ordering::Relaxed);
                            waiting.push_back(frame.into_payload());
                        }
                        Err(MllpError::GarbageOutsideFrame { bytes }) => {
                            stats.garbage_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                            garbage_run += bytes;
                            tracing::warn!(%peer, bytes, "skipped bytes outside an MLLP frame (expected 0x0B to start a message)");
                            if garbage_run > config.max_garbage {
                                tracing::warn!(%peer, "closing connection: it sends no MLLP frames");
                                return Ok(());
                            }
                        }
                        Err(e @ MllpError::FrameTooLarge { .. }) => {
                            // A frame we will not read: the sender is waiting
                            // for an answer to it, so give one.
                            stats.nacked.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, error = %e, "MLLP frame refused");
                            // Answered in its turn, after the frames before it.
                            let nack = hl7v2::connection_nack(&e.to_string());
                            let earlier = std::mem::take(&mut waiting);
                            for frame in earlier {
                                in_flight.push_back(commit_and_ack(&committer, &receiver, &stats, &source, frame, None));
                            }
                            in_flight.push_back(Box::pin(async move { encode_frame(&nack) }) as AckFuture);
                        }
                        Err(e) => {
                            // A frame abandoned part-way (a new start block
                            // came first): the sender is not waiting for an
                            // answer to it, and an unasked-for one would put
                            // its ACKs out of step.
                            tracing::warn!(%peer, error = %e, "incomplete MLLP frame skipped");
                        }
                    }
                }
            }
            changed = shutdown.changed(), if !eof => {
                if changed.is_err() || *shutdown.borrow() { eof = true; }
            }
        }
    }
}

/// Commit one frame and produce its ACK; the budget share, if any, is
/// given back once the commit is answered.
fn commit_and_ack(
    committer: &Committer,
    receiver: &Arc<Receiver>,
    stats: &Arc<MllpStats>,
    source: &str,
    frame: Vec<u8>,
    permit: Option<OwnedSemaphorePermit>,
) -> AckFuture {
    let (c, r, s, src) = (
        committer.clone(),
        receiver.clone(),
        stats.clone(),
        source.to_string(),
    );
    Box::pin(async move {
        let reply = r.receive(&c, frame, &src).await;
        drop(permit);
        if reply.accepted {
            s.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            s.nacked.fetch_add(1, Ordering::Relaxed);
        }
        if reply.duplicate {
            s.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        encode_frame(&reply.ack)
    })
}
