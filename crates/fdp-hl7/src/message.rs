//! The parsed message: one pass over the text that validates it and records
//! where every segment and field starts.

use std::borrow::Cow;

use crate::delimiters::MshDelimiterError;
use crate::encoding::{decode, msh_start};
use crate::segment::{Segment, SegmentSpan};
use crate::{Charset, Delimiters, ParseError, Path};

/// Limits that keep a hostile or broken sender from making the parser use
/// unbounded memory or produce absurd values.
///
/// ```
/// use fdp_hl7::{Message, ParseLimits};
///
/// let limits = ParseLimits { max_field_bytes: 8, ..ParseLimits::default() };
/// let err = Message::parse_with_limits(
///     "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.4\rPID|1||123456789\r",
///     &limits,
/// )
/// .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "segment 2 (PID) field 3 is 9 bytes long; the limit is 8"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest accepted message, in bytes. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Most segments in one message. Default 10,000.
    pub max_segments: usize,
    /// Longest field, in bytes, counting all its repetitions and
    /// components. Default 64 KiB.
    pub max_field_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_message_bytes: 1024 * 1024,
            max_segments: 10_000,
            max_field_bytes: 64 * 1024,
        }
    }
}

/// A parsed HL7 v2 message: the text plus an index of its segments and field
/// separators.
///
/// Parsing validates the whole message once (delimiters, segment ids,
/// control characters, size limits, the MSH fields a reply needs) and records
/// offsets; every accessor afterwards is a slice of the original text, so
/// walking a message allocates nothing. The text is a [`Cow`]: borrowed when
/// parsed from `&str` or from UTF-8 bytes, owned when bytes had to be decoded
/// from Latin-1. [`Message::into_owned`] detaches it from the input.
///
/// Numbering follows the HL7 standard: segments, fields, repetitions,
/// components and subcomponents are 1-based, and for MSH field 1 is the
/// field separator, so `MSH-9` is the message type.
///
/// ```
/// use fdp_hl7::Message;
///
/// let text = "MSH|^~\\&|PAS|RXX|FDP|RXX|20240501120000||ADT^A01^ADT_A01|MSG0001|P|2.4\r\
///             EVN|A01|20240501120000\r\
///             PID|1||1234567^^^RXX^MR~9434765919^^^NHS^NH||SMITH^JOHN^^^MR\r\
///             PV1|1|I|WARD1^BAY2^BED3^RXX\r";
/// let msg = Message::parse(text).unwrap();
///
/// let ty = msg.message_type();
/// assert_eq!((ty.code, ty.trigger, ty.structure), ("ADT", "A01", "ADT_A01"));
/// assert_eq!(msg.control_id(), "MSG0001");
/// assert_eq!(msg.get("PID-3[2].1"), Some("9434765919"));
/// assert_eq!(msg.get("PID-3[2].4"), Some("NHS"));
/// assert_eq!(msg.get("PV1-3.2"), Some("BAY2"));
/// assert_eq!(msg.get("MSH-1"), Some("|"));
/// assert_eq!(msg.get("MSH-2"), Some("^~\\&"));
/// assert_eq!(msg.get("PID-3[3]"), None);
/// assert_eq!(msg.segments().map(|s| s.id()).collect::<Vec<_>>(), ["MSH", "EVN", "PID", "PV1"]);
/// ```
#[derive(Debug, Clone)]
pub struct Message<'a> {
    text: Cow<'a, str>,
    delims: Delimiters,
    segments: Vec<SegmentSpan>,
    /// Field separator positions of all segments, in order; each segment
    /// owns a contiguous run. One shared vector keeps parsing at two
    /// allocations per message however many segments it has.
    seps: Vec<u32>,
}

/// MSH-9 split into its components. Missing components are empty strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageType<'m> {
    /// MSH-9.1, e.g. `ADT`.
    pub code: &'m str,
    /// MSH-9.2, the trigger event, e.g. `A01`.
    pub trigger: &'m str,
    /// MSH-9.3, the message structure, e.g. `ADT_A01` (often absent before v2.4).
    pub structure: &'m str,
}

impl<'a> Message<'a> {
    /// Parses message text with the default [`ParseLimits`].
    ///
    /// Segments may end with CR, LF or CRLF; blank lines are ignored; a UTF-8
    /// byte order mark and whitespace before `MSH` are skipped.
    pub fn parse(text: &'a str) -> Result<Message<'a>, ParseError> {
        Self::parse_with_limits(text, &ParseLimits::default())
    }

    /// Parses message text with explicit limits.
    pub fn parse_with_limits(
        text: &'a str,
        limits: &ParseLimits,
    ) -> Result<Message<'a>, ParseError> {
        if text.len() > limits.max_message_bytes {
            return Err(ParseError::MessageTooLarge {
                len: text.len(),
                limit: limits.max_message_bytes,
            });
        }
        Self::from_cow(Cow::Borrowed(text), limits)
    }

    /// Parses the bytes of one message, as received from the wire, with the
    /// default [`ParseLimits`].
    ///
    /// The bytes are decoded according to MSH-18 (see [`decode`](crate::decode)):
    /// UTF-8 and ASCII are borrowed; ISO 8859/1 is decoded into an owned string.
    ///
    /// ```
    /// use fdp_hl7::{Message, ParseError};
    ///
    /// let latin1 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.4||||||8859/1\rPID|1||1||Ren\xe9e\r";
    /// let msg = Message::parse_bytes(latin1).unwrap();
    /// assert_eq!(msg.get("PID-5"), Some("Renée"));
    ///
    /// let err = Message::parse_bytes(b"EVN|A01\r").unwrap_err();
    /// assert!(matches!(err, ParseError::MissingMsh { .. }));
    /// ```
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        Self::parse_bytes_with_limits(bytes, &ParseLimits::default())
    }

    /// Parses the bytes of one message with explicit limits. The message size
    /// limit applies to the bytes received, not to the decoded text (Latin-1
    /// text grows when decoded).
    pub fn parse_bytes_with_limits(
        bytes: &'a [u8],
        limits: &ParseLimits,
    ) -> Result<Message<'a>, ParseError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(ParseError::MessageTooLarge {
                len: bytes.len(),
                limit: limits.max_message_bytes,
            });
        }
        // A missing MSH is a more useful diagnosis than an encoding error
        // when a peer sends something that is not HL7 at all.
        if msh_start(bytes).is_none() {
            return Err(missing_msh(&String::from_utf8_lossy(
                &bytes[..bytes.len().min(256)],
            )));
        }
        let text = decode(bytes)?;
        Self::from_cow(text, limits)
    }

    fn from_cow(text: Cow<'a, str>, limits: &ParseLimits) -> Result<Message<'a>, ParseError> {
        let index = Indexer::run(&text, limits)?;
        Ok(Message {
            text,
            delims: index.delims,
            segments: index.segments,
            seps: index.seps,
        })
    }

    /// Detaches the message from the text it was parsed from.
    pub fn into_owned(self) -> Message<'static> {
        Message {
            text: Cow::Owned(self.text.into_owned()),
            delims: self.delims,
            segments: self.segments,
            seps: self.seps,
        }
    }

    /// The full message text as parsed (decoded, if it came from Latin-1
    /// bytes).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The delimiters declared in MSH-1 and MSH-2.
    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    /// Number of segments (blank lines are not segments).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// All segments in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_>> + '_ {
        (0..self.segments.len()).map(move |i| self.segment_view(i))
    }

    /// The segment at 1-based position `index` (MSH is 1).
    pub fn segment_at(&self, index: usize) -> Option<Segment<'_>> {
        let i = index.checked_sub(1)?;
        (i < self.segments.len()).then(|| self.segment_view(i))
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<Segment<'_>> {
        self.segments_named(id).next()
    }

    /// All segments with this id, in order.
    ///
    /// ```
    /// use fdp_hl7::Message;
    /// let msg = Message::parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.4\rOBX|1|NM|K\rNTE|1\rOBX|2|NM|NA\r").unwrap();
    /// let codes: Vec<&str> = msg.segments_named("OBX").filter_map(|s| s.field(3)).map(|f| f.as_str()).collect();
    /// assert_eq!(codes, ["K", "NA"]);
    /// assert_eq!(msg.get("OBX[2]-3"), Some("NA"));
    /// ```
    pub fn segments_named(&self, id: &str) -> impl Iterator<Item = Segment<'_>> + '_ {
        // Copied so the iterator borrows only the message. An id that is not
        // 3 bytes long matches nothing.
        let id: Option<[u8; 3]> = id.as_bytes().try_into().ok();
        (0..self.segments.len())
            .filter(move |&i| Some(self.segments[i].id) == id)
            .map(move |i| self.segment_view(i))
    }

    fn segments_with_id(&self, id: [u8; 3]) -> impl Iterator<Item = Segment<'_>> + '_ {
        (0..self.segments.len())
            .filter(move |&i| self.segments[i].id == id)
            .map(move |i| self.segment_view(i))
    }

    /// The MSH segment.
    pub fn msh(&self) -> Segment<'_> {
        // Parsing guarantees the first segment is MSH.
        self.segment_view(0)
    }

    fn segment_view(&self, i: usize) -> Segment<'_> {
        let span = self.segments[i];
        Segment {
            text: &self.text,
            span,
            seps: &self.seps[span.seps_start as usize..span.seps_end as usize],
            delims: self.delims,
            index: i + 1,
        }
    }

    /// The raw (still escaped) text at a path such as `PID-3[2].1`; see
    /// [`Path`] for the syntax. `None` when the path is invalid or points
    /// past the last segment, field, repetition, component or subcomponent
    /// present. A present but empty value is `Some("")`.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.get_path(&Path::parse(path).ok()?)
    }

    /// Like [`get`](Self::get), with escape sequences decoded.
    ///
    /// ```
    /// use fdp_hl7::Message;
    /// let msg = Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rNTE|1||Fish \\T\\ chips\\.br\\Peas\r").unwrap();
    /// assert_eq!(msg.get("NTE-3"), Some("Fish \\T\\ chips\\.br\\Peas"));
    /// assert_eq!(msg.get_unescaped("NTE-3").unwrap(), "Fish & chips\nPeas");
    /// ```
    pub fn get_unescaped(&self, path: &str) -> Option<Cow<'_, str>> {
        let path = Path::parse(path).ok()?;
        let seg = self.path_segment(&path)?;
        let field = seg.field(path.field)?;
        Some(match (path.repetition, path.component) {
            (None, None) => field.unescaped(),
            (Some(r), None) => field.repetition(r)?.unescaped(),
            (r, Some(c)) => {
                let comp = field.repetition(r.unwrap_or(1))?.component(c)?;
                match path.subcomponent {
                    None => comp.unescaped(),
                    Some(s) => comp.subcomponent(s)?.unescaped(),
                }
            }
        })
    }

    /// The raw text at a pre-parsed [`Path`]; avoids re-parsing the path when
    /// the same one is read from many messages.
    pub fn get_path(&self, path: &Path) -> Option<&str> {
        let seg = self.path_segment(path)?;
        let field = seg.field(path.field)?;
        match (path.repetition, path.component) {
            (None, None) => Some(field.as_str()),
            (Some(r), None) => Some(field.repetition(r)?.as_str()),
            (r, Some(c)) => {
                let comp = field.repetition(r.unwrap_or(1))?.component(c)?;
                match path.subcomponent {
                    None => Some(comp.as_str()),
                    Some(s) => Some(comp.subcomponent(s)?.as_str()),
                }
            }
        }
    }

    fn path_segment(&self, path: &Path) -> Option<Segment<'_>> {
        self.segments_with_id(path.segment_bytes())
            .nth(path.occurrence.checked_sub(1)?)
    }

    fn msh_component(&self, field: usize, component: usize) -> &str {
        self.msh()
            .field(field)
            .and_then(|f| f.component(component))
            .map_or("", |c| c.as_str())
    }

    /// MSH-9 as (message code, trigger event, message structure).
    pub fn message_type(&self) -> MessageType<'_> {
        MessageType {
            code: self.msh_component(9, 1),
            trigger: self.msh_component(9, 2),
            structure: self.msh_component(9, 3),
        }
    }

    /// MSH-10, the message control id; never empty in a parsed message.
    pub fn control_id(&self) -> &str {
        self.msh().field(10).map_or("", |f| f.as_str())
    }

    /// MSH-3.1, the sending application's namespace id.
    pub fn sending_application(&self) -> &str {
        self.msh_component(3, 1)
    }

    /// MSH-4.1, the sending facility's namespace id.
    pub fn sending_facility(&self) -> &str {
        self.msh_component(4, 1)
    }

    /// MSH-5.1, the receiving application's namespace id.
    pub fn receiving_application(&self) -> &str {
        self.msh_component(5, 1)
    }

    /// MSH-6.1, the receiving facility's namespace id.
    pub fn receiving_facility(&self) -> &str {
        self.msh_component(6, 1)
    }

    /// MSH-7.1, the message date/time exactly as sent (not interpreted).
    pub fn timestamp(&self) -> &str {
        self.msh_component(7, 1)
    }

    /// MSH-11.1, the processing id: `P` production, `T` training, `D`
    /// debugging.
    pub fn processing_id(&self) -> &str {
        self.msh_component(11, 1)
    }

    /// MSH-12.1, the HL7 version, e.g. `2.4`.
    pub fn version(&self) -> &str {
        self.msh_component(12, 1)
    }

    /// MSH-18 (first repetition), the declared character set; empty when
    /// absent.
    pub fn declared_charset(&self) -> &str {
        self.msh_component(18, 1)
    }

    /// The character set to encode replies in: MSH-18 when it is one this
    /// crate supports, `None` otherwise (a reply in UTF-8 is then the best
    /// guess).
    ///
    /// ```
    /// use fdp_hl7::{Ack, AckCode, Charset, Message};
    ///
    /// let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4||||||8859/1\rPID|1||1||Ren\xe9e\r";
    /// let msg = Message::parse_bytes(bytes).unwrap();
    /// let charset = msg.charset().unwrap_or(Charset::Utf8);
    /// assert_eq!(charset, Charset::Latin1);
    /// let ack = Ack::new(&msg, AckCode::ApplicationAccept, "2", "3").text("Renée").build();
    /// assert!(charset.encode(&ack).ends_with(b"MSA|AA|1|Ren\xe9e\r"));
    /// ```
    pub fn charset(&self) -> Option<Charset> {
        Charset::from_msh18(self.declared_charset())
    }
}

/// Up to 20 characters of `text` from `start`, stopping at a line end: enough
/// to recognise the offending segment in a log without copying a whole body.
pub(crate) fn prefix(text: &str, start: usize) -> String {
    text.get(start..)
        .unwrap_or("")
        .chars()
        .take_while(|&c| c != '\r' && c != '\n')
        .take(20)
        .collect()
}

/// The error for input that does not start with MSH, quoting what it starts
/// with instead (after the whitespace that is allowed there).
fn missing_msh(text: &str) -> ParseError {
    let start = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    ParseError::MissingMsh {
        found: prefix(start, 0),
    }
}

struct Indexer {
    delims: Delimiters,
    segments: Vec<SegmentSpan>,
    seps: Vec<u32>,
}

/// Human names of the MSH fields parsing insists on.
const REQUIRED_MSH: [(usize, &str); 4] = [
    (9, "message type"),
    (10, "message control ID"),
    (11, "processing ID"),
    (12, "version ID"),
];

impl Indexer {
    fn run(text: &str, limits: &ParseLimits) -> Result<Indexer, ParseError> {
        if text.len() > u32::MAX as usize {
            // Offsets are stored as u32 to halve the index size.
            return Err(ParseError::MessageTooLarge {
                len: text.len(),
                limit: u32::MAX as usize,
            });
        }
        let bytes = text.as_bytes();
        let Some(msh) = msh_start(bytes) else {
            return Err(missing_msh(text));
        };
        let delims = read_delimiters(text, msh)?;
        let fs = delims.field;
        let body = &bytes[msh..];
        // Counting first (a vectorised pass over bytes already in cache)
        // sizes the separator table exactly.
        let separators = count_byte(body, fs);
        let mut scan = Scanner {
            text,
            limits,
            seps: vec![0; separators + SEP_SLACK],
            segments: Vec::with_capacity((body.len() / 64).min(limits.max_segments) + 1),
            seg_start: msh,
            seps_start: 0,
        };
        // Eight bytes at a time: words with no control character (most of
        // them; segments run to about 100 bytes) only need their field
        // separators recorded, which takes no data-dependent branch. Words
        // with a CR, LF or other control byte go through the byte loop.
        let mut n = 0usize;
        let fs_word = u64::from(fs) * LO;
        let mut words = body.chunks_exact(8);
        let mut base = msh;
        for word in words.by_ref() {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            let w = u64::from_le_bytes(buf);
            if control_bytes(w) == 0 {
                n = record_separators(&mut scan.seps, n, base, zero_bytes(w ^ fs_word));
            } else {
                for (k, &b) in word.iter().enumerate() {
                    n = scan.byte(base + k, b, fs, n)?;
                }
            }
            base += 8;
        }
        for (k, &b) in words.remainder().iter().enumerate() {
            n = scan.byte(base + k, b, fs, n)?;
        }
        scan.end_segment(bytes.len(), n)?;
        scan.seps.truncate(n);
        check_msh(text, &delims, scan.segments[0], &scan.seps)?;
        Ok(Indexer {
            delims,
            segments: scan.segments,
            seps: scan.seps,
        })
    }
}

/// State of the single pass over the message text. `n`, passed to the
/// methods, is how many separators have been recorded so far.
struct Scanner<'t> {
    text: &'t str,
    limits: &'t ParseLimits,
    seps: Vec<u32>,
    segments: Vec<SegmentSpan>,
    /// Start of the current segment.
    seg_start: usize,
    /// Index in `seps` of the current segment's first separator.
    seps_start: usize,
}

impl Scanner<'_> {
    /// Handles one byte on the slow path; returns the new separator count.
    fn byte(&mut self, at: usize, b: u8, fs: u8, n: usize) -> Result<usize, ParseError> {
        if b == fs {
            self.seps[n] = at as u32;
            return Ok(n + 1);
        }
        if b < 0x20 || b == 0x7f {
            if b == b'\r' || b == b'\n' {
                self.end_segment(at, n)?;
            } else if b != b'\t' {
                return Err(self.control_character(at, b, n));
            }
        }
        Ok(n)
    }

    /// 1-based position the current segment will have.
    fn segment_index(&self) -> usize {
        self.segments.len() + 1
    }

    fn end_segment(&mut self, at: usize, n: usize) -> Result<(), ParseError> {
        if n == self.seps_start {
            // No field separator: a blank (or whitespace-only) line, which is
            // skipped, or a segment with an id and no fields.
            let line = &self.text.as_bytes()[self.seg_start..at];
            if line.iter().all(|&b| b == b' ' || b == b'\t') {
                self.seg_start = at + 1;
                return Ok(());
            }
            self.check_segment_id(at)?;
        } else {
            self.check_segment_id(self.seps[self.seps_start] as usize)?;
            self.check_field_lengths(at, n)?;
        }
        if self.segments.len() >= self.limits.max_segments {
            return Err(ParseError::TooManySegments {
                limit: self.limits.max_segments,
            });
        }
        let mut id = [0u8; 3];
        id.copy_from_slice(&self.text.as_bytes()[self.seg_start..self.seg_start + 3]);
        self.segments.push(SegmentSpan {
            id,
            start: self.seg_start as u32,
            end: at as u32,
            seps_start: self.seps_start as u32,
            seps_end: n as u32,
        });
        self.seg_start = at + 1;
        self.seps_start = n;
        Ok(())
    }

    /// Checks that the segment starts with a valid id ending at `end`.
    fn check_segment_id(&self, end: usize) -> Result<(), ParseError> {
        let id = &self.text.as_bytes()[self.seg_start..end];
        if id.len() == 3
            && id
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            Ok(())
        } else {
            Err(ParseError::BadSegment {
                index: self.segment_index(),
                text_prefix: prefix(self.text, self.seg_start),
            })
        }
    }

    /// Only called once the segment id has been validated.
    fn segment_id(&self) -> &str {
        &self.text[self.seg_start..self.seg_start + 3]
    }

    /// HL7 number of the field after the `k`-th separator (1-based) of the
    /// current segment; MSH counts its field separator as field 1.
    fn field_number(&self, k: usize) -> usize {
        if self.segment_id() == "MSH" {
            k + 1
        } else {
            k
        }
    }

    /// Checks every field of the segment ending at `end` against the limit.
    fn check_field_lengths(&self, end: usize, n: usize) -> Result<(), ParseError> {
        let seps = &self.seps[self.seps_start..n];
        let max = self.limits.max_field_bytes;
        for (k, &start) in seps.iter().enumerate() {
            let field_end = seps.get(k + 1).map_or(end, |&e| e as usize);
            let len = field_end - start as usize - 1;
            if len > max {
                return Err(ParseError::FieldTooLong {
                    segment_index: self.segment_index(),
                    segment_id: self.segment_id().to_owned(),
                    field: self.field_number(k + 1),
                    len,
                    limit: max,
                });
            }
        }
        Ok(())
    }

    fn control_character(&self, at: usize, byte: u8, n: usize) -> ParseError {
        // A control character inside what should be the segment id, or in a
        // segment whose id is already wrong, is reported as a bad segment.
        let id_end = if n == self.seps_start {
            at
        } else {
            self.seps[self.seps_start] as usize
        };
        if let Err(e) = self.check_segment_id(id_end) {
            return e;
        }
        if n == self.seps_start {
            return ParseError::BadSegment {
                index: self.segment_index(),
                text_prefix: prefix(self.text, self.seg_start),
            };
        }
        ParseError::ControlCharacter {
            segment_index: self.segment_index(),
            segment_id: self.segment_id().to_owned(),
            field: self.field_number(n - self.seps_start),
            byte,
            offset: at,
        }
    }
}

/// Spare slots at the end of the separator table, so that
/// [`record_separators`] can store unconditionally.
const SEP_SLACK: usize = 8;
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// How many times `needle` occurs in `hay`. Counting per block of at most
/// 255 bytes in a `u8` lets the compiler use byte-wide vector adds.
fn count_byte(hay: &[u8], needle: u8) -> usize {
    hay.chunks(255)
        .map(|block| {
            block
                .iter()
                .fold(0u8, |acc, &b| acc.wrapping_add(u8::from(b == needle)))
        })
        .map(usize::from)
        .sum()
}

/// High bit set in every byte of `w` that is zero (exact: no false positives,
/// since no addition carries across bytes).
fn zero_bytes(w: u64) -> u64 {
    !((w & LOW7).wrapping_add(LOW7) | w | LOW7)
}

/// High bit set in every byte of `w` below 0x20 or equal to 0x7F.
fn control_bytes(w: u64) -> u64 {
    let below_space = !((w & LOW7).wrapping_add(0x60 * LO) | w) & HI;
    below_space | zero_bytes(w ^ (0x7f * LO))
}

/// Appends the positions flagged in `mask` (high bit per byte, byte 0 at
/// `base`) to `seps[n..]` and returns the new count.
///
/// Stores four positions at a time whether or not they exist and then
/// advances by the real count: surplus stores land in slots that later
/// stores overwrite or the final truncation drops. The table has
/// [`SEP_SLACK`] spare slots, and `n` plus the real count never exceeds the
/// number of separators, so every store is in bounds.
fn record_separators(seps: &mut [u32], n: usize, base: usize, mut mask: u64) -> usize {
    let count = mask.count_ones() as usize;
    let mut k = 0;
    loop {
        for _ in 0..4 {
            if let Some(slot) = seps.get_mut(n + k) {
                *slot = (base + (mask.trailing_zeros() as usize >> 3)) as u32;
            }
            mask &= mask.wrapping_sub(1);
            k += 1;
        }
        if k >= count {
            return n + count;
        }
    }
}

/// Checks that MSH has the fields a reply cannot do without.
fn check_msh(
    text: &str,
    delims: &Delimiters,
    msh: SegmentSpan,
    seps: &[u32],
) -> Result<(), ParseError> {
    let msh_seps = &seps[msh.seps_start as usize..msh.seps_end as usize];
    let fields_present = msh_seps.len() + 1;
    for (field, name) in REQUIRED_MSH {
        let missing = match msh_seps.get(field - 2) {
            None => true,
            Some(&start) => {
                let start = start as usize + 1;
                let end = msh_seps
                    .get(field - 1)
                    .map_or(msh.end as usize, |&e| e as usize);
                let value = &text[start..end];
                // MSH-9.1 and MSH-10 must have content: routing and the ACK
                // depend on them. MSH-11 and MSH-12 need only be present.
                match field {
                    9 => value.is_empty() || value.starts_with(delims.component()),
                    10 => value.is_empty(),
                    _ => false,
                }
            }
        };
        if missing {
            return Err(ParseError::MshFieldMissing {
                field,
                name,
                fields_present,
            });
        }
    }
    Ok(())
}

fn read_delimiters(text: &str, msh: usize) -> Result<Delimiters, ParseError> {
    let bytes = text.as_bytes();
    let missing = |field, name, fields_present| ParseError::MshFieldMissing {
        field,
        name,
        fields_present,
    };
    let fs = match text[msh + 3..].chars().next() {
        None | Some('\r' | '\n') => return Err(missing(1, "field separator", 0)),
        Some(c) => c,
    };
    if !fs.is_ascii_graphic() || fs.is_ascii_alphanumeric() {
        return Err(ParseError::BadFieldSeparator {
            found: fs,
            reason: "it must be an ASCII punctuation character",
        });
    }
    let enc_start = msh + 4;
    let enc_len = bytes[enc_start..]
        .iter()
        .position(|&b| b == fs as u8 || b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len() - enc_start);
    let encoding = &text[enc_start..enc_start + enc_len];
    if encoding.is_empty() {
        return Err(missing(2, "encoding characters", 1));
    }
    Delimiters::from_msh(fs, encoding).map_err(|e| match e {
        MshDelimiterError::Field(reason) => ParseError::BadFieldSeparator { found: fs, reason },
        MshDelimiterError::Encoding(reason) => ParseError::BadEncodingCharacters {
            found: encoding.to_owned(),
            reason,
        },
    })
}
