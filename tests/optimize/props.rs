//! Properties of every plan: never dearer than all on demand, never beyond the policy's limits.

use commitd::domain::{Money, PaymentOption, Provider};
use commitd::optimize::{optimize, synthetic, Constraints, MinUtilization, Options};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn plans_respect_limits_and_never_cost_more_than_on_demand(
        groups in 1usize..5,
        days in 1usize..5,
        seed in 0u64..1_000,
        max_hourly in proptest::option::of(0.0f64..5.0),
        max_upfront in proptest::option::of(0.0f64..20_000.0),
        max_coverage in proptest::option::of(0.0f64..1.0),
        three_year in proptest::bool::ANY,
        no_upfront_only in proptest::bool::ANY,
        min_util in proptest::option::of(0.5f64..1.0),
    ) {
        let (demand, rates) = synthetic::generate(&synthetic::Spec {
            groups,
            hours: 24 * days,
            levels: vec![0.1, 0.5, 0.9],
            seed,
            ..Default::default()
        });
        let mut c = if three_year { Constraints::permissive() } else { Constraints::one_year_only() };
        if no_upfront_only {
            for p in c.providers.values_mut() {
                p.payments = [PaymentOption::NoUpfront].into_iter().collect();
            }
        }
        c.max_new_hourly = max_hourly.map(|v| Money::from_f64(v).unwrap());
        c.max_upfront = max_upfront.map(|v| Money::from_f64(v).unwrap());
        c.max_coverage = max_coverage;
        c.min_utilization = min_util.map(|min| MinUtilization { level: 0.1, min });
        c.three_year_min_extra_savings = 0.01;
        let plan = optimize(&demand, &rates, &[], &c, &Options { marginal_resolves: 2, ..Options::default() }).unwrap();
        let e = &plan.expected;
        prop_assert!(e.cost <= e.on_demand_cost + Money::from_micros(10), "{:?}", e);
        prop_assert!(e.cost_without_plan == e.on_demand_cost || e.on_demand_cost.micros() == 0);
        if let Some(m) = c.max_new_hourly {
            prop_assert!(e.new_hourly_commitment <= m, "{} > {}", e.new_hourly_commitment, m);
        }
        if let Some(m) = c.max_upfront {
            prop_assert!(e.new_upfront <= m, "{} > {}", e.new_upfront, m);
        }
        if let Some(m) = c.max_coverage {
            prop_assert!(e.coverage <= m + 1e-6, "{} > {}", e.coverage, m);
        }
        for a in &plan.actions {
            prop_assert!(c.allows(a.provider, a.instrument, a.term(), a.payment_option));
            prop_assert!(a.amount > rust_decimal::Decimal::ZERO);
            if let Some(mu) = c.min_utilization {
                prop_assert!(a.rationale.utilization_by_scenario[0].1 >= mu.min - 1e-6,
                    "{}", a.rationale.summary);
            }
            // Dropping an action must not make the plan cheaper by more than the optimizer's
            // stated drop tolerance ($0.0001 over the window).
            if let Some(v) = a.rationale.value_if_removed {
                prop_assert!(v >= -1e-4, "{}: {v}", a.rationale.summary);
            }
            if a.provider == Provider::Aws {
                prop_assert!(a.amount.scale() <= 5);
            }
        }
    }
}

/// The case proptest found: under a coverage cap, rounding left a Standard RI that made the plan
/// $1.51 dearer than dropping it. Every action must pay for itself.
#[test]
fn no_action_costs_more_than_it_saves_under_a_coverage_cap() {
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 2,
        hours: 24 * 4,
        levels: vec![0.1, 0.5, 0.9],
        seed: 14,
        ..Default::default()
    });
    let mut c = Constraints::one_year_only();
    c.max_coverage = Some(0.7793152728000154);
    c.three_year_min_extra_savings = 0.01;
    let options = Options {
        marginal_resolves: 10,
        ..Options::default()
    };
    let plan = optimize(&demand, &rates, &[], &c, &options).unwrap();
    assert!(!plan.actions.is_empty());
    for a in &plan.actions {
        let v = a.rationale.value_if_removed.unwrap();
        assert!(v >= -1e-6, "{}: {v}", a.rationale.summary);
    }
}

/// The case proptest found with no policy limits at all: a Standard RI rounded up to one instance
/// next to a savings plan fixed at the relaxation's size; dropping it saved $0.48.
#[test]
fn no_action_costs_more_than_it_saves_without_limits() {
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: 2,
        hours: 24 * 3,
        levels: vec![0.1, 0.5, 0.9],
        seed: 570,
        ..Default::default()
    });
    let mut c = Constraints::one_year_only();
    c.three_year_min_extra_savings = 0.01;
    let options = Options {
        marginal_resolves: 2,
        ..Options::default()
    };
    let plan = optimize(&demand, &rates, &[], &c, &options).unwrap();
    assert!(!plan.actions.is_empty());
    for a in plan.actions.iter().take(options.marginal_resolves) {
        let v = a.rationale.value_if_removed.unwrap();
        assert!(v >= -1e-4, "{}: {v}", a.rationale.summary);
    }
}
