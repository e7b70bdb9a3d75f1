//! The daemon's decision engine: the core [`Planner`](crate::plan::Planner) that `commitd
//! backtest` replays, built from the same [`PlannerConfig`] (`[planner]` in commitd.toml) and
//! kept between cycles, so that what the daemon proposes, and Autopilot executes, is what the
//! backtest measured.
//!
//! Each cycle builds one [`Situation`] from its sources, as the replay builds one per decision:
//! the usage billed before `now - billing_latency_hours` (and before the bill's last row), the
//! rate card, the existing and held commitments, and the refunds and Marketplace listings the
//! market reports of what the daemon gave up. The planner decides; [`crate::plan::proposals`]
//! turns the decision into actions with their expected figures.
//!
//! The planner object lives as long as the service: its trigger (solve only when something
//! changed) carries from one cycle to the next as from one replay decision to the next. It is
//! built at the first cycle that decides, with the laddering cap of the usage known then (the
//! replay's cap is that of the usage known at its first decision), and rebuilt when what the
//! market can execute changes; after a restart (or on a new leader) the first cycle solves, as a
//! replay's first decision does.
//!
//! What the market cannot execute is off in the configuration the planner is built from
//! ([`PlannerConfig::within`]): Azure exchanges always (no market swaps Azure reservations),
//! returns and Marketplace sales where the market does not make them
//! ([`GivesUp`](super::plan::GivesUp)). Purchases sized on giving up what is then not given up
//! would under-buy; the replay that checks the daemon is given the same configuration.

use super::plan::{plan_id, CyclePlan, GivesUp, PlanError};
use crate::billing::BillableGroup;
use crate::domain::rules::Marketplace;
use crate::domain::{Commitment, Hour, HourRange, Money, RateCard, UsageModel};
use crate::markets::Listed;
use crate::optimize::Constraints;
use crate::plan::{
    evidence, proposals, Capabilities, Listing, Planner, PlannerConfig, Policy, Refund, Situation,
    MIN_KNOWN_HOURS,
};
use chrono::{DateTime, Utc};

/// The planner the service keeps between cycles.
#[derive(Default)]
pub struct Engine {
    kept: std::sync::Mutex<Option<Kept>>,
}

struct Kept {
    planner: Box<dyn Planner + Send>,
    /// What the planner was built for: the market's capabilities, and its laddering step.
    can: Capabilities,
    cap: Money,
}

/// What the market that executes the daemon's decisions can do with held reservations.
pub fn capabilities(gives_up: GivesUp) -> Capabilities {
    Capabilities {
        azure_exchanges: false,
        azure_returns: gives_up.returns,
        ri_sales: gives_up.sales,
    }
}

/// What one cycle decides from.
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
}

/// The usage known at `m.at`: billed before `at - latency` and before the bill's last row.
fn known_at(m: &Moment<'_>) -> (UsageModel, Hour) {
    let mut known_end = m.at.plus(-i64::from(m.latency_hours));
    if let Some(last) = m.usage.last_observed {
        known_end = known_end.min(last.plus(1));
    }
    let known = m.usage.slice(HourRange::new(
        m.usage.range.start,
        known_end.max(m.usage.range.start),
    ));
    (known, known_end)
}

/// Listings still open keep their instances from being listed again. AWS does not say when
/// they will sell, so they count as listed while the market says they are active or pending.
fn listings_at(listed: &[Listed], at: Hour) -> Vec<Listing> {
    listed
        .iter()
        .filter(|l| match l.sells_at {
            Some(sells) => sells > at,
            None => matches!(l.state.as_str(), "active" | "pending"),
        })
        .map(|l| Listing {
            id: l
                .listed_id
                .clone()
                .unwrap_or_else(|| l.commitment_id.clone()),
            until: l.sells_at.unwrap_or(Hour(i64::MAX / 2)),
        })
        .collect()
}

impl Engine {
    /// The planner's decision at `m.at`, as the daemon's cycle plan.
    pub fn cycle_plan(
        &self,
        config: &PlannerConfig,
        m: &Moment<'_>,
        now: DateTime<Utc>,
        digest: String,
    ) -> Result<CyclePlan, PlanError> {
        let failed = |e: String| PlanError::Failed(format!("look-back plan at {}: {e}", m.at));
        let (known, known_end) = known_at(m);
        let groups: Vec<BillableGroup> = known
            .groups
            .iter()
            .map(|g| BillableGroup::from_rate_card(&g.group, m.rates, g.observed_unit_price()))
            .collect::<Result<_, _>>()
            .map_err(|e| failed(e.to_string()))?;
        let can = capabilities(m.gives_up);
        // A poisoned lock only means an earlier cycle panicked while deciding: the planner is
        // built again, as after a restart.
        let mut kept = self.kept.lock().unwrap_or_else(|e| {
            let mut guard = e.into_inner();
            *guard = None;
            guard
        });
        if kept.as_ref().is_none_or(|k| k.can != can) {
            let config = config.within(can);
            let cap = config
                .cap_within(&known, m.bounds)
                .map_err(|e| failed(e.to_string()))?;
            // Watched for anomalies whether or not the hold is on: the daemon alerts on them.
            let mut planner = config.build_watching(cap, m.bounds);
            planner.set_stopwatch(crate::telemetry::since_start);
            *kept = Some(Kept { planner, can, cap });
        }
        let Some(kept) = kept.as_mut() else {
            return Err(failed("no planner".into()));
        };
        let refunds: Vec<Refund> = m
            .refunds
            .iter()
            .map(|&(at, amount)| Refund { at, amount })
            .collect();
        let listings = listings_at(m.listings, m.at);
        let policy = Policy {
            terms: m.bounds.terms(),
            max_new_hourly_cost_per_decision: Some(kept.cap),
            ri_marketplace: Marketplace::default(),
            ..Policy::default()
        };
        let situation = Situation {
            now: m.at,
            known: &known,
            rates: m.rates,
            groups: &groups,
            portfolio: m.existing,
            policy: &policy,
            refunds: &refunds,
            listings: &listings,
        };
        let decision = kept
            .planner
            .decide(&situation)
            .map_err(|e| failed(e.to_string()))?;
        let unchanged = kept.planner.unchanged();
        let mut notes = vec![format!(
            "{} planner: {} known hours of {} groups (billed before {}), laddering cap {} USD/h",
            config.kind.name(),
            known.hours(),
            known.groups.len(),
            known_end.to_datetime().to_rfc3339(),
            kept.cap
        )];
        notes.extend(unchanged.clone());
        if known.hours() < MIN_KNOWN_HOURS {
            notes.push(format!(
                "nothing planned: the planner needs {MIN_KNOWN_HOURS} hours of billed usage, the source has {}",
                known.hours()
            ));
        }
        let held = |id: &str| m.held.iter().any(|c| c.id == id);
        let proposed =
            proposals::propose(&situation, &decision, &held).map_err(|e| failed(e.to_string()))?;
        // What the people approving see beside the figures (the console's proposal and
        // commitments pages read them from the audit log). Neither decides anything: when one
        // cannot be computed the plan says so and goes on.
        let evidence = match evidence::of_actions(&situation, &decision, &proposed) {
            Ok(e) => e,
            Err(e) => {
                notes.push(format!("no usage chart or marginal value recorded: {e}"));
                Vec::new()
            }
        };
        let commitment_use = match evidence::commitment_use(&situation) {
            Ok(u) => u,
            Err(e) => {
                notes.push(format!("no commitment utilization recorded: {e}"));
                Vec::new()
            }
        };
        notes.extend(proposed.notes);
        // The anomaly hold: what it held back, and what it kept although an anomaly is open on
        // part of what it covers (in the plan's notes and every proposal's rationale).
        let holds: Vec<String> = decision.holds.iter().map(|h| h.note()).collect();
        notes.extend(holds.iter().cloned());
        Ok(CyclePlan {
            holds,
            anomalies: kept.planner.anomalies().cloned(),
            plan_id: plan_id(now, &digest),
            inputs_digest: digest,
            solver_status: kept
                .planner
                .solver_status()
                .unwrap_or_else(|| "not solved".to_string()),
            objective: None,
            expected_savings: Some(proposed.expected_savings),
            expected: proposed.expected,
            actions: proposed.actions,
            notes,
            unchanged,
            evidence,
            commitment_use,
        })
    }
}
