//! A decision as policy lets it through: each action the daemon would propose for it
//! ([`super::proposals`]) judged by the policies, in order, as the daemon judges a cycle's
//! actions ([`PolicySet::evaluate`]; each action let through counts in the recent spend the
//! next one is judged with). The backtest replays with it when it is given the daemon's
//! policies, so that what it measures is what the daemon would carry out.
//!
//! The replay has no people: an action that needs approval is taken as approved, and a
//! Datapilot recommendation (a block by the `mode` rule) as acted on. Only what a policy
//! blocks outright (utilization floor, caps, allow lists, blackouts, the kill switch) is taken
//! out of the decision. Exchanges are not judged here: no market the daemon runs executes the
//! planner's exchanges, so the daemon's planner makes none ([`super::Capabilities`]); a
//! replay's planner that makes them has them applied as decided.

use super::proposals::{propose_all_but_exchanges, Origin};
use super::{Decision, PlanError, Situation};
use crate::domain::{Hour, Money};
use crate::policy::{Mode, PolicySet, RecentSpend, Rule, Verdict};
use serde::Serialize;

/// An action policy took out of a decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Blocked {
    pub at: Hour,
    /// The action, as the audit log and the CLI describe it.
    pub what: String,
    /// The governing policy and the rule that blocked it, with the rule's detail.
    pub policy: String,
    pub rule: Rule,
    pub detail: String,
    /// Amortized USD per hour it would have committed (zero for a return or a sale).
    pub hourly_cost: Money,
}

/// `decision` less what `policies` block, and what they blocked. `recent` is what was
/// committed and given up in the windows the limits look at, before this decision.
pub fn judge(
    situation: &Situation<'_>,
    decision: Decision,
    policies: &PolicySet,
    mut recent: RecentSpend,
) -> Result<(Decision, Vec<Blocked>), PlanError> {
    let proposed = propose_all_but_exchanges(situation, &decision, &|_| true)?;
    let mut keep_returns = vec![false; decision.returns.len()];
    let mut keep_sales = vec![false; decision.sales.len()];
    let mut keep_purchases = vec![false; decision.purchases.len()];
    let mut blocked = Vec::new();
    for (action, origin) in proposed.actions.iter().zip(&proposed.origins) {
        let facts = action.facts();
        let verdict = policies.evaluate(&facts, &recent, situation.now, Mode::Autopilot);
        let rule = verdict.blocking_rule();
        let refused = match verdict.verdict {
            Verdict::Allow | Verdict::NeedsApproval { .. } => None,
            Verdict::Block => match rule {
                Some(r) if r.rule == Rule::Mode => None,
                Some(r) => Some((r.rule, r.detail.clone())),
                None => Some((Rule::Policy, "blocked".to_string())),
            },
        };
        if let Some((rule, detail)) = refused {
            blocked.push(Blocked {
                at: situation.now,
                what: action.describe(),
                policy: verdict.policy.clone(),
                rule,
                detail,
                hourly_cost: action.hourly_cost,
            });
            continue;
        }
        recent.add(&facts);
        match *origin {
            Origin::Return(i) => keep_returns[i] = true,
            Origin::Sale(i) => keep_sales[i] = true,
            Origin::Purchase(i) => keep_purchases[i] = true,
        }
    }
    let judged = Decision {
        purchases: kept(decision.purchases, &keep_purchases),
        returns: kept(decision.returns, &keep_returns),
        sales: kept(decision.sales, &keep_sales),
        exchanges: decision.exchanges,
        holds: decision.holds,
    };
    Ok((judged, blocked))
}

/// The items whose flag is set, in order.
fn kept<T>(items: Vec<T>, keep: &[bool]) -> Vec<T> {
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(x, &k)| k.then_some(x))
        .collect()
}
