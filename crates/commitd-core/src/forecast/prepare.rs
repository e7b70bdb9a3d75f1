//! Input preparation: which hours are known, gaps, and the log transform.

use super::{ForecastConfig, ForecastError, DAY};
use crate::domain::Hour;

/// The fitted window of one series, in log space.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// Absolute hour of index 0.
    pub start: Hour,
    /// `ln(y + offset)`, gaps filled by linear interpolation (see `observed`).
    pub z: Vec<f64>,
    /// False where the input had no value (gap): such hours are never used as evidence.
    pub observed: Vec<bool>,
    /// The `c` of `ln(y + c)`: 5 % of the mean demand, so that a group scaled down to zero stays
    /// finite in log space while relative changes of a busy group are barely distorted.
    pub offset: f64,
    pub missing: usize,
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.z.len()
    }

    /// One past the last fitted hour.
    pub fn end(&self) -> Hour {
        self.start.plus(self.z.len() as i64)
    }

    pub fn to_units(&self, z: f64) -> f64 {
        (z.exp() - self.offset).max(0.0)
    }
}

/// Minimum number of observed hours to forecast at all: two days, so that at least the level
/// and the daily profile mean something.
pub(crate) const MIN_OBSERVED: usize = 2 * DAY;

pub(crate) fn prepare(
    history: &[f64],
    history_start: Hour,
    data_end: Hour,
    cfg: &ForecastConfig,
) -> Result<Prepared, ForecastError> {
    // Hours at or after data_end are not known yet, whatever the slice holds.
    let known = data_end.since(history_start).clamp(0, history.len() as i64) as usize;
    let cutoff = known.saturating_sub(cfg.incomplete_tail_hours);
    let first = cutoff.saturating_sub(cfg.max_history_hours.max(MIN_OBSERVED));
    let raw = &history[first..cutoff];
    let usable = |v: f64| v.is_finite() && v >= 0.0;
    let observed: Vec<bool> = raw.iter().map(|&v| usable(v)).collect();
    let n_obs = observed.iter().filter(|&&o| o).count();
    if n_obs < MIN_OBSERVED {
        return Err(ForecastError::InsufficientHistory {
            have: n_obs,
            need: MIN_OBSERVED,
            data_end,
        });
    }
    let mean = raw.iter().filter(|&&v| usable(v)).sum::<f64>() / n_obs as f64;
    let offset = if mean > 0.0 { 0.05 * mean } else { 1.0 };
    let mut z: Vec<f64> = raw
        .iter()
        .map(|&v| {
            if usable(v) {
                (v + offset).ln()
            } else {
                f64::NAN
            }
        })
        .collect();
    fill_gaps(&mut z, &observed);
    Ok(Prepared {
        start: history_start.plus(first as i64),
        z,
        observed,
        offset,
        missing: raw.len() - n_obs,
    })
}

/// Linear interpolation across gaps; leading and trailing gaps take the nearest value. The
/// filled values only keep the decomposition's smoothers running; they are never evidence.
fn fill_gaps(z: &mut [f64], observed: &[bool]) {
    let mut last: Option<usize> = None;
    let n = z.len();
    let mut i = 0;
    while i < n {
        if observed[i] {
            last = Some(i);
            i += 1;
            continue;
        }
        let next = (i..n).find(|&j| observed[j]);
        match (last, next) {
            (Some(a), Some(b)) => {
                for k in i..b {
                    let w = (k - a) as f64 / (b - a) as f64;
                    z[k] = z[a] * (1.0 - w) + z[b] * w;
                }
                i = b;
            }
            (Some(a), None) => {
                let v = z[a];
                for x in z.iter_mut().skip(i) {
                    *x = v;
                }
                i = n;
            }
            (None, Some(b)) => {
                let v = z[b];
                for x in z.iter_mut().take(b).skip(i) {
                    *x = v;
                }
                i = b;
            }
            (None, None) => i = n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_future_are_not_fitted_and_gaps_are_filled() {
        let mut h: Vec<f64> = (0..200).map(|i| 10.0 + (i % 2) as f64).collect();
        h[50] = f64::NAN;
        h[51] = -1.0;
        let cfg = ForecastConfig::default();
        // data_end at 150: hours 150.. are future, 102..150 the incomplete tail.
        let p = prepare(&h, Hour(1000), Hour(1150), &cfg).unwrap();
        assert_eq!(p.len(), 102);
        assert_eq!(p.end(), Hour(1102));
        assert_eq!(p.missing, 2);
        assert!(!p.observed[50] && !p.observed[51] && p.observed[52]);
        let (a, b) = (p.z[49], p.z[52]);
        assert!((p.z[50] - (a + (b - a) / 3.0)).abs() < 1e-12);
        assert!((p.to_units(p.z[52]) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn too_little_history_is_an_error_not_a_guess() {
        let h = vec![1.0; 60];
        let e = prepare(&h, Hour(0), Hour(60), &ForecastConfig::default()).unwrap_err();
        assert!(matches!(
            e,
            ForecastError::InsufficientHistory { have: 12, .. }
        ));
    }
}
