//! AWS as the executor's `CommitmentMarket`, through the real SDK against the local test server.

use chrono::{DateTime, Utc};
use commitd::domain::{CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term};
use commitd::markets::aws::market::AwsMarket;
use commitd::markets::aws::{AwsClients, AwsSettings, RetrySettings, StaticCredentials};
use commitd::markets::{CommitmentMarket, ProviderError, PurchaseRequest, PurchaseSpec};
use commitd_testkit::aws_server::{Fault, TestServer, World};

const NOW: &str = "2025-03-05T10:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

async fn market(max_attempts: u32) -> (TestServer, AwsMarket) {
    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    server.world().set_now(now());
    let clients = AwsClients::connect(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "m".into(),
            secret_access_key: "m".into(),
        }),
        retry: RetrySettings {
            max_attempts,
            initial_backoff_ms: 5,
            max_backoff_ms: 20,
            deadline_ms: 10_000,
            attempt_timeout_ms: 5_000,
        },
        ..AwsSettings::default()
    })
    .await
    .unwrap();
    (server, AwsMarket::with_clock(clients, now))
}

fn spec(instrument: Instrument, payment: PaymentOption, amount: CommitmentAmount) -> PurchaseSpec {
    PurchaseSpec {
        provider: Provider::Aws,
        account: None,
        instrument,
        term: Term::ONE_YEAR,
        payment,
        region: Some("us-east-1".into()),
        family: None,
        instance_type: None,
        os: None,
        tenancy: None,
        amount,
    }
}

fn request(key: &str, spec: PurchaseSpec, max_hourly: &str, max_upfront: &str) -> PurchaseRequest {
    PurchaseRequest {
        idempotency_key: key.into(),
        spec,
        start: Hour::from_datetime(now()),
        max_hourly_cost: Money::parse(max_hourly).unwrap(),
        max_upfront: Money::parse(max_upfront).unwrap(),
    }
}

#[tokio::test]
async fn savings_plan_through_the_market_is_idempotent_per_key() {
    let (server, m) = market(3).await;
    let s = spec(
        Instrument::ComputeSavingsPlan,
        PaymentOption::AllUpfront,
        CommitmentAmount::HourlySpend(Money::parse("0.5").unwrap()),
    );
    let q = m.quote(&s).await.unwrap();
    assert_eq!(q.hourly_cost, Money::parse("0.5").unwrap());
    assert_eq!(
        q.upfront,
        Money::from_units(4380),
        "0.5 x 8760, all upfront"
    );

    let r = request("market-sp", s, "0.5", "4380");
    let first = m.purchase(&r).await.unwrap();
    assert_eq!(
        first.request_id.len(),
        36,
        "the CreateSavingsPlan request id"
    );
    assert_eq!(
        first.commitment.amount,
        CommitmentAmount::HourlySpend(Money::parse("0.5").unwrap())
    );
    assert_eq!(first.commitment.upfront, Money::from_units(4380));
    let again = m.purchase(&r).await.unwrap();
    assert_eq!(again.commitment.id, first.commitment.id);
    assert_eq!(server.world().purchases(), 1);
    let found = m
        .find_by_idempotency_key("market-sp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.commitment.id, first.commitment.id);
    assert!(m.find_by_idempotency_key("other").await.unwrap().is_none());
    assert_eq!(m.inventory().await.unwrap().len(), 1);
}

#[tokio::test]
async fn reserved_instances_through_the_market_and_price_ceiling() {
    let (server, m) = market(3).await;
    let mut s = spec(
        Instrument::StandardReservedInstance,
        PaymentOption::PartialUpfront,
        CommitmentAmount::Instances(3),
    );
    s.instance_type = Some("m5.large".into());
    let q = m.quote(&s).await.unwrap();
    assert!(q.upfront > Money::ZERO);
    // Approved less upfront than AWS asks: refused before anything is sent to buy.
    let low = request("market-ri-low", s.clone(), "10", "1");
    let err = m.purchase(&low).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::PriceAboveApproval {
                what: "upfront",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.world().calls("PurchaseReservedInstancesOffering"), 0);

    let ok = request("market-ri", s, "10", &q.upfront.to_string());
    let bought = m.purchase(&ok).await.unwrap();
    assert_eq!(bought.commitment.amount, CommitmentAmount::Instances(3));
    assert_eq!(bought.commitment.instance_type.as_deref(), Some("m5.large"));
    assert_eq!(bought.commitment.hourly_cost, q.hourly_cost);
    assert_eq!(
        m.purchase(&ok).await.unwrap().commitment.id,
        bought.commitment.id
    );
    assert_eq!(server.world().purchases(), 1);
}

#[tokio::test]
async fn lost_answer_is_reconciled_by_key_and_failures_map_to_retryable_or_not() {
    let (server, m) = market(1).await;
    let s = spec(
        Instrument::ComputeSavingsPlan,
        PaymentOption::NoUpfront,
        CommitmentAmount::HourlySpend(Money::parse("2").unwrap()),
    );
    server
        .world()
        .inject("CreateSavingsPlan", Fault::DropAfterCommit, 1);
    let r = request("market-crash", s.clone(), "2", "0");
    let err = m.purchase(&r).await.unwrap_err();
    assert!(
        err.retryable(),
        "a lost answer is retryable after reconciliation: {err}"
    );
    let found = m
        .find_by_idempotency_key("market-crash")
        .await
        .unwrap()
        .expect("reconciled");
    assert_eq!(
        m.purchase(&r).await.unwrap().commitment.id,
        found.commitment.id
    );
    assert_eq!(server.world().purchases(), 1);

    server
        .world()
        .inject("DescribeSavingsPlans", Fault::Throttle, 1);
    assert!(m.inventory().await.unwrap_err().retryable());
    let mut bad = s;
    bad.instrument = Instrument::AzureSavingsPlan;
    assert!(!m.quote(&bad).await.unwrap_err().retryable());
}

#[tokio::test]
async fn a_future_start_queues_the_savings_plan() {
    let (server, m) = market(2).await;
    let s = spec(
        Instrument::ComputeSavingsPlan,
        PaymentOption::NoUpfront,
        CommitmentAmount::HourlySpend(Money::parse("1").unwrap()),
    );
    let mut r = request("market-queued", s, "1", "0");
    r.start = Hour::from_datetime(now()).plus(48);
    let p = m.purchase(&r).await.unwrap();
    assert_eq!(p.commitment.start, r.start);
    assert_eq!(server.world().plans()[0].1, "queued");
}

/// Autopilot end to end: an approved proposal is executed by the real executor on AWS (through
/// the SDK and the test server); the inventory shows the plan; the audit log's `Executed` event
/// holds AWS's request id, and a crash after the purchase is reconciled without a second one.
#[tokio::test]
async fn executor_buys_on_aws_and_audits_the_request_id() {
    use commitd::audit::{AuditLog, EventBody, EventFilter, EventKind};
    use commitd::execute::{Executor, Failpoint, Outcome, Step};
    use commitd::policy::{Policy, PolicySet};
    use commitd::proposals::{NewProposal, PlannedAction, ProposalStore};
    use commitd::store::Store;
    use std::sync::Arc;

    let (server, m) = market(3).await;
    let market: Arc<AwsMarket> = Arc::new(m);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let proposals = ProposalStore::new(store.clone());
    let audit = AuditLog::open(store.clone());
    let policies = || {
        std::sync::Arc::new(commitd::execute::policies::PolicySource::fixed(PolicySet {
        policies: vec![Policy::parse(
            "name = \"aws\"\n[scope]\nprovider = \"AWS\"\n[allow]\ninstruments = [\"ComputeSavingsPlan\"]\nterms = [1]\npayment_options = [\"NoUpfront\"]\n[limits]\nmax_new_hourly_commitment_per_day = \"10\"\n",
            std::path::Path::new("policies/aws.toml"),
        )
        .unwrap()],
    }))
    };
    let action = |hourly: &str| PlannedAction {
        operation: Default::default(),
        spec: spec(
            Instrument::ComputeSavingsPlan,
            PaymentOption::NoUpfront,
            CommitmentAmount::HourlySpend(Money::parse(hourly).unwrap()),
        ),
        hourly_cost: Money::parse(hourly).unwrap(),
        upfront: Money::ZERO,
        expected_savings: Money::from_units(1_000),
        expected_utilization: Some(0.99),
        summary: "aws e2e".into(),
    };
    let approved = |index: usize, hourly: &'static str| {
        let proposals = proposals.clone();
        async move {
            let p = proposals
                .create(
                    &NewProposal {
                        plan_id: "plan-aws".into(),
                        index,
                        proposer: "commitd".into(),
                        approvals_needed: 1,
                        policy: "aws".into(),
                        action: action(hourly),
                        max_age: chrono::Duration::hours(48),
                    },
                    now(),
                )
                .await
                .unwrap();
            proposals
                .approve(&p.id, "alice", now(), None)
                .await
                .unwrap()
                .proposal
        }
    };

    // 1. A plain execution.
    let p = approved(0, "1.5").await;
    let executor = Executor::new(proposals.clone(), audit.clone(), market.clone(), policies());
    let out = executor.execute_approved(now()).await.unwrap();
    let Outcome::Executed {
        commitment_id,
        reconciled,
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(!reconciled);
    let inventory = market.inventory().await.unwrap();
    assert!(
        inventory.iter().any(|c| &c.id == commitment_id),
        "inventory shows the purchase"
    );
    let executed = audit
        .list(
            &EventFilter {
                kind: Some(EventKind::Executed),
                ..EventFilter::default()
            },
            None,
        )
        .await
        .unwrap();
    let EventBody::Executed(e) = &executed[0].body else {
        panic!()
    };
    assert_eq!(e.proposal_id, p.id);
    assert_eq!(e.commitment_id, *commitment_id);
    assert_eq!(
        e.provider_request_id.len(),
        36,
        "AWS's request id: {}",
        e.provider_request_id
    );
    assert_eq!(server.world().purchases(), 1);

    // 2. A crash after AWS committed and before the executor recorded it: the restart
    //    reconciles by key, records the purchase, and buys nothing more.
    let _p2 = approved(1, "2").await;
    let crashing = Executor::new(proposals.clone(), audit.clone(), market.clone(), policies())
        .with_failpoint(Failpoint {
            at: Some(Step::AfterPurchase),
            abort: false,
        });
    assert!(crashing.execute_approved(now()).await.is_err());
    assert_eq!(server.world().purchases(), 2);
    let restarted = Executor::new(proposals.clone(), audit.clone(), market.clone(), policies());
    let out = restarted.reconcile(now()).await.unwrap();
    assert!(
        matches!(
            &out[0],
            Outcome::Executed {
                reconciled: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(server.world().purchases(), 2, "no second purchase");
    assert_eq!(market.inventory().await.unwrap().len(), 2);
    assert!(audit.verify().await.unwrap().is_ok());
}

/// AWS charges an all-upfront plan in cents: the quote says what it will record, and an
/// approval computed exactly (micro-dollars) covers it; one cent less does not.
#[tokio::test]
async fn all_upfront_is_quoted_in_cents_and_the_exact_approval_covers_it() {
    let (server, m) = market(1).await;
    let s = spec(
        Instrument::ComputeSavingsPlan,
        PaymentOption::AllUpfront,
        CommitmentAmount::HourlySpend(Money::parse("0.70806").unwrap()),
    );
    let q = m.quote(&s).await.unwrap();
    assert_eq!(
        q.upfront,
        Money::parse("6202.61").unwrap(),
        "0.70806 x 8760 = 6202.6056"
    );
    let short = request("cents-short", s.clone(), "0.70806", "6202.60");
    assert!(matches!(
        m.purchase(&short).await.unwrap_err(),
        ProviderError::PriceAboveApproval {
            what: "upfront",
            ..
        }
    ));
    assert_eq!(server.world().purchases(), 0);
    let exact = request("cents-exact", s, "0.70806", "6202.6056");
    let bought = m.purchase(&exact).await.unwrap();
    assert_eq!(
        bought.commitment.upfront, q.upfront,
        "what AWS recorded = the quote"
    );
    assert_eq!(server.world().purchases(), 1);
}
