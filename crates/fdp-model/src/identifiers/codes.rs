use std::fmt;

use super::{shape, IdentifierError};

/// An OPCS-4 procedure code: chapter letter, two-digit category, optional subcategory
/// digit. Feeds write it both dotted (`W40.1`) and compact (`W401`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Opcs4Code {
    category: String,
    subcategory: Option<char>,
}

impl Opcs4Code {
    /// Three-character category, e.g. `W40`.
    pub fn category(&self) -> &str {
        &self.category
    }

    pub fn subcategory(&self) -> Option<char> {
        self.subcategory
    }

    /// Dotted form, e.g. `W40.1`.
    pub fn dotted(&self) -> String {
        match self.subcategory {
            Some(c) => format!("{}.{c}", self.category),
            None => self.category.clone(),
        }
    }

    /// Compact form as used in HES/SUS extracts, e.g. `W401`.
    pub fn compact(&self) -> String {
        match self.subcategory {
            Some(c) => format!("{}{c}", self.category),
            None => self.category.clone(),
        }
    }
}

impl fmt::Display for Opcs4Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dotted())
    }
}

/// Splits `X99`, `X99.9` or `X999` (any case) into category and the rest after the dot.
fn split_code(s: &str) -> Option<(String, &str)> {
    let b = s.as_bytes();
    if b.len() < 3
        || !b[0].is_ascii_alphabetic()
        || !b[1].is_ascii_digit()
        || !b[2].is_ascii_digit()
    {
        return None;
    }
    let rest = &s[3..];
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    if s.len() > 3 && rest.is_empty() {
        // A trailing dot with nothing after it.
        return None;
    }
    Some((s[..3].to_ascii_uppercase(), rest))
}

/// Parses an OPCS-4 code such as `W40.1`, `W401` or `W40`.
pub fn parse_opcs4(input: &str) -> Result<Opcs4Code, IdentifierError> {
    const KIND: &str = "OPCS-4";
    let s = input.trim();
    if s.is_empty() {
        return Err(IdentifierError::Empty { kind: KIND });
    }
    let Some((category, rest)) = split_code(s) else {
        return Err(shape(
            KIND,
            input,
            "must be a letter and two digits, then an optional digit",
        ));
    };
    // OPCS-4 has no chapter I (it would be confused with 1).
    if category.starts_with('I') {
        return Err(shape(KIND, input, "there is no OPCS-4 chapter I"));
    }
    let subcategory = match rest.as_bytes() {
        [] => None,
        [d] if d.is_ascii_digit() => Some(char::from(*d)),
        _ => {
            return Err(shape(
                KIND,
                input,
                "must be a letter and two digits, then an optional digit",
            ))
        }
    };
    Ok(Opcs4Code {
        category,
        subcategory,
    })
}

/// An ICD-10 diagnosis code: letter, two-digit category, optional subdivision of one or
/// two digits (the second is a UK fifth-character extension).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Icd10Code {
    category: String,
    subdivision: Option<String>,
}

impl Icd10Code {
    /// Three-character category, e.g. `I21`.
    pub fn category(&self) -> &str {
        &self.category
    }

    pub fn subdivision(&self) -> Option<&str> {
        self.subdivision.as_deref()
    }

    /// Dotted form, e.g. `I21.0`; a bare category stays bare (`R69`).
    pub fn dotted(&self) -> String {
        match &self.subdivision {
            Some(s) => format!("{}.{s}", self.category),
            None => self.category.clone(),
        }
    }

    /// The NHS four-character form, padding a bare category with `X` (`R69X`).
    pub fn nhs_four_character(&self) -> String {
        match &self.subdivision {
            Some(s) => format!("{}{s}", self.category),
            None => format!("{}X", self.category),
        }
    }
}

impl fmt::Display for Icd10Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dotted())
    }
}

/// Parses an ICD-10 code such as `I21.0`, `J189`, `E11`, `R69X` or `S72.00`.
pub fn parse_icd10(input: &str) -> Result<Icd10Code, IdentifierError> {
    const KIND: &str = "ICD-10";
    const SHAPE: &str = "must be a letter and two digits, then an optional subdivision";
    let s = input.trim();
    if s.is_empty() {
        return Err(IdentifierError::Empty { kind: KIND });
    }
    let Some((category, rest)) = split_code(s) else {
        return Err(shape(KIND, input, SHAPE));
    };
    let subdivision = match rest.as_bytes() {
        [] => None,
        // NHS datasets pad codes that have no subdivision with X.
        [b'X' | b'x'] => None,
        [d] if d.is_ascii_digit() => Some(rest.to_string()),
        [d, e] if d.is_ascii_digit() && e.is_ascii_digit() => Some(rest.to_string()),
        _ => return Err(shape(KIND, input, SHAPE)),
    };
    Ok(Icd10Code {
        category,
        subdivision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcs() {
        let c = parse_opcs4("W40.1").unwrap();
        assert_eq!(c.category(), "W40");
        assert_eq!(c.subcategory(), Some('1'));
        assert_eq!(c.compact(), "W401");
        assert_eq!(parse_opcs4("w401").unwrap().dotted(), "W40.1");
        assert_eq!(parse_opcs4("H22").unwrap().dotted(), "H22");
        assert_eq!(parse_opcs4("O01.2").unwrap().category(), "O01");
        for bad in [
            "", "W4", "W40.", "W40.12", "W4a1", "I12.3", "140.1", "W40-1",
        ] {
            assert!(parse_opcs4(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn icd10() {
        let c = parse_icd10("I21.0").unwrap();
        assert_eq!(c.category(), "I21");
        assert_eq!(c.subdivision(), Some("0"));
        assert_eq!(c.nhs_four_character(), "I210");
        assert_eq!(parse_icd10("J189").unwrap().to_string(), "J18.9");
        assert_eq!(parse_icd10("E11").unwrap().dotted(), "E11");
        assert_eq!(parse_icd10("R69X").unwrap().dotted(), "R69");
        assert_eq!(parse_icd10("R69").unwrap().nhs_four_character(), "R69X");
        assert_eq!(parse_icd10("s72.00").unwrap().dotted(), "S72.00");
        assert_eq!(parse_icd10("U07.1").unwrap().category(), "U07");
        for bad in [
            "", "I2", "I21.", "I21.000", "121.0", "I21-0", "IAB.0", "I21.A",
        ] {
            assert!(parse_icd10(bad).is_err(), "{bad}");
        }
    }
}
