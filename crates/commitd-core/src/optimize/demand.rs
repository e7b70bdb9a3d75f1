//! Building [`DemandInput`] from a usage model: actual demand (hindsight) and a documented
//! seasonal-naive fallback for when no forecast is given.

use super::input::DemandInput;
use crate::domain::{Hour, UsageModel};

/// Actual instance-hours of every group over `[from, from + hours)` (hindsight mode). Hours the
/// model does not cover count as zero demand: the caller chooses a window inside the bill.
pub fn actual(model: &UsageModel, from: Hour, hours: usize) -> DemandInput {
    let series = model
        .groups
        .iter()
        .map(|g| {
            let path = (0..hours)
                .map(|h| {
                    model
                        .range
                        .index(from.plus(h as i64))
                        .map(|i| g.quantity[i])
                        .unwrap_or(0.0)
                })
                .collect();
            (g.group.clone(), path)
        })
        .collect();
    let mut d = DemandInput::actual(from, series);
    d.hours = hours;
    d
}

/// Seasonal-naive scenarios: for each hour of the week, the empirical quantiles (at `levels`)
/// of the same hour in the last `weeks` weeks before `at`, repeated over `hours`.
///
/// This is the stand-in for a forecast: it sees only hours before `at` (never the future), has
/// a weekly shape and a spread, but no trend. Hours the bill has not reported yet (billing data
/// arrives late) are skipped, not read as zero.
pub fn seasonal_naive(
    model: &UsageModel,
    at: Hour,
    hours: usize,
    weeks: usize,
    levels: &[f64],
) -> DemandInput {
    let last = model
        .last_observed
        .map(|h| h.plus(1))
        .unwrap_or(model.range.end)
        .min(at);
    let weeks = weeks.max(1);
    let groups = model
        .groups
        .iter()
        .map(|g| {
            // samples[how][k]: the value of hour-of-week `how` in each of the last weeks.
            let mut samples: Vec<Vec<f64>> = vec![Vec::new(); 168];
            for back in 1..=(weeks * 168) as i64 {
                let h = last.plus(-back);
                if let Some(i) = model.range.index(h) {
                    samples[h.hour_of_week() as usize].push(g.quantity[i]);
                }
            }
            for s in &mut samples {
                s.sort_by(f64::total_cmp);
            }
            let paths = levels
                .iter()
                .map(|&q| {
                    (0..hours)
                        .map(|k| {
                            let s = &samples[at.plus(k as i64).hour_of_week() as usize];
                            quantile(s, q)
                        })
                        .collect()
                })
                .collect();
            (g.group.clone(), paths)
        })
        .collect();
    DemandInput::from_quantiles(at, levels, groups)
}

/// Linear-interpolated quantile of sorted values (0 if empty).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GroupSeries, HourRange, IgnoredRows, Provider, UsageGroup};

    #[test]
    fn seasonal_naive_repeats_the_weekly_profile_and_never_reads_the_future() {
        let start = Hour(488_424); // a Monday
        let g = UsageGroup::new(Provider::Aws, "r", "m5.large", None, "Linux", "Shared");
        let mut s = GroupSeries::empty(g, 168 * 3);
        for (i, v) in s.quantity.iter_mut().enumerate() {
            // weeks 0 and 1: hour-of-week value; week 2 (the "future"): 1000.
            *v = if i < 336 { (i % 168) as f64 } else { 1000.0 };
        }
        let m = UsageModel {
            range: HourRange::new(start, start.plus(168 * 3)),
            currency: "USD".into(),
            groups: vec![s],
            commitments: vec![],
            last_observed: Some(start.plus(168 * 3 - 1)),
            rows_read: 0,
            ignored: IgnoredRows::default(),
        };
        let at = start.plus(336);
        let d = seasonal_naive(&m, at, 200, 4, &[0.1, 0.5, 0.9]);
        assert_eq!(d.scenarios.len(), 3);
        let p50 = &d.groups[0].scenarios[1];
        assert_eq!(p50[0], 0.0);
        assert_eq!(p50[5], 5.0);
        assert_eq!(p50[170], 2.0);
        assert!(d.groups[0].scenarios.iter().flatten().all(|v| *v < 1000.0));
        let a = actual(&m, at, 10);
        assert_eq!(a.groups[0].scenarios[0], vec![1000.0; 10]);
    }
}
