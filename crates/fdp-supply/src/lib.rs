//! Supplies arithmetic: what a ward holds, what it uses, what it will need,
//! and where the stock to cover it should come from.
//!
//! This crate does no I/O and knows nothing of governance: the supply-chain
//! product reads the counts and movements through a governed session and
//! hands them here. Each module is one step of a supplies lead's question:
//!
//! - [`ledger`]: stock on hand, day by day, from the counts and every
//!   movement since, with the discrepancy wherever a count disagrees with
//!   what the movements imply, and the days a location was out of stock.
//! - [`amc`]: average monthly consumption corrected for days out of stock,
//!   leaving transfers out, as OpenLMIS computes it.
//! - [`forecast`]: the demand pattern (smooth, erratic, intermittent,
//!   lumpy) and a forecast by the method that suits it: simple exponential
//!   smoothing, Croston with the Syntetos–Boylan correction, or TSB.
//! - [`accuracy`]: forecast error on held-back months against the naive
//!   forecast, as MASE.
//! - [`cover`]: days of cover, safety stock and reorder point from the
//!   lead time and the forecast's error; when stock runs out.
//! - [`transfer`]: moves between locations before orders.
//!
//! ```
//! use chrono::NaiveDate;
//! use fdp_supply::ledger::{Count, Movement, MovementKind, ledger};
//!
//! let d = |day| NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
//! let counts = [Count { date: d(1), quantity: 10.0 }];
//! let moves = [
//!     Movement { date: d(2), kind: MovementKind::Issue, quantity: 4.0 },
//!     Movement { date: d(3), kind: MovementKind::Receipt, quantity: 20.0 },
//! ];
//! let days = ledger(&counts, &moves, d(1), d(3));
//! assert_eq!(days.on_hand(), 26.0);
//! ```

pub mod accuracy;
pub mod amc;
pub mod cover;
pub mod forecast;
pub mod ledger;
pub mod transfer;

/// Days in the average month (365.25 / 12), for turning a monthly rate into
/// a daily one.
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;
