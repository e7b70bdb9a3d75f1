//! commitd's planner against the native-tool baseline on synthetic shapes the public scenarios
//! lack: noise, a migration between families, a sudden drop. Each scenario is built in memory:
//! three AWS groups in us-east-1 (m5.xlarge, c5.xlarge, r5.xlarge) with 90 days of history and a
//! 365-day evaluation window; rates follow AWS's usual structure (1-year all upfront: Standard RI
//! ~45 % off, EC2 Instance SP ~40 %, Compute SP ~34 %).

use commitd::backtest::baselines::{CeQuarterly, ExistingOnly};
use commitd::backtest::{run, BacktestInput, RunResult, Settings};
use commitd::domain::usage::{GroupSeries, IgnoredRows};
use commitd::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, Offer, PaymentOption, Provider,
    RateCard, ScenarioWindow, Term, UsageGroup, UsageModel,
};
use commitd::optimize::Constraints;
use commitd::plan::{LookbackConfig, LookbackStats, PlannerConfig, PlannerKind};
use rust_decimal::Decimal;

const TYPES: [(&str, f64); 3] = [
    ("m5.xlarge", 0.192),
    ("c5.xlarge", 0.17),
    ("r5.xlarge", 0.252),
];

fn group(t: &str) -> UsageGroup {
    UsageGroup::new(Provider::Aws, "us-east-1", t, None, "Linux", "Shared")
}

/// AWS's usual rate structure for each (group, on-demand rate).
fn rates_for(groups: &[(UsageGroup, f64)]) -> RateCard {
    let mut card = RateCard::new();
    for (g, od) in groups {
        let (p, od) = (g.product(), *od);
        let mut add = |instrument, term: Option<Term>, payment, factor: f64, share: i64| {
            card.insert(
                p.clone(),
                Offer {
                    instrument,
                    term,
                    payment,
                    effective_hourly_rate: Decimal::from_f64_retain(od * factor)
                        .unwrap()
                        .round_dp(6),
                    upfront_share: Decimal::new(share, 1),
                },
            )
        };
        add(Instrument::OnDemand, None, PaymentOption::NoUpfront, 1.0, 0);
        let one = Some(Term::ONE_YEAR);
        if g.provider == Provider::Azure {
            // Azure: reservations ~39 % off, savings plans ~20 %, the same total either way.
            for payment in [PaymentOption::NoUpfront, PaymentOption::AllUpfront] {
                let share = if payment == PaymentOption::AllUpfront {
                    10
                } else {
                    0
                };
                add(Instrument::AzureReservation, one, payment, 0.61, share);
                add(Instrument::AzureSavingsPlan, one, payment, 0.80, share);
            }
            continue;
        }
        add(
            Instrument::ComputeSavingsPlan,
            one,
            PaymentOption::AllUpfront,
            0.66,
            10,
        );
        add(
            Instrument::ComputeSavingsPlan,
            one,
            PaymentOption::NoUpfront,
            0.71,
            0,
        );
        add(
            Instrument::Ec2InstanceSavingsPlan,
            one,
            PaymentOption::AllUpfront,
            0.60,
            10,
        );
        add(
            Instrument::StandardReservedInstance,
            one,
            PaymentOption::AllUpfront,
            0.55,
            10,
        );
        add(
            Instrument::StandardReservedInstance,
            one,
            PaymentOption::NoUpfront,
            0.59,
            0,
        );
        add(
            Instrument::ConvertibleReservedInstance,
            one,
            PaymentOption::AllUpfront,
            0.66,
            10,
        );
    }
    card
}

/// Deterministic noise in [-1, 1].
fn noise(seed: u64, i: usize) -> f64 {
    let mut x = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 2_000_001) as f64 / 1_000_000.0 - 1.0
}

/// `demand(group index, hour index from history start)` in instances.
fn scenario(name: &str, demand: impl Fn(usize, usize) -> f64) -> BacktestInput {
    scenario_of(name, &TYPES.map(|(t, od)| (group(t), od)), demand)
}

/// [`scenario`] with other groups: (group, on-demand rate).
fn scenario_of(
    name: &str,
    types: &[(UsageGroup, f64)],
    demand: impl Fn(usize, usize) -> f64,
) -> BacktestInput {
    let history_start = Hour::parse("2025-06-01T00:00:00Z").unwrap();
    let window = ScenarioWindow {
        history_start,
        decision_time: history_start.plus(92 * 24),
        evaluation_end: history_start.plus((92 + 365) * 24),
    };
    let range = window.all();
    let groups = types
        .iter()
        .enumerate()
        .map(|(g, (t, od))| {
            let mut s = GroupSeries::empty(t.clone(), range.len());
            for i in 0..range.len() {
                let q = demand(g, i).max(0.0);
                s.quantity[i] = q;
                s.ode[i] = q * od;
            }
            s
        })
        .collect();
    BacktestInput {
        name: name.into(),
        window,
        usage: UsageModel {
            range,
            currency: "USD".into(),
            groups,
            commitments: vec![],
            last_observed: Some(range.end.plus(-1)),
            rows_read: 0,
            ignored: IgnoredRows::default(),
        },
        rates: rates_for(types),
        existing: vec![],
    }
}

fn diurnal(i: usize) -> f64 {
    (2.0 * std::f64::consts::PI * (i % 24) as f64 / 24.0).sin()
}

const EVAL_START: usize = 92 * 24;

fn compare(input: &BacktestInput) -> (RunResult, RunResult) {
    let cfg = PlannerConfig {
        kind: PlannerKind::Ladder,
        ..PlannerConfig::default()
    };
    let base = Settings::default();
    let (mut p, settings) =
        commitd::backtest::commitd_planner(input, &base, &cfg, &Constraints::one_year_only())
            .unwrap();
    let commitd = run(input, p.as_mut(), &settings).unwrap();
    let ce = run(input, &mut CeQuarterly::default(), &base).unwrap();
    (commitd, ce)
}

/// The look-back optimizer planner (`--planner lookback`) with its defaults.
fn lookback(input: &BacktestInput) -> RunResult {
    lookback_with(input, LookbackConfig::default()).0
}

/// The look-back planner with `config`, and what it reports about its solves.
fn lookback_with(input: &BacktestInput, config: LookbackConfig) -> (RunResult, LookbackStats) {
    let config = PlannerConfig {
        lookback: config,
        ..PlannerConfig::default()
    };
    let base = Settings::default();
    let (_, settings) =
        commitd::backtest::commitd_planner(input, &base, &config, &Constraints::one_year_only())
            .unwrap();
    let cap = settings
        .policy
        .max_new_hourly_cost_per_decision
        .unwrap_or(Money::ZERO);
    let mut p = config.lookback_planner(cap, &Constraints::one_year_only());
    let r = run(input, &mut p, &settings).unwrap();
    (r, p.stats)
}

/// The look-back planner with one option on and off (`set` turns it on or off in the
/// defaults): both results and stats, and a line for the test log.
fn on_and_off(
    input: &BacktestInput,
    what: &str,
    set: impl Fn(&mut LookbackConfig, bool),
) -> ((RunResult, LookbackStats), (RunResult, LookbackStats)) {
    let run_with = |on: bool| {
        let mut config = LookbackConfig::default();
        set(&mut config, on);
        lookback_with(input, config)
    };
    let ((on, stats), off) = (run_with(true), run_with(false));
    eprintln!(
        "{what}: ESR {:.4}, min monthly utilization {:?}, {stats:?}\nnone: ESR {:.4}, {:?}",
        on.total.esr, on.min_monthly_utilization, off.0.total.esr, off.0.min_monthly_utilization
    );
    ((on, stats), off)
}

/// The lowest monthly utilization from month `first` of the window on.
fn lowest_utilization_from(r: &RunResult, first: usize) -> f64 {
    r.months[first..]
        .iter()
        .map(|m| m.utilization.unwrap_or(1.0))
        .fold(f64::INFINITY, f64::min)
}

fn check(name: &str, commitd: &RunResult, ce: &RunResult, min_gain: f64) {
    let (c, n) = (commitd.total.esr, ce.total.esr);
    eprintln!(
        "{name}: commitd ESR {c:.4} min util {:?}; ce_quarterly ESR {n:.4} min util {:?}",
        commitd.min_monthly_utilization, ce.min_monthly_utilization
    );
    assert!(c >= n + min_gain, "{name}: commitd {c:.4} vs ce {n:.4}");
    let floor = ce.min_monthly_utilization.unwrap_or(1.0).min(0.95);
    let mine = commitd.min_monthly_utilization.unwrap_or(1.0);
    assert!(
        mine >= floor - 1e-9,
        "{name}: monthly utilization {mine:.4} < {floor:.4}"
    );
}

#[test]
fn steady_noisy_usage_beats_the_native_tool() {
    let input = scenario("noisy", |g, i| {
        let base = [20.0, 12.0, 8.0][g];
        base * (1.0 + 0.25 * diurnal(i) + 0.15 * noise(g as u64 + 1, i))
    });
    let (c, n) = compare(&input);
    check("noisy", &c, &n, 0.04);
    // Laddered: many purchases, each within the cap.
    assert!(c.purchases.len() > 3, "{}", c.purchases.len());
    // Every purchase started at or after decision time and ran 1 year.
    assert!(c
        .purchases
        .iter()
        .all(|p| p.start >= input.window.decision_time && p.term == Term::ONE_YEAR));
}

/// A known weakness, pinned so that it is visible: reservations bought for a family before it
/// migrates away are stranded for the rest of their term (Standard RIs cannot be exchanged), so
/// monthly utilization falls well below 95 % here while the native tool's savings plans follow
/// the usage. What commitd does control is that it stops buying for the declining family.
#[test]
fn migration_between_families_stops_reservations_for_the_family_that_leaves() {
    // m5 moves to c5 during days 90 to 210 of the evaluation year (same vCPU count).
    let start = EVAL_START + 90 * 24;
    let input = scenario("migration", |g, i| {
        let t = i.saturating_sub(start) as f64 / (120.0 * 24.0);
        let moved = t.clamp(0.0, 1.0);
        let level = match g {
            0 => 24.0 * (1.0 - moved),
            1 => 6.0 + 24.0 * moved * 0.192 / 0.17,
            _ => 6.0,
        };
        level * (1.0 + 0.1 * diurnal(i) + 0.05 * noise(7 + g as u64, i))
    });
    let (c, n) = compare(&input);
    eprintln!(
        "migration: commitd ESR {:.4} min util {:?}; ce_quarterly ESR {:.4} min util {:?}",
        c.total.esr, c.min_monthly_utilization, n.total.esr, n.min_monthly_utilization
    );
    let begins = input.usage.range.start.plus(start as i64);
    let late_m5: Vec<String> = c
        .purchases
        .iter()
        .filter(|p| {
            p.instance_type.as_deref() == Some("m5.xlarge") && p.start > begins.plus(14 * 24)
        })
        .map(|p| p.start.to_string())
        .collect();
    assert!(
        late_m5.is_empty(),
        "m5 reservations after the migration began: {late_m5:?}"
    );
    // The c5 growth is covered as it comes (reservations or savings plans bought after it began).
    assert!(c.purchases.iter().any(|p| p.start > begins.plus(30 * 24)));
    assert!(c.total.esr > 0.0);
}

#[test]
fn sudden_drop_stops_buying_within_days() {
    let (input, drop_at) = dropping_fleet();
    let (c, n) = compare(&input);
    let existing = run(&input, &mut ExistingOnly, &Settings::default()).unwrap();
    assert_eq!(existing.total.esr, 0.0);
    // Nothing bought from 2 days after the drop (the latency) on.
    let drop_hour = input.usage.range.start.plus(drop_at as i64);
    assert!(
        c.purchases.iter().all(|p| p.start <= drop_hour.plus(48)),
        "bought after the drop: {:?}",
        c.purchases
            .iter()
            .filter(|p| p.start > drop_hour.plus(48))
            .map(|p| p.start.to_string())
            .collect::<Vec<_>>()
    );
    // Usage collapses: commitd must not do worse than the native tool on utilization.
    check("drop", &c, &n, 0.0);
}

/// Everything drops to 40 % on day 150 of the evaluation year, for good; and that hour's index.
fn dropping_fleet() -> (BacktestInput, usize) {
    let drop_at = EVAL_START + 150 * 24;
    let input = scenario("drop", |g, i| {
        let base = [20.0, 12.0, 8.0][g] * if i >= drop_at { 0.4 } else { 1.0 };
        base * (1.0 + 0.1 * diurnal(i) + 0.05 * noise(11 + g as u64, i))
    });
    (input, drop_at)
}

fn noisy_fleet() -> BacktestInput {
    scenario("noisy", |g, i| {
        let base = [20.0, 12.0, 8.0][g];
        base * (1.0 + 0.25 * diurnal(i) + 0.15 * noise(g as u64 + 1, i))
    })
}

#[test]
fn lookback_buys_on_a_steady_fleet_and_beats_the_native_tool() {
    let input = noisy_fleet();
    let c = lookback(&input);
    let ce = run(&input, &mut CeQuarterly::default(), &Settings::default()).unwrap();
    check("lookback noisy", &c, &ce, 0.04);
    // The optimizer chooses reservations for a steady baseline (the deepest discount).
    assert!(
        c.purchases
            .iter()
            .any(|p| p.instrument == Instrument::StandardReservedInstance),
        "{:?}",
        c.purchases.iter().map(|p| p.instrument).collect::<Vec<_>>()
    );
}

#[test]
fn lookback_stops_buying_after_a_sudden_drop() {
    let (input, drop_at) = dropping_fleet();
    let c = lookback(&input);
    let ce = run(&input, &mut CeQuarterly::default(), &Settings::default()).unwrap();
    assert!(!c.purchases.is_empty());
    let drop_hour = input.usage.range.start.plus(drop_at as i64);
    let late: Vec<String> = c
        .purchases
        .iter()
        .filter(|p| p.start > drop_hour.plus(48))
        .map(|p| p.start.to_string())
        .collect();
    assert!(late.is_empty(), "bought after the drop: {late:?}");
    check("lookback drop", &c, &ce, 0.0);
}

#[test]
fn lookback_solves_only_when_the_uncovered_usage_grew() {
    let input = noisy_fleet();
    let solves = |trigger_share: f64, resolve_days: usize| {
        let config = LookbackConfig {
            trigger_share,
            resolve_days,
            ..LookbackConfig::default()
        };
        let (r, stats) = lookback_with(&input, config);
        eprintln!("trigger {trigger_share}: {stats:?}, ESR {:.4}", r.total.esr);
        (stats.solved, r.total.esr)
    };
    let (weekly, esr_weekly) = solves(0.0, 7);
    let (triggered, esr_triggered) = solves(0.01, 28);
    // Once the steady fleet is covered, nothing new is uncovered: only the 28-day wait solves.
    assert!(weekly >= 50, "{weekly}");
    assert!(triggered < weekly / 2, "{triggered} vs {weekly}");
    assert!((esr_weekly - esr_triggered).abs() < 0.01);
}

#[test]
fn lookback_total_floor_holds_the_portfolio_utilization() {
    let input = noisy_fleet();
    let with_floor = |total_utilization: f64| {
        let config = LookbackConfig {
            total_utilization,
            min_utilization: 0.0,
            // The total floor's credit is what every held commitment is used in the residual's
            // bill, so the held savings plans are billed there too.
            residual_savings_plans: true,
            ..LookbackConfig::default()
        };
        let (r, stats) = lookback_with(&input, config);
        eprintln!(
            "total floor {total_utilization}: ESR {:.4}, utilization {:?}, min monthly {:?}, coverage {:.4}, {stats:?}",
            r.total.esr, r.total.utilization, r.min_monthly_utilization, r.total.coverage
        );
        assert_eq!(stats.infeasible, 0);
        r
    };
    let (strict, loose) = (with_floor(0.99), with_floor(0.8));
    let util = |r: &RunResult| r.total.utilization.unwrap_or(1.0);
    // The floor is what the look-back's portfolio clears; the year ahead of a stationary fleet
    // looks like it, so the whole replay stays within a point of it.
    assert!(util(&strict) >= 0.98, "{:?}", strict.total.utilization);
    assert!(strict.min_monthly_utilization.unwrap_or(1.0) >= 0.97);
    // A lower floor buys deeper: more coverage, less utilization.
    assert!(util(&loose) < util(&strict));
    assert!(loose.total.coverage > strict.total.coverage);
    assert!(!strict.purchases.is_empty());
}

#[test]
fn lookback_buys_usage_that_moved_region_at_its_new_place_at_once() {
    // 20 m5.xlarge move from us-east-1 to us-west-2 on day 72 of 92 of history: three weeks
    // before the decision, so the 56-day look-back still shows us-west-2 mostly empty.
    let m5 =
        |region: &str| UsageGroup::new(Provider::Aws, region, "m5.xlarge", None, "Linux", "Shared");
    let types = [(m5("us-east-1"), 0.192), (m5("us-west-2"), 0.192)];
    let moved_at = 72 * 24;
    let input = scenario_of("region move", &types, |g, i| {
        let here = (i >= moved_at) == (g == 1);
        if here {
            20.0 * (1.0 + 0.1 * diurnal(i) + 0.05 * noise(21 + g as u64, i))
        } else {
            0.0
        }
    });
    let run_with = |follow_moves: bool| {
        let config = LookbackConfig {
            follow_moves,
            ..LookbackConfig::default()
        };
        let (r, stats) = lookback_with(&input, config);
        (r, stats.moves_followed)
    };
    let ((follow, followed), (wait, waited)) = (run_with(true), run_with(false));
    // The stats say why it bought.
    assert!(followed > 0 && waited == 0, "{followed} {waited}");
    let first = |r: &RunResult| r.months[0].coverage;
    eprintln!(
        "follow: ESR {:.4}, first month coverage {:.3}; wait: ESR {:.4}, {:.3}",
        follow.total.esr,
        first(&follow),
        wait.total.esr,
        first(&wait)
    );
    // Bought on the first decisions, not once the look-back has filled with the new region.
    assert!(first(&follow) > 0.75, "{}", first(&follow));
    assert!(first(&follow) > first(&wait) + 0.2);
    assert!(follow.total.esr > wait.total.esr);
    assert!(follow.min_monthly_utilization.unwrap_or(0.0) >= 0.95);
    // Nothing is bound to the region the usage left.
    assert!(follow
        .purchases
        .iter()
        .all(|p| p.region.as_deref() != Some("us-east-1")));
}

/// Azure Standard_D4s_v5 (Linux, shared) in `region`.
fn d4(region: &str) -> UsageGroup {
    UsageGroup::new(
        Provider::Azure,
        region,
        "Standard_D4s_v5",
        None,
        "Linux",
        "Shared",
    )
}

#[test]
fn lookback_exchanges_azure_reservations_left_idle_by_a_region_move() {
    // 20 D4s_v5 run in eastus through the history and the first 120 days of the window, then
    // move to westeurope over a week. The reservations bought for eastus in the first months
    // strand there unless they are exchanged.
    let types = [(d4("eastus"), 0.192), (d4("westeurope"), 0.192)];
    let start = EVAL_START + 120 * 24;
    let input = scenario_of("azure region move", &types, |g, i| {
        // Share of the usage already in westeurope.
        let moved = ((i as f64 - start as f64) / (7.0 * 24.0)).clamp(0.0, 1.0);
        let share = if g == 1 { moved } else { 1.0 - moved };
        20.0 * share * (1.0 + 0.1 * diurnal(i) + 0.05 * noise(31 + g as u64, i))
    });
    let ((swap, stats), (keep, kept_stats)) = on_and_off(&input, "exchanges", |c, on| {
        c.exchanges = on;
        // Returns would give up the idle instances too: this test is about exchanges.
        c.returns = false;
    });
    assert_eq!((kept_stats.exchanges, keep.exchanges), (0, 0));
    assert!(swap.exchanges > 0 && swap.exchanges == stats.exchanges);
    // Most of the 20 instances were given up for westeurope ones.
    assert!(stats.instances_exchanged >= 12, "{stats:?}");
    for e in &swap.exchange_log {
        assert!(e.target_value >= e.source_value);
        assert!(e
            .targets
            .iter()
            .all(|t| t.region.as_deref() == Some("westeurope")));
    }
    assert!(swap.total.esr > keep.total.esr + 0.03);
    // Two months after the move, nothing is idle in eastus: the portfolio is used again.
    let late = &swap.months[6..];
    assert!(
        late.iter().all(|m| m.utilization.unwrap_or(1.0) >= 0.95),
        "{:?}",
        late.iter().map(|m| m.utilization).collect::<Vec<_>>()
    );
}

#[test]
fn lookback_returns_azure_reservations_left_idle_by_a_drop() {
    // 20 D4s_v5 in eastus drop to 8 on day 120 of the window, for good: the reservations bought
    // for the 20 idle unless they are returned (the refund is far under the USD 50,000 cap).
    let drop_at = EVAL_START + 120 * 24;
    let input = scenario_of("azure drop", &[(d4("eastus"), 0.192)], |_, i| {
        let level = if i < drop_at { 20.0 } else { 8.0 };
        level * (1.0 + 0.1 * diurnal(i) + 0.05 * noise(41, i))
    });
    let ((give, stats), (keep, kept_stats)) = on_and_off(&input, "returns", |c, on| c.returns = on);
    assert_eq!((kept_stats.instances_returned, keep.returns.len()), (0, 0));
    // About the 12 instances the drop left idle (some hours of the diurnal trough excepted).
    assert!((9..=12).contains(&stats.instances_returned), "{stats:?}");
    assert!(give.returns.iter().all(|r| r.refund.to_f64() > 0.0));
    assert!(give.total.esr > keep.total.esr + 0.05);
    // Two months after the drop the portfolio is used again; not fully: the savings plan bought
    // on top of the reservations for the daily peaks cannot be returned, and reservations apply
    // first, so it is what stays partly idle (reservations are returned only while they are
    // idle themselves).
    let late = |r: &RunResult| lowest_utilization_from(r, 6);
    assert!(late(&give) >= 0.85, "{}", late(&give));
    assert!(
        late(&give) > late(&keep) + 0.3,
        "{} {}",
        late(&give),
        late(&keep)
    );
}

#[test]
fn lookback_sells_standard_ris_left_idle_by_a_drop() {
    // The Standard RIs bought for the whole fleet idle after the drop unless they are sold.
    let (input, drop_at) = dropping_fleet();
    let ((sell, stats), (keep, kept_stats)) = on_and_off(&input, "sales", |c, on| c.sales = on);
    for m in sell.months.iter().zip(&keep.months) {
        eprintln!(
            "{} {:?} {:?} sales {}",
            m.0.label, m.0.utilization, m.1.utilization, m.0.sales
        );
    }
    assert_eq!((kept_stats.instances_sold, keep.sales.len()), (0, 0));
    assert!(stats.instances_sold > 0, "{stats:?}");
    let drop_hour = input.usage.range.start.plus(drop_at as i64);
    for s in &sell.sales {
        // Listed once the idle shows in the bill (48 h late), sold 14 days later, at a loss.
        assert!(s.listed >= drop_hour.plus(48), "{s:?}");
        assert_eq!(s.sold, s.listed.plus(14 * 24));
        assert!(
            s.proceeds.to_f64() > 0.0 && s.write_off.to_f64() > 0.0,
            "{s:?}"
        );
    }
    assert!(sell.total.esr > keep.total.esr + 0.01);
    // Two months after the drop the portfolio is used again.
    let late = |r: &RunResult| lowest_utilization_from(r, 7);
    assert!(
        late(&sell) > late(&keep) + 0.1,
        "{} vs {}",
        late(&sell),
        late(&keep)
    );
}

#[test]
fn lookback_buys_a_reservation_where_a_held_savings_plan_can_move_to_other_usage() {
    // Two steady groups and a held Compute SP sized to m5's usage. m5 has the deeper savings
    // plan discount (40 % against c5's 30 %), so the bill applies the plan there first; but m5
    // also has the far deeper reservation (60 % off against c5's 35 %). The cheapest portfolio
    // is a reservation on m5 with the plan moved onto c5: a reservation applies before the plan
    // in the bill, and the plan then covers the next usage in order of discount. Billing the
    // held plan into the residual shows only c5 uncovered, and buys c5's shallow reservation.
    // A 3-year plan bought before the history, running through the window: 10 m5.xlarge at its
    // savings plan rate.
    let input = m5_and_c5_with_a_held_plan("held plan", "1.152", |g, i| {
        10.0 * (1.0 + 0.02 * noise(31 + g as u64, i))
    });
    let run_with = |residual_savings_plans: bool| {
        let config = LookbackConfig {
            residual_savings_plans,
            ..LookbackConfig::default()
        };
        lookback_with(&input, config).0
    };
    let (allocated, residual) = (run_with(false), run_with(true));
    eprintln!(
        "allocated: ESR {:.4}, m5 RIs {}, c5 RIs {}, min util {:?}; residual: ESR {:.4}, m5 RIs {}, c5 RIs {}",
        allocated.total.esr,
        reserved(&allocated, "m5"),
        reserved(&allocated, "c5"),
        allocated.min_monthly_utilization,
        residual.total.esr,
        reserved(&residual, "m5"),
        reserved(&residual, "c5"),
    );
    // The default hands the held plan to the optimizer: m5 is reserved, the plan moves to c5.
    assert!(reserved(&allocated, "m5") >= 9, "{:?}", allocated.purchases);
    assert!(reserved(&allocated, "c5") <= 1, "{:?}", allocated.purchases);
    // Hand-computed per hour: plan 1.152 + m5 RIs 0.768 + c5's ~0.3 instance left uncovered
    // ~0.05, against plan 1.152 + c5 RIs 1.105; on-demand equivalent 3.62: ESR ~45.6 % against
    // ~37.6 % once bought (the first decision is at the window's start).
    assert!(allocated.total.esr > 0.43, "{}", allocated.total.esr);
    assert!(residual.total.esr < 0.40, "{}", residual.total.esr);
    assert_eq!(reserved(&residual, "m5"), 0, "{:?}", residual.purchases);
    assert!(allocated.min_monthly_utilization.unwrap_or(0.0) >= 0.95);
}

#[test]
fn lookback_trims_new_savings_plans_to_what_they_add_to_the_held_ones() {
    // m5.xlarge runs 10 instances, but 6 in every fifth hour; a held Compute SP covers 6. A new
    // plan for the other 4 would be used in 80 % of the hours: worth buying at a 34 % discount,
    // but under the trim floor (85 %). The optimizer's own floor (95 %) does not see that: in
    // the low hours it hands the 6 instances to the new plan and leaves the held one idle.
    let m5 = group("m5.xlarge");
    let od = 0.192;
    let types = [(m5.clone(), od)];
    let mut input = scenario_of("held plan, new plan", &types, |_, i| {
        if i % 5 == 0 {
            6.0
        } else {
            10.0
        }
    });
    let mut rates = RateCard::new();
    all_upfront(&mut rates, &m5, od, Instrument::OnDemand, 1.0);
    all_upfront(&mut rates, &m5, od, Instrument::ComputeSavingsPlan, 0.66);
    input.rates = rates;
    // 6 instances at the plan's rate: 6 x 0.12672.
    input.existing = vec![held_compute_sp(&input, "0.76032")];
    let run_with = |trim_floor: f64| {
        let config = LookbackConfig {
            trim_floor,
            ..LookbackConfig::default()
        };
        lookback_with(&input, config)
    };
    let ((trimmed, stats), (untrimmed, _)) = (run_with(0.85), run_with(0.0));
    let bought =
        |r: &RunResult| -> f64 { r.purchases.iter().map(|p| p.hourly_cost.to_f64()).sum() };
    let util = |r: &RunResult| r.total.utilization.unwrap_or(1.0);
    eprintln!(
        "trimmed: {:.4} $/h bought, ESR {:.4}, utilization {:.4}, {stats:?}; untrimmed: {:.4} $/h, ESR {:.4}, utilization {:.4}",
        bought(&trimmed),
        trimmed.total.esr,
        util(&trimmed),
        bought(&untrimmed),
        untrimmed.total.esr,
        util(&untrimmed),
    );
    // Without the trim, a plan for most of the 4 instances (4 x 0.12672 = 0.507 $/h), and the
    // plans together idle in a fifth of the hours: about 0.507 x 0.2 of 1.267, 8 %.
    assert!(bought(&untrimmed) > 0.4, "{:?}", untrimmed.purchases);
    assert!(util(&untrimmed) < 0.95);
    // With it, the new plans are scaled to nothing: what they add is used 80 % of the time at
    // any size.
    assert!(stats.savings_plans_trimmed > 0);
    assert!(bought(&trimmed) < 0.01, "{:?}", trimmed.purchases);
    assert!(util(&trimmed) > 0.999);
}

#[test]
fn lookback_sells_reservations_a_held_savings_plan_left_idle_by_a_drop_would_cover() {
    // A held Compute SP covers c5; m5 gets reservations (60 % off, against the plan's 40 %;
    // c5's reservation is shallow).
    // On day 150 c5 falls to a tenth, for good: the plan has room in every hour, while the m5
    // RIs keep the usage it could take. No RI is idle on its own; the portfolio covers
    // everything and a third of it idles. Selling the m5 RIs moves their usage onto the plan.
    let drop_at = EVAL_START + 150 * 24;
    // The plan: 10 c5.xlarge at its rate (1.19 $/h); after the drop it has room for 9
    // m5.xlarge (0.1152 $/h each at the plan's rate).
    let input = m5_and_c5_with_a_held_plan("redundant", "1.19", |g, i| {
        let level = if g == 1 && i >= drop_at { 1.0 } else { 10.0 };
        level * (1.0 + 0.02 * noise(41 + g as u64, i))
    });
    let ((sell, stats), (keep, kept)) = on_and_off(&input, "redundant", |c, on| {
        c.redundant_share = if on { 0.5 } else { 0.0 };
    });
    assert_eq!(kept.instances_redundant, 0);
    let m5_ris = |r: &RunResult| reserved(r, "m5");
    assert!(m5_ris(&keep) >= 9, "{:?}", keep.purchases);
    // Judged on the billed week after the drop, within the Marketplace's rules; 8 or 9 of
    // the 10 fit in the plan's room (the noise decides the ninth), and nothing is bought back.
    assert!((8..=9).contains(&stats.instances_redundant), "{stats:?}");
    assert_eq!(stats.instances_sold, stats.instances_redundant);
    assert_eq!(m5_ris(&sell), m5_ris(&keep), "{:?}", sell.purchases);
    let drop_hour = input.usage.range.start.plus(drop_at as i64);
    for s in &sell.sales {
        assert!(s.listed >= drop_hour.plus(48), "{s:?}");
    }
    // The RIs' remaining cost, less the sales' write-off, is saved: ESR 37.8 % against 27.8 %.
    assert!(
        sell.total.esr > keep.total.esr + 0.08,
        "{} vs {}",
        sell.total.esr,
        keep.total.esr
    );
    let late = |r: &RunResult| lowest_utilization_from(r, 7);
    assert!(late(&sell) > 0.95, "{}", late(&sell));
    assert!(late(&keep) < 0.8, "{}", late(&keep));
}

/// Two groups, m5.xlarge and c5.xlarge, with `demand(group, hour)` instances, 1-year
/// all-upfront offers (m5: the plan at 60 % and RIs at 40 % of on demand; c5: 70 % and 65 %),
/// and a held 3-year Compute SP of `per_hour`.
fn m5_and_c5_with_a_held_plan(
    name: &str,
    per_hour: &str,
    demand: impl Fn(usize, usize) -> f64,
) -> BacktestInput {
    let types = [(group("m5.xlarge"), 0.192), (group("c5.xlarge"), 0.17)];
    let mut input = scenario_of(name, &types, demand);
    let mut rates = RateCard::new();
    for ((g, od), (sp, ri)) in types.iter().zip([(0.6, 0.4), (0.7, 0.65)]) {
        all_upfront(&mut rates, g, *od, Instrument::OnDemand, 1.0);
        all_upfront(&mut rates, g, *od, Instrument::ComputeSavingsPlan, sp);
        all_upfront(&mut rates, g, *od, Instrument::StandardReservedInstance, ri);
    }
    input.rates = rates;
    input.existing = vec![held_compute_sp(&input, per_hour)];
    input
}

/// Standard RI instances of `family` a replay bought.
fn reserved(r: &RunResult, family: &str) -> u32 {
    r.purchases
        .iter()
        .filter(|p| {
            p.instrument == Instrument::StandardReservedInstance
                && p.family.as_deref() == Some(family)
        })
        .map(|p| match p.amount {
            CommitmentAmount::Instances(n) => n,
            CommitmentAmount::HourlySpend(_) => 0,
        })
        .sum()
}

/// A 3-year Compute SP of `per_hour` bought before the history of `input`, running through its
/// window.
fn held_compute_sp(input: &BacktestInput, per_hour: &str) -> Commitment {
    let start = input.window.history_start.plus(-100 * 24);
    let commitment = Money::parse(per_hour).unwrap();
    Commitment {
        id: "held-csp".into(),
        provider: Provider::Aws,
        instrument: Instrument::ComputeSavingsPlan,
        term: Term::THREE_YEARS,
        payment: PaymentOption::AllUpfront,
        start,
        end: start.plus(Term::THREE_YEARS.hours()),
        region: None,
        instance_type: None,
        family: None,
        amount: CommitmentAmount::HourlySpend(commitment),
        hourly_cost: commitment,
        upfront: Money::ZERO,
    }
}

/// Adds `g`'s 1-year all-upfront offer of `instrument` at `factor` x its on-demand rate `od`
/// (on demand: no term, no upfront).
fn all_upfront(rates: &mut RateCard, g: &UsageGroup, od: f64, instrument: Instrument, factor: f64) {
    let commitment = instrument != Instrument::OnDemand;
    rates.insert(
        g.product(),
        Offer {
            instrument,
            term: commitment.then_some(Term::ONE_YEAR),
            payment: if commitment {
                PaymentOption::AllUpfront
            } else {
                PaymentOption::NoUpfront
            },
            effective_hourly_rate: Decimal::from_f64_retain(od * factor).unwrap().round_dp(6),
            upfront_share: if commitment {
                Decimal::ONE
            } else {
                Decimal::ZERO
            },
        },
    );
}

#[test]
fn lookback_lists_standard_ris_while_usage_moves_region_not_after() {
    // 20 m5.xlarge move from us-east-1 to us-west-2 (which runs 4 of its own) over four weeks
    // from day 150 of the window. The Standard RIs bought for us-east-1 idle as the usage
    // leaves; a listing sells two weeks after it is made, so listing on what is idle today
    // leaves each instance idle for those two weeks, and the month of the move far under 95%.
    let m5 =
        |region: &str| UsageGroup::new(Provider::Aws, region, "m5.xlarge", None, "Linux", "Shared");
    let types = [(m5("us-east-1"), 0.192), (m5("us-west-2"), 0.192)];
    let start = EVAL_START + 150 * 24;
    let input = scenario_of("region move, aws", &types, |g, i| {
        let moved = ((i as f64 - start as f64) / (28.0 * 24.0)).clamp(0.0, 1.0);
        let level = if g == 0 {
            20.0 * (1.0 - moved)
        } else {
            4.0 + 20.0 * moved
        };
        level * (1.0 + 0.1 * diurnal(i) + 0.05 * noise(51 + g as u64, i))
    });
    let ((ahead, stats), (late, _)) =
        on_and_off(&input, "anticipate moves", |c, on| c.anticipate_moves = on);
    let start_hour = input.usage.range.start.plus(start as i64);
    let listed = |r: &RunResult| -> Vec<Hour> { r.sales.iter().map(|s| s.listed).collect() };
    eprintln!("ahead {:?}\nlate {:?}", listed(&ahead), listed(&late));
    assert!(stats.instances_sold > 0, "{stats:?}");
    // Every us-east-1 instance is listed while the usage is still leaving (the last one within
    // the four weeks of the move, not after them).
    let last = |r: &RunResult| listed(r).into_iter().max().unwrap();
    assert!(
        last(&ahead) < start_hour.plus(28 * 24),
        "{:?}",
        last(&ahead)
    );
    assert!(last(&ahead) < last(&late));
    // The months of the move are used more, and the year costs less.
    let low = |r: &RunResult| {
        r.months[4..8]
            .iter()
            .map(|m| m.utilization.unwrap_or(1.0))
            .fold(f64::INFINITY, f64::min)
    };
    assert!(
        low(&ahead) > low(&late) + 0.03,
        "{} vs {}",
        low(&ahead),
        low(&late)
    );
    assert!(ahead.total.esr > late.total.esr);
    // Nothing is bought back where the usage leaves once it has started to leave.
    assert!(ahead
        .purchases
        .iter()
        .filter(|p| p.start > start_hour)
        .all(|p| p.region.as_deref() != Some("us-east-1")));
}

#[test]
fn lookback_steers_the_floor_by_what_the_portfolio_made_of_the_last_weeks() {
    // A noisy fleet (hourly noise of 15% on a 25% diurnal swing). Each new pool is held to 95%
    // over its look-back, but in-sample the plan looks better than it does: the first month
    // runs at 96.9% with the floor fixed. Steered by the bill toward 97%, the floor rises while
    // the portfolio runs under it, and the marginal pools that would have cost more than they
    // saved are not bought.
    let input = noisy_fleet();
    let ((on, _), (off, _)) = on_and_off(&input, "utilization target", |c, on| {
        c.utilization_target = if on { 0.97 } else { 0.0 }
    });
    let utilization = |r: &RunResult| r.total.utilization.unwrap_or(1.0);
    eprintln!(
        "on: utilization {:.4} coverage {:.4}; off: utilization {:.4} coverage {:.4}",
        utilization(&on),
        on.total.coverage,
        utilization(&off),
        off.total.coverage
    );
    // The floor moved: the portfolio differs.
    assert!((on.total.coverage - off.total.coverage).abs() > 0.005);
    assert!(on.total.esr > off.total.esr);
    let lowest = |r: &RunResult| r.min_monthly_utilization.unwrap_or(0.0);
    assert!(lowest(&on) >= 0.95 && lowest(&on) >= lowest(&off));
}
