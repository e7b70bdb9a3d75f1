//! The daemon's default decision maker (`planner = "lookback"`): the backtest's look-back
//! planner ([`LookbackPlanner`]) run once at the cycle's time on what the source knows, so that
//! what the daemon proposes, and Autopilot executes, is what `commitd backtest` measured.
//!
//! The cycle builds the same [`DecisionContext`] the replay builds at a decision: the usage
//! billed before `now - billing_latency_hours` (and before the bill's last row), the rate card,
//! the existing and held commitments, the laddering cap (35% of the history's
//! on-demand-equivalent spend per hour) and the policies' bounds. Two differences from the
//! replay, both because of what the daemon can execute and how it proposes:
//! * idle reservations are given up only as the market executes it
//!   ([`GivesUp`]): Azure reservations returned in part (the simulated market), Standard RIs
//!   listed on the Marketplace (the simulated market and AWS); Azure exchanges never, since no
//!   market swaps Azure reservations. Purchases sized on giving up what is then not given up
//!   would under-buy, so the planner is told exactly what the market does
//!   (`--lookback-exchanges false` replays the simulated market's daemon);
//! * nothing else: the planner's trigger ([`LookbackMemory`]) is carried from one cycle to the
//!   next, so a cycle solves exactly when a replay's decision would (the usage left uncovered
//!   rose, a commitment expired or a purchase was not executed, the cap held the last solve
//!   back, idle reservations, or 28 days). A cycle that does not solve proposes nothing and
//!   leaves the open proposals of earlier cycles standing ([`CyclePlan::unchanged`]); one that
//!   solves supersedes them. The memory is the service's, not the store's: after a restart (or
//!   on a new leader) the first cycle solves, as a replay's first decision does.
//!
//! Open Marketplace listings (the market's [`Listed`]) keep their instances from being listed
//! again, and the market's past refunds count against Azure's rolling refund cap (which the
//! market judges again when the return executes).
//!
//! An action's expected figures are measured on the bill, not on the LP's allocation: the last
//! four known weeks billed with what is held, less what is given up, and the plan's purchases
//! that apply before it in the providers' order, without and with it. A purchase's utilization
//! is what it adds to the commitment used, per hour of its cost (what the policies'
//! `min_expected_utilization` judges); its savings, what it takes off the bill per hour, over
//! its term. Giving up saves what it takes off the bill per hour from when it takes effect (a
//! return at once, a sale when the listing sells) to the reservation's end, less, for a sale,
//! the upfront not yet amortized that the proceeds do not recover.

use super::plan::{plan_id, CyclePlan, Expected, GivesUp, PlanError};
use crate::backtest::{
    split_off, DecisionContext, GivenUp, Marketplace, Planner as _, Policy, ReturnRecord,
    SaleRecord,
};
use crate::billing::BillableGroup;
use crate::domain::{
    Commitment, CommitmentAmount, CommitmentKind, Hour, HourRange, Instrument, Money, RateCard,
    ScenarioWindow, Term, UsageModel,
};
use crate::markets::{Listed, Operation, PurchaseSpec};
use crate::optimize::Constraints;
use crate::plan::planners::{
    bill_recent, laddering_cap, LookbackConfig, LookbackMemory, LookbackPlanner, PlannerConfig,
    MIN_KNOWN_HOURS,
};
use crate::proposals::PlannedAction;
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
    /// What the market executes of giving up reservations.
    pub gives_up: GivesUp,
    /// The market's Marketplace listings.
    pub listings: &'a [Listed],
    /// What the market holds (part of `existing`): only those can be given up there.
    pub held: &'a [Commitment],
    /// The market's reservation refunds, as (hour, amount).
    pub refunds: &'a [(Hour, Money)],
    /// What the planner's earlier cycles left to this one; updated by the cycle.
    pub memory: &'a std::sync::Mutex<LookbackMemory>,
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
        returns: m.gives_up.returns,
        sales: m.gives_up.sales,
        ..LookbackConfig::default()
    };
    let (trigger_share, resolve_days) = (config.trigger_share, config.resolve_days);
    // A poisoned lock only means an earlier cycle panicked while planning: its memory is
    // still a whole value (it is replaced, never edited in place).
    let remembered = m.memory.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut planner = LookbackPlanner::new(config, ladder, cap)
        .bounded(m.bounds.clone())
        .remembering(remembered);
    // Listings still open keep their instances from being listed again. AWS does not say when
    // they will sell, so they count as listed while the market says they are active or pending.
    let sold: Vec<SaleRecord> = m
        .listings
        .iter()
        .filter(|l| match l.sells_at {
            Some(sells) => sells > m.at,
            None => matches!(l.state.as_str(), "active" | "pending"),
        })
        .map(|l| SaleRecord {
            listed: l.listed_at,
            sold: l.sells_at.unwrap_or(Hour(i64::MAX / 2)),
            source: GivenUp {
                id: l.commitment_id.clone(),
                count: l.instances,
            },
            listed_id: l
                .listed_id
                .clone()
                .unwrap_or_else(|| l.commitment_id.clone()),
            proceeds: Money::ZERO,
            write_off: Money::ZERO,
            hourly: Money::ZERO,
        })
        .collect();
    // Past refunds, for Azure's rolling cap (the planner reads only their hour and amount).
    let returned: Vec<ReturnRecord> = m
        .refunds
        .iter()
        .map(|&(at, refund)| ReturnRecord {
            at,
            source: GivenUp {
                id: String::new(),
                count: 0,
            },
            refund,
            hourly: Money::ZERO,
        })
        .collect();
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
        returned: &returned,
        sold: &sold,
    };
    let decision = planner.decide(&ctx).map_err(failed)?;
    let unchanged = (planner.stats.skipped > 0).then(|| {
        format!(
            "no new decision: nothing changed enough since the last solve at {} (no commitment \
             expired or went missing, the cap did not hold it back, no reservation idles, the \
             usage left uncovered rose by less than {}% of the recent on-demand spend, and it is \
             less than {resolve_days} days old); the open proposals of earlier cycles stand",
            planner
                .memory()
                .last_solve
                .map_or_else(String::new, |(at, _)| at.to_datetime().to_rfc3339()),
            trigger_share * 100.0
        )
    });
    *m.memory.lock().unwrap_or_else(|e| e.into_inner()) = planner.memory().clone();
    let mut notes = vec![format!(
        "look-back planner: {} known hours of {} groups (billed before {}), laddering cap {} USD/h",
        known.hours(),
        known.groups.len(),
        known_end.to_datetime().to_rfc3339(),
        planner.cap()
    )];
    notes.extend(unchanged.clone());
    if known.hours() < MIN_KNOWN_HOURS {
        notes.push(format!(
            "nothing planned: the look-back planner needs {MIN_KNOWN_HOURS} hours of billed usage, the source has {}",
            known.hours()
        ));
    }
    // Azure exchanges are not executed (no market swaps Azure reservations): the planner was
    // built without them, and anything else would be a change there that the daemon misses.
    if !decision.exchanges.is_empty() {
        return Err(failed(format!(
            "the planner exchanged reservations ({} exchanges), which the daemon does not execute",
            decision.exchanges.len()
        )));
    }
    // What is given up goes first, as in the replay; each is measured on the bill without the
    // instances it gives up. Then each purchase is measured against what applies before it in
    // the bill (reservations, then EC2 Instance Savings Plans, then the flexible plans): what
    // it adds there is its own use, and a savings plan is not credited with usage a new
    // reservation takes first. The savings add up to the plan's.
    let mut portfolio = ctx.active();
    let mut last = measure(&ctx, &portfolio)?;
    let mut actions = Vec::new();
    let given = decision
        .returns
        .iter()
        .map(|g| (g, false))
        .chain(decision.sales.iter().map(|g| (g, true)));
    for (g, sale) in given {
        if !m.held.iter().any(|c| c.id == g.id) {
            notes.push(format!(
                "{} of {} not {}: the market does not hold it (only the source lists it)",
                g.count,
                g.id,
                if sale { "listed for sale" } else { "returned" }
            ));
            continue;
        }
        let i = portfolio
            .iter()
            .position(|c| c.id == g.id)
            .ok_or_else(|| failed(format!("{} is not held", g.id)))?;
        let c = portfolio[i].clone();
        // A sale takes effect when the listing sells; a return at once.
        let (effective, price) = if sale {
            let market = policy.ri_marketplace;
            let (sold, months) = market.listing(&c, m.at).map_err(&failed)?;
            (
                sold,
                Some(market.asking_price(&c, g.count, months).map_err(&failed)?),
            )
        } else {
            (m.at, None)
        };
        let (gone, kept) = split_off(&c, g.count, effective).map_err(&failed)?;
        portfolio.remove(i);
        portfolio.extend(kept);
        let next = measure(&ctx, &portfolio)?;
        let saved = last.cost - next.cost;
        last = next;
        let hours_after = c.end.since(effective).max(0);
        // Amortized, as the replay charges it: the cost no longer paid after it takes effect,
        // less (for a sale) the upfront not yet amortized that the proceeds do not recover.
        let mut value = saved * hours_after as f64;
        if let Some(price) = price {
            let unamortized = gone.upfront.to_f64() * hours_after as f64 / c.term.hours() as f64;
            value -= unamortized - policy.ri_marketplace.proceeds(price).to_f64();
        }
        let spec = PurchaseSpec {
            amount: CommitmentAmount::Instances(g.count),
            ..spec_for(&c, &known)
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
        actions.push(PlannedAction {
            operation,
            summary: format!(
                "{} of {} instances of {} {verb}: without them the last {} known days would have cost {:.2} USD/h less",
                g.count,
                c.amount.instances().unwrap_or(0),
                c.id,
                last.hours / 24,
                saved
            ),
            spec,
            // Giving up commits nothing new: policy limits on new spend see zero.
            hourly_cost: Money::ZERO,
            upfront: Money::ZERO,
            expected_savings: Money::from_f64(value).unwrap_or(Money::ZERO),
            expected_utilization: None,
        });
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
        expected: (all.ode > 0.0).then(|| Expected {
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
        unchanged,
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
