//! Checks NHS number validation against the shared test vectors, which were collected from
//! public NHS-related repositories and given a modulus 11 verdict each.

use std::path::PathBuf;

use fdp_model::identifiers::{parse_nhs_number, NhsNumberError};

fn vectors_path() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../../shared/data/nhs_number/nhs_number_vectors.csv")
}

/// Minimal CSV reader: the file quotes fields that contain commas.
fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The verdict the bare modulus 11 rule gives, in the file's vocabulary. Because
/// `parse_nhs_number` checks modulus 11 before rejecting repeated digits, a
/// `RepeatedDigit` error means the bare rule passed.
fn mod11_verdict(result: &Result<fdp_model::identifiers::NhsNumber, NhsNumberError>) -> String {
    match result {
        Ok(_) | Err(NhsNumberError::RepeatedDigit(_)) => "valid".into(),
        Err(NhsNumberError::Empty | NhsNumberError::WrongLength { .. }) => "invalid_length".into(),
        Err(NhsNumberError::InvalidCharacter(_)) => "invalid_non_numeric".into(),
        Err(NhsNumberError::CheckDigitWouldBeTen) => "invalid_check_digit_would_be_10".into(),
        Err(NhsNumberError::CheckDigitMismatch { expected, .. }) => {
            format!("invalid_check_digit_expected_{expected}")
        }
    }
}

#[test]
fn every_vector_gets_its_mod11_verdict() {
    let path = vectors_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipping: {} not found", path.display());
        return;
    };
    let mut lines = text.lines();
    let header = parse_csv_line(lines.next().expect("header"));
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (value_col, digits_col, verdict_col) = (
        col("value_as_found"),
        col("digits_only"),
        col("computed_mod11_result"),
    );
    let mut checked = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let row = parse_csv_line(line);
        let value = &row[value_col];
        let expected = &row[verdict_col];
        let result = parse_nhs_number(value);
        assert_eq!(
            &mod11_verdict(&result),
            expected,
            "value `{value}`: {result:?}"
        );
        // All-same-digit numbers pass modulus 11 but are placeholders, never real.
        let digits = &row[digits_col];
        let repeated = digits.len() == 10 && digits.bytes().all(|b| b == digits.as_bytes()[0]);
        assert_eq!(
            repeated,
            matches!(result, Err(NhsNumberError::RepeatedDigit(_))),
            "{value}"
        );
        if expected == "valid" && !repeated {
            assert_eq!(result.unwrap().digits(), *digits);
        }
        checked += 1;
    }
    assert!(checked >= 26, "only {checked} vectors read");
}

#[test]
fn zero_passes_bare_mod11_but_is_rejected() {
    let result = parse_nhs_number("0000000000");
    assert_eq!(result, Err(NhsNumberError::RepeatedDigit(0)));
    assert_eq!(mod11_verdict(&result), "valid");
    assert_eq!(
        parse_nhs_number("999 999 9999"),
        Err(NhsNumberError::RepeatedDigit(9))
    );
    assert!(result.unwrap_err().to_string().contains("never issued"));
}

#[test]
fn csv_reader_handles_quotes() {
    assert_eq!(
        parse_csv_line(r#"a,"b, c",d"#),
        vec!["a".to_string(), "b, c".into(), "d".into()]
    );
    assert_eq!(
        parse_csv_line(r#""say ""hi""",x"#),
        vec![r#"say "hi""#.to_string(), "x".into()]
    );
}
