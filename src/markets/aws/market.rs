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
//!   run first, `LimitPrice` = the approved upfront, tagged with the key). Once AWS accepted
//!   the purchase nothing is reported as an error: a failed tag or read-back still returns the
//!   purchase (read back by id, else as requested).
//! * `find_by_idempotency_key`: the tag commitd writes on every purchase.
//! * `find_purchase`: the key, then (RIs) the one untagged RI that matches the request since
//!   the attempt began ([`matches_purchase`], [`RECONCILE_SKEW_SECONDS`]), claimed with the
//!   key; several are [`Found::Unclear`]. `deduplicates`: [`aws_deduplicates`].
//! * Errors: [`provider_error`] says, per operation, whether an error is an unknown outcome
//!   (the call may have acted and AWS does not deduplicate it), retryable, or final.
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
use super::error::{resend_rule, AwsError, Resend};
use super::execute::{
    api_commitment, partial_upfront_amount, ExchangeTarget, ReservedInstancePurchase,
    SavingsPlanPurchase,
};
use super::inventory::{Inventory, ReservedInstanceRecord};
use super::offerings::OfferingsCache;
use crate::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider,
};
use crate::markets::{
    check_exchange_quote, BoxFuture, CommitmentMarket, ExchangeQuote, ExchangeRequest, Exchanged,
    Found, Listed, Operation, ProviderError, Purchase, PurchaseRequest, PurchaseSpec, Quote,
    ReturnRequest, Returned, SaleRequest,
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
        let key = &request.idempotency_key;
        // What the purchase is, before AWS says more: the fallback when reading it back fails.
        let requested = |id: String| {
            requested_commitment(
                id,
                spec,
                &quote,
                Hour::from_datetime(purchase_time.unwrap_or(now)),
            )
        };
        // Every error below the buying call is after AWS accepted the purchase: the purchase
        // is reported (with its id and request id) whatever fails afterwards, because an error
        // here would make the executor take a purchase that happened for one that did not.
        match spec.amount {
            CommitmentAmount::HourlySpend(hourly) => {
                let called = self
                    .clients
                    .create_savings_plan(&SavingsPlanPurchase {
                        idempotency_key: key.clone(),
                        offering_id: quote.offering.clone(),
                        commitment: hourly,
                        payment: spec.payment,
                        term: spec.term,
                        purchase_time,
                    })
                    .await
                    .map_err(provider_error)?;
                let request_id = called.request_id().map(str::to_string);
                let plan_id = called.value;
                // Read back what AWS recorded (start, end, exact amounts); the plan carries
                // the key from the CreateSavingsPlan request itself.
                let found = match self.find(key).await {
                    Ok(Some(found)) if found.commitment.id == plan_id => Some(found),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(savings_plan_id = %plan_id, error = %e, "bought, but could not read the plan back; reporting it as requested");
                        None
                    }
                };
                Ok(match found {
                    Some(found) => Purchase {
                        request_id: request_id.unwrap_or(found.request_id),
                        ..found
                    },
                    None => Purchase {
                        idempotency_key: key.clone(),
                        request_id: request_id.unwrap_or_default(),
                        commitment: requested(plan_id),
                    },
                })
            }
            CommitmentAmount::Instances(n) => {
                let called = self
                    .clients
                    .purchase_reserved_instances(&ReservedInstancePurchase {
                        idempotency_key: key.clone(),
                        offering_id: quote.offering.clone(),
                        count: n,
                        limit_price: Some(request.max_upfront),
                        purchase_time,
                    })
                    .await
                    .map_err(provider_error)?;
                let bought = called.value;
                let id = bought.reserved_instances_id;
                // Read back by id, not by tag: the tag may have failed (bought.tagged).
                let recorded = match self
                    .clients
                    .describe_reserved_instances_by_id(std::slice::from_ref(&id))
                    .await
                {
                    Ok(d) => d.value.into_iter().find(|ri| ri.id == id),
                    Err(e) => {
                        tracing::warn!(reserved_instances_id = %id, error = %e, "bought, but could not read the Reserved Instances back; reporting them as requested");
                        None
                    }
                };
                Ok(Purchase {
                    idempotency_key: key.clone(),
                    request_id: bought.purchase_request_id.unwrap_or_default(),
                    commitment: match recorded {
                        Some(ri) => ri.to_commitment(),
                        None => requested(id),
                    },
                })
            }
        }
    }

    /// The purchase `r` asked for, if AWS shows it: by the key's tag first; then, for Reserved
    /// Instances (whose key is only a tag written after the purchase, so a lost answer or a
    /// failed CreateTags leaves them untagged), the untagged RIs that match what the request
    /// would have created since `since` ([`matches_purchase`]). Exactly one: it is this
    /// purchase, and it is tagged with the key so that no other proposal can claim it (a tag
    /// failure is logged: the purchase is still found). Several: [`Found::Unclear`], naming
    /// them. RIs tagged with another key are never claimed.
    async fn found_purchase(
        &self,
        r: &PurchaseRequest,
        since: DateTime<Utc>,
    ) -> Result<Found<Purchase>, ProviderError> {
        let key = &r.idempotency_key;
        if let CommitmentAmount::HourlySpend(_) = r.spec.amount {
            // CreateSavingsPlan writes the key in the same request that buys: no tag, no plan.
            return Ok(self.find(key).await?.into());
        }
        let all = self
            .clients
            .describe_reserved_instances()
            .await
            .map_err(provider_error)?;
        let request_id = all.request_id().unwrap_or_default().to_string();
        let purchase = |ri: &ReservedInstanceRecord| Purchase {
            idempotency_key: key.clone(),
            request_id: request_id.clone(),
            commitment: ri.to_commitment(),
        };
        if let Some(ri) = all
            .value
            .iter()
            .find(|ri| ri.idempotency_key() == Some(key))
        {
            return Ok(Found::Yes(purchase(ri)));
        }
        let candidates: Vec<&ReservedInstanceRecord> = all
            .value
            .iter()
            .filter(|ri| {
                ri.idempotency_key().is_none()
                    && matches_purchase(ri, r, since, &self.clients.region)
            })
            .collect();
        match settle_untagged(&candidates, r, since) {
            Found::Yes(ri) => {
                if let Err(e) = self.clients.tag_reserved_instances(&ri.id, key).await {
                    tracing::warn!(reserved_instances_id = %ri.id, key = %key, error = %e, "found the untagged purchase, but could not tag it with its key");
                }
                Ok(Found::Yes(purchase(ri)))
            }
            Found::No => Ok(Found::No),
            Found::Unclear(why) => Ok(Found::Unclear(why)),
        }
    }
}

/// What the untagged RIs matching `r` since `since` establish: none, no purchase; exactly one
/// that is active, queued or payment-pending, this purchase; one in another state
/// (payment-failed) or several, a person must look (the text names each id, state and start).
fn settle_untagged<'a>(
    candidates: &[&'a ReservedInstanceRecord],
    r: &PurchaseRequest,
    since: DateTime<Utc>,
) -> Found<&'a ReservedInstanceRecord> {
    let described = |ris: &[&ReservedInstanceRecord]| {
        ris.iter()
            .map(|ri| {
                format!(
                    "{} ({}, started {})",
                    ri.id,
                    ri.state,
                    ri.start.to_rfc3339()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match candidates {
        [] => Found::No,
        [ri] if ri.is_covering() => Found::Yes(ri),
        [ri] => Found::Unclear(format!(
            "one untagged Reserved Instance matches {} since {}, but it is not active or queued: {}",
            r.spec.describe(),
            since.to_rfc3339(),
            described(&[*ri])
        )),
        many => Found::Unclear(format!(
            "{} untagged Reserved Instances match {} since {}: {}; which (if any) this purchase made cannot be told from AWS",
            many.len(),
            r.spec.describe(),
            since.to_rfc3339(),
            described(many)
        )),
    }
}

/// How long before the attempt began an RI's start may lie and still be the attempt's
/// purchase: 5 minutes. `since` comes from commitd's clock and the RI's start from AWS's; AWS
/// refuses SigV4-signed requests from a clock more than 5 minutes off its own
/// (RequestTimeTooSkewed), so any host whose purchase AWS accepted is within 5 minutes of AWS.
pub const RECONCILE_SKEW_SECONDS: i64 = 300;

/// Whether `ri` is what `request` would have created if AWS applied it at or after `since`
/// (less [`RECONCILE_SKEW_SECONDS`]): the instance type and count, a regional RI (commitd buys
/// no zonal ones) of the request's region (`region`: the account's, when the spec names none),
/// the offering class, term, payment option, platform and tenancy. A queued purchase starts at
/// the request's start, which is after `since` too. DescribeReservedInstances does not name the
/// offering id, so the offering is matched by those fields.
pub fn matches_purchase(
    ri: &ReservedInstanceRecord,
    request: &PurchaseRequest,
    since: DateTime<Utc>,
    region: &str,
) -> bool {
    let spec = &request.spec;
    let CommitmentAmount::Instances(count) = spec.amount else {
        return false;
    };
    ri.count == count
        && spec.instance_type.as_deref() == Some(ri.instance_type.as_str())
        && ri.availability_zone.is_none()
        && ri.region == spec.region.as_deref().unwrap_or(region)
        && ri.instrument == spec.instrument
        && ri.term == spec.term
        && ri.payment == spec.payment
        && ri.os == spec.os.as_deref().unwrap_or("Linux")
        && ri.tenancy == spec.tenancy.as_deref().unwrap_or("Shared")
        && ri.start >= since - chrono::Duration::seconds(RECONCILE_SKEW_SECONDS)
}

/// The commitment a purchase made, as the request and the quote describe it: what `buy`
/// reports when AWS accepted the purchase but reading it back failed. `start` is the purchase
/// time sent (queued) or the market's hour of the purchase.
fn requested_commitment(id: String, spec: &PurchaseSpec, quote: &Quote, start: Hour) -> Commitment {
    let family = spec
        .family
        .clone()
        .or_else(|| spec.instance_type.as_deref().map(super::convert::family_of));
    Commitment {
        id,
        provider: Provider::Aws,
        instrument: spec.instrument,
        term: spec.term,
        payment: spec.payment,
        start,
        end: start.plus(spec.term.hours()),
        // A Compute plan applies in every region.
        region: match spec.instrument {
            Instrument::ComputeSavingsPlan => None,
            _ => spec.region.clone(),
        },
        instance_type: spec.instance_type.clone(),
        family,
        amount: match spec.amount {
            // The commitment AWS was sent: rounded down to 5 decimals, as the quote says.
            CommitmentAmount::HourlySpend(_) => CommitmentAmount::HourlySpend(quote.hourly_cost),
            instances => instances,
        },
        hourly_cost: quote.hourly_cost,
        upfront: quote.upfront,
    }
}

/// Whether AWS deduplicates a resent `operation` of `spec`: the rule ([`resend_rule`]) of the
/// call that acts. A savings plan purchase, a return (ReturnSavingsPlan with a client token,
/// or DeleteQueuedSavingsPlan, idempotent by the plan's state) and a Marketplace listing
/// (client token) are; an RI purchase and an exchange accept (no client token) are not.
pub fn aws_deduplicates(operation: &Operation, spec: &PurchaseSpec) -> bool {
    let call = match operation {
        Operation::Purchase => match spec.amount {
            CommitmentAmount::Instances(_) => "PurchaseReservedInstancesOffering",
            CommitmentAmount::HourlySpend(_) => "CreateSavingsPlan",
        },
        Operation::Return { .. } => "ReturnSavingsPlan",
        Operation::Sell { .. } => "CreateReservedInstancesListing",
        Operation::Exchange { .. } => "AcceptReservedInstancesExchangeQuote",
    };
    resend_rule(call) == Resend::Deduplicated
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
        let withdrawn = state.is_some_and(|(s, _)| s == "queued");
        let request_id = if withdrawn {
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
        // What AWS now says (pending-return, then returned). The return itself is done, so a
        // failure to read it back is logged and the state inferred, never reported as an error.
        let state = match self.plan_state(&r.commitment_id).await {
            Ok(Some((state, _))) => state,
            Ok(None) => "returned".into(),
            Err(e) => {
                tracing::warn!(savings_plan_id = %r.commitment_id, error = %e, "given back, but could not read the plan's state back");
                let inferred = if withdrawn {
                    "queued-deleted"
                } else {
                    "pending-return"
                };
                inferred.to_string()
            }
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
            (ri.end - (self.clock)()).num_hours() / crate::domain::rules::Marketplace::MONTH_HOURS;
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

/// Turns an [`AwsError`] into what the executor may do next, per operation
/// ([`super::error::resend_rule`]):
/// * the call may have been applied and AWS does not deduplicate it (no answer, a deadline, a
///   5xx or an unusable answer on PurchaseReservedInstancesOffering or
///   AcceptReservedInstancesExchangeQuote): `OutcomeUnknown`; the account is looked at before
///   anything else, and the call is never resent blindly;
/// * anything else that may succeed later (throttling, which AWS answers before acting; 5xx,
///   lost answers and deadlines on reads and on calls resent with the same client token):
///   `Unavailable`, retried with the same key;
/// * final answers (4xx, local refusals): `Refused`.
pub fn provider_error(e: AwsError) -> ProviderError {
    let message = e.to_string();
    let provider = NAME.to_string();
    if e.may_have_applied() {
        ProviderError::OutcomeUnknown { provider, message }
    } else if e.is_transient() {
        ProviderError::Unavailable { provider, message }
    } else {
        ProviderError::Refused { provider, message }
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
    ) -> BoxFuture<'_, Result<Option<crate::markets::UsageHistory>, ProviderError>> {
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
            Ok(Some(crate::markets::UsageHistory {
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

    fn find_purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Found<Purchase>, ProviderError>> {
        Box::pin(self.found_purchase(request, since))
    }

    fn deduplicates(&self, operation: &Operation, spec: &PurchaseSpec) -> bool {
        aws_deduplicates(operation, spec)
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
    ) -> BoxFuture<'_, Result<Option<crate::markets::UsageHistory>, ProviderError>> {
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

    /// Asked of the account the purchase went to (the spec's; None: the payer), the only one
    /// `purchase` sends it to.
    fn find_purchase<'a>(
        &'a self,
        request: &'a PurchaseRequest,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Found<Purchase>, ProviderError>> {
        Box::pin(async move {
            self.account(request.spec.account.as_deref())?
                .found_purchase(request, since)
                .await
        })
    }

    /// Every account follows AWS's rules; an account that is not configured is answered
    /// `false`, the answer that never resends.
    fn deduplicates(&self, operation: &Operation, spec: &PurchaseSpec) -> bool {
        self.account(spec.account.as_deref())
            .is_ok_and(|m| m.deduplicates(operation, spec))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Term;

    const PURCHASE_RI: &str = "PurchaseReservedInstancesOffering";
    const ACCEPT: &str = "AcceptReservedInstancesExchangeQuote";

    fn unavailable(operation: &'static str, status: u16, code: &str) -> AwsError {
        AwsError::Unavailable {
            operation,
            code: code.into(),
            message: "m".into(),
            status,
            request_id: Some("rid".into()),
        }
    }

    fn no_response(operation: &'static str) -> AwsError {
        AwsError::NoResponse {
            operation,
            message: "connection closed".into(),
        }
    }

    fn kind(e: AwsError) -> &'static str {
        match provider_error(e) {
            ProviderError::OutcomeUnknown { .. } => "unknown",
            ProviderError::Unavailable { .. } => "unavailable",
            ProviderError::Refused { .. } => "refused",
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn an_error_is_an_unknown_outcome_only_where_aws_may_have_acted_without_deduplicating() {
        // No answer, a deadline, a 5xx or an unusable answer on the calls without a client
        // token: the purchase or exchange may have happened.
        for op in [PURCHASE_RI, ACCEPT] {
            assert_eq!(kind(no_response(op)), "unknown", "{op}");
            assert_eq!(
                kind(AwsError::DeadlineExceeded {
                    operation: op,
                    deadline: None
                }),
                "unknown",
                "{op}"
            );
            assert_eq!(kind(unavailable(op, 500, "InternalError")), "unknown");
            assert_eq!(kind(unavailable(op, 502, "Unknown")), "unknown");
            assert_eq!(
                kind(AwsError::bad(op, "reservedInstancesId", "missing", None)),
                "unknown"
            );
            // Throttling is answered before AWS acts (EC2's is a 503).
            assert_eq!(
                kind(unavailable(op, 503, "RequestLimitExceeded")),
                "unavailable"
            );
            assert_eq!(kind(unavailable(op, 429, "Whatever")), "unavailable");
            // 4xx and local refusals are final.
            assert_eq!(
                kind(AwsError::Rejected {
                    operation: op,
                    code: "InvalidParameterValue".into(),
                    message: "m".into(),
                    status: 400,
                    request_id: None,
                }),
                "refused"
            );
            assert_eq!(
                kind(AwsError::Refused {
                    operation: op,
                    reason: "true-up".into(),
                    request_id: None
                }),
                "refused"
            );
        }
        // Deduplicated calls (client token) and reads: retryable with the same key.
        for op in [
            "CreateSavingsPlan",
            "ReturnSavingsPlan",
            "CreateReservedInstancesListing",
            "DeleteQueuedSavingsPlan",
            "CreateTags",
            "DescribeReservedInstances",
            "GetReservedInstancesExchangeQuote",
            super::super::error::PURCHASE_RI_DRY_RUN,
        ] {
            assert_eq!(kind(no_response(op)), "unavailable", "{op}");
            assert_eq!(kind(unavailable(op, 500, "InternalError")), "unavailable");
        }
        // An unusable answer to a read is not something to retry blindly either way.
        assert_eq!(
            kind(AwsError::bad("DescribeReservedInstances", "f", "m", None)),
            "refused"
        );
        // A mutation nobody classified is taken as not deduplicated.
        assert_eq!(
            super::super::error::resend_rule("ModifyReservedInstances"),
            Resend::Repeats
        );
    }

    fn spec(amount: CommitmentAmount) -> PurchaseSpec {
        PurchaseSpec {
            provider: Provider::Aws,
            account: None,
            instrument: Instrument::StandardReservedInstance,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            region: Some("us-east-1".into()),
            family: None,
            instance_type: Some("m5.large".into()),
            os: None,
            tenancy: None,
            amount,
        }
    }

    #[test]
    fn resending_is_safe_for_savings_plans_returns_and_listings_only() {
        let ri = spec(CommitmentAmount::Instances(2));
        let sp = spec(CommitmentAmount::HourlySpend(Money::from_units(1)));
        assert!(!aws_deduplicates(&Operation::Purchase, &ri));
        assert!(aws_deduplicates(&Operation::Purchase, &sp));
        let exchange = Operation::Exchange {
            source_ids: vec!["ri-1".into()],
            source_value: Money::ZERO,
            true_up: Money::ZERO,
        };
        assert!(!aws_deduplicates(&exchange, &ri));
        let ret = Operation::Return {
            commitment_id: "sp-1".into(),
            hourly_cost_removed: Money::from_units(1),
            instances: None,
        };
        assert!(aws_deduplicates(&ret, &sp));
        let sale = Operation::Sell {
            commitment_id: "ri-1".into(),
            instances: 1,
            hourly_cost_removed: Money::ZERO,
            price: Money::from_units(10),
        };
        assert!(aws_deduplicates(&sale, &ri));
    }

    fn record(start: DateTime<Utc>) -> ReservedInstanceRecord {
        ReservedInstanceRecord {
            id: "ri-1".into(),
            state: "active".into(),
            instrument: Instrument::StandardReservedInstance,
            payment: PaymentOption::NoUpfront,
            term: Term::ONE_YEAR,
            instance_type: "m5.large".into(),
            count: 2,
            os: "Linux".into(),
            tenancy: "Shared".into(),
            region: "us-east-1".into(),
            availability_zone: None,
            start,
            end: start + chrono::Duration::days(365),
            fixed_price: Decimal::ZERO,
            hourly_price: Decimal::new(6, 2),
            tags: Default::default(),
        }
    }

    #[test]
    fn an_untagged_ri_matches_by_what_the_request_would_create() {
        let since = DateTime::parse_from_rfc3339("2025-03-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let request = PurchaseRequest {
            idempotency_key: "k".into(),
            spec: spec(CommitmentAmount::Instances(2)),
            start: Hour::from_datetime(since),
            max_hourly_cost: Money::from_units(1),
            max_upfront: Money::ZERO,
        };
        let ok = record(since);
        assert!(matches_purchase(&ok, &request, since, "us-east-1"));
        // The clock tolerance: 5 minutes before the attempt, not more.
        let skew = chrono::Duration::seconds(RECONCILE_SKEW_SECONDS);
        assert!(matches_purchase(
            &record(since - skew),
            &request,
            since,
            "us-east-1"
        ));
        assert!(!matches_purchase(
            &record(since - skew - chrono::Duration::seconds(1)),
            &request,
            since,
            "us-east-1"
        ));
        let differs: Vec<ReservedInstanceRecord> = vec![
            ReservedInstanceRecord {
                count: 3,
                ..ok.clone()
            },
            ReservedInstanceRecord {
                instance_type: "m5.xlarge".into(),
                ..ok.clone()
            },
            ReservedInstanceRecord {
                availability_zone: Some("us-east-1a".into()),
                ..ok.clone()
            },
            ReservedInstanceRecord {
                region: "eu-west-1".into(),
                ..ok.clone()
            },
            ReservedInstanceRecord {
                instrument: Instrument::ConvertibleReservedInstance,
                ..ok.clone()
            },
            ReservedInstanceRecord {
                term: Term::THREE_YEARS,
                ..ok.clone()
            },
            ReservedInstanceRecord {
                payment: PaymentOption::AllUpfront,
                ..ok.clone()
            },
            ReservedInstanceRecord {
                os: "Windows".into(),
                ..ok.clone()
            },
            ReservedInstanceRecord {
                tenancy: "Dedicated".into(),
                ..ok.clone()
            },
        ];
        for d in &differs {
            assert!(!matches_purchase(d, &request, since, "us-east-1"), "{d:?}");
        }
        // One candidate that did not become a commitment (payment failed) is not claimed.
        let failed = ReservedInstanceRecord {
            state: "payment-failed".into(),
            ..ok.clone()
        };
        let Found::Unclear(why) = settle_untagged(&[&failed], &request, since) else {
            panic!("a payment-failed match is for a person to judge")
        };
        assert!(why.contains("ri-1 (payment-failed"), "{why}");
        assert_eq!(settle_untagged(&[&ok], &request, since), Found::Yes(&ok));
        assert_eq!(settle_untagged(&[], &request, since), Found::No);
        let other = ReservedInstanceRecord {
            id: "ri-2".into(),
            ..ok.clone()
        };
        let Found::Unclear(why) = settle_untagged(&[&ok, &other], &request, since) else {
            panic!("two matches")
        };
        assert!(
            why.starts_with("2 untagged") && why.contains("ri-2"),
            "{why}"
        );
        // A savings plan request matches no RI.
        let sp = PurchaseRequest {
            spec: spec(CommitmentAmount::HourlySpend(Money::from_units(1))),
            ..request.clone()
        };
        assert!(!matches_purchase(&ok, &sp, since, "us-east-1"));
        // No region in the spec: the account's.
        let mut anywhere = request;
        anywhere.spec.region = None;
        assert!(matches_purchase(&ok, &anywhere, since, "us-east-1"));
        assert!(!matches_purchase(&ok, &anywhere, since, "eu-west-1"));
    }
}
