//! Providers: where commitments are bought. [`CommitmentMarket`] is what the executor needs from
//! a cloud (inventory, quote, purchase with an idempotency key, lookup by that key), so that the
//! AWS and Azure clients plug in beside the built-in simulated market ([`sim`]).
//!
//! Providers never write the audit log: the executor does, around every call. A provider's job
//! is to make `purchase` idempotent per key (AWS `ClientToken`, Azure's reservation order id) and
//! to answer `find_by_idempotency_key` truthfully, which is what lets the executor reconcile
//! after a crash instead of buying twice.
//!
//! Returns and exchanges follow the same rule: every request carries the proposal's key, and
//! [`CommitmentMarket::find_return`] / [`CommitmentMarket::find_exchange`] answer from the
//! provider's own state whether it already happened (a returned plan's state; exchanged sources
//! retired), because some of those APIs (AWS AcceptReservedInstancesExchangeQuote) take no
//! client token and must never be resent blindly. Markets that cannot do them keep the default
//! methods, which refuse with a clear "not supported" error (final, not retried).
//!
//! Giving up reservations: an Azure reservation is returned in part ([`ReturnRequest::instances`])
//! and a Standard RI's instances are listed on the RI Marketplace ([`CommitmentMarket::sell`],
//! found again by [`CommitmentMarket::find_sale`]). A market says which of those it executes
//! ([`CommitmentMarket::returns_reservations`], [`CommitmentMarket::sells_reservations`]), and
//! the daemon's planner gives up reservations only where it does.

pub mod aws;
pub mod azure;
pub mod route;
pub mod sim;

pub use crate::domain::purchase::{Operation, PurchaseSpec};

use crate::domain::{Commitment, Hour, Money};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so that markets can be used as `dyn CommitmentMarket`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// A return request: which commitment, under which key, at what time (the return window is
/// judged at `at`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReturnRequest {
    pub idempotency_key: String,
    pub commitment_id: String,
    /// Account the commitment lives in; None = the payer (organizations ask every account).
    #[serde(default)]
    pub account: Option<String>,
    /// Instances of a reservation to return (Azure); None: the whole commitment.
    #[serde(default)]
    pub instances: Option<u32>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A Reserved Instance Marketplace listing request: instances of one Standard RI, under the
/// proposal's key (AWS `ClientToken`), at an asking price for their remaining term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaleRequest {
    pub idempotency_key: String,
    pub commitment_id: String,
    /// Account the RI lives in; None = the payer.
    #[serde(default)]
    pub account: Option<String>,
    pub instances: u32,
    /// Asking price (USD, upfront, for the listed instances' remaining term).
    pub price: Money,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A listing on the Reserved Instance Marketplace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub idempotency_key: String,
    /// The provider's listing id.
    pub listing_id: String,
    pub request_id: String,
    /// The RI whose instances are listed.
    pub commitment_id: String,
    pub instances: u32,
    /// "active" or "pending" (listed, not sold yet), "closed" (sold) or "cancelled".
    pub state: String,
    pub listed_at: Hour,
    /// When the listed instances sell, if the market knows (the simulated market sells them
    /// after the backtest's Marketplace delay; AWS does not say in advance).
    pub sells_at: Option<Hour>,
    /// The commitment the listed instances apply as until they sell, if the market shows them
    /// apart from the rest of the RI (the simulated market splits them off).
    #[serde(default)]
    pub listed_id: Option<String>,
}

/// A completed return.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Returned {
    pub idempotency_key: String,
    pub commitment_id: String,
    /// The provider's request ids (describe + return), for the audit log.
    pub request_id: String,
    /// The commitment's state at the provider afterwards ("returned", "pending-return").
    pub state: String,
}

/// An exchange request: sources given up, the target bought with their value, and the
/// largest true-up (payment due now) the approval covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeRequest {
    pub idempotency_key: String,
    pub source_ids: Vec<String>,
    pub target: PurchaseSpec,
    pub max_true_up: Money,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The provider's quote for an exchange, as the audit log records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeQuote {
    pub valid: bool,
    pub failure_reason: Option<String>,
    /// The true-up to pay now.
    pub payment_due: Money,
    pub source_remaining_value: Option<Money>,
    pub target_value: Option<Money>,
    /// The provider's request id of the quote call.
    pub request_id: Option<String>,
}

/// A completed exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exchanged {
    pub idempotency_key: String,
    /// The provider's exchange id (AWS `riex-...`); None when found by reconciliation (AWS
    /// does not list exchanges).
    pub exchange_id: Option<String>,
    pub request_id: String,
    pub source_ids: Vec<String>,
    /// The commitments created (empty if the provider does not show them yet).
    pub target_ids: Vec<String>,
    /// The quote accepted (None when found by reconciliation).
    pub quote: Option<ExchangeQuote>,
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
    /// Network errors, throttling, 5xx: the request was not applied, or it carries a client
    /// token the provider deduplicates, so the same request may be retried with the same key.
    #[error("{provider}: temporarily unavailable: {message}")]
    Unavailable { provider: String, message: String },
    /// The call may or may not have been applied (a lost answer, a timeout, a 5xx on a call
    /// without a client token). Nothing may be sent again before the provider's own state has
    /// been looked up ([`CommitmentMarket::find_purchase`] and its siblings); if that lookup
    /// cannot establish the outcome, the executor parks the proposal as `needs_review`.
    #[error("{provider}: outcome unknown: {message}")]
    OutcomeUnknown { provider: String, message: String },
    #[error("{provider}: ledger: {message}")]
    Ledger { provider: String, message: String },
    /// The exchange was not made: the quote was invalid or its true-up above the approval.
    #[error("{provider}: exchange refused: {reason}")]
    ExchangeRefused {
        provider: String,
        reason: String,
        quote: Box<ExchangeQuote>,
    },
}

impl ProviderError {
    /// The refusal of a market that has no such operation (final, never retried).
    pub fn unsupported(market: &str, operation: &str) -> ProviderError {
        ProviderError::Refused {
            provider: market.to_string(),
            message: format!("{operation} is not supported by the {market} market"),
        }
    }
}

impl ProviderError {
    /// Whether retrying the same request (same idempotency key) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Unavailable { .. } | ProviderError::Ledger { .. }
        )
    }

    /// Whether the call may have been applied although it reported an error: the outcome must
    /// be looked up at the provider before anything else happens.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ProviderError::OutcomeUnknown { .. })
    }
}

/// What a reconciliation lookup established about an earlier call.
#[derive(Clone, Debug, PartialEq)]
pub enum Found<T> {
    /// It happened: here is what the provider holds.
    Yes(T),
    /// The provider shows no trace of it.
    No,
    /// The provider's state cannot tell (for example two untagged Reserved Instances that
    /// match the request): a person must look. The text says what was seen.
    Unclear(String),
}

impl<T> From<Option<T>> for Found<T> {
    fn from(v: Option<T>) -> Found<T> {
        match v {
            Some(t) => Found::Yes(t),
            None => Found::No,
        }
    }
}

/// A place where commitments are bought. Implementations: [`sim::SimMarket`]; AWS and Azure
/// clients later. Every method may be called again after a crash: `purchase` with a key that was
/// already used must return the first purchase, never buy again.
pub trait CommitmentMarket: Send + Sync {
    /// Short name for logs and the audit log ("sim", "aws", "azure").
    fn name(&self) -> &str;

    /// The name of the market that acts for `provider`, for the audit log: the market's own
    /// name, except where one market routes to several ([`route::Providers`]).
    fn provider_name(&self, provider: crate::domain::Provider) -> &str {
        let _ = provider;
        self.name()
    }

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

    /// The purchase `request` asked for, if it happened, looked up by everything the provider
    /// shows: the key first, then (for calls without a client token, whose key is only a tag
    /// written afterwards) what an untagged purchase since `since` would look like: type,
    /// scope, count, offering. The default is the key lookup alone, which is exact for markets
    /// whose every purchase carries the key.
    fn find_purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
        since: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<Found<Purchase>, ProviderError>> {
        let _ = since;
        Box::pin(async move {
            Ok(self
                .find_by_idempotency_key(&request.idempotency_key)
                .await?
                .into())
        })
    }

    /// Whether the provider deduplicates a resent `operation` of `spec` by its client token,
    /// so that resending it after an unknown outcome cannot act twice. False (AWS
    /// PurchaseReservedInstancesOffering, AcceptReservedInstancesExchangeQuote) means an
    /// unknown outcome is settled only by looking it up, never by sending again.
    fn deduplicates(&self, operation: &Operation, spec: &PurchaseSpec) -> bool {
        let _ = (operation, spec);
        true
    }

    /// Returns a commitment, idempotently per `request.idempotency_key`.
    fn return_commitment<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Returned, ProviderError>> {
        let _ = request;
        let refused = ProviderError::unsupported(self.name(), "returning a commitment");
        Box::pin(async move { Err(refused) })
    }

    /// The return `request` describes, if it already happened (reconciliation after a crash).
    fn find_return<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Option<Returned>, ProviderError>> {
        let _ = request;
        let refused = ProviderError::unsupported(self.name(), "returning a commitment");
        Box::pin(async move { Err(refused) })
    }

    /// What exchanging now would cost (no change made).
    fn exchange_quote<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<ExchangeQuote, ProviderError>> {
        let _ = request;
        let refused = ProviderError::unsupported(self.name(), "exchanging commitments");
        Box::pin(async move { Err(refused) })
    }

    /// Exchanges, only if the quote is valid and its true-up at most `request.max_true_up`
    /// (otherwise [`ProviderError::ExchangeRefused`] with the quote, and nothing changes).
    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>> {
        let _ = request;
        let refused = ProviderError::unsupported(self.name(), "exchanging commitments");
        Box::pin(async move { Err(refused) })
    }

    /// The market's current commitment offers, for pricing the plan (None: the market has no
    /// offering API; the planner prices from its source rate card).
    fn offers(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'_, Result<Option<crate::domain::RateCard>, ProviderError>> {
        let _ = now;
        Box::pin(async { Ok(None) })
    }

    /// Recent usage as the market's own billing service records it (AWS: Cost Explorer),
    /// `days` back from `now`, for accounts without billing exports (`[source]
    /// cost_explorer_days`). None: the market has no usage API.
    fn usage(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        days: u32,
    ) -> BoxFuture<'_, Result<Option<UsageHistory>, ProviderError>> {
        let _ = (now, days);
        Box::pin(async { Ok(None) })
    }

    /// Lists RI instances on the Marketplace, idempotently per `request.idempotency_key`.
    fn sell<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Listed, ProviderError>> {
        let _ = request;
        let refused = ProviderError::unsupported(self.name(), "listing RIs for sale");
        Box::pin(async move { Err(refused) })
    }

    /// The listing `request` describes, if it was made (reconciliation after a crash).
    fn find_sale<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Option<Listed>, ProviderError>> {
        let _ = request;
        let refused = ProviderError::unsupported(self.name(), "listing RIs for sale");
        Box::pin(async move { Err(refused) })
    }

    /// Every Marketplace listing of ours, so that a planner lists nothing twice. Markets that
    /// cannot list have none.
    fn listings(&self) -> BoxFuture<'_, Result<Vec<Listed>, ProviderError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The reservation refunds made in the last year, as (hour, amount): Azure's rolling cap
    /// counts them, and the planner returns no more than it leaves. `held` is the inventory the
    /// caller just read (a market that asks about a held reservation needs not read it again).
    /// Markets that return no reservations have none.
    fn refunds<'a>(
        &'a self,
        held: &'a [Commitment],
    ) -> BoxFuture<'a, Result<Vec<(Hour, Money)>, ProviderError>> {
        let _ = held;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Whether the market returns Azure reservations (in part): the daemon's planner returns
    /// idle reservations only where the market executes it.
    fn returns_reservations(&self) -> bool {
        false
    }

    /// Whether the market lists Standard RIs on the Marketplace ([`CommitmentMarket::sell`]).
    fn sells_reservations(&self) -> bool {
        false
    }

    /// The exchange `request` describes, if it already happened (its sources are gone).
    fn find_exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Option<Exchanged>, ProviderError>> {
        let _ = request;
        let refused = ProviderError::unsupported(self.name(), "exchanging commitments");
        Box::pin(async move { Err(refused) })
    }
}

/// A rate card as cached on disk, with when it was fetched: the offerings caches of the AWS
/// and Azure markets (`aws::offerings`, `azure::offerings`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedRateCard {
    pub fetched_at: chrono::DateTime<chrono::Utc>,
    pub region: String,
    pub instance_type: Option<String>,
    /// (product, offer) pairs: JSON maps cannot have struct keys, so not the card itself.
    pub offers: Vec<(crate::domain::Product, crate::domain::Offer)>,
}

impl CachedRateCard {
    pub fn new(
        fetched_at: chrono::DateTime<chrono::Utc>,
        region: &str,
        instance_type: Option<&str>,
        card: &crate::domain::RateCard,
    ) -> Self {
        CachedRateCard {
            fetched_at,
            region: region.to_string(),
            instance_type: instance_type.map(str::to_string),
            offers: card
                .products()
                .flat_map(|(p, offers)| offers.iter().map(move |o| (p.clone(), o.clone())))
                .collect(),
        }
    }

    pub fn card(&self) -> crate::domain::RateCard {
        let mut card = crate::domain::RateCard::new();
        for (p, o) in &self.offers {
            card.insert(p.clone(), o.clone());
        }
        card
    }

    /// Fresh for one day: prices change rarely, and a day-old price is still the price.
    pub fn is_fresh(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        now >= self.fetched_at && now - self.fetched_at < chrono::Duration::hours(24)
    }
}

/// Usage read from a market's billing API, as the planners' usage model.
#[derive(Clone, Debug)]
pub struct UsageHistory {
    pub model: crate::domain::UsageModel,
    /// What the conversion assumed or could not do (for the plan's audit record).
    pub notes: Vec<String>,
    /// The request ids of the calls that read it.
    pub request_ids: Vec<String>,
}

/// Refuses a quote that is invalid or whose true-up exceeds the approval (shared by markets so
/// the refusal reads the same everywhere).
pub fn check_exchange_quote(
    market: &str,
    quote: &ExchangeQuote,
    max_true_up: Money,
) -> Result<(), ProviderError> {
    let reason = if !quote.valid {
        format!(
            "the exchange quote is not valid: {}",
            quote.failure_reason.as_deref().unwrap_or("no reason given")
        )
    } else if quote.payment_due > max_true_up {
        format!(
            "the true-up of {} USD exceeds the approved {} USD",
            quote.payment_due, max_true_up
        )
    } else {
        return Ok(());
    };
    Err(ProviderError::ExchangeRefused {
        provider: market.to_string(),
        reason,
        quote: Box::new(quote.clone()),
    })
}
