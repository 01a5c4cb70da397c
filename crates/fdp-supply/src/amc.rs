//! Average monthly consumption (AMC), corrected for days out of stock.
//!
//! A ward that ran out for ten days of a thirty-day month used less than it
//! needed: counting only what it issued would make the shortage repeat.
//! OpenLMIS v3 corrects each period's consumption `C` for its stock-out
//! days `X` as `C × D / (D − X)`, where `D` is the period's days, leaves it
//! alone when `C` is nothing or every day was out, and averages the current
//! and earlier periods (its demonstration templates use three)
//! (`openlmis-requisition`, `LineItemFieldsCalculator`:
//! `calculateAdjustedConsumption`, `calculateAverageConsumption`). Open
//! mSupply makes the same correction on its programme forms.
//!
//! Here, as there, consumption is issues less returns; transfers between
//! locations, stock-take adjustments and wastage are not consumption, so a
//! ward that passes stock to its neighbour is not taken to need it. Two
//! differences from OpenLMIS, both stated where the figure is shown: `D` is
//! the calendar month's days rather than 30, and the average is not rounded
//! up to a whole unit.

use serde::Serialize;

use crate::ledger::Month;

/// The months OpenLMIS's templates average by default.
pub const DEFAULT_MONTHS: usize = 3;

/// A month's consumption had the location been in stock every day:
/// `consumed × days / (days − days out of stock)`, unchanged when nothing
/// was consumed or no day was in stock.
pub fn adjusted_consumption(consumed: f64, days: u32, days_out_of_stock: u32) -> f64 {
    let out = days_out_of_stock.min(days);
    if consumed <= 0.0 || out == days || out == 0 {
        return consumed;
    }
    consumed * f64::from(days) / f64::from(days - out)
}

/// An AMC and how it was reached, so a supplies lead can check it by hand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Amc {
    /// Units a month.
    pub value: f64,
    /// The months averaged, oldest first.
    pub months: Vec<AmcMonth>,
}

/// One month of an [`Amc`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmcMonth {
    pub month: chrono::NaiveDate,
    pub consumed: f64,
    pub days: u32,
    pub days_out_of_stock: u32,
    pub adjusted: f64,
}

/// The AMC over the last `n` complete months of `months` (a ledger's, oldest
/// first), or `None` with no complete month. A month only partly covered
/// (the current one) is left out: its consumption so far is not a month's.
pub fn amc(months: &[Month], n: usize) -> Option<Amc> {
    let complete: Vec<&Month> = months.iter().filter(|m| m.complete()).collect();
    let take = n.max(1).min(complete.len());
    if take == 0 {
        return None;
    }
    let used: Vec<AmcMonth> = complete[complete.len() - take..]
        .iter()
        .map(|m| AmcMonth {
            month: m.month,
            consumed: m.consumed,
            days: m.days,
            days_out_of_stock: m.days_out_of_stock,
            adjusted: adjusted_consumption(m.consumed, m.days, m.days_out_of_stock),
        })
        .collect();
    let value = used.iter().map(|m| m.adjusted).sum::<f64>() / used.len() as f64;
    Some(Amc {
        value,
        months: used,
    })
}

/// Each month's adjusted consumption, oldest first: the series demand is
/// forecast from.
pub fn adjusted_series(months: &[Month]) -> Vec<f64> {
    months
        .iter()
        .filter(|m| m.complete())
        .map(|m| adjusted_consumption(m.consumed, m.days, m.days_out_of_stock))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{ledger, Count, Movement, MovementKind};
    use chrono::NaiveDate;

    #[test]
    fn openlmis_test_vectors_before_its_rounding() {
        // OpenLMIS's own cases: 20 consumed, 5 of 90 days out, gives
        // 21.18 (22 once rounded up); every day out leaves it at 20.
        assert!((adjusted_consumption(20.0, 90, 5) - 21.176_470_588).abs() < 1e-6);
        assert_eq!(adjusted_consumption(20.0, 90, 90), 20.0);
        assert_eq!(adjusted_consumption(0.0, 30, 10), 0.0);
    }

    /// The worked example in `docs/supply-chain.md`: three months at one
    /// ward, with stock-outs, a transfer each way and a return, checked
    /// against arithmetic done by hand.
    #[test]
    fn amc_with_stock_out_days_and_transfers_matches_the_hand_calculation() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let mv = |date, kind, quantity| Movement {
            date,
            kind,
            quantity,
        };
        use MovementKind::*;
        let counts = [Count {
            date: d(3, 31),
            quantity: 75.0,
        }];
        let moves = [
            // April (30 days): 60 + 15 issued, 10 returned, 25 sent to the ward
            // upstairs. 75 − 60 + 10 − 25 leaves nothing from the 21st
            // until 60 arrive on the 28th (21st to 27th: 7 days out).
            mv(d(4, 5), Issue, 60.0),
            mv(d(4, 12), Return, 10.0),
            mv(d(4, 21), Transfer, -25.0),
            mv(d(4, 28), Receipt, 60.0),
            mv(d(4, 29), Issue, 15.0),
            // May (31 days): 45 issued, 30 taken in from another ward, no day out.
            mv(d(5, 3), Transfer, 30.0),
            mv(d(5, 10), Issue, 45.0),
            // June (30 days): 45 + 15 issued, so nothing from the 16th to the
            // 30th (15 days out); a stock-take adjustment is not consumption.
            mv(d(6, 2), Adjustment, 30.0),
            mv(d(6, 8), Issue, 45.0),
            mv(d(6, 16), Issue, 15.0),
        ];
        let l = ledger(&counts, &moves, d(4, 1), d(6, 30));
        let amc = amc(&l.months(), 3).unwrap();
        let by_hand = [
            // consumed, days, days out, adjusted
            (65.0, 30, 7, 65.0 * 30.0 / 23.0), // 84.78
            (45.0, 31, 0, 45.0),
            (60.0, 30, 15, 60.0 * 30.0 / 15.0), // 120
        ];
        for (m, (c, days, out, adj)) in amc.months.iter().zip(by_hand) {
            assert_eq!(
                (m.consumed, m.days, m.days_out_of_stock),
                (c, days, out),
                "{}",
                m.month
            );
            assert!(
                (m.adjusted - adj).abs() < 1e-9,
                "{}: {} against {adj}",
                m.month,
                m.adjusted
            );
        }
        let hand = (65.0 * 30.0 / 23.0 + 45.0 + 120.0) / 3.0; // 83.26
        assert!(
            (amc.value - hand).abs() < 1e-9,
            "{} against {hand}",
            amc.value
        );
        assert!((amc.value - 83.26).abs() < 0.01);
        // Counted without the correction, or with the transfers as use, it
        // would be neither.
        let naive = (65.0 + 45.0 + 60.0) / 3.0;
        assert!((amc.value - naive).abs() > 20.0);
    }

    #[test]
    fn a_part_month_is_not_averaged() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let moves = [
            Movement {
                date: d(1, 10),
                kind: MovementKind::Receipt,
                quantity: 100.0,
            },
            Movement {
                date: d(1, 11),
                kind: MovementKind::Issue,
                quantity: 31.0,
            },
            Movement {
                date: d(2, 3),
                kind: MovementKind::Issue,
                quantity: 50.0,
            },
        ];
        let l = ledger(&[], &moves, d(1, 1), d(2, 10));
        let amc = amc(&l.months(), 3).unwrap();
        assert_eq!(amc.months.len(), 1);
        // 1 to 9 January ended empty: 31 × 31 / 22.
        assert!((amc.value - 31.0 * 31.0 / 22.0).abs() < 1e-9);
        assert!(super::amc(&[], 3).is_none());
    }
}
