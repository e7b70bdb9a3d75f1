//! The Azure provider: reservations (Microsoft.Capacity) and savings plans
//! (Microsoft.BillingBenefits), API version 2022-11-01, through the generated SDK crates
//! `azure_mgmt_reservations` / `azure_mgmt_billingbenefits` 0.21 on `azure_core` 0.21 (its local
//! peer for tests is `commitd-testkit`'s `azure_server`; docs/azure.md says why these crates
//! and what is not done yet).
//!
//! * [`transport`]: the project's hyper + rustls client as azure_core's `HttpClient`.
//! * [`credential`]: client secret, workload identity, managed identity (a `TokenCredential`).
//! * [`client`]: endpoint, retries, the calls, paging, long-running operation polling.
//! * [`model`]: the answers, parsed exactly (decimal money, RFC 3339 dates).
//! * [`market`]: Azure as the executor's [`crate::markets::CommitmentMarket`].
//! * [`offerings`]: reservation prices as the planner's rate card, cached like AWS's.
//! * [`error`]: what failed, and whether the outcome is final, transient or unknown.

pub mod client;
pub mod credential;
pub mod error;
pub mod market;
pub mod model;
pub mod offerings;
pub mod transport;

pub use client::{AzureClients, AzureRetrySettings, AzureSettings};
pub use error::AzureError;
pub use market::AzureMarket;
