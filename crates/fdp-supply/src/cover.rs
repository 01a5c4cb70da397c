//! Days of cover, safety stock and the reorder point, and when stock runs
//! out.
//!
//! With a forecast of demand per month and its one-month error `σ`, and a
//! lead time of `L` months, the textbook continuous-review rules (Silver,
//! Pyke & Thomas, *Inventory and Production Management in Supply Chains*,
//! 4th ed., ch. 6) give:
//!
//! - safety stock `z × σ × √L`, `z` from the service level (95% → 1.645),
//!   taking each month's error as independent;
//! - reorder point: the forecast over the lead time plus the safety stock.
//!
//! A location whose stock will not last its lead time runs short before a
//! new order could arrive: that is the shortage list. The minimum a
//! location should hold is its reorder point; the maximum is a number of
//! months of its use (OpenLMIS's and mSupply's "maximum months of stock"),
//! never below the minimum plus one review period's use.

use chrono::NaiveDate;
use serde::Serialize;

use crate::forecast::Forecast;
use crate::DAYS_PER_MONTH;

/// How a location restocks an item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Policy {
    /// Days from ordering to having it on the shelf.
    pub lead_time_days: f64,
    /// The chance of not running out in a lead time, as `z`.
    pub service_z: f64,
    /// The most a location should hold, in months of its use.
    pub max_months: f64,
    /// Days between a location's reviews (top-up rounds).
    pub review_days: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            lead_time_days: 7.0,
            service_z: 1.645,
            max_months: 3.0,
            review_days: 7.0,
        }
    }
}

/// One item at one location, looked at on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cover {
    pub on_hand: f64,
    /// Expected use per day.
    pub daily_use: f64,
    /// Days the stock lasts at that use; `None` when nothing is used.
    pub days_of_cover: Option<f64>,
    /// The day it runs out at that use.
    pub runs_out: Option<NaiveDate>,
    pub lead_time_days: f64,
    pub safety_stock: f64,
    /// Hold at least this: the forecast over the lead time plus safety
    /// stock.
    pub reorder_point: f64,
    /// Hold at most this.
    pub maximum: f64,
    /// The stock does not last the lead time: it runs out before an order
    /// placed today could arrive.
    pub short: bool,
    /// Below the reorder point: time to restock.
    pub below_reorder_point: bool,
}

/// The cover of `on_hand` against `forecast` (per month) under `policy`,
/// looked at on `today`.
pub fn cover(on_hand: f64, forecast: &Forecast, policy: &Policy, today: NaiveDate) -> Cover {
    let lead_months = policy.lead_time_days / DAYS_PER_MONTH;
    let daily_use = forecast.per_period / DAYS_PER_MONTH;
    let safety_stock = policy.service_z * forecast.sigma_over(lead_months);
    let reorder_point = forecast.demand_over(lead_months) + safety_stock;
    let maximum = (policy.max_months * forecast.per_period)
        .max(reorder_point + daily_use * policy.review_days);
    let days_of_cover = (daily_use > 0.0).then(|| on_hand.max(0.0) / daily_use);
    let runs_out = days_of_cover
        .filter(|d| *d < 3650.0)
        .map(|d| today + chrono::Days::new(d.floor() as u64));
    Cover {
        on_hand,
        daily_use,
        days_of_cover,
        runs_out,
        lead_time_days: policy.lead_time_days,
        safety_stock,
        reorder_point,
        maximum,
        short: days_of_cover.is_some_and(|d| d < policy.lead_time_days),
        below_reorder_point: on_hand < reorder_point,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{Method, Pattern};

    fn monthly(per_period: f64, rmse: f64) -> Forecast {
        Forecast {
            pattern: Pattern::Smooth,
            adi: 1.0,
            cv2: 0.0,
            method: Method::SimpleExponentialSmoothing { alpha: 0.2 },
            per_period,
            rmse,
            periods: 12,
        }
    }

    #[test]
    fn reorder_point_by_hand() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let policy = Policy {
            lead_time_days: DAYS_PER_MONTH, // one month
            service_z: 1.645,
            max_months: 3.0,
            review_days: 7.0,
        };
        let c = cover(150.0, &monthly(100.0, 20.0), &policy, today);
        assert!((c.safety_stock - 32.9).abs() < 1e-9);
        assert!((c.reorder_point - 132.9).abs() < 1e-9);
        assert!((c.maximum - 300.0).abs() < 1e-9);
        assert!(!c.below_reorder_point && !c.short);
        // 150 at 100 a month lasts 45.66 days.
        assert!((c.days_of_cover.unwrap() - 150.0 / (100.0 / DAYS_PER_MONTH)).abs() < 1e-9);
        assert_eq!(c.runs_out, Some(today + chrono::Days::new(45)));
        let low = cover(20.0, &monthly(100.0, 20.0), &policy, today);
        assert!(low.short && low.below_reorder_point);
    }

    #[test]
    fn nothing_used_never_runs_out() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let c = cover(5.0, &monthly(0.0, 0.0), &Policy::default(), today);
        assert_eq!((c.days_of_cover, c.runs_out, c.short), (None, None, false));
    }
}
