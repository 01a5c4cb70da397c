use std::fmt;

use super::{shape, IdentifierError};

const KIND: &str = "SNOMED CT";

/// What a SNOMED CT identifier identifies, from its partition identifier (the two digits
/// before the check digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SctPartition {
    Concept,
    Description,
    Relationship,
}

impl fmt::Display for SctPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SctPartition::Concept => "concept",
            SctPartition::Description => "description",
            SctPartition::Relationship => "relationship",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SctId {
    id: u64,
    partition: SctPartition,
    namespace: Option<u32>,
}

impl SctId {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn partition(&self) -> SctPartition {
        self.partition
    }

    /// The extension namespace for long-format ids (e.g. 1000000 for the UK clinical
    /// extension); `None` for ids from the international release.
    pub fn namespace(&self) -> Option<u32> {
        self.namespace
    }
}

impl fmt::Display for SctId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

/// Verhoeff's permutation table: row `i` applies the base permutation `i` times.
/// Building it from the one base row avoids transcribing 80 numbers by hand.
const VERHOEFF_P: [[u8; 10]; 8] = {
    const BASE: [u8; 10] = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4];
    let mut p = [[0u8; 10]; 8];
    let mut j = 0;
    while j < 10 {
        p[0][j] = j as u8;
        j += 1;
    }
    let mut i = 1;
    while i < 8 {
        let mut j = 0;
        while j < 10 {
            p[i][j] = p[i - 1][BASE[j] as usize];
            j += 1;
        }
        i += 1;
    }
    p
};

/// True when a string of digits (check digit last) satisfies the Verhoeff scheme.
pub fn verhoeff_check(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let c = digits.bytes().rev().enumerate().fold(0u8, |c, (i, b)| {
        VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[i % 8][usize::from(b - b'0')])]
    });
    c == 0
}

/// Parses any SNOMED CT identifier (concept, description or relationship).
pub fn parse_sctid(input: &str) -> Result<SctId, IdentifierError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(IdentifierError::Empty { kind: KIND });
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(shape(KIND, input, "must contain only digits"));
    }
    if !(6..=18).contains(&s.len()) {
        return Err(shape(KIND, input, "must have 6 to 18 digits"));
    }
    if s.starts_with('0') {
        return Err(shape(KIND, input, "must not start with 0"));
    }
    if !verhoeff_check(s) {
        return Err(IdentifierError::CheckDigit(s.to_string()));
    }
    let b = s.as_bytes();
    let n = b.len();
    let (format, kind) = (b[n - 3], b[n - 2]);
    let partition = match kind {
        b'0' => SctPartition::Concept,
        b'1' => SctPartition::Description,
        b'2' => SctPartition::Relationship,
        _ => return Err(shape(KIND, input, "has an unknown partition identifier")),
    };
    let namespace = match format {
        b'0' => None,
        b'1' => {
            // Long format: item id, then a 7-digit namespace, then partition and check.
            if n < 11 {
                return Err(shape(KIND, input, "is too short for a long-format id"));
            }
            Some(s[n - 10..n - 3].parse().expect("seven ASCII digits"))
        }
        _ => return Err(shape(KIND, input, "has an unknown partition identifier")),
    };
    Ok(SctId {
        id: s.parse().expect("at most 18 ASCII digits fit in u64"),
        partition,
        namespace,
    })
}

/// Parses a SNOMED CT concept id, the kind of SNOMED code the CDM stores.
pub fn parse_snomed_concept_id(input: &str) -> Result<SctId, IdentifierError> {
    let id = parse_sctid(input)?;
    if id.partition != SctPartition::Concept {
        return Err(IdentifierError::NotAConcept {
            value: input.trim().to_string(),
            partition: id.partition,
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn international_concepts() {
        // Myocardial infarction, diabetes mellitus, hypertensive disorder, asthma,
        // clinical finding, SNOMED CT root, anaemia, body weight, pain, COVID-19.
        for id in [
            "22298006",
            "73211009",
            "38341003",
            "195967001",
            "404684003",
            "138875005",
            "271737000",
            "27113001",
            "22253000",
            "840539006",
        ] {
            let sct = parse_snomed_concept_id(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(sct.partition(), SctPartition::Concept);
            assert_eq!(sct.namespace(), None);
            assert_eq!(sct.to_string(), id);
        }
    }

    #[test]
    fn check_digit_and_partition() {
        assert_eq!(
            parse_sctid("22298007"),
            Err(IdentifierError::CheckDigit("22298007".into()))
        );
        assert!(verhoeff_check("2363"));
        assert!(!verhoeff_check("2364"));
        // Build a description id and a long-format UK extension concept with valid checks.
        let with_check = |body: &str| {
            (0..10)
                .map(|d| format!("{body}{d}"))
                .find(|s| verhoeff_check(s))
                .unwrap()
        };
        let desc = with_check("1234501");
        assert_eq!(
            parse_sctid(&desc).unwrap().partition(),
            SctPartition::Description
        );
        assert!(matches!(
            parse_snomed_concept_id(&desc),
            Err(IdentifierError::NotAConcept { .. })
        ));
        let long = with_check("999100000010");
        let sct = parse_snomed_concept_id(&long).unwrap();
        assert_eq!(sct.namespace(), Some(1_000_000));
    }

    #[test]
    fn shapes() {
        for bad in [
            "",
            "12345",
            "1234567890123456789",
            "0222980",
            "22298OO6",
            "-22298006",
        ] {
            assert!(parse_sctid(bad).is_err(), "{bad}");
        }
    }
}
