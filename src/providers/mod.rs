//! Providers: where commitments are bought. [`CommitmentMarket`] is what the executor needs from
//! a cloud (inventory, quote, purchase with an idempotency key, lookup by that key), so that the
//! AWS and Azure clients plug in beside the built-in simulated market ([`sim`]).
//!
//! Providers never write the audit log: the executor does, around every call. A provider's job
//! is to make `purchase` idempotent per key (AWS `ClientToken`, Azure's reservation order id) and
//! to answer `find_by_idempotency_key` truthfully, which is what lets the executor reconcile
//! after a crash instead of buying twice.

pub mod sim;
pub mod sql;

use crate::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so that markets can be used as `dyn CommitmentMarket`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to buy, as every provider's purchase API needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurchaseSpec {
    pub provider: Provider,
    /// Billing account / subscription to buy in; None = the payer account.
    #[serde(default)]
    pub account: Option<String>,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    /// Region (RIs, reservations, EC2 Instance SPs).
    #[serde(default)]
    pub region: Option<String>,
    /// Family (EC2 Instance SPs).
    #[serde(default)]
    pub family: Option<String>,
    /// Instance type, OS and tenancy (RIs, reservations).
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub tenancy: Option<String>,
    /// USD/hour of commitment (savings plans) or a number of instances.
    pub amount: CommitmentAmount,
}

impl PurchaseSpec {
    /// One line for people: "AWS ComputeSavingsPlan 1yr NoUpfront 2.5 USD/h".
    pub fn describe(&self) -> String {
        let what = match self.amount {
            CommitmentAmount::HourlySpend(m) => format!("{m} USD/h"),
            CommitmentAmount::Instances(n) => format!(
                "{n} x {}",
                self.instance_type.as_deref().unwrap_or("(instance)")
            ),
        };
        let place = [&self.region, &self.family]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("/");
        let place = if place.is_empty() {
            String::new()
        } else {
            format!(" in {place}")
        };
        format!(
            "{} {} {} {} {what}{place}",
            self.provider, self.instrument, self.term, self.payment
        )
    }
}

/// A price the provider would charge now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// Amortized USD per hour over the term.
    pub hourly_cost: Money,
    pub upfront: Money,
    /// The provider's offering id (AWS offering id, Azure SKU + term).
    pub offering: String,
}

/// A purchase request: the spec, the key that makes it idempotent, and the price ceiling the
/// approval covered (a provider price above it is refused rather than silently paid).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurchaseRequest {
    pub idempotency_key: String,
    pub spec: PurchaseSpec,
    /// First hour the commitment covers.
    pub start: Hour,
    pub max_hourly_cost: Money,
    pub max_upfront: Money,
}

/// A completed purchase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    pub idempotency_key: String,
    /// The provider's request id, for support cases and the audit log.
    pub request_id: String,
    pub commitment: Commitment,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider}: no offer for {what}")]
    NoOffer { provider: String, what: String },
    #[error("{provider}: price {quoted} is above the approved {approved} ({what})")]
    PriceAboveApproval {
        provider: String,
        what: &'static str,
        quoted: Money,
        approved: Money,
    },
    #[error("{provider}: request refused: {message}")]
    Refused { provider: String, message: String },
    /// Network errors, throttling, 5xx: the same request may be retried with the same key.
    #[error("{provider}: temporarily unavailable: {message}")]
    Unavailable { provider: String, message: String },
    #[error("{provider}: ledger: {message}")]
    Ledger { provider: String, message: String },
}

impl ProviderError {
    /// Whether retrying the same request (same idempotency key) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Unavailable { .. } | ProviderError::Ledger { .. }
        )
    }
}

/// A place where commitments are bought. Implementations: [`sim::SimMarket`]; AWS and Azure
/// clients later. Every method may be called again after a crash: `purchase` with a key that was
/// already used must return the first purchase, never buy again.
pub trait CommitmentMarket: Send + Sync {
    /// Short name for logs and the audit log ("sim", "aws", "azure").
    fn name(&self) -> &str;

    /// Every commitment this market holds for us.
    fn inventory(&self) -> BoxFuture<'_, Result<Vec<Commitment>, ProviderError>>;

    /// What buying `spec` now would cost.
    fn quote<'a>(&'a self, spec: &'a PurchaseSpec) -> BoxFuture<'a, Result<Quote, ProviderError>>;

    /// Buys, idempotently per `request.idempotency_key`.
    fn purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
    ) -> BoxFuture<'a, Result<Purchase, ProviderError>>;

    /// The purchase made with this key, if any (reconciliation after a crash).
    fn find_by_idempotency_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Purchase>, ProviderError>>;
}
