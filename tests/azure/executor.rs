//! The real executor on Azure: an approved proposal is bought through the SDK against the peer,
//! audited with Azure's request id, seen in the inventory; a crash after the purchase and an
//! answer lost on every attempt are both reconciled by the order's name, without a second order.

use crate::sdk::reservation;
use crate::{market, peer};
use chrono::{DateTime, Utc};
use commitd::audit::{AuditLog, EventBody, EventFilter, EventKind};
use commitd::domain::{Money, PaymentOption};
use commitd::execute::{Executor, Failpoint, Outcome, Step};
use commitd::markets::CommitmentMarket;
use commitd::policy::{Policy, PolicySet};
use commitd::proposals::{NewProposal, PlannedAction, ProposalStore};
use commitd::store::Store;
use commitd_testkit::azure_server::{Fault, Op};
use std::sync::Arc;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_buys_on_azure_and_never_twice_across_a_crash_and_lost_answers() {
    let peer = peer().await;
    let m: Arc<commitd::markets::azure::AzureMarket> = Arc::new(market(&peer));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let proposals = ProposalStore::new(store.clone());
    let audit = AuditLog::open(store.clone());
    let policies = || {
        Arc::new(commitd::execute::policies::PolicySource::fixed(PolicySet {
            policies: vec![Policy::parse(
                "name = \"azure\"\n[scope]\nprovider = \"Microsoft\"\n[allow]\ninstruments = [\"AzureReservation\"]\nterms = [1]\npayment_options = [\"NoUpfront\"]\n[limits]\nmax_new_hourly_commitment_per_day = \"10\"\n",
                std::path::Path::new("policies/azure.toml"),
            )
            .unwrap()],
        }))
    };
    let action = |n: u32| PlannedAction {
        operation: Default::default(),
        spec: reservation(n, PaymentOption::NoUpfront),
        // 0.0605 USD/h per instance, as the peer prices a Standard_D2s_v5 in westus.
        hourly_cost: Money::parse("0.0605").unwrap().times(i64::from(n)).unwrap(),
        upfront: Money::ZERO,
        expected_savings: Money::from_units(100),
        expected_utilization: Some(0.99),
        summary: "azure e2e".into(),
    };
    let approved = |index: usize, n: u32| {
        let proposals = proposals.clone();
        async move {
            let p = proposals
                .create(
                    &NewProposal {
                        plan_id: "plan-azure".into(),
                        index,
                        proposer: "commitd".into(),
                        approvals_needed: 1,
                        policy: "azure".into(),
                        action: action(n),
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
    let p = approved(0, 2).await;
    let executor = Executor::new(proposals.clone(), audit.clone(), m.clone(), policies());
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
    assert!(m
        .inventory()
        .await
        .unwrap()
        .iter()
        .any(|c| &c.id == commitment_id));
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
    assert!(
        e.provider_request_id.contains("-peer"),
        "{}",
        e.provider_request_id
    );
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 1);

    // 2. A crash after Azure committed, before the executor recorded it.
    approved(1, 1).await;
    let crashing = Executor::new(proposals.clone(), audit.clone(), m.clone(), policies())
        .with_failpoint(Failpoint {
            at: Some(Step::AfterPurchase),
            abort: false,
        });
    assert!(crashing.execute_approved(now()).await.is_err());
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 2);
    let restarted = Executor::new(proposals.clone(), audit.clone(), m.clone(), policies());
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
    assert_eq!(
        peer.world().ledger.reservation_purchases.len(),
        2,
        "no second order"
    );

    // 3. Every answer to the PUT lost: an unknown outcome, settled by the order's name.
    approved(2, 3).await;
    peer.world().faults.push(Fault::DropAnswer {
        op: Op::PurchaseReservation,
        times: 100,
    });
    let out = restarted.execute_approved(now()).await.unwrap();
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
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 3);
    assert_eq!(m.inventory().await.unwrap().len(), 3);
    assert!(audit.verify().await.unwrap().is_ok());
}
