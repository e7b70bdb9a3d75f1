//! `commitd usage` end to end: the JSON contract other tools and the acceptance checks read.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_json_over_the_history_window() {
    let (ok, stdout, stderr) = run(&["usage", "--scenario", "examples/demo", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["from"], "2025-06-01T00:00:00Z");
    assert_eq!(v["to"], "2025-12-01T00:00:00Z");
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    let mut sum = 0.0;
    for g in groups {
        for key in ["provider", "region", "instance_type", "family"] {
            assert!(g[key].is_string(), "{key} in {g}");
        }
        let c = g["coverage"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c));
        assert!(g["hours"].as_f64().unwrap() > 0.0);
        sum += g["on_demand_cost"].as_f64().unwrap();
    }
    let total = v["total_on_demand_cost"].as_f64().unwrap();
    assert!(
        (sum - total).abs() < 1e-6 * total.max(1.0),
        "{sum} vs {total}"
    );
    let commitments = v["commitments"].as_array().unwrap();
    assert_eq!(commitments.len(), 3);
    for c in commitments {
        assert!(c["id"].is_string() && c["instrument"].is_string());
        let u = c["utilization"].as_f64().unwrap();
        assert!(u > 0.5 && u <= 1.0, "{c}");
    }
    assert!(v["ignored_rows"]["not compute: Storage"].as_u64().unwrap() > 0);
}

#[test]
fn usage_reports_bad_input_with_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bill.csv.gz");
    std::fs::write(&p, b"ChargeCategory\nUsage\n").unwrap();
    let (ok, _, stderr) = run(&["usage", "--focus", p.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("bill.csv.gz") && stderr.contains("gzip"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["usage"]);
    assert!(!ok && stderr.contains("--scenario"), "{stderr}");
}
