//! The billing engine on hours computed by hand. Every expected figure is written out as the
//! arithmetic that produces it, from the rate card below, so a reader can check it on paper.
//!
//! Rate card (USD per instance-hour):
//! | product                        | OnDemand | Compute SP 1y NU | EC2 Instance SP 1y NU |
//! |--------------------------------|----------|------------------|-----------------------|
//! | AWS us-east-1 m5.large         | 0.096    | 0.072 (25 % off) | 0.066 (31.25 % off)   |
//! | AWS us-east-1 m5.xlarge        | 0.192    | 0.144 (25 % off) | 0.132                 |
//! | AWS us-east-1 c5.large         | 0.085    | 0.0595 (30 % off)| 0.055                 |
//! | Azure eastus Standard_D4s_v5   | 0.192    | Azure SP 0.144 (25 % off)                |
//! | Azure eastus Standard_D2s_v5   | 0.096    | Azure SP 0.072                           |

use commitd::billing::{BillableGroup, BillingEngine, HourBill};
use commitd::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, Offer, PaymentOption, Provider,
    RateCard, Term, UsageGroup,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::str::FromStr;

const EPS: f64 = 1e-9;

fn group(provider: Provider, region: &str, t: &str) -> UsageGroup {
    UsageGroup::new(provider, region, t, None, "Linux", "Shared")
}

fn groups() -> Vec<UsageGroup> {
    vec![
        group(Provider::Aws, "us-east-1", "m5.large"),
        group(Provider::Aws, "us-east-1", "m5.xlarge"),
        group(Provider::Aws, "us-east-1", "c5.large"),
        group(Provider::Azure, "eastus", "Standard_D4s_v5"),
        group(Provider::Azure, "eastus", "Standard_D2s_v5"),
    ]
}

fn offer(instrument: Instrument, term: Option<Term>, rate: &str) -> Offer {
    Offer {
        instrument,
        term,
        payment: PaymentOption::NoUpfront,
        effective_hourly_rate: Decimal::from_str(rate).unwrap(),
        upfront_share: Decimal::ZERO,
    }
}

fn rates() -> RateCard {
    let mut card = RateCard::new();
    let one = Some(Term::ONE_YEAR);
    let aws = [
        ("m5.large", "0.096", "0.072", "0.066"),
        ("m5.xlarge", "0.192", "0.144", "0.132"),
        ("c5.large", "0.085", "0.0595", "0.055"),
    ];
    for (t, od, csp, isp) in aws {
        let p = group(Provider::Aws, "us-east-1", t).product();
        card.insert(p.clone(), offer(Instrument::OnDemand, None, od));
        card.insert(p.clone(), offer(Instrument::ComputeSavingsPlan, one, csp));
        card.insert(p, offer(Instrument::Ec2InstanceSavingsPlan, one, isp));
    }
    for (t, od, sp) in [
        ("Standard_D4s_v5", "0.192", "0.144"),
        ("Standard_D2s_v5", "0.096", "0.072"),
    ] {
        let p = group(Provider::Azure, "eastus", t).product();
        card.insert(p.clone(), offer(Instrument::OnDemand, None, od));
        card.insert(p, offer(Instrument::AzureSavingsPlan, one, sp));
    }
    card
}

fn commitment(id: &str, instrument: Instrument, amount: CommitmentAmount) -> Commitment {
    Commitment {
        id: id.into(),
        provider: instrument.provider().unwrap(),
        instrument,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        start: Hour(0),
        end: Hour(8760),
        region: None,
        instance_type: None,
        family: None,
        amount,
        hourly_cost: Money::ZERO,
        upfront: Money::ZERO,
    }
}

fn ri(id: &str, instrument: Instrument, region: &str, t: &str, n: u32, cost: &str) -> Commitment {
    let mut c = commitment(id, instrument, CommitmentAmount::Instances(n));
    c.region = Some(region.into());
    c.instance_type = Some(t.into());
    c.hourly_cost = Money::parse(cost).unwrap();
    c
}

fn sp(id: &str, instrument: Instrument, per_hour: &str) -> Commitment {
    let m = Money::parse(per_hour).unwrap();
    let mut c = commitment(id, instrument, CommitmentAmount::HourlySpend(m));
    // A savings plan's amortized hourly cost is its hourly commitment.
    c.hourly_cost = m;
    c
}

fn engine(commitments: &[Commitment]) -> BillingEngine {
    let card = rates();
    let gs = groups()
        .iter()
        .map(|g| BillableGroup::from_rate_card(g, &card, None).unwrap())
        .collect();
    BillingEngine::new(gs, commitments, &card).unwrap()
}

fn bill(e: &BillingEngine, demand: &[f64]) -> (HourBill, Vec<f64>) {
    let mut s = e.scratch();
    let b = e.bill_hour(Hour(100), demand, &mut s);
    (b, s.uncovered)
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < EPS, "{a} != {b}");
}

#[test]
fn no_commitment_everything_on_demand() {
    let e = engine(&[]);
    // 2 m5.large + 1 c5.large = 2*0.096 + 0.085 = 0.277
    let (b, left) = bill(&e, &[2.0, 0.0, 1.0, 0.0, 0.0]);
    close(b.ode, 0.277);
    close(b.on_demand_cost, 0.277);
    close(b.cost(), 0.277);
    close(b.covered_ode, 0.0);
    assert_eq!(left, vec![2.0, 0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn ri_is_size_flexible_smallest_size_first() {
    // RI for 2 x m5.xlarge = 2 * 8 = 16 normalized units, amortized 0.25 $/h.
    let r = ri(
        "ri",
        Instrument::StandardReservedInstance,
        "us-east-1",
        "m5.xlarge",
        2,
        "0.25",
    );
    let e = engine(&[r]);
    // Demand: 3 m5.large (3*4 = 12 units) and 1 m5.xlarge (8 units).
    // Smallest first: the 3 m5.large take 12 units; 4 units left cover 4/8 = 0.5 m5.xlarge.
    let (b, left) = bill(&e, &[3.0, 1.0, 0.0, 0.0, 0.0]);
    close(left[0], 0.0);
    close(left[1], 0.5);
    // ODE = 3*0.096 + 1*0.192 = 0.48; covered = 3*0.096 + 0.5*0.192 = 0.384
    close(b.ode, 0.48);
    close(b.covered_ode, 0.384);
    // On demand = 0.5 * 0.192 = 0.096; cost = 0.25 + 0.096 = 0.346; all 16 units used.
    close(b.on_demand_cost, 0.096);
    close(b.cost(), 0.346);
    close(b.used_commitment, 0.25);
    close(b.unused_commitment(), 0.0);
}

#[test]
fn ri_in_another_region_or_family_does_not_apply() {
    let wrong_region = ri(
        "a",
        Instrument::StandardReservedInstance,
        "eu-west-1",
        "m5.large",
        1,
        "0.05",
    );
    let wrong_family = ri(
        "b",
        Instrument::ConvertibleReservedInstance,
        "us-east-1",
        "c6i.large",
        1,
        "0.05",
    );
    let e = engine(&[wrong_region, wrong_family]);
    let (b, _) = bill(&e, &[1.0, 0.0, 0.0, 0.0, 0.0]);
    // Nothing covered: 0.096 on demand + 2 * 0.05 wasted commitment.
    close(b.covered_ode, 0.0);
    close(b.cost(), 0.096 + 0.1);
    close(b.used_commitment, 0.0);
    close(b.unused_commitment(), 0.1);
}

#[test]
fn savings_plan_covers_highest_discount_first_at_sp_rates() {
    // Compute SP 0.20 $/h. Demand 2 m5.large (25 % off) and 4 c5.large (30 % off).
    let e = engine(&[sp("csp", Instrument::ComputeSavingsPlan, "0.20")]);
    let (b, left) = bill(&e, &[2.0, 0.0, 4.0, 0.0, 0.0]);
    // c5.large first: 4 * 0.0595 = 0.238 > 0.20, so it covers 0.20 / 0.0595 = 3.3613445 c5-hours
    // and nothing is left for m5.large.
    close(left[2], 4.0 - 0.20 / 0.0595);
    close(left[0], 2.0);
    // ODE = 2*0.096 + 4*0.085 = 0.532; covered = (0.20/0.0595)*0.085 = 0.2857142857
    close(b.ode, 0.532);
    close(b.covered_ode, 0.2 / 0.0595 * 0.085);
    // On demand = 2*0.096 + (4 - 3.3613445)*0.085 = 0.192 + 0.0542857 = 0.2462857
    close(b.on_demand_cost, 0.192 + 0.34 - 0.2 / 0.7);
    close(b.cost(), 0.2 + 0.192 + 0.34 - 0.2 / 0.7);
    close(b.used_commitment, 0.2);
}

#[test]
fn aws_order_ri_then_instance_sp_then_compute_sp() {
    // RI 1 x m5.large (4 units, 0.06 $/h); EC2 Instance SP m5/us-east-1 0.10 $/h; Compute SP 0.10 $/h.
    let r = ri(
        "ri",
        Instrument::StandardReservedInstance,
        "us-east-1",
        "m5.large",
        1,
        "0.06",
    );
    let mut isp = sp("isp", Instrument::Ec2InstanceSavingsPlan, "0.10");
    isp.region = Some("us-east-1".into());
    isp.family = Some("m5".into());
    let csp = sp("csp", Instrument::ComputeSavingsPlan, "0.10");
    // Listed in reverse on purpose: the order of application must not depend on input order.
    let e = engine(&[csp, isp, r]);
    // Demand: 4 m5.large, 2 c5.large.
    let (b, left) = bill(&e, &[4.0, 0.0, 2.0, 0.0, 0.0]);
    // 1) RI covers 1 m5.large -> 3 left.
    // 2) EC2 Instance SP (m5 only) covers 0.10 / 0.066 = 1.5151515 m5.large -> 1.4848485 left.
    // 3) Compute SP: c5.large (30 %) before m5.large (25 %): 2 * 0.0595 = 0.119 > 0.10, so it
    //    covers 0.10 / 0.0595 = 1.6806723 c5.large and nothing of m5.large.
    close(left[0], 3.0 - 0.10 / 0.066);
    close(left[2], 2.0 - 0.10 / 0.0595);
    let od = (3.0 - 0.10 / 0.066) * 0.096 + (2.0 - 0.10 / 0.0595) * 0.085;
    close(b.on_demand_cost, od);
    close(b.commitment_cost, 0.06 + 0.10 + 0.10);
    close(b.cost(), 0.26 + od);
    close(b.used_commitment, 0.26);
    close(b.ode, 4.0 * 0.096 + 2.0 * 0.085);
    close(b.covered_ode, b.ode - od);
}

#[test]
fn unused_commitment_is_lost_and_inactive_commitments_are_free() {
    let mut expired = sp("old", Instrument::ComputeSavingsPlan, "5");
    expired.end = Hour(100); // the billed hour is 100: expired just before it
    let mut future = sp("new", Instrument::ComputeSavingsPlan, "5");
    future.start = Hour(101);
    let live = sp("live", Instrument::ComputeSavingsPlan, "1");
    let e = engine(&[expired, future, live]);
    // 1 m5.large consumes 0.072 of the 1 $/h plan: utilization 7.2 %, 0.928 $ lost.
    let (b, left) = bill(&e, &[1.0, 0.0, 0.0, 0.0, 0.0]);
    close(left[0], 0.0);
    close(b.commitment_cost, 1.0);
    close(b.used_commitment, 0.072);
    close(b.unused_commitment(), 0.928);
    // The hour costs the whole commitment although on demand would have been 0.096.
    close(b.cost(), 1.0);
}

#[test]
fn azure_reservation_then_savings_plan_and_providers_stay_apart() {
    // Reservation 1 x D8s_v5 = 4 units of the Dsv5 series (D4s_v5 = 2 units, D2s_v5 = 1 unit).
    let r = ri(
        "res",
        Instrument::AzureReservation,
        "eastus",
        "Standard_D8s_v5",
        1,
        "0.2",
    );
    let asp = sp("asp", Instrument::AzureSavingsPlan, "0.1");
    let aws = sp("csp", Instrument::ComputeSavingsPlan, "1");
    let e = engine(&[r, asp, aws]);
    // Demand: 3 D4s_v5 (6 units) and 1 D2s_v5 (1 unit).
    let (b, left) = bill(&e, &[0.0, 0.0, 0.0, 3.0, 1.0]);
    // Reservation, smallest first: D2s_v5 takes 1 unit, 3 units cover 1.5 D4s_v5 -> 1.5 left.
    // Azure SP 0.1 $/h at 0.144 per D4s_v5-hour covers 0.1/0.144 = 0.6944444 -> 0.8055556 left.
    // The AWS Compute SP never touches Azure usage.
    close(left[4], 0.0);
    close(left[3], 1.5 - 0.1 / 0.144);
    close(b.on_demand_cost, (1.5 - 0.1 / 0.144) * 0.192);
    close(b.commitment_cost, 0.2 + 0.1 + 1.0);
    close(b.used_commitment, 0.3);
    close(b.unused_commitment(), 1.0);
}

#[test]
fn instance_sp_scope_is_family_and_region() {
    let mut isp = sp("isp", Instrument::Ec2InstanceSavingsPlan, "1");
    isp.region = Some("us-east-1".into());
    isp.family = Some("c5".into());
    let e = engine(&[isp]);
    // m5 usage is outside the c5 plan: all on demand. c5: 2 * 0.055 = 0.11 consumed.
    let (b, left) = bill(&e, &[1.0, 0.0, 2.0, 0.0, 0.0]);
    close(left[0], 1.0);
    close(left[2], 0.0);
    close(b.used_commitment, 0.11);
    close(b.on_demand_cost, 0.096);
}

#[test]
fn refuses_broken_commitments() {
    let mut bad = ri(
        "x",
        Instrument::StandardReservedInstance,
        "us-east-1",
        "m5.large",
        1,
        "0.1",
    );
    bad.region = None;
    let card = rates();
    let err = BillingEngine::new(vec![], &[bad], &card).unwrap_err();
    assert!(err.to_string().contains("commitment x"), "{err}");
}

proptest! {
    /// Whatever the demand and portfolio: covered + on demand = ODE, used <= paid, and the
    /// hour never costs more than ODE plus the commitment paid for.
    #[test]
    fn accounting_identities(
        demand in prop::collection::vec(0.0f64..20.0, 5),
        n_ri in 0u32..6,
        csp in 0.0f64..3.0,
        asp in 0.0f64..3.0,
    ) {
        let r = ri("ri", Instrument::StandardReservedInstance, "us-east-1", "m5.xlarge", n_ri, "0.1");
        let c = sp("csp", Instrument::ComputeSavingsPlan, &format!("{csp:.6}"));
        let a = sp("asp", Instrument::AzureSavingsPlan, &format!("{asp:.6}"));
        let e = engine(&[r, c, a]);
        let (b, left) = bill(&e, &demand);
        prop_assert!((b.covered_ode + b.on_demand_cost - b.ode).abs() < 1e-9);
        prop_assert!(b.used_commitment <= b.commitment_cost + 1e-9);
        prop_assert!(b.cost() <= b.ode + b.commitment_cost + 1e-9);
        for (l, d) in left.iter().zip(&demand) {
            prop_assert!(*l >= -1e-12 && *l <= *d + 1e-12);
        }
    }
}

#[test]
fn a_series_is_billed_hour_by_hour_as_if_every_commitment_were_active() {
    // The Compute SP of 0.20 $/h above, over three hours of 5 groups; the plan starts after
    // Hour(100), so `bill_hour` there would not count it and the series bill does.
    let mut plan = sp("csp", Instrument::ComputeSavingsPlan, "0.20");
    plan.start = Hour(1_000);
    let e = engine(&[plan]);
    let c5 = [4.0, 0.0, 1.0];
    let m5 = [2.0, 2.0, 0.0];
    let zero = [0.0; 3];
    let series: [&[f64]; 5] = [&m5, &zero, &c5, &zero, &zero];
    let mut seen = Vec::new();
    e.bill_all_active_series(&series, |h, b, left| seen.push((h, *b, left.to_vec())));
    assert_eq!(seen.len(), 3);
    for (h, b, left) in &seen {
        let demand = [m5[*h], 0.0, c5[*h], 0.0, 0.0];
        let mut s = e.scratch();
        let alone = e.bill_all_active(&demand, &mut s);
        assert_eq!(b, &alone, "hour {h}");
        assert_eq!(left, &s.uncovered, "hour {h}");
    }
    // Hour 0 is the hand-computed hour above: c5 first, nothing left for m5.
    close(seen[0].2[2], 4.0 - 0.20 / 0.0595);
    close(seen[0].2[0], 2.0);
    close(seen[0].1.used_commitment, 0.2);
    // Hour 2: one c5.large uses 0.0595 of the plan.
    close(seen[2].1.used_commitment, 0.0595);
    close(seen[2].2[2], 0.0);
}
