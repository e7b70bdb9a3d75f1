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

use super::client::AwsClients;
use super::error::AwsError;
use super::execute::{
    api_commitment, partial_upfront_amount, ReservedInstancePurchase, SavingsPlanPurchase,
};
use super::inventory::Inventory;
use crate::domain::{Commitment, CommitmentAmount, Hour, Money, PaymentOption, Provider};
use crate::providers::{
    BoxFuture, CommitmentMarket, ProviderError, Purchase, PurchaseRequest, PurchaseSpec, Quote,
};
use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

const NAME: &str = "aws";

/// The AWS market of one account (one [`AwsClients`]).
pub struct AwsMarket {
    clients: AwsClients,
    clock: fn() -> DateTime<Utc>,
}

impl AwsMarket {
    pub fn new(clients: AwsClients) -> Self {
        AwsMarket {
            clients,
            clock: Utc::now,
        }
    }

    /// With a given clock (tests: the test server's frozen time).
    pub fn with_clock(clients: AwsClients, clock: fn() -> DateTime<Utc>) -> Self {
        AwsMarket { clients, clock }
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
}

impl CommitmentMarket for AwsOrganization {
    fn name(&self) -> &str {
        NAME
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
        // Reconciliation does not know which account a lost purchase went to: ask each.
        Box::pin(async move {
            for m in self.all() {
                if let Some(p) = m.find(key).await? {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        })
    }
}
