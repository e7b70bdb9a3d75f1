//! Proposals: one planned purchase waiting for (or past) a human decision, stored in the
//! database with its lifecycle
//!
//! ```text
//! proposed ──> approved ──> executing ──> executed
//!    │            │             └───────> failed
//!    ├──> rejected │
//!    └──> expired <┘   (a newer plan supersedes it, or it is older than the configured age)
//! ```
//!
//! Every transition is one compare-and-set `UPDATE ... WHERE state = <expected>`, so two
//! replicas, an HTTP approval racing the expiry sweep, or a retried request can never move a
//! proposal twice: the loser sees zero rows changed and gets a typed refusal. The rules people
//! rely on live here, not in the API: an expired or decided proposal cannot be approved, the
//! proposer never approves their own proposal, and a proposal the policy marks as large needs
//! two distinct approvers (the `(proposal_id, actor)` primary key of `proposal_decisions`).
//!
//! This module only stores; the audit events for each step are written by the callers
//! (`daemon`, `api`, `cli`) through [`crate::execute`]'s journal, right after the change.

use crate::domain::Money;
use crate::policy::RecentSpend;
use crate::providers::sql::{self, ColumnError, Row, Val};
use crate::providers::{Operation, PurchaseSpec};
use crate::store::Store;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Where a proposal is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalState {
    Proposed,
    Approved,
    Rejected,
    Expired,
    Executing,
    Executed,
    Failed,
}

impl ProposalState {
    pub const ALL: [ProposalState; 7] = [
        ProposalState::Proposed,
        ProposalState::Approved,
        ProposalState::Rejected,
        ProposalState::Expired,
        ProposalState::Executing,
        ProposalState::Executed,
        ProposalState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Proposed => "proposed",
            ProposalState::Approved => "approved",
            ProposalState::Rejected => "rejected",
            ProposalState::Expired => "expired",
            ProposalState::Executing => "executing",
            ProposalState::Executed => "executed",
            ProposalState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<ProposalState> {
        ProposalState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// No further transition is possible.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ProposalState::Rejected
                | ProposalState::Expired
                | ProposalState::Executed
                | ProposalState::Failed
        )
    }
}

impl fmt::Display for ProposalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One action of a plan, as a proposal carries it: what to buy (or return, or exchange into)
/// and what the plan expects of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// Purchase, return or exchange. Absent in proposals stored before returns and exchanges
    /// existed, which were all purchases.
    #[serde(default)]
    pub operation: Operation,
    /// Purchase: what to buy. Return: the commitment given back. Exchange: the target.
    pub spec: PurchaseSpec,
    /// Amortized USD per hour the plan expects to pay (the approved price ceiling).
    pub hourly_cost: Money,
    /// Upfront payment the plan expects (the approved ceiling).
    pub upfront: Money,
    /// Expected savings over the planning window against on demand.
    pub expected_savings: Money,
    /// Expected utilization at the policy's low demand quantile, if the plan computed it.
    #[serde(default)]
    pub expected_utilization: Option<f64>,
    /// The plan's one-line rationale.
    #[serde(default)]
    pub summary: String,
}

impl PlannedAction {
    /// What policy judges of it.
    pub fn facts(&self) -> crate::policy::ActionFacts {
        crate::policy::ActionFacts {
            provider: self.spec.provider,
            account: self.spec.account.clone(),
            instrument: self.spec.instrument,
            term: self.spec.term,
            payment: self.spec.payment,
            hourly_commitment: self.hourly_cost,
            upfront: self.upfront,
            expected_utilization: self.expected_utilization,
            operation: match self.operation {
                Operation::Purchase => crate::policy::OperationKind::Purchase,
                Operation::Return { .. } => crate::policy::OperationKind::Return,
                Operation::Sell { .. } => crate::policy::OperationKind::Sale,
                Operation::Exchange { .. } => crate::policy::OperationKind::Exchange,
            },
            hourly_given_up: match &self.operation {
                Operation::Purchase => Money::ZERO,
                // An exchange carries its sources' remaining value, not their hourly cost. AWS
                // exchanges into a target worth at least that value over the sources' remaining
                // term (the target keeps their end date), so the target's hourly cost bounds
                // the sources' from above: the give-up caps and thresholds err on the side of
                // asking a human.
                Operation::Exchange { .. } => self.hourly_cost,
                Operation::Return { .. } | Operation::Sell { .. } => {
                    self.operation.hourly_cost_removed().unwrap_or(Money::ZERO)
                }
            },
        }
    }

    /// One line for people, naming the operation: "buy AWS ...", "return sp-1 (AWS ...)",
    /// "exchange ri-1 into AWS ...".
    pub fn describe(&self) -> String {
        match &self.operation {
            Operation::Purchase => format!("buy {}", self.spec.describe()),
            Operation::Return { commitment_id, .. } => {
                format!("return {commitment_id} ({})", self.spec.describe())
            }
            Operation::Sell { commitment_id, .. } => format!(
                "list {commitment_id} on the RI Marketplace ({})",
                self.spec.describe()
            ),
            Operation::Exchange { source_ids, .. } => format!(
                "exchange {} into {}",
                source_ids.join("+"),
                self.spec.describe()
            ),
        }
    }
}

/// One person's decision on a proposal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub actor: String,
    pub approve: bool,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

/// A stored proposal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: String,
    pub plan_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub state: ProposalState,
    pub proposer: String,
    pub approvals_needed: u8,
    /// The policy that governs it (its name).
    pub policy: String,
    pub action: PlannedAction,
    pub idempotency_key: Option<String>,
    pub requested_at: Option<DateTime<Utc>>,
    pub commitment_id: Option<String>,
    pub provider_request_id: Option<String>,
    /// Why it was rejected, expired or failed.
    pub outcome: Option<String>,
    pub decisions: Vec<Decision>,
}

impl Proposal {
    pub fn approvals(&self) -> usize {
        self.decisions.iter().filter(|d| d.approve).count()
    }
}

/// What the daemon asks to be proposed.
#[derive(Clone, Debug, PartialEq)]
pub struct NewProposal {
    pub plan_id: String,
    /// Position of the action in its plan (makes the id unique within the plan).
    pub index: usize,
    pub proposer: String,
    pub approvals_needed: u8,
    pub policy: String,
    pub action: PlannedAction,
    pub max_age: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProposalError {
    #[error("proposal {0} does not exist")]
    NotFound(String),
    #[error("proposal {id} is {state}, not open for decisions")]
    NotOpen { id: String, state: ProposalState },
    #[error("proposal {id} expired at {expires_at}; approval refused")]
    Expired {
        id: String,
        expires_at: DateTime<Utc>,
    },
    #[error("proposal {id} was proposed by {actor}, who cannot approve it")]
    SelfApproval { id: String, actor: String },
    #[error("{actor} already decided on proposal {id}")]
    AlreadyDecided { id: String, actor: String },
    #[error("a rejection of proposal {0} needs a reason")]
    NoReason(String),
    #[error("proposals store: {op}: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("proposal {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> ProposalError {
    move |source| ProposalError::Database { op, source }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The outcome of an approval that was accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    pub proposal: Proposal,
    /// True when this approval was the last one needed (the proposal is now `approved`).
    pub complete: bool,
}

const COLUMNS: &str = "id, plan_id, created_at_ms, expires_at_ms, updated_at_ms, state, proposer, \
     approvals_needed, policy, action, idempotency_key, requested_at_ms, commitment_id, \
     provider_request_id, outcome";

/// The proposals table and its decisions.
#[derive(Clone, Debug)]
pub struct ProposalStore {
    store: Store,
}

impl ProposalStore {
    pub fn new(store: Store) -> ProposalStore {
        ProposalStore { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a new proposal in state `proposed`.
    pub async fn create(
        &self,
        new: &NewProposal,
        now: DateTime<Utc>,
    ) -> Result<Proposal, ProposalError> {
        let digest = hex::encode(Sha256::digest(
            format!("{}\n{}\n{}", new.plan_id, new.index, ms(now)).as_bytes(),
        ));
        let id = format!("p-{}", &digest[..12]);
        let action = serde_json::to_string(&new.action).map_err(|e| ProposalError::Corrupt {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        let a = &new.action;
        sql::execute(
            &self.store,
            "INSERT INTO proposals (id, plan_id, created_at_ms, expires_at_ms, updated_at_ms, state, \
             proposer, approvals_needed, policy, provider, instrument, hourly_commitment_micros, \
             upfront_micros, expected_savings_micros, action, summary) \
             VALUES ($1, $2, $3, $4, $3, 'proposed', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                id.clone().into(),
                new.plan_id.clone().into(),
                ms(now).into(),
                ms(now + new.max_age).into(),
                new.proposer.clone().into(),
                i64::from(new.approvals_needed.clamp(1, 2)).into(),
                new.policy.clone().into(),
                a.spec.provider.as_str().into(),
                a.spec.instrument.as_str().into(),
                a.hourly_cost.micros().into(),
                a.upfront.micros().into(),
                a.expected_savings.micros().into(),
                action.into(),
                a.describe().into(),
            ],
        )
        .await
        .map_err(db("inserting a proposal"))?;
        self.require(&id).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Proposal>, ProposalError> {
        let rows = sql::fetch(
            &self.store,
            &format!("SELECT {COLUMNS} FROM proposals WHERE id = $1"),
            &[id.into()],
        )
        .await
        .map_err(db("reading a proposal"))?;
        match rows.first() {
            Some(row) => Ok(Some(self.decode(row).await?)),
            None => Ok(None),
        }
    }

    async fn require(&self, id: &str) -> Result<Proposal, ProposalError> {
        self.get(id)
            .await?
            .ok_or_else(|| ProposalError::NotFound(id.to_string()))
    }

    /// Proposals, newest first, optionally in one state.
    pub async fn list(&self, state: Option<ProposalState>) -> Result<Vec<Proposal>, ProposalError> {
        let rows = match state {
            Some(s) => sql::fetch(
                &self.store,
                &format!("SELECT {COLUMNS} FROM proposals WHERE state = $1 ORDER BY created_at_ms DESC, id"),
                &[s.as_str().into()],
            )
            .await,
            None => sql::fetch(
                &self.store,
                &format!("SELECT {COLUMNS} FROM proposals ORDER BY created_at_ms DESC, id"),
                &[],
            )
            .await,
        }
        .map_err(db("listing proposals"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.decode(row).await?);
        }
        Ok(out)
    }

    /// Counts per state (for /metrics).
    pub async fn counts(&self) -> Result<Vec<(ProposalState, i64)>, ProposalError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT state, COUNT(*) FROM proposals GROUP BY state",
            &[],
        )
        .await
        .map_err(db("counting proposals"))?;
        let mut out = Vec::new();
        for r in rows {
            let corrupt = |e: ColumnError| ProposalError::Corrupt {
                id: "(count)".into(),
                reason: e.to_string(),
            };
            let state = r.text(0).map_err(corrupt)?;
            let n = r.int(1).map_err(corrupt)?;
            if let Some(s) = ProposalState::parse(&state) {
                out.push((s, n));
            }
        }
        Ok(out)
    }

    async fn decode(&self, row: &Row) -> Result<Proposal, ProposalError> {
        let id = row.text(0).unwrap_or_default();
        let corrupt = |reason: String| ProposalError::Corrupt {
            id: id.clone(),
            reason,
        };
        let c = |e: ColumnError| corrupt(e.to_string());
        let state_text = row.text(5).map_err(c)?;
        let state = ProposalState::parse(&state_text)
            .ok_or_else(|| corrupt(format!("unknown state '{state_text}'")))?;
        let action: PlannedAction = serde_json::from_str(&row.text(9).map_err(c)?)
            .map_err(|e| corrupt(format!("action: {e}")))?;
        let decisions = sql::fetch(
            &self.store,
            "SELECT actor, decision, decided_at_ms, reason FROM proposal_decisions \
             WHERE proposal_id = $1 ORDER BY decided_at_ms, actor",
            &[id.clone().into()],
        )
        .await
        .map_err(db("reading decisions"))?
        .iter()
        .map(|d| {
            Ok(Decision {
                actor: d.text(0).map_err(c)?,
                approve: d.text(1).map_err(c)? == "approve",
                at: from_ms(d.int(2).map_err(c)?),
                reason: d.opt_text(3).map_err(c)?,
            })
        })
        .collect::<Result<Vec<_>, ProposalError>>()?;
        Ok(Proposal {
            id: id.clone(),
            plan_id: row.text(1).map_err(c)?,
            created_at: from_ms(row.int(2).map_err(c)?),
            expires_at: from_ms(row.int(3).map_err(c)?),
            updated_at: from_ms(row.int(4).map_err(c)?),
            state,
            proposer: row.text(6).map_err(c)?,
            approvals_needed: u8::try_from(row.int(7).map_err(c)?).unwrap_or(2),
            policy: row.text(8).map_err(c)?,
            action,
            idempotency_key: row.opt_text(10).map_err(c)?,
            requested_at: row.opt_int(11).map_err(c)?.map(from_ms),
            commitment_id: row.opt_text(12).map_err(c)?,
            provider_request_id: row.opt_text(13).map_err(c)?,
            outcome: row.opt_text(14).map_err(c)?,
            decisions,
        })
    }

    /// Compare-and-set of the state; true when this call made the transition.
    async fn transition(
        &self,
        id: &str,
        from: &[ProposalState],
        to: ProposalState,
        now: DateTime<Utc>,
        outcome: Option<&str>,
    ) -> Result<bool, ProposalError> {
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
        let mut args: Vec<Val> = vec![
            to.as_str().into(),
            ms(now).into(),
            outcome.map(str::to_string).into(),
            id.into(),
        ];
        args.extend(from.iter().map(|s| Val::from(s.as_str())));
        let changed = sql::execute(
            &self.store,
            &format!(
                "UPDATE proposals SET state = $1, updated_at_ms = $2, outcome = COALESCE($3, outcome) \
                 WHERE id = $4 AND state IN ({})",
                placeholders.join(", ")
            ),
            &args,
        )
        .await
        .map_err(db("changing a proposal's state"))?;
        Ok(changed == 1)
    }

    /// Records an approval. Refused when the proposal is not `proposed` (already decided,
    /// expired, superseded, executing...), when it is past its age (it is expired on the spot),
    /// when the approver proposed it, or when the approver already decided. The proposal becomes
    /// `approved` once it has as many distinct approvals as it needs.
    pub async fn approve(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<Approval, ProposalError> {
        let p = self.open_for_decision(id, actor, now).await?;
        if p.proposer == actor {
            return Err(ProposalError::SelfApproval {
                id: id.into(),
                actor: actor.into(),
            });
        }
        self.record_decision(id, actor, true, now, reason).await?;
        let p = self.require(id).await?;
        let complete = p.approvals() >= usize::from(p.approvals_needed);
        if complete
            && !self
                .transition(
                    id,
                    &[ProposalState::Proposed],
                    ProposalState::Approved,
                    now,
                    None,
                )
                .await?
        {
            // Expired or superseded between our read and our write.
            let p = self.require(id).await?;
            return Err(ProposalError::NotOpen {
                id: id.into(),
                state: p.state,
            });
        }
        Ok(Approval {
            proposal: self.require(id).await?,
            complete,
        })
    }

    /// Records a rejection (a reason is required: finance reads it).
    pub async fn reject(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Proposal, ProposalError> {
        if reason.trim().is_empty() {
            return Err(ProposalError::NoReason(id.into()));
        }
        self.open_for_decision(id, actor, now).await?;
        self.record_decision(id, actor, false, now, Some(reason))
            .await?;
        if !self
            .transition(
                id,
                &[ProposalState::Proposed],
                ProposalState::Rejected,
                now,
                Some(&format!("rejected by {actor}: {reason}")),
            )
            .await?
        {
            let p = self.require(id).await?;
            return Err(ProposalError::NotOpen {
                id: id.into(),
                state: p.state,
            });
        }
        self.require(id).await
    }

    async fn open_for_decision(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Proposal, ProposalError> {
        let p = self.require(id).await?;
        if p.state != ProposalState::Proposed {
            return Err(ProposalError::NotOpen {
                id: id.into(),
                state: p.state,
            });
        }
        if now >= p.expires_at {
            self.transition(
                id,
                &[ProposalState::Proposed],
                ProposalState::Expired,
                now,
                Some("older than the maximum proposal age"),
            )
            .await?;
            return Err(ProposalError::Expired {
                id: id.into(),
                expires_at: p.expires_at,
            });
        }
        if p.decisions.iter().any(|d| d.actor == actor) {
            return Err(ProposalError::AlreadyDecided {
                id: id.into(),
                actor: actor.into(),
            });
        }
        Ok(p)
    }

    async fn record_decision(
        &self,
        id: &str,
        actor: &str,
        approve: bool,
        now: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<(), ProposalError> {
        // ON CONFLICT DO NOTHING + the row count: a concurrent second click by the same person
        // is refused instead of counting twice.
        let inserted = sql::execute(
            &self.store,
            "INSERT INTO proposal_decisions (proposal_id, actor, decision, decided_at_ms, reason) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (proposal_id, actor) DO NOTHING",
            &[
                id.into(),
                actor.into(),
                if approve { "approve" } else { "reject" }.into(),
                ms(now).into(),
                reason.map(str::to_string).into(),
            ],
        )
        .await
        .map_err(db("recording a decision"))?;
        if inserted == 0 {
            return Err(ProposalError::AlreadyDecided {
                id: id.into(),
                actor: actor.into(),
            });
        }
        Ok(())
    }

    /// Moves a proposal straight to `approved` on a policy's authority (Autopilot within
    /// guardrails). The decision is recorded under `actor` (e.g. "autopilot:aws").
    pub async fn approve_by_policy(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Proposal, ProposalError> {
        self.record_decision(
            id,
            actor,
            true,
            now,
            Some("within the policy's autopilot limits"),
        )
        .await?;
        if !self
            .transition(
                id,
                &[ProposalState::Proposed],
                ProposalState::Approved,
                now,
                None,
            )
            .await?
        {
            let p = self.require(id).await?;
            return Err(ProposalError::NotOpen {
                id: id.into(),
                state: p.state,
            });
        }
        self.require(id).await
    }

    /// Expires every `proposed` proposal past its age; returns the ones this call expired.
    pub async fn expire_aged(&self, now: DateTime<Utc>) -> Result<Vec<Proposal>, ProposalError> {
        let ids = self
            .ids_where(
                "state = 'proposed' AND expires_at_ms <= $1",
                &[ms(now).into()],
            )
            .await?;
        let mut out = Vec::new();
        for id in ids {
            if self
                .transition(
                    &id,
                    &[ProposalState::Proposed],
                    ProposalState::Expired,
                    now,
                    Some("older than the maximum proposal age"),
                )
                .await?
            {
                out.push(self.require(&id).await?);
            }
        }
        Ok(out)
    }

    /// Expires every open (`proposed` or `approved`) proposal of other plans: a newer plan
    /// supersedes them. Returns the ones this call expired.
    pub async fn supersede(
        &self,
        plan_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Proposal>, ProposalError> {
        let ids = self
            .ids_where(
                "state IN ('proposed', 'approved') AND plan_id <> $1",
                &[plan_id.into()],
            )
            .await?;
        let mut out = Vec::new();
        let why = format!("superseded by plan {plan_id}");
        for id in ids {
            if self
                .transition(
                    &id,
                    &[ProposalState::Proposed, ProposalState::Approved],
                    ProposalState::Expired,
                    now,
                    Some(&why),
                )
                .await?
            {
                out.push(self.require(&id).await?);
            }
        }
        Ok(out)
    }

    async fn ids_where(&self, cond: &str, args: &[Val]) -> Result<Vec<String>, ProposalError> {
        let rows = sql::fetch(
            &self.store,
            &format!("SELECT id FROM proposals WHERE {cond} ORDER BY created_at_ms, id"),
            args,
        )
        .await
        .map_err(db("selecting proposals"))?;
        rows.iter()
            .map(|r| {
                r.text(0).map_err(|e| ProposalError::Corrupt {
                    id: "(id)".into(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// `approved` -> `executing`, recording the idempotency key and the request time in the same
    /// statement: once this returns true, the intent is durable and any later run reconciles
    /// instead of buying again.
    pub async fn begin_execution(
        &self,
        id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ProposalError> {
        let changed = sql::execute(
            &self.store,
            "UPDATE proposals SET state = 'executing', idempotency_key = $1, requested_at_ms = $2, \
             updated_at_ms = $2 WHERE id = $3 AND state = 'approved'",
            &[key.into(), ms(now).into(), id.into()],
        )
        .await
        .map_err(db("recording an execution request"))?;
        Ok(changed == 1)
    }

    /// `executing` -> `executed` with the provider's ids.
    pub async fn finish_execution(
        &self,
        id: &str,
        commitment_id: &str,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ProposalError> {
        let changed = sql::execute(
            &self.store,
            "UPDATE proposals SET state = 'executed', commitment_id = $1, provider_request_id = $2, \
             updated_at_ms = $3 WHERE id = $4 AND state = 'executing'",
            &[
                commitment_id.into(),
                request_id.into(),
                ms(now).into(),
                id.into(),
            ],
        )
        .await
        .map_err(db("recording an execution"))?;
        Ok(changed == 1)
    }

    /// `approved` or `executing` -> `failed`.
    pub async fn fail(
        &self,
        id: &str,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ProposalError> {
        self.transition(
            id,
            &[ProposalState::Approved, ProposalState::Executing],
            ProposalState::Failed,
            now,
            Some(outcome),
        )
        .await
    }

    /// Notes a retryable problem on an `executing` proposal without changing its state.
    pub async fn note(
        &self,
        id: &str,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ProposalError> {
        sql::execute(
            &self.store,
            "UPDATE proposals SET outcome = $1, updated_at_ms = $2 WHERE id = $3",
            &[outcome.into(), ms(now).into(), id.into()],
        )
        .await
        .map_err(db("noting an outcome"))?;
        Ok(())
    }

    /// What was committed (or is being committed: `executing` counts, since the purchase may
    /// have happened) in the policy windows: since the start of the UTC day and the last 30 days.
    pub async fn recent_spend(&self, now: DateTime<Utc>) -> Result<RecentSpend, ProposalError> {
        let day_start = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(now);
        let sum = |since: DateTime<Utc>| {
            let store = self.store.clone();
            async move {
                let rows = sql::fetch(
                    &store,
                    "SELECT CAST(COALESCE(SUM(hourly_commitment_micros), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(upfront_micros), 0) AS BIGINT) \
                     FROM proposals WHERE state IN ('executing', 'executed') AND requested_at_ms >= $1",
                    &[ms(since).into()],
                )
                .await
                .map_err(db("summing recent commitments"))?;
                let row = rows.first().cloned().unwrap_or(Row(vec![]));
                let c = |e: ColumnError| ProposalError::Corrupt {
                    id: "(sum)".into(),
                    reason: e.to_string(),
                };
                Ok::<_, ProposalError>((
                    Money::from_micros(row.int(0).map_err(c)?),
                    Money::from_micros(row.int(1).map_err(c)?),
                ))
            }
        };
        let (hourly_today, upfront_today) = sum(day_start).await?;
        let (hourly_30, upfront_30) = sum(now - Duration::days(30)).await?;
        Ok(RecentSpend {
            hourly_commitment_today: hourly_today,
            hourly_commitment_30_days: hourly_30,
            upfront_today,
            upfront_30_days: upfront_30,
            // Filled from the store by the execute/proposals owner (issue #24): until then the
            // give-up caps see only the give-ups of the current cycle.
            hourly_given_up_today: Money::ZERO,
            hourly_given_up_30_days: Money::ZERO,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
