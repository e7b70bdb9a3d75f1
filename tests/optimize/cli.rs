//! The plan on a public scenario, as `commitd plan --json --seasonal-naive` builds it (through the
//! library: the shared target directory's binary may come from another branch during the
//! session): the JSON carries the documented fields and the plan is consistent with itself.

use commitd::domain::HourRange;
use commitd::optimize::{demand, optimize, Constraints, Options};

use crate::common;

#[test]
fn plan_json_on_steady_growth_has_actions_with_rationale_and_expected_figures() {
    let dir = common::shared::shared().join("scenarios/steady-growth");
    let s = commitd::sources::load_scenario(&dir).unwrap();
    let at = s.window.decision_time;
    let history = s.usage.slice(HourRange::new(s.usage.range.start, at));
    let input = demand::seasonal_naive(&history, at, 8760, 4, &[0.1, 0.5, 0.9]);
    let plan = optimize(
        &input,
        &s.rates,
        &s.commitments,
        &Constraints::one_year_only(),
        &Options::default(),
    )
    .unwrap();
    let v = serde_json::to_value(&plan).unwrap();
    let actions = v["actions"].as_array().unwrap();
    assert!(!actions.is_empty());
    for a in actions {
        for key in [
            "provider",
            "instrument",
            "term_years",
            "payment_option",
            "scope",
            "amount",
            "unit",
            "rationale",
        ] {
            assert!(a.get(key).is_some(), "missing {key}: {a}");
        }
        // Scored policy: 1-year terms only.
        assert_eq!(a["term_years"], 1);
        let r = &a["rationale"];
        let u = r["expected_utilization"].as_f64().unwrap();
        let b = r["breakeven_utilization"].as_f64().unwrap();
        assert!(u > b, "bought below breakeven: {a}");
        assert!(r["expected_savings"].as_f64().unwrap() > 0.0);
    }
    let e = &v["expected"];
    for key in ["esr", "coverage", "utilization", "cost", "on_demand_cost"] {
        assert!(e.get(key).is_some(), "missing expected.{key}");
    }
    let cost: f64 = e["cost"].as_str().unwrap().parse().unwrap();
    let ode: f64 = e["on_demand_cost"].as_str().unwrap().parse().unwrap();
    assert!(cost < ode);
    let esr = e["esr"].as_f64().unwrap();
    assert!((esr - (1.0 - cost / ode)).abs() < 1e-6);
    // The planner saw only the history: the window starts at the decision time.
    assert_eq!(plan.window.unwrap().start, at);
}
