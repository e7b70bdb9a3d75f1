//! One decision engine: the daemon decides as `commitd backtest` measures. A scenario is replayed
//! twice with the same `PlannerConfig`: through the daemon (the simulated market, the scenario
//! as its source with the cycle's time as the decision time, Autopilot, the clock advanced one
//! daily cycle at a time over the evaluation window) and through the backtest harness. Both must
//! make the same purchases, give-ups and exchanges at the same hours, and have the same
//! actions blocked by the same policies (the replay judges each action as the daemon does:
//! `plan::judge`).
//!
//! The configuration both run is the default one within what the simulated market executes
//! (`PlannerConfig::within`): no Azure exchanges, returns and Marketplace sales as the market
//! makes them.

use commitd::backtest::{self, BacktestInput, RunResult, Settings};
use commitd::domain::{Commitment, CommitmentAmount, Hour, Instrument, Money};
use commitd::ingest::Scenario;
use commitd::markets::Operation;
use commitd::plan::PlannerConfig;
use commitd::service::engine::capabilities;
use commitd::service::plan::GivesUp;
use commitd_testkit::synth::{self, Shape};
use std::collections::BTreeMap;
use std::path::Path;

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

/// What a decision did, comparable between the two replays (market ids differ from the
/// backtest's): per hour, the purchases and the instances given up, by what they are.
type Ledger = BTreeMap<Hour, Vec<String>>;

fn purchase_key(c: &Commitment) -> String {
    format!(
        "buy {:?} {:?} {:?} {:?} {:?} {:?} cost {} upfront {}",
        c.instrument,
        c.amount,
        c.term,
        c.payment,
        c.region,
        c.instance_type,
        c.hourly_cost,
        c.upfront
    )
}

fn blocked_key(what: &str, rule: &str) -> String {
    format!("blocked by {rule}: {what}")
}

fn give_up_key(verb: &str, c: &Commitment, count: u32) -> String {
    format!(
        "{verb} {count} of {:?} {:?} {:?}",
        c.instrument, c.region, c.instance_type
    )
}

/// Generates a small scenario of `shape`: 4 groups, 2 months of history (the planner needs two
/// weeks), 2 months of evaluation, no existing commitments (so that everything held is the
/// market's, which only it can give up).
fn generate(shape: Shape, seed: u64, dir: &Path) {
    let config = synth::Config {
        shape,
        groups: 4,
        seed,
        history_months: 2,
        evaluation_months: 2,
        commitments: false,
        ..synth::Config::default()
    };
    synth::generate(&config, dir).unwrap();
}

/// The planner configuration both replays run: the default, within what the simulated market
/// executes.
fn planner_config() -> PlannerConfig {
    let sim = GivesUp {
        returns: true,
        sales: true,
    };
    PlannerConfig::default().within(capabilities(sim))
}

fn backtest_ledger(scenario: &Scenario) -> (Ledger, RunResult) {
    let input = BacktestInput {
        name: scenario.name.clone(),
        window: scenario.window,
        usage: scenario.usage.clone(),
        rates: scenario.rates.clone(),
        existing: scenario.commitments.clone(),
    };
    // The replay runs within the daemon's policies, as the daemon plans within them.
    let policies = tempfile::tempdir().unwrap();
    write_policies(policies.path());
    let set = commitd::sources::policies::load_dir(policies.path()).unwrap();
    let bounds = commitd::sources::policies::bounds_of(&set);
    let (mut planner, mut settings) =
        backtest::commitd_planner(&input, &Settings::default(), &planner_config(), &bounds)
            .unwrap();
    settings.policies = Some(set);
    let r = backtest::run(&input, planner.as_mut(), &settings).unwrap();
    if std::env::var("EQ_DEBUG").is_ok() {
        eprintln!("REPLAY: {:#?}", r.purchases);
    }
    let mut ledger = Ledger::new();
    let every: Vec<&Commitment> = input.existing.iter().chain(&r.purchases).collect();
    let held = |id: &str| {
        every
            .iter()
            .find(|c| c.id == id)
            .copied()
            .unwrap_or_else(|| panic!("{id} is not a commitment of the replay"))
    };
    for c in &r.purchases {
        ledger.entry(c.start).or_default().push(purchase_key(c));
    }
    for x in &r.returns {
        let key = give_up_key("return", held(&x.source.id), x.source.count);
        ledger.entry(x.at).or_default().push(key);
    }
    for s in &r.sales {
        let key = give_up_key("sell", held(&s.source.id), s.source.count);
        ledger.entry(s.listed).or_default().push(key);
    }
    for e in &r.exchange_log {
        ledger
            .entry(e.at)
            .or_default()
            .push(format!("exchange {:?}", e.sources));
    }
    for b in &r.blocked {
        ledger
            .entry(b.at)
            .or_default()
            .push(blocked_key(&b.what, &b.rule.to_string()));
    }
    for v in ledger.values_mut() {
        v.sort();
    }
    (ledger, r)
}

/// Every AWS and Azure action allowed in Autopilot (so that a cycle executes what it plans),
/// written to `dir`: the daemon's `policies_dir`, and the policies the replay runs within and
/// judges each action by. The per-action utilization check is the default (95%), judged on
/// the figure `plan::proposals` measures on the last four weeks while the planner holds its
/// own floor over its 56-day look-back: a purchase right at the floor can be blocked, and
/// then it is blocked in both.
pub(crate) fn write_policies(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, provider, instruments) in PERMISSIVE {
        std::fs::write(
            dir.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\n[scope]\nprovider = \"{provider}\"\n[allow]\n\
                 instruments = {instruments}\nterms = [1]\n\
                 payment_options = [\"NoUpfront\", \"PartialUpfront\", \"AllUpfront\"]\n\
                 [approval]\nautopilot_max_hourly_commitment = \"100000\"\n\
                 autopilot_max_upfront = \"100000000\"\n\
                 autopilot_max_hourly_given_up = \"100000\"\n"
            ),
        )
        .unwrap();
    }
}

async fn daemon_ledger(scenario_dir: &Path, scenario: &Scenario) -> Ledger {
    let dir = tempfile::tempdir().unwrap();
    write_policies(&dir.path().join("policies"));
    let path = dir.path().join("commitd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"state\"\nmode = \"autopilot\"\npolicies_dir = \"policies\"\n\
             billing_latency_hours = 48\n\
             [source]\nscenario = \"{}\"\nscenario_follows_clock = true\n",
            scenario_dir.display()
        ),
    )
    .unwrap();
    let mut config =
        commitd::config::Config::load_with_env(Some(&path), &Default::default()).unwrap();
    config.planner = planner_config();
    let app = commitd::startup::Application::build(config).await.unwrap();
    let daemon = app.service();
    let w = scenario.window;
    let mut ledger = Ledger::new();
    let mut now = w.decision_time;
    while now < w.evaluation_end {
        let report = daemon.cycle(now.to_datetime()).await.unwrap();
        let plan = report.plan.clone().unwrap();
        assert_eq!(
            report.outcomes.len(),
            plan.actions.len() - report.blocked.len(),
            "at {now}: every action not blocked executes\n{}",
            plan.render()
        );
        for (index, _, rule, _) in &report.blocked {
            let what = plan.actions[*index].describe();
            let key = blocked_key(&what, &rule.to_string());
            ledger.entry(now).or_default().push(key);
        }
        let held = daemon.market.inventory().await.unwrap();
        if std::env::var("EQ_DEBUG").is_ok() {
            eprintln!("DAEMON at {now}: {:#?}", held);
        }
        let blocked = |i: usize| report.blocked.iter().any(|(b, ..)| *b == i);
        for (_, a) in plan
            .actions
            .iter()
            .enumerate()
            .filter(|(i, _)| !blocked(*i))
        {
            let key = match &a.operation {
                Operation::Purchase => {
                    let c = Commitment {
                        id: String::new(),
                        provider: a.spec.provider,
                        instrument: a.spec.instrument,
                        term: a.spec.term,
                        payment: a.spec.payment,
                        start: now,
                        end: now,
                        region: a.spec.region.clone(),
                        instance_type: a.spec.instance_type.clone(),
                        family: None,
                        amount: a.spec.amount,
                        hourly_cost: a.hourly_cost,
                        upfront: a.upfront,
                    };
                    purchase_key(&c)
                }
                op => {
                    let (verb, id, count) = match op {
                        Operation::Return {
                            commitment_id,
                            instances,
                            ..
                        } => ("return", commitment_id, instances.unwrap_or(0)),
                        Operation::Sell {
                            commitment_id,
                            instances,
                            ..
                        } => ("sell", commitment_id, *instances),
                        other => panic!("the daemon proposed {other:?}"),
                    };
                    let source = held
                        .iter()
                        .find(|c| &c.id == id || id.starts_with(&c.id))
                        .cloned()
                        .unwrap_or_else(|| Commitment {
                            region: a.spec.region.clone(),
                            instance_type: a.spec.instance_type.clone(),
                            instrument: a.spec.instrument,
                            ..dummy(now)
                        });
                    give_up_key(verb, &source, count)
                }
            };
            ledger.entry(now).or_default().push(key);
        }
        now = now.plus(24);
    }
    for v in ledger.values_mut() {
        v.sort();
    }
    ledger
}

fn dummy(at: Hour) -> Commitment {
    Commitment {
        id: String::new(),
        provider: commitd::domain::Provider::Aws,
        instrument: Instrument::StandardReservedInstance,
        term: commitd::domain::Term::ONE_YEAR,
        payment: commitd::domain::PaymentOption::NoUpfront,
        start: at,
        end: at,
        region: None,
        instance_type: None,
        family: None,
        amount: CommitmentAmount::Instances(0),
        hourly_cost: Money::ZERO,
        upfront: Money::ZERO,
    }
}

async fn the_daemon_decides_as_the_backtest(dir: &Path) {
    let scenario = commitd::sources::load_scenario(dir).unwrap();
    let (replayed, result) = backtest_ledger(&scenario);
    assert!(
        !result.purchases.is_empty(),
        "{}: the replay buys something",
        scenario.name
    );
    eprintln!(
        "{}: the replay bought {}, blocked {} by policy",
        scenario.name,
        result.purchases.len(),
        result.blocked.len()
    );
    let daemon = daemon_ledger(dir, &scenario).await;
    let show = |l: &Ledger| {
        l.iter()
            .map(|(h, v)| format!("{}: {}", h.to_datetime().to_rfc3339(), v.join("; ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        show(&daemon),
        show(&replayed),
        "{}: the daemon (left) and the backtest (right) decided differently",
        scenario.name
    );
}

async fn generated(shape: Shape, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    generate(shape, seed, dir.path());
    the_daemon_decides_as_the_backtest(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_is_decided_alike() {
    generated(Shape::Migration, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_is_decided_alike() {
    generated(Shape::Decline, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spikes_are_decided_alike() {
    generated(Shape::Spiky, 3).await;
}

/// The public scenarios: a year of daily cycles each, minutes on two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a year of daily cycles per public scenario: minutes on two cores; run with --ignored"]
async fn the_public_scenarios_are_decided_alike() {
    let Ok(shared) = std::env::var("COMMITD_TEST_SHARED") else {
        return;
    };
    for name in ["steady-growth", "mixed-fleet"] {
        let dir = Path::new(&shared).join("scenarios").join(name);
        if dir.exists() {
            the_daemon_decides_as_the_backtest(&dir).await;
        }
    }
}
