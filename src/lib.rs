//! # commitd
//!
//! An open, explainable autopilot for cloud commitments: AWS Savings Plans and Reserved
//! Instances, Azure reservations and savings plans.
//!
//! # Layout
//!
//! Data flows one way; every arrow is a plain function call on owned data:
//!
//! ```text
//! sources ──> ingest ──> UsageModel, RateCard, existing Commitments   (loading in commitd,
//!                 │                                                   parsing in the core)
//!                 ├──> forecast  hourly quantiles + anomaly / level-shift signals
//!                 ├──> plan      the Planner trait and planners (look-back by default),
//!                 │              sizing with optimize (one LP) and billing (discount order);
//!                 │              the anomaly hold (no purchase into an open anomaly)
//!                 ├──> policy    allow / needs approval / block, naming the rule
//!                 └──> backtest  replays the core's planners (the daemon's look-back
//!                                planner by default), billed hour by hour, vs baselines
//! every decision ──> audit (hash-chained events) ──> store (SQLite or PostgreSQL)
//! ```
//!
//! * The pure core, in `commitd-core` and re-exported here: [`domain`], [`ingest`],
//!   [`forecast`], [`billing`], [`optimize`], [`policy`], [`plan`], [`backtest`]. No I/O, no
//!   async, no clock: they take data and return data.
//! * [`config`]: the TOML file and `COMMITD_` environment overrides, parsed once into types
//!   (the market kind is [`config::MarketKind`], not a string).
//! * [`store`] <- [`audit`] <- [`proposals`] <- [`execute`] <- [`service`] <- [`startup`] /
//!   [`cli`]: the service. A cycle plans, policy judges each action (naming the
//!   [`policy::Rule`]), people approve, and the executor buys, returns, exchanges or lists
//!   through a market ([`markets`]: simulated or AWS), exactly once per idempotency key.
//!   [`markets`] use only [`store`] and the core's [`domain`].
//! * [`startup`]: the one composition root (`Application::build(config)`, `port()`,
//!   `run_until_stopped(shutdown)`), used by `commitd run` and by tests.
//! * [`api`]: the HTTP API. It uses [`proposals`], [`audit`], [`identity`] (bearer tokens)
//!   and [`telemetry`] (the metrics `/metrics` renders from cached figures); never
//!   [`markets`] nor [`service`], and [`service`] never uses it.
//! * [`notify`]: chat webhooks and systemd notifications; [`report`]: the finance report;
//!   [`sources`]: loading usage (scenario, FOCUS, Cost Explorer, plan file); [`chart`]: the
//!   SVG charts the forecast command and the console draw.
//!
//! See `docs/ARCHITECTURE.md` for which module may depend on which.

pub mod api;
pub mod audit;
pub mod chart;
pub mod cli;
pub mod config;
pub mod dburl;
pub mod execute;
pub mod identity;
pub mod markets;
pub mod notify;
pub mod proposals;
pub mod report;
pub mod service;
pub mod sources;
pub mod startup;
pub mod store;
pub mod telemetry;

// The pure core, re-exported under the paths the service uses (`crate::domain`, ...): one
// definition, in `commitd-core`.
pub use commitd_core::{
    assess, backtest, billing, domain, forecast, ingest, optimize, plan, policy,
};
