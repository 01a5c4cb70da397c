//! Transfers before orders.
//!
//! When one ward is short of an item another holds too much of, or holds
//! stock that will expire before it can be used, the cheapest supply is the
//! ward down the corridor. For one item across the locations of one
//! organisation, [`plan`] meets each short location's need first from
//! stock that would otherwise expire unused (where the receiver can use it
//! before it expires), then from stock held above a location's maximum,
//! and orders only what is left.
//!
//! A location is short when it holds less than its reorder point; it is
//! brought up to its maximum. A donor never gives below its maximum except
//! the stock it could not use before expiry anyway. The most urgent need
//! (fewest days of cover) is met first. Quantities are whole units: needs
//! round up, what a donor can spare rounds down.

use chrono::NaiveDate;
use serde::Serialize;

use crate::cover::Cover;

/// Stock of one batch, where the source says when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Batch {
    pub expires: NaiveDate,
    pub quantity: f64,
}

/// What one location holds of the item, with its cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub location: String,
    pub cover: Cover,
    /// Batches with expiry dates; stock without one is taken not to expire.
    pub batches: Vec<Batch>,
}

/// Why stock can move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// It would expire where it is before being used.
    NearExpiry,
    /// The location holds more than its maximum.
    AboveMaximum,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NearExpiry => "near expiry",
            Reason::AboveMaximum => "above maximum",
        }
    }
}

/// A suggested move of stock between two locations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transfer {
    pub from: String,
    pub to: String,
    pub quantity: f64,
    pub reason: Reason,
    /// The batch's expiry, for stock moving because of it.
    pub expires: Option<NaiveDate>,
}

/// A suggested order for what transfers could not cover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    pub to: String,
    pub quantity: f64,
}

/// Stock a location can still spare once the organisation's own short
/// locations are met: what another organisation could be offered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spare {
    pub from: String,
    pub quantity: f64,
    pub reason: Reason,
    pub expires: Option<NaiveDate>,
}

/// Transfers first, then orders; and what is left to spare.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub transfers: Vec<Transfer>,
    pub orders: Vec<Order>,
    /// Near-expiry stock first, soonest first; then stock above maximum,
    /// the largest first.
    pub spare: Vec<Spare>,
}

/// Stock at `expires` that its holder will not use before then, taking
/// batches first-expiry-first-out at the holder's daily use.
pub fn unusable_before_expiry(holding: &Holding, today: NaiveDate) -> Vec<Batch> {
    let mut batches = holding.batches.clone();
    batches.sort_by_key(|b| b.expires);
    let mut used = 0.0;
    let mut out = Vec::new();
    for b in batches {
        let days = (b.expires - today).num_days().max(0) as f64;
        let can_use = (holding.cover.daily_use * days - used).max(0.0);
        let usable = b.quantity.min(can_use);
        used += usable;
        let left = (b.quantity - usable).floor();
        if left >= 1.0 {
            out.push(Batch {
                expires: b.expires,
                quantity: left,
            });
        }
    }
    out
}

/// The plan for one item across `holdings` (one organisation's locations),
/// looked at on `today`. What no short location took is left as
/// [`Plan::spare`]: stock above a maximum only where every short location
/// was met, near-expiry stock also where they could not use it in time.
pub fn plan(holdings: &[Holding], today: NaiveDate) -> Plan {
    struct Offer<'a> {
        from: &'a str,
        quantity: f64,
        reason: Reason,
        expires: Option<NaiveDate>,
    }
    let short = |h: &Holding| h.cover.on_hand < h.cover.reorder_point;
    let mut offers: Vec<Offer> = Vec::new();
    for h in holdings.iter().filter(|h| !short(h)) {
        let expiring = unusable_before_expiry(h, today);
        let expiring_total: f64 = expiring.iter().map(|b| b.quantity).sum();
        for b in expiring {
            offers.push(Offer {
                from: &h.location,
                quantity: b.quantity,
                reason: Reason::NearExpiry,
                expires: Some(b.expires),
            });
        }
        // Above the maximum, beyond what is already offered as expiring.
        let spare = (h.cover.on_hand - h.cover.maximum - expiring_total).floor();
        if spare >= 1.0 {
            offers.push(Offer {
                from: &h.location,
                quantity: spare,
                reason: Reason::AboveMaximum,
                expires: None,
            });
        }
    }
    // Expiring stock first, soonest first; then the largest surplus.
    offers.sort_by(|a, b| {
        (a.reason != Reason::NearExpiry)
            .cmp(&(b.reason != Reason::NearExpiry))
            .then(a.expires.cmp(&b.expires))
            .then(b.quantity.total_cmp(&a.quantity))
            .then(a.from.cmp(b.from))
    });
    let mut needy: Vec<&Holding> = holdings.iter().filter(|h| short(h)).collect();
    needy.sort_by(|a, b| {
        let d = |h: &Holding| h.cover.days_of_cover.unwrap_or(f64::INFINITY);
        d(a).total_cmp(&d(b)).then(a.location.cmp(&b.location))
    });
    let mut out = Plan::default();
    for h in needy {
        let mut need = (h.cover.maximum - h.cover.on_hand).ceil();
        for offer in offers.iter_mut().filter(|o| o.quantity >= 1.0) {
            if need < 1.0 {
                break;
            }
            let mut can_take = offer.quantity.min(need);
            if let Some(expires) = offer.expires {
                // Only what the receiver itself can use before expiry.
                let days = (expires - today).num_days().max(0) as f64;
                can_take = can_take.min((h.cover.daily_use * days).floor());
            }
            if can_take < 1.0 {
                continue;
            }
            offer.quantity -= can_take;
            need -= can_take;
            out.transfers.push(Transfer {
                from: offer.from.to_string(),
                to: h.location.clone(),
                quantity: can_take,
                reason: offer.reason,
                expires: offer.expires,
            });
        }
        if need >= 1.0 {
            out.orders.push(Order {
                to: h.location.clone(),
                quantity: need,
            });
        }
    }
    out.spare = offers
        .into_iter()
        .filter(|o| o.quantity >= 1.0)
        .map(|o| Spare {
            from: o.from.to_string(),
            quantity: o.quantity,
            reason: o.reason,
            expires: o.expires,
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cover::{cover, Policy};
    use crate::forecast::{Forecast, Method, Pattern};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
    }

    /// A location using `per_month` with stock `on_hand`: reorder point
    /// about a week's use plus safety, maximum three months.
    fn holding(name: &str, on_hand: f64, per_month: f64, batches: Vec<Batch>) -> Holding {
        let f = Forecast {
            pattern: Pattern::Smooth,
            adi: 1.0,
            cv2: 0.0,
            method: Method::SimpleExponentialSmoothing { alpha: 0.2 },
            per_period: per_month,
            rmse: per_month * 0.1,
            periods: 12,
        };
        Holding {
            location: name.into(),
            cover: cover(on_hand, &f, &Policy::default(), today()),
            batches,
        }
    }

    #[test]
    fn the_ward_holding_spare_gives_before_anything_is_ordered() {
        let short = holding("ward-7", 5.0, 300.0, vec![]);
        let spare = holding("ward-9", 1500.0, 200.0, vec![]);
        let normal = holding("ward-3", 250.0, 100.0, vec![]);
        assert!(short.cover.short);
        let p = plan(&[normal, short.clone(), spare.clone()], today());
        assert_eq!(p.transfers.len(), 1, "{p:?}");
        let t = &p.transfers[0];
        assert_eq!(
            (t.from.as_str(), t.to.as_str(), t.reason),
            ("ward-9", "ward-7", Reason::AboveMaximum)
        );
        assert_eq!(t.quantity, (short.cover.maximum - 5.0).ceil());
        assert!(p.orders.is_empty());
        // The donor keeps its maximum.
        assert!(spare.cover.on_hand - t.quantity >= spare.cover.maximum - 1.0);
    }

    #[test]
    fn what_transfers_cannot_cover_is_ordered() {
        let short = holding("ward-7", 0.0, 300.0, vec![]);
        let spare = holding("ward-9", 700.0, 200.0, vec![]); // 100 above its 600
        let p = plan(&[short.clone(), spare], today());
        assert_eq!(p.transfers[0].quantity, 100.0);
        assert_eq!(
            p.orders,
            [Order {
                to: "ward-7".into(),
                quantity: 900.0 - 100.0
            }]
        );
    }

    #[test]
    fn expiring_stock_goes_first_and_only_as_much_as_can_be_used() {
        let expires = today() + chrono::Days::new(20);
        // ward-9 uses about 1 a day and holds 100 expiring in 20 days: 80
        // of them would expire unused.
        let donor = holding(
            "ward-9",
            100.0,
            DAYS_PER_MONTH_F,
            vec![Batch {
                expires,
                quantity: 100.0,
            }],
        );
        let unusable = unusable_before_expiry(&donor, today());
        assert_eq!(
            unusable,
            [Batch {
                expires,
                quantity: 80.0
            }]
        );
        // ward-7 uses about 3 a day: it can use 60 of them in 20 days.
        let receiver = holding("ward-7", 0.0, 3.0 * DAYS_PER_MONTH_F, vec![]);
        let p = plan(&[receiver, donor], today());
        assert_eq!(p.transfers.len(), 1);
        assert_eq!(p.transfers[0].reason, Reason::NearExpiry);
        assert_eq!(p.transfers[0].quantity, 60.0);
        assert_eq!(p.transfers[0].expires, Some(expires));
        assert_eq!(p.orders.len(), 1);
    }

    #[test]
    fn nobody_short_means_nothing_moves_and_the_surplus_is_spare() {
        let a = holding("a", 200.0, 100.0, vec![]);
        let b = holding("b", 5000.0, 100.0, vec![]);
        let p = plan(&[a, b.clone()], today());
        assert!(p.transfers.is_empty() && p.orders.is_empty(), "{p:?}");
        assert_eq!(
            p.spare,
            [Spare {
                from: "b".into(),
                quantity: (5000.0 - b.cover.maximum).floor(),
                reason: Reason::AboveMaximum,
                expires: None,
            }]
        );
    }

    #[test]
    fn what_is_spare_is_what_the_short_locations_left() {
        let short = holding("ward-7", 5.0, 300.0, vec![]);
        let spare = holding("ward-9", 1500.0, 200.0, vec![]);
        let p = plan(&[short, spare.clone()], today());
        let given: f64 = p.transfers.iter().map(|t| t.quantity).sum();
        assert_eq!(p.spare.len(), 1);
        assert_eq!(
            p.spare[0].quantity,
            (1500.0 - spare.cover.maximum).floor() - given
        );
        // Spent to the last unit on an order: nothing is left to spare.
        let needy = holding("ward-7", 0.0, 3000.0, vec![]);
        let p = plan(&[needy, spare], today());
        assert!(!p.orders.is_empty() && p.spare.is_empty(), "{p:?}");
    }

    const DAYS_PER_MONTH_F: f64 = crate::DAYS_PER_MONTH;
}
