//! One daemon, several clouds: [`Providers`] is the market of a daemon configured with
//! `[daemon] providers = ["aws", "azure"]`. It holds one market per provider and sends every
//! call to the market of the provider the call is about:
//!
//! * purchases, quotes, exchanges and the reconciliation of a purchase go by the spec's
//!   provider (`PurchaseSpec::provider`);
//! * returns and Marketplace listings name a commitment, not a spec: they go by the
//!   commitment id's form, which differs between the clouds (the Azure market names a
//!   commitment `{order}/{item}`, the path of its ARM resource id; AWS ids are bare), see
//!   [`provider_of_id`];
//! * the inventory, listings and refunds are the union of every market's; a market that
//!   cannot answer fails the whole call (a plan made without one provider's holdings would buy
//!   what that provider already holds);
//! * the offers are the union of the markets' rate cards (their products never overlap: each
//!   names its provider); usage comes from the one market that has a usage API.
//!
//! A spec whose provider has no market here is refused with a message naming the
//! configuration, never sent to another cloud.

use super::{
    BoxFuture, CommitmentMarket, ExchangeQuote, ExchangeRequest, Exchanged, Found, Listed,
    Operation, ProviderError, Purchase, PurchaseRequest, PurchaseSpec, Quote, ReturnRequest,
    Returned, SaleRequest, UsageHistory,
};
use crate::domain::{Commitment, Hour, Money, Provider, RateCard};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The provider a commitment id belongs to. The Azure market names a commitment by its
/// order and item (`{order}/{reservation}`, `{order}/{savings plan}`), the tail of its ARM
/// resource id (`/providers/Microsoft.Capacity/reservationOrders/{order}/reservations/{id}`),
/// which is accepted too; AWS ids never hold a `/` (savings plan and Reserved Instance ids are
/// UUIDs), except as ARNs (`arn:aws:...`).
pub fn provider_of_id(commitment_id: &str) -> Provider {
    if commitment_id.contains('/') && !commitment_id.starts_with("arn:") {
        Provider::Azure
    } else {
        Provider::Aws
    }
}

/// The markets of several providers behind one [`CommitmentMarket`].
pub struct Providers {
    markets: Vec<(Provider, Arc<dyn CommitmentMarket>)>,
    name: String,
}

impl Providers {
    /// One market per provider; refuses none, or two for the same provider.
    pub fn new(markets: Vec<(Provider, Arc<dyn CommitmentMarket>)>) -> Result<Self, String> {
        if markets.is_empty() {
            return Err("no provider market configured".into());
        }
        for (i, (p, _)) in markets.iter().enumerate() {
            if markets[..i].iter().any(|(q, _)| q == p) {
                return Err(format!("provider {p} is configured twice"));
            }
        }
        let name = markets
            .iter()
            .map(|(_, m)| m.name())
            .collect::<Vec<_>>()
            .join("+");
        Ok(Providers { markets, name })
    }

    /// The market that acts for `provider`.
    pub fn market(&self, provider: Provider) -> Result<&dyn CommitmentMarket, ProviderError> {
        self.markets
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, m)| m.as_ref())
            .ok_or_else(|| ProviderError::Refused {
                provider: self.name.clone(),
                message: format!(
                    "no market for provider {provider}: add it to [daemon] providers (configured: {})",
                    self.name
                ),
            })
    }

    fn for_id(&self, commitment_id: &str) -> Result<&dyn CommitmentMarket, ProviderError> {
        self.market(provider_of_id(commitment_id))
    }

    fn all(&self) -> impl Iterator<Item = &dyn CommitmentMarket> {
        self.markets.iter().map(|(_, m)| m.as_ref())
    }
}

impl CommitmentMarket for Providers {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider_name(&self, provider: Provider) -> &str {
        self.market(provider)
            .map(|m| m.name())
            .unwrap_or(self.name.as_str())
    }

    fn inventory(&self) -> BoxFuture<'_, Result<Vec<Commitment>, ProviderError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for m in self.all() {
                all.extend(m.inventory().await?);
            }
            Ok(all)
        })
    }

    fn quote<'a>(&'a self, spec: &'a PurchaseSpec) -> BoxFuture<'a, Result<Quote, ProviderError>> {
        Box::pin(async move { self.market(spec.provider)?.quote(spec).await })
    }

    fn purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
    ) -> BoxFuture<'a, Result<Purchase, ProviderError>> {
        Box::pin(async move { self.market(request.spec.provider)?.purchase(request).await })
    }

    /// Each market in turn: a key names one purchase, made in one of them.
    fn find_by_idempotency_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Purchase>, ProviderError>> {
        Box::pin(async move {
            for m in self.all() {
                if let Some(p) = m.find_by_idempotency_key(key).await? {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        })
    }

    fn find_purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Found<Purchase>, ProviderError>> {
        Box::pin(async move {
            self.market(request.spec.provider)?
                .find_purchase(request, since)
                .await
        })
    }

    /// A spec for a provider without a market is never sent anywhere, so nothing to resend:
    /// answered as the safe "no" (an unknown outcome is then settled by a person).
    fn deduplicates(&self, operation: &Operation, spec: &PurchaseSpec) -> bool {
        self.market(spec.provider)
            .map(|m| m.deduplicates(operation, spec))
            .unwrap_or(false)
    }

    fn return_commitment<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Returned, ProviderError>> {
        Box::pin(async move {
            self.for_id(&request.commitment_id)?
                .return_commitment(request)
                .await
        })
    }

    fn find_return<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Option<Returned>, ProviderError>> {
        Box::pin(async move {
            self.for_id(&request.commitment_id)?
                .find_return(request)
                .await
        })
    }

    fn exchange_quote<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<ExchangeQuote, ProviderError>> {
        Box::pin(async move {
            self.market(request.target.provider)?
                .exchange_quote(request)
                .await
        })
    }

    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>> {
        Box::pin(async move {
            self.market(request.target.provider)?
                .exchange(request)
                .await
        })
    }

    fn find_exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Option<Exchanged>, ProviderError>> {
        Box::pin(async move {
            self.market(request.target.provider)?
                .find_exchange(request)
                .await
        })
    }

    /// The union of the markets' offers; None only when no market has an offering API. A
    /// market whose offering API fails fails the call (the daemon then prices from the source
    /// rate card and says so), so a plan is never priced half from the market.
    fn offers(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Option<RateCard>, ProviderError>> {
        Box::pin(async move {
            let mut union: Option<RateCard> = None;
            for m in self.all() {
                if let Some(card) = m.offers(now).await? {
                    let merged = union.get_or_insert_with(RateCard::new);
                    for (product, offers) in card.products() {
                        for offer in offers {
                            merged.insert(product.clone(), offer.clone());
                        }
                    }
                }
            }
            Ok(union)
        })
    }

    /// The usage of the one market with a usage API (AWS Cost Explorer).
    fn usage(
        &self,
        now: DateTime<Utc>,
        days: u32,
    ) -> BoxFuture<'_, Result<Option<UsageHistory>, ProviderError>> {
        Box::pin(async move {
            for m in self.all() {
                if let Some(usage) = m.usage(now, days).await? {
                    return Ok(Some(usage));
                }
            }
            Ok(None)
        })
    }

    fn sell<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Listed, ProviderError>> {
        Box::pin(async move { self.for_id(&request.commitment_id)?.sell(request).await })
    }

    fn find_sale<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Option<Listed>, ProviderError>> {
        Box::pin(async move {
            self.for_id(&request.commitment_id)?
                .find_sale(request)
                .await
        })
    }

    fn listings(&self) -> BoxFuture<'_, Result<Vec<Listed>, ProviderError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for m in self.all() {
                all.extend(m.listings().await?);
            }
            Ok(all)
        })
    }

    fn refunds<'a>(
        &'a self,
        held: &'a [Commitment],
    ) -> BoxFuture<'a, Result<Vec<(Hour, Money)>, ProviderError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for m in self.all() {
                all.extend(m.refunds(held).await?);
            }
            Ok(all)
        })
    }

    fn returns_reservations(&self) -> bool {
        self.all().any(|m| m.returns_reservations())
    }

    fn sells_reservations(&self) -> bool {
        self.all().any(|m| m.sells_reservations())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_cloud() {
        assert_eq!(
            provider_of_id("/providers/Microsoft.Capacity/reservationOrders/a/reservations/b"),
            Provider::Azure
        );
        assert_eq!(
            provider_of_id(
                "/providers/Microsoft.BillingBenefits/savingsPlanOrders/a/savingsPlans/b"
            ),
            Provider::Azure
        );
        assert_eq!(
            provider_of_id(
                "276e7ae4-84d0-4da6-ab4b-d6b94f3557da/40000000-aaaa-bbbb-cccc-100000000000"
            ),
            Provider::Azure
        );
        assert_eq!(
            provider_of_id("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
            Provider::Aws
        );
        assert_eq!(
            provider_of_id("arn:aws:savingsplans::111111111111:savingsplan/3f2504e0"),
            Provider::Aws
        );
    }
}
