//! Delimited text as source systems write it: their delimiter, quoting,
//! line ends and encoding, with faulty lines placed among the good ones
//! and their line numbers remembered.

use rand::Rng;

use super::{ExtractFile, Fault, FaultKind};

/// How the file's text becomes bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Utf8,
    /// UTF-8 with a byte-order mark, as Excel and many reporting tools save it.
    Utf8Bom,
    /// Windows-1252; characters it lacks become `?`, as a "Save as CSV" does.
    Windows1252,
}

enum Line {
    /// Title lines and the header.
    Text(String),
    Record(String),
    Fault(String, FaultKind, String),
}

pub(crate) struct Sheet {
    delimiter: char,
    crlf: bool,
    encoding: Encoding,
    head: Vec<Line>,
    body: Vec<Line>,
    /// A last line cut short, written without a line end.
    tail: Option<(String, String)>,
}

impl Sheet {
    pub(crate) fn new(delimiter: char, crlf: bool, encoding: Encoding) -> Sheet {
        Sheet {
            delimiter,
            crlf,
            encoding,
            head: Vec::new(),
            body: Vec::new(),
            tail: None,
        }
    }

    /// A line before the data, written as given.
    pub(crate) fn title(&mut self, text: impl Into<String>) {
        self.head.push(Line::Text(text.into()));
    }

    pub(crate) fn header(&mut self, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let line = self.join(&names);
        self.head.push(Line::Text(line));
    }

    /// Fields joined with the delimiter, quoted only where they need it.
    pub(crate) fn join(&self, fields: &[String]) -> String {
        let mut out = String::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            if f.contains([self.delimiter, '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&f.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(f);
            }
        }
        out
    }

    /// Fields joined with no quoting at all: how a careless export lets a
    /// delimiter inside a value split it in two.
    pub(crate) fn join_unquoted(&self, fields: &[String]) -> String {
        fields.join(&self.delimiter.to_string())
    }

    pub(crate) fn record(&mut self, fields: &[String]) {
        let line = self.join(fields);
        self.body.push(Line::Record(line));
    }

    /// Put a faulty line among the records, at a random place after the
    /// first (so a reader always sees a good line first).
    pub(crate) fn fault<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        line: String,
        kind: FaultKind,
        detail: impl Into<String>,
    ) {
        let at = rng
            .random_range(1..=self.body.len().max(1))
            .min(self.body.len());
        self.body.insert(at, Line::Fault(line, kind, detail.into()));
    }

    /// The file ends in this line, cut short and without a line end, as a
    /// transfer that stopped early leaves it.
    pub(crate) fn truncated_tail(&mut self, line: String, detail: impl Into<String>) {
        self.tail = Some((line, detail.into()));
    }

    pub(crate) fn finish(self, name: impl Into<String>) -> ExtractFile {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        let mut records = 0;
        let mut faults = Vec::new();
        let mut line_no: u64 = 0;
        for line in self.head.iter().chain(&self.body) {
            line_no += 1;
            match line {
                Line::Text(t) => text.push_str(t),
                Line::Record(t) => {
                    records += 1;
                    text.push_str(t);
                }
                Line::Fault(t, kind, detail) => {
                    faults.push(Fault {
                        line: line_no,
                        kind: *kind,
                        detail: detail.clone(),
                    });
                    text.push_str(t);
                }
            }
            text.push_str(eol);
        }
        if let Some((t, detail)) = self.tail {
            faults.push(Fault {
                line: line_no + 1,
                kind: FaultKind::FieldCount,
                detail,
            });
            text.push_str(&t);
        }
        let bytes = match self.encoding {
            Encoding::Utf8 => text.into_bytes(),
            Encoding::Utf8Bom => {
                let mut b = b"\xef\xbb\xbf".to_vec();
                b.extend_from_slice(text.as_bytes());
                b
            }
            Encoding::Windows1252 => text.chars().map(windows_1252).collect(),
        };
        ExtractFile {
            name: name.into(),
            bytes,
            records,
            faults,
        }
    }
}

/// The Windows-1252 byte for a character, or `?` when it has none.
fn windows_1252(c: char) -> u8 {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    let n = c as u32;
    if n < 0x80 || (0xA0..=0xFF).contains(&n) {
        return n as u8;
    }
    HIGH.iter()
        .position(|&h| h == c && !(0x80..0xA0).contains(&(h as u32)))
        .map_or(b'?', |i| 0x80 + i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;

    #[test]
    fn faults_are_numbered_by_line_and_text_is_encoded() {
        let mut s = Sheet::new(',', true, Encoding::Windows1252);
        s.title("A report");
        s.header(&["A", "B"]);
        for i in 0..5 {
            s.record(&[format!("O’Brien {i}"), "x, y".into()]);
        }
        let mut rng = rng_for(1, 0);
        s.fault(&mut rng, "bad".into(), FaultKind::UnknownCode, "B");
        s.truncated_tail("cut".into(), "short");
        let f = s.finish("t.csv");
        assert_eq!(f.records, 5);
        let lines: Vec<&[u8]> = f.bytes.split(|&b| b == b'\n').collect();
        assert_eq!(lines[0], b"A report\r");
        assert_eq!(lines[2], b"O\x92Brien 0,\"x, y\"\r");
        assert_eq!(lines[f.faults[0].line as usize - 1], b"bad\r");
        assert!(f.faults[0].line > 3);
        assert_eq!(f.faults[1].line, 9);
        assert_eq!(*lines.last().unwrap(), b"cut");
        assert_eq!(windows_1252('ł'), b'?');
        assert_eq!(windows_1252('–'), 0x96);
        assert_eq!(windows_1252('é'), 0xE9);
    }
}
