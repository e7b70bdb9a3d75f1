//! An AWS savings plan inside its return window (the caller marks it returnable) is returned
//! whole when the new forecast no longer wants it, and kept when it does. Each case has an
//! answer known without the LP: a plan of 1 USD/h covering 0.07 USD/h of usage is worth
//! returning; the same plan fully used is not.

use commitd::domain::{
    ActionKind, Commitment, CommitmentAmount, Hour, Instrument, Money, Offer, PaymentOption, Plan,
    Provider, RateCard, Term, UsageGroup,
};
use commitd::optimize::{optimize, Constraints, DemandInput, Options};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;

const START: Hour = Hour(488_424);
const HOURS: usize = 300;

fn m5() -> UsageGroup {
    UsageGroup::new(
        Provider::Aws,
        "us-east-1",
        "m5.large",
        None,
        "Linux",
        "Shared",
    )
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

fn rates() -> RateCard {
    let mut r = RateCard::new();
    r.insert(m5().product(), offer(Instrument::OnDemand, 0.096));
    r.insert(m5().product(), offer(Instrument::ComputeSavingsPlan, 0.07));
    r
}

/// A Compute savings plan of 1 USD/h bought a day before the decision.
fn plan_sp() -> Commitment {
    Commitment {
        id: "sp-1".into(),
        provider: Provider::Aws,
        instrument: Instrument::ComputeSavingsPlan,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        start: START.plus(-24),
        end: START.plus(8760 - 24),
        region: None,
        instance_type: None,
        family: None,
        amount: CommitmentAmount::HourlySpend(Money::from_units(1)),
        hourly_cost: Money::from_units(1),
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

fn returnable() -> Constraints {
    let mut c = Constraints::one_year_only();
    c.returnable.insert("sp-1".into());
    c
}

fn returned(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| match &a.kind {
            ActionKind::Return { source_id, .. } => Some(source_id.clone()),
            _ => None,
        })
        .collect()
}

fn plan_for(instances: f64, c: &Constraints) -> Plan {
    let input = DemandInput::actual(START, vec![(m5(), vec![instances; HOURS])]);
    optimize(&input, &rates(), &[plan_sp()], c, &full()).unwrap()
}

#[test]
fn a_returnable_savings_plan_no_longer_wanted_is_returned_whole() {
    // One m5.large: 0.07 USD/h of the plan's 1 USD/h is used.
    let plan = plan_for(1.0, &returnable());
    assert_eq!(
        returned(&plan),
        vec!["sp-1".to_string()],
        "{:#?}",
        plan.actions
    );
    let a = plan.actions.iter().find(|a| a.is_return()).unwrap();
    assert_eq!(a.instrument, Instrument::ComputeSavingsPlan);
    assert_eq!(a.amount, Decimal::ONE, "the whole plan");
    assert_eq!(a.hourly_cost, Money::from_units(1), "its whole cost stops");
    assert!(a.rationale.expected_savings > 0.0, "{:#?}", a.rationale);
    assert!(
        a.rationale.summary.contains("return window"),
        "{}",
        a.rationale.summary
    );

    // Without the mark (bought by a person, or outside the window) it is kept.
    let kept = plan_for(1.0, &Constraints::one_year_only());
    assert!(returned(&kept).is_empty(), "{:#?}", kept.actions);
    assert!(plan.expected.cost < kept.expected.cost);
}

#[test]
fn a_returnable_savings_plan_still_used_is_kept() {
    // Twenty m5.large need 1.4 USD/h of savings plan rates: the plan is fully used.
    let plan = plan_for(20.0, &returnable());
    assert!(returned(&plan).is_empty(), "{:#?}", plan.actions);
}

#[test]
fn an_aws_return_does_not_use_the_azure_refund_cap() {
    let mut c = returnable();
    c.azure_refund_remaining = Money::ZERO;
    let plan = plan_for(1.0, &c);
    assert_eq!(
        returned(&plan),
        vec!["sp-1".to_string()],
        "{:#?}",
        plan.actions
    );
}
