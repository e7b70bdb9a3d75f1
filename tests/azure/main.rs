//! The Azure market: the real SDK clients (azure_mgmt_reservations / azure_mgmt_billingbenefits
//! 0.21 over our own transport and credential) against the local Azure peer, the official
//! example answers, faults, and the CLI.
//!
//! One test binary per area (each links the whole crate): one module per topic.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod examples;
mod exchanges;
mod executor;
mod faults;
mod returns;
mod sdk;

use commitd::markets::azure::{AzureClients, AzureMarket, AzureRetrySettings, AzureSettings};
use commitd_testkit::azure_server::{AzurePeer, World};
use std::collections::BTreeMap;

/// The environment a client reads, as a map (tests never touch the process's).
pub fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

/// The client-secret environment the peer accepts.
pub fn secret_env(peer: &AzurePeer) -> Vec<(&'static str, String)> {
    let w = peer.world();
    vec![
        ("AZURE_TENANT_ID", w.tenant_id.clone()),
        ("AZURE_CLIENT_ID", w.client_id.clone()),
        ("AZURE_CLIENT_SECRET", w.client_secret.clone()),
        ("AZURE_AUTHORITY_HOST", peer.url()),
        ("AZURE_RESOURCE_MANAGER_ENDPOINT", peer.url()),
    ]
}

/// Fast retries and polls, so fault tests take milliseconds.
pub fn fast() -> AzureRetrySettings {
    AzureRetrySettings {
        max_retries: 2,
        initial_delay_ms: 5,
        max_delay_ms: 20,
        max_total_ms: 5_000,
        attempt_timeout_ms: 5_000,
        operation_timeout_ms: 10_000,
        poll_interval_ms: 10,
        max_poll_interval_ms: 2_000,
    }
}

pub fn settings() -> AzureSettings {
    AzureSettings {
        billing_scope_id: Some("/subscriptions/ed3a1871-612d-abcd-a849-c2542a68be83".into()),
        retry: fast(),
        ..AzureSettings::default()
    }
}

pub fn clients(peer: &AzurePeer, s: &AzureSettings) -> AzureClients {
    AzureClients::connect_with(s, &env_of(&secret_env(peer))).unwrap()
}

pub fn market(peer: &AzurePeer) -> AzureMarket {
    AzureMarket::new(clients(peer, &settings()))
}

pub async fn peer() -> AzurePeer {
    AzurePeer::start(World::new()).await.unwrap()
}
