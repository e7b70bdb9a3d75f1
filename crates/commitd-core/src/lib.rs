//! # commitd-core
//!
//! The part of commitd that decides about money, as a pure library: no async runtime, no
//! database, no network, no clock (chrono without its `clock` feature), no cloud SDK. Every
//! function takes data, including the time of a decision, and returns data, so that a decision
//! can be reproduced from its recorded inputs and the backtest measures exactly what the daemon
//! runs.
//!
//! # Layout
//!
//! ```text
//! domain  <-  ingest, forecast, billing, optimize, policy  <-  plan  <-  backtest
//! ```
//!
//! * [`domain`]: newtypes parsed once (Money, Hour, Provider, Instrument, UsageGroup, ...);
//!   [`domain::purchase`] (what a purchase is at a provider, one converter each way) and
//!   [`domain::rules`] (the providers' market rules).
//! * [`ingest`]: parses FOCUS rows (CSV, gzip CSV, Parquet), ContractCommitment rows, the rate
//!   card and `scenario.toml` from readers the service opened (`impl Read`, a Parquet
//!   `ChunkReader`, text); reports progress through [`ingest::Progress`].
//! * [`forecast`]: hourly quantiles per usage group, anomaly and level-shift signals.
//! * [`billing`]: the providers' discount order, hour by hour.
//! * [`optimize`]: one LP (good_lp + HiGHS) over all instruments, terms and payment options.
//! * [`policy`]: guardrails parsed from text, evaluated to allow / needs approval / block.
//! * [`plan`]: the `Planner` trait and its planners (look-back, forecast, ladder, hindsight),
//!   run by the daemon and replayed by the backtest.
//! * [`assess`]: the FinOps maturity assessment of a bill (Crawl / Walk / Run per capability).
//! * [`backtest`]: the replay harness, its metrics, baselines and report. Nothing imports it.
//!
//! The siblings of the middle tier do not import each other, except `optimize` which prices
//! with `billing`'s rates and `policy` which bounds the optimizer
//! (`PolicySet::planning_bounds`). No module opens a file, reads the clock, the network or the
//! environment. `.ci/layout.py` checks both rules (docs/ARCHITECTURE.md).

pub mod assess;
pub mod backtest;
pub mod billing;
pub mod domain;
pub mod forecast;
pub mod ingest;
pub mod optimize;
pub mod plan;
pub mod policy;
