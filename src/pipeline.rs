//! The planning pipeline shared by `commitd plan` and the daemon: usage history -> forecast
//! quantile paths -> optimizer demand -> plan.
//!
//! Pure like the modules it composes (no I/O, no clock): the callers load the data and pass the
//! decision hour in. It lives apart from `optimize` because the optimizer must not depend on the
//! forecaster (it also plans from actual demand in hindsight mode, and from any other demand).

use crate::domain::plan::Plan;
use crate::domain::{Commitment, GroupSeries, Hour, HourRange, RateCard, UsageModel};
use crate::forecast::{forecast_batch, BatchInput, ForecastConfig};
use crate::optimize::{self, demand, Constraints, DemandInput, OptimizeError, Options};

/// The demand quantiles the planner hands the optimizer as equally weighted scenarios.
pub const LEVELS: [f64; 3] = [0.1, 0.5, 0.9];

/// The forecaster's quantile paths for every group of `history` over `[at, at + horizon)`; a
/// group the forecaster cannot fit keeps its seasonal-naive paths (last 4 weeks' weekly
/// profile), and `notes` says so.
pub fn forecast_demand(
    history: &UsageModel,
    at: Hour,
    horizon: usize,
    notes: &mut Vec<String>,
) -> DemandInput {
    let mut naive = demand::seasonal_naive(history, at, horizon, 4, &LEVELS);
    let histories: Vec<Vec<f64>> = history
        .groups
        .iter()
        .map(|g| known_history(history, g, at))
        .collect();
    let inputs: Vec<BatchInput<'_>> = histories
        .iter()
        .map(|h| BatchInput {
            history: h,
            history_start: history.range.start,
        })
        .collect();
    let cfg = ForecastConfig {
        horizon_hours: horizon,
        quantiles: LEVELS.to_vec(),
        ..ForecastConfig::default()
    };
    let results = forecast_batch(&inputs, at, &cfg);
    for (g, result) in naive.groups.iter_mut().zip(results) {
        match result {
            Ok(f) if f.start <= at => {
                let offset = at.since(f.start) as usize;
                let paths: Vec<Vec<f64>> = LEVELS
                    .iter()
                    .map(|&q| {
                        let v = f.quantile(q);
                        (0..horizon)
                            .map(|h| v.get(offset + h).copied().unwrap_or(0.0).max(0.0))
                            .collect()
                    })
                    .collect();
                if paths.iter().flatten().all(|v| v.is_finite()) {
                    g.scenarios = paths;
                } else {
                    notes.push(format!(
                        "forecast for {} has non-finite values: seasonal-naive demand used",
                        g.group
                    ));
                }
            }
            Ok(f) => notes.push(format!(
                "forecast for {} starts at {} after the decision time: seasonal-naive demand used",
                g.group, f.start
            )),
            Err(e) => notes.push(format!(
                "no forecast for {} ({e}): seasonal-naive demand used",
                g.group
            )),
        }
    }
    naive
}

/// A group's hourly demand as the forecaster must see it at `at`: hours after the bill's last
/// row, or at and after `at`, are unknown (NaN), not zero usage.
pub fn known_history(model: &UsageModel, group: &GroupSeries, at: Hour) -> Vec<f64> {
    let known_end = model
        .last_observed
        .map_or(model.range.start, |h| h.plus(1))
        .min(at);
    let known = known_end.since(model.range.start).max(0) as usize;
    let mut v = group.quantity.clone();
    for x in v.iter_mut().skip(known) {
        *x = f64::NAN;
    }
    v
}

/// Plans at `at` from the usage before `at` only (the future is never looked at), with the
/// forecaster's quantiles as demand.
pub fn plan_at(
    usage: &UsageModel,
    at: Hour,
    horizon: usize,
    rates: &RateCard,
    existing: &[Commitment],
    constraints: &Constraints,
    options: &Options,
) -> Result<Plan, OptimizeError> {
    let history = usage.slice(HourRange::new(usage.range.start, at));
    let mut notes = Vec::new();
    let input = forecast_demand(&history, at, horizon, &mut notes);
    let mut plan = optimize::optimize(&input, rates, existing, constraints, options)?;
    plan.notes.extend(notes);
    Ok(plan)
}
