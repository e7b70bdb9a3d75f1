//! Backend-neutral SQL for the daemon's own tables (simulated ledger, proposals, approvals,
//! tokens, lease).
//!
//! Those tables use only `BIGINT` and `TEXT` columns, and statements are written once with
//! PostgreSQL's `$1` placeholders; for SQLite they become `?1` (SQLite's numbered form), so each
//! statement exists once instead of twice. Values go in and come out as [`Val`], which keeps the
//! repositories free of per-backend row types.

use crate::store::Store;

/// A bound parameter or a read column.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    Null,
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map(Into::into).unwrap_or(Val::Null)
    }
}

/// A column that does not hold what the schema says it holds.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: expected {expected}, found {found:?}")]
pub struct ColumnError {
    pub column: usize,
    pub expected: &'static str,
    pub found: Val,
}

/// One result row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn get(&self, i: usize) -> &Val {
        self.0.get(i).unwrap_or(&Val::Null)
    }

    pub fn int(&self, i: usize) -> Result<i64, ColumnError> {
        match self.get(i) {
            Val::Int(v) => Ok(*v),
            other => Err(ColumnError {
                column: i,
                expected: "an integer",
                found: other.clone(),
            }),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, ColumnError> {
        match self.get(i) {
            Val::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, ColumnError> {
        match self.get(i) {
            Val::Text(v) => Ok(v.clone()),
            other => Err(ColumnError {
                column: i,
                expected: "text",
                found: other.clone(),
            }),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, ColumnError> {
        match self.get(i) {
            Val::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
}

/// `$1` -> `?1` for SQLite. The daemon's statements never contain a literal `$`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Binds the arguments to a query of either backend.
macro_rules! bound {
    ($text:expr, $args:expr) => {{
        let mut q = sqlx::query($text);
        for a in $args {
            q = match a {
                Val::Int(v) => q.bind(*v),
                Val::Text(v) => q.bind(v.clone()),
                Val::Null => q.bind(None::<String>),
            };
        }
        q
    }};
}

fn rows<R>(rows: &[R]) -> Vec<Row>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|r| Row((0..r.len()).map(|i| read(r, i)).collect()))
        .collect()
}

/// Runs a statement; returns the number of rows it changed.
pub async fn execute(store: &Store, sql: &str, args: &[Val]) -> Result<u64, sqlx::Error> {
    match store {
        Store::Sqlite(pool) => {
            let text = sqlite_sql(sql);
            Ok(bound!(&text, args).execute(pool).await?.rows_affected())
        }
        Store::Postgres(pool) => Ok(bound!(sql, args).execute(pool).await?.rows_affected()),
    }
}

/// Runs a query and reads every column as an integer, text or NULL.
pub async fn fetch(store: &Store, sql: &str, args: &[Val]) -> Result<Vec<Row>, sqlx::Error> {
    match store {
        Store::Sqlite(pool) => {
            let text = sqlite_sql(sql);
            Ok(rows(&bound!(&text, args).fetch_all(pool).await?))
        }
        Store::Postgres(pool) => Ok(rows(&bound!(sql, args).fetch_all(pool).await?)),
    }
}

/// The database's own clock in milliseconds since the Unix epoch, as an SQL expression. Leases
/// are timed with it, so replicas with skewed wall clocks still agree on who holds one.
pub fn now_ms_sql(store: &Store) -> &'static str {
    match store {
        Store::Sqlite(_) => SQLITE_NOW_MS,
        Store::Postgres(_) => POSTGRES_NOW_MS,
    }
}

const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
const POSTGRES_NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// One write transaction on either backend: a state change and its audit event commit or roll
/// back together. SQLite starts it with `BEGIN IMMEDIATE` (the write lock is taken first, so a
/// read inside it cannot go stale before the write); on PostgreSQL, reads that decide a write
/// take `FOR UPDATE` (see [`Tx::lock_suffix`]). Dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub async fn begin(store: &Store) -> Result<Tx, sqlx::Error> {
        Ok(match store {
            Store::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// `FOR UPDATE` on PostgreSQL (row lock until commit), nothing on SQLite (the transaction
    /// already holds the database's write lock).
    pub fn lock_suffix(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => "",
            Tx::Postgres(_) => " FOR UPDATE",
        }
    }

    /// The database clock (see [`now_ms_sql`]).
    pub fn now_ms_sql(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => SQLITE_NOW_MS,
            Tx::Postgres(_) => POSTGRES_NOW_MS,
        }
    }

    pub async fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64, sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => {
                let text = sqlite_sql(sql);
                Ok(bound!(&text, args)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected())
            }
            Tx::Postgres(tx) => Ok(bound!(sql, args).execute(&mut **tx).await?.rows_affected()),
        }
    }

    pub async fn fetch(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>, sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => {
                let text = sqlite_sql(sql);
                Ok(rows(&bound!(&text, args).fetch_all(&mut **tx).await?))
            }
            Tx::Postgres(tx) => Ok(rows(&bound!(sql, args).fetch_all(&mut **tx).await?)),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Reads one column: NULL, then integer, then text (the only types the daemon's tables use).
fn read<R>(row: &R, i: usize) -> Val
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(Val::Int).unwrap_or(Val::Null);
    }
    match row.try_get::<Option<String>, _>(i) {
        Ok(v) => v.map(Val::Text).unwrap_or(Val::Null),
        Err(_) => Val::Null,
    }
}
