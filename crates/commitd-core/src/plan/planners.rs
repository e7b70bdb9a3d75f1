//! commitd's rolling planner for the backtest, and the hindsight baseline.
//!
//! [`LadderPlanner`] is a transparent, data-driven planner built on the billing engine: at each
//! decision it bills the recent known usage with the commitments active *now* (so expired ones
//! no longer count and earlier purchases do), and buys, in small daily steps:
//!
//! 1. for each usage group, the reservation (AWS Standard RI / Azure reservation, cheapest
//!    1-year payment option) for the whole instances that stayed uncovered in almost every hour
//!    (a low quantile of the residual) over *every* look-back window (long, medium and the last
//!    days): a level that only the long window shows is a level that just dropped, and is not
//!    bought. Groups whose usage trends down are left to the flexible layer;
//! 2. then, per provider, the 1-year Compute / Azure savings plan whose hourly commitment would
//!    have saved the most on what is still uncovered, taken as the smaller of the answers over
//!    the long and the short look-back (so a drop stops the buying within days).
//!
//! Every decision is capped (laddering): what exceeds the cap waits for the next day, so
//! purchases are staggered and expirations will be too.

use super::{
    buy_reservation, buy_savings_plan, refunded_in_the_last_year, Decision, DecisionContext,
    Exchange, GivenUp, Planner,
};
use crate::backtest::baselines::{best_commitment, commitment_for_utilization};
use crate::backtest::{BacktestError, BacktestInput, Settings};
use crate::billing::BillingEngine;
use crate::domain::rules::{remaining_value, split_off};
use crate::domain::{
    Commitment, CommitmentAmount, CommitmentKind, Hour, Instrument, Money, Offer, Plan, Provider,
    Term,
};
use crate::optimize::{self, Constraints, DemandInput, MinUtilization, Options, TotalUtilization};
use crate::plan::demand as pipeline;

/// Tuning of the ladder planner.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannerConfig {
    /// Look-back windows (hours); a level must hold in all of them.
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

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
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

/// The planner commitd runs in the backtest and the settings it runs under (the benchmark
/// policy plus its laddering cap).
pub fn commitd_planner(
    input: &BacktestInput,
    base: &Settings,
    config: PlannerConfig,
) -> Result<(Box<dyn Planner>, Settings), BacktestError> {
    let mut settings = base.clone();
    let cap = match config.cap_per_decision {
        Some(c) => c,
        None => laddering_cap(&known_at_start(input, base), config.cap_share)?,
    };
    settings.policy.max_new_hourly_cost_per_decision = Some(cap);
    Ok((
        Box::new(LadderPlanner {
            config,
            cap,
            bounds: Constraints::one_year_only(),
            bought: 0,
        }),
        settings,
    ))
}

/// The usage known at the first decision: billed before it, less the latency (the hours after
/// are not known yet).
fn known_at_start(input: &BacktestInput, base: &Settings) -> crate::domain::UsageModel {
    let w = input.window;
    let known_end = w
        .decision_time
        .plus(-base.latency_hours)
        .max(w.history_start);
    input
        .usage
        .slice(crate::domain::HourRange::new(w.history_start, known_end))
}

/// The laddering step: the most new hourly commitment one decision may take on, `share` of the
/// on-demand-equivalent spend per hour over `known` (so it scales with the organisation).
pub fn laddering_cap(
    known: &crate::domain::UsageModel,
    share: f64,
) -> Result<Money, BacktestError> {
    let hours = known.hours().max(1) as f64;
    let ode: f64 = known.groups.iter().map(|g| g.ode.iter().sum::<f64>()).sum();
    Money::from_f64(share * ode / hours).map_err(|e| BacktestError::Settings(e.to_string()))
}

/// The least known usage a rolling planner decides on (two weeks): before, it buys nothing.
pub const MIN_KNOWN_HOURS: usize = 14 * 24;

/// The `hindsight_static` baseline: the optimizer's hindsight mode, one purchase at decision
/// time knowing the actual demand of the whole window. It is an oracle on purpose (an upper
/// reference), so it holds the evaluation window's usage itself instead of reading the
/// latency-cut view the harness gives planners.
pub fn hindsight_static(
    input: &BacktestInput,
    config: HindsightConfig,
) -> Option<Box<dyn Planner>> {
    let eval = input.usage.slice(input.window.evaluation());
    let actual = DemandInput::actual(
        eval.range.start,
        eval.groups
            .iter()
            .map(|g| (g.group.clone(), g.quantity.clone()))
            .collect(),
    );
    Some(Box::new(HindsightStatic {
        actual,
        config,
        done: false,
    }))
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

pub struct HindsightStatic {
    actual: DemandInput,
    config: HindsightConfig,
    done: bool,
}

impl Planner for HindsightStatic {
    fn name(&self) -> &str {
        "hindsight_static"
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Result<Decision, String> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl HindsightStatic {
    fn purchases(&mut self, ctx: &DecisionContext<'_>) -> Result<Vec<Commitment>, String> {
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
        .map_err(|e| format!("hindsight optimization: {e}"))?;
        plan_to_commitments(&plan, ctx.now, "hindsight")
    }
}

/// The purchases of a plan as commitments starting at `now` (exchanges are not replayed), through
/// the same converter as the daemon's cycle plan ([`crate::plan::demand::purchase_spec`]).
pub fn plan_to_commitments(
    plan: &Plan,
    now: Hour,
    prefix: &str,
) -> Result<Vec<Commitment>, String> {
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

pub struct LadderPlanner {
    config: PlannerConfig,
    cap: Money,
    /// What may be bought: the benchmark policy in the backtest, what `policies/` allow in the
    /// daemon ([`LookbackPlanner::bounded`]).
    bounds: Constraints,
    bought: usize,
}

/// The cheapest offer of `instrument` with one of `terms` that `bounds` allow.
fn cheapest<'a>(
    offers: &'a [Offer],
    provider: Provider,
    instrument: Instrument,
    terms: &[Term],
    bounds: &Constraints,
) -> Option<&'a Offer> {
    offers
        .iter()
        .filter(|o| o.instrument == instrument)
        .filter(|o| {
            o.term.is_some_and(|t| {
                terms.contains(&t) && bounds.allows(provider, instrument, t, o.payment)
            })
        })
        .min_by(|a, b| a.rate().total_cmp(&b.rate()))
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let k = ((values.len() - 1) as f64 * q).floor() as usize;
    let (_, v, _) = values.select_nth_unstable_by(k, f64::total_cmp);
    *v
}

/// (class, generation) of an instance family: AWS "m6i" -> ("m", 6), "db.r5" -> ("db.r", 5);
/// Azure series "Ds_v5" -> ("Ds", 5). None when the name has no generation number.
pub fn family_generation(family: &str) -> Option<(String, u32)> {
    if let Some((class, v)) = family.rsplit_once("_v") {
        return v.parse().ok().map(|g| (class.to_string(), g));
    }
    let digits = family.find(|c: char| c.is_ascii_digit())?;
    let (class, rest) = family.split_at(digits);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let generation = rest[..end].parse().ok()?;
    (!class.is_empty()).then(|| (class.to_string(), generation))
}

/// Whether a newer generation of group `gi`'s family class (same provider and region) had usage
/// in the last known week.
fn newer_generation_in_use(ctx: &DecisionContext<'_>, gi: usize) -> bool {
    let g = &ctx.groups[gi].group;
    let Some((class, generation)) = family_generation(&g.family) else {
        return false;
    };
    let n = ctx.known.range.len();
    let from = n.saturating_sub(7 * 24);
    ctx.groups
        .iter()
        .zip(&ctx.known.groups)
        .any(|(other, series)| {
            let o = &other.group;
            o.provider == g.provider
                && o.region == g.region
                && family_generation(&o.family)
                    .is_some_and(|(c, gen)| c == class && gen > generation)
                && series.quantity[from..n].iter().any(|&q| q > 0.0)
        })
}

/// The 20th percentile of the last 28 days of a series: the level a commitment would cover.
fn recent_level(series: &[f64]) -> f64 {
    let mut tail = series[series.len().saturating_sub(28 * 24)..].to_vec();
    quantile(&mut tail, 0.2)
}

/// Least-squares slope of `y` against its index, its standard error and the mean of `y`.
fn slope(y: &[f64]) -> Option<(f64, f64, f64)> {
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

/// Whether group `gi`'s family (same provider) had usage in another region in the last week.
fn family_elsewhere(ctx: &DecisionContext<'_>, gi: usize) -> bool {
    let g = &ctx.groups[gi].group;
    let n = ctx.known.range.len();
    let from = n.saturating_sub(7 * 24);
    ctx.groups
        .iter()
        .zip(&ctx.known.groups)
        .any(|(other, series)| {
            let o = &other.group;
            o.provider == g.provider
                && o.region != g.region
                && o.family == g.family
                && series.quantity[from..n].iter().any(|&q| q > 0.0)
        })
}

impl LadderPlanner {
    /// The share of a series' level expected to be gone after the trend horizon (0..1), when
    /// the daily means of the last `trend_days` decline significantly; None otherwise (and
    /// for growth: commitd never buys ahead of usage).
    fn decline(&self, hourly: &[f64]) -> Option<f64> {
        let days = self.config.trend_days;
        if days == 0 || hourly.len() < days * 24 {
            return None;
        }
        let daily: Vec<f64> = hourly[hourly.len() - days * 24..]
            .chunks(24)
            .map(|d| d.iter().sum::<f64>() / 24.0)
            .collect();
        let (b, se, mean) = slope(&daily)?;
        if mean <= 0.0 || b >= 0.0 || b > -self.config.trend_t * se {
            return None;
        }
        Some((-b / mean * self.config.trend_horizon_days).min(1.0))
    }

    /// Residual (uncovered) usage per hour per group over the last `hours` known hours, billed
    /// with `portfolio` as if all of it were active.
    fn residual(
        ctx: &DecisionContext<'_>,
        portfolio: &[Commitment],
        hours: usize,
    ) -> Result<Vec<Vec<f64>>, String> {
        let mut out = Vec::with_capacity(hours.min(ctx.known.range.len()));
        bill_recent(ctx, portfolio, hours, |_, left| out.push(left.to_vec()))?;
        Ok(out)
    }

    fn next_id(&mut self, what: &str) -> String {
        self.bought += 1;
        format!("commitd-{}-{what}", self.bought)
    }
}

impl Planner for LadderPlanner {
    fn name(&self) -> &str {
        "commitd"
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Result<Decision, String> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl LadderPlanner {
    fn purchases(&mut self, ctx: &DecisionContext<'_>) -> Result<Vec<Commitment>, String> {
        let longest = self.config.windows.iter().copied().max().unwrap_or(0);
        if ctx.known.range.len() < longest.min(7 * 24) {
            return Ok(Vec::new());
        }
        let mut budget = self.cap.to_f64();
        let mut active = ctx.active();
        let mut out = self.reservations(ctx, &mut active, &mut budget)?;
        out.extend(self.savings_plans(ctx, &active, &mut budget)?);
        Ok(out)
    }
}

impl LadderPlanner {
    /// Stage 1: per group, the reservation for the whole instances that stayed uncovered at
    /// the reservation quantile over every look-back window. Purchases are added to `active`
    /// and their cost taken from `budget`.
    fn reservations(
        &mut self,
        ctx: &DecisionContext<'_>,
        active: &mut Vec<Commitment>,
        budget: &mut f64,
    ) -> Result<Vec<Commitment>, String> {
        let longest = self.config.windows.iter().copied().max().unwrap_or(0);
        let terms = &ctx.policy.terms;
        let mut out = Vec::new();
        let residual = Self::residual(ctx, active, longest)?;
        for (gi, bg) in ctx.groups.iter().enumerate() {
            let instrument = match bg.group.provider {
                Provider::Aws => Instrument::StandardReservedInstance,
                Provider::Azure => Instrument::AzureReservation,
            };
            let offers = ctx.rates.offers_for(&bg.group);
            let Some(offer) = cheapest(offers, bg.group.provider, instrument, terms, &self.bounds)
            else {
                continue;
            };
            if offer.rate() >= bg.on_demand_rate {
                continue;
            }
            if hedged(&self.config, ctx, gi) {
                continue;
            }
            let series: Vec<f64> = residual.iter().map(|h| h[gi]).collect();
            let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
            let week = &series[series.len().saturating_sub(7 * 24)..];
            if mean(week) < self.config.decline_ratio * mean(&series) {
                continue;
            }
            let level = self
                .config
                .windows
                .iter()
                .map(|w| {
                    let mut tail = series[series.len().saturating_sub(*w)..].to_vec();
                    quantile(&mut tail, self.config.reservation_quantile)
                })
                .fold(f64::INFINITY, f64::min);
            // What the expected decline will take away from today's level over the horizon
            // (instances): the part of the level not to commit to.
            let fading = self
                .decline(&ctx.known.groups[gi].quantity)
                .map_or(0.0, |d| d * recent_level(&ctx.known.groups[gi].quantity));
            let affordable = (*budget / offer.rate()).floor();
            let count = ((level - fading) * self.config.reservation_share)
                .floor()
                .min(affordable);
            if count.is_nan() || count < 1.0 {
                continue;
            }
            let id = self.next_id("reservation");
            let c = buy_reservation(id, offer, ctx.now, &bg.group, count as u32)?;
            *budget -= c.hourly_cost.to_f64();
            active.push(c.clone());
            out.push(c);
        }
        Ok(out)
    }

    /// Stage 2: per provider, the Compute / Azure savings plan that would have saved the most on
    /// what `active` leaves uncovered, no more than would have been used at the configured
    /// minimum in every look-back window, within `budget`.
    fn savings_plans(
        &mut self,
        ctx: &DecisionContext<'_>,
        active: &[Commitment],
        budget: &mut f64,
    ) -> Result<Vec<Commitment>, String> {
        let longest = self.config.windows.iter().copied().max().unwrap_or(0);
        let terms = &ctx.policy.terms;
        let mut out = Vec::new();
        let long = Self::residual(ctx, active, longest)?;
        for (provider, instrument) in [
            (Provider::Aws, Instrument::ComputeSavingsPlan),
            (Provider::Azure, Instrument::AzureSavingsPlan),
        ] {
            let mut items = Vec::new();
            let mut chosen: Option<&Offer> = None;
            for (gi, bg) in ctx.groups.iter().enumerate() {
                if bg.group.provider != provider {
                    continue;
                }
                if let Some(o) = cheapest(
                    ctx.rates.offers_for(&bg.group),
                    provider,
                    instrument,
                    terms,
                    &self.bounds,
                ) {
                    if o.rate() < bg.on_demand_rate {
                        items.push((gi, bg.on_demand_rate, o.rate()));
                        chosen.get_or_insert(o);
                    }
                }
            }
            let Some(offer) = chosen else { continue };
            items.sort_by(|a, b| (a.2 / a.1).total_cmp(&(b.2 / b.1)).then(a.0.cmp(&b.0)));
            let per_window = self
                .config
                .windows
                .iter()
                .map(|w| {
                    let tail = &long[long.len().saturating_sub(*w)..];
                    let best = best_commitment(tail, &items);
                    commitment_for_utilization(
                        tail,
                        &items,
                        self.config.savings_plan_min_utilization,
                        best,
                    )
                })
                .fold(f64::INFINITY, f64::min);
            // The provider's expected decline, in plan dollars per hour of its usage level.
            let mut fading = 0.0;
            if self.config.trend_days > 0 {
                let n = ctx.known.range.len();
                let mut spend = vec![0.0; n];
                let mut level = 0.0;
                for &(gi, _, sp) in &items {
                    let q = &ctx.known.groups[gi].quantity;
                    for (s, v) in spend.iter_mut().zip(q) {
                        *s += v * sp;
                    }
                    level += recent_level(q) * sp;
                }
                fading = self.decline(&spend).map_or(0.0, |d| d * level);
            }
            let per_hour = (per_window - fading).min(budget.max(0.0));
            // Purchases below a cent per hour are noise: wait until there is more to buy.
            let per_hour = Money::from_micros((per_hour * 1000.0).floor() as i64 * 1000);
            if per_hour < Money::from_micros(10_000) {
                continue;
            }
            let id = self.next_id("savings-plan");
            let c = buy_savings_plan(id, offer, ctx.now, per_hour, None)?;
            *budget -= c.hourly_cost.to_f64();
            out.push(c);
        }
        Ok(out)
    }
}

/// Whether group `gi` gets no family- or region-bound commitment under the configured hedges.
fn hedged(config: &PlannerConfig, ctx: &DecisionContext<'_>, gi: usize) -> bool {
    (config.generation_hedge && newer_generation_in_use(ctx, gi))
        || (config.region_hedge && family_elsewhere(ctx, gi))
}

/// Tuning of the look-back optimizer planner.
#[derive(Clone, Debug, PartialEq)]
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
    /// ([`crate::backtest::Marketplace`]).
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

/// What the look-back planner did over a replay (`planner_stats` in the backtest's JSON).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LookbackStats {
    /// Decisions that ran the optimizer, and that did not.
    pub solved: usize,
    pub skipped: usize,
    /// Wall seconds inside the optimizer, summed over the solves.
    pub solve_seconds: f64,
    /// LP solves the optimizer made (relaxation, refinements, rounding), summed.
    pub lp_solves: usize,
    /// Solves the optimizer found infeasible (that decision bought nothing; see `decide`).
    pub infeasible: usize,
    /// Groups planned, at a solve, on their last week because usage moved into them
    /// ([`LookbackConfig::follow_moves`]), summed over the solves.
    pub moves_followed: usize,
    /// Exchanges made, and the reservation instances they gave up.
    pub exchanges: usize,
    pub instances_exchanged: u64,
    /// Reservation instances returned for a refund.
    pub instances_returned: u64,
    /// Standard RI instances listed on the Marketplace.
    pub instances_sold: u64,
    /// Reservation instances given up because the rest of the portfolio covered their usage
    /// ([`redundant_reservations`]); counted in the three above too.
    pub instances_redundant: u64,
    /// New savings plans scaled down by [`trim_savings_plans`].
    pub savings_plans_trimmed: usize,
    /// Largest LP (columns, rows) and demand points after reduction, over the solves.
    pub max_columns: usize,
    pub max_rows: usize,
    pub max_points: usize,
}

/// What the look-back planner carries from one decision to the next, for its trigger
/// ([`LookbackConfig::trigger_share`]). The replay keeps it in the planner; the daemon keeps it
/// between its cycles ([`LookbackPlanner::remembering`], [`LookbackPlanner::memory`]), so that a
/// cycle solves exactly when a replay's decision would. Without it every decision solves, and a
/// daily solve on spiky usage ratchets: each day's look-back holds different spikes, a marginal
/// instance clears the floor on some of them, and what one day buys is never undone by the next.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LookbackMemory {
    /// (time, capped) of the last solve: capped when the laddering cap held it back, which
    /// makes the next decision solve again.
    pub last_solve: Option<(Hour, bool)>,
    /// Commitments the previous decision left active (with its purchases, less what it gave
    /// up): fewer now means one expired, or (in the daemon) that a purchase was not executed,
    /// and either makes the decision solve.
    pub active_after: usize,
    /// [`uncovered_value`] per group just after the last solve (with its purchases). Keyed by
    /// group, since the daemon's groups can change between cycles (a new instance type billed).
    pub uncovered_after: std::collections::BTreeMap<crate::domain::UsageGroup, f64>,
}

/// The look-back optimizer: at a decision it runs the portfolio optimizer in hindsight mode on
/// the last `window_days` of known usage, scaled down to the recent level, as if that were the
/// demand to come, and buys what it adds: by default on what the commitments active now leave
/// uncovered ([`LookbackConfig::residual`]), else with them as existing ones. The
/// optimizer chooses instrument, payment option and amount together (reservations up to their
/// own break-even, savings plans on the rest), which the ladder's fixed quantiles do not. The
/// ladder's guards are kept: the trend guard scales the look-back down, and the hedges' groups
/// get no family- or region-bound purchase (a savings plan from the ladder's stage 2 covers them).
/// Usage that moved between related groups is bought at its new place at once
/// ([`LookbackConfig::follow_moves`]), and Azure reservations it left idle are exchanged for
/// what is bought there ([`LookbackConfig::exchanges`]) or, when nothing is bought, returned
/// ([`LookbackConfig::returns`]).
pub struct LookbackPlanner {
    config: LookbackConfig,
    /// The ladder, for its guards and its savings-plan stage.
    ladder: LadderPlanner,
    /// What the previous decisions leave to this one, for the trigger.
    memory: LookbackMemory,
    /// The LP's status at the last solve (None: no solve yet).
    solver_status: Option<String>,
    pub stats: LookbackStats,
}

impl LookbackPlanner {
    /// A planner that holds each decision's new hourly commitment to `cap` (the laddering
    /// step), under the benchmark policy.
    pub fn new(config: LookbackConfig, ladder: PlannerConfig, cap: Money) -> Self {
        LookbackPlanner {
            config,
            ladder: LadderPlanner {
                config: ladder,
                cap,
                bounds: Constraints::one_year_only(),
                bought: 0,
            },
            memory: LookbackMemory::default(),
            solver_status: None,
            stats: LookbackStats::default(),
        }
    }

    /// The same planner buying only what `bounds` allow (the instruments, terms and payment
    /// options, the caps on new hourly commitment and upfront, the coverage ceiling); a
    /// utilization floor in `bounds` is the least the steered floor may come down to.
    pub fn bounded(mut self, bounds: Constraints) -> Self {
        if let Some(m) = bounds.max_new_hourly {
            self.ladder.cap = self.ladder.cap.min(m);
        }
        self.ladder.bounds = bounds;
        self
    }

    /// The laddering step: the most new hourly commitment one decision takes on.
    pub fn cap(&self) -> Money {
        self.ladder.cap
    }

    /// The solver's status at the last solve; None when no decision has solved yet.
    pub fn solver_status(&self) -> Option<&str> {
        self.solver_status.as_deref()
    }

    /// The same planner, continuing from where earlier decisions left off (the daemon's
    /// previous cycle).
    pub fn remembering(mut self, memory: LookbackMemory) -> Self {
        self.memory = memory;
        self
    }

    /// What the decisions so far leave to the next one.
    pub fn memory(&self) -> &LookbackMemory {
        &self.memory
    }
}

/// The look-back optimizer under the benchmark policy (see [`commitd_planner`] for the cap).
pub fn lookback_planner(
    input: &BacktestInput,
    base: &Settings,
    ladder: PlannerConfig,
    config: LookbackConfig,
) -> Result<(LookbackPlanner, Settings), BacktestError> {
    let (_, settings) = commitd_planner(input, base, ladder.clone())?;
    let cap = settings
        .policy
        .max_new_hourly_cost_per_decision
        .unwrap_or(Money::ZERO);
    Ok((LookbackPlanner::new(config, ladder, cap), settings))
}

/// On-demand value per hour of the usage `portfolio` leaves uncovered over the last known week,
/// per group (its median hour), and the recent on-demand-equivalent spend per hour.
fn uncovered_value(
    ctx: &DecisionContext<'_>,
    portfolio: &[Commitment],
) -> Result<(Vec<f64>, f64), String> {
    let residual = LadderPlanner::residual(ctx, portfolio, 7 * 24)?;
    let n = ctx.known.range.len();
    let from = n.saturating_sub(7 * 24);
    let (mut value, mut ode) = (Vec::with_capacity(ctx.groups.len()), 0.0);
    for (gi, bg) in ctx.groups.iter().enumerate() {
        let mut s: Vec<f64> = residual.iter().map(|h| h[gi]).collect();
        value.push(quantile(&mut s, 0.5) * bg.on_demand_rate);
        ode += ctx.known.groups[gi].quantity[from..n].iter().sum::<f64>() * bg.on_demand_rate
            / (n - from).max(1) as f64;
    }
    Ok((value, ode))
}

/// Median of the daily means of the last `days` whole days of `hourly`.
fn daily_median(hourly: &[f64], days: usize) -> f64 {
    quantile(&mut daily_means(hourly, days), 0.5)
}

/// The means of the last `days` whole days of `hourly` (whole days ending at its end; fewer
/// if it is shorter).
fn daily_means(hourly: &[f64], days: usize) -> Vec<f64> {
    let whole = hourly.len() / 24 * 24;
    hourly[hourly.len() - whole.min(days * 24)..]
        .chunks(24)
        .map(|d| d.iter().sum::<f64>() / d.len().max(1) as f64)
        .collect()
}

/// Bills `portfolio` (every commitment taken as active) over the last `hours` known hours,
/// handing each hour's bill and what it left uncovered per group to `f`.
pub fn bill_recent(
    ctx: &DecisionContext<'_>,
    portfolio: &[Commitment],
    hours: usize,
    mut f: impl FnMut(&crate::billing::HourBill, &[f64]),
) -> Result<(), String> {
    let end = ctx.known.range.len();
    let start = end.saturating_sub(hours);
    let series: Vec<&[f64]> = ctx
        .known
        .groups
        .iter()
        .map(|g| &g.quantity[start..end])
        .collect();
    BillingEngine::new(ctx.groups.to_vec(), portfolio, ctx.rates)
        .map_err(|e| e.to_string())?
        .bill_all_active_series(&series, |_, bill, left| f(bill, left));
    Ok(())
}

/// The least change of a group's level (as a share of the larger of its look-back and recent
/// levels) that counts as usage moving in or out of it. Chosen on the tuning sweep: 0 (every
/// change) cost 0.17 point of ESR on a 400-group mixed fleet, where unrelated trends in related
/// groups offset each other; 0.5 met 2 fewer of the 55 tuning scenarios.
const MOVE_SHARE: f64 = 0.25;

/// Whether usage may move between the two groups: the same instance type in two regions, or two
/// generations of one family class in one region (same provider).
fn related(a: &crate::domain::UsageGroup, b: &crate::domain::UsageGroup) -> bool {
    a.provider == b.provider
        && (a.instance_type == b.instance_type
            || (a.region == b.region
                && family_generation(&a.family)
                    .zip(family_generation(&b.family))
                    .is_some_and(|((ca, _), (cb, _))| ca == cb)))
}

/// Whether `c` is bound to group `g`'s family or instance type in its region.
fn binds(c: &Commitment, g: &crate::domain::UsageGroup) -> bool {
    matches!(
        c.instrument,
        Instrument::StandardReservedInstance
            | Instrument::ConvertibleReservedInstance
            | Instrument::AzureReservation
            | Instrument::Ec2InstanceSavingsPlan
    ) && c.provider == g.provider
        && c.region.as_deref() == Some(g.region.as_str())
        && (c.family.as_deref() == Some(g.family.as_str())
            || c.instance_type.as_deref() == Some(g.instance_type.as_str()))
}

impl Planner for LookbackPlanner {
    fn name(&self) -> &str {
        "commitd"
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(&self.stats).unwrap_or_default()
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Result<Decision, String> {
        let known = ctx.known;
        let n = known.range.len();
        let held_now = ctx.active();
        let expired = held_now.len() < self.memory.active_after;
        self.memory.active_after = held_now.len();
        if n < MIN_KNOWN_HOURS {
            return Ok(Decision::default());
        }
        let w = (self.config.window_days * 24).min(n);
        // Each group's level over the look-back and over the last days.
        let levels: Vec<(f64, f64)> = known
            .groups
            .iter()
            .map(|g| {
                (
                    daily_median(&g.quantity[n - w..], self.config.window_days),
                    daily_median(&g.quantity, self.config.level_days),
                )
            })
            .collect();
        // Usage that moved (a migration to a newer generation of the family class in the
        // region, a move of an instance type to another region) is not growth. A group whose
        // level rose takes, as the share of its look-back planned on its last week, the part
        // of its related groups' rise that the related groups which fell lost (on-demand value):
        // a whole move is bought at its new place at once, growth still waits for the look-back.
        let change: Vec<f64> = ctx
            .groups
            .iter()
            .zip(&levels)
            .map(|(bg, &(long, recent))| {
                // Noise and gradual trends are not moves: a group counts only when its level
                // changed by more than MOVE_SHARE of itself.
                if (recent - long).abs() <= MOVE_SHARE * long.max(recent) {
                    0.0
                } else {
                    (recent - long) * bg.on_demand_rate
                }
            })
            .collect();
        // Idle Azure reservations are planned as given up: the solve covers what they still
        // covered, and the Azure reservations it buys absorb their refund (`exchange_idle`);
        // idle Standard RIs are listed. Reservations standing idle make a decision due: a drop
        // does not raise the uncovered usage that otherwise triggers a solve.
        let fell: Vec<bool> = change.iter().map(|&c| c < 0.0).collect();
        // A group whose usage is moving to a related one (below) is judged on where its fade
        // will be when giving up takes effect, not where it is: a listing sells two weeks
        // later, and the fade goes on meanwhile.
        let fades: Vec<f64> = (0..ctx.groups.len())
            .map(|gi| {
                if !self.config.anticipate_moves || !fell[gi] {
                    return 0.0;
                }
                let Some((rate, fall)) = fade(&known.groups[gi].quantity) else {
                    return 0.0;
                };
                // Leaving: over the same days its related groups that rose are filling by at
                // least half of what it loses (on-demand value per day), so that a season
                // ending here and a spike there is not taken for a move.
                let filling: f64 = change
                    .iter()
                    .enumerate()
                    .filter(|&(gj, &c)| {
                        gj != gi && c > 0.0 && related(&ctx.groups[gi].group, &ctx.groups[gj].group)
                    })
                    .filter_map(|(gj, _)| {
                        daily_slope(&known.groups[gj].quantity)
                            .map(|b| b.max(0.0) * ctx.groups[gj].on_demand_rate)
                    })
                    .sum();
                if filling >= 0.5 * fall * ctx.groups[gi].on_demand_rate {
                    rate
                } else {
                    0.0
                }
            })
            .collect();
        let mut idle = idle_reservations(
            ctx,
            &held_now,
            &fell,
            &fades,
            self.config.exchanges || self.config.returns,
            self.config.sales,
        );
        // Reservations whose usage the rest of the portfolio would cover anyway go the same way
        // (checked daily: a weekly check, to save its bills on large fleets, met 2 fewer of 231
        // generated scenarios).
        self.stats.instances_redundant += redundant_reservations(
            ctx,
            &held_now,
            &mut idle,
            self.config.redundant_share,
            self.config.exchanges || self.config.returns,
            self.config.sales,
        )?;
        let due = !idle.is_empty()
            || match self.memory.last_solve {
                None => true,
                Some((at, capped)) => {
                    capped
                        || expired
                        || ctx.now.since(at) >= self.config.resolve_days as i64 * 24
                        || (self.config.trigger_share > 0.0 && {
                            // A group whose level fell (usage that dropped or moved away)
                            // does not hide usage that rose elsewhere.
                            let (value, ode) = uncovered_value(ctx, &held_now)?;
                            let rose: f64 = value
                                .iter()
                                .enumerate()
                                .map(|(gi, v)| {
                                    let after = self
                                        .memory
                                        .uncovered_after
                                        .get(&ctx.groups[gi].group)
                                        .copied()
                                        .unwrap_or(0.0);
                                    let d = v - after;
                                    if fell[gi] {
                                        d.max(0.0)
                                    } else {
                                        d
                                    }
                                })
                                .sum();
                            rose >= self.config.trigger_share * ode
                        })
                }
            };
        if !due {
            self.stats.skipped += 1;
            return Ok(Decision::default());
        }
        self.stats.solved += 1;
        let moved: Vec<f64> = (0..ctx.groups.len())
            .map(|gi| {
                if !self.config.follow_moves || change[gi] <= 0.0 {
                    return 0.0;
                }
                let (mut fell, mut rose) = (0.0, 0.0);
                for (gj, c) in change.iter().enumerate() {
                    if gj == gi || related(&ctx.groups[gi].group, &ctx.groups[gj].group) {
                        if *c > 0.0 {
                            rose += c;
                        } else {
                            fell -= c;
                        }
                    }
                }
                (fell / rose).min(1.0)
            })
            .collect();
        self.stats.moves_followed += moved.iter().filter(|&&m| m > 0.0).count();
        let active = give_up(&held_now, &idle, ctx.now)?;
        const WEEK: usize = 7 * 24;
        let series: Vec<(crate::domain::UsageGroup, Vec<f64>)> = known
            .groups
            .iter()
            .zip(&moved)
            .zip(&levels)
            .zip(&fades)
            .map(|(((g, &moved), &(long, recent)), &fade)| {
                let q = &g.quantity;
                // Scaled down to the recent level (a drop: never up, so that growth is not
                // bought ahead and a peak is not committed to), and by the decline the trend
                // guard expects over its horizon.
                let keep = 1.0 - self.config.haircut;
                let mut f = if long > 0.0 {
                    (recent / long).min(1.0)
                } else {
                    1.0
                } * keep;
                if let Some(d) = self.ladder.decline(q) {
                    f *= 1.0 - d;
                }
                // Usage moving away is planned where its reservations were judged idle: not
                // bought back where it is leaving.
                if fade > 0.0 {
                    f *= faded(ctx, g.group.provider, fade);
                }
                // The haircut applies to what moved in as well.
                let lookback = (n - w..n).map(|h| {
                    // The same hour of the week in the last known week.
                    let last_week = q[n - WEEK + (WEEK - (n - h) % WEEK) % WEEK];
                    (1.0 - moved) * q[h] * f + moved * last_week * keep
                });
                (g.group.clone(), lookback.collect())
            })
            .collect();
        // The commitments active now are treated as running through the look-back horizon: one
        // that expires inside it would otherwise be replaced today and overlap its replacement
        // for weeks; it is replaced at its expiry instead (an expiry triggers a solve).
        let horizon_end = ctx.now.plus(w as i64);
        let held: Vec<Commitment> = active
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if c.end < horizon_end {
                    c.end = horizon_end;
                }
                c
            })
            .collect();
        // What the held commitments are used above the total floor, per week of the look-back
        // (USD; the last week may be partial).
        let mut weekly: Vec<f64> = Vec::new();
        // Held savings plans the optimizer allocates itself (`residual_savings_plans` off): a
        // reservation bought now applies before them in the bill, and they move to other usage.
        let (held_sps, held): (Vec<Commitment>, Vec<Commitment>) =
            if self.config.residual && !self.config.residual_savings_plans {
                let (sps, rest) = held
                    .into_iter()
                    .partition(|c| c.instrument.kind() == Some(CommitmentKind::Spend));
                (pooled(sps), rest)
            } else {
                (Vec::new(), held)
            };
        // `series` stays the look-back before the held commitments are billed, for the check of
        // the savings plans bought (`trim_savings_plans`).
        let lookback: Vec<&[f64]> = series.iter().map(|(_, q)| q.as_slice()).collect();
        let (demand_series, existing): (Vec<(crate::domain::UsageGroup, Vec<f64>)>, &[Commitment]) =
            if self.config.residual {
                // The demand handed to the optimizer is what the held commitments leave
                // uncovered, billed in the providers' order, with nothing held: the LP allocates
                // usage optimally, so a new commitment could otherwise meet its utilization
                // floor by taking usage an existing one covers, and the portfolio as a whole
                // would end up under the floor (each re-solve on noisy usage adding one more).
                let engine = BillingEngine::new(ctx.groups.to_vec(), &held, ctx.rates)
                    .map_err(|e| e.to_string())?;
                let mut residual: Vec<Vec<f64>> = series
                    .iter()
                    .map(|(_, q)| Vec::with_capacity(q.len()))
                    .collect();
                engine.bill_all_active_series(&lookback, |i, bill, left| {
                    let slack =
                        bill.used_commitment - self.config.total_utilization * bill.commitment_cost;
                    if weekly.len() <= i / WEEK {
                        weekly.push(0.0);
                    }
                    weekly[i / WEEK] += slack;
                    for (r, u) in residual.iter_mut().zip(left) {
                        r.push(*u);
                    }
                });
                let residual = series
                    .iter()
                    .zip(residual)
                    .map(|((g, _), r)| (g.clone(), r))
                    .collect();
                (residual, &held_sps)
            } else {
                (series.clone(), &held)
            };
        let demand = DemandInput::actual(ctx.now, demand_series);
        // What a solve may buy: the benchmark policy (1-year terms, any instrument and payment
        // option) in the backtest, what `policies/` allow in the daemon.
        let mut constraints = self.ladder.bounds.clone();
        constraints.allow_exchanges = false;
        constraints.max_new_hourly = Some(self.ladder.cap);
        // A policy's floor is a guardrail a person wrote: steering never goes under it.
        let mut floor = constraints.min_utilization.map(|p| p.min);
        if self.config.min_utilization > 0.0 {
            // The floor is steered by what the portfolio (as it stands after this decision's
            // exits) made of the last four known weeks: one that runs above the target buys
            // deeper, one under it buys only what clears the floor by the gap.
            let mut min = self.config.min_utilization;
            if self.config.utilization_target > 0.0 && !active.is_empty() {
                if let Some(u) = recent_utilization(ctx, &active, 28 * 24)? {
                    min = steered_floor(min, self.config.utilization_target, u);
                }
            }
            floor = Some(floor.map_or(min, |policy| min.max(policy)));
        }
        constraints.min_utilization = floor.map(|min| MinUtilization { level: 0.5, min });
        // The credit is what the held commitments clear the floor by in their worst whole week,
        // as if every week were that one: a peak (December, a long spike) lifts their use for a
        // few weeks, and would otherwise pay for new commitments idle once it is over.
        let whole_weeks = (w / WEEK).clamp(1, weekly.len().max(1));
        let worst = weekly
            .iter()
            .take(whole_weeks)
            .copied()
            .fold(f64::INFINITY, f64::min);
        let credit = if worst.is_finite() {
            let whole: f64 = weekly.iter().sum();
            whole.min(worst * w as f64 / WEEK as f64).max(0.0)
        } else {
            0.0
        };
        if self.config.residual && self.config.total_utilization > 0.0 {
            constraints.min_total_utilization = Some(TotalUtilization {
                level: 0.5,
                min: self.config.total_utilization,
                credit,
            });
        }
        let options = Options {
            marginal_resolves: 0,
            max_coverage_columns: self.config.max_columns,
            refine_rounds: self.config.refine_rounds,
            min_points: self.config.min_points,
            resize_plans: self.config.resize_plans,
            ..Options::default()
        };
        let started = std::time::Instant::now();
        let plan = match optimize::hindsight(&demand, ctx.rates, existing, &constraints, &options) {
            Ok(plan) => plan,
            // Seen in 2 of ~130 replays with the total floor, in a solve with the amounts
            // rounded to whole instances (the cause was not found): that decision buys
            // nothing and the next day solves again, rather than the whole replay failing.
            Err(optimize::OptimizeError::Infeasible(_)) => {
                self.stats.infeasible += 1;
                self.solver_status = Some("infeasible".into());
                self.memory.last_solve = Some((ctx.now, true));
                return Ok(Decision::default());
            }
            Err(e) => return Err(format!("look-back optimization: {e}")),
        };
        self.solver_status = Some(plan.solver.status.clone());
        let st = &mut self.stats;
        st.solve_seconds += started.elapsed().as_secs_f64();
        st.lp_solves += plan.solver.solves;
        st.max_columns = st.max_columns.max(plan.solver.columns);
        st.max_rows = st.max_rows.max(plan.solver.rows);
        st.max_points = st.max_points.max(plan.solver.reduced_points);
        let mut out = plan_to_commitments(&plan, ctx.now, "commitd")?;
        // The hedges: no family- or region-bound purchase for a group the organisation may be
        // moving away from; the ladder's savings-plan stage covers what that leaves. (Pricing
        // those groups without bound offers, so that the optimizer sizes their savings plan
        // together with the rest, was measured and not kept: docs/benchmarks/backtest.md.)
        // An Azure reservation can follow its usage by an exchange, so it needs no hedge when
        // exchanges are on.
        let follows =
            |c: &Commitment| self.config.exchanges && c.instrument == Instrument::AzureReservation;
        let before = out.len();
        out.retain(|c| {
            !ctx.groups.iter().enumerate().any(|(gi, bg)| {
                binds(c, &bg.group)
                    && (fades[gi] > 0.0 || (!follows(c) && hedged(&self.ladder.config, ctx, gi)))
            })
        });
        let mut budget =
            self.ladder.cap.to_f64() - out.iter().map(|c| c.hourly_cost.to_f64()).sum::<f64>();
        if out.len() < before {
            let mut held = active.clone();
            held.extend(out.iter().cloned());
            out.extend(self.ladder.savings_plans(ctx, &held, &mut budget)?);
        }
        if self.config.trim_floor > 0.0 {
            let mut portfolio = held.clone();
            portfolio.extend(held_sps.iter().cloned());
            let trimmed =
                trim_savings_plans(ctx, &portfolio, &mut out, &lookback, self.config.trim_floor)?;
            self.stats.savings_plans_trimmed += trimmed;
            out.retain(|c| c.amount != CommitmentAmount::HourlySpend(Money::ZERO));
            // What the trim took off was not held back by the cap: no re-solve tomorrow for it.
            budget =
                self.ladder.cap.to_f64() - out.iter().map(|c| c.hourly_cost.to_f64()).sum::<f64>();
        }
        self.memory.last_solve = Some((ctx.now, budget < 0.1 * self.ladder.cap.to_f64()));
        // Idle Azure reservations are exchanged or returned, idle Standard RIs sold.
        let (idle_ris, idle): (Vec<Given>, Vec<Given>) = idle
            .into_iter()
            .partition(|&(i, _)| held_now[i].instrument == Instrument::StandardReservedInstance);
        let exchange = if self.config.exchanges {
            exchange_idle(ctx.now, &held_now, &idle, &mut out)?
        } else {
            None
        };
        // What is held after this decision: the instances given up are gone, the rest of the
        // idle ones (if the purchases could not absorb their refund) are still there.
        let (mut given, exchanges) = match exchange {
            Some((ex, given)) => {
                self.stats.exchanges += 1;
                self.stats.instances_exchanged += given.iter().map(|&(_, k)| k as u64).sum::<u64>();
                (given, vec![ex])
            }
            None => (Vec::new(), Vec::new()),
        };
        // What no purchase absorbed is returned, as far as the refund cap allows.
        let mut returns = Vec::new();
        if self.config.returns {
            let mut room =
                ctx.policy.azure_refund_cap - refunded_in_the_last_year(ctx.returned, ctx.now);
            for &(i, count) in &idle {
                let left = count - given_count(&given, i);
                let c = &held_now[i];
                let (k, refund) = most_that_fit(c, left, ctx.now, room)?;
                if k > 0 {
                    room -= refund;
                    self.stats.instances_returned += k as u64;
                    returns.push(GivenUp {
                        id: c.id.clone(),
                        count: k,
                    });
                    give_more(&mut given, i, k);
                }
            }
        }
        let sales: Vec<GivenUp> = idle_ris
            .iter()
            .map(|&(i, count)| GivenUp {
                id: held_now[i].id.clone(),
                count,
            })
            .collect();
        self.stats.instances_sold += idle_ris.iter().map(|&(_, k)| k as u64).sum::<u64>();
        given.extend(idle_ris);
        let mut after = give_up(&held_now, &given, ctx.now)?;
        after.extend(out.iter().cloned());
        after.extend(
            exchanges
                .iter()
                .flat_map(|e: &Exchange| e.targets.iter().cloned()),
        );
        self.memory.active_after = after.len();
        if self.config.trigger_share > 0.0 {
            let (value, _) = uncovered_value(ctx, &after)?;
            self.memory.uncovered_after = ctx
                .groups
                .iter()
                .map(|g| g.group.clone())
                .zip(value)
                .collect();
        }
        Ok(Decision {
            purchases: out,
            exchanges,
            returns,
            sales,
        })
    }
}

/// The new savings plans in `out` scaled down, per provider, until what they add to the use of
/// every savings plan over the look-back is at least `floor` of their commitment; returns how
/// many were scaled down (or dropped, under the provider's minimum).
///
/// The optimizer holds each new pool to the floor, but it allocates the held savings plans
/// freely: in the hours where usage is short of every plan's commitment it can leave a held
/// plan idle and the new one used, so the new plan "meets" its floor while the plans taken
/// together do not. The bill decides who is idle by discount, not by age: what a new plan is
/// worth is what it adds. `lookback` is the demand the optimizer was given (before billing),
/// billed with `held` and the rest of `out` (new reservations apply first, as in the bill).
fn trim_savings_plans(
    ctx: &DecisionContext<'_>,
    held: &[Commitment],
    out: &mut [Commitment],
    lookback: &[&[f64]],
    floor: f64,
) -> Result<usize, String> {
    let hours = lookback.first().map_or(0, |s| s.len());
    let mut trimmed = 0;
    for provider in [Provider::Aws, Provider::Azure] {
        let plans: Vec<usize> = (0..out.len())
            .filter(|&i| {
                out[i].provider == provider
                    && out[i].instrument.kind() == Some(CommitmentKind::Spend)
            })
            .collect();
        let commitment: f64 = plans.iter().map(|&i| out[i].hourly_cost.to_f64()).sum();
        if plans.is_empty() || hours == 0 || commitment <= 0.0 {
            continue;
        }
        // Savings-plan use over the look-back with this provider's new plans scaled by `s`.
        let used = |s: f64| -> Result<f64, String> {
            let mut all = held.to_vec();
            for (i, c) in out.iter().enumerate() {
                if !plans.contains(&i) {
                    all.push(c.clone());
                } else if s > 0.0 {
                    all.push(scaled_plan(c, s));
                }
            }
            let engine = BillingEngine::new(ctx.groups.to_vec(), &all, ctx.rates)
                .map_err(|e| e.to_string())?;
            let mut sum = 0.0;
            engine.bill_all_active_series(lookback, |_, bill, _| sum += bill.used_commitment);
            Ok(sum)
        };
        let base = used(0.0)?;
        let ok = |s: f64| -> Result<bool, String> {
            Ok(used(s)? - base >= floor * s * commitment * hours as f64 - 1e-9)
        };
        if ok(1.0)? {
            continue;
        }
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..8 {
            let mid = 0.5 * (lo + hi);
            if ok(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        for &i in &plans {
            out[i] = scaled_plan(&out[i], lo);
        }
        trimmed += plans.len();
    }
    Ok(trimmed)
}

/// A savings plan with its hourly commitment (and so its cost and upfront) scaled by `s`,
/// rounded down to what the provider accepts ([`optimize::spend_step`], as the optimizer's own
/// plans are); zero under that minimum.
fn scaled_plan(c: &Commitment, s: f64) -> Commitment {
    let CommitmentAmount::HourlySpend(per_hour) = c.amount else {
        return c.clone();
    };
    let (decimals, min) = optimize::spend_step(c.provider);
    let step = 10i64.pow(6u32.saturating_sub(decimals));
    let micros = ((per_hour.micros() as f64 * s) as i64) / step * step;
    let min = Money::from_decimal(min).map_or(0, Money::micros);
    let micros = if micros < min { 0 } else { micros };
    let ratio = if per_hour.micros() > 0 {
        micros as f64 / per_hour.micros() as f64
    } else {
        0.0
    };
    let mut out = c.clone();
    out.amount = CommitmentAmount::HourlySpend(Money::from_micros(micros));
    out.hourly_cost = Money::from_micros((c.hourly_cost.micros() as f64 * ratio) as i64);
    out.upfront = Money::from_micros((c.upfront.micros() as f64 * ratio) as i64);
    out
}

/// Savings plans that cover the same usage at the same rates (provider, instrument, term,
/// payment option, region and family) merged into one per kind, their hourly commitments and
/// costs summed: the optimizer allocates them alike, and one pool per plan would multiply its
/// columns by the plans held (at 400 groups, each plan is 400 columns per demand point). Every
/// plan here runs through the look-back (see `held`), so their ends do not matter inside it.
fn pooled(plans: Vec<Commitment>) -> Vec<Commitment> {
    let mut out: Vec<Commitment> = Vec::new();
    for c in plans {
        let same = out.iter_mut().find(|o| {
            (o.provider, o.instrument, o.term, o.payment)
                == (c.provider, c.instrument, c.term, c.payment)
                && o.region == c.region
                && o.family == c.family
        });
        match (same, &c.amount) {
            (Some(o), CommitmentAmount::HourlySpend(add)) => {
                if let CommitmentAmount::HourlySpend(have) = &mut o.amount {
                    *have += *add;
                }
                o.hourly_cost += c.hourly_cost;
                o.upfront += c.upfront;
                o.start = o.start.min(c.start);
                o.end = o.end.min(c.end);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The share of the recent hours in which the instances a reservation pool is said to leave
/// idle may have been in use: only what stood idle in the other 80% of the hours is given up.
const IDLE_QUANTILE: f64 = 0.2;

/// Instances of the held Azure reservations that stood idle in almost every recent hour, as
/// (index in `held`, instances). Per size-flexibility pool (region and series), the idle units
/// of an hour are the pool's capacity minus its usage (reservations apply first, so this is
/// what the bill shows unused). The recent hours are the last known week and, separately, its
/// last two days (both must show the idle level, so that a pool whose usage came back keeps its
/// reservations, and a weekend does not count); for a pool with a group whose level `fell` (by
/// more than [`MOVE_SHARE`]: usage that moved away or dropped), the last two days alone, so
/// that the reservations are given up while the usage's new place is being bought, not a week
/// later. The pool gives up whole instances worth at most its idle level, the latest-ending
/// reservations first (each gives up the most idle hours). Reservations with less than a week
/// left run out instead.
///
/// Azure reservations are judged when `azure`; AWS Standard RIs when `ris`, those the
/// Marketplace would take ([`Marketplace`](crate::backtest::Marketplace): 30 days old, a whole
/// month left when the listing sells). Instances listed earlier still apply until they sell:
/// they count in the pool's capacity, and their units come off its idle level.
fn idle_reservations(
    ctx: &DecisionContext<'_>,
    held: &[Commitment],
    fell: &[bool],
    fades: &[f64],
    azure: bool,
    ris: bool,
) -> Vec<(usize, u32)> {
    use crate::domain::rules::Marketplace;
    use crate::plan::is_listed;
    let n = ctx.known.range.len();
    let market = ctx.policy.ri_marketplace;
    let listed = |c: &Commitment| is_listed(ctx.sold, &c.id, ctx.now);
    let sellable = |c: &Commitment| market.listing(c, ctx.now).is_ok();
    // Per pool: the members that may be given up, the units of those too young to be listed,
    // and of those already listed.
    type Pool = (Vec<usize>, f64, f64);
    let mut pools: std::collections::BTreeMap<(Provider, String, String), Pool> =
        Default::default();
    for (i, c) in held.iter().enumerate() {
        let judged = match c.instrument {
            Instrument::AzureReservation => azure,
            Instrument::StandardReservedInstance => ris,
            _ => false,
        };
        if !judged || c.remaining_hours(ctx.now) < 7 * 24 {
            continue;
        }
        let Some(key) = c.region.clone().zip(c.flex_group()) else {
            continue;
        };
        let pool = pools.entry((c.provider, key.0, key.1)).or_default();
        if c.instrument == Instrument::StandardReservedInstance && listed(c) {
            pool.2 += c.units();
        } else if c.instrument == Instrument::AzureReservation || sellable(c) {
            pool.0.push(i);
        } else if ctx.now.since(c.start) < Marketplace::MIN_AGE_HOURS {
            pool.1 += c.units();
        }
    }
    pools.retain(|_, (members, _, _)| !members.is_empty());
    let mut out = Vec::new();
    for ((provider, region, flex), (mut members, young_units, listed_units)) in pools {
        let capacity: f64 =
            members.iter().map(|&i| held[i].units()).sum::<f64>() + young_units + listed_units;
        let groups: Vec<(usize, f64)> = ctx
            .groups
            .iter()
            .enumerate()
            .filter_map(|(gi, bg)| {
                let g = &bg.group;
                let s = g.sizing();
                (g.provider == provider && g.region == region && s.flex_group == flex)
                    .then_some((gi, s.units))
            })
            .collect();
        let keep: Vec<f64> = groups
            .iter()
            .map(|&(gi, _)| faded(ctx, provider, fades[gi]))
            .collect();
        let idle_at = |h: usize| {
            let used: f64 = groups
                .iter()
                .zip(&keep)
                .map(|(&(gi, units), k)| ctx.known.groups[gi].quantity[h].max(0.0) * units * k)
                .sum();
            (capacity - used).max(0.0)
        };
        let windows: &[usize] = if groups.iter().any(|&(gi, _)| fell[gi]) {
            &[2 * 24]
        } else {
            &[7 * 24, 2 * 24]
        };
        let level = windows
            .iter()
            .map(|&len| {
                let mut idle: Vec<f64> = (n.saturating_sub(len)..n).map(idle_at).collect();
                quantile(&mut idle, IDLE_QUANTILE)
            })
            .fold(f64::INFINITY, f64::min);
        let level = level - listed_units;
        if !(level.is_finite() && level > 0.0) {
            continue;
        }
        members.sort_by(|&a, &b| held[b].end.cmp(&held[a].end).then(a.cmp(&b)));
        // A hair over the level, so that float sums of whole units do not lose an instance.
        let mut left = level + 1e-9;
        for i in members {
            let CommitmentAmount::Instances(count) = held[i].amount else {
                continue;
            };
            let per = held[i].units() / count.max(1) as f64;
            if per <= 0.0 {
                continue;
            }
            let k = ((left / per).floor() as u32).min(count);
            if k > 0 {
                out.push((i, k));
                left -= k as f64 * per;
            }
        }
    }
    out
}

/// What `portfolio` would have made of the last `hours` known hours: commitment used over
/// commitment paid for (None if it costs nothing).
fn recent_utilization(
    ctx: &DecisionContext<'_>,
    portfolio: &[Commitment],
    hours: usize,
) -> Result<Option<f64>, String> {
    let (mut used, mut cost) = (0.0, 0.0);
    bill_recent(ctx, portfolio, hours, |bill, _| {
        used += bill.used_commitment;
        cost += bill.commitment_cost;
    })?;
    Ok((cost > 0.0).then(|| used / cost))
}

/// A new pool's utilization floor `base`, moved by the gap between the `target` and the
/// portfolio's recent utilization `realized` (gain 1), within 0.8..=0.995. The look-back floor
/// holds on the look-back only: in-sample, the optimizer's plan looks better than it will do,
/// by an amount that depends on the noise and on what the held commitments leave. The bill
/// says how much.
fn steered_floor(base: f64, target: f64, realized: f64) -> f64 {
    (base + (target - realized)).clamp(0.8, 0.995)
}

/// The least-squares slope (per day) of a series' last [`FADE_DAYS`] daily means.
fn daily_slope(series: &[f64]) -> Option<f64> {
    slope(&daily_means(series, FADE_DAYS)).map(|(b, _, _)| b)
}

/// A fading series: the share of its current level it loses per hour (the least-squares slope
/// of its last [`FADE_DAYS`] daily means, over the fitted last day) and what it loses per day,
/// when the fall is clear (the slope at least [`FADE_T`] standard errors under zero).
fn fade(series: &[f64]) -> Option<(f64, f64)> {
    let daily = daily_means(series, FADE_DAYS);
    let (b, se, mean) = slope(&daily)?;
    let last = mean + b * (daily.len() as f64 - 1.0) / 2.0;
    (b < -FADE_T * se && last > 0.0).then(|| (-b / last / 24.0, -b))
}

/// The share of a fading group's last known level left when giving up a reservation of
/// `provider` takes effect: a return or an exchange at once, a sale when the listing sells
/// (the last known hour is the billing latency behind).
fn faded(ctx: &DecisionContext<'_>, provider: Provider, fade: f64) -> f64 {
    let latency = ctx.now.since(ctx.known.range.end).max(0);
    let effect = match provider {
        Provider::Aws => latency + ctx.policy.ri_marketplace.sale_delay_hours.max(0),
        _ => latency,
    };
    (1.0 - fade * effect as f64).max(0.0)
}

/// Days of daily means a fade's rate is fitted on.
const FADE_DAYS: usize = 7;
/// Standard errors under zero a fade's slope must be to count.
const FADE_T: f64 = 2.0;

/// Instances of a held commitment given up: (index in the held list, instances).
type Given = (usize, u32);

/// How many instances of held commitment `i` `given` gives up.
fn given_count(given: &[Given], i: usize) -> u32 {
    given.iter().find(|g| g.0 == i).map_or(0, |g| g.1)
}

/// `k` more instances of held commitment `i` given up.
fn give_more(given: &mut Vec<Given>, i: usize, k: u32) {
    match given.iter_mut().find(|g| g.0 == i) {
        Some(g) => g.1 += k,
        None => given.push((i, k)),
    }
}

/// Reservation instances the rest of the portfolio covers anyway, added to `given` (the idle
/// ones already chosen); returns how many instances were added.
///
/// After a drop or through a decline, a savings plan bought for the whole fleet has room in
/// nearly every hour, while reservations keep the usage it could take: the portfolio covers
/// everything and is partly idle, and no reservation looks idle on its own. Giving up such a
/// reservation moves its usage onto the plan's idle commitment. An instance is given up when,
/// over the last known week, the on-demand cost it would add (billed with everything else
/// held) is at most `share` of what giving it up saves: its hourly cost, less what the exit
/// loses (an Azure return is refunded at the remaining value; a Marketplace sale writes off
/// the upfront not recovered, per the policy's market model). Judged only on reservations
/// active at least 30 days (so that a purchase is not undone by the noise that follows it),
/// with at least a week left, that may be given up today: Azure reservations when `azure`,
/// within the refund cap left; AWS Standard RIs the Marketplace takes when `ris`.
fn redundant_reservations(
    ctx: &DecisionContext<'_>,
    held: &[Commitment],
    given: &mut Vec<Given>,
    share: f64,
    azure: bool,
    ris: bool,
) -> Result<u64, String> {
    use crate::domain::rules::Marketplace;
    use crate::plan::is_listed;
    const WEEK: usize = 7 * 24;
    let n = ctx.known.range.len();
    if n < WEEK || share <= 0.0 {
        return Ok(0);
    }
    let market = ctx.policy.ri_marketplace;
    // The on-demand cost of the week's usage left uncovered once `given` is given up, and the
    // commitment idle in the hour at the 20th percentile. Instances listed earlier still apply
    // until they sell, but they are leaving: the portfolio is judged without them (else each
    // day would list one more for the same idle room).
    let bill = |given: &[Given]| -> Result<(f64, f64), String> {
        let mut portfolio = give_up(held, given, ctx.now)?;
        portfolio.retain(|c| !is_listed(ctx.sold, &c.id, ctx.now));
        let (mut on_demand, mut unused) = (0.0, Vec::with_capacity(WEEK));
        bill_recent(ctx, &portfolio, WEEK, |bill, _| {
            on_demand += bill.on_demand_cost;
            unused.push(bill.unused_commitment());
        })?;
        Ok((on_demand, quantile(&mut unused, IDLE_QUANTILE)))
    };
    let (mut base, idle) = bill(given)?;
    // Nothing is idle in most hours: every reservation given up would go on demand.
    if idle <= 0.0 {
        return Ok(0);
    }
    let mut room = ctx.policy.azure_refund_cap - refunded_in_the_last_year(ctx.returned, ctx.now);
    for &(i, k) in given.iter() {
        if held[i].instrument == Instrument::AzureReservation {
            room -= remaining_value(&held[i], k, ctx.now)?;
        }
    }
    // Candidates with the share of their cost an exit keeps: Azure returns first (nothing
    // lost), then Standard RIs by what a sale loses; the latest-ending first within each.
    let mut candidates: Vec<(usize, f64)> = held
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.remaining_hours(ctx.now) >= WEEK as i64
                && ctx.now.since(c.start) >= Marketplace::MIN_AGE_HOURS
        })
        .filter_map(|(i, c)| match c.instrument {
            Instrument::AzureReservation if azure => Some((i, 1.0)),
            Instrument::StandardReservedInstance
                if ris
                    && !is_listed(ctx.sold, &c.id, ctx.now)
                    && market.listing(c, ctx.now).is_ok() =>
            {
                let lifetime = c.hourly_cost.to_f64() * c.term.hours() as f64;
                let upfront = if lifetime > 0.0 {
                    c.upfront.to_f64() / lifetime
                } else {
                    0.0
                };
                let recovered = market.price_bp as f64 / 1e4 * (1.0 - market.fee_bp as f64 / 1e4);
                Some((i, 1.0 - upfront.min(1.0) * (1.0 - recovered)))
            }
            _ => None,
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(held[b.0].end.cmp(&held[a.0].end))
            .then(a.0.cmp(&b.0))
    });
    let mut added = 0;
    for (i, keep) in candidates {
        let c = &held[i];
        let CommitmentAmount::Instances(count) = c.amount else {
            continue;
        };
        let mut most = count.saturating_sub(given_count(given, i));
        if c.instrument == Instrument::AzureReservation {
            most = most_that_fit(c, most, ctx.now, room)?.0;
        }
        if most == 0 {
            continue;
        }
        let saved_per = c.hourly_cost.to_f64() / count as f64 * keep * WEEK as f64;
        // The on-demand cost k more instances given up add, and whether it is worth it. The
        // added cost grows faster than linearly in k (the idle room fills up), so the k that
        // pass form a range from 0: bisect its end.
        let worth = |k: u32| -> Result<Option<f64>, String> {
            let mut more = given.clone();
            give_more(&mut more, i, k);
            let (cost, _) = bill(&more)?;
            Ok((cost - base <= share * saved_per * k as f64).then_some(cost))
        };
        let Some(mut cost) = worth(1)? else {
            continue;
        };
        let (mut lo, mut hi) = (1, most);
        if hi > 1 {
            if let Some(c_hi) = worth(hi)? {
                lo = hi;
                cost = c_hi;
            } else {
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    match worth(mid)? {
                        Some(c_mid) => {
                            lo = mid;
                            cost = c_mid;
                        }
                        None => hi = mid,
                    }
                }
            }
        }
        if c.instrument == Instrument::AzureReservation {
            room -= remaining_value(c, lo, ctx.now)?;
        }
        give_more(given, i, lo);
        base = cost;
        added += lo as u64;
    }
    Ok(added)
}

/// `held` with the instances in `given` (index in `held`, instances) given up at `now`.
fn give_up(
    held: &[Commitment],
    given: &[(usize, u32)],
    now: Hour,
) -> Result<Vec<Commitment>, String> {
    let mut out = Vec::with_capacity(held.len());
    for (i, c) in held.iter().enumerate() {
        match given.iter().find(|&&(j, _)| j == i) {
            Some(&(_, k)) => out.extend(split_off(c, k, now)?.1),
            None => out.push(c.clone()),
        }
    }
    Ok(out)
}

/// The most of `count` instances of `c` whose remaining value at `now` is at most `room`, and
/// that value: from an estimate at the value of one instance, then down (a share is rounded
/// down to the micro-dollar, so k instances are worth at least k times one, and the estimate
/// is never too low).
fn most_that_fit(
    c: &Commitment,
    count: u32,
    now: Hour,
    room: Money,
) -> Result<(u32, Money), String> {
    if count == 0 {
        return Ok((0, Money::ZERO));
    }
    let per = remaining_value(c, 1, now)?.micros();
    let mut k = if per > 0 {
        count.min((room.micros().max(0) / per).min(u32::MAX as i64) as u32)
    } else {
        count
    };
    while k > 0 {
        let value = remaining_value(c, k, now)?;
        if value <= room {
            return Ok((k, value));
        }
        k -= 1;
    }
    Ok((0, Money::ZERO))
}

/// One Azure exchange: the idle instances `idle` (index in `held`, instances) for the Azure
/// reservations among this decision's purchases `out`, which become its targets (taken out of
/// `out`, the most valuable first, as many as the refund needs). The refund may be at most the
/// targets' lifetime commitment, so when the purchases are worth less, only as many idle
/// instances are given up as they absorb. None when nothing fits; else the exchange and the
/// instances it gives up.
#[allow(clippy::type_complexity)]
fn exchange_idle(
    now: Hour,
    held: &[Commitment],
    idle: &[(usize, u32)],
    out: &mut Vec<Commitment>,
) -> Result<Option<(Exchange, Vec<(usize, u32)>)>, String> {
    let lifetime = |c: &Commitment| c.hourly_cost.times(c.term.hours()).unwrap_or(Money::ZERO);
    let mut candidates: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].instrument == Instrument::AzureReservation)
        .collect();
    if idle.is_empty() || candidates.is_empty() {
        return Ok(None);
    }
    candidates.sort_by_key(|&i| std::cmp::Reverse(lifetime(&out[i])));
    let room: Money = candidates.iter().map(|&i| lifetime(&out[i])).sum();
    let mut refund = Money::ZERO;
    let mut given = Vec::new();
    for &(i, count) in idle {
        let (k, value) = most_that_fit(&held[i], count, now, room - refund)?;
        if k > 0 {
            refund += value;
            given.push((i, k));
        }
    }
    if given.is_empty() {
        return Ok(None);
    }
    let mut chosen = Vec::new();
    let mut worth = Money::ZERO;
    for &i in &candidates {
        if worth >= refund {
            break;
        }
        worth += lifetime(&out[i]);
        chosen.push(i);
    }
    chosen.sort_unstable_by(|a, b| b.cmp(a));
    let targets: Vec<Commitment> = chosen.into_iter().map(|i| out.remove(i)).collect();
    let sources = given
        .iter()
        .map(|&(i, count)| GivenUp {
            id: held[i].id.clone(),
            count,
        })
        .collect();
    Ok(Some((Exchange { sources, targets }, given)))
}

/// Tuning of the forecast + optimize planner.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizeConfig {
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

impl Default for OptimizeConfig {
    fn default() -> Self {
        OptimizeConfig {
            quantiles: vec![0.1, 0.3, 0.5, 0.7, 0.9],
            utilization_level: 0.1,
            min_utilization: 0.95,
            trigger_quantile: 0.1,
            trigger_share: 0.01,
        }
    }
}

/// commitd's own pipeline: forecast (hourly quantiles per group, `unsettled` groups held) ->
/// optimize (one LP over all instruments, 1-year terms, per-decision cap, utilization floor at a
/// low quantile) -> purchase.
pub struct ForecastOptimizePlanner {
    config: OptimizeConfig,
    cap: Money,
    /// Decisions that ran the forecast and the solver, and that were skipped by the trigger.
    pub solved: usize,
    pub skipped: usize,
}

/// The forecast + optimize planner under the benchmark policy (see [`commitd_planner`] for the
/// cap).
pub fn forecast_optimize_planner(
    input: &BacktestInput,
    base: &Settings,
    config: OptimizeConfig,
    cap_share: f64,
) -> Result<(ForecastOptimizePlanner, Settings), BacktestError> {
    let mut settings = base.clone();
    let cap = laddering_cap(&known_at_start(input, base), cap_share)?;
    settings.policy.max_new_hourly_cost_per_decision = Some(cap);
    Ok((
        ForecastOptimizePlanner {
            config,
            cap,
            solved: 0,
            skipped: 0,
        },
        settings,
    ))
}

impl Planner for ForecastOptimizePlanner {
    fn name(&self) -> &str {
        "commitd"
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Result<Decision, String> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl ForecastOptimizePlanner {
    fn purchases(&mut self, ctx: &DecisionContext<'_>) -> Result<Vec<Commitment>, String> {
        let known = ctx.known;
        if known.range.len() < MIN_KNOWN_HOURS {
            return Ok(Vec::new());
        }
        let active = ctx.active();
        // Trigger: is there uncovered baseline worth planning for?
        let residual = LadderPlanner::residual(ctx, &active, 7 * 24)?;
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
            .map_err(|e| format!("optimizer: {e}"))?;
        plan_to_commitments(&plan, ctx.now, "commitd")
    }
}

#[cfg(test)]
mod tests {
    use super::{daily_median, daily_slope, fade, family_generation, pooled, steered_floor};
    use crate::domain::{
        Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
    };

    fn plan(id: &str, instrument: Instrument, payment: PaymentOption, usd: i64) -> Commitment {
        let start = Hour::parse("2025-01-01T00:00:00Z").unwrap();
        Commitment {
            id: id.into(),
            provider: Provider::Aws,
            instrument,
            term: Term::ONE_YEAR,
            payment,
            start: start.plus(usd),
            end: start.plus(8760 + usd),
            region: None,
            instance_type: None,
            family: None,
            amount: CommitmentAmount::HourlySpend(Money::from_micros(usd * 1_000_000)),
            hourly_cost: Money::from_micros(usd * 1_000_000),
            upfront: Money::ZERO,
        }
    }

    #[test]
    fn the_floor_moves_by_the_gap_to_the_target_within_bounds() {
        assert!((steered_floor(0.95, 0.97, 0.97) - 0.95).abs() < 1e-12);
        // Running at 99%: buy deeper. At 94%: only what clears 98%.
        assert!((steered_floor(0.95, 0.97, 0.99) - 0.93).abs() < 1e-12);
        assert!((steered_floor(0.95, 0.97, 0.94) - 0.98).abs() < 1e-12);
        // A portfolio half idle does not ask for the impossible, nor one fully used for a
        // floor that buys anything.
        assert_eq!(steered_floor(0.95, 0.97, 0.5), 0.995);
        assert_eq!(steered_floor(0.95, 0.97, 1.2), 0.8);
    }

    #[test]
    fn a_fade_is_a_clear_fall_of_the_last_week_and_nothing_else() {
        // Hourly series over 20 days: flat at 10 with a diurnal swing and hash noise, then the
        // last 7 days falling from 10 to 3 (one instance a day).
        let wobble = |h: usize| 0.5 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
        let noise = |h: usize| ((h * 7919 % 101) as f64 / 101.0 - 0.5) * 0.4;
        let flat: Vec<f64> = (0..20 * 24).map(|h| 10.0 + wobble(h) + noise(h)).collect();
        assert_eq!(fade(&flat), None);
        let falling: Vec<f64> = (0..20 * 24)
            .map(|h| {
                let day = h as f64 / 24.0;
                let level = if day < 13.0 {
                    10.0
                } else {
                    10.0 - (day - 13.0)
                };
                level + wobble(h) + noise(h)
            })
            .collect();
        let (rate, per_day) = fade(&falling).expect("a fade");
        // One instance a day, from a last day of about 3.5: some 29% a day, 1.2% an hour.
        assert!((per_day - 1.0).abs() < 0.1, "{per_day}");
        assert!((rate * 24.0 - 1.0 / 3.5).abs() < 0.05, "{rate}");
        // A rise is not a fade.
        let rising: Vec<f64> = falling.iter().map(|q| 20.0 - q).collect();
        assert_eq!(fade(&rising), None);
        assert!(daily_slope(&rising).unwrap() > 0.9);
    }

    #[test]
    fn pooled_merges_only_plans_with_the_same_rates() {
        use Instrument::{ComputeSavingsPlan as Csp, Ec2InstanceSavingsPlan as Isp};
        use PaymentOption::{AllUpfront as All, NoUpfront as No};
        let mut m5 = plan("isp-m5", Isp, All, 5);
        m5.region = Some("us-east-1".into());
        m5.family = Some("m5".into());
        let mut c5 = m5.clone();
        c5.id = "isp-c5".into();
        c5.family = Some("c5".into());
        let out = pooled(vec![
            plan("a", Csp, All, 1),
            plan("b", Csp, No, 2),
            plan("c", Csp, All, 3),
            m5,
            c5,
        ]);
        // Two Compute SPs with the same payment option become one; a different payment option
        // (other rates) and Instance SPs of other families stay apart.
        assert_eq!(out.len(), 4);
        let merged = out.iter().find(|c| c.id == "a").unwrap();
        assert_eq!(
            merged.amount,
            CommitmentAmount::HourlySpend(Money::from_micros(4_000_000))
        );
        assert_eq!(merged.hourly_cost, Money::from_micros(4_000_000));
        assert_eq!(merged.start, plan("a", Csp, All, 1).start);
        assert_eq!(merged.end, plan("a", Csp, All, 1).end);
        assert!(out.iter().any(|c| c.id == "b"));
        assert_eq!(out.iter().filter(|c| c.instrument == Isp).count(), 2);
    }

    #[test]
    fn daily_median_takes_whole_days_ending_at_the_end() {
        // A partial first day (5 hours of 100) is ignored; then days of means 1, 2, 3, 4.
        let mut hourly = vec![100.0; 5];
        for d in 1..=4 {
            hourly.extend(std::iter::repeat_n(d as f64, 24));
        }
        assert_eq!(daily_median(&hourly, 3), 3.0);
        assert_eq!(daily_median(&hourly, 1), 4.0);
        // More days asked than known: all whole days.
        assert_eq!(daily_median(&hourly, 30), 2.0);
        assert_eq!(daily_median(&[], 7), 0.0);
    }

    #[test]
    fn family_generations_parse_aws_and_azure_names() {
        assert_eq!(family_generation("m5"), Some(("m".into(), 5)));
        assert_eq!(family_generation("m6i"), Some(("m".into(), 6)));
        assert_eq!(family_generation("c7gn"), Some(("c".into(), 7)));
        assert_eq!(family_generation("db.r5"), Some(("db.r".into(), 5)));
        assert_eq!(family_generation("Ds_v5"), Some(("Ds".into(), 5)));
        assert_eq!(family_generation("mac"), None);
        assert_eq!(family_generation("5x"), None);
    }
}
