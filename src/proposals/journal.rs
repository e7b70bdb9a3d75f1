//! The audit events of the proposal lifecycle, built in one place so that the daemon, the HTTP
//! API and the CLI record the same facts the same way.

use crate::audit::{ActionProposed, Amount, Approved, NewEvent, ProposalExpired, Rejected};
use crate::domain::Money;
use crate::proposals::{ActionDigest, PlannedAction, Proposal};
use chrono::{DateTime, Utc};
use serde_json::json;

/// The total a commitment commits to over its term (amortized hourly cost x term hours): the
/// headline amount of execution events, the number finance sums.
pub fn term_total(action: &PlannedAction) -> Money {
    action
        .hourly_cost
        .times(action.spec.term.hours())
        .unwrap_or(action.hourly_cost)
}

fn action_facts(action: &PlannedAction) -> serde_json::Value {
    json!({
        "what": action.describe(),
        "hourly_cost": action.hourly_cost,
        "upfront": action.upfront,
        "term_total": term_total(action),
        "summary": action.summary,
        "spec": action.spec,
        "operation": action.operation,
        "hourly_given_up": action.facts().hourly_given_up,
    })
}

/// An action that became a proposal (`proposal_id` = the proposal) or, in Datapilot, a
/// recommendation (`proposal_id` = "rec-..." and `recommendation: true`).
pub fn proposed(
    proposal_id: &str,
    plan_id: &str,
    action: &PlannedAction,
    policy: &str,
    approvals_needed: Option<u8>,
    now: DateTime<Utc>,
) -> NewEvent {
    let s = &action.spec;
    NewEvent::new(
        now,
        "commitd",
        proposal_id,
        ActionProposed {
            proposal_id: proposal_id.into(),
            plan_id: plan_id.into(),
            provider: s.provider,
            instrument: s.instrument,
            term: s.term,
            payment_option: s.payment,
            region: s.region.clone(),
            family: s.family.clone().or_else(|| s.instance_type.clone()),
            hourly_commitment: action.hourly_cost,
            upfront: action.upfront,
            expected_savings: action.expected_savings,
            expected_utilization: action.expected_utilization,
            action_digest: Some(action.digest()),
        },
    )
    .with_amount(Amount::usd(action.expected_savings))
    .with_rationale({
        let mut r = action_facts(action);
        r["policy"] = json!(policy);
        match approvals_needed {
            Some(n) => r["approvals_needed"] = json!(n),
            None => r["recommendation"] = json!(true),
        }
        r
    })
}

pub fn approved(p: &Proposal, actor: &str, reason: Option<&str>, now: DateTime<Utc>) -> NewEvent {
    NewEvent::new(
        now,
        actor,
        &p.id,
        Approved {
            proposal_id: p.id.clone(),
            reason: reason.map(str::to_string),
            action_digest: Some(p.action.digest()),
        },
    )
    .with_rationale(json!({
        "approvals": p.approvals(),
        "approvals_needed": p.approvals_needed,
        "state": p.state,
    }))
}

pub fn rejected(p: &Proposal, actor: &str, reason: &str, now: DateTime<Utc>) -> NewEvent {
    NewEvent::new(
        now,
        actor,
        &p.id,
        Rejected {
            proposal_id: p.id.clone(),
            reason: reason.into(),
        },
    )
}

pub fn expired(p: &Proposal, superseded_by: Option<&str>, now: DateTime<Utc>) -> NewEvent {
    NewEvent::new(
        now,
        "commitd",
        &p.id,
        ProposalExpired {
            proposal_id: p.id.clone(),
            superseded_by: superseded_by.map(str::to_string),
            reason: p.outcome.clone().unwrap_or_else(|| "expired".into()),
        },
    )
}
