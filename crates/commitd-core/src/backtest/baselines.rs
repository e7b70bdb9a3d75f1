//! The baselines commitd is measured against (`shared/scenarios/README.md`).
//!
//! * [`ExistingOnly`]: buy nothing; the existing commitments run out and everything else is paid
//!   on demand.
//! * [`CeQuarterly`]: the native tools' method (AWS Cost Explorer / Azure Advisor style). Every
//!   90 days from `decision_time`, for each provider, the 1-year all-upfront Compute Savings Plan
//!   (Azure: savings plan) whose hourly commitment would have saved the most over the last 30
//!   days of on-demand spend left uncovered by the commitments active at that moment. Bought at
//!   that moment and never revisited. Like the native tools it sees only billed data, so it is
//!   subject to the same latency as every planner.
//! * `hindsight_static` is the optimizer's hindsight mode, in [`super::planner`].

use super::{buy_savings_plan, Decision, DecisionContext, Planner};
use crate::billing::BillingEngine;
use crate::domain::{Commitment, Instrument, Money, PaymentOption, Provider, Term};

/// Buys nothing.
#[derive(Clone, Debug, Default)]
pub struct ExistingOnly;

impl Planner for ExistingOnly {
    fn name(&self) -> &str {
        "existing_only"
    }

    fn decide(&mut self, _ctx: &DecisionContext<'_>) -> Result<Decision, String> {
        Ok(Decision::default())
    }
}

/// The native recommender, re-run every `every_hours` (90 days).
#[derive(Clone, Debug)]
pub struct CeQuarterly {
    pub every_hours: i64,
    pub lookback_hours: i64,
    first: Option<crate::domain::Hour>,
    bought: usize,
}

impl Default for CeQuarterly {
    fn default() -> Self {
        CeQuarterly {
            every_hours: 90 * 24,
            lookback_hours: 30 * 24,
            first: None,
            bought: 0,
        }
    }
}

impl Planner for CeQuarterly {
    fn name(&self) -> &str {
        "ce_quarterly"
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Result<Decision, String> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl CeQuarterly {
    fn purchases(&mut self, ctx: &DecisionContext<'_>) -> Result<Vec<Commitment>, String> {
        let first = *self.first.get_or_insert(ctx.now);
        if ctx.now.since(first) % self.every_hours != 0 {
            return Ok(Vec::new());
        }
        let known = ctx.known;
        let end = known.range.len();
        let start = end.saturating_sub(self.lookback_hours.max(0) as usize);
        if end == start {
            return Ok(Vec::new());
        }
        // What today's commitments leave uncovered, hour by hour, over the look-back.
        let active = ctx.active();
        let engine = BillingEngine::new(ctx.groups.to_vec(), &active, ctx.rates)
            .map_err(|e| e.to_string())?;
        let series: Vec<&[f64]> = known
            .groups
            .iter()
            .map(|g| &g.quantity[start..end])
            .collect();
        let mut uncovered: Vec<Vec<f64>> = Vec::with_capacity(end - start);
        engine.bill_all_active_series(&series, |_, _, left| uncovered.push(left.to_vec()));
        let mut out = Vec::new();
        for (provider, instrument) in [
            (Provider::Aws, Instrument::ComputeSavingsPlan),
            (Provider::Azure, Instrument::AzureSavingsPlan),
        ] {
            // Eligible groups with their on-demand and plan rates, highest discount first (the
            // order in which the plan would be applied).
            let mut items: Vec<(usize, f64, f64)> = Vec::new();
            let mut offer = None;
            for (i, g) in ctx.groups.iter().enumerate() {
                if g.group.provider != provider {
                    continue;
                }
                let o = ctx.rates.offer(
                    &g.group.product(),
                    instrument,
                    Some(Term::ONE_YEAR),
                    PaymentOption::AllUpfront,
                );
                if let Some(o) = o {
                    let sp = o.rate();
                    if sp > 0.0 && sp < g.on_demand_rate {
                        items.push((i, g.on_demand_rate, sp));
                        offer.get_or_insert(o);
                    }
                }
            }
            let Some(offer) = offer else { continue };
            items.sort_by(|a, b| (a.2 / a.1).total_cmp(&(b.2 / b.1)).then(a.0.cmp(&b.0)));
            let commitment = best_commitment(&uncovered, &items);
            // Commitments are bought in steps of $0.001/h: keep the better of the two
            // neighbouring steps (savings are concave, so one of them is the best step).
            let steps = (commitment * 1000.0).floor();
            let per_hour = [steps, steps + 1.0]
                .into_iter()
                .map(|s| Money::from_micros(s as i64 * 1000))
                .max_by(|a, b| {
                    savings(&uncovered, &items, a.to_f64())
                        .total_cmp(&savings(&uncovered, &items, b.to_f64()))
                        .then(b.cmp(a))
                })
                .unwrap_or(Money::ZERO);
            if per_hour <= Money::ZERO || savings(&uncovered, &items, per_hour.to_f64()) <= 0.0 {
                continue;
            }
            self.bought += 1;
            let id = format!("ce_quarterly-{}-{}", self.bought, provider);
            out.push(buy_savings_plan(id, offer, ctx.now, per_hour, None)?);
        }
        Ok(out)
    }
}

/// Savings over the look-back of a plan of `c` USD/h: on-demand cost it would have covered,
/// minus the commitment paid every hour. `items` are (group, on-demand rate, plan rate) in
/// application order.
pub fn savings(uncovered: &[Vec<f64>], items: &[(usize, f64, f64)], c: f64) -> f64 {
    let mut total = 0.0;
    for hour in uncovered {
        let mut left = c;
        for &(g, od, sp) in items {
            if left <= 0.0 {
                break;
            }
            let q = hour[g].min(left / sp);
            left -= q * sp;
            total += q * od;
        }
        total -= c;
    }
    total
}

/// The hourly commitment that maximizes [`savings`]. Savings are concave in `c` (each hour's
/// covered value is concave because usage is covered highest discount first, and the cost is
/// linear), so a golden-section search finds the maximum.
pub fn best_commitment(uncovered: &[Vec<f64>], items: &[(usize, f64, f64)]) -> f64 {
    let hi = uncovered
        .iter()
        .map(|h| items.iter().map(|&(g, _, sp)| h[g] * sp).sum::<f64>())
        .fold(0.0, f64::max);
    if hi <= 0.0 {
        return 0.0;
    }
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (0.0, hi);
    let mut x1 = b - phi * (b - a);
    let mut x2 = a + phi * (b - a);
    let mut f1 = savings(uncovered, items, x1);
    let mut f2 = savings(uncovered, items, x2);
    // 80 iterations shrink the interval by phi^80 ~ 1e-17: far below a tenth of a cent.
    for _ in 0..80 {
        if f1 < f2 {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + phi * (b - a);
            f2 = savings(uncovered, items, x2);
        } else {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - phi * (b - a);
            f1 = savings(uncovered, items, x1);
        }
    }
    let best = (a + b) / 2.0;
    if savings(uncovered, items, best) > 0.0 {
        best
    } else {
        0.0
    }
}

/// The largest hourly commitment (up to `upper`) that would have been used at least `target`
/// (0..1) over the look-back: utilization falls as the commitment grows, so bisect.
pub fn commitment_for_utilization(
    uncovered: &[Vec<f64>],
    items: &[(usize, f64, f64)],
    target: f64,
    upper: f64,
) -> f64 {
    if uncovered.is_empty() || upper <= 0.0 {
        return 0.0;
    }
    let utilization = |c: f64| {
        let mut used = 0.0;
        for hour in uncovered {
            let mut left = c;
            for &(g, _, sp) in items {
                if left <= 0.0 {
                    break;
                }
                let q = hour[g].min(left / sp);
                left -= q * sp;
            }
            used += c - left;
        }
        used / (c * uncovered.len() as f64)
    };
    if utilization(upper) >= target {
        return upper;
    }
    let (mut lo, mut hi) = (0.0, upper);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if mid > 0.0 && utilization(mid) >= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}
