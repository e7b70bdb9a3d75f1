//! The daemon runs what the backtest measures: its default planner (`planner = "lookback"`)
//! proposes, at a scenario's decision time, the purchases the backtest's replay makes at its
//! first decision, and stays within what the policies allow.

use commitd::backtest::planner::{lookback_planner, LookbackConfig, PlannerConfig};
use commitd::backtest::{self, BacktestInput, Settings};
use commitd::config::PlannerKind;
use commitd::daemon::optimizer::ScenarioPlanner;
use commitd::daemon::plan::Planner;
use commitd::domain::{CommitmentAmount, Instrument, Money, PaymentOption, Provider, Term};
use commitd::ingest::Scenario;
use commitd::optimize::Constraints;
use commitd::providers::Operation;
use std::path::PathBuf;

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo")
}

fn planner(bounds: Constraints) -> ScenarioPlanner {
    ScenarioPlanner {
        dir: demo(),
        method: PlannerKind::Lookback,
        billing_latency_hours: 48,
        bounds,
    }
}

/// (instrument, term, payment, region, instance type, amount, hourly cost, upfront) of a purchase.
type Key = (
    Instrument,
    Term,
    PaymentOption,
    Option<String>,
    Option<String>,
    CommitmentAmount,
    Money,
    Money,
);

#[test]
fn the_daemon_proposes_the_backtests_first_decision() {
    let scenario = Scenario::load(&demo()).unwrap();
    let at = scenario.window.decision_time;
    // The replay, one decision long, as `commitd backtest` runs it, with nothing given up (what
    // the daemon's markets cannot execute) and the benchmark policy.
    let mut window = scenario.window;
    window.evaluation_end = at.plus(1);
    let input = BacktestInput {
        name: scenario.name.clone(),
        window,
        usage: scenario.usage.clone(),
        rates: scenario.rates.clone(),
        existing: scenario.commitments.clone(),
    };
    let config = LookbackConfig {
        exchanges: false,
        returns: false,
        sales: false,
        ..LookbackConfig::default()
    };
    let (mut replay, settings) = lookback_planner(
        &input,
        &Settings::default(),
        PlannerConfig::default(),
        config,
    )
    .unwrap();
    let result = backtest::run(&input, &mut replay, &settings).unwrap();
    assert_eq!(result.decisions, 1);
    let mut bought: Vec<Key> = result
        .purchases
        .iter()
        .map(|c| {
            (
                c.instrument,
                c.term,
                c.payment,
                c.region.clone(),
                c.instance_type.clone(),
                c.amount,
                c.hourly_cost,
                c.upfront,
            )
        })
        .collect();
    assert!(
        !bought.is_empty(),
        "the demo's first decision buys something"
    );

    let now = at.to_datetime();
    let plan = planner(Constraints::one_year_only())
        .plan(now, &[])
        .unwrap();
    let mut proposed: Vec<Key> = plan
        .actions
        .iter()
        .map(|a| {
            assert_eq!(a.operation, Operation::Purchase);
            (
                a.spec.instrument,
                a.spec.term,
                a.spec.payment,
                a.spec.region.clone(),
                a.spec.instance_type.clone(),
                a.spec.amount,
                a.hourly_cost,
                a.upfront,
            )
        })
        .collect();
    bought.sort_by_key(|k| format!("{k:?}"));
    proposed.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(proposed, bought, "{}", plan.render());

    // Every purchase says what it would have done over the last known weeks, and the figures
    // add up: the plan's expected savings are the sum of its actions'.
    for a in &plan.actions {
        let u = a.expected_utilization.unwrap();
        assert!(u > 0.5 && u <= 1.0, "{}: utilization {u}", a.describe());
        assert!(a.expected_savings > Money::ZERO, "{}", a.describe());
        if let Some(os) = &a.spec.os {
            assert!(a.spec.instance_type.is_some(), "{os}");
        }
    }
    let total: Money = plan.actions.iter().map(|a| a.expected_savings).sum();
    assert_eq!(plan.expected_savings, Some(total));
    let e = plan.expected.clone().unwrap();
    assert!(
        e.esr > 0.0 && e.coverage > 0.0 && e.utilization > 0.9,
        "{e:?}"
    );
}

#[test]
fn the_lookback_plan_stays_within_the_policies_bounds() {
    let free = planner(Constraints::one_year_only())
        .plan(chrono::Utc::now(), &[])
        .unwrap();
    let free_hourly: Money = free.actions.iter().map(|a| a.hourly_cost).sum();
    // Only AWS Compute Savings Plans, no upfront, and a quarter of what it bought unbounded.
    let mut bounds = Constraints::one_year_only();
    bounds.providers.retain(|p, _| *p == Provider::Aws);
    for p in bounds.providers.values_mut() {
        p.instruments = [Instrument::ComputeSavingsPlan].into_iter().collect();
        p.payments = [PaymentOption::NoUpfront].into_iter().collect();
    }
    let cap = Money::from_micros(free_hourly.micros() / 4);
    bounds.max_new_hourly = Some(cap);
    let plan = planner(bounds).plan(chrono::Utc::now(), &[]).unwrap();
    assert!(!plan.actions.is_empty(), "{}", plan.render());
    for a in &plan.actions {
        assert_eq!(
            a.spec.instrument,
            Instrument::ComputeSavingsPlan,
            "{}",
            a.describe()
        );
        assert_eq!(a.spec.payment, PaymentOption::NoUpfront);
    }
    let hourly: Money = plan.actions.iter().map(|a| a.hourly_cost).sum();
    assert!(hourly <= cap, "{hourly} over the cap {cap}");
}
