//! From a [`Decision`] to the actions the daemon proposes, with their expected figures: the one
//! place where a decision changes form on its way to a proposal. The daemon proposes what this
//! returns; the backtest measures the same decisions.
//!
//! An action's expected figures are measured on the bill, not on the LP's allocation: the last
//! four known weeks billed with what is held, less what is given up, and the decision's
//! purchases that apply before it in the providers' order, without and with it. A purchase's
//! utilization is what it adds to the commitment used, per hour of its cost (what the policies'
//! `min_expected_utilization` judges); its savings, what it takes off the bill per hour, over its
//! term. Giving up saves what it takes off the bill per hour from when it takes effect (a return
//! at once, a sale when the listing sells) to the reservation's end, less, for a sale, the
//! upfront not yet amortized that the proceeds do not recover.

use super::recent::bill_recent;
use super::{Decision, GivenUp, PlanError, Situation};
pub use crate::domain::purchase::PlannedAction;
use crate::domain::purchase::{Operation, PurchaseSpec};
use crate::domain::rules::split_off;
use crate::domain::{Commitment, CommitmentAmount, CommitmentKind, Instrument, Money};
use serde::{Deserialize, Serialize};

/// The hours of bill an action's expected figures are measured on: four weeks, as the
/// look-back planner's steered floor.
pub const MEASURE_HOURS: usize = 28 * 24;

/// Portfolio figures a decision expects, per hour of the last known weeks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    /// Effective savings rate.
    pub esr: f64,
    pub coverage: f64,
    pub utilization: f64,
}

/// A decision as actions to propose, with what they are expected to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Proposed {
    /// What is given up first (returns, then sales), then the purchases, in the decision's
    /// order.
    pub actions: Vec<PlannedAction>,
    /// The sum of the actions' expected savings.
    pub expected_savings: Money,
    /// The portfolio after the decision, over the measured hours (None without usage).
    pub expected: Option<Expected>,
    /// What could not be proposed, and why.
    pub notes: Vec<String>,
    /// The portfolio after the decision: what is active now, less what is given up, plus the
    /// purchases (what [`super::evidence`] measures each purchase's marginal value against).
    pub portfolio: Vec<Commitment>,
    /// Which part of the decision each action carries out (one per action, in order): what
    /// [`super::judge`] takes out of the decision when policy blocks the action.
    pub origins: Vec<Origin>,
}

/// The part of a [`Decision`] an action carries out, by its index in the decision's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Return(usize),
    Sale(usize),
    Purchase(usize),
}

/// The purchase of `c` as the market buys it. A reservation's record has no operating system
/// or tenancy (the bill applies it whatever the OS); the market needs them, so they are those of
/// the group with the most usage of its instance type in its region.
pub fn purchase_spec(c: &Commitment, situation: &Situation<'_>) -> PurchaseSpec {
    let group = c.instance_type.as_ref().and_then(|t| {
        situation
            .known
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
        ..PurchaseSpec::of_held(c)
    }
}

/// `decision`, taken at `situation`, as actions with their expected figures. `can_give_up`
/// says which held commitments the market can give up (a commitment only the source lists
/// cannot be): the others are left out with a note. Exchanges are refused: no market executes
/// the planner's (Azure) exchanges, and a planner configured for the daemon's market does not
/// make them ([`super::Capabilities`]).
pub fn propose(
    situation: &Situation<'_>,
    decision: &Decision,
    can_give_up: &dyn Fn(&str) -> bool,
) -> Result<Proposed, PlanError> {
    if !decision.exchanges.is_empty() {
        return Err(PlanError::Invalid(format!(
            "the planner exchanged reservations ({} exchanges), which the daemon does not execute",
            decision.exchanges.len()
        )));
    }
    propose_all_but_exchanges(situation, decision, can_give_up)
}

/// [`propose`] without its refusal of exchanges: the decision's returns, sales and purchases
/// as actions; its exchanges are left out (the replay applies them as decided).
pub(super) fn propose_all_but_exchanges(
    situation: &Situation<'_>,
    decision: &Decision,
    can_give_up: &dyn Fn(&str) -> bool,
) -> Result<Proposed, PlanError> {
    let mut out = Proposed::default();
    // What is given up goes first, as in the replay; each is measured on the bill without the
    // instances it gives up. Then each purchase is measured against what applies before it in
    // the bill (reservations, then EC2 Instance Savings Plans, then the flexible plans): what
    // it adds there is its own use, and a savings plan is not credited with usage a new
    // reservation takes first. The savings add up to the decision's.
    let mut portfolio = situation.active();
    let mut last = measure(situation, &portfolio)?;
    let given = (decision.returns.iter().enumerate())
        .map(|(i, g)| (g, false, Origin::Return(i)))
        .chain((decision.sales.iter().enumerate()).map(|(i, g)| (g, true, Origin::Sale(i))));
    for (g, sale, origin) in given {
        if !can_give_up(&g.id) {
            out.notes.push(format!(
                "{} of {} not {}: the market does not hold it (only the source lists it)",
                g.count,
                g.id,
                if sale { "listed for sale" } else { "returned" }
            ));
            continue;
        }
        let (action, next) = give_up(situation, &mut portfolio, g, sale, &last)?;
        last = next;
        out.actions.push(action);
        out.origins.push(origin);
    }
    let mut order: Vec<usize> = (0..decision.purchases.len()).collect();
    order.sort_by_key(|&i| match decision.purchases[i].instrument {
        Instrument::Ec2InstanceSavingsPlan => 1,
        i if i.kind() == Some(CommitmentKind::Spend) => 2,
        _ => 0,
    });
    let mut measured = vec![None; decision.purchases.len()];
    for &i in &order {
        let c = &decision.purchases[i];
        portfolio.push(c.clone());
        let next = measure(situation, &portfolio)?;
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
    for (i, (c, m)) in decision.purchases.iter().zip(measured).enumerate() {
        out.origins.push(Origin::Purchase(i));
        let (utilization, saved) = m.unwrap_or((0.0, 0.0));
        let expected_savings =
            Money::from_f64(saved * c.term.hours() as f64).unwrap_or(Money::ZERO);
        out.actions.push(PlannedAction {
            operation: Operation::Purchase,
            summary: format!(
                "over the last {} known days it would have been {:.1}% used and saved {:.2} USD/h",
                all.hours / 24,
                utilization * 100.0,
                saved
            ),
            spec: purchase_spec(c, situation),
            hourly_cost: c.hourly_cost,
            upfront: c.upfront,
            expected_savings,
            expected_utilization: Some(utilization),
        });
    }
    out.expected_savings = out.actions.iter().map(|a| a.expected_savings).sum();
    out.expected = (all.ode > 0.0).then(|| Expected {
        esr: 1.0 - all.cost / all.ode,
        coverage: all.covered / all.ode,
        utilization: if all.commitment > 0.0 {
            all.used / all.commitment
        } else {
            0.0
        },
    });
    out.portfolio = portfolio;
    Ok(out)
}

/// Instances `g` of a held reservation given up (a Marketplace listing when `sale`, else a
/// return), taken out of `portfolio`: the action, and the bill without them.
fn give_up(
    situation: &Situation<'_>,
    portfolio: &mut Vec<Commitment>,
    g: &GivenUp,
    sale: bool,
    last: &Measured,
) -> Result<(PlannedAction, Measured), PlanError> {
    let at = situation.now;
    let i = portfolio
        .iter()
        .position(|c| c.id == g.id)
        .ok_or_else(|| PlanError::Invalid(format!("{} is not held", g.id)))?;
    let c = portfolio[i].clone();
    let market = situation.policy.ri_marketplace;
    // A sale takes effect when the listing sells; a return at once.
    let (effective, price) = if sale {
        let (sold, months) = market.listing(&c, at)?;
        (sold, Some(market.asking_price(&c, g.count, months)?))
    } else {
        (at, None)
    };
    let (gone, kept) = split_off(&c, g.count, effective)?;
    portfolio.remove(i);
    portfolio.extend(kept);
    let next = measure(situation, portfolio)?;
    let saved = last.cost - next.cost;
    let hours_after = c.end.since(effective).max(0);
    // Amortized, as the replay charges it: the cost no longer paid after it takes effect, less
    // (for a sale) the upfront not yet amortized that the proceeds do not recover.
    let mut value = saved * hours_after as f64;
    if let Some(price) = price {
        let unamortized = gone.upfront.to_f64() * hours_after as f64 / c.term.hours() as f64;
        value -= unamortized - market.proceeds(price).to_f64();
    }
    let spec = PurchaseSpec {
        amount: CommitmentAmount::Instances(g.count),
        ..purchase_spec(&c, situation)
    };
    let (operation, verb) = match price {
        Some(price) => (
            Operation::Sell {
                commitment_id: c.id.clone(),
                instances: g.count,
                hourly_cost_removed: gone.hourly_cost,
                price,
            },
            format!(
                "listed on the RI Marketplace (sold, as the backtest assumes, by {})",
                effective.to_datetime().to_rfc3339()
            ),
        ),
        None => (
            Operation::Return {
                commitment_id: c.id.clone(),
                hourly_cost_removed: gone.hourly_cost,
                instances: Some(g.count),
            },
            format!(
                "returned for a refund of {} USD",
                gone.hourly_cost.times(hours_after).unwrap_or(Money::ZERO)
            ),
        ),
    };
    let action = PlannedAction {
        operation,
        summary: format!(
            "{} of {} instances of {} {verb}: without them the last {} known days would have cost {:.2} USD/h less",
            g.count,
            c.amount.instances().unwrap_or(0),
            c.id,
            next.hours / 24,
            saved
        ),
        spec,
        // Giving up commits nothing new: policy limits on new spend see zero.
        hourly_cost: Money::ZERO,
        upfront: Money::ZERO,
        expected_savings: Money::from_f64(value).unwrap_or(Money::ZERO),
        expected_utilization: None,
    };
    Ok((action, next))
}

/// What `portfolio` (every commitment taken as active) costs per hour, on demand plus
/// commitment, over the last [`MEASURE_HOURS`] known hours, and the hours measured.
pub(super) fn cost_per_hour(
    situation: &Situation<'_>,
    portfolio: &[Commitment],
) -> Result<(f64, usize), PlanError> {
    measure(situation, portfolio).map(|m| (m.cost, m.hours))
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

fn measure(situation: &Situation<'_>, portfolio: &[Commitment]) -> Result<Measured, PlanError> {
    let mut m = Measured::default();
    bill_recent(situation, portfolio, MEASURE_HOURS, |bill, _| {
        m.hours += 1;
        m.ode += bill.ode;
        m.covered += bill.covered_ode;
        m.cost += bill.on_demand_cost + bill.commitment_cost;
        m.commitment += bill.commitment_cost;
        m.used += bill.used_commitment;
    })
    .map_err(|e| PlanError::Billing(format!("billing the last known weeks: {e}")))?;
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
