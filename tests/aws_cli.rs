//! The AWS sub-commands as a user runs them: the `commitd` binary, configured only through
//! the standard AWS environment variables, against the local test server.

mod daemon_support;

use chrono::{DateTime, Utc};
use commitd::aws::execute::SavingsPlanPurchase;
use commitd::aws::testserver::{TestServer, World};
use commitd::aws::{AwsClients, AwsSettings, StaticCredentials};
use commitd::domain::{Instrument, Money, PaymentOption, Term};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

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
    let bin = daemon_support::bin().to_path_buf();
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
    let args = |extra: &'static [&'static str]| {
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
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    for (extra, cached) in [
        (&[][..], false),
        (&[][..], true),
        (&["--refresh"][..], false),
    ] {
        let a = args(extra);
        let (ok, out, err) = tokio::task::spawn_blocking({
            let (b, e, h) = (bin.clone(), endpoint.clone(), home_path.clone());
            move || {
                commitd(
                    &b,
                    &e,
                    &h,
                    &a.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            }
        })
        .await
        .unwrap();
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["from_cache"], cached, "{extra:?}");
        assert_eq!(v["offers"].as_array().unwrap().len(), 24);
        assert_eq!(v["offers"][0]["product"]["instance_type"], "c5.xlarge");
    }

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

#[test]
fn aws_test_server_subcommand_serves_on_a_free_port() {
    let bin = daemon_support::bin().to_path_buf();
    let mut child = Command::new(&bin)
        .args(["aws-test-server", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().to_string();
    let addr = url.strip_prefix("http://").expect("first line is the URL");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /_commitd/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"purchases\":0"), "{text}");
}
