//! The rate card: what each product costs on demand and under each commitment offer.

use super::cloud::{Instrument, PaymentOption, Provider, Term};
use super::usage::{Product, UsageGroup};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One way to pay for one product: on demand, or a commitment offer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub instrument: Instrument,
    /// None for on demand.
    pub term: Option<Term>,
    pub payment: PaymentOption,
    /// USD per instance-hour, upfront amortized over the term (exact, as the rate card writes it).
    pub effective_hourly_rate: Decimal,
    /// Share of the term's total paid upfront: 0, 0.5 or 1.
    pub upfront_share: Decimal,
}

impl Offer {
    pub fn rate(&self) -> f64 {
        self.effective_hourly_rate.to_f64().unwrap_or(f64::NAN)
    }

    pub fn upfront_fraction(&self) -> f64 {
        self.upfront_share.to_f64().unwrap_or(0.0)
    }

    pub fn is_on_demand(&self) -> bool {
        self.instrument == Instrument::OnDemand
    }
}

/// Prices by product. Built by ingest from the scenario's `rates.csv` (or, later, provider APIs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateCard {
    products: BTreeMap<Product, Vec<Offer>>,
}

impl RateCard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an offer; a second offer with the same (instrument, term, payment) replaces the first.
    pub fn insert(&mut self, product: Product, offer: Offer) {
        let offers = self.products.entry(product).or_default();
        offers.retain(|o| {
            (o.instrument, o.term, o.payment) != (offer.instrument, offer.term, offer.payment)
        });
        offers.push(offer);
    }

    pub fn products(&self) -> impl Iterator<Item = (&Product, &[Offer])> {
        self.products.iter().map(|(p, o)| (p, o.as_slice()))
    }

    pub fn offers(&self, product: &Product) -> &[Offer] {
        self.products.get(product).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn offers_for(&self, group: &UsageGroup) -> &[Offer] {
        self.offers(&group.product())
    }

    pub fn offer(
        &self,
        product: &Product,
        instrument: Instrument,
        term: Option<Term>,
        payment: PaymentOption,
    ) -> Option<&Offer> {
        self.offers(product)
            .iter()
            .find(|o| o.instrument == instrument && o.term == term && o.payment == payment)
    }

    /// On-demand USD per instance-hour.
    pub fn on_demand(&self, product: &Product) -> Option<f64> {
        self.offers(product)
            .iter()
            .find(|o| o.is_on_demand())
            .map(Offer::rate)
    }

    /// Takes `other`'s commitment offers for the products this card already prices (a card
    /// built from the provider's offering APIs has no on-demand prices, and a product without
    /// one cannot be planned). An offer replaces the one of the same instrument, term and
    /// payment. Returns how many offers were taken.
    pub fn overlay_commitment_offers(&mut self, other: &RateCard) -> usize {
        let mut taken = 0;
        for (product, offers) in &other.products {
            let Some(mine) = self.products.get_mut(product) else {
                continue;
            };
            for offer in offers.iter().filter(|o| !o.is_on_demand()) {
                mine.retain(|o| {
                    (o.instrument, o.term, o.payment)
                        != (offer.instrument, offer.term, offer.payment)
                });
                mine.push(offer.clone());
                taken += 1;
            }
        }
        taken
    }

    pub fn providers(&self) -> Vec<Provider> {
        let mut v: Vec<Provider> = self.products.keys().map(|p| p.provider).collect();
        v.dedup();
        v
    }

    pub fn len(&self) -> usize {
        self.products.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().expect("a decimal literal")
    }

    fn product(instance_type: &str) -> Product {
        Product {
            provider: Provider::Aws,
            region: "eu-west-1".into(),
            instance_type: instance_type.into(),
            os: "Linux".into(),
            tenancy: "Shared".into(),
        }
    }

    fn offer(instrument: Instrument, payment: PaymentOption, rate: &str) -> Offer {
        Offer {
            instrument,
            term: (instrument != Instrument::OnDemand).then_some(Term::ONE_YEAR),
            payment,
            effective_hourly_rate: dec(rate),
            upfront_share: Decimal::ZERO,
        }
    }

    #[test]
    fn market_offers_replace_the_same_offer_and_skip_unpriced_products() {
        let mut card = RateCard::new();
        card.insert(
            product("m5.large"),
            offer(Instrument::OnDemand, PaymentOption::NoUpfront, "0.107"),
        );
        card.insert(
            product("m5.large"),
            offer(
                Instrument::ComputeSavingsPlan,
                PaymentOption::NoUpfront,
                "0.08",
            ),
        );
        let mut market = RateCard::new();
        // A newer price for an offer the card has, one it lacks, an on-demand price (ignored:
        // the market's card has none in practice, and the source's stays authoritative) and a
        // product the card cannot plan (no on-demand price).
        market.insert(
            product("m5.large"),
            offer(
                Instrument::ComputeSavingsPlan,
                PaymentOption::NoUpfront,
                "0.075",
            ),
        );
        market.insert(
            product("m5.large"),
            offer(
                Instrument::StandardReservedInstance,
                PaymentOption::NoUpfront,
                "0.066",
            ),
        );
        market.insert(
            product("m5.large"),
            offer(Instrument::OnDemand, PaymentOption::NoUpfront, "9"),
        );
        market.insert(
            product("c5.large"),
            offer(
                Instrument::ComputeSavingsPlan,
                PaymentOption::NoUpfront,
                "0.07",
            ),
        );
        assert_eq!(card.overlay_commitment_offers(&market), 2);
        let p = product("m5.large");
        assert_eq!(card.on_demand(&p), Some(0.107));
        let sp = card
            .offer(
                &p,
                Instrument::ComputeSavingsPlan,
                Some(Term::ONE_YEAR),
                PaymentOption::NoUpfront,
            )
            .unwrap();
        assert_eq!(sp.effective_hourly_rate, dec("0.075"));
        assert!(card
            .offer(
                &p,
                Instrument::StandardReservedInstance,
                Some(Term::ONE_YEAR),
                PaymentOption::NoUpfront
            )
            .is_some());
        assert!(card.offers(&product("c5.large")).is_empty());
        assert_eq!(card.len(), 3);
    }
}
