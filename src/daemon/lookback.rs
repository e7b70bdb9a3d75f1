//! The daemon's default decision maker (`planner = "lookback"`): the backtest's look-back
//! planner ([`LookbackPlanner`]) run once at the cycle's time on what the source knows, so that
//! what the daemon proposes, and Autopilot executes, is what `commitd backtest` measured.
//!
//! The cycle builds the same [`DecisionContext`] the replay builds at a decision: the usage
//! billed before `now - billing_latency_hours` (and before the bill's last row), the rate card,
//! the existing and held commitments, the laddering cap (35% of the history's
//! on-demand-equivalent spend per hour) and the policies' bounds. Two differences from the
//! replay, both because of what the daemon can execute and how it proposes:
//! * idle reservations are not given up: no market executes Azure exchanges or returns, and
//!   listing RIs on the Marketplace is not in the market trait; purchases sized on the
//!   assumption that they are given up would under-buy (`--lookback-exchanges false
//!   --lookback-returns false --lookback-sales false` replays this);
//! * every cycle solves: a cycle's plan supersedes the previous one's open proposals, so a
//!   cycle that skipped (the replay's trigger) would withdraw what people have not approved yet
//!   (`--lookback-resolve-days 1` replays this).
//!
//! A purchase's expected figures are measured on the bill, not on the LP's allocation: the last
//! four known weeks billed with what is held and the plan's purchases that apply before it in
//! the providers' order, without and with it. Its utilization is what it adds to the commitment
//! used, per hour of its cost (what the policies' `min_expected_utilization` judges); its
//! savings, what it takes off the bill per hour, over its term.

use super::plan::{plan_id, CyclePlan, Expectation, PlanError};
use crate::backtest::planner::{
    bill_recent, laddering_cap, LookbackConfig, LookbackPlanner, PlannerConfig, MIN_KNOWN_HOURS,
};
use crate::backtest::{DecisionContext, Marketplace, Planner as _, Policy};
use crate::billing::BillableGroup;
use crate::domain::{
    Commitment, CommitmentAmount, CommitmentKind, Hour, HourRange, Instrument, Money, RateCard,
    ScenarioWindow, Term, UsageModel,
};
use crate::optimize::Constraints;
use crate::proposals::PlannedAction;
use crate::providers::{Operation, PurchaseSpec};
use chrono::{DateTime, Utc};

/// The hours of bill a purchase's expected figures are measured on: four weeks, as the
/// planner's steered floor.
const MEASURE_HOURS: usize = 28 * 24;

/// What one cycle plans from.
pub struct Moment<'a> {
    /// The usage the source holds (its newest hours may not be billed in full yet).
    pub usage: &'a UsageModel,
    /// The decision time.
    pub at: Hour,
    /// Hours before `at` that are not known yet (`billing_latency_hours`).
    pub latency_hours: u32,
    pub rates: &'a RateCard,
    /// Existing commitments: the source's and the market's inventory.
    pub existing: &'a [Commitment],
    /// What the policies allow ([`crate::policy::PolicySet::planning_bounds`]).
    pub bounds: &'a Constraints,
}

/// The look-back planner's decision at `m.at`, as the daemon's cycle plan.
pub fn cycle_plan(
    m: &Moment<'_>,
    now: DateTime<Utc>,
    digest: String,
) -> Result<CyclePlan, PlanError> {
    let failed = |e: String| PlanError::Failed(format!("look-back plan at {}: {e}", m.at));
    let mut known_end = m.at.plus(-i64::from(m.latency_hours));
    if let Some(last) = m.usage.last_observed {
        known_end = known_end.min(last.plus(1));
    }
    let known = m.usage.slice(HourRange::new(
        m.usage.range.start,
        known_end.max(m.usage.range.start),
    ));
    let groups: Vec<BillableGroup> = known
        .groups
        .iter()
        .map(|g| BillableGroup::from_rate_card(&g.group, m.rates, g.observed_unit_price()))
        .collect::<Result<_, _>>()
        .map_err(|e| failed(e.to_string()))?;
    let ladder = PlannerConfig::default();
    let cap = laddering_cap(&known, ladder.cap_share).map_err(|e| failed(e.to_string()))?;
    let config = LookbackConfig {
        exchanges: false,
        returns: false,
        sales: false,
        ..LookbackConfig::default()
    };
    let mut planner = LookbackPlanner::new(config, ladder, cap).bounded(m.bounds.clone());
    let policy = Policy {
        terms: m.bounds.terms(),
        max_new_hourly_cost_per_decision: Some(planner.cap()),
        ri_marketplace: Marketplace::default(),
        ..Policy::default()
    };
    let ctx = DecisionContext {
        now: m.at,
        window: ScenarioWindow {
            history_start: m.usage.range.start,
            decision_time: m.at,
            evaluation_end: m.at.plus(Term::ONE_YEAR.hours()),
        },
        known: &known,
        rates: m.rates,
        groups: &groups,
        portfolio: m.existing,
        policy: &policy,
        returned: &[],
        sold: &[],
    };
    let decision = planner.decide(&ctx).map_err(failed)?;
    let mut notes = vec![format!(
        "look-back planner: {} known hours of {} groups (billed before {}), laddering cap {} USD/h",
        known.hours(),
        known.groups.len(),
        known_end.to_datetime().to_rfc3339(),
        planner.cap()
    )];
    if known.hours() < MIN_KNOWN_HOURS {
        notes.push(format!(
            "nothing planned: the look-back planner needs {MIN_KNOWN_HOURS} hours of billed usage, the source has {}",
            known.hours()
        ));
    }
    // The planner was built with nothing to give up (see the module's comment); anything else
    // would be a change there that the daemon does not execute.
    let unexecuted = decision.exchanges.len() + decision.returns.len() + decision.sales.len();
    if unexecuted > 0 {
        return Err(failed(format!(
            "the planner gave up reservations ({unexecuted} exchanges, returns or sales), which the daemon does not execute"
        )));
    }
    // Each purchase is measured against what applies before it in the bill (reservations, then
    // EC2 Instance Savings Plans, then the flexible plans): what it adds there is its own use,
    // and a savings plan is not credited with usage a new reservation takes first. The
    // savings add up to the plan's.
    let mut order: Vec<usize> = (0..decision.purchases.len()).collect();
    order.sort_by_key(|&i| match decision.purchases[i].instrument {
        Instrument::Ec2InstanceSavingsPlan => 1,
        i if i.kind() == Some(CommitmentKind::Spend) => 2,
        _ => 0,
    });
    let mut portfolio = ctx.active();
    let mut last = measure(&ctx, &portfolio)?;
    let mut measured = vec![None; decision.purchases.len()];
    for &i in &order {
        let c = &decision.purchases[i];
        portfolio.push(c.clone());
        let next = measure(&ctx, &portfolio)?;
        let cost = c.hourly_cost.to_f64();
        let utilization = if cost > 0.0 {
            ((next.used - last.used) / cost).clamp(0.0, 1.0)
        } else {
            0.0
        };
        measured[i] = Some((utilization, last.cost - next.cost));
        last = next;
    }
    let all = last;
    let mut actions = Vec::with_capacity(decision.purchases.len());
    for (c, m) in decision.purchases.iter().zip(measured) {
        let (utilization, saved) = m.unwrap_or((0.0, 0.0));
        let expected_savings =
            Money::from_f64(saved * c.term.hours() as f64).unwrap_or(Money::ZERO);
        actions.push(PlannedAction {
            operation: Operation::Purchase,
            summary: format!(
                "over the last {} known days it would have been {:.1}% used and saved {:.2} USD/h",
                all.hours / 24,
                utilization * 100.0,
                saved
            ),
            spec: spec_for(c, &known),
            hourly_cost: c.hourly_cost,
            upfront: c.upfront,
            expected_savings,
            expected_utilization: Some(utilization),
        });
    }
    let expected_savings: Money = actions.iter().map(|a| a.expected_savings).sum();
    Ok(CyclePlan {
        plan_id: plan_id(now, &digest),
        inputs_digest: digest,
        solver_status: planner.solver_status().unwrap_or("not solved").to_string(),
        objective: None,
        expected_savings: Some(expected_savings),
        expected: (all.ode > 0.0).then(|| Expectation {
            esr: 1.0 - all.cost / all.ode,
            coverage: all.covered / all.ode,
            utilization: if all.commitment > 0.0 {
                all.used / all.commitment
            } else {
                0.0
            },
        }),
        actions,
        notes,
    })
}

/// A portfolio's bill over the last [`MEASURE_HOURS`] known hours, per hour.
#[derive(Default)]
struct Measured {
    hours: usize,
    ode: f64,
    covered: f64,
    /// On demand plus commitment.
    cost: f64,
    commitment: f64,
    used: f64,
}

fn measure(ctx: &DecisionContext<'_>, portfolio: &[Commitment]) -> Result<Measured, PlanError> {
    let mut m = Measured::default();
    bill_recent(ctx, portfolio, MEASURE_HOURS, |bill, _| {
        m.hours += 1;
        m.ode += bill.ode;
        m.covered += bill.covered_ode;
        m.cost += bill.on_demand_cost + bill.commitment_cost;
        m.commitment += bill.commitment_cost;
        m.used += bill.used_commitment;
    })
    .map_err(|e| PlanError::Failed(format!("billing the last known weeks: {e}")))?;
    let h = m.hours.max(1) as f64;
    for v in [
        &mut m.ode,
        &mut m.covered,
        &mut m.cost,
        &mut m.commitment,
        &mut m.used,
    ] {
        *v /= h;
    }
    Ok(m)
}

/// The purchase as the market buys it. A reservation's record has no operating system or
/// tenancy (the bill applies it whatever the OS); the market needs them, so they are those of
/// the group with the most usage of its instance type in its region.
fn spec_for(c: &Commitment, known: &UsageModel) -> PurchaseSpec {
    let group = c.instance_type.as_ref().and_then(|t| {
        known
            .groups
            .iter()
            .filter(|g| {
                g.group.provider == c.provider
                    && &g.group.instance_type == t
                    && c.region.as_ref() == Some(&g.group.region)
            })
            .max_by(|a, b| a.total_ode.cmp(&b.total_ode))
    });
    PurchaseSpec {
        // A reservation is bought by instance type; its family is the bill's name for it.
        family: match c.amount {
            CommitmentAmount::Instances(_) => None,
            CommitmentAmount::HourlySpend(_) => c.family.clone(),
        },
        os: group.map(|g| g.group.os.clone()),
        tenancy: group.map(|g| g.group.tenancy.clone()),
        ..super::optimizer::spec_of(c)
    }
}
