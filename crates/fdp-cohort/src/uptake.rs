//! Uptake of an outcome in groups of a cohort, with confidence intervals,
//! and the groups falling behind their area.
//!
//! Intervals are Wilson score intervals, the method the Office for Health
//! Improvement and Disparities prefers for proportions (its technical
//! guide on confidence intervals; `PHEindicatormethods::phe_proportion`),
//! at 95% for display and 99.8% for flagging. A group is flagged when the
//! upper end of its 99.8% interval is below the area's uptake: under no
//! real difference that happens to about one group in a thousand, which is
//! the false-positive rate the flag states. Flagged groups are ranked by
//! the people who would need the outcome (vaccinating, a foot check) to
//! bring the group up to the area's rate.

use serde::Serialize;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;
/// z for a two-sided 99.8% interval.
pub const Z998: f64 = 3.090_232_306_167_813;

/// The Wilson score interval of `x` of `n` at `z`; `None` for `n` = 0.
pub fn wilson(x: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 || x > n {
        return None;
    }
    let (x, n) = (x as f64, n as f64);
    let z2 = z * z;
    let spread = z * (z2 + 4.0 * x * (1.0 - x / n)).sqrt();
    let low = (2.0 * x + z2 - spread) / (2.0 * (n + z2));
    let high = (2.0 * x + z2 + spread) / (2.0 * (n + z2));
    Some((low.max(0.0), high.min(1.0)))
}

/// One group's uptake.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupUptake {
    /// The cut (`imd_decile`, `ethnic_group`, `practice`...) or a pair of
    /// them (`imd_decile × practice`).
    pub cut: String,
    /// The group's value in each of the cut's dimensions.
    pub group: Vec<String>,
    /// In the cohort (the denominator).
    pub people: u64,
    /// With the outcome.
    pub with_outcome: u64,
    pub uptake: f64,
    pub low95: f64,
    pub high95: f64,
    pub low998: f64,
    pub high998: f64,
    /// The area's uptake less the group's, in percentage points.
    pub gap_points: f64,
    /// People who would need the outcome to bring the group to the area's
    /// rate: `ceil(area rate × people) − with outcome`, at least 0.
    pub to_close_gap: u64,
    /// The upper end of the 99.8% interval is below the area's uptake.
    pub flagged: bool,
}

/// Uptake of each group against the area's (`area_with` of `area_people`).
/// Groups with no people are left out; the rest come back flagged ones
/// first, most people to close the gap first, then by cut and group.
///
/// `slack` is how far each count may be from the truth: 0 for exact
/// counts, 2 for counts rounded to the nearest 5, and a member's slack
/// for each member in a sum of members' rounded counts. A group is then
/// flagged only if it would be for every pair of true counts the figures
/// could stand for: rounding a small group's people up and its vaccinated
/// down would otherwise flag it for the rounding alone.
pub fn assess(
    groups: impl IntoIterator<Item = (String, Vec<String>, u64, u64)>,
    area_with: u64,
    area_people: u64,
    slack: u64,
) -> Vec<GroupUptake> {
    let area = if area_people == 0 {
        0.0
    } else {
        area_with as f64 / area_people as f64
    };
    let mut out: Vec<GroupUptake> = groups
        .into_iter()
        .filter_map(|(cut, group, people, with_outcome)| {
            let (low95, high95) = wilson(with_outcome, people, Z95)?;
            let (low998, high998) = wilson(with_outcome, people, Z998)?;
            // The most uptake the true counts could show.
            let best_with = with_outcome + slack;
            let best_people = people.saturating_sub(slack).max(best_with);
            let (_, best_high998) = wilson(best_with, best_people, Z998)?;
            let uptake = with_outcome as f64 / people as f64;
            let needed = (area * people as f64 - 1e-9).ceil().max(0.0) as u64;
            Some(GroupUptake {
                cut,
                group,
                people,
                with_outcome,
                uptake,
                low95,
                high95,
                low998,
                high998,
                gap_points: (area - uptake) * 100.0,
                to_close_gap: needed.saturating_sub(with_outcome),
                flagged: best_high998 < area,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.flagged
            .cmp(&a.flagged)
            .then(b.to_close_gap.cmp(&a.to_close_gap))
            .then(a.cut.cmp(&b.cut))
            .then(a.group.cmp(&b.group))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // PHEindicatormethods::phe_proportion(65, 100): 55.3% to 73.6% at 95%.
        let (l, h) = wilson(65, 100, Z95).unwrap();
        assert!(
            (l - 0.5525).abs() < 5e-4 && (h - 0.7364).abs() < 5e-4,
            "{l} {h}"
        );
        // Zero and all stay inside 0..1 and are not degenerate.
        let (l, h) = wilson(0, 20, Z95).unwrap();
        assert_eq!(l, 0.0);
        assert!(h > 0.1 && h < 0.2, "{h}");
        let (l, h) = wilson(20, 20, Z95).unwrap();
        assert_eq!(h, 1.0);
        assert!(l > 0.8, "{l}");
        assert_eq!(wilson(1, 0, Z95), None);
        assert_eq!(wilson(3, 2, Z95), None);
        // Wider at 99.8%.
        let (l998, h998) = wilson(65, 100, Z998).unwrap();
        assert!(l998 < 0.5525 && h998 > 0.7364);
    }

    #[test]
    fn a_group_is_flagged_only_when_clearly_below_the_area() {
        let groups = vec![
            ("practice".to_string(), vec!["P1".to_string()], 1000, 500),
            ("practice".to_string(), vec!["P2".to_string()], 1000, 690),
            ("practice".to_string(), vec!["P3".to_string()], 20, 10),
        ];
        let out = assess(groups, 7000, 10000, 0);
        assert_eq!(out[0].group, vec!["P1"]);
        assert!(out[0].flagged);
        assert_eq!(out[0].to_close_gap, 200);
        assert!((out[0].gap_points - 20.0).abs() < 1e-9);
        // 69% of 1,000 against 70%: within chance.
        assert!(!out.iter().find(|g| g.group == ["P2"]).unwrap().flagged);
        // Half of 20 is low, but 20 people cannot show it at 99.8%.
        let p3 = out.iter().find(|g| g.group == ["P3"]).unwrap();
        assert!(!p3.flagged && p3.to_close_gap == 4);
    }

    #[test]
    fn rounded_counts_flag_only_what_every_true_count_would() {
        // 23 children of whom 17 had MMR1, rounded to 25 and 15: at 90%
        // across the area the rounded figures alone look low at 99.8%...
        let rounded = vec![("practice".to_string(), vec!["P1".to_string()], 25, 15)];
        assert!(assess(rounded.clone(), 900, 1000, 0)[0].flagged);
        // ...but 17 of 23 could stand behind them, which is not.
        assert!(!assess(rounded, 900, 1000, 2)[0].flagged);
        // A large group clearly behind is flagged whatever the rounding.
        let clear = vec![("practice".to_string(), vec!["P2".to_string()], 500, 350)];
        assert!(assess(clear, 900, 1000, 2)[0].flagged);
    }
}
