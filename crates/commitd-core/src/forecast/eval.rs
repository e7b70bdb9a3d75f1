//! Accuracy measures and the seasonal-naive baseline, for the benchmark (`commitd
//! bench-forecast`) and the tests. Pure: series in, numbers out.

/// The levels every accuracy figure is reported at.
pub const EVAL_LEVELS: [f64; 3] = [0.1, 0.5, 0.9];

/// Pinball (quantile) loss of predicting `q` at level `tau` when `y` happened.
pub fn pinball(y: f64, q: f64, tau: f64) -> f64 {
    let d = y - q;
    if d >= 0.0 {
        tau * d
    } else {
        (tau - 1.0) * d
    }
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Seasonal-naive quantiles, as statsforecast's `SeasonalNaive` computes them: the last
/// season repeated, with normal intervals from the one-season residuals' deviation widened by
/// `sqrt(seasons ahead)`. `history` is every known hour up to the origin (non-finite = gap).
/// `None` if less than two seasons are known.
pub fn seasonal_naive(
    history: &[f64],
    season: usize,
    horizon: usize,
    levels: &[f64],
) -> Option<Vec<Vec<f64>>> {
    let n = history.len();
    if season == 0 || n < 2 * season {
        return None;
    }
    let ok = |v: f64| v.is_finite() && v >= 0.0;
    let mut sq = 0.0;
    let mut cnt = 0usize;
    for t in season..n {
        if ok(history[t]) && ok(history[t - season]) {
            let r = history[t] - history[t - season];
            sq += r * r;
            cnt += 1;
        }
    }
    if cnt == 0 {
        return None;
    }
    let sigma = (sq / cnt as f64).sqrt();
    // The last value seen at each position of the season (gaps fall back a season).
    let last: Vec<f64> = (0..season)
        .map(|k| {
            let mut t = n - season + k;
            loop {
                if ok(history[t]) {
                    return history[t];
                }
                if t < season {
                    return 0.0;
                }
                t -= season;
            }
        })
        .collect();
    Some(
        levels
            .iter()
            .map(|&l| {
                let z = normal_quantile(l);
                (0..horizon)
                    .map(|h| {
                        let k = (h / season + 1) as f64;
                        (last[h % season] + z * sigma * k.sqrt()).max(0.0)
                    })
                    .collect()
            })
            .collect(),
    )
}

/// Accumulated accuracy of one method at the [`EVAL_LEVELS`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    pub pinball: [f64; 3],
    /// Hours whose actual lay inside [P10, P90].
    pub covered: usize,
    pub hours: usize,
    /// Sum of the actuals, to scale the loss (series of different sizes are comparable).
    pub actual: f64,
}

impl Score {
    pub fn add(&mut self, y: f64, q: [f64; 3]) {
        for (i, tau) in EVAL_LEVELS.iter().enumerate() {
            self.pinball[i] += pinball(y, q[i], *tau);
        }
        if y >= q[0] && y <= q[2] {
            self.covered += 1;
        }
        self.hours += 1;
        self.actual += y;
    }

    pub fn merge(&mut self, o: &Score) {
        for i in 0..3 {
            self.pinball[i] += o.pinball[i];
        }
        self.covered += o.covered;
        self.hours += o.hours;
        self.actual += o.actual;
    }

    /// Pinball loss at level `i` divided by the mean actual (scale-free).
    pub fn scaled(&self, i: usize) -> f64 {
        if self.actual > 0.0 {
            self.pinball[i] / self.actual
        } else {
            0.0
        }
    }

    /// Mean of the three scaled losses.
    pub fn scaled_mean(&self) -> f64 {
        (0..3).map(|i| self.scaled(i)).sum::<f64>() / 3.0
    }

    pub fn coverage(&self) -> f64 {
        if self.hours > 0 {
            self.covered as f64 / self.hours as f64
        } else {
            0.0
        }
    }
}

/// Scores quantile paths `q[level][h]` (levels = [`EVAL_LEVELS`]) against `actual[h]` for
/// `h` in `[from_h, actual.len())`, skipping unknown actuals.
pub fn score(actual: &[f64], q: &[Vec<f64>], from_h: usize) -> Score {
    let mut s = Score::default();
    for (h, &y) in actual.iter().enumerate().skip(from_h) {
        if !(y.is_finite() && y >= 0.0) || h >= q[0].len() {
            continue;
        }
        s.add(y, [q[0][h], q[1][h], q[2][h]]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinball_is_asymmetric() {
        assert!((pinball(10.0, 8.0, 0.9) - 1.8).abs() < 1e-12);
        assert!((pinball(8.0, 10.0, 0.9) - 0.2).abs() < 1e-12);
        assert_eq!(pinball(5.0, 5.0, 0.5), 0.0);
    }

    #[test]
    fn normal_quantiles_are_right() {
        assert!(normal_quantile(0.5).abs() < 1e-9);
        assert!((normal_quantile(0.9) - 1.281_551_565_5).abs() < 1e-6);
        assert!((normal_quantile(0.1) + 1.281_551_565_5).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn seasonal_naive_repeats_last_season_and_widens() {
        let h: Vec<f64> = (0..48)
            .map(|i| (i % 24) as f64 + if i >= 24 { 1.0 } else { 0.0 })
            .collect();
        let q = seasonal_naive(&h, 24, 48, &[0.1, 0.5, 0.9]).unwrap();
        assert_eq!(q[1][0], 1.0);
        assert_eq!(q[1][25], 2.0);
        // residuals are all 1.0 -> sigma 1; second season is sqrt(2) wider.
        let w0 = q[2][0] - q[1][0];
        let w1 = q[2][24] - q[1][24];
        assert!((w1 / w0 - 2f64.sqrt()).abs() < 1e-9);
        assert!(seasonal_naive(&h[..30], 24, 5, &[0.5]).is_none());
    }

    #[test]
    fn score_counts_coverage_and_scales() {
        let q = vec![vec![1.0, 1.0], vec![2.0, 2.0], vec![3.0, 3.0]];
        let s = score(&[2.0, 5.0], &q, 0);
        assert_eq!(s.hours, 2);
        assert_eq!(s.covered, 1);
        assert!((s.coverage() - 0.5).abs() < 1e-12);
        // 0.1 * (3 - 2) + 0.9 * (5 - 3)
        assert!((s.pinball[2] - 1.9).abs() < 1e-12);
        assert!((s.scaled(1) - (0.5 * 3.0) / 7.0).abs() < 1e-12);
    }
}
