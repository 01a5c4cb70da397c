use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A 10-digit NHS number that passed the modulus 11 check and is not a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber([u8; 10]);

impl NhsNumber {
    /// The ten digits with no separators, the form to store and compare.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }

    /// The `3 3 4` spaced form people read and type.
    pub fn formatted(&self) -> String {
        let d = self.digits();
        format!("{} {} {}", &d[0..3], &d[3..6], &d[6..10])
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits())
    }
}

impl FromStr for NhsNumber {
    type Err = NhsNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_nhs_number(s)
    }
}

/// Why a string is not an NHS number. The variants are checked in the order listed, so
/// `RepeatedDigit` is only reported for numbers that pass the bare modulus 11 rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NhsNumberError {
    #[error("NHS number is empty")]
    Empty,
    #[error("NHS number contains `{0}`; only digits, spaces and hyphens are allowed")]
    InvalidCharacter(char),
    #[error("NHS number has {found} digits; it must have {expected}")]
    WrongLength { expected: usize, found: usize },
    #[error("NHS number check digit would be 10, so no NHS number starts with these nine digits")]
    CheckDigitWouldBeTen,
    #[error("NHS number check digit is {found} but should be {expected}")]
    CheckDigitMismatch { expected: u8, found: u8 },
    #[error(
        "NHS number has all ten digits {0}; such numbers pass modulus 11 but are never issued"
    )]
    RepeatedDigit(u8),
}

fn digits_of(input: &str, expected: usize) -> Result<Vec<u8>, NhsNumberError> {
    let mut digits = Vec::with_capacity(expected);
    for c in input.chars() {
        match c {
            '0'..='9' => digits.push(c as u8 - b'0'),
            ' ' | '-' => {}
            other => return Err(NhsNumberError::InvalidCharacter(other)),
        }
    }
    if digits.is_empty() {
        return Err(NhsNumberError::Empty);
    }
    if digits.len() != expected {
        return Err(NhsNumberError::WrongLength {
            expected,
            found: digits.len(),
        });
    }
    Ok(digits)
}

fn check_digit(first9: &[u8]) -> Result<u8, NhsNumberError> {
    // NHS Data Dictionary modulus 11: weights 10 down to 2, remainder subtracted from 11.
    let sum: u32 = first9
        .iter()
        .zip((2..=10).rev())
        .map(|(&d, w)| u32::from(d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Ok(0),
        10 => Err(NhsNumberError::CheckDigitWouldBeTen),
        c => Ok(c as u8),
    }
}

/// The check digit for nine leading digit values (each 0–9), for generators
/// that work on digits rather than text. `None` when it would be 10: no NHS
/// number has that prefix.
pub fn nhs_number_check_digit_of(first9: &[u8; 9]) -> Option<u8> {
    check_digit(first9).ok()
}

/// The check digit for nine leading digits (spaces and hyphens ignored), for generating
/// synthetic NHS numbers. Fails when the check digit would be 10: skip such prefixes.
pub fn nhs_number_check_digit(first9: &str) -> Result<u8, NhsNumberError> {
    let digits = digits_of(first9, 9)?;
    check_digit(&digits)
}

/// The first valid NHS number whose nine leading digits, read as a number,
/// are `start` or more: prefixes whose check digit would be 10, and
/// repeated-digit numbers, are skipped. For generating runs of distinct
/// synthetic numbers (`nhs_number_from(base + i * step)`). `None` past
/// 999 999 999.
pub fn nhs_number_from(start: u64) -> Option<String> {
    (start..=999_999_999).find_map(|n| {
        let first9 = format!("{n:09}");
        let check = nhs_number_check_digit(&first9).ok()?;
        let number = format!("{first9}{check}");
        parse_nhs_number(&number).ok().map(|_| number)
    })
}

/// Parses an NHS number written with or without spaces or hyphens.
pub fn parse_nhs_number(input: &str) -> Result<NhsNumber, NhsNumberError> {
    let digits = digits_of(input, 10)?;
    let expected = check_digit(&digits[..9])?;
    if digits[9] != expected {
        return Err(NhsNumberError::CheckDigitMismatch {
            expected,
            found: digits[9],
        });
    }
    // Every repeated-digit number satisfies modulus 11 (10·d ≡ −d mod 11), and 0000000000
    // and 9999999999 are common placeholders in feeds, so none of them can name a patient.
    if digits.iter().all(|&d| d == digits[0]) {
        return Err(NhsNumberError::RepeatedDigit(digits[0]));
    }
    let mut out = [0u8; 10];
    out.copy_from_slice(&digits);
    Ok(NhsNumber(out))
}

pub fn is_valid_nhs_number(input: &str) -> bool {
    parse_nhs_number(input).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        let n = parse_nhs_number("943 476 5919").unwrap();
        assert_eq!(n.digits(), "9434765919");
        assert_eq!(n.formatted(), "943 476 5919");
        assert_eq!(n.to_string(), "9434765919");
        assert!(is_valid_nhs_number("943-476-5919"));
        assert_eq!(
            parse_nhs_number("9434765918"),
            Err(NhsNumberError::CheckDigitMismatch {
                expected: 9,
                found: 8
            })
        );
        assert_eq!(
            parse_nhs_number("1234567890"),
            Err(NhsNumberError::CheckDigitWouldBeTen)
        );
    }

    #[test]
    fn runs_of_synthetic_numbers() {
        // 943476591 has check digit 9; 123456789 would need 10, so is skipped.
        assert_eq!(nhs_number_from(943_476_591).as_deref(), Some("9434765919"));
        let next = nhs_number_from(123_456_789).unwrap();
        assert!(
            next.as_str() > "1234567890" && is_valid_nhs_number(&next),
            "{next}"
        );
        // Repeated digits pass modulus 11 but name no one.
        assert_ne!(nhs_number_from(444_444_444).as_deref(), Some("4444444444"));
        assert_eq!(nhs_number_from(1_000_000_000), None);
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_nhs_number(""), Err(NhsNumberError::Empty));
        assert_eq!(parse_nhs_number(" - "), Err(NhsNumberError::Empty));
        assert_eq!(
            parse_nhs_number("943.476.5919"),
            Err(NhsNumberError::InvalidCharacter('.'))
        );
        assert_eq!(
            parse_nhs_number("94347659191"),
            Err(NhsNumberError::WrongLength {
                expected: 10,
                found: 11
            })
        );
    }

    #[test]
    fn every_repeated_digit_number_is_rejected() {
        for d in 0..=9u8 {
            let s: String = std::iter::repeat_n(char::from(b'0' + d), 10).collect();
            assert_eq!(parse_nhs_number(&s), Err(NhsNumberError::RepeatedDigit(d)));
        }
    }

    #[test]
    fn check_digit_for_generators() {
        assert_eq!(nhs_number_check_digit("943476591"), Ok(9));
        assert_eq!(nhs_number_check_digit("943 476 591"), Ok(9));
        assert_eq!(
            nhs_number_check_digit("123456789"),
            Err(NhsNumberError::CheckDigitWouldBeTen)
        );
        assert_eq!(
            nhs_number_check_digit("9434765919"),
            Err(NhsNumberError::WrongLength {
                expected: 9,
                found: 10
            })
        );
        // A generated number always parses back.
        for prefix in 900_000_000u32..900_000_200 {
            let p = prefix.to_string();
            if let Ok(c) = nhs_number_check_digit(&p) {
                assert!(is_valid_nhs_number(&format!("{p}{c}")), "{p}{c}");
            }
        }
    }
}
