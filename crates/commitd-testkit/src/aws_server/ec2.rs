//! The EC2 wire protocol (AWS ec2Query): `POST /` with a form-encoded body
//! (`Action=...&Version=2016-11-15&ReservedInstanceId.1=...`); answers are XML in the
//! `http://ec2.amazonaws.com/doc/2016-11-15/` namespace with lowerCamel element names and
//! `<item>` list members; errors are `<Response><Errors><Error><Code/><Message/></Error>
//! </Errors><RequestID/></Response>`. A successful dry run is the error `DryRunOperation`
//! (HTTP 412), as on AWS.

use super::world::{ApiError, Listing, Quote, World};
use super::Reply;
use chrono::{DateTime, SecondsFormat, Utc};
use commitd::markets::aws::convert::datetime_from_str;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

pub const OPERATIONS: &[&str] = &[
    "DescribeReservedInstances",
    "DescribeReservedInstancesOfferings",
    "PurchaseReservedInstancesOffering",
    "GetReservedInstancesExchangeQuote",
    "AcceptReservedInstancesExchangeQuote",
    "CreateTags",
];

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

pub type Params = BTreeMap<String, String>;

pub fn parse_form(body: &[u8]) -> Params {
    form_urlencoded::parse(body).into_owned().collect()
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A tiny XML writer: elements are written in order, text is escaped.
struct Xml(String);

impl Xml {
    fn el(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "<{name}>{}</{name}>", esc(&text.to_string()));
        self
    }
    fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>");
        self
    }
    fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "</{name}>");
        self
    }
}

pub fn error_reply(e: &ApiError, request_id: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        esc(&e.code),
        esc(&e.message),
        esc(request_id)
    );
    Reply {
        status: e.status,
        content_type: "text/xml;charset=UTF-8",
        headers: Vec::new(),
        body,
        request_id: request_id.to_string(),
    }
}

fn ok(action: &str, inner: Xml, request_id: &str) -> Reply {
    Reply {
        status: 200,
        content_type: "text/xml;charset=UTF-8",
        headers: Vec::new(),
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NS}\"><requestId>{}</requestId>{}</{action}Response>",
            esc(request_id),
            inner.0
        ),
        request_id: request_id.to_string(),
    }
}

fn missing(name: &str) -> ApiError {
    ApiError::new(
        400,
        "MissingParameter",
        format!("The request must contain the parameter {name}"),
    )
}

fn invalid(name: &str, value: &str) -> ApiError {
    ApiError::new(
        400,
        "InvalidParameterValue",
        format!("Value ({value}) for parameter {name} is invalid."),
    )
}

/// `Prefix.1`, `Prefix.2`, ... in order.
fn list(p: &Params, prefix: &str) -> Vec<String> {
    (1..)
        .map_while(|i| p.get(&format!("{prefix}.{i}")).cloned())
        .collect()
}

fn boolean(p: &Params, name: &str) -> Result<bool, ApiError> {
    match p.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(invalid(name, other)),
    }
}

fn int(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    p.get(name)
        .map(|v| v.parse::<i64>().map_err(|_| invalid(name, v)))
        .transpose()
}

/// `Filter.N.Name` / `Filter.N.Value.M` as name -> values.
fn filters(p: &Params) -> BTreeMap<String, Vec<String>> {
    (1..)
        .map_while(|i| {
            let name = p.get(&format!("Filter.{i}.Name"))?.clone();
            Some((name, list(p, &format!("Filter.{i}.Value"))))
        })
        .collect()
}

/// `TargetConfiguration.N.OfferingId` / `.InstanceCount` (count defaults to 1, as on AWS).
fn targets(p: &Params) -> Result<Vec<(String, i64)>, ApiError> {
    let mut out = Vec::new();
    for i in 1.. {
        let Some(id) = p.get(&format!("TargetConfiguration.{i}.OfferingId")) else {
            break;
        };
        let count = int(p, &format!("TargetConfiguration.{i}.InstanceCount"))?.unwrap_or(1);
        out.push((id.clone(), count));
    }
    Ok(out)
}

pub fn reply(world: &mut World, action: &str, p: &Params, request_id: &str) -> Reply {
    let result = match action {
        "DescribeReservedInstances" => describe(world, p),
        "DescribeReservedInstancesOfferings" => offerings(world, p),
        "PurchaseReservedInstancesOffering" => purchase(world, p),
        "GetReservedInstancesExchangeQuote" => quote(world, p),
        "AcceptReservedInstancesExchangeQuote" => accept(world, p),
        "CreateTags" => create_tags(world, p),
        "CreateReservedInstancesListing" => create_listing(world, p),
        "DescribeReservedInstancesListings" => describe_listings(world, p),
        other => Err(ApiError::new(
            400,
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
    };
    match result {
        Ok(inner) => ok(action, inner, request_id),
        Err(e) => error_reply(&e, request_id),
    }
}

/// A successful dry run, as EC2 reports it.
fn dry_run_ok() -> ApiError {
    ApiError::new(
        412,
        "DryRunOperation",
        "Request would have succeeded, but DryRun flag is set.",
    )
}

fn recurring(x: &mut Xml, hourly: Decimal) {
    x.open("recurringCharges");
    if hourly > Decimal::ZERO {
        x.open("item")
            .el("frequency", "Hourly")
            .el("amount", hourly.normalize())
            .close("item");
    }
    x.close("recurringCharges");
}

fn describe(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    if boolean(p, "DryRun")? {
        return Err(dry_run_ok());
    }
    let ids = list(p, "ReservedInstancesId");
    let f = filters(p);
    let mut x = Xml(String::new());
    x.open("reservedInstancesSet");
    for (r, state, o) in world.reserved_instances() {
        if !ids.is_empty() && !ids.contains(&r.id) {
            continue;
        }
        if let Some(states) = f.get("state") {
            if !states.contains(&state) {
                continue;
            }
        }
        x.open("item")
            .el("reservedInstancesId", &r.id)
            .el("instanceType", &o.instance_type)
            .el("start", ts(r.start))
            .el("end", ts(r.end))
            .el("duration", o.duration_seconds)
            .el("usagePrice", "0.0")
            .el("fixedPrice", o.fixed_price.normalize())
            .el("instanceCount", r.count)
            .el("productDescription", &o.product_description)
            .el("state", &state)
            .el("instanceTenancy", "default")
            .el("currencyCode", "USD")
            .el("offeringType", &o.offering_type);
        recurring(&mut x, o.hourly);
        x.el("offeringClass", &o.class).el("scope", "Region");
        x.open("tagSet");
        for (k, v) in &r.tags {
            x.open("item").el("key", k).el("value", v).close("item");
        }
        x.close("tagSet").close("item");
    }
    x.close("reservedInstancesSet");
    Ok(x)
}

fn offerings(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    if boolean(p, "DryRun")? {
        return Err(dry_run_ok());
    }
    let ids = list(p, "ReservedInstancesOfferingId");
    let want = |name: &str, value: &str| p.get(name).is_none_or(|v| v == value);
    let max = int(p, "MaxResults")?;
    if let Some(m) = max {
        if !(1..=1000).contains(&m) {
            return Err(invalid("MaxResults", &m.to_string()));
        }
    }
    let all: Vec<_> = world
        .ri_offerings
        .iter()
        .filter(|o| ids.is_empty() || ids.contains(&o.id))
        .filter(|o| want("InstanceType", &o.instance_type))
        .filter(|o| want("OfferingClass", &o.class) && want("OfferingType", &o.offering_type))
        .filter(|o| want("ProductDescription", &o.product_description))
        .filter(|_| want("InstanceTenancy", "default"))
        .cloned()
        .collect();
    let start = match p.get("NextToken") {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&i| i <= all.len())
            .ok_or_else(|| invalid("NextToken", t))?,
        None => 0,
    };
    let size = max.map(|m| m as usize).unwrap_or(world.page_size.max(1));
    let end = (start + size).min(all.len());
    let mut x = Xml(String::new());
    x.open("reservedInstancesOfferingsSet");
    for o in &all[start..end] {
        x.open("item")
            .el("reservedInstancesOfferingId", &o.id)
            .el("instanceType", &o.instance_type)
            .el("duration", o.duration_seconds)
            .el("usagePrice", "0.0")
            .el("fixedPrice", o.fixed_price.normalize())
            .el("productDescription", &o.product_description)
            .el("instanceTenancy", "default")
            .el("currencyCode", "USD")
            .el("offeringType", &o.offering_type);
        recurring(&mut x, o.hourly);
        x.el("marketplace", "false")
            .open("pricingDetailsSet")
            .close("pricingDetailsSet")
            .el("offeringClass", &o.class)
            .el("scope", "Region")
            .close("item");
    }
    x.close("reservedInstancesOfferingsSet");
    if end < all.len() {
        x.el("nextToken", end);
    }
    Ok(x)
}

fn purchase(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    let offering = p
        .get("ReservedInstancesOfferingId")
        .ok_or_else(|| missing("ReservedInstancesOfferingId"))?;
    let count = int(p, "InstanceCount")?.ok_or_else(|| missing("InstanceCount"))?;
    let limit = p
        .get("LimitPrice.Amount")
        .map(|v| Decimal::from_str(v).map_err(|_| invalid("LimitPrice.Amount", v)))
        .transpose()?;
    let purchase_time = p
        .get("PurchaseTime")
        .map(|v| datetime_from_str(v).ok_or_else(|| invalid("PurchaseTime", v)))
        .transpose()?;
    if boolean(p, "DryRun")? {
        world.check_ri_purchase(offering, count, limit, purchase_time)?;
        return Err(dry_run_ok());
    }
    let id = world.purchase_ri(offering, count, limit, purchase_time)?;
    let mut x = Xml(String::new());
    x.el("reservedInstancesId", id);
    Ok(x)
}

fn create_tags(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    let ids = list(p, "ResourceId");
    let tags: Vec<(String, String)> = (1..)
        .map_while(|i| {
            let key = p.get(&format!("Tag.{i}.Key"))?.clone();
            Some((
                key,
                p.get(&format!("Tag.{i}.Value"))
                    .cloned()
                    .unwrap_or_default(),
            ))
        })
        .collect();
    if boolean(p, "DryRun")? {
        return Err(dry_run_ok());
    }
    world.tag_reserved_instances(&ids, &tags)?;
    let mut x = Xml(String::new());
    x.el("return", true);
    Ok(x)
}

fn value(x: &mut Xml, name: &str, hourly: Decimal, total: Decimal, upfront: Decimal) {
    x.open(name)
        .el("hourlyPrice", hourly.normalize())
        .el("remainingTotalValue", total.normalize())
        .el("remainingUpfrontValue", upfront.normalize())
        .close(name);
}

fn quote_xml(q: &Quote) -> Xml {
    let mut x = Xml(String::new());
    x.el("currencyCode", "USD")
        .el("isValidExchange", q.valid)
        .el("outputReservedInstancesWillExpireAt", ts(q.expires_at))
        .el("paymentDue", q.payment_due.normalize());
    value(
        &mut x,
        "reservedInstanceValueRollup",
        q.source_hourly,
        q.source_remaining_total,
        q.source_remaining_upfront,
    );
    value(
        &mut x,
        "targetConfigurationValueRollup",
        q.target_hourly,
        q.target_total,
        q.target_upfront,
    );
    if let Some(reason) = &q.failure_reason {
        x.el("validationFailureReason", reason);
    }
    x
}

fn sources(p: &Params) -> Result<Vec<String>, ApiError> {
    let ids = list(p, "ReservedInstanceId");
    if ids.is_empty() {
        return Err(missing("ReservedInstanceId"));
    }
    Ok(ids)
}

fn quote(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    let ids = sources(p)?;
    let t = targets(p)?;
    if boolean(p, "DryRun")? {
        return Err(dry_run_ok());
    }
    Ok(quote_xml(&world.quote(&ids, &t)?))
}

fn accept(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    let ids = sources(p)?;
    let t = targets(p)?;
    if boolean(p, "DryRun")? {
        world.quote(&ids, &t)?;
        return Err(dry_run_ok());
    }
    let id = world.accept_exchange(&ids, &t)?;
    let mut x = Xml(String::new());
    x.el("exchangeId", id);
    Ok(x)
}

fn listing_xml(x: &mut Xml, l: &Listing, world: &World) {
    x.open("item")
        .el("reservedInstancesListingId", &l.id)
        .el("reservedInstancesId", &l.ri_id)
        .el("createDate", ts(l.created))
        .el("updateDate", ts(world.now()))
        .el("status", &l.status)
        .el("statusMessage", l.status.to_uppercase());
    x.open("instanceCounts");
    let sold = if l.status == "closed" { l.count } else { 0 };
    for (state, n) in [("available", l.count - sold), ("sold", sold)] {
        x.open("item")
            .el("state", state)
            .el("instanceCount", n)
            .close("item");
    }
    x.close("instanceCounts").open("priceSchedules");
    for (term, price) in &l.schedule {
        x.open("item")
            .el("term", term)
            .el("price", price.normalize())
            .el("currencyCode", "USD")
            .el("active", l.status == "active")
            .close("item");
    }
    x.close("priceSchedules")
        .open("tagSet")
        .close("tagSet")
        .el("clientToken", &l.client_token)
        .close("item");
}

fn create_listing(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    let ri_id = p
        .get("ReservedInstancesId")
        .ok_or_else(|| missing("ReservedInstancesId"))?
        .clone();
    let count = int(p, "InstanceCount")?.ok_or_else(|| missing("InstanceCount"))?;
    let token = p
        .get("ClientToken")
        .ok_or_else(|| missing("ClientToken"))?
        .clone();
    let mut schedule = Vec::new();
    for i in 1.. {
        let Some(term) = int(p, &format!("PriceSchedules.{i}.Term"))? else {
            break;
        };
        let name = format!("PriceSchedules.{i}.Price");
        let price = p.get(&name).ok_or_else(|| missing(&name))?;
        let price = Decimal::from_str(price)
            .or_else(|_| Decimal::from_scientific(price))
            .map_err(|_| invalid(&name, price))?;
        if let Some(c) = p.get(&format!("PriceSchedules.{i}.CurrencyCode")) {
            if c != "USD" {
                return Err(invalid(&format!("PriceSchedules.{i}.CurrencyCode"), c));
            }
        }
        schedule.push((term, price));
    }
    let listing = world.create_listing(&ri_id, count, &token, schedule)?;
    let mut x = Xml(String::new());
    x.open("reservedInstancesListingsSet");
    listing_xml(&mut x, &listing, world);
    x.close("reservedInstancesListingsSet");
    Ok(x)
}

fn describe_listings(world: &mut World, p: &Params) -> Result<Xml, ApiError> {
    let ri = p.get("ReservedInstancesId");
    let id = p.get("ReservedInstancesListingId");
    let f = filters(p);
    let mut x = Xml(String::new());
    x.open("reservedInstancesListingsSet");
    for l in world.listings().to_vec() {
        if ri.is_some_and(|r| *r != l.ri_id) || id.is_some_and(|i| *i != l.id) {
            continue;
        }
        if f.get("status").is_some_and(|s| !s.contains(&l.status)) {
            continue;
        }
        listing_xml(&mut x, &l, world);
    }
    x.close("reservedInstancesListingsSet");
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_lists_and_targets_parse_in_order() {
        let p = parse_form(b"Action=GetReservedInstancesExchangeQuote&ReservedInstanceId.1=a&ReservedInstanceId.2=b&TargetConfiguration.1.OfferingId=o&TargetConfiguration.1.InstanceCount=3&Filter.1.Name=state&Filter.1.Value.1=active");
        assert_eq!(list(&p, "ReservedInstanceId"), ["a", "b"]);
        assert_eq!(targets(&p).unwrap(), [("o".to_string(), 3)]);
        assert_eq!(filters(&p)["state"], ["active"]);
    }

    #[test]
    fn errors_are_ec2_xml_and_text_is_escaped() {
        let r = error_reply(
            &ApiError::new(400, "InvalidParameterValue", "a < b & c"),
            "rid-1",
        );
        assert!(r.body.contains("<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>a &lt; b &amp; c</Message>"));
        assert!(r.body.contains("<RequestID>rid-1</RequestID>"));
    }
}
