//! A small MLLP client: what a PAS does, for the demo and the benchmarks.
//!
//! Messages may be pipelined: the writer sends without waiting, the reader
//! takes ACKs in order. The ACK code (MSA-1) of each reply is returned.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use fdp_hl7::{encode_frame, Message, MllpDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The sending half of a connection.
pub struct Sender {
    w: OwnedWriteHalf,
    buf: Vec<u8>,
}

/// The receiving half: ACKs in the order the messages were sent.
pub struct Acks {
    r: OwnedReadHalf,
    decoder: MllpDecoder,
    buf: Vec<u8>,
}

pub async fn connect(addr: SocketAddr) -> Result<(Sender, Acks)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to MLLP at {addr}"))?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    Ok((
        Sender {
            w,
            buf: Vec::with_capacity(64 * 1024),
        },
        Acks {
            r,
            decoder: MllpDecoder::new(),
            buf: vec![0u8; 64 * 1024],
        },
    ))
}

impl Sender {
    pub async fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.w.write_all(&encode_frame(payload)).await?;
        Ok(())
    }

    /// Queue a message to go out with the next [`Sender::flush`].
    pub fn queue(&mut self, payload: &[u8]) {
        self.buf.extend_from_slice(&encode_frame(payload));
    }

    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// MSA-1 of an ACK, e.g. `AA`.
pub fn ack_code(ack: &[u8]) -> String {
    let text = String::from_utf8_lossy(ack);
    Message::parse(&text)
        .ok()
        .and_then(|m| m.get("MSA-1").map(str::to_string))
        .unwrap_or_else(|| "??".into())
}

impl Acks {
    /// The next ACK's payload.
    pub async fn next(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                match frame {
                    Ok(f) => return Ok(f.into_payload()),
                    Err(e) => bail!("bad MLLP reply: {e}"),
                }
            }
            let n = self.r.read(&mut self.buf).await?;
            if n == 0 {
                bail!("the instance closed the connection");
            }
            self.decoder.push(&self.buf[..n]);
        }
    }
}
