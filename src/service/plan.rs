//! Where a cycle's plan comes from. [`PlanSource`] is the seam between the service and the pure
//! core: the configured source (a scenario, FOCUS exports, Cost Explorer; `service::optimizer`)
//! is loaded and handed to the core's one [`crate::plan::Planner`], which the service keeps
//! between cycles (`service::engine`); [`PlanFile`] replays a plan computed elsewhere (a JSON
//! file), which is also how the integration tests give the daemon a plan they control. This is
//! not a second planner: a source decides nothing itself.

use crate::domain::{Commitment, Money};
use crate::proposals::PlannedAction;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("planning failed: {0}")]
    Failed(String),
}

pub use crate::telemetry::Expected;

/// One cycle's plan, in the form the daemon acts on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CyclePlan {
    pub plan_id: String,
    /// SHA-256 of the inputs (hex).
    pub inputs_digest: String,
    pub solver_status: String,
    pub objective: Option<Money>,
    pub expected_savings: Option<Money>,
    pub expected: Option<Expected>,
    pub actions: Vec<PlannedAction>,
    pub notes: Vec<String>,
    /// Some(why): the planner found nothing new to decide since its last cycle, so this plan
    /// has no actions and does not supersede the open proposals of earlier cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<String>,
    /// What each action covers and is worth (`actions`' order), for the people approving it
    /// (recorded with each proposal; empty when the planner computes none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<crate::plan::evidence::ActionEvidence>,
    /// Each existing commitment's utilization over the last known days (recorded with the
    /// plan; empty when the planner computes none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commitment_use: Vec<crate::plan::evidence::CommitmentUse>,
    /// The anomaly hold's notes: purchases held back while an anomaly is open on what they
    /// cover, or kept with the anomalous share (also in `notes`; recorded with each proposal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
    /// What the anomaly watch found this cycle (the service alerts on it); None when the
    /// plan's source watches nothing (a plan file, the forecast planner's own source).
    #[serde(skip)]
    pub anomalies: Option<crate::plan::hold::AnomalyNews>,
}

impl CyclePlan {
    /// The plan as a table for people (`commitd run --once`).
    pub fn render(&self) -> String {
        let mut out = format!(
            "plan {} ({} action{}, solver: {})\n",
            self.plan_id,
            self.actions.len(),
            if self.actions.len() == 1 { "" } else { "s" },
            self.solver_status
        );
        if let Some(e) = &self.expected {
            out.push_str(&format!(
                "expected: ESR {:.1}%, coverage {:.1}%, utilization {:.1}%\n",
                e.esr * 100.0,
                e.coverage * 100.0,
                e.utilization * 100.0
            ));
        }
        if let Some(s) = self.expected_savings {
            out.push_str(&format!("expected savings: {}\n", s.for_people()));
        }
        for (i, a) in self.actions.iter().enumerate() {
            out.push_str(&format!(
                "  {:>2}. {}  cost {} per hour, upfront {}, expected savings {}{}\n",
                i + 1,
                a.describe(),
                a.hourly_cost.for_people(),
                a.upfront.for_people(),
                a.expected_savings.for_people(),
                a.expected_utilization
                    .map(|u| format!(", utilization {:.1}%", u * 100.0))
                    .unwrap_or_default()
            ));
            if !a.summary.is_empty() {
                out.push_str(&format!("      {}\n", a.summary));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

/// Where a cycle's plan comes from (a source, then the core's planner). Synchronous and CPU-bound: the daemon runs it on a blocking
/// thread. `held` is the provider's inventory at the start of the cycle: commitments the plan
/// must count as existing (alongside any the source lists), so that nothing is bought twice.
pub trait PlanSource: Send + Sync {
    /// The plan, with what the cycle learnt from the market: the held savings plans that may
    /// be returned, and the market's current commitment offers. Planners that cannot use them
    /// ignore them.
    fn plan_cycle(
        &self,
        now: DateTime<Utc>,
        inputs: &CycleInputs<'_>,
    ) -> Result<CyclePlan, PlanError>;

    /// How many days of the market's own usage records the planner plans from (`[source]
    /// cost_explorer_days`); None: it reads its usage from its source.
    fn market_usage_days(&self) -> Option<u32> {
        None
    }

    /// The plan with nothing read from a market but its inventory.
    fn plan(&self, now: DateTime<Utc>, held: &[Commitment]) -> Result<CyclePlan, PlanError> {
        self.plan_cycle(now, &CycleInputs::without_market(held))
    }
}

impl<'a> CycleInputs<'a> {
    /// Only the inventory: nothing returnable, no market offers.
    pub fn without_market(held: &'a [Commitment]) -> CycleInputs<'a> {
        static NONE: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        CycleInputs {
            held,
            returnable: &NONE,
            offers: None,
            usage: None,
            gives_up: GivesUp::default(),
            listings: &[],
            refunds: &[],
        }
    }
}

/// What the market executes of giving up reservations: the planner gives up idle ones only
/// where it does, since purchases sized on giving them up would otherwise under-buy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GivesUp {
    /// Azure reservations returned in part ([`crate::markets::CommitmentMarket::returns_reservations`]).
    pub returns: bool,
    /// Standard RIs listed on the Marketplace ([`crate::markets::CommitmentMarket::sells_reservations`]).
    pub sales: bool,
}

impl GivesUp {
    pub fn of(market: &dyn crate::markets::CommitmentMarket) -> GivesUp {
        GivesUp {
            returns: market.returns_reservations(),
            sales: market.sells_reservations(),
        }
    }
}

/// What the daemon reads from the market at the start of a cycle, for the planner.
#[derive(Clone, Copy, Debug)]
pub struct CycleInputs<'a> {
    /// The market's inventory (counted as existing commitments).
    pub held: &'a [Commitment],
    /// Held savings plans bought by commitd and inside their return window now: the plan may
    /// return them if the new forecast no longer wants them.
    pub returnable: &'a std::collections::BTreeSet<String>,
    /// The market's commitment offers (AWS: the offering APIs, cached for a day); they replace
    /// the source rate card's offers for the same products, so plans are priced as the
    /// purchase will be. None: the source rate card alone.
    pub offers: Option<&'a crate::domain::RateCard>,
    /// The market's usage records, when the planner asked for them
    /// ([`PlanSource::market_usage_days`]).
    pub usage: Option<&'a crate::markets::UsageHistory>,
    /// What the market executes of giving up reservations.
    pub gives_up: GivesUp,
    /// The market's Marketplace listings (instances listed are not listed again).
    pub listings: &'a [crate::markets::Listed],
    /// The market's reservation refunds, as (hour, amount): returns stay within Azure's
    /// rolling cap.
    pub refunds: &'a [(crate::domain::Hour, crate::domain::Money)],
}

/// The file form of a plan: the actions, and optionally the solver's figures.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFileBody {
    #[serde(default)]
    solver_status: Option<String>,
    #[serde(default)]
    expected_savings: Option<Money>,
    #[serde(default)]
    expected: Option<Expected>,
    actions: Vec<PlannedAction>,
}

/// Replays a plan from a JSON file, re-read every cycle (so it can be replaced between cycles).
pub struct PlanFile {
    pub path: PathBuf,
}

/// A plan id unique per cycle ("plan-20261124T060000.123Z-1a2b3c4d-5e6f7a8b"): time of the
/// cycle, digest of the inputs, and a nonce from the nanosecond time and the process id. A
/// re-plan of the same inputs must get a new id, or it would not supersede the earlier
/// proposals (two one-shot runs can start within the same millisecond).
pub fn plan_id(now: DateTime<Utc>, digest: &str) -> String {
    let nonce = hex::encode(Sha256::digest(
        format!(
            "{}\n{}\n{digest}",
            now.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id()
        )
        .as_bytes(),
    ));
    format!(
        "plan-{}-{}-{}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        &digest[..digest.len().min(8)],
        &nonce[..8]
    )
}

impl PlanFile {
    pub fn read(path: &Path, now: DateTime<Utc>) -> Result<CyclePlan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let body: PlanFileBody = serde_json::from_str(&text).map_err(|e| PlanError::Syntax {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(CyclePlan {
            plan_id: plan_id(now, &digest),
            inputs_digest: digest,
            solver_status: body.solver_status.unwrap_or_else(|| "from file".into()),
            objective: None,
            expected_savings: body
                .expected_savings
                .or_else(|| Some(body.actions.iter().map(|a| a.expected_savings).sum())),
            expected: body.expected,
            actions: body.actions,
            notes: vec![format!("plan read from {}", path.display())],
            unchanged: None,
            evidence: Vec::new(),
            commitment_use: Vec::new(),
            holds: Vec::new(),
            anomalies: None,
        })
    }
}

impl PlanSource for PlanFile {
    /// A plan file is replayed as written: it was computed elsewhere, from whatever inventory
    /// its author saw, so neither the inventory nor the market's offers change it.
    fn plan_cycle(
        &self,
        now: DateTime<Utc>,
        _inputs: &CycleInputs<'_>,
    ) -> Result<CyclePlan, PlanError> {
        PlanFile::read(&self.path, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn reads_a_plan_file_and_names_errors_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let action = crate::proposals::tests::action("2.5");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&serde_json::json!({"actions": [action]})).unwrap(),
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap();
        let plan = PlanFile::read(&path, now).unwrap();
        assert_eq!(plan.actions, vec![crate::proposals::tests::action("2.5")]);
        assert!(
            plan.plan_id.starts_with("plan-20261124T060000.000Z-"),
            "{}",
            plan.plan_id
        );
        // The same file at the same instant in another cycle is another plan.
        let again = PlanFile::read(&path, now + chrono::Duration::nanoseconds(1)).unwrap();
        assert_ne!(again.plan_id, plan.plan_id);
        assert!(plan.render().contains("ComputeSavingsPlan"));
        // Money as people read it in the terminal; the plan's JSON keeps the exact figures.
        assert!(
            plan.render().contains(
                "cost USD 2.50 per hour, upfront USD 0.00, expected savings USD 1,000.00"
            ),
            "{}",
            plan.render()
        );
        assert_eq!(
            serde_json::to_value(&plan).unwrap()["actions"][0]["hourly_cost"],
            "2.5"
        );
        std::fs::write(&path, "{\"actions\": [\n {\"spec\": 1}\n]}").unwrap();
        let e = PlanFile::read(&path, now).unwrap_err().to_string();
        assert!(e.contains("plan.json") && e.contains("line 2"), "{e}");
    }
}
