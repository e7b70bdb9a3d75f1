//! commitd's forecast + optimize planner ([`ForecastOptimizePlanner`]).

use super::demand as pipeline;
use super::hindsight::plan_to_commitments;
use super::recent::{quantile, residual};
use super::{Decision, ForecastConfig, PlanError, Planner, Situation, MIN_KNOWN_HOURS};
use crate::domain::{Commitment, Money, Term};
use crate::optimize::{self, Constraints, MinUtilization, Options};

/// commitd's own pipeline: forecast (hourly quantiles per group, `unsettled` groups held) ->
/// optimize (one LP over all instruments, 1-year terms, per-decision cap, utilization floor at a
/// low quantile) -> purchase.
pub struct ForecastOptimizePlanner {
    config: ForecastConfig,
    cap: Money,
    /// Decisions that ran the forecast and the solver, and that were skipped by the trigger.
    pub solved: usize,
    pub skipped: usize,
}

impl ForecastOptimizePlanner {
    /// The forecast planner holding each decision's new hourly commitment to `cap`.
    pub fn new(config: ForecastConfig, cap: Money) -> Self {
        ForecastOptimizePlanner {
            config,
            cap,
            solved: 0,
            skipped: 0,
        }
    }
}

impl Planner for ForecastOptimizePlanner {
    fn name(&self) -> &str {
        "commitd"
    }

    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl ForecastOptimizePlanner {
    fn purchases(&mut self, ctx: &Situation<'_>) -> Result<Vec<Commitment>, PlanError> {
        let known = ctx.known;
        if known.range.len() < MIN_KNOWN_HOURS {
            return Ok(Vec::new());
        }
        let active = ctx.active();
        // Trigger: is there uncovered baseline worth planning for?
        let residual = residual(ctx, &active, 7 * 24)?;
        let mut value = 0.0;
        let mut ode = 0.0;
        for (gi, bg) in ctx.groups.iter().enumerate() {
            let mut s: Vec<f64> = residual.iter().map(|h| h[gi]).collect();
            value += quantile(&mut s, self.config.trigger_quantile) * bg.on_demand_rate;
            let n = known.range.len();
            let from = n.saturating_sub(7 * 24);
            ode += known.groups[gi].quantity[from..n].iter().sum::<f64>() * bg.on_demand_rate
                / (n - from).max(1) as f64;
        }
        if value < self.config.trigger_share * ode {
            self.skipped += 1;
            return Ok(Vec::new());
        }
        self.solved += 1;
        // Forecast every group from the data known now (the harness already cut the late
        // hours), through the same conversion as `commitd plan` and the daemon: unsettled
        // groups are held there.
        let mut levels = self.config.quantiles.clone();
        levels.sort_by(f64::total_cmp);
        let mut notes = Vec::new();
        let demand = pipeline::forecast_demand_at(
            known,
            ctx.now,
            Term::ONE_YEAR.hours() as usize,
            &levels,
            &mut notes,
        );
        let mut constraints = Constraints::one_year_only();
        constraints.allow_exchanges = false;
        constraints.max_new_hourly = Some(self.cap);
        constraints.min_utilization = Some(MinUtilization {
            level: self.config.utilization_level,
            min: self.config.min_utilization,
        });
        let options = Options {
            marginal_resolves: 0,
            ..Options::default()
        };
        let plan = optimize::optimize(&demand, ctx.rates, &active, &constraints, &options)
            .map_err(|source| PlanError::Optimize {
                what: "optimizer",
                source,
            })?;
        plan_to_commitments(&plan, ctx.now, "commitd")
    }
}
