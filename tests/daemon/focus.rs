//! The daemon's FOCUS source: `[source] focus = DIR` (+ rates, commitments) planned through
//! ingest -> usage model -> pipeline::plan_at at the cycle's time, re-reading the directory
//! every cycle. On the FinOps Foundation's real FOCUS 1.0 sample (../shared/data).

use chrono::{DateTime, Utc};
use commitd::config::Config;
use commitd::service::optimizer::{planner, FocusSource};
use commitd::service::plan::PlanSource;
use std::collections::BTreeMap;

use crate::common;
use common::shared::focus_sample as sample;

const RATES: &str = "ProviderName,RegionId,InstanceType,OperatingSystem,Tenancy,Instrument,TermYears,PaymentOption,EffectiveHourlyRate,UpfrontShare
AWS,us-east-1,g5.4xlarge,Linux,Shared,OnDemand,0,NoUpfront,1.624,0.0
AWS,us-east-1,g5.4xlarge,Linux,Shared,ComputeSavingsPlan,1,NoUpfront,1.17,0.0
AWS,us-east-1,c5.2xlarge,Linux,Shared,OnDemand,0,NoUpfront,0.34,0.0
AWS,us-east-1,c5.2xlarge,Linux,Shared,ComputeSavingsPlan,1,NoUpfront,0.245,0.0
";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn setup() -> (tempfile::TempDir, FocusSource) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("focus/2024-09")).unwrap();
    std::fs::copy(sample(), dir.path().join("focus/2024-09/part-1.csv")).unwrap();
    std::fs::write(dir.path().join("rates.csv"), RATES).unwrap();
    let p = FocusSource {
        focus: dir.path().join("focus"),
        rates: dir.path().join("rates.csv"),
        commitments: None,
        billing_latency_hours: 48,
        method: commitd::plan::PlannerConfig {
            kind: commitd::plan::PlannerKind::Forecast,
            ..Default::default()
        },
        bounds: commitd::optimize::Constraints::one_year_only(),
        engine: Default::default(),
    };
    (dir, p)
}

#[test]
fn plans_from_a_focus_directory_and_rereads_it_every_cycle() {
    let (dir, p) = setup();
    // The sample's newest compute hour is on 2024-09-30; a day later is within the latency.
    let now = at("2024-10-01T23:00:00Z");
    let first = p.plan(now, &[]).unwrap();
    let note = first
        .notes
        .iter()
        .find(|n| n.starts_with("planned from FOCUS"))
        .unwrap_or_else(|| panic!("{:?}", first.notes));
    assert!(note.contains("1000 rows"), "{note}");
    // Instance types the rate card lacks are priced on demand from the bill, and said so.
    assert!(
        first
            .notes
            .iter()
            .any(|n| n.contains("m5.2xlarge") && n.contains("taken from the bill")),
        "{:?}",
        first.notes
    );
    assert!(
        !first
            .notes
            .iter()
            .any(|n| n.contains("g5.4xlarge") && n.contains("taken from the bill")),
        "the rate card's own price wins"
    );
    assert_eq!(first.inputs_digest.len(), 64);
    // Same files, same time: the same inputs.
    assert_eq!(p.plan(now, &[]).unwrap().inputs_digest, first.inputs_digest);

    // A new export file lands: the next cycle reads it without a restart.
    std::fs::copy(sample(), dir.path().join("focus/2024-09/part-2.csv")).unwrap();
    let second = p.plan(now, &[]).unwrap();
    assert_ne!(second.inputs_digest, first.inputs_digest);
    assert!(
        second.notes.iter().any(|n| n.contains("2000 rows")),
        "{:?}",
        second.notes
    );
}

#[test]
fn a_stale_export_is_refused_rather_than_planned_on() {
    let (_dir, p) = setup();
    let e = p
        .plan(at("2024-10-10T00:00:00Z"), &[])
        .unwrap_err()
        .to_string();
    // The newest hour with eligible (compute) usage is named.
    assert!(e.contains("stale") && e.contains("2024-09-30T"), "{e}");
}

#[test]
fn a_bad_source_names_the_file() {
    let (dir, mut p) = setup();
    std::fs::write(
        dir.path().join("focus/2024-09/broken.csv"),
        "not,a,focus\nfile,at,all\n",
    )
    .unwrap();
    let e = p
        .plan(at("2024-10-01T23:00:00Z"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.csv"), "{e}");
    std::fs::remove_file(dir.path().join("focus/2024-09/broken.csv")).unwrap();
    p.rates = dir.path().join("missing-rates.csv");
    let e = p
        .plan(at("2024-10-01T23:00:00Z"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing-rates.csv"), "{e}");
}

#[test]
fn the_daemon_config_builds_the_focus_planner() {
    let (dir, _) = setup();
    let path = dir.path().join("commitd.toml");
    std::fs::write(
        &path,
        "[source]\nfocus = \"focus\"\nrates = \"rates.csv\"\n",
    )
    .unwrap();
    let config = Config::load_with_env(Some(&path), &BTreeMap::new()).unwrap();
    let planner = planner(&config).unwrap();
    // Now (2026) is far past the sample's last hour: the daemon refuses to plan on it.
    let e = planner.plan(Utc::now(), &[]).unwrap_err().to_string();
    assert!(e.contains("stale"), "{e}");
}
