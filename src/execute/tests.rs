use super::*;
use crate::audit::{EventFilter, EventKind};
use crate::markets::sim::SimMarket;
use crate::policy::Policy;
use crate::policy::PolicySet;
use crate::proposals::tests::{action, sqlite};
use crate::proposals::NewProposal;
use crate::store::Store;
use chrono::{Duration, TimeZone};
use std::path::Path;

const POLICY: &str = r#"
name = "aws"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan"]
terms = [1]
payment_options = ["NoUpfront", "AllUpfront"]
[limits]
max_new_hourly_commitment_per_day = "4"
min_expected_utilization = 0.9
"#;

fn policies() -> PolicySet {
    PolicySet {
        policies: vec![Policy::parse(POLICY, Path::new("policies/aws.toml")).unwrap()],
    }
}

fn t(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 10, 6, 0, 0).unwrap() + Duration::hours(h)
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    proposals: ProposalStore,
    audit: AuditLog,
    market: Arc<SimMarket>,
}

async fn world() -> World {
    let (dir, store) = sqlite().await;
    World {
        proposals: ProposalStore::new(store.clone()),
        audit: AuditLog::open(store.clone()),
        market: Arc::new(SimMarket::new(
            store.clone(),
            crate::markets::sim::tests::rate_card(),
        )),
        store,
        _dir: dir,
    }
}

impl World {
    fn executor(&self, failpoint: Option<Step>) -> Executor {
        Executor::new(
            self.proposals.clone(),
            self.audit.clone(),
            self.market.clone(),
            Arc::new(PolicySource::fixed(policies())),
        )
        .with_failpoint(Failpoint {
            at: failpoint,
            abort: false,
        })
    }

    /// A proposal of `hourly` USD/h needing `approvers`, as the daemon records it.
    async fn proposed(&self, hourly: &str, index: usize, approvers: u8) -> Proposal {
        self.proposals
            .create(
                &NewProposal {
                    plan_id: "plan-1".into(),
                    index,
                    proposer: "commitd".into(),
                    approvals_needed: approvers,
                    policy: "aws".into(),
                    action: action(hourly),
                    max_age: Duration::hours(48),
                },
                t(0),
            )
            .await
            .unwrap()
    }

    async fn approved(&self, hourly: &str, index: usize) -> Proposal {
        let p = self.proposed(hourly, index, 1).await;
        self.proposals
            .approve(&p.id, "alice", t(0), None)
            .await
            .unwrap()
            .proposal
    }

    async fn count(&self, kind: EventKind) -> usize {
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
            .len()
    }
}

#[tokio::test]
async fn executes_once_and_records_every_step() {
    let w = world().await;
    let p = w.approved("2.5", 0).await;
    let out = w.executor(None).execute_approved(t(1)).await.unwrap();
    assert_eq!(out.len(), 1);
    let Outcome::Executed {
        commitment_id,
        reconciled,
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(!reconciled);
    let done = w.proposals.get(&p.id).await.unwrap().unwrap();
    assert_eq!(done.state, ProposalState::Executed);
    assert_eq!(done.commitment_id.as_ref(), Some(commitment_id));
    assert_eq!(
        done.idempotency_key.as_deref(),
        Some(format!("commitd-{}", p.id).as_str())
    );
    assert_eq!(w.market.inventory().await.unwrap().len(), 1);
    assert_eq!(w.count(EventKind::ExecutionRequested).await, 1);
    assert_eq!(w.count(EventKind::Executed).await, 1);
    assert!(w.audit.verify().await.unwrap().is_ok());
    // Nothing left to do: a second run buys nothing.
    assert!(w
        .executor(None)
        .execute_approved(t(2))
        .await
        .unwrap()
        .is_empty());
    assert!(w.executor(None).reconcile(t(2)).await.unwrap().is_empty());
    assert_eq!(w.market.inventory().await.unwrap().len(), 1);
}

/// How many calls a crash at `step` leads to: one crashed before reaching the provider is
/// looked up after the restart (no trace), then made again and recorded again.
fn requests_after_crash(step: Step) -> usize {
    match step {
        Step::AfterBeginExecution | Step::AfterExecutionRequested => 2,
        Step::AfterPurchase | Step::AfterExecutedEvent => 1,
    }
}

/// Restarts after a crash at `step`: a new executor reconciles. A crash after the outcome was
/// recorded left nothing to do; any other leaves one execution to complete.
async fn restart(exec: &Executor, step: Step) -> Vec<Outcome> {
    let out = exec.reconcile(t(2)).await.unwrap();
    if step == Step::AfterExecutedEvent {
        assert!(out.is_empty(), "{out:?}");
    } else {
        assert!(
            matches!(&out[0], Outcome::Executed { .. }),
            "{step:?}: {out:?}"
        );
    }
    out
}

#[tokio::test]
async fn a_crash_between_any_two_steps_never_buys_twice_and_leaves_a_complete_log() {
    for step in Step::ALL {
        let w = world().await;
        let p = w.approved("2.5", 0).await;
        let e = w
            .executor(Some(step))
            .execute_approved(t(1))
            .await
            .unwrap_err();
        assert!(matches!(e, ExecuteError::Crashed(s) if s == step), "{e}");
        let mid = w.proposals.get(&p.id).await.unwrap().unwrap();
        let expected_mid = if step == Step::AfterExecutedEvent {
            ProposalState::Executed
        } else {
            ProposalState::Executing
        };
        assert_eq!(mid.state, expected_mid, "{step:?}");
        let bought_before_restart = w.market.inventory().await.unwrap().len();
        // Restart: a new executor reconciles first, then runs the normal pass.
        let exec = w.executor(None);
        let out = restart(&exec, step).await;
        if let Some(Outcome::Executed { reconciled, .. }) = out.first() {
            assert_eq!(*reconciled, bought_before_restart == 1, "{step:?}");
        }
        assert!(exec.execute_approved(t(2)).await.unwrap().is_empty());
        assert_eq!(w.market.inventory().await.unwrap().len(), 1, "{step:?}");
        assert_eq!(
            w.proposals.get(&p.id).await.unwrap().unwrap().state,
            ProposalState::Executed
        );
        assert_eq!(
            w.count(EventKind::ExecutionRequested).await,
            requests_after_crash(step),
            "{step:?}"
        );
        assert_eq!(w.count(EventKind::Executed).await, 1, "{step:?}");
        assert!(w.audit.verify().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn limits_are_enforced_at_execution_time_from_what_was_committed() {
    let w = world().await;
    // Each is within the daily limit of 4 USD/h; together they are not.
    let first = w.approved("2.5", 0).await;
    let second = w.approved("2.5", 1).await;
    let out = w.executor(None).execute_approved(t(1)).await.unwrap();
    assert_eq!(out.len(), 2);
    assert!(matches!(&out[0], Outcome::Executed { proposal_id, .. } if *proposal_id == first.id));
    let Outcome::Blocked { rule, reason, .. } = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(*rule, crate::policy::Rule::MaxNewHourlyCommitmentPerDay);
    assert!(reason.contains("2.5 already + 2.5"), "{reason}");
    let blocked = w.proposals.get(&second.id).await.unwrap().unwrap();
    assert_eq!(blocked.state, ProposalState::Failed);
    assert_eq!(w.count(EventKind::PolicyBlocked).await, 1);
    assert_eq!(w.market.inventory().await.unwrap().len(), 1);
}

#[tokio::test]
async fn provider_outages_are_retried_with_the_same_key() {
    let (dir, store) = sqlite().await;
    let w = World {
        proposals: ProposalStore::new(store.clone()),
        audit: AuditLog::open(store.clone()),
        market: Arc::new(
            SimMarket::new(store.clone(), crate::markets::sim::tests::rate_card()).with_outages(1),
        ),
        store,
        _dir: dir,
    };
    let p = w.approved("1", 0).await;
    let out = w.executor(None).execute_approved(t(1)).await.unwrap();
    assert!(
        matches!(
            &out[0],
            Outcome::Failed {
                retryable: true,
                ..
            }
        ),
        "{out:?}"
    );
    let mid = w.proposals.get(&p.id).await.unwrap().unwrap();
    assert_eq!(mid.state, ProposalState::Executing);
    let out = w.executor(None).reconcile(t(2)).await.unwrap();
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
    assert_eq!(w.count(EventKind::Failed).await, 1);
    // Each call is recorded before it is made: the refused one and the retry.
    assert_eq!(w.count(EventKind::ExecutionRequested).await, 2);
    let _ = &w.store;
}

/// Returns and exchanges on the simulated market: a crash between any two steps never does
/// them twice, the restart completes the log, and a refused exchange changes nothing.
mod returns_and_exchanges {
    use super::*;
    use crate::domain::{CommitmentAmount, Instrument, Money, PaymentOption};
    use crate::markets::{Operation, PurchaseRequest};
    use crate::proposals::PlannedAction;

    const BOTH: &str = r#"
name = "aws"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan", "ConvertibleReservedInstance"]
terms = [1]
payment_options = ["NoUpfront", "PartialUpfront"]
[limits]
max_new_hourly_commitment_per_day = "4"
max_upfront_per_day = "1000"
min_expected_utilization = 0.9
"#;

    fn executor(w: &World, at: Option<Step>) -> Executor {
        Executor::new(
            w.proposals.clone(),
            w.audit.clone(),
            w.market.clone(),
            Arc::new(PolicySource::fixed(PolicySet {
                policies: vec![Policy::parse(BOTH, Path::new("policies/aws.toml")).unwrap()],
            })),
        )
        .with_failpoint(Failpoint { at, abort: false })
    }

    /// Holds a 2.5 USD/h savings plan bought a day before t(0) and 4 convertible m6i.large
    /// bought 30 days before; returns their ids.
    async fn holdings(w: &World) -> (String, String) {
        let mut sp = crate::markets::sim::tests::sp_request("2.5");
        sp.start = Hour::from_datetime(t(-24));
        let sp = w.market.purchase(&sp).await.unwrap().commitment.id;
        let mut ri = crate::markets::sim::tests::sp_request("1");
        ri.idempotency_key = "k-ri".into();
        ri.spec.instrument = Instrument::ConvertibleReservedInstance;
        ri.spec.payment = PaymentOption::PartialUpfront;
        ri.spec.region = Some("eu-west-1".into());
        ri.spec.instance_type = Some("m6i.large".into());
        ri.spec.amount = CommitmentAmount::Instances(4);
        ri.start = Hour::from_datetime(t(-24 * 30));
        let ri: PurchaseRequest = ri;
        let ri = w.market.purchase(&ri).await.unwrap().commitment.id;
        (sp, ri)
    }

    async fn approve(w: &World, a: PlannedAction) -> Proposal {
        let p = w
            .proposals
            .create(
                &NewProposal {
                    plan_id: "plan-1".into(),
                    index: 0,
                    proposer: "commitd".into(),
                    approvals_needed: 1,
                    policy: "aws".into(),
                    action: a,
                    max_age: Duration::hours(48),
                },
                t(0),
            )
            .await
            .unwrap();
        w.proposals
            .approve(&p.id, "alice", t(0), None)
            .await
            .unwrap()
            .proposal
    }

    fn give_back(sp: &str) -> PlannedAction {
        let mut a = action("2.5");
        a.operation = Operation::Return {
            commitment_id: sp.into(),
            hourly_cost_removed: Money::parse("2.5").unwrap(),
            instances: None,
        };
        a.hourly_cost = Money::ZERO;
        a.expected_utilization = None;
        a
    }

    fn swap(ri: &str, max_true_up: &str) -> PlannedAction {
        let mut a = action("0.42");
        a.operation = Operation::Exchange {
            source_ids: vec![ri.into()],
            source_value: Money::ZERO,
            true_up: Money::parse(max_true_up).unwrap(),
        };
        a.spec.instrument = Instrument::ConvertibleReservedInstance;
        a.spec.payment = PaymentOption::PartialUpfront;
        a.spec.region = Some("eu-west-1".into());
        a.spec.instance_type = Some("m6i.xlarge".into());
        a.spec.amount = CommitmentAmount::Instances(3);
        a.upfront = Money::parse(max_true_up).unwrap();
        a
    }

    #[tokio::test]
    async fn a_crash_between_any_two_steps_returns_and_exchanges_exactly_once() {
        for step in Step::ALL {
            for exchange in [false, true] {
                let w = world().await;
                let (sp, ri) = holdings(&w).await;
                let p = approve(
                    &w,
                    if exchange {
                        swap(&ri, "1000")
                    } else {
                        give_back(&sp)
                    },
                )
                .await;
                let e = executor(&w, Some(step))
                    .execute_approved(t(1))
                    .await
                    .unwrap_err();
                assert!(matches!(e, ExecuteError::Crashed(s) if s == step), "{e}");
                let exec = executor(&w, None);
                restart(&exec, step).await;
                assert!(exec.execute_approved(t(2)).await.unwrap().is_empty());
                let held: Vec<_> = w
                    .market
                    .inventory()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.id, c.amount))
                    .collect();
                // Exchange: the plan and the target; return: the RI only.
                let expected = if exchange { 2 } else { 1 };
                assert_eq!(held.len(), expected, "{step:?} {exchange}: {held:?}");
                if exchange {
                    assert!(held.iter().any(|(id, _)| *id == sp));
                    assert!(held
                        .iter()
                        .any(|(_, n)| *n == CommitmentAmount::Instances(3)));
                } else {
                    assert!(held.iter().all(|(id, _)| *id != sp), "{held:?}");
                }
                let done = w.proposals.get(&p.id).await.unwrap().unwrap();
                assert_eq!(done.state, ProposalState::Executed, "{step:?} {exchange}");
                assert_eq!(
                    w.count(EventKind::ExecutionRequested).await,
                    requests_after_crash(step)
                );
                assert_eq!(w.count(EventKind::Executed).await, 1);
                assert!(w.audit.verify().await.unwrap().is_ok());
            }
        }
    }

    /// Lists 2 of 5 Standard m6i.large RIs bought 40 days before t(0).
    async fn sale(w: &World) -> (String, PlannedAction) {
        let mut ri = crate::markets::sim::tests::sp_request("1");
        ri.idempotency_key = "k-std".into();
        ri.spec.instrument = Instrument::StandardReservedInstance;
        ri.spec.payment = PaymentOption::PartialUpfront;
        ri.spec.region = Some("eu-west-1".into());
        ri.spec.instance_type = Some("m6i.large".into());
        ri.spec.amount = CommitmentAmount::Instances(5);
        ri.start = Hour::from_datetime(t(-24 * 40));
        let ri = w.market.purchase(&ri).await.unwrap().commitment;
        let mut a = action("0");
        a.operation = Operation::Sell {
            commitment_id: ri.id.clone(),
            instances: 2,
            hourly_cost_removed: Money::from_micros(ri.hourly_cost.micros() * 2 / 5),
            price: Money::from_units(300),
        };
        a.spec = crate::domain::purchase::PurchaseSpec::of_held(&ri);
        a.spec.amount = CommitmentAmount::Instances(2);
        a.hourly_cost = Money::ZERO;
        a.upfront = Money::ZERO;
        a.expected_utilization = None;
        // Stored as the operations' nouns are (and read back by every step below).
        assert_eq!(serde_json::to_value(&a.operation).unwrap()["kind"], "sale");
        (ri.id, a)
    }

    #[tokio::test]
    async fn a_crash_between_any_two_steps_lists_a_sale_exactly_once() {
        for step in Step::ALL {
            let w = world().await;
            let (ri, a) = sale(&w).await;
            let p = approve(&w, a).await;
            let e = executor(&w, Some(step))
                .execute_approved(t(1))
                .await
                .unwrap_err();
            assert!(matches!(e, ExecuteError::Crashed(s) if s == step), "{e}");
            let exec = executor(&w, None);
            restart(&exec, step).await;
            assert!(exec.execute_approved(t(2)).await.unwrap().is_empty());
            // One listing of 2 instances; they apply until they sell, the other 3 stay held.
            let listings = w.market.listings().await.unwrap();
            assert_eq!(listings.len(), 1, "{step:?}: {listings:?}");
            assert_eq!(
                (listings[0].commitment_id.as_str(), listings[0].instances),
                (ri.as_str(), 2)
            );
            let mut held: Vec<_> = w
                .market
                .inventory()
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.amount)
                .collect();
            held.sort_by_key(|a| format!("{a:?}"));
            assert_eq!(
                held,
                vec![
                    CommitmentAmount::Instances(2),
                    CommitmentAmount::Instances(3)
                ],
                "{step:?}"
            );
            let done = w.proposals.get(&p.id).await.unwrap().unwrap();
            assert_eq!(done.state, ProposalState::Executed, "{step:?}");
            assert_eq!(
                done.commitment_id.as_deref(),
                Some(listings[0].listing_id.as_str())
            );
            assert_eq!(w.count(EventKind::Executed).await, 1);
            assert!(w.audit.verify().await.unwrap().is_ok());
        }
    }

    #[tokio::test]
    async fn an_exchange_above_the_approved_true_up_fails_with_the_quote_and_changes_nothing() {
        let w = world().await;
        let (_sp, ri) = holdings(&w).await;
        let before = w.market.inventory().await.unwrap();
        let p = approve(&w, swap(&ri, "1")).await;
        let out = executor(&w, None).execute_approved(t(1)).await.unwrap();
        let Outcome::Failed {
            error, retryable, ..
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert!(!retryable);
        assert!(error.contains("exceeds the approved 1 USD"), "{error}");
        assert_eq!(w.market.inventory().await.unwrap(), before);
        assert_eq!(
            w.proposals.get(&p.id).await.unwrap().unwrap().state,
            ProposalState::Failed
        );
        let failed = w
            .audit
            .list(
                &EventFilter {
                    kind: Some(EventKind::Failed),
                    ..EventFilter::default()
                },
                None,
            )
            .await
            .unwrap();
        let quote = &failed[0].rationale["quote"];
        assert_eq!(quote["valid"], true, "{quote}");
        assert!(
            quote["payment_due"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
                > 1.0
        );
    }
}

/// A deployment restarted in datapilot executes nothing, not even a proposal approved earlier
/// under copilot: it is blocked by the mode, recorded, and the market is never called.
#[tokio::test]
async fn a_global_datapilot_executes_nothing_even_when_approved() {
    let w = world().await;
    let p = w.approved("2.5", 0).await;
    let out = w
        .executor(None)
        .with_mode(Mode::Datapilot)
        .execute_approved(t(1))
        .await
        .unwrap();
    let [Outcome::Blocked {
        proposal_id, rule, ..
    }] = out.as_slice()
    else {
        panic!("expected one blocked outcome, got {out:?}");
    };
    assert_eq!(
        (proposal_id.as_str(), *rule),
        (p.id.as_str(), crate::policy::Rule::Mode)
    );
    assert!(w.market.inventory().await.unwrap().is_empty());
    assert_eq!(w.count(EventKind::PolicyBlocked).await, 1);
    assert_eq!(w.count(EventKind::ExecutionRequested).await, 0);
}

/// Fault injection in process: a market that applies a purchase and loses the answer, fails
/// before applying, throttles, or hides what it did from lookups; a provider without client
/// tokens (every call buys anew, as AWS PurchaseReservedInstancesOffering does); edited
/// proposals; lost leases; policies changed between two attempts. The invariant checked on the
/// market's own ledger: never more bought than approved, nothing bought against the policies
/// in force, and every call in the audit log.
mod faults {
    use super::*;
    use crate::markets::{BoxFuture, Quote};
    use crate::store::sql;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fault {
        /// The purchase happens; the answer is lost.
        ApplyThenLose,
        /// The call fails with an unknown outcome, having done nothing.
        LoseBeforeApplying,
        /// Throttled: refused before acting.
        Throttle,
    }

    /// Wraps the simulated market. Every `purchase` call buys anew under a fresh key (no
    /// client token) unless `dedup`; `find_purchase` sees what was bought only if `visible`.
    struct Faulty {
        inner: Arc<SimMarket>,
        dedup: bool,
        visible: bool,
        faults: Mutex<VecDeque<Fault>>,
        /// (request key, purchase) for every purchase that really happened.
        bought: Mutex<Vec<(String, Purchase)>>,
        calls: Mutex<u32>,
    }

    impl Faulty {
        fn new(inner: Arc<SimMarket>, dedup: bool, visible: bool, faults: &[Fault]) -> Faulty {
            Faulty {
                inner,
                dedup,
                visible,
                faults: Mutex::new(faults.iter().copied().collect()),
                bought: Mutex::new(Vec::new()),
                calls: Mutex::new(0),
            }
        }

        fn bought(&self) -> usize {
            self.bought.lock().unwrap().len()
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }

        async fn buy(&self, request: &PurchaseRequest) -> Result<Purchase, ProviderError> {
            let n = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            let fault = self.faults.lock().unwrap().pop_front();
            let unknown = || ProviderError::OutcomeUnknown {
                provider: "faulty".into(),
                message: "connection reset after the request was sent".into(),
            };
            match fault {
                Some(Fault::Throttle) => {
                    return Err(ProviderError::Unavailable {
                        provider: "faulty".into(),
                        message: "RequestLimitExceeded".into(),
                    })
                }
                Some(Fault::LoseBeforeApplying) => return Err(unknown()),
                _ => {}
            }
            if self.dedup {
                if let Some((_, p)) = self
                    .bought
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| *k == request.idempotency_key)
                {
                    return Ok(p.clone());
                }
            }
            // No client token: the inner market sees a new key on every call.
            let mut fresh = request.clone();
            fresh.idempotency_key = format!("{}#{n}", request.idempotency_key);
            let p = self.inner.purchase(&fresh).await?;
            self.bought
                .lock()
                .unwrap()
                .push((request.idempotency_key.clone(), p.clone()));
            if fault == Some(Fault::ApplyThenLose) {
                return Err(unknown());
            }
            Ok(p)
        }
    }

    impl CommitmentMarket for Faulty {
        fn name(&self) -> &str {
            "faulty"
        }
        fn inventory(
            &self,
        ) -> BoxFuture<'_, Result<Vec<crate::domain::Commitment>, ProviderError>> {
            self.inner.inventory()
        }
        fn quote<'a>(
            &'a self,
            spec: &'a crate::markets::PurchaseSpec,
        ) -> BoxFuture<'a, Result<Quote, ProviderError>> {
            self.inner.quote(spec)
        }
        fn purchase<'a>(
            &'a self,
            request: &'a PurchaseRequest,
        ) -> BoxFuture<'a, Result<Purchase, ProviderError>> {
            Box::pin(self.buy(request))
        }
        fn find_by_idempotency_key<'a>(
            &'a self,
            key: &'a str,
        ) -> BoxFuture<'a, Result<Option<Purchase>, ProviderError>> {
            Box::pin(async move {
                if !self.visible {
                    return Ok(None);
                }
                Ok(self
                    .bought
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, p)| p.clone()))
            })
        }
        fn deduplicates(&self, _: &Operation, _: &crate::markets::PurchaseSpec) -> bool {
            self.dedup
        }
    }

    fn executor(w: &World, market: Arc<Faulty>, policies: Arc<PolicySource>) -> Executor {
        Executor::new(w.proposals.clone(), w.audit.clone(), market, policies).with_retry_limits(
            RetryLimits {
                max_attempts: 3,
                max_age: Duration::hours(24),
            },
        )
    }

    fn fixed() -> Arc<PolicySource> {
        Arc::new(PolicySource::fixed(policies()))
    }

    /// Runs execution ticks (reconcile, then execute approved) as the daemon does.
    async fn ticks(x: &Executor, hours: &[i64]) -> Vec<Outcome> {
        let mut out = Vec::new();
        for h in hours {
            out.extend(x.reconcile(t(*h)).await.unwrap());
            out.extend(x.execute_approved(t(*h)).await.unwrap());
        }
        out
    }

    async fn state(w: &World, id: &str) -> ProposalState {
        w.proposals.get(id).await.unwrap().unwrap().state
    }

    #[tokio::test]
    async fn a_lost_answer_without_client_token_is_found_and_never_bought_again() {
        let w = world().await;
        let m = Arc::new(Faulty::new(
            w.market.clone(),
            false,
            true,
            &[Fault::ApplyThenLose],
        ));
        let x = executor(&w, m.clone(), fixed());
        let p = w.approved("2.5", 0).await;
        let out = ticks(&x, &[1, 2, 3]).await;
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
        assert_eq!(m.bought(), 1);
        assert_eq!(m.calls(), 1);
        assert_eq!(state(&w, &p.id).await, ProposalState::Executed);
        assert_eq!(w.count(EventKind::Executed).await, 1);
        assert_eq!(w.count(EventKind::ExecutionRequested).await, 1);
    }

    #[tokio::test]
    async fn an_unknown_outcome_the_provider_cannot_show_is_parked_and_never_retried() {
        for fault in [Fault::ApplyThenLose, Fault::LoseBeforeApplying] {
            let w = world().await;
            let m = Arc::new(Faulty::new(w.market.clone(), false, false, &[fault]));
            let x = executor(&w, m.clone(), fixed());
            let p = w.approved("2.5", 0).await;
            let out = ticks(&x, &[1, 2, 3, 4, 5]).await;
            assert!(
                matches!(&out[0], Outcome::NeedsReview { .. }),
                "{fault:?}: {out:?}"
            );
            assert_eq!(m.calls(), 1, "{fault:?}: one call, never resent");
            assert!(m.bought() <= 1);
            assert_eq!(state(&w, &p.id).await, ProposalState::NeedsReview);
            assert_eq!(w.count(EventKind::NeedsReview).await, 1);
            assert_eq!(w.count(EventKind::Executed).await, 0);
        }
    }

    #[tokio::test]
    async fn a_crash_after_a_call_without_client_token_is_looked_up_not_resent() {
        // The process dies after the provider bought, before the outcome was recorded: the
        // next process finds `call_started_at` set and asks the provider first.
        let w = world().await;
        let m = Arc::new(Faulty::new(w.market.clone(), false, false, &[]));
        let p = w.approved("2.5", 0).await;
        let crashing = executor(&w, m.clone(), fixed()).with_failpoint(Failpoint {
            at: Some(Step::AfterPurchase),
            abort: false,
        });
        assert!(crashing.execute_approved(t(1)).await.is_err());
        assert_eq!(m.bought(), 1);
        let out = ticks(&executor(&w, m.clone(), fixed()), &[2, 3]).await;
        // Invisible to lookups and no client token: a person decides; nothing is resent.
        assert!(matches!(&out[0], Outcome::NeedsReview { .. }), "{out:?}");
        assert_eq!(m.calls(), 1);
        assert_eq!(state(&w, &p.id).await, ProposalState::NeedsReview);
    }

    #[tokio::test]
    async fn with_a_client_token_an_unknown_outcome_is_resent_under_the_same_key_once() {
        let w = world().await;
        let m = Arc::new(Faulty::new(
            w.market.clone(),
            true,
            false,
            &[Fault::LoseBeforeApplying],
        ));
        let x = executor(&w, m.clone(), fixed());
        let p = w.approved("2.5", 0).await;
        let out = ticks(&x, &[1, 2, 3]).await;
        assert!(
            matches!(
                &out[0],
                Outcome::Failed {
                    retryable: true,
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(
            out.iter().any(|o| matches!(o, Outcome::Executed { .. })),
            "{out:?}"
        );
        assert_eq!(m.bought(), 1);
        assert_eq!(m.calls(), 2);
        assert_eq!(state(&w, &p.id).await, ProposalState::Executed);
        // Every call has its `execution_requested` event.
        assert_eq!(w.count(EventKind::ExecutionRequested).await, 2);
    }

    #[tokio::test]
    async fn throttling_is_retried_within_the_cap_then_fails_for_good() {
        let w = world().await;
        let storm = [Fault::Throttle; 10];
        let m = Arc::new(Faulty::new(w.market.clone(), false, true, &storm));
        let x = executor(&w, m.clone(), fixed());
        let p = w.approved("2.5", 0).await;
        let out = ticks(&x, &[1, 2, 3, 4, 5, 6]).await;
        assert_eq!(m.calls(), 3, "max_attempts = 3: {out:?}");
        assert_eq!(m.bought(), 0);
        let got = w.proposals.get(&p.id).await.unwrap().unwrap();
        assert_eq!(got.state, ProposalState::Failed);
        assert!(got.outcome.unwrap().contains("gave up after 3"));
        assert_eq!(w.count(EventKind::ExecutionRequested).await, 3);
    }

    #[tokio::test]
    async fn a_retry_is_judged_by_the_policies_in_force_at_that_moment() {
        let w = world().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aws.toml");
        std::fs::write(&file, POLICY).unwrap();
        let source = Arc::new(PolicySource::watch(dir.path()).unwrap());
        let m = Arc::new(Faulty::new(
            w.market.clone(),
            false,
            true,
            &[Fault::Throttle],
        ));
        let x = executor(&w, m.clone(), source);
        let p = w.approved("2.5", 0).await;
        let first = ticks(&x, &[1]).await;
        assert!(
            matches!(
                &first[0],
                Outcome::Failed {
                    retryable: true,
                    ..
                }
            ),
            "{first:?}"
        );
        // An operator flips the kill switch: the retry is blocked, nothing is bought.
        std::fs::write(
            &file,
            POLICY.replacen("name = \"aws\"", "name = \"aws\"\nkill_switch = true", 1),
        )
        .unwrap();
        let out = ticks(&x, &[2, 3]).await;
        assert!(
            matches!(&out[0], Outcome::Blocked { rule, .. } if *rule == crate::policy::Rule::KillSwitch),
            "{out:?}"
        );
        assert_eq!(m.calls(), 1);
        assert_eq!(m.bought(), 0);
        assert_eq!(state(&w, &p.id).await, ProposalState::Failed);
        // A policy file that no longer parses stops execution (no fallback to defaults).
        std::fs::write(&file, POLICY).unwrap();
        let q = w.approved("1", 1).await;
        std::fs::write(&file, "name = [broken").unwrap();
        let out = ticks(&x, &[4]).await;
        assert!(matches!(&out[0], Outcome::Skipped { .. }), "{out:?}");
        assert_eq!(state(&w, &q.id).await, ProposalState::Approved);
        assert_eq!(m.calls(), 1);
    }

    #[tokio::test]
    async fn an_edited_proposal_or_a_forged_approval_buys_nothing() {
        let w = world().await;
        let m = Arc::new(Faulty::new(w.market.clone(), false, true, &[]));
        let x = executor(&w, m.clone(), fixed());
        // 1. The amount is edited in the database after approval (0.2 -> 3 USD/h, within
        //    the policy's limits, so only the digest can catch it).
        let edited = w.approved("0.2", 0).await;
        let bigger = serde_json::to_string(&action("3")).unwrap();
        sql::execute(
            &w.store,
            "UPDATE proposals SET action = $1, hourly_commitment_micros = 3000000 WHERE id = $2",
            &[bigger.into(), edited.id.clone().into()],
        )
        .await
        .unwrap();
        // 2. A proposal nobody approved is marked approved in the database.
        let forged = w.proposed("1", 7, 1).await;
        // 3. A two-approver proposal with one approval, downgraded to one in the table.
        let two = w.proposed("1.5", 8, 2).await;
        w.proposals
            .approve(&two.id, "alice", t(0), None)
            .await
            .unwrap();
        for (id, set) in [
            (&forged.id, "state = 'approved'"),
            (&two.id, "state = 'approved', approvals_needed = 1"),
        ] {
            sql::execute(
                &w.store,
                &format!("UPDATE proposals SET {set} WHERE id = $1"),
                &[id.clone().into()],
            )
            .await
            .unwrap();
        }
        let out = ticks(&x, &[1]).await;
        assert_eq!(out.len(), 3, "{out:?}");
        for o in &out {
            assert!(
                matches!(o, Outcome::Failed { error, retryable: false, .. } if error.starts_with("refused")),
                "{o:?}"
            );
        }
        assert_eq!(m.calls(), 0);
        for id in [&edited.id, &forged.id, &two.id] {
            assert_eq!(state(&w, id).await, ProposalState::Failed);
        }
    }

    #[tokio::test]
    async fn a_replica_without_the_lease_calls_nothing() {
        let w = world().await;
        let m = Arc::new(Faulty::new(w.market.clone(), false, true, &[]));
        let ttl = Duration::seconds(30);
        let ours = Arc::new(Lease::new(w.store.clone(), lease::EXECUTOR_LEASE, "a", ttl));
        let theirs = Lease::new(w.store.clone(), lease::EXECUTOR_LEASE, "b", ttl);
        assert!(theirs.try_acquire().await.unwrap());
        assert!(!ours.try_acquire().await.unwrap());
        let x = executor(&w, m.clone(), fixed()).with_lease(ours.clone());
        let p = w.approved("2.5", 0).await;
        let out = ticks(&x, &[1]).await;
        assert!(matches!(&out[0], Outcome::Skipped { .. }), "{out:?}");
        assert_eq!(m.calls(), 0);
        assert_eq!(state(&w, &p.id).await, ProposalState::Approved);
        // Once it holds the lease, it executes.
        theirs.release().await.unwrap();
        assert!(ours.try_acquire().await.unwrap());
        let out = ticks(&x, &[2]).await;
        assert!(matches!(&out[0], Outcome::Executed { .. }), "{out:?}");
        assert_eq!(m.bought(), 1);
    }
}
