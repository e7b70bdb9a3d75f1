//! The database: one connection pool, SQLite (embedded default) or PostgreSQL, with its
//! migrations applied at open.
//!
//! `store` owns connecting, the per-backend connection settings and the schema migrations
//! under `migrations/sqlite/` and `migrations/postgres/` (embedded in the binary at build
//! time, so a deployed `commitd` never needs the source tree). Repositories built on it
//! (the audit log today; proposals, approvals and the executor lease later) take a
//! [`Store`] and match on the backend for the few statements whose SQL differs.
//!
//! Async (sqlx on tokio) is fine here: the store is an edge, not part of the pure core.
//!
//! PostgreSQL over TLS (`sslmode=require`, `verify-ca`, `verify-full`, and `prefer` when the
//! server offers it) goes through [`pgtls`], commitd's own rustls relay: see there why not
//! sqlx's TLS features.

pub mod pgtls;
pub mod sql;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Connection;
use std::path::PathBuf;

use crate::dburl::{backend_of, redact_url, Backend};
use std::str::FromStr;
use std::time::Duration;

/// How long to wait for a database server before giving up with the cause.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Why the database could not be opened or migrated. Every variant names the database
/// (with any password redacted) so that the message alone says which one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL '{url}' is not supported: expected sqlite://PATH, sqlite::memory:, postgres://... or postgresql://...")]
    UnsupportedUrl { url: String },
    #[error("database '{url}': invalid URL: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database '{url}': cannot create directory '{}': {source}", dir.display())]
    CreateDir {
        url: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database '{url}': cannot connect: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database '{url}': {source}")]
    Tls {
        url: String,
        #[source]
        source: pgtls::TlsError,
    },
    #[error("database '{url}': applying migrations failed: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// An open, migrated database.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens (creating the SQLite file and its directory on first run) and migrates the
    /// database at `url`. Applying migrations is idempotent: sqlx records applied versions
    /// in `_sqlx_migrations` and verifies their checksums, so a restart is a no-op and an
    /// edited, already-applied migration is an error rather than a silent schema drift.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        let store = match backend_of(url) {
            Some(Backend::Sqlite) => Store::Sqlite(connect_sqlite(url, &shown).await?),
            Some(Backend::Postgres) => Store::Postgres(connect_postgres(url, &shown).await?),
            None => return Err(StoreError::UnsupportedUrl { url: shown }),
        };
        store.migrate(&shown).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    async fn migrate(&self, shown: &str) -> Result<(), StoreError> {
        let result = match self {
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        result.map_err(|source| StoreError::Migrate {
            url: shown.to_string(),
            source,
        })
    }

    /// Closes every connection (waits for checked-out ones to return).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }
}

async fn connect_sqlite(url: &str, shown: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
        url: shown.to_string(),
        source,
    })?;
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory {
        // First run: the data directory may not exist yet; SQLite creates the file, not
        // its parents.
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    url: shown.to_string(),
                    dir: dir.to_path_buf(),
                    source,
                })?;
            }
        }
    }
    let options = options
        .create_if_missing(true)
        .foreign_keys(true)
        // WAL: readers (list, export, the HTTP API) never block the single writer.
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable in WAL mode against application crashes; FULL adds an fsync per
        // commit, which the audit log wants: an acknowledged event survives power loss.
        .synchronous(SqliteSynchronous::Full)
        // Writers from other processes (a CLI beside the daemon) wait instead of failing.
        .busy_timeout(Duration::from_secs(30));
    // An in-memory database exists per connection: one connection keeps one database.
    let max = if in_memory { 1 } else { 8 };
    SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect {
            url: shown.to_string(),
            source,
        })
}

/// The connection options with TLS arranged: plaintext options for `disable`/`allow` (and for
/// `prefer` when the server offers no TLS, with a warning), else options that reach the server
/// through a TLS relay ([`pgtls::start_relay`]) after one direct handshake proved it works.
async fn with_tls(
    url: &str,
    shown: &str,
    options: PgConnectOptions,
) -> Result<PgConnectOptions, StoreError> {
    let tls_err = |source| StoreError::Tls {
        url: shown.to_string(),
        source,
    };
    let mode = options.get_ssl_mode();
    // sqlx itself must never try TLS: it is built without it (and would fail or, for
    // `prefer`, silently fall back to plaintext).
    let plain = options.clone().ssl_mode(PgSslMode::Disable);
    // A Unix socket is local: libpq does not use TLS on one either.
    if options.get_socket().is_some() || matches!(mode, PgSslMode::Disable | PgSslMode::Allow) {
        return Ok(plain);
    }
    let host = options.get_host().to_string();
    let port = options.get_port();
    if matches!(mode, PgSslMode::Prefer) {
        let (_, offered) = pgtls::offers_tls(&host, port, "prefer")
            .await
            .map_err(tls_err)?;
        if !offered {
            tracing::warn!(
                database = shown,
                "the PostgreSQL server offers no TLS: connected in plaintext (sslmode=prefer); set sslmode=require to refuse that"
            );
            return Ok(plain);
        }
    }
    let tls =
        pgtls::Tls::new(mode, &host, port, &pgtls::TlsFiles::from_url(url)).map_err(tls_err)?;
    // One handshake now: a server without TLS or with an untrusted certificate is reported
    // with its cause, here, rather than as connections that close.
    drop(tls.open().await.map_err(tls_err)?);
    let dir = pgtls::start_relay(tls).map_err(tls_err)?;
    Ok(plain.socket(dir))
}

async fn connect_postgres(url: &str, shown: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
        url: shown.to_string(),
        source,
    })?;
    let options = with_tls(url, shown, options).await?;
    // One direct connection first: a pool retries until its timeout and then reports only
    // "pool timed out", hiding the cause (refused, bad password, unknown database).
    let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| StoreError::Connect {
            url: shown.to_string(),
            source: sqlx::Error::PoolTimedOut,
        })?
        .map_err(|source| StoreError::Connect {
            url: shown.to_string(),
            source,
        })?;
    // Closing is best effort: the connection proved the server answers, which is all it was for.
    let _ = first.close().await;
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unsupported_url_names_it_without_the_password() {
        let err = Store::connect("mysql://root:topsecret@h/db")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("mysql://root:***@h/db"), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");
    }

    /// A server that answers 'N' to SSLRequest, as PostgreSQL without `ssl = on` does.
    async fn no_tls_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut request = [0u8; 8];
                if s.read_exact(&mut request).await.is_ok() {
                    let _ = s.write_all(b"N").await;
                }
            }
        });
        port
    }

    #[tokio::test]
    async fn sslmode_require_refuses_a_server_without_tls_and_says_so() {
        let port = no_tls_server().await;
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://app:pw@127.0.0.1:{port}/commitd?sslmode={mode}");
            let e = Store::connect(&url).await.unwrap_err().to_string();
            assert!(
                e.contains("does not offer TLS") && e.contains(&format!("sslmode={mode}")),
                "{mode}: {e}"
            );
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[tokio::test]
    async fn bad_tls_files_are_named() {
        let url = "postgres://app@127.0.0.1:1/commitd?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
        let files = pgtls::TlsFiles::from_url(url);
        assert_eq!(files.root_cert, Some(PathBuf::from("/nonexistent/ca.pem")));
        let e = pgtls::Tls::new(PgSslMode::VerifyFull, "127.0.0.1", 1, &files)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
        let files = pgtls::TlsFiles {
            client_cert: Some(PathBuf::from("c.pem")),
            ..Default::default()
        };
        let e = pgtls::Tls::new(PgSslMode::Require, "db", 1, &files)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslcert and sslkey go together"), "{e}");
    }
}
