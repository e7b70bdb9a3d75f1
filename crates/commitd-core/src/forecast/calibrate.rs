//! Empirical (conformal-style) calibration of the quantiles.
//!
//! The forecaster is replayed from rolling origins inside the history (each origin sees only
//! the hours before it) and its signed log-space errors are pooled per horizon bucket. A
//! quantile of the future is the point forecast plus the same quantile of those errors, so the
//! P10..P90 band holds ~80 % of hours whenever the past is a fair sample of the future.
//! Model-based intervals (MSTL/ETS) assume Gaussian, independent errors, which hourly usage
//! with regime changes is not; replayed errors need no such assumption.

use super::model::Model;
use super::{quantile_sorted, DAY};

/// Horizon buckets (hours ahead, lower edge inclusive).
const EDGES: [usize; 9] = [0, 24, 168, 720, 2_160, 4_380, 8_760, 17_520, usize::MAX];
/// A representative horizon of each bucket, for interpolation between buckets.
const MIDS: [f64; 8] = [
    12.0, 96.0, 444.0, 1_440.0, 3_270.0, 6_570.0, 13_140.0, 21_900.0,
];
/// Samples kept per bucket (strided, so every hour of the week is represented).
const TARGET_SAMPLES: usize = 3_000;
/// Fewer samples than this and a bucket borrows from the bucket below.
const MIN_SAMPLES: usize = 60;
/// Origins replayed at most (spread evenly over the history).
const MAX_ORIGINS: usize = 200;
/// An origin needs two weeks of history behind it.
const MIN_TRAIN: usize = 14 * DAY;

/// Sorted signed errors per horizon bucket.
#[derive(Clone, Debug)]
pub(crate) struct Calibration {
    pub buckets: Vec<Vec<f64>>,
    pub origins: usize,
}

/// Error quantiles per bucket for a fixed set of levels, ready for per-hour lookup.
pub(crate) struct Table {
    /// `q[bucket][level]`.
    q: Vec<Vec<f64>>,
    ln_mids: Vec<f64>,
}

impl Table {
    /// Error quantiles at `h` hours ahead: linear in `ln(h)` between bucket mid-points.
    pub fn at(&self, h: usize) -> Vec<f64> {
        let x = ((h + 1) as f64).ln();
        let k = self.ln_mids.partition_point(|&m| m < x);
        if k == 0 {
            return self.q[0].clone();
        }
        if k >= self.q.len() {
            return self.q[self.q.len() - 1].clone();
        }
        let w = (x - self.ln_mids[k - 1]) / (self.ln_mids[k] - self.ln_mids[k - 1]);
        self.q[k - 1]
            .iter()
            .zip(&self.q[k])
            .map(|(a, b)| a * (1.0 - w) + b * w)
            .collect()
    }
}

impl Calibration {
    pub fn table(&self, levels: &[f64]) -> Table {
        let mut q: Vec<Option<Vec<f64>>> = self
            .buckets
            .iter()
            .map(|b| {
                (b.len() >= MIN_SAMPLES)
                    .then(|| levels.iter().map(|&l| quantile_sorted(b, l)).collect())
            })
            .collect();
        // A bucket without enough evidence (horizons longer than the history allows) borrows
        // the widest calibrated one below it, widened around its median like a random walk
        // (sqrt of the horizon ratio, at most 3x): uncertainty does not stop growing where
        // our evidence stops.
        let mut last: Option<(usize, Vec<f64>)> = None;
        for b in 0..q.len() {
            match &q[b] {
                Some(v) => last = Some((b, v.clone())),
                None => {
                    if let Some((a, v)) = &last {
                        let f = (MIDS[b] / MIDS[*a]).sqrt().min(3.0);
                        let med = median_level(levels, v);
                        q[b] = Some(v.iter().map(|x| med + (x - med) * f).collect());
                    }
                }
            }
        }
        // Buckets below the first calibrated one (cannot happen with the pooled fallback,
        // but keep the table total) copy it.
        let first = q
            .iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_else(|| vec![0.0; levels.len()]);
        let q = q
            .into_iter()
            .map(|v| v.unwrap_or_else(|| first.clone()))
            .collect();
        Table {
            q,
            ln_mids: MIDS.iter().map(|m| m.ln()).collect(),
        }
    }
}

/// The error at the median level (interpolated), the centre that widening keeps in place.
fn median_level(levels: &[f64], v: &[f64]) -> f64 {
    let i = levels.partition_point(|&l| l < 0.5);
    if i < levels.len() && (levels[i] - 0.5).abs() < 1e-12 {
        return v[i];
    }
    if i == 0 {
        return v[0];
    }
    if i == levels.len() {
        return v[i - 1];
    }
    let w = (0.5 - levels[i - 1]) / (levels[i] - levels[i - 1]);
    v[i - 1] * (1.0 - w) + v[i] * w
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Replays the forecaster from rolling origins and collects its errors against the observed
/// hours (anomalies included: spikes are real demand the band should know about).
pub(crate) fn calibrate(model: &Model<'_>, remainder: &[f64]) -> Calibration {
    let n = model.len();
    let p = model.prepared;
    let nb = EDGES.len() - 1;
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); nb];
    // Origins on the same hour of day as the real forecast origin (day boundaries of the grid).
    let min_o = MIN_TRAIN.max(model.period);
    let mut origins: Vec<usize> = (1..)
        .map(|k| n.saturating_sub(k * DAY))
        .take_while(|&o| o >= min_o && o > 0)
        .collect();
    if origins.len() > MAX_ORIGINS {
        let step = origins.len().div_ceil(MAX_ORIGINS);
        origins = origins.into_iter().step_by(step).collect();
    }
    let states: Vec<(usize, super::model::State)> = origins
        .iter()
        .filter_map(|&o| model.state_at(o).map(|s| (o, s)))
        .collect();
    for b in 0..nb {
        let (lo, hi) = (EDGES[b], EDGES[b + 1]);
        // Pairs available in this bucket, to pick a stride that keeps ~TARGET_SAMPLES.
        let pairs: usize = states
            .iter()
            .map(|(o, _)| (n - o).min(hi).saturating_sub(lo))
            .sum();
        if pairs == 0 {
            continue;
        }
        let mut stride = (pairs / TARGET_SAMPLES).max(1);
        // A stride coprime with 24 walks through every hour of the day across origins.
        while stride > 1 && gcd(stride, DAY) != 1 {
            stride += 1;
        }
        let bucket = &mut buckets[b];
        for (i, (o, s)) in states.iter().enumerate() {
            // Errors across a detected level shift measure that one migration, which the
            // forecast has already absorbed; pooled in, they would bias every group that ever
            // moved. Undetected (smaller) changes stay in and keep the band honest.
            let end = model.shifts.next_after(*o).map_or(n, |x| x.max(*o)) - o;
            let end = end.min(hi);
            let mut h = lo + (i * 7) % stride;
            while h < end {
                let t = o + h;
                if p.observed[t] {
                    bucket.push(p.z[t] - model.point(s, *o, h));
                }
                h += stride;
            }
        }
    }
    if buckets[0].len() < MIN_SAMPLES {
        // Too short to replay: fall back on the in-sample remainder, which understates the
        // error; the widening of longer buckets then does the rest.
        buckets[0] = remainder
            .iter()
            .zip(&p.observed)
            .filter(|(_, &o)| o)
            .map(|(r, _)| *r)
            .collect();
    }
    for b in buckets.iter_mut() {
        b.sort_by(f64::total_cmp);
    }
    Calibration {
        buckets,
        origins: states.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_interpolates_and_widens_missing_buckets() {
        let mut buckets = vec![Vec::new(); 8];
        buckets[0] = (0..=100).map(|i| (i as f64 - 50.0) / 100.0).collect();
        buckets[1] = (0..=100).map(|i| (i as f64 - 50.0) / 50.0).collect();
        let cal = Calibration {
            buckets,
            origins: 10,
        };
        let t = cal.table(&[0.1, 0.5, 0.9]);
        let q0 = t.at(0);
        assert!((q0[0] + 0.4).abs() < 1e-9 && q0[1].abs() < 1e-9);
        let q1 = t.at(95);
        assert!((q1[2] - 0.8).abs() < 1e-9, "{q1:?}");
        // Between the two mids, strictly between their widths.
        let qm = t.at(40);
        assert!(qm[2] > 0.4 && qm[2] < 0.8);
        // Beyond the evidence the band keeps widening, capped at 3x.
        let far = t.at(20_000);
        assert!((far[2] - 2.4).abs() < 1e-9, "{far:?}");
        assert!(far[0] < far[1] && far[1] < far[2]);
    }
}
