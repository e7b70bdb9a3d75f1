//! Execution: approved proposals become purchases (or returns, exchanges, Marketplace
//! listings), never twice, never without a valid approval, never against the policies in force,
//! with every provider call in the audit log.
//!
//! Before **every** provider call, first attempt, retry or resume alike:
//!
//! 1. **Authorization from the log.** The action's digest ([`PlannedAction::digest`]) must be
//!    the one proposed, and the audit log must hold as many `approved` events of that digest by
//!    distinct people as the proposal needs. Editing the proposals table (an amount, a state, the
//!    approvals needed) therefore buys nothing: the hash-chained log is the authority.
//! 2. **The policies in force now** ([`policies::PolicySource`], reloaded when the files change;
//!    broken files stop everything): kill switch, blackouts, mode, limits, allow lists. A block
//!    fails the proposal with the rule.
//! 3. **Retry caps**: at most [`RetryLimits::max_attempts`] calls, none after
//!    [`RetryLimits::max_age`] from the first request.
//! 4. **The fenced intent**: one transaction checks this replica's lease token on the
//!    database's clock ([`lease`]), moves the proposal to `executing`, counts the attempt, sets
//!    `call_started_at` and writes `execution_requested`. A replica that lost the lease, was
//!    paused past its TTL or whose clock jumped records nothing and calls nothing.
//! 5. The call, then one transaction for its outcome and event: `executed` (with the cloud
//!    ids), a retryable failure that was not applied (`call_started_at` cleared), a final
//!    failure, or `needs_review`.
//!
//! **Unknown outcomes are looked up, never resent blindly.** A call that may have been applied
//! (a lost answer, a timeout, a crash after step 4: `call_started_at` still set) is settled by
//! asking the provider what it holds ([`CommitmentMarket::find_purchase`], `find_return`,
//! `find_exchange`, `find_sale`) before anything else. Found: `executed`. Unclear: parked as
//! `needs_review` for a person. No trace: sent again only if the provider deduplicates the
//! call by its client token ([`CommitmentMarket::deduplicates`]); otherwise (AWS RI purchases
//! and exchanges have no client token) parked as `needs_review`. The key is derived from the
//! proposal id, so no retry can ever invent a new one.

pub mod lease;
pub mod policies;

pub use crate::proposals::journal;

use crate::audit::{
    Amount, AuditError, AuditLog, EventBody, Executed, ExecutionRequested, Failed, NeedsReview,
    NewEvent, PolicyBlocked,
};
use crate::config::Mode;
use crate::domain::{Hour, Money};
use crate::markets::{
    CommitmentMarket, ExchangeRequest, Found, Operation, ProviderError, Purchase, PurchaseRequest,
    ReturnRequest, SaleRequest,
};
use crate::policy::{Rule, Verdict};
use crate::proposals::{ActionDigest, Proposal, ProposalError, ProposalState, ProposalStore};
use chrono::{DateTime, Duration, Utc};
use lease::Lease;
use policies::PolicySource;
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Proposal(#[from] ProposalError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A test failpoint stopped execution as a crash would (nothing after it ran).
    #[error("crashed at failpoint {0:?}")]
    Crashed(Step),
}

/// Points between the steps of an execution, where a crash is simulated in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// After the intent (`executing` and `execution_requested`) committed, before the call.
    AfterBeginExecution,
    /// The same point (kept for harnesses that name it): the intent and its event are one
    /// transaction now.
    AfterExecutionRequested,
    /// After the provider acted, before its outcome was recorded.
    AfterPurchase,
    /// After the outcome was recorded.
    AfterExecutedEvent,
}

impl Step {
    pub const ALL: [Step; 4] = [
        Step::AfterBeginExecution,
        Step::AfterExecutionRequested,
        Step::AfterPurchase,
        Step::AfterExecutedEvent,
    ];

    pub fn parse(text: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(|t| t == text.trim()))
                .unwrap_or(false)
        })
    }
}

/// Where to crash, for crash tests. `abort` kills the process (the binary under test); without
/// it the executor returns [`ExecuteError::Crashed`] and does nothing more (in-process tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failpoint {
    pub at: Option<Step>,
    pub abort: bool,
}

impl Failpoint {
    /// Aborts the process at `step`: what a crash test installs into the service it runs
    /// (`commitd-dev run`, from `COMMITD_TEST_FAILPOINT`). The product binary never installs one.
    pub fn abort_at(step: Step) -> Failpoint {
        Failpoint {
            at: Some(step),
            abort: true,
        }
    }

    fn check(&self, step: Step) -> Result<(), ExecuteError> {
        if self.at == Some(step) {
            if self.abort {
                eprintln!("commitd: failpoint {step:?}: aborting");
                std::process::abort();
            }
            return Err(ExecuteError::Crashed(step));
        }
        Ok(())
    }
}

/// How often and how long an execution is retried before it fails for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryLimits {
    /// Provider calls at most (the first included).
    pub max_attempts: u32,
    /// No call later than this after the first request.
    pub max_age: Duration,
}

impl Default for RetryLimits {
    fn default() -> Self {
        RetryLimits {
            max_attempts: 5,
            max_age: Duration::hours(24),
        }
    }
}

/// What one provider operation left at the provider, for its `executed` event.
#[derive(Clone, Debug)]
struct Completed {
    request_id: String,
    /// The commitment bought, returned or created, or the listing.
    commitment_id: String,
    rationale: serde_json::Value,
    /// Money paid (a purchase's term total, an exchange's true-up), if any.
    amount: Option<Money>,
}

/// What happened to one proposal.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Executed {
        proposal_id: String,
        commitment_id: String,
        /// True when it was found at the provider (made by an earlier call) rather than made
        /// by this one.
        reconciled: bool,
    },
    Blocked {
        proposal_id: String,
        policy: String,
        rule: Rule,
        reason: String,
    },
    Failed {
        proposal_id: String,
        error: String,
        retryable: bool,
    },
    /// The provider call's outcome could not be established: a person must look.
    NeedsReview { proposal_id: String, reason: String },
    /// Another executor moved it first, or this replica no longer holds the lease.
    Skipped { proposal_id: String },
}

pub struct Executor {
    proposals: ProposalStore,
    audit: AuditLog,
    market: Arc<dyn CommitmentMarket>,
    policies: Arc<PolicySource>,
    failpoint: Failpoint,
    /// Set on shutdown: no new proposal is started (the one in flight finishes).
    stop: Arc<AtomicBool>,
    /// The daemon's global mode: a datapilot deployment executes nothing, even a proposal
    /// approved earlier under another mode.
    mode: Mode,
    /// The executor lease whose fence every provider call presents (None: unfenced, for
    /// in-process tests of a single executor; the service always sets it).
    lease: Option<Arc<Lease>>,
    retry: RetryLimits,
}

/// The actor recorded for the daemon's own steps.
pub const DAEMON_ACTOR: &str = "commitd";

impl Executor {
    pub fn new(
        proposals: ProposalStore,
        audit: AuditLog,
        market: Arc<dyn CommitmentMarket>,
        policies: Arc<PolicySource>,
    ) -> Executor {
        Executor {
            proposals,
            audit,
            market,
            policies,
            failpoint: Failpoint::default(),
            stop: Arc::new(AtomicBool::new(false)),
            mode: Mode::Copilot,
            lease: None,
            retry: RetryLimits::default(),
        }
    }

    /// The global mode the policies are judged under at execution (default copilot: only a
    /// policy's own mode and limits are judged again).
    pub fn with_mode(mut self, mode: Mode) -> Executor {
        self.mode = match mode {
            Mode::Datapilot => Mode::Datapilot,
            _ => Mode::Copilot,
        };
        self
    }

    /// Shares the daemon's shutdown flag.
    pub fn with_stop_flag(mut self, stop: Arc<AtomicBool>) -> Executor {
        self.stop = stop;
        self
    }

    /// Fences every provider call with this lease.
    pub fn with_lease(mut self, lease: Arc<Lease>) -> Executor {
        self.lease = Some(lease);
        self
    }

    pub fn with_retry_limits(mut self, retry: RetryLimits) -> Executor {
        self.retry = retry;
        self
    }

    pub fn with_failpoint(mut self, failpoint: Failpoint) -> Executor {
        self.failpoint = failpoint;
        self
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The idempotency key of a proposal's purchase. Derived, never random: a retry after any
    /// crash sends the same key.
    pub fn idempotency_key(proposal_id: &str) -> String {
        format!("commitd-{proposal_id}")
    }

    /// Resumes every `executing` proposal (after a crash, an unknown answer or an outage).
    pub async fn reconcile(&self, now: DateTime<Utc>) -> Result<Vec<Outcome>, ExecuteError> {
        let mut out = Vec::new();
        for p in self.proposals.list(Some(ProposalState::Executing)).await? {
            if self.stopping() {
                break;
            }
            out.push(self.resume(&p, now).await?);
        }
        Ok(out)
    }

    /// Executes every `approved` proposal, oldest first.
    pub async fn execute_approved(&self, now: DateTime<Utc>) -> Result<Vec<Outcome>, ExecuteError> {
        let mut approved = self.proposals.list(Some(ProposalState::Approved)).await?;
        approved.reverse();
        let mut out = Vec::new();
        for p in approved {
            if self.stopping() {
                break;
            }
            out.push(self.execute(&p, now).await?);
        }
        Ok(out)
    }

    /// Executes one approved proposal.
    pub async fn execute(&self, p: &Proposal, now: DateTime<Utc>) -> Result<Outcome, ExecuteError> {
        if let Some(stop) = self.may_call(p, now).await? {
            return Ok(stop);
        }
        self.start_and_call(p, ProposalState::Approved, now).await
    }

    /// Continues an `executing` proposal: settle a call whose outcome is not recorded by asking
    /// the provider, then (if nothing happened and a resend is safe) call again under the same
    /// checks as a first call.
    async fn resume(&self, p: &Proposal, now: DateTime<Utc>) -> Result<Outcome, ExecuteError> {
        if p.call_started_at.is_some() {
            match self.settle(p, now).await? {
                Settled::Done(outcome) => return Ok(outcome),
                Settled::NotApplied => {}
            }
        }
        let p = match self.proposals.get(&p.id).await? {
            Some(p) if p.state == ProposalState::Executing && p.call_started_at.is_none() => p,
            _ => {
                return Ok(Outcome::Skipped {
                    proposal_id: p.id.clone(),
                })
            }
        };
        if p.attempts >= self.retry.max_attempts {
            let why = format!(
                "gave up after {} provider calls (limit {})",
                p.attempts, self.retry.max_attempts
            );
            return self.give_up(&p, why, now).await;
        }
        if let Some(first) = p.requested_at {
            if now - first > self.retry.max_age {
                let why = format!(
                    "gave up: first requested {} ago, past the {} h retry window",
                    humanize(now - first),
                    self.retry.max_age.num_hours()
                );
                return self.give_up(&p, why, now).await;
            }
        }
        if let Some(stop) = self.may_call(&p, now).await? {
            return Ok(stop);
        }
        self.start_and_call(&p, ProposalState::Executing, now).await
    }

    /// Steps 1-2 of every call: the log authorizes exactly this action, and the policies in
    /// force allow it now. Some(outcome) when the call must not be made.
    async fn may_call(
        &self,
        p: &Proposal,
        now: DateTime<Utc>,
    ) -> Result<Option<Outcome>, ExecuteError> {
        if let Err(why) = self.authorized(p).await? {
            tracing::error!(proposal = %p.id, reason = %why, "execution refused: the approvals do not cover this action");
            let error = format!("refused: {why}");
            let event = self.failed_event(p, &error, false, now);
            self.proposals.fail(&p.id, &error, now, event).await?;
            return Ok(Some(Outcome::Failed {
                proposal_id: p.id.clone(),
                error,
                retryable: false,
            }));
        }
        let policies = match self.policies.current() {
            Ok(set) => set,
            Err(e) => {
                // No fallback: nothing executes under rules that do not load. The proposal
                // stays where it is and runs once the files are fixed.
                tracing::error!(proposal = %p.id, error = %e, "policies do not load: execution stopped");
                return Ok(Some(Outcome::Skipped {
                    proposal_id: p.id.clone(),
                }));
            }
        };
        let exclude = (p.state == ProposalState::Executing).then_some(p.id.as_str());
        let recent = self.proposals.recent_spend_except(now, exclude).await?;
        let facts = p.action.facts();
        let decision = policies.evaluate(&facts, &recent, Hour::from_datetime(now), self.mode);
        if decision.verdict != Verdict::Block {
            return Ok(None);
        }
        let (rule, reason) = decision
            .blocking_rule()
            .map(|c| (c.rule, c.detail.clone()))
            .unwrap_or_else(|| (Rule::Policy, "blocked".into()));
        let outcome = format!(
            "blocked at execution by {} {rule}: {reason}",
            decision.policy
        );
        let event = NewEvent::new(
            now,
            DAEMON_ACTOR,
            &p.id,
            PolicyBlocked {
                proposal_id: Some(p.id.clone()),
                policy: decision.policy.clone(),
                rule: rule.to_string(),
                reason: reason.clone(),
            },
        )
        .with_rationale(json!({
            "at": "execution",
            "attempt": p.attempts + 1,
            "checks": decision.checks,
            "recent": recent,
        }));
        if !self.proposals.fail(&p.id, &outcome, now, event).await? {
            return Ok(Some(Outcome::Skipped {
                proposal_id: p.id.clone(),
            }));
        }
        Ok(Some(Outcome::Blocked {
            proposal_id: p.id.clone(),
            policy: decision.policy,
            rule,
            reason,
        }))
    }

    /// Whether the audit log authorizes exactly this action: Ok(Err(why)) when it does not.
    async fn authorized(&self, p: &Proposal) -> Result<Result<(), String>, ExecuteError> {
        let digest = p.action.digest();
        match &p.action_digest {
            Some(stored) if *stored == digest => {}
            Some(stored) => {
                return Ok(Err(format!(
                    "the action was changed after it was proposed (digest {} now, {} proposed)",
                    &digest[..12],
                    &stored[..stored.len().min(12)]
                )))
            }
            None => {
                return Ok(Err(
                    "proposed before approvals were bound to the action's digest; let the next cycle propose it again"
                        .into(),
                ))
            }
        }
        let events = self.audit.about(&p.id).await?;
        let mut proposed = false;
        let mut needed = usize::from(p.approvals_needed.max(1));
        let mut approvers = std::collections::BTreeSet::new();
        for e in &events {
            match &e.body {
                EventBody::ActionProposed(a) if a.action_digest.as_deref() == Some(&digest) => {
                    proposed = true;
                    // The log's count of approvals needed wins over the table's if larger.
                    if let Some(n) = e.rationale.get("approvals_needed").and_then(|v| v.as_u64()) {
                        needed = needed.max(usize::try_from(n).unwrap_or(usize::MAX));
                    }
                }
                EventBody::Approved(a)
                    if a.action_digest.as_deref() == Some(&digest) && e.actor != p.proposer =>
                {
                    approvers.insert(e.actor.clone());
                }
                _ => {}
            }
        }
        if !proposed {
            return Ok(Err(format!(
                "the audit log holds no proposal of this action (digest {})",
                &digest[..12]
            )));
        }
        if approvers.len() < needed {
            return Ok(Err(format!(
                "the audit log holds {} approval(s) of this action by distinct people; it needs {needed}",
                approvers.len()
            )));
        }
        Ok(Ok(()))
    }

    /// Steps 4-5: the fenced intent, the call, its outcome.
    async fn start_and_call(
        &self,
        p: &Proposal,
        from: ProposalState,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ExecuteError> {
        let skipped = || Outcome::Skipped {
            proposal_id: p.id.clone(),
        };
        let fence = match &self.lease {
            Some(lease) => match lease.fence() {
                Some(f) => Some(f),
                None => {
                    tracing::warn!(proposal = %p.id, "executor lease not held (or about to lapse): no provider call");
                    return Ok(skipped());
                }
            },
            None => None,
        };
        let key = Self::key(p);
        let provider = self.provider_name(p).to_string();
        let started = self
            .proposals
            .start_call(&p.id, fence.as_ref(), &key, from, now, |q| {
                NewEvent::new(
                    now,
                    DAEMON_ACTOR,
                    &q.id,
                    ExecutionRequested {
                        proposal_id: q.id.clone(),
                        idempotency_key: key.clone(),
                        attempt: Some(q.attempts),
                    },
                )
                .with_amount(Amount::usd(journal::term_total(&q.action)))
                .with_rationale(json!({
                    "provider": provider,
                    "what": q.action.describe(),
                    "operation": q.action.operation,
                    "hourly_cost": q.action.hourly_cost,
                    "upfront": q.action.upfront,
                    "action_digest": q.action.digest(),
                    "attempt": q.attempts,
                    "fencing_token": fence.as_ref().map(|f| f.token),
                }))
            })
            .await;
        let p = match started {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(skipped()),
            Err(ProposalError::Fenced(id)) => {
                tracing::warn!(proposal = %id, "executor lease lost before the call: nothing called");
                return Ok(skipped());
            }
            Err(e) => return Err(e.into()),
        };
        self.failpoint.check(Step::AfterBeginExecution)?;
        self.failpoint.check(Step::AfterExecutionRequested)?;
        let result = self.send(&p, now).await;
        match result {
            Ok(done) => {
                self.failpoint.check(Step::AfterPurchase)?;
                self.record_executed(&p, done, false, now).await
            }
            Err(e) if e.outcome_unknown() => {
                tracing::warn!(proposal = %p.id, error = %e, "provider call outcome unknown: looking it up");
                match self.settle(&p, now).await? {
                    Settled::Done(outcome) => Ok(outcome),
                    Settled::NotApplied => Ok(Outcome::Failed {
                        proposal_id: p.id.clone(),
                        error: e.to_string(),
                        retryable: true,
                    }),
                }
            }
            Err(e) => self.provider_failed(&p, e, now).await,
        }
    }

    /// Settles a call whose outcome is not recorded by asking the provider. `Done` when the
    /// proposal reached an outcome (executed, needs_review, or still unknown because the lookup
    /// itself failed); `NotApplied` when the provider shows no trace and a resend is safe (the
    /// in-flight mark has been cleared).
    async fn settle(&self, p: &Proposal, now: DateTime<Utc>) -> Result<Settled, ExecuteError> {
        let found = match self.lookup(p, now).await {
            Ok(found) => found,
            Err(e) => {
                // Still unknown. Lookups change nothing, so the next tick asks again; past the
                // retry window a person must look.
                let age = p
                    .requested_at
                    .map(|r| now - r)
                    .unwrap_or_else(Duration::zero);
                if age > self.retry.max_age {
                    let why = format!(
                        "the outcome of the provider call is unknown and looking it up kept failing for {}: {e}",
                        humanize(age)
                    );
                    return Ok(Settled::Done(self.park(p, why, now).await?));
                }
                tracing::warn!(proposal = %p.id, error = %e, "looking up an unknown outcome failed; will ask again");
                return Ok(Settled::Done(Outcome::Failed {
                    proposal_id: p.id.clone(),
                    error: format!("outcome unknown; lookup failed: {e}"),
                    retryable: true,
                }));
            }
        };
        match found {
            Found::Yes(done) => Ok(Settled::Done(
                self.record_executed(p, done, true, now).await?,
            )),
            Found::Unclear(what) => Ok(Settled::Done(
                self.park(
                    p,
                    format!("the provider's state cannot tell whether the call was applied: {what}"),
                    now,
                )
                .await?,
            )),
            Found::No if self.market.deduplicates(&p.action.operation, &p.action.spec) => {
                let note = "no trace of the earlier call at the provider; its client token makes a resend safe";
                let event = self.failed_event(p, note, true, now);
                self.proposals
                    .call_not_applied(&p.id, note, now, event)
                    .await?;
                Ok(Settled::NotApplied)
            }
            Found::No => Ok(Settled::Done(
                self.park(
                    p,
                    format!(
                        "no trace of the {} at the provider, but the call may still have been applied (its API has no client token, so it is never sent again): check the provider's console",
                        p.action.operation.name()
                    ),
                    now,
                )
                .await?,
            )),
        }
    }

    async fn park(
        &self,
        p: &Proposal,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ExecuteError> {
        tracing::error!(proposal = %p.id, reason = %reason, "execution needs review");
        let event = NewEvent::new(
            now,
            DAEMON_ACTOR,
            &p.id,
            NeedsReview {
                proposal_id: p.id.clone(),
                idempotency_key: p.idempotency_key.clone(),
                reason: reason.clone(),
            },
        )
        .with_rationale(json!({
            "provider": self.provider_name(p),
            "operation": p.action.operation,
            "what": p.action.describe(),
            "attempts": p.attempts,
            "first_call_at": p.first_call_at.map(|t| t.to_rfc3339()),
        }));
        if !self.proposals.park(&p.id, &reason, now, event).await? {
            return Ok(Outcome::Skipped {
                proposal_id: p.id.clone(),
            });
        }
        Ok(Outcome::NeedsReview {
            proposal_id: p.id.clone(),
            reason,
        })
    }

    async fn give_up(
        &self,
        p: &Proposal,
        why: String,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ExecuteError> {
        let event = self.failed_event(p, &why, false, now);
        if !self.proposals.fail(&p.id, &why, now, event).await? {
            return Ok(Outcome::Skipped {
                proposal_id: p.id.clone(),
            });
        }
        Ok(Outcome::Failed {
            proposal_id: p.id.clone(),
            error: why,
            retryable: false,
        })
    }

    fn key(p: &Proposal) -> String {
        p.idempotency_key
            .clone()
            .unwrap_or_else(|| Self::idempotency_key(&p.id))
    }

    fn purchase_request(p: &Proposal, now: DateTime<Utc>) -> PurchaseRequest {
        PurchaseRequest {
            idempotency_key: Self::key(p),
            spec: p.action.spec.clone(),
            start: Hour::from_datetime(now),
            max_hourly_cost: p.action.hourly_cost,
            max_upfront: p.action.upfront,
        }
    }

    fn return_request(
        p: &Proposal,
        commitment_id: &str,
        instances: Option<u32>,
        now: DateTime<Utc>,
    ) -> ReturnRequest {
        ReturnRequest {
            idempotency_key: Self::key(p),
            commitment_id: commitment_id.to_string(),
            account: p.action.spec.account.clone(),
            instances,
            at: now,
        }
    }

    fn sale_request(p: &Proposal, now: DateTime<Utc>) -> Option<SaleRequest> {
        match &p.action.operation {
            Operation::Sell {
                commitment_id,
                instances,
                price,
                ..
            } => Some(SaleRequest {
                idempotency_key: Self::key(p),
                commitment_id: commitment_id.clone(),
                account: p.action.spec.account.clone(),
                instances: *instances,
                price: *price,
                at: now,
            }),
            _ => None,
        }
    }

    /// The market that acts for the proposal, as the audit log names it (the provider's own
    /// market where one daemon routes to several).
    fn provider_name(&self, p: &Proposal) -> &str {
        self.market.provider_name(p.action.spec.provider)
    }

    fn exchange_request(p: &Proposal, source_ids: &[String], at: DateTime<Utc>) -> ExchangeRequest {
        ExchangeRequest {
            idempotency_key: Self::key(p),
            source_ids: source_ids.to_vec(),
            target: p.action.spec.clone(),
            // The approved upfront is the true-up ceiling: policy limited it like any upfront.
            max_true_up: p.action.upfront,
            at,
        }
    }

    /// What any earlier call for this proposal left at the provider.
    async fn lookup(
        &self,
        p: &Proposal,
        now: DateTime<Utc>,
    ) -> Result<Found<Completed>, ProviderError> {
        // Anything an earlier call created started at or after its first call.
        let since = p.first_call_at.or(p.requested_at).unwrap_or(now);
        Ok(match &p.action.operation {
            Operation::Purchase => {
                let request = Self::purchase_request(p, now);
                match self.market.find_purchase(&request, since).await? {
                    Found::Yes(purchase) => Found::Yes(self.bought(p, purchase, true)),
                    Found::No => Found::No,
                    Found::Unclear(s) => Found::Unclear(s),
                }
            }
            Operation::Return {
                commitment_id,
                instances,
                ..
            } => {
                // `at` is when the first call went out: what a return without a client token
                // left is looked for from then on (Azure: the reservation's revisions).
                let request = Self::return_request(p, commitment_id, *instances, since);
                self.market
                    .find_return(&request)
                    .await?
                    .map(|r| self.returned(p, r, *instances, true))
                    .into()
            }
            Operation::Sell { .. } => {
                let Some(request) = Self::sale_request(p, now) else {
                    return Ok(Found::No);
                };
                self.market
                    .find_sale(&request)
                    .await?
                    .map(|l| self.listed(p, &request, l, true))
                    .into()
            }
            Operation::Exchange { source_ids, .. } => {
                let request = Self::exchange_request(p, source_ids, since);
                self.market
                    .find_exchange(&request)
                    .await?
                    .map(|x| self.exchanged(p, x, true))
                    .into()
            }
        })
    }

    /// The provider call itself.
    async fn send(&self, p: &Proposal, now: DateTime<Utc>) -> Result<Completed, ProviderError> {
        Ok(match &p.action.operation {
            Operation::Purchase => {
                let request = Self::purchase_request(p, now);
                let purchase = self.market.purchase(&request).await?;
                self.bought(p, purchase, false)
            }
            Operation::Return {
                commitment_id,
                instances,
                ..
            } => {
                let request = Self::return_request(p, commitment_id, *instances, now);
                let r = self.market.return_commitment(&request).await?;
                self.returned(p, r, *instances, false)
            }
            Operation::Sell { .. } => {
                let Some(request) = Self::sale_request(p, now) else {
                    return Err(ProviderError::unsupported(
                        self.provider_name(p),
                        "this sale",
                    ));
                };
                let l = self.market.sell(&request).await?;
                self.listed(p, &request, l, false)
            }
            Operation::Exchange { source_ids, .. } => {
                let request = Self::exchange_request(p, source_ids, now);
                let x = self.market.exchange(&request).await?;
                self.exchanged(p, x, false)
            }
        })
    }

    fn bought(&self, p: &Proposal, purchase: Purchase, reconciled: bool) -> Completed {
        let c = &purchase.commitment;
        Completed {
            request_id: purchase.request_id.clone(),
            commitment_id: c.id.clone(),
            amount: Some(c.total_cost()),
            rationale: json!({
                "provider": self.provider_name(p),
                "reconciled": reconciled,
                "hourly_cost": c.hourly_cost,
                "upfront": c.upfront,
                "start": c.start.to_datetime().to_rfc3339(),
                "end": c.end.to_datetime().to_rfc3339(),
                "expected_savings": p.action.expected_savings,
                "action_digest": p.action.digest(),
            }),
        }
    }

    fn returned(
        &self,
        p: &Proposal,
        r: crate::markets::Returned,
        instances: Option<u32>,
        reconciled: bool,
    ) -> Completed {
        Completed {
            request_id: r.request_id,
            commitment_id: r.commitment_id,
            amount: None,
            rationale: json!({
                "provider": self.provider_name(p),
                "operation": "return",
                "reconciled": reconciled,
                "state": r.state,
                "hourly_cost_removed": p.action.operation.hourly_cost_removed(),
                "instances": instances,
                "expected_savings": p.action.expected_savings,
                "action_digest": p.action.digest(),
            }),
        }
    }

    fn listed(
        &self,
        p: &Proposal,
        request: &SaleRequest,
        listed: crate::markets::Listed,
        reconciled: bool,
    ) -> Completed {
        Completed {
            request_id: listed.request_id,
            commitment_id: listed.listing_id.clone(),
            // No amount: the event's amount is money paid, and a listing pays nothing (its
            // asking price, money that may come in, is in the rationale).
            amount: None,
            rationale: json!({
                "provider": self.provider_name(p),
                "operation": "sale",
                "reconciled": reconciled,
                "listing_id": listed.listing_id,
                "state": listed.state,
                "instances": listed.instances,
                "asking_price": request.price,
                "sells_at": listed.sells_at.map(|h| h.to_datetime().to_rfc3339()),
                "hourly_cost_removed": p.action.operation.hourly_cost_removed(),
                "expected_savings": p.action.expected_savings,
                "action_digest": p.action.digest(),
            }),
        }
    }

    fn exchanged(
        &self,
        p: &Proposal,
        done: crate::markets::Exchanged,
        reconciled: bool,
    ) -> Completed {
        let commitment_id = if done.target_ids.is_empty() {
            done.exchange_id
                .clone()
                .unwrap_or_else(|| format!("exchange:{}", done.source_ids.join("+")))
        } else {
            done.target_ids.join(",")
        };
        Completed {
            amount: done.quote.as_ref().map(|q| q.payment_due),
            rationale: json!({
                "provider": self.provider_name(p),
                "operation": "exchange",
                "reconciled": reconciled,
                "exchange_id": done.exchange_id,
                "source_ids": done.source_ids,
                "target_ids": done.target_ids,
                "quote": done.quote,
                "approved_true_up": p.action.upfront,
                "expected_savings": p.action.expected_savings,
                "action_digest": p.action.digest(),
            }),
            request_id: done.request_id,
            commitment_id,
        }
    }

    /// The `executed` event and the final state, in one transaction.
    async fn record_executed(
        &self,
        p: &Proposal,
        done: Completed,
        reconciled: bool,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ExecuteError> {
        let key = Self::key(p);
        let mut event = NewEvent::new(
            now,
            DAEMON_ACTOR,
            &p.id,
            Executed {
                proposal_id: p.id.clone(),
                idempotency_key: key,
                provider_request_id: done.request_id.clone(),
                commitment_id: done.commitment_id.clone(),
            },
        )
        .with_rationale(done.rationale);
        if let Some(a) = done.amount {
            event = event.with_amount(Amount::usd(a));
        }
        let recorded = self
            .proposals
            .finish_execution(&p.id, &done.commitment_id, &done.request_id, now, event)
            .await?;
        self.failpoint.check(Step::AfterExecutedEvent)?;
        if !recorded {
            return Ok(Outcome::Skipped {
                proposal_id: p.id.clone(),
            });
        }
        Ok(Outcome::Executed {
            proposal_id: p.id.clone(),
            commitment_id: done.commitment_id,
            reconciled,
        })
    }

    fn failed_event(
        &self,
        p: &Proposal,
        error: &str,
        retryable: bool,
        now: DateTime<Utc>,
    ) -> NewEvent {
        NewEvent::new(
            now,
            DAEMON_ACTOR,
            &p.id,
            Failed {
                proposal_id: p.id.clone(),
                idempotency_key: p.idempotency_key.clone(),
                error: error.to_string(),
                retryable,
            },
        )
        .with_rationale(json!({
            "provider": self.provider_name(p),
            "operation": p.action.operation,
            "attempt": p.attempts,
        }))
    }

    /// A call that reported an error with a known outcome: not applied (retryable: the next
    /// tick may call again, within the caps) or refused for good.
    async fn provider_failed(
        &self,
        p: &Proposal,
        e: ProviderError,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ExecuteError> {
        let retryable = e.retryable();
        let error = e.to_string();
        let mut event = self.failed_event(p, &error, retryable, now);
        // A refused exchange carries the quote: the audit keeps what the provider offered.
        if let ProviderError::ExchangeRefused { quote, .. } = &e {
            event.rationale["quote"] = json!(quote);
        }
        if retryable {
            // Stays `executing` with no call in flight: the next tick calls again with the
            // same key, after the same checks.
            self.proposals
                .call_not_applied(&p.id, &format!("retrying: {error}"), now, event)
                .await?;
        } else {
            self.proposals.fail(&p.id, &error, now, event).await?;
        }
        Ok(Outcome::Failed {
            proposal_id: p.id.clone(),
            error,
            retryable,
        })
    }
}

enum Settled {
    Done(Outcome),
    NotApplied,
}

fn humanize(d: Duration) -> String {
    if d.num_hours() >= 1 {
        format!("{} h", d.num_hours())
    } else {
        format!("{} min", d.num_minutes())
    }
}

#[cfg(test)]
mod tests;
