//! [`AuditLog`]: appending to, reading and verifying the chain in a [`Store`].
//!
//! Appends are serialized so that two writers can never fork the chain: SQLite takes the
//! database write lock at `BEGIN IMMEDIATE` (before reading the head), PostgreSQL takes a
//! transaction-scoped advisory lock. Either way the head is read, the new event hashed and
//! inserted, and the lock released by the commit. The schema backs this up: `id` is the
//! primary key and `prev_hash` is unique, so a racing second writer fails instead of forking.

use super::canonical::{self, CanonicalError, EventRecord, GENESIS_HASH};
use super::event::{Amount, Event, EventBody, EventKind, NewEvent};
use crate::domain::Money;
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use std::sync::Arc;

/// Key of the PostgreSQL advisory lock that serializes appends ("commitd" + "audit" in
/// ASCII, truncated to 8 bytes). Other subsystems must pick other keys.
pub const AUDIT_APPEND_LOCK_KEY: i64 = 0x636f_6d6d_6974_6461;

/// Rows fetched per round trip when walking the whole log (verify, export).
const PAGE: i64 = 1000;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: {op}: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("audit event refused: {0}")]
    Invalid(String),
    #[error("audit event {id} is unreadable: {reason}")]
    Corrupt { id: i64, reason: String },
    #[error("writing the export: {0}")]
    Export(String),
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> AuditError {
    move |source| AuditError::Database { op, source }
}

/// Which events to read. Times are a half-open interval `[since, until)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    pub kind: Option<EventKind>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The outcome of walking the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events whose hash and link were checked and found good.
    pub verified: u64,
    /// The last good event (id and hash): record it elsewhere to detect a later truncation.
    pub head: Option<(i64, String)>,
    /// The first event that does not match, if any. Events after it are not checked:
    /// once the chain is broken, everything after is unanchored.
    pub first_bad: Option<BadEvent>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEvent {
    pub id: i64,
    pub problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The stored hash is not the hash of the stored fields: the event was edited.
    HashMismatch { stored: String, computed: String },
    /// The event does not point at its predecessor's hash: an event before it was replaced
    /// (with a recomputed hash) or the chain was spliced.
    BrokenLink {
        expected_prev: String,
        stored_prev: String,
    },
    /// Ids must run 1, 2, 3, ...: events were deleted (or inserted out of band).
    Gap { expected_id: i64 },
    /// The stored fields have no canonical form (invalid JSON, time, ...).
    Unreadable { reason: String },
    /// The anchored event is intact as a link of the chain but has another hash than the
    /// one recorded: the chain was rewritten from this event on.
    AnchorMismatch { anchored: String, stored: String },
    /// The anchored event is gone: the log ends at `last_id`.
    Truncated { last_id: i64 },
}

/// An event id and hash recorded outside the database, `ID:HASH` on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub id: i64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;
    fn from_str(text: &str) -> Result<Anchor, String> {
        let (id, hash) = text
            .split_once(':')
            .ok_or_else(|| format!("anchor '{text}': expected ID:HASH"))?;
        let id: i64 = id
            .trim()
            .parse()
            .map_err(|_| format!("anchor '{text}': '{id}' is not an event id"))?;
        let hash = hash.trim().to_ascii_lowercase();
        if id < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "anchor '{text}': expected an id >= 1 and a 64-digit hex hash"
            ));
        }
        Ok(Anchor { id, hash })
    }
}

impl std::fmt::Display for BadEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.id;
        match &self.problem {
            Problem::HashMismatch { stored, computed } => write!(
                f,
                "event {id}: hash does not match its contents (stored {stored}, computed {computed}): the event was modified"
            ),
            Problem::BrokenLink {
                expected_prev,
                stored_prev,
            } => write!(
                f,
                "event {id}: prev_hash {stored_prev} does not match the hash of event {} ({expected_prev}): the chain was altered before this event",
                id - 1
            ),
            Problem::Gap { expected_id } => write!(
                f,
                "event {id}: expected event {expected_id} here: events {expected_id}..{} are missing",
                id - 1
            ),
            Problem::Unreadable { reason } => write!(f, "event {id}: unreadable: {reason}"),
            Problem::AnchorMismatch { anchored, stored } => write!(
                f,
                "event {id}: hash {stored} differs from the anchored hash {anchored}: the chain was rewritten from here"
            ),
            Problem::Truncated { last_id } => write!(
                f,
                "event {id}: the anchored event is missing, the log ends at event {last_id}: events were removed from its end"
            ),
        }
    }
}

/// The audit log on a store. Clones share the store and the append queue.
#[derive(Clone, Debug)]
pub struct AuditLog {
    store: Store,
    /// Queues this process's appends before they reach the database lock. The database
    /// lock alone is correct (and is what orders other processes), but its waiters poll
    /// (SQLite's busy handler sleeps and retries) and each holds a pooled connection while
    /// waiting, starving readers; an in-process queue wakes exactly the next writer.
    append_queue: Arc<tokio::sync::Mutex<()>>,
}

impl AuditLog {
    /// The log on an open (migrated) store.
    pub fn open(store: Store) -> AuditLog {
        AuditLog {
            store,
            append_queue: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends an event at the head of the chain and returns it as stored.
    pub async fn append(&self, new: NewEvent) -> Result<Event, AuditError> {
        let prepared = prepare(&new)?;
        let _queued = self.append_queue.lock().await;
        let record = match &self.store {
            Store::Sqlite(pool) => {
                // IMMEDIATE takes the write lock now, before the head is read: a DEFERRED
                // transaction would read the head under a shared lock and could lose the
                // race to upgrade, or worse, two readers could both see the same head.
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(db("begin append"))?;
                let record = insert_sqlite(&mut tx, prepared).await?;
                tx.commit().await.map_err(db("commit append"))?;
                record
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(db("begin append"))?;
                let record = insert_postgres(&mut tx, prepared).await?;
                tx.commit().await.map_err(db("commit append"))?;
                record
            }
        };
        decode(record)
    }

    /// Appends inside the caller's SQLite transaction, so that a state change (a proposal
    /// approved, an execution recorded) and its audit event commit or roll back together.
    /// The transaction must have been started with `BEGIN IMMEDIATE`
    /// (`pool.begin_with("BEGIN IMMEDIATE")`): it then holds the write lock, which is what
    /// serializes appends. The event is only part of the chain once the caller commits.
    pub async fn append_in_sqlite_tx(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        new: NewEvent,
    ) -> Result<Event, AuditError> {
        let record = insert_sqlite(tx, prepare(&new)?).await?;
        decode(record)
    }

    /// Appends inside the caller's PostgreSQL transaction (see
    /// [`append_in_sqlite_tx`](Self::append_in_sqlite_tx)); takes the append lock itself,
    /// held until the caller commits or rolls back, so keep the transaction short.
    pub async fn append_in_postgres_tx(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        new: NewEvent,
    ) -> Result<Event, AuditError> {
        let record = insert_postgres(tx, prepare(&new)?).await?;
        decode(record)
    }

    /// Appends inside a [`Tx`](crate::store::sql::Tx): the event joins the chain only if
    /// the caller's state change commits with it.
    pub async fn append_in(
        tx: &mut crate::store::sql::Tx,
        new: NewEvent,
    ) -> Result<Event, AuditError> {
        use crate::store::sql::Tx;
        match tx {
            Tx::Sqlite(tx) => Self::append_in_sqlite_tx(tx, new).await,
            Tx::Postgres(tx) => Self::append_in_postgres_tx(tx, new).await,
        }
    }

    /// One event by id.
    pub async fn get(&self, id: i64) -> Result<Option<Event>, AuditError> {
        if id < 1 {
            return Ok(None);
        }
        let rows = self
            .records(&Query {
                after_id: id - 1,
                limit: 1,
                ..Query::default()
            })
            .await?;
        match rows.into_iter().next() {
            Some(rec) if rec.id == id => decode(rec).map(Some),
            _ => Ok(None),
        }
    }

    /// Events matching `filter` in chain order; with `last`, only the last `last` of them.
    pub async fn list(
        &self,
        filter: &EventFilter,
        last: Option<u32>,
    ) -> Result<Vec<Event>, AuditError> {
        if let Some(n) = last {
            return self.page(filter, None, None, n).await;
        }
        let mut all = Vec::new();
        self.walk(filter, |rec| {
            all.push(rec);
            Ok(true)
        })
        .await?;
        all.into_iter().map(decode).collect()
    }

    /// One page of the log, chosen by the database: the newest `limit` events matching
    /// `filter`, of `actor` when given, with ids below `before` when given, in chain order. The
    /// console's audit page (an older page costs what the first does).
    pub async fn page(
        &self,
        filter: &EventFilter,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>, AuditError> {
        let mut rows = self
            .records(&Query {
                filter: filter.clone(),
                before_id: before,
                actor: actor.map(str::to_string),
                limit: i64::from(limit),
                newest_first: true,
                ..Query::default()
            })
            .await?;
        rows.reverse();
        rows.into_iter().map(decode).collect()
    }

    /// Calls `visit` for every stored record matching `filter`, in chain order, one page in
    /// memory at a time. `visit` returns false to stop.
    pub async fn walk(
        &self,
        filter: &EventFilter,
        visit: impl FnMut(EventRecord) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        self.walk_from(filter, 0, visit).await
    }

    /// [`walk`](Self::walk) over the events after `after_id` only.
    async fn walk_from(
        &self,
        filter: &EventFilter,
        after_id: i64,
        mut visit: impl FnMut(EventRecord) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        let mut after_id = after_id;
        loop {
            let page = self
                .records(&Query {
                    filter: filter.clone(),
                    after_id,
                    limit: PAGE,
                    newest_first: false,
                    ..Query::default()
                })
                .await?;
            let full = page.len() as i64 == PAGE;
            for rec in page {
                after_id = rec.id;
                if !visit(rec)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Walks the whole chain and reports the first event whose id, link or hash does not
    /// match. Reads only; never trusts a decoded struct, only the stored columns.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        self.verify_anchored(None).await
    }

    /// [`verify`](Self::verify), and also checks that the chain still reaches an anchor: an
    /// event id and hash recorded outside the database earlier (e.g. the head printed by a
    /// previous verify). This catches what a chain alone cannot: its last events deleted.
    pub async fn verify_anchored(
        &self,
        anchor: Option<&Anchor>,
    ) -> Result<VerifyReport, AuditError> {
        let mut anchor_seen = false;
        let mut report = VerifyReport {
            verified: 0,
            head: None,
            first_bad: None,
        };
        let mut expected_prev = GENESIS_HASH.to_string();
        let mut expected_id = 1;
        self.walk(&EventFilter::default(), |rec| {
            let problem = check_link(&rec, expected_id, &expected_prev).or_else(|| match anchor {
                Some(a) if a.id == rec.id => {
                    anchor_seen = true;
                    (a.hash != rec.hash).then(|| Problem::AnchorMismatch {
                        anchored: a.hash.clone(),
                        stored: rec.hash.clone(),
                    })
                }
                _ => None,
            });
            if let Some(problem) = problem {
                report.first_bad = Some(BadEvent {
                    id: rec.id,
                    problem,
                });
                return Ok(false);
            }
            report.verified += 1;
            expected_prev = rec.hash.clone();
            expected_id += 1;
            report.head = Some((rec.id, rec.hash));
            Ok(true)
        })
        .await?;
        if let Some(a) = anchor {
            if report.first_bad.is_none() && !anchor_seen {
                report.first_bad = Some(BadEvent {
                    id: a.id,
                    problem: Problem::Truncated {
                        last_id: report.head.as_ref().map_or(0, |h| h.0),
                    },
                });
            }
        }
        Ok(report)
    }

    /// Every event about `subject` (a proposal id, a plan id), oldest first, decoded. The
    /// executor reads a proposal's `action_proposed` and `approved` events here: the log, not
    /// the proposals table, is what authorizes spending.
    pub async fn about(&self, subject: &str) -> Result<Vec<Event>, AuditError> {
        let rows = match &self.store {
            Store::Sqlite(pool) => sqlx::query(
                "SELECT id, occurred_at, kind, actor, subject, amount_micros, currency, payload, rationale, prev_hash, hash \
                 FROM audit_events WHERE subject = ?1 ORDER BY id",
            )
            .bind(subject)
            .fetch_all(pool)
            .await
            .map_err(db("read events"))?
            .iter()
            .map(record_of)
            .collect::<Result<Vec<_>, _>>()?,
            Store::Postgres(pool) => sqlx::query(
                "SELECT id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS occurred_at, \
                        kind, actor, subject, amount_micros, currency, payload, rationale, prev_hash, hash \
                 FROM audit_events WHERE subject = $1 ORDER BY id",
            )
            .bind(subject)
            .fetch_all(pool)
            .await
            .map_err(db("read events"))?
            .iter()
            .map(record_of)
            .collect::<Result<Vec<_>, _>>()?,
        };
        rows.into_iter().map(decode).collect()
    }

    /// Calls `visit` for every stored record after event `after_id`, in chain order, one page
    /// in memory at a time (the checkpointer verifies only what was appended since its last
    /// checkpoint). `visit` returns false to stop.
    pub async fn walk_after(
        &self,
        after_id: i64,
        visit: impl FnMut(EventRecord) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        self.walk_from(&EventFilter::default(), after_id, visit)
            .await
    }

    /// The last event's id and hash, as stored (not verified).
    pub async fn head(&self) -> Result<Option<(i64, String)>, AuditError> {
        let row = match &self.store {
            Store::Sqlite(pool) => sqlx::query(HEAD_SQL)
                .fetch_optional(pool)
                .await
                .map_err(db("read chain head"))?
                .map(|r| head_of(&r))
                .transpose()?,
            Store::Postgres(pool) => sqlx::query(HEAD_SQL)
                .fetch_optional(pool)
                .await
                .map_err(db("read chain head"))?
                .map(|r| head_of(&r))
                .transpose()?,
        };
        Ok(row)
    }

    async fn records(&self, q: &Query) -> Result<Vec<EventRecord>, AuditError> {
        let kind = q.filter.kind.map(|k| k.as_str());
        let since = q.filter.since.map(canonical::format_time);
        let until = q.filter.until.map(canonical::format_time);
        let order = if q.newest_first { "DESC" } else { "ASC" };
        // The page's bounds are written into the statement only when given, so that the
        // common queries keep the plans they had (PostgreSQL plans `$n IS NULL OR ...`
        // generically once a statement is prepared).
        let (mut extra_sqlite, mut extra_pg, mut n) = (String::new(), String::new(), 6);
        if q.before_id.is_some() {
            extra_sqlite.push_str(&format!(" AND id < ?{n}"));
            extra_pg.push_str(&format!(" AND id < ${n}"));
            n += 1;
        }
        if q.actor.is_some() {
            extra_sqlite.push_str(&format!(" AND actor = ?{n}"));
            extra_pg.push_str(&format!(" AND actor = ${n}"));
        }
        match &self.store {
            Store::Sqlite(pool) => {
                // Canonical time text is fixed width, so comparing text compares instants.
                let sql = format!(
                    "SELECT id, occurred_at, kind, actor, subject, amount_micros, currency, payload, rationale, prev_hash, hash \
                     FROM audit_events \
                     WHERE id > ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR occurred_at >= ?3) AND (?4 IS NULL OR occurred_at < ?4){extra_sqlite} \
                     ORDER BY id {order} LIMIT ?5"
                );
                let mut query = sqlx::query(&sql)
                    .bind(q.after_id)
                    .bind(kind)
                    .bind(since)
                    .bind(until)
                    .bind(q.limit);
                if let Some(before) = q.before_id {
                    query = query.bind(before);
                }
                if let Some(actor) = &q.actor {
                    query = query.bind(actor.as_str());
                }
                let rows = query.fetch_all(pool).await.map_err(db("read events"))?;
                rows.iter().map(record_of).collect()
            }
            Store::Postgres(pool) => {
                let sql = format!(
                    "SELECT id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS occurred_at, \
                            kind, actor, subject, amount_micros, currency, payload, rationale, prev_hash, hash \
                     FROM audit_events \
                     WHERE id > $1 AND ($2::text IS NULL OR kind = $2) \
                       AND ($3::text IS NULL OR occurred_at >= $3::timestamptz) \
                       AND ($4::text IS NULL OR occurred_at < $4::timestamptz){extra_pg} \
                     ORDER BY id {order} LIMIT $5"
                );
                let mut query = sqlx::query(&sql)
                    .bind(q.after_id)
                    .bind(kind)
                    .bind(since)
                    .bind(until)
                    .bind(q.limit);
                if let Some(before) = q.before_id {
                    query = query.bind(before);
                }
                if let Some(actor) = &q.actor {
                    query = query.bind(actor.as_str());
                }
                let rows = query.fetch_all(pool).await.map_err(db("read events"))?;
                rows.iter().map(record_of).collect()
            }
        }
    }
}

/// The checks of one record against its expected position in the chain, in the order
/// documented in docs/audit.md: id (gap), link, then hash (or unreadable).
pub(crate) fn check_link(
    rec: &EventRecord,
    expected_id: i64,
    expected_prev: &str,
) -> Option<Problem> {
    if rec.id != expected_id {
        return Some(Problem::Gap { expected_id });
    }
    if rec.prev_hash != expected_prev {
        return Some(Problem::BrokenLink {
            expected_prev: expected_prev.to_string(),
            stored_prev: rec.prev_hash.clone(),
        });
    }
    match canonical::compute_hash(rec) {
        Err(e) => Some(Problem::Unreadable {
            reason: e.to_string(),
        }),
        Ok(computed) if computed != rec.hash => Some(Problem::HashMismatch {
            stored: rec.hash.clone(),
            computed,
        }),
        Ok(_) => None,
    }
}

#[derive(Clone, Debug, Default)]
struct Query {
    filter: EventFilter,
    after_id: i64,
    /// Only ids below this one (None: no bound).
    before_id: Option<i64>,
    /// Only this actor's events.
    actor: Option<String>,
    limit: i64,
    newest_first: bool,
}

/// A validated event, canonicalized, waiting for its place in the chain.
struct Prepared {
    time: String,
    kind: &'static str,
    actor: String,
    subject: String,
    amount_micros: Option<i64>,
    currency: Option<String>,
    payload: String,
    rationale: String,
}

impl Prepared {
    fn link(self, head: Option<(i64, String)>) -> Result<EventRecord, AuditError> {
        let (id, prev_hash) = match head {
            Some((id, hash)) => (id + 1, hash),
            None => (1, GENESIS_HASH.to_string()),
        };
        let mut record = EventRecord {
            id,
            time: self.time,
            kind: self.kind.to_string(),
            actor: self.actor,
            subject: self.subject,
            amount_micros: self.amount_micros,
            currency: self.currency,
            payload: self.payload,
            rationale: self.rationale,
            prev_hash,
            hash: String::new(),
        };
        record.hash = canonical::compute_hash(&record)
            .map_err(|e| AuditError::Invalid(format!("no canonical form: {e}")))?;
        Ok(record)
    }
}

const HEAD_SQL: &str = "SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1";

/// Reads the head, links and inserts; the caller holds the write lock (BEGIN IMMEDIATE).
async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    prepared: Prepared,
) -> Result<EventRecord, AuditError> {
    let head = sqlx::query(HEAD_SQL)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read chain head"))?;
    let head = head.map(|r| head_of(&r)).transpose()?;
    let record = prepared.link(head)?;
    sqlx::query(
        "INSERT INTO audit_events (id, occurred_at, kind, actor, subject, amount_micros, currency, payload, rationale, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .bind(record.id)
    .bind(&record.time)
    .bind(&record.kind)
    .bind(&record.actor)
    .bind(&record.subject)
    .bind(record.amount_micros)
    .bind(&record.currency)
    .bind(&record.payload)
    .bind(&record.rationale)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut *conn)
    .await
    .map_err(db("insert event"))?;
    Ok(record)
}

/// Takes the append lock, reads the head, links and inserts, inside the caller's transaction.
async fn insert_postgres(
    conn: &mut sqlx::PgConnection,
    prepared: Prepared,
) -> Result<EventRecord, AuditError> {
    // Held until commit or rollback. Under READ COMMITTED each statement takes a fresh
    // snapshot, so the head read after the lock sees the previous holder's committed event.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_APPEND_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(db("take append lock"))?;
    let head = sqlx::query(HEAD_SQL)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read chain head"))?;
    let head = head.map(|r| head_of(&r)).transpose()?;
    let record = prepared.link(head)?;
    sqlx::query(
        "INSERT INTO audit_events (id, occurred_at, kind, actor, subject, amount_micros, currency, payload, rationale, prev_hash, hash) \
         VALUES ($1, $2::timestamptz, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(record.id)
    .bind(&record.time)
    .bind(&record.kind)
    .bind(&record.actor)
    .bind(&record.subject)
    .bind(record.amount_micros)
    .bind(&record.currency)
    .bind(&record.payload)
    .bind(&record.rationale)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut *conn)
    .await
    .map_err(db("insert event"))?;
    Ok(record)
}

fn prepare(new: &NewEvent) -> Result<Prepared, AuditError> {
    let time = canonical::format_time(new.time);
    // Years outside 0000..=9999 would not be fixed width, and text order would stop being
    // time order.
    if canonical::parse_time(&time).is_err() {
        return Err(AuditError::Invalid(format!(
            "time {} is outside years 0000-9999",
            new.time
        )));
    }
    if new.actor.trim().is_empty() {
        return Err(AuditError::Invalid("the actor is empty".into()));
    }
    // PostgreSQL text cannot hold NUL; refuse it on both backends alike. (Inside JSON it is
    // escaped as \u0000 and fine.)
    if new.actor.contains('\0') || new.subject.contains('\0') {
        return Err(AuditError::Invalid(
            "the actor or subject contains a NUL character".into(),
        ));
    }
    if !new.rationale.is_object() {
        return Err(AuditError::Invalid(format!(
            "the rationale must be a JSON object, got {}",
            new.rationale
        )));
    }
    let (amount_micros, currency) = match &new.amount {
        Some(Amount { money, currency }) => {
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(AuditError::Invalid(format!(
                    "currency '{currency}' is not a three-letter ISO 4217 code"
                )));
            }
            (Some(money.micros()), Some(currency.clone()))
        }
        None => (None, None),
    };
    let payload = new
        .body
        .payload()
        .map_err(|e| AuditError::Invalid(format!("payload does not serialize: {e}")))?;
    Ok(Prepared {
        time,
        kind: new.body.kind().as_str(),
        actor: new.actor.clone(),
        subject: new.subject.clone(),
        amount_micros,
        currency,
        payload: canonical::canonical_json(&payload),
        rationale: canonical::canonical_json(&new.rationale),
    })
}

fn head_of<R: Row>(row: &R) -> Result<(i64, String), AuditError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let id: i64 = row.try_get("id").map_err(db("read chain head"))?;
    let hash: String = row.try_get("hash").map_err(db("read chain head"))?;
    Ok((id, hash))
}

fn record_of<R: Row>(row: &R) -> Result<EventRecord, AuditError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let get = db("decode event row");
    let id: i64 = row.try_get("id").map_err(get)?;
    let field = |name: &'static str| -> Result<String, AuditError> {
        row.try_get::<String, _>(name)
            .map_err(|e| AuditError::Corrupt {
                id,
                reason: format!("column {name}: {e}"),
            })
    };
    Ok(EventRecord {
        id,
        time: field("occurred_at")?,
        kind: field("kind")?,
        actor: field("actor")?,
        subject: field("subject")?,
        amount_micros: row
            .try_get::<Option<i64>, _>("amount_micros")
            .map_err(|e| AuditError::Corrupt {
                id,
                reason: format!("column amount_micros: {e}"),
            })?,
        currency: row.try_get::<Option<String>, _>("currency").map_err(|e| {
            AuditError::Corrupt {
                id,
                reason: format!("column currency: {e}"),
            }
        })?,
        payload: field("payload")?,
        rationale: field("rationale")?,
        prev_hash: field("prev_hash")?,
        hash: field("hash")?,
    })
}

/// The typed event of a stored record.
pub fn decode(rec: EventRecord) -> Result<Event, AuditError> {
    let corrupt = |reason: String| AuditError::Corrupt { id: rec.id, reason };
    let time =
        canonical::parse_time(&rec.time).map_err(|e: CanonicalError| corrupt(e.to_string()))?;
    let kind = EventKind::parse(&rec.kind)
        .ok_or_else(|| corrupt(format!("unknown event kind '{}'", rec.kind)))?;
    let payload: Value = serde_json::from_str(&rec.payload)
        .map_err(|e| corrupt(format!("payload is not JSON: {e}")))?;
    let body = EventBody::decode(kind, payload)
        .map_err(|e| corrupt(format!("payload does not match kind {kind}: {e}")))?;
    let rationale: Value = serde_json::from_str(&rec.rationale)
        .map_err(|e| corrupt(format!("rationale is not JSON: {e}")))?;
    let amount = match (rec.amount_micros, &rec.currency) {
        (Some(micros), Some(currency)) => Some(Amount {
            money: Money::from_micros(micros),
            currency: currency.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(corrupt(
                "amount and currency must both be present or both absent".into(),
            ))
        }
    };
    Ok(Event {
        id: rec.id,
        time,
        actor: rec.actor,
        subject: rec.subject,
        amount,
        rationale,
        body,
        prev_hash: rec.prev_hash,
        hash: rec.hash,
    })
}
