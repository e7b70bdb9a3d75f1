//! `commitd backtest` as a user runs it: a scenario written by `commitd-dev synth`, the README's
//! JSON contract with all three baselines (hindsight_static runs on its own thread), the
//! readable summary, and a clear error for a scenario that is not there.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn commitd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(args)
        .output()
        .expect("commitd runs")
}

fn ok(args: &[&str]) -> String {
    let out = commitd(args);
    assert!(
        out.status.success(),
        "commitd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A small scenario: 3 steady groups, 2 months of history, 3 months evaluated.
fn scenario(dir: &Path) -> String {
    let out = dir.join("steady-3");
    let out = out.to_str().expect("utf-8 temp path").to_string();
    let config = commitd_testkit::synth::Config {
        shape: commitd_testkit::synth::Shape::Steady,
        groups: 3,
        seed: 5,
        history_months: 2,
        evaluation_months: 3,
        ..commitd_testkit::synth::Config::default()
    };
    commitd_testkit::synth::generate(&config, Path::new(&out)).expect("synthetic scenario");
    out
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for k in path {
        v = &v[*k];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number: {v}", path.join(".")))
}

#[test]
fn json_has_the_contract_and_every_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = scenario(tmp.path());
    let j: Value = serde_json::from_str(&ok(&["backtest", "--scenario", &dir, "--json"])).unwrap();
    let hours = f(&j, &["hours"]);
    assert!((2100.0..=2300.0).contains(&hours), "three months: {hours}");
    let ode = f(&j, &["on_demand_cost"]);
    assert!(ode > 0.0);
    for name in ["existing_only", "ce_quarterly", "hindsight_static"] {
        let cost = f(&j, &["baselines", name, "cost"]);
        let esr = f(&j, &["baselines", name, "esr"]);
        assert!(
            (esr - (1.0 - cost / ode)).abs() < 1e-9,
            "{name}: esr {esr} is not 1 - cost / on_demand_cost"
        );
        // Each baseline's time is reported, so a slow one is visible.
        assert!(f(&j, &["seconds", "baselines", name]) >= 0.0);
    }
    // The oracle knows the whole window: on steady usage it saves, and at least as much as
    // buying nothing.
    let hs = f(&j, &["baselines", "hindsight_static", "esr"]);
    assert!(hs > 0.05, "hindsight_static saves on steady usage: {hs}");
    assert!(hs >= f(&j, &["baselines", "existing_only", "esr"]));
    assert!(f(&j, &["seconds", "total"]) >= f(&j, &["seconds", "commitd"]));

    // The same run without baselines has commitd's figures unchanged: the baselines' thread
    // shares nothing with commitd's replay.
    let alone: Value = serde_json::from_str(&ok(&[
        "backtest",
        "--scenario",
        &dir,
        "--json",
        "--no-baselines",
    ]))
    .unwrap();
    assert_eq!(alone["esr"], j["esr"]);
    assert_eq!(alone["purchase_list"], j["purchase_list"]);
    assert_eq!(alone["baselines"], serde_json::json!({}));

    // The readable summary names every baseline.
    let text = ok(&["backtest", "--scenario", &dir]);
    for name in [
        "commitd",
        "existing_only",
        "ce_quarterly",
        "hindsight_static",
    ] {
        assert!(text.contains(name), "summary lacks {name}:\n{text}");
    }
}

#[test]
fn a_missing_scenario_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let out = commitd(&[
        "backtest",
        "--scenario",
        missing.to_str().unwrap(),
        "--json",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout for a failed run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere"),
        "the error names the scenario: {err}"
    );
}

#[test]
fn the_lookback_shares_are_flags_with_a_checked_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = scenario(tmp.path());
    for flag in [
        "--lookback-trim-floor",
        "--lookback-redundant-share",
        "--lookback-utilization-target",
    ] {
        let out = commitd(&[
            "backtest",
            "--scenario",
            &dir,
            "--json",
            "--no-baselines",
            flag,
            "1.5",
        ]);
        assert!(!out.status.success(), "{flag} 1.5 was accepted");
        assert!(out.stdout.is_empty(), "nothing on stdout for a refused run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag) && err.contains("1.5"),
            "the error names the flag and the value: {err}"
        );
    }
    // Off, with the optimizer's resize off too: the run reports no plan trimmed and no
    // reservation given up for the rest of the portfolio.
    let v: Value = serde_json::from_str(&ok(&[
        "backtest",
        "--scenario",
        &dir,
        "--json",
        "--no-baselines",
        "--lookback-trim-floor",
        "0",
        "--lookback-resize-plans",
        "false",
        "--lookback-redundant-share",
        "0",
    ]))
    .unwrap();
    assert_eq!(f(&v, &["planner_stats", "savings_plans_trimmed"]), 0.0);
    assert_eq!(f(&v, &["planner_stats", "instances_redundant"]), 0.0);
}
