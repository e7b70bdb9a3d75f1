//! The AWS provider through the real AWS SDK for Rust, over HTTP, against the local
//! AWS-compatible test server (Savings Plans REST-JSON and EC2 Query/XML).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use commitd::domain::{CommitmentAmount, Instrument, Money, PaymentOption, Term};
use commitd::markets::aws::execute::{
    client_token, ExchangeTarget, ReservedInstancePurchase, SavingsPlanPurchase,
};
use commitd::markets::aws::{AwsClients, AwsError, AwsSettings, RetrySettings, StaticCredentials};
use commitd_testkit::aws_server::{Fault, TestServer, World};
use std::time::{Duration, Instant};

const REGION: &str = "us-east-1";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The server's clock for every test: early in a month, so the return window is open.
const NOW: &str = "2025-03-05T10:00:00Z";

fn retry(max_attempts: u32, deadline_ms: u64) -> RetrySettings {
    RetrySettings {
        max_attempts,
        initial_backoff_ms: 10,
        max_backoff_ms: 50,
        deadline_ms,
        attempt_timeout_ms: 5_000,
    }
}

async fn start_server() -> TestServer {
    let server = TestServer::start(World::demo(REGION)).await.unwrap();
    server.world().set_now(at(NOW));
    server
}

async fn clients(server: &TestServer, retry: RetrySettings) -> AwsClients {
    AwsClients::connect(&AwsSettings {
        region: Some(REGION.into()),
        endpoint_url: Some(server.endpoint()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "AKIDCOMMITDTEST".into(),
            secret_access_key: "test-secret".into(),
        }),
        retry,
        ..AwsSettings::default()
    })
    .await
    .unwrap()
}

async fn offering(
    c: &AwsClients,
    instrument: Instrument,
    payment: PaymentOption,
    family: Option<(&str, &str)>,
) -> String {
    c.find_savings_plan_offering(instrument, Term::ONE_YEAR, payment, family)
        .await
        .unwrap()
        .value
        .expect("the catalogue has this offering")
        .offering_id
}

fn purchase(
    key: &str,
    offering_id: &str,
    commitment: &str,
    payment: PaymentOption,
) -> SavingsPlanPurchase {
    SavingsPlanPurchase {
        idempotency_key: key.into(),
        offering_id: offering_id.into(),
        commitment: Money::parse(commitment).unwrap(),
        payment,
        term: Term::ONE_YEAR,
        purchase_time: None,
    }
}

#[tokio::test]
async fn purchase_end_to_end_shows_in_inventory_with_request_ids() {
    let server = start_server().await;
    let c = clients(&server, retry(3, 10_000)).await;

    let compute = offering(
        &c,
        Instrument::ComputeSavingsPlan,
        PaymentOption::NoUpfront,
        None,
    )
    .await;
    let bought = c
        .create_savings_plan(&purchase(
            "proposal-1",
            &compute,
            "1.234567",
            PaymentOption::NoUpfront,
        ))
        .await
        .unwrap();
    let rid = bought
        .request_id()
        .expect("AWS returns a request id")
        .to_string();
    assert_eq!(rid.len(), 36, "request id {rid}");

    let m5 = offering(
        &c,
        Instrument::Ec2InstanceSavingsPlan,
        PaymentOption::PartialUpfront,
        Some(("m5", REGION)),
    )
    .await;
    let partial = c
        .create_savings_plan(&purchase(
            "proposal-2",
            &m5,
            "1.25",
            PaymentOption::PartialUpfront,
        ))
        .await
        .unwrap();
    assert_ne!(partial.request_id(), Some(rid.as_str()));

    let inv = c.inventory().await.unwrap();
    assert!(
        inv.request_ids.len() >= 2,
        "one per call: {:?}",
        inv.request_ids
    );
    let first = inv
        .value
        .savings_plan_by_key("proposal-1")
        .expect("tagged with its key");
    assert_eq!(first.id, bought.value);
    assert_eq!(first.state, "active");
    // Rounded down to the API's 5 decimals, never up.
    assert_eq!(first.commitment, Money::parse("1.23456").unwrap());
    assert!(first.returnable_until.is_some());
    let second = inv.value.savings_plan_by_key("proposal-2").unwrap();
    assert_eq!(
        second.family.as_deref(),
        Some("m5"),
        "family from DescribeSavingsPlanRates"
    );
    assert_eq!(
        second.upfront,
        Money::from_units(5475),
        "50% of 1.25 x 8760, whole dollars"
    );

    let commitments = inv.value.commitments();
    assert_eq!(commitments.len(), 2);
    let c2 = commitments.iter().find(|c| c.id == partial.value).unwrap();
    assert_eq!(c2.instrument, Instrument::Ec2InstanceSavingsPlan);
    assert_eq!(
        c2.amount,
        CommitmentAmount::HourlySpend(Money::parse("1.25").unwrap())
    );
    assert_eq!(c2.region.as_deref(), Some(REGION));
    assert_eq!(c2.term, Term::ONE_YEAR);
    assert_eq!(server.world().purchases(), 2);
}

#[tokio::test]
async fn lost_response_after_commit_then_retry_with_same_token_buys_once() {
    let server = start_server().await;
    let offering_id = {
        let c = clients(&server, retry(1, 10_000)).await;
        offering(
            &c,
            Instrument::ComputeSavingsPlan,
            PaymentOption::NoUpfront,
            None,
        )
        .await
    };
    server
        .world()
        .inject("CreateSavingsPlan", Fault::DropAfterCommit, 1);
    let p = purchase(
        "proposal-crash",
        &offering_id,
        "2",
        PaymentOption::NoUpfront,
    );

    // The "crash": the server committed, the answer never arrived, and this client does not retry.
    let c = clients(&server, retry(1, 10_000)).await;
    let err = c.create_savings_plan(&p).await.unwrap_err();
    assert!(
        err.is_ambiguous(),
        "a lost answer must be reported as ambiguous: {err}"
    );
    assert!(matches!(err, AwsError::NoResponse { .. }), "{err}");
    assert_eq!(server.world().purchases(), 1, "the purchase did happen");

    // Reconciliation finds it by the idempotency tag...
    let found = c.find_savings_plan_by_key("proposal-crash").await.unwrap();
    let found_id = found.value.expect("reconciliation sees the purchase").id;

    // ...and a restarted executor resending the same request gets the same plan back.
    let c = clients(&server, retry(1, 10_000)).await;
    let again = c.create_savings_plan(&p).await.unwrap();
    assert_eq!(again.value, found_id);
    let w = server.world();
    assert_eq!(w.calls("CreateSavingsPlan"), 2);
    assert_eq!(w.purchases(), 1, "the server saw one purchase");
}

#[tokio::test]
async fn sdk_retry_of_a_dropped_purchase_reuses_the_client_token() {
    let server = start_server().await;
    let c = clients(&server, retry(3, 10_000)).await;
    let offering_id = offering(
        &c,
        Instrument::ComputeSavingsPlan,
        PaymentOption::NoUpfront,
        None,
    )
    .await;
    server
        .world()
        .inject("CreateSavingsPlan", Fault::DropAfterCommit, 1);
    let bought = c
        .create_savings_plan(&purchase(
            "proposal-sdk-retry",
            &offering_id,
            "3",
            PaymentOption::NoUpfront,
        ))
        .await
        .unwrap();
    let w = server.world();
    assert_eq!(
        w.calls("CreateSavingsPlan"),
        2,
        "the SDK retried the lost request"
    );
    assert_eq!(w.purchases(), 1);
    assert_eq!(w.plans()[0].0.id, bought.value);
}

#[tokio::test]
async fn throttling_storm_is_retried_until_success() {
    let server = start_server().await;
    let c = clients(&server, retry(6, 10_000)).await;
    server
        .world()
        .inject("DescribeSavingsPlans", Fault::Throttle, 4);
    server
        .world()
        .inject("DescribeReservedInstances", Fault::Throttle, 2);
    server
        .world()
        .inject("DescribeReservedInstances", Fault::ServerError, 2);
    let inv = c.inventory().await.unwrap();
    assert!(inv.value.savings_plans.is_empty());
    let w = server.world();
    assert_eq!(w.calls("DescribeSavingsPlans"), 5);
    assert_eq!(
        w.calls("DescribeReservedInstances"),
        5,
        "EC2 503 throttling and 500s retried too"
    );
}

#[tokio::test]
async fn throttling_past_the_retry_budget_or_deadline_is_a_clear_transient_error() {
    let server = start_server().await;
    // Out of attempts: the last throttling answer, with its request id.
    let c = clients(&server, retry(3, 10_000)).await;
    server
        .world()
        .inject("DescribeSavingsPlans", Fault::Throttle, 10);
    let err = c.describe_savings_plans(&[]).await.unwrap_err();
    match &err {
        AwsError::Unavailable {
            code, request_id, ..
        } => {
            assert_eq!(code, "ThrottlingException");
            assert!(request_id.is_some());
        }
        other => panic!("expected Unavailable, got {other}"),
    }
    assert!(err.is_transient() && !err.is_ambiguous());
    assert_eq!(server.world().calls("DescribeSavingsPlans"), 3);

    // Out of time: many attempts allowed, but the deadline cuts the storm short.
    let slow = start_server().await;
    let c = clients(
        &slow,
        RetrySettings {
            initial_backoff_ms: 100,
            max_backoff_ms: 200,
            ..retry(1000, 600)
        },
    )
    .await;
    slow.world()
        .inject("DescribeReservedInstances", Fault::Throttle, 1000);
    let started = Instant::now();
    let err = c.describe_reserved_instances().await.unwrap_err();
    assert!(matches!(err, AwsError::DeadlineExceeded { .. }), "{err}");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped at the deadline: {:?}",
        started.elapsed()
    );
    assert!(slow.world().calls("DescribeReservedInstances") < 20);
}

#[tokio::test]
async fn validation_error_is_final_and_not_retried() {
    let server = start_server().await;
    let c = clients(&server, retry(5, 10_000)).await;
    let offering_id = offering(
        &c,
        Instrument::ComputeSavingsPlan,
        PaymentOption::PartialUpfront,
        None,
    )
    .await;
    // A Partial Upfront plan needs an upfront amount; bypass commitd's own preparation to
    // see AWS's answer through the SDK.
    let err = c
        .savings_plans
        .create_savings_plan()
        .savings_plan_offering_id(&offering_id)
        .commitment("1")
        .client_token(client_token("raw"))
        .send()
        .await
        .unwrap_err();
    let svc = err.as_service_error().expect("a modelled service error");
    assert!(svc.is_validation_exception(), "{svc:?}");
    assert_eq!(
        server.world().calls("CreateSavingsPlan"),
        1,
        "4xx is not retried"
    );

    // Through commitd: an unknown offering is a final rejection naming the code and request id.
    let err = c
        .create_savings_plan(&purchase(
            "k",
            "no-such-offering",
            "1",
            PaymentOption::NoUpfront,
        ))
        .await
        .unwrap_err();
    match &err {
        AwsError::Rejected {
            code,
            status,
            request_id,
            ..
        } => {
            assert_eq!(code, "ResourceNotFoundException");
            assert_eq!(*status, 404);
            assert!(request_id.is_some());
        }
        other => panic!("expected Rejected, got {other}"),
    }
    assert!(!err.is_transient());
    assert_eq!(server.world().calls("CreateSavingsPlan"), 2);
    assert_eq!(server.world().purchases(), 0);
}

#[tokio::test]
async fn return_inside_the_window_and_refusal_outside() {
    let server = start_server().await;
    let c = clients(&server, retry(2, 10_000)).await;
    let offering_id = offering(
        &c,
        Instrument::ComputeSavingsPlan,
        PaymentOption::NoUpfront,
        None,
    )
    .await;
    let a = c
        .create_savings_plan(&purchase(
            "ret-a",
            &offering_id,
            "5",
            PaymentOption::NoUpfront,
        ))
        .await
        .unwrap()
        .value;
    let b = c
        .create_savings_plan(&purchase(
            "ret-b",
            &offering_id,
            "5",
            PaymentOption::NoUpfront,
        ))
        .await
        .unwrap()
        .value;

    // Two days later: inside the window.
    let inside = at(NOW) + ChronoDuration::days(2);
    server.world().set_now(inside);
    let returned = c.return_savings_plan(&a, inside).await.unwrap();
    assert_eq!(returned.value, a);
    assert_eq!(returned.request_ids.len(), 2, "describe + return");
    let inv = c.inventory().await.unwrap().value;
    assert_eq!(
        inv.savings_plans.iter().find(|p| p.id == a).unwrap().state,
        "returned"
    );
    assert_eq!(
        inv.commitments().len(),
        1,
        "a returned plan no longer covers usage"
    );

    // Eight days later: commitd refuses before calling ReturnSavingsPlan...
    let outside = at(NOW) + ChronoDuration::days(8);
    server.world().set_now(outside);
    let before = server.world().calls("ReturnSavingsPlan");
    let err = c.return_savings_plan(&b, outside).await.unwrap_err();
    assert!(matches!(err, AwsError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("more than 7 days"), "{err}");
    assert_eq!(server.world().calls("ReturnSavingsPlan"), before);
    // ...and AWS refuses too when asked directly.
    let err = c
        .savings_plans
        .return_savings_plan()
        .savings_plan_id(&b)
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_validation_exception());
}

#[tokio::test]
async fn queued_plan_can_be_deleted_and_purchase_time_is_sent() {
    let server = start_server().await;
    let c = clients(&server, retry(2, 10_000)).await;
    let offering_id = offering(
        &c,
        Instrument::ComputeSavingsPlan,
        PaymentOption::AllUpfront,
        None,
    )
    .await;
    let mut p = purchase("queued", &offering_id, "0.5", PaymentOption::AllUpfront);
    p.purchase_time = Some(at("2025-04-01T00:00:00Z"));
    let id = c.create_savings_plan(&p).await.unwrap().value;
    let inv = c.inventory().await.unwrap().value;
    let plan = &inv.savings_plans[0];
    assert_eq!(plan.state, "queued");
    assert_eq!(plan.start, at("2025-04-01T00:00:00Z"));
    assert_eq!(
        plan.upfront,
        Money::from_units(4380),
        "all upfront: 0.5 x 8760"
    );
    c.delete_queued_savings_plan(&id).await.unwrap();
    let inv = c.inventory().await.unwrap().value;
    assert_eq!(inv.savings_plans[0].state, "queued-deleted");
    assert!(inv.commitments().is_empty());
    let err = c.delete_queued_savings_plan(&id).await.unwrap_err();
    assert!(
        matches!(err, AwsError::Rejected { ref code, .. } if code == "ValidationException"),
        "{err}"
    );
}

async fn convertible(c: &AwsClients, instance_type: &str, payment: &str) -> String {
    let offers = c
        .reserved_instance_offerings(Some(instance_type))
        .await
        .unwrap()
        .value;
    offers
        .into_iter()
        .find(|o| {
            o.instrument == Instrument::ConvertibleReservedInstance
                && o.term == Term::ONE_YEAR
                && commitd::markets::aws::convert::payment_to_aws(o.payment) == payment
        })
        .unwrap()
        .offering_id
}

#[tokio::test]
async fn reserved_instances_dry_run_purchase_and_exchange() {
    let server = start_server().await;
    let c = clients(&server, retry(2, 10_000)).await;
    let source_offering = convertible(&c, "m5.xlarge", "No Upfront").await;
    let bought = c
        .purchase_reserved_instances(&ReservedInstancePurchase {
            idempotency_key: "ri-1".into(),
            offering_id: source_offering,
            count: 2,
            limit_price: None,
            purchase_time: None,
        })
        .await
        .unwrap();
    assert!(bought.value.dry_run_request_id.is_some());
    assert!(bought.value.tagged);
    assert_eq!(bought.request_ids.len(), 3, "dry run + purchase + tag");
    {
        let w = server.world();
        assert_eq!(w.calls("PurchaseReservedInstancesOffering"), 2);
        assert_eq!(w.purchases(), 1, "the dry run bought nothing");
    }
    let ri = bought.value.reserved_instances_id.clone();
    let inv = c.inventory().await.unwrap().value;
    let rec = &inv.reserved_instances[0];
    assert_eq!(
        (rec.id.as_str(), rec.count, rec.instance_type.as_str()),
        (ri.as_str(), 2, "m5.xlarge")
    );
    assert_eq!(rec.instrument, Instrument::ConvertibleReservedInstance);
    assert_eq!(rec.idempotency_key(), Some("ri-1"), "tagged with its key");
    // 0.192 x 0.70 = 0.1344 per instance-hour, no upfront.
    assert_eq!(rec.effective_hourly_rate().to_string(), "0.1344");

    // An exchange to something worth less is invalid: refused, nothing accepted.
    let smaller = convertible(&c, "m5.large", "No Upfront").await;
    let err = c
        .exchange_reserved_instances(
            std::slice::from_ref(&ri),
            &[ExchangeTarget {
                offering_id: smaller,
                count: 1,
            }],
            Money::from_units(10_000),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains("less than the remaining value"),
        "{err}"
    );
    assert!(err.request_id().is_some(), "the quote's request id is kept");
    assert_eq!(
        server.world().calls("AcceptReservedInstancesExchangeQuote"),
        0
    );

    // A valid exchange whose true-up is over the limit is refused too.
    let bigger = convertible(&c, "r5.large", "All Upfront").await;
    let targets = [ExchangeTarget {
        offering_id: bigger,
        count: 4,
    }];
    let quote = c
        .exchange_quote(std::slice::from_ref(&ri), &targets)
        .await
        .unwrap()
        .value;
    assert!(quote.valid);
    assert!(quote.payment_due > Money::ZERO);
    let err = c
        .exchange_reserved_instances(std::slice::from_ref(&ri), &targets, Money::from_units(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");

    // Within the limit: accepted; the source retires, the target is active.
    let done = c
        .exchange_reserved_instances(std::slice::from_ref(&ri), &targets, quote.payment_due)
        .await
        .unwrap();
    assert!(done.value.exchange_id.starts_with("riex-"));
    let inv = c.inventory().await.unwrap().value;
    let states: Vec<(&str, &str)> = inv
        .reserved_instances
        .iter()
        .map(|r| (r.instance_type.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(states, [("m5.xlarge", "retired"), ("r5.large", "active")]);
    assert_eq!(inv.commitments().len(), 1);
}

#[tokio::test]
async fn ri_purchase_dry_run_failure_stops_before_buying() {
    let server = start_server().await;
    let c = clients(&server, retry(2, 10_000)).await;
    let offering_id = convertible(&c, "c5.large", "All Upfront").await;
    let err = c
        .purchase_reserved_instances(&ReservedInstancePurchase {
            idempotency_key: "ri-limit".into(),
            offering_id,
            count: 3,
            limit_price: Some(Money::from_units(1)),
            purchase_time: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, AwsError::Rejected { ref code, .. } if code == "ReservedInstancesLimitPriceExceeded"),
        "{err}"
    );
    let w = server.world();
    assert_eq!(
        w.calls("PurchaseReservedInstancesOffering"),
        1,
        "only the dry run was sent"
    );
    assert_eq!(w.purchases(), 0);
}

#[tokio::test]
async fn lost_ri_purchase_answer_is_never_resent_and_is_found_by_reconciliation() {
    let server = start_server().await;
    // Even with retries allowed, the purchase itself must go out once: it has no client token.
    let c = clients(&server, retry(4, 10_000)).await;
    let offering_id = convertible(&c, "c5.large", "No Upfront").await;
    server
        .world()
        .inject("PurchaseReservedInstancesOffering", Fault::Pass, 1);
    server.world().inject(
        "PurchaseReservedInstancesOffering",
        Fault::DropAfterCommit,
        1,
    );
    let sent_at = server.world().now();
    let p = ReservedInstancePurchase {
        idempotency_key: "ri-crash".into(),
        offering_id,
        count: 2,
        limit_price: None,
        purchase_time: None,
    };
    let err = c.purchase_reserved_instances(&p).await.unwrap_err();
    assert!(err.is_ambiguous(), "{err}");
    {
        let w = server.world();
        assert_eq!(
            w.calls("PurchaseReservedInstancesOffering"),
            2,
            "dry run + one purchase, no automatic resend"
        );
        assert_eq!(w.purchases(), 1);
    }
    // The answer (and so the tagging) was lost: not found by key, found by what was bought.
    assert!(c
        .find_reserved_instances_by_key("ri-crash")
        .await
        .unwrap()
        .value
        .is_empty());
    let found = c
        .find_reserved_instances_since("c5.large", 2, sent_at)
        .await
        .unwrap()
        .value;
    assert_eq!(found.len(), 1);
    assert_eq!(server.world().purchases(), 1);
}

#[tokio::test]
async fn rate_card_from_both_apis_with_paging_and_cache() {
    let server = start_server().await;
    let c = clients(&server, retry(2, 10_000)).await;
    let rates = c
        .savings_plan_rates(REGION, Some("m5.large"))
        .await
        .unwrap();
    // 6 Compute + 6 EC2 Instance offerings price m5.large; page size 4 -> several pages.
    assert_eq!(rates.value.len(), 12);
    assert!(
        rates.request_ids.len() >= 3,
        "paged: {:?}",
        rates.request_ids
    );
    let ris = c
        .reserved_instance_offerings(Some("m5.large"))
        .await
        .unwrap();
    assert_eq!(ris.value.len(), 12, "2 classes x 2 terms x 3 payments");

    let dir = tempfile::tempdir().unwrap();
    let cache = commitd::markets::aws::offerings::OfferingsCache::new(dir.path());
    let now = at(NOW);
    let first = cache
        .get_or_refresh(&c, Some("m5.large"), now)
        .await
        .unwrap();
    assert!(!first.from_cache);
    let card = first.card.card();
    assert_eq!(card.len(), 24);
    let product = card.products().next().unwrap().0.clone();
    assert_eq!(
        (product.os.as_str(), product.tenancy.as_str()),
        ("Linux", "Shared")
    );
    let sp = card
        .offer(
            &product,
            Instrument::ComputeSavingsPlan,
            Some(Term::ONE_YEAR),
            PaymentOption::NoUpfront,
        )
        .unwrap();
    assert_eq!(
        sp.effective_hourly_rate.to_string(),
        "0.06912",
        "0.096 x 0.72"
    );
    let calls = server.world().calls("DescribeSavingsPlansOfferingRates");
    let second = cache
        .get_or_refresh(&c, Some("m5.large"), now + ChronoDuration::hours(5))
        .await
        .unwrap();
    assert!(second.from_cache);
    assert_eq!(
        server.world().calls("DescribeSavingsPlansOfferingRates"),
        calls,
        "served from the cache"
    );
    let third = cache
        .get_or_refresh(&c, Some("m5.large"), now + ChronoDuration::hours(25))
        .await
        .unwrap();
    assert!(!third.from_cache, "refreshed after a day");
}

/// A raw HTTP/1.1 exchange with the server (no SDK): status line and body.
async fn raw(server: &TestServer, request: String) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn unsigned_requests_are_refused_and_the_control_api_steers_faults() {
    let server = start_server().await;
    let (status, body) = raw(&server, post("/DescribeSavingsPlans", "{}")).await;
    assert!(status.contains(" 403 "), "{status}");
    assert!(body.contains("Missing Authentication Token"), "{body}");

    let (status, _) = raw(
        &server,
        post(
            "/_commitd/faults",
            r#"{"operation":"DescribeSavingsPlans","fault":"throttle","times":2}"#,
        ),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    let (status, body) = raw(
        &server,
        post("/_commitd/faults", r#"{"operation":"X","fault":"meteor"}"#),
    )
    .await;
    assert!(
        status.contains(" 400 ") && body.contains("unknown variant"),
        "{status} {body}"
    );
    let (status, _) = raw(
        &server,
        post("/_commitd/clock", r#"{"now":"2025-03-06T00:00:00Z"}"#),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(server.world().now(), at("2025-03-06T00:00:00Z"));

    let c = clients(&server, retry(5, 10_000)).await;
    c.describe_savings_plans(&[]).await.unwrap();
    let (_, stats) = raw(
        &server,
        "GET /_commitd/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_string(),
    )
    .await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    // The unsigned call counts nothing (refused before dispatch); 2 throttled + 1 served.
    assert_eq!(stats["calls"]["DescribeSavingsPlans"], 3, "{stats}");
    assert_eq!(stats["purchases"], 0);
}

/// An account without hourly Cost Explorer data: the hourly query is rejected with a
/// ValidationException (as AWS answers it, JSON 1.1 with `__type`), and the newest 14 days are
/// read again at daily grain, whole days only. The peer is a few lines of HTTP here: neither
/// moto nor the test server can refuse hourly granularity.
#[tokio::test]
async fn cost_explorer_without_hourly_data_falls_back_to_daily() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then a body of content-length bytes.
                let body = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len = text[..i]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            break text[i + 4..].to_string();
                        }
                    }
                };
                let hourly = body.contains("\"HOURLY\"");
                log.lock()
                    .unwrap()
                    .push(if hourly { "HOURLY" } else { "DAILY" }.into());
                let (status, extra, payload) = if hourly {
                    (
                        "400 Bad Request",
                        "x-amzn-ErrorType: ValidationException\r\n",
                        r#"{"__type":"ValidationException","Message":"Hourly granularity is not enabled for this account"}"#.to_string(),
                    )
                } else {
                    (
                        "200 OK",
                        "",
                        r#"{"ResultsByTime":[{"TimePeriod":{"Start":"2025-03-19","End":"2025-03-20"},"Total":{},"Groups":[{"Keys":["m5.large","us-east-1"],"Metrics":{"UnblendedCost":{"Amount":"4.608","Unit":"USD"},"UsageQuantity":{"Amount":"48","Unit":"Hrs"}}}],"Estimated":false}]}"#.to_string(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-RequestId: rid-{}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{payload}",
                    log.lock().unwrap().len(),
                    payload.len()
                );
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    let c = AwsClients::connect(&AwsSettings {
        region: Some(REGION.into()),
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        static_credentials: Some(StaticCredentials {
            access_key_id: "AKIDCE".into(),
            secret_access_key: "ce".into(),
        }),
        retry: retry(2, 5_000),
        ..AwsSettings::default()
    })
    .await
    .unwrap();
    let history = c
        .usage_history(at("2025-03-20T10:30:00Z"), 5)
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["HOURLY", "DAILY"],
        "one refusal, then daily, no retry"
    );
    assert_eq!(history.request_ids, ["rid-2"]);
    assert_eq!(history.value.len(), 1);
    let (model, notes) = commitd::markets::aws::usage::usage_model(&history.value).unwrap();
    assert!(
        notes.iter().any(|n| n.contains("daily rows only")),
        "{notes:?}"
    );
    assert_eq!(model.groups[0].quantity.len(), 24);
    assert!((model.groups[0].quantity[0] - 2.0).abs() < 1e-12);
}
