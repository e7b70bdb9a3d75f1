//! Signals for the planner: anomalies (spikes and dips), level shifts, and whether a group's
//! usage is `unsettled` (a recent shift, an unconfirmed change, or a spike in progress), in
//! which case purchases for it should wait: never buy into a spike.
//!
//! Level-shift candidates come from augurs' Bayesian online changepoint detector run on the
//! daily medians of the deseasonalised log series (daily medians: an hourly spike cannot move
//! them, and 365 points keep BOCPD cheap). BOCPD is sensitive by design, so a candidate is kept
//! only if the level moved materially (`shift_min_relative`, and 4 daily noise deviations) and
//! stayed moved for `shift_confirm_days`; a shorter excursion is an anomaly, not a new level.

use super::prepare::Prepared;
use super::{median_mut, ForecastConfig, DAY, WEEK};
use crate::domain::Hour;
use augurs::changepoint::{dist::NormalGamma, Detector, NormalGammaDetector};
use serde::{Deserialize, Serialize};

/// A run of hours whose usage was far from the model (a spike or a dip).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub start: Hour,
    /// Exclusive.
    pub end: Hour,
    /// The most extreme usage seen in the run, instance-hours per hour.
    pub peak: f64,
    /// What the model expected at that hour.
    pub expected: f64,
}

/// A persistent change of the usage level (migration, decommission, new workload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelShift {
    /// First hour at the new level.
    pub hour: Hour,
    /// Typical deseasonalised usage before and after, instance-hours per hour.
    pub before: f64,
    pub after: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    pub anomalies: Vec<Anomaly>,
    pub level_shifts: Vec<LevelShift>,
    /// True when the planner should hold purchases for this group (see `reasons`).
    pub unsettled: bool,
    pub reasons: Vec<String>,
}

/// A detected shift, in the fitted window's indices and log space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ShiftAt {
    pub idx: usize,
    pub before: f64,
    pub after: f64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Shifts {
    pub accepted: Vec<ShiftAt>,
    /// A material change in the last days that has not held long enough to be confirmed.
    pub pending: Option<ShiftAt>,
}

impl Shifts {
    /// Where the level seen from origin `o` starts: the last shift with at least a day of data
    /// after it before `o`, else the beginning.
    pub fn segment_start(&self, o: usize) -> usize {
        self.accepted
            .iter()
            .rev()
            .find(|s| s.idx + DAY <= o)
            .map_or(0, |s| s.idx)
    }

    /// The first accepted shift strictly after hour `o`, if any.
    pub fn next_after(&self, o: usize) -> Option<usize> {
        self.accepted.iter().map(|s| s.idx).find(|&i| i > o)
    }

    fn near(&self, t: usize, radius: usize) -> bool {
        self.accepted
            .iter()
            .chain(self.pending.iter())
            .any(|s| s.idx.abs_diff(t) <= radius)
    }
}

/// Daily medians of `x` over observed hours, days aligned to end at `x.len()`.
fn daily_medians(x: &[f64], observed: &[bool]) -> (usize, Vec<Option<f64>>) {
    let n = x.len();
    let days = n / DAY;
    let first = n - days * DAY;
    let mut buf = Vec::with_capacity(DAY);
    let v = (0..days)
        .map(|j| {
            buf.clear();
            let a = first + j * DAY;
            buf.extend((a..a + DAY).filter(|&t| observed[t]).map(|t| x[t]));
            if buf.len() >= 6 {
                median_mut(&mut buf)
            } else {
                None
            }
        })
        .collect();
    (first, v)
}

fn robust_sd(mut v: Vec<f64>) -> f64 {
    let Some(med) = median_mut(&mut v) else {
        return 0.0;
    };
    for x in v.iter_mut() {
        *x = (*x - med).abs();
    }
    1.4826 * median_mut(&mut v).unwrap_or(0.0)
}

fn median_of(days: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = days.iter().flatten().copied().collect();
    median_mut(&mut v)
}

fn mean_of(days: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = days.iter().flatten().copied().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Level shifts of the deseasonalised log series `deseason` (before anomaly removal).
pub(crate) fn level_shifts(p: &Prepared, deseason: &[f64], cfg: &ForecastConfig) -> Shifts {
    let (first, daily) = daily_medians(deseason, &p.observed);
    let m = daily.len();
    let mut out = Shifts::default();
    if m < 7 {
        return out;
    }
    // Carry the last known day over missing days so BOCPD sees a continuous series.
    let mut filled = Vec::with_capacity(m);
    let mut last = daily.iter().flatten().next().copied().unwrap_or(0.0);
    for d in &daily {
        if let Some(v) = d {
            last = *v;
        }
        filled.push(last);
    }
    let diffs: Vec<f64> = filled.windows(2).map(|w| w[1] - w[0]).collect();
    let sigma = (robust_sd(diffs) / std::f64::consts::SQRT_2).max(1e-3);
    let centre = median_mut(&mut filled.clone()).unwrap_or(0.0);
    let u: Vec<f64> = filled.iter().map(|v| (v - centre) / sigma).collect();
    // Expected run length 100 days; the prior matches standardised data.
    let mut det =
        NormalGammaDetector::normal_gamma(100.0, NormalGamma::new_unchecked(0.0, 1.0, 1.0, 1.0));
    let mut cands = det.detect_changepoints(&u);
    cands.retain(|&b| b > 0 && b < m);
    cands.sort_unstable();
    cands.dedup();

    let min_jump = (1.0 + cfg.shift_min_relative).ln().max(4.0 * sigma);
    let confirm = cfg.shift_confirm_days.max(1);
    let mut last_accepted = 0usize;
    let mut last_cand_day: Option<usize> = None;
    for &cand in &cands {
        // BOCPD's index can be a day off: take the split within +-2 days with the largest
        // 3-day contrast (means, so that a day that is half before and half after loses).
        let b = (cand.saturating_sub(2).max(1)..=(cand + 2).min(m - 1))
            .max_by(|&x, &y| {
                let c = |b: usize| {
                    let a = mean_of(&daily[b.saturating_sub(3)..b]);
                    let z = mean_of(&daily[b..(b + 3).min(m)]);
                    match (a, z) {
                        (Some(a), Some(z)) => (z - a).abs(),
                        _ => 0.0,
                    }
                };
                c(x).total_cmp(&c(y))
            })
            .unwrap_or(cand);
        if last_cand_day == Some(b) {
            continue;
        }
        last_cand_day = Some(b);
        let from = last_accepted.max(b.saturating_sub(14));
        if b < from + 3 {
            continue;
        }
        let (Some(before), Some(after)) = (
            median_of(&daily[from..b]),
            median_of(&daily[b..(b + 14).min(m)]),
        ) else {
            continue;
        };
        let jump = after - before;
        if jump.abs() < min_jump {
            continue;
        }
        // How many days did the level stay on the far side of the half-way mark?
        let held = daily[b..]
            .iter()
            .take_while(|d| d.is_none_or(|v| (v - before) * jump.signum() >= jump.abs() / 2.0))
            .count();
        let idx = refine_hour(deseason, &p.observed, first + b * DAY);
        let shift = ShiftAt { idx, before, after };
        if held >= confirm {
            out.accepted.push(shift);
            last_accepted = b;
            out.pending = None;
        } else if b + held >= m {
            // Still at the new level at the end of the data, but not long enough to trust.
            out.pending = Some(shift);
        }
        // Otherwise the level came back: a temporary excursion, reported as anomalies.
    }
    out
}

/// The hour within a day of `guess` that best splits the series into a before and an after.
fn refine_hour(x: &[f64], observed: &[bool], guess: usize) -> usize {
    let n = x.len();
    let mean = |a: usize, b: usize| {
        let (s, c) = (a..b)
            .filter(|&t| observed[t])
            .fold((0.0, 0usize), |(s, c), t| (s + x[t], c + 1));
        (c > 0).then(|| s / c as f64)
    };
    let lo = guess.saturating_sub(DAY).max(DAY);
    let hi = (guess + DAY).min(n.saturating_sub(DAY));
    (lo..=hi)
        .filter_map(|s| {
            let a = mean(s - DAY, s)?;
            let b = mean(s, s + DAY)?;
            Some((s, (b - a).abs()))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(guess, |(s, _)| s)
}

/// Hours whose remainder is an outlier: beyond `anomaly_sigmas` robust deviations and the
/// relative floor. Hours within a week of a level shift are left alone: there the remainder
/// only shows the decomposition's trend smoothing over the step.
pub(crate) fn anomaly_mask(
    p: &Prepared,
    remainder: &[f64],
    shifts: &Shifts,
    cfg: &ForecastConfig,
) -> Vec<bool> {
    let obs: Vec<f64> = remainder
        .iter()
        .zip(&p.observed)
        .filter(|(_, &o)| o)
        .map(|(r, _)| *r)
        .collect();
    let s = robust_sd(obs);
    let thr = (cfg.anomaly_sigmas * s).max((1.0 + cfg.anomaly_min_relative).ln());
    (0..remainder.len())
        .map(|t| p.observed[t] && remainder[t].abs() > thr && !shifts.near(t, WEEK))
        .collect()
}

/// Turns the masks and shifts into the public signals, and decides `unsettled`.
pub(crate) fn summarize(
    p: &Prepared,
    remainder: &[f64],
    anomalous: &[bool],
    shifts: &Shifts,
    cfg: &ForecastConfig,
) -> Signals {
    let n = p.len();
    let mut sig = Signals::default();
    let mut t = 0;
    while t < n {
        if !anomalous[t] {
            t += 1;
            continue;
        }
        // Merge runs separated by at most 2 quiet hours into one anomaly.
        let start = t;
        let mut end = t + 1;
        let mut k = end;
        while k < n && k <= end + 2 {
            if anomalous[k] {
                end = k + 1;
            }
            k += 1;
        }
        let worst = (start..end)
            .filter(|&i| anomalous[i])
            .max_by(|&a, &b| remainder[a].abs().total_cmp(&remainder[b].abs()))
            .unwrap_or(start);
        sig.anomalies.push(Anomaly {
            start: p.start.plus(start as i64),
            end: p.start.plus(end as i64),
            peak: p.to_units(p.z[worst]),
            expected: p.to_units(p.z[worst] - remainder[worst]),
        });
        t = end;
    }
    for s in &shifts.accepted {
        sig.level_shifts.push(LevelShift {
            hour: p.start.plus(s.idx as i64),
            before: p.to_units(s.before),
            after: p.to_units(s.after),
        });
    }
    let settle = cfg.settle_days * DAY;
    if let Some(s) = shifts.accepted.last() {
        if n - s.idx < settle {
            sig.reasons.push(format!(
                "level shift at {} ({:.2} -> {:.2} per hour) is {} days old (settles after {})",
                p.start.plus(s.idx as i64),
                p.to_units(s.before),
                p.to_units(s.after),
                (n - s.idx) / DAY,
                cfg.settle_days
            ));
        }
    }
    if let Some(s) = &shifts.pending {
        sig.reasons.push(format!(
            "possible level change since {} ({:.2} -> {:.2} per hour), not confirmed yet",
            p.start.plus(s.idx as i64),
            p.to_units(s.before),
            p.to_units(s.after)
        ));
    }
    if let Some(a) = sig.anomalies.last() {
        if a.end.since(p.start) as usize + DAY > n {
            sig.reasons.push(format!(
                "anomaly in progress since {} (peak {:.2} vs {:.2} expected)",
                a.start, a.peak, a.expected
            ));
        }
    }
    sig.unsettled = !sig.reasons.is_empty();
    sig
}
