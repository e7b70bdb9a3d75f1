//! Offerings and prices: DescribeSavingsPlansOfferings / DescribeSavingsPlansOfferingRates and
//! DescribeReservedInstancesOfferings, turned into the optimizer's [`RateCard`], with a daily
//! file cache under the data directory.
//!
//! These APIs give commitment prices only; on-demand list prices come from the billing data
//! (FOCUS `ListUnitPrice`) or the scenario's rate card, so the card built here has no
//! `OnDemand` offers. Prices AWS publishes change rarely, and each listing costs several paged
//! calls, so a card is cached per (region, instance type) and refreshed once it is a day old.

use super::client::AwsClients;
use super::convert;
use super::error::{from_sdk, AwsError, Called};
use crate::domain::{Instrument, Offer, PaymentOption, Product, Provider, RateCard, Term};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One savings plan rate for one product.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SavingsPlanRate {
    pub offering_id: String,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    pub product: Product,
    /// USD per instance-hour under the plan.
    pub rate: Decimal,
}

/// One purchasable savings plan offering.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SavingsPlanOffering {
    pub offering_id: String,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    /// EC2 Instance plans: the family and region they apply to.
    pub family: Option<String>,
    pub region: Option<String>,
}

/// One Reserved Instance offering.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReservedInstanceOffering {
    pub offering_id: String,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    pub product: Product,
    /// Upfront per instance.
    pub fixed_price: Decimal,
    /// Hourly per instance (usage price + hourly recurring charges).
    pub hourly_price: Decimal,
    /// True for a zonal (Availability Zone) offering; commitd buys regional RIs.
    pub zonal: bool,
}

impl ReservedInstanceOffering {
    pub fn effective_hourly_rate(&self) -> Decimal {
        self.hourly_price + self.fixed_price / Decimal::from(self.term.hours())
    }
}

/// Builds a rate card from savings plan rates and regional RI offerings.
pub fn rate_card(
    sp_rates: &[SavingsPlanRate],
    ri_offerings: &[ReservedInstanceOffering],
) -> RateCard {
    let mut card = RateCard::new();
    for r in sp_rates {
        card.insert(
            r.product.clone(),
            Offer {
                instrument: r.instrument,
                term: Some(r.term),
                payment: r.payment,
                effective_hourly_rate: r.rate,
                upfront_share: convert::upfront_share(r.payment),
            },
        );
    }
    for o in ri_offerings.iter().filter(|o| !o.zonal) {
        card.insert(
            o.product.clone(),
            Offer {
                instrument: o.instrument,
                term: Some(o.term),
                payment: o.payment,
                effective_hourly_rate: o.effective_hourly_rate().round_dp(6),
                upfront_share: convert::upfront_share(o.payment),
            },
        );
    }
    card
}

const SP_RATES: &str = "DescribeSavingsPlansOfferingRates";
const SP_OFFERINGS: &str = "DescribeSavingsPlansOfferings";
const RI_OFFERINGS: &str = "DescribeReservedInstancesOfferings";

/// Maps one savings plan offering rate; `None` for rates that are not EC2 instance-hours.
pub fn savings_plan_rate(
    r: &aws_sdk_savingsplans::types::SavingsPlanOfferingRate,
    request_id: Option<&str>,
) -> Result<Option<SavingsPlanRate>, AwsError> {
    if r.unit().map(|u| u.as_str()) != Some("Hrs")
        || r.product_type().map(|p| p.as_str()) != Some("EC2")
    {
        return Ok(None);
    }
    let Some(parent) = r.savings_plan_offering() else {
        return Err(AwsError::bad(
            SP_RATES,
            "savingsPlanOffering",
            "missing",
            request_id,
        ));
    };
    let plan_type = parent.plan_type().map(|t| t.as_str()).unwrap_or("");
    let Some(instrument) = convert::savings_plan_instrument(plan_type) else {
        return Ok(None);
    };
    let offering_id = parent.offering_id().unwrap_or_default().to_string();
    let field = |name: &str| format!("searchResults[{offering_id}].{name}");
    let prop = |key: &str| {
        r.properties()
            .iter()
            .find(|p| p.name() == Some(key))
            .and_then(|p| p.value())
    };
    let (Some(region), Some(instance_type)) = (prop("region"), prop("instanceType")) else {
        return Ok(None);
    };
    let payment_text = parent.payment_option().map(|p| p.as_str()).unwrap_or("");
    let rate_text = r.rate().unwrap_or("");
    Ok(Some(SavingsPlanRate {
        instrument,
        term: convert::term_from_seconds(parent.duration_seconds()).ok_or_else(|| {
            AwsError::bad(
                SP_RATES,
                &field("durationSeconds"),
                format!("{} is not a term", parent.duration_seconds()),
                request_id,
            )
        })?,
        payment: convert::payment_from_aws(payment_text).ok_or_else(|| {
            AwsError::bad(
                SP_RATES,
                &field("paymentOption"),
                format!("unknown '{payment_text}'"),
                request_id,
            )
        })?,
        product: Product {
            provider: Provider::Aws,
            region: region.to_string(),
            instance_type: instance_type.to_string(),
            os: convert::os_from_product_description(
                prop("productDescription").unwrap_or("Linux/UNIX"),
            ),
            tenancy: convert::tenancy_from_aws(prop("tenancy").unwrap_or("shared")),
        },
        rate: convert::decimal_from_str(rate_text).ok_or_else(|| {
            AwsError::bad(
                SP_RATES,
                &field("rate"),
                format!("'{rate_text}' is not a decimal"),
                request_id,
            )
        })?,
        offering_id,
    }))
}

/// Maps one RI offering; `None` for marketplace listings and old utilization-based types.
pub fn reserved_instance_offering(
    o: &aws_sdk_ec2::types::ReservedInstancesOffering,
    region: &str,
    request_id: Option<&str>,
) -> Result<Option<ReservedInstanceOffering>, AwsError> {
    if o.marketplace() == Some(true) {
        return Ok(None);
    }
    let id = o
        .reserved_instances_offering_id()
        .unwrap_or_default()
        .to_string();
    let field = |name: &str| format!("reservedInstancesOfferingsSet[{id}].{name}");
    let bad = |name: &str, msg: String| AwsError::bad(RI_OFFERINGS, &field(name), msg, request_id);
    let (Some(instrument), Some(payment)) = (
        convert::ri_instrument(o.offering_class().map(|c| c.as_str()).unwrap_or("")),
        convert::payment_from_aws(o.offering_type().map(|c| c.as_str()).unwrap_or("")),
    ) else {
        return Ok(None);
    };
    let Some(term) = convert::term_from_seconds(o.duration().unwrap_or(0)) else {
        return Ok(None);
    };
    let price = |name: &str, v: Option<f32>| {
        convert::decimal_from_f32(v.unwrap_or(0.0))
            .ok_or_else(|| bad(name, format!("not a price: {v:?}")))
    };
    let recurring: Decimal = o
        .recurring_charges()
        .iter()
        .filter(|c| c.frequency().map(|f| f.as_str()) == Some("Hourly"))
        .filter_map(|c| c.amount().and_then(convert::decimal_from_f64))
        .sum();
    let zone = o.availability_zone().filter(|z| !z.is_empty());
    Ok(Some(ReservedInstanceOffering {
        instrument,
        term,
        payment,
        product: Product {
            provider: Provider::Aws,
            region: zone
                .map(convert::region_of_zone)
                .unwrap_or_else(|| region.to_string()),
            instance_type: o
                .instance_type()
                .map(|t| t.as_str().to_string())
                .ok_or_else(|| bad("instanceType", "missing".into()))?,
            os: convert::os_from_product_description(
                o.product_description()
                    .map(|d| d.as_str())
                    .unwrap_or("Linux/UNIX"),
            ),
            tenancy: convert::tenancy_from_aws(
                o.instance_tenancy()
                    .map(|t| t.as_str())
                    .unwrap_or("default"),
            ),
        },
        fixed_price: price("fixedPrice", o.fixed_price())?,
        hourly_price: price("usagePrice", o.usage_price())? + recurring,
        // AWS always says the scope; peers that omit it mean zonal when they name a zone.
        zonal: match o.scope() {
            Some(scope) => scope.as_str() == "Availability Zone",
            None => zone.is_some(),
        },
        offering_id: id,
    }))
}

impl AwsClients {
    /// Savings plan rates for EC2 in `region`, optionally for one instance type.
    pub async fn savings_plan_rates(
        &self,
        region: &str,
        instance_type: Option<&str>,
    ) -> Result<Called<Vec<SavingsPlanRate>>, AwsError> {
        use aws_sdk_savingsplans::types::{
            SavingsPlanOfferingRateFilterElement, SavingsPlanRateFilterAttribute,
            SavingsPlanRateServiceCode,
        };
        let mut filters = vec![SavingsPlanOfferingRateFilterElement::builder()
            .name(SavingsPlanRateFilterAttribute::Region)
            .values(region)
            .build()];
        if let Some(t) = instance_type {
            filters.push(
                SavingsPlanOfferingRateFilterElement::builder()
                    .name(SavingsPlanRateFilterAttribute::InstanceType)
                    .values(t)
                    .build(),
            );
        }
        let mut out_rates = Vec::new();
        let mut request_ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .savings_plans
                .describe_savings_plans_offering_rates()
                .service_codes(SavingsPlanRateServiceCode::Ec2)
                .set_filters(Some(filters.clone()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk(SP_RATES, self.deadline, e))?;
            let rid =
                aws_sdk_savingsplans::operation::RequestId::request_id(&out).map(str::to_string);
            for r in out.search_results() {
                out_rates.extend(savings_plan_rate(r, rid.as_deref())?);
            }
            request_ids.extend(rid);
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => next = Some(t.to_string()),
                None => break,
            }
        }
        Ok(Called {
            value: out_rates,
            request_ids,
        })
    }

    /// The savings plan offering to buy for an instrument, term and payment option
    /// (EC2 Instance plans also need the family and region).
    pub async fn find_savings_plan_offering(
        &self,
        instrument: Instrument,
        term: Term,
        payment: PaymentOption,
        family_region: Option<(&str, &str)>,
    ) -> Result<Called<Option<SavingsPlanOffering>>, AwsError> {
        use aws_sdk_savingsplans::types::{
            SavingsPlanOfferingFilterAttribute, SavingsPlanOfferingFilterElement,
            SavingsPlanPaymentOption, SavingsPlanType,
        };
        let plan_type = convert::savings_plan_type(instrument).ok_or_else(|| {
            AwsError::invalid(SP_OFFERINGS, format!("{instrument} is not a savings plan"))
        })?;
        let mut req = self
            .savings_plans
            .describe_savings_plans_offerings()
            .plan_types(SavingsPlanType::from(plan_type))
            .payment_options(SavingsPlanPaymentOption::from(convert::payment_to_aws(
                payment,
            )))
            .durations(convert::seconds_of(term));
        if let Some((family, region)) = family_region {
            req = req
                .filters(
                    SavingsPlanOfferingFilterElement::builder()
                        .name(SavingsPlanOfferingFilterAttribute::InstanceFamily)
                        .values(family)
                        .build(),
                )
                .filters(
                    SavingsPlanOfferingFilterElement::builder()
                        .name(SavingsPlanOfferingFilterAttribute::Region)
                        .values(region)
                        .build(),
                );
        }
        let out = req
            .send()
            .await
            .map_err(|e| from_sdk(SP_OFFERINGS, self.deadline, e))?;
        let rid = aws_sdk_savingsplans::operation::RequestId::request_id(&out);
        let found = out.search_results().iter().find_map(|o| {
            let prop = |key: &str| {
                o.properties()
                    .iter()
                    .find(|p| p.name().map(|n| n.as_str()) == Some(key))
                    .and_then(|p| p.value().map(str::to_string))
            };
            Some(SavingsPlanOffering {
                offering_id: o.offering_id()?.to_string(),
                instrument: convert::savings_plan_instrument(o.plan_type()?.as_str())?,
                term: convert::term_from_seconds(o.duration_seconds())?,
                payment: convert::payment_from_aws(o.payment_option()?.as_str())?,
                family: prop("instanceFamily"),
                region: prop("region"),
            })
            .filter(|f| f.instrument == instrument && f.term == term && f.payment == payment)
        });
        Ok(Called::new(found, rid))
    }

    /// RI offerings in the client's region (no marketplace listings), following `NextToken`.
    pub async fn reserved_instance_offerings(
        &self,
        instance_type: Option<&str>,
    ) -> Result<Called<Vec<ReservedInstanceOffering>>, AwsError> {
        let mut offerings = Vec::new();
        let mut request_ids = Vec::new();
        let mut next: Option<String> = None;
        // A bound on pages, so a peer that keeps returning tokens cannot loop us forever.
        for _page in 0..200 {
            let out = self
                .ec2
                .describe_reserved_instances_offerings()
                .set_instance_type(instance_type.map(aws_sdk_ec2::types::InstanceType::from))
                .include_marketplace(false)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk(RI_OFFERINGS, self.deadline, e))?;
            let rid = aws_sdk_ec2::operation::RequestId::request_id(&out).map(str::to_string);
            for o in out.reserved_instances_offerings() {
                // Filter again here: a peer that ignores the InstanceType parameter (moto)
                // must not put other types into the rate card.
                if let Some(mapped) = reserved_instance_offering(o, &self.region, rid.as_deref())? {
                    if instance_type.is_none_or(|t| mapped.product.instance_type == t) {
                        offerings.push(mapped);
                    }
                }
            }
            request_ids.extend(rid);
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => next = Some(t.to_string()),
                None => break,
            }
        }
        Ok(Called {
            value: offerings,
            request_ids,
        })
    }

    /// The rate card of one region (optionally one instance type), from both APIs.
    pub async fn fetch_rate_card(
        &self,
        instance_type: Option<&str>,
    ) -> Result<Called<RateCard>, AwsError> {
        let region = self.region.clone();
        let sp = self.savings_plan_rates(&region, instance_type).await?;
        let ri = self.reserved_instance_offerings(instance_type).await?;
        let mut request_ids = sp.request_ids;
        request_ids.extend(ri.request_ids);
        Ok(Called {
            value: rate_card(&sp.value, &ri.value),
            request_ids,
        })
    }

    /// Like [`AwsClients::fetch_rate_card`], but each offering API on its own: when one fails
    /// (a permission missing, a service down), what the other answered is kept and the failure
    /// is named in [`PartialRateCard::failed`]. Fails only when both fail.
    pub async fn fetch_rate_card_each(
        &self,
        instance_type: Option<&str>,
    ) -> Result<PartialRateCard, AwsError> {
        let region = self.region.clone();
        let sp = self.savings_plan_rates(&region, instance_type).await;
        let ri = self.reserved_instance_offerings(instance_type).await;
        let (sp, ri) = match (sp, ri) {
            (Err(e), Err(_)) => return Err(e),
            both => both,
        };
        let mut failed = Vec::new();
        let mut request_ids = Vec::new();
        let sp_rates = match sp {
            Ok(c) => {
                request_ids.extend(c.request_ids);
                c.value
            }
            Err(e) => {
                failed.push(format!("savings plan rates: {e}"));
                Vec::new()
            }
        };
        let ri_offers = match ri {
            Ok(c) => {
                request_ids.extend(c.request_ids);
                c.value
            }
            Err(e) => {
                failed.push(format!("Reserved Instance offerings: {e}"));
                Vec::new()
            }
        };
        Ok(PartialRateCard {
            card: Called {
                value: rate_card(&sp_rates, &ri_offers),
                request_ids,
            },
            failed,
        })
    }
}

/// A rate card from the offering APIs that answered, and what failed (empty: complete).
#[derive(Debug)]
pub struct PartialRateCard {
    pub card: Called<RateCard>,
    pub failed: Vec<String>,
}

pub use crate::markets::CachedRateCard;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("offerings cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("offerings cache {path}: line {line}, column {column}: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The file cache of rate cards, one JSON file per (region, instance type) under `dir`.
#[derive(Clone, Debug)]
pub struct OfferingsCache {
    dir: PathBuf,
}

/// Where a card came from.
#[derive(Clone, Debug, PartialEq)]
pub struct CardLookup {
    pub card: CachedRateCard,
    pub from_cache: bool,
    /// Empty when served from the cache.
    pub request_ids: Vec<String>,
}

impl OfferingsCache {
    pub fn new(data_dir: &Path) -> Self {
        OfferingsCache {
            dir: data_dir.join("aws-offerings"),
        }
    }

    pub fn path(&self, region: &str, instance_type: Option<&str>) -> PathBuf {
        let name = format!("{}-{}.json", region, instance_type.unwrap_or("all"));
        // Instance types and regions are [a-z0-9.-]; anything else is replaced so a hostile
        // value cannot walk out of the directory.
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(safe)
    }

    pub fn load(
        &self,
        region: &str,
        instance_type: Option<&str>,
    ) -> Result<Option<CachedRateCard>, CacheError> {
        let path = self.path(region, instance_type);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CacheError::Corrupt {
                path,
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })
    }

    pub fn store(&self, card: &CachedRateCard) -> Result<(), CacheError> {
        let path = self.path(&card.region, card.instance_type.as_deref());
        let io = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let text = serde_json::to_string_pretty(card).map_err(|e| CacheError::Corrupt {
            path: path.clone(),
            line: 0,
            column: 0,
            message: e.to_string(),
        })?;
        // Write then rename, so a crash never leaves half a cache file behind.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The cached card when fresh, else a new one fetched from AWS and stored.
    pub async fn get_or_refresh(
        &self,
        clients: &AwsClients,
        instance_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<CardLookup, CacheError> {
        // A corrupt cache is not fatal: it is only a cache, so refetch and overwrite it.
        if let Ok(Some(card)) = self.load(&clients.region, instance_type) {
            if card.is_fresh(now) {
                return Ok(CardLookup {
                    card,
                    from_cache: true,
                    request_ids: Vec::new(),
                });
            }
        }
        let fetched = clients.fetch_rate_card(instance_type).await?;
        let card = CachedRateCard::new(now, &clients.region, instance_type, &fetched.value);
        self.store(&card)?;
        Ok(CardLookup {
            card,
            from_cache: false,
            request_ids: fetched.request_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as ChronoDuration;

    fn product(t: &str) -> Product {
        Product {
            provider: Provider::Aws,
            region: "us-east-1".into(),
            instance_type: t.into(),
            os: "Linux".into(),
            tenancy: "Shared".into(),
        }
    }

    #[test]
    fn rate_card_amortizes_ri_upfront_and_skips_zonal() {
        let ri = ReservedInstanceOffering {
            offering_id: "o-1".into(),
            instrument: Instrument::StandardReservedInstance,
            term: Term::ONE_YEAR,
            payment: PaymentOption::AllUpfront,
            product: product("m5.large"),
            fixed_price: Decimal::new(876, 0),
            hourly_price: Decimal::ZERO,
            zonal: false,
        };
        let zonal = ReservedInstanceOffering {
            payment: PaymentOption::NoUpfront,
            zonal: true,
            ..ri.clone()
        };
        let sp = SavingsPlanRate {
            offering_id: "sp-o".into(),
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::THREE_YEARS,
            payment: PaymentOption::NoUpfront,
            product: product("m5.large"),
            rate: Decimal::new(61, 3),
        };
        let card = rate_card(&[sp], &[ri, zonal]);
        assert_eq!(card.len(), 2);
        let o = card
            .offer(
                &product("m5.large"),
                Instrument::StandardReservedInstance,
                Some(Term::ONE_YEAR),
                PaymentOption::AllUpfront,
            )
            .unwrap();
        assert_eq!(o.effective_hourly_rate, Decimal::new(1, 1));
        assert_eq!(o.upfront_share, Decimal::ONE);
        assert!(card
            .offer(
                &product("m5.large"),
                Instrument::StandardReservedInstance,
                Some(Term::ONE_YEAR),
                PaymentOption::NoUpfront
            )
            .is_none());
    }

    #[test]
    fn cache_round_trips_and_expires_after_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OfferingsCache::new(dir.path());
        let mut card = RateCard::new();
        card.insert(
            product("c5.xlarge"),
            Offer {
                instrument: Instrument::ComputeSavingsPlan,
                term: Some(Term::ONE_YEAR),
                payment: PaymentOption::NoUpfront,
                effective_hourly_rate: Decimal::new(123, 3),
                upfront_share: Decimal::ZERO,
            },
        );
        let t0 = DateTime::parse_from_rfc3339("2025-05-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cached = CachedRateCard::new(t0, "us-east-1", Some("c5.xlarge"), &card);
        cache.store(&cached).unwrap();
        let back = cache.load("us-east-1", Some("c5.xlarge")).unwrap().unwrap();
        assert_eq!(back.card(), card);
        assert!(back.is_fresh(t0 + ChronoDuration::hours(23)));
        assert!(!back.is_fresh(t0 + ChronoDuration::hours(24)));
        assert!(cache.load("us-east-1", Some("m5.large")).unwrap().is_none());
        std::fs::write(cache.path("us-east-1", Some("bad")), "{\n  nope").unwrap();
        let err = cache
            .load("us-east-1", Some("bad"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let hostile = cache.path("../../etc", Some("x/y"));
        assert_eq!(
            hostile.parent(),
            Some(dir.path().join("aws-offerings").as_path())
        );
    }
}
