//! Receiving one HL7 v2 message: decide what it is, commit it, answer it.
//!
//! Every message that arrives is committed to the raw layer before it is
//! answered, whatever its fate:
//! - a valid ADT message the census applies is **accepted** (ACK `AA`);
//! - a valid message of a type the instance keeps without mapping (ORU,
//!   MDM, an ADT trigger it does not apply) is **unprocessed** (ACK `AA`);
//! - anything else is **quarantined** with its reason and location, and
//!   answered `AE` (the content is wrong: fix it and re-send) or `AR` (it
//!   could not be read as HL7 at all).
//!
//! A message re-sent with the same sender, control id (MSH-3, MSH-4,
//! MSH-10) and content is answered `AA` again without being stored or
//! applied twice; the same control id with other content is a new message
//! (see [`dedup_key`]).

use std::sync::atomic::{AtomicU64, Ordering};

use fdp_hl7::{Ack, AckCode, AckError, ErrorCode, Message, ParseError};
use fdp_store::{Committed, Committer, RawRecord, RecordStatus, Submission};

use crate::adt::{event::AdtEvent, extract};

/// The raw table HL7 v2 messages go to.
pub const STREAM: &str = "hl7v2_message";

/// What a message is, before it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Unprocessed,
    Quarantine {
        code: AckCode,
        error_code: ErrorCode,
        reason: String,
        location: String,
        /// `(segment id, index, field)` for the ERR segment.
        err_at: Option<(&'static str, usize, usize)>,
    },
}

/// A message classified and ready to commit.
pub struct Classified {
    pub verdict: Verdict,
    pub submission: Submission,
}

/// Decide what a message is. Pure: the same bytes give the same answer.
pub fn classify(bytes: &[u8], source: &str, received_at_us: i64) -> Classified {
    let mut sub = Submission {
        received_at_us,
        status: RecordStatus::Quarantined,
        stream: STREAM.into(),
        source: source.into(),
        message_type: String::new(),
        control_id: String::new(),
        dedup_key: None,
        reason: String::new(),
        location: String::new(),
        payload: bytes.to_vec(),
    };
    let text = match fdp_hl7::decode(bytes) {
        Ok(t) => t,
        Err(e) => return reject_unreadable(sub, &e),
    };
    let msg = match Message::parse(&text) {
        Ok(m) => m,
        Err(e) => return reject_unreadable(sub, &e),
    };
    let mt = msg.message_type();
    sub.message_type = if mt.trigger.is_empty() {
        mt.code.to_string()
    } else {
        format!("{}^{}", mt.code, mt.trigger)
    };
    sub.control_id = msg.control_id().to_string();
    let key = dedup_key(&msg, &text);
    let verdict = if mt.code.eq_ignore_ascii_case("ADT") {
        let trigger = extract::trigger(&msg);
        if extract::APPLIED_TRIGGERS.contains(&trigger.as_str()) {
            match extract::event(&msg, received_at_us) {
                Ok(_) => Verdict::Accept,
                Err(e) => Verdict::Quarantine {
                    code: AckCode::ApplicationError,
                    error_code: e.code,
                    reason: e.message.clone(),
                    location: e.describe_location(),
                    err_at: Some((e.segment, e.segment_index, e.field)),
                },
            }
        } else {
            Verdict::Unprocessed
        }
    } else {
        Verdict::Unprocessed
    };
    match &verdict {
        Verdict::Accept => {
            sub.status = RecordStatus::Accepted;
            sub.dedup_key = Some(key);
        }
        Verdict::Unprocessed => {
            sub.status = RecordStatus::Unprocessed;
            sub.dedup_key = Some(key);
        }
        Verdict::Quarantine {
            reason, location, ..
        } => {
            // A corrected message is usually re-sent under the same control
            // id: it must not be mistaken for a duplicate of the bad one.
            sub.reason = reason.clone();
            sub.location = location.clone();
        }
    }
    Classified {
        verdict,
        submission: sub,
    }
}

/// What makes a message a re-send: the same sender (MSH-3, MSH-4), the same
/// control id (MSH-10) and the same content. Interface engines reset their
/// control-id counters on restart, and some feeds reuse ids outright, so an
/// id alone does not identify a message: the same id with other content is
/// a new message, applied, and the store notes the reuse.
///
/// The identity is joined by a byte the parser never lets into a field, so
/// that no two different (application, facility, control id) triples share
/// a key; the content digest follows [`fdp_store::DEDUP_CONTENT_SEPARATOR`].
/// Segment separators are normalised first, so a re-send whose line endings
/// an engine rewrote is still recognised.
pub fn dedup_key(msg: &Message, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for segment in text.split(['\r', '\n']).filter(|s| !s.is_empty()) {
        hasher.update(segment.as_bytes());
        hasher.update(b"\r");
    }
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}\u{1f}{}\u{1f}{}{}{hex}",
        msg.sending_application(),
        msg.sending_facility(),
        msg.control_id(),
        fdp_store::DEDUP_CONTENT_SEPARATOR,
    )
}

fn reject_unreadable(mut sub: Submission, e: &ParseError) -> Classified {
    sub.reason = e.to_string();
    sub.location = e
        .location()
        .map(|l| describe_location(&l))
        .unwrap_or_else(|| "message".into());
    Classified {
        verdict: Verdict::Quarantine {
            code: AckCode::ApplicationReject,
            error_code: e.error_code(),
            reason: e.to_string(),
            location: sub.location.clone(),
            err_at: None,
        },
        submission: sub,
    }
}

/// The ADT event in a committed, accepted record.
pub fn event_of(rec: &RawRecord) -> Option<AdtEvent> {
    let text = fdp_hl7::decode(&rec.payload).ok()?;
    let msg = Message::parse(&text).ok()?;
    extract::event(&msg, rec.received_at_us).ok()
}

/// The answer to one message.
pub struct Reply {
    pub ack: Vec<u8>,
    /// The message is durable (AA), whether new or a duplicate.
    pub accepted: bool,
    pub duplicate: bool,
}

/// Classifies, commits and answers messages for one instance.
pub struct Receiver {
    ack_counter: AtomicU64,
    ack_prefix: String,
}

impl Receiver {
    /// `instance` names this instance in ACK control ids.
    pub fn new(instance: &str) -> Self {
        let started = chrono::Utc::now().timestamp_millis();
        Receiver {
            ack_counter: AtomicU64::new(0),
            ack_prefix: format!("{instance}{started:x}"),
        }
    }

    fn next_control_id(&self) -> String {
        let n = self.ack_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.ack_prefix)
    }

    /// Classify, commit durably, and build the ACK.
    pub async fn receive(&self, committer: &Committer, frame: Vec<u8>, source: &str) -> Reply {
        let now = chrono::Utc::now();
        let classified = classify(&frame, source, now.timestamp_micros());
        let committed = committer.commit(classified.submission).await;
        let ts = now.format("%Y%m%d%H%M%S").to_string();
        let control_id = self.next_control_id();
        let ack = build_ack(&frame, &classified.verdict, &committed, &ts, &control_id);
        let accepted = committed.is_ok()
            && matches!(classified.verdict, Verdict::Accept | Verdict::Unprocessed);
        Reply {
            ack: ack.into_bytes(),
            accepted,
            duplicate: matches!(committed, Ok(Committed::Duplicate(_))),
        }
    }
}

fn build_ack(
    frame: &[u8],
    verdict: &Verdict,
    committed: &Result<Committed, fdp_store::StoreError>,
    ts: &str,
    control_id: &str,
) -> String {
    let text = match fdp_hl7::decode(frame) {
        Ok(t) => t,
        Err(e) => return fdp_hl7::reject_unparseable(frame, &e, ts, control_id),
    };
    let msg = match Message::parse(&text) {
        Ok(m) => m,
        Err(e) => return fdp_hl7::reject_unparseable(frame, &e, ts, control_id),
    };
    if let Err(e) = committed {
        let why = format!("not stored, re-send later: {e}");
        return Ack::new(&msg, AckCode::ApplicationReject, ts, control_id)
            .text("not stored; re-send")
            .error(AckError::new(ErrorCode::ApplicationInternalError, why))
            .build();
    }
    match verdict {
        Verdict::Accept => Ack::new(&msg, AckCode::ApplicationAccept, ts, control_id).build(),
        Verdict::Unprocessed => Ack::new(&msg, AckCode::ApplicationAccept, ts, control_id)
            .text("stored; this message type is kept but not processed")
            .build(),
        Verdict::Quarantine {
            code,
            error_code,
            reason,
            err_at,
            ..
        } => {
            let mut err = AckError::new(*error_code, reason.clone());
            if let Some((seg, idx, field)) = err_at {
                let loc = if *field == 0 {
                    fdp_hl7::ErrorLocation::segment(seg, *idx)
                } else {
                    fdp_hl7::ErrorLocation::field(seg, *idx, *field)
                };
                err = err.at(loc);
            }
            Ack::new(&msg, *code, ts, control_id)
                .text("quarantined")
                .error(err)
                .build()
        }
    }
}

/// An answer for a frame that never reached the HL7 parser (it was too
/// large to read): nothing of the sender's header is known, so the reply
/// carries only the reason.
pub fn connection_nack(reason: &str) -> Vec<u8> {
    let ts = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let text = fdp_hl7::escape(reason, &fdp_hl7::Delimiters::default());
    format!(
        "MSH|^~\\&|OPENFDP||||{ts}||ACK|FDP-NACK-{ts}|P|2.5\rMSA|AR||{text}\rERR|||104^Value too long^HL70357|E||||{text}\r"
    )
    .into_bytes()
}

/// `segment 3 (PID) field 3`, as the quarantine shows it.
fn describe_location(l: &fdp_hl7::ErrorLocation) -> String {
    let mut s = format!("segment {} ({})", l.segment_index, l.segment_id);
    if let Some(f) = l.field {
        s.push_str(&format!(" field {f}"));
    }
    s
}
