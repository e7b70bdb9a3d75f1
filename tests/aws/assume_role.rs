//! Assume-role through the real SDK: aws-config's `AssumeRoleProvider` calls STS AssumeRole on
//! the local test server (Query protocol, XML answer) with the base credentials, and every
//! later call must be signed with the temporary credentials the server issued (it checks the
//! access key id and the session token).

use commitd::markets::aws::{
    AssumeRole, AwsClients, AwsSettings, RetrySettings, StaticCredentials,
};
use commitd_testkit::aws_server::{TestServer, World};

const ROLE: &str = "arn:aws:iam::444455556666:role/commitd-buyer";

fn settings(server: &TestServer, role: Option<AssumeRole>) -> AwsSettings {
    AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint()),
        static_credentials: Some(StaticCredentials {
            access_key_id: "AKIDBASEPAYER".into(),
            secret_access_key: "base-secret".into(),
        }),
        assume_role: role,
        retry: RetrySettings {
            max_attempts: 1,
            initial_backoff_ms: 5,
            max_backoff_ms: 10,
            deadline_ms: 10_000,
            attempt_timeout_ms: 5_000,
        },
        ..AwsSettings::default()
    }
}

#[tokio::test]
async fn the_role_is_assumed_and_later_calls_use_its_credentials() {
    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    server.world().require_external_id(ROLE, "finops-42");
    let clients = AwsClients::connect(&settings(
        &server,
        Some(AssumeRole {
            role_arn: ROLE.into(),
            external_id: Some("finops-42".into()),
            session_name: Some("commitd-test".into()),
        }),
    ))
    .await
    .unwrap();
    let inv = clients.inventory().await.unwrap();
    assert!(inv.value.savings_plans.is_empty());
    let w = server.world();
    let callers = w.callers().to_vec();
    // STS first, with the base keys; then the inventory calls, with the issued session.
    assert_eq!(
        callers.first().map(|(op, k)| (op.as_str(), k.as_str())),
        Some(("AssumeRole", "AKIDBASEPAYER")),
        "{callers:?}"
    );
    assert_eq!(
        w.calls("AssumeRole"),
        1,
        "credentials are cached, not re-assumed per call"
    );
    let later: Vec<_> = callers.iter().skip(1).collect();
    assert!(
        later.iter().any(|(op, _)| op == "DescribeSavingsPlans")
            && later
                .iter()
                .any(|(op, _)| op == "DescribeReservedInstances"),
        "{callers:?}"
    );
    for (op, key) in later {
        assert!(key.starts_with("ASIA"), "{op} signed with {key}");
        let session = w
            .session(key)
            .unwrap_or_else(|| panic!("{op}: {key} was not issued by the server"));
        assert_eq!(session.role_arn, ROLE);
    }
}

#[tokio::test]
async fn a_wrong_external_id_is_refused_and_nothing_is_called_with_base_keys() {
    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    server.world().require_external_id(ROLE, "finops-42");
    let clients = AwsClients::connect(&settings(
        &server,
        Some(AssumeRole {
            role_arn: ROLE.into(),
            external_id: Some("wrong".into()),
            session_name: None,
        }),
    ))
    .await
    .unwrap();
    let err = clients.inventory().await.unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("credential") || err.contains("AccessDenied"),
        "{err}"
    );
    let w = server.world();
    assert!(w.calls("AssumeRole") >= 1);
    // The account's APIs were never called with the payer's own keys.
    assert!(
        w.callers().iter().all(|(op, _)| op == "AssumeRole"),
        "{:?}",
        w.callers()
    );
}

#[tokio::test]
async fn without_a_role_the_base_keys_sign_every_call() {
    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    let clients = AwsClients::connect(&settings(&server, None)).await.unwrap();
    clients.inventory().await.unwrap();
    let w = server.world();
    assert_eq!(w.calls("AssumeRole"), 0);
    assert!(w.callers().iter().all(|(_, k)| k == "AKIDBASEPAYER"));
}

/// An organization: purchases go to the account the proposal names, with that account's
/// assumed role; the payer's go with the base credentials; an unconfigured account is refused
/// before any call.
#[tokio::test]
async fn an_organization_routes_each_purchase_to_its_accounts_role() {
    use commitd::domain::{
        CommitmentAmount, Hour, Instrument, Money, PaymentOption, Provider, Term,
    };
    use commitd::markets::aws::market::{AwsMarket, AwsOrganization};
    use commitd::markets::{CommitmentMarket, ProviderError, PurchaseRequest, PurchaseSpec};

    let server = TestServer::start(World::demo("us-east-1")).await.unwrap();
    let payer = AwsMarket::new(AwsClients::connect(&settings(&server, None)).await.unwrap());
    let linked = AwsMarket::new(
        AwsClients::connect(&settings(
            &server,
            Some(AssumeRole {
                role_arn: ROLE.into(),
                external_id: None,
                session_name: None,
            }),
        ))
        .await
        .unwrap(),
    );
    let org = AwsOrganization::new(payer, vec![("444455556666".into(), linked)]);
    let request = |key: &str, account: Option<&str>| PurchaseRequest {
        idempotency_key: key.into(),
        spec: PurchaseSpec {
            provider: Provider::Aws,
            account: account.map(str::to_string),
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            region: None,
            family: None,
            instance_type: None,
            os: None,
            tenancy: None,
            amount: CommitmentAmount::HourlySpend(Money::parse("1.5").unwrap()),
        },
        start: Hour::from_datetime(chrono::Utc::now()),
        max_hourly_cost: Money::parse("1.5").unwrap(),
        max_upfront: Money::ZERO,
    };
    let signer_of_last_purchase = |server: &TestServer| {
        server
            .world()
            .callers()
            .iter()
            .rev()
            .find(|(op, _)| op == "CreateSavingsPlan")
            .map(|(_, k)| k.clone())
            .unwrap()
    };

    org.purchase(&request("linked-1", Some("444455556666")))
        .await
        .unwrap();
    let key = signer_of_last_purchase(&server);
    assert!(key.starts_with("ASIA"), "{key}");
    assert_eq!(server.world().session(&key).unwrap().role_arn, ROLE);

    org.purchase(&request("payer-1", None)).await.unwrap();
    assert_eq!(signer_of_last_purchase(&server), "AKIDBASEPAYER");

    let calls = server.world().calls("CreateSavingsPlan");
    let err = org
        .purchase(&request("nowhere-1", Some("999999999999")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Refused { message, .. } if message.contains("[aws.accounts.999999999999]")),
        "{err}"
    );
    assert_eq!(server.world().calls("CreateSavingsPlan"), calls);
    assert_eq!(server.world().purchases(), 2);
    // Reconciliation finds a purchase whatever account it went to.
    assert!(org
        .find_by_idempotency_key("linked-1")
        .await
        .unwrap()
        .is_some());
    assert!(org
        .find_by_idempotency_key("nowhere-1")
        .await
        .unwrap()
        .is_none());
}
