//! Backend-neutral SQL for the daemon's own tables (simulated ledger, proposals, approvals,
//! tokens, lease).
//!
//! Those tables use only `BIGINT` and `TEXT` columns, and statements are written once with
//! PostgreSQL's `$1` placeholders; for SQLite they become `?1` (SQLite's numbered form), so each
//! statement exists once instead of twice. Values go in and come out as [`Val`], which keeps the
//! repositories free of per-backend row types.

use crate::store::Store;
use sqlx::Row as _;

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

/// Runs a statement; returns the number of rows it changed.
pub async fn execute(store: &Store, sql: &str, args: &[Val]) -> Result<u64, sqlx::Error> {
    match store {
        Store::Sqlite(pool) => {
            let text = sqlite_sql(sql);
            let mut q = sqlx::query(&text);
            for a in args {
                q = match a {
                    Val::Int(v) => q.bind(*v),
                    Val::Text(v) => q.bind(v.clone()),
                    Val::Null => q.bind(None::<String>),
                };
            }
            Ok(q.execute(pool).await?.rows_affected())
        }
        Store::Postgres(pool) => {
            let mut q = sqlx::query(sql);
            for a in args {
                q = match a {
                    Val::Int(v) => q.bind(*v),
                    Val::Text(v) => q.bind(v.clone()),
                    Val::Null => q.bind(None::<String>),
                };
            }
            Ok(q.execute(pool).await?.rows_affected())
        }
    }
}

/// Runs a query and reads every column as an integer, text or NULL.
pub async fn fetch(store: &Store, sql: &str, args: &[Val]) -> Result<Vec<Row>, sqlx::Error> {
    match store {
        Store::Sqlite(pool) => {
            let text = sqlite_sql(sql);
            let mut q = sqlx::query(&text);
            for a in args {
                q = match a {
                    Val::Int(v) => q.bind(*v),
                    Val::Text(v) => q.bind(v.clone()),
                    Val::Null => q.bind(None::<String>),
                };
            }
            let rows = q.fetch_all(pool).await?;
            Ok(rows
                .iter()
                .map(|r| Row((0..r.len()).map(|i| read(r, i)).collect()))
                .collect())
        }
        Store::Postgres(pool) => {
            let mut q = sqlx::query(sql);
            for a in args {
                q = match a {
                    Val::Int(v) => q.bind(*v),
                    Val::Text(v) => q.bind(v.clone()),
                    Val::Null => q.bind(None::<String>),
                };
            }
            let rows = q.fetch_all(pool).await?;
            Ok(rows
                .iter()
                .map(|r| Row((0..r.len()).map(|i| read(r, i)).collect()))
                .collect())
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
