//! The daemon planning from AWS Cost Explorer (`[source] cost_explorer_days`): the real
//! `commitd run --once` process reads usage from moto's GetCostAndUsage (injected results, as
//! moto serves them) through the real SDK, prices with the AWS test server's offerings (no rate
//! card at all), and buys there in autopilot.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use commitd::markets::aws::usage::{usage_windows, Granularity};
use commitd_testkit::aws_server::{TestServer, World};
use common::daemon::{aws_inventory, Setup, AWS_ENV, COMPUTE_ONLY_POLICY};
use serde_json::{json, Value};

/// One period of Cost Explorer's answer: `m5` m5.large instance-hours per hour and 4 c5.xlarge,
/// on demand. In daily periods (before the last 14 days) half of the m5.large hours were covered
/// by a reservation that has expired since: their usage records cost nothing, so the on-demand
/// price must come from the hourly periods.
fn period(start: DateTime<Utc>, g: Granularity, m5: f64) -> Value {
    let (end, hours, paid, fmt) = match g {
        Granularity::Hourly => (start + Duration::hours(1), 1.0, 1.0, "%Y-%m-%dT%H:%M:%SZ"),
        Granularity::Daily => (start + Duration::days(1), 24.0, 0.5, "%Y-%m-%d"),
    };
    let group = |t: &str, cost: f64, qty: f64| {
        json!({
            "Keys": [t, "eu-west-1"],
            "Metrics": {
                "UnblendedCost": {"Amount": format!("{cost:.6}"), "Unit": "USD"},
                "UsageQuantity": {"Amount": format!("{qty}"), "Unit": "Hrs"}
            }
        })
    };
    json!({
        "TimePeriod": {"Start": start.format(fmt).to_string(), "End": end.format(fmt).to_string()},
        "Total": {},
        "Groups": [
            group("m5.large", m5 * paid * hours * 0.096, m5 * hours),
            group("c5.xlarge", 4.0 * hours * 0.17, 4.0 * hours),
        ],
        "Estimated": false
    })
}

/// moto serves injected results in order, one per call: the daily window, then the hourly one.
fn results(now: DateTime<Utc>, days: i64) -> Value {
    let mut pages = Vec::new();
    for w in usage_windows(now, days) {
        let step = Duration::hours(w.granularity.hours());
        let mut periods = Vec::new();
        let mut t = w.start;
        while t < w.end {
            // Monday to Thursday 12 instances, Friday to Sunday 8: a weekly shape whose peak
            // (4 days in 7, under the 72% a Compute SP costs) is not worth committing to.
            let weekend = t.format("%u").to_string().parse::<u32>().unwrap() >= 5;
            periods.push(period(t, w.granularity, if weekend { 8.0 } else { 12.0 }));
            t += step;
        }
        pages.push(json!({ "ResultsByTime": periods }));
    }
    json!({ "results": pages })
}

#[test]
fn autopilot_plans_from_cost_explorer_and_buys_from_the_offerings() {
    let Some(moto) = common::moto::start_moto() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(TestServer::start(World::demo("eu-west-1")))
        .unwrap();
    let now = Utc::now();
    let status = rt.block_on(common::moto::moto_api(
        &moto,
        "/moto-api/static/ce/cost-and-usage-results",
        &results(now, 30),
    ));
    assert!(status.contains(" 201 "), "{status}");

    let aws = format!(
        "provider = \"aws\"\n[aws]\nendpoint_url = \"{}\"\ncost_explorer_endpoint_url = \"{}\"\n[aws.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\ndeadline_ms = 20000\nattempt_timeout_ms = 10000\n",
        server.endpoint(),
        moto.endpoint()
    );
    let s = Setup::with_daemon_settings("autopilot", false, &aws).unwrap();
    std::fs::remove_file(s.path("policies/aws.toml")).unwrap();
    std::fs::write(s.path("policies/compute.toml"), COMPUTE_ONLY_POLICY).unwrap();
    // No rate card, no exports, no plan file: Cost Explorer and the offerings only.
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("rates = \"rates.csv\"", "cost_explorer_days = 30")
        .replace("plan_file = \"plan.json\"\n", "");
    std::fs::write(&s.config, config).unwrap();

    let out = s.commitd_env(&["run", "--once"], AWS_ENV);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "run --once: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"outcome\":\"executed\""), "{stdout}");
    assert!(server.world().purchases() >= 1);

    let plans = s.events("plan_computed");
    assert_eq!(plans.len(), 1);
    let notes = plans[0]["rationale"]["notes"].to_string();
    assert!(
        notes.contains("planned from AWS Cost Explorer: 30 days, 2 requests"),
        "{notes}"
    );
    assert!(
        notes.contains("on-demand price 0.096000 USD/h taken from the bill"),
        "{notes}"
    );
    assert!(
        notes.contains("on-demand price 0.170000 USD/h taken from the bill"),
        "{notes}"
    );
    assert!(
        notes.contains("priced from the market's offerings"),
        "{notes}"
    );

    // The purchase is sized to the steady floor, not to the peak: the floor is 8 m5.large
    // (0.768/h on demand) and 4 c5.xlarge (0.68/h), 1.448/h on demand; a Compute SP at 72% of
    // on demand covers it with at most 1.0426/h.
    let inv = aws_inventory(&server.endpoint());
    let bought: f64 = inv["savings_plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["commitment"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        bought > 0.5 && bought <= 1.0426 + 1e-9,
        "bought {bought}/h: {inv}"
    );
    assert_eq!(
        s.events("executed").len(),
        inv["savings_plans"].as_array().unwrap().len()
    );
    s.verify_audit();
}

#[test]
fn cost_explorer_needs_the_aws_provider() {
    let s = Setup::new("datapilot", false).unwrap();
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("rates = \"rates.csv\"", "cost_explorer_days = 30")
        .replace("plan_file = \"plan.json\"\n", "");
    std::fs::write(&s.config, config).unwrap();
    let out = s.commitd(&["run", "--once"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cost_explorer_days reads AWS Cost Explorer")
            && err.contains("provider = \"aws\""),
        "{err}"
    );
}

/// `commitd usage --cost-explorer-days` shows what the daemon would plan from, through the
/// standard AWS variables only.
#[test]
fn the_usage_command_reads_cost_explorer() {
    let Some(moto) = common::moto::start_moto() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = Utc::now();
    let status = rt.block_on(common::moto::moto_api(
        &moto,
        "/moto-api/static/ce/cost-and-usage-results",
        &results(now, 3),
    ));
    assert!(status.contains(" 201 "), "{status}");
    let hours = usage_windows(now, 3)
        .iter()
        .map(|w| (w.end - w.start).num_hours())
        .sum::<i64>() as f64;
    let out = std::process::Command::new(common::daemon::bin())
        .args(["usage", "--cost-explorer-days", "3", "--json"])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .envs(AWS_ENV.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "AWS Cost Explorer, 3 days");
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{v}");
    let c5 = groups
        .iter()
        .find(|g| g["instance_type"] == "c5.xlarge")
        .unwrap();
    assert_eq!(c5["os"], "Linux");
    assert!(
        (c5["hours"].as_f64().unwrap() - 4.0 * hours).abs() < 1e-6,
        "{c5}"
    );
    let ode = c5["on_demand_cost"].as_f64().unwrap();
    assert!((ode - 4.0 * hours * 0.17).abs() < 1e-6, "{c5}");

    // Bad input: a day count Cost Explorer cannot serve is refused before any call.
    let out = std::process::Command::new(common::daemon::bin())
        .args(["usage", "--cost-explorer-days", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cost-explorer-days"));
}
