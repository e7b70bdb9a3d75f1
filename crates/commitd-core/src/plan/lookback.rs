//! The look-back optimizer ([`LookbackPlanner`]), commitd's default planner: at a decision it
//! runs the portfolio optimizer in hindsight mode on the recent known usage as if that were the
//! demand to come. `decide` runs named stages: [trigger](LookbackPlanner::trigger),
//! [levels](levels), [moves](moves), [give-ups](super::give_up), [residual](Residual),
//! [floor](LookbackPlanner::floor), [solve](LookbackPlanner::solve),
//! [hedges](LookbackPlanner::hedges), [trim](trim_savings_plans), and the exits.

use super::give_up::{
    daily_slope, exchange_idle, fade, faded, give_more, give_up, given_count, idle_reservations,
    most_that_fit, recent_utilization, redundant_reservations, steered_floor, Given,
};
use super::hindsight::plan_to_commitments;
use super::ladder::{family_generation, hedged, LadderPlanner};
use super::recent::{daily_median, quantile, residual as residual_of};
use super::{
    Decision, Exchange, GivenUp, LadderConfig, LookbackConfig, PlanError, Planner, Situation,
    MIN_KNOWN_HOURS,
};
use crate::billing::BillingEngine;
use crate::domain::{
    Commitment, CommitmentAmount, CommitmentKind, Hour, Instrument, Money, Provider,
};
use crate::optimize::{self, Constraints, DemandInput, MinUtilization, Options, TotalUtilization};

/// What the look-back planner did over a replay (`planner_stats` in the backtest's JSON).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LookbackStats {
    /// Decisions that ran the optimizer, and that did not.
    pub solved: usize,
    pub skipped: usize,
    /// Wall seconds inside the optimizer, summed over the solves (0 unless the caller handed in
    /// a [`Stopwatch`](super::Stopwatch)).
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
struct LookbackMemory {
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
    /// Whether the last decision was skipped by the trigger.
    unchanged: bool,
    pub stats: LookbackStats,
    /// Times the solves for `stats.solve_seconds`, when the caller hands one in.
    stopwatch: Option<super::Stopwatch>,
}

impl LookbackPlanner {
    /// A planner that holds each decision's new hourly commitment to `cap` (the laddering
    /// step), under the benchmark policy.
    pub fn new(config: LookbackConfig, ladder: LadderConfig, cap: Money) -> Self {
        LookbackPlanner {
            config,
            ladder: LadderPlanner::new(ladder, cap, Constraints::one_year_only()),
            memory: LookbackMemory::default(),
            solver_status: None,
            unchanged: false,
            stats: LookbackStats::default(),
            stopwatch: None,
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
}

/// On-demand value per hour of the usage `portfolio` leaves uncovered over the last known week,
/// per group (its median hour), and the recent on-demand-equivalent spend per hour.
fn uncovered_value(
    ctx: &Situation<'_>,
    portfolio: &[Commitment],
) -> Result<(Vec<f64>, f64), PlanError> {
    let residual = residual_of(ctx, portfolio, 7 * 24)?;
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

    fn solver_status(&self) -> Option<String> {
        self.solver_status.clone()
    }

    fn set_stopwatch(&mut self, stopwatch: super::Stopwatch) {
        self.stopwatch = Some(stopwatch);
    }

    fn unchanged(&self) -> Option<String> {
        self.unchanged.then(|| {
            format!(
                "no new decision: nothing changed enough since the last solve at {} (no \
                 commitment expired or went missing, the cap did not hold it back, no \
                 reservation idles, the usage left uncovered rose by less than {}% of the recent \
                 on-demand spend, and it is less than {} days old); the open proposals of \
                 earlier cycles stand",
                self.memory
                    .last_solve
                    .map_or_else(String::new, |(at, _)| at.to_datetime().to_rfc3339()),
                self.config.trigger_share * 100.0,
                self.config.resolve_days
            )
        })
    }

    /// The stages, in order: the levels and the moves of usage between related groups, the
    /// reservations to give up, the trigger, the look-back series, the residual the held
    /// commitments leave, the utilization floor, the solve, the hedges, the trim, and the exits
    /// (exchanges, returns, sales).
    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError> {
        // The same commitments decide alike in whatever order and under whatever ids they are
        // listed (the market's inventory, the replay's portfolio).
        let mut portfolio = ctx.portfolio.to_vec();
        portfolio.sort_by(Commitment::cmp_by_content);
        let ctx = &Situation {
            portfolio: &portfolio,
            ..*ctx
        };
        self.unchanged = false;
        let n = ctx.known.range.len();
        let held_now = ctx.active();
        let expired = held_now.len() < self.memory.active_after;
        self.memory.active_after = held_now.len();
        if n < MIN_KNOWN_HOURS {
            return Ok(Decision::default());
        }
        let w = (self.config.window_days * 24).min(n);
        let levels = self.levels(ctx, w);
        let change = moves(ctx, &levels);
        // Idle Azure reservations are planned as given up: the solve covers what they still
        // covered, and the Azure reservations it buys absorb their refund (`exchange_idle`);
        // idle Standard RIs are listed. Reservations standing idle make a decision due: a drop
        // does not raise the uncovered usage that otherwise triggers a solve.
        let fell: Vec<bool> = change.iter().map(|&c| c < 0.0).collect();
        let fades = self.fades(ctx, &change, &fell);
        let idle = self.give_ups(ctx, &held_now, &fell, &fades)?;
        if !self.trigger(ctx, &held_now, &idle, expired, &fell)? {
            self.stats.skipped += 1;
            self.unchanged = true;
            return Ok(Decision::default());
        }
        self.stats.solved += 1;
        let moved = self.moved(ctx, &change);
        self.stats.moves_followed += moved.iter().filter(|&&m| m > 0.0).count();
        let active = give_up(&held_now, &idle, ctx.now)?;
        let series = self.lookback(ctx, &moved, &levels, &fades, w);
        let residual = self.residual(ctx, &active, &series, w)?;
        let constraints = self.floor(ctx, &active, &residual.weekly, w)?;
        let Some(mut out) = self.solve(ctx, &residual, &constraints)? else {
            return Ok(Decision::default());
        };
        let mut budget = self.hedges(ctx, &active, &fades, &mut out)?;
        if self.config.trim_floor > 0.0 {
            budget = self.trim(ctx, &residual, &series, &mut out)?;
        }
        self.memory.last_solve = Some((ctx.now, budget < 0.1 * self.ladder.cap.to_f64()));
        let (decision, given) = self.exits(ctx, &held_now, idle, out)?;
        self.remember(ctx, &held_now, &given, &decision)?;
        Ok(decision)
    }
}

/// What the look-back planner's solve is given: the demand (what the held commitments leave
/// uncovered, in residual mode), the held commitments the optimizer allocates itself, and what
/// the held commitments are used above the total floor per week of the look-back.
struct Residual {
    demand: Vec<(crate::domain::UsageGroup, Vec<f64>)>,
    /// Handed to the optimizer as existing commitments.
    existing: Vec<Commitment>,
    /// The held commitments billed into the residual (all of them outside residual mode).
    held: Vec<Commitment>,
    /// Held savings plans the optimizer allocates (pooled).
    held_sps: Vec<Commitment>,
    /// USD per week of the look-back (the last week may be partial).
    weekly: Vec<f64>,
}

const WEEK: usize = 7 * 24;

/// Usage that moved (a migration to a newer generation of the family class in the region, a
/// move of an instance type to another region) is not growth: each group's change of level
/// (on-demand value per hour), when it changed by more than [`MOVE_SHARE`] of itself; else 0.
fn moves(ctx: &Situation<'_>, levels: &[(f64, f64)]) -> Vec<f64> {
    ctx.groups
        .iter()
        .zip(levels)
        .map(|(bg, &(long, recent))| {
            // Noise and gradual trends are not moves: a group counts only when its level
            // changed by more than MOVE_SHARE of itself.
            if (recent - long).abs() <= MOVE_SHARE * long.max(recent) {
                0.0
            } else {
                (recent - long) * bg.on_demand_rate
            }
        })
        .collect()
}

impl LookbackPlanner {
    /// Levels: each group's level over the look-back and over the last days.
    fn levels(&self, ctx: &Situation<'_>, w: usize) -> Vec<(f64, f64)> {
        let n = ctx.known.range.len();
        ctx.known
            .groups
            .iter()
            .map(|g| {
                (
                    daily_median(&g.quantity[n - w..], self.config.window_days),
                    daily_median(&g.quantity, self.config.level_days),
                )
            })
            .collect()
    }

    /// A group whose usage is moving to a related one is judged on where its fade will be when
    /// giving up takes effect, not where it is: a listing sells two weeks later, and the fade
    /// goes on meanwhile. Its fade rate per hour, else 0.
    fn fades(&self, ctx: &Situation<'_>, change: &[f64], fell: &[bool]) -> Vec<f64> {
        let known = ctx.known;
        (0..ctx.groups.len())
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
            .collect()
    }

    /// Give-ups: the idle reservations, and those whose usage the rest of the portfolio would
    /// cover anyway (checked daily: a weekly check, to save its bills on large fleets, met 2
    /// fewer of 231 generated scenarios).
    fn give_ups(
        &mut self,
        ctx: &Situation<'_>,
        held_now: &[Commitment],
        fell: &[bool],
        fades: &[f64],
    ) -> Result<Vec<Given>, PlanError> {
        let azure = self.config.exchanges || self.config.returns;
        let mut idle = idle_reservations(ctx, held_now, fell, fades, azure, self.config.sales);
        self.stats.instances_redundant += redundant_reservations(
            ctx,
            held_now,
            &mut idle,
            self.config.redundant_share,
            azure,
            self.config.sales,
        )?;
        Ok(idle)
    }

    /// Trigger: whether this decision solves (see [`LookbackConfig::trigger_share`]).
    fn trigger(
        &self,
        ctx: &Situation<'_>,
        held_now: &[Commitment],
        idle: &[Given],
        expired: bool,
        fell: &[bool],
    ) -> Result<bool, PlanError> {
        if !idle.is_empty() {
            return Ok(true);
        }
        let Some((at, capped)) = self.memory.last_solve else {
            return Ok(true);
        };
        if capped || expired || ctx.now.since(at) >= self.config.resolve_days as i64 * 24 {
            return Ok(true);
        }
        if self.config.trigger_share <= 0.0 {
            return Ok(false);
        }
        // A group whose level fell (usage that dropped or moved away) does not hide usage that
        // rose elsewhere.
        let (value, ode) = uncovered_value(ctx, held_now)?;
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
        Ok(rose >= self.config.trigger_share * ode)
    }

    /// Moves: a group whose level rose takes, as the share of its look-back planned on its last
    /// week, the part of its related groups' rise that the related groups which fell lost
    /// (on-demand value): a whole move is bought at its new place at once, growth still waits
    /// for the look-back.
    fn moved(&self, ctx: &Situation<'_>, change: &[f64]) -> Vec<f64> {
        (0..ctx.groups.len())
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
            .collect()
    }

    /// The look-back each group is planned on: its last `w` hours scaled down to the recent
    /// level (a drop: never up, so that growth is not bought ahead and a peak is not committed
    /// to) and by the decline the trend guard expects over its horizon, with what moved in
    /// planned on its last week.
    fn lookback(
        &self,
        ctx: &Situation<'_>,
        moved: &[f64],
        levels: &[(f64, f64)],
        fades: &[f64],
        w: usize,
    ) -> Vec<(crate::domain::UsageGroup, Vec<f64>)> {
        let n = ctx.known.range.len();
        ctx.known
            .groups
            .iter()
            .zip(moved)
            .zip(levels)
            .zip(fades)
            .map(|(((g, &moved), &(long, recent)), &fade)| {
                let q = &g.quantity;
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
            .collect()
    }

    /// Residual: what the commitments `active` after this decision's exits leave of the
    /// look-back `series` (see [`LookbackConfig::residual`]).
    fn residual(
        &self,
        ctx: &Situation<'_>,
        active: &[Commitment],
        series: &[(crate::domain::UsageGroup, Vec<f64>)],
        w: usize,
    ) -> Result<Residual, PlanError> {
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
        if !self.config.residual {
            return Ok(Residual {
                demand: series.to_vec(),
                existing: held.clone(),
                held,
                held_sps,
                weekly: Vec::new(),
            });
        }
        // The demand handed to the optimizer is what the held commitments leave uncovered,
        // billed in the providers' order, with nothing held: the LP allocates usage optimally,
        // so a new commitment could otherwise meet its utilization floor by taking usage an
        // existing one covers, and the portfolio as a whole would end up under the floor (each
        // re-solve on noisy usage adding one more).
        let lookback: Vec<&[f64]> = series.iter().map(|(_, q)| q.as_slice()).collect();
        let engine = BillingEngine::new(ctx.groups.to_vec(), &held, ctx.rates)
            .map_err(PlanError::billing)?;
        let mut left: Vec<Vec<f64>> = series
            .iter()
            .map(|(_, q)| Vec::with_capacity(q.len()))
            .collect();
        let mut weekly: Vec<f64> = Vec::new();
        engine.bill_all_active_series(&lookback, |i, bill, uncovered| {
            let slack = bill.used_commitment - self.config.total_utilization * bill.commitment_cost;
            if weekly.len() <= i / WEEK {
                weekly.push(0.0);
            }
            weekly[i / WEEK] += slack;
            for (r, u) in left.iter_mut().zip(uncovered) {
                r.push(*u);
            }
        });
        let demand = series
            .iter()
            .zip(left)
            .map(|((g, _), r)| (g.clone(), r))
            .collect();
        Ok(Residual {
            demand,
            existing: held_sps.clone(),
            held,
            held_sps,
            weekly,
        })
    }

    /// Floor: what a solve may buy (the benchmark policy, 1-year terms and any instrument and
    /// payment option, in the backtest; what `policies/` allow in the daemon), within the
    /// laddering cap, with the utilization floor steered by what the portfolio `active` made of
    /// the last four known weeks, and the total floor's credit from `weekly`.
    fn floor(
        &self,
        ctx: &Situation<'_>,
        active: &[Commitment],
        weekly: &[f64],
        w: usize,
    ) -> Result<Constraints, PlanError> {
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
                if let Some(u) = recent_utilization(ctx, active, 28 * 24)? {
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
        Ok(constraints)
    }

    /// Solve: the optimizer in hindsight mode on the residual; its purchases as commitments.
    /// None when the LP was infeasible: that decision buys nothing and the next one solves
    /// again (seen in 2 of ~130 replays with the total floor, in a solve with the amounts
    /// rounded to whole instances; the cause was not found), rather than the whole replay
    /// failing.
    fn solve(
        &mut self,
        ctx: &Situation<'_>,
        residual: &Residual,
        constraints: &Constraints,
    ) -> Result<Option<Vec<Commitment>>, PlanError> {
        let demand = DemandInput::actual(ctx.now, residual.demand.clone());
        let options = Options {
            marginal_resolves: 0,
            max_coverage_columns: self.config.max_columns,
            refine_rounds: self.config.refine_rounds,
            min_points: self.config.min_points,
            resize_plans: self.config.resize_plans,
            ..Options::default()
        };
        let started = self.stopwatch.map(|clock| clock());
        let plan = match optimize::hindsight(
            &demand,
            ctx.rates,
            &residual.existing,
            constraints,
            &options,
        ) {
            Ok(plan) => plan,
            Err(optimize::OptimizeError::Infeasible(_)) => {
                self.stats.infeasible += 1;
                self.solver_status = Some("infeasible".into());
                self.memory.last_solve = Some((ctx.now, true));
                return Ok(None);
            }
            Err(source) => {
                return Err(PlanError::Optimize {
                    what: "look-back optimization",
                    source,
                })
            }
        };
        self.solver_status = Some(plan.solver.status.clone());
        let st = &mut self.stats;
        if let (Some(clock), Some(started)) = (self.stopwatch, started) {
            st.solve_seconds += clock().saturating_sub(started).as_secs_f64();
        }
        st.lp_solves += plan.solver.solves;
        st.max_columns = st.max_columns.max(plan.solver.columns);
        st.max_rows = st.max_rows.max(plan.solver.rows);
        st.max_points = st.max_points.max(plan.solver.reduced_points);
        plan_to_commitments(&plan, ctx.now, "commitd").map(Some)
    }

    /// Hedges: no family- or region-bound purchase for a group the organisation may be moving
    /// away from; the ladder's savings-plan stage covers what that leaves. (Pricing those
    /// groups without bound offers, so that the optimizer sizes their savings plan together
    /// with the rest, was measured and not kept: docs/benchmarks/backtest.md.) An Azure
    /// reservation can follow its usage by an exchange, so it needs no hedge when exchanges are
    /// on. Returns what is left of the cap.
    fn hedges(
        &mut self,
        ctx: &Situation<'_>,
        active: &[Commitment],
        fades: &[f64],
        out: &mut Vec<Commitment>,
    ) -> Result<f64, PlanError> {
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
            let mut held = active.to_vec();
            held.extend(out.iter().cloned());
            let plans = self.ladder.savings_plans(ctx, &held, &mut budget)?;
            out.extend(plans);
        }
        Ok(budget)
    }

    /// Trim: the new savings plans scaled down to what they add ([`trim_savings_plans`]).
    /// Returns what is left of the cap (what the trim took off was not held back by the cap:
    /// no re-solve tomorrow for it).
    fn trim(
        &mut self,
        ctx: &Situation<'_>,
        residual: &Residual,
        series: &[(crate::domain::UsageGroup, Vec<f64>)],
        out: &mut Vec<Commitment>,
    ) -> Result<f64, PlanError> {
        // The look-back before the held commitments are billed.
        let lookback: Vec<&[f64]> = series.iter().map(|(_, q)| q.as_slice()).collect();
        let mut portfolio = residual.held.clone();
        portfolio.extend(residual.held_sps.iter().cloned());
        let trimmed = trim_savings_plans(ctx, &portfolio, out, &lookback, self.config.trim_floor)?;
        self.stats.savings_plans_trimmed += trimmed;
        out.retain(|c| c.amount != CommitmentAmount::HourlySpend(Money::ZERO));
        Ok(self.ladder.cap.to_f64() - out.iter().map(|c| c.hourly_cost.to_f64()).sum::<f64>())
    }

    /// Exits: idle Azure reservations are exchanged for this decision's Azure reservations (or,
    /// what no purchase absorbs, returned within the refund cap), idle Standard RIs listed.
    /// Returns the decision and the instances it gives up.
    fn exits(
        &mut self,
        ctx: &Situation<'_>,
        held_now: &[Commitment],
        idle: Vec<Given>,
        mut out: Vec<Commitment>,
    ) -> Result<(Decision, Vec<Given>), PlanError> {
        let (idle_ris, idle): (Vec<Given>, Vec<Given>) = idle
            .into_iter()
            .partition(|&(i, _)| held_now[i].instrument == Instrument::StandardReservedInstance);
        let exchange = if self.config.exchanges {
            exchange_idle(ctx.now, held_now, &idle, &mut out)?
        } else {
            None
        };
        let (mut given, exchanges) = match exchange {
            Some((ex, given)) => {
                self.stats.exchanges += 1;
                self.stats.instances_exchanged += given.iter().map(|&(_, k)| k as u64).sum::<u64>();
                (given, vec![ex])
            }
            None => (Vec::new(), Vec::new()),
        };
        let mut returns = Vec::new();
        if self.config.returns {
            let mut room = ctx.policy.azure_refund_cap - ctx.refunded_in_the_last_year();
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
        let decision = Decision {
            purchases: out,
            exchanges,
            returns,
            sales,
            ..Decision::default()
        };
        Ok((decision, given))
    }

    /// What this decision leaves to the next one's trigger: the commitments active after it
    /// (the instances given up are gone, the rest of the idle ones are still there) and what
    /// they leave uncovered.
    fn remember(
        &mut self,
        ctx: &Situation<'_>,
        held_now: &[Commitment],
        given: &[Given],
        decision: &Decision,
    ) -> Result<(), PlanError> {
        let mut after = give_up(held_now, given, ctx.now)?;
        after.extend(decision.purchases.iter().cloned());
        after.extend(
            decision
                .exchanges
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
        Ok(())
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
    ctx: &Situation<'_>,
    held: &[Commitment],
    out: &mut [Commitment],
    lookback: &[&[f64]],
    floor: f64,
) -> Result<usize, PlanError> {
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
        let used = |s: f64| -> Result<f64, PlanError> {
            let mut all = held.to_vec();
            for (i, c) in out.iter().enumerate() {
                if !plans.contains(&i) {
                    all.push(c.clone());
                } else if s > 0.0 {
                    all.push(scaled_plan(c, s));
                }
            }
            let engine = BillingEngine::new(ctx.groups.to_vec(), &all, ctx.rates)
                .map_err(PlanError::billing)?;
            let mut sum = 0.0;
            engine.bill_all_active_series(lookback, |_, bill, _| sum += bill.used_commitment);
            Ok(sum)
        };
        let base = used(0.0)?;
        let ok = |s: f64| -> Result<bool, PlanError> {
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

#[cfg(test)]
mod tests {
    use super::pooled;
    use crate::domain::{
        Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
    };
    use crate::plan::give_up::{daily_slope, fade, steered_floor};
    use crate::plan::ladder::family_generation;
    use crate::plan::recent::daily_median;

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
