//! Azure as a [`CommitmentMarket`]: reservations (Microsoft.Capacity) and savings plans
//! (Microsoft.BillingBenefits) through the generated SDK clients ([`AzureClients`]).
//!
//! * `inventory`: reservations and savings plans that cover usage now or are being created
//!   (paging followed); a reservation's amortized cost is its share of its order's price.
//! * `quote`: a reservation is priced by `calculatePrice` (the order's total over the term: the
//!   sum of the payment schedule when it lists every month, else `pricingCurrencyTotal`); a
//!   savings plan costs its hourly commitment, checked by `validate` (Azure has no other price
//!   for it), upfront = the whole term's commitment when paid upfront.
//! * `purchase`: **the idempotency key decides the resource's name**. A reservation order is
//!   created with `PUT reservationOrders/{id}` where `id` is a GUID derived from the key
//!   ([`order_id_for_key`]); a savings plan with `PUT savingsPlanOrderAliases/{name}`, the alias
//!   name derived the same way. Both PUTs are idempotent on that name, so a resend after a lost
//!   answer or a crash finds the order instead of buying a second one; and before any PUT the
//!   name is looked up (GET), so a purchase already made is returned, never repeated. Once Azure
//!   accepted the PUT nothing is reported as an error: a failed poll or read-back still returns
//!   the purchase (read back by its name, else as requested).
//! * `find_purchase` / `find_by_idempotency_key`: GET the order (alias) by the derived name. An
//!   order that exists but failed (`Failed`, `BillingFailed`, `Cancelled`) is
//!   [`Found::Unclear`]: a person looks before anything else is bought.
//! * Errors ([`provider_error`]): on the two PUTs, anything that may have reached Azure without
//!   an answer (no response, 5xx after retries, a poll that timed out) is an unknown outcome
//!   (looked up first); throttling and everything on reads is retryable; 4xx is final.
//!
//! Returns: `calculateRefund` then `return` ([`AzureMarket::give_back`]), within Azure's rolling
//! refund cap; a partial return whose answer was lost is recognised from the reservation's
//! revisions ([`AzureMarket::found_return`]).
//!
//! Exchanges ([`AzureMarket::swap`]): whole reservations into a reservation or a savings plan,
//! `calculateExchange` then `exchange` under its session, under Azure's rules
//! ([`crate::domain::rules::check_azure_exchange`]: the 2027-02-01 rule before anything is asked,
//! the value rule and the exchange policy on the calculation). `exchange` has no client token: it
//! is sent once, and an unknown outcome is settled by reading back the purchase it made, found
//! by the display name the key derives ([`exchange_tag`]); never by sending again.
//!
//! `offers`: the reservation prices `commitd offerings --provider azure` cached
//! ([`super::offerings`]), when the market was given the cache.

use super::client::{Accepted, Answer, AzureClients, Inventory};
use super::error::AzureError;
use super::model::{CalculatePrice, ExchangeOperation, Reservation, ReservationOrder, SavingsPlan};
use crate::domain::rules::{check_azure_exchange, AzureExchangeInto, AzureExchangeSource};
use crate::domain::{
    sizing, Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
};
use crate::markets::{
    check_exchange_quote, BoxFuture, CommitmentMarket, ExchangeQuote, ExchangeRequest, Exchanged,
    Found, Operation, ProviderError, Purchase, PurchaseRequest, PurchaseSpec, Quote, ReturnRequest,
    Returned,
};
use azure_mgmt_billingbenefits::package_2022_11_01::models as bb;
use azure_mgmt_reservations::package_2022_11::models as cap;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

const NAME: &str = "azure";
/// The savings plan SKU (compute savings plans are the only kind Azure sells).
pub const SAVINGS_PLAN_SKU: &str = "Compute_Savings_Plan";
const FAILED_STATES: [&str; 4] = ["failed", "billingfailed", "cancelled", "canceled"];
const GONE_STATES: [&str; 4] = ["expired", "split", "merged", "archived"];

/// The reservation order id (and savings plan alias name) of a purchase under `key`: a
/// name-based GUID (SHA-256 of a fixed prefix and the key, version and variant bits set as in
/// RFC 9562's name-based UUIDs). The same key always names the same order.
pub fn order_id_for_key(key: &str) -> String {
    let digest = Sha256::digest(format!("commitd/azure/purchase/{key}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom (hash-based)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The display name an exchange gives what it buys: derived from the key (SHA-256), so that the
/// new reservation or savings plan is found by it when the exchange's answer was lost (the
/// `exchange` call takes no client token and Azure chooses the new order's id).
pub fn exchange_tag(key: &str) -> String {
    let digest = Sha256::digest(format!("commitd/azure/exchange/{key}").as_bytes());
    format!("commitd-exchange-{}", &hex::encode(digest)[..24])
}

/// Lets a revision's Azure timestamp be this much earlier than the time commitd recorded before
/// the call (clocks differ).
const CLOCK_SLACK_MINUTES: i64 = 5;

/// The order id in a reservation's (or savings plan's) resource id
/// (`/providers/Microsoft.Capacity/reservationOrders/{order}/reservations/{id}`), any case.
pub fn order_of(resource_id: &str) -> Option<String> {
    let parts: Vec<&str> = resource_id.split('/').collect();
    parts
        .iter()
        .position(|p| {
            p.eq_ignore_ascii_case("reservationOrders")
                || p.eq_ignore_ascii_case("savingsPlanOrders")
        })
        .and_then(|i| parts.get(i + 1))
        .map(|s| s.to_ascii_lowercase())
}

/// The last segment of a resource id.
fn leaf(resource_id: &str) -> String {
    resource_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(resource_id)
        .to_ascii_lowercase()
}

/// "order/item": a commitment's id, as Azure's `name` of a reservation or savings plan.
fn commitment_id(resource_id: &str) -> String {
    match order_of(resource_id) {
        Some(order) => format!("{order}/{}", leaf(resource_id)),
        None => leaf(resource_id),
    }
}

pub fn term_of(text: Option<&str>) -> Option<Term> {
    match text.map(str::trim) {
        Some("P1Y") => Some(Term::ONE_YEAR),
        Some("P3Y") => Some(Term::THREE_YEARS),
        _ => None,
    }
}

fn term_text(term: Term) -> &'static str {
    if term == Term::THREE_YEARS {
        "P3Y"
    } else {
        "P1Y"
    }
}

fn money(d: Decimal) -> Result<Money, ProviderError> {
    Money::from_decimal(d).ok_or_else(|| refused(format!("amount {d} is out of range")))
}

fn refused(message: String) -> ProviderError {
    ProviderError::Refused {
        provider: NAME.into(),
        message,
    }
}

fn state_in(state: Option<&str>, states: &[&str]) -> bool {
    state.is_some_and(|s| states.contains(&s.to_ascii_lowercase().as_str()))
}

/// The commitments an inventory holds (active or being created), and notes on what was
/// skipped or could not be priced.
pub fn commitments(inv: &Inventory) -> (Vec<Commitment>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for r in &inv.reservations {
        let p = &r.properties;
        if state_in(p.provisioning_state.as_deref(), &FAILED_STATES)
            || state_in(p.provisioning_state.as_deref(), &GONE_STATES)
            || p.archived == Some(true)
        {
            continue;
        }
        if p.reserved_resource_type.as_deref() != Some("VirtualMachines") {
            notes.push(format!(
                "{}: reserved resource type {} is not modelled",
                commitment_id(&r.id),
                p.reserved_resource_type.as_deref().unwrap_or("(none)")
            ));
            continue;
        }
        let order = order_of(&r.id).and_then(|o| {
            inv.reservation_orders
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&o))
        });
        match reservation_commitment(r, order, &inv.reservations) {
            Ok((c, note)) => {
                notes.extend(note);
                out.push(c);
            }
            Err(why) => notes.push(why),
        }
    }
    for sp in &inv.savings_plans {
        let p = &sp.properties;
        if state_in(p.provisioning_state.as_deref(), &FAILED_STATES)
            || state_in(p.provisioning_state.as_deref(), &GONE_STATES)
        {
            continue;
        }
        match savings_plan_commitment(sp) {
            Ok(c) => out.push(c),
            Err(why) => notes.push(why),
        }
    }
    (out, notes)
}

/// A reservation as a commitment; its cost is its share (by quantity) of its order's price.
pub fn reservation_commitment(
    r: &Reservation,
    order: Option<&ReservationOrder>,
    all: &[Reservation],
) -> Result<(Commitment, Option<String>), String> {
    let id = commitment_id(&r.id);
    let p = &r.properties;
    let term = term_of(p.term.as_deref())
        .or_else(|| order.and_then(|o| term_of(o.properties.term.as_deref())))
        .ok_or_else(|| format!("{id}: term {:?} is not 1 or 3 years", p.term))?;
    let instance_type = r
        .sku
        .name
        .clone()
        .ok_or_else(|| format!("{id}: no sku.name"))?;
    let quantity = p
        .quantity
        .filter(|q| *q > 0)
        .ok_or_else(|| format!("{id}: no quantity"))?;
    let plan = p
        .billing_plan
        .clone()
        .or_else(|| order.and_then(|o| o.properties.billing_plan.clone()));
    let payment = match plan.as_deref() {
        Some("Monthly") => PaymentOption::NoUpfront,
        _ => PaymentOption::AllUpfront,
    };
    let start = p
        .benefit_start_time
        .or(p.purchase_date_time)
        .or(p.effective_date_time)
        .or_else(|| order.and_then(|o| o.properties.benefit_start_time))
        .or_else(|| order.and_then(|o| o.properties.created_date_time))
        .ok_or_else(|| format!("{id}: no start (benefitStartTime, purchaseDateTime)"))?;
    let start = Hour::from_datetime(start);
    let end = p
        .expiry_date_time
        .or_else(|| {
            p.expiry_date
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .map(Hour::from_datetime)
        .unwrap_or_else(|| start.plus(term.hours()));
    // The order's price, shared by quantity among its reservations (a split order has several).
    let order_total = order.and_then(|o| {
        o.properties
            .plan_information
            .as_ref()
            .and_then(|pi| pi.pricing_currency_total.as_ref())
            .filter(|p| p.currency_code.as_deref().unwrap_or("USD") == "USD")
            .and_then(|p| p.amount)
    });
    let order_quantity: u32 = order
        .and_then(|o| o.properties.original_quantity)
        .unwrap_or_else(|| {
            all.iter()
                .filter(|x| order_of(&x.id) == order_of(&r.id))
                .filter_map(|x| x.properties.quantity)
                .sum()
        })
        .max(quantity);
    let (hourly_cost, upfront, note) = match order_total {
        Some(total) => {
            let share = total * Decimal::from(quantity) / Decimal::from(order_quantity);
            let hourly = Money::from_decimal(share / Decimal::from(term.hours()))
                .ok_or_else(|| format!("{id}: price {share} out of range"))?;
            let upfront = match payment {
                PaymentOption::AllUpfront => Money::from_decimal(share)
                    .ok_or_else(|| format!("{id}: price {share} out of range"))?,
                _ => Money::ZERO,
            };
            (hourly, upfront, None)
        }
        None => (
            Money::ZERO,
            Money::ZERO,
            Some(format!(
                "{id}: its order carries no USD price (planInformation); its cost is unknown"
            )),
        ),
    };
    let flex = sizing::sizing_or_exact(Provider::Azure, &instance_type).flex_group;
    Ok((
        Commitment {
            id,
            provider: Provider::Azure,
            instrument: Instrument::AzureReservation,
            term,
            payment,
            start,
            end,
            region: r.location.clone(),
            instance_type: Some(instance_type),
            family: Some(flex),
            amount: CommitmentAmount::Instances(quantity),
            hourly_cost,
            upfront,
        },
        note,
    ))
}

/// A savings plan as a commitment: its hourly commitment in USD.
pub fn savings_plan_commitment(sp: &SavingsPlan) -> Result<Commitment, String> {
    let id = commitment_id(&sp.id);
    let p = &sp.properties;
    let term = term_of(p.term.as_deref())
        .ok_or_else(|| format!("{id}: term {:?} is not 1 or 3 years", p.term))?;
    let c = p
        .commitment
        .as_ref()
        .ok_or_else(|| format!("{id}: no commitment"))?;
    if c.currency_code.as_deref().unwrap_or("USD") != "USD" {
        return Err(format!(
            "{id}: commitment in {} is not modelled (USD only)",
            c.currency_code.as_deref().unwrap_or("?")
        ));
    }
    if c.grain.as_deref().unwrap_or("Hourly") != "Hourly" {
        return Err(format!(
            "{id}: commitment grain {:?} is not hourly",
            c.grain
        ));
    }
    let amount = c
        .amount
        .ok_or_else(|| format!("{id}: no commitment amount"))?;
    let hourly =
        Money::from_decimal(amount).ok_or_else(|| format!("{id}: amount {amount} out of range"))?;
    let payment = match p.billing_plan.as_deref() {
        Some("P1M") => PaymentOption::NoUpfront,
        _ => PaymentOption::AllUpfront,
    };
    let start = p
        .benefit_start_time
        .or(p.effective_date_time)
        .or(p.purchase_date_time)
        .ok_or_else(|| format!("{id}: no start (benefitStartTime, effectiveDateTime)"))?;
    let start = Hour::from_datetime(start);
    let end = p
        .expiry_date_time
        .map(Hour::from_datetime)
        .unwrap_or_else(|| start.plus(term.hours()));
    let upfront = match payment {
        PaymentOption::AllUpfront => hourly.times(term.hours()).unwrap_or(Money::ZERO),
        _ => Money::ZERO,
    };
    Ok(Commitment {
        id,
        provider: Provider::Azure,
        instrument: Instrument::AzureSavingsPlan,
        term,
        payment,
        start,
        end,
        region: None,
        instance_type: None,
        family: None,
        amount: CommitmentAmount::HourlySpend(hourly),
        hourly_cost: hourly,
        upfront,
    })
}

/// The total a `calculatePrice` answer quotes for the whole term: the payment schedule's sum
/// when it lists every month of the term (monthly billing), else `pricingCurrencyTotal`.
pub fn quoted_total(answer: &CalculatePrice, term: Term) -> Result<Decimal, String> {
    let p = answer
        .properties
        .as_ref()
        .ok_or("calculatePrice answer has no properties")?;
    let total = p
        .pricing_currency_total
        .as_ref()
        .ok_or("calculatePrice answer has no pricingCurrencyTotal")?;
    let currency = total.currency_code.as_deref().unwrap_or("USD");
    if currency != "USD" {
        return Err(format!(
            "calculatePrice quotes in {currency}: commitd budgets in USD only"
        ));
    }
    let months = usize::from(term.years()) * 12;
    if p.payment_schedule.len() == months {
        let mut sum = Decimal::ZERO;
        for (i, due) in p.payment_schedule.iter().enumerate() {
            let amount = due
                .pricing_currency_total
                .as_ref()
                .and_then(|x| x.amount)
                .ok_or_else(|| {
                    format!("paymentSchedule[{i}].pricingCurrencyTotal.amount missing")
                })?;
            sum += amount;
        }
        return Ok(sum);
    }
    total
        .amount
        .ok_or_else(|| "calculatePrice answer has no pricingCurrencyTotal.amount".to_string())
}

/// What the executor may do after `e` ([`super::error`]): on a purchase PUT (`mutation`),
/// anything that may have reached Azure without a usable answer is an unknown outcome;
/// throttling never is (Azure refuses before acting); reads are retried; 4xx is final.
pub fn provider_error(e: AzureError, mutation: bool) -> ProviderError {
    let message = e.to_string();
    let provider = NAME.to_string();
    let throttled = e.status() == Some(429);
    let may_have_applied = mutation
        && !throttled
        && matches!(
            e,
            AzureError::NoResponse { .. }
                | AzureError::Unavailable { .. }
                | AzureError::OperationTimedOut { .. }
                | AzureError::BadResponse { .. }
        );
    if may_have_applied {
        ProviderError::OutcomeUnknown { provider, message }
    } else if e.is_transient() {
        ProviderError::Unavailable { provider, message }
    } else {
        ProviderError::Refused { provider, message }
    }
}

/// The Azure market of one tenant / billing scope.
pub struct AzureMarket {
    clients: AzureClients,
    clock: fn() -> DateTime<Utc>,
    offerings: Option<super::offerings::AzureOfferingsCache>,
}

/// What a purchase spec asks Azure for.
enum Ask {
    Reservation(Box<cap::PurchaseRequest>),
    SavingsPlan(Box<bb::SavingsPlanOrderAliasModel>),
}

impl AzureMarket {
    pub fn new(clients: AzureClients) -> Self {
        AzureMarket {
            clients,
            clock: Utc::now,
            offerings: None,
        }
    }

    pub fn with_clock(clients: AzureClients, clock: fn() -> DateTime<Utc>) -> Self {
        AzureMarket {
            clients,
            clock,
            offerings: None,
        }
    }

    /// Offers the planner the reservation prices `commitd offerings --provider azure` cached
    /// under `data_dir` (`azure-offerings/`, fresh for a day).
    pub fn with_offerings_cache(mut self, data_dir: &std::path::Path) -> Self {
        self.offerings = Some(super::offerings::AzureOfferingsCache::new(data_dir));
        self
    }

    pub fn clients(&self) -> &AzureClients {
        &self.clients
    }

    /// Everything held, as commitments, with notes and the request ids.
    pub async fn holdings(&self) -> Result<(Vec<Commitment>, Vec<String>), ProviderError> {
        let inv = self
            .clients
            .inventory()
            .await
            .map_err(|e| provider_error(e, false))?;
        Ok(commitments(&inv.value))
    }

    /// The billing scope of a purchase: the spec's account (a subscription id, or a scope
    /// path), else `[azure] billing_scope_id`.
    fn billing_scope(&self, spec: &PurchaseSpec) -> Result<String, ProviderError> {
        if let Some(a) = spec
            .account
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            return Ok(if a.starts_with('/') {
                a.to_string()
            } else {
                format!("/subscriptions/{a}")
            });
        }
        self.clients
            .settings()
            .billing_scope_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                refused(format!(
                    "{}: no billing scope: set [azure] billing_scope_id (e.g. /subscriptions/<id>) or name the subscription as the action's account",
                    spec.describe()
                ))
            })
    }

    /// The request body for `spec`, or why it cannot be bought at Azure. Errors name the field.
    fn ask(&self, spec: &PurchaseSpec, key: &str) -> Result<Ask, ProviderError> {
        if spec.provider != Provider::Azure {
            return Err(ProviderError::NoOffer {
                provider: NAME.into(),
                what: spec.describe(),
            });
        }
        let scope = self.billing_scope(spec)?;
        let display = format!("commitd {}", &key.chars().take(40).collect::<String>());
        match (spec.instrument, spec.amount) {
            (Instrument::AzureReservation, CommitmentAmount::Instances(n)) => {
                let region = spec
                    .region
                    .clone()
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| {
                        refused(format!(
                            "{}: region is required for a reservation",
                            spec.describe()
                        ))
                    })?;
                let sku = spec
                    .instance_type
                    .clone()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        refused(format!(
                            "{}: instance_type is required for a reservation",
                            spec.describe()
                        ))
                    })?;
                let quantity = i32::try_from(n).ok().filter(|q| *q > 0).ok_or_else(|| {
                    refused(format!(
                        "{}: amount must be 1 or more instances",
                        spec.describe()
                    ))
                })?;
                let billing_plan = match spec.payment {
                    PaymentOption::NoUpfront => cap::ReservationBillingPlan::Monthly,
                    PaymentOption::AllUpfront => cap::ReservationBillingPlan::Upfront,
                    PaymentOption::PartialUpfront => {
                        return Err(refused(format!(
                            "{}: payment PartialUpfront: Azure reservations are paid Monthly (NoUpfront) or Upfront (AllUpfront)",
                            spec.describe()
                        )))
                    }
                };
                let term = if spec.term == Term::THREE_YEARS {
                    cap::ReservationTerm::P3y
                } else {
                    cap::ReservationTerm::P1y
                };
                let properties = cap::PurchaseRequestProperties {
                    reserved_resource_type: Some(cap::ReservedResourceType::VirtualMachines),
                    billing_scope_id: Some(scope),
                    term: Some(term),
                    billing_plan: Some(billing_plan),
                    quantity: Some(quantity),
                    display_name: Some(display),
                    applied_scope_type: Some(cap::AppliedScopeType::Shared),
                    renew: Some(false),
                    reserved_resource_properties: Some(
                        cap::purchase_request_properties::ReservedResourceProperties {
                            instance_flexibility: Some(cap::InstanceFlexibility::On),
                        },
                    ),
                    ..Default::default()
                };
                Ok(Ask::Reservation(Box::new(cap::PurchaseRequest {
                    sku: Some(cap::SkuName { name: Some(sku) }),
                    location: Some(region),
                    properties: Some(properties),
                })))
            }
            (Instrument::AzureSavingsPlan, CommitmentAmount::HourlySpend(hourly)) => {
                if hourly <= Money::ZERO {
                    return Err(refused(format!(
                        "{}: amount must be a positive USD/hour commitment",
                        spec.describe()
                    )));
                }
                let billing_plan = match spec.payment {
                    PaymentOption::NoUpfront => Some(bb::BillingPlan::P1m),
                    PaymentOption::AllUpfront => None,
                    PaymentOption::PartialUpfront => {
                        return Err(refused(format!(
                            "{}: payment PartialUpfront: Azure savings plans are paid monthly (NoUpfront) or upfront (AllUpfront)",
                            spec.describe()
                        )))
                    }
                };
                let term = if spec.term == Term::THREE_YEARS {
                    bb::Term::P3y
                } else {
                    bb::Term::P1y
                };
                // The API takes the amount as a JSON number; the shortest decimal text of the
                // f64 is the exact micro-dollar amount (at most 6 decimals, far below 2^53).
                let amount: f64 = hourly
                    .to_decimal()
                    .normalize()
                    .to_string()
                    .parse()
                    .map_err(|_| {
                        refused(format!(
                            "{}: amount {hourly} is not a number",
                            spec.describe()
                        ))
                    })?;
                let properties = bb::SavingsPlanOrderAliasProperties {
                    display_name: Some(display),
                    billing_scope_id: Some(scope),
                    term: Some(term),
                    billing_plan,
                    applied_scope_type: Some(bb::AppliedScopeType::Shared),
                    commitment: Some(bb::Commitment {
                        price: bb::Price {
                            currency_code: Some("USD".into()),
                            amount: Some(amount),
                        },
                        grain: Some(bb::commitment::Grain::Hourly),
                    }),
                    renew: Some(false),
                    ..Default::default()
                };
                let mut model = bb::SavingsPlanOrderAliasModel::new(bb::Sku {
                    name: Some(SAVINGS_PLAN_SKU.into()),
                });
                model.properties = Some(properties);
                Ok(Ask::SavingsPlan(Box::new(model)))
            }
            _ => Err(ProviderError::NoOffer {
                provider: NAME.into(),
                what: spec.describe(),
            }),
        }
    }

    async fn price(&self, spec: &PurchaseSpec) -> Result<Quote, ProviderError> {
        match self.ask(spec, "quote")? {
            Ask::Reservation(body) => {
                let offering = format!(
                    "{} {} {} {}",
                    body.sku
                        .as_ref()
                        .and_then(|s| s.name.clone())
                        .unwrap_or_default(),
                    body.location.clone().unwrap_or_default(),
                    term_text(spec.term),
                    if spec.payment == PaymentOption::NoUpfront {
                        "Monthly"
                    } else {
                        "Upfront"
                    }
                );
                let answer = self
                    .clients
                    .calculate_price(*body)
                    .await
                    .map_err(|e| provider_error(e, false))?;
                let total = quoted_total(&answer.value, spec.term)
                    .map_err(|m| refused(format!("{}: {m}", spec.describe())))?;
                Ok(Quote {
                    hourly_cost: money(total / Decimal::from(spec.term.hours()))?,
                    upfront: match spec.payment {
                        PaymentOption::AllUpfront => money(total)?,
                        _ => Money::ZERO,
                    },
                    offering,
                })
            }
            Ask::SavingsPlan(model) => {
                let CommitmentAmount::HourlySpend(hourly) = spec.amount else {
                    return Err(refused(spec.describe()));
                };
                let answer = self
                    .clients
                    .validate_savings_plans(bb::SavingsPlanPurchaseValidateRequest {
                        benefits: vec![*model],
                    })
                    .await
                    .map_err(|e| provider_error(e, false))?;
                let result = answer
                    .value
                    .benefits
                    .first()
                    .and_then(|b| b.benefits.first())
                    .ok_or_else(|| refused("validate answered no result".into()))?;
                if result.valid != Some(true) {
                    return Err(refused(format!(
                        "{}: Azure does not allow this purchase: {} ({})",
                        spec.describe(),
                        result.reason.as_deref().unwrap_or("no reason given"),
                        result.reason_code.as_deref().unwrap_or("no code")
                    )));
                }
                Ok(Quote {
                    hourly_cost: hourly,
                    upfront: match spec.payment {
                        PaymentOption::AllUpfront => hourly
                            .times(spec.term.hours())
                            .ok_or_else(|| refused(format!("{hourly} out of range")))?,
                        _ => Money::ZERO,
                    },
                    offering: format!("{SAVINGS_PLAN_SKU} {}", term_text(spec.term)),
                })
            }
        }
    }

    /// The reservation order named by `key`: Yes (live), Unclear (failed), No (none).
    async fn found_reservation(
        &self,
        key: &str,
        spec: Option<&PurchaseSpec>,
    ) -> Result<Found<Purchase>, ProviderError> {
        let id = order_id_for_key(key);
        let Some(order) = self
            .clients
            .reservation_order(&id)
            .await
            .map_err(|e| provider_error(e, false))?
        else {
            return Ok(Found::No);
        };
        let state = order.value.properties.provisioning_state.clone();
        if state_in(state.as_deref(), &FAILED_STATES) {
            return Ok(Found::Unclear(format!(
                "reservation order {id} (the key's) exists in state {}: nothing was bought; check the Azure portal before buying again",
                state.unwrap_or_default()
            )));
        }
        let mut request_ids = order.request_ids.clone();
        let reservations = match self.clients.reservations_in_order(&id).await {
            Ok(r) => {
                request_ids.extend(r.request_ids);
                r.value
            }
            Err(e) => {
                tracing::warn!(order = %id, error = %e, "reservation order found, its reservations could not be listed");
                Vec::new()
            }
        };
        let commitment = match reservations.first() {
            Some(r) => reservation_commitment(r, Some(&order.value), &reservations)
                .map(|(c, _)| c)
                .ok(),
            None => None,
        };
        let commitment = match (commitment, spec) {
            (Some(c), _) => c,
            (None, Some(spec)) => {
                self.requested(format!("{id}/pending"), spec, Money::ZERO, Money::ZERO)
            }
            (None, None) => order_commitment(&order.value, &id),
        };
        Ok(Found::Yes(Purchase {
            idempotency_key: key.to_string(),
            request_id: request_ids.join(","),
            commitment,
        }))
    }

    /// The savings plan alias named by `key`: Yes (created or being created), Unclear
    /// (failed), No (none).
    async fn found_savings_plan(
        &self,
        key: &str,
        spec: Option<&PurchaseSpec>,
    ) -> Result<Found<Purchase>, ProviderError> {
        let name = order_id_for_key(key);
        let Some(alias) = self
            .clients
            .savings_plan_alias(&name)
            .await
            .map_err(|e| provider_error(e, false))?
        else {
            return Ok(Found::No);
        };
        let p = &alias.value.properties;
        if state_in(p.provisioning_state.as_deref(), &FAILED_STATES) {
            return Ok(Found::Unclear(format!(
                "savings plan order alias {name} (the key's) exists in state {}: check the Azure portal before buying again",
                p.provisioning_state.as_deref().unwrap_or_default()
            )));
        }
        let mut request_ids = alias.request_ids.clone();
        let mut commitment = None;
        if let Some(order) = p.savings_plan_order_id.as_deref().map(leaf) {
            match self.clients.savings_plans_in_order(&order).await {
                Ok(plans) => {
                    request_ids.extend(plans.request_ids);
                    commitment = plans
                        .value
                        .first()
                        .and_then(|sp| savings_plan_commitment(sp).ok());
                }
                Err(e) => {
                    tracing::warn!(alias = %name, error = %e, "savings plan alias found, its plans could not be listed");
                }
            }
        }
        let commitment = match commitment {
            Some(c) => c,
            None => {
                let amount = p
                    .commitment
                    .as_ref()
                    .and_then(|c| c.amount)
                    .and_then(Money::from_decimal)
                    .unwrap_or(Money::ZERO);
                let id = p
                    .savings_plan_order_id
                    .as_deref()
                    .map(leaf)
                    .unwrap_or_else(|| format!("alias/{name}"));
                match spec {
                    Some(spec) => self.requested(id, spec, amount, Money::ZERO),
                    None => {
                        let term = term_of(p.term.as_deref()).unwrap_or(Term::ONE_YEAR);
                        let start = Hour::from_datetime((self.clock)());
                        Commitment {
                            id,
                            provider: Provider::Azure,
                            instrument: Instrument::AzureSavingsPlan,
                            term,
                            payment: if p.billing_plan.as_deref() == Some("P1M") {
                                PaymentOption::NoUpfront
                            } else {
                                PaymentOption::AllUpfront
                            },
                            start,
                            end: start.plus(term.hours()),
                            region: None,
                            instance_type: None,
                            family: None,
                            amount: CommitmentAmount::HourlySpend(amount),
                            hourly_cost: amount,
                            upfront: Money::ZERO,
                        }
                    }
                }
            }
        };
        Ok(Found::Yes(Purchase {
            idempotency_key: key.to_string(),
            request_id: request_ids.join(","),
            commitment,
        }))
    }

    async fn found_purchase(&self, r: &PurchaseRequest) -> Result<Found<Purchase>, ProviderError> {
        match r.spec.instrument {
            Instrument::AzureSavingsPlan => {
                self.found_savings_plan(&r.idempotency_key, Some(&r.spec))
                    .await
            }
            _ => {
                self.found_reservation(&r.idempotency_key, Some(&r.spec))
                    .await
            }
        }
    }

    async fn find(&self, key: &str) -> Result<Option<Purchase>, ProviderError> {
        if let Found::Yes(p) = self.found_reservation(key, None).await? {
            return Ok(Some(p));
        }
        match self.found_savings_plan(key, None).await? {
            Found::Yes(p) => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    /// The commitment a purchase made, as requested: what `buy` reports when Azure accepted
    /// the purchase but reading it back failed.
    fn requested(
        &self,
        id: String,
        spec: &PurchaseSpec,
        hourly: Money,
        upfront: Money,
    ) -> Commitment {
        let start = Hour::from_datetime((self.clock)());
        let hourly = match spec.amount {
            CommitmentAmount::HourlySpend(h) if hourly == Money::ZERO => h,
            _ => hourly,
        };
        Commitment {
            id,
            provider: Provider::Azure,
            instrument: spec.instrument,
            term: spec.term,
            payment: spec.payment,
            start,
            end: start.plus(spec.term.hours()),
            region: match spec.instrument {
                Instrument::AzureSavingsPlan => None,
                _ => spec.region.clone(),
            },
            instance_type: spec.instance_type.clone(),
            family: spec
                .instance_type
                .as_deref()
                .map(|t| sizing::sizing_or_exact(Provider::Azure, t).flex_group),
            amount: spec.amount,
            hourly_cost: hourly,
            upfront,
        }
    }

    async fn buy(&self, request: &PurchaseRequest) -> Result<Purchase, ProviderError> {
        let key = &request.idempotency_key;
        let spec = &request.spec;
        let ask = self.ask(spec, key)?;
        match self.found_purchase(request).await? {
            Found::Yes(done) => return Ok(done),
            Found::Unclear(why) => return Err(refused(why)),
            Found::No => {}
        }
        let quote = self.price(spec).await?;
        for (what, quoted, approved) in [
            ("hourly cost", quote.hourly_cost, request.max_hourly_cost),
            ("upfront", quote.upfront, request.max_upfront),
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
        let name = order_id_for_key(key);
        let accepted: Accepted = match ask {
            Ask::Reservation(body) => self.clients.purchase_reservation(&name, *body).await,
            Ask::SavingsPlan(body) => self.clients.create_savings_plan_alias(&name, *body).await,
        }
        .map_err(|e| provider_error(e, true))?;
        // Azure accepted the PUT: from here on the purchase is reported, never an error.
        if let Err(e) = &accepted.poll {
            tracing::warn!(order = %name, error = %e, "purchase accepted, but polling it failed; reading it back");
        }
        let read = match self.found_purchase(request).await {
            Ok(Found::Yes(p)) => Some(p),
            Ok(other) => {
                tracing::warn!(order = %name, found = ?other, "purchase accepted, but not found when read back; reporting it as requested");
                None
            }
            Err(e) => {
                tracing::warn!(order = %name, error = %e, "purchase accepted, but reading it back failed; reporting it as requested");
                None
            }
        };
        Ok(match read {
            Some(p) => Purchase {
                request_id: [accepted.request_id.clone(), p.request_id]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(","),
                ..p
            },
            None => Purchase {
                idempotency_key: key.clone(),
                request_id: accepted.request_id,
                commitment: self.requested(name, spec, quote.hourly_cost, quote.upfront),
            },
        })
    }
}

/// The order and reservation a commitment id names: the market's own `{order}/{reservation}`,
/// or a full ARM resource id.
pub fn reservation_ref(commitment_id: &str) -> Result<(String, String), ProviderError> {
    let id = commitment_id.trim();
    let pair = match order_of(id) {
        Some(order) => Some((order, leaf(id))),
        None => id
            .split_once('/')
            .map(|(o, r)| (o.to_ascii_lowercase(), r.to_ascii_lowercase())),
    };
    match pair {
        Some((order, item)) if !order.is_empty() && !item.is_empty() && !item.contains('/') => {
            Ok((order, item))
        }
        _ => Err(refused(format!(
            "'{commitment_id}' does not name an Azure reservation ({{order}}/{{reservation}})"
        ))),
    }
}

/// The quantity changes among a reservation's `revisions` (in revision order: `etag`, else
/// `effectiveDateTime`) that took exactly `asked` instances, effective at or after `since`, as
/// (quantity before, quantity after).
pub fn returned_since(
    revisions: &[Reservation],
    asked: u32,
    since: DateTime<Utc>,
) -> Vec<(u32, u32)> {
    let when = |r: &Reservation| {
        r.properties
            .effective_date_time
            .or(r.properties.last_updated_date_time)
    };
    let mut ordered: Vec<&Reservation> = revisions.iter().collect();
    ordered.sort_by_key(|r| (r.etag, when(r)));
    ordered
        .windows(2)
        .filter_map(|w| {
            let before = w[0].properties.quantity?;
            let after = w[1].properties.quantity.unwrap_or(0);
            let at = when(w[1])?;
            (at >= since && before.checked_sub(after) == Some(asked)).then_some((before, after))
        })
        .collect()
}

/// A reservation's full resource id, as the refund calls name it.
fn reservation_resource(order: &str, item: &str) -> String {
    format!("/providers/microsoft.capacity/reservationOrders/{order}/reservations/{item}")
}

impl AzureMarket {
    /// The reservation as Azure shows it now; None when its order or it is unknown.
    async fn reservation_now(
        &self,
        order: &str,
        item: &str,
    ) -> Result<Option<Reservation>, ProviderError> {
        match self.clients.reservations_in_order(order).await {
            Ok(list) => Ok(list.value.into_iter().find(|r| leaf(&r.id) == item)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(provider_error(e, false)),
        }
    }

    /// Returns instances of a reservation: `calculateRefund` (the refund, the policy's
    /// verdict on the rolling cap, a session), then `return` under that session. The return
    /// has no client token: once it was sent, an error is an unknown outcome, settled only by
    /// reading the reservation back ([`AzureMarket::found_return`]), never by sending again.
    async fn give_back(&self, request: &ReturnRequest) -> Result<Returned, ProviderError> {
        let (order, item) = reservation_ref(&request.commitment_id)?;
        let Some(r) = self.reservation_now(&order, &item).await? else {
            return Err(refused(format!(
                "no reservation {} in this tenant",
                request.commitment_id
            )));
        };
        let state = r.properties.provisioning_state.clone();
        if state_in(state.as_deref(), &FAILED_STATES) || state_in(state.as_deref(), &GONE_STATES) {
            return Err(refused(format!(
                "reservation {} is {}: nothing to return",
                request.commitment_id,
                state.as_deref().unwrap_or("?")
            )));
        }
        let held = r.properties.quantity.unwrap_or(0);
        let quantity = request.instances.unwrap_or(held);
        if quantity == 0 || quantity > held {
            return Err(refused(format!(
                "cannot return {quantity} of reservation {}: it holds {held}",
                request.commitment_id
            )));
        }
        let resource = reservation_resource(&order, &item);
        let calc = self
            .clients
            .calculate_refund(&order, &resource, quantity)
            .await
            .map_err(|e| provider_error(e, false))?;
        let errors = calc.value.policy_errors();
        if !errors.is_empty() {
            return Err(refused(format!(
                "Azure's refund policy refuses the return of {quantity} x {}: {}",
                request.commitment_id,
                errors.join("; ")
            )));
        }
        if let (Some(refund), Some(used), Some(limit)) = (
            calc.value.refund_usd(),
            calc.value.consumed_usd(),
            calc.value.limit_usd(),
        ) {
            if used + refund > limit {
                return Err(refused(format!(
                    "the refund of {refund} USD would exceed the rolling 12-month cap ({used} of {limit} USD used)"
                )));
            }
        }
        let session = calc
            .value
            .properties
            .session_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| refused("calculateRefund gave no sessionId".into()))?;
        let reason = format!("commitd: idle reservation ({})", request.idempotency_key);
        let done = self
            .clients
            .return_reservation(&order, &resource, quantity, &session, &reason)
            .await
            .map_err(|e| provider_error(e, true))?;
        let mut ids = calc.request_ids;
        ids.extend(done.request_ids);
        Ok(Returned {
            idempotency_key: request.idempotency_key.clone(),
            commitment_id: request.commitment_id.clone(),
            request_id: ids.join(","),
            state: if quantity == held {
                "returned".into()
            } else {
                format!("{quantity} of {held} returned")
            },
        })
    }

    /// Whether a return already happened, from the reservation's state: a whole reservation
    /// returned is `Cancelled`. A partial return leaves a smaller quantity that the reservation
    /// alone cannot tell from one bought that size, so its revisions (`Reservation_ListRevisions`)
    /// are read: exactly one change since the call (`request.at`, less a few minutes for the
    /// clocks) that took exactly the instances asked for is the return. None otherwise (no
    /// such change, or several that could be it): the executor then parks the proposal for a
    /// person, since the return API has no client token.
    async fn found_return(
        &self,
        request: &ReturnRequest,
    ) -> Result<Option<Returned>, ProviderError> {
        let (order, item) = reservation_ref(&request.commitment_id)?;
        let Some(r) = self.reservation_now(&order, &item).await? else {
            return Ok(None);
        };
        let whole = request.instances.is_none() || request.instances == r.properties.quantity;
        let cancelled = state_in(
            r.properties.provisioning_state.as_deref(),
            &["cancelled", "canceled"],
        );
        let found = |request_id: String, state: String| Returned {
            idempotency_key: request.idempotency_key.clone(),
            commitment_id: request.commitment_id.clone(),
            request_id,
            state,
        };
        if whole && cancelled {
            return Ok(Some(found(String::new(), "returned".into())));
        }
        let Some(asked) = request.instances.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let revisions = self
            .clients
            .reservation_revisions(&order, &item)
            .await
            .map_err(|e| provider_error(e, false))?;
        let since = request.at - chrono::Duration::minutes(CLOCK_SLACK_MINUTES);
        Ok(
            match returned_since(&revisions.value, asked, since).as_slice() {
                [(before, after)] => Some(found(
                    revisions.request_id(),
                    if *after == 0 {
                        "returned".into()
                    } else {
                        format!("{asked} of {before} returned")
                    },
                )),
                [] => None,
                several => {
                    tracing::warn!(reservation = %request.commitment_id, changes = ?several, "several quantity changes could be the return; left for a person");
                    None
                }
            },
        )
    }

    /// Refunds in the rolling 12 months, from Azure's own count (`consumedRefundsTotal` of a
    /// `calculateRefund` on a held reservation: it is per billing profile, so any one tells).
    /// None held (in `held`, the inventory the caller just read): nothing to return, so
    /// nothing to count.
    async fn refunded(&self, held: &[Commitment]) -> Result<Vec<(Hour, Money)>, ProviderError> {
        let Some(c) = held
            .iter()
            .find(|c| c.instrument == Instrument::AzureReservation && !c.id.ends_with("/pending"))
        else {
            return Ok(Vec::new());
        };
        let now = Hour::from_datetime((self.clock)());
        let (order, item) = reservation_ref(&c.id)?;
        let used = match self
            .clients
            .calculate_refund(&order, &reservation_resource(&order, &item), 1)
            .await
        {
            Ok(calc) => calc.value.consumed_usd().unwrap_or_default(),
            // Without Azure's count (the role lacks calculateRefund, an outage) the cap is
            // taken as spent: no return is planned, and the cycle still plans purchases.
            Err(e) => {
                tracing::warn!(error = %e, "Azure refund cap unknown; planning no returns");
                return Ok(vec![(now, crate::domain::rules::AZURE_REFUND_CAP)]);
            }
        };
        if used <= Decimal::ZERO {
            return Ok(Vec::new());
        }
        // Counted as refunded now: the cap then stays spent for the longest it could.
        Ok(vec![(now, money(used)?)])
    }
}

/// A reservation an exchange gives up, as Azure shows it now.
struct Source {
    id: String,
    resource: String,
    quantity: u32,
    purchased: DateTime<Utc>,
}

impl AzureMarket {
    /// The reservations `r` gives up, each live, whole (every instance it holds now).
    async fn sources(&self, r: &ExchangeRequest) -> Result<Vec<Source>, ProviderError> {
        if r.source_ids.is_empty() {
            return Err(refused("an exchange names at least one reservation".into()));
        }
        let mut out = Vec::with_capacity(r.source_ids.len());
        for id in &r.source_ids {
            let (order, item) = reservation_ref(id)?;
            let Some(res) = self.reservation_now(&order, &item).await? else {
                return Err(refused(format!("no reservation {id} in this tenant")));
            };
            let p = &res.properties;
            let state = p.provisioning_state.as_deref();
            if state_in(state, &FAILED_STATES) || state_in(state, &GONE_STATES) {
                return Err(refused(format!(
                    "reservation {id} is {}: nothing to exchange",
                    state.unwrap_or("?")
                )));
            }
            let quantity = p.quantity.filter(|q| *q > 0).ok_or_else(|| {
                refused(format!("reservation {id} holds no instance to exchange"))
            })?;
            let purchased = p
                .purchase_date_time
                .or(p.benefit_start_time)
                .or(p.effective_date_time)
                .ok_or_else(|| {
                    refused(format!(
                        "reservation {id}: no purchaseDateTime, so the 2027-02-01 rule cannot be judged"
                    ))
                })?;
            out.push(Source {
                id: id.clone(),
                resource: reservation_resource(&order, &item),
                quantity,
                purchased,
            });
        }
        Ok(out)
    }

    /// The `calculateExchange` request for `r`: its sources given up whole, its target bought
    /// under the key's display name; and what the target is to the exchange rules.
    fn exchange_body(
        &self,
        r: &ExchangeRequest,
        sources: &[Source],
    ) -> Result<(cap::CalculateExchangeRequest, AzureExchangeInto), ProviderError> {
        let tag = exchange_tag(&r.idempotency_key);
        let mut props = cap::CalculateExchangeRequestProperties::default();
        for s in sources {
            props
                .reservations_to_exchange
                .push(cap::ReservationToReturn {
                    reservation_id: Some(s.resource.clone()),
                    quantity: Some(i32::try_from(s.quantity).map_err(|_| {
                        refused(format!("{}: quantity {} out of range", s.id, s.quantity))
                    })?),
                });
        }
        let into = match self.ask(&r.target, &r.idempotency_key)? {
            Ask::Reservation(mut body) => {
                if let Some(p) = body.properties.as_mut() {
                    p.display_name = Some(tag);
                }
                props.reservations_to_purchase.push(*body);
                // Virtual machines, the only reservations commitd buys, are a service the
                // savings plan for compute covers.
                AzureExchangeInto::Reservation {
                    savings_plan_service: true,
                }
            }
            Ask::SavingsPlan(mut model) => {
                if let Some(p) = model.properties.as_mut() {
                    p.display_name = Some(tag);
                }
                // The BillingBenefits alias model and Microsoft.Capacity's savings plan purchase
                // request are the same JSON (sku; properties: displayName, billingScopeId, term,
                // billingPlan, appliedScopeType, commitment): one is read as the other.
                let json = serde_json::to_value(&*model)
                    .map_err(|e| refused(format!("savings plan request: {e}")))?;
                let plan: cap::SavingsPlanPurchaseRequest = serde_json::from_value(json)
                    .map_err(|e| refused(format!("savings plan request: {e}")))?;
                props.savings_plans_to_purchase.push(plan);
                AzureExchangeInto::SavingsPlan
            }
        };
        Ok((
            cap::CalculateExchangeRequest {
                properties: Some(props),
            },
            into,
        ))
    }

    /// The exchange rules' sources.
    fn rule_sources(sources: &[Source]) -> Vec<AzureExchangeSource> {
        sources
            .iter()
            .map(|s| AzureExchangeSource {
                id: s.id.clone(),
                purchased: s.purchased,
            })
            .collect()
    }

    /// A quote that says why the exchange is not made, before anything was asked of Azure.
    fn refused_quote(reason: String) -> ExchangeQuote {
        ExchangeQuote {
            valid: false,
            failure_reason: Some(reason),
            payment_due: Money::ZERO,
            source_remaining_value: None,
            target_value: None,
            request_id: None,
        }
    }

    /// `calculateExchange`'s answer as a quote, judged by Azure's exchange policy and by the
    /// rules (the value rule on Azure's own amounts).
    fn exchange_quote_of(
        answer: &Answer<ExchangeOperation>,
        sources: &[AzureExchangeSource],
        into: AzureExchangeInto,
    ) -> Result<ExchangeQuote, ProviderError> {
        let a = &answer.value;
        let refunds = a
            .refunds_usd()
            .ok_or_else(|| refused("calculateExchange gave no refundsTotal in USD".into()))?;
        let purchases = a
            .purchases_usd()
            .ok_or_else(|| refused("calculateExchange gave no purchasesTotal in USD".into()))?;
        let net = a.net_payable_usd().unwrap_or(purchases - refunds);
        let (refunds, purchases) = (money(refunds)?, money(purchases)?);
        let errors = a.policy_errors();
        let verdict = if !errors.is_empty() {
            Err(format!(
                "Azure's exchange policy refuses it: {}",
                errors.join("; ")
            ))
        } else {
            check_azure_exchange(sources, into, Some((refunds, purchases)))
        };
        Ok(ExchangeQuote {
            valid: verdict.is_ok(),
            failure_reason: verdict.err(),
            payment_due: money(net.max(Decimal::ZERO))?,
            source_remaining_value: Some(refunds),
            target_value: Some(purchases),
            request_id: Some(answer.request_id()),
        })
    }

    /// The quote for `r` and what `exchange` needs next (the session), or the rule that refuses
    /// it before Azure is asked (a quote marked invalid). Changes nothing.
    async fn calculate_exchange(
        &self,
        r: &ExchangeRequest,
    ) -> Result<(ExchangeQuote, Option<String>), ProviderError> {
        let sources = self.sources(r).await?;
        let (body, into) = self.exchange_body(r, &sources)?;
        let rule_sources = Self::rule_sources(&sources);
        if let Err(why) = check_azure_exchange(&rule_sources, into, None) {
            return Ok((Self::refused_quote(why), None));
        }
        let answer = self
            .clients
            .calculate_exchange(body)
            .await
            .map_err(|e| provider_error(e, false))?;
        let quote = Self::exchange_quote_of(&answer, &rule_sources, into)?;
        let session = answer
            .value
            .properties
            .session_id
            .clone()
            .filter(|s| !s.trim().is_empty());
        Ok((quote, session))
    }

    async fn quote_exchange(&self, r: &ExchangeRequest) -> Result<ExchangeQuote, ProviderError> {
        Ok(self.calculate_exchange(r).await?.0)
    }

    /// Exchanges: the purchase already made under the key is returned; else `calculateExchange`,
    /// refused unless Azure's policy and the rules allow it and the true-up is within the
    /// approval, then `exchange` under its session, sent once. Errors after sending are unknown
    /// outcomes ([`provider_error`] on a mutation; an operation that ended `Failed` too: Azure
    /// may have made part of it), settled by [`AzureMarket::found_exchange`], never by resending.
    async fn swap(&self, r: &ExchangeRequest) -> Result<Exchanged, ProviderError> {
        if let Some(done) = self.found_exchange(r).await? {
            return Ok(done);
        }
        let (quote, session) = self.calculate_exchange(r).await?;
        check_exchange_quote(NAME, &quote, r.max_true_up)?;
        let session =
            session.ok_or_else(|| refused("calculateExchange gave no sessionId".into()))?;
        let done = self.clients.exchange(&session).await.map_err(|e| match e {
            AzureError::OperationFailed { .. } => ProviderError::OutcomeUnknown {
                provider: NAME.into(),
                message: e.to_string(),
            },
            e => provider_error(e, true),
        })?;
        let made = &done.value.properties;
        let mut target_ids: Vec<String> = made
            .reservations_to_purchase
            .iter()
            .filter_map(|p| p.reservation_id.as_deref())
            .chain(
                made.savings_plans_to_purchase
                    .iter()
                    .filter_map(|p| p.savings_plan_id.as_deref()),
            )
            .map(commitment_id)
            .collect();
        if target_ids.is_empty() {
            // The exchange is made; what it bought is only named for the audit log.
            match self.found_exchange(r).await {
                Ok(Some(found)) => target_ids = found.target_ids,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "exchange made, but what it bought could not be read back")
                }
            }
        }
        let mut request_ids = quote.request_id.clone().into_iter().collect::<Vec<_>>();
        request_ids.extend(done.request_ids.iter().cloned());
        let accepted = ExchangeQuote {
            payment_due: done
                .value
                .net_payable_usd()
                .and_then(|d| Money::from_decimal(d.max(Decimal::ZERO)))
                .unwrap_or(quote.payment_due),
            ..quote
        };
        Ok(Exchanged {
            idempotency_key: r.idempotency_key.clone(),
            exchange_id: done.value.id.as_deref().map(leaf).or(Some(session)),
            request_id: request_ids.join(","),
            source_ids: r.source_ids.clone(),
            target_ids,
            quote: Some(accepted),
        })
    }

    /// The exchange `r` asked for, if Azure made it: what it bought carries the key's display
    /// name ([`exchange_tag`]), which nothing else gives. None when no reservation (savings
    /// plan) has it, even if the sources read `Cancelled` (a person looks: the purchase may
    /// still be pending, or the sources were returned by hand).
    async fn found_exchange(
        &self,
        r: &ExchangeRequest,
    ) -> Result<Option<Exchanged>, ProviderError> {
        let tag = exchange_tag(&r.idempotency_key);
        let (target_ids, request_ids) = match r.target.instrument {
            Instrument::AzureSavingsPlan => {
                let plans: Answer<Vec<SavingsPlan>> = self
                    .clients
                    .list_all(
                        "SavingsPlan_ListAll",
                        "/providers/Microsoft.BillingBenefits/savingsPlans",
                    )
                    .await
                    .map_err(|e| provider_error(e, false))?;
                let ids: Vec<String> = plans
                    .value
                    .iter()
                    .filter(|p| p.properties.display_name.as_deref() == Some(tag.as_str()))
                    .map(|p| commitment_id(&p.id))
                    .collect();
                (ids, plans.request_ids)
            }
            _ => {
                let all: Answer<Vec<Reservation>> = self
                    .clients
                    .list_all(
                        "Reservation_ListAll",
                        "/providers/Microsoft.Capacity/reservations",
                    )
                    .await
                    .map_err(|e| provider_error(e, false))?;
                let ids: Vec<String> = all
                    .value
                    .iter()
                    .filter(|x| x.properties.display_name.as_deref() == Some(tag.as_str()))
                    .map(|x| commitment_id(&x.id))
                    .collect();
                (ids, all.request_ids)
            }
        };
        if target_ids.is_empty() {
            return Ok(None);
        }
        Ok(Some(Exchanged {
            idempotency_key: r.idempotency_key.clone(),
            exchange_id: None,
            request_id: request_ids.join(","),
            source_ids: r.source_ids.clone(),
            target_ids,
            quote: None,
        }))
    }
}

/// A commitment from an order alone (its reservations not listed yet).
fn order_commitment(order: &ReservationOrder, id: &str) -> Commitment {
    let p = &order.properties;
    let term = term_of(p.term.as_deref()).unwrap_or(Term::ONE_YEAR);
    let start = Hour::from_datetime(
        p.benefit_start_time
            .or(p.created_date_time)
            .or(p.request_date_time)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    );
    Commitment {
        id: format!("{id}/pending"),
        provider: Provider::Azure,
        instrument: Instrument::AzureReservation,
        term,
        payment: if p.billing_plan.as_deref() == Some("Monthly") {
            PaymentOption::NoUpfront
        } else {
            PaymentOption::AllUpfront
        },
        start,
        end: start.plus(term.hours()),
        region: None,
        instance_type: None,
        family: None,
        amount: CommitmentAmount::Instances(p.original_quantity.unwrap_or(0)),
        hourly_cost: Money::ZERO,
        upfront: Money::ZERO,
    }
}

impl CommitmentMarket for AzureMarket {
    fn name(&self) -> &str {
        NAME
    }

    fn inventory(&self) -> BoxFuture<'_, Result<Vec<Commitment>, ProviderError>> {
        Box::pin(async move {
            let (all, notes) = self.holdings().await?;
            for note in notes {
                tracing::warn!(note = %note, "Azure inventory");
            }
            Ok(all)
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
        let _ = since;
        Box::pin(self.found_purchase(request))
    }

    /// A purchase PUT is idempotent on the name the key derives: resending it cannot buy twice.
    /// A return and an exchange carry no client token: never resent after an unknown outcome.
    fn deduplicates(&self, operation: &Operation, spec: &PurchaseSpec) -> bool {
        let _ = spec;
        matches!(operation, Operation::Purchase)
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

    fn refunds<'a>(
        &'a self,
        held: &'a [Commitment],
    ) -> BoxFuture<'a, Result<Vec<(Hour, Money)>, ProviderError>> {
        Box::pin(self.refunded(held))
    }

    fn returns_reservations(&self) -> bool {
        true
    }

    /// The fresh cached cards of `commitd offerings --provider azure` (None: no cache
    /// configured, or nothing fresh in it; the planner prices from the source rate card).
    fn offers(
        &self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Option<crate::domain::RateCard>, ProviderError>> {
        let cached = self.offerings.as_ref().map(|c| c.fresh(now));
        Box::pin(async move {
            Ok(match cached {
                Some((card, n)) if n > 0 => Some(card),
                _ => None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_id_is_a_guid_fixed_by_the_key() {
        let a = order_id_for_key("commitd-p-1");
        assert_eq!(a, order_id_for_key("commitd-p-1"));
        assert_ne!(a, order_id_for_key("commitd-p-2"));
        assert_eq!(a.len(), 36);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        assert_eq!(&groups[2][..1], "8");
    }

    #[test]
    fn resource_ids_name_their_order() {
        let id = "/providers/microsoft.capacity/reservationOrders/1F14354C-dc12/reservations/c8c9";
        assert_eq!(order_of(id).as_deref(), Some("1f14354c-dc12"));
        assert_eq!(commitment_id(id), "1f14354c-dc12/c8c9");
        assert_eq!(order_of("/nothing/here"), None);
    }

    fn unavailable(status: u16) -> AzureError {
        AzureError::Unavailable {
            operation: "ReservationOrder_Purchase",
            code: "x".into(),
            message: "m".into(),
            status,
        }
    }

    fn kind(e: ProviderError) -> &'static str {
        match e {
            ProviderError::OutcomeUnknown { .. } => "unknown",
            ProviderError::Unavailable { .. } => "unavailable",
            ProviderError::Refused { .. } => "refused",
            _ => "other",
        }
    }

    #[test]
    fn an_error_on_a_purchase_is_an_unknown_outcome_unless_azure_refused_before_acting() {
        let lost = || AzureError::NoResponse {
            operation: "ReservationOrder_Purchase",
            message: "connection closed".into(),
        };
        assert_eq!(kind(provider_error(lost(), true)), "unknown");
        assert_eq!(kind(provider_error(unavailable(500), true)), "unknown");
        assert_eq!(kind(provider_error(unavailable(429), true)), "unavailable");
        assert_eq!(kind(provider_error(lost(), false)), "unavailable");
        assert_eq!(kind(provider_error(unavailable(503), false)), "unavailable");
        let bad = AzureError::Rejected {
            operation: "ReservationOrder_Purchase",
            code: "InvalidSku".into(),
            message: "m".into(),
            status: 400,
        };
        assert_eq!(kind(provider_error(bad, true)), "refused");
        let cred = AzureError::Credential {
            credential: "client secret",
            message: "invalid_client".into(),
            transient: false,
        };
        assert_eq!(kind(provider_error(cred, true)), "refused");
    }
}
