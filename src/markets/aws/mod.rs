//! The AWS provider: Savings Plans, Reserved Instances and Cost Explorer through the real AWS
//! SDK for Rust (its local peer for tests is `commitd-testkit`'s `aws_server`).
//!
//! * [`client`]: credentials, region, endpoint override, assumed role, retry/deadline policy.
//! * [`inventory`]: what the account owns, mapped to [`crate::domain::Commitment`].
//! * [`offerings`]: what it could buy, mapped to a [`crate::domain::RateCard`] (cached daily).
//! * [`execute`]: purchases (idempotent), queued-plan deletion, returns, RI exchanges.
//! * [`usage`]: Cost Explorer cost and usage (hourly for 14 days, daily beyond).
//! * [`market`]: AWS as the executor's [`crate::markets::CommitmentMarket`].
//!
//! Every call returns [`Called`] (the value and the request ids AWS assigned) or an
//! [`AwsError`] that says whether the outcome is final, transient, or unknown (reconcile).
//! This module does I/O and is async; the pure core never depends on it.

pub mod client;
pub mod convert;
pub mod error;
pub mod execute;
pub mod inventory;
pub mod market;
pub mod offerings;
pub mod usage;

pub use client::{AssumeRole, AwsClients, AwsSettings, RetrySettings, StaticCredentials};
pub use error::{AwsError, Called};
