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
