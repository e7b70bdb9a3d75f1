//! A return through the real daemon process and the copilot approval flow, on the simulated
//! market (SQLite, and PostgreSQL when COMMITD_TEST_DATABASE_URL is set): autopilot buys a
//! savings plan; a later plan returns it; in copilot the return is a proposal the CLI shows as
//! a return, a person approves it, the next cycle executes it, and the audit log records it.
//! Replaying the same return afterwards fails cleanly (the plan is no longer held).

use crate::common;

use common::daemon::*;
use serde_json::{json, Value};

fn backends() -> Vec<bool> {
    let mut v = vec![false];
    // Fails instead when COMMITD_TEST_REQUIRE_POSTGRES=1 and no server is named (CI).
    if postgres_url().is_some() {
        v.push(true);
    }
    v
}

fn return_flow(postgres: bool) {
    let Some(s) = Setup::new("autopilot", postgres) else {
        return;
    };
    // 1. Autopilot buys the plan file's 2.5 USD/h savings plan (now, so it is inside AWS's
    //    return window for the rest of this hour's month and week).
    s.ok(&["run", "--once"]);
    let bought = s
        .proposals()
        .into_iter()
        .find(|p| p["state"] == "executed")
        .expect("the purchase was executed");
    let commitment_id = bought["commitment_id"].as_str().unwrap().to_string();
    let spec = bought["action"]["spec"].clone();

    // 2. The next plan returns it; in copilot it waits for a person.
    let plan = json!({"actions": [{
        "operation": {"kind": "return", "commitment_id": commitment_id, "hourly_cost_removed": "2.5"},
        "spec": spec,
        "hourly_cost": "0", "upfront": "0", "expected_savings": "300",
        "summary": "the forecast no longer wants it"
    }]});
    std::fs::write(s.path("plan.json"), plan.to_string()).unwrap();
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("mode = \"autopilot\"", "mode = \"copilot\"");
    std::fs::write(&s.config, config).unwrap();
    let out = s.ok(&["run", "--once"]);
    assert!(
        out.contains(&format!("return {commitment_id}")),
        "the cycle names the operation: {out}"
    );
    let proposed: Vec<Value> = s
        .proposals()
        .into_iter()
        .filter(|p| p["state"] == "proposed")
        .collect();
    assert_eq!(proposed.len(), 1, "{proposed:?}");
    let id = proposed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(proposed[0]["action"]["operation"]["kind"], "return");
    let listed = s.ok(&["proposals", "list"]);
    assert!(
        listed.contains(&format!("return {commitment_id} (AWS ComputeSavingsPlan")),
        "{listed}"
    );
    let shown = s.ok(&["proposals", "show", &id]);
    assert!(
        shown.contains("returning stops USD 2.50 per hour of cost"),
        "{shown}"
    );
    let alice = s.token("alice", "approver");
    s.ok_env(&["proposals", "approve", &id], &[("COMMITD_TOKEN", &alice)]);

    // 3. The next cycle executes the approved return first.
    s.ok(&["run", "--once"]);
    let done = s.proposal(&id);
    assert_eq!(done["state"], "executed", "{done}");
    assert_eq!(done["commitment_id"], commitment_id.as_str());
    let executed = s.events("executed");
    let ret = executed
        .iter()
        .find(|e| e["payload"]["proposal_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{executed:?}"));
    assert_eq!(ret["rationale"]["operation"], "return", "{ret}");
    assert_eq!(ret["rationale"]["state"], "returned", "{ret}");
    assert!(ret["payload"]["provider_request_id"]
        .as_str()
        .unwrap()
        .starts_with("sim-req-"));

    // 4. That cycle proposed the same return again (a plan file is replayed as written);
    //    approved, it fails: the market no longer holds the plan. Nothing else changes.
    let again = s
        .proposals()
        .into_iter()
        .find(|p| p["state"] == "proposed")
        .expect("the replayed return");
    let again = again["id"].as_str().unwrap().to_string();
    s.ok_env(
        &["proposals", "approve", &again],
        &[("COMMITD_TOKEN", &alice)],
    );
    s.ok(&["run", "--once"]);
    let failed = s.proposal(&again);
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["outcome"]
            .as_str()
            .unwrap()
            .contains("no held commitment"),
        "{failed}"
    );
    s.verify_audit();
}

#[test]
fn a_savings_plan_return_is_proposed_approved_and_executed_once() {
    for postgres in backends() {
        return_flow(postgres);
    }
}

/// The daemon's scenario planner decides the return itself: a 90 USD/h savings plan (far more
/// than the demo scenario's demand) held since the day before the decision is returned when
/// the daemon marks it returnable, and never otherwise.
#[test]
fn the_scenario_planner_returns_a_returnable_plan_the_forecast_does_not_want() {
    use commitd::domain::{
        Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
    };
    use commitd::markets::Operation;
    use commitd::service::optimizer::ScenarioSource;
    use commitd::service::plan::{CycleInputs, PlanSource};
    use std::collections::BTreeSet;

    let planner = ScenarioSource {
        dir: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo"),
        follows_clock: false,
        // Savings plan returns are the forecast pipeline's.
        method: commitd::plan::PlannerConfig {
            kind: commitd::plan::PlannerKind::Forecast,
            ..Default::default()
        },
        billing_latency_hours: 48,
        bounds: commitd::optimize::Constraints::one_year_only(),
        engine: Default::default(),
    };
    // The demo scenario decides at 2025-12-01T00:00Z.
    let decision = Hour::from_datetime(
        chrono::DateTime::parse_from_rfc3339("2025-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    let held = vec![Commitment {
        id: "sp-oversized".into(),
        provider: Provider::Aws,
        instrument: Instrument::ComputeSavingsPlan,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        start: decision.plus(-24),
        end: decision.plus(8_760 - 24),
        region: None,
        instance_type: None,
        family: None,
        amount: CommitmentAmount::HourlySpend(Money::from_units(90)),
        hourly_cost: Money::from_units(90),
        upfront: Money::ZERO,
    }];
    let now = chrono::Utc::now();
    let returns = |plan: &commitd::service::plan::CyclePlan| -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match &a.operation {
                Operation::Return { commitment_id, .. } => Some(commitment_id.clone()),
                _ => None,
            })
            .collect()
    };
    let returnable: BTreeSet<String> = ["sp-oversized".to_string()].into();
    let plan = planner
        .plan_cycle(
            now,
            &CycleInputs {
                held: &held,
                returnable: &returnable,
                offers: None,
                usage: None,
                gives_up: Default::default(),
                listings: &[],
                refunds: &[],
            },
        )
        .unwrap();
    assert_eq!(
        returns(&plan),
        vec!["sp-oversized".to_string()],
        "{:#?}\n{:#?}",
        plan.actions,
        plan.notes
    );
    let r = plan
        .actions
        .iter()
        .find(|a| matches!(a.operation, Operation::Return { .. }))
        .unwrap();
    assert_eq!(r.hourly_cost, Money::ZERO, "a return commits nothing");
    assert!(r.expected_savings > Money::ZERO, "{r:?}");
    let kept = planner.plan(now, &held).unwrap();
    assert!(returns(&kept).is_empty(), "{:#?}", kept.actions);
}
