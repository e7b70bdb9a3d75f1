//! The commitment portfolio optimizer: one linear program across every instrument.
//!
//! Given demand scenarios per usage group per hour, the rate card, the existing commitments and
//! the policy's constraints, it decides which commitments to buy so that the expected cost over
//! the planning window is minimal, and returns a [`Plan`] whose every action carries its
//! rationale. Pure: no I/O, no clock, no async (callers time the solve).
//!
//! Steps ([`optimize`]):
//! 1. [`model`]: every existing commitment and every allowed offer becomes a *pool* of capacity
//!    with the groups it may cover (provider scopes) and what one instance-hour consumes of it;
//!    offers never cheaper than on demand, and offers dominated by another, are pruned.
//! 2. [`reduce`]: hours x scenarios become weighted representative points (exact within a
//!    segment up to the spread inside each point; the full model is available for checking).
//! 3. [`lp`]: the LP relaxation is solved with HiGHS; instance counts are rounded down and
//!    savings-plan commitments rounded down to what the provider accepts; the LP is solved again
//!    with the rounded amounts fixed, which gives the plan's expected figures and duals.
//! 4. A 3-year term is kept only if it beats the best 1-year-only plan by the policy's threshold.
//! 5. Each action's rationale: utilization per scenario, the demand quantile it reaches, its
//!    breakeven, its expected savings, the dual value of one more unit and the cost of dropping it.
//!
//! Hindsight mode ([`hindsight`]) is the same with one scenario: the actual demand.
//! See docs/optimizer.md for the formulation and its limits.

mod aggregate;
pub mod demand;
mod input;
mod lp;
mod model;
mod reduce;
pub mod synthetic;

pub use input::{
    Constraints, DemandInput, GroupDemand, MinUtilization, Options, ProviderPolicy, Scenario,
    TotalUtilization,
};

use crate::domain::{
    Action, ActionKind, AmountUnit, Commitment, CommitmentKind, Expected, Money, Plan, Provider,
    RateCard, Rationale, SolverInfo, Term,
};
use lp::{Capacity, LpResult, Share, SolveSpec, WarmStart};
use model::Model;
use reduce::Points;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimizeError {
    #[error("invalid demand: {0}")]
    InvalidDemand(String),
    #[error("invalid policy: {field}: {reason}")]
    InvalidPolicy { field: String, reason: String },
    #[error("the rate card has no {what} for usage group {group}")]
    MissingRate { group: String, what: String },
    #[error("the policy is infeasible: {0}")]
    Infeasible(String),
    #[error("the LP solver failed: {0}")]
    Solver(String),
}

/// The plan that minimises expected cost over `demand`'s window within `constraints`.
pub fn optimize(
    demand: &DemandInput,
    rates: &RateCard,
    existing: &[Commitment],
    constraints: &Constraints,
    options: &Options,
) -> Result<Plan, OptimizeError> {
    demand.validate()?;
    constraints.validate(demand)?;
    let (aggregated, merged) = aggregate::aggregate(demand, rates);
    let demand = &aggregated;
    let terms = constraints.terms();

    let mut solves = 0;
    let mut notes = Vec::new();
    if merged > 0 {
        notes.push(format!(
            "{merged} usage groups merged exactly into others with the same scope and proportional prices"
        ));
    }
    let both = terms.contains(&Term::ONE_YEAR) && terms.contains(&Term::THREE_YEARS);
    let pass = if both && constraints.three_year_min_extra_savings > 0.0 {
        let short = run_pass(
            demand,
            rates,
            existing,
            constraints,
            options,
            &[Term::ONE_YEAR],
        )?;
        let long = run_pass(demand, rates, existing, constraints, options, &terms)?;
        solves += short.solves + long.solves;
        let gain = short.final_.objective - long.final_.objective;
        let threshold = constraints.three_year_min_extra_savings * long.final_.ode_total;
        let buys_long = long.locks_in(Term::THREE_YEARS);
        if buys_long && gain <= threshold {
            notes.push(format!(
                "lock-in: allowing 3-year terms would save ${gain:.2} more over the window, not more than the threshold ${threshold:.2} ({:.2}% of on-demand cost): 1-year terms only",
                constraints.three_year_min_extra_savings * 100.0
            ));
            short
        } else {
            if buys_long {
                notes.push(format!(
                    "lock-in: 3-year terms save ${gain:.2} more over the window than 1-year terms only, above the threshold ${threshold:.2}"
                ));
            }
            long
        }
    } else {
        let p = run_pass(demand, rates, existing, constraints, options, &terms)?;
        solves += p.solves;
        p
    };
    // An action whose marginal re-solve shows the plan cheaper without it is dropped and the
    // plan rebuilt (rare: a count rounded up to the nearest instance next to savings plans
    // fixed at the relaxation's size; proptest found a Standard RI worth -$0.48). Only the
    // actions that get a re-solve anyway are judged, so a plan costs no extra solve unless one
    // is dropped; each rebuild removes a purchase, so this ends.
    let mut pass = pass;
    loop {
        match build_plan(demand, constraints, options, &pass, solves, notes.clone())? {
            Built::Plan(plan) => return Ok(plan),
            Built::Drop {
                pool,
                without,
                solves: used,
                summary,
            } => {
                solves = used;
                notes.push(format!(
                    "dropped after rounding, the plan is cheaper without it: {summary}"
                ));
                pass.fixed[pool] = Capacity::Fixed(0.0);
                pass.final_ = without;
            }
        }
    }
}

/// What [`build_plan`] found: the plan, or a purchase to drop first.
enum Built {
    Plan(Plan),
    Drop {
        pool: usize,
        without: LpResult,
        solves: usize,
        summary: String,
    },
}

/// USD over the planning window: an action whose removal would save more than this is dropped
/// (below it, the difference is the solver's own tolerance).
const DROP_TOLERANCE: f64 = 1e-4;

/// Hindsight mode: the optimal one-shot purchase at `actual.start` knowing the actual demand of
/// the whole window (the backtest's `hindsight_static` baseline).
pub fn hindsight(
    actual: &DemandInput,
    rates: &RateCard,
    existing: &[Commitment],
    constraints: &Constraints,
    options: &Options,
) -> Result<Plan, OptimizeError> {
    if actual.scenarios.len() != 1 {
        return Err(OptimizeError::InvalidDemand(format!(
            "hindsight needs exactly one scenario (the actual demand), got {}",
            actual.scenarios.len()
        )));
    }
    optimize(actual, rates, existing, constraints, options)
}

struct Pass<'a> {
    demand: &'a DemandInput,
    model: Model,
    points: Points,
    relaxed: LpResult,
    fixed: Vec<Capacity>,
    /// Exchange and return shares after rounding to whole instances, per `model.sources`.
    shares: Vec<Share>,
    final_: LpResult,
    /// The same fixed solve with nothing new (no purchase, exchange or return): the plan's
    /// `cost_without_plan`.
    without: LpResult,
    solves: usize,
    total_points: usize,
    /// `final_`'s solution, where the re-solves for marginal values start.
    warm: Option<WarmStart>,
}

impl Pass<'_> {
    /// Candidates bought (capacity > 0 after rounding) with their column.
    fn actions(&self) -> impl Iterator<Item = (usize, &model::NewColumn)> {
        self.model
            .pools
            .iter()
            .enumerate()
            .filter_map(move |(pi, p)| match (p.new_column(), self.fixed[pi]) {
                (Some(c), Capacity::Fixed(v)) if v > 0.0 => Some((pi, c)),
                _ => None,
            })
    }

    /// Whether it commits to a new `term`: a purchase, or an Azure exchange (which starts a new
    /// term; an AWS exchange keeps its source's end date).
    fn locks_in(&self, term: Term) -> bool {
        self.actions().any(|(_, c)| c.term == term)
            || self.model.pools.iter().enumerate().any(|(pi, p)| {
                matches!(
                    (&p.origin, self.fixed[pi]),
                    (model::Origin::ExchangeTarget { col, .. }, Capacity::Fixed(v))
                        if v > 0.0 && col.term == term && col.provider == Provider::Azure
                )
            })
    }

    fn spec<'s>(
        &'s self,
        constraints: &'s Constraints,
        options: &'s Options,
        capacity: &'s [Capacity],
        shares: &'s [Share],
    ) -> SolveSpec<'s> {
        SolveSpec {
            model: &self.model,
            points: &self.points,
            demand: self.demand,
            constraints,
            options,
            capacity,
            shares,
            relaxation: false,
            warm: self.warm.as_ref(),
        }
    }
}

fn run_pass<'a>(
    demand: &'a DemandInput,
    rates: &RateCard,
    existing: &[Commitment],
    constraints: &Constraints,
    options: &Options,
    terms: &[Term],
) -> Result<Pass<'a>, OptimizeError> {
    let model = model::build(demand, rates, existing, constraints, terms)?;
    let total_points = demand.hours * demand.scenarios.len();
    let (points, relaxed, relax_solves) = relax(&model, demand, constraints, options)?;
    // The solves with rounded amounts start from the relaxation's solution: the amounts moved
    // by at most an instance each, so most of its basis still holds.
    let mut fx = FixedSolver {
        model: &model,
        points: &points,
        demand,
        constraints,
        options,
        warm: options.warm_start.then(|| WarmStart::from_result(&relaxed)),
        solves: 0,
    };
    let mut r = fx.rounded_down(&relaxed)?;
    fx.try_nearest(&relaxed, &mut r);
    if options.resize_plans {
        fx.try_resized_plans(&mut r);
    }
    // Decided once, from the relaxation as well as the rounding: a purchase sized next to an
    // exchange or a return (for the capacity it gave up) must be re-checked even when rounding
    // or a drop below removed that exchange or return.
    let check_purchases = constraints.max_coverage.is_some()
        || relaxed
            .exchanged
            .iter()
            .chain(&relaxed.returned)
            .any(|&v| v > 1e-9)
        || r.shares.iter().any(|s| *s != Share::NONE);
    fx.drop_unprofitable(check_purchases, &mut r);
    let without = fx.against_nothing(&mut r)?;
    let solves = relax_solves + fx.solves;
    let warm = options
        .warm_start
        .then(|| WarmStart::from_result(&r.final_));
    Ok(Pass {
        demand,
        model,
        points,
        relaxed,
        fixed: r.fixed,
        shares: r.shares,
        final_: r.final_,
        without,
        solves,
        total_points,
        warm,
    })
}

/// The LP relaxation on representative points (or on every hour without reduction), refined
/// where the commitments cut through a point; with the number of solves made.
fn relax(
    model: &Model,
    demand: &DemandInput,
    constraints: &Constraints,
    options: &Options,
) -> Result<(Points, LpResult, usize), OptimizeError> {
    let total_points = demand.hours * demand.scenarios.len();
    let cells_per_point: usize = model.pools.iter().map(|p| p.members.len()).sum();
    let segments = model.boundaries.len().saturating_sub(1).max(1);
    // The first reduction's budget is per LP, not per scenario: the scenarios are usually
    // quantiles of one forecast, and the reduction's heap spends the budget where demand varies
    // most whichever scenario that is. The per-scenario floor (`min_points` per scenario and
    // segment) is spent by the refinement instead, where the commitments cut through a bucket:
    // measured on the 3-scenario benchmark (500 groups, where the floor binds) the same number
    // of points raises the objective (a lower bound of the full model's) more there than up
    // front, and the LPs before the last one stay small (docs/benchmarks/optimize.md). When the
    // column budget binds instead (few groups), nothing changes.
    let target =
        (options.max_coverage_columns / cells_per_point.max(1)).max(options.min_points * segments);
    let floor = options.min_points * segments * demand.scenarios.len();
    // Truncated: with the default share this is the quarter (integer division) used before.
    let splits = ((target.max(floor) as f64 * options.refine_share) as usize).max(1);
    let value: Vec<f64> = model.groups.iter().map(|g| g.on_demand).collect();
    let free = vec![Capacity::Free; model.pools.len()];
    let free_shares = vec![Share::Free; model.sources.len()];
    let solve_on = |points: &Points, warm: Option<&WarmStart>| {
        lp::solve(&SolveSpec {
            model,
            points,
            demand,
            constraints,
            options,
            capacity: &free,
            shares: &free_shares,
            relaxation: true,
            warm,
        })
    };
    if !(options.reduce && target < total_points) {
        let points = reduce::full(demand);
        let relaxed = solve_on(&points, None)?;
        return Ok((points, relaxed, 1));
    }
    let mut buckets = reduce::reduce(demand, &model.boundaries, &value, target);
    let mut points = reduce::points(demand, &buckets);
    let mut relaxed = solve_on(&points, None)?;
    let mut solves = 1;
    // Refine where the commitments cut through a bucket, a few rounds, each adding at most
    // `splits` points (a quarter of the budget), until the error bound is negligible. With
    // `warm_start`, each round starts from the previous round's solution carried over to the
    // split points.
    for _ in 0..options.refine_rounds {
        let (refined, parents, bound) =
            reduce::refine(demand, buckets, &relaxed.coverage, &value, splits);
        buckets = refined;
        if bound <= 1e-5 * relaxed.objective.abs() {
            break;
        }
        let next = reduce::points(demand, &buckets);
        let warm = options
            .warm_start
            .then(|| split_warm_start(model, &relaxed, &points, &next, &parents));
        points = next;
        relaxed = solve_on(&points, warm.as_ref())?;
        solves += 1;
    }
    Ok((points, relaxed, solves))
}

/// Amounts fixed for a solve: the capacities, the exchange and return shares, and the solve.
struct Rounded {
    fixed: Vec<Capacity>,
    shares: Vec<Share>,
    final_: LpResult,
}

/// The solves of a pass after its relaxation: on the relaxation's points, with the amounts
/// given, starting from the relaxation's solution. Counts them.
struct FixedSolver<'a> {
    model: &'a Model,
    points: &'a Points,
    demand: &'a DemandInput,
    constraints: &'a Constraints,
    options: &'a Options,
    warm: Option<WarmStart>,
    solves: usize,
}

impl FixedSolver<'_> {
    fn solve(
        &mut self,
        capacity: &[Capacity],
        shares: &[Share],
    ) -> Result<LpResult, OptimizeError> {
        self.solves += 1;
        lp::solve(&SolveSpec {
            model: self.model,
            points: self.points,
            demand: self.demand,
            constraints: self.constraints,
            options: self.options,
            capacity,
            shares,
            relaxation: false,
            warm: self.warm.as_ref(),
        })
    }

    /// The total-utilization floor is imposed on the relaxation only (see
    /// `SolveSpec::relaxation`): other amounts (a count rounded up, plans sized again) must not
    /// break it where the current ones kept it, nor widen a shortfall they left.
    fn floor_kept(&self, cap: &[Capacity], res: &LpResult, now: &Rounded) -> bool {
        let slack = |c: &[Capacity], r: &LpResult| {
            total_floor_slack(self.model, self.points, self.demand, self.constraints, c, r)
        };
        match (slack(cap, res), slack(&now.fixed, &now.final_)) {
            (Some(new), Some(old)) => new >= 0.0 || new >= old,
            _ => true,
        }
    }

    /// Everything rounded down; without the exchanges if their targets, rounded up to keep the
    /// value rule, break a cap or the utilization floor that the relaxation met.
    fn rounded_down(&mut self, relaxed: &LpResult) -> Result<Rounded, OptimizeError> {
        let (mut fixed, mut shares) = round(self.model, relaxed, false);
        let final_ = match self.solve(&fixed, &shares) {
            Ok(r) => r,
            Err(_) if shares.iter().any(|s| *s != Share::NONE) => {
                drop_exchanges(self.model, &mut fixed, &mut shares);
                self.solve(&fixed, &shares)?
            }
            Err(e) => return Err(e),
        };
        Ok(Rounded {
            fixed,
            shares,
            final_,
        })
    }

    /// Rounding every instance count down can leave a nearly whole instance unbought; try the
    /// nearest counts too and keep them if they are cheaper and within the caps.
    fn try_nearest(&mut self, relaxed: &LpResult, r: &mut Rounded) {
        let (nearest, nearest_shares) = round(self.model, relaxed, true);
        if (&nearest, &nearest_shares) == (&r.fixed, &r.shares)
            || !within_caps(self.model, &nearest, &nearest_shares, self.constraints)
        {
            return;
        }
        if let Ok(res) = self.solve(&nearest, &nearest_shares) {
            if res.objective < r.final_.objective && self.floor_kept(&nearest, &res, r) {
                *r = Rounded {
                    fixed: nearest,
                    shares: nearest_shares,
                    final_: res,
                };
            }
        }
    }

    /// The relaxation sized the savings plans next to fractional reservations: a group using 0.4
    /// of an r6i.4xlarge got 0.4 of a reservation, which rounds to none, and the usage it was
    /// to cover stays on demand although a savings plan would cover it at a lesser discount.
    /// Re-size the savings plans next to the whole instances (a solve with the instance counts
    /// fixed and the plans free), round them down, and keep that if it is cheaper.
    fn try_resized_plans(&mut self, r: &mut Rounded) {
        let model = self.model;
        let shares = r.shares.clone();
        let Some(cap) = resized_plans(model, &r.fixed, |cap| self.solve(cap, &shares).ok()) else {
            return;
        };
        if !within_caps(model, &cap, &r.shares, self.constraints) {
            return;
        }
        if let Ok(r2) = self.solve(&cap, &r.shares) {
            if r2.objective < r.final_.objective - 1e-6 && self.floor_kept(&cap, &r2, r) {
                r.fixed = cap;
                r.final_ = r2;
            }
        }
    }

    /// Rounded to whole instances (exchange targets rounded up to keep the value rule), an
    /// exchange or a return must still pay for itself; and so must each purchase under a
    /// coverage cap (the cap can force paid capacity idle once the others are rounded) or next
    /// to an exchange (a target rounded up can take over what a purchase covered). Plans with
    /// neither skip those re-solves (`check_purchases` false). Drop whatever makes the plan
    /// cheaper when dropped, until nothing does: dropping one can change what the others are
    /// worth.
    fn drop_unprofitable(&mut self, check_purchases: bool, r: &mut Rounded) {
        let mut improved = true;
        while improved {
            improved = false;
            if check_purchases {
                improved |= self.drop_purchases(r);
            }
            improved |= self.drop_moves(r);
        }
    }

    /// One round over the purchases: each is dropped if the plan is cheaper without it.
    fn drop_purchases(&mut self, r: &mut Rounded) -> bool {
        let mut improved = false;
        for pi in 0..r.fixed.len() {
            if self.model.pools[pi].new_column().is_none()
                || !matches!(r.fixed[pi], Capacity::Fixed(x) if x > 0.0)
            {
                continue;
            }
            let mut without = r.fixed.clone();
            without[pi] = Capacity::Fixed(0.0);
            if let Ok(res) = self.solve(&without, &r.shares) {
                if res.objective < r.final_.objective - 1e-6 {
                    r.fixed = without;
                    r.final_ = res;
                    improved = true;
                }
            }
        }
        improved
    }

    /// One round over the exchanges and returns: each is dropped if the plan is cheaper
    /// without it.
    fn drop_moves(&mut self, r: &mut Rounded) -> bool {
        let mut improved = false;
        for si in 0..self.model.sources.len() {
            for exchange in [true, false] {
                let Share::Fixed {
                    exchanged,
                    returned,
                } = r.shares[si]
                else {
                    continue;
                };
                let mut cap = r.fixed.clone();
                let without = if exchange && exchanged > 0.0 {
                    for &t in &self.model.sources[si].targets {
                        cap[t] = Capacity::Fixed(0.0);
                    }
                    Share::Fixed {
                        exchanged: 0.0,
                        returned,
                    }
                } else if !exchange && returned > 0.0 {
                    Share::Fixed {
                        exchanged,
                        returned: 0.0,
                    }
                } else {
                    continue;
                };
                let mut sh = r.shares.clone();
                sh[si] = without;
                if let Ok(res) = self.solve(&cap, &sh) {
                    if res.objective < r.final_.objective - 1e-6 {
                        *r = Rounded {
                            fixed: cap,
                            shares: sh,
                            final_: res,
                        };
                        improved = true;
                    }
                }
            }
        }
        improved
    }

    /// The drops above weigh one item at a time, and items can hold each other up (a purchase
    /// that pays only next to an exchange that pays only next to it). Whatever the rounding
    /// did, a plan never costs more than doing nothing new: compare with that last. Returns the
    /// solve with nothing new (the plan's `cost_without_plan`).
    fn against_nothing(&mut self, r: &mut Rounded) -> Result<LpResult, OptimizeError> {
        let nothing: Vec<Capacity> = self
            .model
            .pools
            .iter()
            .map(|p| match p.column() {
                Some(_) => Capacity::Fixed(0.0),
                None => Capacity::Free,
            })
            .collect();
        let no_shares = vec![Share::NONE; self.model.sources.len()];
        if (&r.fixed, &r.shares) == (&nothing, &no_shares) {
            return Ok(r.final_.clone());
        }
        let res = self.solve(&nothing, &no_shares)?;
        if res.objective < r.final_.objective - 1e-6 {
            *r = Rounded {
                fixed: nothing,
                shares: no_shares,
                final_: res.clone(),
            };
        }
        Ok(res)
    }
}

/// The solution of the LP on `old` points carried over to `new` points, where each new point is
/// a part of the old point `parents[k]`: the capacities and shares stay, and each point keeps its
/// parent's coverage, scaled down per group where the part's demand is below what the parent
/// covered (so the demand rows and the capacity rows still hold). Only a starting point.
fn split_warm_start(
    model: &Model,
    old: &LpResult,
    old_points: &Points,
    new: &Points,
    parents: &[usize],
) -> WarmStart {
    let (offsets, cells) = lp::cell_offsets(model);
    let g_count = model.groups.len();
    let mut out = vec![0.0; new.len() * cells];
    let mut factor = vec![1.0; g_count];
    for (k, &p) in parents.iter().enumerate() {
        if p >= old_points.len() {
            continue;
        }
        for (g, f) in factor.iter_mut().enumerate() {
            let covered = old.coverage[p * g_count + g];
            let d = new.demand(k, g);
            *f = if covered > d && covered > 0.0 {
                d / covered
            } else {
                1.0
            };
        }
        for (pi, pool) in model.pools.iter().enumerate() {
            for (mi, m) in pool.members.iter().enumerate() {
                let c = offsets[pi] + mi;
                out[k * cells + c] = old.cells[p * cells + c] * factor[m.group];
            }
        }
    }
    WarmStart {
        capacity: old.capacity.clone(),
        exchanged: old.exchanged.clone(),
        returned: old.returned.clone(),
        cells: out,
    }
}

/// Savings-plan commitment step and minimum: AWS takes up to 5 decimals and at least $0.001
/// (CreateSavingsPlan); for Azure we round to the cent, a conservative assumption.
pub(crate) fn spend_step(provider: Provider) -> (u32, Decimal) {
    match provider {
        Provider::Aws => (5, Decimal::new(1, 3)),
        Provider::Azure => (2, Decimal::new(1, 2)),
    }
}

/// Purchasable amount of a candidate: whole instances (rounded down) or a savings-plan
/// commitment rounded down to the provider's step. Rounding down keeps every cap satisfied.
fn purchasable(c: &model::NewColumn, x: f64) -> Decimal {
    match c.units_per_item {
        u if c.instrument.kind() == Some(CommitmentKind::Usage) => {
            Decimal::from_f64((x / u + 1e-6).floor()).unwrap_or(Decimal::ZERO)
        }
        _ => {
            let (dp, min) = spend_step(c.provider);
            let scale = 10f64.powi(dp as i32);
            let v = Decimal::from_f64((x * scale + 1e-6).floor()).unwrap_or(Decimal::ZERO)
                / Decimal::from(10i64.pow(dp));
            if v < min {
                Decimal::ZERO
            } else {
                v
            }
        }
    }
}

/// The new savings plans sized again next to the instance counts in `fixed`: `solve` is given
/// the capacities with every new savings plan free (the rest as fixed), and its plans are
/// rounded down to what the provider accepts. None when there is no new savings plan to size,
/// the solve failed, or nothing changed.
fn resized_plans(
    model: &Model,
    fixed: &[Capacity],
    mut solve: impl FnMut(&[Capacity]) -> Option<LpResult>,
) -> Option<Vec<Capacity>> {
    let plan = |pi: usize| {
        let p = &model.pools[pi];
        p.new_column().filter(|_| p.kind == CommitmentKind::Spend)
    };
    let free: Vec<Capacity> = (0..model.pools.len())
        .map(|pi| match plan(pi) {
            Some(_) => Capacity::Free,
            None => fixed[pi],
        })
        .collect();
    if free.as_slice() == fixed {
        return None;
    }
    let r = solve(&free)?;
    let sized: Vec<Capacity> = (0..model.pools.len())
        .map(|pi| match plan(pi) {
            Some(c) => Capacity::Fixed(
                purchasable(c, r.capacity[pi]).to_f64().unwrap_or(0.0) * c.units_per_item,
            ),
            None => fixed[pi],
        })
        .collect();
    (sized.as_slice() != fixed).then_some(sized)
}

/// Purchasable capacities: everything rounded down, or (`nearest`) instance counts rounded to
/// the nearest whole instance; and the exchanges in whole instances (see [`round_exchange`]).
fn round(model: &Model, relaxed: &LpResult, nearest: bool) -> (Vec<Capacity>, Vec<Share>) {
    let mut capacity: Vec<Capacity> = model
        .pools
        .iter()
        .enumerate()
        .map(|(pi, p)| match (p.new_column(), p.column()) {
            (Some(c), _) => {
                let x = relaxed.capacity[pi];
                let items = if nearest && p.kind == CommitmentKind::Usage {
                    (x / c.units_per_item).round()
                } else {
                    purchasable(c, x).to_f64().unwrap_or(0.0)
                };
                Capacity::Fixed(items * c.units_per_item)
            }
            // Exchange targets: set with their source below.
            (None, Some(_)) => Capacity::Fixed(0.0),
            (None, None) => Capacity::Free,
        })
        .collect();
    let shares = (0..model.sources.len())
        .map(|si| round_exchange(model, relaxed, si, nearest, &mut capacity))
        .collect();
    (capacity, shares)
}

/// One source's exchange and return in whole instances, and its targets' instance counts.
///
/// The instances returned are rounded down (the refund cap holds). The instances exchanged are
/// rounded down (`nearest`: to the nearest count, within what is left after the return); the
/// targets are then scaled to that count, rounded down, and topped up one instance at a time
/// (to the target furthest below its relaxed count) until their value covers the source
/// value given up: the value rule always holds, at the price of a slightly larger true-up.
fn round_exchange(
    model: &Model,
    relaxed: &LpResult,
    si: usize,
    nearest: bool,
    capacity: &mut [Capacity],
) -> Share {
    let src = &model.sources[si];
    let n = src.count as f64;
    let returned = if nearest && src.provider == Provider::Aws {
        // An AWS savings plan (count 1, no refund cap) is returned whole or kept. The
        // relaxation keeps the share still used (r < 1), so rounding down would never return
        // it: the nearest whole return is tried, and kept only if the re-solve is cheaper.
        (relaxed.returned[si] * n).round().min(n)
    } else {
        (relaxed.returned[si] * n + 1e-6).floor().min(n)
    };
    let e = relaxed.exchanged[si] * n;
    let mut exchanged = if nearest {
        e.round()
    } else {
        (e + 1e-6).floor()
    };
    exchanged = exchanged.min(n - returned).max(0.0);
    let targets: Vec<(usize, f64, f64, f64)> = src
        .targets
        .iter()
        .filter_map(|&t| {
            let c = model.pools[t].column()?;
            let (_, value_hours) = model.pools[t].exchange()?;
            // (pool, relaxed items, value of one item, units per item)
            Some((
                t,
                relaxed.capacity[t] / c.units_per_item,
                c.unit_cost * c.units_per_item * value_hours,
                c.units_per_item,
            ))
        })
        .collect();
    let relaxed_value: f64 = targets.iter().map(|(_, x, v, _)| x * v).sum();
    if exchanged < 1.0 || e <= 1e-9 || relaxed_value <= 0.0 {
        exchanged = 0.0;
    }
    if exchanged > 0.0 {
        let scale = exchanged / e;
        let need = src.remaining_value() * exchanged / n;
        let want: Vec<f64> = targets.iter().map(|(_, x, _, _)| x * scale).collect();
        let mut items: Vec<f64> = want.iter().map(|w| (w + 1e-6).floor()).collect();
        let value = |items: &[f64]| -> f64 {
            items
                .iter()
                .zip(&targets)
                .map(|(i, (_, _, v, _))| i * v)
                .sum()
        };
        // Each step adds at least one item's value, so this ends; the bound is a guard.
        let mut guard = 0;
        while value(&items) < need * (1.0 - 1e-9) && guard < 100_000 {
            let k = (0..targets.len())
                .filter(|&k| want[k] > 0.0)
                .max_by(|&a, &b| (want[a] - items[a]).total_cmp(&(want[b] - items[b])));
            match k {
                Some(k) => items[k] += 1.0,
                None => break,
            }
            guard += 1;
        }
        if value(&items) >= need * (1.0 - 1e-9) {
            for (k, (t, _, _, upi)) in targets.iter().enumerate() {
                capacity[*t] = Capacity::Fixed(items[k] * upi);
            }
        } else {
            exchanged = 0.0;
        }
    }
    Share::Fixed {
        exchanged: exchanged / n,
        returned: returned / n,
    }
}

/// No exchanges (returns are kept: rounding them down keeps every constraint).
fn drop_exchanges(model: &Model, capacity: &mut [Capacity], shares: &mut [Share]) {
    for (si, src) in model.sources.iter().enumerate() {
        if let Share::Fixed { returned, .. } = shares[si] {
            shares[si] = Share::Fixed {
                exchanged: 0.0,
                returned,
            };
        }
        for &t in &src.targets {
            capacity[t] = Capacity::Fixed(0.0);
        }
    }
}

/// Whether fixed capacities respect the hourly and upfront caps (an AWS exchange adds only its
/// true-up, as in the LP).
fn within_caps(
    model: &Model,
    capacity: &[Capacity],
    shares: &[Share],
    constraints: &Constraints,
) -> bool {
    let (mut hourly, mut upfront) = (0.0, 0.0);
    for (p, cap) in model.pools.iter().zip(capacity) {
        if let (Some(c), Capacity::Fixed(v)) = (p.column(), cap) {
            hourly += c.unit_cost * v;
            upfront += c.unit_upfront * v;
        }
    }
    for (src, share) in model.sources.iter().zip(shares) {
        if let (Provider::Aws, Share::Fixed { exchanged, .. }) = (src.provider, share) {
            hourly -= src.hourly_cost * exchanged;
            upfront -= src.remaining_value() * src.upfront_fraction * exchanged;
        }
    }
    // Compare in micro-dollars as the plan reports them, with a little slack for float sums.
    constraints
        .max_new_hourly
        .is_none_or(|m| hourly <= m.to_f64() - 1e-6)
        && constraints
            .max_upfront
            .is_none_or(|m| upfront <= m.to_f64() - 1e-6)
}

/// How far a solved plan's purchases clear `constraints.min_total_utilization` (USD over the
/// window in its scenario, credit included; negative: short of it). None without that floor.
fn total_floor_slack(
    model: &Model,
    points: &Points,
    demand: &DemandInput,
    constraints: &Constraints,
    capacity: &[Capacity],
    res: &LpResult,
) -> Option<f64> {
    let tu = constraints.min_total_utilization.filter(|t| t.min > 0.0)?;
    let low = demand.scenario_at_level(tu.level)?;
    let weight = demand.weights().get(low).copied().unwrap_or(1.0);
    let mut slack = tu.credit * weight;
    for (pi, p) in model.pools.iter().enumerate() {
        let (Some(c), Some(Capacity::Fixed(v))) = (p.column(), capacity.get(pi)) else {
            continue;
        };
        for b in (0..points.len()).filter(|&b| points.scenario[b] == low) {
            if !p.is_active(points.hour[b]) {
                continue;
            }
            let used = res
                .used
                .get(pi)
                .and_then(|u| u.get(b))
                .copied()
                .unwrap_or(0.0);
            slack += points.weight[b] * c.unit_cost * (used - tu.min * v);
        }
    }
    Some(slack)
}

fn money(v: f64) -> Money {
    Money::from_f64(v).unwrap_or(Money::ZERO)
}

fn build_plan(
    demand: &DemandInput,
    constraints: &Constraints,
    options: &Options,
    pass: &Pass<'_>,
    mut solves: usize,
    mut notes: Vec<String>,
) -> Result<Built, OptimizeError> {
    notes.extend(pass.model.notes.iter().cloned());
    let mut actions = purchase_actions(demand, pass);

    // Marginal value of each action: re-solve with it dropped, the others fixed.
    let mut worst: Option<(usize, LpResult, f64, String)> = None;
    for (k, (pi, action)) in actions.iter_mut().enumerate() {
        if k >= options.marginal_resolves {
            break;
        }
        let mut cap = pass.fixed.clone();
        cap[*pi] = Capacity::Fixed(0.0);
        let r = lp::solve(&pass.spec(constraints, options, &cap, &pass.shares))?;
        solves += 1;
        let value = r.objective - pass.final_.objective;
        action.rationale.value_if_removed = Some(value);
        if value < -DROP_TOLERANCE && worst.as_ref().is_none_or(|w| value < w.2) {
            worst = Some((*pi, r, value, action.rationale.summary.clone()));
        }
    }
    if let Some((pool, without, _, summary)) = worst {
        return Ok(Built::Drop {
            pool,
            without,
            solves,
            summary,
        });
    }
    if actions.len() > options.marginal_resolves {
        notes.push(format!(
            "value_if_removed computed for the {} actions with the largest expected savings only",
            options.marginal_resolves
        ));
    }
    let (moves, move_solves) = exchange_actions(demand, constraints, options, pass)?;
    solves += move_solves;
    actions.extend(moves.into_iter().map(|a| (usize::MAX, a)));
    notes.extend(existing_utilization_notes(pass));
    let actions: Vec<Action> = actions.into_iter().map(|(_, a)| a).collect();
    let expected = expected_figures(constraints, pass, &actions, &mut notes);
    let res = &pass.final_;
    Ok(Built::Plan(Plan {
        window: Some(demand.window()),
        actions,
        expected,
        solver: SolverInfo {
            status: pass.relaxed.status.clone(),
            objective: pass.relaxed.objective,
            rounded_objective: res.objective,
            columns: pass.relaxed.columns,
            rows: pass.relaxed.rows,
            points: pass.total_points,
            reduced_points: pass.points.len(),
            solves,
        },
        notes,
    }))
}

/// The purchases of the pass, each with its pool and rationale, largest expected savings first.
fn purchase_actions(demand: &DemandInput, pass: &Pass<'_>) -> Vec<(usize, Action)> {
    let res = &pass.final_;
    let pools = &pass.model.pools;
    let mut actions: Vec<(usize, Action)> = Vec::new();
    for (pi, c) in pass.actions() {
        let capacity = res.capacity[pi];
        let amount = purchasable(c, capacity);
        let hours = (pools[pi].active.1 - pools[pi].active.0) as f64;
        let (unit, hourly_cost_dec) = match c.instrument.kind() {
            Some(CommitmentKind::Usage) => (AmountUnit::Instances, c.rate * amount),
            _ => (AmountUnit::UsdPerHour, amount),
        };
        let term_hours = Decimal::from(c.term.hours());
        let upfront_dec = hourly_cost_dec * term_hours * c.upfront_share;
        let rationale = rationale(
            pass.demand,
            &pass.points,
            res,
            &pass.model,
            pi,
            c,
            capacity,
            hours,
        );
        actions.push((
            pi,
            Action {
                kind: ActionKind::Purchase,
                provider: c.provider,
                instrument: c.instrument,
                term_years: c.term.years(),
                payment_option: c.payment,
                scope: c.scope.clone(),
                amount,
                unit,
                start: demand.start,
                hourly_cost: Money::from_decimal(hourly_cost_dec).unwrap_or(Money::ZERO),
                upfront: Money::from_decimal(upfront_dec).unwrap_or(Money::ZERO),
                rationale,
            },
        ));
    }
    actions.sort_by(|a, b| {
        b.1.rationale
            .expected_savings
            .total_cmp(&a.1.rationale.expected_savings)
    });
    actions
}

/// One note per existing commitment with capacity left: its expected utilization.
fn existing_utilization_notes(pass: &Pass<'_>) -> Vec<String> {
    let (points, res) = (&pass.points, &pass.final_);
    let mut notes = Vec::new();
    for (pi, p) in pass.model.pools.iter().enumerate() {
        if let model::Origin::Existing { id } = &p.origin {
            let cap = res.capacity[pi];
            let (mut used, mut active) = (0.0, 0.0);
            for b in 0..points.len() {
                if p.is_active(points.hour[b]) {
                    used += points.weight[b] * res.used[pi][b];
                    active += points.weight[b];
                }
            }
            if cap > 0.0 && active > 0.0 {
                notes.push(format!(
                    "existing {} {id}: expected utilization {:.1}% over its {} hours in the window",
                    p.instrument,
                    used / (cap * active) * 100.0,
                    p.active.1 - p.active.0
                ));
            }
        }
    }
    notes
}

/// The plan's expected figures over the window (and a note when rounding left coverage below
/// `min_coverage`).
fn expected_figures(
    constraints: &Constraints,
    pass: &Pass<'_>,
    actions: &[Action],
    notes: &mut Vec<String>,
) -> Expected {
    let (points, res) = (&pass.points, &pass.final_);
    let covered: f64 = res.covered_ode.iter().sum();
    let (mut paid, mut used_cost) = (0.0, 0.0);
    for (pi, p) in pass.model.pools.iter().enumerate() {
        let cap = res.capacity[pi];
        if cap <= 0.0 {
            continue;
        }
        let hourly = match (p.column(), p.fixed_capacity) {
            (Some(c), _) => c.unit_cost * cap,
            // An existing commitment pays for what is left of it after exchanges and returns.
            (None, Some(full)) if full > 0.0 => p.hourly_cost * (cap / full).min(1.0),
            (None, _) => p.hourly_cost,
        };
        let active_w: f64 = (0..points.len())
            .filter(|&b| p.is_active(points.hour[b]))
            .map(|b| points.weight[b])
            .sum();
        let used: f64 = (0..points.len())
            .map(|b| points.weight[b] * res.used[pi][b])
            .sum();
        if active_w > 0.0 {
            paid += hourly * active_w;
            used_cost += hourly * active_w * (used / (cap * active_w)).min(1.0);
        }
    }
    let ode = res.ode_total;
    // New commitment: purchases, plus what exchanges add (as the policy caps count it).
    let new_hourly: Money = actions
        .iter()
        .filter(|a| a.is_purchase())
        .map(|a| a.hourly_cost)
        .sum::<Money>()
        + money(exchange_new_hourly(pass));
    let new_upfront: Money = actions
        .iter()
        .filter(|a| !a.is_return())
        .map(|a| a.upfront)
        .sum();
    if let Some(floor) = constraints.min_coverage {
        if ode > 0.0 && covered / ode < floor - 1e-6 {
            notes.push(format!(
                "rounding down to purchasable amounts leaves expected coverage at {:.2}%, below the min_coverage target {:.2}% that the LP relaxation met",
                covered / ode * 100.0,
                floor * 100.0
            ));
        }
    }
    Expected {
        cost: money(res.objective),
        on_demand_cost: money(ode),
        // What nothing new (no purchase, no exchange, no return) would cost.
        cost_without_plan: money(pass.without.objective),
        esr: if ode > 0.0 {
            1.0 - res.objective / ode
        } else {
            0.0
        },
        coverage: if ode > 0.0 { covered / ode } else { 0.0 },
        utilization: if paid > 0.0 { used_cost / paid } else { 0.0 },
        new_hourly_commitment: new_hourly,
        new_upfront,
    }
}

/// Expected utilization of pool `pi` in a solve, over its active points (None when it has no
/// capacity left).
fn pool_utilization(res: &LpResult, points: &Points, model: &Model, pi: usize) -> Option<f64> {
    let p = &model.pools[pi];
    let cap = res.capacity[pi];
    if cap <= 1e-9 {
        return None;
    }
    let (mut used, mut active) = (0.0, 0.0);
    for b in 0..points.len() {
        if p.is_active(points.hour[b]) {
            used += points.weight[b] * res.used[pi][b];
            active += points.weight[b];
        }
    }
    (active > 0.0).then(|| (used / (cap * active)).min(1.0))
}

/// New hourly commitment the exchanges add, as the policy's cap counts it: an AWS exchange its
/// true-up (it keeps the source's end date), an Azure exchange its whole new reservation.
fn exchange_new_hourly(pass: &Pass<'_>) -> f64 {
    let mut hourly = 0.0;
    for (si, src) in pass.model.sources.iter().enumerate() {
        let Share::Fixed { exchanged, .. } = pass.shares[si] else {
            continue;
        };
        if exchanged <= 0.0 {
            continue;
        }
        for &t in &src.targets {
            if let Some(c) = pass.model.pools[t].column() {
                hourly += c.unit_cost * pass.final_.capacity[t];
            }
        }
        if src.provider == Provider::Aws {
            hourly -= src.hourly_cost * exchanged;
        }
    }
    hourly
}

/// The exchanges and returns of the plan, each with its rationale; the number of solves made.
///
/// Every exchange and return is re-solved without it (the rest of the plan fixed): the
/// difference is its expected saving over the window, and the solve gives the source's
/// utilization before it. These are few (one per exchangeable commitment), so they are not
/// limited by `Options::marginal_resolves`.
fn exchange_actions(
    demand: &DemandInput,
    constraints: &Constraints,
    options: &Options,
    pass: &Pass<'_>,
) -> Result<(Vec<Action>, usize), OptimizeError> {
    let mut out = Vec::new();
    let mut solves = 0;
    for si in 0..pass.model.sources.len() {
        let Share::Fixed {
            exchanged,
            returned,
        } = pass.shares[si]
        else {
            continue;
        };
        if exchanged > 0.0 {
            out.extend(exchange_moves(demand, constraints, options, pass, si)?);
            solves += 1;
        }
        if returned > 0.0 {
            out.push(return_move(demand, constraints, options, pass, si)?);
            solves += 1;
        }
    }
    Ok((out, solves))
}

/// The exchange of source `si` as one action per target bought, each with its share of the
/// saving (one re-solve without the exchange: the source keeps that share, its targets are not
/// bought).
fn exchange_moves(
    demand: &DemandInput,
    constraints: &Constraints,
    options: &Options,
    pass: &Pass<'_>,
    si: usize,
) -> Result<Vec<Action>, OptimizeError> {
    let (model, res, points) = (&pass.model, &pass.final_, &pass.points);
    let src = &model.sources[si];
    let Share::Fixed {
        exchanged,
        returned,
    } = pass.shares[si]
    else {
        return Ok(Vec::new());
    };
    let n = f64::from(src.count);
    let after = pool_utilization(res, points, model, src.pool);
    let count = (exchanged * n).round() as u32;
    let mut cap = pass.fixed.clone();
    for &t in &src.targets {
        cap[t] = Capacity::Fixed(0.0);
    }
    let mut shares = pass.shares.clone();
    shares[si] = Share::Fixed {
        exchanged: 0.0,
        returned,
    };
    let before = lp::solve(&pass.spec(constraints, options, &cap, &shares))?;
    let gain = before.objective - res.objective;
    let before_util = pool_utilization(&before, points, model, src.pool);
    let source_value = src.remaining_value() * exchanged;
    let bought: Vec<(usize, &model::NewColumn, f64, f64)> = src
        .targets
        .iter()
        .filter_map(|&t| {
            let c = model.pools[t].column()?;
            let (_, value_hours) = model.pools[t].exchange()?;
            let capacity = res.capacity[t];
            (capacity > 0.0).then_some((t, c, capacity, c.unit_cost * capacity * value_hours))
        })
        .collect();
    let total_value: f64 = bought.iter().map(|b| b.3).sum();
    let mut out = Vec::with_capacity(bought.len());
    for (t, c, capacity, value) in bought {
        let part = value / total_value;
        let sv = source_value * part;
        let true_up = (value - sv).max(0.0);
        let items = (capacity / c.units_per_item).round();
        let hours = (model.pools[t].active.1 - model.pools[t].active.0) as f64;
        let mut r = rationale(demand, points, res, model, t, c, capacity, hours);
        let target_upfront = c.upfront_share.to_f64().unwrap_or(0.0);
        let upfront = match src.provider {
            // The true-up is paid like the target's own upfront share.
            Provider::Aws => (value * target_upfront - sv * src.upfront_fraction).max(0.0),
            // A new purchase; the refund comes back separately.
            Provider::Azure => value * target_upfront,
        };
        r.expected_savings = gain * part;
        r.value_if_removed = Some(gain);
        r.source_utilization_before = before_util;
        r.source_utilization_after = after;
        r.summary = format!(
            "exchange {count} of {} x {} {} (expected utilization {} before, {} after) into {items} x {} ({}): value ${value:.0} >= ${sv:.0} given up, true-up ${true_up:.0}; target expected utilization {:.1}%, saves ${:.0} over the window",
            src.count,
            src.scope,
            src.id,
            pct(before_util),
            pct(after),
            c.scope,
            c.instrument,
            r.expected_utilization * 100.0,
            gain * part
        );
        out.push(Action {
            kind: ActionKind::Exchange {
                source_id: src.id.clone(),
                source_count: count,
                source_value: money(sv),
                true_up: money(true_up),
            },
            provider: c.provider,
            instrument: c.instrument,
            term_years: c.term.years(),
            payment_option: c.payment,
            scope: c.scope.clone(),
            amount: Decimal::from_f64(items).unwrap_or(Decimal::ZERO),
            unit: AmountUnit::Instances,
            start: demand.start,
            hourly_cost: money(c.unit_cost * capacity),
            upfront: money(upfront),
            rationale: r,
        });
    }
    Ok(out)
}

/// The return of source `si`, with its saving (one re-solve without the return).
fn return_move(
    demand: &DemandInput,
    constraints: &Constraints,
    options: &Options,
    pass: &Pass<'_>,
    si: usize,
) -> Result<Action, OptimizeError> {
    let (model, res, points) = (&pass.model, &pass.final_, &pass.points);
    let src = &model.sources[si];
    let (exchanged, returned) = match pass.shares[si] {
        Share::Fixed {
            exchanged,
            returned,
        } => (exchanged, returned),
        Share::Free => (0.0, 0.0),
    };
    let n = f64::from(src.count);
    let after = pool_utilization(res, points, model, src.pool);
    let count = (returned * n).round() as u32;
    let mut shares = pass.shares.clone();
    shares[si] = Share::Fixed {
        exchanged,
        returned: 0.0,
    };
    let before = lp::solve(&pass.spec(constraints, options, &pass.fixed, &shares))?;
    let gain = before.objective - res.objective;
    let before_util = pool_utilization(&before, points, model, src.pool);
    let refund = src.remaining_value() * returned;
    let breakeven = if before.covered_ode[src.pool] > 0.0 {
        before.cost_equiv[src.pool] / before.covered_ode[src.pool]
    } else {
        1.0
    };
    let summary = if src.provider == Provider::Azure {
        format!(
            "return {count} of {} x {} {} for a refund of ${refund:.0} (within the remaining refund cap ${}): expected utilization {} before, {} after (breakeven {:.1}%), saves ${gain:.0} over the window",
            src.count,
            src.scope,
            src.id,
            constraints.azure_refund_remaining,
            pct(before_util),
            pct(after),
            breakeven * 100.0
        )
    } else {
        // An AWS savings plan inside its return window: returned whole, no cap.
        format!(
            "return savings plan {} ({} {}, {:.5} USD/h) inside its return window: expected utilization {} before, {} after (breakeven {:.1}%), saves ${gain:.0} over the window",
            src.id,
            src.instrument,
            src.scope,
            src.hourly_cost,
            pct(before_util),
            pct(after),
            breakeven * 100.0
        )
    };
    Ok(Action {
        kind: ActionKind::Return {
            source_id: src.id.clone(),
            source_count: count,
            refund: money(refund),
        },
        provider: src.provider,
        instrument: src.instrument,
        term_years: src.term.years(),
        payment_option: src.payment,
        scope: src.scope.clone(),
        amount: Decimal::from(count),
        unit: AmountUnit::Instances,
        start: demand.start,
        hourly_cost: money(src.hourly_cost * returned),
        upfront: Money::ZERO,
        rationale: Rationale {
            expected_utilization: after.unwrap_or(0.0),
            breakeven_utilization: breakeven,
            expected_savings: gain,
            // One instance more of it is worth this over the window (dual), and returning one
            // saves its cost over the window.
            marginal_value_per_unit: res.capacity_value[src.pool] * src.units / n,
            marginal_cost_per_unit: src.hourly_cost / n * src.window_hours,
            value_if_removed: Some(gain),
            source_utilization_before: before_util,
            source_utilization_after: after,
            summary,
            ..Rationale::default()
        },
    })
}

fn pct(u: Option<f64>) -> String {
    match u {
        Some(u) => format!("{:.1}%", u * 100.0),
        None => "-".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn rationale(
    demand: &DemandInput,
    points: &Points,
    res: &LpResult,
    model: &Model,
    pi: usize,
    c: &model::NewColumn,
    capacity: f64,
    hours: f64,
) -> Rationale {
    let p = &model.pools[pi];
    let n_s = demand.scenarios.len();
    let mut used_s = vec![0.0; n_s];
    let mut active_s = vec![0.0; n_s];
    let mut not_full = 0.0;
    for b in 0..points.len() {
        if !p.is_active(points.hour[b]) {
            continue;
        }
        let w = points.weight[b];
        let s = points.scenario[b];
        used_s[s] += w * res.used[pi][b];
        active_s[s] += w;
        if res.used[pi][b] < capacity * 0.999 {
            not_full += w;
        }
    }
    let active: f64 = active_s.iter().sum();
    let util = |u: f64, a: f64| {
        if a > 0.0 && capacity > 0.0 {
            (u / (capacity * a)).min(1.0)
        } else {
            0.0
        }
    };
    let utilization_by_scenario: Vec<(f64, f64)> = (0..n_s)
        .map(|s| {
            (
                demand.scenarios[s].level.unwrap_or(s as f64),
                util(used_s[s], active_s[s]),
            )
        })
        .collect();
    let covered_quantiles: Vec<f64> = demand
        .scenarios
        .iter()
        .zip(&utilization_by_scenario)
        .filter_map(|(s, (_, u))| s.level.filter(|_| *u >= 0.99))
        .collect();
    let expected_utilization = util(used_s.iter().sum(), active);
    let breakeven = if res.covered_ode[pi] > 0.0 {
        res.cost_equiv[pi] / res.covered_ode[pi]
    } else {
        1.0
    };
    let cost = c.unit_cost * capacity * hours;
    let expected_savings = res.covered_ode[pi] - cost;
    let demand_quantile = if active > 0.0 { not_full / active } else { 0.0 };
    let summary = format!(
        "{}: expected utilization {:.1}% (breakeven {:.1}%), sits at P{:02.0} of hourly eligible demand, saves ${:.0} over {} h{}",
        c.instrument,
        expected_utilization * 100.0,
        breakeven * 100.0,
        demand_quantile * 100.0,
        expected_savings,
        hours,
        match covered_quantiles.first() {
            Some(q) => format!("; fully used even at P{:02}", (q * 100.0).round()),
            None => String::new(),
        }
    );
    Rationale {
        covered_quantiles,
        utilization_by_scenario,
        demand_quantile,
        expected_utilization,
        breakeven_utilization: breakeven,
        expected_savings,
        marginal_value_per_unit: res.capacity_value[pi] * c.units_per_item,
        marginal_cost_per_unit: c.unit_cost * c.units_per_item * hours,
        value_if_removed: None,
        source_utilization_before: None,
        source_utilization_after: None,
        summary,
    }
}
