//! Test databases for the audit tests: a SQLite file in a temp dir always, and a throwaway
//! PostgreSQL database when `COMMITD_TEST_DATABASE_URL` is set (dropped again on `Drop`,
//! panics included).

pub use super::db::with_database;
use super::db::FreshDb;
pub use super::pg::postgres_url;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commitd::audit::{
    ActionProposed, Amount, Approved, AuditLog, EventBody, NewEvent, PlanComputed,
};
use commitd::domain::{Instrument, Money, PaymentOption, Provider, Term};
use commitd::store::Store;

pub struct TestDb {
    pub name: &'static str,
    pub url: String,
    _db: FreshDb,
}

impl TestDb {
    pub async fn store(&self) -> Store {
        Store::connect(&self.url)
            .await
            .expect("connect test database")
    }

    pub async fn log(&self) -> AuditLog {
        AuditLog::open(self.store().await)
    }

    /// Runs raw SQL as an operator with direct database access would.
    pub async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self.store().await {
            Store::Sqlite(pool) => sqlx::query(sql)
                .execute(&pool)
                .await
                .map(|r| r.rows_affected()),
            Store::Postgres(pool) => sqlx::query(sql)
                .execute(&pool)
                .await
                .map(|r| r.rows_affected()),
        }
    }

    /// Drops the append-only triggers, to simulate an attacker with owner rights.
    pub async fn drop_triggers(&self) {
        match self.name {
            "sqlite" => {
                self.exec("DROP TRIGGER audit_events_refuse_update")
                    .await
                    .unwrap();
                self.exec("DROP TRIGGER audit_events_refuse_delete")
                    .await
                    .unwrap();
            }
            _ => {
                self.exec("DROP TRIGGER audit_events_refuse_update_delete ON audit_events")
                    .await
                    .unwrap();
            }
        }
    }
}

/// Fresh, empty databases: SQLite always, PostgreSQL when configured.
pub async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    // A nested path that does not exist yet: the store must create it on first run.
    let sqlite = FreshDb::sqlite_at(dir.path(), "data/sub/commitd.db").holding(dir);
    let mut dbs = vec![sqlite];
    // Fails instead when COMMITD_TEST_REQUIRE_POSTGRES=1 and no server is named (CI).
    dbs.extend(FreshDb::postgres());
    dbs.into_iter()
        .map(|db| TestDb {
            name: db.backend.name(),
            url: db.url.clone(),
            _db: db,
        })
        .collect()
}

pub fn t(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + Duration::hours(hour)
}

pub fn plan(time: DateTime<Utc>, plan_id: &str) -> NewEvent {
    NewEvent::new(
        time,
        "commitd",
        plan_id,
        PlanComputed {
            plan_id: plan_id.into(),
            inputs_digest: "ab".repeat(32),
            solver_status: "optimal".into(),
            objective: Some(Money::from_micros(1_234_567_890)),
            expected_savings: Some(Money::from_micros(456_000_001)),
            actions: 1,
        },
    )
    .with_rationale(serde_json::json!({"forecast": {"p50_per_hour": 12.5, "groups": 3}}))
}

pub fn proposal(time: DateTime<Utc>, id: &str, upfront_micros: i64) -> NewEvent {
    NewEvent::new(
        time,
        "commitd",
        id,
        ActionProposed {
            proposal_id: id.into(),
            plan_id: "plan-1".into(),
            provider: Provider::Aws,
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::ONE_YEAR,
            payment_option: PaymentOption::AllUpfront,
            region: None,
            family: None,
            hourly_commitment: Money::from_micros(2_500_000),
            upfront: Money::from_micros(upfront_micros),
            expected_savings: Money::from_micros(3_141_592_653),
            expected_utilization: Some(0.985),
            action_digest: None,
        },
    )
    .with_amount(Amount::usd(Money::from_micros(upfront_micros)))
    .with_rationale(serde_json::json!({"coverage_after": "0.8", "reason": "steady baseline"}))
}

pub fn approval(time: DateTime<Utc>, id: &str, who: &str) -> NewEvent {
    NewEvent::new(
        time,
        who,
        id,
        EventBody::Approved(Approved {
            proposal_id: id.into(),
            reason: Some("within budget".into()),
            action_digest: None,
        }),
    )
}
