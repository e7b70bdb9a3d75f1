use super::*;
use crate::domain::purchase::{Operation, PurchaseSpec};
use crate::domain::{CommitmentAmount, Instrument, PaymentOption, Provider, Term};

pub(crate) async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (dir, Store::connect(&url).await.unwrap())
}

pub(crate) fn action(hourly: &str) -> PlannedAction {
    PlannedAction {
        operation: Default::default(),
        spec: PurchaseSpec {
            provider: Provider::Aws,
            account: None,
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            region: None,
            family: None,
            instance_type: None,
            os: None,
            tenancy: None,
            amount: CommitmentAmount::HourlySpend(Money::parse(hourly).unwrap()),
        },
        hourly_cost: Money::parse(hourly).unwrap(),
        upfront: Money::ZERO,
        expected_savings: Money::from_units(1_000),
        expected_utilization: Some(0.99),
        summary: "test".into(),
    }
}

fn new(plan: &str, index: usize, approvers: u8) -> NewProposal {
    NewProposal {
        plan_id: plan.into(),
        index,
        proposer: "commitd".into(),
        approvals_needed: approvers,
        policy: "aws".into(),
        action: action("2.5"),
        max_age: Duration::hours(24),
    }
}

fn t(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap() + Duration::hours(h)
}

#[tokio::test]
async fn one_approval_moves_a_small_proposal_to_approved() {
    let (_d, store) = sqlite().await;
    let s = ProposalStore::new(store);
    let p = s.create(&new("plan-1", 0, 1), t(0)).await.unwrap();
    assert_eq!(p.state, ProposalState::Proposed);
    assert_eq!(p.action, action("2.5"));
    let a = s.approve(&p.id, "alice", t(1), Some("ok")).await.unwrap();
    assert!(a.complete);
    assert_eq!(a.proposal.state, ProposalState::Approved);
    assert_eq!(a.proposal.decisions[0].actor, "alice");
    // Decided: a second approval, a rejection and a late approval are refused.
    let e = s.approve(&p.id, "bob", t(2), None).await.unwrap_err();
    assert!(
        matches!(
            e,
            ProposalError::NotOpen {
                state: ProposalState::Approved,
                ..
            }
        ),
        "{e}"
    );
    assert!(s.reject(&p.id, "bob", t(2), "no").await.is_err());
}

#[tokio::test]
async fn large_proposals_need_two_distinct_approvers_and_never_the_proposer() {
    let (_d, store) = sqlite().await;
    let s = ProposalStore::new(store);
    let p = s.create(&new("plan-1", 0, 2), t(0)).await.unwrap();
    let e = s.approve(&p.id, "commitd", t(1), None).await.unwrap_err();
    assert!(matches!(e, ProposalError::SelfApproval { .. }), "{e}");
    let a = s.approve(&p.id, "alice", t(1), None).await.unwrap();
    assert!(!a.complete);
    assert_eq!(a.proposal.state, ProposalState::Proposed);
    let e = s.approve(&p.id, "alice", t(1), None).await.unwrap_err();
    assert!(matches!(e, ProposalError::AlreadyDecided { .. }), "{e}");
    let a = s.approve(&p.id, "bob", t(2), None).await.unwrap();
    assert!(a.complete);
    assert_eq!(a.proposal.state, ProposalState::Approved);
    assert_eq!(a.proposal.approvals(), 2);
}

#[tokio::test]
async fn stale_proposals_are_refused_superseded_or_aged() {
    let (_d, store) = sqlite().await;
    let s = ProposalStore::new(store);
    let old = s.create(&new("plan-1", 0, 1), t(0)).await.unwrap();
    let aged = s.create(&new("plan-2", 0, 1), t(0)).await.unwrap();
    // A newer plan supersedes plan-1's proposal (not plan-2's).
    let gone = s.supersede("plan-2", t(1)).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].id, old.id);
    assert!(gone[0].outcome.as_deref().unwrap().contains("plan-2"));
    let e = s.approve(&old.id, "alice", t(1), None).await.unwrap_err();
    assert!(
        matches!(
            e,
            ProposalError::NotOpen {
                state: ProposalState::Expired,
                ..
            }
        ),
        "{e}"
    );
    // Past its age (24 h): refused and expired on the spot.
    let e = s.approve(&aged.id, "alice", t(25), None).await.unwrap_err();
    assert!(matches!(e, ProposalError::Expired { .. }), "{e}");
    assert_eq!(
        s.get(&aged.id).await.unwrap().unwrap().state,
        ProposalState::Expired
    );
    // The sweep finds the rest.
    let fresh = s.create(&new("plan-3", 0, 1), t(0)).await.unwrap();
    assert!(s.expire_aged(t(23)).await.unwrap().is_empty());
    let swept = s.expire_aged(t(24)).await.unwrap();
    assert_eq!(
        swept.iter().map(|p| &p.id).collect::<Vec<_>>(),
        vec![&fresh.id]
    );
    let e = s
        .reject(&fresh.id, "alice", t(30), "late")
        .await
        .unwrap_err();
    assert!(matches!(e, ProposalError::NotOpen { .. }), "{e}");
}

#[tokio::test]
async fn rejection_needs_a_reason_and_is_final() {
    let (_d, store) = sqlite().await;
    let s = ProposalStore::new(store);
    let p = s.create(&new("plan-1", 0, 1), t(0)).await.unwrap();
    assert!(matches!(
        s.reject(&p.id, "alice", t(1), " ").await,
        Err(ProposalError::NoReason(_))
    ));
    let r = s.reject(&p.id, "alice", t(1), "too early").await.unwrap();
    assert_eq!(r.state, ProposalState::Rejected);
    assert!(r.outcome.unwrap().contains("too early"));
    assert!(s.approve(&p.id, "bob", t(2), None).await.is_err());
    assert!(matches!(
        s.approve("p-nope", "bob", t(2), None).await,
        Err(ProposalError::NotFound(_))
    ));
}

#[tokio::test]
async fn execution_states_are_compare_and_set_and_count_toward_limits() {
    let (_d, store) = sqlite().await;
    let s = ProposalStore::new(store);
    let p = s.create(&new("plan-1", 0, 1), t(0)).await.unwrap();
    let ev = |p: &Proposal| {
        crate::audit::NewEvent::new(
            t(1),
            "commitd",
            &p.id,
            crate::audit::ExecutionRequested {
                proposal_id: p.id.clone(),
                idempotency_key: "k".into(),
                attempt: Some(p.attempts),
            },
        )
    };
    let begin = |from| s.start_call(&p.id, None, "k", from, t(1), ev);
    // Not approved yet: cannot start.
    assert!(begin(ProposalState::Approved).await.unwrap().is_none());
    s.approve(&p.id, "alice", t(1), None).await.unwrap();
    let started = begin(ProposalState::Approved).await.unwrap().unwrap();
    assert_eq!(started.attempts, 1);
    assert!(started.call_started_at.is_some());
    assert!(begin(ProposalState::Approved).await.unwrap().is_none());
    // A call in flight: no second call may start from `executing` either.
    assert!(begin(ProposalState::Executing).await.unwrap().is_none());
    let spend = s.recent_spend(t(2)).await.unwrap();
    assert_eq!(spend.hourly_commitment_today, Money::parse("2.5").unwrap());
    assert_eq!(
        spend.hourly_commitment_30_days,
        Money::parse("2.5").unwrap()
    );
    let done_event = || {
        crate::audit::NewEvent::new(
            t(2),
            "commitd",
            &p.id,
            crate::audit::Executed {
                proposal_id: p.id.clone(),
                idempotency_key: "k".into(),
                provider_request_id: "r-1".into(),
                commitment_id: "c-1".into(),
            },
        )
    };
    assert!(s
        .finish_execution(&p.id, "c-1", "r-1", t(2), done_event())
        .await
        .unwrap());
    assert!(!s
        .finish_execution(&p.id, "c-1", "r-1", t(2), done_event())
        .await
        .unwrap());
    let done = s.get(&p.id).await.unwrap().unwrap();
    assert_eq!(done.state, ProposalState::Executed);
    assert_eq!(done.idempotency_key.as_deref(), Some("k"));
    // Another UTC day: out of today's window, still in the 30 days.
    let spend = s.recent_spend(t(24)).await.unwrap();
    assert_eq!(spend.hourly_commitment_today, Money::ZERO);
    assert_eq!(
        spend.hourly_commitment_30_days,
        Money::parse("2.5").unwrap()
    );
    assert_eq!(
        s.recent_spend(t(24 * 31)).await.unwrap(),
        RecentSpend::default()
    );
}

/// Twenty approvers click at once on a two-approver proposal: exactly two decisions stand, the
/// log holds exactly their two `approved` events (each committed with its decision), and every
/// other click is refused with nothing recorded.
#[tokio::test]
async fn concurrent_approvals_record_each_decision_with_its_event_and_no_more() {
    let (_d, store) = sqlite().await;
    let s = ProposalStore::new(store.clone());
    let p = s.create(&new("plan-1", 0, 2), t(0)).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let id = p.id.clone();
        handles.push(tokio::spawn(async move {
            s.approve(&id, &format!("approver-{i}"), t(1), None).await
        }));
    }
    let mut ok = 0;
    for h in handles {
        if h.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 2);
    let got = s.get(&p.id).await.unwrap().unwrap();
    assert_eq!(got.state, ProposalState::Approved);
    assert_eq!(got.approvals(), 2);
    let log = crate::audit::AuditLog::open(store);
    let events = log.about(&p.id).await.unwrap();
    let approved: Vec<_> = events
        .iter()
        .filter(|e| e.body.kind() == crate::audit::EventKind::Approved)
        .collect();
    assert_eq!(approved.len(), 2);
    let digest = got.action.digest();
    assert!(approved.iter().all(|e| matches!(&e.body,
        crate::audit::EventBody::Approved(a) if a.action_digest.as_deref() == Some(digest.as_str()))));
    assert!(log.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn the_digest_binds_what_is_bought_and_its_price_not_the_explanation() {
    let a = action("2.5");
    let mut b = a.clone();
    b.summary = "another explanation".into();
    b.expected_savings = Money::from_units(5);
    assert_eq!(a.digest(), b.digest());
    let mut c = a.clone();
    c.hourly_cost = Money::parse("2.6").unwrap();
    assert_ne!(a.digest(), c.digest());
    let mut d = a.clone();
    d.spec.region = Some("eu-west-1".into());
    assert_ne!(a.digest(), d.digest());
}

/// What a return gives up counts against the give-up caps from the moment its call is
/// recorded, like a purchase's commitment does.
#[tokio::test]
async fn a_return_in_flight_counts_as_given_up() {
    let (_d, store) = sqlite().await;
    let s = ProposalStore::new(store);
    let mut a = action("0");
    a.operation = Operation::Return {
        commitment_id: "sp-1".into(),
        hourly_cost_removed: Money::parse("1.25").unwrap(),
        instances: None,
    };
    let mut n = new("plan-1", 0, 1);
    n.action = a;
    let p = s.create(&n, t(0)).await.unwrap();
    s.approve(&p.id, "alice", t(1), None).await.unwrap();
    let before = s.recent_spend(t(1)).await.unwrap();
    assert_eq!(before.hourly_given_up_today, Money::ZERO);
    s.start_call(&p.id, None, "k", ProposalState::Approved, t(1), |q| {
        crate::audit::NewEvent::new(
            t(1),
            "commitd",
            &q.id,
            crate::audit::ExecutionRequested {
                proposal_id: q.id.clone(),
                idempotency_key: "k".into(),
                attempt: Some(1),
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    let after = s.recent_spend(t(2)).await.unwrap();
    assert_eq!(after.hourly_given_up_today, Money::parse("1.25").unwrap());
    assert_eq!(after.hourly_given_up_30_days, Money::parse("1.25").unwrap());
    assert_eq!(after.hourly_commitment_today, Money::ZERO);
    // Judging the same proposal again leaves it out.
    let except = s.recent_spend_except(t(2), Some(&p.id)).await.unwrap();
    assert_eq!(except.hourly_given_up_today, Money::ZERO);
}
