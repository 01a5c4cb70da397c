//! Character sets: turning the bytes a sender wrote into text, guided by
//! MSH-18, and turning reply text back into bytes for that sender.

use std::borrow::Cow;

use crate::ParseError;

/// The character sets this crate can read and write.
///
/// MSH-18 names the character set of a message. Only the sets an NHS PAS
/// actually sends are supported; any other declaration is accepted only while
/// the message is pure ASCII, where all ASCII-compatible sets agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// 7-bit ASCII (`ASCII`, or MSH-18 empty).
    Ascii,
    /// UTF-8 (`UNICODE UTF-8`).
    Utf8,
    /// ISO 8859-1, Latin-1 (`8859/1`).
    Latin1,
}

impl Charset {
    /// Recognises an MSH-18 value (the first repetition, first component).
    /// An empty value means ASCII, as the standard says. Matching ignores case
    /// and surrounding spaces and accepts the common spellings seen in the wild.
    ///
    /// ```
    /// use fdp_hl7::Charset;
    /// assert_eq!(Charset::from_msh18("UNICODE UTF-8"), Some(Charset::Utf8));
    /// assert_eq!(Charset::from_msh18("8859/1"), Some(Charset::Latin1));
    /// assert_eq!(Charset::from_msh18(""), Some(Charset::Ascii));
    /// assert_eq!(Charset::from_msh18("ISO IR87"), None);
    /// ```
    pub fn from_msh18(value: &str) -> Option<Charset> {
        Self::from_msh18_bytes(value.as_bytes())
    }

    fn from_msh18_bytes(value: &[u8]) -> Option<Charset> {
        let v = value.trim_ascii();
        let is = |name: &str| v.eq_ignore_ascii_case(name.as_bytes());
        if v.is_empty() || is("ASCII") || is("US-ASCII") {
            Some(Charset::Ascii)
        } else if is("UNICODE UTF-8") || is("UTF-8") || is("UTF8") {
            Some(Charset::Utf8)
        } else if is("8859/1")
            || is("ISO-8859-1")
            || is("ISO8859-1")
            || is("ISO_8859-1")
            || is("ISO 8859/1")
            || is("LATIN1")
            || is("LATIN-1")
        {
            Some(Charset::Latin1)
        } else {
            None
        }
    }

    /// The standard MSH-18 spelling of this character set.
    pub fn msh18(&self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Latin1 => "8859/1",
        }
    }

    /// Encodes text (typically a reply) for a peer using this character set.
    ///
    /// ASCII and UTF-8 peers get UTF-8 bytes: a sender that declares ASCII
    /// but puts UTF-8 in its own messages reads them back correctly, and pure
    /// ASCII text is identical either way. For Latin-1, characters outside
    /// the set become `?`.
    ///
    /// ```
    /// use fdp_hl7::Charset;
    /// assert_eq!(&*Charset::Latin1.encode("café ✓"), b"caf\xe9 ?");
    /// assert_eq!(&*Charset::Utf8.encode("café"), "café".as_bytes());
    /// ```
    pub fn encode<'s>(&self, text: &'s str) -> Cow<'s, [u8]> {
        match self {
            Charset::Latin1 if !text.is_ascii() => Cow::Owned(
                text.chars()
                    .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                    .collect(),
            ),
            _ => Cow::Borrowed(text.as_bytes()),
        }
    }
}

/// Decodes the bytes of one message to text, following MSH-18.
///
/// * Valid UTF-8 is borrowed as is, unless MSH-18 declares Latin-1.
/// * With MSH-18 `8859/1`, non-ASCII bytes are decoded as Latin-1 into a new
///   `String`.
/// * Invalid UTF-8 without a Latin-1 declaration is
///   [`ParseError::WrongEncoding`], naming the byte offset.
/// * An unsupported MSH-18 value is [`ParseError::UnsupportedCharset`] only if
///   the message contains non-ASCII bytes.
///
/// ```
/// use fdp_hl7::decode;
///
/// let latin1 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.4||||||8859/1\rPID|||1||Ren\xe9e\r";
/// assert!(decode(latin1).unwrap().contains("Renée"));
///
/// let bad = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.4\rPID|||1||Ren\xe9e\r";
/// let err = decode(bad).unwrap_err();
/// assert!(err.to_string().contains("byte offset 55"));
/// ```
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let declared = declared_charset(bytes).unwrap_or(b"");
    let charset = Charset::from_msh18_bytes(declared);
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() || charset == Some(Charset::Utf8) => Ok(Cow::Borrowed(text)),
        Ok(text) => match charset {
            Some(Charset::Latin1) => Ok(Cow::Owned(latin1_to_string(bytes))),
            Some(_) => Ok(Cow::Borrowed(text)),
            None => Err(ParseError::UnsupportedCharset {
                declared: String::from_utf8_lossy(declared).into_owned(),
            }),
        },
        Err(e) => match charset {
            Some(Charset::Latin1) => Ok(Cow::Owned(latin1_to_string(bytes))),
            Some(_) => Err(ParseError::WrongEncoding {
                offset: e.valid_up_to(),
                declared: String::from_utf8_lossy(declared).into_owned(),
            }),
            None => Err(ParseError::UnsupportedCharset {
                declared: String::from_utf8_lossy(declared).into_owned(),
            }),
        },
    }
}

fn latin1_to_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Offset of the `MSH` that starts the message, after an optional UTF-8 byte
/// order mark and leading whitespace, if the input starts that way.
pub(crate) fn msh_start(bytes: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let rest = &bytes[pos..];
        if rest.starts_with(b"\xEF\xBB\xBF") {
            pos += 3;
        } else if matches!(rest.first(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            pos += 1;
        } else if rest.starts_with(b"MSH") {
            return Some(pos);
        } else {
            return None;
        }
    }
}

/// The raw MSH-18 value (first repetition, first component), read from the
/// first line with nothing but ASCII assumptions, since the character set is
/// what we are trying to learn.
pub(crate) fn declared_charset(bytes: &[u8]) -> Option<&[u8]> {
    let start = msh_start(bytes)?;
    let line = &bytes[start..];
    let line = &line[..line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len())];
    let fs = *line.get(3)?;
    if !fs.is_ascii_punctuation() {
        return None;
    }
    let mut fields = line[3..].split(|&b| b == fs);
    fields.next(); // empty: the text before MSH-1's own separator
    let encoding = fields.next()?;
    let value = fields.nth(15)?; // MSH-3 .. MSH-17 skipped
    let component = encoding.first().copied();
    let repetition = encoding.get(1).copied();
    let end = value
        .iter()
        .position(|&b| Some(b) == component || Some(b) == repetition)
        .unwrap_or(value.len());
    Some(&value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.4||||||";

    fn with_charset(charset: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!("{HEAD}{charset}\r").into_bytes();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn reads_msh18() {
        let m = with_charset("8859/1~UNICODE UTF-8", b"PID|1\r");
        assert_eq!(declared_charset(&m), Some(&b"8859/1"[..]));
        assert_eq!(declared_charset(b"MSH|^~\\&|A\r"), None);
        let custom = format!("\u{FEFF}\r\nMSH#$*@!#A{}X$Y*Z\r", "#".repeat(15));
        assert_eq!(declared_charset(custom.as_bytes()), Some(&b"X"[..]));
        assert_eq!(declared_charset(b"XYZ"), None);
        assert_eq!(declared_charset(b"MSH"), None);
    }

    #[test]
    fn latin1_is_decoded() {
        let m = with_charset("8859/1", b"PID|||1||M\xfcller\r");
        let text = decode(&m).unwrap();
        assert!(matches!(text, Cow::Owned(_)));
        assert!(text.contains("Müller"));
    }

    #[test]
    fn latin1_declared_ascii_content_is_borrowed() {
        let m = with_charset("8859/1", b"PID|||1||Muller\r");
        assert!(matches!(decode(&m).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn utf8_declared_or_not() {
        for cs in ["UNICODE UTF-8", "", "ASCII", "unicode utf-8 "] {
            let m = with_charset(cs, "PID|||1||Müller\r".as_bytes());
            let text = decode(&m).unwrap();
            assert!(matches!(text, Cow::Borrowed(_)), "{cs}");
            assert!(text.contains("Müller"));
        }
    }

    #[test]
    fn invalid_utf8_names_offset() {
        let m = with_charset("", b"PID|||1||M\xfcller\r");
        let offset = m.iter().position(|&b| b == 0xfc).unwrap();
        match decode(&m) {
            Err(ParseError::WrongEncoding {
                offset: o,
                declared,
            }) => {
                assert_eq!(o, offset);
                assert_eq!(declared, "");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unsupported_charset_only_matters_for_non_ascii() {
        let ascii = with_charset("ISO IR87", b"PID|||1\r");
        assert!(decode(&ascii).is_ok());
        let non_ascii = with_charset("ISO IR87", b"PID|||1||\xfc\r");
        assert!(matches!(
            decode(&non_ascii),
            Err(ParseError::UnsupportedCharset { declared }) if declared == "ISO IR87"
        ));
    }

    #[test]
    fn encodes_for_peer() {
        assert_eq!(&*Charset::Latin1.encode("Müller"), b"M\xfcller");
        assert!(matches!(Charset::Latin1.encode("Muller"), Cow::Borrowed(_)));
        assert_eq!(&*Charset::Ascii.encode("é"), "é".as_bytes());
        for c in [Charset::Ascii, Charset::Utf8, Charset::Latin1] {
            assert_eq!(Charset::from_msh18(c.msh18()), Some(c));
        }
    }
}
