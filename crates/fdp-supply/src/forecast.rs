//! Demand forecasts, by a method chosen for the demand's pattern.
//!
//! A ward's use of gloves is smooth: some every month, much the same. Its
//! use of a particular catheter is intermittent: most months none, then a
//! few. Exponential smoothing suits the first and fails the second, where
//! its level decays between demands and jumps at each; Croston's method
//! smooths the size of a demand and the interval between demands apart
//! (Croston 1972, *Operational Research Quarterly* 23(3)), and the
//! Syntetos–Boylan approximation (SBA) removes its upward bias by the
//! factor `1 − β/2` (Syntetos & Boylan 2005, *IJF* 21(2)). TSB smooths the
//! probability of a demand every period instead of the interval, so a
//! forecast decays when an item stops being used (Teunter, Syntetos &
//! Babai 2011, *EJOR* 214(3)).
//!
//! The pattern follows Syntetos, Boylan & Croston (2005, *JORS* 56(5)): the
//! average demand interval (ADI, periods per period with demand) against
//! 1.32, and the squared coefficient of variation of the non-zero demands
//! (CV²) against 0.49. Smooth and erratic demand (ADI under 1.32) is
//! forecast by simple exponential smoothing; intermittent and lumpy demand
//! by SBA or TSB, whichever fitted the history better. Smoothing constants
//! are chosen on a grid by the least one-step squared error over the
//! history, and that error's root mean square is the forecast's
//! uncertainty, which safety stock is sized from.
//!
//! Exponential smoothing is written here rather than taken from `augurs`:
//! its ETS models need seven points or more, have no seasonal form yet, and
//! bring `nalgebra` with them, while each method below is a dozen lines.

use serde::Serialize;

/// The ADI at and above which demand is intermittent.
pub const ADI_CUT: f64 = 1.32;
/// The CV² at and above which demand sizes are erratic.
pub const CV2_CUT: f64 = 0.49;

/// How an item's demand behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Demand most periods, of similar size.
    Smooth,
    /// Demand most periods, of widely varying size.
    Erratic,
    /// Demand in few periods, of similar size.
    Intermittent,
    /// Demand in few periods, of widely varying size.
    Lumpy,
    /// No demand in the history at all.
    None,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Smooth => "smooth",
            Pattern::Erratic => "erratic",
            Pattern::Intermittent => "intermittent",
            Pattern::Lumpy => "lumpy",
            Pattern::None => "no demand",
        }
    }

    /// Whether demand is missing from many periods.
    pub fn is_intermittent(self) -> bool {
        matches!(self, Pattern::Intermittent | Pattern::Lumpy)
    }
}

/// The ADI and CV² of a history, and the pattern they give.
pub fn classify(history: &[f64]) -> (Pattern, f64, f64) {
    let sizes: Vec<f64> = history.iter().copied().filter(|&y| y > 0.0).collect();
    if sizes.is_empty() {
        return (Pattern::None, f64::INFINITY, 0.0);
    }
    let adi = history.len() as f64 / sizes.len() as f64;
    let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
    let cv2 = if sizes.len() < 2 {
        0.0
    } else {
        let var = sizes.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / sizes.len() as f64;
        var / (mean * mean)
    };
    let pattern = match (adi >= ADI_CUT, cv2 >= CV2_CUT) {
        (false, false) => Pattern::Smooth,
        (false, true) => Pattern::Erratic,
        (true, false) => Pattern::Intermittent,
        (true, true) => Pattern::Lumpy,
    };
    (pattern, adi, cv2)
}

/// A forecasting method with its smoothing constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// Simple exponential smoothing of the level.
    SimpleExponentialSmoothing { alpha: f64 },
    /// Croston with the Syntetos–Boylan correction: `alpha` smooths demand
    /// sizes, `beta` the intervals between them.
    CrostonSba { alpha: f64, beta: f64 },
    /// Teunter–Syntetos–Babai: `alpha` smooths demand sizes, `beta` the
    /// probability of a demand.
    Tsb { alpha: f64, beta: f64 },
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::SimpleExponentialSmoothing { .. } => "exponential smoothing",
            Method::CrostonSba { .. } => "Croston (SBA)",
            Method::Tsb { .. } => "TSB",
        }
    }

    /// The one-step forecast before each period of `history` (the first is
    /// the initial estimate), and the forecast after the last: the rate per
    /// period from then on.
    pub fn run(&self, history: &[f64]) -> (Vec<f64>, f64) {
        let mut before = Vec::with_capacity(history.len());
        let next = match *self {
            Method::SimpleExponentialSmoothing { alpha } => {
                let mut level = history.first().copied().unwrap_or(0.0);
                for &y in history {
                    before.push(level);
                    level += alpha * (y - level);
                }
                level
            }
            Method::CrostonSba { alpha, beta } => {
                // Initialised as Croston's paper and `tsintermittent` do: the
                // first demand's size and the mean interval between demands.
                let (size0, interval0) = croston_start(history);
                let (mut size, mut interval) = (size0, interval0);
                let mut since = 1.0;
                let correction = 1.0 - beta / 2.0;
                for &y in history {
                    before.push(if interval > 0.0 {
                        correction * size / interval
                    } else {
                        0.0
                    });
                    if y > 0.0 {
                        size += alpha * (y - size);
                        interval += beta * (since - interval);
                        since = 1.0;
                    } else {
                        since += 1.0;
                    }
                }
                if interval > 0.0 {
                    correction * size / interval
                } else {
                    0.0
                }
            }
            Method::Tsb { alpha, beta } => {
                let sizes: Vec<f64> = history.iter().copied().filter(|&y| y > 0.0).collect();
                let mut size = if sizes.is_empty() {
                    0.0
                } else {
                    sizes.iter().sum::<f64>() / sizes.len() as f64
                };
                let mut chance = if history.is_empty() {
                    0.0
                } else {
                    sizes.len() as f64 / history.len() as f64
                };
                for &y in history {
                    before.push(chance * size);
                    if y > 0.0 {
                        chance += beta * (1.0 - chance);
                        size += alpha * (y - size);
                    } else {
                        chance *= 1.0 - beta;
                    }
                }
                chance * size
            }
        };
        (before, next)
    }
}

/// The first demand's size and the mean interval between demands (the
/// first counted from the start of the history).
fn croston_start(history: &[f64]) -> (f64, f64) {
    let mut intervals = Vec::new();
    let mut first = None;
    let mut since = 0.0;
    for &y in history {
        since += 1.0;
        if y > 0.0 {
            first.get_or_insert(y);
            intervals.push(since);
            since = 0.0;
        }
    }
    match first {
        None => (0.0, 0.0),
        Some(size) => (size, intervals.iter().sum::<f64>() / intervals.len() as f64),
    }
}

/// A fitted forecast for one item at one location.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub pattern: Pattern,
    pub adi: f64,
    pub cv2: f64,
    pub method: Method,
    /// Expected demand per period from now on.
    pub per_period: f64,
    /// Root mean square of the one-step errors over the history (after the
    /// first period, which the methods start from): the uncertainty of one
    /// period's demand.
    pub rmse: f64,
    /// Periods of history fitted.
    pub periods: usize,
}

impl Forecast {
    /// Demand expected over `periods` periods (a fraction allowed).
    pub fn demand_over(&self, periods: f64) -> f64 {
        self.per_period * periods.max(0.0)
    }

    /// The standard deviation of demand over `periods` periods, taking each
    /// period's error as independent.
    pub fn sigma_over(&self, periods: f64) -> f64 {
        self.rmse * periods.max(0.0).sqrt()
    }

    /// The spread of the forecast `h` periods ahead (h ≥ 1): for exponential
    /// smoothing the level's own uncertainty grows as `1 + (h − 1)α²`
    /// (Hyndman et al., *Forecasting with Exponential Smoothing*, table
    /// 6.1, model ANN); the intermittent methods' rate is taken as flat.
    pub fn sigma_ahead(&self, h: usize) -> f64 {
        let h = h.max(1) as f64;
        match self.method {
            Method::SimpleExponentialSmoothing { alpha } => {
                self.rmse * (1.0 + (h - 1.0) * alpha * alpha).sqrt()
            }
            _ => self.rmse,
        }
    }
}

/// Grids the smoothing constants are chosen from.
const SES_ALPHAS: [f64; 19] = [
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
    0.9, 0.95,
];
const INTERMITTENT_CONSTANTS: [f64; 6] = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4];

/// The forecast for `history` (oldest first, one value a period) by the
/// method its pattern calls for.
pub fn forecast(history: &[f64]) -> Forecast {
    let (pattern, adi, cv2) = classify(history);
    let candidates: Vec<Method> = if pattern.is_intermittent() {
        let mut out = Vec::new();
        for &alpha in &INTERMITTENT_CONSTANTS {
            for &beta in &INTERMITTENT_CONSTANTS {
                out.push(Method::CrostonSba { alpha, beta });
                out.push(Method::Tsb { alpha, beta });
            }
        }
        out
    } else {
        SES_ALPHAS
            .iter()
            .map(|&alpha| Method::SimpleExponentialSmoothing { alpha })
            .collect()
    };
    let mut best: Option<(f64, Method, f64)> = None;
    for method in candidates {
        let (before, next) = method.run(history);
        let sse = squared_errors(history, &before);
        if best.as_ref().is_none_or(|(b, _, _)| sse < *b - 1e-12) {
            best = Some((sse, method, next));
        }
    }
    let (sse, method, next) = best.expect("every pattern has candidates");
    let fitted = history.len().saturating_sub(1);
    Forecast {
        pattern,
        adi,
        cv2,
        method,
        per_period: next.max(0.0),
        rmse: if fitted == 0 {
            0.0
        } else {
            (sse / fitted as f64).sqrt()
        },
        periods: history.len(),
    }
}

/// The one-step squared errors after the first period.
fn squared_errors(history: &[f64], before: &[f64]) -> f64 {
    history
        .iter()
        .zip(before)
        .skip(1)
        .map(|(y, f)| (y - f).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_the_published_cut_offs() {
        assert_eq!(classify(&[10.0, 11.0, 9.0, 10.0]).0, Pattern::Smooth);
        assert_eq!(classify(&[1.0, 30.0, 2.0, 25.0]).0, Pattern::Erratic);
        assert_eq!(
            classify(&[0.0, 5.0, 0.0, 0.0, 5.0, 0.0]).0,
            Pattern::Intermittent
        );
        assert_eq!(classify(&[0.0, 1.0, 0.0, 0.0, 40.0, 0.0]).0, Pattern::Lumpy);
        assert_eq!(classify(&[0.0, 0.0]).0, Pattern::None);
        let (_, adi, cv2) = classify(&[0.0, 4.0, 0.0, 6.0]);
        assert_eq!(adi, 2.0);
        assert!((cv2 - 0.04).abs() < 1e-12);
    }

    #[test]
    fn exponential_smoothing_by_hand() {
        let (before, next) =
            Method::SimpleExponentialSmoothing { alpha: 0.5 }.run(&[10.0, 20.0, 10.0]);
        assert_eq!(before, [10.0, 10.0, 15.0]);
        assert_eq!(next, 12.5);
    }

    #[test]
    fn croston_sba_by_hand() {
        // Demands of 6 in period 2 and 4 in period 5: first size 6, mean
        // interval (2 + 3) / 2 = 2.5.
        let m = Method::CrostonSba {
            alpha: 0.5,
            beta: 0.2,
        };
        let (before, next) = m.run(&[0.0, 6.0, 0.0, 0.0, 4.0]);
        let c = 1.0 - 0.1;
        assert!((before[0] - c * 6.0 / 2.5).abs() < 1e-12);
        // After period 2: size 6, interval 2.5 + 0.2 × (2 − 2.5) = 2.4.
        assert!((before[2] - c * 6.0 / 2.4).abs() < 1e-12);
        // After period 5: size 5, interval 2.4 + 0.2 × (3 − 2.4) = 2.52.
        assert!((next - c * 5.0 / 2.52).abs() < 1e-12);
    }

    #[test]
    fn tsb_decays_when_demand_stops() {
        let m = Method::Tsb {
            alpha: 0.2,
            beta: 0.2,
        };
        let (_, with_demand) = m.run(&[5.0, 0.0, 5.0, 0.0, 5.0, 0.0]);
        let (_, stopped) = m.run(&[5.0, 0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(
            stopped < with_demand * 0.5,
            "{stopped} against {with_demand}"
        );
        // Croston's rate does not move while nothing is used.
        let c = Method::CrostonSba {
            alpha: 0.2,
            beta: 0.2,
        };
        assert_eq!(
            c.run(&[5.0, 0.0, 5.0, 0.0, 5.0, 0.0]).1,
            c.run(&[5.0, 0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 0.0]).1
        );
    }

    #[test]
    fn the_method_follows_the_pattern() {
        let smooth = forecast(&[100.0, 104.0, 98.0, 101.0, 99.0, 103.0]);
        assert!(matches!(
            smooth.method,
            Method::SimpleExponentialSmoothing { .. }
        ));
        assert!((smooth.per_period - 101.0).abs() < 4.0);
        let intermittent = forecast(&[0.0, 3.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 3.0]);
        assert!(!matches!(
            intermittent.method,
            Method::SimpleExponentialSmoothing { .. }
        ));
        // Three units every three periods or so: about one a period.
        assert!(
            (0.5..1.5).contains(&intermittent.per_period),
            "{}",
            intermittent.per_period
        );
        let none = forecast(&[0.0; 6]);
        assert_eq!((none.pattern, none.per_period), (Pattern::None, 0.0));
        let empty = forecast(&[]);
        assert_eq!(empty.per_period, 0.0);
    }

    #[test]
    fn uncertainty_grows_with_the_horizon() {
        let f = forecast(&[100.0, 130.0, 80.0, 120.0, 90.0, 110.0]);
        assert!(f.rmse > 0.0);
        assert!(f.sigma_over(4.0) > f.sigma_over(1.0));
        assert!(f.sigma_ahead(6) >= f.sigma_ahead(1));
    }
}
