//! The simulated market: a ledger of commitments kept in the store (`sim_commitments`), priced
//! from a rate card. It behaves like a real provider where the executor can tell: purchases are
//! idempotent per key (a second call with the same key returns the first purchase), prices come
//! from offers that exist or the purchase is refused, and the ledger survives restarts. So the
//! whole loop (plan, approve, execute, reconcile, audit) runs without cloud credentials.
//!
//! Returns and exchanges follow AWS's rules where the executor can tell: a savings plan can be
//! returned only inside AWS's return window (at most 100 USD/h, within 7 days of its start, in
//! the same UTC month); convertible RIs exchange into a convertible RI of the same region whose
//! value (hourly cost x hours to the sources' end) is at least the sources' remaining value;
//! the true-up is the upfront difference over those hours (the target's upfront share minus
//! the sources' unused upfront), as AWS charges it. A commitment returned or exchanged away
//! is recorded in `sim_retired` under the proposal's key and leaves the inventory; an
//! exchange's target is a ledger row under the same key.

use super::{
    check_exchange_quote, BoxFuture, CommitmentMarket, ExchangeQuote, ExchangeRequest, Exchanged,
    Listed, ProviderError, Purchase, PurchaseRequest, PurchaseSpec, Quote, ReturnRequest, Returned,
    SaleRequest,
};
use crate::domain::{
    sizing, Commitment, CommitmentAmount, Hour, Instrument, Money, Product, RateCard, Term,
};
use crate::store::sql;
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
        let inserted = self
            .record(&request.idempotency_key, &request_id, &commitment)
            .await?;
        if !inserted {
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

fn refused(message: impl Into<String>) -> ProviderError {
    ProviderError::Refused {
        provider: NAME.into(),
        message: message.into(),
    }
}

/// `amount x hours / term_hours`, exactly (the part of an upfront covering `hours`).
fn share_of(amount: Money, hours: i64, term_hours: i64) -> Decimal {
    if term_hours <= 0 {
        return Decimal::ZERO;
    }
    amount.to_decimal() * Decimal::from(hours) / Decimal::from(term_hours)
}

/// A request id for a return or exchange, derived from its key (stable across retries).
fn operation_request_id(operation: &str, key: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{operation}:{key}").as_bytes()));
    format!("sim-req-{}", &digest[..16])
}

impl SimMarket {
    /// Ledger commitments by id that are still held (not returned or exchanged away).
    async fn held(&self, id: &str) -> Result<Option<Commitment>, ProviderError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT commitment FROM sim_commitments WHERE id = $1 \
             AND id NOT IN (SELECT commitment_id FROM sim_retired)",
            &[id.into()],
        )
        .await
        .map_err(ledger)?;
        match rows.first() {
            Some(r) => Ok(Some(
                serde_json::from_str(&r.text(0).map_err(ledger)?).map_err(ledger)?,
            )),
            None => Ok(None),
        }
    }

    /// The commitments retired under `key` by `operation`, with the request id recorded.
    async fn retired_by(
        &self,
        key: &str,
        operation: &str,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT commitment_id, request_id FROM sim_retired \
             WHERE idempotency_key = $1 AND operation = $2 ORDER BY commitment_id",
            &[key.into(), operation.into()],
        )
        .await
        .map_err(ledger)?;
        rows.iter()
            .map(|r| Ok((r.text(0).map_err(ledger)?, r.text(1).map_err(ledger)?)))
            .collect()
    }

    /// Takes a commitment out of the inventory under `key`, at `at` (and with the refund of a
    /// reservation return, which the rolling refund cap counts).
    async fn retire(
        &self,
        commitment_id: &str,
        key: &str,
        operation: &str,
        request_id: &str,
        at: Hour,
        refund: Option<Money>,
    ) -> Result<(), ProviderError> {
        sql::execute(
            &self.store,
            "INSERT INTO sim_retired (commitment_id, idempotency_key, operation, request_id, \
             retired_at_ms, at_hour, refund_micros) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (commitment_id) DO NOTHING",
            &[
                commitment_id.into(),
                key.into(),
                operation.into(),
                request_id.into(),
                (self.clock)().into(),
                at.0.into(),
                // An integer, never NULL: PostgreSQL types an untyped NULL parameter as text.
                refund.unwrap_or(Money::ZERO).micros().into(),
            ],
        )
        .await
        .map_err(ledger)?;
        Ok(())
    }

    async fn found_return(&self, r: &ReturnRequest) -> Result<Option<Returned>, ProviderError> {
        Ok(self
            .retired_by(&r.idempotency_key, "return")
            .await?
            .into_iter()
            .find(|(id, _)| *id == r.commitment_id)
            .map(|(commitment_id, request_id)| Returned {
                idempotency_key: r.idempotency_key.clone(),
                commitment_id,
                request_id,
                state: "returned".into(),
            }))
    }

    async fn do_return(&self, r: &ReturnRequest) -> Result<Returned, ProviderError> {
        self.outage()?;
        if let Some(done) = self.found_return(r).await? {
            return Ok(done);
        }
        let c = self
            .held(&r.commitment_id)
            .await?
            .ok_or_else(|| refused(format!("no held commitment {}", r.commitment_id)))?;
        let at = Hour::from_datetime(r.at);
        let request_id = operation_request_id("return", &r.idempotency_key);
        if c.instrument == Instrument::AzureReservation {
            self.return_reservation(r, &c, &request_id).await?;
        } else {
            if r.instances.is_some() {
                return Err(refused(format!(
                    "{} is a {}: only reservations are returned in part",
                    c.id, c.instrument
                )));
            }
            crate::domain::rules::check_savings_plan_return(&c, r.at).map_err(refused)?;
            self.retire(&c.id, &r.idempotency_key, "return", &request_id, at, None)
                .await?;
        }
        // Another key may have returned it first (ON CONFLICT): report what the ledger says.
        self.found_return(r).await?.ok_or_else(|| {
            refused(format!(
                "{} was returned or exchanged by another request",
                c.id
            ))
        })
    }

    /// Values an exchange at `request.at` (no change made).
    async fn price_exchange(
        &self,
        r: &ExchangeRequest,
    ) -> Result<(ExchangeQuote, Quote, Hour), ProviderError> {
        if r.source_ids.is_empty() {
            return Err(refused("an exchange needs at least one source"));
        }
        let at = Hour::from_datetime(r.at);
        let mut failure: Option<String> = None;
        let mut source_value = Money::ZERO;
        // The unused part of the sources' upfront, credited against the target's (AWS: the
        // true-up is the upfront difference).
        let mut source_upfront = Decimal::ZERO;
        let mut end = at;
        for id in &r.source_ids {
            let c = self
                .held(id)
                .await?
                .ok_or_else(|| refused(format!("no held commitment {id}")))?;
            if c.instrument != Instrument::ConvertibleReservedInstance {
                failure.get_or_insert(format!("{id} is not a convertible RI"));
            }
            if !c.is_active(at) {
                failure.get_or_insert(format!("{id} is not active"));
            }
            if c.region != r.target.region {
                failure.get_or_insert(format!("{id} is in another region than the target"));
            }
            let left = c.end.since(at).max(0);
            source_value = source_value
                .checked_add(
                    c.hourly_cost
                        .times(left)
                        .ok_or_else(|| ledger("value overflow"))?,
                )
                .ok_or_else(|| ledger("value overflow"))?;
            source_upfront += share_of(c.upfront, left, c.term.hours());
            end = end.max(c.end);
        }
        if r.target.instrument != Instrument::ConvertibleReservedInstance {
            failure.get_or_insert("the target must be a convertible RI".into());
        }
        let target = self.price(&r.target)?;
        let target_value = target
            .hourly_cost
            .times(end.since(at).max(0))
            .ok_or_else(|| ledger("value overflow"))?;
        if failure.is_none() && target_value < source_value {
            failure = Some(format!(
                "the target value {target_value} is less than the remaining value {source_value} of the sources"
            ));
        }
        let target_upfront = share_of(target.upfront, end.since(at).max(0), r.target.term.hours());
        let payment_due = Money::from_decimal((target_upfront - source_upfront).max(Decimal::ZERO))
            .ok_or_else(|| ledger("true-up out of range"))?;
        Ok((
            ExchangeQuote {
                valid: failure.is_none(),
                failure_reason: failure,
                payment_due,
                source_remaining_value: Some(source_value),
                target_value: Some(target_value),
                request_id: Some(operation_request_id("quote", &r.idempotency_key)),
            },
            target,
            end,
        ))
    }

    async fn found_exchange(
        &self,
        r: &ExchangeRequest,
    ) -> Result<Option<Exchanged>, ProviderError> {
        let retired = self.retired_by(&r.idempotency_key, "exchange").await?;
        // Done only when every source is retired under this key; a crash between the target
        // and the last source leaves it half done, which `do_exchange` completes.
        if r.source_ids.is_empty()
            || !r
                .source_ids
                .iter()
                .all(|s| retired.iter().any(|(id, _)| id == s))
        {
            return Ok(None);
        }
        let target = self.find(&r.idempotency_key).await?;
        Ok(Some(Exchanged {
            idempotency_key: r.idempotency_key.clone(),
            exchange_id: target
                .as_ref()
                .map(|t| format!("sim-ex-{}", t.commitment.id)),
            request_id: retired
                .first()
                .map(|(_, rid)| rid.clone())
                .unwrap_or_default(),
            source_ids: r.source_ids.clone(),
            target_ids: target.map(|t| vec![t.commitment.id]).unwrap_or_default(),
            quote: None,
        }))
    }

    async fn do_exchange(&self, r: &ExchangeRequest) -> Result<Exchanged, ProviderError> {
        self.outage()?;
        if let Some(done) = self.found_exchange(r).await? {
            return Ok(done);
        }
        let request_id = operation_request_id("exchange", &r.idempotency_key);
        // Half done (target recorded, a source not yet retired): finish, do not re-price.
        if let Some(target) = self.find(&r.idempotency_key).await? {
            for id in &r.source_ids {
                let at = Hour::from_datetime(r.at);
                self.retire(id, &r.idempotency_key, "exchange", &request_id, at, None)
                    .await?;
            }
            return self.found_exchange(r).await?.ok_or_else(|| {
                ledger(format!(
                    "exchange into {} left unfinished",
                    target.commitment.id
                ))
            });
        }
        let (quote, price, end) = self.price_exchange(r).await?;
        check_exchange_quote(NAME, &quote, r.max_true_up)?;
        let at = Hour::from_datetime(r.at);
        let spec = &r.target;
        let digest = hex::encode(Sha256::digest(r.idempotency_key.as_bytes()));
        let target = Commitment {
            id: format!("sim-{}", &digest[..16]),
            provider: spec.provider,
            instrument: spec.instrument,
            term: spec.term,
            payment: spec.payment,
            start: at,
            // AWS: the new RIs end when the latest source would have.
            end,
            region: spec.region.clone(),
            instance_type: spec.instance_type.clone(),
            family: spec
                .instance_type
                .as_deref()
                .map(|t| sizing::display_family(spec.provider, t)),
            amount: spec.amount,
            hourly_cost: price.hourly_cost,
            upfront: quote.payment_due,
        };
        self.record(&r.idempotency_key, &request_id, &target)
            .await?;
        for id in &r.source_ids {
            self.retire(id, &r.idempotency_key, "exchange", &request_id, at, None)
                .await?;
        }
        let mut done = self
            .found_exchange(r)
            .await?
            .ok_or_else(|| refused("a source was returned or exchanged by another request"))?;
        done.quote = Some(quote);
        Ok(done)
    }
}

impl SimMarket {
    /// Records `c` in the ledger under `key` (a purchase, an exchange's target, or the part of a
    /// reservation kept or listed when part of it is given up). A second call with the same key
    /// changes nothing; returns whether this call inserted it.
    async fn record(
        &self,
        key: &str,
        request_id: &str,
        c: &Commitment,
    ) -> Result<bool, ProviderError> {
        let inserted = sql::execute(
            &self.store,
            "INSERT INTO sim_commitments (id, idempotency_key, request_id, commitment, provider, \
             instrument, hourly_cost_micros, upfront_micros, purchased_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (idempotency_key) DO NOTHING",
            &[
                c.id.clone().into(),
                key.into(),
                request_id.into(),
                serde_json::to_string(c).map_err(ledger)?.into(),
                c.provider.as_str().into(),
                c.instrument.as_str().into(),
                c.hourly_cost.micros().into(),
                c.upfront.micros().into(),
                (self.clock)().into(),
            ],
        )
        .await
        .map_err(ledger)?;
        Ok(inserted > 0)
    }

    /// Part of a reservation that stays held (or is listed) when the rest is given up: a new
    /// ledger row, keyed by the operation's key and the part's role, so a retry finds it.
    async fn record_part(
        &self,
        key: &str,
        role: &str,
        request_id: &str,
        part: &Commitment,
    ) -> Result<Commitment, ProviderError> {
        let part_key = format!("{key}:{role}");
        let digest = hex::encode(Sha256::digest(part_key.as_bytes()));
        let part = Commitment {
            id: format!("sim-{}", &digest[..16]),
            ..part.clone()
        };
        self.record(&part_key, request_id, &part).await?;
        Ok(part)
    }

    /// The reservation refunds recorded, as (hour, amount), oldest first.
    async fn refund_rows(&self) -> Result<Vec<(Hour, Money)>, ProviderError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT at_hour, refund_micros FROM sim_retired WHERE operation = 'return' \
             AND refund_micros > 0 ORDER BY at_hour",
            &[],
        )
        .await
        .map_err(ledger)?;
        rows.iter()
            .map(|r| {
                Ok((
                    Hour(r.opt_int(0).map_err(ledger)?.unwrap_or(0)),
                    Money::from_micros(r.int(1).map_err(ledger)?),
                ))
            })
            .collect()
    }

    /// Refunds already made in the 12 months before `at` (Azure's rolling cap counts them).
    async fn refunded_before(&self, at: Hour) -> Result<Money, ProviderError> {
        let year_ago = at.plus(-Term::ONE_YEAR.hours());
        Ok(self
            .refund_rows()
            .await?
            .into_iter()
            .filter(|(h, _)| *h > year_ago && *h <= at)
            .map(|(_, m)| m)
            .sum())
    }

    /// Returns instances of an Azure reservation for a refund of their remaining value (their
    /// share of its hourly cost x the hours left), within the rolling refund cap; the rest of
    /// the reservation stays held as a new ledger row. Azure charges no early termination fee
    /// at present.
    async fn return_reservation(
        &self,
        r: &ReturnRequest,
        c: &Commitment,
        request_id: &str,
    ) -> Result<(), ProviderError> {
        let at = Hour::from_datetime(r.at);
        if !c.is_active(at) {
            return Err(refused(format!("{} is not active at {}", c.id, r.at)));
        }
        let count = r.instances.or(c.amount.instances()).unwrap_or(0);
        let refund = crate::domain::rules::remaining_value(c, count, at).map_err(refused)?;
        let used = self.refunded_before(at).await?;
        let cap = crate::domain::rules::AZURE_REFUND_CAP;
        if used + refund > cap {
            return Err(refused(format!(
                "a refund of {refund} USD after {used} USD in the last 12 months exceeds Azure's {cap} USD cap"
            )));
        }
        let (_, kept) = crate::domain::rules::split_off(c, count, at).map_err(refused)?;
        if let Some(kept) = kept {
            self.record_part(&r.idempotency_key, "kept", request_id, &kept)
                .await?;
        }
        self.retire(
            &c.id,
            &r.idempotency_key,
            "return",
            request_id,
            at,
            Some(refund),
        )
        .await
    }

    async fn found_sale(&self, r: &SaleRequest) -> Result<Option<Listed>, ProviderError> {
        let retired = self.retired_by(&r.idempotency_key, "sale").await?;
        if !retired.iter().any(|(id, _)| *id == r.commitment_id) {
            return Ok(None);
        }
        Ok(self
            .listing_rows(Some(&r.idempotency_key))
            .await?
            .into_iter()
            .next())
    }

    async fn listing_rows(&self, key: Option<&str>) -> Result<Vec<Listed>, ProviderError> {
        let rows = sql::fetch(
            &self.store,
            "SELECT idempotency_key, listing_id, request_id, source_id, listed_id, instances, \
             listed_hour, sold_hour FROM sim_listings \
             WHERE ($1 IS NULL OR idempotency_key = $1) ORDER BY listed_hour, idempotency_key",
            &[key.into()],
        )
        .await
        .map_err(ledger)?;
        let now = Hour::from_datetime(
            chrono::DateTime::from_timestamp_millis((self.clock)()).unwrap_or_default(),
        );
        rows.iter()
            .map(|row| {
                let sold = Hour(row.int(7).map_err(ledger)?);
                Ok(Listed {
                    idempotency_key: row.text(0).map_err(ledger)?,
                    listing_id: row.text(1).map_err(ledger)?,
                    request_id: row.text(2).map_err(ledger)?,
                    commitment_id: row.text(3).map_err(ledger)?,
                    listed_id: Some(row.text(4).map_err(ledger)?),
                    instances: u32::try_from(row.int(5).map_err(ledger)?).map_err(ledger)?,
                    listed_at: Hour(row.int(6).map_err(ledger)?),
                    sells_at: Some(sold),
                    state: if sold <= now { "closed" } else { "active" }.into(),
                })
            })
            .collect()
    }

    /// Lists instances of a Standard RI under AWS's rules (active for 30 days, a whole month
    /// left when it sells) and sells them as the backtest's Marketplace model does: after its
    /// delay, at the asking price less AWS's 12% fee. Until then they apply, and bill, as a
    /// ledger row of their own that ends at the sale; the rest of the RI is another row.
    async fn do_sale(&self, r: &SaleRequest) -> Result<Listed, ProviderError> {
        self.outage()?;
        if let Some(done) = self.found_sale(r).await? {
            return Ok(done);
        }
        let c = self
            .held(&r.commitment_id)
            .await?
            .ok_or_else(|| refused(format!("no held commitment {}", r.commitment_id)))?;
        let at = Hour::from_datetime(r.at);
        if c.provider != crate::domain::Provider::Aws
            || c.instrument != Instrument::StandardReservedInstance
        {
            return Err(refused(format!(
                "{} is a {} {}: only AWS Standard RIs are sold on the Marketplace",
                c.id, c.provider, c.instrument
            )));
        }
        if !c.is_active(at) {
            return Err(refused(format!("{} is not active at {}", c.id, r.at)));
        }
        if self
            .listing_rows(None)
            .await?
            .iter()
            .any(|l| l.listed_id.as_deref() == Some(c.id.as_str()) && l.sells_at > Some(at))
        {
            return Err(refused(format!("{} is already listed", c.id)));
        }
        let market = crate::domain::rules::Marketplace::default();
        let (sold, _) = market.listing(&c, at).map_err(refused)?;
        let (listed, kept) =
            crate::domain::rules::split_off(&c, r.instances, sold).map_err(refused)?;
        let request_id = operation_request_id("sale", &r.idempotency_key);
        let listed = self
            .record_part(&r.idempotency_key, "listed", &request_id, &listed)
            .await?;
        if let Some(kept) = kept {
            self.record_part(&r.idempotency_key, "kept", &request_id, &kept)
                .await?;
        }
        let proceeds = market.proceeds(r.price);
        let digest = hex::encode(Sha256::digest(r.idempotency_key.as_bytes()));
        sql::execute(
            &self.store,
            "INSERT INTO sim_listings (idempotency_key, listing_id, request_id, source_id, \
             listed_id, instances, listed_hour, sold_hour, price_micros, proceeds_micros) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (idempotency_key) DO NOTHING",
            &[
                r.idempotency_key.clone().into(),
                format!("sim-ril-{}", &digest[..16]).into(),
                request_id.clone().into(),
                c.id.clone().into(),
                listed.id.clone().into(),
                i64::from(r.instances).into(),
                at.0.into(),
                sold.0.into(),
                r.price.micros().into(),
                proceeds.micros().into(),
            ],
        )
        .await
        .map_err(ledger)?;
        self.retire(&c.id, &r.idempotency_key, "sale", &request_id, at, None)
            .await?;
        self.found_sale(r).await?.ok_or_else(|| {
            refused(format!(
                "{} was returned, exchanged or sold by another request",
                c.id
            ))
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
                "SELECT commitment FROM sim_commitments \
                 WHERE id NOT IN (SELECT commitment_id FROM sim_retired) \
                 ORDER BY purchased_at_ms, id",
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

    fn return_commitment<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Returned, ProviderError>> {
        Box::pin(self.do_return(request))
    }

    fn find_return<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Option<Returned>, ProviderError>> {
        Box::pin(async move {
            self.outage()?;
            self.found_return(request).await
        })
    }

    fn exchange_quote<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<ExchangeQuote, ProviderError>> {
        Box::pin(async move {
            self.outage()?;
            Ok(self.price_exchange(request).await?.0)
        })
    }

    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>> {
        Box::pin(self.do_exchange(request))
    }

    fn find_exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Option<Exchanged>, ProviderError>> {
        Box::pin(async move {
            self.outage()?;
            self.found_exchange(request).await
        })
    }

    fn sell<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Listed, ProviderError>> {
        Box::pin(self.do_sale(request))
    }

    fn find_sale<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Option<Listed>, ProviderError>> {
        Box::pin(async move {
            self.outage()?;
            self.found_sale(request).await
        })
    }

    fn listings(&self) -> BoxFuture<'_, Result<Vec<Listed>, ProviderError>> {
        Box::pin(async move {
            self.outage()?;
            self.listing_rows(None).await
        })
    }

    fn refunds<'a>(
        &'a self,
        held: &'a [Commitment],
    ) -> BoxFuture<'a, Result<Vec<(Hour, Money)>, ProviderError>> {
        let _ = held;
        Box::pin(async move {
            self.outage()?;
            self.refund_rows().await
        })
    }

    fn returns_reservations(&self) -> bool {
        true
    }

    fn sells_reservations(&self) -> bool {
        true
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
            (
                Instrument::ConvertibleReservedInstance,
                PaymentOption::PartialUpfront,
                "0.07",
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
        // A convertible RI of the next size up, for exchanges (twice the large's price).
        card.insert(
            Product {
                instance_type: "m6i.xlarge".into(),
                ..product.clone()
            },
            Offer {
                instrument: Instrument::ConvertibleReservedInstance,
                term: Some(Term::ONE_YEAR),
                payment: PaymentOption::PartialUpfront,
                effective_hourly_rate: "0.14".parse().unwrap(),
                upfront_share: "0.5".parse().unwrap(),
            },
        );
        card
    }

    async fn market() -> (tempfile::TempDir, SimMarket) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        (dir, SimMarket::new(store, rate_card()))
    }

    /// The market on SQLite and, when `COMMITD_TEST_DATABASE_URL` names a PostgreSQL server,
    /// on a throwaway database there too (the ledger's SQL must hold on both).
    async fn markets() -> Vec<(Option<tempfile::TempDir>, SimMarket, Option<String>)> {
        use sqlx::Connection as _;
        let (dir, m) = market().await;
        let mut out = vec![(Some(dir), m, None)];
        // Under COMMITD_TEST_REQUIRE_POSTGRES=1 (CI) a missing or unusable URL fails the test
        // instead of leaving it on SQLite only (the twin of tests/common/pg.rs).
        let required = std::env::var("COMMITD_TEST_REQUIRE_POSTGRES")
            .is_ok_and(|r| matches!(r.trim(), "1" | "true" | "yes"));
        let Some(admin) = std::env::var("COMMITD_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            assert!(
                !required,
                "COMMITD_TEST_REQUIRE_POSTGRES=1 but COMMITD_TEST_DATABASE_URL is not set"
            );
            return out;
        };
        let Some(slash) = admin.rfind('/').filter(|_| !admin.contains('?')) else {
            assert!(
                !required,
                "COMMITD_TEST_DATABASE_URL has query parameters: these tests need postgres://HOST/DB"
            );
            return out;
        };
        let db = format!(
            "commitd_sim_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let store = Store::connect(&format!("{}/{db}", &admin[..slash]))
            .await
            .unwrap();
        out.push((None, SimMarket::new(store, rate_card()), Some(db)));
        out
    }

    /// Closes the market's store and drops its throwaway PostgreSQL database, if any.
    async fn done(m: SimMarket, db: Option<String>) {
        use sqlx::Connection as _;
        m.store.close().await;
        if let (Some(db), Ok(admin)) = (db, std::env::var("COMMITD_TEST_DATABASE_URL")) {
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            // FORCE: the pool's connections may not all be gone yet. Cleanup only: a failure
            // here must not fail the test that already passed.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }

    /// A 1-year No Upfront compute savings plan request under key "k-1" (other tests).
    pub(crate) fn sp_request(hourly: &str) -> PurchaseRequest {
        sp(hourly, PaymentOption::NoUpfront)
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

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    fn convertible(key: &str, n: u32, start: Hour) -> PurchaseRequest {
        let mut r = sp("1", PaymentOption::PartialUpfront);
        r.idempotency_key = key.into();
        r.spec.instrument = Instrument::ConvertibleReservedInstance;
        r.spec.region = Some("eu-west-1".into());
        r.spec.instance_type = Some("m6i.large".into());
        r.spec.amount = CommitmentAmount::Instances(n);
        r.start = start;
        r
    }

    fn exchange(key: &str, sources: &[&str], n: u32, max: &str, when: &str) -> ExchangeRequest {
        let mut target = convertible("unused", n, Hour(0)).spec;
        target.instance_type = Some("m6i.xlarge".into());
        ExchangeRequest {
            idempotency_key: key.into(),
            source_ids: sources.iter().map(|s| s.to_string()).collect(),
            target,
            max_true_up: Money::parse(max).unwrap(),
            at: at(when),
        }
    }

    #[tokio::test]
    async fn returns_a_savings_plan_only_inside_the_window_and_once() {
        let (_d, m) = market().await;
        let mut req = sp("2.5", PaymentOption::NoUpfront);
        req.start = Hour::from_datetime(at("2026-03-05T00:00:00Z"));
        let plan = m.purchase(&req).await.unwrap().commitment;
        let mut late = sp("3", PaymentOption::NoUpfront);
        late.idempotency_key = "k-late".into();
        late.start = req.start;
        let kept = m.purchase(&late).await.unwrap().commitment;

        let ret = |id: &str, key: &str, when: &str| ReturnRequest {
            idempotency_key: key.into(),
            commitment_id: id.into(),
            account: None,
            instances: None,
            at: at(when),
        };
        let r = ret(&plan.id, "ret-1", "2026-03-06T12:00:00Z");
        assert!(m.find_return(&r).await.unwrap().is_none());
        let done = m.return_commitment(&r).await.unwrap();
        assert_eq!(done.commitment_id, plan.id);
        assert_eq!(done.state, "returned");
        // Asked again (a retry after a crash): the same return, nothing more happens.
        assert_eq!(m.return_commitment(&r).await.unwrap(), done);
        assert_eq!(m.find_return(&r).await.unwrap(), Some(done));
        let held = m.inventory().await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].id, kept.id);

        // Eight days later, and in the next month: refused, and the plan is still held.
        for (when, why) in [
            ("2026-03-13T01:00:00Z", "more than 7 days"),
            ("2026-04-01T00:00:00Z", "more than 7 days"),
        ] {
            let e = m
                .return_commitment(&ret(&kept.id, "ret-2", when))
                .await
                .unwrap_err();
            assert!(!e.retryable());
            assert!(e.to_string().contains(why), "{e}");
        }
        let e = m
            .return_commitment(&ret(&plan.id, "ret-3", "2026-03-06T13:00:00Z"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no held commitment"), "{e}");
        assert_eq!(m.inventory().await.unwrap().len(), 1);
    }

    #[test]
    fn the_return_window_needs_the_same_month_and_at_most_100_per_hour() {
        let c = |hourly: &str, start: &str| Commitment {
            id: "sp".into(),
            provider: Provider::Aws,
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            start: Hour::from_datetime(at(start)),
            end: Hour::from_datetime(at(start)).plus(8_760),
            region: None,
            instance_type: None,
            family: None,
            amount: CommitmentAmount::HourlySpend(Money::parse(hourly).unwrap()),
            hourly_cost: Money::parse(hourly).unwrap(),
            upfront: Money::ZERO,
        };
        let check = crate::domain::rules::check_savings_plan_return;
        assert!(check(
            &c("100", "2026-03-05T00:00:00Z"),
            at("2026-03-11T23:00:00Z")
        )
        .is_ok());
        let e = check(
            &c("100.000001", "2026-03-05T00:00:00Z"),
            at("2026-03-06T00:00:00Z"),
        )
        .unwrap_err();
        assert!(e.contains("at most 100"), "{e}");
        let e = check(&c("1", "2026-02-27T00:00:00Z"), at("2026-03-01T00:00:00Z")).unwrap_err();
        assert!(e.contains("same UTC month"), "{e}");
        // Not started yet (queued): withdrawn at any size, whenever.
        assert!(check(
            &c("500", "2026-04-05T00:00:00Z"),
            at("2026-03-04T00:00:00Z")
        )
        .is_ok());
        let mut ri = c("1", "2026-03-05T00:00:00Z");
        ri.instrument = Instrument::ConvertibleReservedInstance;
        assert!(check(&ri, at("2026-03-06T00:00:00Z")).is_err());
    }

    #[tokio::test]
    async fn exchanges_by_the_value_rule_and_refuses_a_true_up_above_the_approval() {
        let (_d, m) = market().await;
        let start = Hour::from_datetime(at("2026-01-01T00:00:00Z"));
        let src = m
            .purchase(&convertible("ri-1", 4, start))
            .await
            .unwrap()
            .commitment;
        let when = "2026-07-02T00:00:00Z";

        // One xlarge is worth less than four large: invalid, nothing changes.
        let small = exchange("ex-small", &[&src.id], 1, "1000000", when);
        let e = m.exchange(&small).await.unwrap_err();
        let ProviderError::ExchangeRefused { quote, .. } = &e else {
            panic!("{e}")
        };
        assert!(!quote.valid);
        assert!(
            quote
                .failure_reason
                .as_deref()
                .unwrap()
                .contains("less than"),
            "{quote:?}"
        );
        assert!(!e.retryable());
        assert_eq!(m.inventory().await.unwrap(), vec![src.clone()]);

        // Three xlarge (= six large) cost a true-up; approved one cent less, refused.
        let q = m
            .exchange_quote(&exchange("ex", &[&src.id], 3, "0", when))
            .await
            .unwrap();
        assert!(q.valid, "{q:?}");
        // Upfront of 3 xlarge over the hours left minus the sources' unused upfront, exactly:
        // 4392 hours left: 0.42 x 0.5 x 4392 - 0.28 x 0.5 x 4392 = 922.32 - 614.88.
        assert_eq!(q.payment_due, Money::parse("307.44").unwrap());
        let short = exchange("ex", &[&src.id], 3, "307.439999", when);
        assert!(matches!(
            m.exchange(&short).await.unwrap_err(),
            ProviderError::ExchangeRefused { .. }
        ));
        assert_eq!(m.inventory().await.unwrap(), vec![src.clone()]);

        let ok = exchange("ex", &[&src.id], 3, "307.44", when);
        assert!(m.find_exchange(&ok).await.unwrap().is_none());
        let done = m.exchange(&ok).await.unwrap();
        assert_eq!(done.source_ids, vec![src.id.clone()]);
        assert_eq!(done.target_ids.len(), 1);
        assert_eq!(done.quote.as_ref().unwrap().payment_due, q.payment_due);
        let held = m.inventory().await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].id, done.target_ids[0]);
        assert_eq!(held[0].amount, CommitmentAmount::Instances(3));
        assert_eq!(
            held[0].end, src.end,
            "the target ends when the source would have"
        );
        // Again with the same key: found, not exchanged twice.
        let again = m.exchange(&ok).await.unwrap();
        assert_eq!(again.target_ids, done.target_ids);
        assert_eq!(
            m.find_exchange(&ok).await.unwrap().unwrap().target_ids,
            done.target_ids
        );
        assert_eq!(m.inventory().await.unwrap().len(), 1);
    }

    /// A held reservation in the ledger, started at `start` (seeded directly: the test rate
    /// card has no Azure offers, and a sale needs an RI bought 30 days ago).
    async fn seed(
        m: &SimMarket,
        id: &str,
        instrument: Instrument,
        n: u32,
        start: Hour,
    ) -> Commitment {
        let provider = match instrument {
            Instrument::AzureReservation => Provider::Azure,
            _ => Provider::Aws,
        };
        let c = Commitment {
            id: id.into(),
            provider,
            instrument,
            term: Term::ONE_YEAR,
            payment: PaymentOption::PartialUpfront,
            start,
            end: start.plus(Term::ONE_YEAR.hours()),
            region: Some("eu-west-1".into()),
            instance_type: Some("m6i.large".into()),
            family: Some("m6i".into()),
            amount: CommitmentAmount::Instances(n),
            // 0.1 USD/h per instance, half of it upfront (438 USD per instance).
            hourly_cost: Money::parse("0.1").unwrap().times(i64::from(n)).unwrap(),
            upfront: Money::from_units(438).times(i64::from(n)).unwrap(),
        };
        assert!(m.record(&format!("seed-{id}"), "seed", &c).await.unwrap());
        c
    }

    #[tokio::test]
    async fn returns_part_of_an_azure_reservation_within_the_refund_cap_and_once() {
        for (_d, m, db) in markets().await {
            returns_part_of_an_azure_reservation(&m).await;
            done(m, db).await;
        }
    }

    async fn returns_part_of_an_azure_reservation(m: &SimMarket) {
        let start = Hour::from_datetime(at("2026-01-01T00:00:00Z"));
        seed(m, "az-1", Instrument::AzureReservation, 4, start).await;
        let when = at("2026-07-02T00:00:00Z");
        let hours_left = start.plus(8_760).since(Hour::from_datetime(when));
        let ret = |key: &str, n: u32| ReturnRequest {
            idempotency_key: key.into(),
            commitment_id: "az-1".into(),
            account: None,
            instances: Some(n),
            at: when,
        };
        assert!(m.find_return(&ret("r-1", 3)).await.unwrap().is_none());
        let done = m.return_commitment(&ret("r-1", 3)).await.unwrap();
        assert_eq!(done.commitment_id, "az-1");
        // Asked again under the same key: the same return, nothing more given back.
        assert_eq!(m.return_commitment(&ret("r-1", 3)).await.unwrap(), done);
        assert_eq!(m.find_return(&ret("r-1", 3)).await.unwrap(), Some(done));
        // The one instance kept stays held, as a reservation of its own with the same end.
        let held = m.inventory().await.unwrap();
        assert_eq!(held.len(), 1, "{held:#?}");
        assert_eq!(held[0].amount, CommitmentAmount::Instances(1));
        assert_eq!(held[0].hourly_cost, Money::parse("0.1").unwrap());
        assert_eq!(held[0].end, start.plus(8_760));
        // The refund counted against the cap: 3 x 0.1 USD/h x the hours left.
        let refunded = m.refunded_before(Hour::from_datetime(when)).await.unwrap();
        assert_eq!(
            refunded,
            Money::parse("0.3").unwrap().times(hours_left).unwrap()
        );
        assert_eq!(
            m.refunds(&[]).await.unwrap(),
            vec![(Hour::from_datetime(when), refunded)],
            "the market tells the planner"
        );
        // A savings plan is not returned in part; a gone reservation not at all.
        let mut plan = sp("1", PaymentOption::NoUpfront);
        plan.start = Hour::from_datetime(when);
        let plan = m.purchase(&plan).await.unwrap().commitment;
        let part = ReturnRequest {
            commitment_id: plan.id.clone(),
            ..ret("r-2", 1)
        };
        let e = m.return_commitment(&part).await.unwrap_err().to_string();
        assert!(e.contains("only reservations are returned in part"), "{e}");
        let e = m.return_commitment(&ret("r-3", 1)).await.unwrap_err();
        assert!(e.to_string().contains("no held commitment az-1"), "{e}");
        // Azure's rolling 50,000 USD cap: a refund beyond it is refused and changes nothing.
        let big = seed(m, "az-big", Instrument::AzureReservation, 60_000, start).await;
        let over = ReturnRequest {
            commitment_id: big.id.clone(),
            ..ret("r-4", 60_000)
        };
        let e = m.return_commitment(&over).await.unwrap_err().to_string();
        assert!(e.contains("exceeds Azure's 50000"), "{e}");
        assert!(m.held("az-big").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn lists_standard_ri_instances_once_and_sells_them_after_the_delay() {
        for (_d, m, db) in markets().await {
            lists_standard_ri_instances(&m).await;
            done(m, db).await;
        }
    }

    async fn lists_standard_ri_instances(m: &SimMarket) {
        let start = Hour::from_datetime(at("2026-01-01T00:00:00Z"));
        seed(m, "ri-1", Instrument::StandardReservedInstance, 5, start).await;
        let sale = |key: &str, n: u32, when: &str| SaleRequest {
            idempotency_key: key.into(),
            commitment_id: "ri-1".into(),
            account: None,
            instances: n,
            price: Money::from_units(100),
            at: at(when),
        };
        // AWS lets an RI be listed once it has been active 30 days.
        let e = m
            .sell(&sale("s-0", 2, "2026-01-20T00:00:00Z"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("under the 30 days"), "{e}");
        let s = sale("s-1", 2, "2026-03-01T00:00:00Z");
        assert!(m.find_sale(&s).await.unwrap().is_none());
        let listed = m.sell(&s).await.unwrap();
        assert_eq!(m.sell(&s).await.unwrap(), listed, "the same key lists once");
        assert_eq!(m.find_sale(&s).await.unwrap(), Some(listed.clone()));
        assert_eq!(listed.commitment_id, "ri-1");
        assert_eq!(listed.instances, 2);
        let sells = Hour::from_datetime(at("2026-03-15T00:00:00Z"));
        assert_eq!(listed.sells_at, Some(sells));
        // The listed instances apply until they sell; the other three stay held.
        let held = m.inventory().await.unwrap();
        assert_eq!(held.len(), 2, "{held:#?}");
        let part = |id: &str| held.iter().find(|c| c.id == id).unwrap().clone();
        let gone = part(listed.listed_id.as_deref().unwrap());
        assert_eq!(gone.amount, CommitmentAmount::Instances(2));
        assert_eq!(gone.end, sells);
        let kept = held.iter().find(|c| c.end != sells).unwrap();
        assert_eq!(kept.amount, CommitmentAmount::Instances(3));
        assert_eq!(m.listings().await.unwrap(), vec![listed.clone()]);
        // Listed instances are not listed again while the listing is open.
        let again = SaleRequest {
            commitment_id: gone.id.clone(),
            ..sale("s-2", 1, "2026-03-02T00:00:00Z")
        };
        let e = m.sell(&again).await.unwrap_err().to_string();
        assert!(e.contains("already listed"), "{e}");
        // Only AWS Standard RIs are sold.
        seed(m, "az-1", Instrument::AzureReservation, 1, start).await;
        let azure = SaleRequest {
            commitment_id: "az-1".into(),
            ..sale("s-3", 1, "2026-03-01T00:00:00Z")
        };
        let e = m.sell(&azure).await.unwrap_err().to_string();
        assert!(e.contains("only AWS Standard RIs"), "{e}");
    }
}
