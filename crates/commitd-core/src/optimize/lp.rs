//! The linear program: one column per (pool, group, point) of coverage and one per candidate
//! purchase, solved with HiGHS through good_lp.
//!
//! ```text
//! minimise   sum_b w_b sum_g od_g (d_gb - sum_p y_pgb)          on-demand cost of what is uncovered
//!          + sum_j unit_cost_j * hours_j * x_j + existing cost    commitments, used or not
//! subject to sum_p y_pgb <= d_gb                                 (g, b): cover at most the demand
//!            sum_g a_pg y_pgb <= capacity_p (x_j or existing)    (p, b): each commitment's capacity
//!            policy rows: new hourly cost, upfront, coverage band, min utilization at a low quantile
//!            exchanges: an exchangeable commitment's capacity shrinks by the shares exchanged (e)
//!            and returned (r); its targets' value >= e x its remaining value; refunds <= cap
//! ```
//!
//! Each hour the allocation of commitments to usage is the one that saves the most (an optimal
//! allocation), not the providers' greedy order (RIs, then EC2 Instance SPs, then Compute SPs,
//! highest discount first). For sizing purchases the two agree whenever the narrower, deeper
//! discount is used first, which is what an optimum does too; docs/optimizer.md discusses when
//! they differ.

use super::input::{Constraints, DemandInput, Options};
use super::model::Model;
use super::reduce::Points;
use super::OptimizeError;
use good_lp::solvers::highs::highs;
use good_lp::solvers::DualValues;
use good_lp::{
    constraint::ConstraintReference, variable, Expression, ProblemVariables, ResolutionError,
    Solution, SolutionWithDual, SolverModel, Variable,
};

/// What a solve returns, aggregated per pool.
#[derive(Clone, Debug)]
pub(crate) struct LpResult {
    pub status: String,
    /// Expected cost over the window (USD), constants included.
    pub objective: f64,
    pub columns: usize,
    pub rows: usize,
    /// Capacity of each pool (the LP's x for candidates, the fixed capacity otherwise).
    pub capacity: Vec<f64>,
    /// `used[pool][point]`: capacity consumed at that point.
    pub used: Vec<Vec<f64>>,
    /// Per pool: weighted ODE it covers, and what that coverage costs at its rates.
    pub covered_ode: Vec<f64>,
    pub cost_equiv: Vec<f64>,
    /// Per pool: value of one more unit of capacity over the window (USD), from the duals.
    pub capacity_value: Vec<f64>,
    /// Weighted ODE of all demand.
    pub ode_total: f64,
    /// Per exchange source: the shares of it exchanged and returned (0..1).
    pub exchanged: Vec<f64>,
    pub returned: Vec<f64>,
    /// `coverage[point * groups + g]`: instance-hours of group `g` covered at that point.
    pub coverage: Vec<f64>,
    /// `cells[point * model.cells() + cell]`: instance-hours each (pool, member) covers at that
    /// point (the coverage columns' values; a warm start for the next solve).
    pub cells: Vec<f64>,
}

/// A starting solution for a solve, on the solve's own points: HiGHS builds its first basis
/// from it instead of starting from the slack basis (`Highs::setSolution`). Any values do (the
/// simplex repairs what is infeasible), so a previous round's solution mapped to split points,
/// or the relaxation's solution for a solve with rounded amounts, are both valid starts.
#[derive(Clone, Debug)]
pub(crate) struct WarmStart {
    /// Per pool: the candidate's capacity (ignored for existing pools).
    pub capacity: Vec<f64>,
    /// Per exchange source.
    pub exchanged: Vec<f64>,
    pub returned: Vec<f64>,
    /// As [`LpResult::cells`].
    pub cells: Vec<f64>,
}

impl WarmStart {
    /// The solution of `r`, for a solve on the same points.
    pub fn from_result(r: &LpResult) -> WarmStart {
        WarmStart {
            capacity: r.capacity.clone(),
            exchanged: r.exchanged.clone(),
            returned: r.returned.clone(),
            cells: r.cells.clone(),
        }
    }
}

/// How an exchangeable commitment's shares are set in a solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Share {
    Free,
    /// Shares (0..1) of its instances exchanged and returned.
    Fixed {
        exchanged: f64,
        returned: f64,
    },
}

impl Share {
    pub const NONE: Share = Share::Fixed {
        exchanged: 0.0,
        returned: 0.0,
    };
}

/// How the candidates' capacities are set in a solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Capacity {
    Free,
    Fixed(f64),
}

pub(crate) struct SolveSpec<'a> {
    pub model: &'a Model,
    pub points: &'a Points,
    pub demand: &'a DemandInput,
    pub constraints: &'a Constraints,
    pub options: &'a Options,
    /// Per pool (ignored for existing pools).
    pub capacity: &'a [Capacity],
    /// Per exchange source (`Model::sources`); missing entries are free.
    pub shares: &'a [Share],
    /// Whether this solve decides the capacities (the relaxation): only then are the targets
    /// on the portfolio as a whole imposed, `min_coverage` and `min_total_utilization`. The
    /// amounts rounded to whole instances can leave either slightly off (rounding down an RI
    /// used above the floor lowers the total), which is reported rather than made infeasible.
    pub relaxation: bool,
    /// Where the simplex starts (None: HiGHS's own start, after presolve).
    pub warm: Option<&'a WarmStart>,
}

/// Where each pool's members start in a point's row of [`LpResult::cells`], and the row's length
/// (every (pool, member) pair of the model).
pub(crate) fn cell_offsets(model: &Model) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(model.pools.len());
    let mut n = 0;
    for p in &model.pools {
        offsets.push(n);
        n += p.members.len();
    }
    (offsets, n)
}

/// One coverage column: instance-hours of a pool's member covered at a point.
struct YCol {
    pool: u32,
    member: u32,
    point: u32,
    var: Variable,
}

/// The LP's columns, created in this order: candidates, exchange shares, coverage.
struct Columns {
    /// Per pool: the candidate's capacity (None for existing pools).
    x: Vec<Option<Variable>>,
    /// Per pool: the exchange source it is, if any.
    source_of_pool: Vec<Option<usize>>,
    /// Per exchange source: the shares exchanged and (when returnable) returned.
    shares: Vec<(Variable, Option<Variable>)>,
    /// Coverage columns, ordered by (point, pool, member).
    ys: Vec<YCol>,
    /// Weighted on-demand cost of all demand.
    ode_total: f64,
}

type Problem = good_lp::solvers::highs::HighsProblem;

pub(crate) fn solve(spec: &SolveSpec<'_>) -> Result<LpResult, OptimizeError> {
    let (offsets, cells) = cell_offsets(spec.model);
    let mut vars = ProblemVariables::new();
    let mut objective = Expression::with_capacity(1024);
    let x = candidate_columns(spec, &mut vars, &mut objective);
    let (source_of_pool, shares) = share_columns(spec, &mut vars, &mut objective);
    let (ys, ode_total) = coverage_columns(spec, &offsets, cells, &mut vars, &mut objective);
    let cols = Columns {
        x,
        source_of_pool,
        shares,
        ys,
        ode_total,
    };
    let columns = vars.len();

    let mut problem = vars
        .minimise(objective)
        .using(highs)
        .set_threads(spec.options.threads.max(1));
    let capacity_rows = capacity_rows(spec, &cols, &mut problem);
    let rows = capacity_rows.len()
        + demand_rows(spec, &cols, &mut problem)
        + exchange_rows(spec, &cols, &mut problem)
        + policy_rows(spec, &cols, &mut problem)
        + coverage_rows(spec, &cols, &mut problem);

    let solution = problem.solve().map_err(|e| match e {
        ResolutionError::Infeasible => OptimizeError::Infeasible(infeasibility_reason(spec)),
        other => OptimizeError::Solver(other.to_string()),
    })?;
    let mut result = read_solution(spec, &cols, solution, &capacity_rows, (&offsets, cells));
    result.columns = columns;
    result.rows = rows;
    Ok(result)
}

/// Candidate columns (purchases and exchange targets), with their cost over their active hours.
fn candidate_columns(
    spec: &SolveSpec<'_>,
    vars: &mut ProblemVariables,
    objective: &mut Expression,
) -> Vec<Option<Variable>> {
    let pools = &spec.model.pools;
    let warm = spec.warm;
    let mut x: Vec<Option<Variable>> = Vec::with_capacity(pools.len());
    for (pi, p) in pools.iter().enumerate() {
        match p.column() {
            Some(c) => {
                let def = match spec.capacity.get(pi).copied().unwrap_or(Capacity::Free) {
                    Capacity::Free => {
                        let def = variable().min(0.0);
                        match warm.and_then(|w| w.capacity.get(pi)) {
                            Some(v) => def.initial(v.max(0.0)),
                            None => def,
                        }
                    }
                    Capacity::Fixed(v) if warm.is_some() => variable().min(v).max(v).initial(v),
                    Capacity::Fixed(v) => variable().min(v).max(v),
                };
                let var = vars.add(def);
                let hours = (p.active.1 - p.active.0) as f64;
                objective.add_mul(c.unit_cost * hours, var);
                x.push(Some(var));
            }
            None => x.push(None),
        }
    }
    x
}

/// Exchange shares: giving up a share of a source stops its cost inside the window (an Azure
/// refund; for AWS its value funds the target, whose whole cost the target column carries, so
/// the difference is the true-up). Returns each pool's source and each source's columns.
#[allow(clippy::type_complexity)]
fn share_columns(
    spec: &SolveSpec<'_>,
    vars: &mut ProblemVariables,
    objective: &mut Expression,
) -> (Vec<Option<usize>>, Vec<(Variable, Option<Variable>)>) {
    let model = spec.model;
    let warm = spec.warm;
    let mut source_of_pool: Vec<Option<usize>> = vec![None; model.pools.len()];
    let mut shares: Vec<(Variable, Option<Variable>)> = Vec::with_capacity(model.sources.len());
    for (si, src) in model.sources.iter().enumerate() {
        source_of_pool[src.pool] = Some(si);
        let bounds = |v: f64| variable().min(v).max(v);
        let (e_def, r_def) = match spec.shares.get(si).copied().unwrap_or(Share::Free) {
            Share::Free => (
                variable()
                    .min(0.0)
                    .max(if src.targets.is_empty() { 0.0 } else { 1.0 }),
                variable().min(0.0).max(1.0),
            ),
            Share::Fixed {
                exchanged,
                returned,
            } => (bounds(exchanged), bounds(returned)),
        };
        let (e_def, r_def) = match warm {
            Some(w) => (
                e_def.initial(w.exchanged.get(si).copied().unwrap_or(0.0)),
                r_def.initial(w.returned.get(si).copied().unwrap_or(0.0)),
            ),
            None => (e_def, r_def),
        };
        let stop = -src.hourly_cost * src.window_hours;
        let e = vars.add(e_def);
        objective.add_mul(stop, e);
        let r = src.returnable.then(|| {
            let r = vars.add(r_def);
            // An AWS savings plan returned and bought again at the same rate costs the same
            // over the window: keeping it wins the tie (a return and a re-purchase is churn).
            let keep = if src.provider == crate::domain::Provider::Aws {
                1.0 - 1e-4
            } else {
                1.0
            };
            objective.add_mul(stop * keep, r);
            r
        });
        shares.push((e, r));
    }
    (source_of_pool, shares)
}

/// Coverage columns, ordered by (point, pool, member), each saving its group's on-demand rate;
/// and the weighted on-demand cost of all demand.
fn coverage_columns(
    spec: &SolveSpec<'_>,
    offsets: &[usize],
    cells: usize,
    vars: &mut ProblemVariables,
    objective: &mut Expression,
) -> (Vec<YCol>, f64) {
    let SolveSpec { model, points, .. } = *spec;
    let (pools, groups) = (&model.pools, &model.groups);
    let warm = spec.warm;
    let mut ys: Vec<YCol> = Vec::new();
    let mut ode_total = 0.0;
    for b in 0..points.len() {
        let w = points.weight[b];
        for (g, info) in groups.iter().enumerate() {
            let d = points.demand(b, g);
            ode_total += w * info.on_demand * d;
        }
        for (pi, p) in pools.iter().enumerate() {
            if !p.is_active(points.hour[b]) {
                continue;
            }
            let capacity_possible = match (p.fixed_capacity, spec.capacity.get(pi)) {
                (Some(c), _) => c > 0.0,
                (None, Some(Capacity::Fixed(v))) => *v > 0.0,
                (None, _) => true,
            };
            if !capacity_possible {
                continue;
            }
            for (mi, m) in p.members.iter().enumerate() {
                let d = points.demand(b, m.group);
                if d <= 1e-9 {
                    continue;
                }
                let def = variable().min(0.0).max(d);
                let def = match warm.and_then(|w| w.cells.get(b * cells + offsets[pi] + mi)) {
                    Some(v) => def.initial(v.clamp(0.0, d)),
                    None => def,
                };
                let var = vars.add(def);
                objective.add_mul(-w * groups[m.group].on_demand, var);
                ys.push(YCol {
                    pool: pi as u32,
                    member: mi as u32,
                    point: b as u32,
                    var,
                });
            }
        }
    }
    (ys, ode_total)
}

/// Capacity rows, one per run of equal (point, pool) among the coverage columns; returned with
/// their pool, for the duals.
fn capacity_rows(
    spec: &SolveSpec<'_>,
    cols: &Columns,
    problem: &mut Problem,
) -> Vec<(u32, ConstraintReference)> {
    let model = spec.model;
    let pools = &model.pools;
    let ys = &cols.ys;
    let shares = &cols.shares;
    let mut capacity_rows: Vec<(u32, ConstraintReference)> = Vec::new();
    let mut i = 0;
    while i < ys.len() {
        let (b, pi) = (ys[i].point, ys[i].pool);
        let mut j = i;
        let mut expr = Expression::with_capacity(8);
        while j < ys.len() && ys[j].point == b && ys[j].pool == pi {
            let m = &pools[pi as usize].members[ys[j].member as usize];
            expr.add_mul(m.a, ys[j].var);
            j += 1;
        }
        let p = &pools[pi as usize];
        let row = match (p.fixed_capacity, cols.x[pi as usize]) {
            (Some(c), _) => {
                if let Some(si) = cols.source_of_pool[pi as usize] {
                    // What is exchanged or returned no longer covers anything.
                    let units = model.sources[si].units;
                    expr.add_mul(units, shares[si].0);
                    if let Some(r) = shares[si].1 {
                        expr.add_mul(units, r);
                    }
                }
                expr.leq(c)
            }
            (None, Some(xv)) => {
                expr.add_mul(-1.0, xv);
                expr.leq(0.0)
            }
            (None, None) => expr.leq(0.0),
        };
        capacity_rows.push((pi, problem.add_constraint(row)));
        i = j;
    }
    capacity_rows
}

/// Demand rows where more than one pool can cover a group at a point (otherwise the column's
/// upper bound already says it). Returns the number of rows.
fn demand_rows(spec: &SolveSpec<'_>, cols: &Columns, problem: &mut Problem) -> usize {
    let pools = &spec.model.pools;
    let mut rows = 0;
    let mut by_demand: Vec<(u32, u32, Variable)> = cols
        .ys
        .iter()
        .map(|y| {
            (
                y.point,
                pools[y.pool as usize].members[y.member as usize].group as u32,
                y.var,
            )
        })
        .collect();
    by_demand.sort_unstable_by_key(|(b, g, _)| (*b, *g));
    let mut i = 0;
    while i < by_demand.len() {
        let (b, g, _) = by_demand[i];
        let mut j = i;
        while j < by_demand.len() && by_demand[j].0 == b && by_demand[j].1 == g {
            j += 1;
        }
        if j - i > 1 {
            let mut expr = Expression::with_capacity(j - i);
            for t in &by_demand[i..j] {
                expr.add_mul(1.0, t.2);
            }
            problem.add_constraint(expr.leq(spec.points.demand(b as usize, g as usize)));
            rows += 1;
        }
        i = j;
    }
    rows
}

/// Exchange rows: the targets' value covers the share given up (AWS: target value >= source
/// value; Azure: new lifetime commitment >= refunded remaining value); a share is exchanged or
/// returned, not both; refunds stay within the rolling cap. Returns the number of rows.
fn exchange_rows(spec: &SolveSpec<'_>, cols: &Columns, problem: &mut Problem) -> usize {
    let model = spec.model;
    let pools = &model.pools;
    let mut rows = 0;
    let mut refunds = Expression::with_capacity(model.sources.len());
    let mut any_return = false;
    for (si, src) in model.sources.iter().enumerate() {
        let (e, r) = cols.shares[si];
        if !src.targets.is_empty() {
            let mut expr = Expression::with_capacity(src.targets.len() + 1);
            for &t in &src.targets {
                if let (Some(xv), Some(c), Some((_, value_hours))) =
                    (cols.x[t], pools[t].column(), pools[t].exchange())
                {
                    expr.add_mul(c.unit_cost * value_hours, xv);
                }
            }
            expr.add_mul(-src.remaining_value(), e);
            problem.add_constraint(expr.geq(0.0));
            rows += 1;
        }
        if let Some(r) = r {
            let mut both = Expression::with_capacity(2);
            both.add_mul(1.0, e);
            both.add_mul(1.0, r);
            problem.add_constraint(both.leq(1.0));
            rows += 1;
            // Only Azure refunds count against the rolling cap; an AWS savings plan return
            // (inside its window) has none.
            if src.provider == crate::domain::Provider::Azure {
                refunds.add_mul(src.remaining_value(), r);
                any_return = true;
            }
        }
    }
    if any_return {
        let cap = spec.constraints.azure_refund_remaining.to_f64().max(0.0);
        problem.add_constraint(refunds.leq(cap));
        rows += 1;
    }
    rows
}

/// Policy rows on the candidates: new hourly commitment, upfront, and the utilization floors.
/// Returns the number of rows.
fn policy_rows(spec: &SolveSpec<'_>, cols: &Columns, problem: &mut Problem) -> usize {
    let SolveSpec {
        model, constraints, ..
    } = *spec;
    let pools = &model.pools;
    let free: Vec<(usize, Variable)> = cols
        .x
        .iter()
        .enumerate()
        .filter_map(|(pi, v)| v.map(|v| (pi, v)))
        .filter(|(pi, _)| spec.capacity.get(*pi) != Some(&Capacity::Fixed(0.0)))
        .collect();
    if free.is_empty() {
        return 0;
    }
    let mut rows = 0;
    // An AWS exchange target keeps its source's end date: only the true-up (target minus the
    // share of the source) is new commitment. An Azure exchange buys a new term: all of it
    // counts, as a purchase does.
    let aws_sources = || {
        model
            .sources
            .iter()
            .zip(&cols.shares)
            .filter(|(src, _)| src.provider == crate::domain::Provider::Aws)
    };
    if let Some(max) = constraints.max_new_hourly {
        let mut expr = Expression::with_capacity(free.len());
        for (pi, v) in &free {
            if let Some(c) = pools[*pi].column() {
                expr.add_mul(c.unit_cost, *v);
            }
        }
        for (src, (e, _)) in aws_sources() {
            expr.add_mul(-src.hourly_cost, *e);
        }
        problem.add_constraint(expr.leq(max.to_f64()));
        rows += 1;
    }
    if let Some(max) = constraints.max_upfront {
        let mut expr = Expression::with_capacity(free.len());
        for (pi, v) in &free {
            if let Some(c) = pools[*pi].column() {
                if c.unit_upfront > 0.0 {
                    expr.add_mul(c.unit_upfront, *v);
                }
            }
        }
        for (src, (e, _)) in aws_sources() {
            expr.add_mul(-src.remaining_value() * src.upfront_fraction, *e);
        }
        problem.add_constraint(expr.leq(max.to_f64()));
        rows += 1;
    }
    rows + utilization_rows(spec, cols, &free, problem)
}

/// The utilization floors on the free candidates: per pool (`min_utilization`) and, in the
/// relaxation, for them together (`min_total_utilization`). Returns the number of rows.
fn utilization_rows(
    spec: &SolveSpec<'_>,
    cols: &Columns,
    free: &[(usize, Variable)],
    problem: &mut Problem,
) -> usize {
    let SolveSpec {
        model,
        points,
        constraints,
        ..
    } = *spec;
    let pools = &model.pools;
    let ys = &cols.ys;
    let mut rows = 0;
    // Per candidate pool, in scenario `low`: capacity used minus `min` x its capacity over its
    // active hours. The per-pool floor holds each at >= 0; the total floor holds their sum in
    // dollars (x unit cost, so that pools of different units add up) at >= -credit.
    let floor_rows = |low: usize, min: f64| -> Vec<(usize, Expression)> {
        let mut by_pool: Vec<Vec<usize>> = vec![Vec::new(); pools.len()];
        for (k, y) in ys.iter().enumerate() {
            if points.scenario[y.point as usize] == low {
                by_pool[y.pool as usize].push(k);
            }
        }
        free.iter()
            .map(|(pi, v)| {
                let p = &pools[*pi];
                let active_weight: f64 = (0..points.len())
                    .filter(|&b| points.scenario[b] == low && p.is_active(points.hour[b]))
                    .map(|b| points.weight[b])
                    .sum();
                let mut expr = Expression::with_capacity(64);
                for y in by_pool[*pi].iter().map(|&k| &ys[k]) {
                    let m = &p.members[y.member as usize];
                    expr.add_mul(points.weight[y.point as usize] * m.a, y.var);
                }
                expr.add_mul(-min * active_weight, *v);
                (*pi, expr)
            })
            .collect()
    };
    if let Some(mu) = constraints.min_utilization.filter(|m| m.min > 0.0) {
        if let Some(low) = spec.demand.scenario_at_level(mu.level) {
            for (_, expr) in floor_rows(low, mu.min) {
                problem.add_constraint(expr.geq(0.0));
                rows += 1;
            }
        }
    }
    if let (true, Some(tu)) = (
        spec.relaxation,
        constraints.min_total_utilization.filter(|t| t.min > 0.0),
    ) {
        if let Some(low) = spec.demand.scenario_at_level(tu.level) {
            let mut total = Expression::with_capacity(ys.len() / 2 + free.len());
            for (pi, expr) in floor_rows(low, tu.min) {
                if let Some(c) = pools[pi].column() {
                    total += expr * c.unit_cost;
                }
            }
            let weight = spec.demand.weights().get(low).copied().unwrap_or(1.0);
            problem.add_constraint(total.geq(-tu.credit * weight));
            rows += 1;
        }
    }
    rows
}

/// The coverage band on the whole portfolio: `max_coverage` always, `min_coverage` in the
/// relaxation. Returns the number of rows.
fn coverage_rows(spec: &SolveSpec<'_>, cols: &Columns, problem: &mut Problem) -> usize {
    let SolveSpec {
        model,
        points,
        constraints,
        ..
    } = *spec;
    let mut rows = 0;
    let coverage_expr = || {
        let mut expr = Expression::with_capacity(cols.ys.len());
        for y in &cols.ys {
            let m = &model.pools[y.pool as usize].members[y.member as usize];
            expr.add_mul(
                points.weight[y.point as usize] * model.groups[m.group].on_demand,
                y.var,
            );
        }
        expr
    };
    if let Some(cap) = constraints.max_coverage {
        problem.add_constraint(coverage_expr().leq(cap * cols.ode_total));
        rows += 1;
    }
    if let (true, Some(floor)) = (spec.relaxation, constraints.min_coverage) {
        problem.add_constraint(coverage_expr().geq(floor * cols.ode_total));
        rows += 1;
    }
    rows
}

/// The solution aggregated per pool (`columns` and `rows` left for the caller to fill).
fn read_solution(
    spec: &SolveSpec<'_>,
    cols: &Columns,
    mut solution: good_lp::solvers::highs::HighsSolution,
    capacity_rows: &[(u32, ConstraintReference)],
    (offsets, cells): (&[usize], usize),
) -> LpResult {
    let SolveSpec { model, points, .. } = *spec;
    let (pools, groups) = (&model.pools, &model.groups);
    let status = format!("{:?}", solution.status());
    let mut capacity: Vec<f64> = pools
        .iter()
        .map(|p| p.fixed_capacity.unwrap_or(0.0))
        .collect();
    let mut lp_objective = 0.0;
    for (pi, v) in cols.x.iter().enumerate() {
        if let Some(v) = v {
            let val = solution.value(*v).max(0.0);
            capacity[pi] = val;
            if let Some(c) = pools[pi].column() {
                lp_objective +=
                    c.unit_cost * (pools[pi].active.1 - pools[pi].active.0) as f64 * val;
            }
        }
    }
    let mut exchanged = vec![0.0; model.sources.len()];
    let mut returned = vec![0.0; model.sources.len()];
    for (si, src) in model.sources.iter().enumerate() {
        let (e, r) = cols.shares[si];
        exchanged[si] = solution.value(e).clamp(0.0, 1.0);
        returned[si] = r.map_or(0.0, |r| solution.value(r).clamp(0.0, 1.0));
        let given_up = (exchanged[si] + returned[si]).min(1.0);
        capacity[src.pool] = src.units * (1.0 - given_up);
        lp_objective -= src.hourly_cost * src.window_hours * given_up;
    }
    let mut used = vec![vec![0.0; points.len()]; pools.len()];
    let mut covered_ode = vec![0.0; pools.len()];
    let mut cost_equiv = vec![0.0; pools.len()];
    let mut coverage = vec![0.0; points.len() * groups.len()];
    let mut cell_values = vec![0.0; points.len() * cells];
    for y in &cols.ys {
        let val = solution.value(y.var).max(0.0);
        if val <= 0.0 {
            continue;
        }
        let pi = y.pool as usize;
        let b = y.point as usize;
        cell_values[b * cells + offsets[pi] + y.member as usize] = val;
        let m = &pools[pi].members[y.member as usize];
        used[pi][b] += m.a * val;
        coverage[b * groups.len() + m.group] += val;
        covered_ode[pi] += points.weight[b] * groups[m.group].on_demand * val;
        cost_equiv[pi] += points.weight[b] * m.cost_equiv * val;
    }
    lp_objective -= covered_ode.iter().sum::<f64>();
    let mut capacity_value = vec![0.0; pools.len()];
    {
        let duals = solution.compute_dual();
        for (pi, r) in capacity_rows {
            // Minimisation: raising a <= row's bound lowers the cost, so its dual is <= 0.
            capacity_value[*pi as usize] += -duals.dual(r.clone());
        }
    }
    // The objective's constants: the existing commitments' cost and all demand on demand.
    let constant = model.existing_cost + cols.ode_total;
    LpResult {
        status,
        objective: constant + lp_objective,
        columns: 0,
        rows: 0,
        capacity,
        used,
        covered_ode,
        cost_equiv,
        capacity_value,
        ode_total: cols.ode_total,
        coverage,
        cells: cell_values,
        exchanged,
        returned,
    }
}

/// Names the policy constraints that can make the LP infeasible, with their values.
fn infeasibility_reason(spec: &SolveSpec<'_>) -> String {
    let c = spec.constraints;
    let mut parts = Vec::new();
    if let (true, Some(v)) = (spec.relaxation, c.min_coverage) {
        parts.push(format!("min_coverage {:.1}%", v * 100.0));
    }
    if let Some(v) = c.max_coverage {
        parts.push(format!("max_coverage {:.1}%", v * 100.0));
    }
    if let Some(v) = c.max_new_hourly {
        parts.push(format!("max_new_hourly ${v}/hour"));
    }
    if let Some(v) = c.max_upfront {
        parts.push(format!("max_upfront ${v}"));
    }
    if let Some(mu) = c.min_utilization {
        parts.push(format!(
            "min_utilization {:.1}% at P{:02}",
            mu.min * 100.0,
            (mu.level * 100.0).round()
        ));
    }
    if let (true, Some(tu)) = (spec.relaxation, c.min_total_utilization) {
        parts.push(format!(
            "min_total_utilization {:.1}% at P{:02} (credit ${:.2})",
            tu.min * 100.0,
            (tu.level * 100.0).round(),
            tu.credit
        ));
    }
    let allowed: Vec<String> = c
        .providers
        .iter()
        .map(|(p, pp)| {
            format!(
                "{p}: {} instruments, terms {:?}",
                pp.instruments.len(),
                pp.terms.iter().map(|t| t.years()).collect::<Vec<_>>()
            )
        })
        .collect();
    format!(
        "no plan satisfies all of: {} (allowed: {}; {} candidate offers)",
        if parts.is_empty() {
            "the constraints".to_string()
        } else {
            parts.join(", ")
        },
        if allowed.is_empty() {
            "nothing".to_string()
        } else {
            allowed.join("; ")
        },
        spec.model
            .pools
            .iter()
            .filter(|p| p.column().is_some())
            .count()
    )
}
