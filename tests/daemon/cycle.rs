//! The daemon end to end: the real binary, a fresh database (SQLite; PostgreSQL too when
//! COMMITD_TEST_DATABASE_URL is set), the simulated provider, HTTP on port 0.

use crate::common;

use common::daemon::*;
use serde_json::Value;

fn backends() -> Vec<bool> {
    let mut v = vec![false];
    // Fails instead when COMMITD_TEST_REQUIRE_POSTGRES=1 and no server is named (CI).
    if postgres_url().is_some() {
        v.push(true);
    }
    v
}

/// A one-shot HTTP server that records the body of the first request it gets.
fn chat_hook() -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/services/T0/B0/secret",
        listener.local_addr().unwrap()
    );
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .unwrap();
                    return body.to_string();
                }
            }
            if n == 0 {
                return String::new();
            }
        }
    });
    (url, handle)
}

fn copilot_cycle(postgres: bool) {
    let (hook, received) = chat_hook();
    let s = Setup::with_daemon_settings(
        "copilot",
        postgres,
        &format!("webhook_url = \"{hook}\"\npublic_url = \"http://commitd.test\""),
    )
    .unwrap();
    // One cycle: the plan's first action becomes a proposal; the second breaks the daily
    // upfront limit and is blocked with its rule.
    let out = s.ok(&["run", "--once"]);
    assert!(out.contains("ComputeSavingsPlan"), "{out}");
    assert!(
        out.contains("blocked by aws limits.max_upfront_per_day"),
        "{out}"
    );
    assert!(out.contains("audit log:"), "{out}");
    let list = s.proposals();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["state"], "proposed");
    // The chat notification: Slack JSON with the summary and a link to the proposal.
    let message: Value = serde_json::from_str(&received.join().unwrap()).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(text.contains(&id) && text.contains("2.5 USD/h"), "{text}");
    assert!(
        text.contains(&format!("http://commitd.test/api/v1/proposals/{id}")),
        "{text}"
    );

    let alice = s.token("alice", "approver");
    let viewer = s.token("vic", "viewer");
    let d = s.spawn();
    assert_eq!(d.get("/healthz", None).0, 200);
    // Auth: no token, a viewer approving, then the approver.
    assert_eq!(d.get("/api/v1/proposals", None).0, 401);
    assert_eq!(d.get("/api/v1/proposals", Some("cd_forged")).0, 401);
    let (code, body) = d.get("/api/v1/proposals?state=proposed", Some(&viewer));
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 1);
    let (code, _) = d.post(
        &format!("/api/v1/proposals/{id}/approve"),
        Some(&viewer),
        "{}",
    );
    assert_eq!(code, 403);
    let (code, body) = d.post(
        &format!("/api/v1/proposals/{id}/approve"),
        Some(&alice),
        r#"{"reason": "fits the budget"}"#,
    );
    assert_eq!(code, 200, "{body}");
    // The approval wakes the executor: it buys on the simulated provider.
    let done = eventually(20, || {
        let (_, body) = d.get(&format!("/api/v1/proposals/{id}"), Some(&viewer));
        let p: Value = serde_json::from_str(&body).ok()?;
        (p["state"] == "executed").then_some(p)
    });
    assert!(done["commitment_id"].as_str().unwrap().starts_with("sim-"));
    assert_eq!(done["idempotency_key"], format!("commitd-{id}"));
    // A decision on an executed proposal is refused.
    let (code, _) = d.post(
        &format!("/api/v1/proposals/{id}/reject"),
        Some(&alice),
        r#"{"reason":"late"}"#,
    );
    assert_eq!(code, 409);
    // The commitments gauge shows the inventory the executor read after buying (a scrape
    // never reads it), moments after the proposal shows executed.
    let metrics = eventually(10, || {
        let (code, metrics) = d.get("/metrics", None);
        assert_eq!(code, 200);
        metrics
            .contains("commitd_commitment_hourly_usd{provider=\"AWS\"} 2.5")
            .then_some(metrics)
    });
    assert!(metrics.contains("commitd_pending_approvals 0"), "{metrics}");
    assert!(
        metrics.contains("commitd_actions_total{result=\"executed\"} 1"),
        "{metrics}"
    );
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");

    // The audit trail, for finance: who approved, the request before the purchase, the result.
    s.verify_audit();
    let approved = s.events("approved");
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["actor"], "alice");
    assert_eq!(s.events("plan_computed").len(), 1);
    assert_eq!(s.events("action_proposed").len(), 1);
    assert_eq!(s.events("policy_blocked").len(), 1);
    let requested = s.events("execution_requested");
    let executed = s.events("executed");
    assert_eq!((requested.len(), executed.len()), (1, 1));
    assert!(requested[0]["id"].as_i64() < executed[0]["id"].as_i64());
}

#[test]
fn copilot_cycle_plan_propose_approve_over_http_execute_and_verify() {
    for pg in backends() {
        copilot_cycle(pg);
    }
}

#[test]
fn autopilot_executes_within_guardrails_and_blocks_the_rest() {
    for pg in backends() {
        let s = Setup::new("autopilot", pg).unwrap();
        let out = s.ok(&["run", "--once"]);
        assert!(out.contains("\"outcome\":\"executed\""), "{out}");
        assert!(
            out.contains("blocked by aws limits.max_upfront_per_day"),
            "{out}"
        );
        let list = s.proposals();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["state"], "executed");
        assert_eq!(list[0]["decisions"][0]["actor"], "autopilot:aws");
        let blocked = s.events("policy_blocked");
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0]["payload"]["rule"], "limits.max_upfront_per_day");
        assert_eq!(s.events("executed").len(), 1);
        s.verify_audit();
        // The next cycle supersedes nothing that was executed, and the daily limit now
        // counts what was bought: the same plan's first action is proposed and bought again
        // only within the limits (no upfront, so it passes), the second is blocked again.
        let out = s.ok(&["run", "--once"]);
        assert!(
            out.contains("blocked by aws limits.max_upfront_per_day"),
            "{out}"
        );
        assert_eq!(s.events("executed").len(), 2);
    }
}

#[test]
fn datapilot_records_recommendations_and_never_executes() {
    let s = Setup::new("datapilot", false).unwrap();
    let out = s.ok(&["run", "--once"]);
    assert!(out.contains("recommendation"), "{out}");
    assert!(s.proposals().is_empty());
    let recs = s.events("action_proposed");
    assert_eq!(
        recs.len(),
        1,
        "the second action is blocked by its limit first"
    );
    assert_eq!(recs[0]["rationale"]["recommendation"], true);
    assert!(s.events("execution_requested").is_empty());
    s.verify_audit();
}

/// The product binary carries no failpoint: `COMMITD_TEST_FAILPOINT` is not one of its settings and
/// never aborts it (the crash tests run `commitd-dev`, in the test kit).
#[test]
fn the_product_binary_has_no_failpoint() {
    let s = Setup::new("autopilot", false).unwrap();
    let out = s.commitd_env(
        &["run", "--once"],
        &[("COMMITD_TEST_FAILPOINT", "after_purchase")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "killed: {stderr}");
    assert!(!stderr.contains("aborting"), "{stderr}");
    assert!(
        s.proposals().iter().all(|p| p["state"] != "executing"),
        "{stderr}"
    );
}

#[test]
fn two_replicas_on_one_postgresql_only_one_executes() {
    // Without a server this test cannot run; Setup::new fails it (rather than skipping)
    // under COMMITD_TEST_REQUIRE_POSTGRES=1, as in CI.
    let Some(s) = Setup::new("copilot", true) else {
        eprintln!("COMMITD_TEST_DATABASE_URL not set: two-replica test skipped");
        return;
    };
    s.ok(&["run", "--once"]);
    let id = s.proposals()[0]["id"].as_str().unwrap().to_string();
    let alice = s.token("alice", "approver");
    let a = s.spawn();
    let b = s.spawn();
    let leader = |d: &Daemon| {
        d.get("/metrics", None)
            .1
            .contains("commitd_executor_leader 1\n")
    };
    // Exactly one holds the lease (each renews every second).
    let (la, lb) = eventually(10, || {
        let (la, lb) = (leader(&a), leader(&b));
        (la ^ lb).then_some((la, lb))
    });
    let (standby, active) = if la { (&b, &a) } else { (&a, &b) };
    assert!(!lb || !la);
    // Approve through the standby: it serves the API, the leader executes.
    let (code, body) = standby.post(
        &format!("/api/v1/proposals/{id}/approve"),
        Some(&alice),
        "{}",
    );
    assert_eq!(code, 200, "{body}");
    eventually(20, || {
        (s.proposal(&id)["state"] == "executed").then_some(())
    });
    assert_eq!(s.events("executed").len(), 1);
    assert!(leader(active) && !leader(standby));
    // The leader stops (releases the lease): the standby takes over.
    let (a, b) = if la { (a, b) } else { (b, a) };
    let (status, _) = a.terminate();
    assert!(status.success());
    eventually(10, || leader(&b).then_some(()));
    b.terminate();
    s.verify_audit();
}

#[test]
fn a_newer_plan_supersedes_open_proposals_and_stale_approvals_are_refused() {
    let s = Setup::new("copilot", false).unwrap();
    s.ok(&["run", "--once"]);
    s.ok(&["run", "--once"]);
    let list = s.proposals();
    assert_eq!(list.len(), 2, "{list:?}");
    let (newer, older) = (&list[0], &list[1]);
    assert_eq!(newer["state"], "proposed");
    assert_eq!(older["state"], "expired");
    assert!(older["outcome"]
        .as_str()
        .unwrap()
        .contains("superseded by plan"));
    let alice = s.token("alice", "approver");
    let out = s.commitd_env(
        &["proposals", "approve", older["id"].as_str().unwrap()],
        &[("COMMITD_TOKEN", &alice)],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expired"),
        "{out:?}"
    );
    // Nobody can approve as the proposer (commitd) from the CLI: the name is reserved, no
    // token can carry it, and a typed name is refused.
    let out = s.commitd(&[
        "proposals",
        "approve",
        newer["id"].as_str().unwrap(),
        "--as",
        "commitd",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--as is no longer accepted"),
        "{out:?}"
    );
    let out = s.commitd(&["tokens", "create", "commitd", "--role", "approver"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reserved"),
        "{out:?}"
    );
    let expired = s.events("proposal_expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["payload"]["superseded_by"], newer["plan_id"]);
    s.verify_audit();
}

/// The composition root in process, as `commitd run` uses it but without signals:
/// `Application::build` binds port 0, `run_until_stopped` serves until the shutdown passed in
/// completes, then releases the lease, stops HTTP and returns.
#[test]
fn the_application_runs_in_process_until_its_shutdown_completes() {
    use commitd::startup::{Application, Shutdown};
    let s = Setup::new("copilot", false).unwrap();
    let mut config =
        commitd::config::Config::load_with_env(Some(&s.config), &Default::default()).unwrap();
    config.daemon.listen = Some("127.0.0.1:0".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = Application::build(config).await.unwrap();
        let port = app.port().expect("[daemon] listen is set");
        assert_ne!(port, 0, "the OS picks the port");
        let addr = format!("127.0.0.1:{port}");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let running = tokio::spawn(
            app.run_until_stopped(async move { stopped.await.unwrap_or(Shutdown::Graceful) }),
        );
        let get = |path: &'static str| {
            let addr = addr.clone();
            tokio::task::spawn_blocking(move || http(&addr, "GET", path, None, None))
        };
        let a = addr.clone();
        tokio::task::spawn_blocking(move || {
            eventually(20, || match http(&a, "GET", "/readyz", None, None) {
                Ok((200, _)) => Some(()),
                _ => None,
            })
        })
        .await
        .unwrap();
        // /metrics renders from the service's own figures.
        let (status, body) = get("/metrics").await.unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("commitd_executor_leader"), "{body}");
        stop.send(Shutdown::Graceful).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), running)
            .await
            .expect("stops within the grace period")
            .unwrap()
            .unwrap();
        // Nothing listens any more.
        assert!(get("/healthz").await.unwrap().is_err());
    });
}
