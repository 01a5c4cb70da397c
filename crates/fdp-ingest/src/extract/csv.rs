//! Splitting delimited text into records and fields: RFC 4180 quoting,
//! any delimiter (one byte, or a multi-byte sequence such as `¬` in UTF-8),
//! LF or CRLF line ends, quoted line breaks, and line numbers for every
//! record so a problem can be named by line.

use std::borrow::Cow;

/// One record: its first line number (1-based), its bytes as received, and
/// its fields (unquoted; `""` inside quotes becomes `"`).
pub struct Record<'a> {
    pub line: usize,
    pub raw: &'a [u8],
    pub fields: Vec<Cow<'a, [u8]>>,
}

/// Records of `data`, starting at `line`.
pub struct Records<'a> {
    data: &'a [u8],
    delim: &'a [u8],
    pos: usize,
    line: usize,
    open_quote: bool,
}

impl<'a> Records<'a> {
    pub fn new(data: &'a [u8], delim: &'a [u8], first_line: usize) -> Self {
        Records {
            data,
            delim,
            pos: 0,
            line: first_line,
            open_quote: false,
        }
    }

    /// Whether the data ended inside a quoted field: for a piece of a file,
    /// the piece was cut inside a record.
    pub fn ended_in_quotes(&self) -> bool {
        self.open_quote
    }

    /// The next record, reusing `fields`' allocation.
    pub fn next_into(&mut self, fields: &mut Vec<Cow<'a, [u8]>>) -> Option<(usize, &'a [u8])> {
        fields.clear();
        let d = self.data;
        // Skip blank lines.
        while self.pos < d.len() && (d[self.pos] == b'\n' || d[self.pos] == b'\r') {
            if d[self.pos] == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
        if self.pos >= d.len() {
            return None;
        }
        let start = self.pos;
        let line = self.line;
        let delim0 = self.delim[0];
        let mut i = self.pos;
        loop {
            if i < d.len() && d[i] == b'"' {
                // Quoted field.
                let mut j = i + 1;
                let mut owned: Option<Vec<u8>> = None;
                let mut seg_start = j;
                loop {
                    if j >= d.len() {
                        self.open_quote = true;
                        break;
                    }
                    if d[j] == b'"' {
                        if j + 1 < d.len() && d[j + 1] == b'"' {
                            let o = owned.get_or_insert_with(Vec::new);
                            o.extend_from_slice(&d[seg_start..=j]);
                            j += 2;
                            seg_start = j;
                            continue;
                        }
                        break;
                    }
                    if d[j] == b'\n' {
                        self.line += 1;
                    }
                    j += 1;
                }
                let field = match owned {
                    Some(mut o) => {
                        o.extend_from_slice(&d[seg_start..j.min(d.len())]);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(&d[seg_start..j.min(d.len())]),
                };
                fields.push(field);
                i = (j + 1).min(d.len());
                // Anything up to the next delimiter or line end is junk after
                // the closing quote; keep it out of the field.
                while i < d.len() && d[i] != b'\n' && d[i] != b'\r' && !self.at_delim(i) {
                    i += 1;
                }
            } else {
                let mut j = i;
                while j < d.len()
                    && d[j] != b'\n'
                    && d[j] != b'\r'
                    && !(d[j] == delim0 && self.at_delim(j))
                {
                    j += 1;
                }
                fields.push(Cow::Borrowed(&d[i..j]));
                i = j;
            }
            if i < d.len() && self.at_delim(i) {
                i += self.delim.len();
                continue;
            }
            // End of record.
            let end = i;
            if i < d.len() && d[i] == b'\r' {
                i += 1;
            }
            if i < d.len() && d[i] == b'\n' {
                i += 1;
                self.line += 1;
            }
            self.pos = i;
            return Some((line, &d[start..end]));
        }
    }

    fn at_delim(&self, i: usize) -> bool {
        self.data[i..].starts_with(self.delim)
    }
}

/// Byte offsets at which to split `data` into about `parts` pieces, at line
/// breaks outside quotes as far as counting quotes can tell, with the line
/// number each piece starts at. A stray quote inside an unquoted field
/// (`12" monitor`) misleads the count, so a piece may start inside a record:
/// the parser checks that each piece but the last ended outside quotes
/// ([`Records::ended_in_quotes`]) and otherwise reads the file in one piece.
pub fn split_points(data: &[u8], parts: usize) -> Vec<(usize, usize)> {
    let mut out = vec![(0, 1)];
    if parts <= 1 || data.len() < 1 << 20 {
        return out;
    }
    let step = data.len() / parts;
    let mut next_target = step;
    let mut in_quotes = false;
    let mut line = 1;
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' => {
                line += 1;
                if !in_quotes && i + 1 >= next_target && i + 1 < data.len() {
                    out.push((i + 1, line));
                    next_target += step;
                    if out.len() == parts {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8], delim: &[u8]) -> Vec<(usize, Vec<String>)> {
        let mut r = Records::new(data, delim, 1);
        let mut f = Vec::new();
        let mut out = Vec::new();
        while let Some((line, _)) = r.next_into(&mut f) {
            out.push((
                line,
                f.iter()
                    .map(|x| String::from_utf8_lossy(x).into_owned())
                    .collect(),
            ));
        }
        out
    }

    #[test]
    fn quotes_crlf_and_line_numbers() {
        let rows = all(
            b"a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",3\r\n\r\n\"multi\nline\",,z\n",
            b",",
        );
        assert_eq!(rows[0], (1, vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(
            rows[1],
            (2, vec!["x, y".into(), "say \"hi\"".into(), "3".into()])
        );
        assert_eq!(
            rows[2],
            (4, vec!["multi\nline".into(), "".into(), "z".into()])
        );
    }

    #[test]
    fn multibyte_and_latin1_delimiters() {
        assert_eq!(
            all("a¬b¬\nc¬d¬e".as_bytes(), "¬".as_bytes())[1].1,
            vec!["c", "d", "e"]
        );
        assert_eq!(all(b"a\xacb\n", b"\xac")[0].1, vec!["a", "b"]);
    }

    #[test]
    fn split_points_respect_quotes() {
        let mut data = Vec::new();
        for i in 0..100_000 {
            data.extend_from_slice(format!("{i},\"q\nq\",x\n").as_bytes());
        }
        let points = split_points(&data, 4);
        assert!(points.len() > 1);
        for (off, line) in points {
            let mut r = Records::new(&data[off..], b",", line);
            let mut f = Vec::new();
            let (l, _) = r.next_into(&mut f).unwrap();
            assert_eq!(f.len(), 3, "at {off}");
            assert_eq!(l % 2, 1);
        }
    }
}
