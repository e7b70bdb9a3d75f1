//! The database: one pool, SQLite (embedded default) or PostgreSQL, migrated at open.
//!
//! TEMPORARY (daemon branch): a minimal stand-in with the same shape as the `audit` branch's
//! store (`Store::connect(url)`, `enum Store { Sqlite, Postgres }`), so the daemon's tables can
//! be built before that branch lands. The merge takes the audit branch's version.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database '{url}': {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database '{url}': applying migrations failed: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database URL '{url}' is not supported")]
    UnsupportedUrl { url: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let shown = crate::config::redact_url(url);
        let err = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        let store = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(10));
            if let Some(parent) = opts.get_filename().parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            Store::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts)
                    .await
                    .map_err(err)?,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::Postgres(
                PgPoolOptions::new()
                    .max_connections(8)
                    .connect(url)
                    .await
                    .map_err(err)?,
            )
        } else {
            return Err(StoreError::UnsupportedUrl { url: shown });
        };
        let migrated = match &store {
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        migrated.map_err(|source| StoreError::Migrate { url: shown, source })?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }
}
