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

use super::recent::{quantile, recent_level, residual, slope};
use super::sizing::{best_commitment, commitment_for_utilization};
use super::{
    buy_reservation, buy_savings_plan, Decision, LadderConfig, PlanError, Planner, Situation,
};
use crate::domain::{Commitment, Instrument, Money, Offer, Provider, Term};
use crate::optimize::Constraints;

pub struct LadderPlanner {
    pub(crate) config: LadderConfig,
    pub(crate) cap: Money,
    /// What may be bought: the benchmark policy in the backtest, what `policies/` allow in the
    /// daemon ([`LookbackPlanner::bounded`]).
    pub(crate) bounds: Constraints,
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
fn newer_generation_in_use(ctx: &Situation<'_>, gi: usize) -> bool {
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

/// Whether group `gi`'s family (same provider) had usage in another region in the last week.
fn family_elsewhere(ctx: &Situation<'_>, gi: usize) -> bool {
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
    /// A ladder holding each decision's new hourly commitment to `cap`, buying what `bounds`
    /// allow.
    pub fn new(config: LadderConfig, cap: Money, bounds: Constraints) -> Self {
        LadderPlanner {
            config,
            cap,
            bounds,
            bought: 0,
        }
    }

    /// The share of a series' level expected to be gone after the trend horizon (0..1), when
    /// the daily means of the last `trend_days` decline significantly; None otherwise (and
    /// for growth: commitd never buys ahead of usage).
    pub(crate) fn decline(&self, hourly: &[f64]) -> Option<f64> {
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

    fn next_id(&mut self, what: &str) -> String {
        self.bought += 1;
        format!("commitd-{}-{what}", self.bought)
    }
}

impl Planner for LadderPlanner {
    fn name(&self) -> &str {
        "commitd"
    }

    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl LadderPlanner {
    fn purchases(&mut self, ctx: &Situation<'_>) -> Result<Vec<Commitment>, PlanError> {
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
        ctx: &Situation<'_>,
        active: &mut Vec<Commitment>,
        budget: &mut f64,
    ) -> Result<Vec<Commitment>, PlanError> {
        let longest = self.config.windows.iter().copied().max().unwrap_or(0);
        let terms = &ctx.policy.terms;
        let mut out = Vec::new();
        let residual = residual(ctx, active, longest)?;
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
    pub(crate) fn savings_plans(
        &mut self,
        ctx: &Situation<'_>,
        active: &[Commitment],
        budget: &mut f64,
    ) -> Result<Vec<Commitment>, PlanError> {
        let longest = self.config.windows.iter().copied().max().unwrap_or(0);
        let terms = &ctx.policy.terms;
        let mut out = Vec::new();
        let long = residual(ctx, active, longest)?;
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
pub(crate) fn hedged(config: &LadderConfig, ctx: &Situation<'_>, gi: usize) -> bool {
    (config.generation_hedge && newer_generation_in_use(ctx, gi))
        || (config.region_hedge && family_elsewhere(ctx, gi))
}
