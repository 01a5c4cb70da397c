//! Random number plumbing shared by the generators.
//!
//! ChaCha8 is used everywhere because its output for a given seed is fixed by
//! its specification, so a seed reproduces the same trust and message stream
//! on every platform (as long as the locked `rand` version, whose range
//! sampling also shapes the output, is unchanged).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A tiny deterministic generator (xorshift64) for bulk data where speed
/// matters more than quality: the FHIR export and the benchmarks' tables.
/// The same seed gives the same sequence on every run; a zero seed gives
/// only zeros.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed)
    }

    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// The generator type used throughout the crate.
pub(crate) type SynthRng = ChaCha8Rng;

/// Independent streams derived from one user seed, so adding draws to one
/// generator (e.g. the trust layout) never shifts another (the PAS).
pub(crate) mod stream {
    pub const TRUST: u64 = 1;
    pub const PAS: u64 = 2;
    pub const ELECTIVE: u64 = 3;
    pub const IHTC: u64 = 4;
    /// Listed patients' sex, age and pre-operative assessments.
    pub const ELECTIVE_READINESS: u64 = 5;
    /// The flat extracts take this stream and the fifteen after it, one per
    /// file, so a change to one extract leaves the others byte-identical.
    pub const EXTRACTS: u64 = 16;
    /// The supplies year's set-up: which items each ward keeps and how
    /// much it uses.
    pub const SUPPLIES: u64 = 40;
    /// The supplies year's series each take this stream plus their index.
    pub const SUPPLIES_SERIES: u64 = 1 << 32;
}

/// A generator for `seed` on an independent `stream`.
pub(crate) fn rng_for(seed: u64, stream: u64) -> SynthRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A uniformly chosen element. Panics on an empty slice, which would be a
/// bug in the static tables.
pub(crate) fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Index chosen with probability proportional to `weights`; `None` when all
/// weights are zero (or the slice is empty).
pub(crate) fn pick_index_weighted<R: Rng + ?Sized>(rng: &mut R, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = None;
    for (i, w) in weights.iter().enumerate() {
        if *w <= 0.0 {
            continue;
        }
        if x < *w {
            return Some(i);
        }
        x -= *w;
        last = Some(i);
    }
    // Rounding can leave x a hair above the last bucket.
    last
}

/// An element chosen with probability proportional to `weight(item)`.
/// Panics if no element has positive weight, which would be a table bug.
pub(crate) fn pick_weighted_by<'a, T, R: Rng + ?Sized>(
    rng: &mut R,
    items: &'a [T],
    weight: impl Fn(&T) -> f64,
) -> &'a T {
    let total: f64 = items.iter().map(&weight).sum();
    let mut x = rng.random::<f64>() * total;
    for item in items {
        let w = weight(item);
        if x < w {
            return item;
        }
        x -= w;
    }
    items
        .iter()
        .rev()
        .find(|i| weight(i) > 0.0)
        .expect("at least one positive weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pick_respects_zero_weights() {
        let mut rng = rng_for(3, 0);
        for _ in 0..1000 {
            let i = pick_index_weighted(&mut rng, &[0.0, 1.0, 0.0, 2.0]).unwrap();
            assert!(i == 1 || i == 3);
        }
        assert_eq!(pick_index_weighted(&mut rng, &[0.0, 0.0]), None);
    }

    #[test]
    fn streams_differ() {
        let a: u64 = rng_for(1, stream::TRUST).random();
        let b: u64 = rng_for(1, stream::PAS).random();
        assert_ne!(a, b);
    }
}
