//! The rolling-replay harness on synthetic scenarios small enough to compute by hand.
//!
//! Scenario: one AWS group, us-east-1 m5.large, on demand 0.096 $/h, Compute SP 1-year all
//! upfront 0.06 $/h (37.5 % off), no upfront share tricks. History 30 days from 2025-09-01,
//! evaluation 61 days (2025-10-01 .. 2025-12-01: October 744 h + November 720 h = 1,464 h).

use commitd::backtest::baselines::{CeQuarterly, ExistingOnly};
use commitd::backtest::{run, BacktestError, BacktestInput, Settings};
use commitd::domain::usage::{GroupSeries, IgnoredRows};
use commitd::domain::{
    Commitment, Hour, HourRange, Instrument, Money, Offer, PaymentOption, Provider, RateCard,
    ScenarioWindow, Term, UsageGroup, UsageModel,
};
use commitd::plan::sizing::best_commitment;
use commitd::plan::{buy_savings_plan, Decision, Planner, Policy, Situation};
use rust_decimal::Decimal;
use std::str::FromStr;

const OD: f64 = 0.096;

fn group() -> UsageGroup {
    UsageGroup::new(
        Provider::Aws,
        "us-east-1",
        "m5.large",
        None,
        "Linux",
        "Shared",
    )
}

fn offer(instrument: Instrument, term: Option<Term>, pay: PaymentOption, rate: &str) -> Offer {
    Offer {
        instrument,
        term,
        payment: pay,
        effective_hourly_rate: Decimal::from_str(rate).unwrap(),
        upfront_share: if pay == PaymentOption::AllUpfront {
            Decimal::ONE
        } else {
            Decimal::ZERO
        },
    }
}

fn rates() -> RateCard {
    let mut card = RateCard::new();
    let p = group().product();
    card.insert(
        p.clone(),
        offer(
            Instrument::OnDemand,
            None,
            PaymentOption::NoUpfront,
            "0.096",
        ),
    );
    for term in [Term::ONE_YEAR, Term::THREE_YEARS] {
        card.insert(
            p.clone(),
            offer(
                Instrument::ComputeSavingsPlan,
                Some(term),
                PaymentOption::AllUpfront,
                "0.06",
            ),
        );
    }
    card
}

fn window() -> ScenarioWindow {
    ScenarioWindow {
        history_start: Hour::parse("2025-09-01T00:00:00Z").unwrap(),
        decision_time: Hour::parse("2025-10-01T00:00:00Z").unwrap(),
        evaluation_end: Hour::parse("2025-12-01T00:00:00Z").unwrap(),
    }
}

/// Demand `f(hour index from history_start)` instance-hours per hour.
fn input(f: impl Fn(usize) -> f64) -> BacktestInput {
    input_days(61, f)
}

/// As [`input`], with an evaluation window of `days` days.
fn input_days(days: i64, f: impl Fn(usize) -> f64) -> BacktestInput {
    let mut w = window();
    w.evaluation_end = w.decision_time.plus(days * 24);
    let range = w.all();
    let mut s = GroupSeries::empty(group(), range.len());
    for i in 0..range.len() {
        s.quantity[i] = f(i);
        s.ode[i] = f(i) * OD;
    }
    BacktestInput {
        name: "synthetic".into(),
        window: w,
        usage: UsageModel {
            range,
            currency: "USD".into(),
            groups: vec![s],
            commitments: vec![],
            last_observed: Some(range.end.plus(-1)),
            rows_read: 0,
            ignored: IgnoredRows::default(),
        },
        rates: rates(),
        existing: vec![],
    }
}

fn sp_offer() -> Offer {
    rates()
        .offer(
            &group().product(),
            Instrument::ComputeSavingsPlan,
            Some(Term::ONE_YEAR),
            PaymentOption::AllUpfront,
        )
        .unwrap()
        .clone()
}

/// Buys `per_hour` of Compute SP at its first decision, with `term`.
struct BuyOnce {
    per_hour: Money,
    term: Term,
    start_offset: i64,
    done: bool,
}

impl Planner for BuyOnce {
    fn name(&self) -> &str {
        "buy_once"
    }
    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, commitd::plan::PlanError> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl BuyOnce {
    fn purchases(
        &mut self,
        ctx: &Situation<'_>,
    ) -> Result<Vec<Commitment>, commitd::plan::PlanError> {
        if self.done {
            return Ok(vec![]);
        }
        self.done = true;
        let mut o = sp_offer();
        o.term = Some(self.term);
        let mut c = buy_savings_plan("once".into(), &o, ctx.now, self.per_hour, None)?;
        c.start = c.start.plus(self.start_offset);
        c.end = c.end.plus(self.start_offset);
        Ok(vec![c])
    }
}

fn once(per_hour: &str) -> BuyOnce {
    BuyOnce {
        per_hour: Money::parse(per_hour).unwrap(),
        term: Term::ONE_YEAR,
        start_offset: 0,
        done: false,
    }
}

#[test]
fn existing_only_pays_on_demand_and_months_split_on_calendar() {
    let r = run(&input(|_| 10.0), &mut ExistingOnly, &Settings::default()).unwrap();
    // 1,464 h x 10 x 0.096 = 1,405.44 $, all on demand: ESR 0.
    assert_eq!(r.total.hours, 1464);
    assert_eq!(
        r.total.on_demand_equivalent,
        Money::parse("1405.44").unwrap()
    );
    assert_eq!(r.total.cost, r.total.on_demand_equivalent);
    assert_eq!(r.total.esr, 0.0);
    assert_eq!(r.total.utilization, None);
    let labels: Vec<&str> = r.months.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["2025-10", "2025-11"]);
    assert_eq!(r.months[0].hours, 744);
    assert_eq!(r.months[1].hours, 720);
    // One decision a day over 61 days.
    assert_eq!(r.decisions, 61);
    assert_eq!(r.daily.len(), 61);
}

#[test]
fn a_purchase_is_billed_every_hour_and_leaves_a_liability() {
    // 0.48 $/h of Compute SP at 0.06 per m5.large-hour covers 0.48 / 0.06 = 8 of the 10 instances.
    let r = run(&input(|_| 10.0), &mut once("0.48"), &Settings::default()).unwrap();
    // Commitment: 1,464 h x 0.48 = 702.72; on demand: 1,464 x 2 x 0.096 = 281.088.
    assert_eq!(r.total.commitment_cost, Money::parse("702.72").unwrap());
    assert_eq!(r.total.on_demand_cost, Money::parse("281.088").unwrap());
    assert_eq!(r.total.cost, Money::parse("983.808").unwrap());
    // ESR = 1 - 983.808 / 1405.44 = 0.3 ; coverage = 8/10 ; utilization 100 %.
    assert!((r.total.esr - 0.3).abs() < 1e-9);
    assert!((r.total.coverage - 0.8).abs() < 1e-9);
    assert!((r.min_monthly_utilization.unwrap() - 1.0).abs() < 1e-9);
    // The plan runs 8,760 h from 2025-10-01; 1,464 h are inside the window:
    // (8,760 - 1,464) x 0.48 = 3,502.08 $ still to pay after it.
    assert_eq!(r.liability_after_window, Money::parse("3502.08").unwrap());
    assert_eq!(r.hourly_commitment_at_end, Money::parse("0.48").unwrap());
    assert_eq!(r.purchases.len(), 1);
    assert_eq!(r.months[0].purchases, 1);
    assert_eq!(r.months[1].purchases, 0);
    // Lock-in on the first day: 365 days remaining; at the end 365 - 61 = 304 days.
    assert!((r.months[0].lock_in_days - (365.0 - 15.0)).abs() < 1e-9);
    assert!((r.lock_in_days_at_end - 304.0).abs() < 1e-9);
    // All upfront: the whole term's 8,760 x 0.48 = 4,204.8 $ paid upfront.
    assert_eq!(r.purchases[0].upfront, Money::parse("4204.8").unwrap());
}

#[test]
fn overbuying_shows_as_low_utilization() {
    // 1.2 $/h covers at most 10 x 0.06 = 0.6 $/h of usage: utilization 50 %.
    let r = run(&input(|_| 10.0), &mut once("1.2"), &Settings::default()).unwrap();
    assert!((r.total.utilization.unwrap() - 0.5).abs() < 1e-9);
    // cost = 1,464 x 1.2 = 1,756.8 > ODE 1,405.44: ESR negative.
    assert_eq!(r.total.cost, Money::parse("1756.8").unwrap());
    assert!(r.total.esr < 0.0);
}

/// Records what each decision could see.
struct Spy {
    seen: Vec<(Hour, Hour, f64)>,
}

impl Planner for Spy {
    fn name(&self) -> &str {
        "spy"
    }
    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, commitd::plan::PlanError> {
        self.purchases(ctx).map(Decision::from)
    }
}

impl Spy {
    fn purchases(
        &mut self,
        ctx: &Situation<'_>,
    ) -> Result<Vec<Commitment>, commitd::plan::PlanError> {
        let max = ctx.known.groups[0]
            .quantity
            .iter()
            .copied()
            .fold(0.0, f64::max);
        self.seen.push((ctx.now, ctx.known.range.end, max));
        Ok(vec![])
    }
}

#[test]
fn decisions_never_see_unbilled_hours() {
    // Demand is the hour index itself, so the largest value a decision sees tells which hours
    // it saw: it must be the last hour before now - latency.
    let settings = Settings {
        latency_hours: 48,
        cadence_hours: 24,
        ..Settings::default()
    };
    let mut spy = Spy { seen: vec![] };
    run(&input(|i| i as f64), &mut spy, &settings).unwrap();
    let start = window().history_start;
    assert_eq!(spy.seen.len(), 61);
    for (now, known_end, max) in spy.seen {
        assert_eq!(known_end, now.plus(-48));
        assert_eq!(max, (now.plus(-49).since(start)) as f64, "at {now}");
    }
    // A different latency moves the horizon.
    let mut spy = Spy { seen: vec![] };
    let s = Settings {
        latency_hours: 5,
        cadence_hours: 168,
        ..Settings::default()
    };
    run(&input(|i| i as f64), &mut spy, &s).unwrap();
    assert_eq!(spy.seen.len(), 9); // 61 days / 7 = 8.7 -> 9 weekly decisions
    assert!(spy.seen.iter().all(|(n, k, _)| *k == n.plus(-5)));
}

#[test]
fn the_policy_is_enforced() {
    let inp = input(|_| 10.0);
    let mut three = once("0.1");
    three.term = Term::THREE_YEARS;
    let err = run(&inp, &mut three, &Settings::default()).unwrap_err();
    assert!(matches!(err, BacktestError::Policy { .. }), "{err}");
    assert!(err.to_string().contains("term 3yr not allowed"), "{err}");

    let mut late = once("0.1");
    late.start_offset = 24;
    let err = run(&inp, &mut late, &Settings::default()).unwrap_err();
    assert!(err.to_string().contains("must start now"), "{err}");

    let capped = Settings {
        policy: Policy {
            max_new_hourly_cost_per_decision: Some(Money::parse("0.25").unwrap()),
            ..Policy::default()
        },
        ..Settings::default()
    };
    let err = run(&inp, &mut once("0.3"), &capped).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the per-decision cap"),
        "{err}"
    );
    assert!(run(&inp, &mut once("0.25"), &capped).is_ok());
}

#[test]
fn ce_quarterly_buys_every_90_days_what_saved_most() {
    // 92-day window so that a second quarterly decision happens (day 0 and day 90).
    let inp = input_days(92, |_| 10.0);
    let r = run(&inp, &mut CeQuarterly::default(), &Settings::default()).unwrap();
    // Flat demand of 10 m5.large: the best plan covers all of it, 10 x 0.06 = 0.6 $/h.
    // At day 90 that plan is active and covers everything: nothing more to buy.
    assert_eq!(r.purchases.len(), 1);
    assert_eq!(r.purchases[0].hourly_cost, Money::parse("0.6").unwrap());
    assert_eq!(r.purchases[0].instrument, Instrument::ComputeSavingsPlan);
    assert_eq!(r.purchases[0].payment, PaymentOption::AllUpfront);
    assert!((r.total.esr - 0.375).abs() < 1e-6);

    // Demand that doubles after the first quarter: the second decision tops it up.
    let inp = input_days(92, |i| if i < (30 + 60) * 24 { 10.0 } else { 20.0 });
    let r = run(&inp, &mut CeQuarterly::default(), &Settings::default()).unwrap();
    assert_eq!(r.purchases.len(), 2);
    assert_eq!(r.purchases[1].hourly_cost, Money::parse("0.6").unwrap());
    assert_eq!(r.purchases[1].start, inp.window.decision_time.plus(90 * 24));
}

#[test]
fn ce_commitment_is_the_discount_quantile_of_uncovered_usage() {
    // Usage alternates 0 and 10 instances: covering the upper half only saves when the plan
    // cost (0.06) is below the on-demand saved (0.096 half the time = 0.048): it is not, so
    // the best commitment is at most what the always-on part needs: here 0.
    let items = [(0usize, OD, 0.06)];
    let alt: Vec<Vec<f64>> = (0..100)
        .map(|i| vec![if i % 2 == 0 { 0.0 } else { 10.0 }])
        .collect();
    assert!(best_commitment(&alt, &items) < 1e-6);
    // Usage 5 always plus 5 in 80 % of hours: the 80 %-covered band is worth 0.8 x 0.096 =
    // 0.0768 > 0.06 per instance-hour, so the plan covers all 10: 10 x 0.06 = 0.6 $/h.
    let mostly: Vec<Vec<f64>> = (0..100)
        .map(|i| vec![if i % 5 == 0 { 5.0 } else { 10.0 }])
        .collect();
    assert!((best_commitment(&mostly, &items) - 0.6).abs() < 1e-6);
}

#[test]
fn refuses_a_window_the_usage_does_not_cover() {
    let mut inp = input(|_| 1.0);
    inp.window.evaluation_end = inp.window.evaluation_end.plus(24);
    let err = run(&inp, &mut ExistingOnly, &Settings::default()).unwrap_err();
    assert!(err.to_string().contains("evaluation window"), "{err}");
    let _ = HourRange::new(Hour(0), Hour(1));
}

#[test]
fn report_has_the_contract_fields_and_self_contained_html() {
    use commitd::backtest::report::Comparison;
    let inp = input(|_| 10.0);
    let s = Settings::default();
    let commitd = run(&inp, &mut once("0.48"), &s).unwrap();
    let existing = run(&inp, &mut ExistingOnly, &s).unwrap();
    let ce = run(&inp, &mut CeQuarterly::default(), &s).unwrap();
    let cmp = Comparison {
        scenario: "synthetic".into(),
        settings: s,
        commitd,
        baselines: vec![
            ("existing_only".into(), existing),
            ("ce_quarterly".into(), ce),
        ],
    };
    let j = cmp.to_json();
    for key in [
        "scenario",
        "hours",
        "on_demand_cost",
        "cost",
        "esr",
        "coverage",
        "utilization",
        "min_monthly_utilization",
        "purchases",
        "exchanges",
    ] {
        assert!(j.get(key).is_some(), "missing {key}");
    }
    assert_eq!(j["hours"], 1464);
    assert!((j["on_demand_cost"].as_f64().unwrap() - 1405.44).abs() < 1e-6);
    assert!((j["cost"].as_f64().unwrap() - 983.808).abs() < 1e-6);
    assert!((j["baselines"]["existing_only"]["esr"].as_f64().unwrap()).abs() < 1e-12);
    assert!(j["baselines"]["ce_quarterly"]["cost"].as_f64().is_some());
    assert_eq!(j["monthly"].as_array().unwrap().len(), 2);
    let text = cmp.to_text();
    assert!(
        text.contains("ce_quarterly") && text.contains("30.0%"),
        "{text}"
    );
    let html = cmp.to_html();
    assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
}

/// Buys `per_hour` of Compute SP at every decision.
struct BuyDaily {
    per_hour: Money,
}

impl Planner for BuyDaily {
    fn name(&self) -> &str {
        "buy_daily"
    }
    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, commitd::plan::PlanError> {
        let id = format!("daily-{}", ctx.now.0);
        let c = buy_savings_plan(id, &sp_offer(), ctx.now, self.per_hour, None)?;
        Ok(Decision::from(vec![c]))
    }
}

/// One AWS policy allowing every instrument, with `limits` added.
fn policies(limits: &str) -> commitd::policy::PolicySet {
    let text = format!(
        "name = \"aws\"\n[scope]\nprovider = \"AWS\"\n[allow]\n\
         instruments = [\"ComputeSavingsPlan\"]\nterms = [1]\n\
         payment_options = [\"NoUpfront\", \"PartialUpfront\", \"AllUpfront\"]\n\
         [limits]\n{limits}\n"
    );
    let dir = std::path::Path::new("policies");
    commitd::policy::PolicySet::from_files(dir, [(dir.join("aws.toml"), text)]).unwrap()
}

#[test]
fn with_the_daemons_policies_each_action_is_judged_and_blocked_ones_are_not_bought() {
    use commitd::policy::Rule;
    let judged = |p: commitd::policy::PolicySet| Settings {
        policies: Some(p),
        ..Settings::default()
    };
    // 1.2 $/h of plan on 0.6 $/h of usage is half used: the utilization floor blocks it, and
    // nothing is bought (without policies the same planner buys it: see above).
    let floor = judged(policies("min_expected_utilization = 0.9"));
    let r = run(&input(|_| 10.0), &mut once("1.2"), &floor).unwrap();
    assert!(r.purchases.is_empty(), "{:?}", r.purchases);
    assert_eq!(r.blocked.len(), 1, "{:?}", r.blocked);
    assert_eq!(r.blocked[0].rule, Rule::MinExpectedUtilization);
    assert_eq!(r.blocked[0].hourly_cost, Money::parse("1.2").unwrap());
    // 0.3 $/h is used in full: bought.
    let r = run(&input(|_| 10.0), &mut once("0.3"), &floor).unwrap();
    assert_eq!(r.purchases.len(), 1);
    assert!(r.blocked.is_empty());

    // The 30-day cap counts what the replay bought before, as the daemon counts its executed
    // proposals: 0.1 $/h a day under a 0.25 $/h cap buys on days 0 and 1, then not until
    // day 0 leaves the window (day 31: a purchase exactly 30 days old still counts), ...
    let capped = judged(policies(
        "min_expected_utilization = 0.0\nmax_new_hourly_commitment_per_30_days = \"0.25\"",
    ));
    let mut daily = BuyDaily {
        per_hour: Money::parse("0.1").unwrap(),
    };
    let r = run(&input(|_| 10.0), &mut daily, &capped).unwrap();
    let start = window().decision_time;
    let days: Vec<i64> = r
        .purchases
        .iter()
        .map(|c| c.start.since(start) / 24)
        .collect();
    assert_eq!(days, vec![0, 1, 31, 32]);
    assert!(r
        .blocked
        .iter()
        .all(|b| b.rule == Rule::MaxNewHourlyCommitmentPer30Days));
    assert_eq!(r.blocked.len(), 61 - days.len());
    // ... and the report lists what was blocked.
    let cmp = commitd::backtest::report::Comparison {
        scenario: "synthetic".into(),
        settings: capped,
        commitd: r,
        baselines: vec![],
    };
    assert!(cmp.to_json()["blocked_list"]
        .as_array()
        .is_some_and(|b| !b.is_empty()));
    assert!(cmp.to_text().contains("Blocked by the policies"));
}
