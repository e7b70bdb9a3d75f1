//! Never buy twice on AWS: the market's answers under injected faults, through the real SDK
//! against the local test server, checked on the server's own ledger (its `World`), not only on
//! what the client says.
//!
//! An RI purchase and an exchange accept carry no client token, so an unknown outcome (a lost
//! answer, a 5xx, a deadline, a failed tag) is settled by `find_purchase` / `find_exchange`
//! from what the account shows; a purchase that happened is reported as one, whatever fails
//! after it.

use chrono::{DateTime, Duration, Utc};
use commitd::domain::{CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term};
use commitd::markets::aws::market::{AwsMarket, AwsOrganization};
use commitd::markets::aws::{AwsClients, AwsSettings, RetrySettings, StaticCredentials};
use commitd::markets::{
    CommitmentMarket, ExchangeRequest, Found, Operation, ProviderError, PurchaseRequest,
    PurchaseSpec,
};
use commitd_testkit::aws_server::{Fault, TestServer, World};

const NOW: &str = "2025-03-05T10:00:00Z";
const KEY_TAG: &str = "commitd:idempotency-key";
const PURCHASE_RI: &str = "PurchaseReservedInstancesOffering";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

fn settings(server: &TestServer, max_attempts: u32, deadline_ms: u64) -> AwsSettings {
    AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "f".into(),
            secret_access_key: "f".into(),
        }),
        retry: RetrySettings {
            max_attempts,
            initial_backoff_ms: 5,
            max_backoff_ms: 20,
            deadline_ms,
            attempt_timeout_ms: deadline_ms,
        },
        ..AwsSettings::default()
    }
}

async fn market_with(max_attempts: u32, deadline_ms: u64) -> (TestServer, AwsMarket) {
    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    server.world().set_now(now());
    let clients = AwsClients::connect(&settings(&server, max_attempts, deadline_ms))
        .await
        .unwrap();
    (server, AwsMarket::with_clock(clients, now))
}

async fn market() -> (TestServer, AwsMarket) {
    market_with(3, 10_000).await
}

fn ri_spec(instrument: Instrument, instance_type: &str, count: u32) -> PurchaseSpec {
    PurchaseSpec {
        provider: Provider::Aws,
        account: None,
        instrument,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        region: Some("us-east-1".into()),
        family: None,
        instance_type: Some(instance_type.into()),
        os: None,
        tenancy: None,
        amount: CommitmentAmount::Instances(count),
    }
}

/// 2 x m5.large, Standard, 1 year, No Upfront: the purchase of the operator's report.
fn standard() -> PurchaseSpec {
    ri_spec(Instrument::StandardReservedInstance, "m5.large", 2)
}

fn plan_spec(hourly: &str) -> PurchaseSpec {
    PurchaseSpec {
        provider: Provider::Aws,
        account: None,
        instrument: Instrument::ComputeSavingsPlan,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        region: Some("us-east-1".into()),
        family: None,
        instance_type: None,
        os: None,
        tenancy: None,
        amount: CommitmentAmount::HourlySpend(Money::parse(hourly).unwrap()),
    }
}

fn request(key: &str, spec: PurchaseSpec) -> PurchaseRequest {
    PurchaseRequest {
        idempotency_key: key.into(),
        spec,
        start: Hour::from_datetime(now()),
        max_hourly_cost: Money::from_units(10),
        max_upfront: Money::ZERO,
    }
}

/// (id, count, state, key tag) of every RI the server holds.
fn ledger_ris(server: &TestServer) -> Vec<(String, u32, String, Option<String>)> {
    server
        .world()
        .ledger()
        .reserved_instances
        .into_iter()
        .map(|r| (r.id, r.count, r.state, r.tags.get(KEY_TAG).cloned()))
        .collect()
}

/// Buys an RI straight in the server's account (untagged): what another tool, or a purchase
/// whose answer was lost, leaves behind. `class`: "standard" or "convertible".
fn bought_outside(server: &TestServer, instance_type: &str, class: &str, count: i64) -> String {
    let mut w = server.world();
    let offering = w
        .ri_offerings
        .iter()
        .find(|o| {
            o.instance_type == instance_type
                && o.class == class
                && o.offering_type == "No Upfront"
                && o.duration_seconds == 365 * 24 * 3600
        })
        .unwrap()
        .id
        .clone();
    w.purchase_ri(&offering, count, None, None).unwrap()
}

#[tokio::test]
async fn a_failing_create_tags_still_reports_the_purchase_and_it_is_found_untagged() {
    let (server, m) = market().await;
    // IAM refuses CreateTags (final, not retried by the SDK), on every call.
    server
        .world()
        .inject_always("CreateTags", Fault::Unauthorized);
    let since = now();
    let r = request("tags-fail", standard());
    let bought = m.purchase(&r).await.expect("the purchase happened: Ok");
    let ledger = ledger_ris(&server);
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        bought.commitment.id, ledger[0].0,
        "the RI's id, from the answer"
    );
    assert_eq!(ledger[0].3, None, "the tag failed");
    assert_eq!(bought.commitment.amount, CommitmentAmount::Instances(2));
    assert_eq!(
        bought.request_id,
        server.world().request_ids(PURCHASE_RI)[1],
        "the purchase's request id (after the dry run's)"
    );

    // Not findable by the key (no tag) ...
    assert!(m
        .find_by_idempotency_key("tags-fail")
        .await
        .unwrap()
        .is_none());
    // ... but by what was bought since the attempt began.
    let Found::Yes(found) = m.find_purchase(&r, since).await.unwrap() else {
        panic!("the untagged purchase is found")
    };
    assert_eq!(found.commitment.id, bought.commitment.id);
    assert_eq!(ledger_ris(&server).len(), 1, "nothing bought by looking");

    // Once tagging works again, finding it claims it with the key: another proposal of the
    // same spec never takes it for its own.
    server.world().clear_faults(None);
    assert!(matches!(
        m.find_purchase(&r, since).await.unwrap(),
        Found::Yes(_)
    ));
    assert_eq!(ledger_ris(&server)[0].3.as_deref(), Some("tags-fail"));
    let other = request("someone-else", standard());
    assert_eq!(m.find_purchase(&other, since).await.unwrap(), Found::No);
    assert_eq!(
        m.find_by_idempotency_key("tags-fail")
            .await
            .unwrap()
            .unwrap()
            .commitment
            .id,
        bought.commitment.id
    );
    assert_eq!(server.world().purchases(), 1);
}

#[tokio::test]
async fn an_answer_lost_after_the_purchase_is_an_unknown_outcome_and_found() {
    for (fault, deadline_ms) in [
        (Fault::DropAfterCommit, 10_000),
        (Fault::ServerErrorAfterCommit, 10_000),
        // The answer comes after the client's deadline.
        (Fault::SlowAfterCommit, 700),
    ] {
        let (server, m) = market_with(3, deadline_ms).await;
        server.world().fault_delay = std::time::Duration::from_millis(2_000);
        // The dry run passes; the purchase is applied and its answer lost.
        server.world().inject(PURCHASE_RI, Fault::Pass, 1);
        server.world().inject(PURCHASE_RI, fault, 1);
        let since = now();
        let r = request("lost", standard());
        let err = m.purchase(&r).await.unwrap_err();
        assert!(err.outcome_unknown(), "{fault:?}: {err}");
        assert!(!err.retryable(), "{fault:?}: never resent blindly");
        assert!(!m.deduplicates(&Operation::Purchase, &r.spec));
        assert_eq!(
            server.world().calls(PURCHASE_RI),
            2,
            "{fault:?}: dry run + one purchase, not resent by the SDK"
        );
        let Found::Yes(found) = m.find_purchase(&r, since).await.unwrap() else {
            panic!("{fault:?}: the applied purchase is found")
        };
        let ledger = ledger_ris(&server);
        assert_eq!(ledger.len(), 1, "{fault:?}: {ledger:?}");
        assert_eq!(found.commitment.id, ledger[0].0);
        assert_eq!(ledger[0].3.as_deref(), Some("lost"), "claimed with its key");
    }
}

#[tokio::test]
async fn a_purchase_refused_before_it_was_applied_is_found_absent() {
    for (fault, deadline_ms) in [
        (Fault::ServerError, 10_000),
        (Fault::DropBeforeCommit, 10_000),
        (Fault::SlowBeforeCommit, 700),
    ] {
        let (server, m) = market_with(3, deadline_ms).await;
        server.world().fault_delay = std::time::Duration::from_millis(2_000);
        server.world().inject(PURCHASE_RI, Fault::Pass, 1);
        server.world().inject(PURCHASE_RI, fault, 1);
        let since = now();
        let r = request("refused", standard());
        let err = m.purchase(&r).await.unwrap_err();
        // From the client's side a 5xx or a silence may follow a purchase: unknown ...
        assert!(err.outcome_unknown(), "{fault:?}: {err}");
        // ... and the account says it did not happen.
        assert_eq!(
            m.find_purchase(&r, since).await.unwrap(),
            Found::No,
            "{fault:?}"
        );
        assert!(ledger_ris(&server).is_empty(), "{fault:?}");
        assert_eq!(server.world().purchases(), 0);
    }
}

#[tokio::test]
async fn throttling_of_an_ri_purchase_is_retryable_because_aws_throttles_before_acting() {
    let (server, m) = market().await;
    server.world().inject(PURCHASE_RI, Fault::Pass, 1);
    server.world().inject(PURCHASE_RI, Fault::Throttle, 1);
    let r = request("throttled", standard());
    let err = m.purchase(&r).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Unavailable { .. }) && err.retryable(),
        "{err}"
    );
    assert!(ledger_ris(&server).is_empty());
    // A dry run that fails buys nothing, whatever the failure: never an unknown outcome.
    server
        .world()
        .inject(PURCHASE_RI, Fault::DropAfterCommit, 3);
    let err = m.purchase(&r).await.unwrap_err();
    assert!(!err.outcome_unknown() && err.retryable(), "{err}");
    assert!(ledger_ris(&server).is_empty());
    m.purchase(&r).await.unwrap();
    assert_eq!(ledger_ris(&server).len(), 1);
}

#[tokio::test]
async fn two_untagged_matches_are_unclear_and_other_purchases_do_not_match() {
    let (server, m) = market().await;
    let r = request("mine", standard());
    // Near misses, all untagged: bought before the attempt began (beyond the 5-minute clock
    // tolerance), another count, type or class.
    server.world().set_now(now() - Duration::minutes(6));
    bought_outside(&server, "m5.large", "standard", 2);
    server.world().set_now(now());
    bought_outside(&server, "m5.large", "standard", 3);
    bought_outside(&server, "c5.large", "standard", 2);
    bought_outside(&server, "m5.large", "convertible", 2);
    // One tagged with another proposal's key: never claimed.
    m.purchase(&request("theirs", standard())).await.unwrap();
    assert_eq!(m.find_purchase(&r, now()).await.unwrap(), Found::No);

    // Within the tolerance: 4 minutes before the attempt began.
    server.world().set_now(now() - Duration::minutes(4));
    let first = bought_outside(&server, "m5.large", "standard", 2);
    server.world().set_now(now());
    let second = bought_outside(&server, "m5.large", "standard", 2);
    let Found::Unclear(why) = m.find_purchase(&r, now()).await.unwrap() else {
        panic!("two candidates cannot be told apart")
    };
    assert!(why.contains(&first) && why.contains(&second), "{why}");
    assert!(why.starts_with("2 untagged"), "{why}");
    // Nothing was claimed.
    let tagged: Vec<_> = ledger_ris(&server)
        .into_iter()
        .filter_map(|r| r.3)
        .collect();
    assert_eq!(tagged, ["theirs"]);
    assert_eq!(
        server.world().calls("CreateTags"),
        1,
        "only the purchase's own tag"
    );
}

#[tokio::test]
async fn a_throttling_storm_on_create_savings_plan_buys_one_plan() {
    let (server, m) = market().await;
    // 5 throttles: the first purchase (3 attempts) gives up, retryable; the second gets
    // through after 2 more; the client token makes it one plan either way.
    server
        .world()
        .inject("CreateSavingsPlan", Fault::Throttle, 5);
    let r = request("storm", plan_spec("1.5"));
    let err = m.purchase(&r).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Unavailable { .. }) && err.retryable(),
        "{err}"
    );
    assert!(m.deduplicates(&Operation::Purchase, &r.spec));
    let bought = m.purchase(&r).await.unwrap();
    // A lost answer on a deduplicated call is retryable too: resent, the same plan.
    server
        .world()
        .inject("CreateSavingsPlan", Fault::ServerErrorAfterCommit, 1);
    let r2 = request("storm-2", plan_spec("2"));
    let err = m.purchase(&r2).await;
    let second = match err {
        // The SDK resent it with the same client token and got the plan.
        Ok(p) => p,
        Err(e) => panic!("a 5xx on CreateSavingsPlan is retried by the SDK: {e}"),
    };
    let w = server.world();
    assert_eq!(
        w.calls("CreateSavingsPlan"),
        8,
        "3 + 3 throttled/served + 2"
    );
    let plans = w.ledger().savings_plans;
    assert_eq!(plans.len(), 2, "{plans:?}");
    assert_eq!(plans[0].id, bought.commitment.id);
    assert_eq!(plans[1].id, second.commitment.id);
    assert_eq!(
        plans[0].tags.get(KEY_TAG).map(String::as_str),
        Some("storm")
    );
    assert_eq!(w.purchases(), 2);
}

#[tokio::test]
async fn a_purchase_is_reported_when_reading_it_back_fails() {
    let (server, m) = market().await;
    // The lookup before buying reads the RIs once; every read after the purchase fails.
    server
        .world()
        .inject("DescribeReservedInstances", Fault::Pass, 1);
    server
        .world()
        .inject_always("DescribeReservedInstances", Fault::ServerError);
    let q = m.quote(&standard()).await.unwrap();
    let bought = m
        .purchase(&request("no-readback", standard()))
        .await
        .unwrap();
    server.world().clear_faults(None);
    let ledger = ledger_ris(&server);
    assert_eq!(ledger.len(), 1);
    assert_eq!(bought.commitment.id, ledger[0].0);
    assert_eq!(bought.commitment.amount, CommitmentAmount::Instances(2));
    assert_eq!(
        bought.commitment.hourly_cost, q.hourly_cost,
        "from the quote"
    );
    assert_eq!(bought.commitment.start, Hour::from_datetime(now()));
    assert_eq!(
        bought.commitment.end,
        Hour::from_datetime(now()).plus(Term::ONE_YEAR.hours())
    );
    assert_eq!(ledger[0].3.as_deref(), Some("no-readback"));

    // A savings plan likewise.
    server
        .world()
        .inject("DescribeSavingsPlans", Fault::Pass, 1);
    server
        .world()
        .inject_always("DescribeSavingsPlans", Fault::ServerError);
    let plan = m
        .purchase(&request("sp-no-readback", plan_spec("0.75")))
        .await
        .unwrap();
    server.world().clear_faults(None);
    let plans = server.world().ledger().savings_plans;
    assert_eq!(plans.len(), 1);
    assert_eq!(plan.commitment.id, plans[0].id);
    assert_eq!(
        plan.commitment.amount,
        CommitmentAmount::HourlySpend(Money::parse("0.75").unwrap())
    );
    assert_eq!(
        plan.commitment.region, None,
        "a Compute plan is not regional"
    );
}

#[tokio::test]
async fn an_exchange_whose_accept_answer_is_lost_is_found() {
    for fault in [Fault::DropAfterCommit, Fault::ServerErrorAfterCommit] {
        let (server, m) = market().await;
        let source = m
            .purchase(&request(
                "source",
                ri_spec(Instrument::ConvertibleReservedInstance, "m5.large", 2),
            ))
            .await
            .unwrap()
            .commitment
            .id;
        server
            .world()
            .inject("AcceptReservedInstancesExchangeQuote", fault, 1);
        let r = ExchangeRequest {
            idempotency_key: "swap".into(),
            source_ids: vec![source.clone()],
            target: ri_spec(Instrument::ConvertibleReservedInstance, "m5.xlarge", 2),
            max_true_up: Money::ZERO,
            at: now(),
        };
        let exchange = Operation::Exchange {
            source_ids: r.source_ids.clone(),
            source_value: Money::ZERO,
            true_up: Money::ZERO,
        };
        assert!(!m.deduplicates(&exchange, &r.target));
        let err = m.exchange(&r).await.unwrap_err();
        assert!(err.outcome_unknown(), "{fault:?}: {err}");
        assert_eq!(
            server.world().calls("AcceptReservedInstancesExchangeQuote"),
            1,
            "sent once"
        );
        let found = m
            .find_exchange(&r)
            .await
            .unwrap()
            .expect("the accepted exchange is found");
        let ledger = server.world().ledger();
        assert_eq!(ledger.exchanges, 1);
        let target = ledger
            .reserved_instances
            .iter()
            .find(|ri| ri.instance_type == "m5.xlarge")
            .unwrap();
        assert_eq!(found.target_ids, std::slice::from_ref(&target.id));
        let src = ledger
            .reserved_instances
            .iter()
            .find(|ri| ri.id == source)
            .unwrap();
        assert_eq!(src.state, "retired");
    }
    // A 5xx before the accept was applied: unknown to the client, absent at AWS.
    let (server, m) = market().await;
    let source = m
        .purchase(&request(
            "source",
            ri_spec(Instrument::ConvertibleReservedInstance, "m5.large", 2),
        ))
        .await
        .unwrap()
        .commitment
        .id;
    server.world().inject(
        "AcceptReservedInstancesExchangeQuote",
        Fault::ServerError,
        1,
    );
    let r = ExchangeRequest {
        idempotency_key: "swap".into(),
        source_ids: vec![source],
        target: ri_spec(Instrument::ConvertibleReservedInstance, "m5.xlarge", 2),
        max_true_up: Money::ZERO,
        at: now(),
    };
    assert!(m.exchange(&r).await.unwrap_err().outcome_unknown());
    assert!(m.find_exchange(&r).await.unwrap().is_none());
    assert_eq!(server.world().ledger().exchanges, 0);
}

#[tokio::test]
async fn an_organization_asks_the_account_the_purchase_went_to() {
    let payer_server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    let linked_server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    for s in [&payer_server, &linked_server] {
        s.world().set_now(now());
    }
    let payer = AwsMarket::with_clock(
        AwsClients::connect(&settings(&payer_server, 3, 10_000))
            .await
            .unwrap(),
        now,
    );
    let linked = AwsMarket::with_clock(
        AwsClients::connect(&settings(&linked_server, 3, 10_000))
            .await
            .unwrap(),
        now,
    );
    let org = AwsOrganization::new(payer, vec![("222233334444".into(), linked)]);
    let mut spec = standard();
    spec.account = Some("222233334444".into());
    linked_server
        .world()
        .inject_always("CreateTags", Fault::Unauthorized);
    let r = request("org", spec.clone());
    let bought = org.purchase(&r).await.unwrap();
    assert_eq!(ledger_ris(&linked_server).len(), 1);
    assert!(ledger_ris(&payer_server).is_empty());
    let Found::Yes(found) = org.find_purchase(&r, now()).await.unwrap() else {
        panic!("found in the linked account")
    };
    assert_eq!(found.commitment.id, bought.commitment.id);
    // The same request aimed at the payer finds nothing there.
    let mut at_payer = r.clone();
    at_payer.spec.account = None;
    assert_eq!(
        org.find_purchase(&at_payer, now()).await.unwrap(),
        Found::No
    );

    assert!(!org.deduplicates(&Operation::Purchase, &spec));
    assert!(org.deduplicates(&Operation::Purchase, &plan_spec("1")));
    let mut unknown = plan_spec("1");
    unknown.account = Some("999".into());
    assert!(
        !org.deduplicates(&Operation::Purchase, &unknown),
        "an unconfigured account: never resend"
    );
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

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
}

/// What a fault-injection suite over the `commitd` binary drives: the control API.
#[tokio::test]
async fn the_control_api_sets_permanent_and_slow_faults_clears_them_and_shows_the_ledger() {
    let (server, m) = market().await;
    let (status, _) = raw(
        &server,
        post(
            "/_commitd/faults",
            r#"{"operation":"CreateTags","fault":"unauthorized","always":true}"#,
        ),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    let (status, _) = raw(
        &server,
        post(
            "/_commitd/faults",
            r#"{"operation":"DescribeSavingsPlans","fault":"slow-after-commit","times":0,"delay_ms":1500}"#,
        ),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(
        server.world().fault_delay,
        std::time::Duration::from_millis(1500)
    );

    let r = request("via-http", standard());
    m.purchase(&r).await.unwrap();
    m.purchase(&request(
        "via-http-2",
        ri_spec(Instrument::StandardReservedInstance, "c5.large", 1),
    ))
    .await
    .unwrap();
    let (_, body) = raw(&server, get("/_commitd/ledger")).await;
    let ledger: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ris = ledger["reserved_instances"].as_array().unwrap();
    assert_eq!(ris.len(), 2, "{ledger}");
    assert!(
        ris.iter()
            .all(|ri| ri["tags"].as_object().unwrap().is_empty()),
        "CreateTags failed every time: {ledger}"
    );
    assert_eq!(ris[0]["instance_type"], "m5.large");
    assert_eq!(ris[0]["count"], 2);
    assert_eq!(ris[0]["class"], "standard");

    let (status, _) = raw(
        &server,
        post("/_commitd/faults/clear", r#"{"operation":"CreateTags"}"#),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(matches!(
        m.find_purchase(&r, now()).await.unwrap(),
        Found::Yes(_)
    ));
    let (_, body) = raw(&server, get("/_commitd/ledger")).await;
    let ledger: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ledger["reserved_instances"][0]["tags"][KEY_TAG], "via-http",
        "{ledger}"
    );
    let (status, body) = raw(
        &server,
        post("/_commitd/faults/clear", r#"{"operation":7}"#),
    )
    .await;
    assert!(status.contains(" 400 "), "{status} {body}");
    let (status, _) = raw(&server, post("/_commitd/faults/clear", "")).await;
    assert!(status.contains(" 200 "), "{status}");
}
