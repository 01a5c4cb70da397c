//! Building HL7 v2 message text.
//!
//! Messages are written straight into a byte buffer: segments end in `\r`
//! (including the last), fields are separated by `|`, components by `^`,
//! repetitions by `~`, subcomponents by `&`, and `\` escapes. Text that may
//! contain a delimiter goes through [`MessageWriter::text`], which applies
//! the standard escapes (`\F\ \S\ \R\ \E\ \T\`).

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

/// Segment terminator.
pub const SEGMENT_END: u8 = b'\r';
/// MSH-2 encoding characters, in standard order.
pub const ENCODING_CHARACTERS: &str = "^~\\&";

/// Bytes that must be escaped. A table keeps the common no-escape case to
/// one load per byte.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let special = *b"|^~\\&\r\n";
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = true;
        i += 1;
    }
    t
};

fn escape_sequence(b: u8) -> &'static [u8] {
    match b {
        b'|' => b"\\F\\",
        b'^' => b"\\S\\",
        b'~' => b"\\R\\",
        b'\\' => b"\\E\\",
        b'&' => b"\\T\\",
        b'\r' => b"\\X0D\\",
        _ => b"\\X0A\\",
    }
}

/// Appends `text` to `out` with HL7 delimiter characters escaped.
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Branch-free scan the compiler vectorises: nearly all text has nothing
    // to escape and is copied in one go.
    let any = bytes.iter().fold(false, |acc, &b| {
        acc | (b == b'|')
            | (b == b'^')
            | (b == b'~')
            | (b == b'\\')
            | (b == b'&')
            | (b == b'\r')
            | (b == b'\n')
    });
    if !any {
        out.extend_from_slice(bytes);
        return;
    }
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if NEEDS_ESCAPE[b as usize] {
            out.extend_from_slice(&bytes[plain_from..i]);
            out.extend_from_slice(escape_sequence(b));
            plain_from = i + 1;
        }
    }
    out.extend_from_slice(&bytes[plain_from..]);
}

/// `text` with HL7 delimiter characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    escape_into(&mut out, text);
    // Escapes are ASCII and replace whole ASCII bytes, so UTF-8 is preserved.
    String::from_utf8(out).expect("escaping keeps UTF-8 valid")
}

fn push_digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    while n > 0 {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = (tmp.len() - width.min(tmp.len())).min(i);
    out.extend_from_slice(&tmp[start..]);
}

/// Appends `yyyyMMddHHmmss+0000` (UTC, with its offset).
pub fn write_timestamp(out: &mut Vec<u8>, dt: &DateTime<Utc>) {
    write_date(out, dt.date_naive());
    push_digits(out, u64::from(dt.hour()), 2);
    push_digits(out, u64::from(dt.minute()), 2);
    push_digits(out, u64::from(dt.second()), 2);
    // An explicit offset: a receiver must otherwise assume UK local time.
    out.extend_from_slice(b"+0000");
}

/// Appends `yyyyMMdd`.
pub fn write_date(out: &mut Vec<u8>, d: NaiveDate) {
    push_digits(out, d.year().max(0) as u64, 4);
    push_digits(out, u64::from(d.month()), 2);
    push_digits(out, u64::from(d.day()), 2);
}

/// `yyyyMMddHHmmss+0000` as a string.
pub fn format_timestamp(dt: &DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(19);
    write_timestamp(&mut out, dt);
    String::from_utf8(out).expect("digits are ASCII")
}

/// The fixed parts of an MSH segment.
#[derive(Debug, Clone, Copy)]
pub struct MshHeader<'a> {
    /// MSH-3.
    pub sending_application: &'a str,
    /// MSH-4.
    pub sending_facility: &'a str,
    /// MSH-5.
    pub receiving_application: &'a str,
    /// MSH-6.
    pub receiving_facility: &'a str,
}

/// Appends segments and fields to a message buffer.
///
/// Calls chain: `w.segment("PV1").field().raw(b"1").field().raw(b"I")`.
/// Starting a segment terminates the previous one; [`finish`](Self::finish)
/// terminates the last.
#[derive(Debug, Default, Clone)]
pub struct MessageWriter {
    buf: Vec<u8>,
}

impl MessageWriter {
    /// A writer with room for `capacity` bytes before reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        MessageWriter {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Writes a complete MSH segment (v2.4, UK ADT conventions):
    /// `MSH|^~\&|app|fac|app|fac|time||type|control id|P|2.4|||AL|NE|GBR|UNICODE UTF-8`.
    /// `message_type` is the whole MSH-9, e.g. `ADT^A01^ADT_A01`, written
    /// unescaped.
    pub fn msh(
        &mut self,
        header: &MshHeader<'_>,
        at: &DateTime<Utc>,
        message_type: &str,
        control_id: &str,
    ) -> &mut Self {
        self.segment("MSH");
        self.buf.push(b'|');
        self.buf.extend_from_slice(ENCODING_CHARACTERS.as_bytes());
        self.field().text(header.sending_application);
        self.field().text(header.sending_facility);
        self.field().text(header.receiving_application);
        self.field().text(header.receiving_facility);
        self.field().timestamp(at);
        self.field().field().raw(message_type.as_bytes());
        self.field().text(control_id);
        self.field()
            .raw(b"P")
            .field()
            .raw(b"2.4")
            .fields(3)
            .raw(b"AL")
            .field()
            .raw(b"NE")
            .field()
            .raw(b"GBR")
            .field()
            .raw(b"UNICODE UTF-8")
    }

    /// Starts a segment with the three-character id.
    pub fn segment(&mut self, id: &str) -> &mut Self {
        if self.buf.last().is_some_and(|b| *b != SEGMENT_END) {
            self.buf.push(SEGMENT_END);
        }
        self.buf.extend_from_slice(id.as_bytes());
        self
    }

    /// Field separator.
    pub fn field(&mut self) -> &mut Self {
        self.buf.push(b'|');
        self
    }

    /// `n` field separators, skipping `n - 1` empty fields.
    pub fn fields(&mut self, n: usize) -> &mut Self {
        for _ in 0..n {
            self.buf.push(b'|');
        }
        self
    }

    /// Component separator.
    pub fn component(&mut self) -> &mut Self {
        self.buf.push(b'^');
        self
    }

    /// `n` component separators.
    pub fn components(&mut self, n: usize) -> &mut Self {
        for _ in 0..n {
            self.buf.push(b'^');
        }
        self
    }

    /// Repetition separator.
    pub fn repetition(&mut self) -> &mut Self {
        self.buf.push(b'~');
        self
    }

    /// Text, escaped.
    pub fn text(&mut self, s: &str) -> &mut Self {
        escape_into(&mut self.buf, s);
        self
    }

    /// Text in upper case, escaped (family names in PID-5 and XCN).
    pub fn text_upper(&mut self, s: &str) -> &mut Self {
        if s.is_ascii() {
            let start = self.buf.len();
            escape_into(&mut self.buf, s);
            self.buf[start..].make_ascii_uppercase();
        } else {
            escape_into(&mut self.buf, &s.to_uppercase());
        }
        self
    }

    /// Bytes written as they are: the caller vouches they hold no stray
    /// delimiters (or deliberately does, for malformed messages).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Unsigned number, zero-padded to at least `width` digits.
    pub fn number(&mut self, n: u64, width: usize) -> &mut Self {
        push_digits(&mut self.buf, n, width);
        self
    }

    /// `yyyyMMddHHmmss`.
    pub fn timestamp(&mut self, dt: &DateTime<Utc>) -> &mut Self {
        write_timestamp(&mut self.buf, dt);
        self
    }

    /// `yyyyMMdd`.
    pub fn date(&mut self, d: NaiveDate) -> &mut Self {
        write_date(&mut self.buf, d);
        self
    }

    /// Bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written so far, as they are (no terminator added).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The message, with its last segment terminated.
    pub fn finish(mut self) -> Vec<u8> {
        if self.buf.last().is_some_and(|b| *b != SEGMENT_END) {
            self.buf.push(SEGMENT_END);
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn escapes_delimiters() {
        assert_eq!(escape("O'Brien"), "O'Brien");
        assert_eq!(escape("A|B^C~D\\E&F"), "A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F");
    }

    #[test]
    fn writes_msh_and_terminates_segments() {
        let at = Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap();
        let mut w = MessageWriter::with_capacity(128);
        let h = MshHeader {
            sending_application: "PAS",
            sending_facility: "RXX",
            receiving_application: "OPENFDP",
            receiving_facility: "RXX",
        };
        w.msh(&h, &at, "ADT^A01^ADT_A01", "RXX0000000001");
        w.segment("EVN").field().raw(b"A01");
        let m = String::from_utf8(w.finish()).unwrap();
        assert_eq!(
            m,
            "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|20250304050607+0000||ADT^A01^ADT_A01|RXX0000000001|P|2.4|||AL|NE|GBR|UNICODE UTF-8\rEVN|A01\r"
        );
    }

    #[test]
    fn numbers_pad() {
        let mut w = MessageWriter::default();
        w.number(42, 5)
            .raw(b",")
            .number(0, 1)
            .raw(b",")
            .number(123456, 3);
        assert_eq!(w.as_bytes(), b"00042,0,123456");
        let mut w = MessageWriter::default();
        w.text_upper("Wójcik").raw(b" ").text_upper("o'brien");
        assert_eq!(std::str::from_utf8(w.as_bytes()).unwrap(), "WÓJCIK O'BRIEN");
    }
}
