//! Exchanging Azure reservations through the SDK against the peer: `calculateExchange` then
//! `exchange` under its session, into a reservation or a savings plan; refused by Azure's value
//! rule, by the 2027-02-01 rule (commitd's own, before anything is asked, and the peer's), and
//! over the approved true-up, with nothing exchanged; `exchange` (no client token) sent once
//! under a lost answer, a 5xx and throttling, judged by the peer's ledger; the executor parking
//! what it cannot settle and reconciling what the read-back finds; a partial return whose answer
//! was lost recognised from the reservation's revisions.

use crate::returns::held;
use crate::sdk::{reservation, savings_plan};
use crate::{market, peer};
use chrono::{DateTime, Duration, Utc};
use commitd::domain::{CommitmentAmount, Instrument, Money, PaymentOption};
use commitd::markets::azure::market::exchange_tag;
use commitd::markets::{
    CommitmentMarket, ExchangeRequest, Operation, ProviderError, PurchaseSpec, ReturnRequest,
};
use commitd_testkit::azure_server::{AzurePeer, Fault, Op};
use rust_decimal::Decimal;
use std::time::Instant;

fn peer_now(peer: &AzurePeer) -> DateTime<Utc> {
    peer.world().now
}

fn exchange(
    key: &str,
    sources: &[&str],
    target: PurchaseSpec,
    max_true_up: u32,
) -> ExchangeRequest {
    ExchangeRequest {
        idempotency_key: key.into(),
        source_ids: sources.iter().map(|s| s.to_string()).collect(),
        target,
        max_true_up: Money::from_units(i64::from(max_true_up)),
        at: Utc::now(),
    }
}

fn d4(n: u32) -> PurchaseSpec {
    PurchaseSpec {
        instance_type: Some("Standard_D4s_v5".into()),
        ..reservation(n, PaymentOption::AllUpfront)
    }
}

fn calls(peer: &AzurePeer, from: usize, what: &str) -> usize {
    peer.world().ledger.requests[from..]
        .iter()
        .filter(|r| r.as_str() == what)
        .count()
}

const CALCULATE: &str = "POST /providers/Microsoft.Capacity/calculateExchange";
const EXCHANGE: &str = "POST /providers/Microsoft.Capacity/exchange";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_are_exchanged_into_a_reservation_and_into_a_savings_plan() {
    let peer = peer().await;
    let (a, b) = {
        let mut w = peer.world();
        // Exchanges do not count against the refund cap: one USD 10 short of it changes nothing.
        w.refunds_consumed = Decimal::from(49_990);
        (
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 100),
            w.seed_reservation("Standard_D2s_v5", "eastus", "P1Y", "Monthly", 1, 30),
        )
    };
    let m = market(&peer);
    let (a_id, _) = held(&m, &a).await.unwrap();
    let r = exchange("k-x-1", &[&a_id], d4(2), 5_000);
    assert!(m.find_exchange(&r).await.unwrap().is_none(), "not yet");

    // The quote changes nothing; it is Azure's arithmetic.
    let q = m.exchange_quote(&r).await.unwrap();
    assert!(q.valid, "{q:?}");
    let refund = q.source_remaining_value.unwrap();
    let target = q.target_value.unwrap();
    assert_eq!(
        target,
        Money::parse("2119.92").unwrap(),
        "0.1210 x 8760 x 2"
    );
    assert!(refund > Money::ZERO && refund < target, "{q:?}");
    assert_eq!(q.payment_due, target - refund);
    assert!(peer.world().ledger.exchanges.is_empty());

    let from = peer.world().ledger.requests.len();
    let started = Instant::now();
    let done = m.exchange(&r).await.unwrap();
    let took = started.elapsed();
    let n_calls = peer.world().ledger.requests.len() - from;
    eprintln!(
        "azure figures: one exchange: {n_calls} calls, {took:?}: {:?}",
        &peer.world().ledger.requests[from..]
    );
    assert_eq!(calls(&peer, from, EXCHANGE), 1);
    assert_eq!(calls(&peer, from, CALCULATE), 1);
    assert_eq!(done.source_ids, vec![a_id.clone()]);
    assert_eq!(done.target_ids.len(), 1, "{done:?}");
    assert_eq!(done.quote.as_ref().unwrap().payment_due, target - refund);
    {
        let w = peer.world();
        assert_eq!(w.ledger.exchanges.len(), 1);
        assert_eq!(w.ledger.exchanges[0].returned, vec![(a.clone(), 2)]);
        assert_eq!(w.ledger.exchange_posts, 1);
        assert_eq!(w.refunds_consumed, Decimal::from(49_990), "not counted");
        assert!(w.ledger.returns.is_empty());
    }
    // The source is gone, the new reservation is held, and it is found by the key's tag.
    assert!(held(&m, &a).await.is_none());
    let inventory = m.inventory().await.unwrap();
    assert!(inventory.iter().any(|c| c.id == done.target_ids[0]
        && c.instance_type.as_deref() == Some("Standard_D4s_v5")
        && c.amount == CommitmentAmount::Instances(2)));
    let found = m.find_exchange(&r).await.unwrap().unwrap();
    assert_eq!(found.target_ids, done.target_ids);
    // Asked again (a resend the executor never makes): found, nothing sent.
    let again = m.exchange(&r).await.unwrap();
    assert_eq!(again.target_ids, done.target_ids);
    assert_eq!(peer.world().ledger.exchange_posts, 1);
    assert!(!m.deduplicates(
        &Operation::Exchange {
            source_ids: vec![a_id],
            source_value: Money::ZERO,
            true_up: Money::ZERO,
        },
        &r.target
    ));

    // Into a savings plan (the trade-in): 1 USD/h over 3 years.
    let (b_id, _) = held(&m, &b).await.unwrap();
    let r = exchange(
        "k-x-2",
        &[&b_id],
        savings_plan("1", PaymentOption::NoUpfront),
        30_000,
    );
    let done = m.exchange(&r).await.unwrap();
    assert_eq!(done.target_ids.len(), 1, "{done:?}");
    assert!(held(&m, &b).await.is_none());
    let plan = m
        .inventory()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == done.target_ids[0])
        .expect("the savings plan is held");
    assert_eq!(plan.instrument, Instrument::AzureSavingsPlan);
    assert_eq!(plan.hourly_cost, Money::from_units(1));
    let w = peer.world();
    assert_eq!(w.ledger.exchanges.len(), 2);
    assert_eq!(w.ledger.exchanges[1].savings_plan_orders.len(), 1);
    assert!(w
        .aliases
        .values()
        .any(|a| a.display_name == exchange_tag("k-x-2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_worth_less_than_the_refund_or_above_the_approval_is_refused_and_nothing_changes(
) {
    let peer = peer().await;
    let order = peer
        .world()
        .seed_reservation("Standard_D4s_v5", "westus", "P3Y", "Upfront", 4, 10);
    let m = market(&peer);
    let (id, _) = held(&m, &order).await.unwrap();
    // 1 x D2s_v5 for a year (USD 529.98) for a refund of about USD 8,100.
    let small = exchange(
        "k-x-small",
        &[&id],
        reservation(1, PaymentOption::AllUpfront),
        100_000,
    );
    let q = m.exchange_quote(&small).await.unwrap();
    assert!(!q.valid);
    let err = m.exchange(&small).await.unwrap_err();
    let ProviderError::ExchangeRefused { reason, quote, .. } = &err else {
        panic!("{err}")
    };
    assert!(reason.contains("ExchangeNewPurchaseTooSmall"), "{reason}");
    assert!(quote.source_remaining_value.unwrap() > quote.target_value.unwrap());
    assert!(!err.retryable() && !err.outcome_unknown());
    // Worth enough, but its true-up is above the approved USD 10.
    let dear = exchange("k-x-dear", &[&id], d4(12), 10);
    let err = m.exchange(&dear).await.unwrap_err();
    assert!(err.to_string().contains("exceeds the approved"), "{err}");
    {
        let w = peer.world();
        assert_eq!(w.ledger.exchange_posts, 0, "exchange never sent");
        assert!(w.ledger.exchanges.is_empty());
    }
    assert_eq!(held(&m, &order).await.unwrap().1, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_bought_from_2027_02_01_is_not_exchanged_into_savings_plan_territory() {
    let peer = peer().await;
    let (late, early) = {
        let mut w = peer.world();
        w.now = DateTime::parse_from_rfc3339("2027-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        (
            // Bought 2027-02-09 and 2027-01-20.
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 20),
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 40),
        )
    };
    let m = market(&peer);
    let (late_id, _) = held(&m, &late).await.unwrap();
    let (early_id, _) = held(&m, &early).await.unwrap();
    let from = peer.world().ledger.requests.len();
    for target in [savings_plan("1", PaymentOption::NoUpfront), d4(2)] {
        let r = exchange("k-x-late", &[&late_id], target, 100_000);
        let err = m.exchange(&r).await.unwrap_err();
        let ProviderError::ExchangeRefused { reason, .. } = &err else {
            panic!("{err}")
        };
        assert!(
            reason.contains("bought on or after 2027-02-01") && reason.contains(&late_id),
            "{reason}"
        );
        assert!(!m.exchange_quote(&r).await.unwrap().valid);
    }
    // Judged by commitd before anything was asked of Azure.
    assert_eq!(calls(&peer, from, CALCULATE), 0);
    assert_eq!(calls(&peer, from, EXCHANGE), 0);
    // The peer has its own copy of the rule: with its date moved earlier, Azure refuses what
    // commitd let through, in Azure's words, and nothing is exchanged.
    let year_ago = peer_now(&peer) - Duration::days(365);
    peer.world().savings_plan_exchange_cutoff = year_ago;
    let r = exchange(
        "k-x-early",
        &[&early_id],
        savings_plan("1", PaymentOption::NoUpfront),
        100_000,
    );
    let err = m.exchange(&r).await.unwrap_err();
    assert!(
        err.to_string().contains("ExchangeNotAllowedAfterCutoff"),
        "{err}"
    );
    assert_eq!(peer.world().ledger.exchange_posts, 0);
    // Moved back: the reservation bought before the date is exchanged.
    peer.world().savings_plan_exchange_cutoff =
        DateTime::parse_from_rfc3339("2027-02-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
    m.exchange(&r).await.unwrap();
    assert_eq!(peer.world().ledger.exchanges.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_is_sent_once_under_lost_answers_5xx_and_throttling() {
    let peer = peer().await;
    let (a, b, c) = {
        let mut w = peer.world();
        (
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 100),
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 100),
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 100),
        )
    };
    let m = market(&peer);
    let (a_id, _) = held(&m, &a).await.unwrap();
    let (b_id, _) = held(&m, &b).await.unwrap();
    let (c_id, _) = held(&m, &c).await.unwrap();

    // Every answer lost: Azure exchanged once, the client sent once, the outcome is unknown.
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::Exchange,
        times: 100,
    });
    let lost = exchange("k-x-lost", &[&a_id], d4(2), 5_000);
    let err = m.exchange(&lost).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    peer.world().faults.clear();
    assert_eq!(peer.world().ledger.exchange_posts, 1, "never resent");
    assert_eq!(peer.world().ledger.exchanges.len(), 1);
    // A new process reads it back: the reservation bought under the key's tag.
    let restarted = market(&peer);
    let found = restarted
        .find_exchange(&lost)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.target_ids.len(), 1);
    assert!(held(&restarted, &a).await.is_none());

    // A 5xx: unknown (it may have reached Azure), not resent; Azure shows nothing, so the
    // executor parks it for a person.
    peer.world().faults.push(Fault::Status {
        op: Op::Exchange,
        status: 503,
        retry_after: None,
        times: 5,
    });
    let failed = exchange("k-x-503", &[&b_id], d4(2), 5_000);
    let err = m.exchange(&failed).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    peer.world().faults.clear();
    assert_eq!(peer.world().ledger.exchange_posts, 2, "sent once");
    assert_eq!(peer.world().ledger.exchanges.len(), 1);
    assert!(m.find_exchange(&failed).await.unwrap().is_none());

    // Throttled: Azure refused before acting, so it may be sent again later.
    peer.world().faults.push(Fault::Status {
        op: Op::Exchange,
        status: 429,
        retry_after: Some(0),
        times: 1,
    });
    let throttled = exchange("k-x-429", &[&c_id], d4(2), 5_000);
    let err = m.exchange(&throttled).await.unwrap_err();
    assert!(err.retryable() && !err.outcome_unknown(), "{err}");
    assert_eq!(
        peer.world().ledger.exchange_posts,
        3,
        "not retried by the SDK"
    );
    m.exchange(&throttled).await.unwrap();
    let w = peer.world();
    assert_eq!(w.ledger.exchange_posts, 4);
    assert_eq!(w.ledger.exchanges.len(), 2);
}

fn give_back(key: &str, id: &str, instances: u32, at: DateTime<Utc>) -> ReturnRequest {
    ReturnRequest {
        idempotency_key: key.into(),
        commitment_id: id.into(),
        account: None,
        instances: Some(instances),
        at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_return_whose_answer_was_lost_is_recognised_from_the_revisions() {
    let peer = peer().await;
    let order = peer
        .world()
        .seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 3, 60);
    let m = market(&peer);
    let (id, _) = held(&m, &order).await.unwrap();
    let at = peer_now(&peer);
    let r = give_back("k-part-lost", &id, 1, at);
    assert!(m.find_return(&r).await.unwrap().is_none(), "nothing yet");
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::Return,
        times: 100,
    });
    let err = m.return_commitment(&r).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    peer.world().faults.clear();
    assert_eq!(peer.world().ledger.returns.len(), 1);
    // The reservation alone says only "2 held"; its revisions say 3 -> 2 since the call.
    let found = m
        .find_return(&r)
        .await
        .unwrap()
        .expect("found in the revisions");
    assert_eq!(found.state, "1 of 3 returned");
    assert!(found.request_id.contains("-peer"), "{found:?}");
    // What the revisions do not show is not claimed: another count, or a change before the call.
    assert!(m
        .find_return(&give_back("k-2", &id, 2, at))
        .await
        .unwrap()
        .is_none());
    let later = at + Duration::hours(1);
    assert!(m
        .find_return(&give_back("k-late", &id, 1, later))
        .await
        .unwrap()
        .is_none());
    assert_eq!(held(&m, &order).await.unwrap().1, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_parks_an_exchange_it_cannot_settle_and_reconciles_one_it_finds() {
    use commitd::audit::AuditLog;
    use commitd::execute::{Executor, Outcome};
    use commitd::policy::{Policy, PolicySet};
    use commitd::proposals::{NewProposal, PlannedAction, ProposalStore};
    use commitd::store::Store;
    use std::sync::Arc;

    let peer = peer().await;
    let now = peer_now(&peer);
    let (a, b) = {
        let mut w = peer.world();
        (
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 100),
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 2, 100),
        )
    };
    let m = Arc::new(market(&peer));
    let (a_id, _) = held(&m, &a).await.unwrap();
    let (b_id, _) = held(&m, &b).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("x.db").display()))
        .await
        .unwrap();
    let proposals = ProposalStore::new(store.clone());
    let audit = AuditLog::open(store.clone());
    let policies = Arc::new(commitd::execute::policies::PolicySource::fixed(PolicySet {
        policies: vec![Policy::parse(
            "name = \"azure\"\n[scope]\nprovider = \"Microsoft\"\n[allow]\ninstruments = [\"AzureReservation\"]\nterms = [1]\npayment_options = [\"AllUpfront\"]\n[limits]\nmax_new_hourly_commitment_per_day = \"10\"\n",
            std::path::Path::new("policies/azure.toml"),
        )
        .unwrap()],
    }));
    let approve = |index: usize, source: String| {
        let proposals = proposals.clone();
        async move {
            let action = PlannedAction {
                operation: Operation::Exchange {
                    source_ids: vec![source],
                    source_value: Money::parse("769.56").unwrap(),
                    true_up: Money::parse("1350.36").unwrap(),
                },
                spec: d4(2),
                hourly_cost: Money::parse("0.242").unwrap(),
                upfront: Money::from_units(5_000),
                expected_savings: Money::from_units(100),
                expected_utilization: Some(0.99),
                summary: "azure exchange".into(),
            };
            let p = proposals
                .create(
                    &NewProposal {
                        plan_id: "plan-azure-x".into(),
                        index,
                        proposer: "commitd".into(),
                        approvals_needed: 1,
                        policy: "azure".into(),
                        action,
                        max_age: chrono::Duration::hours(48),
                    },
                    now,
                )
                .await
                .unwrap();
            proposals.approve(&p.id, "alice", now, None).await.unwrap();
        }
    };
    let executor = Executor::new(proposals.clone(), audit.clone(), m.clone(), policies);

    // A 5xx on `exchange`: unknown; Azure shows no purchase under the key's tag, and the call
    // has no client token, so it is parked for a person and never sent again.
    approve(0, a_id).await;
    peer.world().faults.push(Fault::Status {
        op: Op::Exchange,
        status: 500,
        retry_after: None,
        times: 5,
    });
    let out = executor.execute_approved(now).await.unwrap();
    assert!(matches!(&out[0], Outcome::NeedsReview { .. }), "{out:?}");
    peer.world().faults.clear();
    assert!(executor.execute_approved(now).await.unwrap().is_empty());
    assert_eq!(peer.world().ledger.exchange_posts, 1);
    assert!(peer.world().ledger.exchanges.is_empty());

    // Every answer lost: Azure exchanged; the executor finds the new reservation by the tag.
    approve(1, b_id).await;
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::Exchange,
        times: 100,
    });
    let out = executor.execute_approved(now).await.unwrap();
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
    peer.world().faults.clear();
    {
        let w = peer.world();
        assert_eq!(w.ledger.exchange_posts, 2);
        assert_eq!(w.ledger.exchanges.len(), 1);
    }
    assert!(audit.verify().await.unwrap().is_ok());
}
