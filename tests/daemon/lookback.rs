//! The daemon runs what the backtest measures: its default planner (`planner = "lookback"`)
//! proposes, at a scenario's decision time, the purchases the backtest's replay makes at its
//! first decision, solves again at a later cycle exactly when the replay would, and stays within
//! what the policies allow.

use commitd::backtest::{self, BacktestInput, Settings};
use commitd::domain::{CommitmentAmount, Instrument, Money, PaymentOption, Provider, Term};
use commitd::ingest::Scenario;
use commitd::markets::Operation;
use commitd::optimize::Constraints;
use commitd::plan::{LookbackConfig, PlannerConfig};
use commitd::service::optimizer::ScenarioSource;
use commitd::service::plan::PlanSource;
use std::path::PathBuf;

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo")
}

fn planner(bounds: Constraints) -> ScenarioSource {
    ScenarioSource {
        dir: demo(),
        follows_clock: false,
        method: PlannerConfig::default(),
        billing_latency_hours: 48,
        bounds,
        engine: Default::default(),
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
    let config = PlannerConfig {
        lookback: config,
        ..PlannerConfig::default()
    };
    let (mut replay, settings) = backtest::commitd_planner(
        &input,
        &Settings::default(),
        &config,
        &Constraints::one_year_only(),
    )
    .unwrap();
    let result = backtest::run(&input, replay.as_mut(), &settings).unwrap();
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
    let scenario = commitd::sources::load_scenario(&demo()).unwrap();
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

    // What the console shows beside each action (plan::evidence): the usage of the groups it
    // applies to, its forecast, and what the plan loses without it.
    assert_eq!(plan.evidence.len(), plan.actions.len(), "{}", plan.render());
    for (a, e) in plan.actions.iter().zip(&plan.evidence) {
        assert!(
            e.groups_total > 0 && e.groups.len() == e.groups_total.min(12),
            "{}: {e:?}",
            a.describe()
        );
        assert_eq!(e.history.len(), 56, "{e:?}");
        assert!(e.history.iter().flatten().sum::<f64>() > 0.0, "{e:?}");
        assert_eq!(e.forecast_error, None);
        assert_eq!((e.p10.len(), e.p50.len(), e.p90.len()), (28, 28, 28));
        for ((lo, mid), hi) in e.p10.iter().zip(&e.p50).zip(&e.p90) {
            let (lo, mid, hi) = (lo.unwrap(), mid.unwrap(), hi.unwrap());
            assert!(lo <= mid + 1e-9 && mid <= hi + 1e-9, "{lo} {mid} {hi}");
        }
        assert_eq!(e.forecast_start.since(e.history_start), 56 * 24);
        assert_eq!(e.marginal.as_ref().map(|m| m.hours), Some(28 * 24));
    }
    // Without the purchase the bill applies last (reservations, then EC2 Instance Savings
    // Plans, then the flexible plans), the plan loses exactly that purchase's expected savings:
    // both bill the same portfolios.
    let rank = |a: &commitd::proposals::PlannedAction| match a.spec.instrument {
        Instrument::Ec2InstanceSavingsPlan => 1,
        i if i.kind() == Some(commitd::domain::CommitmentKind::Spend) => 2,
        _ => 0,
    };
    let (last, e) = plan
        .actions
        .iter()
        .zip(&plan.evidence)
        // The last of the highest rank: the purchase the bill applies last.
        .max_by_key(|(a, _)| rank(a))
        .unwrap();
    assert_eq!(
        e.marginal.as_ref().unwrap().over_term,
        last.expected_savings,
        "{}",
        last.describe()
    );
    // Each existing commitment's use over the last 30 known days.
    let mut ids: Vec<&str> = plan.commitment_use.iter().map(|u| u.id.as_str()).collect();
    let mut existing: Vec<&str> = scenario.commitments.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    existing.sort_unstable();
    assert_eq!(ids, existing);
    for u in &plan.commitment_use {
        assert!(u.hours <= 30 * 24, "{u:?}");
        if let Some(x) = u.utilization {
            assert!((0.0..=1.0).contains(&x) && u.hours > 0, "{u:?}");
        }
    }
    assert!(plan.commitment_use.iter().any(|u| u.utilization.is_some()));
    let e = plan.expected.unwrap();
    assert!(
        e.esr > 0.0 && e.coverage > 0.0 && e.utilization > 0.9,
        "{e:?}"
    );
}

#[test]
fn a_cycle_solves_again_only_when_a_replay_decision_would() {
    // One planner across cycles, as the service keeps it: the trigger's memory carries over.
    let scenario = commitd::sources::load_scenario(&demo()).unwrap();
    let at = scenario.window.decision_time;
    let now = at.to_datetime();
    let p = planner(Constraints::one_year_only());
    let first = p.plan(now, &[]).unwrap();
    assert!(first.unchanged.is_none(), "{}", first.render());
    let proposed = sorted(first.actions.iter().map(proposed_key).collect());
    assert!(!proposed.is_empty(), "{}", first.render());

    // The market now holds what the first cycle proposed (the replay's purchases are the same,
    // as the test above checks): nothing changed since, so the next cycle does not solve,
    // proposes nothing, and leaves earlier proposals standing.
    let bought = replay_first_decision(&scenario, &[], false).purchases;
    assert_eq!(sorted(bought.iter().map(key_of).collect()), proposed);
    let mut second = p.plan(now, &bought).unwrap();
    if second.unchanged.is_none() {
        // The first solve spent the laddering cap, so the next one solves again (as the
        // replay's second decision does) and finds nothing more worth buying.
        let hourly: f64 = first.actions.iter().map(|a| a.hourly_cost.to_f64()).sum();
        let cap: f64 = first.notes[0]
            .split("laddering cap ")
            .nth(1)
            .and_then(|c| c.split(' ').next())
            .and_then(|c| c.parse().ok())
            .unwrap();
        assert!(
            hourly >= 0.9 * cap,
            "{hourly} of {cap}\n{}",
            second.render()
        );
        assert!(second.actions.is_empty(), "{}", second.render());
        second = p.plan(now, &bought).unwrap();
    }
    let why = second.unchanged.as_deref().unwrap_or_else(|| {
        panic!(
            "a cycle with nothing new solved again:\n{}",
            second.render()
        )
    });
    assert!(
        why.contains("open proposals of earlier cycles stand"),
        "{why}"
    );
    assert!(second.actions.is_empty(), "{}", second.render());
    assert!(second.notes.iter().any(|n| n == why), "{:?}", second.notes);

    // Purchases the market does not hold (not approved, or failed) make the next cycle solve,
    // and it proposes them again.
    let third = p.plan(now, &[]).unwrap();
    assert!(third.unchanged.is_none(), "{}", third.render());
    assert_eq!(
        sorted(third.actions.iter().map(proposed_key).collect()),
        proposed
    );

    // A planner without that memory (a restart, a new leader) solves at its first cycle.
    let fresh = planner(Constraints::one_year_only())
        .plan(now, &bought)
        .unwrap();
    assert!(fresh.unchanged.is_none(), "{}", fresh.render());
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
    use commitd::service::plan::{CycleInputs, GivesUp};
    let scenario = commitd::sources::load_scenario(&demo()).unwrap();
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
                     listings: &[commitd::markets::Listed],
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
    let open = commitd::markets::Listed {
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

/// Every AWS and Azure action allowed in Autopilot, so that a cycle executes what it plans.
const PERMISSIVE: &[(&str, &str, &str)] = &[
    (
        "aws",
        "AWS",
        r#"["ComputeSavingsPlan", "EC2InstanceSavingsPlan", "StandardReservedInstance", "ConvertibleReservedInstance"]"#,
    ),
    (
        "azure",
        "Microsoft",
        r#"["AzureReservation", "AzureSavingsPlan"]"#,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cycle_with_nothing_new_buys_nothing_and_leaves_proposals_open() {
    use commitd::proposals::{NewProposal, ProposalState};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    for (name, provider, instruments) in PERMISSIVE {
        std::fs::write(
            dir.path().join(format!("policies/{name}.toml")),
            format!(
                "name = \"{name}\"\n[scope]\nprovider = \"{provider}\"\n[allow]\n\
                 instruments = {instruments}\nterms = [1]\n\
                 payment_options = [\"NoUpfront\", \"PartialUpfront\", \"AllUpfront\"]\n\
                 [limits]\nmin_expected_utilization = 0.5\n[approval]\nautopilot_max_hourly_commitment = \"1000\"\n\
                 autopilot_max_upfront = \"10000000\"\n"
            ),
        )
        .unwrap();
    }
    let path = dir.path().join("commitd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"state\"\nmode = \"autopilot\"\npolicies_dir = \"policies\"\n\
             [source]\nscenario = \"{}\"\n",
            demo().display()
        ),
    )
    .unwrap();
    let config = commitd::config::Config::load_with_env(Some(&path), &Default::default()).unwrap();
    let app = commitd::startup::Application::build(config).await.unwrap();
    let daemon = app.service();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-10T06:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    // The first cycles buy (a solve the laddering cap held back solves again the next
    // cycle); then nothing is new.
    let mut cycles = 0;
    let report = loop {
        let now = start + chrono::Duration::days(cycles);
        let report = daemon.cycle(now).await.unwrap();
        let plan = report.plan.clone().unwrap();
        cycles += 1;
        if plan.unchanged.is_some() {
            break (now, report);
        }
        // Each solve bought what it planned (nothing blocked, nothing failed): a purchase the
        // market does not hold would make the next cycle solve again.
        assert!(report.blocked.is_empty(), "{:?}", report.blocked);
        assert_eq!(
            report.outcomes.len(),
            plan.actions.len(),
            "{}",
            plan.render()
        );
        assert!(
            cycles < 5,
            "still solving after {cycles} cycles (buying again what the market holds?)"
        );
    };
    let (at, report) = report;
    assert!(cycles >= 2);
    let executed = daemon
        .proposals
        .list(Some(ProposalState::Executed))
        .await
        .unwrap()
        .len();
    assert!(executed > 0);
    assert!(report.proposed.is_empty() && report.outcomes.is_empty());

    // A proposal open when a cycle finds nothing new stands (it would be superseded by a
    // cycle that solves).
    let action: commitd::proposals::PlannedAction = serde_json::from_value(serde_json::json!({
        "spec": {"provider": "AWS", "instrument": "ComputeSavingsPlan", "term": 1,
                 "payment": "NoUpfront", "amount": {"unit": "hourly_spend", "value": "0.5"}},
        "hourly_cost": "0.5", "upfront": "0", "expected_savings": "100",
        "expected_utilization": 0.99, "summary": "by hand"}))
    .unwrap();
    let open = daemon
        .proposals
        .create(
            &NewProposal {
                plan_id: "plan-by-hand".into(),
                index: 0,
                proposer: "test".into(),
                approvals_needed: 2,
                policy: "aws".into(),
                action,
                max_age: chrono::Duration::days(30),
            },
            at,
        )
        .await
        .unwrap();
    let later = daemon.cycle(at + chrono::Duration::hours(1)).await.unwrap();
    let plan = later.plan.unwrap();
    assert!(plan.unchanged.is_some(), "{}", plan.render());
    assert_eq!(later.expired, 0);
    let still = daemon.proposals.get(&open.id).await.unwrap().unwrap();
    assert_eq!(still.state, ProposalState::Proposed);
    let executed_after = daemon
        .proposals
        .list(Some(ProposalState::Executed))
        .await
        .unwrap()
        .len();
    assert_eq!(executed_after, executed);
}
