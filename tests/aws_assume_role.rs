//! Assume-role through the real SDK: aws-config's `AssumeRoleProvider` calls STS AssumeRole on
//! the local test server (Query protocol, XML answer) with the base credentials, and every
//! later call must be signed with the temporary credentials the server issued (it checks the
//! access key id and the session token).

use commitd::aws::testserver::{TestServer, World};
use commitd::aws::{AssumeRole, AwsClients, AwsSettings, RetrySettings, StaticCredentials};

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
