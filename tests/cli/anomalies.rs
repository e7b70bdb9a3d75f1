//! `commitd anomalies` over the binary: a FOCUS file with a spike is found at the hour billing
//! delivers it (and later with a longer latency), a seasonal file is quiet, bad input fails
//! with a message that says what is wrong.

use crate::common;

use commitd::domain::Hour;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HEADER: &str = "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,ProviderName,BillingCurrency,RegionId,ServiceCategory,ServiceName,ListCost,EffectiveCost,ConsumedQuantity,PricingCategory,SkuPriceDetails,SubAccountId";

/// A Monday at midnight.
fn monday() -> Hour {
    Hour::parse("2025-09-01T00:00:00Z").unwrap()
}

/// `weeks` of hourly m5.large usage with a daily cycle, a weekend dip and a little
/// deterministic noise; `spike`: (first hour index, hours, multiplier).
pub(crate) fn focus_file(
    dir: &Path,
    name: &str,
    weeks: usize,
    spike: Option<(usize, usize, f64)>,
) -> PathBuf {
    let mut s = String::from(HEADER);
    for i in 0..weeks * 168 {
        let h = monday().plus(i as i64);
        let daily =
            1.0 + 0.3 * ((h.hour_of_day() as f64 - 9.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
        let weekend = if h.hour_of_week() >= 120 { 0.8 } else { 1.0 };
        let noise = 1.0 + (((i * 7919) % 13) as f64 / 13.0 - 0.5) * 0.04;
        let mult = match spike {
            Some((a, len, m)) if i >= a && i < a + len => m,
            _ => 1.0,
        };
        let qty = (100.0 * daily * weekend * noise * mult).round();
        let cost = format!("{:.6}", qty * 0.096);
        s.push_str(&format!(
            "\nUsage,{},{},AWS,USD,us-east-1,Compute,Amazon Elastic Compute Cloud,{cost},{cost},{qty},Standard,\"{{\"\"InstanceType\"\": \"\"m5.large\"\"}}\",111",
            h,
            h.plus(1)
        ));
    }
    s.push('\n');
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

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

fn fails(args: &[&str]) -> String {
    let out = commitd(args);
    assert!(!out.status.success(), "{args:?} must fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_spike_is_reported_when_billing_delivers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let at = 3 * 168 + 2 * 24 + 10; // Wednesday 10:00 of week 4
    let file = focus_file(tmp.path(), "spike.csv", 5, Some((at, 6, 2.0)));
    let f = file.to_str().unwrap();
    let v = ok_json(&["anomalies", "--focus", f, "--json"]);
    assert_eq!(v["latency_hours"], 24);
    let list = v["anomalies"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v:#}");
    let a = &list[0];
    assert_eq!(a["group"], "AWS/us-east-1/m5.large/Linux/Shared");
    assert_eq!(a["kind"], "spike");
    let start = monday().plus(at as i64);
    assert_eq!(a["start"], start.to_string());
    // The first spike hour is delivered 24 h after it ends; two hours beyond the threshold
    // open the anomaly (or one far beyond it): reported between 25 and 26 h after the start.
    let detected = Hour::parse(a["detected_at"].as_str().unwrap()).unwrap();
    assert!((25..=26).contains(&detected.since(start)), "{a:#}");
    assert_eq!(a["ended"], true);
    assert_eq!(a["end"], start.plus(6).to_string());
    let ih = a["size"]["instance_hours"].as_f64().unwrap();
    assert!(ih > 300.0 && ih < 900.0, "{a:#}");
    let cost: f64 = a["size"]["cost"].as_str().unwrap().parse().unwrap();
    assert!((cost - ih * 0.096).abs() < 0.01, "{a:#}");
    assert_eq!(a["size"]["currency"], "USD");

    // Two more days of latency: the same anomaly, reported 48 h later.
    let late = ok_json(&["anomalies", "--focus", f, "--json", "--latency-hours", "72"]);
    assert_eq!(late["latency_hours"], 72);
    let b = &late["anomalies"][0];
    assert_eq!(b["start"], a["start"]);
    let later = Hour::parse(b["detected_at"].as_str().unwrap()).unwrap();
    assert_eq!(later.since(detected), 48, "{b:#}");

    // The table says the same.
    let out = commitd(&["anomalies", "--focus", f]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("1 anomalies, 0 still open"), "{table}");
    assert!(
        table.contains("AWS/us-east-1/m5.large/Linux/Shared"),
        "{table}"
    );
    assert!(table.contains("spike"), "{table}");
    assert!(table.contains(&start.to_string()), "{table}");
}

#[test]
fn seasonal_usage_is_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let file = focus_file(tmp.path(), "steady.csv", 6, None);
    let f = file.to_str().unwrap();
    let v = ok_json(&["anomalies", "--focus", f, "--json"]);
    assert_eq!(v["anomalies"].as_array().unwrap().len(), 0, "{v:#}");
    assert_eq!(v["groups_watched"], 1);
    let out = commitd(&["anomalies", "--focus", f]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("No anomalies."));
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.csv");
    let e = fails(&["anomalies", "--focus", missing.to_str().unwrap()]);
    assert!(e.contains("nope.csv"), "{e}");

    let short = focus_file(tmp.path(), "short.csv", 1, None);
    let e = fails(&["anomalies", "--focus", short.to_str().unwrap()]);
    assert!(
        e.contains("168 hours of usage") && e.contains("21 days"),
        "{e}"
    );

    let ok = focus_file(tmp.path(), "ok.csv", 3, None);
    let e = fails(&[
        "anomalies",
        "--focus",
        ok.to_str().unwrap(),
        "--group",
        "azure",
    ]);
    assert!(e.contains("--group 'azure'"), "{e}");

    let e = fails(&[
        "anomalies",
        "--focus",
        ok.to_str().unwrap(),
        "--latency-hours",
        "1000",
    ]);
    assert!(e.contains("latency-hours") && e.contains("0..=720"), "{e}");

    let e = fails(&["anomalies"]);
    assert!(e.contains("--scenario") && e.contains("--focus"), "{e}");

    let e = fails(&["anomalies", "--scenario", tmp.path().to_str().unwrap()]);
    assert!(e.contains("scenario.toml"), "{e}");
}

#[test]
fn the_example_scenario_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let v = ok_json(&["anomalies", "--scenario", dir.to_str().unwrap(), "--json"]);
    assert_eq!(v["from"], "2025-06-01T00:00:00Z");
    for a in v["anomalies"].as_array().unwrap() {
        let start = Hour::parse(a["start"].as_str().unwrap()).unwrap();
        let detected = Hour::parse(a["detected_at"].as_str().unwrap()).unwrap();
        // Never before its data was delivered.
        assert!(detected.since(start) > 24, "{a:#}");
        assert!(["spike", "step_up", "drop"].contains(&a["kind"].as_str().unwrap()));
        assert_eq!(a["ended"].as_bool().unwrap(), a["status"] != "open");
    }
}

#[test]
fn non_compute_cost_is_watched_by_service_and_sub_account() {
    // The compute file, plus hourly S3 storage in sub-account 222 whose cost triples for 8
    // hours: reported with its service and sub-account, sized in USD; compute stays quiet.
    let tmp = tempfile::tempdir().unwrap();
    let file = focus_file(tmp.path(), "bill.csv", 5, None);
    let at = 3 * 168 + 2 * 24 + 10;
    let mut text = std::fs::read_to_string(&file).unwrap();
    for i in 0..5 * 168 {
        let h = monday().plus(i as i64);
        let daily =
            1.0 + 0.2 * ((h.hour_of_day() as f64 - 9.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
        let noise = 1.0 + (((i * 104_729) % 11) as f64 / 11.0 - 0.5) * 0.04;
        let mult = if (at..at + 8).contains(&i) { 3.0 } else { 1.0 };
        let cost = format!("{:.6}", 4.0 * daily * noise * mult);
        text.push_str(&format!(
            "Usage,{},{},AWS,USD,us-east-1,Storage,Amazon Simple Storage Service,{cost},{cost},1,Standard,,222\n",
            h,
            h.plus(1)
        ));
    }
    std::fs::write(&file, text).unwrap();
    let f = file.to_str().unwrap();
    let v = ok_json(&["anomalies", "--focus", f, "--json"]);
    assert_eq!(v["non_compute_watched"], 1, "{v:#}");
    let list = v["anomalies"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v:#}");
    let a = &list[0];
    assert_eq!(a["service"], "Amazon Simple Storage Service");
    assert_eq!(a["sub_account"], "222");
    assert!(a.get("group").is_none(), "{a:#}");
    assert_eq!(a["kind"], "spike");
    assert_eq!(a["start"], monday().plus(at as i64).to_string());
    // About 8 h x 2 x 4 USD/h off the model.
    let cost: f64 = a["size"]["cost"].as_str().unwrap().parse().unwrap();
    assert!(cost > 40.0 && cost < 90.0, "{a:#}");
    let out = commitd(&["anomalies", "--focus", f]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Amazon Simple Storage Service / 222"),
        "{table}"
    );
    assert!(
        table.contains("No anomalies of eligible compute usage."),
        "{table}"
    );
}

#[test]
fn a_drop_names_the_commitments_it_strands() {
    // A generated scenario with sudden drops and existing commitments (seed 2: a drop on the
    // group an r6i reservation covers).
    let tmp = tempfile::tempdir().unwrap();
    let config = commitd_testkit::synth::Config {
        shape: commitd_testkit::synth::Shape::Drop,
        groups: 8,
        seed: 2,
        ..commitd_testkit::synth::Config::default()
    };
    commitd_testkit::synth::generate(&config, tmp.path()).unwrap();
    let dir = tmp.path().to_str().unwrap();
    let v = ok_json(&["anomalies", "--scenario", dir, "--json"]);
    let stranded: Vec<&Value> = v["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["stranded"].is_null())
        .collect();
    assert!(!stranded.is_empty(), "{v:#}");
    for a in &stranded {
        assert_eq!(a["kind"], "drop", "{a:#}");
        let s = &a["stranded"];
        let idle: f64 = s["idle_hourly"].as_str().unwrap().parse().unwrap();
        assert!(idle > 0.0, "{a:#}");
        for c in s["commitments"].as_array().unwrap() {
            assert!(c["utilization"].as_f64().unwrap() < 0.95, "{a:#}");
            assert!(!c["id"].as_str().unwrap().is_empty());
        }
    }
    // Spikes and steps up strand nothing.
    assert!(v["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] != "drop")
        .all(|a| a["stranded"].is_null()));
    let out = commitd(&["anomalies", "--scenario", dir]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("Stranded commitments"), "{table}");
}
