//! The forecaster on synthetic series whose truth is known: seasonality, trend, spikes, level
//! shifts, gaps and a late billing tail. No wall-clock time anywhere: hours are fixed.

use commitd::domain::Hour;
use commitd::forecast::synth::Spec;
use commitd::forecast::{forecast, forecast_batch, BatchInput, ForecastConfig, GroupForecast};

/// A Monday, 00:00 UTC.
fn t0() -> Hour {
    Hour::parse("2025-01-06T00:00:00Z").unwrap()
}

const WEEK: usize = 168;

fn cfg(horizon: usize) -> ForecastConfig {
    ForecastConfig {
        horizon_hours: horizon,
        ..ForecastConfig::default()
    }
}

/// Mean absolute percentage gap between the P50 and the noiseless truth.
fn p50_error(f: &GroupForecast, spec: &Spec, data_end_idx: usize) -> f64 {
    let p50 = f.quantile(0.5);
    let mut s = 0.0;
    for (h, v) in p50.iter().enumerate() {
        let truth = spec.truth(t0(), data_end_idx + h);
        s += (v - truth).abs() / truth;
    }
    s / p50.len() as f64
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn check_shape(f: &GroupForecast) {
    for l in 0..f.levels.len() {
        assert!(f.values[l].iter().all(|v| v.is_finite() && *v >= 0.0));
        if l > 0 {
            for h in 0..f.len() {
                assert!(f.values[l][h] >= f.values[l - 1][h], "levels cross at {h}");
            }
        }
    }
}

#[test]
fn daily_and_weekly_seasonality_is_reproduced_with_a_calibrated_band() {
    let spec = Spec {
        seed: 11,
        ..Spec::default()
    };
    let hist = 20 * WEEK;
    let horizon = 4 * WEEK;
    let series = spec.generate(t0(), hist + horizon);
    let end = t0().plus(hist as i64);
    let f = forecast(&series[..hist], t0(), end, &cfg(horizon)).unwrap();
    check_shape(&f);
    assert_eq!(f.start, end);
    assert_eq!(f.len(), horizon);
    assert_eq!(f.fit.periods, vec![24, 168]);
    let err = p50_error(&f, &spec, hist);
    assert!(err < 0.04, "P50 is {err:.3} away from the truth");
    // The band is strictly ordered and holds roughly 80 % of the hours that then happened.
    let (p10, p50, p90) = (f.quantile(0.1), f.quantile(0.5), f.quantile(0.9));
    assert!((0..horizon).all(|h| p10[h] < p50[h] && p50[h] < p90[h]));
    let inside = (0..horizon)
        .filter(|&h| series[hist + h] >= p10[h] && series[hist + h] <= p90[h])
        .count() as f64
        / horizon as f64;
    assert!((0.65..=0.95).contains(&inside), "coverage {inside:.2}");
    // Saturday is forecast lower than Wednesday, as in the data (weekly profile kept).
    let wed_noon = 2 * 24 + 12;
    let sat_noon = 5 * 24 + 12;
    assert!(p50[sat_noon] < 0.9 * p50[wed_noon]);
    assert!(!f.signals.unsettled, "{:?}", f.signals.reasons);
    assert!(f.signals.level_shifts.is_empty());
}

#[test]
fn a_linear_trend_is_followed_and_damped() {
    let spec = Spec {
        trend_per_day: 0.004,
        seed: 12,
        ..Spec::default()
    };
    let hist = 20 * WEEK;
    let series = spec.generate(t0(), hist);
    let end = t0().plus(hist as i64);
    let f = forecast(&series, t0(), end, &cfg(3 * 8760)).unwrap();
    check_shape(&f);
    assert!(
        (f.fit.trend_per_day - 0.004).abs() < 0.0015,
        "trend {}",
        f.fit.trend_per_day
    );
    // Two weeks ahead the P50 follows the growth (the last week's mean would be ~5 % low).
    let next = &f.quantile(0.5)[WEEK..3 * WEEK];
    let truth: Vec<f64> = (WEEK..3 * WEEK)
        .map(|h| spec.truth(t0(), hist + h))
        .collect();
    let last_week_mean = mean(&series[hist - WEEK..]);
    assert!(mean(next) > last_week_mean * 1.03);
    assert!((mean(next) / mean(&truth) - 1.0).abs() < 0.04);
    // Damped: three years out the level has not compounded 0.4 %/day (which would be x80).
    let year3 = &f.quantile(0.5)[2 * 8760..];
    assert!(mean(year3) < 3.0 * last_week_mean);
    // Uncertainty grows with the horizon.
    let width = |a: usize, b: usize| mean(&f.values[2][a..b]) - mean(&f.values[0][a..b]);
    assert!(width(2 * 8760, 3 * 8760) > width(0, WEEK));
}

#[test]
fn a_one_off_spike_does_not_raise_the_baseline_and_is_reported() {
    let hist = 16 * WEEK;
    let spike_at = hist - 10 * 24;
    let spec = Spec {
        spikes: vec![(spike_at, 20, 4.0)],
        seed: 13,
        ..Spec::default()
    };
    let calm = Spec {
        spikes: vec![],
        ..spec.clone()
    };
    let series = spec.generate(t0(), hist);
    let end = t0().plus(hist as i64);
    let f = forecast(&series, t0(), end, &cfg(4 * WEEK)).unwrap();
    let g = forecast(&calm.generate(t0(), hist), t0(), end, &cfg(4 * WEEK)).unwrap();
    check_shape(&f);
    let (a, b) = (mean(&f.quantile(0.5)), mean(&g.quantile(0.5)));
    assert!(
        (a / b - 1.0).abs() < 0.02,
        "P50 {a:.2} with spike vs {b:.2} without"
    );
    // In particular the same hours of the following weeks carry no echo of the spike.
    let echo = spike_at + 2 * WEEK - hist + 5;
    let (pe, pc) = (f.quantile(0.5)[echo], g.quantile(0.5)[echo]);
    assert!((pe / pc - 1.0).abs() < 0.05, "echo {pe:.2} vs {pc:.2}");
    let spike_hour = t0().plus((spike_at + 10) as i64);
    assert!(
        f.signals
            .anomalies
            .iter()
            .any(|x| x.start <= spike_hour && spike_hour < x.end && x.peak > 2.5 * x.expected),
        "{:?}",
        f.signals.anomalies
    );
    assert!(
        f.signals.level_shifts.is_empty(),
        "{:?}",
        f.signals.level_shifts
    );
    assert!(!f.signals.unsettled, "{:?}", f.signals.reasons);
}

#[test]
fn a_spike_in_progress_makes_the_group_unsettled_without_raising_it() {
    let hist = 16 * WEEK;
    // The data ends at `hist`; the last 48 h are the unfitted tail, so the spike starts 20 h
    // before the fitted end.
    let spec = Spec {
        spikes: vec![(hist - 48 - 20, 200, 3.0)],
        seed: 14,
        ..Spec::default()
    };
    let series = spec.generate(t0(), hist);
    let f = forecast(&series, t0(), t0().plus(hist as i64), &cfg(2 * WEEK)).unwrap();
    assert!(f.signals.unsettled);
    let p50 = f.quantile(0.5);
    let truth: Vec<f64> = (0..2 * WEEK).map(|h| spec.truth(t0(), hist + h)).collect();
    assert!(mean(&p50) < 1.1 * mean(&truth), "bought into the spike");
}

#[test]
fn after_a_level_shift_the_recent_level_governs() {
    let hist = 20 * WEEK;
    let shift_at = hist - 35 * 24 + 7;
    let spec = Spec {
        shifts: vec![(shift_at, 0.4)],
        seed: 15,
        ..Spec::default()
    };
    let series = spec.generate(t0(), hist);
    let f = forecast(&series, t0(), t0().plus(hist as i64), &cfg(4 * WEEK)).unwrap();
    check_shape(&f);
    let err = p50_error(&f, &spec, hist);
    assert!(err < 0.06, "P50 is {err:.3} away from the new level");
    assert_eq!(
        f.signals.level_shifts.len(),
        1,
        "{:?}",
        f.signals.level_shifts
    );
    let s = &f.signals.level_shifts[0];
    assert!(
        s.hour.since(t0().plus(shift_at as i64)).abs() <= 24,
        "{s:?}"
    );
    assert!((s.after / s.before - 0.4).abs() < 0.06, "{s:?}");
    // Five weeks after the shift the group has settled.
    assert!(!f.signals.unsettled, "{:?}", f.signals.reasons);
    assert_eq!(f.fit.level_since, s.hour);
}

#[test]
fn a_recent_level_shift_is_followed_and_flagged_unsettled() {
    let hist = 20 * WEEK;
    // Nine days before the data end: seven days of fitted data at the new level.
    let shift_at = hist - 9 * 24;
    let spec = Spec {
        shifts: vec![(shift_at, 1.8)],
        seed: 16,
        ..Spec::default()
    };
    let series = spec.generate(t0(), hist);
    let f = forecast(&series, t0(), t0().plus(hist as i64), &cfg(4 * WEEK)).unwrap();
    assert!(f.signals.unsettled);
    assert!(
        f.signals.reasons[0].contains("level shift"),
        "{:?}",
        f.signals.reasons
    );
    let err = p50_error(&f, &spec, hist);
    assert!(err < 0.08, "P50 is {err:.3} away from the new level");
}

#[test]
fn gaps_an_incomplete_tail_and_future_hours_are_not_taken_as_usage() {
    let hist = 16 * WEEK;
    let spec = Spec {
        seed: 17,
        ..Spec::default()
    };
    let mut series = spec.generate(t0(), hist + WEEK);
    // Three days missing in the middle.
    for v in &mut series[8 * WEEK..8 * WEEK + 72] {
        *v = f64::NAN;
    }
    // The last 48 h before the data end arrived only in part (late billing).
    for v in &mut series[hist - 48..hist] {
        *v *= 0.3;
    }
    // Hours after the data end hold garbage the forecaster must not see.
    for v in &mut series[hist..] {
        *v = 1e6;
    }
    let f = forecast(&series, t0(), t0().plus(hist as i64), &cfg(2 * WEEK)).unwrap();
    assert_eq!(f.fit.missing_hours, 72);
    assert_eq!(f.fit.fitted_until, t0().plus(hist as i64 - 48));
    let err = p50_error(&f, &spec, hist);
    assert!(err < 0.05, "P50 is {err:.3} away from the truth");
    assert!(
        f.signals.level_shifts.is_empty(),
        "{:?}",
        f.signals.level_shifts
    );
}

#[test]
fn too_short_a_history_is_an_error_and_batch_matches_single() {
    let short = vec![5.0; 60];
    assert!(forecast(&short, t0(), t0().plus(60), &cfg(24)).is_err());
    let a = Spec {
        seed: 18,
        ..Spec::default()
    }
    .generate(t0(), 6 * WEEK);
    let b = Spec {
        base: 3.0,
        seed: 19,
        ..Spec::default()
    }
    .generate(t0(), 6 * WEEK);
    let end = t0().plus(6 * WEEK as i64);
    let inputs = [
        BatchInput {
            history: &a,
            history_start: t0(),
        },
        BatchInput {
            history: &b,
            history_start: t0(),
        },
        BatchInput {
            history: &short,
            history_start: t0().plus(6 * WEEK as i64 - 60),
        },
    ];
    let out = forecast_batch(&inputs, end, &cfg(WEEK));
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0].as_ref().unwrap(),
        &forecast(&a, t0(), end, &cfg(WEEK)).unwrap()
    );
    assert!(out[2].is_err());
    // A small group stays small: the forecaster is scale-free.
    assert!(mean(&out[1].as_ref().unwrap().quantile(0.5)) < 4.0);
}
