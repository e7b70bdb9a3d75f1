//! The forecaster: MSTL decomposition, then `level + damped trend + seasonal profile`.
//!
//! The same `state_at` / `point` pair serves the final forecast and the rolling-origin
//! calibration, so the calibrated errors are the errors of exactly this forecaster.

use super::calibrate::Calibration;
use super::prepare::Prepared;
use super::signals::{Shifts, Signals};
use super::{median_mut, FitSummary, ForecastConfig, ForecastError, GroupForecast, DAY, WEEK};
use crate::domain::Hour;
use augurs::mstl::stlrs::{MstlParams, StlParams};

/// Seasonal periods the history can support: a period needs three full cycles to be told
/// apart from trend.
pub(crate) fn periods(n: usize) -> Vec<usize> {
    [DAY, WEEK].into_iter().filter(|&p| n >= 3 * p).collect()
}

/// Tukey's resistant line slope of `(x, y)` points: the line through the medians of the first
/// and last thirds. As robust to a bad day as Theil-Sen, but linear-time, which matters
/// because the calibration re-estimates it at up to 200 origins per group.
fn resistant_slope(pts: &[(f64, f64)]) -> f64 {
    let k = pts.len() / 3;
    if k == 0 {
        return 0.0;
    }
    let med = |part: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = part.iter().map(f).collect();
        median_mut(&mut v).unwrap_or(0.0)
    };
    let (a, b) = (&pts[..k], &pts[pts.len() - k..]);
    let dx = med(b, |p| p.0) - med(a, |p| p.0);
    if dx.abs() < 1e-12 {
        return 0.0;
    }
    (med(b, |p| p.1) - med(a, |p| p.1)) / dx
}

/// An additive decomposition of the log series.
#[derive(Clone, Debug)]
pub(crate) struct Decomposition {
    /// Sum of the seasonal components, hour by hour.
    pub seasonal: Vec<f64>,
    /// `z - trend - seasonal`.
    pub remainder: Vec<f64>,
}

/// MSTL (augurs' stlrs) on the log series. Without any usable period the seasonal part is zero
/// and the remainder is the distance to the median.
pub(crate) fn decompose(z: &[f64], periods: &[usize]) -> Result<Decomposition, ForecastError> {
    if periods.is_empty() {
        let mut tmp = z.to_vec();
        let med = median_mut(&mut tmp).unwrap_or(0.0);
        return Ok(Decomposition {
            seasonal: vec![0.0; z.len()],
            remainder: z.iter().map(|v| v - med).collect(),
        });
    }
    // stlrs works in f32; log demand has a small range, so nothing of value is lost.
    let y: Vec<f32> = z.iter().map(|&v| v as f32).collect();
    // Robust STL (bisquare weights) keeps a spike out of the seasonal profile; three outer
    // loops get most of the benefit of the default fifteen at a fifth of the cost. One MSTL
    // iteration instead of two halves the cost again; the daily period is fitted first, the
    // weekly one on what is left, which is the order that matters on hourly usage.
    let mut stl = StlParams::new();
    stl.robust(true).outer_loops(3);
    let fit = MstlParams::new()
        .iterations(1)
        .stl_params(stl)
        .fit(&y, periods)
        .map_err(|e| ForecastError::Decomposition(e.to_string()))?;
    let mut seasonal = vec![0.0f64; z.len()];
    for comp in fit.seasonal() {
        for (s, c) in seasonal.iter_mut().zip(comp) {
            *s += *c as f64;
        }
    }
    let remainder = fit.remainder().iter().map(|&r| r as f64).collect();
    Ok(Decomposition {
        seasonal,
        remainder,
    })
}

/// Everything the point forecaster needs, shared by calibration and projection.
pub(crate) struct Model<'a> {
    pub prepared: &'a Prepared,
    /// Seasonal profile (log space), hour by hour over the history.
    pub seasonal: Vec<f64>,
    /// `z - seasonal` with anomalies replaced by the model value: the baseline evidence.
    pub deseason: Vec<f64>,
    /// Hours that may serve as evidence of the level: observed and not anomalous.
    pub usable: Vec<bool>,
    /// Median deseasonalised value of each whole day, days aligned to end at `len()`.
    pub daily: Vec<Option<f64>>,
    pub shifts: &'a Shifts,
    /// The longest seasonal period (the repeated future profile), 0 if none.
    pub period: usize,
    pub periods: Vec<usize>,
    /// Per-hour damping factor of the trend.
    pub phi: f64,
    pub trend_window_days: usize,
}

/// The forecaster's state at an origin `o`: it saw hours `< o` only.
#[derive(Clone, Copy, Debug)]
pub(crate) struct State {
    /// Level at hour `o - 1` (log space, deseasonalised).
    pub level: f64,
    /// Trend per hour (log space), before damping.
    pub slope: f64,
    /// Start of the segment the level was estimated from.
    pub since: usize,
}

impl<'a> Model<'a> {
    pub fn new(
        prepared: &'a Prepared,
        seasonal: Vec<f64>,
        anomalous: &[bool],
        shifts: &'a Shifts,
        periods: Vec<usize>,
        cfg: &ForecastConfig,
    ) -> Self {
        let n = prepared.len();
        let deseason: Vec<f64> = prepared
            .z
            .iter()
            .zip(&seasonal)
            .map(|(z, s)| z - s)
            .collect();
        let usable: Vec<bool> = (0..n)
            .map(|t| prepared.observed[t] && !anomalous[t])
            .collect();
        let days = n / DAY;
        let first = n - days * DAY;
        let mut buf = Vec::with_capacity(DAY);
        let daily = (0..days)
            .map(|j| {
                buf.clear();
                let a = first + j * DAY;
                buf.extend((a..a + DAY).filter(|&t| usable[t]).map(|t| deseason[t]));
                // A day with fewer than 6 usable hours says little about its level.
                if buf.len() >= 6 {
                    median_mut(&mut buf)
                } else {
                    None
                }
            })
            .collect();
        let damping_hours = (cfg.trend_damping_days * DAY as f64).max(1.0);
        Model {
            prepared,
            seasonal,
            deseason,
            usable,
            daily,
            shifts,
            period: periods.iter().copied().max().unwrap_or(0),
            periods,
            phi: (-1.0 / damping_hours).exp(),
            trend_window_days: cfg.trend_window_days,
        }
    }

    pub fn len(&self) -> usize {
        self.deseason.len()
    }

    /// Index of the day that ends at hour `o` (if `o` is a day boundary of the grid).
    fn day_ending_at(&self, o: usize) -> Option<usize> {
        let n = self.len();
        if o > n || !(n - o).is_multiple_of(DAY) {
            return None;
        }
        let back = (n - o) / DAY;
        self.daily.len().checked_sub(back + 1)
    }

    /// Level and slope seen from origin `o` (a day boundary), using hours `< o` only.
    pub fn state_at(&self, o: usize) -> Option<State> {
        let since = self.shifts.segment_start(o);
        let last_day = self.day_ending_at(o)?;
        let day_first_hour = |j: usize| self.len() - (self.daily.len() - j) * DAY;
        // Trend: resistant-line slope over the daily medians of the current segment (newest first).
        let mut pts: Vec<(f64, f64)> = Vec::with_capacity(self.trend_window_days);
        let mut j = last_day as i64;
        while j >= 0 && pts.len() < self.trend_window_days {
            let ju = j as usize;
            if day_first_hour(ju) < since {
                break;
            }
            if let Some(v) = self.daily[ju] {
                pts.push((ju as f64, v));
            }
            j -= 1;
        }
        // A trend is extrapolated only if it is consistent: the slopes of the whole window and
        // of both its halves must agree in sign, and the smallest of them is used. A dip or a
        // bump inside the window (a holiday, a batch campaign) then does not become a trend
        // that the damped extrapolation would carry for months.
        let slope_per_day = if pts.len() >= 14 {
            let half = pts.len() / 2;
            let all = resistant_slope(&pts);
            let recent = resistant_slope(&pts[..half]);
            let older = resistant_slope(&pts[half..]);
            if all.signum() == recent.signum() && all.signum() == older.signum() {
                all.signum() * all.abs().min(recent.abs()).min(older.abs())
            } else {
                0.0
            }
        } else {
            0.0
        };
        let slope = slope_per_day / DAY as f64;
        // Level: median over the last week of the segment, each hour carried forward along
        // the slope to `o - 1` so a growing series is not read a half-week late.
        let mut vals = Vec::with_capacity(WEEK);
        let mut lookback = WEEK;
        while vals.len() < 12 && lookback <= 4 * WEEK {
            vals.clear();
            let from = o.saturating_sub(lookback).max(since);
            vals.extend(
                (from..o)
                    .filter(|&t| self.usable[t])
                    .map(|t| self.deseason[t] + slope * (o - 1 - t) as f64),
            );
            if from == since {
                break;
            }
            lookback *= 2;
        }
        let level = median_mut(&mut vals)?;
        Some(State {
            level,
            slope,
            since,
        })
    }

    /// Sum of the damped trend multipliers over `k` steps: `phi + phi^2 + ... + phi^k`.
    fn damped(&self, k: usize) -> f64 {
        let phi = self.phi;
        if (1.0 - phi).abs() < 1e-15 {
            return k as f64;
        }
        phi * (1.0 - phi.powi(k as i32)) / (1.0 - phi)
    }

    /// Seasonal value at hour `o + h` as known at origin `o`: the last full cycle repeated.
    fn seasonal_ahead(&self, o: usize, h: usize) -> f64 {
        if self.period == 0 {
            return 0.0;
        }
        let p = self.period;
        let cycles = (h + 1).div_ceil(p);
        let idx = o + h - cycles * p;
        self.seasonal[idx]
    }

    /// Point forecast (log space) of hour `o + h` from origin `o`.
    pub fn point(&self, s: &State, o: usize, h: usize) -> f64 {
        s.level + s.slope * self.damped(h + 1) + self.seasonal_ahead(o, h)
    }
}

/// The final forecast: the point path from the end of the history plus calibrated errors.
pub(crate) fn project(
    model: &Model<'_>,
    signals: Signals,
    cal: &Calibration,
    levels: &[f64],
    data_end: Hour,
    cfg: &ForecastConfig,
) -> Result<GroupForecast, ForecastError> {
    let p = model.prepared;
    let n = model.len();
    let state = model
        .state_at(n)
        .ok_or(ForecastError::InsufficientHistory {
            have: 0,
            need: super::prepare::MIN_OBSERVED,
            data_end,
        })?;
    // The forecast starts at data_end; the incomplete tail between the fitted end and data_end
    // is skipped over (it is forecast by the same path, just not returned).
    let skip = data_end.since(p.end()).max(0) as usize;
    let err_q = cal.table(levels);
    let mut values = vec![Vec::with_capacity(cfg.horizon_hours); levels.len()];
    for i in 0..cfg.horizon_hours {
        let h = skip + i;
        let point = model.point(&state, n, h);
        let q = err_q.at(h);
        for (l, row) in values.iter_mut().enumerate() {
            row.push(p.to_units(point + q[l]));
        }
    }
    // exp is monotone and the error quantiles are sorted, so levels cannot cross; enforce it
    // anyway against rounding so consumers may rely on it.
    for l in 1..values.len() {
        let (lo, hi) = values.split_at_mut(l);
        for (a, b) in lo[l - 1].iter().zip(hi[0].iter_mut()) {
            if *b < *a {
                *b = *a;
            }
        }
    }
    let missing = p.missing;
    Ok(GroupForecast {
        start: data_end,
        levels: levels.to_vec(),
        values,
        signals,
        fit: FitSummary {
            history_hours: n,
            missing_hours: missing,
            fitted_until: p.end(),
            periods: model.periods.clone(),
            level: p.to_units(state.level),
            trend_per_day: state.slope * DAY as f64,
            level_since: p.start.plus(state.since as i64),
            calibration_origins: cal.origins,
        },
    })
}
