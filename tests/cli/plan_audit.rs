//! `commitd plan` records its plan in the audit store, as a user runs it: the real binary on the
//! example scenario, then `commitd audit list` and `commitd audit verify` on the same database.

use std::process::{Command, Output};

fn commitd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(args)
        .env_remove("COMMITD_DATABASE_URL")
        .env_remove("COMMITD_DATA_DIR")
        .env_remove("COMMITD_CONFIG")
        .output()
        .expect("run commitd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo");

fn plan(url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "plan",
        "--scenario",
        DEMO,
        "--seasonal-naive",
        "--horizon",
        "720",
        "--json",
        "--database",
        url,
    ];
    args.extend_from_slice(extra);
    commitd(&args)
}

fn events(url: &str) -> Vec<serde_json::Value> {
    let out = commitd(&["audit", "list", "--database", url, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn plan_is_recorded_and_the_audit_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/audit.db", dir.path().display());

    let out = plan(&url, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // stdout stays one JSON document; the note about the record goes to stderr.
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        text(&out.stderr).contains("recorded as audit event 1"),
        "{}",
        text(&out.stderr)
    );

    let listed = events(&url);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let e = &listed[0];
    assert_eq!(e["kind"], "plan_computed");
    let p = &e["payload"];
    let digest = p["inputs_digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64, "{p}");
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(p["solver_status"], printed["solver"]["status"]);
    assert_eq!(
        p["actions"].as_u64().unwrap() as usize,
        printed["actions"].as_array().unwrap().len()
    );
    assert_eq!(e["subject"], p["plan_id"]);
    // The actions themselves, with their rationale, are in the event's rationale.
    assert_eq!(e["rationale"]["actions"], printed["actions"]);
    assert_eq!(e["rationale"]["expected"], printed["expected"]);

    // The same inputs again: the same digest, a new plan id, and the chain still verifies.
    let out = plan(&url, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = events(&url);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["payload"]["inputs_digest"], digest.as_str());
    assert_ne!(
        listed[1]["payload"]["plan_id"],
        listed[0]["payload"]["plan_id"]
    );
    // Other inputs (a shorter window): another digest.
    let out = commitd(&[
        "plan",
        "--scenario",
        DEMO,
        "--seasonal-naive",
        "--horizon",
        "480",
        "--json",
        "--database",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = events(&url);
    assert_ne!(listed[2]["payload"]["inputs_digest"], digest.as_str());

    let out = commitd(&["audit", "verify", "--database", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("OK: 3 events verified"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn no_record_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub").join("audit.db");
    let url = format!("sqlite://{}", db.display());
    let out = plan(&url, &["--no-record"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("recorded"));
    assert!(!db.exists(), "--no-record created {}", db.display());
}

#[test]
fn an_unusable_database_is_a_clear_error_and_prints_no_plan() {
    let out = plan("mysql://nowhere/x", &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("audit store") || err.contains("mysql"),
        "{err}"
    );
}
