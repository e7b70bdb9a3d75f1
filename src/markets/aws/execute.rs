//! Execution: buying, deleting, returning and exchanging commitments, idempotently.
//!
//! * CreateSavingsPlan carries a `clientToken` derived from the proposal's idempotency key, so a
//!   request resent after a lost response (by the SDK's retry, or by the executor after a
//!   restart) returns the plan already bought instead of buying a second one. The key is also
//!   written as a tag, so the inventory can find the purchase during reconciliation.
//! * PurchaseReservedInstancesOffering has no client token: it is always dry-run first (which
//!   checks permissions and the offering without buying), sent once (the SDK's automatic
//!   retry is switched off for it, as for AcceptReservedInstancesExchangeQuote), then tagged
//!   with the idempotency key (a tag failure is logged and reported as `tagged: false`, never
//!   as an error: the RIs were bought). A lost response must be reconciled before any retry:
//!   the market's `find_purchase` looks for the key, then for the untagged RIs the purchase
//!   would have created.
//! * ReturnSavingsPlan is checked against the return window locally first
//!   ([`check_return_window`]), so the refusal names the rule rather than a bare 400.
//! * A convertible RI exchange is accepted only when AWS's quote says it is valid and the
//!   true-up (payment due) is within the caller's limit.

use super::client::AwsClients;
use super::convert;
use super::error::{from_sdk, AwsError, Called, PURCHASE_RI_DRY_RUN};
use super::inventory::{ReservedInstanceRecord, SavingsPlanRecord, IDEMPOTENCY_TAG};
use crate::domain::{Money, PaymentOption, Term};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, Utc};
use rust_decimal::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The client token for an idempotency key: stable, opaque, 48 characters.
pub fn client_token(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("commitd-{}", &hex::encode(digest)[..40])
}

/// Smallest and largest hourly commitment CreateSavingsPlan accepts.
pub const MIN_COMMITMENT: Decimal = Decimal::from_parts(1, 0, 0, false, 3);
pub const MAX_COMMITMENT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The hourly commitment as the API takes it: at most 5 decimals, rounded *down*, so the
/// purchase never exceeds what the plan and its policy approved (by less than $0.00001/h).
pub fn api_commitment(hourly: Money) -> Result<Decimal, AwsError> {
    let c = hourly
        .to_decimal()
        .round_dp_with_strategy(5, RoundingStrategy::ToZero)
        .normalize();
    if c < MIN_COMMITMENT || c > MAX_COMMITMENT {
        return Err(AwsError::invalid(
            "CreateSavingsPlan",
            format!("hourly commitment {hourly} is outside 0.001..=1000000 USD"),
        ));
    }
    Ok(c)
}

/// The upfront payment of a Partial Upfront plan: AWS requires a whole number of dollars
/// between 50% and 99% of the total commitment (hourly x term hours); commitd pays the
/// smallest allowed, 50% rounded up to the next dollar.
pub fn partial_upfront_amount(commitment: Decimal, term: Term) -> Decimal {
    (commitment * Decimal::from(term.hours()) / Decimal::TWO).ceil()
}

/// A savings plan to buy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SavingsPlanPurchase {
    /// The proposal's idempotency key (from the executor's store).
    pub idempotency_key: String,
    pub offering_id: String,
    /// USD per hour.
    pub commitment: Money,
    pub payment: PaymentOption,
    pub term: Term,
    /// A future time queues the plan until then.
    pub purchase_time: Option<DateTime<Utc>>,
}

/// The CreateSavingsPlan parameters derived from a purchase (pure; shown in the audit log).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PreparedSavingsPlan {
    pub client_token: String,
    pub commitment: String,
    pub upfront_payment_amount: Option<String>,
}

pub fn prepare_savings_plan(p: &SavingsPlanPurchase) -> Result<PreparedSavingsPlan, AwsError> {
    let c = api_commitment(p.commitment)?;
    Ok(PreparedSavingsPlan {
        client_token: client_token(&p.idempotency_key),
        commitment: c.to_string(),
        upfront_payment_amount: (p.payment == PaymentOption::PartialUpfront)
            .then(|| partial_upfront_amount(c, p.term).to_string()),
    })
}

/// Whether a savings plan may be returned at `now`: AWS allows it for plans with an hourly
/// commitment of at most $100, within 7 days of purchase, and in the same UTC calendar month.
pub fn check_return_window(plan: &SavingsPlanRecord, now: DateTime<Utc>) -> Result<(), String> {
    if plan.state != "active" && plan.state != "payment-pending" {
        return Err(format!(
            "savings plan {} is {}, only an active plan can be returned (delete a queued one instead)",
            plan.id, plan.state
        ));
    }
    if plan.commitment > Money::from_units(100) {
        return Err(format!(
            "savings plan {} commits {} USD/hour; only plans of at most 100 USD/hour can be returned",
            plan.id, plan.commitment
        ));
    }
    if now >= plan.start + ChronoDuration::days(7) {
        return Err(format!(
            "savings plan {} started {}, more than 7 days before {}",
            plan.id,
            plan.start.to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    if (now.year(), now.month()) != (plan.start.year(), plan.start.month()) {
        return Err(format!(
            "savings plan {} started in {}-{:02}; returns are only allowed in the same UTC month (now {}-{:02})",
            plan.id,
            plan.start.year(),
            plan.start.month(),
            now.year(),
            now.month()
        ));
    }
    Ok(())
}

/// A Reserved Instance offering to buy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReservedInstancePurchase {
    /// The proposal's idempotency key, written as a tag on the RIs after the purchase.
    pub idempotency_key: String,
    pub offering_id: String,
    pub count: u32,
    /// Refuse (AWS-side) if the total upfront would exceed this.
    pub limit_price: Option<Money>,
    /// A future time queues the purchase.
    pub purchase_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReservedInstancesPurchased {
    pub reserved_instances_id: String,
    /// The request id of the dry run that preceded the purchase.
    pub dry_run_request_id: Option<String>,
    /// The request id of the purchase itself.
    pub purchase_request_id: Option<String>,
    /// False when the purchase succeeded but tagging it with the idempotency key failed:
    /// reconciliation then has to match it by type, count and start time.
    pub tagged: bool,
}

/// One target of a convertible RI exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExchangeTarget {
    pub offering_id: String,
    pub count: u32,
}

/// AWS's quote for an exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExchangeQuote {
    pub valid: bool,
    pub failure_reason: Option<String>,
    /// The true-up to pay now.
    pub payment_due: Money,
    pub source_remaining_value: Option<Money>,
    pub target_total_value: Option<Money>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExchangeOutcome {
    pub exchange_id: String,
    pub quote: ExchangeQuote,
}

const CREATE_SP: &str = "CreateSavingsPlan";
const PURCHASE_RI: &str = "PurchaseReservedInstancesOffering";
const RETURN_SP: &str = "ReturnSavingsPlan";
const DELETE_QUEUED: &str = "DeleteQueuedSavingsPlan";
const QUOTE: &str = "GetReservedInstancesExchangeQuote";
const ACCEPT: &str = "AcceptReservedInstancesExchangeQuote";
const LIST_RI: &str = "CreateReservedInstancesListing";
const DESCRIBE_LISTINGS: &str = "DescribeReservedInstancesListings";
const CREATE_TAGS: &str = "CreateTags";

/// A Reserved Instance Marketplace listing as AWS describes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListingRecord {
    pub id: String,
    pub reserved_instances_id: String,
    pub client_token: Option<String>,
    /// "active", "pending", "cancelled" or "closed".
    pub status: String,
    pub created: Option<DateTime<Utc>>,
    /// Instances still listed, and sold.
    pub available: u32,
    pub sold: u32,
}

fn listing_record(l: &aws_sdk_ec2::types::ReservedInstancesListing) -> Option<ListingRecord> {
    let count = |state: &str| {
        l.instance_counts()
            .iter()
            .filter(|c| c.state().is_some_and(|s| s.as_str() == state))
            .filter_map(|c| c.instance_count())
            .map(|n| n.max(0) as u32)
            .sum()
    };
    Some(ListingRecord {
        id: l.reserved_instances_listing_id()?.to_string(),
        reserved_instances_id: l.reserved_instances_id()?.to_string(),
        client_token: l.client_token().map(str::to_string),
        status: l
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        created: l.create_date().and_then(convert::datetime_from_smithy),
        available: count("available"),
        sold: count("sold"),
    })
}

fn money_field(
    op: &'static str,
    field: &str,
    v: Option<&str>,
    rid: Option<&str>,
) -> Result<Option<Money>, AwsError> {
    match v {
        None | Some("") => Ok(None),
        Some(t) => Money::parse(t)
            .map(Some)
            .map_err(|e| AwsError::bad(op, field, e.to_string(), rid)),
    }
}

impl AwsClients {
    /// Buys a savings plan; returns its id. Safe to call again with the same purchase: the
    /// client token makes AWS return the plan already bought.
    pub async fn create_savings_plan(
        &self,
        p: &SavingsPlanPurchase,
    ) -> Result<Called<String>, AwsError> {
        let prepared = prepare_savings_plan(p)?;
        let out = self
            .savings_plans
            .create_savings_plan()
            .savings_plan_offering_id(&p.offering_id)
            .commitment(&prepared.commitment)
            .set_upfront_payment_amount(prepared.upfront_payment_amount.clone())
            .set_purchase_time(p.purchase_time.map(convert::smithy_from_datetime))
            .client_token(&prepared.client_token)
            .tags(IDEMPOTENCY_TAG, &p.idempotency_key)
            .send()
            .await
            .map_err(|e| from_sdk(CREATE_SP, self.deadline, e))?;
        let rid = aws_sdk_savingsplans::operation::RequestId::request_id(&out);
        let id = out
            .savings_plan_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| AwsError::bad(CREATE_SP, "savingsPlanId", "missing", rid))?;
        Ok(Called::new(id.to_string(), rid))
    }

    /// Deletes a queued (not yet started) savings plan.
    pub async fn delete_queued_savings_plan(&self, id: &str) -> Result<Called<()>, AwsError> {
        let out = self
            .savings_plans
            .delete_queued_savings_plan()
            .savings_plan_id(id)
            .send()
            .await
            .map_err(|e| from_sdk(DELETE_QUEUED, self.deadline, e))?;
        Ok(Called::new(
            (),
            aws_sdk_savingsplans::operation::RequestId::request_id(&out),
        ))
    }

    /// Returns a savings plan inside its return window. The plan is described first and the
    /// window checked locally; AWS checks it again.
    pub async fn return_savings_plan(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Called<String>, AwsError> {
        let described = self.describe_savings_plans(&[id.to_string()]).await?;
        let describe_rid = described.request_id().map(str::to_string);
        let plan = described
            .value
            .0
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| AwsError::Refused {
                operation: RETURN_SP,
                reason: format!("no savings plan {id} in this account"),
                request_id: describe_rid.clone(),
            })?;
        check_return_window(&plan, now).map_err(|reason| AwsError::Refused {
            operation: RETURN_SP,
            reason,
            request_id: describe_rid.clone(),
        })?;
        let out = self
            .savings_plans
            .return_savings_plan()
            .savings_plan_id(id)
            .client_token(client_token(&format!("return:{id}")))
            .send()
            .await
            .map_err(|e| from_sdk(RETURN_SP, self.deadline, e))?;
        let rid = aws_sdk_savingsplans::operation::RequestId::request_id(&out);
        let mut called = Called::new(out.savings_plan_id().unwrap_or(id).to_string(), rid);
        called.request_ids.splice(0..0, describe_rid);
        Ok(called)
    }

    /// Buys Reserved Instances: a dry run first, then the purchase.
    pub async fn purchase_reserved_instances(
        &self,
        p: &ReservedInstancePurchase,
    ) -> Result<Called<ReservedInstancesPurchased>, AwsError> {
        if p.count == 0 || p.count > i32::MAX as u32 {
            return Err(AwsError::invalid(
                PURCHASE_RI,
                format!("instance count {} is out of range", p.count),
            ));
        }
        let request = |dry_run: bool| {
            self.ec2
                .purchase_reserved_instances_offering()
                .reserved_instances_offering_id(&p.offering_id)
                .instance_count(p.count as i32)
                .dry_run(dry_run)
                .set_purchase_time(p.purchase_time.map(convert::smithy_from_datetime))
                .set_limit_price(p.limit_price.map(|m| {
                    aws_sdk_ec2::types::ReservedInstanceLimitPrice::builder()
                        .amount(m.to_f64())
                        .currency_code(aws_sdk_ec2::types::CurrencyCodeValues::Usd)
                        .build()
                }))
        };
        // A successful dry run is an error response with the code DryRunOperation.
        let dry_run_rid = match request(true).send().await {
            // Named apart from the purchase: a dry run never buys, so its failures are never
            // an unknown outcome (error::resend_rule).
            Err(e) => match from_sdk(PURCHASE_RI_DRY_RUN, self.deadline, e) {
                AwsError::Rejected {
                    code, request_id, ..
                } if code == "DryRunOperation" => request_id,
                other => return Err(other),
            },
            Ok(out) => {
                return Err(AwsError::bad(
                    PURCHASE_RI,
                    "DryRun",
                    format!(
                        "the dry run was executed as a purchase ({:?}); reconcile the inventory",
                        out.reserved_instances_id()
                    ),
                    aws_sdk_ec2::operation::RequestId::request_id(&out),
                ))
            }
        };
        // No client token exists for this call, so the SDK must not resend it on its own: a
        // lost answer would become a second purchase. One attempt; the caller reconciles.
        let out = request(false)
            .customize()
            .config_override(single_attempt_ec2())
            .send()
            .await
            .map_err(|e| from_sdk(PURCHASE_RI, self.deadline, e))?;
        let rid = aws_sdk_ec2::operation::RequestId::request_id(&out).map(str::to_string);
        let id = out
            .reserved_instances_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                AwsError::bad(
                    PURCHASE_RI,
                    "reservedInstancesId",
                    "missing",
                    rid.as_deref(),
                )
            })?
            .to_string();
        // From here on the purchase happened: a failure to tag it is logged and reported in
        // `tagged`, never returned as an error (the caller would take the purchase for failed).
        let (tagged, tag_rid) = match self.tag_reserved_instances(&id, &p.idempotency_key).await {
            Ok(called) => (true, called.request_id().map(str::to_string)),
            Err(e) => {
                tracing::warn!(reserved_instances_id = %id, error = %e, "bought, but could not tag with the idempotency key");
                (false, e.request_id().map(str::to_string))
            }
        };
        Ok(Called {
            value: ReservedInstancesPurchased {
                reserved_instances_id: id,
                dry_run_request_id: dry_run_rid.clone(),
                purchase_request_id: rid.clone(),
                tagged,
            },
            request_ids: dry_run_rid.into_iter().chain(rid).chain(tag_rid).collect(),
        })
    }

    /// Writes the idempotency key as a tag on Reserved Instances (after a purchase, or when
    /// reconciliation claims an untagged purchase for its proposal).
    pub async fn tag_reserved_instances(
        &self,
        id: &str,
        key: &str,
    ) -> Result<Called<()>, AwsError> {
        let out = self
            .ec2
            .create_tags()
            .resources(id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(IDEMPOTENCY_TAG)
                    .value(key)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk(CREATE_TAGS, self.deadline, e))?;
        Ok(Called::new(
            (),
            aws_sdk_ec2::operation::RequestId::request_id(&out),
        ))
    }

    /// The Reserved Instances commitd bought under `key` (tagged after the purchase).
    pub async fn find_reserved_instances_by_key(
        &self,
        key: &str,
    ) -> Result<Called<Vec<ReservedInstanceRecord>>, AwsError> {
        let all = self.describe_reserved_instances().await?;
        Ok(all.map(|ris| {
            ris.into_iter()
                .filter(|r| r.idempotency_key() == Some(key))
                .collect()
        }))
    }

    /// Reserved Instances of `instance_type` x `count` that started at or after `since`: what a
    /// purchase whose response was lost (and so never tagged) would have created.
    pub async fn find_reserved_instances_since(
        &self,
        instance_type: &str,
        count: u32,
        since: DateTime<Utc>,
    ) -> Result<Called<Vec<ReservedInstanceRecord>>, AwsError> {
        let all = self.describe_reserved_instances().await?;
        Ok(all.map(|ris| {
            ris.into_iter()
                .filter(|r| {
                    r.instance_type == instance_type && r.count == count && r.start >= since
                })
                .collect()
        }))
    }

    /// Lists `count` instances of a Standard RI on the Reserved Instance Marketplace at `price`
    /// (USD, rounded down to the cent) for its `months` whole months left. The client token
    /// derived from `key` makes a resent request return the listing already made.
    pub async fn create_reserved_instances_listing(
        &self,
        reserved_instances_id: &str,
        count: u32,
        price: Money,
        months: i64,
        key: &str,
    ) -> Result<Called<ListingRecord>, AwsError> {
        let cents = price
            .to_decimal()
            .round_dp_with_strategy(2, RoundingStrategy::ToZero);
        let out = self
            .ec2
            .create_reserved_instances_listing()
            .reserved_instances_id(reserved_instances_id)
            .instance_count(i32::try_from(count).unwrap_or(i32::MAX))
            .client_token(client_token(key))
            .price_schedules(
                aws_sdk_ec2::types::PriceScheduleSpecification::builder()
                    .term(months)
                    .price(cents.to_f64().unwrap_or(0.0))
                    .currency_code(aws_sdk_ec2::types::CurrencyCodeValues::Usd)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk(LIST_RI, self.deadline, e))?;
        let rid = aws_sdk_ec2::operation::RequestId::request_id(&out);
        let listing = out
            .reserved_instances_listings()
            .iter()
            .find_map(listing_record)
            .ok_or_else(|| AwsError::bad(LIST_RI, "reservedInstancesListingsSet", "empty", rid))?;
        Ok(Called::new(listing, rid))
    }

    /// The account's Marketplace listings (of one RI, or all).
    pub async fn describe_reserved_instances_listings(
        &self,
        reserved_instances_id: Option<&str>,
    ) -> Result<Called<Vec<ListingRecord>>, AwsError> {
        let out = self
            .ec2
            .describe_reserved_instances_listings()
            .set_reserved_instances_id(reserved_instances_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| from_sdk(DESCRIBE_LISTINGS, self.deadline, e))?;
        let rid = aws_sdk_ec2::operation::RequestId::request_id(&out);
        Ok(Called::new(
            out.reserved_instances_listings()
                .iter()
                .filter_map(listing_record)
                .collect(),
            rid,
        ))
    }

    /// AWS's quote for exchanging convertible RIs for targets.
    pub async fn exchange_quote(
        &self,
        reserved_instance_ids: &[String],
        targets: &[ExchangeTarget],
    ) -> Result<Called<ExchangeQuote>, AwsError> {
        let out = self
            .ec2
            .get_reserved_instances_exchange_quote()
            .set_reserved_instance_ids(Some(reserved_instance_ids.to_vec()))
            .set_target_configurations(Some(target_requests(targets)))
            .send()
            .await
            .map_err(|e| from_sdk(QUOTE, self.deadline, e))?;
        let rid = aws_sdk_ec2::operation::RequestId::request_id(&out);
        let quote = ExchangeQuote {
            valid: out.is_valid_exchange().unwrap_or(false),
            failure_reason: out.validation_failure_reason().map(str::to_string),
            payment_due: money_field(QUOTE, "paymentDue", out.payment_due(), rid)?
                .unwrap_or(Money::ZERO),
            source_remaining_value: money_field(
                QUOTE,
                "reservedInstanceValueRollup.remainingTotalValue",
                out.reserved_instance_value_rollup()
                    .and_then(|v| v.remaining_total_value()),
                rid,
            )?,
            target_total_value: money_field(
                QUOTE,
                "targetConfigurationValueRollup.remainingTotalValue",
                out.target_configuration_value_rollup()
                    .and_then(|v| v.remaining_total_value()),
                rid,
            )?,
            expires_at: out
                .output_reserved_instances_will_expire_at()
                .and_then(convert::datetime_from_smithy),
        };
        Ok(Called::new(quote, rid))
    }

    /// Exchanges convertible RIs: quote, then accept only if the quote is valid and the
    /// true-up is at most `max_true_up`.
    pub async fn exchange_reserved_instances(
        &self,
        reserved_instance_ids: &[String],
        targets: &[ExchangeTarget],
        max_true_up: Money,
    ) -> Result<Called<ExchangeOutcome>, AwsError> {
        let quoted = self.exchange_quote(reserved_instance_ids, targets).await?;
        let quote_rid = quoted.request_id().map(str::to_string);
        let quote = quoted.value;
        if !quote.valid {
            return Err(AwsError::Refused {
                operation: ACCEPT,
                reason: format!(
                    "the exchange quote is not valid: {}",
                    quote.failure_reason.as_deref().unwrap_or("no reason given")
                ),
                request_id: quote_rid,
            });
        }
        if quote.payment_due > max_true_up {
            return Err(AwsError::Refused {
                operation: ACCEPT,
                reason: format!(
                    "the true-up of {} USD exceeds the limit of {} USD",
                    quote.payment_due, max_true_up
                ),
                request_id: quote_rid,
            });
        }
        // Not idempotent either: one attempt, the caller reconciles after a lost answer.
        let out = self
            .ec2
            .accept_reserved_instances_exchange_quote()
            .set_reserved_instance_ids(Some(reserved_instance_ids.to_vec()))
            .set_target_configurations(Some(target_requests(targets)))
            .customize()
            .config_override(single_attempt_ec2())
            .send()
            .await
            .map_err(|e| from_sdk(ACCEPT, self.deadline, e))?;
        let rid = aws_sdk_ec2::operation::RequestId::request_id(&out);
        let exchange_id = out
            .exchange_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| AwsError::bad(ACCEPT, "exchangeId", "missing", rid))?;
        let mut called = Called::new(
            ExchangeOutcome {
                exchange_id: exchange_id.to_string(),
                quote,
            },
            rid,
        );
        called.request_ids.splice(0..0, quote_rid);
        Ok(called)
    }
}

/// EC2 config for calls that must never be resent automatically.
fn single_attempt_ec2() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(1))
}

fn target_requests(
    targets: &[ExchangeTarget],
) -> Vec<aws_sdk_ec2::types::TargetConfigurationRequest> {
    targets
        .iter()
        .map(|t| {
            aws_sdk_ec2::types::TargetConfigurationRequest::builder()
                .offering_id(&t.offering_id)
                .instance_count(t.count.min(i32::MAX as u32) as i32)
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Instrument;
    use std::collections::BTreeMap;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn plan(commitment: &str, start: &str, state: &str) -> SavingsPlanRecord {
        SavingsPlanRecord {
            id: "sp-1".into(),
            arn: None,
            state: state.into(),
            offering_id: None,
            instrument: Instrument::ComputeSavingsPlan,
            payment: PaymentOption::NoUpfront,
            term: Term::ONE_YEAR,
            commitment: Money::parse(commitment).unwrap(),
            upfront: Money::ZERO,
            recurring: Money::parse(commitment).unwrap(),
            start: at(start),
            end: at(start) + ChronoDuration::days(365),
            region: None,
            family: None,
            returnable_until: None,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn client_token_is_stable_and_distinct() {
        assert_eq!(client_token("k-1"), client_token("k-1"));
        assert_ne!(client_token("k-1"), client_token("k-2"));
        assert_eq!(client_token("k-1").len(), 48);
    }

    #[test]
    fn commitment_is_truncated_to_five_decimals_and_bounded() {
        assert_eq!(
            api_commitment(Money::parse("1.234569").unwrap())
                .unwrap()
                .to_string(),
            "1.23456"
        );
        assert_eq!(
            api_commitment(Money::parse("2.5").unwrap())
                .unwrap()
                .to_string(),
            "2.5"
        );
        assert_eq!(
            api_commitment(Money::parse("0.001").unwrap())
                .unwrap()
                .to_string(),
            "0.001"
        );
        assert!(api_commitment(Money::parse("0.000999").unwrap()).is_err());
        assert!(api_commitment(Money::from_units(1_000_001)).is_err());
    }

    #[test]
    fn partial_upfront_is_half_the_total_rounded_up_to_a_dollar() {
        // 1.25/h x 8760 h = 10950; half = 5475.
        assert_eq!(
            partial_upfront_amount(Decimal::new(125, 2), Term::ONE_YEAR),
            Decimal::from(5475)
        );
        // 0.001/h x 26280 h = 26.28; half = 13.14 -> 14.
        assert_eq!(
            partial_upfront_amount(Decimal::new(1, 3), Term::THREE_YEARS),
            Decimal::from(14)
        );
        let p = SavingsPlanPurchase {
            idempotency_key: "k".into(),
            offering_id: "o".into(),
            commitment: Money::parse("1.25").unwrap(),
            payment: PaymentOption::PartialUpfront,
            term: Term::ONE_YEAR,
            purchase_time: None,
        };
        assert_eq!(
            prepare_savings_plan(&p)
                .unwrap()
                .upfront_payment_amount
                .as_deref(),
            Some("5475")
        );
        let no = SavingsPlanPurchase {
            payment: PaymentOption::NoUpfront,
            ..p
        };
        assert_eq!(
            prepare_savings_plan(&no).unwrap().upfront_payment_amount,
            None
        );
    }

    #[test]
    fn return_window_rules() {
        let now = at("2025-03-10T12:00:00Z");
        assert!(check_return_window(&plan("100", "2025-03-05T00:00:00Z", "active"), now).is_ok());
        let e = check_return_window(&plan("100.00001", "2025-03-05T00:00:00Z", "active"), now)
            .unwrap_err();
        assert!(e.contains("at most 100"), "{e}");
        let e = check_return_window(&plan("1", "2025-03-03T12:00:00Z", "active"), now).unwrap_err();
        assert!(e.contains("more than 7 days"), "{e}");
        // Within 7 days but across a month boundary.
        let e = check_return_window(
            &plan("1", "2025-02-28T00:00:00Z", "active"),
            at("2025-03-01T01:00:00Z"),
        )
        .unwrap_err();
        assert!(e.contains("same UTC month"), "{e}");
        let e = check_return_window(&plan("1", "2025-03-09T00:00:00Z", "queued"), now).unwrap_err();
        assert!(e.contains("queued"), "{e}");
    }
}
