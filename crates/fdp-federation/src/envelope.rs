//! Signed messages between instances.
//!
//! A message is a JSON envelope (a unique id, sender and recipient ODS
//! codes, a kind, when it was sent, and its body), and an Ed25519
//! signature by the sender over exactly the bytes sent. The receiver checks
//! the signature against the sender's configured certificate, refuses a
//! message addressed to someone else, older than the allowed window (or
//! from too far in the future), or whose id it has already received.

use chrono::{DateTime, Duration, Utc};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::{verify_signature, InstanceIdentity};

/// One message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per message; the receiver de-duplicates by it.
    pub id: String,
    pub from: String,
    pub to: String,
    /// `question`, `answer`, `referral`, `referral-status`, `capacity`…
    pub kind: String,
    pub sent_at: DateTime<Utc>,
    pub body: Value,
}

impl Envelope {
    /// A new message from `from` to `to`, with a fresh id.
    pub fn new(from: &str, to: &str, kind: &str, body: Value) -> Envelope {
        Envelope {
            id: new_id(),
            from: from.to_string(),
            to: to.to_string(),
            kind: kind.to_string(),
            sent_at: Utc::now(),
            body,
        }
    }
}

/// Whether `id` is a message id as [`new_id`] makes them: 32 lowercase hex
/// digits. Ids come from peers and name files in the inbox and outbox, so
/// nothing else is accepted (no separators, no dots, nothing long).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 128 random bits as hex.
pub fn new_id() -> String {
    use ring::rand::SecureRandom;
    let mut raw = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .expect("the system's random number generator");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// An envelope as sent: its bytes and the sender's signature over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    pub bytes: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Signed {
    /// Sign `envelope` as `identity`, stamped with the time of sending (a
    /// retried message is signed afresh, so its age is its latest attempt's).
    pub fn seal(identity: &InstanceIdentity, envelope: &Envelope) -> Signed {
        let mut e = envelope.clone();
        e.sent_at = Utc::now();
        let bytes = serde_json::to_vec(&e).expect("an envelope serialises");
        let signature = identity.sign(&bytes);
        Signed { bytes, signature }
    }

    pub fn signature_hex(&self) -> String {
        hex(&self.signature)
    }

    /// The signature from its hex form (as the `FDP-Signature` header carries it).
    pub fn parse_signature(hex: &str) -> Option<Vec<u8>> {
        let hex = hex.trim();
        if hex.len() != 128 {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect()
    }
}

/// Bytes (a signature) in lower-case hex, as headers and packages carry
/// them; read back with [`Signed::parse_signature`].
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a message: {0}")]
    Malformed(String),
    #[error("from {0}, which is not a configured peer")]
    UnknownPeer(String),
    #[error("the signature does not match {0}'s certificate")]
    BadSignature(String),
    #[error("addressed to {0}, not to this instance")]
    NotForUs(String),
    #[error("sent at {sent_at}, older than the {window_secs} s allowed")]
    Stale {
        sent_at: DateTime<Utc>,
        window_secs: i64,
    },
    #[error("sent at {0}, in the future")]
    FromTheFuture(DateTime<Utc>),
    #[error("message {0} was already received (replayed)")]
    Replayed(String),
    #[error("message id {0:?} is not 32 lowercase hex digits")]
    BadId(String),
}

/// How old a message may be when it arrives, and how far ahead a sender's
/// clock may be.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub max_age: Duration,
    pub max_skew: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            max_age: Duration::seconds(300),
            max_skew: Duration::seconds(30),
        }
    }
}

/// Open a signed message addressed to `us`: its envelope if the signature
/// matches the sender's certificate (found by `cert_of`) and it is fresh.
/// Whether it was seen before is the inbox's to say.
pub fn open<'c>(
    bytes: &[u8],
    signature: &[u8],
    us: &str,
    cert_of: impl Fn(&str) -> Option<&'c CertificateDer<'static>>,
    window: Window,
    now: DateTime<Utc>,
) -> Result<Envelope, Refused> {
    let e: Envelope =
        serde_json::from_slice(bytes).map_err(|err| Refused::Malformed(err.to_string()))?;
    let cert = cert_of(&e.from).ok_or_else(|| Refused::UnknownPeer(e.from.clone()))?;
    if !verify_signature(cert, bytes, signature) {
        return Err(Refused::BadSignature(e.from));
    }
    // A configured peer, signing properly, is still outside: its id names a
    // file here only once it is known to be harmless.
    if !valid_id(&e.id) {
        return Err(Refused::BadId(e.id.chars().take(80).collect()));
    }
    if e.to != us {
        return Err(Refused::NotForUs(e.to));
    }
    if e.sent_at < now - window.max_age {
        return Err(Refused::Stale {
            sent_at: e.sent_at,
            window_secs: window.max_age.num_seconds(),
        });
    }
    if e.sent_at > now + window.max_skew {
        return Err(Refused::FromTheFuture(e.sent_at));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{FederationCa, OrgRole};
    use serde_json::json;

    #[test]
    fn only_a_fresh_message_signed_by_its_sender_for_us_opens() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FederationCa::create(&dir.path().join("ca"), "Test").unwrap();
        let rxx =
            InstanceIdentity::init(&dir.path().join("rxx"), "RXX", OrgRole::Trust, &ca).unwrap();
        let icb =
            InstanceIdentity::init(&dir.path().join("icb"), "QWO", OrgRole::Icb, &ca).unwrap();
        let certs = [("RXX", rxx.cert.clone()), ("QWO", icb.cert.clone())];
        let cert_of = |ods: &str| certs.iter().find(|(o, _)| *o == ods).map(|(_, c)| c);
        let e = Envelope::new("RXX", "QWO", "question", json!({"q": 1}));
        let s = Signed::seal(&rxx, &e);
        let now = Utc::now();
        let w = Window::default();
        let opened = open(&s.bytes, &s.signature, "QWO", cert_of, w, now).unwrap();
        assert_eq!(
            (opened.id.as_str(), opened.body.clone()),
            (e.id.as_str(), json!({"q": 1}))
        );
        // Tampered bytes, someone else's signature, the wrong recipient.
        // The body is the envelope's last field: change its value.
        let mut tampered = s.bytes.clone();
        let at = tampered.windows(5).position(|w| w == b"\"q\":1").unwrap() + 4;
        tampered[at] = b'2';
        assert_eq!(
            open(&tampered, &s.signature, "QWO", cert_of, w, now),
            Err(Refused::BadSignature("RXX".into()))
        );
        let forged = Signed::seal(&icb, &e);
        assert!(matches!(
            open(&forged.bytes, &forged.signature, "QWO", cert_of, w, now),
            Err(Refused::BadSignature(_))
        ));
        assert!(matches!(
            open(&s.bytes, &s.signature, "RYY", cert_of, w, now),
            Err(Refused::NotForUs(_))
        ));
        // Too old, too far ahead, from a stranger.
        assert!(matches!(
            open(
                &s.bytes,
                &s.signature,
                "QWO",
                cert_of,
                w,
                now + Duration::seconds(301)
            ),
            Err(Refused::Stale { .. })
        ));
        assert!(matches!(
            open(
                &s.bytes,
                &s.signature,
                "QWO",
                cert_of,
                w,
                now - Duration::seconds(60)
            ),
            Err(Refused::FromTheFuture(_))
        ));
        let stranger = Envelope::new("XYZ", "QWO", "question", json!({}));
        let s = Signed::seal(&rxx, &stranger);
        assert_eq!(
            open(&s.bytes, &s.signature, "QWO", cert_of, w, now),
            Err(Refused::UnknownPeer("XYZ".into()))
        );
        assert_eq!(
            Signed::parse_signature(&Signed::seal(&rxx, &e).signature_hex()).map(|s| s.len()),
            Some(64)
        );
    }
}
