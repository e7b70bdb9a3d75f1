//! Proposals: one planned purchase waiting for (or past) a human decision, stored in the
//! database with its lifecycle
//!
//! ```text
//! proposed ──> approved ──> executing ──> executed
//!    │            │             ├───────> failed
//!    ├──> rejected │             └───────> needs_review ──> executed / failed (by a person)
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
//! Every state change commits in one transaction with its audit event ([`journal`] builds
//! them), so the log can never miss a step the store took, nor hold one it did not. Approvals
//! bind to the action's digest ([`ActionDigest::digest`]): the executor counts only the
//! `approved` events in the log that name the digest of the action it is about to execute.

pub mod journal;

use crate::audit::{canonical::canonical_json, AuditError, NewEvent};
use crate::domain::Money;
use crate::policy::RecentSpend;
use crate::store::sql::{self, ColumnError, Row, Tx, Val};
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
    /// A provider call whose outcome could not be established: waits for a person.
    #[serde(rename = "needs_review")]
    NeedsReview,
}

impl ProposalState {
    pub const ALL: [ProposalState; 8] = [
        ProposalState::Proposed,
        ProposalState::Approved,
        ProposalState::Rejected,
        ProposalState::Expired,
        ProposalState::Executing,
        ProposalState::Executed,
        ProposalState::Failed,
        ProposalState::NeedsReview,
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
            ProposalState::NeedsReview => "needs_review",
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

pub use crate::domain::purchase::PlannedAction;

/// What only the service knows how to compute of a planned action: the digest approvals bind to
/// (in the audit log's canonical JSON).
pub trait ActionDigest {
    /// SHA-256 (hex) of exactly what the action does at the provider and at what price: the
    /// operation, the spec and the approved ceilings (hourly cost, upfront), in canonical JSON.
    /// The plan's expectations (savings, utilization, summary) are not part of it: they explain
    /// the action, they do not change what is bought. Approvals name this digest, and the
    /// executor refuses an action whose digest no longer matches them.
    fn digest(&self) -> String;
}

impl ActionDigest for PlannedAction {
    fn digest(&self) -> String {
        let value = serde_json::json!({
            "operation": self.operation,
            "spec": self.spec,
            "hourly_cost": self.hourly_cost,
            "upfront": self.upfront,
        });
        hex::encode(Sha256::digest(canonical_json(&value).as_bytes()))
    }
}

/// One person's decision on a proposal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub actor: String,
    pub approve: bool,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    /// The action digest decided on (None for decisions stored before digests existed).
    #[serde(default)]
    pub action_digest: Option<String>,
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
    /// The action's digest when it was proposed (None for proposals stored before digests).
    #[serde(default)]
    pub action_digest: Option<String>,
    /// Provider calls started so far.
    #[serde(default)]
    pub attempts: u32,
    /// When the first provider call started (database clock): reconciliation looks for what
    /// any call could have created since then.
    #[serde(default)]
    pub first_call_at: Option<DateTime<Utc>>,
    /// Set while a provider call's outcome is not recorded: a crash or an unknown answer
    /// leaves it set, and nothing is sent again before the provider has been asked.
    #[serde(default)]
    pub call_started_at: Option<DateTime<Utc>>,
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
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The executor lease was lost (another replica holds it, or this one was paused past its
    /// TTL): the provider call was not recorded and must not be made.
    #[error(
        "proposal {0}: the executor lease is no longer held by this replica; no provider call"
    )]
    Fenced(String),
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

fn decode_decisions(id: &str, rows: &[Row]) -> Result<Vec<Decision>, ProposalError> {
    let c = |e: ColumnError| ProposalError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    };
    rows.iter()
        .map(|d| {
            Ok(Decision {
                actor: d.text(0).map_err(c)?,
                approve: d.text(1).map_err(c)? == "approve",
                at: from_ms(d.int(2).map_err(c)?),
                reason: d.opt_text(3).map_err(c)?,
                action_digest: d.opt_text(4).map_err(c)?,
            })
        })
        .collect()
}

/// Proof that this replica held the executor lease when it last confirmed it
/// ([`crate::execute::lease::Lease::fence`]): checked again by the database in the transaction
/// that records a provider call ([`ProposalStore::start_call`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub holder: String,
    pub token: i64,
}

/// Checks, inside the caller's transaction, that `fence` still holds its lease on the
/// database's clock. On PostgreSQL the lease row stays locked until the caller commits, so a
/// takeover waits for the intent being recorded and then sees it.
pub(crate) async fn check_fence(tx: &mut Tx, fence: &Fence) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "SELECT token FROM leases WHERE name = $1 AND holder = $2 AND token = $3 \
         AND expires_at_ms > {}{}",
        tx.now_ms_sql(),
        tx.lock_suffix()
    );
    let rows = tx
        .fetch(
            &sql,
            &[
                fence.name.clone().into(),
                fence.holder.clone().into(),
                fence.token.into(),
            ],
        )
        .await?;
    Ok(rows.len() == 1)
}

/// What one decision says: a person's approval (with an optional reason), a person's rejection
/// (with its reason), or an approval on a policy's authority (Autopilot).
enum Verdict<'a> {
    Approve(Option<&'a str>),
    Reject(&'a str),
    Policy,
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
     provider_request_id, outcome, action_digest, attempts, first_call_at_ms, call_started_at_ms";

/// A proposal's decisions, oldest first (read by `decode` and, inside a transaction, `locked`).
const DECISIONS: &str = "SELECT actor, decision, decided_at_ms, reason, action_digest \
     FROM proposal_decisions WHERE proposal_id = $1 ORDER BY decided_at_ms, actor";

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

    /// Stores a new proposal in state `proposed`, with its `action_proposed` event (the
    /// journal's facts plus `rationale`'s fields) in the same transaction.
    pub async fn create(
        &self,
        new: &NewProposal,
        now: DateTime<Utc>,
    ) -> Result<Proposal, ProposalError> {
        self.create_with(new, now, serde_json::Value::Null).await
    }

    /// [`create`](Self::create) with more rationale for the event (the policy checks, the
    /// verdict): an object whose fields are added to the journal's.
    pub async fn create_with(
        &self,
        new: &NewProposal,
        now: DateTime<Utc>,
        rationale: serde_json::Value,
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
        let needed = new.approvals_needed.clamp(1, 2);
        let proposal = Proposal {
            id: id.clone(),
            plan_id: new.plan_id.clone(),
            created_at: from_ms(ms(now)),
            expires_at: from_ms(ms(now + new.max_age)),
            updated_at: from_ms(ms(now)),
            state: ProposalState::Proposed,
            proposer: new.proposer.clone(),
            approvals_needed: needed,
            policy: new.policy.clone(),
            action: a.clone(),
            idempotency_key: None,
            requested_at: None,
            commitment_id: None,
            provider_request_id: None,
            outcome: None,
            decisions: Vec::new(),
            action_digest: Some(a.digest()),
            attempts: 0,
            first_call_at: None,
            call_started_at: None,
        };
        let mut event = journal::proposed(&id, &new.plan_id, a, &new.policy, Some(needed), now);
        if let serde_json::Value::Object(extra) = rationale {
            for (k, v) in extra {
                event.rationale[k] = v;
            }
        }
        let mut tx = Tx::begin(&self.store).await.map_err(db("begin"))?;
        tx.execute(
            "INSERT INTO proposals (id, plan_id, created_at_ms, expires_at_ms, updated_at_ms, state, \
             proposer, approvals_needed, policy, provider, instrument, hourly_commitment_micros, \
             upfront_micros, expected_savings_micros, action, summary, action_digest, \
             given_up_hourly_micros) \
             VALUES ($1, $2, $3, $4, $3, 'proposed', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                id.clone().into(),
                new.plan_id.clone().into(),
                ms(now).into(),
                ms(now + new.max_age).into(),
                new.proposer.clone().into(),
                i64::from(needed).into(),
                new.policy.clone().into(),
                a.spec.provider.as_str().into(),
                a.spec.instrument.as_str().into(),
                a.hourly_cost.micros().into(),
                a.upfront.micros().into(),
                a.expected_savings.micros().into(),
                action.into(),
                a.describe().into(),
                proposal.action_digest.clone().into(),
                a.facts().hourly_given_up.micros().into(),
            ],
        )
        .await
        .map_err(db("inserting a proposal"))?;
        crate::audit::AuditLog::append_in(&mut tx, event).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(proposal)
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
        let mut p = self.decode_row(row)?;
        let rows = sql::fetch(&self.store, DECISIONS, &[p.id.clone().into()])
            .await
            .map_err(db("reading decisions"))?;
        p.decisions = decode_decisions(&p.id, &rows)?;
        Ok(p)
    }

    /// A proposal row without its decisions.
    fn decode_row(&self, row: &Row) -> Result<Proposal, ProposalError> {
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
            decisions: Vec::new(),
            action_digest: row.opt_text(15).map_err(c)?,
            attempts: u32::try_from(row.int(16).map_err(c)?).unwrap_or(u32::MAX),
            first_call_at: row.opt_int(17).map_err(c)?.map(from_ms),
            call_started_at: row.opt_int(18).map_err(c)?.map(from_ms),
        })
    }

    /// Reads a proposal inside `tx`, locking its row on PostgreSQL (SQLite's transaction
    /// already holds the write lock), so the decision taken on it cannot go stale.
    async fn locked(&self, tx: &mut Tx, id: &str) -> Result<Proposal, ProposalError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM proposals WHERE id = $1{}",
            tx.lock_suffix()
        );
        let rows = tx
            .fetch(&sql, &[id.into()])
            .await
            .map_err(db("reading a proposal"))?;
        let row = rows
            .first()
            .ok_or_else(|| ProposalError::NotFound(id.to_string()))?;
        let mut p = self.decode_row(row)?;
        let decisions = tx
            .fetch(DECISIONS, &[id.into()])
            .await
            .map_err(db("reading decisions"))?;
        p.decisions = decode_decisions(id, &decisions)?;
        Ok(p)
    }

    /// Compare-and-set of the state inside `tx`; true when this call made the transition.
    async fn transition_in(
        tx: &mut Tx,
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
        let changed = tx
            .execute(
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

    /// One state change and its audit event, in one transaction: true when this call made the
    /// transition (and the event was recorded), false when the proposal was not in `from`
    /// (nothing recorded).
    pub async fn transition(
        &self,
        id: &str,
        from: &[ProposalState],
        to: ProposalState,
        now: DateTime<Utc>,
        outcome: Option<&str>,
        event: NewEvent,
    ) -> Result<bool, ProposalError> {
        let mut tx = Tx::begin(&self.store).await.map_err(db("begin"))?;
        if !Self::transition_in(&mut tx, id, from, to, now, outcome).await? {
            return Ok(false);
        }
        crate::audit::AuditLog::append_in(&mut tx, event).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(true)
    }

    /// Records an approval, with its `approved` event naming the action digest, in one
    /// transaction. Refused when the proposal is not `proposed` (already decided, expired,
    /// superseded, executing...), when it is past its age (it is expired on the spot, with its
    /// event), when the approver proposed it, or when the approver already decided. The
    /// proposal becomes `approved` once it has as many distinct approvals as it needs.
    pub async fn approve(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<Approval, ProposalError> {
        self.decide(id, actor, now, Verdict::Approve(reason)).await
    }

    /// Records a rejection (a reason is required: finance reads it), with its event.
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
        Ok(self
            .decide(id, actor, now, Verdict::Reject(reason))
            .await?
            .proposal)
    }

    /// Moves a proposal straight to `approved` on a policy's authority (Autopilot within
    /// guardrails). The decision is recorded under `actor` (e.g. "autopilot:aws").
    pub async fn approve_by_policy(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Proposal, ProposalError> {
        Ok(self.decide(id, actor, now, Verdict::Policy).await?.proposal)
    }

    async fn decide(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
        verdict: Verdict<'_>,
    ) -> Result<Approval, ProposalError> {
        let mut tx = Tx::begin(&self.store).await.map_err(db("begin"))?;
        let p = self.locked(&mut tx, id).await?;
        if p.state != ProposalState::Proposed {
            return Err(ProposalError::NotOpen {
                id: id.into(),
                state: p.state,
            });
        }
        if now >= p.expires_at {
            let why = "older than the maximum proposal age";
            Self::transition_in(
                &mut tx,
                id,
                &[ProposalState::Proposed],
                ProposalState::Expired,
                now,
                Some(why),
            )
            .await?;
            let mut expired = p.clone();
            expired.outcome = Some(why.into());
            crate::audit::AuditLog::append_in(&mut tx, journal::expired(&expired, None, now))
                .await?;
            tx.commit().await.map_err(db("commit"))?;
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
        if !matches!(verdict, Verdict::Policy) && p.proposer == actor {
            return Err(ProposalError::SelfApproval {
                id: id.into(),
                actor: actor.into(),
            });
        }
        let (approve, reason) = match verdict {
            Verdict::Approve(r) => (true, r),
            Verdict::Reject(r) => (false, Some(r)),
            Verdict::Policy => (true, Some("within the policy's autopilot limits")),
        };
        // The digest of the action as stored now: what this person is shown and approves.
        let digest = p.action.digest();
        let inserted = tx
            .execute(
                "INSERT INTO proposal_decisions (proposal_id, actor, decision, decided_at_ms, reason, action_digest) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (proposal_id, actor) DO NOTHING",
                &[
                    id.into(),
                    actor.into(),
                    if approve { "approve" } else { "reject" }.into(),
                    ms(now).into(),
                    reason.map(str::to_string).into(),
                    digest.clone().into(),
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
        let mut after = p.clone();
        after.decisions.push(Decision {
            actor: actor.into(),
            approve,
            at: now,
            reason: reason.map(str::to_string),
            action_digest: Some(digest),
        });
        let complete = approve && after.approvals() >= usize::from(p.approvals_needed);
        let event = if approve {
            if complete {
                after.state = ProposalState::Approved;
            }
            journal::approved(&after, actor, reason, now)
        } else {
            after.state = ProposalState::Rejected;
            journal::rejected(&after, actor, reason.unwrap_or_default(), now)
        };
        let to = match (approve, complete) {
            (true, true) => Some((ProposalState::Approved, None)),
            (true, false) => None,
            (false, _) => Some((
                ProposalState::Rejected,
                Some(format!(
                    "rejected by {actor}: {}",
                    reason.unwrap_or_default()
                )),
            )),
        };
        if let Some((to, outcome)) = to {
            if !Self::transition_in(
                &mut tx,
                id,
                &[ProposalState::Proposed],
                to,
                now,
                outcome.as_deref(),
            )
            .await?
            {
                return Err(ProposalError::NotOpen {
                    id: id.into(),
                    state: p.state,
                });
            }
        }
        crate::audit::AuditLog::append_in(&mut tx, event).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(Approval {
            proposal: self.require(id).await?,
            complete,
        })
    }

    /// Expires every `proposed` proposal past its age, each with its event; returns the ones
    /// this call expired.
    pub async fn expire_aged(&self, now: DateTime<Utc>) -> Result<Vec<Proposal>, ProposalError> {
        let ids = self
            .ids_where(
                "state = 'proposed' AND expires_at_ms <= $1",
                &[ms(now).into()],
            )
            .await?;
        self.expire(
            ids,
            &[ProposalState::Proposed],
            None,
            "older than the maximum proposal age",
            now,
        )
        .await
    }

    /// Expires every open (`proposed` or `approved`) proposal of other plans, each with its
    /// event: a newer plan supersedes them. Returns the ones this call expired.
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
        let why = format!("superseded by plan {plan_id}");
        self.expire(
            ids,
            &[ProposalState::Proposed, ProposalState::Approved],
            Some(plan_id),
            &why,
            now,
        )
        .await
    }

    async fn expire(
        &self,
        ids: Vec<String>,
        from: &[ProposalState],
        superseded_by: Option<&str>,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Proposal>, ProposalError> {
        let mut out = Vec::new();
        for id in ids {
            let mut tx = Tx::begin(&self.store).await.map_err(db("begin"))?;
            let mut p = self.locked(&mut tx, &id).await?;
            if !Self::transition_in(&mut tx, &id, from, ProposalState::Expired, now, Some(why))
                .await?
            {
                continue;
            }
            p.state = ProposalState::Expired;
            p.outcome = Some(why.into());
            p.updated_at = now;
            crate::audit::AuditLog::append_in(&mut tx, journal::expired(&p, superseded_by, now))
                .await?;
            tx.commit().await.map_err(db("commit"))?;
            out.push(p);
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

    /// Records that a provider call is about to be made, and only if `fence` still holds the
    /// executor lease on the database's clock, all in one transaction with the
    /// `execution_requested` event: the state becomes (or stays) `executing`, the key and the
    /// first request time are kept, the attempt is counted and `call_started_at` is set on the
    /// database's clock. From `executing`, only a proposal with no call in flight
    /// (`call_started_at` unset) may start another. Ok(None): another executor moved it first.
    /// Err(Fenced): the lease is lost; nothing was recorded and nothing may be called.
    pub async fn start_call(
        &self,
        id: &str,
        fence: Option<&Fence>,
        key: &str,
        from: ProposalState,
        now: DateTime<Utc>,
        event: impl FnOnce(&Proposal) -> NewEvent,
    ) -> Result<Option<Proposal>, ProposalError> {
        let mut tx = Tx::begin(&self.store).await.map_err(db("begin"))?;
        if let Some(fence) = fence {
            if !check_fence(&mut tx, fence)
                .await
                .map_err(db("checking the executor lease"))?
            {
                return Err(ProposalError::Fenced(id.into()));
            }
        }
        let db_now = tx.now_ms_sql();
        let changed = tx
            .execute(
                &format!(
                    "UPDATE proposals SET state = 'executing', idempotency_key = $1, \
                     requested_at_ms = COALESCE(requested_at_ms, $2), updated_at_ms = $2, \
                     attempts = attempts + 1, call_started_at_ms = {db_now}, \
                     first_call_at_ms = COALESCE(first_call_at_ms, {db_now}) \
                     WHERE id = $3 AND state = $4 AND (state = 'approved' OR call_started_at_ms IS NULL)"
                ),
                &[key.into(), ms(now).into(), id.into(), from.as_str().into()],
            )
            .await
            .map_err(db("recording a provider call"))?;
        if changed != 1 {
            return Ok(None);
        }
        let p = self.locked(&mut tx, id).await?;
        crate::audit::AuditLog::append_in(&mut tx, event(&p)).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(Some(p))
    }

    /// The provider call in flight is known not to have been applied (refused before acting,
    /// or throttled), or was made under a client token the provider deduplicates: clears
    /// `call_started_at` so a later attempt may be made, notes why, records `event`.
    pub async fn call_not_applied(
        &self,
        id: &str,
        note: &str,
        now: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<bool, ProposalError> {
        let mut tx = Tx::begin(&self.store).await.map_err(db("begin"))?;
        let changed = tx
            .execute(
                "UPDATE proposals SET call_started_at_ms = NULL, outcome = $1, updated_at_ms = $2 \
                 WHERE id = $3 AND state = 'executing'",
                &[note.into(), ms(now).into(), id.into()],
            )
            .await
            .map_err(db("noting an outcome"))?;
        if changed != 1 {
            return Ok(false);
        }
        crate::audit::AuditLog::append_in(&mut tx, event).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(true)
    }

    /// `executing` (or `needs_review`, settled by a person) -> `executed` with the provider's
    /// ids, and its event, in one transaction.
    pub async fn finish_execution(
        &self,
        id: &str,
        commitment_id: &str,
        request_id: &str,
        now: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<bool, ProposalError> {
        let mut tx = Tx::begin(&self.store).await.map_err(db("begin"))?;
        let changed = tx
            .execute(
                "UPDATE proposals SET state = 'executed', commitment_id = $1, provider_request_id = $2, \
                 updated_at_ms = $3, call_started_at_ms = NULL \
                 WHERE id = $4 AND state IN ('executing', 'needs_review')",
                &[
                    commitment_id.into(),
                    request_id.into(),
                    ms(now).into(),
                    id.into(),
                ],
            )
            .await
            .map_err(db("recording an execution"))?;
        if changed != 1 {
            return Ok(false);
        }
        crate::audit::AuditLog::append_in(&mut tx, event).await?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(true)
    }

    /// `approved`, `executing` or `needs_review` -> `failed`, with its event.
    pub async fn fail(
        &self,
        id: &str,
        outcome: &str,
        now: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<bool, ProposalError> {
        self.transition(
            id,
            &[
                ProposalState::Approved,
                ProposalState::Executing,
                ProposalState::NeedsReview,
            ],
            ProposalState::Failed,
            now,
            Some(outcome),
            event,
        )
        .await
    }

    /// `executing` (or `approved`) -> `needs_review`: the outcome of a provider call could not
    /// be established; never retried automatically.
    pub async fn park(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
        event: NewEvent,
    ) -> Result<bool, ProposalError> {
        self.transition(
            id,
            &[ProposalState::Executing, ProposalState::Approved],
            ProposalState::NeedsReview,
            now,
            Some(reason),
            event,
        )
        .await
    }

    /// What was committed (or is being committed: `executing` and `needs_review` count, since
    /// the purchase may have happened) in the policy windows: since the start of the UTC day
    /// and the last 30 days.
    pub async fn recent_spend(&self, now: DateTime<Utc>) -> Result<RecentSpend, ProposalError> {
        self.recent_spend_except(now, None).await
    }

    /// [`recent_spend`](Self::recent_spend) without one proposal: the one being judged again
    /// before a retry, which must not count against itself.
    pub async fn recent_spend_except(
        &self,
        now: DateTime<Utc>,
        except: Option<&str>,
    ) -> Result<RecentSpend, ProposalError> {
        let day_start = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(now);
        let except = except.unwrap_or("").to_string();
        let sum = |since: DateTime<Utc>| {
            let store = self.store.clone();
            let except = except.clone();
            async move {
                let rows = sql::fetch(
                    &store,
                    "SELECT CAST(COALESCE(SUM(hourly_commitment_micros), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(upfront_micros), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(given_up_hourly_micros), 0) AS BIGINT) \
                     FROM proposals WHERE state IN ('executing', 'executed', 'needs_review') \
                     AND requested_at_ms >= $1 AND id <> $2",
                    &[ms(since).into(), except.into()],
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
                    Money::from_micros(row.int(2).map_err(c)?),
                ))
            }
        };
        let (hourly_today, upfront_today, given_up_today) = sum(day_start).await?;
        let (hourly_30, upfront_30, given_up_30) = sum(now - Duration::days(30)).await?;
        Ok(RecentSpend {
            hourly_commitment_today: hourly_today,
            hourly_commitment_30_days: hourly_30,
            upfront_today,
            upfront_30_days: upfront_30,
            // Filled from the store by the execute/proposals owner (issue #24): until then the
            // give-up caps see only the give-ups of the current cycle.
            hourly_given_up_today: given_up_today,
            hourly_given_up_30_days: given_up_30,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
