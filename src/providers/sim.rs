//! The simulated market: a ledger of commitments kept in the store (`sim_commitments`), priced
//! from a rate card. It behaves like a real provider where the executor can tell: purchases are
//! idempotent per key (a second call with the same key returns the first purchase), prices come
//! from offers that exist or the purchase is refused, and the ledger survives restarts. So the
//! whole loop (plan, approve, execute, reconcile, audit) runs without cloud credentials.

use super::sql;
use super::{
    BoxFuture, CommitmentMarket, ProviderError, Purchase, PurchaseRequest, PurchaseSpec, Quote,
};
use crate::domain::{sizing, Commitment, CommitmentAmount, Money, Product, RateCard};
use crate::store::Store;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, Ordering};

const NAME: &str = "sim";

/// The simulated market over a store and a rate card.
pub struct SimMarket {
    store: Store,
    rates: RateCard,
    /// Calls that fail as "temporarily unavailable" before the market works again: for tests
    /// of the executor's retry path, set with [`SimMarket::with_outages`].
    outages: AtomicU32,
    /// Wall-clock time of purchases, in ms (the ledger records it; the market is an edge and
    /// may read the clock).
    clock: fn() -> i64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ledger(message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Ledger {
        provider: NAME.into(),
        message: message.to_string(),
    }
}

impl SimMarket {
    pub fn new(store: Store, rates: RateCard) -> SimMarket {
        SimMarket {
            store,
            rates,
            outages: AtomicU32::new(0),
            clock: now_ms,
        }
    }

    /// The next `n` calls fail with a retryable "unavailable" error.
    pub fn with_outages(self, n: u32) -> SimMarket {
        self.outages.store(n, Ordering::SeqCst);
        self
    }

    fn outage(&self) -> Result<(), ProviderError> {
        let left = self.outages.load(Ordering::SeqCst);
        if left > 0 {
            self.outages.store(left - 1, Ordering::SeqCst);
            return Err(ProviderError::Unavailable {
                provider: NAME.into(),
                message: "simulated outage".into(),
            });
        }
        Ok(())
    }

    /// Prices a spec from the rate card. Savings plans cost their hourly commitment; RIs and
    /// reservations cost the offer's effective rate per instance. Upfront = total over the
    /// term x the offer's upfront share. Exact decimal arithmetic throughout.
    pub fn price(&self, spec: &PurchaseSpec) -> Result<Quote, ProviderError> {
        let no_offer = || ProviderError::NoOffer {
            provider: NAME.into(),
            what: spec.describe(),
        };
        let matches = |o: &crate::domain::Offer| {
            o.instrument == spec.instrument
                && o.term == Some(spec.term)
                && o.payment == spec.payment
        };
        let (hourly, share, offering) = match spec.amount {
            CommitmentAmount::HourlySpend(h) => {
                if h <= Money::ZERO {
                    return Err(ProviderError::Refused {
                        provider: NAME.into(),
                        message: format!("hourly commitment must be positive, got {h}"),
                    });
                }
                // The plan's commitment rate is the price; the card must still sell the plan
                // (in the region and family, for EC2 Instance savings plans).
                let offer = self
                    .rates
                    .products()
                    .filter(|(p, _)| {
                        p.provider == spec.provider
                            && spec.region.as_ref().is_none_or(|r| *r == p.region)
                            && spec.family.as_ref().is_none_or(|f| {
                                sizing::display_family(p.provider, &p.instance_type)
                                    .eq_ignore_ascii_case(f)
                            })
                    })
                    .find_map(|(_, offers)| offers.iter().find(|o| matches(o)))
                    .ok_or_else(no_offer)?;
                (h.to_decimal(), offer.upfront_share, offering_id(spec, None))
            }
            CommitmentAmount::Instances(n) => {
                if n == 0 {
                    return Err(ProviderError::Refused {
                        provider: NAME.into(),
                        message: "instance count must be positive".into(),
                    });
                }
                let product = Product {
                    provider: spec.provider,
                    region: spec.region.clone().ok_or_else(no_offer)?,
                    instance_type: spec.instance_type.clone().ok_or_else(no_offer)?,
                    os: spec.os.clone().unwrap_or_else(|| "Linux".into()),
                    tenancy: spec.tenancy.clone().unwrap_or_else(|| "Shared".into()),
                };
                let offer = self
                    .rates
                    .offer(&product, spec.instrument, Some(spec.term), spec.payment)
                    .ok_or_else(no_offer)?;
                (
                    offer.effective_hourly_rate * Decimal::from(n),
                    offer.upfront_share,
                    offering_id(spec, Some(&product)),
                )
            }
        };
        let total = hourly * Decimal::from(spec.term.hours());
        let hourly_cost =
            Money::from_decimal(hourly).ok_or_else(|| ledger("price out of range"))?;
        let upfront =
            Money::from_decimal(total * share).ok_or_else(|| ledger("upfront out of range"))?;
        Ok(Quote {
            hourly_cost,
            upfront,
            offering,
        })
    }

    async fn find(&self, key: &str) -> Result<Option<Purchase>, ProviderError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT idempotency_key, request_id, commitment FROM sim_commitments WHERE idempotency_key = $1",
            &[key.into()],
        )
        .await
        .map_err(ledger)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let commitment: Commitment =
            serde_json::from_str(&row.text(2).map_err(ledger)?).map_err(ledger)?;
        Ok(Some(Purchase {
            idempotency_key: row.text(0).map_err(ledger)?,
            request_id: row.text(1).map_err(ledger)?,
            commitment,
        }))
    }

    async fn buy(&self, request: &PurchaseRequest) -> Result<Purchase, ProviderError> {
        self.outage()?;
        if let Some(done) = self.find(&request.idempotency_key).await? {
            // The same key again: the first purchase, not a second one.
            return Ok(done);
        }
        let spec = &request.spec;
        let quote = self.price(spec)?;
        if quote.hourly_cost > request.max_hourly_cost {
            return Err(ProviderError::PriceAboveApproval {
                provider: NAME.into(),
                what: "hourly cost",
                quoted: quote.hourly_cost,
                approved: request.max_hourly_cost,
            });
        }
        if quote.upfront > request.max_upfront {
            return Err(ProviderError::PriceAboveApproval {
                provider: NAME.into(),
                what: "upfront",
                quoted: quote.upfront,
                approved: request.max_upfront,
            });
        }
        let digest = hex::encode(Sha256::digest(request.idempotency_key.as_bytes()));
        let commitment = Commitment {
            id: format!("sim-{}", &digest[..16]),
            provider: spec.provider,
            instrument: spec.instrument,
            term: spec.term,
            payment: spec.payment,
            start: request.start,
            end: request.start.plus(spec.term.hours()),
            region: spec.region.clone(),
            instance_type: spec.instance_type.clone(),
            family: spec.family.clone().or_else(|| {
                spec.instance_type
                    .as_deref()
                    .map(|t| sizing::display_family(spec.provider, t))
            }),
            amount: spec.amount,
            hourly_cost: quote.hourly_cost,
            upfront: quote.upfront,
        };
        let request_id = format!("sim-req-{}", &digest[16..32]);
        let inserted = sql::execute(
            &self.store,
            "INSERT INTO sim_commitments (id, idempotency_key, request_id, commitment, provider, \
             instrument, hourly_cost_micros, upfront_micros, purchased_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (idempotency_key) DO NOTHING",
            &[
                commitment.id.clone().into(),
                request.idempotency_key.clone().into(),
                request_id.clone().into(),
                serde_json::to_string(&commitment).map_err(ledger)?.into(),
                commitment.provider.as_str().into(),
                commitment.instrument.as_str().into(),
                commitment.hourly_cost.micros().into(),
                commitment.upfront.micros().into(),
                (self.clock)().into(),
            ],
        )
        .await
        .map_err(ledger)?;
        if inserted == 0 {
            // A concurrent call with the same key won the race: report its purchase.
            return self
                .find(&request.idempotency_key)
                .await?
                .ok_or_else(|| ledger("purchase vanished after a key conflict"));
        }
        Ok(Purchase {
            idempotency_key: request.idempotency_key.clone(),
            request_id,
            commitment,
        })
    }
}

fn offering_id(spec: &PurchaseSpec, product: Option<&Product>) -> String {
    let base = format!(
        "{}:{}:{}:{}",
        spec.provider, spec.instrument, spec.term, spec.payment
    );
    match product {
        Some(p) => format!(
            "{base}:{}:{}:{}:{}",
            p.region, p.instance_type, p.os, p.tenancy
        ),
        None => base,
    }
}

impl CommitmentMarket for SimMarket {
    fn name(&self) -> &str {
        NAME
    }

    fn inventory(&self) -> BoxFuture<'_, Result<Vec<Commitment>, ProviderError>> {
        Box::pin(async move {
            self.outage()?;
            let rows = sql::fetch(
                &self.store,
                "SELECT commitment FROM sim_commitments ORDER BY purchased_at_ms, id",
                &[],
            )
            .await
            .map_err(ledger)?;
            rows.iter()
                .map(|r| {
                    let text = r.text(0).map_err(ledger)?;
                    serde_json::from_str(&text).map_err(ledger)
                })
                .collect()
        })
    }

    fn quote<'a>(&'a self, spec: &'a PurchaseSpec) -> BoxFuture<'a, Result<Quote, ProviderError>> {
        Box::pin(async move { self.price(spec) })
    }

    fn purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
    ) -> BoxFuture<'a, Result<Purchase, ProviderError>> {
        Box::pin(self.buy(request))
    }

    fn find_by_idempotency_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Purchase>, ProviderError>> {
        Box::pin(async move {
            self.outage()?;
            self.find(key).await
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Hour, Instrument, Offer, PaymentOption, Provider, Term};

    pub(crate) fn rate_card() -> RateCard {
        let mut card = RateCard::new();
        let product = Product {
            provider: Provider::Aws,
            region: "eu-west-1".into(),
            instance_type: "m6i.large".into(),
            os: "Linux".into(),
            tenancy: "Shared".into(),
        };
        for (instrument, payment, rate, share) in [
            (
                Instrument::ComputeSavingsPlan,
                PaymentOption::NoUpfront,
                "0.07535",
                "0",
            ),
            (
                Instrument::ComputeSavingsPlan,
                PaymentOption::AllUpfront,
                "0.070022",
                "1",
            ),
            (
                Instrument::StandardReservedInstance,
                PaymentOption::PartialUpfront,
                "0.0641",
                "0.5",
            ),
        ] {
            card.insert(
                product.clone(),
                Offer {
                    instrument,
                    term: Some(Term::ONE_YEAR),
                    payment,
                    effective_hourly_rate: rate.parse().unwrap(),
                    upfront_share: share.parse().unwrap(),
                },
            );
        }
        card
    }

    async fn market() -> (tempfile::TempDir, SimMarket) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        (dir, SimMarket::new(store, rate_card()))
    }

    fn sp(hourly: &str, payment: PaymentOption) -> PurchaseRequest {
        PurchaseRequest {
            idempotency_key: "k-1".into(),
            spec: PurchaseSpec {
                provider: Provider::Aws,
                account: None,
                instrument: Instrument::ComputeSavingsPlan,
                term: Term::ONE_YEAR,
                payment,
                region: None,
                family: None,
                instance_type: None,
                os: None,
                tenancy: None,
                amount: CommitmentAmount::HourlySpend(Money::parse(hourly).unwrap()),
            },
            start: Hour(490_000),
            max_hourly_cost: Money::from_units(1_000),
            max_upfront: Money::from_units(1_000_000),
        }
    }

    #[tokio::test]
    async fn prices_exactly_from_the_rate_card() {
        let (_d, m) = market().await;
        let q = m.price(&sp("2.5", PaymentOption::AllUpfront).spec).unwrap();
        assert_eq!(q.hourly_cost, Money::parse("2.5").unwrap());
        // 2.5 USD/h x 8,760 h, all upfront.
        assert_eq!(q.upfront, Money::from_units(21_900));
        let mut ri = sp("1", PaymentOption::PartialUpfront).spec;
        ri.instrument = Instrument::StandardReservedInstance;
        ri.amount = CommitmentAmount::Instances(3);
        ri.region = Some("eu-west-1".into());
        ri.instance_type = Some("m6i.large".into());
        let q = m.price(&ri).unwrap();
        assert_eq!(q.hourly_cost, Money::parse("0.1923").unwrap());
        // 0.1923 x 8,760 x 0.5 = 842.274
        assert_eq!(q.upfront, Money::parse("842.274").unwrap());
        ri.region = Some("us-east-1".into());
        assert!(matches!(m.price(&ri), Err(ProviderError::NoOffer { .. })));
        let no_offer = sp("1", PaymentOption::PartialUpfront).spec;
        assert!(matches!(
            m.price(&no_offer),
            Err(ProviderError::NoOffer { .. })
        ));
    }

    #[tokio::test]
    async fn purchase_is_idempotent_per_key_and_lands_in_the_ledger() {
        let (_d, m) = market().await;
        let req = sp("2.5", PaymentOption::NoUpfront);
        assert!(m.find_by_idempotency_key("k-1").await.unwrap().is_none());
        let first = m.purchase(&req).await.unwrap();
        let again = m.purchase(&req).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(m.inventory().await.unwrap().len(), 1);
        let found = m.find_by_idempotency_key("k-1").await.unwrap().unwrap();
        assert_eq!(found.commitment.id, first.commitment.id);
        assert_eq!(found.commitment.end, Hour(490_000 + 8_760));
        let mut other = req.clone();
        other.idempotency_key = "k-2".into();
        m.purchase(&other).await.unwrap();
        assert_eq!(m.inventory().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn refuses_prices_above_the_approval_and_simulates_outages() {
        let (_d, m) = market().await;
        let mut req = sp("2.5", PaymentOption::AllUpfront);
        req.max_upfront = Money::from_units(20_000);
        let e = m.purchase(&req).await.unwrap_err();
        assert!(matches!(e, ProviderError::PriceAboveApproval { .. }), "{e}");
        assert!(!e.retryable());
        assert!(m.inventory().await.unwrap().is_empty());
        let m = m.with_outages(1);
        let e = m
            .purchase(&sp("1", PaymentOption::NoUpfront))
            .await
            .unwrap_err();
        assert!(e.retryable(), "{e}");
        m.purchase(&sp("1", PaymentOption::NoUpfront))
            .await
            .unwrap();
    }
}
