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
};

use crate::domain::{
    Action, ActionKind, AmountUnit, Commitment, CommitmentKind, Expected, Money, Plan, Provider,
    RateCard, Rationale, SolverInfo, Term,
};
use lp::{Capacity, LpResult, SolveSpec};
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
    let mut terms: Vec<Term> = constraints
        .providers
        .values()
        .flat_map(|p| p.terms.iter().copied())
        .collect();
    terms.sort();
    terms.dedup();

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
        let buys_long = long.actions().any(|(_, c)| c.term == Term::THREE_YEARS);
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
    build_plan(demand, constraints, options, pass, solves, notes)
}

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
    final_: LpResult,
    solves: usize,
    total_points: usize,
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

    fn spec<'s>(
        &'s self,
        constraints: &'s Constraints,
        options: &'s Options,
        capacity: &'s [Capacity],
    ) -> SolveSpec<'s> {
        SolveSpec {
            model: &self.model,
            points: &self.points,
            demand: self.demand,
            constraints,
            options,
            capacity,
            min_coverage: false,
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
    let cells_per_point: usize = model.pools.iter().map(|p| p.members.len()).sum();
    let segments = model.boundaries.len().saturating_sub(1).max(1);
    let target = (options.max_coverage_columns / cells_per_point.max(1))
        .max(options.min_points * segments * demand.scenarios.len());
    let value: Vec<f64> = model.groups.iter().map(|g| g.on_demand).collect();
    let free = vec![Capacity::Free; model.pools.len()];
    let solve_on = |points: &Points| {
        lp::solve(&SolveSpec {
            model: &model,
            points,
            demand,
            constraints,
            options,
            capacity: &free,
            min_coverage: true,
        })
    };
    let mut solves = 0;
    let (points, relaxed) = if options.reduce && target < total_points {
        let mut buckets = reduce::reduce(demand, &model.boundaries, &value, target);
        let mut points = reduce::points(demand, &buckets);
        let mut relaxed = solve_on(&points)?;
        solves += 1;
        // Refine where the commitments cut through a bucket, a few rounds, each adding at most
        // a quarter of the points, until the error bound is negligible.
        for _ in 0..options.refine_rounds {
            let (refined, bound) = reduce::refine(
                demand,
                buckets,
                &relaxed.coverage,
                &value,
                (target / 4).max(1),
            );
            buckets = refined;
            if bound <= 1e-5 * relaxed.objective.abs() {
                break;
            }
            points = reduce::points(demand, &buckets);
            relaxed = solve_on(&points)?;
            solves += 1;
        }
        (points, relaxed)
    } else {
        let points = reduce::full(demand);
        let relaxed = solve_on(&points)?;
        solves += 1;
        (points, relaxed)
    };
    let fixed_spec = |capacity| SolveSpec {
        model: &model,
        points: &points,
        demand,
        constraints,
        options,
        capacity,
        min_coverage: false,
    };
    let mut fixed = round(&model, &relaxed, false);
    let mut final_ = lp::solve(&fixed_spec(&fixed))?;
    // Rounding every instance count down can leave a nearly whole instance unbought; try the
    // nearest counts too and keep them if they are cheaper and within the caps.
    let nearest = round(&model, &relaxed, true);
    if nearest != fixed && within_caps(&model, &nearest, constraints) {
        solves += 1;
        if let Ok(r) = lp::solve(&fixed_spec(&nearest)) {
            if r.objective < final_.objective {
                fixed = nearest;
                final_ = r;
            }
        }
    }
    // Under a coverage cap, whole-instance rounding can leave a commitment that no longer pays
    // for itself: the cap forces part of it idle once the others are rounded. Drop any whose
    // removal makes the plan cheaper, until none does. Only the cap can force paid capacity to
    // sit idle in the fixed solve, so plans without one skip these re-solves.
    if constraints.max_coverage.is_some() {
        let mut improved = true;
        while improved {
            improved = false;
            for pi in 0..fixed.len() {
                if !matches!(fixed[pi], Capacity::Fixed(x) if x > 0.0) {
                    continue;
                }
                let mut without = fixed.clone();
                without[pi] = Capacity::Fixed(0.0);
                solves += 1;
                let spec = SolveSpec {
                    model: &model,
                    points: &points,
                    demand,
                    constraints,
                    options,
                    capacity: &without,
                    min_coverage: false,
                };
                if let Ok(r) = lp::solve(&spec) {
                    if r.objective < final_.objective - 1e-6 {
                        fixed = without;
                        final_ = r;
                        improved = true;
                    }
                }
            }
        }
    }
    Ok(Pass {
        demand,
        model,
        points,
        relaxed,
        fixed,
        final_,
        solves: solves + 1,
        total_points,
    })
}

/// Savings-plan commitment step and minimum: AWS takes up to 5 decimals and at least $0.001
/// (CreateSavingsPlan); for Azure we round to the cent, a conservative assumption.
fn spend_step(provider: Provider) -> (u32, Decimal) {
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

/// Purchasable capacities: everything rounded down, or (`nearest`) instance counts rounded to
/// the nearest whole instance.
fn round(model: &Model, relaxed: &LpResult, nearest: bool) -> Vec<Capacity> {
    model
        .pools
        .iter()
        .enumerate()
        .map(|(pi, p)| match p.new_column() {
            Some(c) => {
                let x = relaxed.capacity[pi];
                let items = if nearest && p.kind == CommitmentKind::Usage {
                    (x / c.units_per_item).round()
                } else {
                    purchasable(c, x).to_f64().unwrap_or(0.0)
                };
                Capacity::Fixed(items * c.units_per_item)
            }
            None => Capacity::Free,
        })
        .collect()
}

/// Whether fixed capacities respect the hourly and upfront caps.
fn within_caps(model: &Model, capacity: &[Capacity], constraints: &Constraints) -> bool {
    let (mut hourly, mut upfront) = (0.0, 0.0);
    for (p, cap) in model.pools.iter().zip(capacity) {
        if let (Some(c), Capacity::Fixed(v)) = (p.new_column(), cap) {
            hourly += c.unit_cost * v;
            upfront += c.unit_upfront * v;
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

fn money(v: f64) -> Money {
    Money::from_f64(v).unwrap_or(Money::ZERO)
}

fn build_plan(
    demand: &DemandInput,
    constraints: &Constraints,
    options: &Options,
    pass: Pass<'_>,
    mut solves: usize,
    mut notes: Vec<String>,
) -> Result<Plan, OptimizeError> {
    notes.extend(pass.model.notes.iter().cloned());
    let points = &pass.points;
    let res = &pass.final_;
    let pools = &pass.model.pools;

    // What nothing new would cost.
    let nothing: Vec<Capacity> = pools
        .iter()
        .map(|p| match p.new_column() {
            Some(_) => Capacity::Fixed(0.0),
            None => Capacity::Free,
        })
        .collect();
    let without = lp::solve(&pass.spec(constraints, options, &nothing))?;
    solves += 1;

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
            points,
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

    // Marginal value of each action: re-solve with it dropped, the others fixed.
    for (k, (pi, action)) in actions.iter_mut().enumerate() {
        if k >= options.marginal_resolves {
            break;
        }
        let mut cap = pass.fixed.clone();
        cap[*pi] = Capacity::Fixed(0.0);
        let r = lp::solve(&pass.spec(constraints, options, &cap))?;
        solves += 1;
        action.rationale.value_if_removed = Some(r.objective - res.objective);
    }
    if actions.len() > options.marginal_resolves {
        notes.push(format!(
            "value_if_removed computed for the {} actions with the largest expected savings only",
            options.marginal_resolves
        ));
    }

    let covered: f64 = res.covered_ode.iter().sum();
    let (mut paid, mut used_cost) = (0.0, 0.0);
    for (pi, p) in pools.iter().enumerate() {
        let cap = res.capacity[pi];
        if cap <= 0.0 {
            continue;
        }
        let hourly = match p.new_column() {
            Some(c) => c.unit_cost * cap,
            None => p.hourly_cost,
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
    for (pi, p) in pools.iter().enumerate() {
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
    let ode = res.ode_total;
    let new_hourly: Money = actions.iter().map(|(_, a)| a.hourly_cost).sum();
    let new_upfront: Money = actions.iter().map(|(_, a)| a.upfront).sum();
    if let Some(floor) = constraints.min_coverage {
        if ode > 0.0 && covered / ode < floor - 1e-6 {
            notes.push(format!(
                "rounding down to purchasable amounts leaves expected coverage at {:.2}%, below the min_coverage target {:.2}% that the LP relaxation met",
                covered / ode * 100.0,
                floor * 100.0
            ));
        }
    }
    let expected = Expected {
        cost: money(res.objective),
        on_demand_cost: money(ode),
        cost_without_plan: money(without.objective),
        esr: if ode > 0.0 {
            1.0 - res.objective / ode
        } else {
            0.0
        },
        coverage: if ode > 0.0 { covered / ode } else { 0.0 },
        utilization: if paid > 0.0 { used_cost / paid } else { 0.0 },
        new_hourly_commitment: new_hourly,
        new_upfront,
    };
    Ok(Plan {
        window: Some(demand.window()),
        actions: actions.into_iter().map(|(_, a)| a).collect(),
        expected,
        solver: SolverInfo {
            status: pass.relaxed.status.clone(),
            objective: pass.relaxed.objective,
            rounded_objective: res.objective,
            columns: pass.relaxed.columns,
            rows: pass.relaxed.rows,
            points: pass.total_points,
            reduced_points: points.len(),
            solves,
        },
        notes,
    })
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
        summary,
    }
}
