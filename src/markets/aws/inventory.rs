//! Inventory: the Savings Plans and Reserved Instances an account owns, read through
//! DescribeSavingsPlans (+ DescribeSavingsPlanRates for an EC2 Instance plan's family) and
//! DescribeReservedInstances, and mapped to [`Commitment`]s.
//!
//! The records keep what AWS said (state, ARN, return deadline, tags) next to the domain view,
//! because reconciliation needs it: a purchase commitd made carries its idempotency key as a tag
//! ([`IDEMPOTENCY_TAG`]), so after a crash the executor finds it here instead of buying again.

use super::client::AwsClients;
use super::convert::{self, datetime_from_smithy, datetime_from_str};
use super::error::{from_sdk, AwsError, Called};
use crate::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Tag commitd puts on every savings plan it buys: the proposal's idempotency key.
pub const IDEMPOTENCY_TAG: &str = "commitd:idempotency-key";

/// States in which a commitment covers usage now or will (queued).
const COVERING_STATES: &[&str] = &["active", "queued", "payment-pending"];

/// One savings plan as AWS describes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SavingsPlanRecord {
    pub id: String,
    pub arn: Option<String>,
    pub state: String,
    pub offering_id: Option<String>,
    pub instrument: Instrument,
    pub payment: PaymentOption,
    pub term: Term,
    /// USD per hour.
    pub commitment: Money,
    pub upfront: Money,
    pub recurring: Money,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub region: Option<String>,
    pub family: Option<String>,
    pub returnable_until: Option<DateTime<Utc>>,
    pub tags: BTreeMap<String, String>,
}

impl SavingsPlanRecord {
    pub fn is_covering(&self) -> bool {
        COVERING_STATES.contains(&self.state.as_str())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.tags.get(IDEMPOTENCY_TAG).map(String::as_str)
    }

    pub fn to_commitment(&self) -> Commitment {
        Commitment {
            id: self.id.clone(),
            provider: Provider::Aws,
            instrument: self.instrument,
            term: self.term,
            payment: self.payment,
            start: Hour::from_datetime(self.start),
            end: Hour::from_datetime(self.end),
            // A Compute plan applies in every region; only an EC2 Instance plan is regional.
            region: match self.instrument {
                Instrument::Ec2InstanceSavingsPlan => self.region.clone(),
                _ => None,
            },
            instance_type: None,
            family: self.family.clone(),
            amount: CommitmentAmount::HourlySpend(self.commitment),
            // The hourly commitment *is* the amortized hourly cost: AWS splits it into the
            // recurring fee and the upfront payment spread over the term.
            hourly_cost: self.commitment,
            upfront: self.upfront,
        }
    }
}

/// One Reserved Instance purchase as AWS describes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReservedInstanceRecord {
    pub id: String,
    pub state: String,
    pub instrument: Instrument,
    pub payment: PaymentOption,
    pub term: Term,
    pub instance_type: String,
    pub count: u32,
    pub os: String,
    pub tenancy: String,
    pub region: String,
    /// None for a regional RI.
    pub availability_zone: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Upfront price per instance.
    pub fixed_price: Decimal,
    /// Hourly price per instance (usage price plus hourly recurring charges).
    pub hourly_price: Decimal,
    pub tags: BTreeMap<String, String>,
}

impl ReservedInstanceRecord {
    pub fn is_covering(&self) -> bool {
        COVERING_STATES.contains(&self.state.as_str())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.tags.get(IDEMPOTENCY_TAG).map(String::as_str)
    }

    /// Amortized USD per instance-hour.
    pub fn effective_hourly_rate(&self) -> Decimal {
        let hours = Decimal::from(self.term.hours());
        self.hourly_price + self.fixed_price / hours
    }

    pub fn to_commitment(&self) -> Commitment {
        let count = Decimal::from(self.count);
        let hourly =
            Money::from_decimal(self.effective_hourly_rate() * count).unwrap_or(Money::ZERO);
        let upfront = Money::from_decimal(self.fixed_price * count).unwrap_or(Money::ZERO);
        Commitment {
            id: self.id.clone(),
            provider: Provider::Aws,
            instrument: self.instrument,
            term: self.term,
            payment: self.payment,
            start: Hour::from_datetime(self.start),
            end: Hour::from_datetime(self.end),
            region: Some(self.region.clone()),
            instance_type: Some(self.instance_type.clone()),
            family: Some(convert::family_of(&self.instance_type)),
            amount: CommitmentAmount::Instances(self.count),
            hourly_cost: hourly,
            upfront,
        }
    }
}

/// Everything an account owns, as AWS describes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Inventory {
    pub savings_plans: Vec<SavingsPlanRecord>,
    pub reserved_instances: Vec<ReservedInstanceRecord>,
    /// Plans AWS returned that commitd does not model (SageMaker, Database plans), by id.
    pub skipped: Vec<String>,
}

impl Inventory {
    /// The commitments that cover usage now or will (active, queued, payment pending).
    pub fn commitments(&self) -> Vec<Commitment> {
        let sps = self
            .savings_plans
            .iter()
            .filter(|p| p.is_covering())
            .map(SavingsPlanRecord::to_commitment);
        let ris = self
            .reserved_instances
            .iter()
            .filter(|r| r.is_covering())
            .map(ReservedInstanceRecord::to_commitment);
        sps.chain(ris).collect()
    }

    pub fn savings_plan_by_key(&self, key: &str) -> Option<&SavingsPlanRecord> {
        self.savings_plans
            .iter()
            .find(|p| p.idempotency_key() == Some(key))
    }
}

const DESCRIBE_SP: &str = "DescribeSavingsPlans";
const DESCRIBE_RI: &str = "DescribeReservedInstances";

/// Maps one savings plan; `Ok(None)` for plan types commitd does not model.
pub fn savings_plan_record(
    p: &aws_sdk_savingsplans::types::SavingsPlan,
    request_id: Option<&str>,
) -> Result<Option<SavingsPlanRecord>, AwsError> {
    let bad = |field: &str, msg: String| AwsError::bad(DESCRIBE_SP, field, msg, request_id);
    let id = p
        .savings_plan_id()
        .ok_or_else(|| bad("savingsPlanId", "missing".into()))?
        .to_string();
    let plan_type = p.savings_plan_type().map(|t| t.as_str()).unwrap_or("");
    let Some(instrument) = convert::savings_plan_instrument(plan_type) else {
        return Ok(None);
    };
    let field_of = |name: &str| format!("savingsPlans[{id}].{name}");
    let money = |name: &str, v: Option<&str>| -> Result<Money, AwsError> {
        match v {
            None | Some("") => Ok(Money::ZERO),
            Some(text) => Money::parse(text).map_err(|e| bad(&field_of(name), e.to_string())),
        }
    };
    let time = |name: &str, v: Option<&str>| -> Result<DateTime<Utc>, AwsError> {
        v.and_then(datetime_from_str)
            .ok_or_else(|| bad(&field_of(name), format!("not a timestamp: {v:?}")))
    };
    let payment_text = p.payment_option().map(|o| o.as_str()).unwrap_or("");
    Ok(Some(SavingsPlanRecord {
        arn: p.savings_plan_arn().map(str::to_string),
        state: p
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        offering_id: p.offering_id().map(str::to_string),
        instrument,
        payment: convert::payment_from_aws(payment_text).ok_or_else(|| {
            bad(
                &field_of("paymentOption"),
                format!("unknown '{payment_text}'"),
            )
        })?,
        term: convert::term_from_seconds(p.term_duration_in_seconds()).ok_or_else(|| {
            bad(
                &field_of("termDurationInSeconds"),
                format!(
                    "{} is not a 1- or 3-year term",
                    p.term_duration_in_seconds()
                ),
            )
        })?,
        commitment: money("commitment", p.commitment())?,
        upfront: money("upfrontPaymentAmount", p.upfront_payment_amount())?,
        recurring: money("recurringPaymentAmount", p.recurring_payment_amount())?,
        start: time("start", p.start())?,
        end: time("end", p.end())?,
        region: p.region().filter(|r| !r.is_empty()).map(str::to_string),
        family: None,
        returnable_until: p.returnable_until().and_then(datetime_from_str),
        tags: p
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        id,
    }))
}

/// Maps one Reserved Instance purchase; `region` is the client's (for regional RIs).
pub fn reserved_instance_record(
    r: &aws_sdk_ec2::types::ReservedInstances,
    region: &str,
    request_id: Option<&str>,
) -> Result<ReservedInstanceRecord, AwsError> {
    let bad = |field: &str, msg: String| AwsError::bad(DESCRIBE_RI, field, msg, request_id);
    let id = r
        .reserved_instances_id()
        .ok_or_else(|| bad("reservedInstancesId", "missing".into()))?
        .to_string();
    let field_of = |name: &str| format!("reservedInstancesSet[{id}].{name}");
    let class = r.offering_class().map(|c| c.as_str()).unwrap_or("");
    let offering_type = r.offering_type().map(|c| c.as_str()).unwrap_or("");
    let price = |name: &str, v: Option<f32>| -> Result<Decimal, AwsError> {
        convert::decimal_from_f32(v.unwrap_or(0.0))
            .ok_or_else(|| bad(&field_of(name), format!("not a price: {v:?}")))
    };
    let recurring: Decimal = r
        .recurring_charges()
        .iter()
        .filter(|c| c.frequency().map(|f| f.as_str()) == Some("Hourly"))
        .filter_map(|c| c.amount().and_then(convert::decimal_from_f64))
        .sum();
    let time = |name: &str, v: Option<&aws_sdk_ec2::primitives::DateTime>| {
        v.and_then(datetime_from_smithy)
            .ok_or_else(|| bad(&field_of(name), "missing or out of range".into()))
    };
    let zone = r.availability_zone().filter(|z| !z.is_empty());
    let count = r.instance_count().unwrap_or(0);
    Ok(ReservedInstanceRecord {
        state: r
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        instrument: convert::ri_instrument(class)
            .ok_or_else(|| bad(&field_of("offeringClass"), format!("unknown '{class}'")))?,
        payment: convert::payment_from_aws(offering_type).ok_or_else(|| {
            bad(
                &field_of("offeringType"),
                format!("unknown '{offering_type}'"),
            )
        })?,
        term: convert::term_from_seconds(r.duration().unwrap_or(0)).ok_or_else(|| {
            bad(
                &field_of("duration"),
                format!("{:?} is not a 1- or 3-year term", r.duration()),
            )
        })?,
        instance_type: r
            .instance_type()
            .map(|t| t.as_str().to_string())
            .ok_or_else(|| bad(&field_of("instanceType"), "missing".into()))?,
        count: u32::try_from(count)
            .map_err(|_| bad(&field_of("instanceCount"), format!("{count} is negative")))?,
        os: convert::os_from_product_description(
            r.product_description()
                .map(|d| d.as_str())
                .unwrap_or("Linux/UNIX"),
        ),
        tenancy: convert::tenancy_from_aws(r.instance_tenancy().map(|t| t.as_str()).unwrap_or("")),
        region: zone
            .map(convert::region_of_zone)
            .unwrap_or_else(|| region.to_string()),
        availability_zone: zone.map(str::to_string),
        start: time("start", r.start())?,
        end: time("end", r.end())?,
        fixed_price: price("fixedPrice", r.fixed_price())?,
        hourly_price: price("usagePrice", r.usage_price())? + recurring,
        tags: r
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
            .collect(),
        id,
    })
}

impl AwsClients {
    /// All savings plans (every state), following `nextToken`.
    pub async fn describe_savings_plans(
        &self,
        ids: &[String],
    ) -> Result<Called<(Vec<SavingsPlanRecord>, Vec<String>)>, AwsError> {
        let mut plans = Vec::new();
        let mut skipped = Vec::new();
        let mut request_ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .savings_plans
                .describe_savings_plans()
                .set_savings_plan_ids((!ids.is_empty()).then(|| ids.to_vec()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk(DESCRIBE_SP, self.deadline, e))?;
            let rid =
                aws_sdk_savingsplans::operation::RequestId::request_id(&out).map(str::to_string);
            for p in out.savings_plans() {
                match savings_plan_record(p, rid.as_deref())? {
                    Some(mut record) => {
                        if record.instrument == Instrument::Ec2InstanceSavingsPlan {
                            let (family, frid) = self.plan_family(&record.id).await?;
                            record.family = family;
                            request_ids.extend(frid);
                        }
                        plans.push(record);
                    }
                    None => skipped.extend(p.savings_plan_id().map(str::to_string)),
                }
            }
            request_ids.extend(rid);
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => next = Some(t.to_string()),
                None => break,
            }
        }
        Ok(Called {
            value: (plans, skipped),
            request_ids,
        })
    }

    /// The instance family an EC2 Instance savings plan applies to, from its rates.
    async fn plan_family(&self, id: &str) -> Result<(Option<String>, Option<String>), AwsError> {
        let out = self
            .savings_plans
            .describe_savings_plan_rates()
            .savings_plan_id(id)
            .max_results(1)
            .send()
            .await
            .map_err(|e| from_sdk("DescribeSavingsPlanRates", self.deadline, e))?;
        let rid = aws_sdk_savingsplans::operation::RequestId::request_id(&out).map(str::to_string);
        let family = out.search_results().iter().find_map(|rate| {
            let props = rate.properties();
            props
                .iter()
                .find(|p| p.name().map(|n| n.as_str()) == Some("instanceFamily"))
                .and_then(|p| p.value().map(str::to_string))
                .or_else(|| {
                    props
                        .iter()
                        .find(|p| p.name().map(|n| n.as_str()) == Some("instanceType"))
                        .and_then(|p| p.value().map(convert::family_of))
                })
        });
        Ok((family, rid))
    }

    /// All Reserved Instances of the client's region (every state).
    pub async fn describe_reserved_instances(
        &self,
    ) -> Result<Called<Vec<ReservedInstanceRecord>>, AwsError> {
        self.describe_reserved_instances_by_id(&[]).await
    }

    /// The Reserved Instances with these ids (all of them when `ids` is empty). Reading a
    /// purchase back by its id needs no tag, so it works when tagging failed.
    pub async fn describe_reserved_instances_by_id(
        &self,
        ids: &[String],
    ) -> Result<Called<Vec<ReservedInstanceRecord>>, AwsError> {
        let out = self
            .ec2
            .describe_reserved_instances()
            .set_reserved_instances_ids((!ids.is_empty()).then(|| ids.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk(DESCRIBE_RI, self.deadline, e))?;
        let rid = aws_sdk_ec2::operation::RequestId::request_id(&out);
        let records = out
            .reserved_instances()
            .iter()
            .map(|r| reserved_instance_record(r, &self.region, rid))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Called::new(records, rid))
    }

    /// Savings plans and Reserved Instances together.
    pub async fn inventory(&self) -> Result<Called<Inventory>, AwsError> {
        let sps = self.describe_savings_plans(&[]).await?;
        let ris = self.describe_reserved_instances().await?;
        let mut request_ids = sps.request_ids;
        request_ids.extend(ris.request_ids);
        let (savings_plans, skipped) = sps.value;
        Ok(Called {
            value: Inventory {
                savings_plans,
                reserved_instances: ris.value,
                skipped,
            },
            request_ids,
        })
    }

    /// The savings plan commitd bought under `key`, if any (reconciliation after a crash).
    pub async fn find_savings_plan_by_key(
        &self,
        key: &str,
    ) -> Result<Called<Option<SavingsPlanRecord>>, AwsError> {
        let all = self.describe_savings_plans(&[]).await?;
        Ok(all.map(|(plans, _)| plans.into_iter().find(|p| p.idempotency_key() == Some(key))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_savingsplans::types::{
        SavingsPlan, SavingsPlanPaymentOption, SavingsPlanState, SavingsPlanType,
    };

    fn plan() -> SavingsPlan {
        plan_builder().build()
    }

    fn plan_builder() -> aws_sdk_savingsplans::types::builders::SavingsPlanBuilder {
        SavingsPlan::builder()
            .savings_plan_id("sp-1")
            .savings_plan_type(SavingsPlanType::Ec2Instance)
            .payment_option(SavingsPlanPaymentOption::PartialUpfront)
            .state(SavingsPlanState::Active)
            .term_duration_in_seconds(31_536_000)
            .commitment("1.25")
            .upfront_payment_amount("5475")
            .recurring_payment_amount("0.625")
            .start("2025-03-01T00:00:00.000Z")
            .end("2026-03-01T00:00:00.000Z")
            .region("eu-west-1")
            .tags(IDEMPOTENCY_TAG, "key-1")
    }

    #[test]
    fn savings_plan_maps_to_an_exact_commitment() {
        let r = savings_plan_record(&plan(), Some("rid")).unwrap().unwrap();
        assert_eq!(r.idempotency_key(), Some("key-1"));
        let c = r.to_commitment();
        assert_eq!(c.instrument, Instrument::Ec2InstanceSavingsPlan);
        assert_eq!(
            c.amount,
            CommitmentAmount::HourlySpend(Money::parse("1.25").unwrap())
        );
        assert_eq!(c.upfront, Money::from_units(5475));
        assert_eq!(c.end.since(c.start), 8_760);
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn bad_fields_are_named() {
        let p = plan_builder().commitment("1,25").build();
        let err = savings_plan_record(&p, Some("rid-9"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("savingsPlans[sp-1].commitment"), "{err}");
        assert!(err.contains("rid-9"), "{err}");
        let p = plan_builder()
            .savings_plan_type(SavingsPlanType::Sagemaker)
            .build();
        assert_eq!(savings_plan_record(&p, None).unwrap(), None);
    }

    #[test]
    fn reserved_instance_cost_is_amortized_per_hour() {
        use aws_sdk_ec2::types::*;
        let ri = ReservedInstances::builder()
            .reserved_instances_id("ri-1")
            .instance_type(InstanceType::M5Large)
            .instance_count(2)
            .offering_class(OfferingClassType::Convertible)
            .offering_type(OfferingTypeValues::PartialUpfront)
            .duration(31_536_000)
            .fixed_price(438.0)
            .usage_price(0.0)
            .recurring_charges(
                RecurringCharge::builder()
                    .frequency(RecurringChargeFrequency::Hourly)
                    .amount(0.05)
                    .build(),
            )
            .start(aws_sdk_ec2::primitives::DateTime::from_secs(1_740_787_200))
            .end(aws_sdk_ec2::primitives::DateTime::from_secs(
                1_740_787_200 + 31_536_000,
            ))
            .state(ReservedInstanceState::Active)
            .build();
        let r = reserved_instance_record(&ri, "us-east-1", None).unwrap();
        // 438 / 8760 + 0.05 = 0.1 per instance-hour, exactly.
        assert_eq!(r.effective_hourly_rate(), Decimal::new(1, 1));
        let c = r.to_commitment();
        assert_eq!(c.hourly_cost, Money::parse("0.2").unwrap());
        assert_eq!(c.upfront, Money::from_units(876));
        assert_eq!(c.family.as_deref(), Some("m5"));
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
    }
}
