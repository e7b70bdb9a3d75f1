//! The optimizer against cases whose answer is known independently of the LP.

use commitd::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, Offer, PaymentOption, Provider,
    RateCard, Term, UsageGroup,
};
use commitd::optimize::{
    optimize, synthetic, Constraints, DemandInput, MinUtilization, OptimizeError, Options,
    ProviderPolicy, TotalUtilization,
};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::collections::BTreeSet;

const START: Hour = Hour(488_424);

fn group(t: &str) -> UsageGroup {
    UsageGroup::new(Provider::Aws, "us-east-1", t, None, "Linux", "Shared")
}

fn offer(instrument: Instrument, payment: PaymentOption, rate: f64, share: f64) -> Offer {
    Offer {
        instrument,
        term: (instrument != Instrument::OnDemand).then_some(Term::ONE_YEAR),
        payment,
        effective_hourly_rate: Decimal::from_f64(rate).unwrap(),
        upfront_share: Decimal::from_f64(share).unwrap(),
    }
}

fn card(g: &UsageGroup, od: f64, offers: &[(Instrument, PaymentOption, f64, f64)]) -> RateCard {
    let mut r = RateCard::new();
    r.insert(
        g.product(),
        offer(Instrument::OnDemand, PaymentOption::NoUpfront, od, 0.0),
    );
    for &(i, p, rate, share) in offers {
        r.insert(g.product(), offer(i, p, rate, share));
    }
    r
}

fn only(instruments: &[Instrument]) -> Constraints {
    let mut c = Constraints::one_year_only();
    c.providers.retain(|p, _| *p == Provider::Aws);
    c.providers.insert(
        Provider::Aws,
        ProviderPolicy {
            instruments: instruments.iter().copied().collect(),
            terms: [Term::ONE_YEAR].into_iter().collect(),
            payments: PaymentOption::ALL.iter().copied().collect::<BTreeSet<_>>(),
        },
    );
    c
}

fn full_model() -> Options {
    Options {
        reduce: false,
        marginal_resolves: 0,
        ..Options::default()
    }
}

/// Distinct values 10.0, 10.1, ... in a scrambled order.
fn scrambled(n: usize) -> Vec<f64> {
    (0..n).map(|h| 10.0 + ((h * 37) % n) as f64 * 0.1).collect()
}

#[test]
fn single_savings_plan_covers_up_to_the_discount_quantile() {
    let g = group("m5.large");
    let d = 0.3;
    let rates = card(
        &g,
        1.0,
        &[(
            Instrument::ComputeSavingsPlan,
            PaymentOption::NoUpfront,
            1.0 - d,
            0.0,
        )],
    );
    let n = 500;
    let demand = scrambled(n);
    let input = DemandInput::actual(START, vec![(g, demand.clone())]);
    let plan = optimize(
        &input,
        &rates,
        &[],
        &only(&[Instrument::ComputeSavingsPlan]),
        &full_model(),
    )
    .unwrap();
    assert_eq!(plan.actions.len(), 1, "{plan:#?}");
    let a = &plan.actions[0];
    let level = a.amount.to_f64().unwrap() / (1.0 - d);
    let mut sorted = demand.clone();
    sorted.sort_by(f64::total_cmp);
    // Optimum: #{hours with demand <= L} = d * n; any L between those order statistics.
    let k = (d * n as f64) as usize;
    assert!(
        level >= sorted[k - 1] - 1e-4 && level <= sorted[k] + 1e-4,
        "level {level} not in [{}, {}]",
        sorted[k - 1],
        sorted[k]
    );
    // The rationale says so too: not fully used in a share `d` of the hours; breakeven 1 - d.
    assert!((a.rationale.demand_quantile - d).abs() < 0.01, "{a:#?}");
    assert!((a.rationale.breakeven_utilization - (1.0 - d)).abs() < 1e-6);

    // The reduced model (sorted-duration slices for one group) lands in the same place within
    // a slice's width.
    let reduced = optimize(
        &input,
        &rates,
        &[],
        &only(&[Instrument::ComputeSavingsPlan]),
        &Options {
            max_coverage_columns: 50,
            min_points: 1,
            refine_rounds: 0,
            marginal_resolves: 0,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(reduced.solver.reduced_points, 50);
    let r_level = reduced.actions[0].amount.to_f64().unwrap() / (1.0 - d);
    assert!((r_level - level).abs() < 1.5, "{r_level} vs {level}");
    let gap = (reduced.solver.objective - plan.solver.objective).abs() / plan.solver.objective;
    assert!(gap < 1e-3, "reduced objective off by {gap}");
}

#[test]
fn dominated_offers_are_never_bought() {
    let g = group("m5.large");
    let rates = card(
        &g,
        1.0,
        &[
            (
                Instrument::StandardReservedInstance,
                PaymentOption::NoUpfront,
                0.6,
                0.0,
            ),
            (
                Instrument::ConvertibleReservedInstance,
                PaymentOption::NoUpfront,
                0.7,
                0.0,
            ),
            (
                Instrument::Ec2InstanceSavingsPlan,
                PaymentOption::NoUpfront,
                0.65,
                0.0,
            ),
            (
                Instrument::ComputeSavingsPlan,
                PaymentOption::NoUpfront,
                0.72,
                0.0,
            ),
            // Dearer *and* upfront: dominated by NoUpfront.
            (
                Instrument::ComputeSavingsPlan,
                PaymentOption::PartialUpfront,
                0.75,
                0.5,
            ),
        ],
    );
    let demand: Vec<f64> = scrambled(200);
    let input = DemandInput::actual(START, vec![(g, demand)]);
    let plan = optimize(
        &input,
        &rates,
        &[],
        &Constraints::one_year_only(),
        &full_model(),
    )
    .unwrap();
    assert!(!plan.actions.is_empty());
    for a in &plan.actions {
        assert_eq!(a.instrument, Instrument::StandardReservedInstance, "{a:#?}");
    }
    assert!(plan.notes.iter().any(|n| n.contains("dominated")));
    // Demand never drops below 10 instances and the RI beats on demand at any utilization
    // above 60%: 10 instances is the floor, and with demand spread evenly to 29.9 the optimum
    // stops where the share of hours above it equals 0.6.
    let count = plan.actions[0].amount.to_u32().unwrap();
    assert!(count >= 10, "{count}");
}

fn existing_ri(count: u32) -> Commitment {
    Commitment {
        id: "ri-1".into(),
        provider: Provider::Aws,
        instrument: Instrument::StandardReservedInstance,
        term: Term::ONE_YEAR,
        payment: PaymentOption::AllUpfront,
        start: START.plus(-1000),
        end: START.plus(8000),
        region: Some("us-east-1".into()),
        instance_type: Some("m5.xlarge".into()),
        family: Some("m5".into()),
        amount: CommitmentAmount::Instances(count),
        hourly_cost: Money::from_micros(120_000 * count as i64),
        upfront: Money::ZERO,
    }
}

#[test]
fn existing_commitments_are_used_before_new_ones() {
    // Demand: 10 m5.large (4 units each) every hour; an existing RI for 3 m5.xlarge (8 units
    // each = 24 units = 6 m5.large) covers 6 of them through size flexibility.
    let g = group("m5.large");
    let rates = card(
        &g,
        0.096,
        &[(
            Instrument::StandardReservedInstance,
            PaymentOption::NoUpfront,
            0.06,
            0.0,
        )],
    );
    let input = DemandInput::actual(START, vec![(g, vec![10.0; 300])]);
    let c = only(&[Instrument::StandardReservedInstance]);
    let plan = optimize(&input, &rates, &[existing_ri(3)], &c, &full_model()).unwrap();
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].amount, Decimal::from(4));
    assert!((plan.expected.coverage - 1.0).abs() < 1e-9);
    // Existing cost is sunk: 300 h x 3 x 0.12; new: 300 h x 4 x 0.06.
    let expected = 300.0 * 3.0 * 0.12 + 300.0 * 4.0 * 0.06;
    assert!((plan.expected.cost.to_f64() - expected).abs() < 1e-3);

    // Enough existing capacity: nothing to buy.
    let plan = optimize(&input, &rates, &[existing_ri(5)], &c, &full_model()).unwrap();
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
}

#[test]
fn an_infeasible_policy_is_a_clear_error() {
    let g = group("m5.large");
    let rates = card(
        &g,
        1.0,
        &[(
            Instrument::ComputeSavingsPlan,
            PaymentOption::NoUpfront,
            0.7,
            0.0,
        )],
    );
    let input = DemandInput::actual(START, vec![(g, vec![10.0; 100])]);
    let mut c = only(&[Instrument::ComputeSavingsPlan]);
    c.min_coverage = Some(0.9);
    c.max_new_hourly = Some(Money::from_units(1));
    let err = optimize(&input, &rates, &[], &c, &full_model()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OptimizeError::Infeasible(_)), "{err:?}");
    assert!(text.contains("min_coverage 90.0%"), "{text}");
    assert!(text.contains("max_new_hourly $1/hour"), "{text}");

    // A utilization floor at a quantile the demand does not have is refused before solving.
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 2,
        hours: 48,
        levels: vec![0.5, 0.9],
        ..Default::default()
    });
    let mut c = Constraints::one_year_only();
    c.min_utilization = Some(MinUtilization {
        level: 0.1,
        min: 0.97,
    });
    let err = optimize(&demand, &rates, &[], &c, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("min_utilization.level: no demand scenario at quantile level 0.1"),
        "{err}"
    );
}

#[test]
fn min_utilization_at_a_low_quantile_holds_in_that_scenario() {
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 6,
        hours: 24 * 14,
        levels: vec![0.1, 0.5, 0.9],
        ..Default::default()
    });
    let mut c = Constraints::one_year_only();
    c.min_utilization = Some(MinUtilization {
        level: 0.1,
        min: 0.97,
    });
    let plan = optimize(&demand, &rates, &[], &c, &Options::default()).unwrap();
    assert!(!plan.actions.is_empty());
    for a in &plan.actions {
        let (_, u) = a.rationale.utilization_by_scenario[0];
        assert!(u >= 0.97 - 1e-6, "{}: {u}", a.rationale.summary);
    }
    // Without the floor the plan buys at least as much.
    let loose = optimize(
        &demand,
        &rates,
        &[],
        &Constraints::one_year_only(),
        &Options::default(),
    )
    .unwrap();
    assert!(loose.expected.cost <= plan.expected.cost);
}

/// Money-weighted utilization of a plan's purchases in scenario 0 (all run the whole window).
fn total_utilization(plan: &commitd::domain::Plan) -> f64 {
    let (used, cost) = plan.actions.iter().fold((0.0, 0.0), |(u, c), a| {
        let h = a.hourly_cost.to_f64();
        (u + a.rationale.utilization_by_scenario[0].1 * h, c + h)
    });
    used / cost
}

#[test]
fn min_total_utilization_holds_for_the_purchases_together_and_credit_relaxes_it() {
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 6,
        hours: 24 * 14,
        levels: vec![0.1, 0.5, 0.9],
        ..Default::default()
    });
    let run = |total: Option<TotalUtilization>, per_pool: Option<MinUtilization>| {
        let mut c = Constraints::one_year_only();
        c.min_total_utilization = total;
        c.min_utilization = per_pool;
        optimize(&demand, &rates, &[], &c, &Options::default()).unwrap()
    };
    let loose = run(None, None);
    assert!(
        total_utilization(&loose) < 0.95,
        "the floor must bind for this test to mean anything: {}",
        total_utilization(&loose)
    );
    let floor = TotalUtilization {
        level: 0.1,
        min: 0.95,
        credit: 0.0,
    };
    let total = run(Some(floor), None);
    assert!(!total.actions.is_empty());
    // The relaxation holds it exactly; whole instances (rounded down) may move it a little.
    let u = total_utilization(&total);
    assert!(u >= 0.95 - 0.005, "total utilization {u}");
    // A floor on every purchase is stricter than one on all of them together: in the relaxation
    // (the LP's objective); the plans rounded to whole instances, and their savings plans sized
    // again next to them, can land either way by a little.
    let per_pool = run(
        None,
        Some(MinUtilization {
            level: 0.1,
            min: 0.95,
        }),
    );
    let relaxed = |p: &commitd::domain::Plan| p.solver.objective;
    assert!(
        relaxed(&total) <= relaxed(&per_pool) * (1.0 + 1e-6),
        "{} > {}",
        relaxed(&total),
        relaxed(&per_pool)
    );
    assert!(relaxed(&total) >= relaxed(&loose) * (1.0 - 1e-6));
    let cost = |p: &commitd::domain::Plan| p.expected.cost.to_f64();
    // A credit as large as the whole window's cost lifts the floor.
    let credited = run(
        Some(TotalUtilization {
            credit: 1e9,
            ..floor
        }),
        None,
    );
    let rel = (cost(&credited) - cost(&loose)).abs() / cost(&loose);
    assert!(rel < 1e-6, "{} vs {}", cost(&credited), cost(&loose));
    // A negative credit is refused before anything is solved, naming the field.
    let mut c = Constraints::one_year_only();
    c.min_total_utilization = Some(TotalUtilization {
        credit: -1.0,
        ..floor
    });
    match optimize(&demand, &rates, &[], &c, &Options::default()) {
        Err(OptimizeError::InvalidPolicy { field, .. }) => {
            assert_eq!(field, "min_total_utilization.credit")
        }
        other => panic!("expected an invalid policy, got {other:?}"),
    }
}

#[test]
fn reduced_model_converges_to_the_full_model_objective() {
    // 12 groups with independent hourly noise: the hardest case for representative hours.
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 12,
        hours: 24 * 7 * 4,
        ..Default::default()
    });
    let c = Constraints::one_year_only();
    let full = optimize(&demand, &rates, &[], &c, &full_model()).unwrap();
    let gap = |rounds: usize, budget: usize| {
        let r = optimize(
            &demand,
            &rates,
            &[],
            &c,
            &Options {
                max_coverage_columns: budget,
                min_points: 8,
                refine_rounds: rounds,
                marginal_resolves: 0,
                ..Options::default()
            },
        )
        .unwrap();
        assert!(r.solver.reduced_points < full.solver.reduced_points);
        // Averaging inside a point can only hide variation: the reduced model is optimistic.
        assert!(r.solver.objective <= full.solver.objective * (1.0 + 1e-9));
        (r.solver.objective - full.solver.objective).abs() / full.solver.objective
    };
    let coarse = gap(0, 36 * 60);
    let refined = gap(3, 36 * 60);
    assert!(
        refined < coarse,
        "refinement must help: {refined} vs {coarse}"
    );
    let fine = gap(6, 36 * 150);
    assert!(fine < 1e-3, "gap {fine}");
}

#[test]
fn quantile_scenarios_share_the_point_budget_and_refinement_spends_the_floor() {
    // Three quantile paths with a column budget too small to matter: `min_points` decides. The
    // first reduction keeps `min_points` per segment for the whole LP (not per scenario), the
    // refinement then splits a quarter of the per-scenario total (3 x 8) per round where the
    // commitments cut. The reduced objective stays a lower bound of the full one and refining
    // brings it closer.
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 12,
        hours: 24 * 7 * 4,
        levels: vec![0.1, 0.5, 0.9],
        ..Default::default()
    });
    let c = Constraints::one_year_only();
    let full = optimize(&demand, &rates, &[], &c, &full_model()).unwrap();
    let run = |rounds: usize| {
        optimize(
            &demand,
            &rates,
            &[],
            &c,
            &Options {
                max_coverage_columns: 1,
                min_points: 8,
                refine_rounds: rounds,
                marginal_resolves: 0,
                ..Options::default()
            },
        )
        .unwrap()
    };
    let coarse = run(0);
    assert_eq!(coarse.solver.reduced_points, 8);
    let refined = run(2);
    assert!(
        refined.solver.reduced_points > 8 && refined.solver.reduced_points <= 8 + 2 * 6,
        "{} points",
        refined.solver.reduced_points
    );
    let gap = |objective: f64| (full.solver.objective - objective) / full.solver.objective;
    assert!(gap(coarse.solver.objective) >= -1e-9);
    assert!(gap(refined.solver.objective) >= -1e-9);
    assert!(
        gap(refined.solver.objective) < gap(coarse.solver.objective),
        "refinement must help: {} vs {}",
        gap(refined.solver.objective),
        gap(coarse.solver.objective)
    );
}

#[test]
fn warm_started_refinement_reaches_the_same_optimum_as_a_cold_one() {
    // One refinement round: both runs solve the same first reduction cold and refine it from
    // the same coverage, so the refined LP is the same and only its starting point differs
    // (the previous solution carried over to the split points). Its optimum must not.
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 12,
        hours: 24 * 7 * 4,
        levels: vec![0.1, 0.5, 0.9],
        ..Default::default()
    });
    let c = Constraints::one_year_only();
    let run = |warm_start: bool| {
        optimize(
            &demand,
            &rates,
            &[],
            &c,
            &Options {
                max_coverage_columns: 36 * 60,
                min_points: 8,
                refine_rounds: 1,
                marginal_resolves: 2,
                warm_start,
                ..Options::default()
            },
        )
        .unwrap()
    };
    let (cold, warm) = (run(false), run(true));
    assert_eq!(cold.solver.reduced_points, warm.solver.reduced_points);
    let rel = (cold.solver.objective - warm.solver.objective).abs() / cold.solver.objective;
    assert!(
        rel < 1e-7,
        "cold {} vs warm {}",
        cold.solver.objective,
        warm.solver.objective
    );
    assert!(!warm.actions.is_empty());
}

#[test]
fn sizes_with_proportional_prices_merge_without_changing_the_optimum() {
    // m5.xlarge is twice m5.large in units and in every price: the two are interchangeable for
    // every instrument, so planning them together equals planning one m5.large group carrying
    // both (the xlarge hours counted twice).
    let large = group("m5.large");
    let xlarge = group("m5.xlarge");
    let offers = |k: f64| {
        vec![
            (
                Instrument::StandardReservedInstance,
                PaymentOption::NoUpfront,
                0.06 * k,
                0.0,
            ),
            (
                Instrument::ComputeSavingsPlan,
                PaymentOption::NoUpfront,
                0.07 * k,
                0.0,
            ),
        ]
    };
    let mut rates = card(&large, 0.096, &offers(1.0));
    let x = card(&xlarge, 0.192, &offers(2.0));
    for (p, os) in x.products() {
        for o in os {
            rates.insert(p.clone(), o.clone());
        }
    }
    let a = scrambled(240);
    let b: Vec<f64> = scrambled(240).iter().rev().map(|v| v * 0.5).collect();
    let both = DemandInput::actual(START, vec![(large.clone(), a.clone()), (xlarge, b.clone())]);
    let merged: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + 2.0 * y).collect();
    let one = DemandInput::actual(START, vec![(large, merged)]);
    let c = only(&[
        Instrument::StandardReservedInstance,
        Instrument::ComputeSavingsPlan,
    ]);
    let p_both = optimize(&both, &rates, &[], &c, &full_model()).unwrap();
    let p_one = optimize(&one, &rates, &[], &c, &full_model()).unwrap();
    assert!(p_both
        .notes
        .iter()
        .any(|n| n.contains("1 usage groups merged")));
    assert!((p_both.solver.objective - p_one.solver.objective).abs() < 1e-6);
    assert_eq!(p_both.expected.cost, p_one.expected.cost);
}

#[test]
fn savings_plans_cover_what_whole_instances_leave_on_demand() {
    // A steady 0.4 of an r6i.4xlarge (1.008 $/h on demand): the relaxation reserves 0.4 of an
    // instance, the deepest discount, which rounds to no reservation at all. Sized again next
    // to the whole instances, the Compute SP (bought anyway for 2 c5.xlarge, which have no
    // reservation offer) grows to cover the 0.4 at its lesser discount.
    let g = group("r6i.4xlarge");
    let c5 = group("c5.xlarge");
    let od = 1.008;
    let mut rates = card(
        &c5,
        0.17,
        &[(
            Instrument::ComputeSavingsPlan,
            PaymentOption::NoUpfront,
            0.7 * 0.17,
            0.0,
        )],
    );
    let r6i = card(
        &g,
        od,
        &[
            (
                Instrument::StandardReservedInstance,
                PaymentOption::AllUpfront,
                0.55 * od,
                1.0,
            ),
            (
                Instrument::ComputeSavingsPlan,
                PaymentOption::NoUpfront,
                0.7 * od,
                0.0,
            ),
        ],
    );
    for o in r6i.offers(&g.product()) {
        rates.insert(g.product(), o.clone());
    }
    let hours = 24 * 90;
    let input = DemandInput::actual(START, vec![(g, vec![0.4; hours]), (c5, vec![2.0; hours])]);
    let constraints = only(&[
        Instrument::StandardReservedInstance,
        Instrument::ComputeSavingsPlan,
    ]);
    let solve = |resize_plans: bool| {
        optimize(
            &input,
            &rates,
            &[],
            &constraints,
            &Options {
                resize_plans,
                ..full_model()
            },
        )
        .unwrap()
    };
    let (resized, rounded) = (solve(true), solve(false));
    let plan_amount = |p: &commitd::domain::Plan| -> f64 {
        assert_eq!(p.actions.len(), 1, "{:#?}", p.actions);
        assert_eq!(p.actions[0].instrument, Instrument::ComputeSavingsPlan);
        p.actions[0].amount.to_f64().unwrap()
    };
    // Rounded down alone: the plan covers the c5s only (2 x 0.7 x 0.17 = 0.238 $/h).
    let c5_only = 2.0 * 0.7 * 0.17;
    assert!((plan_amount(&rounded) - c5_only).abs() < 1e-4);
    // Resized: and the 0.4 r6i.4xlarge (0.4 x 0.7 x 1.008 = 0.28224 $/h), to AWS's step.
    let amount = plan_amount(&resized);
    assert!((amount - c5_only - 0.28224).abs() < 1e-4, "{amount}");
    // 30 % off everything, fully used.
    assert!(resized.expected.cost < rounded.expected.cost);
    assert!(
        (resized.expected.esr - 0.3).abs() < 1e-3,
        "{}",
        resized.expected.esr
    );
    assert!(resized.expected.utilization > 0.999);
}
