//! Exchanges in the rolling replay: the providers' rules, enforced by the harness, and the
//! cost accounting of what is given up and what is taken on, on hours computed by hand.
//!
//! Scenario: history 30 days from 2025-09-01, evaluation 61 days (2025-10-01 .. 2025-12-01,
//! 1,464 h). Four instances of Azure Standard_D4s_v5 run in eastus, then from 2025-10-11 (the
//! move, hour 240 of the window) in westeurope; two AWS m5.large in us-east-1 become two
//! m6i.large there at the same hour. Held before the window: an Azure reservation for the four
//! D4s_v5 in eastus and a convertible RI for the two m5.large, both bought on 2025-07-01 for a
//! year, and one standard m5.large RI.

use commitd::backtest::baselines::ExistingOnly;
use commitd::backtest::{run, BacktestError, BacktestInput, Settings};
use commitd::domain::rules::split_off;
use commitd::domain::usage::{GroupSeries, IgnoredRows};
use commitd::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, Offer, PaymentOption, Provider,
    RateCard, ScenarioWindow, Term, UsageGroup, UsageModel,
};
use commitd::plan::{Decision, Exchange, GivenUp, Planner, Policy, Situation};
use rust_decimal::Decimal;
use std::str::FromStr;

fn hour(s: &str) -> Hour {
    Hour::parse(s).unwrap()
}

fn money(s: &str) -> Money {
    Money::parse(s).unwrap()
}

fn window() -> ScenarioWindow {
    ScenarioWindow {
        history_start: hour("2025-09-01T00:00:00Z"),
        decision_time: hour("2025-10-01T00:00:00Z"),
        evaluation_end: hour("2025-12-01T00:00:00Z"),
    }
}

/// The hour the usage moves, and the decision that exchanges.
fn moved() -> Hour {
    hour("2025-10-11T00:00:00Z")
}

fn azure(region: &str) -> UsageGroup {
    UsageGroup::new(
        Provider::Azure,
        region,
        "Standard_D4s_v5",
        None,
        "Linux",
        "Shared",
    )
}

fn aws(instance_type: &str) -> UsageGroup {
    UsageGroup::new(
        Provider::Aws,
        "us-east-1",
        instance_type,
        None,
        "Linux",
        "Shared",
    )
}

/// (group, instances before the move, instances after it, on-demand rate, offers).
#[allow(clippy::type_complexity)]
fn groups() -> Vec<(
    UsageGroup,
    f64,
    f64,
    &'static str,
    Vec<(Instrument, &'static str)>,
)> {
    let az = vec![
        (Instrument::AzureReservation, "0.116"),
        (Instrument::AzureSavingsPlan, "0.154"),
    ];
    let ri = vec![
        (Instrument::ConvertibleReservedInstance, "0.066"),
        (Instrument::StandardReservedInstance, "0.06"),
    ];
    vec![
        (azure("eastus"), 4.0, 0.0, "0.192", az.clone()),
        (azure("westeurope"), 0.0, 4.0, "0.192", az),
        (aws("m5.large"), 2.0, 0.0, "0.096", ri.clone()),
        (aws("m6i.large"), 0.0, 2.0, "0.096", ri),
    ]
}

fn input() -> BacktestInput {
    let w = window();
    let range = w.all();
    let at = moved().since(range.start) as usize;
    let mut rates = RateCard::new();
    let mut series = Vec::new();
    for (g, before, after, od, offers) in groups() {
        let p = g.product();
        let offer = |instrument, term, rate: &str| Offer {
            instrument,
            term,
            payment: PaymentOption::NoUpfront,
            effective_hourly_rate: Decimal::from_str(rate).unwrap(),
            upfront_share: Decimal::ZERO,
        };
        rates.insert(p.clone(), offer(Instrument::OnDemand, None, od));
        for (instrument, rate) in offers {
            rates.insert(p.clone(), offer(instrument, Some(Term::ONE_YEAR), rate));
        }
        let od: f64 = od.parse().unwrap();
        let mut s = GroupSeries::empty(g, range.len());
        for i in 0..range.len() {
            s.quantity[i] = if i < at { before } else { after };
            s.ode[i] = s.quantity[i] * od;
        }
        series.push(s);
    }
    BacktestInput {
        name: "exchanges".into(),
        window: w,
        usage: UsageModel {
            range,
            currency: "USD".into(),
            groups: series,
            commitments: vec![],
            last_observed: Some(range.end.plus(-1)),
            rows_read: 0,
            ignored: IgnoredRows::default(),
        },
        rates,
        existing: vec![
            reservation(
                "az",
                Instrument::AzureReservation,
                &azure("eastus"),
                4,
                "0.464",
            ),
            reservation(
                "cri",
                Instrument::ConvertibleReservedInstance,
                &aws("m5.large"),
                2,
                "0.132",
            ),
            reservation(
                "sri",
                Instrument::StandardReservedInstance,
                &aws("m5.large"),
                1,
                "0.06",
            ),
        ],
    }
}

/// `count` instances of `g`'s type for a year from 2025-07-01 (no upfront).
fn reservation(
    id: &str,
    instrument: Instrument,
    g: &UsageGroup,
    count: u32,
    hourly: &str,
) -> Commitment {
    let start = hour("2025-07-01T00:00:00Z");
    Commitment {
        id: id.into(),
        provider: g.provider,
        instrument,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        start,
        end: start.plus(Term::ONE_YEAR.hours()),
        region: Some(g.region.clone()),
        instance_type: Some(g.instance_type.clone()),
        family: Some(g.family.clone()),
        amount: CommitmentAmount::Instances(count),
        hourly_cost: money(hourly),
        upfront: Money::ZERO,
    }
}

/// A target: `count` of `g`'s type from the move until `end`.
fn target(
    id: &str,
    instrument: Instrument,
    g: &UsageGroup,
    count: u32,
    hourly: &str,
    end: Hour,
) -> Commitment {
    let mut c = reservation(id, instrument, g, count, hourly);
    c.start = moved();
    c.end = end;
    c
}

/// The Azure exchange of the whole eastus reservation for four D4s_v5 in westeurope (a new
/// 1-year term), and the AWS exchange of the convertible RI for two m6i.large to its end.
fn good_exchanges() -> Vec<Exchange> {
    let az_end = moved().plus(Term::ONE_YEAR.hours());
    let cri_end = hour("2026-07-01T00:00:00Z");
    vec![
        Exchange {
            sources: vec![GivenUp {
                id: "az".into(),
                count: 4,
            }],
            targets: vec![target(
                "az-we",
                Instrument::AzureReservation,
                &azure("westeurope"),
                4,
                "0.464",
                az_end,
            )],
        },
        Exchange {
            sources: vec![GivenUp {
                id: "cri".into(),
                count: 2,
            }],
            targets: vec![target(
                "cri-m6i",
                Instrument::ConvertibleReservedInstance,
                &aws("m6i.large"),
                2,
                "0.132",
                cri_end,
            )],
        },
    ]
}

/// Makes the given decision at the move, nothing else.
struct AtTheMove(Decision);

impl Planner for AtTheMove {
    fn name(&self) -> &str {
        "exchanger"
    }

    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, commitd::plan::PlanError> {
        if ctx.now != moved() {
            return Ok(Decision::default());
        }
        Ok(std::mem::take(&mut self.0))
    }
}

fn exchange_at_the_move(exchanges: Vec<Exchange>) -> AtTheMove {
    AtTheMove(Decision {
        exchanges,
        ..Decision::default()
    })
}

fn return_at_the_move(id: &str, count: u32) -> AtTheMove {
    AtTheMove(Decision {
        returns: vec![GivenUp {
            id: id.into(),
            count,
        }],
        ..Decision::default()
    })
}

#[test]
fn an_exchange_stops_the_old_cost_and_starts_the_new_at_the_decision() {
    let input = input();
    let r = run(
        &input,
        &mut exchange_at_the_move(good_exchanges()),
        &Settings::default(),
    )
    .unwrap();
    let hours = 1464;
    // Every hour is covered: eastus and m5 by the held reservations before the move, westeurope
    // and m6i by the targets after it. The standard RI covers one m5.large before and nothing
    // after (0.06/h); the convertible RI the other m5.large.
    assert_eq!(r.total.on_demand_cost, Money::ZERO);
    assert_eq!(
        r.total.on_demand_equivalent,
        money("0.96").times(hours).unwrap()
    );
    // Held: the reservation and the convertible RI, then their targets at the same hourly cost;
    // the standard RI all along.
    assert_eq!(
        r.total.commitment_cost,
        money("0.656").times(hours).unwrap()
    );
    // The convertible RI covers one m5.large (the standard RI the other) until the move, half
    // of it idle; afterwards the standard RI is idle.
    assert!(r.total.utilization.unwrap() < 1.0);
    assert_eq!(r.exchanges, 2);
    assert_eq!(
        (r.months[0].exchanges, r.months[1].exchanges),
        (2, 0),
        "both in October"
    );
    assert!(r.purchases.is_empty());
    let left = hour("2026-07-01T00:00:00Z").since(moved());
    let az = &r.exchange_log[0];
    assert_eq!(az.provider, Provider::Azure);
    assert_eq!(az.source_value, money("0.464").times(left).unwrap());
    assert_eq!(
        az.target_value,
        money("0.464").times(Term::ONE_YEAR.hours()).unwrap()
    );
    let cri = &r.exchange_log[1];
    assert_eq!(cri.source_value, cri.target_value);
    // Left after the window: the Azure target's new year, the AWS target to the old end, the
    // standard RI to its end; nothing of what was given up.
    let end = window().evaluation_end;
    let expected = money("0.464")
        .times(moved().plus(Term::ONE_YEAR.hours()).since(end))
        .unwrap()
        + money("0.192")
            .times(hour("2026-07-01T00:00:00Z").since(end))
            .unwrap();
    assert_eq!(r.liability_after_window, expected);
    // Without the exchanges, the moved usage is paid on demand beside idle reservations.
    let stay = run(&input, &mut ExistingOnly, &Settings::default()).unwrap();
    assert_eq!(
        stay.total.on_demand_cost,
        money("0.96").times(hours - 240).unwrap()
    );
    assert!(r.total.esr > stay.total.esr + 0.3);
}

/// The error a replay with one exchange at the move ends with.
fn refused(ex: Exchange) -> String {
    match run(
        &input(),
        &mut exchange_at_the_move(vec![ex]),
        &Settings::default(),
    ) {
        Err(BacktestError::Exchange { rule, .. }) => rule,
        other => panic!("expected a refused exchange, got {other:?}"),
    }
}

#[test]
fn exchanges_that_break_the_providers_rules_are_refused() {
    let good = good_exchanges();
    let (az, cri) = (&good[0], &good[1]);
    let with_targets = |ex: &Exchange, targets: Vec<Commitment>| Exchange {
        sources: ex.sources.clone(),
        targets,
    };
    let with_source = |ex: &Exchange, id: &str, count: u32| Exchange {
        sources: vec![GivenUp {
            id: id.into(),
            count,
        }],
        targets: ex.targets.clone(),
    };
    // Azure: the new lifetime commitment must absorb the refund (one D4s_v5 for a year is
    // worth $1,016.16, the four given up $2,928.77).
    let resized = |t: &Commitment, count: u32, hourly: &str| Commitment {
        amount: CommitmentAmount::Instances(count),
        hourly_cost: money(hourly),
        ..t.clone()
    };
    let one = resized(&az.targets[0], 1, "0.116");
    let rule = refused(with_targets(az, vec![one]));
    assert!(rule.contains("less than"), "{rule}");
    // Azure: a target starts a new term.
    let mut old_end = az.targets[0].clone();
    old_end.end = hour("2026-07-01T00:00:00Z");
    let rule = refused(with_targets(az, vec![old_end]));
    assert!(rule.contains("new 1yr term"), "{rule}");
    // AWS: same region, same end, at least the value.
    let mut west = cri.targets[0].clone();
    west.region = Some("us-west-2".into());
    let rule = refused(with_targets(cri, vec![west]));
    assert!(rule.contains("region"), "{rule}");
    let mut longer = cri.targets[0].clone();
    longer.end = moved().plus(Term::ONE_YEAR.hours());
    let rule = refused(with_targets(cri, vec![longer]));
    assert!(rule.contains("end"), "{rule}");
    let cheaper = resized(&cri.targets[0], 1, "0.066");
    let rule = refused(with_targets(cri, vec![cheaper]));
    assert!(rule.contains("less than"), "{rule}");
    // A target of another instrument.
    let mut standard = cri.targets[0].clone();
    standard.instrument = Instrument::StandardReservedInstance;
    let rule = refused(with_targets(cri, vec![standard]));
    assert!(rule.contains("not a ConvertibleReservedInstance"), "{rule}");
    // Sources: only exchangeable instruments, only what is held.
    let rule = refused(with_source(cri, "sri", 1));
    assert!(rule.contains("cannot be exchanged"), "{rule}");
    let rule = refused(with_source(cri, "cri", 3));
    assert!(rule.contains("cannot give up 3"), "{rule}");
    let rule = refused(with_source(cri, "nope", 1));
    assert!(rule.contains("not held"), "{rule}");
    let rule = refused(with_targets(cri, Vec::new()));
    assert!(rule.contains("no target"), "{rule}");
}

#[test]
fn an_exchange_counts_what_it_adds_per_hour_against_the_decision_cap() {
    // Eight D4s_v5 for the four given up: 0.464 $/h more than the source.
    let mut ex = good_exchanges().remove(0);
    ex.targets[0].amount = CommitmentAmount::Instances(8);
    ex.targets[0].hourly_cost = money("0.928");
    let mut settings = Settings {
        policy: Policy {
            max_new_hourly_cost_per_decision: Some(money("0.4")),
            ..Policy::default()
        },
        ..Settings::default()
    };
    let err = run(
        &input(),
        &mut exchange_at_the_move(vec![ex.clone()]),
        &settings,
    )
    .unwrap_err();
    assert!(
        matches!(&err, BacktestError::Policy { rule, .. } if rule.contains("0.464")),
        "{err}"
    );
    settings.policy.max_new_hourly_cost_per_decision = Some(money("0.5"));
    let r = run(&input(), &mut exchange_at_the_move(vec![ex]), &settings).unwrap();
    assert_eq!(r.exchanges, 1);
}

#[test]
fn part_of_a_reservation_is_split_off_exactly() {
    let mut c = reservation(
        "r",
        Instrument::AzureReservation,
        &azure("eastus"),
        7,
        "1.000001",
    );
    c.upfront = money("100");
    let (gone, kept) = split_off(&c, 3, moved()).unwrap();
    let kept = kept.unwrap();
    assert_eq!(gone.hourly_cost + kept.hourly_cost, c.hourly_cost);
    assert_eq!(gone.upfront + kept.upfront, c.upfront);
    assert_eq!(gone.hourly_cost, Money::from_micros(428_571));
    assert_eq!(
        (gone.amount, kept.amount),
        (
            CommitmentAmount::Instances(3),
            CommitmentAmount::Instances(4)
        )
    );
    // The part given up ends now under its own id; the rest keeps the id and the end.
    assert_eq!((gone.start, gone.end), (c.start, moved()));
    assert_eq!((kept.id.as_str(), kept.end), ("r", c.end));
    assert_ne!(gone.id, "r");
    // All of it: the reservation itself ends now.
    let (all, none) = split_off(&c, 7, moved()).unwrap();
    assert!(none.is_none());
    assert_eq!((all.id.as_str(), all.end), ("r", moved()));
    assert!(split_off(&c, 8, moved()).is_err());
    assert!(split_off(&c, 0, moved()).is_err());
}

#[test]
fn a_return_stops_the_cost_and_is_refunded_within_the_cap() {
    let input = input();
    let r = run(
        &input,
        &mut return_at_the_move("az", 3),
        &Settings::default(),
    )
    .unwrap();
    // Three of the four instances stop at the move (0.348 $/h); the fourth runs on.
    let expected = money("0.464").times(240).unwrap()
        + money("0.116").times(1464 - 240).unwrap()
        + money("0.192").times(1464).unwrap();
    assert_eq!(r.total.commitment_cost, expected);
    assert_eq!(r.returns.len(), 1);
    assert_eq!((r.months[0].returns, r.months[1].returns), (1, 0));
    let left = hour("2026-07-01T00:00:00Z").since(moved());
    assert_eq!(r.returns[0].refund, money("0.348").times(left).unwrap());
    // Only Azure reservations, and only within the rolling cap.
    let refused =
        |planner: &mut AtTheMove, settings: &Settings| match run(&input, planner, settings) {
            Err(BacktestError::Exchange { rule, .. }) => rule,
            other => panic!("expected a refused return, got {other:?}"),
        };
    let rule = refused(&mut return_at_the_move("cri", 1), &Settings::default());
    assert!(rule.contains("only Azure reservations"), "{rule}");
    let tight = Settings {
        policy: Policy {
            azure_refund_cap: money("2000"),
            ..Policy::default()
        },
        ..Settings::default()
    };
    let rule = refused(&mut return_at_the_move("az", 3), &tight);
    assert!(rule.contains("exceeds the cap 2000"), "{rule}");
    // One instance (a refund of $732.19) fits under that cap.
    let r = run(&input, &mut return_at_the_move("az", 1), &tight).unwrap();
    assert_eq!(r.returns[0].refund, money("0.116").times(left).unwrap());
}

/// Lists the given instances at each of the given hours, nothing else.
struct SellAt(Vec<(Hour, &'static str, u32)>);

impl Planner for SellAt {
    fn name(&self) -> &str {
        "seller"
    }

    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, commitd::plan::PlanError> {
        Ok(Decision {
            sales: self
                .0
                .iter()
                .filter(|(at, _, _)| *at == ctx.now)
                .map(|&(_, id, count)| GivenUp {
                    id: id.into(),
                    count,
                })
                .collect(),
            ..Decision::default()
        })
    }
}

/// The scenario with the standard RI paid all upfront (0.06 $/h amortized: 525.60 upfront).
fn input_with_upfront_ri() -> BacktestInput {
    let mut input = input();
    for c in input.existing.iter_mut().filter(|c| c.id == "sri") {
        c.payment = PaymentOption::AllUpfront;
        c.upfront = money("525.6");
    }
    input
}

#[test]
fn a_marketplace_sale_bills_until_it_sells_and_writes_off_what_it_does_not_bring_in() {
    let input = input_with_upfront_ri();
    let market = Policy::default().ri_marketplace;
    assert_eq!(
        (market.sale_delay_hours, market.price_bp, market.fee_bp),
        (336, 9_000, 1_200)
    );
    let r = run(
        &input,
        &mut SellAt(vec![(moved(), "sri", 1)]),
        &Settings::default(),
    )
    .unwrap();
    // Listed at the move (hour 240 of the window), sold 14 days later (hour 576); it applies
    // and bills until then.
    let sold = moved().plus(336);
    let end = hour("2026-07-01T00:00:00Z");
    let left = end.since(sold); // 5,976 h: 8 whole months of 730 h
    assert_eq!((left, left / 730), (5_976, 8));
    // 525.60 x 8/12 x 0.90 x 0.88 = 277.5168; the upfront not yet amortized is
    // 525.60 x 5,976 / 8,760 = 358.5600; written off: 81.0432.
    let s = &r.sales[0];
    assert_eq!((s.listed, s.sold), (moved(), sold));
    assert_eq!(s.proceeds, money("277.5168"));
    assert_eq!(s.write_off, money("81.0432"));
    assert_eq!(s.hourly, money("0.06"));
    let expected_commitments = money("0.464").times(1464).unwrap()
        + money("0.132").times(1464).unwrap()
        + money("0.06").times(576).unwrap();
    assert_eq!(r.total.commitment_cost, expected_commitments);
    // The write-off is cost in October (the month it sold), and not commitment paid for.
    assert_eq!((r.months[0].sales, r.months[1].sales), (1, 0));
    assert_eq!(r.months[0].sale_write_off, money("81.0432"));
    assert_eq!(
        r.months[0].cost,
        r.months[0].commitment_cost + r.months[0].on_demand_cost + money("81.0432")
    );
    assert_eq!(
        r.total.cost,
        r.total.commitment_cost + r.total.on_demand_cost + money("81.0432")
    );
}

#[test]
fn the_marketplace_takes_only_standard_ris_old_enough_with_a_month_left_and_listed_once() {
    let refused = |input: &BacktestInput, sales: Vec<(Hour, &'static str, u32)>| match run(
        input,
        &mut SellAt(sales),
        &Settings::default(),
    ) {
        Err(BacktestError::Exchange { rule, .. }) => rule,
        other => panic!("expected a refused sale, got {other:?}"),
    };
    let input = input_with_upfront_ri();
    let rule = refused(&input, vec![(moved(), "cri", 1)]);
    assert!(rule.contains("only Standard RIs"), "{rule}");
    let rule = refused(&input, vec![(moved(), "az", 1)]);
    assert!(rule.contains("only Standard RIs"), "{rule}");
    // Listed once: the next day it is still waiting for its buyer.
    let rule = refused(
        &input,
        vec![(moved(), "sri", 1), (moved().plus(24), "sri", 1)],
    );
    assert!(rule.contains("already listed"), "{rule}");
    // Bought 20 days before the listing: under AWS's 30 days.
    let mut young = input_with_upfront_ri();
    for c in young.existing.iter_mut().filter(|c| c.id == "sri") {
        c.start = moved().plus(-20 * 24);
        c.end = c.start.plus(Term::ONE_YEAR.hours());
    }
    let rule = refused(&young, vec![(moved(), "sri", 1)]);
    assert!(rule.contains("under the 30 days"), "{rule}");
    // Less than a month left when it would sell.
    let mut ending = input_with_upfront_ri();
    for c in ending.existing.iter_mut().filter(|c| c.id == "sri") {
        c.end = moved().plus(336 + 700);
    }
    let rule = refused(&ending, vec![(moved(), "sri", 1)]);
    assert!(rule.contains("less than a month left"), "{rule}");
    // A refused decision changes nothing: the same listing alone is accepted.
    let r = run(
        &input,
        &mut SellAt(vec![(moved(), "sri", 1)]),
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(r.sales.len(), 1);
}
