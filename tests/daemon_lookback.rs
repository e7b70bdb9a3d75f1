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

/// The replay's first decision at the scenario's decision time, with `held` beside its existing
/// commitments, giving up idle reservations (returns and sales, never exchanges) when `gives_up`.
fn replay_first_decision(
    scenario: &Scenario,
    held: &[commitd::domain::Commitment],
    gives_up: bool,
) -> backtest::RunResult {
    let at = scenario.window.decision_time;
    let mut window = scenario.window;
    window.evaluation_end = at.plus(1);
    let input = BacktestInput {
        name: scenario.name.clone(),
        window,
        usage: scenario.usage.clone(),
        rates: scenario.rates.clone(),
        existing: scenario.commitments.iter().chain(held).cloned().collect(),
    };
    let config = LookbackConfig {
        exchanges: false,
        returns: gives_up,
        sales: gives_up,
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
    result
}

fn key_of(c: &commitd::domain::Commitment) -> Key {
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
}

fn proposed_key(a: &commitd::proposals::PlannedAction) -> Key {
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
}

fn sorted(mut keys: Vec<Key>) -> Vec<Key> {
    keys.sort_by_key(|k| format!("{k:?}"));
    keys
}

#[test]
fn the_daemon_proposes_the_backtests_first_decision() {
    let scenario = Scenario::load(&demo()).unwrap();
    let at = scenario.window.decision_time;
    // The replay, one decision long, as `commitd backtest` runs it, with nothing given up (what
    // a market without returns or sales executes) and the benchmark policy.
    let result = replay_first_decision(&scenario, &[], false);
    let bought = sorted(result.purchases.iter().map(key_of).collect());
    assert!(
        !bought.is_empty(),
        "the demo's first decision buys something"
    );

    let now = at.to_datetime();
    let plan = planner(Constraints::one_year_only())
        .plan(now, &[])
        .unwrap();
    for a in &plan.actions {
        assert_eq!(a.operation, Operation::Purchase);
    }
    let proposed = sorted(plan.actions.iter().map(proposed_key).collect());
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

/// An idle reservation held at the market: `n` instances of `instance_type` in a region where
/// the demo has no usage, bought 60 days before `at`.
fn idle(
    id: &str,
    provider: Provider,
    instrument: Instrument,
    region: &str,
    instance_type: &str,
    n: u32,
    at: commitd::domain::Hour,
) -> commitd::domain::Commitment {
    let start = at.plus(-60 * 24);
    commitd::domain::Commitment {
        id: id.into(),
        provider,
        instrument,
        term: Term::ONE_YEAR,
        payment: PaymentOption::PartialUpfront,
        start,
        end: start.plus(Term::ONE_YEAR.hours()),
        region: Some(region.into()),
        instance_type: Some(instance_type.into()),
        family: None,
        amount: CommitmentAmount::Instances(n),
        hourly_cost: Money::parse("0.1").unwrap().times(i64::from(n)).unwrap(),
        upfront: Money::from_units(438).times(i64::from(n)).unwrap(),
    }
}

#[test]
fn the_daemon_gives_up_idle_reservations_only_where_the_market_executes_it() {
    use commitd::daemon::plan::{CycleInputs, GivesUp};
    let scenario = Scenario::load(&demo()).unwrap();
    let at = scenario.window.decision_time;
    let held = vec![
        idle(
            "az-idle",
            Provider::Azure,
            Instrument::AzureReservation,
            "westus2",
            "Standard_D4s_v5",
            4,
            at,
        ),
        idle(
            "ri-idle",
            Provider::Aws,
            Instrument::StandardReservedInstance,
            "eu-central-1",
            "m5.large",
            3,
            at,
        ),
    ];
    let none = std::collections::BTreeSet::new();
    let plan_with = |gives_up: GivesUp,
                     listings: &[commitd::providers::Listed],
                     refunds: &[(commitd::domain::Hour, Money)]| {
        planner(Constraints::one_year_only())
            .plan_cycle(
                at.to_datetime(),
                &CycleInputs {
                    held: &held,
                    returnable: &none,
                    offers: None,
                    usage: None,
                    gives_up,
                    listings,
                    refunds,
                },
            )
            .unwrap()
    };
    let both = GivesUp {
        returns: true,
        sales: true,
    };
    let plan = plan_with(both, &[], &[]);
    let given: Vec<&Operation> = plan
        .actions
        .iter()
        .map(|a| &a.operation)
        .filter(|o| !matches!(o, Operation::Purchase))
        .collect();
    assert_eq!(given.len(), 2, "{}", plan.render());
    for a in plan
        .actions
        .iter()
        .filter(|a| a.operation != Operation::Purchase)
    {
        // Giving up commits nothing new, and saves what the idle instances cost.
        assert_eq!((a.hourly_cost, a.upfront), (Money::ZERO, Money::ZERO));
        assert!(a.expected_savings > Money::ZERO, "{}", plan.render());
        match &a.operation {
            Operation::Return {
                commitment_id,
                instances,
                hourly_cost_removed,
            } => {
                assert_eq!(commitment_id, "az-idle");
                assert_eq!(*instances, Some(4));
                assert_eq!(*hourly_cost_removed, Money::parse("0.4").unwrap());
                assert_eq!(a.spec.amount, CommitmentAmount::Instances(4));
            }
            Operation::Sell {
                commitment_id,
                instances,
                price,
                ..
            } => {
                assert_eq!((commitment_id.as_str(), *instances), ("ri-idle", 3));
                // 90% of the upfront's share of the 9 whole months left when it sells
                // (the listing sells 14 days after the decision, 74 days into the term).
                assert_eq!(*price, Money::parse("886.95").unwrap(), "{}", plan.render());
            }
            other => panic!("{other:?}"),
        }
    }
    // What the replay does at its first decision with the same reservations held: the same
    // purchases (sized knowing that idle reservations can be given up), returns and sales.
    let replay = replay_first_decision(&scenario, &held, true);
    let bought = sorted(replay.purchases.iter().map(key_of).collect());
    let proposed = sorted(
        plan.actions
            .iter()
            .filter(|a| a.operation == Operation::Purchase)
            .map(proposed_key)
            .collect(),
    );
    assert_eq!(proposed, bought, "{}", plan.render());
    let given: Vec<(String, u32)> = replay
        .returns
        .iter()
        .map(|r| (r.source.id.clone(), r.source.count))
        .chain(
            replay
                .sales
                .iter()
                .map(|s| (s.source.id.clone(), s.source.count)),
        )
        .collect();
    assert_eq!(
        given,
        vec![("az-idle".to_string(), 4), ("ri-idle".to_string(), 3)]
    );
    // A market that gives nothing up gets no such proposal.
    let kept = plan_with(GivesUp::default(), &[], &[]);
    assert!(
        kept.actions
            .iter()
            .all(|a| a.operation == Operation::Purchase),
        "{}",
        kept.render()
    );
    // With Azure's rolling USD 50,000 refund cap used up by the market's past refunds, nothing
    // is returned (the RI is still listed).
    let capped = plan_with(both, &[], &[(at.plus(-24), Money::from_units(50_000))]);
    assert!(
        !capped
            .actions
            .iter()
            .any(|a| matches!(a.operation, Operation::Return { .. })),
        "{}",
        capped.render()
    );
    assert!(capped
        .actions
        .iter()
        .any(|a| matches!(a.operation, Operation::Sell { .. })));
    // Instances listed already are not listed again while the listing is open.
    let open = commitd::providers::Listed {
        idempotency_key: "k".into(),
        listing_id: "ril-1".into(),
        request_id: "r".into(),
        commitment_id: "ri-idle".into(),
        instances: 3,
        // AWS says "pending" before "active": open either way.
        state: "pending".into(),
        listed_at: at.plus(-24),
        sells_at: None,
        listed_id: None,
    };
    let again = plan_with(both, &[open], &[]);
    assert!(
        !again
            .actions
            .iter()
            .any(|a| matches!(a.operation, Operation::Sell { .. })),
        "{}",
        again.render()
    );
}
