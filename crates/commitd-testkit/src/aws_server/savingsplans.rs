//! The Savings Plans wire protocol (AWS restJson1): `POST /OperationName` with a JSON body of
//! camelCase members; answers are JSON, errors carry the code in the `x-amzn-ErrorType`
//! header and `{"message": ...}` in the body. Shapes follow the service model the SDK was
//! generated from (savingsplans 2019-06-28).

use super::world::{ApiError, CreatePlan, World};
use super::Reply;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use commitd::markets::aws::convert::datetime_from_str;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const OPERATIONS: &[&str] = &[
    "CreateSavingsPlan",
    "DescribeSavingsPlans",
    "DescribeSavingsPlanRates",
    "DescribeSavingsPlansOfferings",
    "DescribeSavingsPlansOfferingRates",
    "DeleteQueuedSavingsPlan",
    "ReturnSavingsPlan",
];

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn error_reply(e: &ApiError, request_id: &str) -> Reply {
    Reply {
        status: e.status,
        content_type: "application/json",
        headers: vec![("x-amzn-ErrorType", e.code.clone())],
        body: json!({ "message": e.message }).to_string(),
        request_id: request_id.to_string(),
    }
}

fn ok(body: Value, request_id: &str) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string(),
        request_id: request_id.to_string(),
    }
}

fn str_field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::validation(format!("{name} must be a string."))),
    }
}

fn required<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    str_field(body, name)?.ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn strings(body: &Value, name: &str) -> Vec<String> {
    body.get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `filters: [{name, values}]` as name -> values.
fn filters(body: &Value) -> BTreeMap<String, Vec<String>> {
    body.get("filters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    let name = f.get("name")?.as_str()?.to_string();
                    Some((name, strings(f, "values")))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn page(
    body: &Value,
    world: &World,
    len: usize,
) -> Result<(usize, usize, Option<String>), ApiError> {
    let start = match str_field(body, "nextToken")? {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&i| i <= len)
            .ok_or_else(|| ApiError::validation("Invalid nextToken."))?,
        None => 0,
    };
    let size = body
        .get("maxResults")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .unwrap_or(world.page_size)
        .max(1);
    let end = (start + size).min(len);
    Ok((start, end, (end < len).then(|| end.to_string())))
}

pub fn handle(world: &mut World, operation: &str, body: &Value) -> Result<Value, ApiError> {
    match operation {
        "CreateSavingsPlan" => create(world, body),
        "DescribeSavingsPlans" => describe(world, body),
        "DescribeSavingsPlanRates" => plan_rates(world, body),
        "DescribeSavingsPlansOfferings" => offerings(world, body),
        "DescribeSavingsPlansOfferingRates" => offering_rates(world, body),
        "DeleteQueuedSavingsPlan" => {
            world.delete_queued(required(body, "savingsPlanId")?)?;
            Ok(json!({}))
        }
        "ReturnSavingsPlan" => {
            let id = world.return_plan(
                required(body, "savingsPlanId")?,
                str_field(body, "clientToken")?,
            )?;
            Ok(json!({ "savingsPlanId": id }))
        }
        other => Err(ApiError::new(
            404,
            "UnknownOperationException",
            format!("Unknown operation {other}"),
        )),
    }
}

pub fn reply(world: &mut World, operation: &str, body: &Value, request_id: &str) -> Reply {
    match handle(world, operation, body) {
        Ok(v) => ok(v, request_id),
        Err(e) => error_reply(&e, request_id),
    }
}

fn create(world: &mut World, body: &Value) -> Result<Value, ApiError> {
    let purchase_time = match body.get("purchaseTime") {
        None | Some(Value::Null) => None,
        // The SDK sends epoch seconds (a JSON number, possibly fractional).
        Some(v) => {
            let secs = v
                .as_f64()
                .ok_or_else(|| ApiError::validation("purchaseTime must be a timestamp."))?;
            Some(
                Utc.timestamp_opt(secs.floor() as i64, 0)
                    .single()
                    .ok_or_else(|| ApiError::validation("purchaseTime is out of range."))?,
            )
        }
    };
    let tags = body
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let id = world.create_plan(CreatePlan {
        offering_id: required(body, "savingsPlanOfferingId")?.to_string(),
        commitment: required(body, "commitment")?.to_string(),
        upfront: str_field(body, "upfrontPaymentAmount")?.map(str::to_string),
        purchase_time,
        client_token: str_field(body, "clientToken")?.map(str::to_string),
        tags,
    })?;
    Ok(json!({ "savingsPlanId": id }))
}

fn describe(world: &mut World, body: &Value) -> Result<Value, ApiError> {
    let ids = strings(body, "savingsPlanIds");
    let arns = strings(body, "savingsPlanArns");
    let states = strings(body, "states");
    let all: Vec<Value> = world
        .plans()
        .into_iter()
        .filter(|(p, _)| ids.is_empty() || ids.contains(&p.id))
        .filter(|(p, _)| arns.is_empty() || arns.contains(&world.plan_arn(&p.id)))
        .filter(|(_, s)| states.is_empty() || states.contains(s))
        .map(|(p, state)| {
            let o = world.sp_offering(&p.offering_id).cloned();
            let hours = rust_decimal::Decimal::from(
                o.as_ref().map(|o| o.duration_seconds / 3600).unwrap_or(1).max(1),
            );
            let recurring = (p.commitment - p.upfront / hours).round_dp(5).normalize();
            let mut v = json!({
                "offeringId": p.offering_id,
                "savingsPlanId": p.id,
                "savingsPlanArn": world.plan_arn(&p.id),
                "description": o.as_ref().map(|o| format!("{}-year {} {} Savings Plan", o.duration_seconds / 31_536_000, o.payment, o.plan_type)),
                "start": ts(p.start),
                "end": ts(p.end),
                "state": state,
                "region": o.as_ref().and_then(|o| o.region.clone()).unwrap_or_default(),
                "savingsPlanType": o.as_ref().map(|o| o.plan_type.clone()),
                "paymentOption": o.as_ref().map(|o| o.payment.clone()),
                "productTypes": ["EC2", "Fargate", "Lambda"],
                "currency": "USD",
                "commitment": p.commitment.normalize().to_string(),
                "upfrontPaymentAmount": p.upfront.normalize().to_string(),
                "recurringPaymentAmount": recurring.to_string(),
                "termDurationInSeconds": o.as_ref().map(|o| o.duration_seconds).unwrap_or(0),
                "tags": p.tags,
            });
            if let Some(until) = world.returnable_until(&p, &state) {
                v["returnableUntil"] = json!(ts(until));
            }
            v
        })
        .collect();
    let (start, end, next) = page(body, world, all.len())?;
    Ok(json!({ "savingsPlans": all[start..end], "nextToken": next }))
}

fn rate_properties(region: &str, instance_type: &str) -> Value {
    json!([
        { "name": "region", "value": region },
        { "name": "instanceType", "value": instance_type },
        { "name": "instanceFamily", "value": commitd::markets::aws::convert::family_of(instance_type) },
        { "name": "productDescription", "value": "Linux/UNIX" },
        { "name": "tenancy", "value": "shared" },
    ])
}

fn usage_type(region: &str, instance_type: &str) -> String {
    // AWS prefixes usage types with a region code; only us-east-1 has none of its own style.
    let code = match region {
        "us-east-1" => "USE1",
        "us-west-2" => "USW2",
        "eu-west-1" => "EU",
        _ => "XX",
    };
    format!("{code}-BoxUsage:{instance_type}")
}

fn plan_rates(world: &mut World, body: &Value) -> Result<Value, ApiError> {
    let id = required(body, "savingsPlanId")?;
    let plan = world
        .plans()
        .into_iter()
        .find(|(p, _)| p.id == id)
        .map(|(p, _)| p)
        .ok_or_else(|| ApiError::not_found(format!("Savings Plan {id} not found.")))?;
    let rates: Vec<Value> = world
        .sp_rates
        .iter()
        .filter(|r| r.offering_id == plan.offering_id)
        .map(|r| {
            json!({
                "rate": r.rate.normalize().to_string(),
                "currency": "USD",
                "unit": "Hrs",
                "productType": "EC2",
                "serviceCode": "AmazonEC2",
                "usageType": usage_type(&r.region, &r.instance_type),
                "operation": "RunInstances",
                "properties": rate_properties(&r.region, &r.instance_type),
            })
        })
        .collect();
    let (start, end, next) = page(body, world, rates.len())?;
    Ok(json!({ "savingsPlanId": id, "searchResults": rates[start..end], "nextToken": next }))
}

fn offering_json(o: &super::world::SpOffering) -> Value {
    let mut properties = Vec::new();
    if let Some(r) = &o.region {
        properties.push(json!({ "name": "region", "value": r }));
    }
    if let Some(f) = &o.family {
        properties.push(json!({ "name": "instanceFamily", "value": f }));
    }
    json!({
        "offeringId": o.id,
        "productTypes": ["EC2"],
        "planType": o.plan_type,
        "description": format!("{}-year {} {}", o.duration_seconds / 31_536_000, o.payment, o.plan_type),
        "paymentOption": o.payment,
        "durationSeconds": o.duration_seconds,
        "currency": "USD",
        "serviceCode": "ComputeSavingsPlans",
        "usageType": "ComputeSP:1yrNoUpfront",
        "operation": "",
        "properties": properties,
    })
}

fn offerings(world: &mut World, body: &Value) -> Result<Value, ApiError> {
    let ids = strings(body, "offeringIds");
    let plan_types = strings(body, "planTypes");
    let payments = strings(body, "paymentOptions");
    let durations: Vec<i64> = body
        .get("durations")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let f = filters(body);
    for name in f.keys() {
        if name != "region" && name != "instanceFamily" {
            return Err(ApiError::validation(format!(
                "Invalid filter name '{name}'."
            )));
        }
    }
    let matches = |want: Option<&Vec<String>>, have: &Option<String>| match (want, have) {
        (None, _) => true,
        (Some(w), Some(h)) => w.contains(h),
        (Some(_), None) => false,
    };
    let all: Vec<Value> = world
        .sp_offerings
        .iter()
        .filter(|o| ids.is_empty() || ids.contains(&o.id))
        .filter(|o| plan_types.is_empty() || plan_types.contains(&o.plan_type))
        .filter(|o| payments.is_empty() || payments.contains(&o.payment))
        .filter(|o| durations.is_empty() || durations.contains(&o.duration_seconds))
        .filter(|o| {
            matches(f.get("region"), &o.region) && matches(f.get("instanceFamily"), &o.family)
        })
        .map(offering_json)
        .collect();
    let (start, end, next) = page(body, world, all.len())?;
    Ok(json!({ "searchResults": all[start..end], "nextToken": next }))
}

fn offering_rates(world: &mut World, body: &Value) -> Result<Value, ApiError> {
    let ids = strings(body, "savingsPlanOfferingIds");
    let plan_types = strings(body, "savingsPlanTypes");
    let payments = strings(body, "savingsPlanPaymentOptions");
    let services = strings(body, "serviceCodes");
    if !services.is_empty() && !services.iter().any(|s| s == "AmazonEC2") {
        return Ok(json!({ "searchResults": [] }));
    }
    let f = filters(body);
    for name in f.keys() {
        if ![
            "region",
            "instanceType",
            "instanceFamily",
            "productDescription",
            "tenancy",
            "productId",
        ]
        .contains(&name.as_str())
        {
            return Err(ApiError::validation(format!(
                "Invalid filter name '{name}'."
            )));
        }
    }
    let ok = |name: &str, value: &str| f.get(name).is_none_or(|v| v.iter().any(|x| x == value));
    let all: Vec<Value> = world
        .sp_rates
        .iter()
        .filter(|r| ids.is_empty() || ids.contains(&r.offering_id))
        .filter(|r| ok("region", &r.region) && ok("instanceType", &r.instance_type))
        .filter(|r| ok("instanceFamily", &commitd::markets::aws::convert::family_of(&r.instance_type)))
        .filter(|_| ok("productDescription", "Linux/UNIX") && ok("tenancy", "shared"))
        .filter_map(|r| {
            let o = world.sp_offering(&r.offering_id)?;
            if !plan_types.is_empty() && !plan_types.contains(&o.plan_type) {
                return None;
            }
            if !payments.is_empty() && !payments.contains(&o.payment) {
                return None;
            }
            Some(json!({
                "savingsPlanOffering": {
                    "offeringId": o.id,
                    "paymentOption": o.payment,
                    "planType": o.plan_type,
                    "durationSeconds": o.duration_seconds,
                    "currency": "USD",
                    "planDescription": format!("{}-year {} {}", o.duration_seconds / 31_536_000, o.payment, o.plan_type),
                },
                "rate": r.rate.normalize().to_string(),
                "unit": "Hrs",
                "productType": "EC2",
                "serviceCode": "AmazonEC2",
                "usageType": usage_type(&r.region, &r.instance_type),
                "operation": "RunInstances",
                "properties": rate_properties(&r.region, &r.instance_type),
            }))
        })
        .collect();
    let (start, end, next) = page(body, world, all.len())?;
    Ok(json!({ "searchResults": all[start..end], "nextToken": next }))
}

/// Parses a timestamp the way the control endpoint accepts it.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    datetime_from_str(text)
}
