//! FOCUS ingestion against real and public data: the FinOps Foundation's real sample, and the
//! two public scenarios. Expected figures are computed here, independently of the reader.

use commitd::domain::{Hour, HourRange, Instrument, Money, Provider};
use commitd::ingest::infer_commitments;
use commitd::sources::{load_scenario, read_focus, ReadOptions};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use crate::common;
use common::shared::shared;

fn dec(s: &str) -> Decimal {
    if s == "NULL" || s.is_empty() {
        Decimal::ZERO
    } else {
        Decimal::from_str(s).unwrap()
    }
}

#[test]
fn real_focus_1_0_sample_totals_match_an_independent_count() {
    let path = shared().join("data/focus/focus-1.0-sample-real.csv");
    let bill = read_focus(&path, &ReadOptions::default()).unwrap();
    let m = &bill.model;

    // Independent split: AWS EC2 instance-hours are the Usage rows whose description reads
    // "... per On Demand <os> <type> Instance Hour" (a FOCUS 1.0 export has no SkuPriceDetails).
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (cat, prov, desc, list, stat, pc, cid) = (
        col("ChargeCategory"),
        col("ProviderName"),
        col("ChargeDescription"),
        col("ListCost"),
        col("CommitmentDiscountStatus"),
        col("PricingCategory"),
        col("CommitmentDiscountId"),
    );
    let mut total = Decimal::ZERO;
    let mut covered = Decimal::ZERO;
    let mut eligible = 0u64;
    let mut types = BTreeSet::new();
    let mut rows = 0u64;
    let mut commitment_ids = BTreeSet::new();
    for r in reader.records() {
        let r = r.unwrap();
        rows += 1;
        if &r[stat] == "Used" {
            commitment_ids.insert(r[cid].to_string());
        }
        let d = &r[desc];
        if &r[cat] == "Usage"
            && &r[prov] == "AWS"
            && d.contains(" per On Demand ")
            && d.ends_with(" Instance Hour")
        {
            eligible += 1;
            total += dec(&r[list]);
            if &r[pc] == "Committed" {
                covered += dec(&r[list]);
            }
            let words: Vec<&str> = d.split(' ').collect();
            types.insert(words[words.len() - 3].to_string());
        }
    }
    assert_eq!(rows, 1000);
    assert!(eligible > 10, "the sample has EC2 instance-hours");
    assert_eq!(m.rows_read, rows);
    assert_eq!(m.total_ode(), Money::from_decimal(total).unwrap());
    let model_covered: Money = m.groups.iter().map(|g| g.total_covered_ode).sum();
    assert_eq!(model_covered, Money::from_decimal(covered).unwrap());
    assert!(covered > Decimal::ZERO);
    let model_types: BTreeSet<String> = m
        .groups
        .iter()
        .map(|g| g.group.instance_type.clone())
        .collect();
    assert_eq!(model_types, types);
    assert!(m.groups.iter().all(|g| g.group.provider == Provider::Aws));
    // Everything else is accounted for, by reason.
    assert_eq!(m.ignored.total(), rows - eligible);
    assert!(m
        .ignored
        .by_reason
        .contains_key("provider Oracle not supported"));
    assert!(m
        .ignored
        .by_reason
        .contains_key("compute not modeled yet: Fargate"));
    assert!(m.ignored.by_reason.contains_key("charge category Credit"));
    // Savings plans seen through their Used rows (including the one covering Fargate).
    let ids: BTreeSet<String> = m.commitments.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, commitment_ids);
    // No commitments file: both savings plans are inferred from the bill, and say so.
    let (inferred, skipped) = infer_commitments(&bill.commitments, &[]);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(inferred.len(), commitment_ids.len());
    for i in &inferred {
        assert_eq!(i.commitment.instrument, Instrument::ComputeSavingsPlan);
        assert!(i.note.contains("inferred from the bill"));
        assert!(i.commitment.end > i.commitment.start);
    }
    assert_eq!(m.currency, "USD");
    // The bill spans September 2024 (hourly AWS rows, daily Microsoft rows).
    assert!(m.range.start >= Hour::parse("2024-09-01T00:00:00Z").unwrap());
    assert!(m.range.end <= Hour::parse("2024-10-01T00:00:00Z").unwrap());
}

#[test]
fn public_scenarios_load_with_their_groups_and_commitments() {
    let sg = load_scenario(&shared().join("scenarios/steady-growth")).unwrap();
    assert_eq!(sg.name, "steady-growth");
    assert_eq!(sg.window.all().len(), sg.usage.hours());
    assert_eq!(sg.usage.hours(), 2208 + 8760);
    assert_eq!(sg.usage.groups.len(), 6);
    assert!(sg.commitments.is_empty());
    assert!(sg.rates.len() > 50);
    for g in &sg.usage.groups {
        assert!(
            sg.rates.on_demand(&g.group.product()).is_some(),
            "{} not priced",
            g.group
        );
        // Observed list price agrees with the rate card's on-demand rate.
        let od = sg.rates.on_demand(&g.group.product()).unwrap();
        let seen = g.observed_unit_price().unwrap();
        assert!((seen - od).abs() < 1e-6, "{}: {seen} vs {od}", g.group);
    }

    let mf = load_scenario(&shared().join("scenarios/mixed-fleet")).unwrap();
    assert_eq!(mf.usage.groups.len(), 8);
    let providers: BTreeSet<Provider> = mf.usage.groups.iter().map(|g| g.group.provider).collect();
    assert_eq!(providers.len(), 2);
    assert_eq!(
        mf.commitments.len(),
        3,
        "all three are listed in commitments.csv"
    );
    assert!(mf.inferred.is_empty());
    let sp = mf
        .commitments
        .iter()
        .find(|c| c.instrument == Instrument::ComputeSavingsPlan)
        .unwrap();
    assert_eq!(sp.hourly_cost, Money::parse("2.5").unwrap());
    let ri = mf
        .commitments
        .iter()
        .find(|c| c.instrument == Instrument::StandardReservedInstance)
        .unwrap();
    // ContractCommitmentCost / term hours.
    assert_eq!(ri.hourly_cost, Money::parse("1.734156").unwrap());
    assert_eq!(ri.units(), 12.0 * 8.0);
    // The bill shows each commitment in use during the history.
    let hist = mf.history();
    for c in &mf.commitments {
        let u = hist.commitments.iter().find(|u| u.id == c.id).unwrap();
        assert!(u.utilization(0, hist.hours()).unwrap() > 0.5);
    }
    let covered: BTreeMap<&str, f64> = hist
        .groups
        .iter()
        .map(|g| {
            (
                g.group.instance_type.as_str(),
                g.covered_ode.iter().sum::<f64>(),
            )
        })
        .collect();
    assert!(covered["r6i.xlarge"] > 0.0 && covered["Standard_E8s_v5"] > 0.0);
}

#[test]
fn csv_gz_and_parquet_give_the_same_model() {
    let dir = shared().join("scenarios/steady-growth");
    let range = Some(HourRange::new(
        Hour::parse("2025-06-01T00:00:00Z").unwrap(),
        Hour::parse("2026-09-01T00:00:00Z").unwrap(),
    ));
    let opts = ReadOptions {
        range,
        progress: false,
    };
    let a = read_focus(&dir.join("usage.csv.gz"), &opts).unwrap().model;
    let b = read_focus(&dir.join("usage.parquet"), &opts).unwrap().model;
    assert_eq!(a.groups.len(), b.groups.len());
    assert_eq!(a.rows_read, b.rows_read);
    assert_eq!(a.ignored, b.ignored);
    assert_eq!(a.total_ode(), b.total_ode());
    for (x, y) in a.groups.iter().zip(&b.groups) {
        assert_eq!(x.group, y.group);
        assert_eq!(x.total_ode, y.total_ode);
        assert_eq!(x.by_sub_account, y.by_sub_account);
        for (p, q) in x.ode.iter().zip(&y.ode) {
            assert!((p - q).abs() < 1e-9);
        }
        for (p, q) in x.quantity.iter().zip(&y.quantity) {
            assert!((p - q).abs() < 1e-9);
        }
    }
}
