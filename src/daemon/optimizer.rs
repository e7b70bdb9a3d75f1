//! The planner that computes a plan from the configured source: ingest -> forecast -> optimize
//! (the same pipeline as `commitd plan`), converted into the actions the daemon proposes and
//! executes.
//!
//! The source is loaded again every cycle, so new billing exports are picked up without a
//! restart. For a scenario source, "now" is the scenario's decision time (a scenario describes
//! one moment); for live sources the cycle's own time would be used, which needs the FOCUS
//! directory source (not wired into the daemon yet: it says so instead of guessing).

use super::plan::{plan_id, CyclePlan, Expectation, PlanError, Planner};
use crate::config::Config;
use crate::domain::plan::{ActionKind, Plan};
use crate::domain::Money;
use crate::ingest::Scenario;
use crate::optimize::{Constraints, MinUtilization, Options};
use crate::proposals::PlannedAction;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// One year of hourly demand: the horizon of the 1-year commitments the default policy buys.
const HORIZON_HOURS: usize = 8_760;

pub fn planner(config: &Config) -> Result<Arc<dyn Planner>, String> {
    match (&config.source.scenario, &config.source.focus) {
        (Some(dir), _) => Ok(Arc::new(ScenarioPlanner {
            dir: dir.clone(),
            min_utilization: policy_floor(config),
        })),
        (None, Some(path)) => Err(format!(
            "[source] focus = {}: the daemon plans from a scenario directory in this build; \
             use `commitd plan`/`commitd usage --focus` for FOCUS files, or [daemon] plan_file",
            path.display()
        )),
        (None, None) => {
            Err("no [source] configured: set [source] scenario (or [daemon] plan_file)".into())
        }
    }
}

/// Plans from a scenario directory with the benchmark policy (1-year terms, any instrument and
/// payment option). Guardrails from `policies/` are applied afterwards by the cycle, per action.
pub struct ScenarioPlanner {
    pub dir: PathBuf,
    /// The strictest utilization floor of the policies, so that the optimizer does not propose
    /// what policy would then block.
    pub min_utilization: Option<MinUtilization>,
}

/// The strictest `limits.min_expected_utilization` of the policy files, judged at the P10
/// scenario (the lowest demand quantile the pipeline plans with). Policy files that do not
/// load are reported by the cycle itself; here they simply add no floor.
fn policy_floor(config: &Config) -> Option<MinUtilization> {
    let set = crate::policy::PolicySet::load_dir(&config.policies_dir).ok()?;
    set.policies
        .iter()
        .map(|p| p.limits.min_expected_utilization)
        .fold(None, |acc: Option<f64>, m| {
            Some(acc.map_or(m, |a| a.max(m)))
        })
        .map(|min| MinUtilization {
            level: crate::pipeline::LEVELS[0],
            min,
        })
}

impl Planner for ScenarioPlanner {
    fn plan(&self, now: DateTime<Utc>) -> Result<CyclePlan, PlanError> {
        let scenario = Scenario::load(&self.dir)
            .map_err(|e| PlanError::Failed(format!("loading {}: {e}", self.dir.display())))?;
        let at = scenario.window.decision_time;
        let plan = crate::pipeline::plan_at(
            &scenario.usage,
            at,
            HORIZON_HOURS,
            &scenario.rates,
            &scenario.commitments,
            &Constraints {
                min_utilization: self.min_utilization,
                ..Constraints::one_year_only()
            },
            &Options::default(),
        )
        .map_err(|e| PlanError::Failed(format!("planning {} at {at}: {e}", scenario.name)))?;
        let digest = inputs_digest(&scenario, at);
        Ok(cycle_plan(&plan, now, digest, &scenario.name))
    }
}

/// A digest of what the plan was computed from: scenario, decision hour, demand totals, rates
/// and commitments. Equal inputs give equal digests, so the audit log shows when two plans saw
/// the same data.
fn inputs_digest(scenario: &Scenario, at: crate::domain::Hour) -> String {
    let mut h = Sha256::new();
    h.update(scenario.name.as_bytes());
    h.update(at.0.to_le_bytes());
    for g in &scenario.usage.groups {
        h.update(g.group.to_string().as_bytes());
        h.update(g.total_ode.micros().to_le_bytes());
    }
    h.update(serde_json::to_vec(&scenario.rates).unwrap_or_default());
    h.update(serde_json::to_vec(&scenario.commitments).unwrap_or_default());
    hex::encode(h.finalize())
}

/// The optimizer's plan in the daemon's form. Exchanges are reported in the notes and not
/// proposed: executing them needs the provider's exchange API (AWS: issue 7's client).
pub fn cycle_plan(plan: &Plan, now: DateTime<Utc>, digest: String, name: &str) -> CyclePlan {
    let mut notes = plan.notes.clone();
    let mut actions = Vec::new();
    for a in &plan.actions {
        if let ActionKind::Exchange { source_id, .. } = &a.kind {
            notes.push(format!(
                "exchange of {source_id} into {} {} not proposed: exchanges are not executable yet",
                a.instrument, a.scope
            ));
            continue;
        }
        // The one action -> purchase converter (shared with the backtest).
        let spec = match crate::pipeline::purchase_spec(a) {
            Ok(Some(spec)) => spec,
            Ok(None) => continue,
            Err(e) => {
                notes.push(format!("action not proposed: {e}"));
                continue;
            }
        };
        actions.push(PlannedAction {
            spec,
            hourly_cost: a.hourly_cost,
            upfront: a.upfront,
            expected_savings: Money::from_f64(a.rationale.expected_savings).unwrap_or(Money::ZERO),
            // Policy judges utilization at the low demand quantile (P10), not on average.
            expected_utilization: Some(
                a.rationale
                    .utilization_by_scenario
                    .iter()
                    .find(|(level, _)| (*level - crate::pipeline::LEVELS[0]).abs() < 1e-9)
                    .map_or(a.rationale.expected_utilization, |(_, u)| *u),
            ),
            summary: a.rationale.summary.clone(),
        });
    }
    notes.push(format!("planned from scenario {name}"));
    let expected_savings: Money = actions.iter().map(|a| a.expected_savings).sum();
    CyclePlan {
        plan_id: plan_id(now, &digest),
        inputs_digest: digest,
        solver_status: plan.solver.status.clone(),
        objective: Money::from_f64(plan.solver.rounded_objective).ok(),
        expected_savings: Some(expected_savings),
        expected: Some(Expectation {
            esr: plan.expected.esr,
            coverage: plan.expected.coverage,
            utilization: plan.expected.utilization,
        }),
        actions,
        notes,
    }
}
