//! `commitd inventory --provider azure` and `commitd offerings --provider azure` as a user runs
//! them: the binary, configured only by the standard Azure variables and flags, against the peer.

use crate::common;
use commitd_testkit::azure_server::{AzurePeer, World};
use std::process::Command;

fn commitd(
    peer: &AzurePeer,
    home: &std::path::Path,
    secret: &str,
    args: &[&str],
) -> (bool, String, String) {
    let (tenant, client) = {
        let w = peer.world();
        (w.tenant_id.clone(), w.client_id.clone())
    };
    let out = Command::new(common::daemon::bin())
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("AZURE_TENANT_ID", tenant)
        .env("AZURE_CLIENT_ID", client)
        .env("AZURE_CLIENT_SECRET", secret)
        .env("AZURE_AUTHORITY_HOST", peer.url())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_offerings_commands_against_the_peer() {
    let mut world = World::new();
    world.page_size = 1;
    world.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Monthly", 4, 20);
    world.seed_reservation("Standard_E4s_v5", "westeurope", "P3Y", "Upfront", 1, 20);
    world.seed_savings_plan("3.5", "P3Y", false, 5);
    let peer = AzurePeer::start(world).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let secret = peer.world().client_secret.clone();
    let url = peer.url();
    let (ok, out, err) = commitd(
        &peer,
        home.path(),
        &secret,
        &[
            "inventory",
            "--provider",
            "azure",
            "--endpoint-url",
            &url,
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reservations"].as_array().unwrap().len(), 2);
    assert_eq!(v["savings_plans"].as_array().unwrap().len(), 1);
    assert_eq!(v["commitments"].as_array().unwrap().len(), 3);
    let (ok, table, err) = commitd(
        &peer,
        home.path(),
        &secret,
        &["inventory", "--provider", "azure", "--endpoint-url", &url],
    );
    assert!(ok, "{err}");
    assert!(
        table.contains("Standard_E4s_v5") && table.contains("95.25%"),
        "{table}"
    );
    assert!(table.contains("3 commitment(s)"), "{table}");
    assert!(!table.contains(&secret) && !err.contains(&secret));

    let scope = "/subscriptions/ed3a1871-612d-abcd-a849-c2542a68be83";
    let (ok, out, err) = commitd(
        &peer,
        home.path(),
        &secret,
        &[
            "offerings",
            "--provider",
            "azure",
            "--endpoint-url",
            &url,
            "--region",
            "westus",
            "--instance-type",
            "Standard_D2s_v5",
            "--billing-scope",
            scope,
            "--data-dir",
            data.path().to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["reservations"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows.iter().any(|r| r["upfront"] == "529.98"), "{out}");
    // Every quote answered: the card is cached where the daemon's Azure market reads it, and
    // the planner is offered Azure's prices for the size (either OS), exactly as quoted.
    let cached = v["cached"].as_str().expect("cached");
    assert!(
        std::path::Path::new(cached).starts_with(data.path()),
        "{cached}"
    );
    let m = commitd::markets::azure::AzureMarket::new(crate::clients(&peer, &crate::settings()))
        .with_offerings_cache(data.path());
    let card = commitd::markets::CommitmentMarket::offers(&m, chrono::Utc::now())
        .await
        .unwrap()
        .expect("the cached card is offered");
    for os in ["Linux", "Windows"] {
        let product = commitd::domain::Product {
            provider: commitd::domain::Provider::Azure,
            region: "westus".into(),
            instance_type: "Standard_D2s_v5".into(),
            os: os.into(),
            tenancy: "Shared".into(),
        };
        let offers = card.offers(&product);
        assert_eq!(offers.len(), 4, "{offers:?}");
        let one_year_upfront = offers
            .iter()
            .find(|o| {
                o.term == Some(commitd::domain::Term::ONE_YEAR)
                    && o.payment == commitd::domain::PaymentOption::AllUpfront
            })
            .unwrap();
        assert_eq!(
            one_year_upfront.effective_hourly_rate,
            rust_decimal::Decimal::new(605, 4)
        );
        assert_eq!(one_year_upfront.upfront_share, rust_decimal::Decimal::ONE);
    }
    // Without the cache, or a day later, nothing is offered (the source card prices).
    let stale = commitd::markets::CommitmentMarket::offers(
        &m,
        chrono::Utc::now() + chrono::Duration::days(2),
    )
    .await
    .unwrap();
    assert!(stale.is_none());

    // One quote failing (throttled past the retries) is named; the others still print.
    peer.world()
        .faults
        .push(commitd_testkit::azure_server::Fault::Status {
            op: commitd_testkit::azure_server::Op::CalculatePrice,
            status: 500,
            retry_after: None,
            times: 5,
        });
    let (ok, out, err) = commitd(
        &peer,
        home.path(),
        &secret,
        &[
            "offerings",
            "--provider",
            "azure",
            "--endpoint-url",
            &url,
            "--region",
            "westus",
            "--instance-type",
            "Standard_D2s_v5",
            "--billing-scope",
            scope,
            "--data-dir",
            data.path().to_str().unwrap(),
            "--max-attempts",
            "2",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("failed: 1yr") && out.contains("InternalServerError"),
        "{out}"
    );
    assert!(
        !out.contains("Cached for the planner"),
        "a partial card is not cached: {out}"
    );

    // A wrong secret: the command fails naming the credential, never printing the secret.
    let (ok, _, err) = commitd(
        &peer,
        home.path(),
        "bad-secret-123",
        &["inventory", "--provider", "azure", "--endpoint-url", &url],
    );
    assert!(!ok);
    assert!(
        err.contains("client secret") && err.contains("invalid_client"),
        "{err}"
    );
    assert!(!err.contains("bad-secret-123"), "{err}");
}
