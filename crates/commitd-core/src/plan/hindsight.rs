//! The `hindsight_static` baseline (the optimizer's hindsight mode on the evaluation window:
//! an oracle), and the conversion of an optimizer plan's purchases into commitments that every
//! planner built on the optimizer shares.

use super::demand as pipeline;
use super::{Decision, HindsightConfig, PlanError, Planner, Situation};
use crate::domain::{Commitment, CommitmentAmount, Hour, Plan, ScenarioWindow, UsageModel};
use crate::optimize::{self, Constraints, DemandInput, Options};

/// The `hindsight_static` baseline: the optimizer's hindsight mode, one purchase at decision
/// time knowing the actual demand of the whole window. It is an oracle on purpose (an upper
/// reference), so it holds the evaluation window's usage itself instead of reading the
/// latency-cut view the harness gives planners.
pub fn hindsight_static(
    usage: &UsageModel,
    window: ScenarioWindow,
    config: HindsightConfig,
) -> Box<dyn Planner + Send> {
    let eval = usage.slice(window.evaluation());
    let actual = DemandInput::actual(
        eval.range.start,
        eval.groups
            .iter()
            .map(|g| (g.group.clone(), g.quantity.clone()))
            .collect(),
    );
    Box::new(HindsightStatic {
        actual,
        config,
        done: false,
    })
}

pub struct HindsightStatic {
    actual: DemandInput,
    config: HindsightConfig,
    done: bool,
}

impl Planner for HindsightStatic {
    fn name(&self) -> &str {
        "hindsight_static"
    }

    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl HindsightStatic {
    fn purchases(&mut self, ctx: &Situation<'_>) -> Result<Vec<Commitment>, PlanError> {
        if self.done {
            return Ok(Vec::new());
        }
        self.done = true;
        let mut constraints = Constraints::one_year_only();
        constraints.allow_exchanges = false;
        let options = Options {
            // The rationale's marginal values are not needed for a baseline.
            marginal_resolves: 0,
            max_coverage_columns: self.config.max_columns,
            refine_rounds: self.config.refine_rounds,
            ..Options::default()
        };
        let plan = optimize::hindsight(
            &self.actual,
            ctx.rates,
            &ctx.active(),
            &constraints,
            &options,
        )
        .map_err(|source| PlanError::Optimize {
            what: "hindsight optimization",
            source,
        })?;
        plan_to_commitments(&plan, ctx.now, "hindsight")
    }
}

/// The purchases of a plan as commitments starting at `now` (exchanges are not replayed), through
/// the same converter as the daemon's cycle plan ([`crate::plan::demand::purchase_spec`]).
pub fn plan_to_commitments(
    plan: &Plan,
    now: Hour,
    prefix: &str,
) -> Result<Vec<Commitment>, PlanError> {
    let mut out = Vec::new();
    for (i, a) in plan.actions.iter().enumerate() {
        let Some(spec) = pipeline::purchase_spec(a)? else {
            continue;
        };
        if matches!(spec.amount, CommitmentAmount::Instances(0)) {
            continue;
        }
        let id = format!("{prefix}-{}-{i}", now.0);
        out.push(pipeline::purchased_commitment(
            &spec,
            id,
            now,
            a.hourly_cost,
            a.upfront,
        ));
    }
    Ok(out)
}
