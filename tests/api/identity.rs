//! Identity end to end with the real binary: CLI decisions need an approver token or a mapped
//! OS user (never a typed name); system identities are reserved; tokens expire, rotate and
//! are revoked, each change audited; and `/metrics` never calls the provider.

use crate::common;

use common::daemon::*;
use serde_json::Value;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The login of the user running the tests, as commitd finds it (from the uid, not $USER).
fn login() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A copilot setup with one open proposal; returns it and its id.
fn one_proposal(extra: &str) -> (Setup, String) {
    let s = Setup::with_daemon_settings("copilot", false, extra).unwrap();
    s.ok(&["run", "--once"]);
    let id = s.proposals()[0]["id"].as_str().unwrap().to_string();
    (s, id)
}

#[test]
fn cli_decisions_need_a_proven_identity() {
    let (s, id) = one_proposal("");
    // A typed name is refused, whatever it is, and changes nothing.
    for name in ["alice", "commitd"] {
        let out = s.commitd(&["proposals", "approve", &id, "--as", name]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("--as is no longer accepted"),
            "{}",
            stderr(&out)
        );
    }
    // No token and no mapping: the error says how to identify.
    let out = s.commitd(&["proposals", "approve", &id]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("--token-file") && e.contains("os_users"), "{e}");
    // $USER is not an identity.
    let out = s.commitd_env(&["proposals", "approve", &id], &[("USER", "alice")]);
    assert!(!out.status.success());
    // A viewer token cannot approve; a forged one is unknown.
    let viewer = s.token("vic", "viewer");
    let out = s.commitd_env(
        &["proposals", "approve", &id],
        &[("COMMITD_TOKEN", &viewer)],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("role viewer"), "{}", stderr(&out));
    let out = s.commitd_env(
        &["proposals", "approve", &id],
        &[("COMMITD_TOKEN", "cd_forged")],
    );
    assert!(
        stderr(&out).contains("unknown, expired or revoked"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.proposal(&id)["state"], "proposed");
    assert!(s.events("approved").is_empty());
    // An approver token in a file: the token's name is the actor recorded.
    let alice = s.token("alice", "approver");
    let file = s.path("alice.token");
    std::fs::write(&file, format!("{alice}\n")).unwrap();
    // Readable by others: it works, with a warning to chmod it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.commitd(&[
        "proposals",
        "approve",
        &id,
        "--token-file",
        file.to_str().unwrap(),
        "--reason",
        "fits",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("readable by other users"),
        "{}",
        stderr(&out)
    );
    let approved = s.events("approved");
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["actor"], "alice");
    assert_eq!(s.proposal(&id)["state"], "approved");
    // A missing token file is named.
    let out = s.commitd(&[
        "proposals",
        "reject",
        &id,
        "--token-file",
        "/nonexistent/t",
        "--reason",
        "x",
    ]);
    assert!(stderr(&out).contains("/nonexistent/t"), "{}", stderr(&out));
    s.verify_audit();
}

#[test]
fn a_mapped_os_user_decides_under_its_mapped_identity() {
    let me = login();
    let (s, id) = one_proposal(&format!(
        "[identity]\nos_users = {{ \"{me}\" = \"ops@example.com\" }}\n"
    ));
    let out = s.ok(&["proposals", "reject", &id, "--reason", "not this quarter"]);
    assert!(out.contains("rejected"), "{out}");
    let rejected = s.events("rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["actor"], "ops@example.com");
    // Mapping an OS user to a system identity is refused when the configuration loads.
    let bad = Setup::with_daemon_settings(
        "copilot",
        false,
        &format!("[identity]\nos_users = {{ \"{me}\" = \"commitd\" }}\n"),
    )
    .unwrap();
    let out = bad.commitd(&["proposals", "list"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("identity.os_users") && e.contains("reserved"),
        "{e}"
    );
}

#[test]
fn reserved_names_cannot_be_tokens() {
    let s = Setup::new("copilot", false).unwrap();
    for name in ["commitd", "Commitd-admin", "system", "autopilot"] {
        let out = s.commitd(&["tokens", "create", name, "--role", "admin"]);
        assert!(!out.status.success(), "{name}");
        assert!(
            stderr(&out).contains("reserved"),
            "{name}: {}",
            stderr(&out)
        );
    }
    assert!(s.events("token_created").is_empty());
}

#[test]
fn tokens_expire_rotate_and_revoke_with_an_audit_trail() {
    let (s, id) = one_proposal("");
    // Created with a lifetime of 2 s: it works, then it does not.
    let short = s.ok(&[
        "tokens", "create", "brief", "--role", "approver", "--ttl", "2s",
    ]);
    let short = short.trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = s.commitd_env(&["proposals", "approve", &id], &[("COMMITD_TOKEN", &short)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    // Rotation: the old secret dies at once (no grace); the new one approves as the same name.
    let old = s.token("carol", "approver");
    let new = s.ok(&["tokens", "rotate", "carol"]).trim().to_string();
    assert_ne!(old, new);
    let out = s.commitd_env(&["proposals", "approve", &id], &[("COMMITD_TOKEN", &old)]);
    assert!(!out.status.success(), "the rotated-away secret still works");
    // With a grace period the previous secret keeps working until it ends.
    let newer = s
        .ok(&[
            "tokens", "rotate", "carol", "--grace", "10m", "--ttl", "30d",
        ])
        .trim()
        .to_string();
    let listed: Vec<Value> = serde_json::from_str(&s.ok(&["tokens", "list", "--json"])).unwrap();
    let carol = listed.iter().find(|t| t["name"] == "carol").unwrap();
    assert!(carol["previous_valid_until"].is_string(), "{carol}");
    assert!(!s.ok(&["tokens", "list"]).contains("cd_"));
    s.ok_env(&["proposals", "approve", &id], &[("COMMITD_TOKEN", &new)]);
    assert_eq!(s.events("approved")[0]["actor"], "carol");
    // Revoked: neither secret works any more.
    s.ok(&["tokens", "revoke", "carol"]);
    for t in [&new, &newer] {
        let out = s.commitd_env(
            &["proposals", "reject", &id, "--reason", "x"],
            &[("COMMITD_TOKEN", t)],
        );
        assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    }
    // Token management with a token needs an admin one.
    let gina = s.token("gina", "approver");
    let out = s.commitd_env(
        &["tokens", "create", "dave", "--role", "viewer"],
        &[("COMMITD_TOKEN", &gina)],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this needs admin"),
        "{}",
        stderr(&out)
    );
    let admin = s.token("root-ops", "admin");
    s.ok_env(
        &[
            "tokens", "create", "erin", "--role", "viewer", "--ttl", "7d",
        ],
        &[("COMMITD_TOKEN", &admin)],
    );

    // The audit trail: every change, who did it, never a secret.
    let created = s.events("token_created");
    let names: Vec<&str> = created
        .iter()
        .map(|e| e["payload"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["brief", "carol", "gina", "root-ops", "erin"]);
    assert_eq!(created[0]["actor"], format!("os:{}", login()));
    assert_eq!(created[4]["actor"], "root-ops");
    assert_eq!(created[4]["payload"]["role"], "viewer");
    let rotated = s.events("token_rotated");
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[1]["payload"]["name"], "carol");
    let revoked = s.events("token_revoked");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["payload"]["role"], "approver");
    let everything = s.ok(&["audit", "export", "--format", "jsonl"]);
    for secret in [&short, &old, &new, &newer, &admin] {
        assert!(!everything.contains(secret.as_str()));
    }
    s.verify_audit();
}

#[test]
fn the_api_refuses_expired_tokens() {
    let (s, id) = one_proposal("");
    let brief = s
        .ok(&[
            "tokens", "create", "brief", "--role", "approver", "--ttl", "2s",
        ])
        .trim()
        .to_string();
    let d = s.spawn();
    assert_eq!(d.get("/api/v1/proposals", Some(&brief)).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (code, body) = d.post(
        &format!("/api/v1/proposals/{id}/approve"),
        Some(&brief),
        "{}",
    );
    assert_eq!(code, 401, "{body}");
    d.terminate();
}

#[test]
fn a_metrics_scrape_makes_no_provider_call() {
    use commitd_testkit::aws_server::{TestServer, World};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(TestServer::start(World::demo("eu-west-1")))
        .unwrap();
    let aws = format!(
        "provider = \"aws\"\n[aws]\nendpoint_url = \"{}\"\n[aws.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\ndeadline_ms = 20000\nattempt_timeout_ms = 10000\n",
        server.endpoint()
    );
    let s = Setup::with_daemon_settings("copilot", false, &aws).unwrap();
    let d = s.spawn_env(AWS_ENV);
    let calls = || server.world().stats().calls.values().sum::<u32>();
    // The leader reads the inventory once after it starts (its own work, not a scrape's):
    // wait for that figure, then count.
    eventually(20, || {
        let (_, text) = d.get("/metrics", None);
        text.contains("commitd_inventory_timestamp_seconds")
            .then_some(())
    });
    let before = calls();
    for _ in 0..20 {
        let (code, text) = d.get("/metrics", None);
        assert_eq!(code, 200);
        assert!(text.contains("commitd_pending_approvals"), "{text}");
        assert!(text.contains("commitd_commitment_hourly_usd"), "{text}");
    }
    // The execute ticks in between (every second) have nothing to do and call nothing either.
    assert_eq!(
        calls(),
        before,
        "scrapes reached the provider: {:?}",
        server.world().stats().calls
    );
    d.terminate();
}
