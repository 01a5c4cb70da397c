//! Error types for parsing and framing.
//!
//! Every message is written for the person reading the listener's log or the
//! sending system's error queue: it names the segment (1-based position and
//! id), the field in HL7 numbering, and what was wrong.

use crate::ack::{ErrorCode, ErrorLocation};

/// Why a byte string or text could not be read as an HL7 v2 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The whole message is larger than [`ParseLimits::max_message_bytes`](crate::ParseLimits).
    #[error("message is {len} bytes long; the limit is {limit}")]
    MessageTooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The input does not begin with an `MSH` segment (after an optional
    /// byte order mark and leading whitespace).
    #[error("message does not start with an MSH segment; it starts with {found:?}")]
    MissingMsh {
        /// The first few characters of the input, for the log.
        found: String,
    },

    /// MSH-1 is missing or is a character that cannot act as a separator.
    #[error("MSH-1 field separator {found:?} is not usable: {reason}")]
    BadFieldSeparator {
        /// The character found after `MSH`.
        found: char,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// MSH-2 is not a valid set of encoding characters.
    #[error("MSH-2 encoding characters {found:?} are not usable: {reason}")]
    BadEncodingCharacters {
        /// The text of MSH-2.
        found: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A field of MSH that the parser, or any reply, cannot do without is
    /// absent or empty.
    #[error("MSH-{field} ({name}) is missing or empty; MSH has {fields_present} fields")]
    MshFieldMissing {
        /// HL7 field number (MSH-1 is the field separator).
        field: usize,
        /// Human name of the field.
        name: &'static str,
        /// How many fields MSH has, in HL7 numbering.
        fields_present: usize,
    },

    /// A segment does not start with a valid three-character id followed by
    /// the field separator or the end of the segment.
    #[error(
        "segment {index} does not start with a segment id of 3 uppercase letters or digits \
         followed by the field separator: {text_prefix:?}"
    )]
    BadSegment {
        /// 1-based position of the segment in the message.
        index: usize,
        /// The start of the offending segment.
        text_prefix: String,
    },

    /// A control character other than CR, LF or TAB appears in a field.
    #[error(
        "segment {segment_index} ({segment_id}) field {field} contains control character \
         0x{byte:02X} at byte offset {offset}"
    )]
    ControlCharacter {
        /// 1-based position of the segment in the message.
        segment_index: usize,
        /// Segment id, e.g. `PID`.
        segment_id: String,
        /// HL7 field number.
        field: usize,
        /// The control character.
        byte: u8,
        /// Byte offset from the start of the input.
        offset: usize,
    },

    /// A field is longer than [`ParseLimits::max_field_bytes`](crate::ParseLimits).
    #[error("segment {segment_index} ({segment_id}) field {field} is {len} bytes long; the limit is {limit}")]
    FieldTooLong {
        /// 1-based position of the segment in the message.
        segment_index: usize,
        /// Segment id, e.g. `PID`.
        segment_id: String,
        /// HL7 field number.
        field: usize,
        /// Length of the field in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The message has more segments than [`ParseLimits::max_segments`](crate::ParseLimits).
    #[error("message has more segments than the limit of {limit}")]
    TooManySegments {
        /// The configured limit.
        limit: usize,
    },

    /// The bytes are not valid UTF-8 and MSH-18 does not declare ISO 8859/1.
    #[error(
        "byte offset {offset} is not valid UTF-8 and MSH-18 declares {declared:?}; \
         send UTF-8, or declare \"8859/1\" in MSH-18 for Latin-1 text"
    )]
    WrongEncoding {
        /// Byte offset of the first invalid byte.
        offset: usize,
        /// The MSH-18 value found (empty when absent).
        declared: String,
    },

    /// MSH-18 declares a character set this parser cannot decode and the
    /// message contains non-ASCII bytes.
    #[error(
        "MSH-18 declares character set {declared:?}, which is not supported for non-ASCII text; \
         supported: ASCII, UNICODE UTF-8, 8859/1"
    )]
    UnsupportedCharset {
        /// The MSH-18 value found.
        declared: String,
    },
}

impl ParseError {
    /// The HL7 table 0357 code that best describes this error, for the ERR
    /// segment of a reject.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ParseError::MissingMsh { .. } | ParseError::BadSegment { .. } => {
                ErrorCode::SegmentSequenceError
            }
            ParseError::MshFieldMissing { .. } => ErrorCode::RequiredFieldMissing,
            ParseError::FieldTooLong { .. } | ParseError::MessageTooLarge { .. } => {
                ErrorCode::ValueTooLong
            }
            ParseError::BadFieldSeparator { .. }
            | ParseError::BadEncodingCharacters { .. }
            | ParseError::ControlCharacter { .. }
            | ParseError::WrongEncoding { .. } => ErrorCode::DataTypeError,
            ParseError::UnsupportedCharset { .. } => ErrorCode::TableValueNotFound,
            ParseError::TooManySegments { .. } => ErrorCode::ApplicationInternalError,
        }
    }

    /// Where in the message the error is, when that is known.
    pub fn location(&self) -> Option<ErrorLocation> {
        match self {
            ParseError::BadFieldSeparator { .. } => Some(ErrorLocation::field("MSH", 1, 1)),
            ParseError::BadEncodingCharacters { .. } => Some(ErrorLocation::field("MSH", 1, 2)),
            ParseError::MshFieldMissing { field, .. } => {
                Some(ErrorLocation::field("MSH", 1, *field))
            }
            ParseError::UnsupportedCharset { .. } | ParseError::WrongEncoding { .. } => {
                Some(ErrorLocation::field("MSH", 1, 18))
            }
            ParseError::ControlCharacter {
                segment_index,
                segment_id,
                field,
                ..
            }
            | ParseError::FieldTooLong {
                segment_index,
                segment_id,
                field,
                ..
            } => Some(ErrorLocation::field(segment_id, *segment_index, *field)),
            ParseError::MissingMsh { .. }
            | ParseError::BadSegment { .. }
            | ParseError::MessageTooLarge { .. }
            | ParseError::TooManySegments { .. } => None,
        }
    }
}

/// Why a field path such as `PID-3[2].1` could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HL7 path {path:?}: {reason}")]
pub struct PathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A problem found while decoding an MLLP byte stream.
///
/// None of these is fatal to the connection: the decoder has already skipped
/// past the bad bytes and the caller may keep reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MllpError {
    /// Bytes arrived outside any frame (before a start-of-block 0x0B) and were
    /// discarded. Reported once per run of such bytes.
    #[error("discarded {bytes} bytes received outside an MLLP frame")]
    GarbageOutsideFrame {
        /// Number of bytes discarded.
        bytes: usize,
    },

    /// A frame grew past the configured maximum; its content is discarded up
    /// to its end block or the next start-of-block.
    #[error("MLLP frame exceeds the limit of {limit} bytes and was discarded")]
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },

    /// A frame was cut short: a new start-of-block arrived, or the stream
    /// ended, before its end block (0x1C).
    #[error("MLLP frame of {bytes} bytes ended without an end block (0x1C) and was discarded")]
    UnterminatedFrame {
        /// Payload bytes received before the frame was abandoned.
        bytes: usize,
    },
}
