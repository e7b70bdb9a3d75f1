//! A fresh database for one test: a SQLite file in a temp dir, or a throwaway PostgreSQL
//! database on the server `COMMITD_TEST_DATABASE_URL` names (dropped again on `Drop`, panics
//! included). The one place the tests create and drop databases.

use super::pg::postgres_url;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Which database engine a [`FreshDb`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// An empty database nobody else uses.
pub struct FreshDb {
    pub backend: Backend,
    pub url: String,
    dir: Option<tempfile::TempDir>,
    /// The admin URL and the database's name, to drop it.
    pg: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl FreshDb {
    /// A SQLite file at `dir/rel` (which need not exist yet: the store creates it).
    pub fn sqlite_at(dir: &Path, rel: &str) -> FreshDb {
        FreshDb {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}/{rel}", dir.display()),
            dir: None,
            pg: None,
        }
    }

    /// Keeps `dir` (where the SQLite file is) until the database is dropped.
    pub fn holding(mut self, dir: tempfile::TempDir) -> FreshDb {
        self.dir = Some(dir);
        self
    }

    /// A SQLite file in a temp dir of its own.
    pub fn sqlite() -> FreshDb {
        let dir = tempfile::tempdir().unwrap();
        FreshDb::sqlite_at(dir.path(), "data/commitd.db").holding(dir)
    }

    /// A new PostgreSQL database, or None when `COMMITD_TEST_DATABASE_URL` is not set (the
    /// caller skips; a panic instead under `COMMITD_TEST_REQUIRE_POSTGRES=1`, see [`postgres_url`]).
    pub fn postgres() -> Option<FreshDb> {
        let admin = postgres_url()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let db = format!(
            "commitd_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        admin_sql(&admin, &format!("CREATE DATABASE {db}")).unwrap_or_else(|e| panic!("{e}"));
        Some(FreshDb {
            backend: Backend::Postgres,
            url: with_database(&admin, &db),
            dir: None,
            pg: Some((admin, db)),
        })
    }

    /// PostgreSQL when the tests have a server, else SQLite.
    pub fn any() -> FreshDb {
        FreshDb::postgres().unwrap_or_else(FreshDb::sqlite)
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        if let Some((admin, db)) = self.pg.take() {
            // Best effort: a failure here must not turn a test's panic into an abort.
            let _ = admin_sql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one statement on the server as the admin URL's user. On a thread of its own with its
/// own runtime, so that it works from async tests and from `Drop` alike.
fn admin_sql(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| format!("COMMITD_TEST_DATABASE_URL must accept connections: {e}"))?;
            let result = sqlx::query(&sql).execute(&mut conn).await.map(|_| ());
            let _ = conn.close().await;
            result.map_err(|e| format!("{sql}: {e}"))
        })
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The same server URL with another database name.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}
