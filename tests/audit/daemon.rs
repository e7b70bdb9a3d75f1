//! The real `commitd run` with `[audit]` checkpoints: one at start, one per period, one on
//! shutdown covering the last event; a sink that fails is logged and retried without stopping
//! the service; a key others can read keeps the service from starting.

use crate::common;

use common::daemon::{bin, eventually, Setup};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Setup whose configuration has an `[audit]` table (appended after `[daemon]`).
fn setup(audit: &str) -> Setup {
    Setup::with_daemon_settings("datapilot", false, &format!("\n[audit]\n{audit}\n")).unwrap()
}

fn keygen(s: &Setup) -> String {
    let key = s.path("audit.key");
    let o = Command::new(bin())
        .args(["audit", "keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every event of the log (the chain's length).
fn event_count(s: &Setup) -> i64 {
    let o = Command::new(bin())
        .args([
            "audit",
            "export",
            "--format",
            "jsonl",
            "--database",
            &s.database_url,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().count() as i64
}

/// Appends one event as another process (a CLI approval) would.
fn append_event(s: &Setup) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = commitd::store::Store::connect(&s.database_url)
            .await
            .unwrap();
        let log = commitd::audit::AuditLog::open(store.clone());
        log.append(commitd::audit::NewEvent::new(
            chrono::Utc::now(),
            "alice",
            "p-x",
            commitd::audit::Rejected {
                proposal_id: "p-x".into(),
                reason: "test".into(),
            },
        ))
        .await
        .unwrap();
        store.close().await;
    });
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_daemon_checkpoints_at_start_periodically_and_on_shutdown() {
    // The public key is only known after keygen: write the key first, then the config.
    let probe = setup("");
    let public = keygen(&probe);
    let key = probe.path("audit.key");
    let s = setup(&format!(
        "checkpoint_key = \"{}\"\ncheckpoint_file = \"checkpoints.jsonl\"\ncheckpoint_every = \"1s\"\ncheckpoint_public_key = \"{public}\"",
        key.display()
    ));
    let file = s.path("checkpoints.jsonl");
    s.ok(&["run", "--once"]);
    let events_before = event_count(&s);
    assert!(events_before > 0);

    let d = s.spawn();
    let n = eventually(20, || {
        let n = lines(&file).len();
        (n >= 2).then_some(n)
    });
    assert!(n >= 2);
    // Another event while it runs: the shutdown checkpoint must cover it.
    append_event(&s);
    let head = event_count(&s);
    assert_eq!(head, events_before + 1);
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("audit checkpoints on"), "{stderr}");
    let all = lines(&file);
    assert_eq!(all.last().unwrap()["event_id"], head, "{all:?}");
    assert!(all.iter().all(|l| l["public_key"] == public.as_str()));

    // verify takes the file and the public key from [audit].
    let o = s.commitd(&["audit", "verify"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "checkpoints: {} of {} passed",
            all.len(),
            all.len()
        )),
        "{text}"
    );
}

#[test]
fn a_failing_sink_is_logged_and_retried_and_never_stops_the_daemon() {
    let probe = setup("");
    keygen(&probe);
    let key = probe.path("audit.key");
    let s = setup(&format!(
        "checkpoint_key = \"{}\"\ncheckpoint_file = \"no/such/dir/checkpoints.jsonl\"\ncheckpoint_every = \"1s\"",
        key.display()
    ));
    s.ok(&["run", "--once"]);
    let d = s.spawn();
    std::thread::sleep(Duration::from_millis(2500));
    // Still serving.
    assert_eq!(d.get("/healthz", None).0, 200);
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    let failures = stderr
        .matches("audit checkpoint not written to a sink")
        .count();
    // At start, at least one retry, and at shutdown.
    assert!(failures >= 3, "{failures} failure lines: {stderr}");
    assert!(stderr.contains("no/such/dir"), "{stderr}");
}

#[test]
fn a_key_others_can_read_keeps_the_daemon_from_starting() {
    use std::os::unix::fs::PermissionsExt;
    let probe = setup("");
    keygen(&probe);
    let key = probe.path("audit.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let s = setup(&format!(
        "checkpoint_key = \"{}\"\ncheckpoint_file = \"cp.jsonl\"",
        key.display()
    ));
    let mut child = Command::new(bin())
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&s.config)
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the daemon started with a world-readable checkpoint key");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("mode 0604") && err.contains("audit.key"),
        "{err}"
    );
    assert!(!s.path("cp.jsonl").exists());
}
