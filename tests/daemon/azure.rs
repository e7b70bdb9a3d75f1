//! The daemon on Azure, end to end: the real `commitd` binary plans on the demo scenario, buys
//! through the Azure SDK clients from the local Azure peer (in this test process), sees what it
//! bought in the next cycle's inventory and does not buy it again; and one daemon with AWS and
//! Azure side by side (`[daemon] providers`), each action sent to its own cloud.

use crate::common;

use commitd_testkit::aws_server::{TestServer, World as AwsWorld};
use commitd_testkit::azure_server::{AzurePeer, World};
use common::daemon::{eventually, Setup, AWS_ENV, COMPUTE_ONLY_POLICY};
use serde_json::Value;
use std::path::PathBuf;

/// What the demo scenario's Azure group runs (eastus, Standard_E16s_v5) costs reserved, USD per
/// instance-hour, as the peer quotes it (1 and 3 years): within the scenario rate card the plan
/// approves (0.597312 and 0.422828), as a live price must be to be paid.
const E16S_PRICES: [(u8, &str); 2] = [(1, "0.5973"), (3, "0.4228")];

const AZURE_POLICY: &str = r#"
name = "azure"
[scope]
provider = "Microsoft"
[allow]
instruments = ["AzureReservation"]
terms = [1]
payment_options = ["NoUpfront"]
[limits]
min_expected_utilization = 0.5
[approval]
autopilot_max_hourly_commitment = "1000"
two_approvers_from_hourly_commitment = "100000"
"#;

fn decision_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2025-12-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn azure_peer(rt: &tokio::runtime::Runtime) -> AzurePeer {
    let mut world = World::new();
    world.now = decision_time();
    for (years, price) in E16S_PRICES {
        world.prices.insert(
            ("standard_e16s_v5".into(), "eastus".into(), years),
            price.parse().unwrap(),
        );
    }
    rt.block_on(AzurePeer::start(world)).unwrap()
}

/// The credential the peer accepts, from the standard variables, as in production.
fn azure_env(peer: &AzurePeer) -> Vec<(&'static str, String)> {
    let w = peer.world();
    vec![
        ("AZURE_TENANT_ID", w.tenant_id.clone()),
        ("AZURE_CLIENT_ID", w.client_id.clone()),
        ("AZURE_CLIENT_SECRET", w.client_secret.clone()),
        ("AZURE_AUTHORITY_HOST", peer.url()),
    ]
}

fn azure_section(peer: &AzurePeer) -> String {
    format!(
        "[azure]\nendpoint_url = \"{}\"\nbilling_scope_id = \"/subscriptions/ed3a1871-612d-abcd-a849-c2542a68be83\"\n[azure.retry]\nmax_retries = 2\ninitial_delay_ms = 5\nmax_delay_ms = 50\npoll_interval_ms = 10\nmax_poll_interval_ms = 200\n",
        peer.url()
    )
}

fn aws_section(endpoint: &str) -> String {
    format!(
        "[aws]\nendpoint_url = \"{endpoint}\"\n[aws.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\ndeadline_ms = 20000\nattempt_timeout_ms = 10000\n"
    )
}

fn demo_scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo")
}

/// A daemon directory planning on the demo scenario (no plan file) with `policies`.
fn setup(mode: &str, daemon: &str, sections: &str, policies: &[(&str, &str)]) -> Setup {
    let s = Setup::with_daemon_settings(mode, false, daemon).unwrap();
    std::fs::remove_file(s.path("policies/aws.toml")).unwrap();
    for (name, text) in policies {
        std::fs::write(s.path(&format!("policies/{name}")), text).unwrap();
    }
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(
            "rates = \"rates.csv\"",
            &format!("scenario = \"{}\"", demo_scenario().display()),
        )
        .replace("plan_file = \"plan.json\"\n", "");
    std::fs::write(&s.config, format!("{config}\n{sections}")).unwrap();
    s
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn run_once(s: &Setup, env: &[(&str, &str)]) -> String {
    let out = s.commitd_env(&["run", "--once"], env);
    assert!(
        out.status.success(),
        "run --once: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cycle` and prints (never asserts) its wall time and the Azure calls it made, by
/// operation: the figures of docs/benchmarks/azure.md (`cargo test --test daemon azure --
/// --nocapture`).
fn measured<T>(what: &str, peer: &AzurePeer, cycle: impl FnOnce() -> T) -> T {
    let before = peer.world().ledger.requests.len();
    let started = std::time::Instant::now();
    let out = cycle();
    let elapsed = started.elapsed();
    let calls: Vec<String> = peer.world().ledger.requests[before..].to_vec();
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    for c in &calls {
        // "GET /providers/Microsoft.Capacity/reservationOrders/{id}" -> without the ids.
        let shape: Vec<&str> = c
            .split('/')
            .map(|seg| {
                if seg.len() >= 32 && seg.contains('-') {
                    "{id}"
                } else {
                    seg
                }
            })
            .collect();
        *by_kind.entry(shape.join("/")).or_default() += 1;
    }
    eprintln!(
        "azure figures: {what}: {:.2} s wall, {} Azure calls: {by_kind:?}",
        elapsed.as_secs_f64(),
        calls.len()
    );
    out
}

fn provider_of(p: &Value) -> &str {
    p["action"]["spec"]["provider"].as_str().unwrap_or("")
}

#[test]
fn copilot_on_azure_proposes_is_approved_over_http_buys_once_and_reports_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = azure_peer(&rt);
    let env = azure_env(&peer);
    let env = env_refs(&env);
    let s = setup(
        "copilot",
        "provider = \"azure\"",
        &azure_section(&peer),
        &[("azure.toml", AZURE_POLICY)],
    );

    // Cycle 1: the plan's Azure reservation waits for a person.
    let first = measured("copilot cycle 1 (plan, propose)", &peer, || {
        run_once(&s, &env)
    });
    let proposed: Vec<Value> = s
        .proposals()
        .into_iter()
        .filter(|p| p["state"] == "proposed")
        .collect();
    assert!(!proposed.is_empty(), "{first}");
    assert!(
        proposed.iter().all(|p| provider_of(p) == "Microsoft"),
        "{proposed:?}"
    );
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 0);

    // Approved over HTTP; the executor buys through the SDK.
    let alice = s.token("alice", "approver");
    let d = s.spawn_env(&env);
    for p in &proposed {
        let id = p["id"].as_str().unwrap();
        let (code, body) = d.post(
            &format!("/api/v1/proposals/{id}/approve"),
            Some(&alice),
            r#"{"reason": "steady E16s usage in eastus"}"#,
        );
        assert_eq!(code, 200, "{body}");
    }
    for p in &proposed {
        let id = p["id"].as_str().unwrap();
        let done = eventually(30, || {
            let (_, body) = d.get(&format!("/api/v1/proposals/{id}"), Some(&alice));
            let p: Value = serde_json::from_str(&body).ok()?;
            (p["state"] == "executed" || p["state"] == "failed" || p["state"] == "needs_review")
                .then_some(p)
        });
        assert_eq!(done["state"], "executed", "{done}");
        // Named "{order}/{reservation}", the order being the one the peer committed.
        let commitment = done["commitment_id"].as_str().unwrap().to_string();
        let order = commitment.split('/').next().unwrap().to_string();
        assert!(
            peer.world().ledger.reservation_purchases.contains(&order),
            "{done}"
        );
    }
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    let bought = peer.world().ledger.reservation_purchases.len();
    assert_eq!(bought, proposed.len(), "one order per approved proposal");

    // Cycle 2: the inventory holds what was bought; nothing new is proposed for it and the
    // peer sees no second order.
    let second = measured(
        "copilot cycle 2 (inventory holds the purchase)",
        &peer,
        || run_once(&s, &env),
    );
    let open: Vec<Value> = s
        .proposals()
        .into_iter()
        .filter(|p| p["state"] == "proposed")
        .collect();
    assert!(open.is_empty(), "{second}\n{open:?}");
    assert_eq!(peer.world().ledger.reservation_purchases.len(), bought);

    // The audit: the request before the call, Azure's request id, the approver; the chain
    // verifies; the month's finance report lists the Azure purchase.
    let executed = s.events("executed");
    assert_eq!(executed.len(), bought);
    for e in &executed {
        assert_eq!(e["rationale"]["provider"], "azure", "{e}");
    }
    assert_eq!(s.events("approved").len(), bought);
    s.verify_audit();
    let month = executed[0]["time"].as_str().unwrap()[..7].to_string();
    let report = s.ok(&["report", "--month", &month]);
    assert!(report.contains("AzureReservation"), "{report}");
}

#[test]
fn one_daemon_buys_on_aws_and_azure_each_in_its_own_cloud() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let azure = azure_peer(&rt);
    let aws = rt
        .block_on(TestServer::start(AwsWorld::demo("eu-west-1")))
        .unwrap();
    aws.world().set_now(decision_time());
    let mut env = azure_env(&azure);
    for (k, v) in AWS_ENV {
        env.push((k, v.to_string()));
    }
    let env = env_refs(&env);
    let s = setup(
        "autopilot",
        "providers = [\"aws\", \"azure\"]",
        // The laddering cap is per decision: with both clouds' purchases in one decision it
        // binds here, and a second decision at the same time would add the next rung. Lifted,
        // so that the second cycle shows what it must: nothing bought twice.
        &format!(
            "{}{}[planner.ladder]\ncap_per_decision = \"1000\"\n",
            azure_section(&azure),
            aws_section(&aws.endpoint())
        ),
        &[
            ("azure.toml", AZURE_POLICY),
            ("compute.toml", COMPUTE_ONLY_POLICY),
        ],
    );

    let first = run_once(&s, &env);
    let azure_orders = azure.world().ledger.reservation_purchases.len();
    let aws_plans = aws.world().purchases();
    assert!(azure_orders >= 1, "{first}");
    assert!(aws_plans >= 1, "{first}");
    // Each purchase went to its own cloud and is audited under that cloud's market.
    let executed = s.events("executed");
    assert_eq!(executed.len() as u32, azure_orders as u32 + aws_plans);
    for e in &executed {
        let id = e["payload"]["commitment_id"].as_str().unwrap_or("");
        let provider = e["rationale"]["provider"].as_str().unwrap_or("");
        let expected = if id.contains('/') { "azure" } else { "aws" };
        assert_eq!(provider, expected, "{e}");
    }

    // The next cycle sees both inventories: nothing is bought again anywhere.
    let second = run_once(&s, &env);
    assert!(!second.contains("\"outcome\":\"executed\""), "{second}");
    assert_eq!(
        azure.world().ledger.reservation_purchases.len(),
        azure_orders
    );
    assert_eq!(aws.world().purchases(), aws_plans);
    s.verify_audit();
}
