//! `commitd run`: builds the daemon from the configuration and runs it, once or as a service.
//!
//! The service loop waits for the next of: the plan schedule, the execution schedule, a wake-up
//! from the API (an approval completed), a lease renewal, SIGTERM or SIGINT. Each step runs as
//! its own task; the executor checks the `stopping` flag between proposals, so no new purchase
//! starts once shutdown begins.
//!
//! * SIGTERM: stop starting steps, let the step in flight finish within
//!   `shutdown_grace_seconds`, release the lease, stop HTTP, exit 0. If the grace period runs
//!   out, the process exits anyway; that is safe because a purchase's intent is durable before
//!   the provider call and the next start reconciles (see [`crate::execute`]).
//! * SIGINT: the same without waiting for the step (fast), for a person at a terminal.

use super::lease::{Lease, EXECUTOR_LEASE};
use super::metrics::Metrics;
use super::notify::Notifier;
use super::plan::{PlanFile, Planner};
use super::schedule::{Schedule, ScheduleError};
use super::{CycleReport, Daemon, DaemonError};
use crate::api::auth::TokenStore;
use crate::api::server::{router, AppState};
use crate::api::transport::{self, Transport};
use crate::audit::checkpoint::SigningKey;
use crate::audit::checkpointer::{post_json, Checkpointer, Sink};
use crate::audit::AuditLog;
use crate::config::Config;
use crate::execute::{Executor, Failpoint};
use crate::ingest::IngestError;
use crate::markets::aws::market::{AwsMarket, AwsOrganization};
use crate::markets::aws::AwsClients;
use crate::markets::sim::SimMarket;
use crate::markets::CommitmentMarket;
use crate::policy::PolicyError;
use crate::proposals::ProposalStore;
use crate::sources::{read_rate_card, read_scenario_file};
use crate::store::{Store, StoreError};
use chrono::{Duration, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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

/// The daemon and the API state over one store.
pub struct Built {
    pub daemon: Arc<Daemon>,
    pub api: AppState,
    pub store: Store,
    /// How the API is served (`[api]`: TLS, timeouts, connection limit), checked at build.
    pub transport: Transport,
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
fn rate_card(config: &Config) -> Result<crate::domain::RateCard, ServiceError> {
    if let Some(path) = &config.source.rates {
        return Ok(read_rate_card(path)?);
    }
    if let Some(dir) = &config.source.scenario {
        let (file, _) = read_scenario_file(dir)?;
        return Ok(read_rate_card(&dir.join(&file.rates))?);
    }
    Err(ServiceError::Config(
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
async fn aws_market(config: &Config) -> Result<AwsOrganization, ServiceError> {
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
                .map_err(|e| ServiceError::Config(format!("{label}: {e}")))
        }
    };
    let payer = connect(None).await?;
    let mut linked = Vec::new();
    for account in config.aws.accounts.keys() {
        linked.push((account.clone(), connect(Some(account)).await?));
    }
    Ok(AwsOrganization::new(payer, linked))
}

fn planner(config: &Config) -> Result<Arc<dyn Planner>, ServiceError> {
    if let Some(path) = &config.daemon.plan_file {
        return Ok(Arc::new(PlanFile { path: path.clone() }));
    }
    super::optimizer::planner(config).map_err(ServiceError::Config)
}

/// Opens the store, loads policies, the rate card and the planner.
pub async fn build(config: &Config) -> Result<Built, ServiceError> {
    let store = Store::connect(config.database_url().expose()).await?;
    let policies = Arc::new(crate::execute::policies::PolicySource::watch(
        &config.policies_dir,
    )?);
    let market: Arc<dyn CommitmentMarket> = match config.daemon.provider.as_str() {
        "sim" => Arc::new(SimMarket::new(store.clone(), rate_card(config)?)),
        "aws" => Arc::new(aws_market(config).await?),
        other => {
            return Err(ServiceError::Config(format!(
                "[daemon] provider = '{other}': the built-in providers are 'sim' and 'aws'"
            )))
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
    let executor = Executor::new(
        proposals.clone(),
        audit.clone(),
        market.clone(),
        policies.clone(),
    )
    .with_mode(config.mode)
    .with_lease(lease.clone())
    .with_failpoint(Failpoint::from_env());
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
    // Built at start so a bad webhook_ca_file or an empty root store stops the service now,
    // not silently at the first proposal.
    let webhook = match config.daemon.webhook_url.clone() {
        Some(url) => Some((
            url,
            base,
            crate::api::webhook::WebhookClient::new(config.daemon.webhook_ca_file.as_deref())
                .map_err(|e| ServiceError::Config(format!("[daemon] webhook: {e}")))?,
        )),
        None => None,
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let daemon = Arc::new(Daemon {
        mode: config.mode,
        proposals: proposals.clone(),
        audit: audit.clone(),
        executor: executor.with_stop_flag(stopping.clone()),
        planner: planner(config)?,
        market: market.clone(),
        policies,
        lease,
        metrics: metrics.clone(),
        proposal_max_age: Duration::hours(i64::from(config.daemon.proposal_max_age_hours.max(1))),
        webhook,
        stopping,
    });
    let api = AppState {
        proposals,
        audit,
        tokens: TokenStore::new(store.clone()),
        metrics,
        wake: Arc::new(Notify::new()),
        ready: Arc::new(AtomicBool::new(false)),
        max_body_bytes: config.api.max_body_bytes,
    };
    // A missing or bad certificate stops the service now, naming the file.
    let transport = Transport::from_config(&config.api)?;
    Ok(Built {
        daemon,
        api,
        store,
        transport,
    })
}

/// The checkpoint writer `[audit]` asks for, and how often it runs; None when no
/// `checkpoint_key` is configured. A key that is missing, unreadable, malformed or readable by
/// others, or a webhook client that cannot be built, is an error: the service does not start
/// without the anchor it was told to keep. Also used by `commitd audit checkpoint`.
pub fn checkpointer(
    config: &Config,
    log: AuditLog,
) -> Result<Option<(Checkpointer, std::time::Duration)>, ServiceError> {
    let Some(key_path) = &config.audit.checkpoint_key else {
        return Ok(None);
    };
    let key = SigningKey::load(key_path).map_err(|e| ServiceError::Config(e.to_string()))?;
    let every = config
        .audit
        .checkpoint_interval()
        .map_err(ServiceError::Config)?;
    let mut sinks = Vec::new();
    if let Some(path) = &config.audit.checkpoint_file {
        sinks.push(Sink::File(path.clone()));
    }
    if let Some(url) = config.audit.checkpoint_webhook_url.clone() {
        let client =
            crate::api::webhook::WebhookClient::new(config.daemon.webhook_ca_file.as_deref())
                .map_err(|e| ServiceError::Config(format!("[audit] checkpoint webhook: {e}")))?;
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
        return Err(ServiceError::Config(
            "[audit] checkpoint_key is set but checkpoints have nowhere to go: set checkpoint_file and/or checkpoint_webhook_url".into(),
        ));
    }
    Ok(Some((Checkpointer::new(log, key, sinks), every)))
}

/// One cycle now (`commitd run --once`).
pub async fn run_once(built: &Built) -> Result<CycleReport, ServiceError> {
    let report = built.daemon.cycle(Utc::now()).await?;
    built.daemon.lease.release().await.ok();
    Ok(report)
}

enum Stop {
    Graceful,
    Fast,
}

/// The long-running service. Returns after a signal.
pub async fn serve(
    built: Built,
    config: &Config,
    listen: Option<String>,
) -> Result<(), ServiceError> {
    use tokio::signal::unix::{signal, SignalKind};
    let plan_schedule = Schedule::parse("daemon.plan_schedule", &config.daemon.plan_schedule)?;
    let exec_schedule =
        Schedule::parse("daemon.execute_schedule", &config.daemon.execute_schedule)?;
    let grace = std::time::Duration::from_secs(config.daemon.shutdown_grace_seconds);
    let notifier = Notifier::from_env();
    let daemon = built.daemon.clone();
    let api = built.api.clone();
    // Checkpoints of the audit chain, outside the database: one now, one every period, one
    // after the last step on shutdown. Its sink failures are logged and retried by the task
    // itself; they never stop the service.
    let (checkpoint_stop, checkpoint_stopped) = tokio::sync::watch::channel(false);
    let checkpoints = match checkpointer(config, built.api.audit.clone())? {
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
    let http = match listen.or_else(|| config.daemon.listen.clone()) {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|source| ServiceError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServiceError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            // Tests and scripts read this line to find a port chosen by the OS (":0").
            println!(
                "commitd: listening on {}://{local}",
                built.transport.scheme()
            );
            let stop = http_stop.clone();
            let app = router(api.clone());
            let transport = built.transport.clone();
            Some(tokio::spawn(async move {
                transport::serve(
                    listener,
                    app,
                    transport,
                    async move { stop.notified().await },
                )
                .await;
            }))
        }
        None => None,
    };

    let mut sigterm = signal(SignalKind::terminate()).map_err(ServiceError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServiceError::Signal)?;
    // SIGHUP reloads the policies now (they also reload by themselves when their files change,
    // at the next check).
    let mut sighup = signal(SignalKind::hangup()).map_err(ServiceError::Signal)?;
    {
        let policies = daemon.policies.clone();
        tokio::spawn(async move {
            while sighup.recv().await.is_some() {
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
    }
    // The lease is renewed by its own task, also while a step runs: a long step (a slow
    // provider, a hanging webhook) keeps it, and a replica that cannot renew (paused, cut off
    // from the database) loses its fence before another can take over.
    let renew_every = std::time::Duration::from_millis(
        (config.daemon.lease_ttl_seconds.max(1) * 1000 / 3).max(200),
    );
    let renewal = {
        let d = daemon.clone();
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
    if let Some(every) = notifier.watchdog_interval() {
        let n = notifier.clone();
        let proposals = daemon.proposals.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if proposals.counts().await.is_ok() {
                    n.watchdog();
                }
            }
        });
    }
    api.ready.store(true, Ordering::SeqCst);
    notifier.ready();
    notifier.status(&format!("mode {:?}; waiting for schedules", config.mode));
    tracing::info!(
        plan = plan_schedule.expr(),
        execute = exec_schedule.expr(),
        "commitd running"
    );

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
            _ = sigterm.recv() => break Stop::Graceful,
            _ = sigint.recv() => break Stop::Fast,
        };
        let d = daemon.clone();
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
            _ = sigterm.recv() => Some(Stop::Graceful),
            _ = sigint.recv() => Some(Stop::Fast),
        };
        if let Some(stop) = stop {
            daemon.stopping.store(true, Ordering::SeqCst);
            notifier.stopping();
            match stop {
                Stop::Graceful => {
                    // Let the step in flight finish (the executor starts no new purchase).
                    if tokio::time::timeout(grace, &mut task).await.is_err() {
                        tracing::warn!(
                            grace_seconds = grace.as_secs(),
                            "step still running after the grace period; exiting, the next start reconciles"
                        );
                        task.abort();
                    }
                }
                Stop::Fast => task.abort(),
            }
            break stop;
        }
    };
    daemon.stopping.store(true, Ordering::SeqCst);
    notifier.stopping();
    api.ready.store(false, Ordering::SeqCst);
    renewal.abort();
    if let Err(e) = daemon.lease.release().await {
        tracing::warn!(error = %e, "releasing the executor lease");
    }
    // The last checkpoint covers everything the finished step appended. Bounded: a hanging
    // sink must not keep the process from exiting (the webhook itself times out at 10 s).
    let _ = checkpoint_stop.send(true);
    if let Some(task) = checkpoints {
        let wait = match stop {
            Stop::Graceful => grace.max(std::time::Duration::from_secs(15)),
            Stop::Fast => std::time::Duration::from_secs(15),
        };
        if tokio::time::timeout(wait, task).await.is_err() {
            tracing::error!("the shutdown audit checkpoint did not finish in time");
        }
    }
    http_stop.notify_waiters();
    if let Some(h) = http {
        match stop {
            Stop::Graceful => {
                let _ = tokio::time::timeout(grace, h).await;
            }
            Stop::Fast => h.abort(),
        }
    }
    built.store.close().await;
    Ok(())
}
