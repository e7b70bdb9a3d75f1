//! `audit verify` beyond the chain: the signed checkpoints against the stored chain, the
//! append-only triggers, and opening a database read-only (a copy handed to an auditor, or a
//! read-only role), without migrations and without writes.

use super::checkpoint::SignedCheckpoint;
use super::log::{check_link, AuditError, AuditLog, BadEvent, VerifyReport};
use super::GENESIS_HASH;
use crate::dburl::{backend_of, redact_url, Backend};
use crate::store::Store;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::Row;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// Why a read-only open failed; names the database (password redacted).
#[derive(Debug, thiserror::Error)]
#[error("database '{url}' (read-only): {message}")]
pub struct ReadOnlyError {
    pub url: String,
    pub message: String,
}

/// How a read-only SQLite database was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnlyMode {
    /// `mode=ro`: SQLite never writes the database file (it may use the WAL's `-shm` beside
    /// it, as every reader does). Sees events a live daemon has committed.
    ReadOnly,
    /// `immutable=1`, when `mode=ro` could not open it (a copy in a read-only directory whose
    /// WAL index cannot be created): no locks, no side files; correct for a copy nobody writes.
    Immutable,
    /// PostgreSQL, every transaction read-only (`default_transaction_read_only`).
    PostgresReadOnly,
}

/// Opens a database for reading only: no migrations, no file creation, no writes. SQLite is
/// opened with `mode=ro` (falling back to `immutable=1` when that cannot open it); PostgreSQL
/// with `default_transaction_read_only=on`, so even a role that could write does not. A role
/// with only `SELECT` on `audit_events` is enough.
pub async fn open_read_only(url: &str) -> Result<(Store, ReadOnlyMode), ReadOnlyError> {
    let shown = redact_url(url);
    let err = |message: String| ReadOnlyError {
        url: shown.clone(),
        message,
    };
    match backend_of(url) {
        Some(Backend::Sqlite) => {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| err(format!("invalid URL: {e}")))?
                .create_if_missing(false)
                .read_only(true);
            if !url.contains(":memory:") && !options.get_filename().exists() {
                return Err(err(format!(
                    "'{}' does not exist",
                    options.get_filename().display()
                )));
            }
            let open = |options: SqliteConnectOptions| async move {
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await?;
                // Opening is lazy about the file: read something to know it works.
                sqlx::query("SELECT count(*) FROM sqlite_master")
                    .fetch_one(&pool)
                    .await?;
                Ok::<_, sqlx::Error>(pool)
            };
            match open(options.clone()).await {
                Ok(pool) => Ok((Store::Sqlite(pool), ReadOnlyMode::ReadOnly)),
                Err(first) => match open(options.immutable(true)).await {
                    Ok(pool) => Ok((Store::Sqlite(pool), ReadOnlyMode::Immutable)),
                    Err(_) => Err(err(format!("cannot open: {first}"))),
                },
            }
        }
        Some(Backend::Postgres) => {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| err(format!("invalid URL: {e}")))?
                .options([("default_transaction_read_only", "on")]);
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| err(format!("cannot connect: {e}")))?;
            Ok((Store::Postgres(pool), ReadOnlyMode::PostgresReadOnly))
        }
        None => Err(err(
            "expected sqlite://PATH, postgres://... or postgresql://...".into(),
        )),
    }
}

/// What is wrong with the append-only triggers, one sentence each; empty when they are all
/// there and enabled. A missing trigger is not itself tampering (the chain says whether rows
/// changed), but without it nothing stops the next change: `verify` fails on it.
pub async fn trigger_problems(store: &Store) -> Result<Vec<String>, AuditError> {
    let db = |source| AuditError::Database {
        op: "read the triggers",
        source,
    };
    let mut problems = Vec::new();
    match store {
        Store::Sqlite(pool) => {
            let rows = sqlx::query(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'",
            )
            .fetch_all(pool)
            .await
            .map_err(db)?;
            // A trigger of the right name that no longer aborts is as good as none: look at
            // what it does, not only at its name. Whitespace and case are normalized.
            let sql: Vec<String> = rows
                .iter()
                .map(|r| {
                    let text: Option<String> = r.try_get("sql").ok();
                    text.unwrap_or_default()
                        .to_ascii_lowercase()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            for op in ["update", "delete"] {
                let guarded = sql.iter().any(|s| {
                    s.contains(&format!("before {op} on audit_events")) && s.contains("raise(abort")
                });
                if !guarded {
                    problems.push(format!(
                        "trigger missing: audit_events has no BEFORE {} trigger that aborts (sqlite_master): the database no longer refuses {} of audit events",
                        op.to_ascii_uppercase(),
                        op.to_ascii_uppercase()
                    ));
                }
            }
        }
        Store::Postgres(pool) => {
            // tgtype bits (pg_trigger.h): ROW 1, BEFORE 2, DELETE 8, UPDATE 16, TRUNCATE 32.
            // tgenabled: O (origin) and A (always) fire in normal operation; D (disabled) and
            // R (replica only) do not.
            let rows = sqlx::query(
                "SELECT t.tgtype::int4 AS tgtype, t.tgenabled::text AS enabled, p.prosrc AS body \
                 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
                 WHERE t.tgrelid = to_regclass('audit_events') AND NOT t.tgisinternal",
            )
            .fetch_all(pool)
            .await
            .map_err(db)?;
            let triggers: Vec<(i32, String, String)> = rows
                .iter()
                .map(|r| {
                    (
                        r.try_get::<i32, _>("tgtype").unwrap_or(0),
                        r.try_get::<String, _>("enabled").unwrap_or_default(),
                        r.try_get::<String, _>("body")
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                    )
                })
                .collect();
            for (op, bit, row_level) in [
                ("UPDATE", 16, true),
                ("DELETE", 8, true),
                ("TRUNCATE", 32, false),
            ] {
                let guarded = triggers.iter().any(|(tgtype, enabled, body)| {
                    tgtype & bit != 0
                        && tgtype & 2 != 0
                        && (!row_level || tgtype & 1 != 0)
                        && (enabled == "O" || enabled == "A")
                        && body.contains("raise exception")
                });
                if !guarded {
                    problems.push(format!(
                        "trigger missing: audit_events has no enabled BEFORE {op} trigger that raises (pg_trigger): the database no longer refuses {op} of audit events"
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// How one checkpoint fared against the stored chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// The event exists with the signed hash, and the chain up to it verifies.
    Passed,
    /// The event exists with another hash: the chain was rewritten at or before it.
    Rewritten { stored: String },
    /// The event is gone: the log ends at `last_id` (its tail was deleted).
    Missing { last_id: i64 },
    /// The chain is broken before this event, so its stored hash vouches for nothing.
    BehindBreak { broken_at: i64 },
}

/// A checkpoint (from line `line` of the file) and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointResult {
    pub line: usize,
    pub checkpoint: SignedCheckpoint,
    pub status: CheckpointStatus,
}

impl std::fmt::Display for CheckpointResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.checkpoint.checkpoint;
        let head = format!(
            "checkpoint line {} (event {} at {})",
            self.line, c.event_id, c.time
        );
        match &self.status {
            CheckpointStatus::Passed => write!(f, "{head}: OK"),
            CheckpointStatus::Rewritten { stored } => write!(
                f,
                "{head}: FAILED: event {} has hash {stored}, the checkpoint signed {}: the chain was rewritten at or before event {}",
                c.event_id, c.hash, c.event_id
            ),
            CheckpointStatus::Missing { last_id } => write!(
                f,
                "{head}: FAILED: event {} is missing, the log ends at event {last_id}: events were removed from its end",
                c.event_id
            ),
            CheckpointStatus::BehindBreak { broken_at } => write!(
                f,
                "{head}: FAILED: not verifiable, the chain is broken at event {broken_at}"
            ),
        }
    }
}

/// Walks the whole chain once (as [`AuditLog::verify`]) and checks every checkpoint: the
/// event it names must exist, with the signed hash, in a chain that verifies up to it. The
/// checkpoints' signatures must have been checked already ([`super::checkpoint::check_lines`]).
pub async fn verify_with_checkpoints(
    log: &AuditLog,
    checkpoints: &[(usize, SignedCheckpoint)],
) -> Result<(VerifyReport, Vec<CheckpointResult>), AuditError> {
    let wanted: std::collections::BTreeSet<i64> = checkpoints
        .iter()
        .map(|(_, c)| c.checkpoint.event_id)
        .collect();
    let mut stored: BTreeMap<i64, String> = BTreeMap::new();
    let mut report = VerifyReport {
        verified: 0,
        head: None,
        first_bad: None,
    };
    let mut expected_prev = GENESIS_HASH.to_string();
    let mut expected_id = 1;
    log.walk_after(0, |rec| {
        if let Some(problem) = check_link(&rec, expected_id, &expected_prev) {
            report.first_bad = Some(BadEvent {
                id: rec.id,
                problem,
            });
            return Ok(false);
        }
        if wanted.contains(&rec.id) {
            stored.insert(rec.id, rec.hash.clone());
        }
        report.verified += 1;
        expected_prev = rec.hash.clone();
        expected_id += 1;
        report.head = Some((rec.id, rec.hash));
        Ok(true)
    })
    .await?;
    let last_id = report.head.as_ref().map_or(0, |h| h.0);
    let results = checkpoints
        .iter()
        .map(|(line, c)| {
            let id = c.checkpoint.event_id;
            let status = match (stored.get(&id), &report.first_bad) {
                (Some(hash), _) if *hash == c.checkpoint.hash => CheckpointStatus::Passed,
                (Some(hash), _) => CheckpointStatus::Rewritten {
                    stored: hash.clone(),
                },
                (None, Some(bad)) => CheckpointStatus::BehindBreak { broken_at: bad.id },
                (None, None) => CheckpointStatus::Missing { last_id },
            };
            CheckpointResult {
                line: *line,
                checkpoint: c.clone(),
                status,
            }
        })
        .collect();
    Ok((report, results))
}
