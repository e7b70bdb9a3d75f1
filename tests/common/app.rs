//! [`spawn_app`]: the HTTP API that `commitd run` serves ([`transport::serve`] with
//! [`server::router`]), in process on 127.0.0.1:0 over a fresh database (SQLite in a temp dir,
//! or a throwaway PostgreSQL database when `COMMITD_TEST_DATABASE_URL` is set), with an
//! approver token. The tests that drive the API in process start it here and nowhere else.

use super::db::FreshDb;
use chrono::{Duration as Days, Utc};
use commitd::api::console::ConsoleSettings;
use commitd::api::server::{self, AppState};
use commitd::api::transport::{self, Transport};
use commitd::audit::AuditLog;
use commitd::identity::{Role, TokenStore};
use commitd::proposals::ProposalStore;
use commitd::store::Store;
use commitd::telemetry::Metrics;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// A running API; stopped when dropped.
pub struct TestApp {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub port: u16,
    /// The secret of an approver token valid for a day.
    pub approver: String,
    pub store: Store,
    /// The figures the service records for the API and the console (the inventory last read).
    pub metrics: Arc<Metrics>,
    pub db: FreshDb,
    pub rt: tokio::runtime::Runtime,
    stop: Arc<tokio::sync::Notify>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.notify_waiters();
    }
}

/// The transport `commitd run` defaults to (`[api]`'s defaults: plain HTTP, 10 s to read the
/// headers, 30 s per request, 256 connections).
pub fn default_transport() -> Transport {
    Transport {
        tls: None,
        header_read_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        max_connections: 256,
    }
}

/// The API with the default transport and a 64 KiB body limit.
pub fn spawn_app() -> TestApp {
    spawn_app_with(default_transport(), 64 * 1024)
}

/// The API with `transport` and a body limit of `max_body_bytes`.
pub fn spawn_app_with(transport: Transport, max_body_bytes: usize) -> TestApp {
    spawn_app_full(transport, max_body_bytes, ConsoleSettings::default())
}

/// The API and the web console with the console's `settings`.
pub fn spawn_console_app(console: ConsoleSettings) -> TestApp {
    spawn_app_full(default_transport(), 64 * 1024, console)
}

fn spawn_app_full(
    transport: Transport,
    max_body_bytes: usize,
    console: ConsoleSettings,
) -> TestApp {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = FreshDb::any();
    let stop = Arc::new(tokio::sync::Notify::new());
    let metrics = Arc::new(Metrics::default());
    let shared = metrics.clone();
    let (addr, approver, store) = rt.block_on(async {
        let store = Store::connect(&db.url).await.unwrap();
        let tokens = TokenStore::new(store.clone());
        let approver = tokens
            .create("alice", Role::Approver, Days::days(1), "test", Utc::now())
            .await
            .unwrap()
            .secret;
        let state = AppState {
            proposals: ProposalStore::new(store.clone()),
            audit: AuditLog::open(store.clone()),
            tokens,
            metrics: shared,
            wake: Arc::new(tokio::sync::Notify::new()),
            ready: Arc::new(AtomicBool::new(true)),
            max_body_bytes,
            console,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = stop.clone();
        tokio::spawn(transport::serve(
            listener,
            server::router(state),
            transport,
            async move { stop.notified().await },
        ));
        (addr, approver, store)
    });
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    TestApp {
        addr,
        port,
        approver,
        store,
        metrics,
        db,
        rt,
        stop,
    }
}
