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
//! FOCUS files ──> ingest ──> UsageModel, RateCard, existing Commitments      (domain types)
//!                              │
//!                              ├──> forecast   hourly quantiles + anomaly / level-shift signals
//!                              ├──> optimize   one LP over all instruments -> Plan with rationale
//!                              ├──> billing    the providers' discount order, hour by hour
//!                              └──> backtest   rolling replay of the look-back planner (the
//!                                               daemon's default) or forecast + optimize,
//!                                               billed by `billing`, against the baselines
//! every decision ──> audit (hash-chained events) ──> store (SQLite or PostgreSQL)
//! ```
//!
//! * [`domain`]: newtypes parsed once (Money, Hour, Provider, Instrument, UsageGroup, ...).
//! * [`ingest`]: FOCUS CSV / CSV.gz / Parquet readers, usage model, commitments, rate card.
//! * [`synth`]: deterministic synthetic scenarios (FOCUS bills with chosen demand shapes).
//! * [`forecast`], [`optimize`], [`billing`]: the pure core. No I/O, no async, no clock:
//!   they take data and return data, so they are tested and benchmarked in isolation.
//! * [`backtest`]: replays the core over a scenario's evaluation window.
//! * [`store`]: sqlx pools and migrations; [`audit`]: the append-only, hash-chained event log.
//! * [`config`]: the TOML file and `COMMITD_` environment overrides.
//! * [`daemon`] -> [`policy`] -> [`proposals`] -> [`execute`] -> [`providers`] / [`aws`]: the
//!   service. A cycle plans (the backtest's look-back planner by default), policy judges each
//!   action, people approve, and the executor buys, returns, exchanges or lists on the RI
//!   Marketplace through a market (simulated or AWS), exactly once per idempotency key.
//! * [`cli`]: the composition root; the only place that wires I/O to the core.
//!
//! See `docs/ARCHITECTURE.md` for which module may depend on which.

pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod execute;
pub mod markets;
pub mod proposals;
pub mod report;
pub mod service;
pub mod sources;
pub mod store;

// The pure core, re-exported under the paths the service uses (`crate::domain`, ...): one
// definition, in `commitd-core`.
pub use commitd_core::{backtest, billing, domain, forecast, ingest, optimize, plan, policy};
