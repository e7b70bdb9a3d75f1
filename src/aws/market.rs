//! AWS as a [`CommitmentMarket`]: the executor's provider interface over the AWS client.
//!
//! * `inventory`: savings plans and RIs that cover usage now or are queued.
//! * `quote`: the offering to buy and its price. A savings plan costs its hourly commitment
//!   (rounded down to the API's 5 decimals), its upfront by payment option (Partial Upfront: the
//!   whole-dollar amount commitd sends; All Upfront: the total in cents, as AWS charges it); an
//!   RI costs the offering's amortized rate per instance. The upfront ceiling of a purchase is
//!   the approved upfront rounded up to the cent.
//! * `purchase`: looks the key up first (a purchase already made is returned, not repeated),
//!   refuses a price above the approval, then buys: CreateSavingsPlan with the key's client token
//!   (queued when the request starts in the future), or PurchaseReservedInstancesOffering (dry
//!   run first, `LimitPrice` = the approved upfront, tagged with the key).
//! * `find_by_idempotency_key`: the tag commitd writes on every purchase.
//! * `return_commitment`: ReturnSavingsPlan (window checked locally at the market's clock
//!   first, with a client token), then the plan described again for its new state.
//!   `find_return`: the plan's state is `returned` or `pending-return`.
//! * `exchange_quote` / `exchange`: the target spec becomes a convertible offering of the
//!   account's region; GetReservedInstancesExchangeQuote, refused unless valid and within the
//!   approved true-up, then AcceptReservedInstancesExchangeQuote (sent once: it has no client
//!   token). `find_exchange`: every source is `retired` before its end date, which only an
//!   exchange does; the targets are the active RIs of the target type and count ending when the
//!   latest source would have (AWS gives exchanged RIs the sources' end).
//! * `sell`: CreateReservedInstancesListing with the key's client token, priced for the whole
//!   months the RI has left; `find_sale` finds the listing by that token; `listings` describes
//!   them all. A listed RI stays in the inventory, whole, until AWS reports the sale.

use super::client::AwsClients;
use super::error::AwsError;
use super::execute::{
    api_commitment, partial_upfront_amount, ExchangeTarget, ReservedInstancePurchase,
    SavingsPlanPurchase,
};
use super::inventory::{Inventory, ReservedInstanceRecord};
use super::offerings::OfferingsCache;
use crate::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider,
};
use crate::providers::{
    check_exchange_quote, BoxFuture, CommitmentMarket, ExchangeQuote, ExchangeRequest, Exchanged,
    Listed, ProviderError, Purchase, PurchaseRequest, PurchaseSpec, Quote, ReturnRequest, Returned,
    SaleRequest,
};
use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

const NAME: &str = "aws";

fn listed(l: &super::execute::ListingRecord, key: &str, request_id: String) -> Listed {
    Listed {
        idempotency_key: key.to_string(),
        listing_id: l.id.clone(),
        request_id,
        commitment_id: l.reserved_instances_id.clone(),
        instances: l.available + l.sold,
        state: l.status.clone(),
        listed_at: l.created.map(Hour::from_datetime).unwrap_or(Hour(0)),
        // AWS does not say when a buyer will come; the listed instances stay in the RI.
        sells_at: None,
        listed_id: None,
    }
}

/// The AWS market of one account (one [`AwsClients`]).
pub struct AwsMarket {
    clients: AwsClients,
    clock: fn() -> DateTime<Utc>,
    /// Where the offerings' rate card is cached (refreshed once a day); None: no offers.
    offerings: Option<OfferingsCache>,
}

impl AwsMarket {
    pub fn new(clients: AwsClients) -> Self {
        AwsMarket {
            clients,
            clock: Utc::now,
            offerings: None,
        }
    }

    /// Prices plans from the offering APIs of the market's region, cached under `data_dir`
    /// (`aws-offerings/`, the cache `commitd offerings` uses) and refreshed once a day.
    pub fn with_offerings_cache(mut self, data_dir: &std::path::Path) -> Self {
        self.offerings = Some(OfferingsCache::new(data_dir));
        self
    }

    /// With a given clock (tests: the test server's frozen time).
    pub fn with_clock(clients: AwsClients, clock: fn() -> DateTime<Utc>) -> Self {
        AwsMarket {
            clients,
            clock,
            offerings: None,
        }
    }

    pub fn clients(&self) -> &AwsClients {
        &self.clients
    }

    async fn price(&self, spec: &PurchaseSpec) -> Result<Quote, ProviderError> {
        let no_offer = || ProviderError::NoOffer {
            provider: NAME.into(),
            what: spec.describe(),
        };
        if spec.provider != Provider::Aws {
            return Err(no_offer());
        }
        match spec.amount {
            CommitmentAmount::HourlySpend(hourly) => {
                let family_region = match (&spec.family, &spec.region) {
                    (Some(f), Some(r)) => Some((f.as_str(), r.as_str())),
                    _ => None,
                };
                let offering = self
                    .clients
                    .find_savings_plan_offering(
                        spec.instrument,
                        spec.term,
                        spec.payment,
                        family_region,
                    )
                    .await
                    .map_err(provider_error)?
                    .value
                    .ok_or_else(no_offer)?;
                let c = api_commitment(hourly).map_err(provider_error)?;
                let total = c * Decimal::from(spec.term.hours());
                let upfront = match spec.payment {
                    PaymentOption::NoUpfront => Decimal::ZERO,
                    PaymentOption::PartialUpfront => partial_upfront_amount(c, spec.term),
                    // AWS charges the upfront in cents: quote what it will record.
                    PaymentOption::AllUpfront => {
                        total.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
                    }
                };
                Ok(Quote {
                    hourly_cost: money(c)?,
                    upfront: money(upfront)?,
                    offering: offering.offering_id,
                })
            }
            CommitmentAmount::Instances(n) => {
                let (Some(region), Some(instance_type)) = (&spec.region, &spec.instance_type)
                else {
                    return Err(no_offer());
                };
                if *region != self.clients.region || n == 0 {
                    return Err(no_offer());
                }
                let os = spec.os.as_deref().unwrap_or("Linux");
                let tenancy = spec.tenancy.as_deref().unwrap_or("Shared");
                let offers = self
                    .clients
                    .reserved_instance_offerings(Some(instance_type))
                    .await
                    .map_err(provider_error)?
                    .value;
                let o = offers
                    .into_iter()
                    .find(|o| {
                        !o.zonal
                            && o.instrument == spec.instrument
                            && o.term == spec.term
                            && o.payment == spec.payment
                            && o.product.os == os
                            && o.product.tenancy == tenancy
                    })
                    .ok_or_else(no_offer)?;
                let count = Decimal::from(n);
                Ok(Quote {
                    hourly_cost: money(o.effective_hourly_rate() * count)?,
                    upfront: money(o.fixed_price * count)?,
                    offering: o.offering_id,
                })
            }
        }
    }

    async fn find(&self, key: &str) -> Result<Option<Purchase>, ProviderError> {
        let inv = self.clients.inventory().await.map_err(provider_error)?;
        let request_id = inv.request_id().unwrap_or_default().to_string();
        Ok(purchase_by_key(&inv.value, key).map(|commitment| Purchase {
            idempotency_key: key.to_string(),
            request_id,
            commitment,
        }))
    }

    async fn buy(&self, request: &PurchaseRequest) -> Result<Purchase, ProviderError> {
        if let Some(done) = self.find(&request.idempotency_key).await? {
            return Ok(done);
        }
        let spec = &request.spec;
        let quote = self.price(spec).await?;
        // The approval is exact (micro-dollars) while AWS charges an upfront in cents, so the
        // upfront ceiling is the approval rounded up to the cent: an all-upfront plan of
        // 0.70806 USD/h approved at 6202.6056 costs 6202.61, which is what was approved.
        let upfront_ceiling = Money::from_decimal(
            request
                .max_upfront
                .to_decimal()
                .round_dp_with_strategy(2, RoundingStrategy::AwayFromZero),
        )
        .unwrap_or(request.max_upfront);
        for (what, quoted, approved) in [
            ("hourly cost", quote.hourly_cost, request.max_hourly_cost),
            ("upfront", quote.upfront, upfront_ceiling),
        ] {
            if quoted > approved {
                return Err(ProviderError::PriceAboveApproval {
                    provider: NAME.into(),
                    what,
                    quoted,
                    approved,
                });
            }
        }
        let now = (self.clock)();
        let start = request.start.to_datetime();
        // A start in the future queues the purchase; otherwise it starts now.
        let purchase_time = (Hour::from_datetime(now) < request.start).then_some(start);
        let request_id = match spec.amount {
            CommitmentAmount::HourlySpend(hourly) => self
                .clients
                .create_savings_plan(&SavingsPlanPurchase {
                    idempotency_key: request.idempotency_key.clone(),
                    offering_id: quote.offering.clone(),
                    commitment: hourly,
                    payment: spec.payment,
                    term: spec.term,
                    purchase_time,
                })
                .await
                .map_err(provider_error)?
                .request_id()
                .map(str::to_string),
            CommitmentAmount::Instances(n) => {
                self.clients
                    .purchase_reserved_instances(&ReservedInstancePurchase {
                        idempotency_key: request.idempotency_key.clone(),
                        offering_id: quote.offering.clone(),
                        count: n,
                        limit_price: Some(request.max_upfront),
                        purchase_time,
                    })
                    .await
                    .map_err(provider_error)?
                    .value
                    .purchase_request_id
            }
        };
        // Read back what AWS recorded (start, end, exact amounts), by the key just written.
        let found = self.find(&request.idempotency_key).await?.ok_or_else(|| {
            ProviderError::Unavailable {
                provider: NAME.into(),
                message: format!(
                    "bought under key {} but the inventory does not show it yet",
                    request.idempotency_key
                ),
            }
        })?;
        Ok(Purchase {
            request_id: request_id.unwrap_or(found.request_id),
            ..found
        })
    }
}

/// A plan given back: returned (or on its way), or a queued plan deleted before it started.
const RETURNED_STATES: [&str; 3] = ["returned", "pending-return", "queued-deleted"];

/// The return `r` asked for, if the plan's `(state, request id)` shows it already happened.
fn given_back(r: &ReturnRequest, state: Option<&(String, Option<String>)>) -> Option<Returned> {
    let (state, rid) = state.filter(|(s, _)| RETURNED_STATES.contains(&s.as_str()))?;
    Some(Returned {
        idempotency_key: r.idempotency_key.clone(),
        commitment_id: r.commitment_id.clone(),
        request_id: rid.clone().unwrap_or_default(),
        state: state.clone(),
    })
}

impl AwsMarket {
    /// The plan's state if this account holds it (None: another account's, or unknown).
    async fn plan_state(
        &self,
        id: &str,
    ) -> Result<Option<(String, Option<String>)>, ProviderError> {
        let described = self
            .clients
            .describe_savings_plans(&[id.to_string()])
            .await
            .map_err(provider_error)?;
        let rid = described.request_id().map(str::to_string);
        Ok(described
            .value
            .0
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| (p.state, rid)))
    }

    async fn found_return(&self, r: &ReturnRequest) -> Result<Option<Returned>, ProviderError> {
        let state = self.plan_state(&r.commitment_id).await?;
        Ok(given_back(r, state.as_ref()))
    }

    async fn give_back(&self, r: &ReturnRequest) -> Result<Returned, ProviderError> {
        if r.instances.is_some() {
            return Err(ProviderError::Refused {
                provider: "aws".into(),
                message: format!(
                    "{}: AWS returns whole savings plans, not instances of a reservation",
                    r.commitment_id
                ),
            });
        }
        let state = self.plan_state(&r.commitment_id).await?;
        if let Some(done) = given_back(r, state.as_ref()) {
            return Ok(done);
        }
        // A queued plan has not started: it is withdrawn (DeleteQueuedSavingsPlan, free at
        // any time before its start), not returned. Otherwise AWS judges the return window by
        // its own clock: so does the local check.
        let request_id = if state.is_some_and(|(s, _)| s == "queued") {
            self.clients
                .delete_queued_savings_plan(&r.commitment_id)
                .await
                .map(|c| c.request_id().map(str::to_string))
        } else {
            self.clients
                .return_savings_plan(&r.commitment_id, (self.clock)())
                .await
                .map(|c| c.request_id().map(str::to_string))
        }
        .map_err(provider_error)?
        .unwrap_or_default();
        // What AWS now says (pending-return, then returned); the return itself is done.
        let state = match self.plan_state(&r.commitment_id).await? {
            Some((state, _)) => state,
            None => "returned".into(),
        };
        Ok(Returned {
            idempotency_key: r.idempotency_key.clone(),
            commitment_id: r.commitment_id.clone(),
            request_id,
            state,
        })
    }

    /// The exchange's target as AWS takes it: a convertible offering of this region.
    async fn targets(&self, spec: &PurchaseSpec) -> Result<Vec<ExchangeTarget>, ProviderError> {
        let refused = |message: String| ProviderError::Refused {
            provider: NAME.into(),
            message,
        };
        if spec.instrument != Instrument::ConvertibleReservedInstance {
            return Err(refused(format!(
                "an exchange target must be a convertible RI, not {}",
                spec.describe()
            )));
        }
        let CommitmentAmount::Instances(count) = spec.amount else {
            return Err(refused(format!(
                "an exchange target is a number of instances, not {}",
                spec.describe()
            )));
        };
        let quote = self.price(spec).await?;
        Ok(vec![ExchangeTarget {
            offering_id: quote.offering,
            count,
        }])
    }

    async fn quote_exchange(&self, r: &ExchangeRequest) -> Result<ExchangeQuote, ProviderError> {
        let targets = self.targets(&r.target).await?;
        let quoted = self
            .clients
            .exchange_quote(&r.source_ids, &targets)
            .await
            .map_err(provider_error)?;
        let rid = quoted.request_id().map(str::to_string);
        let q = quoted.value;
        Ok(ExchangeQuote {
            valid: q.valid,
            failure_reason: q.failure_reason,
            payment_due: q.payment_due,
            source_remaining_value: q.source_remaining_value,
            target_value: q.target_total_value,
            request_id: rid,
        })
    }

    /// The listing made under `r`'s key, found by its client token.
    async fn found_sale(&self, r: &SaleRequest) -> Result<Option<Listed>, ProviderError> {
        let token = super::execute::client_token(&r.idempotency_key);
        let all = self
            .clients
            .describe_reserved_instances_listings(Some(&r.commitment_id))
            .await
            .map_err(provider_error)?;
        let rid = all.request_id().unwrap_or_default().to_string();
        Ok(all
            .value
            .iter()
            .find(|l| l.client_token.as_deref() == Some(token.as_str()))
            .map(|l| listed(l, &r.idempotency_key, rid.clone())))
    }

    /// CreateReservedInstancesListing for the whole months the RI has left at the market's
    /// clock (AWS checks its own rules again: Standard, 30 days active, a month left).
    async fn list(&self, r: &SaleRequest) -> Result<Listed, ProviderError> {
        if let Some(done) = self.found_sale(r).await? {
            return Ok(done);
        }
        let ris = self
            .clients
            .describe_reserved_instances()
            .await
            .map_err(provider_error)?;
        let ri = ris
            .value
            .iter()
            .find(|ri| ri.id == r.commitment_id)
            .ok_or_else(|| ProviderError::Refused {
                provider: NAME.into(),
                message: format!("no Reserved Instances {} in this account", r.commitment_id),
            })?;
        let months =
            (ri.end - (self.clock)()).num_hours() / crate::backtest::Marketplace::MONTH_HOURS;
        let made = self
            .clients
            .create_reserved_instances_listing(
                &r.commitment_id,
                r.instances,
                r.price,
                months,
                &r.idempotency_key,
            )
            .await
            .map_err(provider_error)?;
        let rid = made.request_ids.join(",");
        Ok(listed(&made.value, &r.idempotency_key, rid))
    }

    async fn listing_records(&self) -> Result<Vec<Listed>, ProviderError> {
        let all = self
            .clients
            .describe_reserved_instances_listings(None)
            .await
            .map_err(provider_error)?;
        let rid = all.request_id().unwrap_or_default().to_string();
        Ok(all
            .value
            .iter()
            .map(|l| {
                listed(
                    l,
                    l.client_token.as_deref().unwrap_or_default(),
                    rid.clone(),
                )
            })
            .collect())
    }

    /// The sources of `r` in this account (empty: none of them is here).
    async fn sources(
        &self,
        r: &ExchangeRequest,
    ) -> Result<
        (
            Vec<ReservedInstanceRecord>,
            Vec<ReservedInstanceRecord>,
            Option<String>,
        ),
        ProviderError,
    > {
        let all = self
            .clients
            .describe_reserved_instances()
            .await
            .map_err(provider_error)?;
        let rid = all.request_id().map(str::to_string);
        let (sources, others) = all
            .value
            .into_iter()
            .partition(|ri| r.source_ids.contains(&ri.id));
        Ok((sources, others, rid))
    }

    async fn found_exchange(
        &self,
        r: &ExchangeRequest,
    ) -> Result<Option<Exchanged>, ProviderError> {
        let (sources, others, rid) = self.sources(r).await?;
        let now = (self.clock)();
        // Retired before its end date: only an exchange does that to an RI.
        let exchanged = |ri: &ReservedInstanceRecord| ri.state == "retired" && ri.end > now;
        if sources.len() != r.source_ids.len() || !sources.iter().all(exchanged) {
            return Ok(None);
        }
        let end = sources.iter().map(|s| s.end).max();
        let target_ids = match (&r.target.instance_type, r.target.amount) {
            (Some(t), CommitmentAmount::Instances(n)) => others
                .iter()
                .filter(|ri| {
                    ri.instance_type == *t
                        && ri.count == n
                        && Some(ri.end) == end
                        && ri.is_covering()
                })
                .map(|ri| ri.id.clone())
                .collect(),
            _ => Vec::new(),
        };
        Ok(Some(Exchanged {
            idempotency_key: r.idempotency_key.clone(),
            exchange_id: None,
            request_id: rid.unwrap_or_default(),
            source_ids: r.source_ids.clone(),
            target_ids,
            quote: None,
        }))
    }

    async fn swap(&self, r: &ExchangeRequest) -> Result<Exchanged, ProviderError> {
        if let Some(done) = self.found_exchange(r).await? {
            return Ok(done);
        }
        let quote = self.quote_exchange(r).await?;
        check_exchange_quote(NAME, &quote, r.max_true_up)?;
        let targets = self.targets(&r.target).await?;
        let called = self
            .clients
            .exchange_reserved_instances(&r.source_ids, &targets, r.max_true_up)
            .await
            .map_err(provider_error)?;
        let request_id = called.request_id().unwrap_or_default().to_string();
        // The client quotes again right before accepting: that quote (its request id first)
        // is the one accepted, and the one the audit log records.
        let quote_rid = (called.request_ids.len() > 1).then(|| called.request_ids[0].clone());
        let outcome = called.value;
        // The new RIs, for the audit log; the exchange is done even if they are not listed yet.
        let target_ids = match self.found_exchange(r).await {
            Ok(Some(found)) => found.target_ids,
            _ => Vec::new(),
        };
        let accepted = ExchangeQuote {
            valid: outcome.quote.valid,
            failure_reason: outcome.quote.failure_reason,
            payment_due: outcome.quote.payment_due,
            source_remaining_value: outcome.quote.source_remaining_value,
            target_value: outcome.quote.target_total_value,
            request_id: quote_rid.or(quote.request_id),
        };
        Ok(Exchanged {
            idempotency_key: r.idempotency_key.clone(),
            exchange_id: Some(outcome.exchange_id),
            request_id,
            source_ids: r.source_ids.clone(),
            target_ids,
            quote: Some(accepted),
        })
    }
}

/// The commitment bought under `key`: a savings plan or RI tagged with it.
pub fn purchase_by_key(inv: &Inventory, key: &str) -> Option<Commitment> {
    inv.savings_plan_by_key(key)
        .map(|p| p.to_commitment())
        .or_else(|| {
            inv.reserved_instances
                .iter()
                .find(|r| r.idempotency_key() == Some(key))
                .map(|r| r.to_commitment())
        })
}

fn money(d: Decimal) -> Result<Money, ProviderError> {
    Money::from_decimal(d).ok_or_else(|| ProviderError::Refused {
        provider: NAME.into(),
        message: format!("amount {d} is out of range"),
    })
}

/// Final answers become `Refused`; anything that may succeed later (throttling, 5xx, a lost
/// answer, a deadline) becomes `Unavailable`, which the executor reconciles and retries.
pub fn provider_error(e: AwsError) -> ProviderError {
    let message = e.to_string();
    if e.is_transient() {
        ProviderError::Unavailable {
            provider: NAME.into(),
            message,
        }
    } else {
        ProviderError::Refused {
            provider: NAME.into(),
            message,
        }
    }
}

impl CommitmentMarket for AwsMarket {
    fn name(&self) -> &str {
        NAME
    }

    fn offers(
        &self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Option<crate::domain::RateCard>, ProviderError>> {
        Box::pin(async move {
            let Some(cache) = &self.offerings else {
                return Ok(None);
            };
            let found = cache
                .get_or_refresh(&self.clients, None, now)
                .await
                .map_err(|e| ProviderError::Unavailable {
                    provider: NAME.into(),
                    message: format!("offerings: {e}"),
                })?;
            Ok(Some(found.card.card()))
        })
    }

    fn usage(
        &self,
        now: DateTime<Utc>,
        days: u32,
    ) -> BoxFuture<'_, Result<Option<crate::providers::UsageHistory>, ProviderError>> {
        Box::pin(async move {
            let called = self
                .clients
                .usage_history(now, i64::from(days))
                .await
                .map_err(provider_error)?;
            let (model, notes) = super::usage::usage_model(&called.value).map_err(|message| {
                ProviderError::Unavailable {
                    provider: NAME.into(),
                    message,
                }
            })?;
            Ok(Some(crate::providers::UsageHistory {
                model,
                notes,
                request_ids: called.request_ids,
            }))
        })
    }

    fn inventory(&self) -> BoxFuture<'_, Result<Vec<Commitment>, ProviderError>> {
        Box::pin(async move {
            let inv = self.clients.inventory().await.map_err(provider_error)?;
            Ok(inv.value.commitments())
        })
    }

    fn quote<'a>(&'a self, spec: &'a PurchaseSpec) -> BoxFuture<'a, Result<Quote, ProviderError>> {
        Box::pin(self.price(spec))
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
        Box::pin(self.find(key))
    }

    fn return_commitment<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Returned, ProviderError>> {
        Box::pin(self.give_back(request))
    }

    fn find_return<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Option<Returned>, ProviderError>> {
        Box::pin(self.found_return(request))
    }

    fn exchange_quote<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<ExchangeQuote, ProviderError>> {
        Box::pin(self.quote_exchange(request))
    }

    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>> {
        Box::pin(self.swap(request))
    }

    fn find_exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Option<Exchanged>, ProviderError>> {
        Box::pin(self.found_exchange(request))
    }

    fn sell<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Listed, ProviderError>> {
        Box::pin(self.list(request))
    }

    fn find_sale<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Option<Listed>, ProviderError>> {
        Box::pin(self.found_sale(request))
    }

    fn listings(&self) -> BoxFuture<'_, Result<Vec<Listed>, ProviderError>> {
        Box::pin(self.listing_records())
    }

    fn sells_reservations(&self) -> bool {
        true
    }
}

/// The AWS market of an organization: the payer account and linked accounts, each reached
/// with its own clients (its own assumed role). A purchase goes to the account its spec names
/// (`account` None: the payer); the inventory is the union of all accounts.
pub struct AwsOrganization {
    payer: AwsMarket,
    linked: Vec<(String, AwsMarket)>,
}

impl AwsOrganization {
    pub fn new(payer: AwsMarket, linked: Vec<(String, AwsMarket)>) -> Self {
        AwsOrganization { payer, linked }
    }

    fn account(&self, account: Option<&str>) -> Result<&AwsMarket, ProviderError> {
        match account {
            None => Ok(&self.payer),
            Some(a) => self
                .linked
                .iter()
                .find(|(id, _)| id == a)
                .map(|(_, m)| m)
                .ok_or_else(|| ProviderError::Refused {
                    provider: NAME.into(),
                    message: format!(
                        "account {a} is not configured: add [aws.accounts.{a}] with the role to assume there"
                    ),
                }),
        }
    }

    fn all(&self) -> impl Iterator<Item = &AwsMarket> {
        std::iter::once(&self.payer).chain(self.linked.iter().map(|(_, m)| m))
    }

    /// The first account whose answer is Some: reconciliation after a crash does not know
    /// which account a lost purchase, return or exchange went to, so it asks each in turn.
    async fn first_found<'a, T>(
        &'a self,
        ask: impl Fn(&'a AwsMarket) -> BoxFuture<'a, Result<Option<T>, ProviderError>>,
    ) -> Result<Option<T>, ProviderError> {
        for m in self.all() {
            if let Some(found) = ask(m).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The account whose savings plans include the one to return: the request's account when
    /// it names one, otherwise whichever account describes the plan.
    async fn holder_of_plan(&self, r: &ReturnRequest) -> Result<&AwsMarket, ProviderError> {
        if r.account.is_some() {
            return self.account(r.account.as_deref());
        }
        for m in self.all() {
            if m.plan_state(&r.commitment_id).await?.is_some() {
                return Ok(m);
            }
        }
        Err(ProviderError::Refused {
            provider: NAME.into(),
            message: format!("no account holds savings plan {}", r.commitment_id),
        })
    }
}

impl CommitmentMarket for AwsOrganization {
    fn name(&self) -> &str {
        NAME
    }

    /// The payer's offers: prices are the same in every account of the organization.
    fn offers(
        &self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Option<crate::domain::RateCard>, ProviderError>> {
        self.payer.offers(now)
    }

    /// The payer's Cost Explorer sees the whole organization (consolidated billing).
    fn usage(
        &self,
        now: DateTime<Utc>,
        days: u32,
    ) -> BoxFuture<'_, Result<Option<crate::providers::UsageHistory>, ProviderError>> {
        self.payer.usage(now, days)
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
        Box::pin(async move { self.account(spec.account.as_deref())?.price(spec).await })
    }

    fn purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
    ) -> BoxFuture<'a, Result<Purchase, ProviderError>> {
        Box::pin(async move {
            self.account(request.spec.account.as_deref())?
                .buy(request)
                .await
        })
    }

    fn find_by_idempotency_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Purchase>, ProviderError>> {
        Box::pin(self.first_found(move |m| Box::pin(m.find(key))))
    }

    fn return_commitment<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Returned, ProviderError>> {
        Box::pin(async move { self.holder_of_plan(request).await?.give_back(request).await })
    }

    fn find_return<'a>(
        &'a self,
        request: &'a ReturnRequest,
    ) -> BoxFuture<'a, Result<Option<Returned>, ProviderError>> {
        Box::pin(self.first_found(move |m| Box::pin(m.found_return(request))))
    }

    fn exchange_quote<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<ExchangeQuote, ProviderError>> {
        Box::pin(async move {
            self.account(request.target.account.as_deref())?
                .quote_exchange(request)
                .await
        })
    }

    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>> {
        // RIs are exchanged in the account that holds them: the target spec's account.
        Box::pin(async move {
            self.account(request.target.account.as_deref())?
                .swap(request)
                .await
        })
    }

    fn find_exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> BoxFuture<'a, Result<Option<Exchanged>, ProviderError>> {
        Box::pin(self.first_found(move |m| Box::pin(m.found_exchange(request))))
    }

    fn sell<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Listed, ProviderError>> {
        Box::pin(async move {
            self.account(request.account.as_deref())?
                .list(request)
                .await
        })
    }

    fn find_sale<'a>(
        &'a self,
        request: &'a SaleRequest,
    ) -> BoxFuture<'a, Result<Option<Listed>, ProviderError>> {
        Box::pin(self.first_found(move |m| Box::pin(m.found_sale(request))))
    }

    fn listings(&self) -> BoxFuture<'_, Result<Vec<Listed>, ProviderError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for m in self.all() {
                all.extend(m.listing_records().await?);
            }
            Ok(all)
        })
    }

    fn sells_reservations(&self) -> bool {
        true
    }
}
