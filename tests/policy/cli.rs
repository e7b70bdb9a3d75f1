//! The shipped policies are valid, and a broken one makes `policy check` fail naming the file.

use std::process::Command;

fn commitd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_commitd"))
}

#[test]
fn shipped_policies_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let out = commitd()
        .args(["policy", "check", "--dir", dir])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 valid policies"), "{stdout}");
    assert!(stdout.contains("quarter-end freeze"), "{stdout}");
    // What each may give up, and how fast.
    assert!(
        stdout
            .contains("gives up:  return, sale, exchange; $/h given up per day $10 / 30 days $40"),
        "{stdout}"
    );
    assert!(
        stdout.contains("gives up:  return, exchange; $/h given up per day $5 / 30 days $20"),
        "{stdout}"
    );
}

#[test]
fn a_threshold_above_its_cap_fails_the_check_with_file_line_and_key() {
    // The shipped AWS policy as it was: two approvers from 50 USD/h under a 25 USD/h daily cap,
    // a rule that could never apply.
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/aws.toml")).unwrap();
    let old = shipped.replace(
        "two_approvers_from_hourly_commitment = \"20\"",
        "two_approvers_from_hourly_commitment = \"50\"",
    );
    assert_ne!(
        old, shipped,
        "the shipped policy sets the threshold this test raises"
    );
    std::fs::write(dir.path().join("aws.toml"), &old).unwrap();
    let line = old
        .lines()
        .position(|l| l.starts_with("two_approvers_from_hourly_commitment"))
        .unwrap()
        + 1;
    let out = commitd()
        .args(["policy", "check", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("aws.toml: line {line}: approval.two_approvers_from_hourly_commitment (50) is above limits.max_new_hourly_commitment_per_day (25)")),
        "{stderr}"
    );
}

#[test]
fn a_broken_policy_fails_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.toml"), "name = \"ok\"\n").unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"bad\"\n[limits]\nmax_upfront_per_day = \n",
    )
    .unwrap();
    let out = commitd()
        .args(["policy", "check", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.toml") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn check_config_rejects_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "mode = \"yolo\"\n").unwrap();
    let out = commitd()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("c.toml") && stderr.contains("yolo"),
        "{stderr}"
    );
}

#[test]
fn check_config_validates_the_webhook_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[daemon]\nwebhook_ca_file = \"missing.pem\"\n").unwrap();
    let out = commitd()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("webhook_ca_file") && stderr.contains("missing.pem"),
        "{stderr}"
    );
    // The test CA (tests/data/webhook-tls) parses.
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/webhook-tls/ca.pem");
    std::fs::write(
        &path,
        format!("[daemon]\nwebhook_ca_file = \"{}\"\n", ca.display()),
    )
    .unwrap();
    let out = commitd()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
