//! # commitd-testkit
//!
//! What commitd's tests, benchmarks and demos need and the product binary must not carry.
//! A dev-dependency of `commitd`, never published.
//!
//! * [`aws_server`]: a local AWS-compatible peer (Savings Plans REST-JSON, EC2 Query, STS) with
//!   its own, independent copy of AWS's rules (on purpose: a shared copy would make the client
//!   and its test agree by construction) and fault injection.
//! * [`azure_server`]: a local Azure peer (Azure AD token endpoint, Microsoft.Capacity and
//!   Microsoft.BillingBenefits 2022-11-01) shaped like the official examples, with its own
//!   state and fault injection.
//! * [`synth`]: deterministic synthetic scenarios (FOCUS bills with chosen demand shapes).
//! * [`bench_anomalies`], [`bench_forecast`], [`bench_optimize`], [`aws_cli`]: the benchmark and development commands
//!   of the `commitd-dev` binary.

pub mod aws_cli;
pub mod aws_server;
pub mod azure_server;
pub mod bench_anomalies;
pub mod bench_forecast;
pub mod bench_optimize;
pub mod synth;
pub mod synth_cli;
