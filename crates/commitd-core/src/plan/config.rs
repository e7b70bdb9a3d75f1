//! [`PlannerConfig`]: which planner decides and each planner's tuning, read by both
//! `[planner]` in `commitd.toml` and `commitd backtest --planner-config FILE`, so that what the
//! backtest measures is what the daemon runs. The defaults are the backtest's.
//!
//! A planner is built from its configuration and what it cannot know from one decision alone:
//! the usage known at the first decision (for the laddering cap) and the bounds the policies set
//! ([`PlannerConfig::build`]).

use super::forecast::ForecastOptimizePlanner;
use super::hold::AnomalyHold;
use super::ladder::LadderPlanner;
use super::lookback::LookbackPlanner;
use super::{PlanError, Planner};
use crate::domain::{Money, UsageModel};
use crate::forecast::anomaly::AnomalyConfig;
use crate::optimize::{Constraints, Options};
use serde::{Deserialize, Serialize};

/// Which planner decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlannerKind {
    /// The optimizer on the recent look-back ([`LookbackPlanner`]; the default).
    #[default]
    Lookback,
    /// Forecast quantiles -> LP optimizer ([`ForecastOptimizePlanner`]).
    Forecast,
    /// The billing-driven quantile ladder ([`LadderPlanner`]).
    Ladder,
}

impl PlannerKind {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            PlannerKind::Lookback => "lookback",
            PlannerKind::Forecast => "forecast",
            PlannerKind::Ladder => "ladder",
        }
    }
}

/// Which planner decides and how it is tuned: one value that the daemon and the backtest both
/// read (`[planner]` in `commitd.toml`, `commitd backtest --planner-config FILE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlannerConfig {
    pub kind: PlannerKind,
    /// The ladder's tuning; the look-back planner uses its guards, its savings-plan stage and its
    /// laddering cap, the forecast planner its cap.
    pub ladder: LadderConfig,
    pub lookback: LookbackConfig,
    pub forecast: ForecastConfig,
    /// No purchase is made into a cost anomaly: while one is open on usage groups that make up
    /// at least `anomaly_hold_share` of the on-demand spend a purchase can cover, the purchase
    /// waits ([`AnomalyHold`]). Off, the daemon still watches and alerts.
    pub anomaly_hold: bool,
    pub anomaly_hold_share: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            kind: PlannerKind::default(),
            ladder: LadderConfig::default(),
            lookback: LookbackConfig::default(),
            forecast: ForecastConfig::default(),
            // docs/benchmarks/anomalies.md, "The purchase hold in the backtest".
            anomaly_hold: true,
            anomaly_hold_share: super::hold::DEFAULT_SHARE,
        }
    }
}

/// What the market that executes a planner's decisions can do with held reservations. A
/// planner is told exactly that, in the daemon and in the replay that checks it alike: purchases
/// sized on giving up what is then not given up would under-buy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Azure reservations exchanged (no market executes it yet).
    pub azure_exchanges: bool,
    /// Azure reservations returned in part.
    pub azure_returns: bool,
    /// Standard RIs listed on the Reserved Instance Marketplace.
    pub ri_sales: bool,
}

impl Capabilities {
    /// The replay's market: everything the providers' rules allow.
    pub const ALL: Capabilities = Capabilities {
        azure_exchanges: true,
        azure_returns: true,
        ri_sales: true,
    };
}

impl PlannerConfig {
    /// This configuration for a market with `can`: what the market does not execute is off
    /// (the rest as configured).
    pub fn within(&self, can: Capabilities) -> PlannerConfig {
        let mut c = self.clone();
        c.lookback.exchanges &= can.azure_exchanges;
        c.lookback.returns &= can.azure_returns;
        c.lookback.sales &= can.ri_sales;
        c
    }

    /// The laddering step for a replay or a daemon whose usage known at the first decision is
    /// `known`: the fixed cap, else `cap_share` of its on-demand-equivalent spend per hour.
    pub fn cap(&self, known: &UsageModel) -> Result<Money, PlanError> {
        match self.ladder.cap_per_decision {
            Some(c) => Ok(c),
            None => laddering_cap(known, self.ladder.cap_share),
        }
    }

    /// The laddering step under `bounds`: [`PlannerConfig::cap`], held to the policies' cap on
    /// new hourly commitment when they set one. The daemon and the replay both take it from here.
    pub fn cap_within(&self, known: &UsageModel, bounds: &Constraints) -> Result<Money, PlanError> {
        let cap = self.cap(known)?;
        Ok(bounds.max_new_hourly.map_or(cap, |b| cap.min(b)))
    }

    /// The planner this configuration names, holding each decision to `cap` (see
    /// [`PlannerConfig::cap`]) and buying only what `bounds` allow (the benchmark policy:
    /// [`Constraints::one_year_only`]).
    pub fn build(&self, cap: Money, bounds: &Constraints) -> Box<dyn Planner + Send> {
        let planner = self.build_unheld(cap, bounds);
        if self.anomaly_hold {
            Box::new(AnomalyHold::new(
                planner,
                self.anomaly_hold_share,
                AnomalyConfig::default(),
            ))
        } else {
            planner
        }
    }

    /// [`PlannerConfig::build`] for the daemon: the same planner, whose usage groups are
    /// watched for anomalies (its alerts) even when `anomaly_hold` is off.
    pub fn build_watching(&self, cap: Money, bounds: &Constraints) -> Box<dyn Planner + Send> {
        if self.anomaly_hold {
            self.build(cap, bounds)
        } else {
            Box::new(AnomalyHold::watching(
                self.build_unheld(cap, bounds),
                AnomalyConfig::default(),
            ))
        }
    }

    fn build_unheld(&self, cap: Money, bounds: &Constraints) -> Box<dyn Planner + Send> {
        match self.kind {
            PlannerKind::Lookback => Box::new(self.lookback_planner(cap, bounds)),
            PlannerKind::Forecast => {
                Box::new(ForecastOptimizePlanner::new(self.forecast.clone(), cap))
            }
            PlannerKind::Ladder => {
                Box::new(LadderPlanner::new(self.ladder.clone(), cap, bounds.clone()))
            }
        }
    }

    /// The look-back planner of this configuration (whatever `kind` says), for callers that
    /// read its statistics.
    pub fn lookback_planner(&self, cap: Money, bounds: &Constraints) -> LookbackPlanner {
        LookbackPlanner::new(self.lookback.clone(), self.ladder.clone(), cap)
            .bounded(bounds.clone())
    }

    /// Refuses values no planner can run with (shares outside 0..=1, empty windows, ...), naming
    /// the field.
    pub fn validate(&self) -> Result<(), PlanError> {
        let share = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(PlanError::Invalid(format!(
                    "{name} must be within 0..=1, got {v}"
                )))
            }
        };
        let l = &self.ladder;
        share("ladder.reservation_quantile", l.reservation_quantile)?;
        share("ladder.reservation_share", l.reservation_share)?;
        share(
            "ladder.savings_plan_min_utilization",
            l.savings_plan_min_utilization,
        )?;
        share("ladder.decline_ratio", l.decline_ratio)?;
        share("ladder.cap_share", l.cap_share)?;
        if l.windows.is_empty() || l.windows.iter().any(|&h| h == 0 || h > 366 * 24) {
            return Err(PlanError::Invalid(format!(
                "ladder.windows_hours needs 1 to 8784 hours each, got {:?}",
                l.windows
            )));
        }
        let b = &self.lookback;
        if !(14..=366).contains(&b.window_days) {
            return Err(PlanError::Invalid(format!(
                "lookback.window_days must be within 14..=366, got {}",
                b.window_days
            )));
        }
        if !(1..=366).contains(&b.resolve_days) {
            return Err(PlanError::Invalid(format!(
                "lookback.resolve_days must be within 1..=366, got {}",
                b.resolve_days
            )));
        }
        if b.max_columns == 0 || b.min_points == 0 {
            return Err(PlanError::Invalid(
                "lookback.max_columns and lookback.min_points must be positive".into(),
            ));
        }
        if !(0.0..1.0).contains(&b.haircut) {
            return Err(PlanError::Invalid(format!(
                "lookback.haircut must be within 0..1, got {}",
                b.haircut
            )));
        }
        share("lookback.min_utilization", b.min_utilization)?;
        share("lookback.trigger_share", b.trigger_share)?;
        share("lookback.trim_floor", b.trim_floor)?;
        share("lookback.redundant_share", b.redundant_share)?;
        share("lookback.utilization_target", b.utilization_target)?;
        share("lookback.total_utilization", b.total_utilization)?;
        share("anomaly_hold_share", self.anomaly_hold_share)?;
        let f = &self.forecast;
        share("forecast.min_utilization", f.min_utilization)?;
        share("forecast.utilization_level", f.utilization_level)?;
        if f.quantiles.is_empty() || f.quantiles.iter().any(|q| !(0.0..=1.0).contains(q)) {
            return Err(PlanError::Invalid(format!(
                "forecast.quantiles need shares within 0..=1, got {:?}",
                f.quantiles
            )));
        }
        Ok(())
    }
}

/// Tuning of the ladder planner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LadderConfig {
    /// Look-back windows (hours); a level must hold in all of them.
    #[serde(rename = "windows_hours")]
    pub windows: Vec<usize>,
    /// Quantile of the residual hourly usage that reservations cover.
    pub reservation_quantile: f64,
    /// Share of that level bought as reservations (family-bound, deepest discount); the rest is
    /// left to savings plans, which follow usage across families and regions. A hedge against
    /// migrations that would strand reservations.
    pub reservation_share: f64,
    /// Savings plans are sized so that they would have been used at least this much over every
    /// look-back window.
    pub savings_plan_min_utilization: f64,
    /// A group whose mean usage over the last week is below this share of its mean over the
    /// longest window is trending down: no new reservations for it.
    pub decline_ratio: f64,
    /// Fixed per-decision cap on new hourly commitment cost; None: `cap_share` of the recent
    /// on-demand-equivalent spend per hour.
    pub cap_per_decision: Option<Money>,
    pub cap_share: f64,
    /// No reservation for a group whose family has a newer generation of the same class in use
    /// in the same provider and region (m5 while m6i or m7g runs there): the organisation is
    /// moving that workload, and a family-bound commitment would be stranded when it does. The
    /// flexible savings plan covers such groups instead.
    pub generation_hedge: bool,
    /// The same for a group whose family is also in use in another region of the provider (a
    /// move between regions strands region-bound reservations the same way).
    pub region_hedge: bool,
    /// Trend guard: the days of daily means a group's (and a provider's) trend is fitted on
    /// (0 = off), and the horizon it is projected over. A significant decline (slope at least
    /// `trend_t` standard errors under zero) shrinks new purchases by the decline expected over
    /// the horizon: a 1-year commitment bought today is still paid when the usage has gone.
    pub trend_days: usize,
    pub trend_horizon_days: f64,
    pub trend_t: f64,
}

impl Default for LadderConfig {
    fn default() -> Self {
        LadderConfig {
            // 56 days: a level that only the last four weeks show (a holiday peak, a season)
            // is not committed to for a year.
            windows: vec![56 * 24, 28 * 24, 7 * 24, 2 * 24],
            reservation_quantile: 0.2,
            reservation_share: 1.0,
            savings_plan_min_utilization: 0.9,
            decline_ratio: 0.9,
            cap_per_decision: None,
            cap_share: 0.35,
            generation_hedge: true,
            region_hedge: false,
            trend_days: 84,
            trend_horizon_days: 182.0,
            trend_t: 3.0,
        }
    }
}

/// The laddering step: the most new hourly commitment one decision may take on, `share` of the
/// on-demand-equivalent spend per hour over `known` (so it scales with the organisation).
pub fn laddering_cap(known: &UsageModel, share: f64) -> Result<Money, PlanError> {
    let hours = known.hours().max(1) as f64;
    let ode: f64 = known.groups.iter().map(|g| g.ode.iter().sum::<f64>()).sum();
    Money::from_f64(share * ode / hours).map_err(|e| PlanError::Invalid(e.to_string()))
}

/// Tuning of the look-back optimizer planner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookbackConfig {
    /// Days of known usage the optimizer treats as the demand to come.
    pub window_days: usize,
    /// Days whose level the look-back is scaled down to when usage has dropped since (never up:
    /// growth is not bought ahead, and a peak is not committed to).
    pub level_days: usize,
    /// New commitments of one decision must be used at least this much (0..1) over the
    /// look-back (0 = no floor).
    pub min_utilization: f64,
    /// Re-solve at least every this many days (also when a commitment expired or the last
    /// solve was held back by the cap).
    pub resolve_days: usize,
    /// The optimizer's budget of coverage columns (group x instrument x point) per solve, and
    /// its refinement rounds. The look-back is one scenario in one segment (every held
    /// commitment runs through it), so its hours are interchangeable and a few hundred
    /// quantile slices of the load-duration curve stand for 1,344 hours almost exactly.
    pub max_columns: usize,
    pub refine_rounds: usize,
    /// At least this many look-back points per solve ([`Options::min_points`]): with hundreds
    /// of groups the column budget is spent at once and this floor sets the points.
    pub min_points: usize,
    /// Solve only when it can buy something new (0 = off: every `resolve_days`): when the
    /// uncovered usage of the last week (its median per group, at on-demand prices) rose by at
    /// least this share of the recent on-demand spend since just after the last solve, or a
    /// commitment expired, or the last solve was capped; `resolve_days` is then the longest
    /// wait. A solve that found nothing worth buying finds the same the next day unless usage
    /// changed, and usage that fell is never bought for.
    pub trigger_share: f64,
    /// The look-back is scaled down by this share (0..1) before it is optimized: a margin for
    /// the year ahead being lower or noisier than the weeks behind (the utilization floor
    /// holds only on the look-back itself).
    pub haircut: f64,
    /// Optimize the usage the commitments held now leave uncovered (billed in the providers'
    /// order), instead of the whole usage with the held commitments as existing ones, so that
    /// the utilization floor holds for what is bought (see [`LookbackPlanner`]).
    pub residual: bool,
    /// Residual mode: the held savings plans are billed into the residual too (true), or handed
    /// to the optimizer as existing commitments that it allocates (false), so that a
    /// reservation bought now is seen taking their usage, as it does in the bill.
    pub residual_savings_plans: bool,
    /// Residual mode: the whole portfolio (held and new, money-weighted) must be used at least
    /// this much (0..1) over the look-back; 0 = off. The held commitments' use above it is the
    /// room the new ones may use under it ([`TotalUtilization`]). Held savings plans count in
    /// that room only when `residual_savings_plans` bills them into the residual.
    pub total_utilization: f64,
    /// Usage that moved between related groups (a newer generation of the family class in
    /// the region, the same instance type in another region) is bought at its new place at
    /// once: a group whose level rose is planned on its last week, repeated over the look-back,
    /// by the share of the rise that its related groups lost (see [`LookbackPlanner`]).
    /// Otherwise only a drop is followed, and a rise waits until the look-back shows it.
    pub follow_moves: bool,
    /// Azure reservations that the last known week left idle are exchanged for the Azure
    /// reservations a solve buys (their lifetime commitment absorbs the refund), and the hedges
    /// no longer leave Azure groups to savings plans: a reservation bought there can follow
    /// the usage into another series or region when it moves ([`idle_reservations`]).
    pub exchanges: bool,
    /// Idle Azure reservation instances that no purchase absorbs by an exchange are returned
    /// for a refund of their remaining value, within the policy's rolling refund cap.
    pub returns: bool,
    /// AWS Standard RIs left idle (judged as idle Azure reservations are) are listed on the
    /// Reserved Instance Marketplace, sold as the policy's market model assumes
    /// ([`crate::domain::rules::Marketplace`]).
    pub sales: bool,
    /// The new savings plans of a solve are scaled down, per provider, until what they add to
    /// the use of all savings plans over the look-back is at least this share of their
    /// commitment ([`trim_savings_plans`]); 0 = off.
    pub trim_floor: f64,
    /// The optimizer sizes the new savings plans again next to the whole instances it rounded
    /// to ([`Options::resize_plans`]).
    pub resize_plans: bool,
    /// A held reservation is given up (returned, exchanged or sold, as idle ones are) when the
    /// on-demand cost its usage would add, billed with the rest of the portfolio over the last
    /// week, is at most this share of what giving it up saves ([`redundant_reservations`]);
    /// 0 = off.
    pub redundant_share: f64,
    /// Reservations of a group whose usage is moving to a related group are judged idle on the
    /// group's fade projected to when giving them up takes effect (a sale: the Marketplace's
    /// delay later), not on its last days ([`fade`]).
    pub anticipate_moves: bool,
    /// The utilization (0..1) the portfolio is steered to: each solve's per-pool floor
    /// (`min_utilization`) moves by the gap between this and what the portfolio made of the
    /// last four known weeks ([`steered_floor`]); 0 = off.
    pub utilization_target: f64,
}

impl Default for LookbackConfig {
    fn default() -> Self {
        // Chosen on the generated tuning sweep (seeds 1-3 of every shape), never on seed 7 or
        // the public scenarios: docs/benchmarks/backtest.md, "The look-back optimizer made fast".
        LookbackConfig {
            window_days: 56,
            level_days: 7,
            // Each new pool is held to this over the look-back. With the held savings plans
            // billed into the residual, 0.85 met the most (0.9 and 0.95 gave up more ESR than
            // they saved in utilization failures); since the optimizer allocates the held
            // savings plans (below), a new commitment can take their usage, and 0.95 keeps the
            // portfolio's utilization where 0.85 kept it (docs/benchmarks/backtest.md, "Held
            // savings plans allocated by the optimizer").
            min_utilization: 0.95,
            // Solve when the uncovered usage rose by 1% of the recent spend (or a commitment
            // expired, or the cap held the last solve back), at least every 28 days: half the
            // solves of a weekly schedule, the same 20 of 33 tuning scenarios met, mean ESR
            // 0.03 point lower.
            resolve_days: 28,
            // 4,000 columns without refinement: the same purchases as 40,000 with two rounds
            // (measured on the whole-usage mode, steady-8-7: ESR 32.95% vs 32.9%, minimum
            // monthly utilization 95.0% vs 95.1%) at a tenth of a second per solve, not ten.
            max_columns: 4_000,
            min_points: Options::default().min_points,
            refine_rounds: 0,
            trigger_share: 0.01,
            haircut: 0.0,
            residual: true,
            // 8-group sets (143 scenarios): 79 met either way, mean ESR 30.44% -> 30.56%; 40 to
            // 400 groups (7): 3 -> 5 met, ESR up on 5 (400 groups: +1.44 points) and within
            // 0.02 point on 2; public: steady-growth 34.44% -> 34.71%, mixed-fleet 32.71% ->
            // 33.46% (docs/benchmarks/backtest.md, "Held savings plans allocated").
            residual_savings_plans: false,
            total_utilization: 0.0,
            // Tuning seeds 1-3, 21, 22: 32 of 55 met (30 without), mean ESR +0.34 point;
            // held-out seeds 41, 42: 9 of 22 either way, +0.28 point (docs/benchmarks/backtest.md,
            // "Usage that moved").
            follow_moves: true,
            // Tuning seeds 1-3, 21, 22: 32 -> 33 -> 34 of 55 met, mean ESR 27.57% -> 28.11% ->
            // 29.64% (none, exchanges, both); held-out seeds 41, 42: 9 of 22 each, 28.80% ->
            // 29.21% -> 29.34% (docs/benchmarks/backtest.md, "Exchanges in the replay").
            exchanges: true,
            returns: true,
            // With idle reservations making a decision due: tuning 34 -> 36 of 55, mean ESR
            // 29.74% -> 30.64%; held-out seeds 41, 42: 9 -> 10 of 22; fresh seeds 51, 52: 10
            // -> 11 of 22 (docs/benchmarks/backtest.md, "Standard RIs sold").
            sales: true,
            // With `resize_plans` (sweep of 0.75-0.95 on the 143 8-group scenarios: 80, 87,
            // 94, 93, 86 and 82 met at 0.75, 0.8, 0.85, 0.875, 0.9, 0.95; docs/benchmarks/
            // backtest.md, "Savings plans sized next to whole instances").
            trim_floor: 0.85,
            resize_plans: true,
            redundant_share: 0.5,
            anticipate_moves: true,
            // Targets 0.965 and 0.97 at gain 1, 0.965 at gain 2: 162, 164 and 162 of the 231
            // generated scenarios met (159 off); docs/benchmarks/backtest.md, "The floor steered
            // by the bill".
            utilization_target: 0.97,
        }
    }
}

/// Tuning of the forecast + optimize planner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// Forecast quantile paths handed to the optimizer as equally weighted scenarios.
    pub quantiles: Vec<f64>,
    /// New commitments must be expected to be used at least `min_utilization` in the scenario of
    /// quantile `utilization_level` (a low quantile: "fully used even if demand is at P10").
    pub utilization_level: f64,
    pub min_utilization: f64,
    /// Re-plan only when the recent residual (usage left uncovered by the commitments active
    /// now, at its `trigger_quantile` over the last week) is worth at least this share of the
    /// recent on-demand-equivalent spend: forecasting and solving every day when the portfolio
    /// already covers the baseline would only confirm it.
    pub trigger_quantile: f64,
    pub trigger_share: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            quantiles: vec![0.1, 0.3, 0.5, 0.7, 0.9],
            utilization_level: 0.1,
            min_utilization: 0.95,
            trigger_quantile: 0.1,
            trigger_share: 0.01,
        }
    }
}

/// How finely the `hindsight_static` baseline's year is reduced before it is solved
/// ([`Options::max_coverage_columns`], [`Options::refine_rounds`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HindsightConfig {
    pub max_columns: usize,
    pub refine_rounds: usize,
}

impl Default for HindsightConfig {
    fn default() -> Self {
        // The optimizer's budget without its refinement rounds: on the public scenarios the
        // baseline's billed ESR moved by 0.0013 point (steady-growth 34.97815% -> 34.97686%,
        // mixed-fleet 33.10945% -> 33.10828%) and the whole command went from 36 s to 7.5 s;
        // the refinement rounds grow each LP by a quarter and the solves take 5x longer
        // (docs/benchmarks/backtest.md, "The hindsight baseline made fast").
        HindsightConfig {
            max_columns: Options::default().max_coverage_columns,
            refine_rounds: 0,
        }
    }
}
