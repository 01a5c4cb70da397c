use std::fmt;

use super::{shape, IdentifierError};

const KIND: &str = "ODS code";

/// Which family of ODS code a value looks like. The shape is only a hint: ODS itself
/// is the authority on what an organisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OdsCodeKind {
    /// Three characters: trusts (`RXX`), commissioners (`00L`), other bodies.
    Organisation,
    /// Five characters: a site of an organisation (`RXX01`).
    Site,
    /// A letter and five digits: a GP practice (`A12345`).
    GpPractice,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OdsCode {
    code: String,
    kind: OdsCodeKind,
}

impl OdsCode {
    pub fn as_str(&self) -> &str {
        &self.code
    }

    pub fn kind(&self) -> OdsCodeKind {
        self.kind
    }

    /// For a site code, the three-character code of the organisation it belongs to.
    pub fn parent_organisation(&self) -> Option<&str> {
        (self.kind == OdsCodeKind::Site).then(|| &self.code[..3])
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

/// Parses an ODS organisation, site or GP practice code. Case is normalised to upper
/// because feeds disagree on it and ODS treats codes case-insensitively.
pub fn parse_ods_code(input: &str) -> Result<OdsCode, IdentifierError> {
    let code = input.trim().to_ascii_uppercase();
    if code.is_empty() {
        return Err(IdentifierError::Empty { kind: KIND });
    }
    if !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(shape(KIND, input, "may contain only letters and digits"));
    }
    let b = code.as_bytes();
    let has_letter = b.iter().any(u8::is_ascii_alphabetic);
    let kind = match b.len() {
        3 if has_letter => OdsCodeKind::Organisation,
        5 if has_letter => OdsCodeKind::Site,
        6 if b[0].is_ascii_alphabetic() && b[1..].iter().all(u8::is_ascii_digit) => {
            OdsCodeKind::GpPractice
        }
        3 | 5 => return Err(shape(KIND, input, "must contain at least one letter")),
        6 => {
            return Err(shape(
                KIND,
                input,
                "a six-character code must be a letter and five digits",
            ))
        }
        _ => {
            return Err(shape(
                KIND,
                input,
                "must be 3 or 5 characters, or a letter and five digits",
            ))
        }
    };
    Ok(OdsCode { code, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            parse_ods_code("RXX").unwrap().kind(),
            OdsCodeKind::Organisation
        );
        assert_eq!(
            parse_ods_code("00L").unwrap().kind(),
            OdsCodeKind::Organisation
        );
        let site = parse_ods_code(" rxx01 ").unwrap();
        assert_eq!(site.kind(), OdsCodeKind::Site);
        assert_eq!(site.as_str(), "RXX01");
        assert_eq!(site.parent_organisation(), Some("RXX"));
        assert_eq!(
            parse_ods_code("A12345").unwrap().kind(),
            OdsCodeKind::GpPractice
        );
        assert_eq!(
            parse_ods_code("A12345").unwrap().parent_organisation(),
            None
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "", "RX", "RXXX", "123", "12345", "AB1234", "RX-01", "A1234567",
        ] {
            assert!(parse_ods_code(bad).is_err(), "{bad}");
        }
    }
}
