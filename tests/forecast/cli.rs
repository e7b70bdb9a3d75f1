//! `commitd forecast` end to end on the public scenarios: JSON shape, quantile order, the SVG
//! file, and errors that name what is wrong.

use std::process::Command;

use crate::common;
use common::shared::shared;

fn commitd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_has_every_group_hour_and_quantile_in_order() {
    let dir = shared().join("scenarios/steady-growth");
    let out = commitd(&[
        "forecast",
        "--scenario",
        dir.to_str().unwrap(),
        "--horizon-days",
        "7",
        "--quantiles",
        "0.9,0.1,0.5,0.25",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["at"], "2025-09-01T00:00:00Z");
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 6);
    for g in groups {
        let f = &g["forecast"];
        assert_eq!(f["start"], "2025-09-01T00:00:00Z", "{}", g["label"]);
        let levels: Vec<f64> = serde_json::from_value(f["levels"].clone()).unwrap();
        assert_eq!(levels, vec![0.1, 0.25, 0.5, 0.9]);
        let values: Vec<Vec<f64>> = serde_json::from_value(f["values"].clone()).unwrap();
        assert_eq!(values.len(), 4);
        for (l, row) in values.iter().enumerate() {
            assert_eq!(row.len(), 168);
            assert!(row.iter().all(|v| *v >= 0.0));
            if l > 0 {
                assert!(row.iter().zip(&values[l - 1]).all(|(a, b)| a >= b));
            }
        }
        assert!(f["signals"]["unsettled"].is_boolean());
    }
}

#[test]
fn table_filter_svg_and_errors() {
    let dir = shared().join("scenarios/mixed-fleet");
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("f.svg");
    let out = commitd(&[
        "forecast",
        "--scenario",
        dir.to_str().unwrap(),
        "--group",
        "microsoft",
        "--at",
        "2025-12-01T00:00:00Z",
        "--horizon-days",
        "3",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("forecast from 2025-12-01T00:00:00Z"));
    assert!(text.contains("Microsoft/") && !text.contains("AWS/"));
    // Three days, one row each, plus the mean.
    assert!(text.contains("2025-12-03") && !text.contains("2025-12-04"));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("<polygon"));

    let bad = commitd(&[
        "forecast",
        "--scenario",
        dir.to_str().unwrap(),
        "--group",
        "no-such-group",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-group"));
    let bad = commitd(&[
        "forecast",
        "--scenario",
        dir.to_str().unwrap(),
        "--quantiles",
        "0.5,1.5",
        "--json",
    ]);
    assert!(!bad.status.success());
}
