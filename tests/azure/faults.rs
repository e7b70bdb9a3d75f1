//! Never buy twice on Azure: purchases under injected faults, judged by the peer's own ledger.
//!
//! The order id (alias name) is derived from the idempotency key, so the PUT is idempotent:
//! azure_core's retry resends it after a lost answer, a later attempt (after a crash) looks the
//! name up first, and the executor's reconciliation finds it by the same name.

use crate::sdk::{request, reservation, savings_plan};
use crate::{market, peer};
use commitd::domain::PaymentOption;
use commitd::markets::azure::market::order_id_for_key;
use commitd::markets::{CommitmentMarket, Found, Operation, ProviderError};
use commitd_testkit::azure_server::{Fault, Op};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_absorbed_by_the_idempotent_put() {
    let peer = peer().await;
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::PurchaseReservation,
        times: 1,
    });
    let m = market(&peer);
    let bought = m
        .purchase(&request(
            "commitd-f-1",
            reservation(3, PaymentOption::NoUpfront),
        ))
        .await
        .unwrap();
    let w = peer.world();
    // Two PUTs reached the peer (the first answer was lost), one order was bought.
    assert_eq!(w.ledger.puts, 2);
    assert_eq!(
        w.ledger.reservation_purchases,
        vec![order_id_for_key("commitd-f-1")]
    );
    assert!(bought
        .commitment
        .id
        .starts_with(&order_id_for_key("commitd-f-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_lost_then_a_crash_the_restart_finds_the_order_and_buys_nothing() {
    let peer = peer().await;
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::PurchaseReservation,
        times: 100,
    });
    let r = request("commitd-f-2", reservation(1, PaymentOption::AllUpfront));
    let e = market(&peer).purchase(&r).await.unwrap_err();
    assert!(e.outcome_unknown(), "{e}");
    assert!(e.to_string().contains("ReservationOrder_Purchase"), "{e}");
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 1);
    // The process dies here. A new one (new clients, new token) reconciles: the executor asks
    // find_purchase before anything else, and finds the order by the key's name.
    peer.world().faults.clear();
    let restarted = market(&peer);
    let found = restarted
        .find_purchase(&r, chrono::Utc::now())
        .await
        .unwrap();
    let Found::Yes(p) = found else {
        panic!("the order made before the crash is found: {found:?}")
    };
    assert!(p
        .commitment
        .id
        .starts_with(&order_id_for_key("commitd-f-2")));
    // And a resend (what the executor may do, since the PUT is deduplicated) buys nothing.
    assert!(restarted.deduplicates(&Operation::Purchase, &r.spec));
    let again = restarted.purchase(&r).await.unwrap();
    assert_eq!(again.commitment.id, p.commitment.id);
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_poll_still_reports_the_accepted_purchase() {
    let peer = peer().await;
    peer.world().faults.push(Fault::Status {
        op: Op::PollReservation,
        status: 500,
        retry_after: None,
        times: 100,
    });
    let bought = market(&peer)
        .purchase(&request(
            "commitd-f-3",
            reservation(2, PaymentOption::NoUpfront),
        ))
        .await
        .unwrap();
    assert!(bought
        .commitment
        .id
        .starts_with(&order_id_for_key("commitd-f-3")));
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_that_never_reached_the_order_is_unknown_then_found_absent() {
    let peer = peer().await;
    peer.world().faults.push(Fault::Status {
        op: Op::PurchaseReservation,
        status: 503,
        retry_after: None,
        times: 100,
    });
    let r = request("commitd-f-4", reservation(1, PaymentOption::NoUpfront));
    let m = market(&peer);
    let e = m.purchase(&r).await.unwrap_err();
    assert!(matches!(e, ProviderError::OutcomeUnknown { .. }), "{e}");
    assert_eq!(
        m.find_purchase(&r, chrono::Utc::now()).await.unwrap(),
        Found::No
    );
    assert!(peer.world().ledger.reservation_purchases.is_empty());
    // Resent once Azure is back: bought once.
    peer.world().faults.clear();
    m.purchase(&r).await.unwrap();
    m.purchase(&r).await.unwrap();
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_after_the_retry_after_it_asks_for() {
    let peer = peer().await;
    peer.world().faults.push(Fault::Status {
        op: Op::CalculatePrice,
        status: 429,
        retry_after: Some(1),
        times: 1,
    });
    let started = Instant::now();
    market(&peer)
        .quote(&reservation(1, PaymentOption::NoUpfront))
        .await
        .unwrap();
    assert!(
        started.elapsed().as_millis() >= 1000,
        "{:?}",
        started.elapsed()
    );
    // Throttling on a purchase is not an unknown outcome: Azure refuses before acting.
    peer.world().faults.push(Fault::Status {
        op: Op::PurchaseReservation,
        status: 429,
        retry_after: Some(0),
        times: 100,
    });
    let e = market(&peer)
        .purchase(&request(
            "commitd-f-5",
            reservation(1, PaymentOption::NoUpfront),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable { .. }), "{e}");
    assert!(e.retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savings_plan_alias_lost_every_time_is_found_by_its_name() {
    let peer = peer().await;
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::CreateAlias,
        times: 100,
    });
    let r = request(
        "commitd-f-6",
        savings_plan("0.75", PaymentOption::NoUpfront),
    );
    let e = market(&peer).purchase(&r).await.unwrap_err();
    assert!(e.outcome_unknown(), "{e}");
    peer.world().faults.clear();
    let restarted = market(&peer);
    let Found::Yes(p) = restarted
        .find_purchase(&r, chrono::Utc::now())
        .await
        .unwrap()
    else {
        panic!("the alias is found by the key's name")
    };
    assert_eq!(
        p.commitment.hourly_cost,
        commitd::domain::Money::parse("0.75").unwrap()
    );
    restarted.purchase(&r).await.unwrap();
    let w = peer.world();
    assert_eq!(
        w.ledger.savings_plan_purchases,
        vec![order_id_for_key("commitd-f-6")]
    );
}
