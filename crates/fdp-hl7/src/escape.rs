//! HL7 escape sequences (`\F\`, `\S\`, `\X0D\`, `\.br\`, ...).
//!
//! Both directions return [`Cow`] so that the common case, text with nothing
//! to escape, costs one scan and no allocation.

use std::borrow::Cow;

use crate::Delimiters;

/// Escapes `text` for use as the value of one field, component or
/// subcomponent of a message with delimiters `d`.
///
/// Delimiters become `\F\`, `\S\`, `\T\`, `\R\`, `\E\` and (when declared)
/// `\P\`. Control characters other than TAB become `\Xhh\` so the result can
/// never end a segment or an MLLP frame early. TAB is left alone because it is
/// legal in HL7 text.
///
/// ```
/// use fdp_hl7::{escape, unescape, Delimiters};
///
/// let d = Delimiters::default();
/// let escaped = escape("A|B^C\r\n", &d);
/// assert_eq!(escaped, "A\\F\\B\\S\\C\\X0D\\\\X0A\\");
/// assert_eq!(unescape(&escaped, &d), "A|B^C\r\n");
/// // Nothing to escape: the input is borrowed, not copied.
/// assert!(matches!(escape("plain", &d), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn escape<'s>(text: &'s str, d: &Delimiters) -> Cow<'s, str> {
    let bytes = text.as_bytes();
    let needs = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f || d.is_delimiter(b);
    let Some(first) = bytes.iter().position(|&b| needs(b)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    let mut run_start = first;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        if !needs(b) {
            continue;
        }
        // `i` is the position of an ASCII byte, so it is a char boundary.
        out.push_str(&text[run_start..i]);
        run_start = i + 1;
        out.push(d.escape as char);
        let code = if b == d.field {
            'F'
        } else if b == d.component {
            'S'
        } else if b == d.subcomponent {
            'T'
        } else if b == d.repetition {
            'R'
        } else if b == d.escape {
            'E'
        } else if Some(b) == d.truncation {
            'P'
        } else {
            out.push('X');
            push_hex(&mut out, b);
            out.push(d.escape as char);
            continue;
        };
        out.push(code);
        out.push(d.escape as char);
    }
    out.push_str(&text[run_start..]);
    Cow::Owned(out)
}

/// Decodes the escape sequences in one field, component or subcomponent
/// value of a message with delimiters `d`.
///
/// * `\F\ \S\ \T\ \R\ \E\` (and `\P\` when a truncation character is
///   declared) become the delimiter they name.
/// * `\Xhhhh..\` becomes the bytes it spells, read as UTF-8 when they are
///   valid UTF-8 and as ISO 8859/1 otherwise.
/// * `\.br\` becomes a newline, `\.sp\` / `\.sp n\` one or `n` newlines (at
///   most 64, so a short value cannot expand without bound).
/// * Display hints that have no meaning in plain text (`\H\`, `\N\`,
///   `\.fi\`, `\.nf\`, `\.in n\`, `\.ti n\`, `\.sk n\`, `\.ce\`), locally
///   defined escapes (`\Z..\`) and character set switches (`\Cxxyy\`,
///   `\Mxxyyzz\`) are dropped.
/// * Anything else, including an escape character with no closing escape
///   character, is kept literally: a sender's mistake should stay visible in
///   the data rather than silently vanish.
///
/// ```
/// use fdp_hl7::{unescape, Delimiters};
///
/// let d = Delimiters::default();
/// assert_eq!(unescape("Smith\\S\\Jones", &d), "Smith^Jones");
/// assert_eq!(unescape("line 1\\.br\\line 2", &d), "line 1\nline 2");
/// assert_eq!(unescape("caf\\XC3A9\\", &d), "café");
/// assert_eq!(unescape("caf\\XE9\\", &d), "café"); // not UTF-8, read as Latin-1
/// assert_eq!(unescape("\\H\\bold\\N\\", &d), "bold");
/// assert_eq!(unescape("50\\% off", &d), "50\\% off"); // unclosed: kept as is
/// ```
pub fn unescape<'s>(text: &'s str, d: &Delimiters) -> Cow<'s, str> {
    let bytes = text.as_bytes();
    let esc = d.escape;
    let Some(first) = text.find(esc as char) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut i = first;
    while i < bytes.len() {
        // Invariant: bytes[i] is the escape character.
        let Some(len) = text[i + 1..].find(esc as char) else {
            out.push_str(&text[i..]);
            return Cow::Owned(out);
        };
        let close = i + 1 + len;
        if decode_sequence(&text[i + 1..close], d, &mut out) {
            i = close + 1;
        } else {
            // Keep only the opening escape character literally and rescan from
            // the next character: the closing one may open a real sequence.
            out.push(esc as char);
            i += 1;
        }
        match text[i..].find(esc as char) {
            Some(next) => {
                out.push_str(&text[i..i + next]);
                i += next;
            }
            None => {
                out.push_str(&text[i..]);
                break;
            }
        }
    }
    Cow::Owned(out)
}

/// Appends the meaning of the escape sequence body `seq` to `out`. Returns
/// false, leaving `out` untouched, when `seq` is not a sequence we recognise.
fn decode_sequence(seq: &str, d: &Delimiters, out: &mut String) -> bool {
    let delimiter = match seq {
        "F" => Some(d.field),
        "S" => Some(d.component),
        "T" => Some(d.subcomponent),
        "R" => Some(d.repetition),
        "E" => Some(d.escape),
        "P" => match d.truncation {
            Some(t) => Some(t),
            None => return false,
        },
        "H" | "N" => return true,
        _ => None,
    };
    if let Some(b) = delimiter {
        out.push(b as char);
        return true;
    }
    let Some((&kind, rest)) = seq.as_bytes().split_first() else {
        return false;
    };
    match kind {
        b'X' => decode_hex(rest, out),
        b'Z' => true,
        b'C' => rest.len() == 4 && rest.iter().all(u8::is_ascii_hexdigit),
        b'M' => (rest.len() == 4 || rest.len() == 6) && rest.iter().all(u8::is_ascii_hexdigit),
        b'.' => decode_formatting(rest, out),
        _ => false,
    }
}

fn decode_hex(hex: &[u8], out: &mut String) -> bool {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let raw: Vec<u8> = hex
        .chunks_exact(2)
        .map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
        .collect();
    match std::str::from_utf8(&raw) {
        Ok(s) => out.push_str(s),
        Err(_) => out.extend(raw.iter().map(|&b| b as char)),
    }
    true
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn push_hex(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.push(DIGITS[usize::from(b >> 4)] as char);
    out.push(DIGITS[usize::from(b & 0xf)] as char);
}

/// Formatted-text commands (`\.br\` and friends), used in FT fields.
fn decode_formatting(cmd: &[u8], out: &mut String) -> bool {
    if cmd.len() < 2 {
        return false;
    }
    let (name, arg) = cmd.split_at(2);
    let arg = trim_ascii(arg);
    let arg_ok = arg.is_empty()
        || arg
            .iter()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && (*b == b'+' || *b == b'-')));
    if !arg_ok {
        return false;
    }
    match name {
        b"br" if arg.is_empty() => out.push('\n'),
        b"sp" => {
            let lines = if arg.is_empty() {
                1
            } else {
                // Digits only (a sign makes no sense here); saturate on overflow.
                arg.iter()
                    .filter(|b| b.is_ascii_digit())
                    .fold(0usize, |n, b| {
                        n.saturating_mul(10).saturating_add(usize::from(b - b'0'))
                    })
                    .min(64)
            };
            for _ in 0..lines {
                out.push('\n');
            }
        }
        b"fi" | b"nf" | b"ce" if arg.is_empty() => {}
        b"in" | b"ti" | b"sk" => {}
        _ => return false,
    }
    true
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| *c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|c| *c != b' ').map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    #[test]
    fn escapes_every_delimiter() {
        let d = Delimiters::new('|', '^', '~', '\\', '&', Some('#')).unwrap();
        assert_eq!(
            escape("a|b^c~d\\e&f#g", &d),
            "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\P\\g"
        );
        assert_eq!(
            unescape("a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\P\\g", &d),
            "a|b^c~d\\e&f#g"
        );
    }

    #[test]
    fn escapes_controls_but_not_tab() {
        assert_eq!(escape("a\tb\x01c\x7f", &d()), "a\tb\\X01\\c\\X7F\\");
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("Smith", &d()), Cow::Borrowed(_)));
        assert!(matches!(unescape("Smith", &d()), Cow::Borrowed(_)));
    }

    #[test]
    fn non_default_escape_character() {
        let d = Delimiters::new('#', '$', '*', '@', '!', None).unwrap();
        assert_eq!(escape("x#y@z", &d), "x@F@y@E@z");
        assert_eq!(unescape("x@F@y@E@z@S@", &d), "x#y@z$");
        // The default escape character is ordinary text here.
        assert_eq!(unescape("a\\F\\b", &d), "a\\F\\b");
    }

    #[test]
    fn hex_sequences() {
        assert_eq!(unescape("\\X0D0A\\", &d()), "\r\n");
        assert_eq!(unescape("\\Xc3a9\\", &d()), "é");
        assert_eq!(unescape("\\XFF\\", &d()), "ÿ");
        // Malformed hex is kept.
        assert_eq!(unescape("\\X0\\", &d()), "\\X0\\");
        assert_eq!(unescape("\\XZZ\\", &d()), "\\XZZ\\");
        assert_eq!(unescape("\\X\\", &d()), "\\X\\");
    }

    #[test]
    fn formatting_commands() {
        assert_eq!(unescape("a\\.br\\b", &d()), "a\nb");
        assert_eq!(unescape("a\\.sp\\b", &d()), "a\nb");
        assert_eq!(unescape("a\\.sp3\\b", &d()), "a\n\n\nb");
        assert_eq!(
            unescape("a\\.sp 99999999999999999999999\\b", &d()).len(),
            66
        );
        assert_eq!(unescape("a\\.in+4\\b\\.fi\\c\\.ce\\", &d()), "abc");
        assert_eq!(unescape("\\.xx\\", &d()), "\\.xx\\");
        assert_eq!(unescape("\\.\\", &d()), "\\.\\");
    }

    #[test]
    fn dropped_sequences() {
        assert_eq!(unescape("\\H\\x\\N\\", &d()), "x");
        assert_eq!(unescape("a\\Zlocal\\b", &d()), "ab");
        assert_eq!(unescape("a\\C2842\\b\\M2442\\c", &d()), "abc");
    }

    #[test]
    fn malformed_sequences_are_kept() {
        assert_eq!(unescape("\\", &d()), "\\");
        assert_eq!(unescape("a\\", &d()), "a\\");
        assert_eq!(unescape("\\\\", &d()), "\\\\");
        assert_eq!(unescape("\\Q\\", &d()), "\\Q\\");
        assert_eq!(unescape("\\P\\", &d()), "\\P\\");
        // An unknown sequence does not swallow a real one after it.
        assert_eq!(unescape("\\b\\F\\", &d()), "\\b|");
        assert_eq!(unescape("é\\é\\F\\é", &d()), "é\\é|é");
    }
}
