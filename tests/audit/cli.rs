//! `commitd audit ...` as a user runs it: the real binary against a database filled through
//! the library (SQLite always, PostgreSQL when `COMMITD_TEST_DATABASE_URL` is set).

use crate::common;

use common::audit::{approval, databases, plan, proposal, t};
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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn list_show_verify_export_and_detect_tampering() {
    for db in databases().await {
        let log = db.log().await;
        log.append(plan(t(0), "plan-1")).await.unwrap();
        log.append(proposal(t(24), "p-1", 12_340_000))
            .await
            .unwrap();
        log.append(approval(t(25), "p-1", "alice")).await.unwrap();
        let url = db.url.as_str();

        let out = commitd(&["audit", "verify", "--database", url]);
        assert!(out.status.success(), "{}: {}", db.name, stderr(&out));
        assert!(
            stdout(&out).contains("OK: 3 events verified"),
            "{}",
            stdout(&out)
        );

        let out = commitd(&["audit", "list", "--database", url, "--kind", "approved"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 2, "header + one event: {text}");
        assert!(
            text.contains("alice") && text.contains("approved"),
            "{text}"
        );

        let out = commitd(&["audit", "list", "--database", url, "--limit", "2", "--json"]);
        let ids: Vec<i64> = stdout(&out)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, [2, 3]);

        let out = commitd(&["audit", "show", "2", "--database", url, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let event: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(event["amount"], "12.34");
        assert_eq!(event["kind"], "action_proposed");
        let out = commitd(&["audit", "show", "9", "--database", url]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("no audit event with id 9"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("finance.csv");
        let out = commitd(&[
            "audit",
            "export",
            "--database",
            url,
            "--format",
            "csv",
            "--since",
            "2026-10-02",
            "--until",
            "2026-10-02T01:00:00Z",
            "--out",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let csv = std::fs::read_to_string(&file).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(
            rows.len(),
            1,
            "only the proposal is in [Oct 2 00:00, 01:00): {csv}"
        );
        assert_eq!(&rows[0][0], "2");
        assert!(!dir.path().join("finance.csv.partial").exists());

        let out = commitd(&["audit", "export", "--database", url, "--format", "jsonl"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).lines().count(), 3);

        let out = commitd(&["audit", "list", "--database", url, "--kind", "bought"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("--kind 'bought'"), "{}", stderr(&out));

        // Anchors: the head recorded elsewhere must still be there with the same hash.
        let head: serde_json::Value = serde_json::from_str(&stdout(&commitd(&[
            "audit",
            "show",
            "3",
            "--database",
            url,
            "--json",
        ])))
        .unwrap();
        let anchor = format!("3:{}", head["hash"].as_str().unwrap());
        let out = commitd(&["audit", "verify", "--database", url, "--anchor", &anchor]);
        assert!(out.status.success(), "{}", stdout(&out));
        let wrong = format!("3:{}", "0".repeat(64));
        let out = commitd(&["audit", "verify", "--database", url, "--anchor", &wrong]);
        assert!(!out.status.success());
        assert!(stdout(&out).contains("anchored hash"), "{}", stdout(&out));
        let out = commitd(&["audit", "verify", "--database", url, "--anchor", "4:zz"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("anchor '4:zz'"), "{}", stderr(&out));

        // Tamper: the approval now names someone else.
        db.drop_triggers().await;
        db.exec("UPDATE audit_events SET actor = 'mallory' WHERE id = 3")
            .await
            .unwrap();
        let out = commitd(&["audit", "verify", "--database", url]);
        assert!(!out.status.success(), "{}: tampering not detected", db.name);
        let text = stdout(&out);
        assert!(text.contains("BROKEN at event 3"), "{text}");
        assert!(text.contains("2 events before it verified"), "{text}");
    }
}

#[test]
fn default_database_is_created_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    // verify opens read-only: it never creates a database, and a missing one is an error
    // rather than an empty, "OK" log (a typo in a path must not look like a clean audit).
    let out = Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(["audit", "verify"])
        .env_remove("COMMITD_DATABASE_URL")
        .env("COMMITD_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!data.exists());
    let out = Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(["audit", "list"])
        .env_remove("COMMITD_DATABASE_URL")
        .env("COMMITD_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(data.join("commitd.db").is_file());
    let out = Command::new(env!("CARGO_BIN_EXE_commitd"))
        .args(["audit", "verify"])
        .env_remove("COMMITD_DATABASE_URL")
        .env("COMMITD_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("OK: empty"));

    // A configuration file's data_dir is relative to the file.
    let conf_dir = dir.path().join("etc");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let conf = conf_dir.join("commitd.toml");
    std::fs::write(&conf, "data_dir = \"var\"\n").unwrap();
    let out = commitd(&["audit", "list", "--config", conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(conf_dir.join("var").join("commitd.db").is_file());
    // ... and --data-dir overrides it.
    let flag_dir = dir.path().join("flag");
    let out = commitd(&[
        "audit",
        "list",
        "--config",
        conf.to_str().unwrap(),
        "--data-dir",
        flag_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(flag_dir.join("commitd.db").is_file());
}

#[test]
fn export_to_an_unwritable_place_fails_without_leaving_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/commitd.db", dir.path().display());
    let target = dir.path().join("missing-dir").join("out.csv");
    let out = commitd(&[
        "audit",
        "export",
        "--database",
        &url,
        "--out",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("out.csv.partial"), "{}", stderr(&out));
    assert!(!target.exists());
}
