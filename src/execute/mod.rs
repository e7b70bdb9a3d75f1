//! Execution: approved proposals become purchases, exactly once, with every step in the audit
//! log and the policy limits checked again at execution time.
//!
//! The order of steps is what makes a crash harmless:
//!
//! 1. policy check against what the store says was already committed today / in 30 days
//!    (`executing` proposals count: their purchase may have happened);
//! 2. `approved -> executing` with the idempotency key, one compare-and-set (a second executor
//!    loses here), then the `ExecutionRequested` audit event; both are durable before
//! 3. the provider is asked whether the key was already used, and only if not, the purchase is
//!    made with that key (providers treat a repeated key as the same purchase);
//! 4. the `Executed` event, then `executing -> executed`.
//!
//! A crash anywhere leaves the proposal `approved` (nothing happened) or `executing` (intent
//! recorded). [`Executor::reconcile`] resumes every `executing` proposal from step 3, adding
//! whichever audit event the crash prevented, so the log is complete and nothing is bought
//! twice. The key is derived from the proposal id, so no retry can ever invent a new one.
//!
//! Returns and exchanges (the proposal's [`Operation`]) take exactly the same steps; step 3
//! asks [`CommitmentMarket::find_return`] / [`CommitmentMarket::find_exchange`] instead of
//! the key lookup, because a provider's return or exchange is visible in its inventory (a
//! returned plan, retired sources) even when the API takes no client token. A return commits
//! nothing new; an exchange's true-up is bounded by the approved `upfront` (the same per-run
//! upfront limit policy applies to purchases), and a quote that is invalid or above it fails
//! the proposal with the quote's reason and the quote itself in the audit event. A
//! Marketplace sale is found by its key ([`CommitmentMarket::find_sale`]; AWS keeps the
//! listing's client token); its event carries the asking price in the rationale, and no amount
//! (an event's amount is money paid).

pub mod journal;

use crate::audit::{
    Amount, AuditError, AuditLog, EventKind, Executed, ExecutionRequested, Failed, NewEvent,
    PolicyBlocked,
};
use crate::config::Mode;
use crate::domain::Hour;
use crate::policy::{PolicySet, Verdict};
use crate::proposals::{Proposal, ProposalError, ProposalState, ProposalStore};
use crate::providers::{
    CommitmentMarket, ExchangeRequest, Operation, ProviderError, Purchase, PurchaseRequest,
    ReturnRequest, SaleRequest,
};
use chrono::{DateTime, Utc};
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
    /// After `executing` was stored, before the `ExecutionRequested` event.
    AfterBeginExecution,
    /// After `ExecutionRequested`, before the provider call.
    AfterExecutionRequested,
    /// After the provider bought, before the `Executed` event.
    AfterPurchase,
    /// After the `Executed` event, before the proposal became `executed`.
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
    /// From `COMMITD_FAILPOINT=<step>` (test harnesses only): aborts the process at that step.
    pub fn from_env() -> Failpoint {
        Failpoint {
            at: std::env::var("COMMITD_FAILPOINT")
                .ok()
                .and_then(|s| Step::parse(&s)),
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

/// What a return, an exchange or a sale left at the provider, for its `Executed` event.
struct Completed {
    request_id: String,
    /// The commitment returned or created, or the listing.
    commitment_id: String,
    /// Found at the provider after a crash rather than made now.
    reconciled: bool,
    rationale: serde_json::Value,
    /// Money paid (an exchange's true-up), if any.
    amount: Option<crate::domain::Money>,
}

/// What happened to one proposal.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Executed {
        proposal_id: String,
        commitment_id: String,
        /// True when the purchase was found at the provider (made before a crash) rather
        /// than made now.
        reconciled: bool,
    },
    Blocked {
        proposal_id: String,
        policy: String,
        rule: String,
        reason: String,
    },
    Failed {
        proposal_id: String,
        error: String,
        retryable: bool,
    },
    /// Another executor moved it first.
    Skipped { proposal_id: String },
}

pub struct Executor {
    proposals: ProposalStore,
    audit: AuditLog,
    market: Arc<dyn CommitmentMarket>,
    policies: PolicySet,
    failpoint: Failpoint,
    /// Set on shutdown: no new proposal is started (the one in flight finishes).
    stop: Arc<AtomicBool>,
    /// The daemon's global mode: a datapilot deployment executes nothing, even a proposal
    /// approved earlier under another mode.
    mode: Mode,
}

/// The actor recorded for the daemon's own steps.
pub const DAEMON_ACTOR: &str = "commitd";

impl Executor {
    pub fn new(
        proposals: ProposalStore,
        audit: AuditLog,
        market: Arc<dyn CommitmentMarket>,
        policies: PolicySet,
    ) -> Executor {
        Executor {
            proposals,
            audit,
            market,
            policies,
            failpoint: Failpoint::default(),
            stop: Arc::new(AtomicBool::new(false)),
            mode: Mode::Copilot,
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

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn with_failpoint(mut self, failpoint: Failpoint) -> Executor {
        self.failpoint = failpoint;
        self
    }

    /// The idempotency key of a proposal's purchase. Derived, never random: a retry after any
    /// crash sends the same key.
    pub fn idempotency_key(proposal_id: &str) -> String {
        format!("commitd-{proposal_id}")
    }

    /// Resumes every `executing` proposal (after a crash or a provider outage).
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
        let recent = self.proposals.recent_spend(now).await?;
        let facts = p.action.facts();
        // Approval already happened; what is judged again is everything that can change
        // between approval and execution: kill switch, blackouts, limits, the scope's mode.
        let decision = self
            .policies
            .evaluate(&facts, &recent, Hour::from_datetime(now), self.mode);
        if decision.verdict == Verdict::Block {
            let (rule, reason) = decision
                .blocking_rule()
                .map(|c| (c.rule.clone(), c.detail.clone()))
                .unwrap_or_else(|| ("policy".into(), "blocked".into()));
            let outcome = format!(
                "blocked at execution by {} {rule}: {reason}",
                decision.policy
            );
            if !self.proposals.fail(&p.id, &outcome, now).await? {
                return Ok(Outcome::Skipped {
                    proposal_id: p.id.clone(),
                });
            }
            self.audit
                .append(
                    NewEvent::new(
                        now,
                        DAEMON_ACTOR,
                        &p.id,
                        PolicyBlocked {
                            proposal_id: Some(p.id.clone()),
                            policy: decision.policy.clone(),
                            rule: rule.clone(),
                            reason: reason.clone(),
                        },
                    )
                    .with_rationale(
                        json!({"at": "execution", "checks": decision.checks, "recent": recent}),
                    ),
                )
                .await?;
            return Ok(Outcome::Blocked {
                proposal_id: p.id.clone(),
                policy: decision.policy,
                rule,
                reason,
            });
        }
        let key = Self::idempotency_key(&p.id);
        if !self.proposals.begin_execution(&p.id, &key, now).await? {
            return Ok(Outcome::Skipped {
                proposal_id: p.id.clone(),
            });
        }
        self.failpoint.check(Step::AfterBeginExecution)?;
        self.request_event(p, &key, now, false).await?;
        self.failpoint.check(Step::AfterExecutionRequested)?;
        let mut p = p.clone();
        p.idempotency_key = Some(key);
        p.state = ProposalState::Executing;
        p.requested_at = Some(now);
        self.act(&p, now, false).await
    }

    async fn request_event(
        &self,
        p: &Proposal,
        key: &str,
        now: DateTime<Utc>,
        recovered: bool,
    ) -> Result<(), ExecuteError> {
        self.audit
            .append(
                NewEvent::new(
                    now,
                    DAEMON_ACTOR,
                    &p.id,
                    ExecutionRequested {
                        proposal_id: p.id.clone(),
                        idempotency_key: key.into(),
                    },
                )
                .with_amount(Amount::usd(journal::term_total(&p.action)))
                .with_rationale(json!({
                    "provider": self.market.name(),
                    "what": p.action.describe(),
                    "operation": p.action.operation,
                    "hourly_cost": p.action.hourly_cost,
                    "upfront": p.action.upfront,
                    "recovered_after_crash": recovered,
                })),
            )
            .await?;
        Ok(())
    }

    /// Continues an `executing` proposal: complete the audit trail, look the key up at the
    /// provider, buy only if it was never used, record the result.
    async fn resume(&self, p: &Proposal, now: DateTime<Utc>) -> Result<Outcome, ExecuteError> {
        let key = p
            .idempotency_key
            .clone()
            .unwrap_or_else(|| Self::idempotency_key(&p.id));
        if !journal::has_event(&self.audit, EventKind::ExecutionRequested, &p.id).await? {
            self.request_event(p, &key, now, true).await?;
        }
        let mut p = p.clone();
        p.idempotency_key = Some(key);
        self.act(&p, now, true).await
    }

    /// Step 3 onwards, for the proposal's operation.
    async fn act(
        &self,
        p: &Proposal,
        now: DateTime<Utc>,
        resuming: bool,
    ) -> Result<Outcome, ExecuteError> {
        match &p.action.operation {
            Operation::Purchase => self.buy(p, now, resuming).await,
            Operation::Return {
                commitment_id,
                instances,
                ..
            } => {
                self.give_back(p, commitment_id, *instances, now, resuming)
                    .await
            }
            Operation::Exchange { source_ids, .. } => self.swap(p, source_ids, now, resuming).await,
            Operation::Sell {
                commitment_id,
                instances,
                price,
                ..
            } => {
                let request = SaleRequest {
                    idempotency_key: p.idempotency_key.clone().unwrap_or_default(),
                    commitment_id: commitment_id.clone(),
                    account: p.action.spec.account.clone(),
                    instances: *instances,
                    price: *price,
                    at: now,
                };
                self.sell(p, &request, now, resuming).await
            }
        }
    }

    async fn sell(
        &self,
        p: &Proposal,
        request: &SaleRequest,
        now: DateTime<Utc>,
        resuming: bool,
    ) -> Result<Outcome, ExecuteError> {
        let key = request.idempotency_key.clone();
        // Ask first: a listing made before a crash is found by its client token.
        let found = match self.market.find_sale(request).await {
            Ok(found) => found,
            Err(e) => return self.provider_failed(p, &key, e, now).await,
        };
        let (listed, reconciled) = match found {
            Some(l) => (l, true),
            None => match self.market.sell(request).await {
                Ok(l) => (l, false),
                Err(e) => return self.provider_failed(p, &key, e, now).await,
            },
        };
        self.failpoint.check(Step::AfterPurchase)?;
        let rationale = json!({
            "provider": self.market.name(),
            "operation": "sale",
            "reconciled": reconciled,
            "listing_id": listed.listing_id,
            "state": listed.state,
            "instances": listed.instances,
            "asking_price": request.price,
            "sells_at": listed.sells_at.map(|h| h.to_datetime().to_rfc3339()),
            "hourly_cost_removed": p.action.operation.hourly_cost_removed(),
            "expected_savings": p.action.expected_savings,
        });
        let done = Completed {
            request_id: listed.request_id,
            commitment_id: listed.listing_id,
            reconciled,
            rationale,
            // No amount: the event's amount is money paid, and a listing pays nothing (its
            // asking price, money that may come in, is in the rationale).
            amount: None,
        };
        self.record_executed(p, &key, done, now, resuming).await
    }

    async fn give_back(
        &self,
        p: &Proposal,
        commitment_id: &str,
        instances: Option<u32>,
        now: DateTime<Utc>,
        resuming: bool,
    ) -> Result<Outcome, ExecuteError> {
        let key = p.idempotency_key.clone().unwrap_or_default();
        let request = ReturnRequest {
            idempotency_key: key.clone(),
            commitment_id: commitment_id.to_string(),
            account: p.action.spec.account.clone(),
            instances,
            at: now,
        };
        // Ask first: a return made before a crash shows as the plan's state at the provider.
        let found = match self.market.find_return(&request).await {
            Ok(found) => found,
            Err(e) => return self.provider_failed(p, &key, e, now).await,
        };
        let (returned, reconciled) = match found {
            Some(r) => (r, true),
            None => match self.market.return_commitment(&request).await {
                Ok(r) => (r, false),
                Err(e) => return self.provider_failed(p, &key, e, now).await,
            },
        };
        self.failpoint.check(Step::AfterPurchase)?;
        let rationale = json!({
            "provider": self.market.name(),
            "operation": "return",
            "reconciled": reconciled,
            "state": returned.state,
            "hourly_cost_removed": p.action.operation.hourly_cost_removed(),
            "instances": instances,
            "expected_savings": p.action.expected_savings,
        });
        let done = Completed {
            request_id: returned.request_id,
            commitment_id: returned.commitment_id,
            reconciled,
            rationale,
            amount: None,
        };
        self.record_executed(p, &key, done, now, resuming).await
    }

    async fn swap(
        &self,
        p: &Proposal,
        source_ids: &[String],
        now: DateTime<Utc>,
        resuming: bool,
    ) -> Result<Outcome, ExecuteError> {
        let key = p.idempotency_key.clone().unwrap_or_default();
        let request = ExchangeRequest {
            idempotency_key: key.clone(),
            source_ids: source_ids.to_vec(),
            target: p.action.spec.clone(),
            // The approved upfront is the true-up ceiling: policy limited it like any upfront.
            max_true_up: p.action.upfront,
            // Reconciliation looks for targets created since the request was recorded.
            at: p.requested_at.unwrap_or(now),
        };
        // Ask first: AcceptReservedInstancesExchangeQuote has no client token, so an exchange
        // whose answer was lost is only visible as retired sources; never send it twice.
        let found = match self.market.find_exchange(&request).await {
            Ok(found) => found,
            Err(e) => return self.provider_failed(p, &key, e, now).await,
        };
        let (done, reconciled) = match found {
            Some(x) => (x, true),
            None => {
                let request = ExchangeRequest { at: now, ..request };
                match self.market.exchange(&request).await {
                    Ok(x) => (x, false),
                    Err(e) => return self.provider_failed(p, &key, e, now).await,
                }
            }
        };
        self.failpoint.check(Step::AfterPurchase)?;
        let commitment_id = if done.target_ids.is_empty() {
            done.exchange_id
                .clone()
                .unwrap_or_else(|| format!("exchange:{}", done.source_ids.join("+")))
        } else {
            done.target_ids.join(",")
        };
        let rationale = json!({
            "provider": self.market.name(),
            "operation": "exchange",
            "reconciled": reconciled,
            "exchange_id": done.exchange_id,
            "source_ids": done.source_ids,
            "target_ids": done.target_ids,
            "quote": done.quote,
            "approved_true_up": p.action.upfront,
            "expected_savings": p.action.expected_savings,
        });
        let done = Completed {
            amount: done.quote.as_ref().map(|q| q.payment_due),
            request_id: done.request_id,
            commitment_id,
            reconciled,
            rationale,
        };
        self.record_executed(p, &key, done, now, resuming).await
    }

    /// The `Executed` event (unless a resumed execution already wrote it) and the final state
    /// of a return, an exchange or a sale.
    async fn record_executed(
        &self,
        p: &Proposal,
        key: &str,
        done: Completed,
        now: DateTime<Utc>,
        resuming: bool,
    ) -> Result<Outcome, ExecuteError> {
        let Completed {
            request_id,
            commitment_id,
            reconciled,
            rationale,
            amount,
        } = done;
        let already =
            resuming && journal::has_event(&self.audit, EventKind::Executed, &p.id).await?;
        if !already {
            let mut event = NewEvent::new(
                now,
                DAEMON_ACTOR,
                &p.id,
                Executed {
                    proposal_id: p.id.clone(),
                    idempotency_key: key.to_string(),
                    provider_request_id: request_id.clone(),
                    commitment_id: commitment_id.clone(),
                },
            )
            .with_rationale(rationale);
            if let Some(a) = amount {
                event = event.with_amount(Amount::usd(a));
            }
            self.audit.append(event).await?;
        }
        self.failpoint.check(Step::AfterExecutedEvent)?;
        self.proposals
            .finish_execution(&p.id, &commitment_id, &request_id, now)
            .await?;
        Ok(Outcome::Executed {
            proposal_id: p.id.clone(),
            commitment_id,
            reconciled,
        })
    }

    async fn buy(
        &self,
        p: &Proposal,
        now: DateTime<Utc>,
        resuming: bool,
    ) -> Result<Outcome, ExecuteError> {
        let key = p.idempotency_key.clone().unwrap_or_default();
        // Always ask first: after a crash between the purchase and its record, the provider
        // is the only one who knows it happened.
        let found = match self.market.find_by_idempotency_key(&key).await {
            Ok(found) => found,
            Err(e) => return self.provider_failed(p, &key, e, now).await,
        };
        let (purchase, reconciled): (Purchase, bool) = match found {
            Some(purchase) => (purchase, true),
            None => {
                let request = PurchaseRequest {
                    idempotency_key: key.clone(),
                    spec: p.action.spec.clone(),
                    start: Hour::from_datetime(now),
                    max_hourly_cost: p.action.hourly_cost,
                    max_upfront: p.action.upfront,
                };
                match self.market.purchase(&request).await {
                    Ok(purchase) => (purchase, false),
                    Err(e) => return self.provider_failed(p, &key, e, now).await,
                }
            }
        };
        self.failpoint.check(Step::AfterPurchase)?;
        let already =
            resuming && journal::has_event(&self.audit, EventKind::Executed, &p.id).await?;
        if !already {
            let c = &purchase.commitment;
            self.audit
                .append(
                    NewEvent::new(
                        now,
                        DAEMON_ACTOR,
                        &p.id,
                        Executed {
                            proposal_id: p.id.clone(),
                            idempotency_key: key.clone(),
                            provider_request_id: purchase.request_id.clone(),
                            commitment_id: c.id.clone(),
                        },
                    )
                    .with_amount(Amount::usd(c.total_cost()))
                    .with_rationale(json!({
                        "provider": self.market.name(),
                        "reconciled": reconciled,
                        "hourly_cost": c.hourly_cost,
                        "upfront": c.upfront,
                        "start": c.start.to_datetime().to_rfc3339(),
                        "end": c.end.to_datetime().to_rfc3339(),
                        "expected_savings": p.action.expected_savings,
                    })),
                )
                .await?;
        }
        self.failpoint.check(Step::AfterExecutedEvent)?;
        self.proposals
            .finish_execution(&p.id, &purchase.commitment.id, &purchase.request_id, now)
            .await?;
        Ok(Outcome::Executed {
            proposal_id: p.id.clone(),
            commitment_id: purchase.commitment.id,
            reconciled,
        })
    }

    async fn provider_failed(
        &self,
        p: &Proposal,
        key: &str,
        e: ProviderError,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ExecuteError> {
        let retryable = e.retryable();
        let error = e.to_string();
        // A refused exchange carries the quote: the audit keeps what the provider offered.
        let quote = match &e {
            ProviderError::ExchangeRefused { quote, .. } => Some(quote.clone()),
            _ => None,
        };
        if retryable {
            // Stays `executing`: the next reconcile looks the key up and retries.
            self.proposals
                .note(&p.id, &format!("retrying: {error}"), now)
                .await?;
        } else {
            self.proposals.fail(&p.id, &error, now).await?;
        }
        let mut event = NewEvent::new(
            now,
            DAEMON_ACTOR,
            &p.id,
            Failed {
                proposal_id: p.id.clone(),
                idempotency_key: Some(key.into()),
                error: error.clone(),
                retryable,
            },
        );
        if !matches!(p.action.operation, Operation::Purchase) {
            event = event.with_rationale(json!({
                "provider": self.market.name(),
                "operation": p.action.operation,
                "quote": quote,
            }));
        }
        self.audit.append(event).await?;
        Ok(Outcome::Failed {
            proposal_id: p.id.clone(),
            error,
            retryable,
        })
    }
}

#[cfg(test)]
mod tests;
