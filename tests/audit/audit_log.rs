//! The audit log against real databases: SQLite always, PostgreSQL when
//! `COMMITD_TEST_DATABASE_URL` is set (a throwaway database per test).

use crate::common;

use commitd::audit::canonical::{compute_hash, EventRecord};
use commitd::audit::export::csv_header;
use commitd::audit::{
    Amount, AuditLog, EventBody, EventFilter, EventKind, ExportFormat, Problem, GENESIS_HASH,
};
use commitd::domain::Money;
use commitd::store::Store;
use common::audit::{approval, databases, plan, proposal, t};

#[tokio::test]
async fn appends_form_one_chain_from_genesis() {
    for db in databases().await {
        let log = db.log().await;
        assert!(log.verify().await.unwrap().head.is_none(), "{}", db.name);
        let e1 = log.append(plan(t(0), "plan-1")).await.unwrap();
        let e2 = log.append(proposal(t(1), "p-1", 1_000_000)).await.unwrap();
        let e3 = log.append(approval(t(2), "p-1", "alice")).await.unwrap();
        assert_eq!((e1.id, e2.id, e3.id), (1, 2, 3), "{}", db.name);
        assert_eq!(e1.prev_hash, GENESIS_HASH);
        assert_eq!(e2.prev_hash, e1.hash);
        assert_eq!(e3.prev_hash, e2.hash);

        // What is read back is what was appended, hash included, and the hash is the
        // canonical hash of the stored fields.
        let got = log.get(2).await.unwrap().unwrap();
        assert_eq!(got, e2, "{}", db.name);
        assert!(log.get(4).await.unwrap().is_none());
        assert!(log.get(0).await.unwrap().is_none());
        assert!(log.get(i64::MIN).await.unwrap().is_none());
        assert!(log.get(i64::MAX).await.unwrap().is_none());
        assert_eq!(got.kind(), EventKind::ActionProposed);
        assert_eq!(got.rationale["reason"], "steady baseline");

        let approvals = log
            .list(
                &EventFilter {
                    kind: Some(EventKind::Approved),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(approvals.len(), 1);
        assert_eq!(approvals[0].actor, "alice");
        let last_two = log.list(&EventFilter::default(), Some(2)).await.unwrap();
        assert_eq!(last_two.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);

        let report = log.verify().await.unwrap();
        assert!(report.is_ok(), "{}: {report:?}", db.name);
        assert_eq!(report.verified, 3);
        assert_eq!(report.head, Some((3, e3.hash.clone())));
    }
}

#[tokio::test]
async fn invalid_events_are_refused_before_touching_the_chain() {
    for db in databases().await {
        let log = db.log().await;
        let mut bad = plan(t(0), "x");
        bad.rationale = serde_json::json!([1, 2]);
        assert!(log.append(bad).await.is_err());
        let mut bad = plan(t(0), "x");
        bad.actor = " ".into();
        assert!(log.append(bad).await.is_err());
        let bad = plan(t(0), "x").with_amount(Amount {
            money: Money::from_units(1),
            currency: "usd".into(),
        });
        assert!(log.append(bad).await.is_err());
        assert_eq!(log.verify().await.unwrap().verified, 0, "{}", db.name);
    }
}

#[tokio::test]
async fn money_round_trips_to_the_micro_dollar() {
    let amounts = [
        1,
        -1,
        999_999,
        1_000_000,
        123_456_789_123_456, // $123,456,789.123456: beyond f32, and exact beyond f64 cents
        9_007_199_254_740_993, // 2^53 + 1: not representable as f64
        i64::MAX,
        i64::MIN,
    ];
    for db in databases().await {
        let log = db.log().await;
        for (i, micros) in amounts.iter().enumerate() {
            let e = proposal(t(i as i64), &format!("p-{i}"), *micros);
            log.append(e).await.unwrap();
        }
        let events = log.list(&EventFilter::default(), None).await.unwrap();
        for (event, micros) in events.iter().zip(amounts) {
            let amount = event.amount.as_ref().unwrap();
            assert_eq!(amount.money.micros(), micros, "{}", db.name);
            assert_eq!(amount.currency, "USD");
            match &event.body {
                EventBody::ActionProposed(p) => assert_eq!(p.upfront.micros(), micros),
                other => panic!("unexpected {other:?}"),
            }
        }
        // The JSONL export carries the exact decimal string and the integer micros.
        let mut out = Vec::new();
        log.export(&EventFilter::default(), ExportFormat::Jsonl, &mut out)
            .await
            .unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[5]["amount"], "9007199254.740993");
        assert_eq!(lines[5]["amount_micros"], 9_007_199_254_740_993i64);
        assert_eq!(lines[6]["amount"], "9223372036854.775807");
        assert!(log.verify().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate() {
    for db in databases().await {
        let log = db.log().await;
        let e = log.append(proposal(t(0), "p-1", 5_000_000)).await.unwrap();
        log.append(approval(t(1), "p-1", "bob")).await.unwrap();

        let err = db
            .exec("UPDATE audit_events SET amount_micros = 1 WHERE id = 1")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{}: {err}", db.name);
        let err = db
            .exec("DELETE FROM audit_events WHERE id = 2")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{}: {err}", db.name);
        // An UPDATE that changes nothing is refused too: the trigger fires per row.
        assert!(db
            .exec("UPDATE audit_events SET actor = actor")
            .await
            .is_err());
        assert!(db.exec("DELETE FROM audit_events").await.is_err());
        if db.name == "postgres" {
            let err = db
                .exec("TRUNCATE audit_events")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("append-only"), "{err}");
        }
        let after = log.get(1).await.unwrap().unwrap();
        assert_eq!(after, e);
        assert_eq!(log.verify().await.unwrap().verified, 2, "{}", db.name);
    }
}

async fn five_events(log: &AuditLog) {
    log.append(plan(t(0), "plan-1")).await.unwrap();
    for i in 1..=4 {
        log.append(proposal(t(i), &format!("p-{i}"), i * 1_000_000))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn editing_an_event_is_detected_and_named() {
    for db in databases().await {
        let log = db.log().await;
        five_events(&log).await;
        db.drop_triggers().await;
        // Finance fraud: the upfront amount of event 3 shrinks after the fact.
        assert_eq!(
            db.exec("UPDATE audit_events SET amount_micros = 1 WHERE id = 3")
                .await
                .unwrap(),
            1
        );
        let report = log.verify().await.unwrap();
        let bad = report.first_bad.clone().expect("tampering not detected");
        assert_eq!(bad.id, 3, "{}: {report:?}", db.name);
        assert!(matches!(bad.problem, Problem::HashMismatch { .. }));
        assert_eq!(report.verified, 2);
        assert!(bad.to_string().contains("event 3"), "{bad}");
    }
}

#[tokio::test]
async fn editing_an_event_and_its_hash_breaks_the_next_link() {
    for db in databases().await {
        let log = db.log().await;
        five_events(&log).await;
        db.drop_triggers().await;
        // A smarter attacker recomputes event 3's hash after editing it.
        let mut rec: EventRecord = {
            let mut found = None;
            log.walk(&EventFilter::default(), |r| {
                if r.id == 3 {
                    found = Some(r);
                }
                Ok(true)
            })
            .await
            .unwrap();
            found.unwrap()
        };
        rec.actor = "mallory".into();
        let forged = compute_hash(&rec).unwrap();
        db.exec(&format!(
            "UPDATE audit_events SET actor = 'mallory', hash = '{forged}' WHERE id = 3"
        ))
        .await
        .unwrap();
        let report = log.verify().await.unwrap();
        let bad = report.first_bad.expect("forgery not detected");
        assert_eq!(bad.id, 4, "{}", db.name);
        assert!(matches!(bad.problem, Problem::BrokenLink { .. }), "{bad}");
        assert_eq!(report.verified, 3);
    }
}

#[tokio::test]
async fn deleting_an_event_is_detected_at_the_gap() {
    for db in databases().await {
        let log = db.log().await;
        five_events(&log).await;
        db.drop_triggers().await;
        db.exec("DELETE FROM audit_events WHERE id = 2")
            .await
            .unwrap();
        let report = log.verify().await.unwrap();
        let bad = report.first_bad.expect("deletion not detected");
        assert_eq!(bad.id, 3, "{}", db.name);
        assert_eq!(bad.problem, Problem::Gap { expected_id: 2 });
    }
}

#[tokio::test]
async fn concurrent_appends_keep_one_linear_chain() {
    const TASKS: i64 = 8;
    const EACH: i64 = 25;
    for db in databases().await {
        // Two independent pools on the same database, like two processes, plus clones
        // sharing a pool, like tasks in one daemon.
        let logs = [db.log().await, db.log().await];
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let log = logs[(task % 2) as usize].clone();
            handles.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let id = format!("p-{task}-{i}");
                    log.append(proposal(t(i), &id, task * 1000 + i))
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let report = logs[0].verify().await.unwrap();
        assert!(report.is_ok(), "{}: {report:?}", db.name);
        assert_eq!(report.verified, (TASKS * EACH) as u64);
        let events = logs[1].list(&EventFilter::default(), None).await.unwrap();
        assert_eq!(events.len(), (TASKS * EACH) as usize);
        // Every append is there exactly once.
        let mut subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects.len(), (TASKS * EACH) as usize);
    }
}

#[tokio::test]
async fn exports_filter_by_time_and_flatten_finance_fields() {
    for db in databases().await {
        let log = db.log().await;
        log.append(plan(t(0), "plan-1")).await.unwrap();
        log.append(proposal(t(24), "p-1", 7_250_000)).await.unwrap();
        log.append(approval(t(25), "p-1", "alice")).await.unwrap();
        log.append(proposal(t(48), "p-2", 1)).await.unwrap();

        // [t(24), t(48)): the proposal and the approval, not the plan, not p-2.
        let filter = EventFilter {
            since: Some(t(24)),
            until: Some(t(48)),
            ..Default::default()
        };
        let mut out = Vec::new();
        let n = log
            .export(&filter, ExportFormat::Csv, &mut out)
            .await
            .unwrap();
        assert_eq!(n, 2, "{}", db.name);
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, csv_header());
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(&rows[0][col("id")], "2");
        assert_eq!(&rows[0][col("time")], "2026-10-02T00:00:00.000000Z");
        assert_eq!(&rows[0][col("kind")], "action_proposed");
        assert_eq!(&rows[0][col("amount")], "7.25");
        assert_eq!(&rows[0][col("currency")], "USD");
        assert_eq!(&rows[0][col("expected_savings")], "3141.592653");
        assert_eq!(&rows[0][col("instrument")], "ComputeSavingsPlan");
        assert_eq!(&rows[0][col("term")], "1");
        assert_eq!(&rows[0][col("expected_utilization")], "0.985");
        // From the rationale, since the payload has no such field.
        assert_eq!(&rows[0][col("reason")], "steady baseline");
        assert_eq!(&rows[1][col("kind")], "approved");
        assert_eq!(&rows[1][col("actor")], "alice");
        assert_eq!(&rows[1][col("proposal_id")], "p-1");
        assert_eq!(&rows[1][col("reason")], "within budget");
        assert_eq!(&rows[1][col("amount")], "");
        let stored = log.get(3).await.unwrap().unwrap();
        assert_eq!(&rows[1][col("hash")], stored.hash);

        // JSONL: since only, every field.
        let mut out = Vec::new();
        let since = EventFilter {
            since: Some(t(25)),
            ..Default::default()
        };
        log.export(&since, ExportFormat::Jsonl, &mut out)
            .await
            .unwrap();
        let lines: Vec<serde_json::Value> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], 3);
        assert_eq!(lines[1]["id"], 4);
        assert_eq!(lines[1]["amount"], "0.000001");
        assert_eq!(lines[1]["payload"]["upfront"], "0.000001");
        assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);

        // Until only, exclusive.
        let until = EventFilter {
            until: Some(t(24)),
            ..Default::default()
        };
        let mut out = Vec::new();
        assert_eq!(
            log.export(&until, ExportFormat::Jsonl, &mut out)
                .await
                .unwrap(),
            1
        );
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_data_survives_restart() {
    for db in databases().await {
        let first = db.log().await;
        first.append(plan(t(0), "plan-1")).await.unwrap();
        first.store().close().await;
        // Restart twice: migrations run again and must be no-ops.
        for _ in 0..2 {
            let store = db.store().await;
            let applied: i64 = match &store {
                Store::Sqlite(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                    .fetch_one(pool)
                    .await
                    .unwrap(),
                Store::Postgres(pool) => {
                    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                        .fetch_one(pool)
                        .await
                        .unwrap()
                }
            };
            let files = std::fs::read_dir(format!(
                "{}/migrations/{}",
                env!("CARGO_MANIFEST_DIR"),
                db.name
            ))
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "sql")
            })
            .count() as i64;
            assert_eq!(applied, files, "{}", db.name);
            let log = AuditLog::open(store);
            let report = log.verify().await.unwrap();
            assert!(report.is_ok());
            assert_eq!(report.verified, 1, "{}", db.name);
        }
    }
}

#[tokio::test]
async fn sqlite_is_created_on_first_run_in_wal_mode_with_foreign_keys() {
    let dbs = databases().await;
    let db = &dbs[0];
    let Store::Sqlite(pool) = db.store().await else {
        panic!("first test database is SQLite");
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let path = db.url.trim_start_matches("sqlite://");
    assert!(std::path::Path::new(path).is_file());
}

#[tokio::test]
async fn connect_errors_name_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let url = format!("sqlite://{}/sub/commitd.db", blocker.display());
    let err = Store::connect(&url).await.unwrap_err().to_string();
    assert!(err.contains(&url), "{err}");
    // Nothing listens on port 1; the cause and the redacted URL are both in the message.
    let err = Store::connect("postgres://app:hunter2@127.0.0.1:1/commitd")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("postgres://app:***@127.0.0.1:1/commitd"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn times_are_stored_to_the_microsecond_and_filtered_exactly() {
    for db in databases().await {
        let log = db.log().await;
        let precise = t(3) + chrono::Duration::nanoseconds(123_456_789);
        let e = log.append(plan(precise, "plan-1")).await.unwrap();
        let expected = t(3) + chrono::Duration::microseconds(123_456);
        assert_eq!(e.time, expected);
        assert_eq!(
            log.get(1).await.unwrap().unwrap().time,
            expected,
            "{}",
            db.name
        );
        // since is inclusive at the microsecond, until exclusive.
        let at = |since, until| EventFilter {
            since,
            until,
            ..Default::default()
        };
        let n = |f: EventFilter| {
            let log = log.clone();
            async move { log.list(&f, None).await.unwrap().len() }
        };
        assert_eq!(n(at(Some(expected), None)).await, 1, "{}", db.name);
        assert_eq!(
            n(at(Some(expected + chrono::Duration::microseconds(1)), None)).await,
            0
        );
        assert_eq!(n(at(None, Some(expected))).await, 0, "{}", db.name);
        assert_eq!(
            n(at(None, Some(expected + chrono::Duration::microseconds(1)))).await,
            1
        );
        assert!(log.verify().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn an_anchor_detects_a_truncated_or_rewritten_tail() {
    use commitd::audit::Anchor;
    for db in databases().await {
        let log = db.log().await;
        five_events(&log).await;
        let (id, hash) = log.verify().await.unwrap().head.unwrap();
        let anchor: Anchor = format!("{id}:{hash}").parse().unwrap();
        assert!(log.verify_anchored(Some(&anchor)).await.unwrap().is_ok());
        // A later, longer chain still passes.
        log.append(approval(t(9), "p-4", "carol")).await.unwrap();
        assert!(log.verify_anchored(Some(&anchor)).await.unwrap().is_ok());

        db.drop_triggers().await;
        db.exec("DELETE FROM audit_events WHERE id >= 4")
            .await
            .unwrap();
        // The chain alone cannot tell...
        assert!(log.verify().await.unwrap().is_ok(), "{}", db.name);
        // ...the anchor can.
        let report = log.verify_anchored(Some(&anchor)).await.unwrap();
        let bad = report.first_bad.unwrap();
        assert_eq!(bad.id, 5);
        assert_eq!(bad.problem, Problem::Truncated { last_id: 3 });

        // Re-growing the chain past the anchor gives event 5 another hash.
        log.append(plan(t(20), "plan-x")).await.unwrap();
        log.append(plan(t(21), "plan-y")).await.unwrap();
        let report = log.verify_anchored(Some(&anchor)).await.unwrap();
        let bad = report.first_bad.unwrap();
        assert_eq!(bad.id, 5, "{}", db.name);
        assert!(matches!(bad.problem, Problem::AnchorMismatch { .. }));
    }
    assert!("5".parse::<Anchor>().is_err());
    assert!("0:abc".parse::<Anchor>().is_err());
    assert!(format!("x:{}", "a".repeat(64)).parse::<Anchor>().is_err());
}

#[tokio::test]
async fn the_schema_refuses_a_forked_chain() {
    for db in databases().await {
        let log = db.log().await;
        let first = log.append(plan(t(0), "plan-1")).await.unwrap();
        log.append(plan(t(1), "plan-2")).await.unwrap();
        // A writer that bypassed the append lock and read a stale head (event 1) would insert
        // a second successor of event 1: refused by UNIQUE(prev_hash), whatever its id.
        let time = match db.name {
            "sqlite" => "'2026-10-01T02:00:00.000000Z'",
            _ => "'2026-10-01T02:00:00Z'::timestamptz",
        };
        let err = db
            .exec(&format!(
                "INSERT INTO audit_events (id, occurred_at, kind, actor, subject, payload, rationale, prev_hash, hash) \
                 VALUES (3, {time}, 'plan_computed', 'x', 'y', '{{}}', '{{}}', '{}', '{}')",
                first.hash,
                "f".repeat(64)
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.to_lowercase().contains("unique"), "{}: {err}", db.name);
        assert_eq!(log.verify().await.unwrap().verified, 2);
    }
}

#[tokio::test]
async fn any_json_string_is_accepted_and_verifies() {
    for db in databases().await {
        let log = db.log().await;
        let odd = "NUL \u{0} bell \u{7} quote \" backslash \\ emoji \u{1f4b8} rtl \u{202e}";
        // Plain text columns cannot hold NUL in PostgreSQL: refused on both backends alike.
        let err = log.append(plan(t(0), odd)).await.unwrap_err().to_string();
        assert!(err.contains("NUL"), "{}: {err}", db.name);
        let subject = odd.replace('\0', "");
        let e = log
            .append(
                plan(t(0), &subject).with_rationale(serde_json::json!({ "note": odd, "n": -0.0 })),
            )
            .await
            .unwrap();
        let got = log.get(1).await.unwrap().unwrap();
        assert_eq!(got.subject, subject, "{}", db.name);
        assert_eq!(got.rationale["note"], odd);
        assert_eq!(got.hash, e.hash);
        assert!(log.verify().await.unwrap().is_ok(), "{}", db.name);
    }
}

#[tokio::test]
async fn appends_inside_a_caller_transaction_commit_or_roll_back_with_it() {
    for db in databases().await {
        let log = db.log().await;
        log.append(plan(t(0), "plan-1")).await.unwrap();
        for commit in [false, true] {
            let id = match log.store() {
                Store::Sqlite(pool) => {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                    let e = AuditLog::append_in_sqlite_tx(&mut tx, approval(t(1), "p-1", "dan"))
                        .await
                        .unwrap();
                    if commit {
                        tx.commit().await.unwrap();
                    } else {
                        tx.rollback().await.unwrap();
                    }
                    e.id
                }
                Store::Postgres(pool) => {
                    let mut tx = pool.begin().await.unwrap();
                    let e = AuditLog::append_in_postgres_tx(&mut tx, approval(t(1), "p-1", "dan"))
                        .await
                        .unwrap();
                    if commit {
                        tx.commit().await.unwrap();
                    } else {
                        tx.rollback().await.unwrap();
                    }
                    e.id
                }
            };
            // Both attempts were event 2: the rolled-back one left no trace.
            assert_eq!(id, 2, "{}", db.name);
            let report = log.verify().await.unwrap();
            assert!(report.is_ok(), "{}", db.name);
            assert_eq!(report.verified, if commit { 2 } else { 1 }, "{}", db.name);
        }
    }
}

#[tokio::test]
async fn a_page_is_chosen_by_the_database_by_actor_kind_and_before() {
    for db in databases().await {
        let log = db.log().await;
        // 12 events: plans by commitd, approvals by alice and bob in turn.
        for i in 0..12 {
            let e = if i % 3 == 0 {
                plan(t(i), &format!("plan-{i}"))
            } else {
                let who = if i % 3 == 1 { "alice" } else { "bob" };
                approval(t(i), &format!("p-{i}"), who)
            };
            log.append(e).await.unwrap();
        }
        let ids = |events: Vec<commitd::audit::Event>| -> Vec<i64> {
            events.iter().map(|e| e.id).collect()
        };
        let all = EventFilter::default();
        // The newest 3, in chain order; then the 3 before them.
        assert_eq!(
            ids(log.page(&all, None, None, 3).await.unwrap()),
            [10, 11, 12],
            "{}",
            db.name
        );
        assert_eq!(
            ids(log.page(&all, None, Some(10), 3).await.unwrap()),
            [7, 8, 9],
            "{}",
            db.name
        );
        // alice's: ids 2, 5, 8, 11; before 8 the page holds the two older ones only.
        let alice = log.page(&all, Some("alice"), None, 10).await.unwrap();
        assert_eq!(ids(alice.clone()), [2, 5, 8, 11], "{}", db.name);
        assert!(alice.iter().all(|e| e.actor == "alice"));
        assert_eq!(
            ids(log.page(&all, Some("alice"), Some(8), 10).await.unwrap()),
            [2, 5],
            "{}",
            db.name
        );
        // With a kind: commitd's plans, the newest 2 before event 10.
        let plans = EventFilter {
            kind: Some(EventKind::PlanComputed),
            ..EventFilter::default()
        };
        assert_eq!(
            ids(log.page(&plans, None, Some(10), 2).await.unwrap()),
            [4, 7],
            "{}",
            db.name
        );
        assert!(log
            .page(&all, Some("nobody"), None, 10)
            .await
            .unwrap()
            .is_empty());
    }
}
