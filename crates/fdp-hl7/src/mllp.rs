//! MLLP (Minimal Lower Layer Protocol) framing: `0x0B payload 0x1C 0x0D`.
//!
//! The decoder is a plain state machine fed with whatever chunks the socket
//! returns; it owns no socket and never blocks, so the listener can drive it
//! from any runtime and tests can drive it byte by byte.
//!
//! # Leniency, and why
//!
//! * **End of frame is the end block 0x1C.** The carriage return after it is
//!   expected and consumed, but a frame is delivered as soon as 0x1C arrives.
//!   Waiting for the CR would deadlock with a sender that omits it and waits
//!   for our ACK. 0x1C cannot occur inside HL7 text, so ending there is
//!   unambiguous. If the byte after 0x1C is not a CR it is treated as the
//!   first byte after the frame.
//! * **Whitespace between frames is ignored.** Some senders write a LF after
//!   each frame. Any other byte outside a frame is garbage: it is discarded
//!   and reported once per run as [`MllpError::GarbageOutsideFrame`] (when a
//!   frame starts, at [`MllpDecoder::finish`], or every `max_frame_bytes`
//!   bytes, so a peer sending only junk is noticed).
//! * **A start block inside a frame starts a new frame.** The partial frame
//!   before it is reported as [`MllpError::UnterminatedFrame`]; this is what
//!   a sender that crashed mid-message and reconnected on the same stream
//!   looks like.
//! * **Oversized frames are skipped.** Once a frame exceeds the limit,
//!   [`MllpError::FrameTooLarge`] is reported, its bytes are dropped without
//!   buffering, and decoding resumes at its end block or the next start
//!   block.
//!
//! Errors are values, not a broken state: after any of them the decoder
//! keeps going, and the connection can stay open.

use std::collections::VecDeque;
use std::ops::Deref;

use crate::MllpError;

/// Start of block, VT.
pub const START_BLOCK: u8 = 0x0B;
/// End of block, FS.
pub const END_BLOCK: u8 = 0x1C;
/// Carriage return that follows the end block.
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// Default largest payload accepted by [`MllpDecoder`]: 1 MiB, the same as
/// the default message limit of the parser.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// The payload of one MLLP frame (the bytes between 0x0B and 0x1C).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    payload: Vec<u8>,
}

impl Frame {
    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.payload
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// After a start block, collecting payload.
    InFrame,
    /// Just after an end block: a CR here belongs to the trailer.
    AfterEnd,
    /// Inside a frame that has exceeded the size limit.
    Discarding,
}

/// Incremental MLLP decoder.
///
/// Feed it bytes with [`push`](Self::push) as they arrive, then drain
/// [`next_frame`](Self::next_frame) until it returns `None`. Call
/// [`finish`](Self::finish) when the peer closes the connection so a partial
/// frame or trailing garbage is reported.
///
/// ```
/// use fdp_hl7::{encode_frame, MllpDecoder, MllpError};
///
/// let mut stream = b"junk".to_vec();
/// stream.extend(encode_frame(b"MSH|first"));
/// stream.extend(encode_frame(b"MSH|second"));
///
/// let mut dec = MllpDecoder::new();
/// // Bytes may arrive in any chunks.
/// for chunk in stream.chunks(5) {
///     dec.push(chunk);
/// }
/// assert_eq!(dec.next_frame(), Some(Err(MllpError::GarbageOutsideFrame { bytes: 4 })));
/// assert_eq!(dec.next_frame().unwrap().unwrap().payload(), b"MSH|first");
/// assert_eq!(dec.next_frame().unwrap().unwrap().payload(), b"MSH|second");
/// assert_eq!(dec.next_frame(), None);
/// ```
#[derive(Debug, Clone)]
pub struct MllpDecoder {
    state: State,
    max_frame_bytes: usize,
    /// Payload of the frame being received.
    frame: Vec<u8>,
    /// Length of the current run of bytes outside any frame.
    garbage: usize,
    /// Whether that run holds anything but whitespace.
    garbage_significant: bool,
    /// Decoded frames and errors not yet taken by the caller.
    ready: VecDeque<Result<Frame, MllpError>>,
}

impl Default for MllpDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl MllpDecoder {
    /// A decoder accepting payloads up to [`DEFAULT_MAX_FRAME_BYTES`].
    pub fn new() -> Self {
        Self::with_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES)
    }

    /// A decoder accepting payloads up to `max_frame_bytes`.
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        MllpDecoder {
            state: State::Idle,
            max_frame_bytes,
            frame: Vec::new(),
            garbage: 0,
            garbage_significant: false,
            ready: VecDeque::new(),
        }
    }

    /// The configured payload limit.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// True while part of a frame has been received but not its end block.
    pub fn in_frame(&self) -> bool {
        matches!(self.state, State::InFrame | State::Discarding)
    }

    /// Feeds received bytes. Complete frames and errors become available from
    /// [`next_frame`](Self::next_frame).
    pub fn push(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            rest = match self.state {
                State::Idle => self.idle(rest),
                State::InFrame => self.in_frame_bytes(rest),
                State::AfterEnd => {
                    self.state = State::Idle;
                    if rest[0] == CARRIAGE_RETURN {
                        &rest[1..]
                    } else {
                        rest
                    }
                }
                State::Discarding => self.discarding(rest),
            };
        }
    }

    /// The next decoded frame or error, in stream order; `None` when more
    /// bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, MllpError>> {
        self.ready.pop_front()
    }

    /// An iterator draining everything decoded so far.
    pub fn frames(&mut self) -> impl Iterator<Item = Result<Frame, MllpError>> + '_ {
        self.ready.drain(..)
    }

    /// Signals the end of the stream: a partial frame is reported as
    /// [`MllpError::UnterminatedFrame`] and pending garbage as
    /// [`MllpError::GarbageOutsideFrame`]. The decoder is then back in its
    /// initial state and may be reused.
    pub fn finish(&mut self) {
        match self.state {
            State::InFrame => {
                let bytes = self.frame.len();
                self.frame.clear();
                self.ready
                    .push_back(Err(MllpError::UnterminatedFrame { bytes }));
            }
            State::Idle => self.report_garbage(),
            State::AfterEnd | State::Discarding => {}
        }
        self.state = State::Idle;
    }

    fn idle<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        match bytes.iter().position(|&b| b == START_BLOCK) {
            Some(p) => {
                self.count_garbage(&bytes[..p]);
                self.report_garbage();
                self.start_frame();
                &bytes[p + 1..]
            }
            None => {
                self.count_garbage(bytes);
                &[]
            }
        }
    }

    fn in_frame_bytes<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let end = bytes
            .iter()
            .position(|&b| b == END_BLOCK || b == START_BLOCK);
        let content = &bytes[..end.unwrap_or(bytes.len())];
        if self.frame.len() + content.len() > self.max_frame_bytes {
            self.frame = Vec::new();
            self.ready.push_back(Err(MllpError::FrameTooLarge {
                limit: self.max_frame_bytes,
            }));
            self.state = State::Discarding;
            return &bytes[content.len()..];
        }
        self.frame.extend_from_slice(content);
        match end {
            None => &[],
            Some(p) if bytes[p] == END_BLOCK => {
                let payload = std::mem::take(&mut self.frame);
                self.ready.push_back(Ok(Frame { payload }));
                self.state = State::AfterEnd;
                &bytes[p + 1..]
            }
            Some(p) => {
                let abandoned = self.frame.len();
                self.ready
                    .push_back(Err(MllpError::UnterminatedFrame { bytes: abandoned }));
                self.start_frame();
                &bytes[p + 1..]
            }
        }
    }

    fn discarding<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        match bytes
            .iter()
            .position(|&b| b == END_BLOCK || b == START_BLOCK)
        {
            None => &[],
            Some(p) if bytes[p] == END_BLOCK => {
                self.state = State::AfterEnd;
                &bytes[p + 1..]
            }
            Some(p) => {
                self.start_frame();
                &bytes[p + 1..]
            }
        }
    }

    fn start_frame(&mut self) {
        self.frame.clear();
        self.state = State::InFrame;
    }

    fn count_garbage(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(self.max_frame_bytes.max(1)) {
            self.garbage += chunk.len();
            self.garbage_significant |= chunk
                .iter()
                .any(|&b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'));
            if self.garbage >= self.max_frame_bytes {
                self.report_garbage();
            }
        }
    }

    fn report_garbage(&mut self) {
        if self.garbage_significant {
            self.ready.push_back(Err(MllpError::GarbageOutsideFrame {
                bytes: self.garbage,
            }));
        }
        self.garbage = 0;
        self.garbage_significant = false;
    }
}

/// Wraps a payload in an MLLP frame.
///
/// The payload must not contain 0x0B or 0x1C; HL7 text never does, and
/// replies built by this crate escape all control characters.
///
/// ```
/// use fdp_hl7::encode_frame;
/// assert_eq!(encode_frame(b"MSH|"), b"\x0bMSH|\x1c\r");
/// ```
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    write_frame(&mut out, payload);
    out
}

/// Appends an MLLP frame holding `payload` to `out`; see [`encode_frame`].
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.reserve(payload.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(payload);
    out.push(END_BLOCK);
    out.push(CARRIAGE_RETURN);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(dec: &mut MllpDecoder) -> Vec<Result<Vec<u8>, MllpError>> {
        dec.frames().map(|r| r.map(Frame::into_payload)).collect()
    }

    #[test]
    fn decodes_back_to_back_frames() {
        let mut stream = encode_frame(b"one");
        write_frame(&mut stream, b"two");
        let mut dec = MllpDecoder::new();
        dec.push(&stream);
        assert_eq!(
            drain(&mut dec),
            vec![Ok(b"one".to_vec()), Ok(b"two".to_vec())]
        );
        assert!(!dec.in_frame());
    }

    #[test]
    fn byte_by_byte() {
        let stream = encode_frame(b"MSH|^~\\&|x\rPID|1\r");
        let mut dec = MllpDecoder::new();
        for (i, b) in stream.iter().enumerate() {
            dec.push(std::slice::from_ref(b));
            if i + 1 < stream.len() - 1 {
                assert_eq!(dec.next_frame(), None, "early frame at byte {i}");
            }
        }
        assert_eq!(drain(&mut dec), vec![Ok(b"MSH|^~\\&|x\rPID|1\r".to_vec())]);
    }

    #[test]
    fn frame_delivered_without_trailing_cr() {
        let mut dec = MllpDecoder::new();
        dec.push(b"\x0bA\x1c");
        assert_eq!(drain(&mut dec), vec![Ok(b"A".to_vec())]);
        // The next byte is not a CR: it is ordinary outside-frame input.
        dec.push(b"\x0bB\x1c\r");
        assert_eq!(drain(&mut dec), vec![Ok(b"B".to_vec())]);
    }

    #[test]
    fn whitespace_between_frames_is_not_garbage() {
        let mut dec = MllpDecoder::new();
        dec.push(b"\r\n\x0bA\x1c\r\n\n \x0bB\x1c\r\n");
        dec.finish();
        assert_eq!(drain(&mut dec), vec![Ok(b"A".to_vec()), Ok(b"B".to_vec())]);
    }

    #[test]
    fn garbage_reported_once_per_run() {
        let mut dec = MllpDecoder::new();
        dec.push(b"GET / HTTP/1.1\r\n");
        dec.push(b"Host: x\r\n\r\n");
        assert_eq!(dec.next_frame(), None);
        dec.push(b"\x0bA\x1c\rtrailing");
        dec.finish();
        assert_eq!(
            drain(&mut dec),
            vec![
                Err(MllpError::GarbageOutsideFrame { bytes: 27 }),
                Ok(b"A".to_vec()),
                Err(MllpError::GarbageOutsideFrame { bytes: 8 }),
            ]
        );
    }

    #[test]
    fn endless_garbage_is_reported_periodically() {
        let mut dec = MllpDecoder::with_max_frame_bytes(10);
        dec.push(&[b'x'; 25]);
        assert_eq!(
            drain(&mut dec),
            vec![
                Err(MllpError::GarbageOutsideFrame { bytes: 10 }),
                Err(MllpError::GarbageOutsideFrame { bytes: 10 }),
            ]
        );
        dec.finish();
        assert_eq!(
            drain(&mut dec),
            vec![Err(MllpError::GarbageOutsideFrame { bytes: 5 })]
        );
    }

    #[test]
    fn oversized_frame_is_skipped_and_decoder_resyncs() {
        let mut dec = MllpDecoder::with_max_frame_bytes(4);
        dec.push(b"\x0b12345");
        dec.push(b"6789\x1c\r\x0bok\x1c\r");
        dec.push(b"\x0btoolong\x0bnext\x1c\r");
        assert_eq!(
            drain(&mut dec),
            vec![
                Err(MllpError::FrameTooLarge { limit: 4 }),
                Ok(b"ok".to_vec()),
                Err(MllpError::FrameTooLarge { limit: 4 }),
                Ok(b"next".to_vec()),
            ]
        );
    }

    #[test]
    fn payload_of_exactly_the_limit_is_accepted() {
        let mut dec = MllpDecoder::with_max_frame_bytes(4);
        dec.push(b"\x0b12");
        dec.push(b"34\x1c\r");
        assert_eq!(drain(&mut dec), vec![Ok(b"1234".to_vec())]);
    }

    #[test]
    fn start_block_inside_frame_abandons_it() {
        let mut dec = MllpDecoder::new();
        dec.push(b"\x0bhalf a mess\x0bwhole\x1c\r");
        assert_eq!(
            drain(&mut dec),
            vec![
                Err(MllpError::UnterminatedFrame { bytes: 11 }),
                Ok(b"whole".to_vec()),
            ]
        );
    }

    #[test]
    fn finish_reports_partial_frame_and_resets() {
        let mut dec = MllpDecoder::new();
        dec.push(b"\x0bpartial");
        assert!(dec.in_frame());
        dec.finish();
        assert_eq!(
            drain(&mut dec),
            vec![Err(MllpError::UnterminatedFrame { bytes: 7 })]
        );
        assert!(!dec.in_frame());
        dec.push(&encode_frame(b"again"));
        assert_eq!(drain(&mut dec), vec![Ok(b"again".to_vec())]);
    }

    #[test]
    fn empty_frame() {
        let mut dec = MllpDecoder::new();
        dec.push(b"\x0b\x1c\r");
        assert_eq!(drain(&mut dec), vec![Ok(Vec::new())]);
    }

    #[test]
    fn zero_limit_never_panics() {
        let mut dec = MllpDecoder::with_max_frame_bytes(0);
        dec.push(b"ab\x0b\x1c\r\x0bx\x1c\r");
        dec.finish();
        let out = drain(&mut dec);
        assert!(out.contains(&Ok(Vec::new())));
        assert!(out.contains(&Err(MllpError::FrameTooLarge { limit: 0 })));
    }
}
