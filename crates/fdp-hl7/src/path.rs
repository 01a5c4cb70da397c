//! Terse addresses of values inside a message, such as `PID-3[2].1`.

use std::fmt;
use std::str::FromStr;

use crate::PathError;

/// The address of a field, repetition, component or subcomponent.
///
/// Syntax: `SEG[occurrence]-field[repetition].component.subcomponent`, where
/// everything after the field number is optional and all numbers are
/// 1-based, as in the HL7 standard. Round brackets may be used instead of
/// square ones, and `.` instead of `-` (so `PID.3.1` works too). The segment
/// id is case-insensitive.
///
/// What a path selects:
///
/// | path | selects |
/// | --- | --- |
/// | `PID-3` | the whole field, all repetitions |
/// | `PID-3[2]` | the second repetition |
/// | `PID-3.1` | component 1 of the first repetition |
/// | `PID-3[2].4.1` | subcomponent 1 of component 4 of repetition 2 |
/// | `OBX[2]-5` | field 5 of the second OBX segment |
///
/// ```
/// use fdp_hl7::Path;
///
/// let p: Path = "pid-3[2].4".parse().unwrap();
/// assert_eq!(p.segment_id(), "PID");
/// assert_eq!((p.field, p.repetition, p.component), (3, Some(2), Some(4)));
/// assert_eq!(p.to_string(), "PID-3[2].4");
/// assert!("PID-0".parse::<Path>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    segment: [u8; 3],
    /// Which segment with this id, 1-based (1 = the first).
    pub occurrence: usize,
    /// Field number, 1-based; for MSH, field 1 is the field separator.
    pub field: usize,
    /// Repetition, 1-based. `None` selects the whole field when no component
    /// is given, and the first repetition otherwise.
    pub repetition: Option<usize>,
    /// Component, 1-based.
    pub component: Option<usize>,
    /// Subcomponent, 1-based. Only meaningful with a component.
    pub subcomponent: Option<usize>,
}

impl Path {
    /// Parses a path; see the type documentation for the syntax.
    pub fn parse(path: &str) -> Result<Path, PathError> {
        let err = |reason| PathError {
            path: path.to_owned(),
            reason,
        };
        let mut cur = Cursor {
            bytes: path.as_bytes(),
            pos: 0,
        };
        let mut segment = [0u8; 3];
        for slot in &mut segment {
            match cur.next() {
                Some(b) if b.is_ascii_alphanumeric() => *slot = b.to_ascii_uppercase(),
                _ => return Err(err("must start with a 3-character segment id")),
            }
        }
        let occurrence = cur.index().map_err(err)?.unwrap_or(1);
        if !matches!(cur.next(), Some(b'-' | b'.')) {
            return Err(err("expected '-' and a field number after the segment id"));
        }
        let field = cur.number().map_err(err)?;
        let repetition = cur.index().map_err(err)?;
        let mut component = None;
        let mut subcomponent = None;
        if matches!(cur.peek(), Some(b'.' | b'-')) {
            cur.pos += 1;
            component = Some(cur.number().map_err(err)?);
            if matches!(cur.peek(), Some(b'.' | b'-')) {
                cur.pos += 1;
                subcomponent = Some(cur.number().map_err(err)?);
            }
        }
        if cur.peek().is_some() {
            return Err(err("unexpected text after the path"));
        }
        Ok(Path {
            segment,
            occurrence,
            field,
            repetition,
            component,
            subcomponent,
        })
    }

    pub(crate) fn segment_bytes(&self) -> [u8; 3] {
        self.segment
    }

    /// The segment id, e.g. `PID`.
    pub fn segment_id(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.segment).unwrap_or("???")
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::parse(s)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.segment_id())?;
        if self.occurrence != 1 {
            write!(f, "[{}]", self.occurrence)?;
        }
        write!(f, "-{}", self.field)?;
        if let Some(r) = self.repetition {
            write!(f, "[{r}]")?;
        }
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

struct Cursor<'p> {
    bytes: &'p [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// A 1-based number of at most 9 digits (no message has more parts).
    fn number(&mut self) -> Result<usize, &'static str> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.bytes[start..self.pos];
        if digits.is_empty() {
            return Err("expected a number");
        }
        if digits.len() > 9 {
            return Err("number too large");
        }
        let n = digits
            .iter()
            .fold(0usize, |n, b| n * 10 + usize::from(b - b'0'));
        if n == 0 {
            return Err("numbers are 1-based; 0 is not a valid position");
        }
        Ok(n)
    }

    /// An optional `[n]` or `(n)`.
    fn index(&mut self) -> Result<Option<usize>, &'static str> {
        let close = match self.peek() {
            Some(b'[') => b']',
            Some(b'(') => b')',
            _ => return Ok(None),
        };
        self.pos += 1;
        let n = self.number()?;
        if self.next() != Some(close) {
            return Err("unclosed bracket");
        }
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        let p = Path::parse("OBX(2)-5(3).1.2").unwrap();
        assert_eq!(p.segment_id(), "OBX");
        assert_eq!(p.occurrence, 2);
        assert_eq!(p.field, 5);
        assert_eq!(p.repetition, Some(3));
        assert_eq!(p.component, Some(1));
        assert_eq!(p.subcomponent, Some(2));
        assert_eq!(p.to_string(), "OBX[2]-5[3].1.2");

        let p = Path::parse("PV1.3.2").unwrap();
        assert_eq!((p.field, p.component, p.subcomponent), (3, Some(2), None));
        let p = Path::parse("MSH-9-1").unwrap();
        assert_eq!((p.field, p.component), (9, Some(1)));
        let p = Path::parse("ZU1-1").unwrap();
        assert_eq!(p.segment_id(), "ZU1");
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "",
            "PI",
            "PID",
            "PID-",
            "PID-x",
            "PID-0",
            "PID-3[",
            "PID-3[2",
            "PID-3[0]",
            "PID-3.",
            "PID-3.1.",
            "PID-3.1.1.1",
            "PID-3 ",
            "P!D-3",
            "PID-9999999999",
            "PID-3[2)",
        ] {
            let e = Path::parse(bad).unwrap_err();
            assert_eq!(e.path, bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
