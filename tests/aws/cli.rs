//! The AWS sub-commands as a user runs them: the `commitd` binary, configured only through
//! the standard AWS environment variables, against the local test server.

use crate::common;

use chrono::{DateTime, Utc};
use commitd::domain::{Instrument, Money, PaymentOption, Term};
use commitd::markets::aws::execute::SavingsPlanPurchase;
use commitd::markets::aws::{AwsClients, AwsSettings, StaticCredentials};
use commitd_testkit::aws_server::{Fault, TestServer, World};
use std::process::Command;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Runs `commitd ARGS` with only the standard AWS variables pointing at `endpoint`.
fn commitd(
    bin: &std::path::Path,
    endpoint: &str,
    home: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDCLI")
        .env("AWS_SECRET_ACCESS_KEY", "cli-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_offerings_commands_honour_the_aws_environment() {
    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    server.world().set_now(at("2025-03-05T10:00:00Z"));
    let c = AwsClients::connect(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
        }),
        ..AwsSettings::default()
    })
    .await
    .unwrap();
    let offering = c
        .find_savings_plan_offering(
            Instrument::ComputeSavingsPlan,
            Term::ONE_YEAR,
            PaymentOption::NoUpfront,
            None,
        )
        .await
        .unwrap()
        .value
        .unwrap();
    let id = c
        .create_savings_plan(&SavingsPlanPurchase {
            idempotency_key: "cli".into(),
            offering_id: offering.offering_id,
            commitment: Money::parse("0.75").unwrap(),
            payment: PaymentOption::NoUpfront,
            term: Term::ONE_YEAR,
            purchase_time: None,
        })
        .await
        .unwrap()
        .value;

    let endpoint = server.endpoint();
    let bin = common::daemon::bin().to_path_buf();
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_path_buf();
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (b, e, h) = (bin.clone(), endpoint.clone(), home_path.clone());
        move || commitd(&b, &e, &h, &["inventory", "--provider", "aws", "--json"])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["savings_plans"][0]["id"], id.as_str());
    assert_eq!(v["commitments"][0]["amount"]["value"], "0.75");
    assert_eq!(v["request_ids"].as_array().unwrap().len(), 2);

    let (ok, out, err) = tokio::task::spawn_blocking({
        let (b, e, h) = (bin.clone(), endpoint.clone(), home_path.clone());
        move || commitd(&b, &e, &h, &["inventory", "--provider", "aws"])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("ComputeSavingsPlan") && out.contains("0.75"),
        "{out}"
    );

    let data = home_path.join("data");
    // `commitd offerings ... EXTRA` against the server, off the runtime's threads.
    let offerings = |extra: &'static [&'static str]| {
        let mut a = vec![
            "offerings",
            "--provider",
            "aws",
            "--region",
            "us-east-1",
            "--instance-type",
            "c5.xlarge",
            "--json",
            "--data-dir",
        ];
        a.push(data.to_str().unwrap());
        a.extend_from_slice(extra);
        let a: Vec<String> = a.into_iter().map(str::to_string).collect();
        let (b, e, h) = (bin.clone(), endpoint.clone(), home_path.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                commitd(
                    &b,
                    &e,
                    &h,
                    &a.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            })
            .await
            .unwrap()
        }
    };
    for (extra, cached) in [
        (&[][..], false),
        (&[][..], true),
        (&["--refresh"][..], false),
    ] {
        let (ok, out, err) = offerings(extra).await;
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["from_cache"], cached, "{extra:?}");
        assert_eq!(v["offers"].as_array().unwrap().len(), 24);
        assert_eq!(v["offers"][0]["product"]["instance_type"], "c5.xlarge");
    }

    // The Savings Plans API refusing (a permission missing): the RI offerings still print,
    // the failure is named, and the day's complete card in the cache is not replaced.
    server
        .world()
        .inject_always("DescribeSavingsPlansOfferingRates", Fault::Unauthorized);
    let (ok, out, err) = offerings(&["--refresh"]).await;
    assert!(ok, "{err}");
    assert!(
        err.contains("savings plan rates") && err.contains("DescribeSavingsPlansOfferingRates"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let offers = v["offers"].as_array().unwrap();
    assert!(!offers.is_empty() && offers.len() < 24, "{v}");
    assert!(
        offers.iter().all(|o| o["offer"]["instrument"]
            .as_str()
            .unwrap_or("")
            .contains("ReservedInstance")),
        "{v}"
    );
    assert_eq!(v["failed"].as_array().unwrap().len(), 1, "{v}");
    let (ok, out, err) = offerings(&[]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["from_cache"], true);
    assert_eq!(v["offers"].as_array().unwrap().len(), 24);
    server
        .world()
        .clear_faults(Some("DescribeSavingsPlansOfferingRates"));

    // A bad endpoint fails clearly, naming the operation.
    let (ok, _, err) = tokio::task::spawn_blocking({
        let (b, h) = (bin.clone(), home_path.clone());
        move || {
            commitd(
                &b,
                "http://127.0.0.1:1",
                &h,
                &[
                    "inventory",
                    "--provider",
                    "aws",
                    "--max-attempts",
                    "1",
                    "--deadline-secs",
                    "5",
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        err.contains("DescribeSavingsPlans") && err.contains("no usable response"),
        "{err}"
    );
}
