//! Forecasting: hourly demand quantiles per usage group, with anomaly and level-shift signals.
//!
//! This module owns the answer to "how much of this usage group will still be running, hour by
//! hour, over the next 1 to 3 years, and how sure are we". It is pure: it takes a demand series
//! (instance-hours per hour) and returns quantile paths; no I/O, no clock, no async.
//!
//! # Method (see `docs/forecast.md` for the reasoning)
//!
//! 1. [`prepare`]: keep the known hours (before `data_end`), drop the incomplete billing tail
//!    (the last ~48 h are late, not zero), mark gaps, and move to log space `ln(y + c)` so that
//!    seasonality, noise and level shifts are multiplicative (fleets scale up and down as a whole,
//!    and quantiles survive the monotone transform unchanged).
//! 2. [`model`]: robust MSTL decomposition (augurs / stlrs) with daily (24 h) and weekly
//!    (168 h) periods: bisquare weights keep one-off spikes out of the seasonal profile, and
//!    spikes flagged on the remainder are not evidence of the level, so they do not raise the
//!    baseline.
//! 3. [`signals`]: level-shift candidates from Bayesian online changepoint detection (augurs
//!    BOCPD) on daily medians, kept only when the new level is material and persists; the
//!    recent segment then governs the level. `unsettled` tells the planner to hold purchases.
//! 4. The point path is `level + damped trend + seasonal profile`; quantiles come from
//!    empirical, conformal-style calibration: the same forecaster is replayed from rolling
//!    origins inside the history and the signed errors are pooled per horizon bucket.
//!
//! Long horizons are cheap: the future is a repeated 168-hour profile plus a closed-form damped
//! trend, so a 26,280-hour path costs a few multiplications per hour.

pub mod anomaly;
mod calibrate;
pub mod eval;
mod model;
mod prepare;
mod signals;
pub mod synth;

use crate::domain::Hour;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use signals::{Anomaly, LevelShift, Signals};

/// Hours in a day and a week: the two seasonal periods of compute usage.
pub const DAY: usize = 24;
pub const WEEK: usize = 168;

/// What to forecast and how cautious to be. `Default` is what the planner uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastConfig {
    /// Hours forecast from `data_end` on (a 3-year term is 26,280 h).
    pub horizon_hours: usize,
    /// Quantile levels to return, each in (0, 1). Sorted and de-duplicated on use.
    pub quantiles: Vec<f64>,
    /// Hours before `data_end` that may be incomplete because billing data arrives late; they
    /// are forecast, not fitted.
    pub incomplete_tail_hours: usize,
    /// At most this much history is used (older usage says little about next year's fleet).
    pub max_history_hours: usize,
    /// A remainder beyond this many robust standard deviations is an anomaly.
    pub anomaly_sigmas: f64,
    /// ...and it must also be at least this relative deviation (0.10 = 10 %), so that very
    /// smooth series do not report noise as anomalies.
    pub anomaly_min_relative: f64,
    /// A level change smaller than this (relative, 0.15 = 15 %) is not a level shift.
    pub shift_min_relative: f64,
    /// A new level must hold this many days to be a shift; shorter excursions are anomalies.
    pub shift_confirm_days: usize,
    /// A group stays `unsettled` for this many days after a level shift.
    pub settle_days: usize,
    /// Days of recent history the trend slope is estimated from.
    pub trend_window_days: usize,
    /// Damping time constant of the trend, in days: the total extrapolated drift is at most
    /// `slope * trend_damping_days`, so a 3-year horizon does not compound a short-term slope.
    pub trend_damping_days: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            horizon_hours: crate::domain::HOURS_PER_YEAR as usize,
            quantiles: vec![0.1, 0.5, 0.9],
            incomplete_tail_hours: 48,
            max_history_hours: 2 * crate::domain::HOURS_PER_YEAR as usize,
            anomaly_sigmas: 6.0,
            anomaly_min_relative: 0.10,
            shift_min_relative: 0.15,
            shift_confirm_days: 3,
            settle_days: 14,
            trend_window_days: 84,
            trend_damping_days: 120.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("quantile level {0} is not inside (0, 1)")]
    BadQuantile(f64),
    #[error("horizon must be at least one hour")]
    EmptyHorizon,
    #[error("only {have} usable hours of history before {data_end} (need at least {need})")]
    InsufficientHistory {
        have: usize,
        need: usize,
        data_end: Hour,
    },
    #[error("seasonal decomposition failed: {0}")]
    Decomposition(String),
}

/// Summary of the fitted model, for explanations ("why this much?").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Hours of history used (after the cut to `max_history_hours`).
    pub history_hours: usize,
    /// Hours with no value (gaps) inside them.
    pub missing_hours: usize,
    /// Last hour fitted + 1: `data_end - incomplete_tail_hours`.
    pub fitted_until: Hour,
    /// Seasonal periods used (hours).
    pub periods: Vec<usize>,
    /// Deseasonalised level at `fitted_until`, instance-hours per hour.
    pub level: f64,
    /// Relative trend, per day (0.002 = +0.2 %/day), before damping.
    pub trend_per_day: f64,
    /// Where the level was estimated from (the last level shift, or the level window).
    pub level_since: Hour,
    /// Rolling origins the quantiles were calibrated on.
    pub calibration_origins: usize,
}

/// Hourly quantile paths of one usage group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupForecast {
    /// First forecast hour (= `data_end`).
    pub start: Hour,
    /// Quantile levels, sorted ascending.
    pub levels: Vec<f64>,
    /// `values[level][hour]`: instance-hours per hour, `>= 0`, non-decreasing across levels.
    pub values: Vec<Vec<f64>>,
    pub signals: Signals,
    pub fit: FitSummary,
}

impl GroupForecast {
    /// Hours in the forecast.
    pub fn len(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Any quantile path, linearly interpolated between the stored levels (and clamped to the
    /// outermost stored levels outside them: the tails are not extrapolated).
    pub fn quantile(&self, q: f64) -> Vec<f64> {
        let n = self.len();
        if self.levels.is_empty() {
            return Vec::new();
        }
        let i = self.levels.partition_point(|&l| l < q);
        if i == 0 {
            return self.values[0].clone();
        }
        if i == self.levels.len() {
            return self.values[i - 1].clone();
        }
        if (self.levels[i] - q).abs() < 1e-12 {
            return self.values[i].clone();
        }
        let (l0, l1) = (self.levels[i - 1], self.levels[i]);
        let w = (q - l0) / (l1 - l0);
        (0..n)
            .map(|h| self.values[i - 1][h] * (1.0 - w) + self.values[i][h] * w)
            .collect()
    }

    /// Mean of each quantile path over hours `[from, to)` of the forecast, per level.
    pub fn mean_over(&self, from: usize, to: usize) -> Vec<f64> {
        let to = to.min(self.len());
        let from = from.min(to);
        self.values
            .iter()
            .map(|v| {
                if to > from {
                    v[from..to].iter().sum::<f64>() / (to - from) as f64
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Forecasts one usage group.
///
/// `history[i]` is the demand in hour `history_start + i` (instance-hours per hour). Non-finite
/// or negative values are gaps. Hours at or after `data_end` are ignored (not known yet); the
/// `incomplete_tail_hours` before it are not fitted (late billing), only forecast.
pub fn forecast(
    history: &[f64],
    history_start: Hour,
    data_end: Hour,
    cfg: &ForecastConfig,
) -> Result<GroupForecast, ForecastError> {
    let levels = checked_levels(&cfg.quantiles)?;
    if cfg.horizon_hours == 0 {
        return Err(ForecastError::EmptyHorizon);
    }
    let prepared = prepare::prepare(history, history_start, data_end, cfg)?;
    let periods = model::periods(prepared.len());
    // First pass: the seasonal profile and remainder of the raw (log) series.
    let first = model::decompose(&prepared.z, &periods)?;
    let deseason: Vec<f64> = prepared
        .z
        .iter()
        .zip(&first.seasonal)
        .map(|(z, s)| z - s)
        .collect();
    let shifts = signals::level_shifts(&prepared, &deseason, cfg);
    let anomalous = signals::anomaly_mask(&prepared, &first.remainder, &shifts, cfg);
    let signals = signals::summarize(&prepared, &first.remainder, &anomalous, &shifts, cfg);
    // No second pass: the robust STL already gives the spikes near-zero weight, so they leave
    // no echo in the seasonal profile (tested), and a second fit would double the cost.
    let seasonal = first.seasonal;
    let fitted = model::Model::new(&prepared, seasonal, &anomalous, &shifts, periods, cfg);
    let cal = calibrate::calibrate(&fitted, &first.remainder);
    model::project(&fitted, signals, &cal, &levels, data_end, cfg)
}

/// One group's input to [`forecast_batch`].
#[derive(Clone, Copy, Debug)]
pub struct BatchInput<'a> {
    pub history: &'a [f64],
    pub history_start: Hour,
}

/// Forecasts many groups in parallel (rayon); results are in input order.
pub fn forecast_batch(
    inputs: &[BatchInput<'_>],
    data_end: Hour,
    cfg: &ForecastConfig,
) -> Vec<Result<GroupForecast, ForecastError>> {
    inputs
        .par_iter()
        .map(|i| forecast(i.history, i.history_start, data_end, cfg))
        .collect()
}

fn checked_levels(q: &[f64]) -> Result<Vec<f64>, ForecastError> {
    let mut levels = Vec::with_capacity(q.len());
    for &l in q {
        if !(l > 0.0 && l < 1.0) {
            return Err(ForecastError::BadQuantile(l));
        }
        levels.push(l);
    }
    levels.sort_by(f64::total_cmp);
    levels.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    if levels.is_empty() {
        levels.push(0.5);
    }
    Ok(levels)
}

/// Median of a slice (reorders it). `None` if empty.
pub(crate) fn median_mut(v: &mut [f64]) -> Option<f64> {
    quantile_mut(v, 0.5)
}

/// Linear-interpolated quantile (type 7) of a slice, reordering it. `None` if empty.
pub(crate) fn quantile_mut(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, a, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    if frac <= 0.0 || rest.is_empty() {
        return Some(a);
    }
    let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
    Some(a + (b - a) * frac)
}

/// Quantile of an already sorted slice (type 7).
pub(crate) fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = pos - lo as f64;
    v[lo] + (v[hi] - v[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_helpers_agree() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median_mut(&mut v.clone()), Some(3.0));
        assert_eq!(quantile_mut(&mut v, 0.25), Some(2.0));
        let mut s = vec![1.0, 2.0, 3.0, 4.0];
        assert!((quantile_mut(&mut s.clone(), 0.5).unwrap() - 2.5).abs() < 1e-12);
        s.sort_by(f64::total_cmp);
        assert!((quantile_sorted(&s, 0.5) - 2.5).abs() < 1e-12);
        assert_eq!(median_mut(&mut []), None);
    }

    #[test]
    fn levels_are_checked_and_sorted() {
        assert_eq!(
            checked_levels(&[0.9, 0.1, 0.5, 0.5]).unwrap(),
            vec![0.1, 0.5, 0.9]
        );
        assert!(matches!(
            checked_levels(&[0.0]),
            Err(ForecastError::BadQuantile(_))
        ));
        assert!(checked_levels(&[f64::NAN]).is_err());
    }

    #[test]
    fn interpolated_quantile_lies_between_stored_levels() {
        let f = GroupForecast {
            start: Hour(0),
            levels: vec![0.1, 0.5, 0.9],
            values: vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 8.0]],
            signals: Signals::default(),
            fit: FitSummary {
                history_hours: 0,
                missing_hours: 0,
                fitted_until: Hour(0),
                periods: vec![],
                level: 0.0,
                trend_per_day: 0.0,
                level_since: Hour(0),
                calibration_origins: 0,
            },
        };
        assert_eq!(f.quantile(0.5), vec![3.0, 4.0]);
        let close = |a: Vec<f64>, b: [f64; 2]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
        assert!(close(f.quantile(0.3), [2.0, 3.0]));
        assert!(close(f.quantile(0.7), [4.0, 6.0]));
        assert_eq!(f.quantile(0.01), vec![1.0, 2.0]);
        assert_eq!(f.quantile(0.99), vec![5.0, 8.0]);
        assert_eq!(f.mean_over(0, 2), vec![1.5, 3.5, 6.5]);
    }
}
