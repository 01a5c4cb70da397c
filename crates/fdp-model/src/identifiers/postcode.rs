use std::fmt;

use super::{shape, IdentifierError};

const KIND: &str = "postcode";

/// A UK postcode split into its outward code (area + district, e.g. `SW1A`) and inward
/// code (sector digit + unit, e.g. `1AA`). District and sector are what analysis uses
/// when the full postcode is too identifying.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Postcode {
    outward: String,
    inward: String,
}

impl Postcode {
    /// Outward code, e.g. `SW1A`; this is also the postcode district.
    pub fn outward(&self) -> &str {
        &self.outward
    }

    pub fn inward(&self) -> &str {
        &self.inward
    }

    /// Postcode area: the leading letters, e.g. `SW`.
    pub fn area(&self) -> &str {
        let end = self
            .outward
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(self.outward.len());
        &self.outward[..end]
    }

    /// Postcode district, e.g. `SW1A` (the same as the outward code).
    pub fn district(&self) -> &str {
        &self.outward
    }

    /// Postcode sector, e.g. `SW1A 1`.
    pub fn sector(&self) -> String {
        format!("{} {}", self.outward, &self.inward[..1])
    }
}

impl fmt::Display for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.outward, self.inward)
    }
}

fn letter_in(b: u8, allowed: &[u8]) -> bool {
    allowed.contains(&b)
}

// Royal Mail position rules: letters that never appear in a given position.
const FIRST: &[u8] = b"ABCDEFGHIJKLMNOPRSTUWYZ"; // not Q V X
const SECOND: &[u8] = b"ABCDEFGHKLMNOPQRSTUVWXY"; // not I J Z
const THIRD_A9A: &[u8] = b"ABCDEFGHJKPSTUW";
const FOURTH_AA9A: &[u8] = b"ABEHMNPRVWXY";
const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ"; // not C I K M O V

fn valid_outward(o: &[u8]) -> bool {
    let a = |i: usize| o[i].is_ascii_uppercase();
    let d = |i: usize| o[i].is_ascii_digit();
    match o.len() {
        // A9
        2 => letter_in(o[0], FIRST) && d(1),
        // A99, A9A, AA9
        3 => {
            letter_in(o[0], FIRST)
                && ((d(1) && d(2))
                    || (d(1) && letter_in(o[2], THIRD_A9A))
                    || (a(1) && letter_in(o[1], SECOND) && d(2)))
        }
        // AA99, AA9A
        4 => {
            letter_in(o[0], FIRST)
                && letter_in(o[1], SECOND)
                && d(2)
                && (d(3) || letter_in(o[3], FOURTH_AA9A))
        }
        _ => false,
    }
}

/// Parses a UK postcode, with or without the single space, in any case.
pub fn parse_postcode(input: &str) -> Result<Postcode, IdentifierError> {
    let trimmed = input.trim().to_ascii_uppercase();
    if trimmed.is_empty() {
        return Err(IdentifierError::Empty { kind: KIND });
    }
    let compact: String = match trimmed.split_once(' ') {
        Some((outward, inward)) if !inward.contains(' ') => format!("{outward}{inward}"),
        Some(_) => return Err(shape(KIND, input, "has more than one space")),
        None => trimmed.clone(),
    };
    if trimmed.contains(' ') && trimmed.find(' ') != Some(compact.len().saturating_sub(3)) {
        return Err(shape(
            KIND,
            input,
            "the space must come before the last three characters",
        ));
    }
    if !compact.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(shape(
            KIND,
            input,
            "may contain only letters, digits and one space",
        ));
    }
    if !(5..=7).contains(&compact.len()) {
        return Err(shape(KIND, input, "must have 5 to 7 letters and digits"));
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    // The one historic exception to the rules below, still in use.
    if compact == "GIR0AA" {
        return Ok(Postcode {
            outward: outward.to_string(),
            inward: inward.to_string(),
        });
    }
    let i = inward.as_bytes();
    if !(i[0].is_ascii_digit()
        && letter_in(i[1], INWARD_LETTERS)
        && letter_in(i[2], INWARD_LETTERS))
    {
        return Err(shape(
            KIND,
            input,
            "inward code must be a digit and two letters (not C I K M O V)",
        ));
    }
    if !valid_outward(outward.as_bytes()) {
        return Err(shape(KIND, input, "outward code is not a valid UK shape"));
    }
    Ok(Postcode {
        outward: outward.to_string(),
        inward: inward.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_shapes() {
        for (input, outward, inward, area) in [
            ("SW1A 1AA", "SW1A", "1AA", "SW"),
            ("sw1a1aa", "SW1A", "1AA", "SW"),
            ("M1 1AE", "M1", "1AE", "M"),
            ("B33 8TH", "B33", "8TH", "B"),
            ("CR2 6XH", "CR2", "6XH", "CR"),
            ("DN55 1PT", "DN55", "1PT", "DN"),
            ("W1A 0AX", "W1A", "0AX", "W"),
            ("EC1A 1BB", "EC1A", "1BB", "EC"),
            ("LS1 4AP", "LS1", "4AP", "LS"),
            ("GIR 0AA", "GIR", "0AA", "GIR"),
        ] {
            let p = parse_postcode(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(p.outward(), outward);
            assert_eq!(p.district(), outward);
            assert_eq!(p.inward(), inward);
            assert_eq!(p.area(), area);
        }
        assert_eq!(parse_postcode("ls1 4ap").unwrap().sector(), "LS1 4");
        assert_eq!(parse_postcode("LS14AP").unwrap().to_string(), "LS1 4AP");
    }

    #[test]
    fn invalid_shapes() {
        for bad in [
            "",
            "SW1A",
            "SW1A 1A",
            "QA1 1AA",
            "AZ1 1AA",
            "SW1A 1CA",
            "SW1A1AAA",
            "S W1A1AA",
            "SW1A  1AA",
            "12345",
            "SW1A-1AA",
            "LS1 4A1",
            "AA1C 1AA",
        ] {
            assert!(parse_postcode(bad).is_err(), "{bad}");
        }
    }
}
