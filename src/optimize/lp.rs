//! The linear program: one column per (pool, group, point) of coverage and one per candidate
//! purchase, solved with HiGHS through good_lp.
//!
//! ```text
//! minimise   sum_b w_b sum_g od_g (d_gb - sum_p y_pgb)          on-demand cost of what is uncovered
//!          + sum_j unit_cost_j * hours_j * x_j + existing cost    commitments, used or not
//! subject to sum_p y_pgb <= d_gb                                 (g, b): cover at most the demand
//!            sum_g a_pg y_pgb <= capacity_p (x_j or existing)    (p, b): each commitment's capacity
//!            policy rows: new hourly cost, upfront, coverage band, min utilization at a low quantile
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
    /// `coverage[point * groups + g]`: instance-hours of group `g` covered at that point.
    pub coverage: Vec<f64>,
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
    /// Whether to impose `min_coverage` (a target for the relaxation; rounding down may leave
    /// coverage slightly below it, which is reported rather than treated as infeasible).
    pub min_coverage: bool,
}

struct YCol {
    pool: u32,
    member: u32,
    point: u32,
    var: Variable,
}

pub(crate) fn solve(spec: &SolveSpec<'_>) -> Result<LpResult, OptimizeError> {
    let SolveSpec {
        model,
        points,
        constraints,
        ..
    } = *spec;
    let pools = &model.pools;
    let groups = &model.groups;
    let mut vars = ProblemVariables::new();
    let mut objective = Expression::with_capacity(1024);

    // Candidate columns.
    let mut x: Vec<Option<Variable>> = Vec::with_capacity(pools.len());
    for (pi, p) in pools.iter().enumerate() {
        match p.new_column() {
            Some(c) => {
                let def = match spec.capacity.get(pi).copied().unwrap_or(Capacity::Free) {
                    Capacity::Free => variable().min(0.0),
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

    // Coverage columns, ordered by (point, pool, member).
    let mut ys: Vec<YCol> = Vec::new();
    let mut constant = model.existing_cost;
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
                let var = vars.add(variable().min(0.0).max(d));
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
    constant += ode_total;
    let columns = vars.len();

    let mut problem = vars
        .minimise(objective)
        .using(highs)
        .set_threads(spec.options.threads.max(1));

    let mut rows = 0usize;

    // Capacity rows: runs of equal (point, pool).
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
        let row = match (p.fixed_capacity, x[pi as usize]) {
            (Some(c), _) => expr.leq(c),
            (None, Some(xv)) => {
                expr.add_mul(-1.0, xv);
                expr.leq(0.0)
            }
            (None, None) => expr.leq(0.0),
        };
        capacity_rows.push((pi, problem.add_constraint(row)));
        rows += 1;
        i = j;
    }

    // Demand rows where more than one pool can cover a group at a point (otherwise the column's
    // upper bound already says it).
    let mut by_demand: Vec<(u32, u32, Variable)> = ys
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
            problem.add_constraint(expr.leq(points.demand(b as usize, g as usize)));
            rows += 1;
        }
        i = j;
    }
    drop(by_demand);

    // Policy rows on the candidates.
    let free: Vec<(usize, Variable)> = x
        .iter()
        .enumerate()
        .filter_map(|(pi, v)| v.map(|v| (pi, v)))
        .filter(|(pi, _)| spec.capacity.get(*pi) != Some(&Capacity::Fixed(0.0)))
        .collect();
    if !free.is_empty() {
        if let Some(max) = constraints.max_new_hourly {
            let mut expr = Expression::with_capacity(free.len());
            for (pi, v) in &free {
                if let Some(c) = pools[*pi].new_column() {
                    expr.add_mul(c.unit_cost, *v);
                }
            }
            problem.add_constraint(expr.leq(max.to_f64()));
            rows += 1;
        }
        if let Some(max) = constraints.max_upfront {
            let mut expr = Expression::with_capacity(free.len());
            for (pi, v) in &free {
                if let Some(c) = pools[*pi].new_column() {
                    if c.unit_upfront > 0.0 {
                        expr.add_mul(c.unit_upfront, *v);
                    }
                }
            }
            problem.add_constraint(expr.leq(max.to_f64()));
            rows += 1;
        }
        if let Some(mu) = constraints.min_utilization.filter(|m| m.min > 0.0) {
            if let Some(low) = spec.demand.scenario_at_level(mu.level) {
                let mut by_pool: Vec<Vec<usize>> = vec![Vec::new(); pools.len()];
                for (k, y) in ys.iter().enumerate() {
                    if points.scenario[y.point as usize] == low {
                        by_pool[y.pool as usize].push(k);
                    }
                }
                for (pi, v) in &free {
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
                    expr.add_mul(-mu.min * active_weight, *v);
                    problem.add_constraint(expr.geq(0.0));
                    rows += 1;
                }
            }
        }
    }
    let coverage_expr = || {
        let mut expr = Expression::with_capacity(ys.len());
        for y in &ys {
            let m = &pools[y.pool as usize].members[y.member as usize];
            expr.add_mul(
                points.weight[y.point as usize] * groups[m.group].on_demand,
                y.var,
            );
        }
        expr
    };
    if let Some(cap) = constraints.max_coverage {
        problem.add_constraint(coverage_expr().leq(cap * ode_total));
        rows += 1;
    }
    if let (true, Some(floor)) = (spec.min_coverage, constraints.min_coverage) {
        problem.add_constraint(coverage_expr().geq(floor * ode_total));
        rows += 1;
    }

    let mut solution = problem.solve().map_err(|e| match e {
        ResolutionError::Infeasible => OptimizeError::Infeasible(infeasibility_reason(spec)),
        other => OptimizeError::Solver(other.to_string()),
    })?;
    let status = format!("{:?}", solution.status());

    let mut capacity: Vec<f64> = pools
        .iter()
        .map(|p| p.fixed_capacity.unwrap_or(0.0))
        .collect();
    let mut lp_objective = 0.0;
    for (pi, v) in x.iter().enumerate() {
        if let Some(v) = v {
            let val = solution.value(*v).max(0.0);
            capacity[pi] = val;
            if let Some(c) = pools[pi].new_column() {
                lp_objective +=
                    c.unit_cost * (pools[pi].active.1 - pools[pi].active.0) as f64 * val;
            }
        }
    }
    let mut used = vec![vec![0.0; points.len()]; pools.len()];
    let mut covered_ode = vec![0.0; pools.len()];
    let mut cost_equiv = vec![0.0; pools.len()];
    let mut coverage = vec![0.0; points.len() * groups.len()];
    for y in &ys {
        let val = solution.value(y.var).max(0.0);
        if val <= 0.0 {
            continue;
        }
        let pi = y.pool as usize;
        let b = y.point as usize;
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
        for (pi, r) in &capacity_rows {
            // Minimisation: raising a <= row's bound lowers the cost, so its dual is <= 0.
            capacity_value[*pi as usize] += -duals.dual(r.clone());
        }
    }
    Ok(LpResult {
        status,
        objective: constant + lp_objective,
        columns,
        rows,
        capacity,
        used,
        covered_ode,
        cost_equiv,
        capacity_value,
        ode_total,
        coverage,
    })
}

/// Names the policy constraints that can make the LP infeasible, with their values.
fn infeasibility_reason(spec: &SolveSpec<'_>) -> String {
    let c = spec.constraints;
    let mut parts = Vec::new();
    if let (true, Some(v)) = (spec.min_coverage, c.min_coverage) {
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
            .filter(|p| p.new_column().is_some())
            .count()
    )
}
