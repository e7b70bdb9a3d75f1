//! Returns and exchanges executed by the real executor on AWS, through the real SDK against the
//! local test server: a savings plan returned inside its window (and refused outside it), an
//! exchange whose quote is invalid (fails cleanly, nothing changes), and a valid exchange
//! interrupted by a crash between AWS accepting it and the executor recording it (the restart
//! reconciles from the retired sources; AWS saw exactly one accept).

use chrono::{DateTime, Duration, Utc};
use commitd::audit::{AuditLog, EventBody, EventFilter, EventKind};
use commitd::domain::{CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term};
use commitd::execute::{Executor, Failpoint, Outcome, Step};
use commitd::markets::aws::market::AwsMarket;
use commitd::markets::aws::{AwsClients, AwsSettings, RetrySettings, StaticCredentials};
use commitd::markets::{CommitmentMarket, Operation, PurchaseRequest, PurchaseSpec};
use commitd::policy::{Policy, PolicySet};
use commitd::proposals::{NewProposal, PlannedAction, Proposal, ProposalState, ProposalStore};
use commitd::store::Store;
use commitd_testkit::aws_server::{TestServer, World};
use std::sync::Arc;

const NOW: &str = "2025-03-05T10:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

/// Eight days later, still in March: outside the 7-day return window.
fn later() -> DateTime<Utc> {
    now() + Duration::days(8)
}

const POLICY: &str = r#"
name = "aws"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan", "ConvertibleReservedInstance", "StandardReservedInstance"]
terms = [1]
payment_options = ["NoUpfront"]
[limits]
max_new_hourly_commitment_per_day = "10"
max_upfront_per_day = "0"
"#;

fn policies() -> PolicySet {
    PolicySet {
        policies: vec![Policy::parse(POLICY, std::path::Path::new("policies/aws.toml")).unwrap()],
    }
}

async fn clients(server: &TestServer) -> AwsClients {
    AwsClients::connect(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "m".into(),
            secret_access_key: "m".into(),
        }),
        retry: RetrySettings {
            max_attempts: 2,
            initial_backoff_ms: 5,
            max_backoff_ms: 20,
            deadline_ms: 10_000,
            attempt_timeout_ms: 5_000,
        },
        ..AwsSettings::default()
    })
    .await
    .unwrap()
}

struct Env {
    server: TestServer,
    market: Arc<AwsMarket>,
    proposals: ProposalStore,
    audit: AuditLog,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    server.world().set_now(now());
    let market = Arc::new(AwsMarket::with_clock(clients(&server).await, now));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    Env {
        server,
        market,
        proposals: ProposalStore::new(store.clone()),
        audit: AuditLog::open(store),
        _dir: dir,
    }
}

fn spec(
    instrument: Instrument,
    amount: CommitmentAmount,
    instance_type: Option<&str>,
) -> PurchaseSpec {
    PurchaseSpec {
        provider: Provider::Aws,
        account: None,
        instrument,
        term: Term::ONE_YEAR,
        payment: PaymentOption::NoUpfront,
        region: Some("us-east-1".into()),
        family: None,
        instance_type: instance_type.map(str::to_string),
        os: None,
        tenancy: None,
        amount,
    }
}

impl Env {
    fn executor(&self, market: Arc<AwsMarket>, crash: Option<Step>) -> Executor {
        Executor::new(
            self.proposals.clone(),
            self.audit.clone(),
            market,
            std::sync::Arc::new(commitd::execute::policies::PolicySource::fixed(policies())),
        )
        .with_failpoint(Failpoint {
            at: crash,
            abort: false,
        })
    }

    /// Buys directly (what an earlier cycle would have done).
    async fn buy(&self, key: &str, spec: PurchaseSpec) -> String {
        self.buy_from(key, spec, now()).await
    }

    /// Buys starting at `start` (queued when it is in the future).
    async fn buy_from(&self, key: &str, spec: PurchaseSpec, start: DateTime<Utc>) -> String {
        self.market
            .purchase(&PurchaseRequest {
                idempotency_key: key.into(),
                spec,
                start: Hour::from_datetime(start),
                max_hourly_cost: Money::from_units(1_000),
                max_upfront: Money::ZERO,
            })
            .await
            .unwrap()
            .commitment
            .id
    }

    async fn approved(&self, index: usize, action: PlannedAction) -> Proposal {
        self.approved_at(index, action, now()).await
    }

    /// Proposed and approved by alice at `at`.
    async fn approved_at(
        &self,
        index: usize,
        action: PlannedAction,
        at: DateTime<Utc>,
    ) -> Proposal {
        let p = self
            .proposals
            .create(
                &NewProposal {
                    plan_id: "plan-aws".into(),
                    index,
                    proposer: "commitd".into(),
                    approvals_needed: 1,
                    policy: "aws".into(),
                    action,
                    max_age: Duration::hours(48),
                },
                at,
            )
            .await
            .unwrap();
        self.proposals
            .approve(&p.id, "alice", at, None)
            .await
            .unwrap()
            .proposal
    }

    async fn events(&self, kind: EventKind) -> Vec<commitd::audit::Event> {
        self.audit
            .list(
                &EventFilter {
                    kind: Some(kind),
                    ..EventFilter::default()
                },
                None,
            )
            .await
            .unwrap()
    }

    fn plan_state(&self, id: &str) -> String {
        self.server
            .world()
            .plans()
            .into_iter()
            .find(|(p, _)| p.id == id)
            .map(|(_, s)| s)
            .unwrap()
    }

    fn ri_states(&self) -> Vec<(String, String, u32, String)> {
        self.server
            .world()
            .reserved_instances()
            .into_iter()
            .map(|(r, state, o)| (r.id, o.instance_type, r.count, state))
            .collect()
    }
}

fn return_action(plan_id: &str, hourly: &str) -> PlannedAction {
    PlannedAction {
        operation: Operation::Return {
            commitment_id: plan_id.into(),
            hourly_cost_removed: Money::parse(hourly).unwrap(),
            instances: None,
        },
        spec: spec(
            Instrument::ComputeSavingsPlan,
            CommitmentAmount::HourlySpend(Money::parse(hourly).unwrap()),
            None,
        ),
        hourly_cost: Money::ZERO,
        upfront: Money::ZERO,
        expected_savings: Money::from_units(100),
        expected_utilization: None,
        summary: "no longer wanted".into(),
    }
}

fn exchange_action(source: &str, instance_type: &str, count: u32) -> PlannedAction {
    PlannedAction {
        operation: Operation::Exchange {
            source_ids: vec![source.into()],
            source_value: Money::ZERO,
            true_up: Money::ZERO,
        },
        spec: spec(
            Instrument::ConvertibleReservedInstance,
            CommitmentAmount::Instances(count),
            Some(instance_type),
        ),
        hourly_cost: Money::from_units(1),
        // No Upfront into No Upfront: AWS asks no true-up, and none is approved.
        upfront: Money::ZERO,
        expected_savings: Money::from_units(100),
        expected_utilization: Some(0.99),
        summary: "move to where the usage went".into(),
    }
}

#[tokio::test]
async fn a_savings_plan_is_returned_inside_its_window_and_refused_outside() {
    let e = env().await;
    let sp = e
        .buy(
            "bought-1",
            spec(
                Instrument::ComputeSavingsPlan,
                CommitmentAmount::HourlySpend(Money::parse("1.5").unwrap()),
                None,
            ),
        )
        .await;
    let p = e.approved(0, return_action(&sp, "1.5")).await;
    let out = e
        .executor(e.market.clone(), None)
        .execute_approved(now())
        .await
        .unwrap();
    assert!(
        matches!(&out[0], Outcome::Executed { commitment_id, reconciled: false, .. } if *commitment_id == sp),
        "{out:?}"
    );
    assert_eq!(e.plan_state(&sp), "returned");
    assert!(e.market.inventory().await.unwrap().is_empty());
    let stored = e.proposals.get(&p.id).await.unwrap().unwrap();
    assert_eq!(stored.state, ProposalState::Executed);
    // The audit has the request id AWS answered ReturnSavingsPlan with.
    let executed = e.events(EventKind::Executed).await;
    let EventBody::Executed(ev) = &executed[0].body else {
        panic!()
    };
    assert!(
        e.server
            .world()
            .request_ids("ReturnSavingsPlan")
            .contains(&ev.provider_request_id),
        "{ev:?}"
    );
    assert_eq!(e.server.world().calls("ReturnSavingsPlan"), 1);

    // A second plan, judged eight days later (AWS's clock and the market's): refused, recorded,
    // and the plan is still active.
    let sp2 = e
        .buy(
            "bought-2",
            spec(
                Instrument::ComputeSavingsPlan,
                CommitmentAmount::HourlySpend(Money::parse("2").unwrap()),
                None,
            ),
        )
        .await;
    e.server.world().set_now(later());
    let late_market = Arc::new(AwsMarket::with_clock(clients(&e.server).await, later));
    let p2 = e.approved(1, return_action(&sp2, "2")).await;
    let out = e
        .executor(late_market, None)
        .execute_approved(later())
        .await
        .unwrap();
    let Outcome::Failed {
        error, retryable, ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(!retryable);
    assert!(error.contains("more than 7 days"), "{error}");
    assert_eq!(e.plan_state(&sp2), "active");
    assert_eq!(
        e.server.world().calls("ReturnSavingsPlan"),
        1,
        "refused before anything was sent"
    );
    let stored = e.proposals.get(&p2.id).await.unwrap().unwrap();
    assert_eq!(stored.state, ProposalState::Failed);
    let failed = e.events(EventKind::Failed).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].rationale["operation"]["kind"], "return",
        "{:?}",
        failed[0]
    );
    assert!(e.audit.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn an_invalid_exchange_quote_fails_cleanly_and_changes_nothing() {
    let e = env().await;
    let ri = e
        .buy(
            "ri-1",
            spec(
                Instrument::ConvertibleReservedInstance,
                CommitmentAmount::Instances(2),
                Some("m5.large"),
            ),
        )
        .await;
    let before = e.ri_states();
    // One c5.large is worth less than two m5.large: AWS's quote says the exchange is invalid.
    let p = e.approved(0, exchange_action(&ri, "c5.large", 1)).await;
    let out = e
        .executor(e.market.clone(), None)
        .execute_approved(now())
        .await
        .unwrap();
    let Outcome::Failed {
        error, retryable, ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(!retryable);
    assert!(error.contains("less than the remaining value"), "{error}");
    assert_eq!(e.ri_states(), before, "nothing changed");
    assert_eq!(
        e.server
            .world()
            .calls("AcceptReservedInstancesExchangeQuote"),
        0
    );
    assert_eq!(
        e.proposals.get(&p.id).await.unwrap().unwrap().state,
        ProposalState::Failed
    );
    let failed = e.events(EventKind::Failed).await;
    let quote = &failed[0].rationale["quote"];
    assert_eq!(quote["valid"], false, "{quote}");
    assert!(quote["request_id"].is_string(), "{quote}");
    assert!(quote["source_remaining_value"].is_string(), "{quote}");
    assert!(e.audit.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_valid_exchange_survives_a_crash_between_the_accept_and_its_record() {
    let e = env().await;
    let ri = e
        .buy(
            "ri-1",
            spec(
                Instrument::ConvertibleReservedInstance,
                CommitmentAmount::Instances(2),
                Some("m5.large"),
            ),
        )
        .await;
    // Two m5.xlarge are worth more than two m5.large: valid, no true-up (No Upfront).
    let p = e.approved(0, exchange_action(&ri, "m5.xlarge", 2)).await;
    let crashing = e.executor(e.market.clone(), Some(Step::AfterPurchase));
    assert!(crashing.execute_approved(now()).await.is_err());
    assert_eq!(
        e.server
            .world()
            .calls("AcceptReservedInstancesExchangeQuote"),
        1
    );
    assert_eq!(
        e.proposals.get(&p.id).await.unwrap().unwrap().state,
        ProposalState::Executing
    );

    let restarted = e.executor(e.market.clone(), None);
    let out = restarted.reconcile(now()).await.unwrap();
    let Outcome::Executed {
        commitment_id,
        reconciled,
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(reconciled);
    assert_eq!(
        e.server
            .world()
            .calls("AcceptReservedInstancesExchangeQuote"),
        1,
        "the restart found the exchange and did not send it again"
    );
    let states = e.ri_states();
    assert!(
        states
            .iter()
            .any(|(id, _, _, s)| *id == ri && s == "retired"),
        "{states:?}"
    );
    let target = states
        .iter()
        .find(|(_, t, n, s)| t == "m5.xlarge" && *n == 2 && s == "active")
        .unwrap_or_else(|| panic!("{states:?}"));
    assert_eq!(*commitment_id, target.0);
    let inventory = e.market.inventory().await.unwrap();
    assert_eq!(inventory.len(), 1);
    assert_eq!(inventory[0].id, target.0);
    assert_eq!(
        e.proposals.get(&p.id).await.unwrap().unwrap().state,
        ProposalState::Executed
    );
    let executed = e.events(EventKind::Executed).await;
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0].rationale["operation"], "exchange");
    assert_eq!(executed[0].rationale["reconciled"], true);
    assert!(e.audit.verify().await.unwrap().is_ok());

    // Without a crash, the audit keeps the accepted quote and the accept's request id.
    let ri2 = e
        .buy(
            "ri-2",
            spec(
                Instrument::ConvertibleReservedInstance,
                CommitmentAmount::Instances(1),
                Some("c5.large"),
            ),
        )
        .await;
    e.approved(1, exchange_action(&ri2, "c5.xlarge", 1)).await;
    let out = restarted.execute_approved(now()).await.unwrap();
    assert!(
        matches!(
            &out[0],
            Outcome::Executed {
                reconciled: false,
                ..
            }
        ),
        "{out:?}"
    );
    let executed = e.events(EventKind::Executed).await;
    let last = executed
        .iter()
        .find(|ev| ev.rationale["reconciled"] == false)
        .unwrap();
    let EventBody::Executed(ev) = &last.body else {
        panic!()
    };
    assert!(e
        .server
        .world()
        .request_ids("AcceptReservedInstancesExchangeQuote")
        .contains(&ev.provider_request_id));
    assert_eq!(last.rationale["quote"]["valid"], true, "{}", last.rationale);
    assert_eq!(
        e.server
            .world()
            .calls("AcceptReservedInstancesExchangeQuote"),
        2
    );
}

/// A queued plan (bought to start later) that is no longer wanted is withdrawn through the same
/// return action: DeleteQueuedSavingsPlan, whatever its size (no return window applies), once;
/// executing the proposal again finds it withdrawn and sends nothing.
#[tokio::test]
async fn a_queued_savings_plan_is_withdrawn_not_returned() {
    let e = env().await;
    let sp = e
        .buy_from(
            "queued-1",
            spec(
                Instrument::ComputeSavingsPlan,
                CommitmentAmount::HourlySpend(Money::parse("150").unwrap()),
                None,
            ),
            now() + Duration::days(20),
        )
        .await;
    assert_eq!(e.plan_state(&sp), "queued");
    let p = e.approved(0, return_action(&sp, "150")).await;
    let out = e
        .executor(e.market.clone(), None)
        .execute_approved(now())
        .await
        .unwrap();
    assert!(
        matches!(&out[0], Outcome::Executed { commitment_id, .. } if *commitment_id == sp),
        "{out:?}"
    );
    assert_eq!(e.plan_state(&sp), "queued-deleted");
    assert_eq!(e.server.world().calls("DeleteQueuedSavingsPlan"), 1);
    assert_eq!(e.server.world().calls("ReturnSavingsPlan"), 0);
    let executed = e.events(EventKind::Executed).await;
    let EventBody::Executed(ev) = &executed[0].body else {
        panic!()
    };
    assert!(
        e.server
            .world()
            .request_ids("DeleteQueuedSavingsPlan")
            .contains(&ev.provider_request_id),
        "{ev:?}"
    );
    assert!(e.market.inventory().await.unwrap().is_empty());
    assert_eq!(
        e.proposals.get(&p.id).await.unwrap().unwrap().state,
        ProposalState::Executed
    );
    // Asked again (a replay after a crash): found withdrawn, nothing sent.
    let again = e
        .market
        .return_commitment(&commitd::markets::ReturnRequest {
            idempotency_key: "replay".into(),
            commitment_id: sp.clone(),
            account: None,
            instances: None,
            at: now(),
        })
        .await
        .unwrap();
    assert_eq!(again.state, "queued-deleted");
    assert_eq!(e.server.world().calls("DeleteQueuedSavingsPlan"), 1);
    assert!(e.audit.verify().await.unwrap().is_ok());
}

/// Forty days after `now`: a Standard RI bought at `now` may be listed (30 days active).
fn forty_days_later() -> DateTime<Utc> {
    now() + Duration::days(40)
}

/// A Standard RI is listed on the Marketplace under the proposal's client token: refused while
/// it is under 30 days old, listed once after, and a crash between the listing and its record
/// is reconciled by the token (DescribeReservedInstancesListings), not listed again.
#[tokio::test]
async fn a_standard_ri_is_listed_once_even_across_a_crash() {
    let e = env().await;
    let ri = e
        .buy(
            "std-1",
            spec(
                Instrument::StandardReservedInstance,
                CommitmentAmount::Instances(3),
                Some("m5.large"),
            ),
        )
        .await;
    let sale = |key: &str| commitd::markets::SaleRequest {
        idempotency_key: key.into(),
        commitment_id: ri.clone(),
        account: None,
        instances: 2,
        price: Money::parse("123.456").unwrap(),
        at: now(),
    };
    let err = e.market.sell(&sale("too-young")).await.unwrap_err();
    assert!(err.to_string().contains("less than 30 days"), "{err}");
    assert!(e.server.world().listings().is_empty());

    e.server.world().set_now(forty_days_later());
    let market = Arc::new(AwsMarket::with_clock(
        clients(&e.server).await,
        forty_days_later,
    ));
    let action = PlannedAction {
        operation: Operation::Sell {
            commitment_id: ri.clone(),
            instances: 2,
            hourly_cost_removed: Money::ZERO,
            price: Money::parse("123.456").unwrap(),
        },
        spec: spec(
            Instrument::StandardReservedInstance,
            CommitmentAmount::Instances(2),
            Some("m5.large"),
        ),
        hourly_cost: Money::ZERO,
        upfront: Money::ZERO,
        expected_savings: Money::from_units(50),
        expected_utilization: None,
        summary: "idle".into(),
    };
    e.approved_at(0, action, forty_days_later()).await;
    // The refused request above was one call.
    let calls = || e.server.world().calls("CreateReservedInstancesListing");
    assert_eq!(calls(), 1);
    let crashing = e.executor(market.clone(), Some(Step::AfterPurchase));
    assert!(crashing.execute_approved(forty_days_later()).await.is_err());
    assert_eq!(calls(), 2);

    let restarted = e.executor(market.clone(), None);
    let out = restarted.reconcile(forty_days_later()).await.unwrap();
    let Outcome::Executed {
        commitment_id,
        reconciled,
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(reconciled);
    assert_eq!(
        calls(),
        2,
        "the restart found the listing by its client token"
    );
    let listings = e.server.world().listings().to_vec();
    assert_eq!(listings.len(), 1);
    assert_eq!(*commitment_id, listings[0].id);
    assert_eq!(
        (listings[0].ri_id.as_str(), listings[0].count),
        (ri.as_str(), 2)
    );
    // The price is sent rounded down to the cent, for the 10 whole months left.
    assert_eq!(listings[0].schedule, vec![(10, "123.45".parse().unwrap())]);
    // The market reports the listing; the RI stays whole in the inventory until it sells.
    let seen = market.listings().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].state.as_str(), seen[0].instances), ("active", 2));
    assert_eq!(
        market.inventory().await.unwrap()[0].amount,
        CommitmentAmount::Instances(3)
    );
    // A second listing of the same RI is refused while the first is open.
    let err = market.sell(&sale("second")).await.unwrap_err();
    assert!(
        err.to_string().contains("already has an active listing"),
        "{err}"
    );
    let executed = e.events(EventKind::Executed).await;
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0].rationale["operation"], "sale");
    assert!(e.audit.verify().await.unwrap().is_ok());
    // Once a buyer takes them, the RI keeps the instances not sold.
    e.server.world().sell_listing(&listings[0].id).unwrap();
    assert_eq!(
        market.inventory().await.unwrap()[0].amount,
        CommitmentAmount::Instances(1)
    );
}
