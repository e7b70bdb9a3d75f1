//! Fault injection over the real `commitd` binary and the local AWS peer (the in-repo AWS test
//! server, which keeps its own ledger and its own copy of AWS's rules).
//!
//! For each operation and fault (a lost answer after AWS applied the purchase, a 5xx, a
//! throttling storm, a connection dropped before applying, CreateTags failing, a SIGKILL of
//! the process at each step, a kill switch flipped between two attempts), the daemon runs its
//! cycle and then its execution ticks for a while, and the invariant is checked on the peer's
//! own ledger: never more bought than approved, nothing bought while the kill switch is on,
//! every provider call in the audit log, and `audit verify` passes. Each test prints the
//! faults, cycles and purchases it covered.

use crate::common;

use commitd_testkit::aws_server::{Fault, TestServer, World};
use common::daemon::{Setup, AWS_ENV};
use serde_json::Value;
use std::time::Duration;

const RI_POLICY: &str = r#"
name = "aws"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan", "StandardReservedInstance"]
terms = [1]
payment_options = ["NoUpfront"]
[limits]
max_upfront_per_day = "10000"
min_expected_utilization = 0.9
[approval]
autopilot_max_hourly_commitment = "5"
two_approvers_from_hourly_commitment = "50"
"#;

/// One Standard RI purchase (2 x m5.large, 1 year, no upfront: 0.05952 USD/h each at the test
/// server's prices; AWS has no client token for it).
const RI_PLAN: &str = r#"{"actions": [
 {"spec": {"provider": "AWS", "instrument": "StandardReservedInstance", "term": 1, "payment": "NoUpfront",
           "region": "eu-west-1", "instance_type": "m5.large", "os": "Linux", "tenancy": "Shared",
           "amount": {"unit": "instances", "value": 2}},
  "hourly_cost": "0.12", "upfront": "0", "expected_savings": "700", "expected_utilization": 0.99,
  "summary": "2 x m5.large"}
]}"#;

/// One Compute Savings Plan (2.5 USD/h; CreateSavingsPlan carries a client token).
const SP_PLAN: &str = r#"{"actions": [
 {"spec": {"provider": "AWS", "instrument": "ComputeSavingsPlan", "term": 1, "payment": "NoUpfront",
           "amount": {"unit": "hourly_spend", "value": "2.5"}},
  "hourly_cost": "2.5", "upfront": "0", "expected_savings": "5000", "expected_utilization": 0.99,
  "summary": "covers demand down to P10"}
]}"#;

fn aws_section(endpoint: &str) -> String {
    format!(
        "provider = \"aws\"\n[aws]\nendpoint_url = \"{endpoint}\"\n[aws.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\ndeadline_ms = 5000\nattempt_timeout_ms = 2000\n"
    )
}

struct Peer {
    _rt: tokio::runtime::Runtime,
    server: TestServer,
}

fn peer() -> Peer {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(TestServer::start(World::demo("eu-west-1")))
        .unwrap();
    Peer { _rt: rt, server }
}

fn setup(peer: &Peer, plan: &str) -> Setup {
    let s = Setup::with_daemon_settings("autopilot", false, &aws_section(&peer.server.endpoint()))
        .unwrap();
    std::fs::write(s.path("policies/aws.toml"), RI_POLICY).unwrap();
    std::fs::write(s.path("plan.json"), plan).unwrap();
    s
}

/// One cycle (`run --once`: plan, approve on the policy's authority, execute), then the
/// long-running daemon's execution ticks (every second) for `ticks` seconds.
fn cycle_then_ticks(s: &Setup, env: &[(&str, &str)], ticks: u64) -> String {
    let mut all: Vec<(&str, &str)> = AWS_ENV.to_vec();
    all.extend_from_slice(env);
    let out = s.commitd_env(&["run", "--once"], &all);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let d = s.spawn_env(AWS_ENV);
    std::thread::sleep(Duration::from_secs(ticks));
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    format!("{stdout}\n{stderr}")
}

/// Injects `fault` into the next `times` calls of `operation` that could buy: the dry run that
/// precedes every PurchaseReservedInstancesOffering passes, so the fault hits the purchase.
fn aim(peer: &Peer, operation: &str, fault: Fault, times: u32) {
    let mut w = peer.server.world();
    if operation == "PurchaseReservedInstancesOffering" {
        w.inject(operation, Fault::Pass, 1);
    }
    w.inject(operation, fault, times);
}

fn state(s: &Setup) -> String {
    s.proposals()[0]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// Every provider call that could buy has its `execution_requested` event before it, the log
/// verifies, and the executed events name what the peer holds.
fn check_log(s: &Setup, bought: u32) {
    s.verify_audit();
    let executed: Vec<Value> = s.events("executed");
    assert_eq!(executed.len() as u32, bought, "{executed:?}");
    assert!(s.events("execution_requested").len() as u32 >= bought);
}

#[test]
fn ri_purchase_faults_never_buy_more_than_approved() {
    // (operation the fault hits, fault, times, expected RIs bought, expected final state)
    let cases: &[(&str, Fault, u32, u32, &str)] = &[
        // Refused before applying: retried at a later tick, bought once.
        (
            "PurchaseReservedInstancesOffering",
            Fault::Throttle,
            1,
            1,
            "executed",
        ),
        // AWS bought, the answer was lost: found by the lookup (untagged), never bought again.
        (
            "PurchaseReservedInstancesOffering",
            Fault::DropAfterCommit,
            1,
            1,
            "executed",
        ),
        // Dropped before applying: nothing at AWS, but no client token: a person decides.
        (
            "PurchaseReservedInstancesOffering",
            Fault::DropBeforeCommit,
            1,
            0,
            "needs_review",
        ),
        // A 5xx: the outcome is unknown; nothing found; parked, never resent.
        (
            "PurchaseReservedInstancesOffering",
            Fault::ServerError,
            1,
            0,
            "needs_review",
        ),
        // The purchase succeeded but tagging it failed, every time: still executed, once.
        ("CreateTags", Fault::ServerError, 1000, 1, "executed"),
    ];
    let mut faults = 0;
    for &(operation, fault, times, expected, final_state) in cases {
        let peer = peer();
        aim(&peer, operation, fault, times);
        let s = setup(&peer, RI_PLAN);
        let log = cycle_then_ticks(&s, &[], 4);
        let calls = peer
            .server
            .world()
            .calls("PurchaseReservedInstancesOffering");
        let held = peer.server.world().reserved_instances().len() as u32;
        eprintln!(
            "{operation} {fault:?} x{times}: {calls} purchase calls, {held} RIs held, state {}",
            state(&s)
        );
        assert_eq!(held, expected, "{operation} {fault:?}: {log}");
        assert_eq!(state(&s), final_state, "{operation} {fault:?}: {log}");
        check_log(&s, expected);
        faults += 1;
    }
    eprintln!("RI purchase: {faults} faults, {} cycles", faults);
}

#[test]
fn savings_plan_faults_buy_exactly_once_under_the_client_token() {
    let cases: &[(Fault, u32)] = &[
        (Fault::Throttle, 3),
        (Fault::DropAfterCommit, 1),
        (Fault::DropBeforeCommit, 1),
        (Fault::ServerError, 2),
    ];
    for &(fault, times) in cases {
        let peer = peer();
        peer.server
            .world()
            .inject("CreateSavingsPlan", fault, times);
        let s = setup(&peer, SP_PLAN);
        let log = cycle_then_ticks(&s, &[], 4);
        let plans = peer.server.world().plans().len();
        eprintln!(
            "CreateSavingsPlan {fault:?} x{times}: {} calls, {plans} plans, state {}",
            peer.server.world().calls("CreateSavingsPlan"),
            state(&s)
        );
        assert_eq!(plans, 1, "{fault:?}: {log}");
        assert_eq!(state(&s), "executed", "{fault:?}: {log}");
        check_log(&s, 1);
    }
}

#[test]
fn a_sigkill_at_any_step_of_an_ri_purchase_never_buys_twice() {
    for (step, expected, final_state) in [
        // Killed before the call: the intent is recorded; the restart finds nothing, and with
        // no client token it never resends.
        ("after_begin_execution", 0, "needs_review"),
        // Killed after AWS bought, before the outcome was recorded: found by its tag.
        ("after_purchase", 1, "executed"),
        ("after_executed_event", 1, "executed"),
    ] {
        let peer = peer();
        let s = setup(&peer, RI_PLAN);
        let log = cycle_then_ticks(&s, &[("COMMITD_TEST_FAILPOINT", step)], 4);
        let held = peer.server.world().reserved_instances().len() as u32;
        eprintln!("SIGKILL {step}: {held} RIs held, state {}", state(&s));
        assert_eq!(held, expected, "{step}: {log}");
        assert_eq!(state(&s), final_state, "{step}: {log}");
        check_log(&s, expected);
    }
}

#[test]
fn a_kill_switch_flipped_between_two_attempts_stops_the_retry() {
    let peer = peer();
    // Throttled for longer than the first cycle: the proposal waits `executing`.
    aim(
        &peer,
        "PurchaseReservedInstancesOffering",
        Fault::Throttle,
        1,
    );
    let s = setup(&peer, RI_PLAN);
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.push(("COMMITD_LOG", "info"));
    let out = s.commitd_env(&["run", "--once"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(&s), "executing");
    // An operator flips the kill switch; no restart, no SIGHUP needed.
    let policy = RI_POLICY.replacen("name = \"aws\"", "name = \"aws\"\nkill_switch = true", 1);
    std::fs::write(s.path("policies/aws.toml"), policy).unwrap();
    let d = s.spawn_env(AWS_ENV);
    std::thread::sleep(Duration::from_secs(3));
    d.terminate();
    assert_eq!(peer.server.world().reserved_instances().len(), 0);
    assert_eq!(state(&s), "failed");
    let blocked = s.events("policy_blocked");
    assert!(
        blocked
            .iter()
            .any(|e| e["payload"]["rule"] == "kill_switch"),
        "{blocked:?}"
    );
    s.verify_audit();
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Two replicas on one PostgreSQL database against the AWS peer. The leader is paused
/// (SIGSTOP) past its lease; the standby takes over on the database's clock and executes the
/// approval; the old leader, resumed, finds its fence gone and calls nothing.
#[test]
fn a_paused_leader_is_fenced_out_and_the_standby_buys_once() {
    let peer = peer();
    let Some(s) =
        Setup::with_daemon_settings("copilot", true, &aws_section(&peer.server.endpoint()))
    else {
        assert!(
            std::env::var("COMMITD_TEST_REQUIRE_POSTGRES").is_err(),
            "COMMITD_TEST_REQUIRE_POSTGRES is set but COMMITD_TEST_DATABASE_URL is not"
        );
        eprintln!("COMMITD_TEST_DATABASE_URL not set: paused-leader test skipped");
        return;
    };
    std::fs::write(s.path("policies/aws.toml"), RI_POLICY).unwrap();
    std::fs::write(s.path("plan.json"), SP_PLAN).unwrap();
    let out = s.commitd_env(&["run", "--once"], AWS_ENV);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = s.proposals()[0]["id"].as_str().unwrap().to_string();
    let alice = s.token("alice", "approver");
    let leader = |d: &common::daemon::Daemon| {
        d.get("/metrics", None)
            .1
            .contains("commitd_executor_leader 1\n")
    };
    let a = s.spawn_env(AWS_ENV);
    common::daemon::eventually(10, || leader(&a).then_some(()));
    let b = s.spawn_env(AWS_ENV);
    signal(a.child.id(), "STOP");
    // The lease's TTL is 3 s on the database's clock: b takes over.
    common::daemon::eventually(15, || leader(&b).then_some(()));
    let (code, body) = b.post(
        &format!("/api/v1/proposals/{id}/approve"),
        Some(&alice),
        "{}",
    );
    assert_eq!(code, 200, "{body}");
    common::daemon::eventually(20, || {
        (s.proposal(&id)["state"] == "executed").then_some(())
    });
    signal(a.child.id(), "CONT");
    std::thread::sleep(Duration::from_secs(4));
    assert!(!leader(&a), "the resumed replica must not hold the lease");
    assert!(leader(&b));
    assert_eq!(peer.server.world().plans().len(), 1);
    assert_eq!(s.events("executed").len(), 1);
    let requests = s.events("execution_requested");
    assert_eq!(requests.len(), 1, "{requests:?}");
    // b's token: larger than a's first one.
    assert!(requests[0]["rationale"]["fencing_token"].as_i64().unwrap() >= 2);
    let (sa, _) = a.terminate();
    let (sb, _) = b.terminate();
    assert!(sa.success() && sb.success());
    s.verify_audit();
    eprintln!("paused leader: 1 fault (SIGSTOP), 1 takeover, 1 purchase");
}

/// Buys a convertible RI straight in the peer's account (as a person would have, long before).
fn convertible(peer: &Peer, instance_type: &str, count: i64) -> String {
    let mut w = peer.server.world();
    let offering = w
        .ri_offerings
        .iter()
        .find(|o| {
            o.instance_type == instance_type
                && o.class == "convertible"
                && o.offering_type == "No Upfront"
                && o.duration_seconds == 365 * 24 * 3600
        })
        .unwrap()
        .id
        .clone();
    w.purchase_ri(&offering, count, None, None).unwrap()
}

/// A convertible RI exchange (AcceptReservedInstancesExchangeQuote has no client token): the
/// accept answer is lost after AWS applied it, or the call fails before it is applied.
#[test]
fn exchange_faults_never_exchange_twice() {
    for (fault, expected_exchanges, final_state) in [
        (Fault::DropAfterCommit, 1, "executed"),
        (Fault::ServerErrorAfterCommit, 1, "executed"),
        (Fault::DropBeforeCommit, 0, "needs_review"),
        (Fault::Throttle, 1, "executed"),
    ] {
        let peer = peer();
        let source = convertible(&peer, "m5.large", 2);
        peer.server
            .world()
            .inject("AcceptReservedInstancesExchangeQuote", fault, 1);
        let s = setup(&peer, "{\"actions\": []}");
        let policy = RI_POLICY.replace(
            "instruments = [\"ComputeSavingsPlan\", \"StandardReservedInstance\"]",
            "instruments = [\"ComputeSavingsPlan\", \"StandardReservedInstance\", \"ConvertibleReservedInstance\"]",
        );
        std::fs::write(s.path("policies/aws.toml"), policy).unwrap();
        // 2 x m5.large into 1 x m5.xlarge: the same hourly value, no true-up.
        let plan = format!(
            r#"{{"actions": [
 {{"operation": {{"kind": "exchange", "source_ids": ["{source}"], "source_value": "0", "true_up": "0"}},
   "spec": {{"provider": "AWS", "instrument": "ConvertibleReservedInstance", "term": 1, "payment": "NoUpfront",
            "region": "eu-west-1", "instance_type": "m5.xlarge", "os": "Linux", "tenancy": "Shared",
            "amount": {{"unit": "instances", "value": 1}}}},
   "hourly_cost": "0.14", "upfront": "1", "expected_savings": "10", "expected_utilization": 0.99,
   "summary": "exchange into the larger size"}}
]}}"#
        );
        std::fs::write(s.path("plan.json"), plan).unwrap();
        let log = cycle_then_ticks(&s, &[], 4);
        let ledger = peer.server.world().ledger();
        let accepts = peer
            .server
            .world()
            .calls("AcceptReservedInstancesExchangeQuote");
        eprintln!(
            "AcceptReservedInstancesExchangeQuote {fault:?}: {accepts} accept calls, {} exchanges, state {}",
            ledger.exchanges,
            state(&s)
        );
        assert_eq!(ledger.exchanges, expected_exchanges, "{fault:?}: {log}");
        assert_eq!(state(&s), final_state, "{fault:?}: {log}");
        check_log(&s, expected_exchanges);
    }
}

/// The database connection is cut again and again (every PostgreSQL backend of the daemon's
/// database terminated every 100 ms for 5 s) while the daemon retries an RI purchase, which
/// has no client token. Whatever step a cut lands on (the intent, the call's outcome, an
/// event), the peer never holds more than one RI, the proposal ends executed or parked for a
/// person, and the log verifies.
#[test]
fn lost_database_connections_never_buy_twice() {
    let peer = peer();
    let Some(s) =
        Setup::with_daemon_settings("autopilot", true, &aws_section(&peer.server.endpoint()))
    else {
        assert!(
            std::env::var("COMMITD_TEST_REQUIRE_POSTGRES").is_err(),
            "COMMITD_TEST_REQUIRE_POSTGRES is set but COMMITD_TEST_DATABASE_URL is not"
        );
        eprintln!("COMMITD_TEST_DATABASE_URL not set: lost-connection test skipped");
        return;
    };
    std::fs::write(s.path("policies/aws.toml"), RI_POLICY).unwrap();
    std::fs::write(s.path("plan.json"), RI_PLAN).unwrap();
    // The first purchase attempt is throttled: the proposal waits `executing` for the ticks.
    aim(
        &peer,
        "PurchaseReservedInstancesOffering",
        Fault::Throttle,
        1,
    );
    let out = s.commitd_env(&["run", "--once"], AWS_ENV);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(&s), "executing");
    let db = s
        .database_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let admin = common::daemon::postgres_url().unwrap();
    let d = s.spawn_env(AWS_ENV);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cuts = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let mut cuts = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let n: Vec<(bool,)> = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&db)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            cuts += n.len() as u64;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cuts
    });
    // The connections come back; the ticks settle whatever a cut interrupted.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let st = state(&s);
        if st == "executed" || st == "needs_review" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
    let st = state(&s);
    assert!(
        st == "executed" || st == "needs_review",
        "state {st} 30 s after the cuts stopped: {stderr}"
    );
    let held = peer.server.world().reserved_instances().len() as u32;
    let calls = peer
        .server
        .world()
        .calls("PurchaseReservedInstancesOffering");
    eprintln!(
        "lost connections: {cuts} backends terminated, {calls} purchase calls, {held} RIs held, state {}",
        state(&s)
    );
    assert!(held <= 1, "bought {held} RIs for one approval");
    check_log(&s, held);
    if state(&s) == "executed" {
        assert_eq!(held, 1);
    }
}
