//! The separator and escape characters declared in MSH-1 and MSH-2.

use std::fmt;

/// The delimiters of one message, read from MSH-1 and MSH-2.
///
/// All delimiters are single ASCII punctuation characters. They are kept as
/// bytes because every scan over message text compares bytes: ASCII bytes can
/// never occur inside a multi-byte UTF-8 sequence, so byte positions found
/// this way are always valid `str` boundaries.
///
/// ```
/// use fdp_hl7::Delimiters;
///
/// let d = Delimiters::default();
/// assert_eq!(d.to_string(), "|^~\\&");
///
/// let custom = Delimiters::new('#', '$', '*', '@', '!', None).unwrap();
/// assert_eq!(custom.field(), '#');
/// assert_eq!(custom.encoding_characters(), "$*@!");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    pub(crate) field: u8,
    pub(crate) component: u8,
    pub(crate) repetition: u8,
    pub(crate) escape: u8,
    pub(crate) subcomponent: u8,
    pub(crate) truncation: Option<u8>,
}

impl Default for Delimiters {
    /// The delimiters nearly every sender uses: `|^~\&`.
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// Builds a delimiter set, checking that every character is distinct
    /// ASCII punctuation.
    ///
    /// The error is a short reason suitable for a log line.
    pub fn new(
        field: char,
        component: char,
        repetition: char,
        escape: char,
        subcomponent: char,
        truncation: Option<char>,
    ) -> Result<Self, &'static str> {
        let mut all = [field, component, repetition, escape, subcomponent, '\0'];
        let mut n = 5;
        if let Some(t) = truncation {
            all[5] = t;
            n = 6;
        }
        let bytes = validate(&all[..n])?;
        Ok(Delimiters {
            field: bytes[0],
            component: bytes[1],
            repetition: bytes[2],
            escape: bytes[3],
            subcomponent: bytes[4],
            truncation: truncation.map(|_| bytes[5]),
        })
    }

    /// Reads MSH-1 and MSH-2. `encoding` is the text of MSH-2: component,
    /// repetition, escape and subcomponent characters, then optionally the
    /// truncation character introduced in v2.7.
    pub(crate) fn from_msh(field: char, encoding: &str) -> Result<Self, MshDelimiterError> {
        if let Err(reason) = validate(&[field]) {
            return Err(MshDelimiterError::Field(reason));
        }
        let mut chars = ['\0'; 6];
        let mut n = 0;
        for c in encoding.chars() {
            if n == chars.len() {
                break;
            }
            chars[n] = c;
            n += 1;
        }
        match n {
            0..=3 => return Err(MshDelimiterError::Encoding("fewer than 4 characters")),
            4 | 5 => {}
            _ => return Err(MshDelimiterError::Encoding("more than 5 characters")),
        }
        Delimiters::new(
            field,
            chars[0],
            chars[1],
            chars[2],
            chars[3],
            (n == 5).then_some(chars[4]),
        )
        .map_err(MshDelimiterError::Encoding)
    }

    /// Field separator (MSH-1), normally `|`.
    pub fn field(&self) -> char {
        self.field as char
    }

    /// Component separator, normally `^`.
    pub fn component(&self) -> char {
        self.component as char
    }

    /// Repetition separator, normally `~`.
    pub fn repetition(&self) -> char {
        self.repetition as char
    }

    /// Escape character, normally `\`.
    pub fn escape(&self) -> char {
        self.escape as char
    }

    /// Subcomponent separator, normally `&`.
    pub fn subcomponent(&self) -> char {
        self.subcomponent as char
    }

    /// Truncation character (v2.7 and later, normally `#`), if declared.
    pub fn truncation(&self) -> Option<char> {
        self.truncation.map(char::from)
    }

    /// The text of MSH-2 for these delimiters, e.g. `^~\&`.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        self.push_encoding_characters(&mut s);
        s
    }

    pub(crate) fn push_encoding_characters(&self, out: &mut String) {
        out.push(self.component as char);
        out.push(self.repetition as char);
        out.push(self.escape as char);
        out.push(self.subcomponent as char);
        if let Some(t) = self.truncation {
            out.push(t as char);
        }
    }

    /// True when `b` is any of the delimiter bytes.
    pub(crate) fn is_delimiter(&self, b: u8) -> bool {
        b == self.field
            || b == self.component
            || b == self.repetition
            || b == self.escape
            || b == self.subcomponent
            || Some(b) == self.truncation
    }
}

impl fmt::Display for Delimiters {
    /// Writes MSH-1 followed by MSH-2, as they appear after `MSH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(6);
        s.push(self.field as char);
        self.push_encoding_characters(&mut s);
        f.write_str(&s)
    }
}

pub(crate) enum MshDelimiterError {
    Field(&'static str),
    Encoding(&'static str),
}

fn validate(chars: &[char]) -> Result<[u8; 6], &'static str> {
    let mut out = [0u8; 6];
    for (i, &c) in chars.iter().enumerate() {
        // Letters, digits and spaces occur in ordinary data, and control
        // characters are segment or frame terminators, so none can be a
        // delimiter without making the message ambiguous.
        if !c.is_ascii_graphic() || c.is_ascii_alphanumeric() {
            return Err("delimiters must be ASCII punctuation characters");
        }
        let b = c as u8;
        if out[..i].contains(&b) {
            return Err("delimiters must all be different");
        }
        out[i] = b;
    }
    Ok(out)
}
