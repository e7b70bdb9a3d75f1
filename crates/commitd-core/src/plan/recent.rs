//! What the recent known usage says: quantiles, trends, daily levels, and the bill of a
//! portfolio over the last known hours. Shared by the planners.

use super::{PlanError, Situation};
use crate::billing::BillingEngine;
use crate::domain::Commitment;

pub(crate) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let k = ((values.len() - 1) as f64 * q).floor() as usize;
    let (_, v, _) = values.select_nth_unstable_by(k, f64::total_cmp);
    *v
}

/// The 20th percentile of the last 28 days of a series: the level a commitment would cover.
pub(crate) fn recent_level(series: &[f64]) -> f64 {
    let mut tail = series[series.len().saturating_sub(28 * 24)..].to_vec();
    quantile(&mut tail, 0.2)
}

/// Least-squares slope of `y` against its index, its standard error and the mean of `y`.
pub(crate) fn slope(y: &[f64]) -> Option<(f64, f64, f64)> {
    let n = y.len() as f64;
    if y.len() < 3 {
        return None;
    }
    let mx = (n - 1.0) / 2.0;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mx;
        sxx += dx * dx;
        sxy += dx * (v - my);
    }
    let b = sxy / sxx;
    let sse: f64 = y
        .iter()
        .enumerate()
        .map(|(i, v)| (v - my - b * (i as f64 - mx)).powi(2))
        .sum();
    let se = (sse / (n - 2.0) / sxx).sqrt();
    Some((b, se, my))
}

/// Median of the daily means of the last `days` whole days of `hourly`.
pub(crate) fn daily_median(hourly: &[f64], days: usize) -> f64 {
    quantile(&mut daily_means(hourly, days), 0.5)
}

/// The means of the last `days` whole days of `hourly` (whole days ending at its end; fewer
/// if it is shorter).
pub(crate) fn daily_means(hourly: &[f64], days: usize) -> Vec<f64> {
    let whole = hourly.len() / 24 * 24;
    hourly[hourly.len() - whole.min(days * 24)..]
        .chunks(24)
        .map(|d| d.iter().sum::<f64>() / d.len().max(1) as f64)
        .collect()
}

/// Bills `portfolio` (every commitment taken as active) over the last `hours` known hours,
/// handing each hour's bill and what it left uncovered per group to `f`.
pub fn bill_recent(
    ctx: &Situation<'_>,
    portfolio: &[Commitment],
    hours: usize,
    mut f: impl FnMut(&crate::billing::HourBill, &[f64]),
) -> Result<(), PlanError> {
    let end = ctx.known.range.len();
    let start = end.saturating_sub(hours);
    let series: Vec<&[f64]> = ctx
        .known
        .groups
        .iter()
        .map(|g| &g.quantity[start..end])
        .collect();
    BillingEngine::new(ctx.groups.to_vec(), portfolio, ctx.rates)
        .map_err(PlanError::billing)?
        .bill_all_active_series(&series, |_, bill, left| f(bill, left));
    Ok(())
}

/// Residual (uncovered) usage per hour per group over the last `hours` known hours, billed
/// with `portfolio` as if all of it were active.
pub(crate) fn residual(
    ctx: &Situation<'_>,
    portfolio: &[Commitment],
    hours: usize,
) -> Result<Vec<Vec<f64>>, PlanError> {
    let mut out = Vec::with_capacity(hours.min(ctx.known.range.len()));
    bill_recent(ctx, portfolio, hours, |_, left| out.push(left.to_vec()))?;
    Ok(out)
}
