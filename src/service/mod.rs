//! The service: one cycle (plan -> policy -> proposals / execution -> audit), the modes, the
//! schedules and the executor lease. It is wired and run (HTTP, signals, systemd, the lease
//! renewal task) by [`crate::startup`]; it never imports `api`.
//!
//! A cycle, run only by the replica holding the executor lease:
//! 1. reconcile `executing` proposals and execute `approved` ones (before planning, so that a
//!    fresh plan does not supersede what people approved since the last cycle);
//! 2. expire proposals past their age;
//! 3. plan, record `PlanComputed`, expire the previous plan's open proposals (superseded),
//!    unless the planner found nothing new to decide (`CyclePlan::unchanged`);
//! 4. judge each action by policy: Datapilot records a recommendation; a blocked action records
//!    `PolicyBlocked` with the rule; Copilot (or Autopilot above its limits) creates a proposal
//!    and notifies chat; Autopilot within its limits approves on the policy's authority;
//! 5. execute what Autopilot approved (limits are checked again at execution).
//!
//! Between cycles, an execution tick (its own schedule, or at once when the API records a
//! completing approval) repeats step 1.

pub mod engine;
pub mod optimizer;
pub mod plan;
pub mod schedule;

pub use crate::execute::lease;

use crate::audit::{AuditError, AuditLog, NewEvent, PlanComputed, PolicyBlocked};
use crate::config::Mode;
use crate::domain::Hour;
use crate::execute::{ExecuteError, Executor, Outcome};
use crate::notify::chat::Chat;
use crate::plan::hold::Change;
use crate::policy::{Rule, Verdict};
use crate::proposals::{NewProposal, Proposal, ProposalError, ProposalStore};
use crate::telemetry::{Metrics, Tally};
use chrono::{DateTime, Duration, Utc};
use plan::{CycleInputs, CyclePlan, PlanError, PlanSource};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error(transparent)]
    Proposal(#[from] ProposalError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("executor lease: {0}")]
    Lease(sqlx::Error),
    /// Planning without knowing what is held could buy it again: the cycle stops instead.
    #[error("reading the provider's inventory before planning: {0}")]
    Inventory(crate::markets::ProviderError),
    #[error("the planner panicked or was cancelled: {0}")]
    Join(String),
}

/// What one cycle did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CycleReport {
    /// False on a standby replica: it did nothing.
    pub leader: bool,
    pub plan: Option<CyclePlan>,
    pub proposed: Vec<Proposal>,
    /// Datapilot recommendations recorded.
    pub recommended: usize,
    /// (action index, policy, rule, reason)
    pub blocked: Vec<(usize, String, Rule, String)>,
    pub outcomes: Vec<Outcome>,
    pub expired: usize,
}

/// Everything a cycle needs. Cheap to share (`Arc`) between the scheduler and the API.
pub struct Daemon {
    pub mode: Mode,
    pub proposals: ProposalStore,
    pub audit: AuditLog,
    pub executor: Executor,
    pub planner: Arc<dyn PlanSource>,
    /// Where purchases are made; its inventory is what the planner counts as already held.
    pub market: Arc<dyn crate::markets::CommitmentMarket>,
    /// The policies in force, reloaded when their files change (shared with the executor).
    pub policies: Arc<crate::execute::policies::PolicySource>,
    pub lease: Arc<lease::Lease>,
    pub metrics: Arc<Metrics>,
    pub proposal_max_age: Duration,
    /// Where new proposals and executions that need a person are announced, if anywhere.
    pub chat: Option<Chat>,
    /// Set on shutdown: no new step starts once it is set.
    pub stopping: Arc<AtomicBool>,
}

impl Daemon {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The held savings plans the optimizer may decide to return now: commitd bought them
    /// (an executed purchase proposal names them) and they are inside AWS's return window.
    /// Plans bought by people are never returned by the daemon.
    async fn returnable(
        &self,
        held: &[crate::domain::Commitment],
        now: DateTime<Utc>,
    ) -> Result<std::collections::BTreeSet<String>, DaemonError> {
        let ours: std::collections::BTreeSet<String> = self
            .proposals
            .list(Some(crate::proposals::ProposalState::Executed))
            .await?
            .into_iter()
            .filter(|p| p.action.operation == crate::markets::Operation::Purchase)
            .filter_map(|p| p.commitment_id)
            .collect();
        Ok(held
            .iter()
            .filter(|c| ours.contains(&c.id))
            .filter(|c| crate::domain::rules::check_savings_plan_return(c, now).is_ok())
            .map(|c| c.id.clone())
            .collect())
    }

    /// Takes or renews the executor lease (on the database's clock; `now` is the cycle's
    /// business time and plays no part).
    pub async fn lead(&self, _now: DateTime<Utc>) -> Result<bool, DaemonError> {
        let leader = self.lease.try_acquire().await.map_err(DaemonError::Lease)?;
        self.metrics.set_leader(leader);
        Ok(leader)
    }

    /// Reconciles and executes approved proposals (the execution tick). Leader only.
    pub async fn execute_tick(&self, now: DateTime<Utc>) -> Result<Vec<Outcome>, DaemonError> {
        if !self.lead(now).await? {
            return Ok(Vec::new());
        }
        let mut out = self.executor.reconcile(now).await?;
        if !self.stopping() {
            out.extend(self.executor.execute_approved(now).await?);
        }
        self.count(&out);
        // What /metrics shows (it never reads the provider): read once the leader starts, and
        // again whenever a purchase changed it.
        if !self.metrics.has_inventory()
            || out.iter().any(|o| matches!(o, Outcome::Executed { .. }))
        {
            if let Ok(held) = self.market.inventory().await {
                self.metrics.set_inventory(&held, now.timestamp());
            }
        }
        self.alert(&out).await;
        // Each expiry commits with its event.
        self.proposals.expire_aged(now).await?;
        Ok(out)
    }

    fn count(&self, outcomes: &[Outcome]) {
        let mut t = Tally::default();
        for o in outcomes {
            match o {
                Outcome::Executed { .. } => t.executed += 1,
                Outcome::Failed { .. } | Outcome::NeedsReview { .. } => t.failed += 1,
                Outcome::Blocked { .. } => t.blocked += 1,
                Outcome::Skipped { .. } => {}
            }
        }
        self.metrics.tally(t);
    }

    /// One full cycle at `now`.
    pub async fn cycle(&self, now: DateTime<Utc>) -> Result<CycleReport, DaemonError> {
        let started = std::time::Instant::now();
        let result = self.cycle_inner(now).await;
        let expected = result
            .as_ref()
            .ok()
            .and_then(|r| r.plan.as_ref())
            .and_then(|p| p.expected);
        if result.as_ref().map(|r| r.leader).unwrap_or(true) {
            self.metrics.cycle(
                now.timestamp(),
                result.is_ok(),
                started.elapsed().as_secs_f64(),
                expected,
            );
        }
        result
    }

    async fn cycle_inner(&self, now: DateTime<Utc>) -> Result<CycleReport, DaemonError> {
        let mut report = CycleReport {
            leader: self.lead(now).await?,
            ..CycleReport::default()
        };
        if !report.leader {
            return Ok(report);
        }
        report.outcomes = self.execute_tick(now).await?;
        if self.stopping() {
            return Ok(report);
        }
        // What the provider holds now (including what this replica bought in earlier cycles)
        // is part of the plan's input: a re-plan must not buy it again.
        let held = self
            .market
            .inventory()
            .await
            .map_err(DaemonError::Inventory)?;
        self.metrics.set_inventory(&held, now.timestamp());
        let returnable = self.returnable(&held, now).await?;
        let gives_up = plan::GivesUp::of(self.market.as_ref());
        let listings = self
            .market
            .listings()
            .await
            .map_err(DaemonError::Inventory)?;
        let refunds = self
            .market
            .refunds(&held)
            .await
            .map_err(DaemonError::Inventory)?;
        // The market's offers price the plan as the purchase will be priced. Without them
        // (an outage of the offering API) the source rate card still prices it, and the plan
        // says so: a quote above the approved price is refused at execution anyway.
        let (offers, offers_note) = match self.market.offers(now).await {
            Ok(offers) => (offers, None),
            Err(e) => {
                tracing::warn!(error = %e, "market offers unavailable; planning from the source rate card");
                (
                    None,
                    Some(format!(
                        "market offers unavailable ({e}); priced from the source rate card"
                    )),
                )
            }
        };
        // A planner without exports reads usage from the market's billing API (AWS Cost
        // Explorer); without it there is nothing to plan from, so the cycle fails and says why.
        let usage = match self.planner.market_usage_days() {
            None => None,
            Some(days) => match self.market.usage(now, days).await {
                Ok(Some(usage)) => Some(usage),
                Ok(None) => {
                    return Err(PlanError::Failed(format!(
                        "[source] cost_explorer_days: the {} market has no usage API",
                        self.market.name()
                    ))
                    .into())
                }
                Err(e) => {
                    return Err(PlanError::Failed(format!(
                        "[source] cost_explorer_days = {days}: reading usage: {e}"
                    ))
                    .into())
                }
            },
        };
        let planner = self.planner.clone();
        let mut plan = tokio::task::spawn_blocking(move || {
            planner.plan_cycle(
                now,
                &CycleInputs {
                    held: &held,
                    returnable: &returnable,
                    offers: offers.as_ref(),
                    usage: usage.as_ref(),
                    gives_up,
                    listings: &listings,
                    refunds: &refunds,
                },
            )
        })
        .await
        .map_err(|e| DaemonError::Join(e.to_string()))??;
        plan.notes.extend(offers_note);
        self.audit
            .append(
                NewEvent::new(
                    now,
                    crate::execute::DAEMON_ACTOR,
                    &plan.plan_id,
                    PlanComputed {
                        plan_id: plan.plan_id.clone(),
                        inputs_digest: plan.inputs_digest.clone(),
                        solver_status: plan.solver_status.clone(),
                        objective: plan.objective,
                        expected_savings: plan.expected_savings,
                        actions: u32::try_from(plan.actions.len()).unwrap_or(u32::MAX),
                    },
                )
                .with_rationale(json!({
                    "mode": self.mode,
                    "expected": plan.expected,
                    "notes": plan.notes,
                    "unchanged": plan.unchanged,
                    // Each held commitment's use over the last known days (the console's
                    // commitments page shows the newest).
                    "commitment_use": plan.commitment_use,
                })),
            )
            .await?;
        self.report_anomalies(&plan, now).await?;
        // A plan that decided nothing new leaves earlier proposals standing: withdrawing them
        // would make people approve the same purchase again each cycle.
        // Each supersession commits with its event.
        if plan.unchanged.is_none() {
            report.expired += self.proposals.supersede(&plan.plan_id, now).await?.len();
        }
        // The policies in force now; a broken policy file stops the cycle here rather than
        // judging the plan by stale or default rules.
        let policies = self
            .policies
            .current()
            .map_err(|e| PlanError::Failed(format!("policies: {e}")))?;
        let mut recent = self.proposals.recent_spend(now).await?;
        let hour = Hour::from_datetime(now);
        for (index, action) in plan.actions.iter().enumerate() {
            let facts = action.facts();
            let decision = policies.evaluate(&facts, &recent, hour, self.mode);
            match decision.verdict {
                Verdict::Block => {
                    let rule = decision.blocking_rule().cloned();
                    if rule.as_ref().is_some_and(|r| r.rule == Rule::Mode) {
                        // Datapilot (globally or for this scope): a recommendation, recorded.
                        let id = format!("rec-{}-{}", plan.plan_id, index + 1);
                        self.audit
                            .append(crate::proposals::journal::proposed(
                                &id,
                                &plan.plan_id,
                                action,
                                &decision.policy,
                                None,
                                now,
                            ))
                            .await?;
                        report.recommended += 1;
                    } else {
                        let (rule, reason) = rule
                            .map(|r| (r.rule, r.detail))
                            .unwrap_or_else(|| (Rule::Policy, "blocked".into()));
                        self.audit
                            .append(
                                NewEvent::new(
                                    now,
                                    crate::execute::DAEMON_ACTOR,
                                    &plan.plan_id,
                                    PolicyBlocked {
                                        proposal_id: None,
                                        policy: decision.policy.clone(),
                                        rule: rule.to_string(),
                                        reason: reason.clone(),
                                    },
                                )
                                .with_rationale(json!({
                                    "at": "planning",
                                    "action_index": index,
                                    "what": action.describe(),
                                    "checks": decision.checks,
                                })),
                            )
                            .await?;
                        report
                            .blocked
                            .push((index, decision.policy.clone(), rule, reason));
                    }
                }
                Verdict::NeedsApproval { .. } | Verdict::Allow => {
                    let needed = match decision.verdict {
                        Verdict::NeedsApproval { approvers } => approvers,
                        _ => 1,
                    };
                    // The proposal and its `action_proposed` event commit together.
                    let p = self
                        .proposals
                        .create_with(
                            &NewProposal {
                                plan_id: plan.plan_id.clone(),
                                index,
                                proposer: crate::execute::DAEMON_ACTOR.into(),
                                approvals_needed: needed,
                                policy: decision.policy.clone(),
                                action: action.clone(),
                                max_age: self.proposal_max_age,
                            },
                            now,
                            json!({
                                "what": action.describe(),
                                "verdict": decision.verdict,
                                "checks": decision.checks,
                                "summary": action.summary,
                                // The covered groups' usage and forecast, and the action's
                                // marginal value (the console's proposal page).
                                "evidence": plan.evidence.get(index),
                                // Purchases of this plan the anomaly hold held back or kept
                                // (the console's proposal page).
                                "anomaly_holds": plan.holds,
                            }),
                        )
                        .await?;
                    let p = if decision.verdict == Verdict::Allow {
                        // Autopilot within the policy's limits: approved on its authority.
                        let actor = format!("autopilot:{}", decision.policy);
                        // The approval and its event commit together.
                        let p = self.proposals.approve_by_policy(&p.id, &actor, now).await?;
                        // Later actions of this plan see this one as committed (and what it
                        // gives up as given up, for the give-up caps).
                        recent.add(&facts);
                        p
                    } else {
                        self.notify(&p).await;
                        p
                    };
                    report.proposed.push(p);
                }
            }
        }
        if !self.stopping() {
            let out = self.executor.execute_approved(now).await?;
            self.count(&out);
            self.alert(&out).await;
            report.outcomes.extend(out);
        }
        report.plan = Some(plan);
        Ok(report)
    }

    /// Alerts chat about executions parked as `needs_review`: a person must check the
    /// provider's console.
    async fn alert(&self, outcomes: &[Outcome]) {
        let Some(chat) = &self.chat else {
            return;
        };
        for o in outcomes {
            if let Outcome::NeedsReview {
                proposal_id,
                reason,
            } = o
            {
                chat.needs_review(proposal_id, reason).await;
            }
        }
    }

    /// Reports what the planner's anomaly watch found in the usage billed since the last cycle:
    /// each anomaly detected or ended, and each drop that strands held commitments, once: the
    /// audit log is the memory (an anomaly's events have its id as subject), so a restart that
    /// replays the history reports nothing twice, and an anomaly already over when the daemon
    /// first saw it is not news. Each is one audit event and one chat message; /metrics shows
    /// the open ones and counts the reported ones.
    async fn report_anomalies(
        &self,
        plan: &CyclePlan,
        now: DateTime<Utc>,
    ) -> Result<(), DaemonError> {
        use crate::audit::{
            AnomalyDetected, AnomalyEnded, CommitmentsStranded, EventKind, IdleCommitment,
        };
        let Some(news) = &plan.anomalies else {
            return Ok(());
        };
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        let mut reported = Vec::new();
        for (change, a) in &news.changes {
            let id = a.id();
            let past = self.audit.about(&id).await?;
            let has = |k: EventKind| past.iter().any(|e| e.kind() == k);
            let d = &a.anomaly;
            let (event, text) = match change {
                Change::Detected if !has(EventKind::AnomalyDetected) => {
                    reported.push(a);
                    (
                        NewEvent::new(
                            now,
                            crate::execute::DAEMON_ACTOR,
                            &id,
                            AnomalyDetected {
                                anomaly_id: id.clone(),
                                provider: a.group.provider,
                                usage_group: a.group.to_string(),
                                kind: d.kind.as_str().into(),
                                start: d.start.to_string(),
                                excess_instance_hours: finite(d.excess_instance_hours),
                                excess_cost: d.excess_cost,
                                peak: finite(d.peak),
                                expected_at_peak: finite(d.expected_at_peak),
                            },
                        ),
                        format!(
                            "commitd: cost anomaly ({}) on {} since {}: {:.1} instance-hours/h at its peak against {:.1} expected, {} USD off the model so far. Purchases covering it are held while it is open.",
                            d.kind.as_str(),
                            a.group,
                            d.start,
                            d.peak,
                            d.expected_at_peak,
                            d.excess_cost
                        ),
                    )
                }
                Change::Ended
                    if has(EventKind::AnomalyDetected) && !has(EventKind::AnomalyEnded) =>
                {
                    let status = match d.status {
                        crate::forecast::anomaly::AnomalyStatus::NewLevel => "new_level",
                        _ => "ended",
                    };
                    (
                        NewEvent::new(
                            now,
                            crate::execute::DAEMON_ACTOR,
                            &id,
                            AnomalyEnded {
                                anomaly_id: id.clone(),
                                provider: a.group.provider,
                                usage_group: a.group.to_string(),
                                kind: d.kind.as_str().into(),
                                start: d.start.to_string(),
                                end: d.end.map(|h| h.to_string()),
                                status: status.into(),
                                excess_instance_hours: finite(d.excess_instance_hours),
                                excess_cost: d.excess_cost,
                            },
                        ),
                        format!(
                            "commitd: the cost anomaly ({}) on {} since {} is over ({}{}): {} USD off the model in all. Purchases covering it resume.",
                            d.kind.as_str(),
                            a.group,
                            d.start,
                            if status == "new_level" { "its level is the new normal" } else { "usage came back" },
                            d.end.map(|h| format!(", at {h}")).unwrap_or_default(),
                            d.excess_cost
                        ),
                    )
                }
                _ => continue,
            };
            self.audit.append(event).await?;
            if let Some(chat) = &self.chat {
                chat.alert(&id, &text).await;
            }
        }
        for st in &news.stranded {
            let past = self.audit.about(&st.anomaly_id).await?;
            if past
                .iter()
                .any(|e| e.kind() == EventKind::CommitmentsStranded)
            {
                continue;
            }
            let list: Vec<String> = st
                .commitments
                .iter()
                .map(|c| {
                    format!(
                        "{} ({} of {} USD/h idle, {:.0}% used)",
                        c.id,
                        c.idle_hourly,
                        c.hourly_cost,
                        c.utilization * 100.0
                    )
                })
                .collect();
            self.audit
                .append(NewEvent::new(
                    now,
                    crate::execute::DAEMON_ACTOR,
                    &st.anomaly_id,
                    CommitmentsStranded {
                        anomaly_id: st.anomaly_id.clone(),
                        provider: st.group.provider,
                        usage_group: st.group.to_string(),
                        commitments: st
                            .commitments
                            .iter()
                            .map(|c| IdleCommitment {
                                commitment_id: c.id.clone(),
                                hourly_cost: c.hourly_cost,
                                utilization: finite(c.utilization),
                                idle_hourly: c.idle_hourly,
                            })
                            .collect(),
                        idle_hourly: st.idle_hourly,
                    },
                ))
                .await?;
            if let Some(chat) = &self.chat {
                let text = format!(
                    "commitd: a sudden drop on {} strands commitments: {}; {} USD/h idle in all.",
                    st.group,
                    list.join(", "),
                    st.idle_hourly
                );
                chat.alert(&st.anomaly_id, &text).await;
            }
        }
        self.metrics.anomalies(&news.open, &reported, news.held);
        Ok(())
    }

    /// Posts a new proposal to chat (a failed post is logged, never fatal).
    async fn notify(&self, p: &Proposal) {
        if let Some(chat) = &self.chat {
            chat.proposal(p).await;
        }
    }
}
