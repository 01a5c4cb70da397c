//! How good a forecast is, on months it was not fitted to.
//!
//! The measure is the mean absolute scaled error (Hyndman & Koehler 2006,
//! "Another look at measures of forecast accuracy", *IJF* 22(4)): the mean
//! absolute error on the held-back months divided by the mean absolute
//! error of the naive one-step forecast over the months fitted. It is
//! comparable across items of any volume and defined for intermittent
//! demand, where percentage errors divide by zero. Where the fitted months
//! never changed (say, no use at all) the scale is zero and MASE is not
//! defined: such a series is counted apart, never divided by a small number.
//!
//! Each held-back month is forecast from every month before it (a rolling
//! origin, as a monthly reorder uses the forecast), by the method and
//! constants chosen afresh on that history; the naive forecast is the
//! month before's consumption.

use serde::Serialize;

use crate::forecast::{forecast, Pattern};

/// A forecast's error against the naive forecast's on held-back months.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBack {
    /// The pattern of the months fitted first.
    pub pattern: Pattern,
    pub months: usize,
    pub forecast_mae: f64,
    pub naive_mae: f64,
    /// The in-sample naive MAE the errors are scaled by.
    pub scale: f64,
}

impl HeldBack {
    /// The forecast's MASE, `None` when the scale is zero.
    pub fn forecast_mase(&self) -> Option<f64> {
        (self.scale > 0.0).then(|| self.forecast_mae / self.scale)
    }

    /// The naive forecast's MASE on the same months.
    pub fn naive_mase(&self) -> Option<f64> {
        (self.scale > 0.0).then(|| self.naive_mae / self.scale)
    }
}

/// The in-sample MAE of the naive one-step forecast, `None` with fewer
/// than two periods.
pub fn naive_scale(train: &[f64]) -> Option<f64> {
    if train.len() < 2 {
        return None;
    }
    let sum: f64 = train.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
    Some(sum / (train.len() - 1) as f64)
}

/// MASE of `predicted` against `actual`, scaled by `train`'s naive error;
/// `None` where that is zero or undefined.
pub fn mase(train: &[f64], actual: &[f64], predicted: &[f64]) -> Option<f64> {
    let scale = naive_scale(train).filter(|s| *s > 0.0)?;
    if actual.is_empty() || actual.len() != predicted.len() {
        return None;
    }
    let mae = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).abs())
        .sum::<f64>()
        / actual.len() as f64;
    Some(mae / scale)
}

/// Hold back the last `hold` periods of `history` and forecast each from
/// all before it. `None` when fewer than two periods would be left to fit.
pub fn held_back(history: &[f64], hold: usize) -> Option<HeldBack> {
    if hold == 0 || history.len() < hold + 2 {
        return None;
    }
    let first = history.len() - hold;
    let train = &history[..first];
    let mut forecast_err = 0.0;
    let mut naive_err = 0.0;
    for k in first..history.len() {
        let f = forecast(&history[..k]);
        forecast_err += (history[k] - f.per_period).abs();
        naive_err += (history[k] - history[k - 1]).abs();
    }
    Some(HeldBack {
        pattern: crate::forecast::classify(train).0,
        months: hold,
        forecast_mae: forecast_err / hold as f64,
        naive_mae: naive_err / hold as f64,
        scale: naive_scale(train).unwrap_or(0.0),
    })
}

/// MASE over many series of one pattern.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PatternScore {
    pub series: usize,
    /// Series whose scale was zero, left out of the means.
    pub undefined: usize,
    pub forecast_mase: f64,
    pub naive_mase: f64,
    /// Series where the forecast's error was below the naive one's.
    pub forecast_better: usize,
}

/// Mean MASE by pattern, forecast and naive, over `results`.
pub fn by_pattern<'a>(
    results: impl IntoIterator<Item = &'a HeldBack>,
) -> std::collections::BTreeMap<Pattern, PatternScore> {
    let mut out: std::collections::BTreeMap<Pattern, PatternScore> = Default::default();
    for r in results {
        let s = out.entry(r.pattern).or_default();
        s.series += 1;
        match (r.forecast_mase(), r.naive_mase()) {
            (Some(f), Some(n)) => {
                s.forecast_mase += f;
                s.naive_mase += n;
                s.forecast_better += usize::from(r.forecast_mae < r.naive_mae);
            }
            _ => s.undefined += 1,
        }
    }
    for s in out.values_mut() {
        let defined = (s.series - s.undefined).max(1) as f64;
        s.forecast_mase /= defined;
        s.naive_mase /= defined;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mase_by_hand() {
        // Naive in-sample errors 2, 2, 4: scale 8 / 3.
        let train = [10.0, 12.0, 10.0, 14.0];
        let m = mase(&train, &[13.0, 11.0], &[12.0, 12.0]).unwrap();
        assert!((m - 1.0 / (8.0 / 3.0)).abs() < 1e-12);
        assert_eq!(mase(&[5.0, 5.0, 5.0], &[6.0], &[5.0]), None);
        assert_eq!(mase(&[5.0], &[6.0], &[5.0]), None);
    }

    #[test]
    fn noisy_steady_demand_is_forecast_better_than_last_month() {
        // A steady 100 a month with noise: last month's figure carries all
        // of the last month's noise, the smoothed level little of it.
        let noise = [
            9.0, -7.0, 4.0, -11.0, 8.0, -3.0, 12.0, -9.0, 2.0, -6.0, 10.0, -5.0,
        ];
        let history: Vec<f64> = noise.iter().map(|e| 100.0 + e).collect();
        let r = held_back(&history, 4).unwrap();
        assert!(r.forecast_mae < r.naive_mae, "{r:?}");
        assert!(r.forecast_mase().unwrap() < r.naive_mase().unwrap());
        assert!(held_back(&history[..4], 4).is_none());
    }

    #[test]
    fn scores_leave_out_undefined_series() {
        let flat = held_back(&[0.0, 0.0, 0.0, 0.0, 2.0], 1).unwrap();
        assert_eq!(flat.forecast_mase(), None);
        let noisy = held_back(&[100.0, 90.0, 110.0, 95.0, 105.0, 100.0], 2).unwrap();
        let scores = by_pattern([&flat, &noisy]);
        let smooth = &scores[&Pattern::Smooth];
        assert_eq!((smooth.series, smooth.undefined), (1, 0));
        assert_eq!(scores[&Pattern::None].undefined, 1);
    }
}
