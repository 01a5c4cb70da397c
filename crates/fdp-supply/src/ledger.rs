//! Stock on hand at one location, day by day, from its counts and movements.
//!
//! A count says what was on the shelf at the start of its day, before that
//! day's movements, as ward top-up counts are taken before the top-up (and
//! so a transfer accepted after the morning's count still moves stock that
//! day). Between counts the balance is the last count plus every movement
//! since. When a count disagrees with that balance the difference
//! is kept as the day's discrepancy (shrinkage, unrecorded use, a miscount)
//! and the count is believed from then on: hiding it would make every later
//! figure wrong by the same amount without saying so.
//!
//! Before the first count the balance is worked back from it; with no count
//! at all it starts from nothing, so that only the movements say what is
//! held.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

/// What a movement did to a location's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Delivered into the location (from a supplier or from stores).
    Receipt,
    /// Issued from the location for use: consumption.
    Issue,
    /// Issued stock brought back unused: consumption undone.
    Return,
    /// Moved between two locations: negative out of this one, positive
    /// into it. Never consumption.
    Transfer,
    /// A stock-take correction, either sign. Never consumption.
    Adjustment,
    /// Written off (expired, damaged). Never consumption.
    Wastage,
}

impl MovementKind {
    /// The kind from the canonical `movement_type`, as the shipped
    /// mappings write it.
    pub fn parse(s: &str) -> Option<MovementKind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "receipt" => MovementKind::Receipt,
            "issue" => MovementKind::Issue,
            "return" => MovementKind::Return,
            "transfer" => MovementKind::Transfer,
            "adjustment" => MovementKind::Adjustment,
            "wastage" | "write-off" | "write_off" => MovementKind::Wastage,
            _ => return None,
        })
    }
}

/// One movement at a location. Receipts, issues, returns and wastage carry
/// a positive quantity and their kind says which way it went; transfers and
/// adjustments carry their sign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Movement {
    pub date: NaiveDate,
    pub kind: MovementKind,
    pub quantity: f64,
}

impl Movement {
    /// The change to stock on hand.
    pub fn change(&self) -> f64 {
        let q = self.quantity;
        match self.kind {
            MovementKind::Receipt | MovementKind::Return => q.abs(),
            MovementKind::Issue | MovementKind::Wastage => -q.abs(),
            MovementKind::Transfer | MovementKind::Adjustment => q,
        }
    }

    /// What it adds to consumption: issues less returns.
    pub fn consumed(&self) -> f64 {
        match self.kind {
            MovementKind::Issue => self.quantity.abs(),
            MovementKind::Return => -self.quantity.abs(),
            _ => 0.0,
        }
    }
}

/// A stock count: what was on hand at the start of `date`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Count {
    pub date: NaiveDate,
    pub quantity: f64,
}

/// One day at a location.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    pub opening: f64,
    pub received: f64,
    /// Issues less returns.
    pub consumed: f64,
    pub transferred_in: f64,
    pub transferred_out: f64,
    pub adjusted: f64,
    pub wasted: f64,
    /// The balance at the end of the day.
    pub closing: f64,
    /// The count taken that day, if any.
    pub counted: Option<f64>,
    /// The count less the balance the movements implied.
    pub discrepancy: Option<f64>,
}

impl Day {
    /// Out of stock at the end of the day.
    pub fn out_of_stock(&self) -> bool {
        self.closing <= 0.0
    }
}

/// A location's days, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ledger {
    pub days: Vec<Day>,
}

/// The days from `from` to `to` inclusive. Movements and counts outside
/// the days are ignored, except that a count after `to` still anchors the
/// balance when there is no count before.
pub fn ledger(counts: &[Count], movements: &[Movement], from: NaiveDate, to: NaiveDate) -> Ledger {
    if to < from {
        return Ledger::default();
    }
    let len = (to - from).num_days() as usize + 1;
    let index = |d: NaiveDate| -> Option<usize> {
        let i = (d - from).num_days();
        (0..len as i64).contains(&i).then_some(i as usize)
    };
    let mut days: Vec<Day> = (0..len)
        .map(|i| Day {
            date: from + chrono::Days::new(i as u64),
            opening: 0.0,
            received: 0.0,
            consumed: 0.0,
            transferred_in: 0.0,
            transferred_out: 0.0,
            adjusted: 0.0,
            wasted: 0.0,
            closing: 0.0,
            counted: None,
            discrepancy: None,
        })
        .collect();
    let mut change = vec![0.0; len];
    for m in movements {
        let Some(i) = index(m.date) else { continue };
        let day = &mut days[i];
        change[i] += m.change();
        match m.kind {
            MovementKind::Receipt => day.received += m.quantity.abs(),
            MovementKind::Issue | MovementKind::Return => day.consumed += m.consumed(),
            MovementKind::Transfer if m.quantity >= 0.0 => day.transferred_in += m.quantity,
            MovementKind::Transfer => day.transferred_out -= m.quantity,
            MovementKind::Adjustment => day.adjusted += m.quantity,
            MovementKind::Wastage => day.wasted += m.quantity.abs(),
        }
    }
    // Several counts on one day: the last given is the one believed.
    let mut counted: Vec<Option<f64>> = vec![None; len];
    for c in counts {
        if let Some(i) = index(c.date) {
            counted[i] = Some(c.quantity);
        }
    }
    let mut balance = opening_balance(counts, movements, from, to, &change, &counted);
    for i in 0..len {
        let day = &mut days[i];
        if let Some(q) = counted[i] {
            day.counted = Some(q);
            day.discrepancy = Some(q - balance);
            balance = q;
        }
        day.opening = balance;
        balance += change[i];
        day.closing = balance;
    }
    Ledger { days }
}

/// The balance before `from`: worked back from the first count in the days,
/// else forward from the last count before them, else from nothing.
fn opening_balance(
    counts: &[Count],
    movements: &[Movement],
    from: NaiveDate,
    to: NaiveDate,
    change: &[f64],
    counted: &[Option<f64>],
) -> f64 {
    if let Some(last_before) = counts
        .iter()
        .filter(|c| c.date < from)
        .max_by_key(|c| c.date)
    {
        let since: f64 = movements
            .iter()
            .filter(|m| m.date >= last_before.date && m.date < from)
            .map(Movement::change)
            .sum();
        return last_before.quantity + since;
    }
    if let Some(first) = counted.iter().position(Option::is_some) {
        let moved: f64 = change[..first].iter().sum();
        return (counted[first].unwrap_or(0.0) - moved).max(0.0);
    }
    if let Some(after) = counts.iter().filter(|c| c.date > to).min_by_key(|c| c.date) {
        let moved: f64 = change.iter().sum::<f64>()
            + movements
                .iter()
                .filter(|m| m.date > to && m.date < after.date)
                .map(Movement::change)
                .sum::<f64>();
        return (after.quantity - moved).max(0.0);
    }
    0.0
}

/// One calendar month of a ledger (or the part of it the ledger covers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Month {
    /// The month's first day.
    pub month: NaiveDate,
    /// Days of the month the ledger covers.
    pub days: u32,
    /// Days in the calendar month.
    pub days_in_month: u32,
    pub consumed: f64,
    /// Days that ended with nothing on hand.
    pub days_out_of_stock: u32,
    pub received: f64,
    pub transferred_in: f64,
    pub transferred_out: f64,
    pub wasted: f64,
    pub closing: f64,
}

impl Month {
    /// Whether the ledger covers every day of the month.
    pub fn complete(&self) -> bool {
        self.days == self.days_in_month
    }
}

impl Ledger {
    /// Stock on hand at the end of the last day.
    pub fn on_hand(&self) -> f64 {
        self.days.last().map_or(0.0, |d| d.closing)
    }

    /// The days a count disagreed with the movements.
    pub fn discrepancies(&self) -> impl Iterator<Item = &Day> {
        self.days
            .iter()
            .filter(|d| d.discrepancy.is_some_and(|x| x.abs() > 1e-9))
    }

    /// The ledger by calendar month, oldest first.
    pub fn months(&self) -> Vec<Month> {
        let mut out: Vec<Month> = Vec::new();
        for d in &self.days {
            let first = d.date.with_day(1).expect("every month has a first day");
            if out.last().is_none_or(|m| m.month != first) {
                out.push(Month {
                    month: first,
                    days: 0,
                    days_in_month: days_in_month(first),
                    consumed: 0.0,
                    days_out_of_stock: 0,
                    received: 0.0,
                    transferred_in: 0.0,
                    transferred_out: 0.0,
                    wasted: 0.0,
                    closing: 0.0,
                });
            }
            let m = out.last_mut().expect("pushed above");
            m.days += 1;
            m.consumed += d.consumed;
            m.days_out_of_stock += u32::from(d.out_of_stock());
            m.received += d.received;
            m.transferred_in += d.transferred_in;
            m.transferred_out += d.transferred_out;
            m.wasted += d.wasted;
            m.closing = d.closing;
        }
        out
    }
}

/// Days in the month that `first` begins.
pub fn days_in_month(first: NaiveDate) -> u32 {
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (next - first).num_days().max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }

    fn mv(date: NaiveDate, kind: MovementKind, quantity: f64) -> Movement {
        Movement {
            date,
            kind,
            quantity,
        }
    }

    #[test]
    fn balance_follows_each_kind_of_movement() {
        let counts = [Count {
            date: d(1, 1),
            quantity: 50.0,
        }];
        let moves = [
            mv(d(1, 2), MovementKind::Issue, 10.0),
            mv(d(1, 2), MovementKind::Return, 2.0),
            mv(d(1, 3), MovementKind::Transfer, -5.0),
            mv(d(1, 3), MovementKind::Transfer, 7.0),
            mv(d(1, 4), MovementKind::Adjustment, -1.0),
            mv(d(1, 4), MovementKind::Wastage, 3.0),
            mv(d(1, 5), MovementKind::Receipt, 100.0),
        ];
        let l = ledger(&counts, &moves, d(1, 1), d(1, 5));
        let closing: Vec<f64> = l.days.iter().map(|d| d.closing).collect();
        assert_eq!(closing, [50.0, 42.0, 44.0, 40.0, 140.0]);
        assert_eq!(l.days[1].consumed, 8.0);
        assert_eq!(l.days[2].transferred_in, 7.0);
        assert_eq!(l.days[2].transferred_out, 5.0);
        assert_eq!(l.discrepancies().count(), 0);
    }

    #[test]
    fn a_count_that_disagrees_is_shown_and_then_believed() {
        let counts = [
            Count {
                date: d(1, 1),
                quantity: 20.0,
            },
            Count {
                date: d(1, 3),
                quantity: 12.0,
            },
        ];
        let moves = [mv(d(1, 2), MovementKind::Issue, 5.0)];
        let l = ledger(&counts, &moves, d(1, 1), d(1, 4));
        let wrong: Vec<_> = l.discrepancies().collect();
        assert_eq!(wrong.len(), 1);
        assert_eq!(wrong[0].date, d(1, 3));
        assert_eq!(wrong[0].discrepancy, Some(-3.0));
        assert_eq!(l.on_hand(), 12.0);
    }

    #[test]
    fn the_balance_before_the_first_count_is_worked_back() {
        let counts = [Count {
            date: d(1, 3),
            quantity: 10.0,
        }];
        let moves = [
            mv(d(1, 1), MovementKind::Issue, 4.0),
            mv(d(1, 2), MovementKind::Receipt, 6.0),
        ];
        let l = ledger(&counts, &moves, d(1, 1), d(1, 3));
        assert_eq!(l.days[0].opening, 8.0);
        assert_eq!(l.days[2].discrepancy, Some(0.0));
        // A count before the days carries forward with the movements since.
        let earlier = [Count {
            date: d(1, 1),
            quantity: 30.0,
        }];
        let l = ledger(&earlier, &moves, d(1, 2), d(1, 3));
        assert_eq!(l.days[0].opening, 26.0);
        assert_eq!(l.on_hand(), 32.0);
    }

    #[test]
    fn a_movement_on_a_count_day_follows_the_count() {
        let counts = [Count {
            date: d(1, 2),
            quantity: 10.0,
        }];
        let moves = [mv(d(1, 2), MovementKind::Transfer, 5.0)];
        let l = ledger(&counts, &moves, d(1, 1), d(1, 2));
        assert_eq!(l.days[1].opening, 10.0);
        assert_eq!(l.on_hand(), 15.0);
        assert_eq!(l.discrepancies().count(), 0);
    }

    #[test]
    fn months_count_the_days_that_ended_empty() {
        let counts = [Count {
            date: d(1, 31),
            quantity: 0.0,
        }];
        let moves = [
            mv(d(2, 10), MovementKind::Receipt, 30.0),
            mv(d(2, 20), MovementKind::Issue, 30.0),
        ];
        let l = ledger(&counts, &moves, d(1, 31), d(3, 1));
        let months = l.months();
        assert_eq!(months.len(), 3);
        assert!(!months[0].complete());
        // 1 to 9 February and 20 to 28 February ended with nothing.
        assert_eq!(months[1].days_out_of_stock, 9 + 9);
        assert_eq!(months[1].days_in_month, 28);
        assert_eq!(months[1].consumed, 30.0);
    }

    #[test]
    fn movement_kinds_parse_from_the_canonical_words() {
        assert_eq!(MovementKind::parse(" Issue "), Some(MovementKind::Issue));
        assert_eq!(
            MovementKind::parse("write-off"),
            Some(MovementKind::Wastage)
        );
        assert_eq!(MovementKind::parse("stolen"), None);
    }
}
