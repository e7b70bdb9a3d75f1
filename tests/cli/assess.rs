//! `commitd assess` over the binary: ratings with their evidence on the example scenario and
//! on a bare FOCUS file, the HTML page, and errors for bad input.

use crate::anomalies::focus_file;
use crate::common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn commitd(args: &[&str]) -> Output {
    Command::new(common::daemon::bin())
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let out = commitd(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn capability<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

#[test]
fn the_example_scenario_is_rated_with_evidence_and_html() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("assess.html");
    let v = ok_json(&[
        "assess",
        "--scenario",
        dir.to_str().unwrap(),
        "--json",
        "--html",
        page.to_str().unwrap(),
    ]);
    let names: Vec<&str> = v["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cost_allocation",
            "commitment_strategy",
            "rate_optimization_breadth",
            "automation",
            "data_quality"
        ]
    );
    for c in v["capabilities"].as_array().unwrap() {
        let stage = c["stage"].as_str().unwrap();
        assert!(
            ["crawl", "walk", "run", "not_applicable", "not_judged"].contains(&stage),
            "{c:#}"
        );
        assert!(!c["next_step"].as_str().unwrap().is_empty(), "{c:#}");
        assert!(c["evidence"].is_object());
    }
    // The demo has existing commitments (3 listed): coverage and ESR are measured.
    let cs = capability(&v, "commitment_strategy");
    let coverage = cs["evidence"]["coverage_pct"].as_f64().unwrap();
    assert!(coverage > 0.0 && coverage <= 100.0, "{cs:#}");
    assert!(cs["evidence"]["effective_savings_rate_pct"].is_number());
    assert!(
        cs["evidence"]["active_commitments"].as_u64().unwrap() >= 1,
        "{cs:#}"
    );
    // Six months of history: the cadence is judged.
    assert_ne!(capability(&v, "automation")["stage"], "not_judged");
    assert_eq!(v["thresholds"].as_array().unwrap().len(), 8);
    assert_eq!(v["from"], "2025-06-01T00:00:00Z");
    assert_eq!(v["to"], "2025-12-01T00:00:00Z");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.contains("<svg") && html.contains("<polyline"),
        "a chart"
    );
    assert!(html.contains("commitment strategy"));
    assert!(!html.contains("<script"), "self-contained, no script");
}

#[test]
fn a_bill_without_commitments_is_crawl_and_says_what_it_cannot_judge() {
    let tmp = tempfile::tempdir().unwrap();
    let file = focus_file(tmp.path(), "bill.csv", 3, None);
    let v = ok_json(&["assess", "--focus", file.to_str().unwrap(), "--json"]);
    let cs = capability(&v, "commitment_strategy");
    assert_eq!(cs["stage"], "crawl", "{cs:#}");
    assert_eq!(cs["evidence"]["coverage_pct"], 0.0);
    assert!(cs["next_step"]
        .as_str()
        .unwrap()
        .contains("first commitment"));
    // Three weeks: too short for a purchase cadence.
    assert_eq!(capability(&v, "automation")["stage"], "not_judged");
    let alloc = capability(&v, "cost_allocation");
    assert_eq!(alloc["stage"], "crawl");
    assert!(alloc["not_judged"][0].as_str().unwrap().contains("Tags"));
    assert_eq!(capability(&v, "data_quality")["stage"], "run");

    let out = commitd(&["assess", "--focus", file.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("commitment_strategy") && text.contains("Crawl"),
        "{text}"
    );
    assert!(text.contains("next step:"), "{text}");
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = commitd(&[
        "assess",
        "--focus",
        tmp.path().join("none.parquet").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.parquet"));
    let out = commitd(&["assess", "--scenario", "x", "--commitments", "y.csv"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--commitments goes with --focus"), "{e}");
    let file = focus_file(tmp.path(), "bill.csv", 3, None);
    let out = commitd(&[
        "assess",
        "--focus",
        file.to_str().unwrap(),
        "--html",
        tmp.path().join("no/such/dir/a.html").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a.html"));
}
