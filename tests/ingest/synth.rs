//! The synthetic scenario generator, read back through ingest: what the bill says must be
//! what the generator meant (demand, coverage by the existing commitments, their use).

use commitd::domain::{CommitmentAmount, Instrument};
use commitd_testkit::synth::{build, generate, Config, Shape};

#[test]
fn generated_scenario_reads_back_as_generated() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        shape: Shape::Mixed,
        groups: 9,
        seed: 11,
        history_months: 2,
        evaluation_months: 2,
        ..Config::default()
    };
    let summary = generate(&config, dir.path()).unwrap();
    let org = build(&config).unwrap();
    let s = commitd::sources::load_scenario(dir.path()).unwrap();
    assert_eq!(s.name, summary.name);
    assert_eq!(s.window.decision_time, summary.decision_time);
    assert_eq!(s.usage.rows_read, summary.rows);
    assert_eq!(s.usage.groups.len(), config.groups);
    assert!(
        s.inferred.is_empty(),
        "every commitment in the bill is listed: {:?}",
        s.notes
    );
    assert_eq!(s.commitments.len(), org.commitments.len());

    // Hour by hour, the ingested instance-hours are the generator's demand (rows round
    // quantities to 1e-6 per sub-account and commitment).
    for g in &org.groups {
        let series = s
            .usage
            .groups
            .iter()
            .find(|x| {
                x.group.instance_type == g.product.instance_type
                    && x.group.region == g.product.region
                    && x.group.os == g.product.os
            })
            .unwrap_or_else(|| panic!("{} missing", g.product.instance_type));
        assert_eq!(series.quantity.len(), g.demand.len());
        for (t, (a, b)) in series.quantity.iter().zip(&g.demand).enumerate() {
            assert!(
                (a - b).abs() < 1e-4,
                "{} hour {t}: read {a}, generated {b}",
                g.product.instance_type
            );
        }
        // Every group is priced in the rate card, at the on-demand price the bill used.
        let od = s.rates.on_demand(&series.group.product()).unwrap();
        assert!((series.observed_unit_price().unwrap() - od).abs() < 1e-6);
    }

    // Savings plans: each active hour, used + unused = the hourly commitment.
    for c in &s.commitments {
        let usage = s.usage.commitments.iter().find(|u| u.id == c.id);
        let active: Vec<usize> = (0..s.usage.hours())
            .filter(|&i| c.is_active(s.usage.range.start.plus(i as i64)))
            .collect();
        if active.is_empty() {
            assert!(usage.is_none() || usage.unwrap().total_used.micros() == 0);
            continue;
        }
        let u = usage.unwrap_or_else(|| panic!("{} active but not in the bill", c.id));
        if let CommitmentAmount::HourlySpend(h) = c.amount {
            assert_eq!(c.instrument, Instrument::ComputeSavingsPlan);
            for &i in &active {
                assert!(
                    (u.used[i] + u.unused[i] - h.to_f64()).abs() < 1e-5,
                    "hour {i}"
                );
            }
        } else {
            for &i in &active {
                assert!(
                    (u.used[i] + u.unused[i] - c.hourly_cost.to_f64()).abs() < 1e-4,
                    "{} hour {i}",
                    c.id
                );
            }
        }
    }
}

#[test]
fn same_seed_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let config = Config {
        shape: Shape::Spiky,
        groups: 3,
        seed: 5,
        history_months: 1,
        evaluation_months: 1,
        ..Config::default()
    };
    generate(&config, a.path()).unwrap();
    generate(&config, b.path()).unwrap();
    for f in [
        "usage.parquet",
        "rates.csv",
        "commitments.csv",
        "scenario.toml",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f} differs"
        );
    }
}

#[test]
fn shipped_demo_is_what_synth_writes() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        shape: Shape::Mixed,
        groups: 4,
        seed: 7,
        history_months: 6,
        evaluation_months: 6,
        ..Config::default()
    };
    generate(&config, dir.path()).unwrap();
    for f in [
        "usage.parquet",
        "rates.csv",
        "commitments.csv",
        "scenario.toml",
    ] {
        assert_eq!(
            std::fs::read(shipped.join(f)).unwrap(),
            std::fs::read(dir.path().join(f)).unwrap(),
            "examples/demo/{f} is stale: regenerate it (see examples/demo/README.md)"
        );
    }
    let s = commitd::sources::load_scenario(&shipped).unwrap();
    assert_eq!(s.usage.groups.len(), 4);
    assert_eq!(s.commitments.len(), 3);
}
