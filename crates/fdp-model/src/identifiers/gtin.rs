//! GS1 Global Trade Item Numbers, as printed on a product's barcode.
//!
//! A GTIN has 8, 12, 13 or 14 digits, the last a check digit: the digits
//! before it weighted 3, 1, 3, ... from the right and summed; the check
//! digit brings the sum to a multiple of ten (GS1 General Specifications,
//! section 7.9.1). GTINs of different lengths name the same item when
//! left-padded with zeros to 14, so they are kept at 14.

use super::IdentifierError;

const KIND: &str = "GTIN";

/// A GTIN whose check digit holds, at 14 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtin(String);

impl Gtin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Gtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The check digit for the digits before it; `None` if one is not a digit.
pub fn gtin_check_digit(body: &str) -> Option<u32> {
    let mut sum = 0;
    for (i, c) in body.chars().rev().enumerate() {
        let d = c.to_digit(10)?;
        sum += if i % 2 == 0 { 3 * d } else { d };
    }
    Some((10 - sum % 10) % 10)
}

/// Parses a GTIN-8, -12, -13 or -14 and checks its check digit.
pub fn parse_gtin(input: &str) -> Result<Gtin, IdentifierError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(IdentifierError::Empty { kind: KIND });
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(super::shape(KIND, input, "may contain only digits"));
    }
    if ![8, 12, 13, 14].contains(&s.len()) {
        return Err(super::shape(
            KIND,
            input,
            "must have 8, 12, 13 or 14 digits",
        ));
    }
    let (body, last) = s.split_at(s.len() - 1);
    let found = last.parse::<u32>().unwrap_or(10);
    let expected = gtin_check_digit(body).unwrap_or(10);
    if found != expected {
        return Err(IdentifierError::GtinCheckDigit {
            value: s.to_string(),
            found,
            expected,
        });
    }
    Ok(Gtin(format!("{s:0>14}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_check_digits() {
        assert_eq!(gtin_check_digit("629104150021"), Some(3));
        assert_eq!(gtin_check_digit("123456789012"), Some(8));
        assert_eq!(
            parse_gtin("6291041500213").unwrap().as_str(),
            "06291041500213"
        );
        assert_eq!(
            parse_gtin(" 1234567890128 ").unwrap().as_str(),
            "01234567890128"
        );
        // The same item as GTIN-12 and GTIN-13 is one GTIN.
        assert_eq!(parse_gtin("036000291452"), parse_gtin("0036000291452"));
    }

    #[test]
    fn bad_gtins_say_what_is_wrong() {
        let e = parse_gtin("6291041500214").unwrap_err();
        assert_eq!(
            e.to_string(),
            "GTIN: `6291041500214` ends in 4, but its check digit is 3"
        );
        assert!(parse_gtin("12345")
            .unwrap_err()
            .to_string()
            .contains("8, 12, 13 or 14"));
        assert!(parse_gtin("12345678901X")
            .unwrap_err()
            .to_string()
            .contains("only digits"));
        assert!(matches!(
            parse_gtin(" "),
            Err(IdentifierError::Empty { .. })
        ));
    }
}
