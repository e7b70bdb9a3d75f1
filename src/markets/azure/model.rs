//! The answers commitd reads from Microsoft.Capacity and Microsoft.BillingBenefits (2022-11-01),
//! parsed by our own serde types rather than the generated models, for two reasons:
//!
//! * **dates**: the savings plan models of `azure_mgmt_billingbenefits` 0.21 declare their
//!   timestamps as plain `time::OffsetDateTime` without RFC 3339 handling, so Azure's real
//!   answers (`"2023-10-19T18:05:36.5252231Z"`) do not deserialize into them;
//! * **money**: the generated models hold amounts as `f64`; here an amount becomes a
//!   `rust_decimal::Decimal` from the number's shortest decimal text, so `46.0` or `15.23` is
//!   exactly what the JSON said (any decimal literal of up to 15 significant digits survives).
//!
//! Every field commitd does not need is ignored; every field it needs is optional in the
//! spec, so absence is an error named by the field at the point of use.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use std::str::FromStr;

/// A page of a listing: `value` and the `nextLink` to the next page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(default)]
    pub next_link: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sku {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    #[serde(default)]
    pub currency_code: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub amount: Option<Decimal>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDetail {
    #[serde(default)]
    pub due_date: Option<String>,
    #[serde(default)]
    pub payment_date: Option<String>,
    #[serde(default)]
    pub pricing_currency_total: Option<Price>,
    #[serde(default)]
    pub billing_currency_total: Option<Price>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanInformation {
    #[serde(default)]
    pub pricing_currency_total: Option<Price>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub next_payment_due_date: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub transactions: Vec<PaymentDetail>,
}

/// `Microsoft.Capacity/reservationOrders/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationOrder {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub properties: ReservationOrderProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationOrderProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub request_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub created_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub expiry_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_date")]
    pub expiry_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub benefit_start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub original_quantity: Option<u32>,
    #[serde(default)]
    pub term: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub billing_plan: Option<String>,
    #[serde(default)]
    pub plan_information: Option<PlanInformation>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub reservations: Vec<IdRef>,
}

/// `Microsoft.Capacity/reservationOrders/{order}/reservations/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The revision number (`Reservation_ListRevisions` lists one item per revision).
    #[serde(default)]
    pub etag: Option<i64>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub sku: Sku,
    #[serde(default)]
    pub properties: ReservationProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationProperties {
    #[serde(default)]
    pub reserved_resource_type: Option<String>,
    #[serde(default)]
    pub instance_flexibility: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub applied_scope_type: Option<String>,
    #[serde(default)]
    pub archived: Option<bool>,
    #[serde(default)]
    pub quantity: Option<u32>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub effective_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub last_updated_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub benefit_start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub purchase_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub expiry_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_date")]
    pub expiry_date: Option<NaiveDate>,
    #[serde(default)]
    pub term: Option<String>,
    #[serde(default)]
    pub billing_plan: Option<String>,
    #[serde(default)]
    pub renew: Option<bool>,
    #[serde(default)]
    pub utilization: Option<Utilization>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Utilization {
    #[serde(default)]
    pub trend: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub aggregates: Vec<UtilizationAggregate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilizationAggregate {
    #[serde(default, deserialize_with = "opt_decimal")]
    pub grain: Option<Decimal>,
    #[serde(default)]
    pub grain_unit: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub value: Option<Decimal>,
    #[serde(default)]
    pub value_unit: Option<String>,
}

impl Utilization {
    /// The utilization over the last `days` days, in percent, when the API gives it.
    pub fn percent_over(&self, days: i64) -> Option<Decimal> {
        self.aggregates
            .iter()
            .find(|a| {
                a.grain == Some(Decimal::from(days)) && a.grain_unit.as_deref() == Some("days")
            })
            .and_then(|a| a.value)
    }
}

/// The answer of `POST /providers/Microsoft.Capacity/calculatePrice`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalculatePrice {
    #[serde(default)]
    pub properties: Option<CalculatePriceProperties>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalculatePriceProperties {
    #[serde(default)]
    pub billing_currency_total: Option<Price>,
    #[serde(default)]
    pub pricing_currency_total: Option<Price>,
    #[serde(default)]
    pub reservation_order_id: Option<String>,
    #[serde(default)]
    pub sku_title: Option<String>,
    #[serde(default)]
    pub sku_description: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub payment_schedule: Vec<PaymentDetail>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsPlanCommitment {
    #[serde(default)]
    pub grain: Option<String>,
    #[serde(default)]
    pub currency_code: Option<String>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub amount: Option<Decimal>,
}

/// `Microsoft.BillingBenefits/savingsPlanOrderAliases/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavingsPlanOrderAlias {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sku: Sku,
    #[serde(default)]
    pub properties: SavingsPlanAliasProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsPlanAliasProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub savings_plan_order_id: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub billing_scope_id: Option<String>,
    #[serde(default)]
    pub term: Option<String>,
    #[serde(default)]
    pub billing_plan: Option<String>,
    #[serde(default)]
    pub applied_scope_type: Option<String>,
    #[serde(default)]
    pub commitment: Option<SavingsPlanCommitment>,
}

/// `Microsoft.BillingBenefits/savingsPlanOrders/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavingsPlanOrder {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sku: Sku,
    #[serde(default)]
    pub properties: SavingsPlanOrderProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsPlanOrderProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub billing_scope_id: Option<String>,
    #[serde(default)]
    pub billing_profile_id: Option<String>,
    #[serde(default)]
    pub term: Option<String>,
    #[serde(default)]
    pub billing_plan: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub expiry_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub benefit_start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub savings_plans: Vec<String>,
}

/// `Microsoft.BillingBenefits/savingsPlanOrders/{order}/savingsPlans/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavingsPlan {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sku: Sku,
    #[serde(default)]
    pub properties: SavingsPlanProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsPlanProperties {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub display_provisioning_state: Option<String>,
    #[serde(default)]
    pub billing_scope_id: Option<String>,
    #[serde(default)]
    pub billing_profile_id: Option<String>,
    #[serde(default)]
    pub applied_scope_type: Option<String>,
    #[serde(default)]
    pub term: Option<String>,
    #[serde(default)]
    pub billing_plan: Option<String>,
    #[serde(default)]
    pub commitment: Option<SavingsPlanCommitment>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub effective_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub benefit_start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub purchase_date_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "opt_datetime")]
    pub expiry_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub renew: Option<bool>,
    #[serde(default)]
    pub utilization: Option<Utilization>,
}

/// The answer of `POST /providers/Microsoft.BillingBenefits/validate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidateResponse {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub benefits: Vec<ValidateResponseItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidateResponseItem {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub benefits: Vec<ValidateResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateResult {
    #[serde(default)]
    pub valid: Option<bool>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub reason_code: Option<String>,
}

/// The answer of `calculateRefund` (200) and of `return` (202): what returning `quantity`
/// instances of a reservation gives back, and the refund policy's verdict (the rolling
/// 12-month cap: `consumedRefundsTotal` against `maxRefundLimit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub properties: RefundResponseProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponseProperties {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub quantity: Option<u32>,
    #[serde(default)]
    pub billing_refund_amount: Option<Price>,
    #[serde(default)]
    pub pricing_refund_amount: Option<Price>,
    #[serde(default)]
    pub policy_result: Option<RefundPolicyResult>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RefundPolicyResult {
    #[serde(default)]
    pub properties: RefundPolicyResultProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundPolicyResultProperties {
    #[serde(default)]
    pub consumed_refunds_total: Option<Price>,
    #[serde(default)]
    pub max_refund_limit: Option<Price>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub policy_errors: Vec<ErrorDetail>,
}

impl RefundResponse {
    fn policy(&self) -> Option<&RefundPolicyResultProperties> {
        self.properties
            .policy_result
            .as_ref()
            .map(|p| &p.properties)
    }

    /// The refund in USD (the pricing currency), if the answer gives it in USD.
    pub fn refund_usd(&self) -> Option<Decimal> {
        usd(self.properties.pricing_refund_amount.as_ref())
    }

    /// Refunds already made in the rolling 12 months, USD.
    pub fn consumed_usd(&self) -> Option<Decimal> {
        usd(self
            .policy()
            .and_then(|p| p.consumed_refunds_total.as_ref()))
    }

    /// The cap, USD.
    pub fn limit_usd(&self) -> Option<Decimal> {
        usd(self.policy().and_then(|p| p.max_refund_limit.as_ref()))
    }

    /// The refund policy's objections ("code: message"), empty when it allows the return.
    pub fn policy_errors(&self) -> Vec<String> {
        self.policy()
            .map(|p| described(&p.policy_errors))
            .unwrap_or_default()
    }
}

/// A policy's objections as "code: message".
fn described(errors: &[ErrorDetail]) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("PolicyError"),
                e.message.as_deref().unwrap_or("no message")
            )
        })
        .collect()
}

fn usd(p: Option<&Price>) -> Option<Decimal> {
    p.filter(|p| p.currency_code.as_deref().unwrap_or("USD") == "USD")
        .and_then(|p| p.amount)
}

/// The answer of `calculateExchange` and of `exchange` (both long-running: the final body is the
/// `Azure-AsyncOperation` status URL's), as in the official examples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeOperation {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub properties: ExchangeProperties,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeProperties {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub net_payable: Option<Price>,
    #[serde(default)]
    pub refunds_total: Option<Price>,
    #[serde(default)]
    pub purchases_total: Option<Price>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub reservations_to_purchase: Vec<ExchangePurchase>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub savings_plans_to_purchase: Vec<ExchangePurchase>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub reservations_to_exchange: Vec<ExchangeReturn>,
    #[serde(default)]
    pub policy_result: Option<ExchangePolicy>,
}

/// A purchase of an exchange: a reservation (`reservationOrderId`, `reservationId`) or a savings
/// plan (`savingsPlanOrderId`, `savingsPlanId`); the ids only once the exchange made it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangePurchase {
    #[serde(default)]
    pub reservation_order_id: Option<String>,
    #[serde(default)]
    pub reservation_id: Option<String>,
    #[serde(default)]
    pub savings_plan_order_id: Option<String>,
    #[serde(default)]
    pub savings_plan_id: Option<String>,
    #[serde(default)]
    pub billing_currency_total: Option<Price>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A reservation given up by an exchange and its refund.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeReturn {
    #[serde(default)]
    pub reservation_id: Option<String>,
    #[serde(default)]
    pub quantity: Option<u32>,
    #[serde(default)]
    pub billing_refund_amount: Option<Price>,
    #[serde(default)]
    pub status: Option<String>,
}

/// `policyResult` of an exchange: `{"policyErrors": [...]}` (no `properties` level, unlike a
/// refund's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangePolicy {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub policy_errors: Vec<ErrorDetail>,
}

impl ExchangeOperation {
    /// What is refunded for the reservations given up, USD.
    pub fn refunds_usd(&self) -> Option<Decimal> {
        usd(self.properties.refunds_total.as_ref())
    }

    /// What the new purchases commit to over their term, USD.
    pub fn purchases_usd(&self) -> Option<Decimal> {
        usd(self.properties.purchases_total.as_ref())
    }

    /// What is paid now: purchases less refunds, USD.
    pub fn net_payable_usd(&self) -> Option<Decimal> {
        usd(self.properties.net_payable.as_ref())
    }

    /// The exchange policy's objections ("code: message"), empty when it allows the exchange.
    pub fn policy_errors(&self) -> Vec<String> {
        self.properties
            .policy_result
            .as_ref()
            .map(|p| described(&p.policy_errors))
            .unwrap_or_default()
    }
}

/// The body of an `Azure-AsyncOperation` status URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AsyncOperation {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// An ARM error body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// A JSON number (or a numeric string) as an exact decimal, through its shortest decimal text.
pub fn decimal_of(v: &serde_json::Value) -> Option<Decimal> {
    let text = match v {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => decimal_of(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("'{v}' is not a decimal amount"))),
    }
}

/// RFC 3339 with any number of fractional digits ("2017-08-30T03:49:19.0252126Z"); a timestamp
/// without an offset is UTC, as ARM writes some.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

fn opt_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse_datetime(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not an RFC 3339 date-time"))),
    }
}

fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("'{s}' is not a date (YYYY-MM-DD)"))),
    }
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_dates_keep_seven_fractional_digits() {
        let p: Price = serde_json::from_str(r#"{"currencyCode":"USD","amount":15.23}"#).unwrap();
        assert_eq!(p.amount, Some(Decimal::new(1523, 2)));
        let p: Price = serde_json::from_str(r#"{"amount":0.001}"#).unwrap();
        assert_eq!(p.amount, Some(Decimal::new(1, 3)));
        let p: Price = serde_json::from_str(r#"{"amount":46}"#).unwrap();
        assert_eq!(p.amount, Some(Decimal::from(46)));
        assert!(serde_json::from_str::<Price>(r#"{"amount":"abc"}"#).is_err());
        let d = parse_datetime("2017-08-30T03:49:19.0252126Z").unwrap();
        assert_eq!(d.to_rfc3339(), "2017-08-30T03:49:19.025212600+00:00");
        assert!(parse_datetime("2023-10-19T18:05:36").is_some());
        assert!(parse_datetime("yesterday").is_none());
        let sp: SavingsPlan = serde_json::from_str(
            r#"{"id":"/x","properties":{"expiryDateTime":"2023-10-19T18:05:36.5252231Z","commitment":{"grain":"Hourly","currencyCode":"USD","amount":0.001}}}"#,
        )
        .unwrap();
        assert!(sp.properties.expiry_date_time.is_some());
        let bad = serde_json::from_str::<SavingsPlan>(
            r#"{"id":"/x","properties":{"expiryDateTime":"not a date"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("not an RFC 3339"), "{bad}");
    }
}
