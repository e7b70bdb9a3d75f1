//! What a person approving an action sees beside its figures, computed when it is proposed
//! from the same situation the planner decided on (so the console, which reads no usage,
//! can show it from the audit log):
//!
//! * [`ActionEvidence`]: the usage of the groups the action's commitment applies to (their
//!   on-demand-equivalent cost per hour, daily means of the known weeks), the forecast of that
//!   total (P10, P50, P90, daily means), and the action's marginal value: what the decision's
//!   portfolio costs more per hour, on the measured weeks, without this purchase alone.
//! * [`commitment_use`]: the utilization of every commitment held over the last known days,
//!   billed hour by hour with what was active in each hour.
//!
//! The daemon records both (the proposal's event and the plan's event); the backtest does not
//! need them and does not compute them.

use super::proposals::{cost_per_hour, Proposed};
use super::{Decision, PlanError, Situation};
use crate::billing::{covered_groups, BillingEngine};
use crate::domain::purchase::Operation;
use crate::domain::{Commitment, Hour, Money};
use crate::forecast::{forecast, ForecastConfig};
use serde::{Deserialize, Serialize};

/// Days of known usage an evidence chart shows.
pub const HISTORY_DAYS: usize = 56;
/// Days of forecast an evidence chart shows.
pub const FORECAST_DAYS: usize = 28;
/// Usage groups named in an evidence (the chart sums them all).
pub const MAX_GROUPS_NAMED: usize = 12;
/// The window of [`commitment_use`]: the last 30 known days.
pub const USE_HOURS: usize = 30 * 24;

/// What an action covers and what it is worth to the decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionEvidence {
    /// The usage groups the commitment applies to (the first [`MAX_GROUPS_NAMED`]).
    pub groups: Vec<String>,
    /// How many groups it applies to in all.
    pub groups_total: usize,
    /// The first hour of `history`'s first day.
    pub history_start: Hour,
    /// Daily means of the covered groups' on-demand-equivalent USD per hour (the rate card's
    /// on-demand price times the instance-hours), the last known days, oldest first.
    pub history: Vec<Option<f64>>,
    /// The first hour forecast (the end of the known usage).
    pub forecast_start: Hour,
    /// Daily means of the forecast of that total, per quantile: P10, P50, P90.
    pub p10: Vec<Option<f64>>,
    pub p50: Vec<Option<f64>>,
    pub p90: Vec<Option<f64>>,
    /// Why there is no forecast, if there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_error: Option<String>,
    /// The action's marginal value (purchases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marginal: Option<Marginal>,
}

/// What the decision loses without one purchase, all its other actions kept: the bill of the
/// measured weeks with the decision's whole portfolio against the same without this purchase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marginal {
    /// USD per hour the portfolio would have cost more without it (negative: it costs more
    /// than it saves, given the rest of the decision).
    pub per_hour: Money,
    /// `per_hour` over the purchase's term.
    pub over_term: Money,
    /// The hours measured.
    pub hours: usize,
}

/// One commitment's use over the last known days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitmentUse {
    pub id: String,
    /// Mean share used over the hours it was active (None: not active in the window).
    pub utilization: Option<f64>,
    /// Hours of the window it was active.
    pub hours: usize,
}

/// Daily means of `v` in 24-hour buckets from its start (a shorter last bucket is averaged
/// over what it has; a bucket without a finite value is None), to 1/10,000 (a chart's
/// precision, kept small in the audit log).
fn daily(v: &[f64]) -> Vec<Option<f64>> {
    v.chunks(24)
        .map(|d| {
            let ok: Vec<f64> = d.iter().copied().filter(|x| x.is_finite()).collect();
            (!ok.is_empty()).then(|| (ok.iter().sum::<f64>() / ok.len() as f64 * 1e4).round() / 1e4)
        })
        .collect()
}

/// The evidence of every action of `proposed` (in its order), `decision` taken at `situation`.
/// A failed forecast is recorded in the evidence, not an error.
pub fn of_actions(
    situation: &Situation<'_>,
    decision: &Decision,
    proposed: &Proposed,
) -> Result<Vec<ActionEvidence>, PlanError> {
    let full = if decision.purchases.is_empty() {
        None
    } else {
        Some(cost_per_hour(situation, &proposed.portfolio)?)
    };
    let mut purchases = decision.purchases.iter();
    let mut out = Vec::with_capacity(proposed.actions.len());
    for action in &proposed.actions {
        let (commitment, marginal) = match &action.operation {
            Operation::Purchase => {
                let Some(c) = purchases.next() else {
                    return Err(PlanError::Invalid(
                        "more purchases proposed than decided".into(),
                    ));
                };
                let marginal = match full {
                    Some((with, hours)) => {
                        // The purchases were appended last: the last one with its id is it.
                        let mut without: Vec<Commitment> = proposed.portfolio.clone();
                        if let Some(i) = without.iter().rposition(|p| p.id == c.id) {
                            without.remove(i);
                        }
                        let (cost, _) = cost_per_hour(situation, &without)?;
                        let per_hour = cost - with;
                        Some(Marginal {
                            per_hour: Money::from_f64(per_hour).unwrap_or(Money::ZERO),
                            over_term: Money::from_f64(per_hour * c.term.hours() as f64)
                                .unwrap_or(Money::ZERO),
                            hours,
                        })
                    }
                    None => None,
                };
                (Some(c.clone()), marginal)
            }
            Operation::Return { commitment_id, .. } | Operation::Sell { commitment_id, .. } => (
                situation
                    .portfolio
                    .iter()
                    .find(|c| &c.id == commitment_id)
                    .cloned(),
                None,
            ),
            Operation::Exchange { .. } => (None, None),
        };
        out.push(evidence(situation, commitment.as_ref(), marginal));
    }
    Ok(out)
}

fn evidence(
    situation: &Situation<'_>,
    c: Option<&Commitment>,
    marginal: Option<Marginal>,
) -> ActionEvidence {
    let known = situation.known;
    let covered = c.map_or_else(Vec::new, |c| {
        covered_groups(c, situation.groups, situation.rates)
    });
    let n = known.range.len();
    let mut total = vec![0.0; n];
    for &i in &covered {
        let (Some(series), Some(g)) = (known.groups.get(i), situation.groups.get(i)) else {
            continue;
        };
        for (t, q) in total.iter_mut().zip(&series.quantity) {
            if q.is_finite() && *q > 0.0 {
                *t += q * g.on_demand_rate;
            }
        }
    }
    let shown = (n / 24).min(HISTORY_DAYS) * 24;
    let from = n - shown;
    let history_start = known.range.start.plus(from as i64);
    let forecast_start = known.range.start.plus(n as i64);
    let mut e = ActionEvidence {
        groups: covered
            .iter()
            .take(MAX_GROUPS_NAMED)
            .filter_map(|&i| known.groups.get(i).map(|g| g.group.to_string()))
            .collect(),
        groups_total: covered.len(),
        history_start,
        history: daily(&total[from..]),
        forecast_start,
        p10: Vec::new(),
        p50: Vec::new(),
        p90: Vec::new(),
        forecast_error: None,
        marginal,
    };
    if covered.is_empty() {
        e.forecast_error = Some("the action applies to no usage group of the bill".into());
        return e;
    }
    let cfg = ForecastConfig {
        horizon_hours: FORECAST_DAYS * 24,
        ..ForecastConfig::default()
    };
    match forecast(&total, known.range.start, forecast_start, &cfg) {
        Ok(f) => {
            e.p10 = daily(&f.quantile(0.1));
            e.p50 = daily(&f.quantile(0.5));
            e.p90 = daily(&f.quantile(0.9));
        }
        Err(err) => e.forecast_error = Some(err.to_string()),
    }
    e
}

/// The utilization of every commitment of `situation.portfolio` over the last [`USE_HOURS`]
/// known hours, billed hour by hour with what was active in each (the commitments of one pool
/// share its use pro rata), in the portfolio's order.
pub fn commitment_use(situation: &Situation<'_>) -> Result<Vec<CommitmentUse>, PlanError> {
    let known = situation.known;
    let end = known.range.len();
    let start = end.saturating_sub(USE_HOURS);
    let series: Vec<&[f64]> = known
        .groups
        .iter()
        .map(|g| &g.quantity[start.min(g.quantity.len())..end.min(g.quantity.len())])
        .collect();
    let engine = BillingEngine::new(
        situation.groups.to_vec(),
        situation.portfolio,
        situation.rates,
    )
    .map_err(PlanError::billing)?;
    let used = engine.use_by_commitment(known.range.start.plus(start as i64), &series);
    Ok(situation
        .portfolio
        .iter()
        .zip(used)
        .map(|(c, (hours, sum))| CommitmentUse {
            id: c.id.clone(),
            utilization: (hours > 0).then(|| sum / hours as f64),
            hours,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_means_skip_gaps_and_keep_a_short_last_day() {
        let mut v = vec![1.0; 24];
        v.extend(vec![3.0; 24]);
        v[30] = f64::NAN;
        v.extend([5.0, 7.0]);
        assert_eq!(daily(&v), vec![Some(1.0), Some(3.0), Some(6.0)]);
        assert_eq!(daily(&[f64::NAN; 24]), vec![None]);
        assert_eq!(daily(&[1.0 / 3.0]), vec![Some(0.3333)]);
    }
}
