//! The AWS provider through the real SDK against moto (a local AWS peer written in Python):
//! DescribeReservedInstancesOfferings and Cost Explorer GetCostAndUsage with injected results.
//!
//! moto is started by `common::moto` (see there for where it comes from).

use crate::common;

use chrono::{DateTime, Utc};
use commitd::domain::{Instrument, Money, PaymentOption, Term};
use commitd::markets::aws::usage::Granularity;
use commitd::markets::aws::{AwsClients, AwsSettings, RetrySettings, StaticCredentials};
use common::moto::{moto_api, start_moto, Moto};
use rust_decimal::Decimal;

async fn clients(moto: &Moto) -> AwsClients {
    AwsClients::connect(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(format!("http://127.0.0.1:{}", moto.port)),
        static_credentials: Some(StaticCredentials {
            access_key_id: "AKIDCOMMITDMOTO".into(),
            secret_access_key: "moto-secret".into(),
        }),
        // Explicit, small: moto answers what it does not implement with HTML 500s, and a
        // default 3-attempt backoff would only slow the failure down.
        retry: RetrySettings {
            max_attempts: 2,
            initial_backoff_ms: 20,
            max_backoff_ms: 100,
            deadline_ms: 20_000,
            attempt_timeout_ms: 10_000,
        },
        ..AwsSettings::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn moto_reserved_instance_offerings_become_a_rate_card() {
    let Some(moto) = start_moto() else { return };
    let c = clients(&moto).await;
    let offers = c
        .reserved_instance_offerings(Some("m5.large"))
        .await
        .unwrap();
    assert!(offers.request_ids.iter().all(|r| !r.is_empty()));
    let offers = offers.value;
    assert!(!offers.is_empty());
    assert!(
        offers.iter().all(|o| o.product.instance_type == "m5.large"),
        "only the asked type"
    );
    assert!(offers.iter().any(|o| o.zonal) && offers.iter().any(|o| !o.zonal));

    let card = commitd::markets::aws::offerings::rate_card(&[], &offers);
    let product = card
        .products()
        .next()
        .expect("regional offerings priced")
        .0
        .clone();
    assert_eq!(product.region, "us-east-1");
    assert_eq!(product.os, "Linux");
    let rate = |payment| {
        card.offer(
            &product,
            Instrument::StandardReservedInstance,
            Some(Term::ONE_YEAR),
            payment,
        )
        .unwrap()
        .effective_hourly_rate
    };
    // moto's regional offerings: 0.05/h, plus 100 upfront for the upfront options.
    assert_eq!(rate(PaymentOption::NoUpfront), Decimal::new(5, 2));
    assert_eq!(
        rate(PaymentOption::AllUpfront),
        (Decimal::new(5, 2) + Decimal::from(100) / Decimal::from(8760)).round_dp(6)
    );
}

#[tokio::test]
async fn moto_cost_and_usage_hourly_and_daily_with_paging() {
    let Some(moto) = start_moto() else { return };
    let group = |t: &str, cost: &str, qty: &str| {
        serde_json::json!({
            "Keys": [t, "us-east-1"],
            "Metrics": {
                "UnblendedCost": {"Amount": cost, "Unit": "USD"},
                "UsageQuantity": {"Amount": qty, "Unit": "Hrs"}
            }
        })
    };
    let results = serde_json::json!({ "results": [
        {   // daily window, page 1 of 2
            "ResultsByTime": [{
                "TimePeriod": {"Start": "2025-03-04", "End": "2025-03-05"},
                "Total": {}, "Groups": [group("m5.large", "2.304", "24")], "Estimated": false
            }],
            "NextPageToken": "page-2"
        },
        {   // daily window, page 2
            "ResultsByTime": [{
                "TimePeriod": {"Start": "2025-03-05", "End": "2025-03-06"},
                "Total": {}, "Groups": [group("c5.xlarge", "4.08", "24")], "Estimated": false
            }]
        },
        {   // hourly window
            "ResultsByTime": [{
                "TimePeriod": {"Start": "2025-03-06T00:00:00Z", "End": "2025-03-06T01:00:00Z"},
                "Total": {}, "Groups": [group("m5.large", "0.096", "1"), group("r5.large", "0.1260000001", "1")],
                "Estimated": true
            }]
        }
    ]});
    let status = moto_api(
        &moto,
        "/moto-api/static/ce/cost-and-usage-results",
        &results,
    )
    .await;
    assert!(status.contains(" 201 "), "{status}");

    let c = clients(&moto).await;
    let now: DateTime<Utc> = "2025-03-20T10:30:00Z".parse().unwrap();
    let history = c.usage_history(now, 16).await.unwrap();
    assert_eq!(
        history.request_ids.len(),
        3,
        "two daily pages and one hourly call"
    );
    let rows = history.value;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].granularity, Granularity::Daily);
    assert_eq!(
        (rows[0].instance_type.as_str(), rows[0].cost),
        ("m5.large", Money::parse("2.304").unwrap())
    );
    assert_eq!(rows[1].instance_type, "c5.xlarge");
    assert_eq!(rows[2].granularity, Granularity::Hourly);
    assert_eq!(rows[2].usage_quantity, Decimal::ONE);
    // Money keeps micro-dollars: 0.1260000001 rounds to 0.126000.
    assert_eq!(rows[3].cost, Money::parse("0.126").unwrap());
    assert!(rows[3].estimated);
}
