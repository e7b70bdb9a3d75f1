//! The daemon with `provider = "aws"`: the real `commitd run --once` process buys through the
//! real AWS SDK from the local AWS-compatible test server (in this test process), and the
//! inventory, the audit log and a second cycle agree with what the server saw.

use crate::common;

use commitd_testkit::aws_server::{TestServer, World};
use common::daemon::{aws_inventory, Setup, AWS_ENV, COMPUTE_ONLY_POLICY};
use std::path::PathBuf;

fn server(rt: &tokio::runtime::Runtime) -> TestServer {
    rt.block_on(TestServer::start(World::demo("eu-west-1")))
        .unwrap()
}

fn aws_section(endpoint: &str) -> String {
    format!(
        "provider = \"aws\"\n[aws]\nendpoint_url = \"{endpoint}\"\n[aws.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\ndeadline_ms = 20000\nattempt_timeout_ms = 10000\n"
    )
}

fn run_once(s: &Setup) -> String {
    let out = s.commitd_env(&["run", "--once"], AWS_ENV);
    assert!(
        out.status.success(),
        "run --once: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn autopilot_buys_a_savings_plan_from_the_aws_test_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = server(&rt);
    let endpoint = server.endpoint();
    let s = Setup::with_daemon_settings("autopilot", false, &aws_section(&endpoint)).unwrap();
    let out = run_once(&s);
    assert!(out.contains("\"outcome\":\"executed\""), "{out}");
    assert!(
        out.contains("blocked by aws limits.max_upfront_per_day"),
        "{out}"
    );
    assert_eq!(server.world().purchases(), 1);
    assert_eq!(server.world().calls("CreateSavingsPlan"), 1);

    // The account's inventory shows it, tagged with the proposal's idempotency key.
    let inv = aws_inventory(&endpoint);
    let plans = inv["savings_plans"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{inv}");
    assert_eq!(plans[0]["commitment"], "2.5", "{inv}");
    let executed = s.events("executed");
    assert_eq!(executed.len(), 1);
    let payload = &executed[0]["payload"];
    // The audit has the request id AWS answered CreateSavingsPlan with.
    let rid = payload["provider_request_id"].as_str().unwrap();
    assert!(
        server
            .world()
            .request_ids("CreateSavingsPlan")
            .contains(&rid.to_string()),
        "{payload} vs {:?}",
        server.world().request_ids("CreateSavingsPlan")
    );
    assert_eq!(payload["commitment_id"], plans[0]["id"], "{payload}\n{inv}");
    s.verify_audit();
}

fn demo_scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo")
}

#[test]
fn the_scenario_planner_counts_what_aws_holds_and_does_not_buy_twice() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = server(&rt);
    // The account lives at the scenario's decision time, like the planner.
    server.world().set_now(
        chrono::DateTime::parse_from_rfc3339("2025-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    let endpoint = server.endpoint();
    let s = Setup::with_daemon_settings("autopilot", false, &aws_section(&endpoint)).unwrap();
    std::fs::remove_file(s.path("policies/aws.toml")).unwrap();
    std::fs::write(s.path("policies/compute.toml"), COMPUTE_ONLY_POLICY).unwrap();
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(
            "rates = \"rates.csv\"",
            &format!("scenario = \"{}\"", demo_scenario().display()),
        )
        .replace("plan_file = \"plan.json\"\n", "");
    std::fs::write(&s.config, config).unwrap();

    let first = run_once(&s);
    assert!(first.contains("\"outcome\":\"executed\""), "{first}");
    // The plan was priced with the account's offerings (fetched once, cached for the day).
    let rate_calls = server.world().calls("DescribeSavingsPlansOfferingRates");
    assert!(rate_calls >= 1, "{first}");
    assert!(s.path("state/aws-offerings/eu-west-1-all.json").exists());
    let noted = |kind: &str| {
        s.events(kind)
            .iter()
            .filter(|e| {
                e["rationale"]["notes"]
                    .to_string()
                    .contains("priced from the market's offerings")
            })
            .count()
    };
    assert_eq!(noted("plan_computed"), 1, "{:?}", s.events("plan_computed"));
    let bought = server.world().purchases();
    assert!(bought >= 1, "{first}");
    let inv = aws_inventory(&endpoint);
    assert_eq!(
        inv["savings_plans"].as_array().unwrap().len() as u32,
        bought
    );

    // Same data, same decision time: what was bought is now held, so nothing is bought again.
    let second = run_once(&s);
    assert!(!second.contains("\"outcome\":\"executed\""), "{second}");
    assert_eq!(noted("plan_computed"), 2);
    assert_eq!(
        server.world().calls("DescribeSavingsPlansOfferingRates"),
        rate_calls,
        "the second cycle prices from the day's cache"
    );
    assert_eq!(server.world().purchases(), bought, "{second}");
    assert_eq!(s.events("executed").len() as u32, bought);
    s.verify_audit();
}
