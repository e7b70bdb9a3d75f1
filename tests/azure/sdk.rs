//! The SDK clients against the peer: credentials, paging, quotes, purchases, errors.

use crate::{clients, env_of, market, peer, secret_env, settings};
use commitd::domain::{CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term};
use commitd::markets::azure::market::order_id_for_key;
use commitd::markets::azure::{AzureClients, AzureError, AzureMarket, AzureSettings};
use commitd::markets::{CommitmentMarket, Found, ProviderError, PurchaseRequest, PurchaseSpec};

pub fn reservation(n: u32, payment: PaymentOption) -> PurchaseSpec {
    PurchaseSpec {
        provider: Provider::Azure,
        account: None,
        instrument: Instrument::AzureReservation,
        term: Term::ONE_YEAR,
        payment,
        region: Some("westus".into()),
        family: None,
        instance_type: Some("Standard_D2s_v5".into()),
        os: None,
        tenancy: None,
        amount: CommitmentAmount::Instances(n),
    }
}

pub fn savings_plan(hourly: &str, payment: PaymentOption) -> PurchaseSpec {
    PurchaseSpec {
        provider: Provider::Azure,
        account: None,
        instrument: Instrument::AzureSavingsPlan,
        term: Term::THREE_YEARS,
        payment,
        region: None,
        family: None,
        instance_type: None,
        os: None,
        tenancy: None,
        amount: CommitmentAmount::HourlySpend(Money::parse(hourly).unwrap()),
    }
}

pub fn request(key: &str, spec: PurchaseSpec) -> PurchaseRequest {
    PurchaseRequest {
        idempotency_key: key.into(),
        spec,
        start: Hour(0),
        max_hourly_cost: Money::from_units(1_000),
        max_upfront: Money::from_units(10_000_000),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_follows_next_link_through_every_listing() {
    let peer = peer().await;
    {
        let mut w = peer.world();
        w.page_size = 2;
        for i in 0..5 {
            w.seed_reservation("Standard_D2s_v5", "westus", "P1Y", "Monthly", i + 1, 30);
        }
        w.seed_reservation("Standard_D4s_v5", "eastus", "P3Y", "Upfront", 2, 400);
        for amount in ["1.5", "0.25", "10"] {
            w.seed_savings_plan(amount, "P1Y", true, 10);
        }
    }
    let c = clients(&peer, &settings());
    let inv = c.inventory().await.unwrap();
    assert_eq!(inv.value.reservation_orders.len(), 6);
    assert_eq!(inv.value.reservations.len(), 6);
    assert_eq!(inv.value.savings_plan_orders.len(), 3);
    assert_eq!(inv.value.savings_plans.len(), 3);
    // 3 + 3 + 2 + 2 pages, then one GET per order for its price.
    let pages = peer
        .world()
        .ledger
        .requests
        .iter()
        .filter(|r| {
            r.starts_with("GET /providers/Microsoft.Capacity/reservationOrders")
                && !r.contains("/reservationOrders/")
        })
        .count();
    assert_eq!(pages, 3, "6 orders at 2 a page");
    let m = AzureMarket::new(c);
    let held = m.inventory().await.unwrap();
    assert_eq!(held.len(), 9);
    let upfront = held
        .iter()
        .find(|c| c.instance_type.as_deref() == Some("Standard_D4s_v5"))
        .unwrap();
    // 0.0780 USD/h x 2 x 26280 h = 4099.68 upfront, amortized exactly.
    assert_eq!(upfront.upfront, Money::parse("4099.68").unwrap());
    assert_eq!(upfront.hourly_cost, Money::parse("0.156").unwrap());
    assert_eq!(upfront.term, Term::THREE_YEARS);
    assert_eq!(upfront.payment, PaymentOption::AllUpfront);
    let monthly = held
        .iter()
        .find(|c| c.amount == CommitmentAmount::Instances(3))
        .unwrap();
    assert_eq!(monthly.payment, PaymentOption::NoUpfront);
    assert_eq!(monthly.upfront, Money::ZERO);
    // 0.0605 x 3 x 8760 = 1589.94 over 8760 h.
    assert_eq!(monthly.hourly_cost, Money::parse("0.1815").unwrap());
    let plans: Vec<_> = held
        .iter()
        .filter(|c| c.instrument == Instrument::AzureSavingsPlan)
        .collect();
    assert_eq!(plans.len(), 3);
    assert!(plans
        .iter()
        .any(|p| p.amount == CommitmentAmount::HourlySpend(Money::parse("0.25").unwrap())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_quotes_come_from_calculate_price() {
    let peer = peer().await;
    let m = market(&peer);
    let monthly = m
        .quote(&reservation(2, PaymentOption::NoUpfront))
        .await
        .unwrap();
    // 0.0605 x 2 x 8760 = 1059.96 for the year, paid in 12 instalments.
    assert_eq!(monthly.hourly_cost, Money::parse("0.121").unwrap());
    assert_eq!(monthly.upfront, Money::ZERO);
    let upfront = m
        .quote(&reservation(2, PaymentOption::AllUpfront))
        .await
        .unwrap();
    assert_eq!(upfront.upfront, Money::parse("1059.96").unwrap());
    assert!(upfront
        .offering
        .contains("Standard_D2s_v5 westus P1Y Upfront"));
    let mut unknown = reservation(1, PaymentOption::NoUpfront);
    unknown.instance_type = Some("Standard_Z99".into());
    let e = m.quote(&unknown).await.unwrap_err().to_string();
    assert!(
        e.contains("InvalidReservationSku") && e.contains("Standard_Z99"),
        "{e}"
    );
    let e = m
        .quote(&reservation(1, PaymentOption::PartialUpfront))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("PartialUpfront"), "{e}");
    let sp = m
        .quote(&savings_plan("2.5", PaymentOption::AllUpfront))
        .await
        .unwrap();
    assert_eq!(sp.hourly_cost, Money::parse("2.5").unwrap());
    assert_eq!(sp.upfront, Money::parse("65700").unwrap());
    peer.world().savings_plan_refusal =
        Some("Your provider has not enabled Savings Plan purchase on this subscription.".into());
    let e = m
        .quote(&savings_plan("2.5", PaymentOption::NoUpfront))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("CustomerCannotPurchaseSavingsPlan"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_is_named_by_its_key_and_read_back_after_polling() {
    let peer = peer().await;
    peer.world().polls_to_finish = 3;
    let m = market(&peer);
    let bought = m
        .purchase(&request(
            "commitd-p-1",
            reservation(2, PaymentOption::NoUpfront),
        ))
        .await
        .unwrap();
    let order = order_id_for_key("commitd-p-1");
    assert!(
        bought.commitment.id.starts_with(&order),
        "{}",
        bought.commitment.id
    );
    assert_eq!(bought.commitment.amount, CommitmentAmount::Instances(2));
    assert_eq!(
        bought.commitment.hourly_cost,
        Money::parse("0.121").unwrap()
    );
    {
        let w = peer.world();
        assert_eq!(w.ledger.reservation_purchases, vec![order.clone()]);
        // Polled the Location until the order was done.
        let polls = w
            .ledger
            .requests
            .iter()
            .filter(|r| r.contains("/Microsoft.Capacity/operationResults/"))
            .count();
        assert!(polls >= 2, "{polls} polls");
    }
    // The same key again: found by its name, nothing bought, no PUT sent.
    let again = m
        .purchase(&request(
            "commitd-p-1",
            reservation(2, PaymentOption::NoUpfront),
        ))
        .await
        .unwrap();
    assert_eq!(again.commitment.id, bought.commitment.id);
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 1);
    assert_eq!(peer.world().ledger.puts, 1);
    let found = m
        .find_by_idempotency_key("commitd-p-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.commitment.id, bought.commitment.id);
    assert!(m
        .find_by_idempotency_key("commitd-never")
        .await
        .unwrap()
        .is_none());

    // A savings plan through its alias, polled on Azure-AsyncOperation.
    let sp = m
        .purchase(&request(
            "commitd-p-2",
            savings_plan("1.25", PaymentOption::NoUpfront),
        ))
        .await
        .unwrap();
    assert_eq!(sp.commitment.instrument, Instrument::AzureSavingsPlan);
    assert_eq!(
        sp.commitment.amount,
        CommitmentAmount::HourlySpend(Money::parse("1.25").unwrap())
    );
    let w = peer.world();
    assert_eq!(
        w.ledger.savings_plan_purchases,
        vec![order_id_for_key("commitd-p-2")]
    );
    assert!(w
        .ledger
        .requests
        .iter()
        .any(|r| r.contains("/Microsoft.BillingBenefits/operationResults/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_above_the_approval_buys_nothing() {
    let peer = peer().await;
    let m = market(&peer);
    let mut r = request("commitd-p-3", reservation(2, PaymentOption::AllUpfront));
    r.max_upfront = Money::parse("1000").unwrap();
    let e = m.purchase(&r).await.unwrap_err();
    assert!(
        matches!(
            e,
            ProviderError::PriceAboveApproval {
                what: "upfront",
                ..
            }
        ),
        "{e}"
    );
    assert!(peer.world().ledger.reservation_purchases.is_empty());
    assert_eq!(peer.world().ledger.puts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_client_secret_workload_identity_and_managed_identity() {
    let peer = peer().await;
    // Client secret: a token, then every call bears it (the peer refuses others).
    let c = clients(&peer, &settings());
    c.inventory().await.unwrap();
    assert_eq!(peer.world().ledger.tokens_issued, 1, "the token is cached");
    c.inventory().await.unwrap();
    assert_eq!(peer.world().ledger.tokens_issued, 1);

    // Workload identity: the federated token file, read at each token request.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, peer.world().federated_token.clone()).unwrap();
    let (tenant, client) = {
        let w = peer.world();
        (w.tenant_id.clone(), w.client_id.clone())
    };
    let wi = env_of(&[
        ("AZURE_TENANT_ID", tenant.clone()),
        ("AZURE_CLIENT_ID", client.clone()),
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
        ("AZURE_AUTHORITY_HOST", peer.url()),
        ("AZURE_RESOURCE_MANAGER_ENDPOINT", peer.url()),
    ]);
    let c = AzureClients::connect_with(&settings(), &wi).unwrap();
    assert_eq!(c.credential().source().kind(), "workload identity");
    c.inventory().await.unwrap();
    // A rotated file with a token AAD does not accept: refused, naming the credential.
    std::fs::write(&file, "not-the-token").unwrap();
    let c = AzureClients::connect_with(&settings(), &wi).unwrap();
    let e = c.inventory().await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            AzureError::Credential {
                transient: false,
                ..
            }
        ) && text.contains("workload identity")
            && text.contains("invalid_client"),
        "{text}"
    );
    assert!(!text.contains("not-the-token"), "{text}");

    // Managed identity (IMDS), only when asked for.
    let mi = AzureSettings {
        managed_identity: true,
        managed_identity_endpoint: Some(format!("{}/metadata/identity/oauth2/token", peer.url())),
        ..settings()
    };
    let c = AzureClients::connect_with(
        &mi,
        &env_of(&[("AZURE_RESOURCE_MANAGER_ENDPOINT", peer.url())]),
    )
    .unwrap();
    c.inventory().await.unwrap();

    // A wrong secret: refused, final, the secret never shown.
    let mut env = secret_env(&peer);
    env[2].1 = "wrong-secret-value".into();
    let c = AzureClients::connect_with(&settings(), &env_of(&env)).unwrap();
    let m = AzureMarket::new(c);
    let e = m.inventory().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ProviderError::Refused { .. }), "{text}");
    assert!(
        text.contains("client secret") && text.contains("AADSTS7000215"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-value"), "{text}");
    // No credential at all: named before anything is sent.
    let e = AzureClients::connect_with(&settings(), &env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("AZURE_CLIENT_SECRET") && e.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_before_anything_is_sent() {
    let peer = peer().await;
    let no_scope = AzureMarket::new(clients(
        &peer,
        &AzureSettings {
            billing_scope_id: None,
            ..settings()
        },
    ));
    let e = no_scope
        .purchase(&request(
            "commitd-p-4",
            reservation(1, PaymentOption::NoUpfront),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("billing_scope_id"), "{e}");
    let m = market(&peer);
    let mut no_region = reservation(1, PaymentOption::NoUpfront);
    no_region.region = None;
    let e = m
        .purchase(&request("k", no_region))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("region is required"), "{e}");
    let e = m
        .purchase(&request("k", reservation(0, PaymentOption::NoUpfront)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 or more instances"), "{e}");
    let mut aws = reservation(1, PaymentOption::NoUpfront);
    aws.provider = Provider::Aws;
    assert!(matches!(
        m.purchase(&request("k", aws)).await.unwrap_err(),
        ProviderError::NoOffer { .. }
    ));
    assert_eq!(peer.world().ledger.puts, 0);
    // The spec's account is the subscription billed.
    let mut other = reservation(1, PaymentOption::NoUpfront);
    other.account = Some("not a subscription".into());
    let e = m
        .purchase(&request("commitd-p-5", other))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("properties.billingScopeId"), "{e}");
    // A found order in a failed state is for a person, not bought again.
    let order = order_id_for_key("commitd-p-6");
    m.purchase(&request(
        "commitd-p-6",
        reservation(1, PaymentOption::NoUpfront),
    ))
    .await
    .unwrap();
    peer.world().orders.get_mut(&order).unwrap().failed = true;
    let found = m
        .find_purchase(
            &request("commitd-p-6", reservation(1, PaymentOption::NoUpfront)),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&found, Found::Unclear(why) if why.contains("BillingFailed")),
        "{found:?}"
    );
    let e = m
        .purchase(&request(
            "commitd-p-6",
            reservation(1, PaymentOption::NoUpfront),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("BillingFailed"), "{e}");
    assert_eq!(peer.world().ledger.reservation_purchases.len(), 1);
}
