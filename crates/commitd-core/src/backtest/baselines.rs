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
//! * `hindsight_static` is the optimizer's hindsight mode, in [`crate::plan::hindsight`].

use super::{buy_savings_plan, Decision, PlanError, Planner, Situation};
use crate::billing::BillingEngine;
use crate::domain::{Commitment, Instrument, Money, PaymentOption, Provider, Term};
pub use crate::plan::sizing::commitment_for_utilization;
use crate::plan::sizing::{best_commitment, savings};

/// Buys nothing.
#[derive(Clone, Debug, Default)]
pub struct ExistingOnly;

impl Planner for ExistingOnly {
    fn name(&self) -> &str {
        "existing_only"
    }

    fn decide(&mut self, _ctx: &Situation<'_>) -> Result<Decision, PlanError> {
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

    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl CeQuarterly {
    fn purchases(&mut self, ctx: &Situation<'_>) -> Result<Vec<Commitment>, PlanError> {
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
