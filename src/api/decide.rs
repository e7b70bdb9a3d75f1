//! One decision on a proposal, for every front end of the server: the JSON API
//! ([`super::server`]) and the web console ([`super::console`]) both decide through
//! [`decide`], so a decision is checked, recorded and audited the same way whichever way it
//! came in.
//!
//! What it adds to [`ProposalStore::approve`] / [`ProposalStore::reject`] (which hold the
//! rules: no self-approval, distinct approvers, expiry, the action digest in the `approved`
//! event, state and event in one transaction) is the role check and the executor's wake-up
//! once an approval completes.

use super::server::AppState;
use crate::identity::{Principal, Role};
use crate::proposals::{Proposal, ProposalError};
use chrono::{DateTime, Utc};

/// What a person decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Approve, with an optional reason.
    Approve { reason: Option<String> },
    /// Reject, with the reason finance reads (required).
    Reject { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The person's role cannot decide.
    #[error("{name} has role {role}, deciding on a proposal needs approver")]
    Role { name: String, role: &'static str },
    #[error(transparent)]
    Proposal(#[from] ProposalError),
}

/// Records `who`'s verdict on proposal `id` at `now`, with its audit event (actor: `who`'s
/// name; an approval names the action digest), and wakes the executor when an approval
/// completes the proposal. Refused without a change when `who` is not an approver, or by the
/// proposals store's rules.
pub async fn decide(
    s: &AppState,
    who: &Principal,
    id: &str,
    verdict: Verdict,
    now: DateTime<Utc>,
) -> Result<Proposal, DecideError> {
    if who.role < Role::Approver {
        return Err(DecideError::Role {
            name: who.name.clone(),
            role: who.role.as_str(),
        });
    }
    match verdict {
        Verdict::Approve { reason } => {
            // The approval committed with its `approved` event (one transaction).
            let a = s
                .proposals
                .approve(id, &who.name, now, reason.as_deref())
                .await?;
            if a.complete {
                s.wake.notify_one();
            }
            Ok(a.proposal)
        }
        // The rejection committed with its `rejected` event.
        Verdict::Reject { reason } => Ok(s.proposals.reject(id, &who.name, now, &reason).await?),
    }
}
