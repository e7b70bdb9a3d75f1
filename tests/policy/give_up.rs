//! Giving up is spending, from a planned action to the shipped policy's verdict: returns, RI
//! Marketplace sales and exchanges carry the hourly commitment they give up into the policy
//! facts (`PlannedAction::facts`), and `policies/aws.toml` judges them by its give-up rules
//! (autopilot up to 2 USD/h given up, two approvers from 8 USD/h, at most 10 USD/h a day).

use commitd::config::Mode;
use commitd::domain::{Hour, Money};
use commitd::policy::{OperationKind, PolicySet, RecentSpend, Rule, Verdict};
use commitd::proposals::PlannedAction;
use serde_json::json;

fn shipped() -> PolicySet {
    commitd::sources::policies::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies"
    )))
    .unwrap()
}

/// A planned action of `operation` (JSON, as proposals store it) on a 1-year No Upfront
/// convertible RI of 2 x m5.large; `hourly_cost` is what it buys per hour.
fn planned(operation: serde_json::Value, hourly_cost: &str) -> PlannedAction {
    serde_json::from_value(json!({
        "operation": operation,
        "spec": {"provider": "AWS", "instrument": "ConvertibleReservedInstance", "term": 1,
                 "payment": "NoUpfront", "region": "eu-west-1", "instance_type": "m5.large",
                 "os": "Linux", "tenancy": "default",
                 "amount": {"unit": "instances", "value": 2}},
        "hourly_cost": hourly_cost,
        "upfront": "0",
        "expected_savings": "100",
        "expected_utilization": 0.99,
    }))
    .unwrap()
}

fn give_up(kind: &str, hourly_removed: &str) -> PlannedAction {
    planned(
        match kind {
            "return" => json!({"kind": "return", "commitment_id": "ri-1",
                               "hourly_cost_removed": hourly_removed}),
            "sale" => json!({"kind": "sale", "commitment_id": "ri-1", "instances": 2,
                             "hourly_cost_removed": hourly_removed, "price": "100"}),
            // An exchange gives up its sources; its target's hourly cost bounds theirs.
            _ => json!({"kind": "exchange", "source_ids": ["ri-1"], "source_value": "500",
                        "true_up": "0"}),
        },
        if kind == "exchange" {
            hourly_removed
        } else {
            "0"
        },
    )
}

fn verdict(a: &PlannedAction, recent: &RecentSpend) -> (Verdict, Option<Rule>) {
    let now = Hour::parse("2026-10-10T00:00:00Z").unwrap();
    let d = shipped().evaluate(&a.facts(), recent, now, Mode::Autopilot);
    (d.verdict, d.blocking_rule().map(|r| r.rule))
}

#[test]
fn facts_carry_what_each_operation_gives_up() {
    let f = give_up("return", "3.5").facts();
    assert_eq!(
        (f.operation, f.hourly_given_up, f.hourly_commitment),
        (
            OperationKind::Return,
            Money::parse("3.5").unwrap(),
            Money::ZERO
        )
    );
    let f = give_up("sale", "1.25").facts();
    assert_eq!(
        (f.operation, f.hourly_given_up),
        (OperationKind::Sale, Money::parse("1.25").unwrap())
    );
    let f = give_up("exchange", "0.75").facts();
    assert_eq!(
        (f.operation, f.hourly_given_up, f.hourly_commitment),
        (
            OperationKind::Exchange,
            Money::parse("0.75").unwrap(),
            Money::parse("0.75").unwrap()
        )
    );
    let f = planned(json!({"kind": "purchase"}), "0.75").facts();
    assert_eq!(
        (f.operation, f.hourly_given_up),
        (OperationKind::Purchase, Money::ZERO)
    );
}

#[test]
fn the_shipped_aws_policy_judges_give_ups_by_what_they_give_up() {
    let none = RecentSpend::default();
    for kind in ["return", "sale", "exchange"] {
        // Small: autopilot executes it.
        assert_eq!(
            verdict(&give_up(kind, "1.5"), &none),
            (Verdict::Allow, None),
            "{kind}"
        );
        // From 2 USD/h given up a human approves; from 8 USD/h two do.
        assert_eq!(
            verdict(&give_up(kind, "2"), &none).0,
            Verdict::NeedsApproval { approvers: 1 },
            "{kind}"
        );
        assert_eq!(
            verdict(&give_up(kind, "8"), &none).0,
            Verdict::NeedsApproval { approvers: 2 },
            "{kind}"
        );
        // 10 USD/h a day: with 9 already given up today, 1.5 more is blocked.
        let today = RecentSpend {
            hourly_given_up_today: Money::from_units(9),
            hourly_given_up_30_days: Money::from_units(9),
            ..RecentSpend::default()
        };
        assert_eq!(
            verdict(&give_up(kind, "1.5"), &today),
            (Verdict::Block, Some(Rule::MaxHourlyGivenUpPerDay)),
            "{kind}"
        );
    }
}
