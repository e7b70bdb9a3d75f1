//! Returning Azure reservations through the SDK against the peer: `calculateRefund` then
//! `return`, whole and in part, within the rolling USD 50,000 refund cap (refused over it,
//! nothing returned), the cap Azure reports counted by `refunds()`, and a lost answer to the
//! return settled by reading the reservation back: never returned twice.

use crate::{market, peer};
use chrono::Utc;
use commitd::domain::{CommitmentAmount, Instrument};
use commitd::markets::{CommitmentMarket, ProviderError, ReturnRequest};
use commitd_testkit::azure_server::{Fault, Op};
use rust_decimal::Decimal;

fn request(key: &str, commitment_id: &str, instances: Option<u32>) -> ReturnRequest {
    ReturnRequest {
        idempotency_key: key.into(),
        commitment_id: commitment_id.into(),
        account: None,
        instances,
        at: Utc::now(),
    }
}

/// The held reservation of `order`, as the market names it.
pub async fn held(m: &commitd::markets::azure::AzureMarket, order: &str) -> Option<(String, u32)> {
    m.inventory()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.instrument == Instrument::AzureReservation && c.id.starts_with(order))
        .map(|c| match c.amount {
            CommitmentAmount::Instances(n) => (c.id, n),
            other => panic!("{other:?}"),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_is_returned_in_part_then_whole_and_the_cap_is_counted() {
    let peer = peer().await;
    let order =
        peer.world()
            .seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Upfront", 3, 100);
    let m = market(&peer);
    assert!(m.returns_reservations());
    let inventory = m.inventory().await.unwrap();
    assert!(
        m.refunds(&inventory).await.unwrap().is_empty(),
        "nothing refunded yet"
    );
    let (id, n) = held(&m, &order).await.unwrap();
    assert_eq!(n, 3);

    // One of three: the reservation holds two afterwards.
    let part = m
        .return_commitment(&request("k-part", &id, Some(1)))
        .await
        .unwrap();
    assert_eq!(part.state, "1 of 3 returned");
    assert!(part.request_id.contains("-peer"), "{part:?}");
    assert_eq!(held(&m, &order).await.unwrap().1, 2);
    let (_, q, first_refund) = peer.world().ledger.returns[0].clone();
    assert_eq!(q, 1);
    assert!(first_refund > Decimal::ZERO);

    // The rest: the reservation is gone from the inventory and its return is found.
    let whole = request("k-whole", &id, None);
    let done = m.return_commitment(&whole).await.unwrap();
    assert_eq!(done.state, "returned");
    assert!(held(&m, &order).await.is_none());
    assert!(m.find_return(&whole).await.unwrap().is_some());
    assert_eq!(peer.world().ledger.returns.len(), 2);

    // What Azure counts against the cap is what the planner sees.
    let consumed = peer.world().refunds_consumed;
    let other = peer
        .world()
        .seed_reservation("Standard_D4s_v5", "eastus", "P1Y", "Monthly", 1, 10);
    let _ = other;
    let refunds = m.refunds(&m.inventory().await.unwrap()).await.unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].1.to_decimal(), consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_over_the_refund_cap_is_refused_and_nothing_is_returned() {
    let peer = peer().await;
    let order =
        peer.world()
            .seed_reservation("Standard_E4s_v5", "westeurope", "P1Y", "Upfront", 2, 30);
    peer.world().refunds_consumed = Decimal::from(49_990);
    let m = market(&peer);
    let (id, _) = held(&m, &order).await.unwrap();
    let err = m
        .return_commitment(&request("k-cap", &id, None))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("RefundLimitExceeded"), "{err}");
    assert!(peer.world().ledger.returns.is_empty());
    assert_eq!(held(&m, &order).await.unwrap().1, 2);
    // More than it holds, or a name that is not a reservation: refused before any call.
    let before = peer.world().ledger.requests.len();
    let err = m
        .return_commitment(&request("k-many", &id, Some(5)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds 2"), "{err}");
    let err = m
        .return_commitment(&request("k-bad", "not-a-reservation", None))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not name an Azure reservation"),
        "{err}"
    );
    // Only the reservation read of the first refusal reached the peer.
    assert!(
        peer.world().ledger.requests[before..]
            .iter()
            .all(|r| r.starts_with("GET ")),
        "{:?}",
        &peer.world().ledger.requests[before..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_return_is_unknown_then_found_and_never_sent_again() {
    let peer = peer().await;
    let order = peer
        .world()
        .seed_reservation("Standard_D2s_v5", "eastus", "P1Y", "Monthly", 2, 60);
    let m = market(&peer);
    let (id, _) = held(&m, &order).await.unwrap();
    assert!(
        !m.deduplicates(
            &commitd::markets::Operation::Return {
                commitment_id: id.clone(),
                hourly_cost_removed: commitd::domain::Money::ZERO,
                instances: None,
            },
            &crate::sdk::reservation(2, commitd::domain::PaymentOption::NoUpfront)
        ),
        "a return has no client token: never resent"
    );
    let r = request("k-lost", &id, None);
    assert!(m.find_return(&r).await.unwrap().is_none(), "not yet");
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::Return,
        times: 100,
    });
    let err = m.return_commitment(&r).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    peer.world().faults.clear();
    // Azure acted (once, whatever the retries did): the reservation reads back Cancelled.
    assert_eq!(peer.world().ledger.returns.len(), 1);
    let found = m
        .find_return(&r)
        .await
        .unwrap()
        .expect("found by its state");
    assert_eq!(found.commitment_id, id);
    assert!(held(&m, &order).await.is_none());
}
