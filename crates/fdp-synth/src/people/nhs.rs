//! NHS numbers: ten digits, the last a modulus 11 check digit.

use rand::Rng;
use serde::{Deserialize, Serialize};

use fdp_model::identifiers::nhs_number_check_digit_of as check_digit;

/// True when all ten digits are the same: such numbers pass modulus 11 for
/// some digits but are never issued, and systems reject them.
fn all_same(digits: &[u8; 9], check: u8) -> bool {
    digits.iter().all(|d| *d == check)
}

fn render(digits: &[u8; 9], check: u8) -> String {
    let mut s = String::with_capacity(10);
    for d in digits {
        s.push(char::from(b'0' + d));
    }
    s.push(char::from(b'0' + check));
    s
}

fn random_digits<R: Rng + ?Sized>(rng: &mut R) -> [u8; 9] {
    let mut d = [0u8; 9];
    for x in &mut d {
        *x = rng.random_range(0..10);
    }
    d
}

/// A random NHS number valid by modulus 11. Draws are independent, so two
/// calls may (rarely) return the same number; use [`NhsNumberAllocator`] when
/// numbers must be unique.
pub fn random_nhs_number<R: Rng + ?Sized>(rng: &mut R) -> String {
    loop {
        let d = random_digits(rng);
        if let Some(c) = check_digit(&d) {
            if !all_same(&d, c) {
                return render(&d, c);
            }
        }
    }
}

/// A ten-digit number shaped like an NHS number whose check digit is wrong,
/// for deliberately malformed messages.
pub fn invalid_nhs_number<R: Rng + ?Sized>(rng: &mut R) -> String {
    let d = random_digits(rng);
    let bad = match check_digit(&d) {
        Some(c) => (c + rng.random_range(1..10)) % 10,
        // Remainder 10: no check digit makes this number valid.
        None => rng.random_range(0..10),
    };
    render(&d, bad)
}

/// Which NHS numbers an allocator hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NhsNumberRange {
    /// Numbers shaped like those issued in England and Wales (leading 4, 6
    /// or 7): about 270 million distinct valid numbers.
    #[default]
    Issued,
    /// The range reserved for test data (leading 999): never issued to a
    /// real person, but only about 900,000 distinct valid numbers.
    Reserved999,
}

impl NhsNumberRange {
    fn space(self) -> u64 {
        match self {
            NhsNumberRange::Issued => 300_000_000,
            NhsNumberRange::Reserved999 => 1_000_000,
        }
    }

    fn digits(self, v: u64) -> [u8; 9] {
        let mut d = [0u8; 9];
        let (prefix_len, mut rest) = match self {
            NhsNumberRange::Issued => {
                d[0] = [4, 6, 7][(v / 100_000_000) as usize];
                (1, v % 100_000_000)
            }
            NhsNumberRange::Reserved999 => {
                d[..3].copy_from_slice(&[9, 9, 9]);
                (3, v)
            }
        };
        for x in d[prefix_len..].iter_mut().rev() {
            *x = (rest % 10) as u8;
            rest /= 10;
        }
        d
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Hands out valid NHS numbers that do not repeat until the range is
/// exhausted, while still looking random.
///
/// Numbers are an affine permutation of the range (`a * i + b mod n` with
/// `a` coprime to `n`), which visits every candidate exactly once without
/// remembering which were used. After a full cycle the sequence repeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NhsNumberAllocator {
    range: NhsNumberRange,
    counter: u64,
    multiplier: u64,
    offset: u64,
}

impl NhsNumberAllocator {
    /// A new allocator whose permutation is drawn from `rng`.
    pub fn new<R: Rng + ?Sized>(rng: &mut R, range: NhsNumberRange) -> Self {
        let n = range.space();
        let multiplier = loop {
            let m = rng.random_range(n / 3..n);
            if gcd(m, n) == 1 {
                break m;
            }
        };
        NhsNumberAllocator {
            range,
            counter: 0,
            multiplier,
            offset: rng.random_range(0..n),
        }
    }

    /// The next unused valid NHS number.
    pub fn allocate(&mut self) -> String {
        let n = self.range.space();
        loop {
            let v = (self.multiplier * (self.counter % n) + self.offset) % n;
            self.counter += 1;
            let d = self.range.digits(v);
            if let Some(c) = check_digit(&d) {
                if !all_same(&d, c) {
                    return render(&d, c);
                }
            }
        }
    }
}

/// Modulus 11 validity, for this crate's own tests and assertions.
#[cfg(test)]
pub(crate) fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut d = [0u8; 9];
    for (i, x) in d.iter_mut().enumerate() {
        *x = b[i] - b'0';
    }
    check_digit(&d) == Some(b[9] - b'0') && !all_same(&d, b[9] - b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashSet;

    #[test]
    fn known_numbers() {
        // Published examples of valid NHS numbers.
        assert!(is_valid("9434765919"));
        assert!(is_valid("4010232137"));
        assert!(!is_valid("9434765918"));
        assert!(!is_valid("1111111111"));
        assert!(!is_valid("943476591"));
    }

    #[test]
    fn random_and_invalid() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..10_000 {
            assert!(is_valid(&random_nhs_number(&mut rng)));
            let bad = invalid_nhs_number(&mut rng);
            assert_eq!(bad.len(), 10);
            assert!(!is_valid(&bad), "{bad}");
        }
    }

    #[test]
    fn allocator_is_unique_and_valid() {
        for range in [NhsNumberRange::Issued, NhsNumberRange::Reserved999] {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut a = NhsNumberAllocator::new(&mut rng, range);
            let mut seen = HashSet::new();
            for _ in 0..50_000 {
                let n = a.allocate();
                assert!(is_valid(&n), "{n}");
                if range == NhsNumberRange::Reserved999 {
                    assert!(n.starts_with("999"));
                } else {
                    assert!(matches!(n.as_bytes()[0], b'4' | b'6' | b'7'));
                }
                assert!(seen.insert(n));
            }
        }
    }
}
