//! Building acknowledgement (ACK) replies.
//!
//! The listener replies only after a message is durably committed, so an
//! `AA` here is a promise; these builders only format it. The caller passes
//! the reply's timestamp and control id so this crate needs no clock and no
//! id generator, and its output is reproducible in tests.

use std::fmt;

use crate::encoding::msh_start;
use crate::escape::{escape, unescape};
use crate::{Delimiters, Message, ParseError};

/// MSA-1, the acknowledgement code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// `AA`: application accept — processed (for us: durably stored).
    ApplicationAccept,
    /// `AE`: application error — the message was understood but has an error;
    /// resending it unchanged will not help.
    ApplicationError,
    /// `AR`: application reject — the message could not be processed (bad
    /// header, unsupported type, or a failure on our side).
    ApplicationReject,
    /// `CA`: commit accept (enhanced acknowledgement mode).
    CommitAccept,
    /// `CE`: commit error (enhanced acknowledgement mode).
    CommitError,
    /// `CR`: commit reject (enhanced acknowledgement mode).
    CommitReject,
}

impl AckCode {
    /// The code as written in MSA-1.
    pub fn as_str(&self) -> &'static str {
        match self {
            AckCode::ApplicationAccept => "AA",
            AckCode::ApplicationError => "AE",
            AckCode::ApplicationReject => "AR",
            AckCode::CommitAccept => "CA",
            AckCode::CommitError => "CE",
            AckCode::CommitReject => "CR",
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HL7 table 0357, message error condition codes, for ERR-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: message accepted.
    MessageAccepted,
    /// 100: segment sequence error.
    SegmentSequenceError,
    /// 101: required field missing.
    RequiredFieldMissing,
    /// 102: data type error.
    DataTypeError,
    /// 103: table value not found.
    TableValueNotFound,
    /// 104: value too long (v2.7).
    ValueTooLong,
    /// 200: unsupported message type.
    UnsupportedMessageType,
    /// 201: unsupported event code.
    UnsupportedEventCode,
    /// 202: unsupported processing id.
    UnsupportedProcessingId,
    /// 203: unsupported version id.
    UnsupportedVersionId,
    /// 204: unknown key identifier.
    UnknownKeyIdentifier,
    /// 205: duplicate key identifier.
    DuplicateKeyIdentifier,
    /// 206: application record locked.
    ApplicationRecordLocked,
    /// 207: application internal error.
    ApplicationInternalError,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(&self) -> u16 {
        match self {
            ErrorCode::MessageAccepted => 0,
            ErrorCode::SegmentSequenceError => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataTypeError => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::ValueTooLong => 104,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKeyIdentifier => 204,
            ErrorCode::DuplicateKeyIdentifier => 205,
            ErrorCode::ApplicationRecordLocked => 206,
            ErrorCode::ApplicationInternalError => 207,
        }
    }

    /// The standard description.
    pub fn text(&self) -> &'static str {
        match self {
            ErrorCode::MessageAccepted => "Message accepted",
            ErrorCode::SegmentSequenceError => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataTypeError => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::ValueTooLong => "Value too long",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationRecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }
}

/// ERR-4, how serious an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Severity {
    /// `E`: the message was not (fully) processed.
    #[default]
    Error,
    /// `W`: processed, but the sender should look.
    Warning,
    /// `I`: information only.
    Information,
    /// `F`: fatal (v2.7).
    Fatal,
}

impl Severity {
    /// The code written in ERR-4.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
            Severity::Fatal => "F",
        }
    }
}

/// ERR-2, where an error is: segment id and position, then optionally field,
/// repetition, component and subcomponent, all 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorLocation {
    /// Segment id, e.g. `PID`.
    pub segment_id: String,
    /// 1-based position of the segment in the message.
    pub segment_index: usize,
    /// Field number.
    pub field: Option<usize>,
    /// Repetition of the field.
    pub repetition: Option<usize>,
    /// Component.
    pub component: Option<usize>,
    /// Subcomponent.
    pub subcomponent: Option<usize>,
}

impl ErrorLocation {
    /// A whole segment.
    pub fn segment(segment_id: &str, segment_index: usize) -> Self {
        ErrorLocation {
            segment_id: segment_id.to_owned(),
            segment_index,
            field: None,
            repetition: None,
            component: None,
            subcomponent: None,
        }
    }

    /// A field of a segment.
    pub fn field(segment_id: &str, segment_index: usize, field: usize) -> Self {
        ErrorLocation {
            field: Some(field),
            ..Self::segment(segment_id, segment_index)
        }
    }

    /// Narrows to a component (of repetition 1 unless set otherwise).
    pub fn with_component(mut self, component: usize) -> Self {
        self.component = Some(component);
        self
    }

    /// Narrows to a repetition.
    pub fn with_repetition(mut self, repetition: usize) -> Self {
        self.repetition = Some(repetition);
        self
    }

    fn write(&self, out: &mut String, d: &Delimiters) {
        push_escaped(out, &self.segment_id, d);
        let parts = [
            Some(self.segment_index),
            self.field,
            self.repetition,
            self.component,
            self.subcomponent,
        ];
        // Trailing empty components are omitted, as HL7 recommends.
        let last = parts.iter().rposition(Option::is_some).unwrap_or(0);
        for part in &parts[..=last] {
            out.push(d.component());
            if let Some(n) = part {
                push_number(out, *n);
            }
        }
    }
}

/// One error to report in an ERR segment.
///
/// ```
/// use fdp_hl7::{AckError, ErrorCode, ErrorLocation, Severity};
///
/// let e = AckError::new(ErrorCode::RequiredFieldMissing, "PID-3 has no NHS number")
///     .at(ErrorLocation::field("PID", 3, 3))
///     .severity(Severity::Error);
/// assert_eq!(e.code, ErrorCode::RequiredFieldMissing);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// ERR-3 error code.
    pub code: ErrorCode,
    /// ERR-4 severity.
    pub severity: Severity,
    /// ERR-2 location, if the error has one.
    pub location: Option<ErrorLocation>,
    /// ERR-8, a message for a person on the sending side.
    pub user_message: String,
    /// ERR-7, technical detail for the sender's support staff.
    pub diagnostic: Option<String>,
}

impl AckError {
    /// An error with severity `E` and no location.
    pub fn new(code: ErrorCode, user_message: impl Into<String>) -> Self {
        AckError {
            code,
            severity: Severity::Error,
            location: None,
            user_message: user_message.into(),
            diagnostic: None,
        }
    }

    /// The error that describes a [`ParseError`]: its table 0357 code, its
    /// location when known, and its message.
    pub fn from_parse_error(err: &ParseError) -> Self {
        AckError {
            location: err.location(),
            ..AckError::new(err.error_code(), err.to_string())
        }
    }

    /// Sets the location (ERR-2).
    pub fn at(mut self, location: ErrorLocation) -> Self {
        self.location = Some(location);
        self
    }

    /// Sets the severity (ERR-4).
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the diagnostic information (ERR-7).
    pub fn diagnostic(mut self, diagnostic: impl Into<String>) -> Self {
        self.diagnostic = Some(diagnostic.into());
        self
    }

    /// Writes one ERR segment (without terminator).
    ///
    /// ERR-2 onwards is the v2.5 layout. For senders on v2.4 and earlier,
    /// which only know ERR-1, the location and code are also written there
    /// (segment^sequence^field^code&text&HL70357); later versions ignore it
    /// as a withdrawn field.
    fn write(&self, out: &mut String, d: &Delimiters, legacy: bool) {
        out.push_str("ERR");
        out.push(d.field());
        if legacy {
            if let Some(loc) = &self.location {
                push_escaped(out, &loc.segment_id, d);
                out.push(d.component());
                push_number(out, loc.segment_index);
                out.push(d.component());
                if let Some(f) = loc.field {
                    push_number(out, f);
                }
            } else {
                out.push(d.component());
                out.push(d.component());
            }
            out.push(d.component());
            push_number(out, usize::from(self.code.code()));
            out.push(d.subcomponent());
            push_escaped(out, self.code.text(), d);
            out.push(d.subcomponent());
            out.push_str("HL70357");
        }
        out.push(d.field());
        if let Some(loc) = &self.location {
            loc.write(out, d);
        }
        out.push(d.field());
        push_number(out, usize::from(self.code.code()));
        out.push(d.component());
        push_escaped(out, self.code.text(), d);
        out.push(d.component());
        out.push_str("HL70357");
        out.push(d.field());
        out.push_str(self.severity.as_str());
        // ERR-5 application error code and ERR-6 parameters are unused.
        out.push(d.field());
        out.push(d.field());
        out.push(d.field());
        if let Some(diag) = &self.diagnostic {
            push_escaped(out, diag, d);
        }
        out.push(d.field());
        push_escaped(out, &self.user_message, d);
    }
}

/// Builds the ACK for a parsed message.
///
/// The reply uses the incoming message's delimiters; swaps sending and
/// receiving application and facility (whole fields, so namespace,
/// universal id and type all survive); echoes MSH-11, MSH-12 and MSH-18; has
/// message type `ACK^<trigger>^ACK`; and carries MSA with the original
/// control id. Caller-supplied text is escaped.
///
/// ```
/// use fdp_hl7::{Ack, AckCode, AckError, ErrorCode, ErrorLocation, Message};
///
/// let msg = Message::parse(
///     "MSH|^~\\&|PAS|RXX|FDP|RYY|20240501120000||ADT^A01^ADT_A01|MSG0001|P|2.5\rPID|1||123\r",
/// ).unwrap();
///
/// let ack = Ack::new(&msg, AckCode::ApplicationAccept, "20240501120001", "FDP0001")
///     .text("stored")
///     .build();
/// assert_eq!(
///     ack,
///     "MSH|^~\\&|FDP|RYY|PAS|RXX|20240501120001||ACK^A01^ACK|FDP0001|P|2.5\rMSA|AA|MSG0001|stored\r"
/// );
///
/// let nack = Ack::new(&msg, AckCode::ApplicationError, "20240501120001", "FDP0002")
///     .error(
///         AckError::new(ErrorCode::RequiredFieldMissing, "PID-3 needs an NHS number | MRN")
///             .at(ErrorLocation::field("PID", 2, 3)),
///     )
///     .build();
/// assert!(nack.ends_with(
///     "MSA|AE|MSG0001\rERR||PID^2^3|101^Required field missing^HL70357|E||||PID-3 needs an NHS number \\F\\ MRN\r"
/// ));
/// ```
#[derive(Debug, Clone)]
pub struct Ack<'r> {
    msg: &'r Message<'r>,
    code: AckCode,
    timestamp: &'r str,
    control_id: &'r str,
    text: Option<&'r str>,
    errors: Vec<AckError>,
}

impl<'r> Ack<'r> {
    /// Starts an acknowledgement of `msg` with MSA-1 `code`, reply
    /// timestamp MSH-7 (HL7 `YYYYMMDDHHMMSS[.S][+ZZZZ]`, supplied by the
    /// caller) and reply control id MSH-10.
    pub fn new(
        msg: &'r Message<'r>,
        code: AckCode,
        timestamp: &'r str,
        control_id: &'r str,
    ) -> Self {
        Ack {
            msg,
            code,
            timestamp,
            control_id,
            text: None,
            errors: Vec::new(),
        }
    }

    /// Sets MSA-3, a short text for the sender.
    pub fn text(mut self, text: &'r str) -> Self {
        self.text = Some(text);
        self
    }

    /// Adds an ERR segment.
    pub fn error(mut self, error: AckError) -> Self {
        self.errors.push(error);
        self
    }

    /// Formats the reply, segments terminated by CR.
    pub fn build(&self) -> String {
        let msg = self.msg;
        let d = msg.delimiters();
        let msh = msg.msh();
        let field = |n| msh.field(n).map_or("", |f| f.as_str());
        let mut out = String::with_capacity(256);
        out.push_str("MSH");
        out.push(d.field());
        d.push_encoding_characters(&mut out);
        // MSH-3..6: the sender becomes the receiver. Raw copies are safe
        // because the reply uses the same delimiters.
        for n in [5, 6, 3, 4] {
            out.push(d.field());
            out.push_str(field(n));
        }
        out.push(d.field());
        push_escaped(&mut out, self.timestamp, &d);
        out.push(d.field()); // MSH-8 security
        out.push(d.field());
        out.push_str("ACK");
        let trigger = msg.message_type().trigger;
        if !trigger.is_empty() {
            out.push(d.component());
            out.push_str(trigger);
            out.push(d.component());
            out.push_str("ACK");
        }
        out.push(d.field());
        push_escaped(&mut out, self.control_id, &d);
        out.push(d.field());
        out.push_str(field(11));
        out.push(d.field());
        out.push_str(field(12));
        let charset = field(18);
        if !charset.is_empty() {
            for _ in 13..=18 {
                out.push(d.field());
            }
            out.push_str(charset);
        }
        out.push('\r');

        out.push_str("MSA");
        out.push(d.field());
        out.push_str(self.code.as_str());
        out.push(d.field());
        out.push_str(msg.control_id());
        if let Some(text) = self.text {
            out.push(d.field());
            push_escaped(&mut out, text, &d);
        }
        out.push('\r');

        let legacy = is_legacy_version(msg.version());
        for e in &self.errors {
            e.write(&mut out, &d, legacy);
            out.push('\r');
        }
        out
    }
}

/// Builds an `AR` reply for bytes that could not be parsed as a message.
///
/// The reply uses the default delimiters, since the sender's could not be
/// trusted. Whatever can be read from a first line that starts with `MSH`
/// is salvaged: sending and receiving application and facility (swapped),
/// processing id, version and, most importantly, the control id for MSA-2,
/// so the sender can match the reject to what it sent. Salvaged values are
/// cut to 199 characters (the HL7 length of a control id) and re-escaped.
/// Without a salvageable version the reply says `2.5`, the version whose
/// ERR layout it uses; without a processing id it says `P`.
///
/// ```
/// use fdp_hl7::{reject_unparseable, Message};
///
/// let bytes = b"MSH|^~\\&|PAS|RXX|FDP|RYY|20240501||ADT^A01|MSG7|P|2.4\rP@D|1\r";
/// let err = Message::parse_bytes(bytes).unwrap_err();
/// let nack = reject_unparseable(bytes, &err, "20240501120001", "FDP0003");
/// let reply = Message::parse(&nack).unwrap();
/// assert_eq!(reply.get("MSA-1"), Some("AR"));
/// assert_eq!(reply.get("MSA-2"), Some("MSG7"));
/// assert_eq!(reply.get("MSH-5"), Some("PAS"));
/// assert_eq!(reply.get("ERR-3.1"), Some("100"));
/// ```
pub fn reject_unparseable(
    bytes: &[u8],
    error: &ParseError,
    timestamp: &str,
    control_id: &str,
) -> String {
    let salvage = Salvage::new(bytes);
    let d = Delimiters::default();
    let get = |n: usize| salvage.field(n);
    let mut out = String::with_capacity(256);
    out.push_str("MSH|^~\\&");
    for n in [5, 6, 3, 4] {
        out.push('|');
        push_escaped(&mut out, &get(n), &d);
    }
    out.push('|');
    push_escaped(&mut out, timestamp, &d);
    out.push_str("||ACK|");
    push_escaped(&mut out, control_id, &d);
    out.push('|');
    let processing = get(11);
    push_escaped(&mut out, or_default(&processing, "P"), &d);
    out.push('|');
    let version = get(12);
    let version = or_default(&version, "2.5");
    push_escaped(&mut out, version, &d);
    out.push_str("\rMSA|AR|");
    push_escaped(&mut out, &get(10), &d);
    out.push('|');
    push_escaped(&mut out, &error.to_string(), &d);
    out.push('\r');
    AckError::from_parse_error(error).write(&mut out, &d, is_legacy_version(version));
    out.push('\r');
    out
}

fn or_default<'s>(value: &'s str, default: &'s str) -> &'s str {
    if value.is_empty() {
        default
    } else {
        value
    }
}

/// Versions before 2.5 define only ERR-1.
fn is_legacy_version(version: &str) -> bool {
    matches!(
        version.trim(),
        "2.1" | "2.2" | "2.3" | "2.3.1" | "2.4" | "2.0" | "2.0D"
    )
}

/// Field values recovered from the first line of unparseable bytes.
struct Salvage {
    fields: Vec<String>,
}

impl Salvage {
    /// Longest value copied into a reply, so a reject never echoes a flood.
    const MAX_CHARS: usize = 199;

    fn new(bytes: &[u8]) -> Self {
        let mut fields = Vec::new();
        let Some(start) = msh_start(bytes) else {
            return Salvage { fields };
        };
        let line = &bytes[start..];
        let line = &line[..line
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(line.len())];
        let line = String::from_utf8_lossy(&line[..line.len().min(64 * 1024)]);
        let mut chars = line.chars().skip(3);
        let Some(fs) = chars.next().filter(|c| c.is_ascii_punctuation()) else {
            return Salvage { fields };
        };
        let mut parts = line[3 + fs.len_utf8()..].split(fs);
        let encoding = parts.next().unwrap_or("");
        // The sender's own delimiters, when usable, let its escapes be
        // decoded before re-escaping with ours.
        let theirs = Delimiters::from_msh(fs, encoding).ok();
        let component = theirs.map(|t| t.component());
        for part in parts.take(10) {
            let first = match component {
                Some(c) => part.split(c).next().unwrap_or(""),
                None => part,
            };
            let value = match &theirs {
                Some(t) => unescape(first, t).into_owned(),
                None => first.to_owned(),
            };
            fields.push(value.chars().take(Self::MAX_CHARS).collect());
        }
        Salvage { fields }
    }

    /// MSH-`n` for n in 3..=12 (first component), or empty.
    fn field(&self, n: usize) -> String {
        n.checked_sub(3)
            .and_then(|i| self.fields.get(i))
            .cloned()
            .unwrap_or_default()
    }
}

fn push_escaped(out: &mut String, text: &str, d: &Delimiters) {
    out.push_str(&escape(text, d));
}

fn push_number(out: &mut String, n: usize) {
    use fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{n}");
}
