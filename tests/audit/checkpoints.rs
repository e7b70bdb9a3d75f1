//! Signed checkpoints anchor the audit chain outside the database (issue 24, item 6): the
//! attacks that a hash chain alone cannot see (rewrite and re-hash, delete the tail) fail
//! `audit verify` once checkpoints exist; forged checkpoints, missing triggers, bad keys are
//! refused; verify works read-only; the independent Python verifier agrees.
//! SQLite always, PostgreSQL too when `COMMITD_TEST_DATABASE_URL` is set.

use crate::common;

use commitd::audit::canonical::compute_hash;
use commitd::audit::checkpoint::SigningKey;
use commitd::audit::checkpointer::{post_json, Checkpointer, Sink};
use commitd::audit::{AuditLog, EventRecord};
use common::audit::{approval, databases, plan, proposal, t, TestDb};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

fn commitd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(args)
        .env_remove("COMMITD_DATABASE_URL")
        .env_remove("COMMITD_DATA_DIR")
        .env_remove("COMMITD_CONFIG")
        .env_remove("COMMITD_AUDIT_KEY_FILE")
        .output()
        .expect("run commitd")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `commitd audit keygen --out DIR/audit.key`; returns the key path and the public key.
fn keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("audit.key");
    let o = commitd(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(public.len(), 64, "{}", out(&o));
    (key, public)
}

fn checkpoint(url: &str, key: &Path, file: &Path) -> Output {
    commitd(&[
        "audit",
        "checkpoint",
        "--database",
        url,
        "--key",
        key.to_str().unwrap(),
        "--checkpoint-file",
        file.to_str().unwrap(),
    ])
}

fn verify(url: &str, file: &Path, public: &str) -> Output {
    commitd(&[
        "audit",
        "verify",
        "--database",
        url,
        "--checkpoints",
        file.to_str().unwrap(),
        "--public-key",
        public,
    ])
}

async fn fill(log: &AuditLog, n: i64) {
    log.append(plan(t(0), "plan-1")).await.unwrap();
    for i in 1..n {
        if i % 2 == 1 {
            log.append(proposal(t(i), &format!("p-{i}"), 1_000_000 * i))
                .await
                .unwrap();
        } else {
            log.append(approval(t(i), &format!("p-{}", i - 1), "alice"))
                .await
                .unwrap();
        }
    }
}

async fn records(log: &AuditLog) -> Vec<EventRecord> {
    let mut all = Vec::new();
    log.walk_after(0, |r| {
        all.push(r);
        Ok(true)
    })
    .await
    .unwrap();
    all
}

/// What an attacker with owner rights does after editing rows: recompute every hash and
/// link from event `from` on, so the chain is valid again.
async fn rehash_from(db: &TestDb, log: &AuditLog, from: i64) {
    let mut prev = String::new();
    for mut rec in records(log).await {
        if rec.id >= from {
            rec.prev_hash.clone_from(&prev);
            rec.hash = compute_hash(&rec).unwrap();
            db.exec(&format!(
                "UPDATE audit_events SET prev_hash = '{}', hash = '{}' WHERE id = {}",
                rec.prev_hash, rec.hash, rec.id
            ))
            .await
            .unwrap();
        }
        prev = rec.hash;
    }
}

/// The careful attacker puts the append-only triggers back after the edit.
async fn restore_triggers(db: &TestDb) {
    let statements: &[&str] = if db.name == "sqlite" {
        &[
            "CREATE TRIGGER audit_events_refuse_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END",
            "CREATE TRIGGER audit_events_refuse_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END",
        ]
    } else {
        &["CREATE TRIGGER audit_events_refuse_update_delete BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()"]
    };
    for s in statements {
        db.exec(s).await.unwrap();
    }
}

#[tokio::test]
async fn a_rewritten_and_rehashed_chain_passes_plain_verify_but_fails_the_checkpoints() {
    for db in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keygen(dir.path());
        let cps = dir.path().join("checkpoints.jsonl");
        let log = db.log().await;
        fill(&log, 3).await;
        let o = checkpoint(&db.url, &key, &cps);
        assert!(o.status.success(), "{}: {}", db.name, out(&o));
        fill(&log, 3).await; // events 4..6
        let o = checkpoint(&db.url, &key, &cps);
        assert!(o.status.success(), "{}: {}", db.name, out(&o));
        assert_eq!(std::fs::read_to_string(&cps).unwrap().lines().count(), 2);

        let o = verify(&db.url, &cps, &public);
        assert!(o.status.success(), "{}: {}", db.name, out(&o));
        assert!(
            out(&o).contains("checkpoints: 2 of 2 passed"),
            "{}",
            out(&o)
        );
        assert!(
            out(&o).contains("the newest that passed is line 2 (event 6 at"),
            "{}",
            out(&o)
        );
        assert!(!out(&o).contains(": OK"), "{}", out(&o));
        let o = commitd(&[
            "audit",
            "verify",
            "--database",
            &db.url,
            "--checkpoints",
            cps.to_str().unwrap(),
            "--public-key",
            &public,
            "--verbose",
        ]);
        let text = out(&o);
        assert!(
            text.contains("line 1 (event 3 at") && text.contains("line 2 (event 6 at"),
            "{text}"
        );
        assert_eq!(text.matches(": OK").count(), 2, "{text}");

        // The attack: drop the trigger, make event 5's approver someone else, re-hash from
        // there, put the trigger back.
        db.drop_triggers().await;
        db.exec("UPDATE audit_events SET actor = 'mallory' WHERE id = 5")
            .await
            .unwrap();
        rehash_from(&db, &log, 5).await;
        restore_triggers(&db).await;

        // The documented limitation: the chain alone is valid again.
        assert!(log.verify().await.unwrap().is_ok(), "{}", db.name);
        let o = commitd(&["audit", "verify", "--database", &db.url]);
        assert!(o.status.success(), "{}: {}", db.name, out(&o));
        // With the checkpoints: the first (event 3) still passes, the second names event 6.
        let o = verify(&db.url, &cps, &public);
        let text = out(&o);
        assert!(
            !o.status.success(),
            "{}: rewrite not detected: {text}",
            db.name
        );
        assert!(
            text.contains("line 2 (event 6 at")
                && text.contains("FAILED: event 6 has hash")
                && text.contains("rewritten"),
            "{text}"
        );
        assert!(text.contains("checkpoints: 1 of 2 passed"), "{text}");
        assert!(text.contains("audit chain OK"), "{text}");
    }
}

#[tokio::test]
async fn a_deleted_tail_fails_against_the_checkpoint() {
    for db in databases().await {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keygen(dir.path());
        let cps = dir.path().join("cp.jsonl");
        let log = db.log().await;
        fill(&log, 5).await;
        assert!(checkpoint(&db.url, &key, &cps).status.success());
        db.drop_triggers().await;
        db.exec("DELETE FROM audit_events WHERE id >= 4")
            .await
            .unwrap();
        restore_triggers(&db).await;
        assert!(log.verify().await.unwrap().is_ok());
        let o = verify(&db.url, &cps, &public);
        let text = out(&o);
        assert!(!o.status.success(), "{}: {text}", db.name);
        assert!(
            text.contains("event 5 is missing, the log ends at event 3"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn forged_or_foreign_checkpoints_fail_and_name_their_line() {
    let db = databases().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let cps = dir.path().join("cp.jsonl");
    let log = db.log().await;
    fill(&log, 4).await;
    assert!(checkpoint(&db.url, &key, &cps).status.success());
    let good = std::fs::read_to_string(&cps).unwrap();
    // An attacker who rewrote the chain edits the checkpoint's hash to match: the signature
    // no longer covers it.
    let head = records(&log).await.pop().unwrap();
    let forged = good.replace(&head.hash, &"e".repeat(64));
    assert_ne!(forged, good);
    std::fs::write(&cps, &forged).unwrap();
    let o = verify(&db.url, &cps, &public);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("line 1: FAILED: bad signature"),
        "{}",
        out(&o)
    );
    // The refused line counts in the summary: a file of forgeries is not "no checkpoints".
    assert!(
        out(&o).contains("checkpoints: 0 of 1 passed"),
        "{}",
        out(&o)
    );
    // A checkpoint signed with another key is not trusted.
    let (other_key, _) = keygen(&dir.path().join("other").tap_mkdir());
    let other_cps = dir.path().join("other.jsonl");
    assert!(checkpoint(&db.url, &other_key, &other_cps).status.success());
    let o = verify(&db.url, &other_cps, &public);
    assert!(!o.status.success());
    assert!(out(&o).contains("not a trusted public key"), "{}", out(&o));
    // A key given without checkpoints, or checkpoints without a key, is a usage error.
    let o = commitd(&[
        "audit",
        "verify",
        "--database",
        &db.url,
        "--checkpoints",
        cps.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(out(&o).contains("no public key"), "{}", out(&o));
    let o = verify(&db.url, &dir.path().join("missing.jsonl"), &public);
    assert!(!o.status.success());
    assert!(out(&o).contains("cannot read"), "{}", out(&o));
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[tokio::test]
async fn missing_or_disabled_triggers_are_reported() {
    for db in databases().await {
        let log = db.log().await;
        fill(&log, 2).await;
        db.drop_triggers().await;
        let o = commitd(&["audit", "verify", "--database", &db.url]);
        let text = out(&o);
        assert!(!o.status.success(), "{}: {text}", db.name);
        assert!(text.contains("audit chain OK"), "{text}");
        assert!(
            text.contains("trigger missing") && text.contains("BEFORE UPDATE"),
            "{text}"
        );
        assert!(text.contains("BEFORE DELETE"), "{text}");
        restore_triggers(&db).await;
        let o = commitd(&["audit", "verify", "--database", &db.url]);
        assert!(o.status.success(), "{}: {}", db.name, out(&o));
        if db.name == "postgres" {
            db.exec("ALTER TABLE audit_events DISABLE TRIGGER audit_events_refuse_truncate")
                .await
                .unwrap();
            let o = commitd(&["audit", "verify", "--database", &db.url]);
            assert!(!o.status.success());
            assert!(out(&o).contains("BEFORE TRUNCATE"), "{}", out(&o));
        } else {
            // A trigger of the right name that no longer aborts counts as missing.
            db.exec("DROP TRIGGER audit_events_refuse_delete")
                .await
                .unwrap();
            db.exec("CREATE TRIGGER audit_events_refuse_delete BEFORE DELETE ON audit_events BEGIN SELECT 1; END")
                .await
                .unwrap();
            let o = commitd(&["audit", "verify", "--database", &db.url]);
            assert!(!o.status.success());
            assert!(out(&o).contains("BEFORE DELETE"), "{}", out(&o));
        }
    }
}

#[tokio::test]
async fn verify_on_a_read_only_sqlite_copy_writes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("live.db");
    let url = format!("sqlite://{}", src.display());
    {
        let log = AuditLog::open(commitd::store::Store::connect(&url).await.unwrap());
        fill(&log, 5).await;
        // Everything into the main file before it is copied (closing the pool alone does not
        // guarantee that the last connection's checkpoint already ran).
        if let commitd::store::Store::Sqlite(pool) = log.store() {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
                .unwrap();
        }
        log.store().close().await;
    }
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join("commitd.db");
    std::fs::copy(&src, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let copy_url = format!("sqlite://{}", copy.display());
    let (key, public) = keygen(dir.path());
    let cps = dir.path().join("cp.jsonl");
    let o = checkpoint(&copy_url, &key, &cps);
    assert!(o.status.success(), "{}", out(&o));
    let o = verify(&copy_url, &cps, &public);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("OK: 5 events verified"), "{}", out(&o));
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        before,
        "verify or checkpoint changed the database file"
    );
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A database with an older schema (only the audit table, no migration records) is
    // verified as it is: no migration is applied to it.
    let old = dir.path().join("old.db");
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", old.display()))
            .await
            .unwrap();
        let sql = include_str!("../../migrations/sqlite/0001_audit_events.sql");
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let before = std::fs::read(&old).unwrap();
    let o = commitd(&[
        "audit",
        "verify",
        "--database",
        &format!("sqlite://{}", old.display()),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("OK: empty"), "{}", out(&o));
    assert_eq!(std::fs::read(&old).unwrap(), before);

    // A database that does not exist is an error, and is not created.
    let missing = dir.path().join("typo").join("commitd.db");
    let o = commitd(&[
        "audit",
        "verify",
        "--database",
        &format!("sqlite://{}", missing.display()),
    ]);
    assert!(!o.status.success());
    assert!(out(&o).contains("does not exist"), "{}", out(&o));
    assert!(!missing.parent().unwrap().exists());
}

#[tokio::test]
async fn verify_works_with_a_read_only_postgres_role() {
    let Some(db) = databases().await.into_iter().find(|d| d.name == "postgres") else {
        eprintln!("COMMITD_TEST_DATABASE_URL not set: PostgreSQL part skipped");
        return;
    };
    let log = db.log().await;
    fill(&log, 4).await;
    static N: AtomicU32 = AtomicU32::new(0);
    let role = format!(
        "commitd_ro_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let dbname = db.url.rsplit('/').next().unwrap().to_string();
    for s in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {dbname} TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON audit_events TO {role}"),
    ] {
        db.exec(&s).await.unwrap();
    }
    let ro_url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(ro_url, db.url, "the test URL must name the postgres user");
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let cps = dir.path().join("cp.jsonl");
    let o = checkpoint(&ro_url, &key, &cps);
    assert!(o.status.success(), "{}", out(&o));
    let o = verify(&ro_url, &cps, &public);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("OK: 4 events verified"), "{}", out(&o));
    for s in [
        format!("REVOKE ALL ON audit_events FROM {role}"),
        format!("REVOKE ALL ON SCHEMA public FROM {role}"),
        format!("REVOKE ALL ON DATABASE {dbname} FROM {role}"),
    ] {
        db.exec(&s).await.unwrap();
    }
    drop(log);
    drop(db);
    // The role is cluster-wide: drop it once its database is gone.
    if let Ok(admin) = std::env::var("COMMITD_TEST_DATABASE_URL") {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
            let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
                .execute(&mut conn)
                .await;
        }
    }
}

#[test]
fn keygen_refuses_to_overwrite_and_a_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();
    let o = commitd(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(out(&o).contains("refusing to overwrite"), "{}", out(&o));
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let loaded = SigningKey::load(&key).unwrap();
    assert_eq!(loaded.public_key().to_hex(), public);

    // World-readable: refused with the path and the fix, and nothing is written.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("sqlite://{}/db/commitd.db?mode=rwc", dir.path().display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::open(commitd::store::Store::connect(&url).await.unwrap());
        fill(&log, 2).await;
        log.store().close().await;
    });
    let cps = dir.path().join("cp.jsonl");
    let o = checkpoint(&url, &key, &cps);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        text.contains("mode 0644") && text.contains("chmod 600") && text.contains("audit.key"),
        "{text}"
    );
    assert!(!cps.exists());
    // The key from the environment variable is used when no flag or file names one.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args([
            "audit",
            "checkpoint",
            "--database",
            &url,
            "--checkpoint-file",
            cps.to_str().unwrap(),
        ])
        .env_remove("COMMITD_CONFIG")
        .env("COMMITD_AUDIT_KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(std::fs::read_to_string(&cps).unwrap().contains(&public));
    // No key at all: a clear error.
    let o = commitd(&[
        "audit",
        "checkpoint",
        "--database",
        &url,
        "--checkpoint-file",
        cps.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(out(&o).contains("no checkpoint key"), "{}", out(&o));
}

#[tokio::test]
async fn the_daemon_writer_checkpoints_periodically_retries_a_failing_sink_and_on_shutdown() {
    let db = databases().await.remove(0);
    let log = db.log().await;
    fill(&log, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cp.jsonl");
    let key = SigningKey::from_seed(&[3u8; 32]).unwrap();
    let public = key.public_key().clone();
    // A webhook that fails its first two posts, then accepts.
    let posts = Arc::new(AtomicU32::new(0));
    let seen = posts.clone();
    let post = post_json(move |body| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if body["type"] != "commitd.audit.checkpoint" {
                return Err(format!("unexpected body {body}"));
            }
            if n < 2 {
                Err("status 503".to_string())
            } else {
                Ok(())
            }
        }
    });
    let writer = Checkpointer::new(
        log.clone(),
        key,
        vec![Sink::File(file.clone()), Sink::Webhook(post)],
    );
    let health = writer.health();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(writer.run(std::time::Duration::from_secs(1), stopped));
    // Start, then retries after 1 s (the backoff is capped by the period) until the hook
    // accepts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while health.written.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(health.sink_failures.load(Ordering::Relaxed), 2);
    assert_eq!(health.consecutive_failures.load(Ordering::Relaxed), 0);
    assert_eq!(health.last_event_id.load(Ordering::Relaxed), 2);
    // New events, then shutdown: the last checkpoint covers them.
    log.append(approval(t(9), "p-1", "bob")).await.unwrap();
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), task)
        .await
        .expect("the writer stops on shutdown")
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let checked = commitd::audit::checkpoint::check_lines(&text, &[public]);
    assert!(checked.len() >= 3, "{text}");
    assert!(checked.iter().all(|c| c.outcome.is_ok()), "{text}");
    let last = checked.last().unwrap().outcome.clone().unwrap();
    assert_eq!(last.checkpoint.event_id, 3);
    assert!(posts.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn the_writer_never_signs_a_broken_or_rewritten_chain() {
    for db in databases().await {
        let log = db.log().await;
        fill(&log, 3).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.jsonl");
        let mut writer = Checkpointer::new(
            log.clone(),
            SigningKey::from_seed(&[4u8; 32]).unwrap(),
            vec![Sink::File(file.clone())],
        );
        let first = writer.checkpoint(t(10)).await.unwrap();
        assert_eq!(first.signed.unwrap().checkpoint.event_id, 3);
        // Rewritten behind its back and re-hashed: the next event no longer links to the
        // hash the writer verified, so it refuses instead of blessing the new chain.
        db.drop_triggers().await;
        db.exec("UPDATE audit_events SET actor = 'mallory' WHERE id = 2")
            .await
            .unwrap();
        rehash_from(&db, &log, 2).await;
        log.append(approval(t(11), "p-1", "carol")).await.unwrap();
        let err = writer.checkpoint(t(12)).await.unwrap_err().to_string();
        assert!(err.contains("BROKEN at event 4"), "{}: {err}", db.name);
        // A fresh writer (a restart) walks the whole chain: the edit without re-hashing is
        // caught at event 2.
        db.exec("UPDATE audit_events SET subject = 'x' WHERE id = 2")
            .await
            .unwrap();
        let mut fresh = Checkpointer::new(
            log.clone(),
            SigningKey::from_seed(&[4u8; 32]).unwrap(),
            vec![Sink::File(file.clone())],
        );
        let err = fresh.checkpoint(t(13)).await.unwrap_err().to_string();
        assert!(err.contains("BROKEN at event 2"), "{}: {err}", db.name);
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 1);
    }
}

/// The interpreter for docs/verify-audit.py: `COMMITD_TEST_PYTHON`, else the moto venv that
/// `.ci/run` creates (moto depends on `cryptography`), else `python3`. None (skip) when it or
/// `cryptography` is missing, except under CI, where that fails the test.
fn python() -> Option<String> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-moto/bin/python");
    let candidates: Vec<String> = match std::env::var("COMMITD_TEST_PYTHON") {
        Ok(p) if !p.trim().is_empty() => vec![p],
        _ => vec![venv.to_string(), "python3".to_string()],
    };
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import cryptography"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(p.clone());
        }
    }
    let msg = format!(
        "no Python with the `cryptography` package among {candidates:?} \
         (set COMMITD_TEST_PYTHON, or pip install cryptography)"
    );
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

fn run_verifier(py: &str, export: &Path, cps: &Path, public: &str) -> Output {
    Command::new(py)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/verify-audit.py"))
        .arg(export)
        .args([
            "--checkpoints",
            cps.to_str().unwrap(),
            "--public-key",
            public,
        ])
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_independent_python_verifier_agrees() {
    let Some(py) = python() else { return };
    let db = databases().await.remove(0);
    let log = db.log().await;
    fill(&log, 6).await;
    // Unusual text must hash the same in Python: quotes, control characters, non-ASCII.
    log.append(
        approval(t(20), "p-1", "zoë \"the\" approver\u{1}\n")
            .with_rationale(serde_json::json!({"note": "tab\there / é ✓", "ratio": 0.1})),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let cps = dir.path().join("cp.jsonl");
    assert!(checkpoint(&db.url, &key, &cps).status.success());
    let export = dir.path().join("audit.jsonl");
    let o = commitd(&[
        "audit",
        "export",
        "--database",
        &db.url,
        "--format",
        "jsonl",
        "--out",
        export.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));

    let o = run_verifier(&py, &export, &cps, &public);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("audit chain OK: 7 events verified"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("checkpoints: 1 of 1 passed"),
        "{}",
        out(&o)
    );

    // Tampered export: an approver renamed in the hashed fields.
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("\"alice\"", "\"mallory\"", 1)).unwrap();
    let o = run_verifier(&py, &tampered, &cps, &public);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("hash does not match"), "{}", out(&o));

    // The rewrite attack on the database, then a fresh export: the chain is valid, the
    // checkpoint is not.
    db.drop_triggers().await;
    db.exec("UPDATE audit_events SET amount_micros = 1 WHERE id = 2")
        .await
        .unwrap();
    rehash_from(&db, &log, 2).await;
    let rewritten = dir.path().join("rewritten.jsonl");
    let o = commitd(&[
        "audit",
        "export",
        "--database",
        &db.url,
        "--format",
        "jsonl",
        "--out",
        rewritten.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let o = run_verifier(&py, &rewritten, &cps, &public);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("audit chain OK") && text.contains("rewritten"),
        "{text}"
    );

    // A forged checkpoint line.
    let forged = dir.path().join("forged.jsonl");
    let line = std::fs::read_to_string(&cps).unwrap();
    std::fs::write(
        &forged,
        line.replacen("\"event_id\":7", "\"event_id\":6", 1),
    )
    .unwrap();
    let o = run_verifier(&py, &export, &forged, &public);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("bad signature"), "{}", out(&o));
}

#[tokio::test]
async fn the_service_refuses_a_key_without_a_sink_and_a_bad_key() {
    use commitd::startup::checkpointer;
    let db = databases().await.remove(0);
    let log = db.log().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path());
    let mut config = commitd::config::Config::default();
    let error = |config: &commitd::config::Config| match checkpointer(config, log.clone()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(checkpointer(&config, log.clone()).unwrap().is_none());
    config.audit.checkpoint_key = Some(key.clone());
    assert!(error(&config).contains("nowhere to go"));
    config.audit.checkpoint_file = Some(dir.path().join("cp.jsonl"));
    let (writer, every) = checkpointer(&config, log.clone()).unwrap().unwrap();
    assert_eq!(every.as_secs(), 900);
    assert_eq!(writer.sinks().len(), 1);
    config.audit.checkpoint_key = Some(dir.path().join("nope.key"));
    let e = error(&config);
    assert!(e.contains("nope.key") && e.contains("cannot read"), "{e}");
}

/// A copy in a directory the verifying user cannot write (so SQLite cannot create the WAL
/// index beside it): `mode=ro` cannot open it, the `immutable=1` fallback does, and says so.
/// As root (CI), the command runs as `nobody` through setpriv, since root ignores permissions.
#[tokio::test]
async fn verify_falls_back_to_immutable_in_a_read_only_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("live.db");
    {
        let log = AuditLog::open(
            commitd::store::Store::connect(&format!("sqlite://{}", src.display()))
                .await
                .unwrap(),
        );
        fill(&log, 3).await;
        if let commitd::store::Store::Sqlite(pool) = log.store() {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
                .unwrap();
        }
        log.store().close().await;
    }
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join("commitd.db");
    std::fs::copy(&src, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    // The binary where another user may run it.
    let bin = dir.path().join("commitd");
    std::fs::copy(env!("CARGO_BIN_EXE_commitd"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url = format!("sqlite://{}", copy.display());
    let args = ["audit", "verify", "--database", url.as_str()];
    let root = unsafe { libc::geteuid() } == 0;
    let o = if root {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs the check as nobody")
    } else {
        Command::new(&bin).args(args).output().unwrap()
    };
    std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("OK: 3 events verified"), "{text}");
    assert!(text.contains("opened immutable"), "{text}");
    let left: Vec<_> = std::fs::read_dir(&copy_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "files beside the copy: {left:?}");
}
