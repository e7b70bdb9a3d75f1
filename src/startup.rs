//! The composition root: the one place that wires configuration to I/O (store, audit log,
//! market, executor lease, executor, planner, chat, API, schedules, systemd) and runs the
//! service. `commitd run` and the tests build the same [`Application`].
//!
//! ```text
//! let app = Application::build(config).await?;   // opens, checks, binds; nothing runs yet
//! app.port();                                     // the port bound (":0" picks one)
//! app.run_until_stopped(shutdown).await?;         // until `shutdown` completes
//! ```
//!
//! The shutdown is passed in, so a test stops the service with a channel and `commitd run` with
//! signals ([`Signals`]). The service loop waits for the next of: the plan schedule, the
//! execution schedule, a wake-up from the API (an approval completed), or the shutdown. Each
//! step runs as its own task; the executor checks the `stopping` flag between proposals, so no
//! new purchase starts once shutdown begins. Background tasks: the lease renewal, the systemd
//! watchdog, the audit checkpoints and the HTTP server.
//!
//! * [`Shutdown::Graceful`] (SIGTERM): stop starting steps, let the step in flight finish
//!   within `shutdown_grace_seconds`, release the lease, stop HTTP, return. If the grace period
//!   runs out, it returns anyway; that is safe because a purchase's intent is durable before
//!   the provider call and the next start reconciles (see [`crate::execute`]).
//! * [`Shutdown::Fast`] (SIGINT): the same without waiting for the step, for a person at a
//!   terminal.
//! * SIGHUP reloads the policies now (they also reload by themselves when their files change).

use crate::api::console::ConsoleSettings;
use crate::api::server::{router, AppState};
use crate::api::transport::{self, Transport};
use crate::audit::checkpoint::SigningKey;
use crate::audit::checkpointer::{post_json, Checkpointer, Sink};
use crate::audit::AuditLog;
use crate::config::{Config, MarketKind};
use crate::execute::lease::{Lease, EXECUTOR_LEASE};
use crate::execute::policies::PolicySource;
use crate::execute::{Executor, Failpoint};
use crate::identity::TokenStore;
use crate::ingest::IngestError;
use crate::markets::aws::market::{AwsMarket, AwsOrganization};
use crate::markets::aws::AwsClients;
use crate::markets::sim::SimMarket;
use crate::markets::CommitmentMarket;
use crate::notify::chat::{Chat, WebhookClient};
use crate::notify::systemd::Notifier;
use crate::policy::PolicyError;
use crate::proposals::ProposalStore;
use crate::service::plan::{PlanFile, PlanSource};
use crate::service::schedule::{Schedule, ScheduleError};
use crate::service::{CycleReport, Daemon, DaemonError};
use crate::sources::{read_rate_card, read_scenario_file};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use chrono::{Duration, Utc};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// How the service is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Let the step in flight finish (within `shutdown_grace_seconds`): SIGTERM.
    Graceful,
    /// Abort the step in flight: SIGINT.
    Fast,
}

/// The service over one store, built and checked, not yet running.
pub struct Application {
    config: Config,
    store: Store,
    service: Arc<Daemon>,
    api: AppState,
    /// How the API is served (`[api]`: TLS, timeouts, connection limit), checked at build.
    transport: Transport,
    /// Bound at build (so [`Application::port`] is known before running); `None` without
    /// `[daemon] listen`.
    listener: Option<(TcpListener, SocketAddr)>,
    plan_schedule: Schedule,
    exec_schedule: Schedule,
    checkpoints: Option<(Checkpointer, std::time::Duration)>,
}

/// The service's parts over one store: what both [`Application::build`] and [`run_once`] need.
struct Parts {
    store: Store,
    service: Arc<Daemon>,
    api: AppState,
    transport: Transport,
}

/// The replica's name in the lease: host and process id.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// The rate card the simulated market prices from: `[source] rates`, or the scenario's.
fn rate_card(config: &Config) -> Result<crate::domain::RateCard, StartupError> {
    if let Some(path) = &config.source.rates {
        return Ok(read_rate_card(path)?);
    }
    if let Some(dir) = &config.source.scenario {
        let (file, _) = read_scenario_file(dir)?;
        return Ok(read_rate_card(&dir.join(&file.rates))?);
    }
    Err(StartupError::Config(
        "the simulated provider needs a rate card: set [source] scenario or [source] rates".into(),
    ))
}

/// The AWS market: the payer account and every `[aws.accounts.ID]`, each with its own clients.
///
/// It prices from AWS itself: a quote is the live offering (DescribeSavingsPlansOfferings,
/// DescribeReservedInstancesOfferings), and a purchase whose live price is above what the
/// proposal approved is refused. The planner keeps planning from `[source]` rates (scenario or
/// rates file), because the offering APIs give no on-demand prices, which the optimizer needs
/// to value any commitment (see docs/aws.md, "Prices: planning vs execution").
async fn aws_market(config: &Config) -> Result<AwsOrganization, StartupError> {
    let connect = |account: Option<&str>| {
        let settings = config.aws.settings(account);
        let label = account.map_or("[aws]".to_string(), |a| format!("[aws.accounts.{a}]"));
        async move {
            AwsClients::connect(&settings)
                .await
                .map(|clients| match &config.aws.cost_explorer_endpoint_url {
                    Some(url) => clients.with_cost_explorer_endpoint(url),
                    None => clients,
                })
                .map(|clients| AwsMarket::new(clients).with_offerings_cache(&config.data_dir))
                .map_err(|e| StartupError::Config(format!("{label}: {e}")))
        }
    };
    let payer = connect(None).await?;
    let mut linked = Vec::new();
    for account in config.aws.accounts.keys() {
        linked.push((account.clone(), connect(Some(account)).await?));
    }
    Ok(AwsOrganization::new(payer, linked))
}

fn planner(config: &Config) -> Result<Arc<dyn PlanSource>, StartupError> {
    if let Some(path) = &config.daemon.plan_file {
        return Ok(Arc::new(PlanFile { path: path.clone() }));
    }
    crate::service::optimizer::planner(config).map_err(StartupError::Config)
}

/// The market of one kind, connected with its section's settings.
async fn market(
    config: &Config,
    kind: MarketKind,
    store: &Store,
) -> Result<Arc<dyn CommitmentMarket>, StartupError> {
    Ok(match kind {
        MarketKind::Sim => Arc::new(SimMarket::new(store.clone(), rate_card(config)?)),
        MarketKind::Aws => Arc::new(aws_market(config).await?),
        MarketKind::Azure => Arc::new(
            crate::markets::azure::AzureClients::connect(&config.azure.settings())
                .map(|clients| {
                    crate::markets::azure::AzureMarket::new(clients)
                        .with_offerings_cache(&config.data_dir)
                })
                .map_err(|e| StartupError::Config(format!("[azure]: {e}")))?,
        ),
    })
}

/// Opens the store, loads policies, the rate card and the planner, and connects the market.
async fn wire(config: &Config, failpoint: Failpoint) -> Result<Parts, StartupError> {
    let store = Store::connect(config.database_url().expose()).await?;
    let policies = Arc::new(PolicySource::watch(&config.policies_dir)?);
    let kinds = config.daemon.markets();
    let market: Arc<dyn CommitmentMarket> = match kinds.as_slice() {
        [one] => market(config, *one, &store).await?,
        several => {
            let mut markets = Vec::new();
            for kind in several {
                // The simulated market (every provider's) is refused here when the
                // configuration loads.
                let provider = kind.provider().ok_or_else(|| {
                    StartupError::Config("[daemon] providers: 'sim' cannot be combined".into())
                })?;
                markets.push((provider, market(config, *kind, &store).await?));
            }
            Arc::new(
                crate::markets::route::Providers::new(markets)
                    .map_err(|e| StartupError::Config(format!("[daemon] providers: {e}")))?,
            )
        }
    };
    let proposals = ProposalStore::new(store.clone());
    let audit = AuditLog::open(store.clone());
    let metrics = Arc::new(Metrics::default());
    let lease = Arc::new(Lease::new(
        store.clone(),
        EXECUTOR_LEASE,
        &replica_id(),
        Duration::seconds(config.daemon.lease_ttl_seconds.max(1) as i64),
    ));
    let stopping = Arc::new(AtomicBool::new(false));
    let executor = Executor::new(
        proposals.clone(),
        audit.clone(),
        market.clone(),
        policies.clone(),
    )
    .with_mode(config.mode)
    .with_lease(lease.clone())
    .with_failpoint(failpoint)
    .with_stop_flag(stopping.clone());
    let service = Arc::new(Daemon {
        mode: config.mode,
        proposals: proposals.clone(),
        audit: audit.clone(),
        executor,
        planner: planner(config)?,
        market,
        policies,
        lease,
        metrics: metrics.clone(),
        proposal_max_age: Duration::hours(i64::from(config.daemon.proposal_max_age_hours.max(1))),
        chat: chat(config)?,
        stopping,
    });
    // A missing or bad certificate stops the service now, naming the file.
    let transport = Transport::from_config(&config.api)?;
    let console = {
        let view = service.policies.clone();
        ConsoleSettings {
            session_ttl: Duration::minutes(i64::from(config.api.console_session_minutes)),
            // Secure cookies when the browser reaches the console over TLS: served here, or
            // behind a TLS-terminating proxy at an https public_url.
            secure_cookies: transport.tls.is_some()
                || config
                    .daemon
                    .public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://")),
            // The kill switches the overview shows: the executor's own source of policies.
            policies: Some(Arc::new(move || view.current())),
            // The saved backtest report the backtest page shows, read at each visit.
            backtest: config.api.backtest_report.clone().map(|path| {
                Arc::new(move || read_backtest_report(&path)) as crate::api::console::BacktestView
            }),
            // Realized savings on the finance page: the month's rows of the FOCUS source the
            // daemon plans from, read at each visit of the page.
            bill: config.source.focus.clone().map(|path| {
                Arc::new(move |month| {
                    crate::report::read_month_bill(&path, month)
                        .map(|b| (path.display().to_string(), b))
                }) as crate::api::console::BillView
            }),
        }
    };
    let api = AppState {
        proposals,
        audit,
        tokens: TokenStore::new(store.clone()),
        metrics,
        wake: Arc::new(Notify::new()),
        ready: Arc::new(AtomicBool::new(false)),
        max_body_bytes: config.api.max_body_bytes,
        console,
    };
    Ok(Parts {
        store,
        service,
        api,
        transport,
    })
}

/// Where new proposals are announced: `[daemon] webhook_url`, with links to `public_url` (or
/// the address listened on). Built at start so a bad webhook_ca_file or an empty root store
/// stops the service now, not silently at the first proposal.
fn chat(config: &Config) -> Result<Option<Chat>, StartupError> {
    let Some(url) = config.daemon.webhook_url.clone() else {
        return Ok(None);
    };
    let base = config
        .daemon
        .public_url
        .clone()
        .or_else(|| {
            let scheme = if config.api.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            config
                .daemon
                .listen
                .as_ref()
                .map(|l| format!("{scheme}://{l}"))
        })
        .unwrap_or_else(|| "http://localhost:8080".into());
    let client = WebhookClient::new(config.daemon.webhook_ca_file.as_deref())
        .map_err(|e| StartupError::Config(format!("[daemon] webhook: {e}")))?;
    Ok(Some(Chat::new(url, base, client)))
}

/// One cycle now, then the lease is released and the store closed (`commitd run --once`).
/// Nothing is listened on and no schedule is read.
pub async fn run_once(config: &Config) -> Result<CycleReport, StartupError> {
    run_once_with(config, Failpoint::default()).await
}

/// [`run_once`] with a failpoint in the executor: the crash tests' hook (`commitd-dev run`);
/// the product's `commitd run` passes none.
pub async fn run_once_with(
    config: &Config,
    failpoint: Failpoint,
) -> Result<CycleReport, StartupError> {
    let parts = wire(config, failpoint).await?;
    let report = parts.service.cycle(Utc::now()).await;
    parts.service.lease.release().await.ok();
    parts.store.close().await;
    Ok(report?)
}

impl Application {
    /// Wires the service from `config` and binds `[daemon] listen` (port 0 picks a free one).
    /// Every check that can stop the service (database, policies, market, certificates,
    /// schedules, checkpoint key, address) runs here, before anything is announced ready.
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        Application::build_with(config, Failpoint::default()).await
    }

    /// [`Application::build`] with a failpoint in the executor: the crash tests' hook
    /// (`commitd-dev run`); the product's `commitd run` passes none.
    pub async fn build_with(
        config: Config,
        failpoint: Failpoint,
    ) -> Result<Application, StartupError> {
        let parts = wire(&config, failpoint).await?;
        let plan_schedule = Schedule::parse("daemon.plan_schedule", &config.daemon.plan_schedule)?;
        let exec_schedule =
            Schedule::parse("daemon.execute_schedule", &config.daemon.execute_schedule)?;
        let checkpoints = checkpointer(&config, parts.api.audit.clone())?;
        let listener = match &config.daemon.listen {
            Some(addr) => {
                let listen_error = |source| StartupError::Listen {
                    addr: addr.clone(),
                    source,
                };
                let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
                let local = listener.local_addr().map_err(listen_error)?;
                Some((listener, local))
            }
            None => None,
        };
        Ok(Application {
            config,
            store: parts.store,
            service: parts.service,
            api: parts.api,
            transport: parts.transport,
            listener,
            plan_schedule,
            exec_schedule,
            checkpoints,
        })
    }

    /// The address the API listens on, once bound; `None` without `[daemon] listen`.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The port the API listens on (the one the OS chose for port 0).
    pub fn port(&self) -> Option<u16> {
        self.local_addr().map(|a| a.port())
    }

    /// "https" with `[api] tls_cert`, else "http".
    pub fn scheme(&self) -> &'static str {
        self.transport.scheme()
    }

    /// The service: its cycle, executor and stores (tests drive cycles with their own clock).
    pub fn service(&self) -> &Arc<Daemon> {
        &self.service
    }

    /// The policies in force, for a reload on request (SIGHUP).
    pub fn policies(&self) -> Arc<PolicySource> {
        self.service.policies.clone()
    }

    /// Runs the service until `shutdown` completes: HTTP, the schedules, the lease renewal,
    /// the watchdog and the audit checkpoints. Then it drains as [`Shutdown`] says, releases
    /// the lease, stops HTTP and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = Shutdown> + Send,
    ) -> Result<(), StartupError> {
        let Application {
            config,
            store,
            service,
            api,
            transport,
            listener,
            plan_schedule,
            exec_schedule,
            checkpoints,
        } = self;
        let grace = std::time::Duration::from_secs(config.daemon.shutdown_grace_seconds);
        let notifier = Notifier::from_env();
        // Checkpoints of the audit chain, outside the database: one now, one every period, one
        // after the last step on shutdown. Its sink failures are logged and retried by the task
        // itself; they never stop the service.
        let (checkpoint_stop, checkpoint_stopped) = tokio::sync::watch::channel(false);
        let checkpoints = match checkpoints {
            Some((writer, every)) => {
                tracing::info!(
                    every_seconds = every.as_secs(),
                    sinks = ?writer.sinks(),
                    "audit checkpoints on"
                );
                Some(tokio::spawn(writer.run(every, checkpoint_stopped)))
            }
            None => {
                tracing::warn!(
                    "audit checkpoints off ([audit] checkpoint_key not set): the audit chain is not anchored outside the database"
                );
                None
            }
        };
        let http_stop = Arc::new(Notify::new());
        let http = listener.map(|(listener, _)| {
            let stop = http_stop.clone();
            let app = router(api.clone());
            tokio::spawn(async move {
                transport::serve(
                    listener,
                    app,
                    transport,
                    async move { stop.notified().await },
                )
                .await;
            })
        });
        // The lease is renewed by its own task, also while a step runs: a long step (a slow
        // provider, a hanging webhook) keeps it, and a replica that cannot renew (paused, cut
        // off from the database) loses its fence before another can take over.
        let renew_every = std::time::Duration::from_millis(
            (config.daemon.lease_ttl_seconds.max(1) * 1000 / 3).max(200),
        );
        let renewal = {
            let d = service.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(renew_every);
                loop {
                    tick.tick().await;
                    if d.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Err(e) = d.lead(Utc::now()).await {
                        tracing::warn!(error = %e, "renewing the executor lease");
                    }
                }
            })
        };
        // The watchdog is pinged by its own task only while the database answers: a wedged
        // runtime or a lost database gets the service restarted by systemd.
        let watchdog = notifier.watchdog_interval().map(|every| {
            let n = notifier.clone();
            let proposals = service.proposals.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if proposals.counts().await.is_ok() {
                        n.watchdog();
                    }
                }
            })
        });
        api.ready.store(true, Ordering::SeqCst);
        notifier.ready();
        notifier.status(&format!("mode {:?}; waiting for schedules", config.mode));
        tracing::info!(
            plan = plan_schedule.expr(),
            execute = exec_schedule.expr(),
            "commitd running"
        );

        tokio::pin!(shutdown);
        let stop = loop {
            let now = Utc::now();
            let until = |next: Option<chrono::DateTime<Utc>>| {
                let wait = next
                    .and_then(|n| (n - now).to_std().ok())
                    .unwrap_or(std::time::Duration::from_secs(3600));
                tokio::time::Instant::now() + wait
            };
            let next_plan = until(plan_schedule.next_after(now));
            let next_exec = until(exec_schedule.next_after(now));
            enum Job {
                Cycle,
                Execute,
            }
            let job = tokio::select! {
                _ = tokio::time::sleep_until(next_plan) => Job::Cycle,
                _ = tokio::time::sleep_until(next_exec) => Job::Execute,
                _ = api.wake.notified() => Job::Execute,
                stop = &mut shutdown => break stop,
            };
            let d = service.clone();
            let task = tokio::spawn(async move {
                let now = Utc::now();
                match job {
                    Job::Cycle => d.cycle(now).await.map(|r| {
                        tracing::info!(
                            leader = r.leader,
                            proposed = r.proposed.len(),
                            blocked = r.blocked.len(),
                            executed = r.outcomes.len(),
                            "cycle done"
                        );
                    }),
                    Job::Execute => d.execute_tick(now).await.map(|o| {
                        if !o.is_empty() {
                            tracing::info!(outcomes = ?o, "execution tick");
                        }
                    }),
                }
            });
            tokio::pin!(task);
            let stop = tokio::select! {
                r = &mut task => {
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "step failed"),
                        Err(e) => tracing::error!(error = %e, "step panicked"),
                    }
                    None
                }
                stop = &mut shutdown => Some(stop),
            };
            if let Some(stop) = stop {
                service.stopping.store(true, Ordering::SeqCst);
                notifier.stopping();
                match stop {
                    Shutdown::Graceful => {
                        // Let the step in flight finish (the executor starts no new purchase).
                        if tokio::time::timeout(grace, &mut task).await.is_err() {
                            tracing::warn!(
                                grace_seconds = grace.as_secs(),
                                "step still running after the grace period; exiting, the next start reconciles"
                            );
                            task.abort();
                        }
                    }
                    Shutdown::Fast => task.abort(),
                }
                break stop;
            }
        };
        service.stopping.store(true, Ordering::SeqCst);
        notifier.stopping();
        api.ready.store(false, Ordering::SeqCst);
        renewal.abort();
        if let Some(w) = watchdog {
            w.abort();
        }
        if let Err(e) = service.lease.release().await {
            tracing::warn!(error = %e, "releasing the executor lease");
        }
        // The last checkpoint covers everything the finished step appended. Bounded: a hanging
        // sink must not keep the process from exiting (the webhook itself times out at 10 s).
        let _ = checkpoint_stop.send(true);
        if let Some(task) = checkpoints {
            let wait = match stop {
                Shutdown::Graceful => grace.max(std::time::Duration::from_secs(15)),
                Shutdown::Fast => std::time::Duration::from_secs(15),
            };
            if tokio::time::timeout(wait, task).await.is_err() {
                tracing::error!("the shutdown audit checkpoint did not finish in time");
            }
        }
        http_stop.notify_waiters();
        if let Some(h) = http {
            match stop {
                Shutdown::Graceful => {
                    let _ = tokio::time::timeout(grace, h).await;
                }
                Shutdown::Fast => h.abort(),
            }
        }
        store.close().await;
        Ok(())
    }
}

/// The process signals `commitd run` answers: SIGTERM (graceful stop), SIGINT (fast stop) and
/// SIGHUP (reload the policies). Installed before the service announces itself ready, so a
/// signal from then on is never the default disposition (which would kill the process).
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Takes over SIGTERM, SIGINT and SIGHUP. Needs a running Tokio runtime.
    pub fn install() -> Result<Signals, StartupError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).map_err(StartupError::Signal)?,
            interrupt: signal(SignalKind::interrupt()).map_err(StartupError::Signal)?,
            hangup: signal(SignalKind::hangup()).map_err(StartupError::Signal)?,
        })
    }

    /// Starts reloading `policies` on each SIGHUP (its own task) and returns the shutdown the
    /// next SIGTERM or SIGINT asks for, for [`Application::run_until_stopped`].
    pub fn handle(
        self,
        policies: Arc<PolicySource>,
    ) -> impl Future<Output = Shutdown> + Send + 'static {
        let Signals {
            mut terminate,
            mut interrupt,
            mut hangup,
        } = self;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match policies.reload() {
                    Ok(set) => {
                        tracing::info!(policies = set.policies.len(), "SIGHUP: policies reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: policies do not load; execution stopped until they do")
                    }
                }
            }
        });
        async move {
            tokio::select! {
                _ = terminate.recv() => Shutdown::Graceful,
                _ = interrupt.recv() => Shutdown::Fast,
            }
        }
    }
}

/// Makes a write to a socket whose peer is gone (an API client that hung up, a PostgreSQL
/// connection the server terminated, seen through the TLS relay's Unix socket) an error on that
/// one connection, never SIGPIPE killing the process. `main` restores the default disposition
/// so that the filter-style commands end quietly in a closed pipe; the service calls this
/// before its runtime's threads start.
pub fn ignore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to ignore, before the runtime's threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The checkpoint writer `[audit]` asks for, and how often it runs; None when no
/// `checkpoint_key` is configured. A key that is missing, unreadable, malformed or readable by
/// others, or a webhook client that cannot be built, is an error: the service does not start
/// without the anchor it was told to keep. Also used by `commitd audit checkpoint`.
pub fn checkpointer(
    config: &Config,
    log: AuditLog,
) -> Result<Option<(Checkpointer, std::time::Duration)>, StartupError> {
    let Some(key_path) = &config.audit.checkpoint_key else {
        return Ok(None);
    };
    let key = SigningKey::load(key_path).map_err(|e| StartupError::Config(e.to_string()))?;
    let every = config
        .audit
        .checkpoint_interval()
        .map_err(StartupError::Config)?;
    let mut sinks = Vec::new();
    if let Some(path) = &config.audit.checkpoint_file {
        sinks.push(Sink::File(path.clone()));
    }
    if let Some(url) = config.audit.checkpoint_webhook_url.clone() {
        let client = WebhookClient::new(config.daemon.webhook_ca_file.as_deref())
            .map_err(|e| StartupError::Config(format!("[audit] checkpoint webhook: {e}")))?;
        sinks.push(Sink::Webhook(post_json(move |body| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .post_json(url.expose(), &body)
                    .await
                    .map_err(|e| e.to_string())
            }
        })));
    }
    if sinks.is_empty() {
        return Err(StartupError::Config(
            "[audit] checkpoint_key is set but checkpoints have nowhere to go: set checkpoint_file and/or checkpoint_webhook_url".into(),
        ));
    }
    Ok(Some((Checkpointer::new(log, key, sinks), every)))
}

/// The saved backtest report's name and text, at most 32 MiB of it.
fn read_backtest_report(path: &std::path::Path) -> Result<(String, String), String> {
    use std::io::Read as _;
    const MAX: u64 = 32 << 20;
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut text = String::new();
    file.take(MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{name}: {e}"))?;
    if text.len() as u64 > MAX {
        return Err(format!("{name} is larger than {MAX} bytes"));
    }
    Ok((name, text))
}
