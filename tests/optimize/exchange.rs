//! Exchanges and returns as decisions of the optimizer's LP: AWS convertible RIs move their
//! remaining value to another configuration in the same region, Azure reservations are
//! exchanged or returned within the refund cap. Each case has an answer known without the LP.

use commitd::domain::{
    Action, ActionKind, ActionScope, Commitment, CommitmentAmount, Hour, Instrument, Money, Offer,
    PaymentOption, Plan, Provider, RateCard, Term, UsageGroup,
};
use commitd::optimize::{optimize, Constraints, DemandInput, Options};
use proptest::prelude::*;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

const START: Hour = Hour(488_424);
const HOURS: usize = 300;

fn aws(t: &str) -> UsageGroup {
    UsageGroup::new(Provider::Aws, "us-east-1", t, None, "Linux", "Shared")
}

fn azure(t: &str) -> UsageGroup {
    UsageGroup::new(Provider::Azure, "eastus", t, None, "Linux", "Shared")
}

fn offer(instrument: Instrument, rate: f64) -> Offer {
    Offer {
        instrument,
        term: (instrument != Instrument::OnDemand).then_some(Term::ONE_YEAR),
        payment: PaymentOption::NoUpfront,
        effective_hourly_rate: Decimal::from_f64(rate).unwrap(),
        upfront_share: Decimal::ZERO,
    }
}

/// A group, its on-demand rate and its 1-year NoUpfront commitment rates.
type CardRow<'a> = (&'a UsageGroup, f64, &'a [(Instrument, f64)]);

/// On-demand and one 1-year NoUpfront rate per instrument for each group.
fn card(rows: &[CardRow<'_>]) -> RateCard {
    let mut r = RateCard::new();
    for (g, od, offers) in rows {
        r.insert(g.product(), offer(Instrument::OnDemand, *od));
        for &(i, rate) in *offers {
            r.insert(g.product(), offer(i, rate));
        }
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn existing(
    id: &str,
    provider: Provider,
    instrument: Instrument,
    region: &str,
    instance_type: &str,
    count: u32,
    hourly_each: f64,
    hours_left: i64,
) -> Commitment {
    Commitment {
        id: id.into(),
        provider,
        instrument,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        start: START.plus(hours_left - 8760),
        end: START.plus(hours_left),
        region: Some(region.into()),
        instance_type: Some(instance_type.into()),
        family: None,
        amount: CommitmentAmount::Instances(count),
        hourly_cost: Money::from_f64(hourly_each * count as f64).unwrap(),
        upfront: Money::ZERO,
    }
}

fn full() -> Options {
    Options {
        reduce: false,
        marginal_resolves: 0,
        ..Options::default()
    }
}

fn exchanges(plan: &Plan) -> Vec<&Action> {
    plan.actions
        .iter()
        .filter(|a| matches!(a.kind, ActionKind::Exchange { .. }))
        .collect()
}

fn returns(plan: &Plan) -> Vec<&Action> {
    plan.actions.iter().filter(|a| a.is_return()).collect()
}

/// Usage moved from m5 to c5 in us-east-1; an m5 convertible RI (4 x m5.xlarge = 32 units,
/// 8,000 hours left) is mostly idle.
fn migrated(m5_demand: f64) -> (DemandInput, RateCard, Vec<Commitment>) {
    let m5 = aws("m5.large");
    let c5 = aws("c5.large");
    let rates = card(&[
        (
            &m5,
            0.096,
            &[(Instrument::ConvertibleReservedInstance, 0.060)],
        ),
        (
            &c5,
            0.085,
            &[(Instrument::ConvertibleReservedInstance, 0.053)],
        ),
    ]);
    let input = DemandInput::actual(
        START,
        vec![(m5, vec![m5_demand; HOURS]), (c5, vec![10.0; HOURS])],
    );
    let ri = existing(
        "cri-1",
        Provider::Aws,
        Instrument::ConvertibleReservedInstance,
        "us-east-1",
        "m5.xlarge",
        4,
        0.12,
        8000,
    );
    (input, rates, vec![ri])
}

#[test]
fn a_convertible_ri_whose_usage_migrated_is_exchanged_into_the_new_family() {
    let (input, rates, ri) = migrated(1.0);
    let c = Constraints::one_year_only();
    let plan = optimize(&input, &rates, &ri, &c, &full()).unwrap();
    let ex = exchanges(&plan);
    assert_eq!(ex.len(), 1, "{:#?}", plan.actions);
    let a = ex[0];
    let ActionKind::Exchange {
        source_id,
        source_count,
        source_value,
        true_up,
    } = &a.kind
    else {
        unreachable!()
    };
    assert_eq!(source_id, "cri-1");
    assert_eq!(a.instrument, Instrument::ConvertibleReservedInstance);
    match &a.scope {
        ActionScope::Instances {
            region,
            instance_type,
            ..
        } => {
            assert_eq!(region, "us-east-1", "same region only");
            assert_eq!(instance_type, "c5.large");
        }
        other => panic!("{other:?}"),
    }
    // m5 keeps 1 m5.large (4 of the 32 units): 3 or more of the 4 xlarge can go.
    assert!(*source_count >= 3, "{source_count}");
    // Value rule: the target's value over the source's 8,000 remaining hours (same end date)
    // covers the source's remaining value, the difference is the true-up.
    let given_up = 0.12 * f64::from(*source_count) * 8000.0;
    assert!(
        (source_value.to_f64() - given_up).abs() < 0.01,
        "{source_value}"
    );
    let target_value = a.hourly_cost.to_f64() * 8000.0;
    assert!(
        target_value >= given_up - 0.01,
        "{target_value} < {given_up}"
    );
    assert!(
        (true_up.to_f64() - (target_value - given_up)).abs() < 0.01,
        "{true_up}"
    );
    // c5.large convertible at $0.053 an instance: at least the value given up, at most the
    // 10 instances of demand.
    let count = a.amount.to_u32().unwrap();
    assert!(f64::from(count) * 0.053 >= 0.12 * f64::from(*source_count) - 1e-9);
    assert!(count <= 10, "{count}");
    // The rationale says what it does to the source and what it saves.
    let r = &a.rationale;
    assert!(r.source_utilization_before.unwrap() < 0.2, "{r:#?}");
    assert!(r.expected_savings > 0.0);
    assert_eq!(r.value_if_removed, Some(r.expected_savings));
    assert!(r.summary.contains("exchange"), "{}", r.summary);

    // Exchanging is what makes the plan cheaper than keeping the idle RI.
    let mut no = c.clone();
    no.allow_exchanges = false;
    let without = optimize(&input, &rates, &ri, &no, &full()).unwrap();
    assert!(
        plan.expected.cost < without.expected.cost,
        "{} vs {}",
        plan.expected.cost,
        without.expected.cost
    );
}

#[test]
fn exchanges_disabled_by_policy_yield_none() {
    let (input, rates, ri) = migrated(1.0);
    let mut c = Constraints::one_year_only();
    c.allow_exchanges = false;
    let plan = optimize(&input, &rates, &ri, &c, &full()).unwrap();
    assert!(
        plan.actions.iter().all(|a| a.is_purchase()),
        "{:#?}",
        plan.actions
    );
}

#[test]
fn a_fully_used_source_is_not_exchanged() {
    // 8 m5.large every hour use all 32 units of the RI.
    let (input, rates, ri) = migrated(8.0);
    let plan = optimize(&input, &rates, &ri, &Constraints::one_year_only(), &full()).unwrap();
    assert!(exchanges(&plan).is_empty(), "{:#?}", plan.actions);
    assert!(returns(&plan).is_empty());
}

/// Two idle Azure reservations (1 instance each, $0.30/hour, 5,000 hours left: $1,500 of
/// remaining value each) next to some AWS usage.
fn idle_reservations(cap: f64) -> Plan {
    let d4 = azure("Standard_D4s_v5");
    let e8 = azure("Standard_E8s_v5");
    let m5 = aws("m5.large");
    let rates = card(&[
        (&d4, 0.192, &[(Instrument::AzureReservation, 0.12)]),
        (&e8, 0.504, &[(Instrument::AzureReservation, 0.31)]),
        (&m5, 0.096, &[]),
    ]);
    let input = DemandInput::actual(
        START,
        vec![
            (d4, vec![0.0; HOURS]),
            (e8, vec![0.0; HOURS]),
            (m5, vec![3.0; HOURS]),
        ],
    );
    let held = vec![
        existing(
            "res-d",
            Provider::Azure,
            Instrument::AzureReservation,
            "eastus",
            "Standard_D4s_v5",
            1,
            0.30,
            5000,
        ),
        existing(
            "res-e",
            Provider::Azure,
            Instrument::AzureReservation,
            "eastus",
            "Standard_E8s_v5",
            1,
            0.30,
            5000,
        ),
    ];
    let mut c = Constraints::one_year_only();
    c.azure_refund_remaining = Money::from_f64(cap).unwrap();
    optimize(&input, &rates, &held, &c, &full()).unwrap()
}

#[test]
fn the_azure_refund_cap_binds() {
    // Room for both refunds: both idle reservations go back.
    let plan = idle_reservations(50_000.0);
    let r = returns(&plan);
    assert_eq!(r.len(), 2, "{:#?}", plan.actions);
    // Each return saves its cost inside the window: 300 h x $0.30.
    for a in &r {
        assert!((a.rationale.expected_savings - 90.0).abs() < 0.01, "{a:#?}");
        let ActionKind::Return { refund, .. } = &a.kind else {
            unreachable!()
        };
        assert!((refund.to_f64() - 1500.0).abs() < 0.01);
    }

    // $2,000 left under the rolling cap: one $1,500 refund fits, two do not.
    let plan = idle_reservations(2_000.0);
    let r = returns(&plan);
    assert_eq!(r.len(), 1, "{:#?}", plan.actions);
    let refunds: f64 = r
        .iter()
        .map(|a| match &a.kind {
            ActionKind::Return { refund, .. } => refund.to_f64(),
            _ => 0.0,
        })
        .sum();
    assert!(refunds <= 2_000.0);

    // No room at all: nothing is returned.
    let plan = idle_reservations(0.0);
    assert!(returns(&plan).is_empty(), "{:#?}", plan.actions);
}

#[test]
fn return_and_exchange_actions_round_trip_through_json() {
    let plan = idle_reservations(50_000.0);
    let v = serde_json::to_value(&plan).unwrap();
    let a = &v["actions"][0];
    assert_eq!(a["type"], "return", "{a}");
    assert!(a["source_id"].as_str().unwrap().starts_with("res-"));
    assert_eq!(a["refund"], "1500");
    let back: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(back.actions.len(), plan.actions.len());
    for (x, y) in back.actions.iter().zip(&plan.actions) {
        assert_eq!(x.kind, y.kind);
        assert_eq!(x.amount, y.amount);
    }
}

/// A small fleet where exchanges and returns matter: three AWS families in us-east-1 and two
/// Azure series in eastus, hourly demand from a base level with a daily swing, P10/P50/P90 paths.
fn fleet(levels: [f64; 5], days: usize, discount: f64) -> (DemandInput, RateCard) {
    let groups = [
        (aws("m5.large"), 0.096),
        (aws("c5.large"), 0.085),
        (aws("r5.large"), 0.126),
        (azure("Standard_D4s_v5"), 0.192),
        (azure("Standard_E8s_v5"), 0.504),
    ];
    let mut rates = RateCard::new();
    let mut series = Vec::new();
    for ((g, od), base) in groups.iter().zip(levels) {
        rates.insert(g.product(), offer(Instrument::OnDemand, *od));
        let commitments: &[(Instrument, f64)] = match g.provider {
            Provider::Aws => &[
                (Instrument::ConvertibleReservedInstance, 1.0 - discount),
                (Instrument::StandardReservedInstance, 0.92 - discount),
                (Instrument::ComputeSavingsPlan, 1.05 - discount),
            ],
            Provider::Azure => &[(Instrument::AzureReservation, 0.95 - discount)],
        };
        for &(i, share) in commitments {
            rates.insert(g.product(), offer(i, od * share));
        }
        let path = |scale: f64| -> Vec<f64> {
            (0..days * 24)
                .map(|h| {
                    let swing = 1.0 + 0.3 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
                    (base * scale * swing).max(0.0)
                })
                .collect()
        };
        series.push((g.clone(), vec![path(0.8), path(1.0), path(1.2)]));
    }
    (
        DemandInput::from_quantiles(START, &[0.1, 0.5, 0.9], series),
        rates,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn with_exchanges_plans_never_cost_more_and_respect_every_limit(
        levels in proptest::array::uniform5(0.0f64..12.0),
        days in 1usize..4,
        discount in 0.25f64..0.45,
        held_counts in proptest::array::uniform3(0u32..10),
        hours_left in proptest::array::uniform3(30i64..6000),
        max_hourly in proptest::option::of(0.0f64..2.0),
        max_upfront in proptest::option::of(0.0f64..2_000.0),
        max_coverage in proptest::option::of(0.0f64..1.0),
        refund_cap in 0.0f64..3_000.0,
    ) {
        let (demand, rates) = fleet(levels, days, discount);
        let specs = [
            ("cri-m5", Provider::Aws, Instrument::ConvertibleReservedInstance, "us-east-1", "m5.xlarge", 0.096 * 2.0),
            ("res-d4", Provider::Azure, Instrument::AzureReservation, "eastus", "Standard_D4s_v5", 0.192),
            ("res-e8", Provider::Azure, Instrument::AzureReservation, "eastus", "Standard_E8s_v5", 0.504),
        ];
        let held: Vec<Commitment> = specs
            .iter()
            .zip(held_counts.iter().zip(hours_left))
            .filter(|(_, (n, _))| **n > 0)
            .map(|((id, p, i, region, t, od), (n, left))| {
                existing(id, *p, *i, region, t, *n, od * (1.0 - discount), left)
            })
            .collect();
        let mut c = Constraints::one_year_only();
        c.max_new_hourly = max_hourly.map(|v| Money::from_f64(v).unwrap());
        c.max_upfront = max_upfront.map(|v| Money::from_f64(v).unwrap());
        c.max_coverage = max_coverage;
        c.azure_refund_remaining = Money::from_f64(refund_cap).unwrap();
        let options = Options { marginal_resolves: 2, ..Options::default() };
        let plan = match optimize(&demand, &rates, &held, &c, &options) {
            Ok(p) => p,
            // A coverage cap below what the existing commitments already cover is infeasible
            // (they are used first): a clear error, not a plan.
            Err(commitd::optimize::OptimizeError::Infeasible(m)) if max_coverage.is_some() => {
                prop_assert!(m.contains("max_coverage"), "{m}");
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let e = &plan.expected;
        // Never dearer than doing nothing new (existing commitments kept as they are), and
        // with no commitments held, never dearer than all on demand.
        prop_assert!(e.cost <= e.cost_without_plan + Money::from_micros(10), "{:?}", e);
        if held.is_empty() {
            prop_assert!(e.cost <= e.on_demand_cost + Money::from_micros(10), "{:?}", e);
        }
        if let Some(m) = c.max_new_hourly {
            prop_assert!(e.new_hourly_commitment <= m, "{} > {}", e.new_hourly_commitment, m);
        }
        if let Some(m) = c.max_upfront {
            prop_assert!(e.new_upfront <= m, "{} > {}", e.new_upfront, m);
        }
        if let Some(m) = c.max_coverage {
            prop_assert!(e.coverage <= m + 1e-6, "{} > {}", e.coverage, m);
        }
        let by_id: BTreeMap<&str, &Commitment> = held.iter().map(|h| (h.id.as_str(), h)).collect();
        let mut refunds = 0.0;
        // Per source: instances exchanged and returned, value given up, target value.
        let mut per_source: BTreeMap<String, (u32, u32, f64, f64)> = BTreeMap::new();
        for a in &plan.actions {
            prop_assert!(a.amount > Decimal::ZERO);
            if let Some(v) = a.rationale.value_if_removed {
                prop_assert!(v >= -1e-6, "{}: {v}", a.rationale.summary);
            }
            match &a.kind {
                ActionKind::Purchase => {
                    prop_assert!(c.allows(a.provider, a.instrument, a.term(), a.payment_option));
                }
                ActionKind::Exchange { source_id, source_count, .. } => {
                    let src = by_id[source_id.as_str()];
                    prop_assert!(src.instrument.is_exchangeable());
                    prop_assert_eq!(a.instrument, src.instrument);
                    let left = src.end.since(demand.start) as f64;
                    let value_hours = match src.provider {
                        // Same region, same end date.
                        Provider::Aws => {
                            if let ActionScope::Instances { region, .. } = &a.scope {
                                prop_assert_eq!(Some(region), src.region.as_ref());
                            }
                            left
                        }
                        // A new term.
                        Provider::Azure => a.term().hours() as f64,
                    };
                    let CommitmentAmount::Instances(n) = src.amount else { unreachable!() };
                    let entry = per_source.entry(source_id.clone()).or_default();
                    entry.0 = *source_count;
                    entry.2 = src.hourly_cost.to_f64() * left * f64::from(*source_count) / f64::from(n);
                    entry.3 += a.hourly_cost.to_f64() * value_hours;
                }
                ActionKind::Return { source_id, source_count, refund } => {
                    let src = by_id[source_id.as_str()];
                    prop_assert_eq!(src.provider, Provider::Azure);
                    per_source.entry(source_id.clone()).or_default().1 = *source_count;
                    refunds += refund.to_f64();
                }
            }
        }
        prop_assert!(refunds <= refund_cap + 1e-6, "refunds {refunds} > cap {refund_cap}");
        for (id, (exchanged, returned, given, target)) in per_source {
            let CommitmentAmount::Instances(n) = by_id[id.as_str()].amount else { unreachable!() };
            prop_assert!(exchanged + returned <= n, "{id}: {exchanged} + {returned} > {n}");
            // Value rule (a cent of slack for the money rounding of each action).
            prop_assert!(target >= given - 0.01, "{id}: target {target} < source {given}");
        }
    }
}
