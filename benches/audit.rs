//! Audit log throughput: appends (one writer; 8 concurrent writers), verify and CSV export,
//! on SQLite (a temp file) and on PostgreSQL when `COMMITD_BENCH_DATABASE_URL` points at a
//! server (a throwaway database is created and dropped).
//!
//! `cargo bench --profile dev --bench audit` (the dev profile reuses the warm shared build;
//! the work is dominated by fsync and round trips, not by code generation).
//! `COMMITD_BENCH_EVENTS` sets the number of events per backend (default 2000).

use chrono::{Duration, TimeZone, Utc};
use commitd::audit::{ActionProposed, Amount, AuditLog, EventFilter, ExportFormat, NewEvent};
use commitd::domain::{Instrument, Money, PaymentOption, Provider, Term};
use commitd::store::Store;
use sqlx::Connection;
use std::time::Instant;

fn event(i: i64) -> NewEvent {
    let time = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + Duration::seconds(i);
    NewEvent::new(
        time,
        "commitd",
        format!("p-{i}"),
        ActionProposed {
            proposal_id: format!("p-{i}"),
            plan_id: "plan-1".into(),
            provider: Provider::Aws,
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::ONE_YEAR,
            payment_option: PaymentOption::NoUpfront,
            region: Some("us-east-1".into()),
            family: None,
            hourly_commitment: Money::from_micros(2_500_000 + i),
            upfront: Money::ZERO,
            expected_savings: Money::from_micros(3_141_592_653),
            expected_utilization: Some(0.97),
            action_digest: None,
        },
    )
    .with_amount(Amount::usd(Money::from_micros(21_900_000_000 + i)))
    .with_rationale(serde_json::json!({
        "forecast": {"p10": 2.1, "p50": 2.6, "p90": 3.0},
        "coverage_before": "0.61", "coverage_after": "0.83",
        "reason": "steady baseline over 90 days"
    }))
}

async fn run(name: &str, url: &str, n: i64) {
    let log = AuditLog::open(Store::connect(url).await.expect("connect"));
    let half = n / 2;

    let start = Instant::now();
    for i in 0..half {
        log.append(event(i)).await.expect("append");
    }
    let sequential = start.elapsed();

    let writers = 8;
    let per = (n - half) / writers;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                log.append(event(half + w * per + i)).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let concurrent = start.elapsed();
    let total = half + writers * per;

    let start = Instant::now();
    let report = log.verify().await.expect("verify");
    let verify = start.elapsed();
    assert!(
        report.is_ok() && report.verified == total as u64,
        "{report:?}"
    );

    let mut sink = Vec::new();
    let start = Instant::now();
    let exported = log
        .export(&EventFilter::default(), ExportFormat::Csv, &mut sink)
        .await
        .expect("export");
    let export = start.elapsed();
    assert_eq!(exported, total as u64);

    let rate = |count: i64, d: std::time::Duration| count as f64 / d.as_secs_f64();
    println!(
        "| {name} | {total} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
        rate(half, sequential),
        rate(writers * per, concurrent),
        rate(total, verify),
        rate(total, export),
        sink.len() as f64 / total as f64,
    );
    log.store().close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: i64 = std::env::var("COMMITD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!("| backend | events | appends/s (1 writer) | appends/s (8 writers) | verify events/s | CSV export events/s | CSV bytes/event |");
    println!("|---|---|---|---|---|---|---|");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    run("SQLite (WAL, synchronous=FULL)", &url, n).await;

    if let Ok(admin) = std::env::var("COMMITD_BENCH_DATABASE_URL") {
        let db = format!("commitd_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("admin connect");
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        run("PostgreSQL 15 (localhost)", &format!("{base}/{db}"), n).await;
        sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .expect("drop database");
    }
}
