//! Configuration: one TOML file plus `COMMITD_` environment overrides.
//!
//! Precedence: built-in defaults < the file < environment variables. A nested key is reached
//! with a double underscore: `COMMITD_SOURCE__SCENARIO=examples/demo` sets `[source] scenario`.
//! Values are parsed as TOML scalars when they look like one (`true`, `42`, `0.5`), else taken as
//! strings, so every setting can be overridden without quoting tricks.
//!
//! Secrets (database passwords, API tokens, webhook URLs) are wrapped in [`Secret`], whose
//! `Debug` and `Display` never show the value; [`Config::redacted`] is what gets printed.

use crate::dburl::redact_url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Bounds of `[source] cost_explorer_days`.
pub const MIN_COST_EXPLORER_DAYS: u32 = 14;
pub const MAX_COST_EXPLORER_DAYS: u32 = 365;

/// The environment variable naming the audit checkpoint key file (overrides
/// `[audit] checkpoint_key`).
pub const AUDIT_KEY_FILE_ENV: &str = "COMMITD_AUDIT_KEY_FILE";

/// Environment variables with the prefix that are not configuration keys: the CLI's own
/// (tests and benchmarks use `COMMITD_TEST_*` and `COMMITD_BENCH_*`, which are never
/// configuration either).
const NOT_CONFIG_KEYS: &[&str] = &[
    "COMMITD_LOG",
    "COMMITD_LOG_FORMAT",
    "COMMITD_CONFIG",
    // The checkpoint key's file (docs/audit.md): applied to `[audit] checkpoint_key` by hand,
    // since its name is the one operators know, not `COMMITD_AUDIT__CHECKPOINT_KEY`.
    "COMMITD_AUDIT_KEY_FILE",
    // The CLI's approver token (`proposals approve`): a secret, never a setting.
    "COMMITD_TOKEN",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A value that must never be printed or logged.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a connection, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

pub use commitd_core::policy::Mode;

/// Which planner decides (`[planner] kind`).
pub use crate::plan::{PlannerConfig, PlannerKind};

/// `[planner]`: the [`PlannerConfig`] `commitd backtest --planner-config` reads too, so that
/// what the backtest measures is what the daemon runs. `planner = "forecast"` (a kind alone,
/// the form before `[planner]` existed) still reads, with the default tuning.
fn planner_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PlannerConfig, D::Error> {
    struct Setting;
    impl<'de> serde::de::Visitor<'de> for Setting {
        type Value = PlannerConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(
                "a [planner] table or a planner kind (\"lookback\", \"forecast\", \"ladder\")",
            )
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PlannerConfig, E> {
            let kind = PlannerKind::deserialize(serde::de::value::StrDeserializer::<E>::new(v))?;
            Ok(PlannerConfig {
                kind,
                ..PlannerConfig::default()
            })
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            map: M,
        ) -> Result<PlannerConfig, M::Error> {
            PlannerConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Setting)
}

/// Where usage, prices and existing commitments come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A scenario directory (scenario.toml, usage, rates, commitments).
    pub scenario: Option<PathBuf>,
    /// FOCUS CostAndUsage exports: a file or a directory tree.
    pub focus: Option<PathBuf>,
    /// Rate card (scenario `rates.csv` format).
    pub rates: Option<PathBuf>,
    /// Existing commitments (FOCUS 1.3 ContractCommitment + x_ columns).
    pub commitments: Option<PathBuf>,
    /// Usage from AWS Cost Explorer instead of exports, this many days back (hourly for the
    /// newest 14, daily before): for small accounts without FOCUS exports. Needs
    /// `[daemon] provider = "aws"`; `rates` is optional (on-demand prices are then read from
    /// Cost Explorer's costs, commitment prices from the offering APIs).
    pub cost_explorer_days: Option<u32>,
    /// With `scenario`: the cycle's own time, inside the scenario's evaluation window, is the
    /// decision time (the daemon replays the scenario day by day, as `commitd backtest` does);
    /// else every cycle decides at the scenario's decision time.
    #[serde(default)]
    pub scenario_follows_clock: bool,
}

/// The long-running service (`commitd run`): schedules, HTTP, approvals, shutdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Address of the HTTP API (health, readiness, metrics, proposals), e.g. "0.0.0.0:8080".
    /// Unset: no HTTP server (`--listen` overrides).
    pub listen: Option<String>,
    /// When to plan (cron with seconds, UTC): "0 0 6 * * *" = 06:00 UTC daily.
    pub plan_schedule: String,
    /// When to execute approved proposals and reconcile (cron with seconds, UTC).
    pub execute_schedule: String,
    /// SIGTERM: how long the step in flight may take to finish before the process exits.
    pub shutdown_grace_seconds: u64,
    /// A proposal not decided within this many hours expires.
    pub proposal_max_age_hours: u32,
    /// The executor lease: a replica that stops renewing loses it after this long.
    pub lease_ttl_seconds: u64,
    /// Where people reach the API (links in chat notifications).
    pub public_url: Option<String>,
    /// Slack-compatible incoming webhook, https:// (or http:// for a local relay).
    pub webhook_url: Option<Secret>,
    /// Extra trusted CA certificates (PEM) for the webhook's TLS, on top of the system roots:
    /// for a hook or relay behind a private CA.
    pub webhook_ca_file: Option<PathBuf>,
    /// Use this plan (JSON) instead of computing one: replays a plan computed elsewhere.
    pub plan_file: Option<PathBuf>,
    /// Where purchases are made: "sim" (the built-in simulated market, the default), "aws"
    /// (the AWS SDK, settings in `[aws]`) or "azure" (the Azure SDK, settings in `[azure]`).
    pub provider: MarketKind,
    /// Several clouds at once, instead of `provider`: `providers = ["aws", "azure"]` runs one
    /// market per provider side by side (each with its own section) and routes every action
    /// to the market of the provider it names (`markets::route`).
    pub providers: Vec<MarketKind>,
}

impl DaemonConfig {
    /// The markets the daemon buys in: `providers` when set, else the one `provider`.
    pub fn markets(&self) -> Vec<MarketKind> {
        if self.providers.is_empty() {
            vec![self.provider]
        } else {
            self.providers.clone()
        }
    }

    fn validate_markets(&self) -> Result<(), String> {
        if self.providers.is_empty() {
            return Ok(());
        }
        if self.provider != MarketKind::Sim {
            return Err(format!(
                "[daemon] sets both provider = \"{}\" and providers: set one (providers = [\"aws\", \"azure\"] for several clouds)",
                self.provider
            ));
        }
        for (i, kind) in self.providers.iter().enumerate() {
            if *kind == MarketKind::Sim {
                return Err("[daemon] providers: 'sim' is a market of every provider on its own; it cannot be combined (use provider = \"sim\")".into());
            }
            if self.providers[..i].contains(kind) {
                return Err(format!("[daemon] providers names '{kind}' twice"));
            }
        }
        Ok(())
    }
}

/// The market the service buys in (`[daemon] provider`), parsed once when the configuration
/// loads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum MarketKind {
    /// The built-in simulated market, priced from the `[source]` rate card.
    #[default]
    Sim,
    /// AWS through its SDK, with the settings of `[aws]`.
    Aws,
    /// Azure through its SDK, with the settings of `[azure]`.
    Azure,
}

impl MarketKind {
    /// The provider this market buys from; None for the simulated market, which sells every
    /// provider's commitments.
    pub fn provider(self) -> Option<crate::domain::Provider> {
        match self {
            MarketKind::Sim => None,
            MarketKind::Aws => Some(crate::domain::Provider::Aws),
            MarketKind::Azure => Some(crate::domain::Provider::Azure),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MarketKind::Sim => "sim",
            MarketKind::Aws => "aws",
            MarketKind::Azure => "azure",
        }
    }
}

impl std::fmt::Display for MarketKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for MarketKind {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "sim" => Ok(MarketKind::Sim),
            "aws" => Ok(MarketKind::Aws),
            "azure" => Ok(MarketKind::Azure),
            other => Err(format!(
                "[daemon] provider = '{other}': the built-in providers are 'sim' (the simulated \
                 market), 'aws' and 'azure'"
            )),
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: None,
            plan_schedule: "0 0 6 * * *".into(),
            execute_schedule: "0 */5 * * * *".into(),
            shutdown_grace_seconds: 30,
            proposal_max_age_hours: 72,
            lease_ttl_seconds: 60,
            public_url: None,
            webhook_url: None,
            webhook_ca_file: None,
            plan_file: None,
            provider: MarketKind::Sim,
            providers: Vec::new(),
        }
    }
}

/// The HTTP API's transport and limits (`commitd run --listen`), see docs/operations.md,
/// "The HTTP API: TLS and limits".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Certificate chain (PEM) for HTTPS; with `tls_key`. Unset: plain HTTP (behind a
    /// TLS-terminating proxy, or on localhost).
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A connection must deliver a request's headers (and finish the TLS handshake) within
    /// this many seconds of starting to, or it is closed: slow clients cannot hold
    /// connections open.
    pub header_read_timeout_seconds: u64,
    /// A request (reading its body and answering it) must finish within this many seconds
    /// (else 408 and the connection closes).
    pub request_timeout_seconds: u64,
    /// Open connections at most; one more is closed at once (over HTTP after a 503).
    pub max_connections: usize,
    /// The largest request body accepted (413 beyond), read only after authentication.
    pub max_body_bytes: usize,
    /// How long a web console session lives (minutes, 1..=1440); it also ends with its token.
    pub console_session_minutes: u32,
    /// A saved `commitd backtest --json` report the console's backtest page shows (read at
    /// each visit of the page); relative to the configuration file.
    pub backtest_report: Option<PathBuf>,
}

/// A web console session's lifetime when `[api] console_session_minutes` is not set (a
/// working day).
pub const DEFAULT_CONSOLE_SESSION_MINUTES: u32 = 480;
/// The longest `[api] console_session_minutes` (the session store refuses longer ones too).
pub const MAX_CONSOLE_SESSION_MINUTES: u32 = 1440;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tls_cert: None,
            tls_key: None,
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_connections: 256,
            max_body_bytes: 64 * 1024,
            console_session_minutes: DEFAULT_CONSOLE_SESSION_MINUTES,
            backtest_report: None,
        }
    }
}

impl ApiConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: String| Err((key.to_string(), message));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad(
                if self.tls_cert.is_some() {
                    "api.tls_key"
                } else {
                    "api.tls_cert"
                },
                "tls_cert and tls_key go together: set both (HTTPS) or neither (HTTP)".into(),
            );
        }
        for (key, v) in [
            (
                "api.header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            ("api.request_timeout_seconds", self.request_timeout_seconds),
        ] {
            if !(1..=600).contains(&v) {
                return bad(key, format!("{v} is outside 1..=600 seconds"));
            }
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return bad(
                "api.max_connections",
                format!("{} is outside 1..=100000", self.max_connections),
            );
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return bad(
                "api.max_body_bytes",
                format!(
                    "{} is outside 1024..=16777216 (the API's bodies are a reason, a few bytes)",
                    self.max_body_bytes
                ),
            );
        }
        if !(1..=MAX_CONSOLE_SESSION_MINUTES).contains(&self.console_session_minutes) {
            return bad(
                "api.console_session_minutes",
                format!(
                    "{} is outside 1..={}",
                    self.console_session_minutes, MAX_CONSOLE_SESSION_MINUTES
                ),
            );
        }
        Ok(())
    }
}

/// Who people are (docs/operations.md, "Identity").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// OS login name -> the identity recorded when that user approves or rejects from the CLI
    /// without a token, e.g. `{ alice = "alice@example.com" }`. The login is the process's
    /// real user id looked up in the user database (getpwuid), never `$USER`, which anyone
    /// can set. Identities follow the token-name rules and may not be reserved ones.
    pub os_users: BTreeMap<String, String>,
    /// Lifetime of a new or rotated token when `--ttl` is not given.
    pub token_ttl_days: u32,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            os_users: BTreeMap::new(),
            token_ttl_days: crate::identity::DEFAULT_TTL_DAYS as u32,
        }
    }
}

impl IdentityConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        for (login, identity) in &self.os_users {
            let key = format!("identity.os_users.{login}");
            let login_ok = !login.is_empty()
                && login.len() <= 32
                && login
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if !login_ok {
                return Err((key, format!("'{login}' is not an OS login name")));
            }
            if let Err(e) = crate::identity::check_identity(identity) {
                return Err((key, format!("'{identity}': {e}")));
            }
        }
        let max = crate::identity::MAX_TTL_DAYS as u32;
        if !(1..=max).contains(&self.token_ttl_days) {
            return Err((
                "identity.token_ttl_days".into(),
                format!("{} is outside 1..={max}", self.token_ttl_days),
            ));
        }
        Ok(())
    }
}

/// The AWS provider (`[daemon] provider = "aws"`): how the daemon reaches the account(s).
///
/// Credentials always come from the standard AWS chain (environment `AWS_ACCESS_KEY_ID` ...,
/// `AWS_PROFILE`, SSO, web identity, IMDS), never from this file; `AWS_REGION` and
/// `AWS_ENDPOINT_URL` apply when `region` / `endpoint_url` are not set here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Region for EC2 (RIs are regional) and the offerings; None: `AWS_REGION` / the profile's.
    pub region: Option<String>,
    /// Endpoint override (a VPC endpoint, or a local test peer); None: `AWS_ENDPOINT_URL` or
    /// the real AWS endpoints.
    pub endpoint_url: Option<String>,
    /// Shared-config profile; None: `AWS_PROFILE` or "default".
    pub profile: Option<String>,
    /// Role to assume for the account purchases without an account go to (the payer).
    pub assume_role: Option<crate::markets::aws::AssumeRole>,
    /// Linked accounts of an organization, by 12-digit account id: the role to assume there.
    /// A purchase whose `account` is one of these is made with that role's credentials.
    pub accounts: BTreeMap<String, crate::markets::aws::AssumeRole>,
    /// Endpoint override for Cost Explorer only (its own VPC endpoint, or a separate local
    /// peer); None: the same endpoint as the other services.
    pub cost_explorer_endpoint_url: Option<String>,
    /// Attempts, backoff and deadline of every AWS call.
    pub retry: crate::markets::aws::RetrySettings,
}

impl AwsConfig {
    /// Checks what AWS would only reject at the first call. Errors name the key.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: String| Err((key.to_string(), message));
        if let Some(region) = &self.region {
            // Region names are lower-case words and digits joined by dashes: "eu-west-1".
            let ok = region.split('-').count() >= 3
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return bad(
                    "aws.region",
                    format!("'{region}' is not an AWS region name (like eu-west-1)"),
                );
            }
        }
        for (key, url) in [
            ("aws.endpoint_url", &self.endpoint_url),
            (
                "aws.cost_explorer_endpoint_url",
                &self.cost_explorer_endpoint_url,
            ),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                    return bad(key, format!("'{url}' is not an http:// or https:// URL"));
                }
            }
        }
        if let Some(role) = &self.assume_role {
            check_role("aws.assume_role", role)?;
        }
        for (account, role) in &self.accounts {
            let key = format!("aws.accounts.{account}");
            if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
                return bad(
                    &key,
                    format!("'{account}' is not a 12-digit AWS account id"),
                );
            }
            check_role(&key, role)?;
            // The role must live in the account it is listed under, or purchases meant for
            // one account would silently land in another.
            if role.role_arn.split(':').nth(4) != Some(account.as_str()) {
                return bad(
                    &format!("{key}.role_arn"),
                    format!("'{}' is not a role of account {account}", role.role_arn),
                );
            }
        }
        let r = &self.retry;
        if r.max_attempts == 0 || r.max_attempts > 20 {
            return bad(
                "aws.retry.max_attempts",
                format!("{} is outside 1..=20", r.max_attempts),
            );
        }
        if r.initial_backoff_ms > r.max_backoff_ms {
            return bad(
                "aws.retry.initial_backoff_ms",
                format!(
                    "{} is more than max_backoff_ms = {}",
                    r.initial_backoff_ms, r.max_backoff_ms
                ),
            );
        }
        if r.deadline_ms == 0 || r.attempt_timeout_ms == 0 || r.attempt_timeout_ms > r.deadline_ms {
            return bad(
                "aws.retry.attempt_timeout_ms",
                format!(
                    "attempt_timeout_ms = {} must be > 0 and at most deadline_ms = {}",
                    r.attempt_timeout_ms, r.deadline_ms
                ),
            );
        }
        Ok(())
    }

    /// The client settings for the payer account (`account` None) or a linked account.
    pub fn settings(&self, account: Option<&str>) -> crate::markets::aws::AwsSettings {
        crate::markets::aws::AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            profile: self.profile.clone(),
            assume_role: match account {
                None => self.assume_role.clone(),
                Some(a) => self.accounts.get(a).cloned(),
            },
            static_credentials: None,
            retry: self.retry.clone(),
        }
    }
}

/// The Azure provider (`[daemon] provider = "azure"`): how the daemon reaches Azure.
///
/// Credentials come from the standard environment variables (`AZURE_TENANT_ID`,
/// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` or `AZURE_FEDERATED_TOKEN_FILE`) or a managed
/// identity, never from this file; `AZURE_RESOURCE_MANAGER_ENDPOINT` and `AZURE_AUTHORITY_HOST`
/// apply when `endpoint_url` / `authority_host` are not set here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Resource Manager endpoint (a sovereign cloud, a local peer); None:
    /// `AZURE_RESOURCE_MANAGER_ENDPOINT`, else https://management.azure.com.
    pub endpoint_url: Option<String>,
    /// Login host; None: `AZURE_AUTHORITY_HOST`, else https://login.microsoftonline.com.
    pub authority_host: Option<String>,
    /// Use the managed identity (IMDS) instead of the environment's credential.
    pub managed_identity: bool,
    /// Where purchases are billed: `/subscriptions/<id>` or a billing account / profile scope.
    pub billing_scope_id: Option<String>,
    /// Retries, deadlines and long-running operation polling of every Azure call.
    pub retry: crate::markets::azure::AzureRetrySettings,
}

impl AzureConfig {
    /// Checks what Azure would only reject at the first call. Errors name the key.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: String| Err((key.to_string(), message));
        for (key, url) in [
            ("azure.endpoint_url", &self.endpoint_url),
            ("azure.authority_host", &self.authority_host),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                    return bad(key, format!("'{url}' is not an http:// or https:// URL"));
                }
            }
        }
        if let Some(scope) = &self.billing_scope_id {
            let ok = scope.starts_with("/subscriptions/")
                || scope.starts_with("/providers/Microsoft.Billing/billingAccounts/");
            if !ok || scope.contains(char::is_whitespace) {
                return bad(
                    "azure.billing_scope_id",
                    format!(
                        "'{scope}' is not a billing scope (/subscriptions/<id> or /providers/Microsoft.Billing/billingAccounts/...)"
                    ),
                );
            }
        }
        let r = &self.retry;
        if r.max_retries > 20 {
            return bad(
                "azure.retry.max_retries",
                format!("{} is outside 0..=20", r.max_retries),
            );
        }
        if r.attempt_timeout_ms == 0 {
            return bad("azure.retry.attempt_timeout_ms", "must be > 0".into());
        }
        if r.operation_timeout_ms == 0 {
            return bad("azure.retry.operation_timeout_ms", "must be > 0".into());
        }
        if r.poll_interval_ms > r.max_poll_interval_ms {
            return bad(
                "azure.retry.poll_interval_ms",
                format!(
                    "{} is more than max_poll_interval_ms = {}",
                    r.poll_interval_ms, r.max_poll_interval_ms
                ),
            );
        }
        Ok(())
    }

    /// The client settings.
    pub fn settings(&self) -> crate::markets::azure::AzureSettings {
        crate::markets::azure::AzureSettings {
            endpoint_url: self.endpoint_url.clone(),
            authority_host: self.authority_host.clone(),
            managed_identity: self.managed_identity,
            managed_identity_endpoint: None,
            billing_scope_id: self.billing_scope_id.clone(),
            retry: self.retry.clone(),
        }
    }
}

/// Signed checkpoints of the audit chain's head, written outside the database
/// (docs/audit.md, "Checkpoints").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The ed25519 private key file (`commitd audit keygen --out FILE`, mode 0600); env
    /// `COMMITD_AUDIT_KEY_FILE` overrides. Set: the daemon writes checkpoints.
    pub checkpoint_key: Option<PathBuf>,
    /// The public key (64 hex digits) `commitd audit verify` checks checkpoints against.
    pub checkpoint_public_key: Option<String>,
    /// Append-only JSON lines, one signed checkpoint per line.
    pub checkpoint_file: Option<PathBuf>,
    /// POST each checkpoint as JSON here, https:// (or http:// for a local relay); trusts
    /// `[daemon] webhook_ca_file` too.
    pub checkpoint_webhook_url: Option<Secret>,
    /// How often the daemon writes one: "90s", "15m", "1h" (1 s to 1 day); also at start and
    /// on shutdown.
    pub checkpoint_every: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_key: None,
            checkpoint_public_key: None,
            checkpoint_file: None,
            checkpoint_webhook_url: None,
            checkpoint_every: "15m".into(),
        }
    }
}

impl AuditConfig {
    /// `checkpoint_every` as a duration.
    pub fn checkpoint_interval(&self) -> Result<std::time::Duration, String> {
        parse_interval(&self.checkpoint_every).map_err(|m| {
            format!(
                "[audit] checkpoint_every = '{}': {m}",
                self.checkpoint_every
            )
        })
    }

    fn validate(&self) -> Result<(), String> {
        self.checkpoint_interval()?;
        if let Some(pk) = &self.checkpoint_public_key {
            let t = pk.trim();
            if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "[audit] checkpoint_public_key = '{t}': expected 64 hex digits (an ed25519 public key, as printed by `commitd audit keygen`)"
                ));
            }
        }
        if let Some(url) = &self.checkpoint_webhook_url {
            let u = url.expose();
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err("[audit] checkpoint_webhook_url must start with https:// (or http:// for a local relay)".into());
            }
        }
        // A key without a sink is not refused here: `audit checkpoint --checkpoint-file` gives
        // the sink on the command line; the daemon refuses it when it starts.
        if self.checkpoint_webhook_url.is_some() && self.checkpoint_key.is_none() {
            return Err("[audit] checkpoint_webhook_url is set but there is no checkpoint_key (or COMMITD_AUDIT_KEY_FILE) to sign with".into());
        }
        Ok(())
    }
}

/// "90s", "15m", "2h", "1d": a whole number and a unit, 1 s to 1 day.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a whole number and a unit, like 15m (s, m, h or d)".to_string())?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(format!("unknown unit '{unit}': use s, m, h or d, like 15m")),
    };
    match seconds {
        Some(s) if (1..=86_400).contains(&s) => Ok(std::time::Duration::from_secs(s)),
        _ => Err("must be between 1s and 1d".into()),
    }
}

/// A role ARN (`arn:aws:iam::123456789012:role/NAME`) and the STS limits on its parameters.
fn check_role(key: &str, role: &crate::markets::aws::AssumeRole) -> Result<(), (String, String)> {
    let parts: Vec<&str> = role.role_arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > 5;
    if !ok {
        return Err((
            format!("{key}.role_arn"),
            format!(
                "'{}' is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
                role.role_arn
            ),
        ));
    }
    if let Some(id) = &role.external_id {
        if id.len() < 2 || id.len() > 1224 {
            return Err((
                format!("{key}.external_id"),
                "must be 2 to 1224 characters (STS)".to_string(),
            ));
        }
    }
    if let Some(name) = &role.session_name {
        let ok = (2..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(c));
        if !ok {
            return Err((
                format!("{key}.session_name"),
                format!("'{name}' must be 2 to 64 of [A-Za-z0-9=,.@_-] (STS)"),
            ));
        }
    }
    Ok(())
}

/// The 1-based line of `key` (dotted: "aws.retry.max_attempts") in a TOML file, when it is
/// written there as `name = ...` under its table header; None when it comes from elsewhere
/// (the environment, an inline table). Good enough to point a person at the line.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let (table, name) = match key.rsplit_once('.') {
        Some((t, n)) => (t, n),
        None => ("", key),
    };
    let mut current = String::new();
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = header.trim().replace(['"', ' '], "");
            if current == key {
                table_line = Some(i + 1);
            }
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        if current == table && k.trim().trim_matches('"') == name {
            return Some(i + 1);
        }
    }
    table_line
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded SQLite store and caches. Created on first run.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`. Default: SQLite in `data_dir`.
    pub database_url: Option<Secret>,
    pub mode: Mode,
    /// Directory of policy files (`*.toml`).
    pub policies_dir: PathBuf,
    pub source: SourceConfig,
    /// How a cycle decides: `[planner]` (`kind = "lookback"`, the default, what `commitd
    /// backtest` measures; "ladder"; or "forecast", the `commitd plan` pipeline) and the
    /// planner's tuning, as `commitd backtest --planner-config` reads it.
    #[serde(deserialize_with = "planner_setting")]
    pub planner: PlannerConfig,
    /// Billing data latency in hours: the newest hours of a bill are incomplete.
    pub billing_latency_hours: u32,
    /// The service (`commitd run`).
    pub daemon: DaemonConfig,
    /// The AWS provider (used when `[daemon] provider = "aws"`).
    pub aws: AwsConfig,
    /// The Azure provider (used when `[daemon] provider = "azure"`).
    pub azure: AzureConfig,
    /// Signed checkpoints of the audit chain.
    pub audit: AuditConfig,
    /// The HTTP API's TLS and limits.
    pub api: ApiConfig,
    /// OS user mapping and token lifetimes.
    pub identity: IdentityConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("commitd-data"),
            database_url: None,
            mode: Mode::Datapilot,
            policies_dir: PathBuf::from("policies"),
            source: SourceConfig::default(),
            planner: PlannerConfig::default(),
            billing_latency_hours: 48,
            daemon: DaemonConfig::default(),
            aws: AwsConfig::default(),
            azure: AzureConfig::default(),
            audit: AuditConfig::default(),
            api: ApiConfig::default(),
            identity: IdentityConfig::default(),
        }
    }
}

impl Config {
    /// Loads a file (if given) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("COMMITD_"))
            .collect();
        Self::load_with_env(path, &env)
    }

    /// Like [`Config::load`] with an explicit environment (tests never touch the process's).
    pub fn load_with_env(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut file_text = String::new();
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                file_text.clone_from(&text);
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.to_path_buf(),
                        message: e.to_string().trim_end().to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let mut overridden = Vec::new();
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("COMMITD_") else {
                continue;
            };
            // Test and benchmark settings share the prefix but are never configuration.
            if NOT_CONFIG_KEYS.contains(&key.as_str())
                || rest.is_empty()
                || rest.starts_with("TEST_")
                || rest.starts_with("BENCH_")
            {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            set_path(&mut table, &path, scalar(value));
            overridden.push(key.clone());
        }
        let origin = match (path, overridden.is_empty()) {
            (Some(p), true) => p.display().to_string(),
            (Some(p), false) => format!("{} (with {})", p.display(), overridden.join(", ")),
            (None, false) => format!("environment ({})", overridden.join(", ")),
            (None, true) => "defaults".to_string(),
        };
        let mut config: Config = match toml::Value::Table(table).try_into() {
            Ok(c) => c,
            Err(e) => {
                let e: toml::de::Error = e;
                // The merged table has no positions; the file alone does. When the file by
                // itself is already wrong, its error names the line and shows the key.
                if let (Some(p), Err(file_err)) = (path, toml::from_str::<Config>(&file_text)) {
                    return Err(ConfigError::Syntax {
                        path: p.to_path_buf(),
                        message: file_err.to_string().trim_end().to_string(),
                    });
                }
                return Err(ConfigError::Invalid {
                    origin,
                    message: e.message().trim_end().to_string(),
                });
            }
        };
        // The key file's own variable; relative to the working directory, like any path
        // given on the command line, so it is applied after the file's paths are rebased.
        let key_file = env
            .get(AUDIT_KEY_FILE_ENV)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if key_file.is_some() {
            config.audit.checkpoint_key.clone_from(&key_file);
        }
        config.validate().map_err(|message| ConfigError::Invalid {
            origin: origin.clone(),
            message,
        })?;
        if let Err((key, message)) = config
            .aws
            .validate()
            .and_then(|()| config.azure.validate())
            .and_then(|()| config.api.validate())
            .and_then(|()| config.identity.validate())
        {
            let env_key = format!("COMMITD_{}", key.to_ascii_uppercase().replace('.', "__"));
            let from_env = env.keys().any(|k| k.starts_with(&env_key));
            // A key inside an inline table (`os_users = { alice = ... }`) has no line of its
            // own: point at its parent's.
            let line = line_of(&file_text, &key).or_else(|| {
                key.rsplit_once('.')
                    .and_then(|(parent, _)| line_of(&file_text, parent))
            });
            let at = match (from_env, line) {
                (false, Some(line)) => format!("{origin}: line {line}"),
                _ => origin,
            };
            return Err(ConfigError::Invalid {
                origin: at,
                message: format!("{key}: {message}"),
            });
        }
        // Relative paths in a file are relative to the file, as a reader of the file expects.
        let mut config = match path.and_then(Path::parent) {
            Some(base) => config.rebased(base),
            None => config,
        };
        if key_file.is_some() {
            config.audit.checkpoint_key = key_file;
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        self.planner
            .validate()
            .map_err(|e| format!("[planner] {e}"))?;
        self.daemon.validate_markets()?;
        if let Some(url) = &self.database_url {
            let u = url.expose();
            if crate::dburl::backend_of(u).is_none() {
                return Err(format!(
                    "database_url must start with sqlite:, postgres:// or postgresql://, got '{}'",
                    redact_url(u)
                ));
            }
        }
        if self.source.scenario.is_some() && self.source.focus.is_some() {
            return Err("[source] sets both scenario and focus; choose one".to_string());
        }
        if let Some(days) = self.source.cost_explorer_days {
            if self.source.scenario.is_some() || self.source.focus.is_some() {
                return Err(
                    "[source] sets cost_explorer_days and a scenario or focus export; choose one usage source"
                        .to_string(),
                );
            }
            if !self.daemon.markets().contains(&MarketKind::Aws) {
                return Err(format!(
                    "[source] cost_explorer_days reads AWS Cost Explorer: it needs [daemon] provider = \"aws\" (it is '{}')",
                    self.daemon.provider
                ));
            }
            if !(MIN_COST_EXPLORER_DAYS..=MAX_COST_EXPLORER_DAYS).contains(&days) {
                return Err(format!(
                    "[source] cost_explorer_days = {days}: must be {MIN_COST_EXPLORER_DAYS} to {MAX_COST_EXPLORER_DAYS} \
                     (two weeks show the daily and weekly shape; Cost Explorer keeps about a year at daily grain)"
                ));
            }
        }
        if self.source.focus.is_some() && self.source.rates.is_none() {
            return Err("[source] focus needs rates (a rate card) to plan".to_string());
        }
        if let Some(url) = &self.daemon.webhook_url {
            let u = url.expose();
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                // Not even the redacted URL: a webhook URL's path is its secret.
                return Err(
                    "[daemon] webhook_url must start with https:// (or http:// for a local relay)"
                        .to_string(),
                );
            }
        }
        self.audit.validate()?;
        if self.billing_latency_hours > 24 * 31 {
            return Err(format!(
                "billing_latency_hours = {} is more than a month; bills arrive within days",
                self.billing_latency_hours
            ));
        }
        Ok(())
    }

    fn rebased(mut self, base: &Path) -> Config {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.policies_dir);
        for p in [
            &mut self.source.scenario,
            &mut self.source.focus,
            &mut self.source.rates,
            &mut self.source.commitments,
            &mut self.daemon.plan_file,
            &mut self.daemon.webhook_ca_file,
            &mut self.audit.checkpoint_key,
            &mut self.audit.checkpoint_file,
            &mut self.api.tls_cert,
            &mut self.api.tls_key,
            &mut self.api.backtest_report,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        self
    }

    /// The database URL to connect to: the configured one, or SQLite in the data directory.
    pub fn database_url(&self) -> Secret {
        self.database_url.clone().unwrap_or_else(|| {
            Secret::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("commitd.db").display()
            ))
        })
    }

    /// The configuration as TOML with every secret replaced by `***` (and passwords inside
    /// URLs removed), safe to print and log.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(Secret::new(redact_url(self.database_url().expose())));
        let mut text = toml::to_string_pretty(&shown).unwrap_or_default();
        // `Secret` serializes as *** ; show the redacted URL instead, which names host and db.
        text = text.replace(
            "database_url = \"***\"",
            &format!(
                "database_url = \"{}\"",
                redact_url(self.database_url().expose())
            ),
        );
        text
    }
}

fn scalar(text: &str) -> toml::Value {
    let t = text.trim();
    if let Ok(b) = t.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = t.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() && t.contains('.') {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(text.to_string())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_without_file() {
        let c = Config::load_with_env(None, &env(&[])).unwrap();
        assert_eq!(c.mode, Mode::Datapilot);
        assert_eq!(c.billing_latency_hours, 48);
        assert!(c.database_url().expose().starts_with("sqlite://"));
    }

    #[test]
    fn environment_overrides_file_and_reaches_nested_keys() {
        let f =
            file("mode = \"copilot\"\nbilling_latency_hours = 24\n[source]\nscenario = \"a\"\n");
        let c = Config::load_with_env(
            Some(f.path()),
            &env(&[
                ("COMMITD_MODE", "autopilot"),
                ("COMMITD_SOURCE__SCENARIO", "/abs/b"),
                ("COMMITD_LOG", "debug"),
                // Tests' and benchmarks' variables share the prefix and are never settings.
                ("COMMITD_TEST_MOTO", "/x/moto_server"),
                ("COMMITD_TEST_REQUIRE_POSTGRES", "1"),
                ("COMMITD_BENCH_EVENTS", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Autopilot);
        assert_eq!(c.billing_latency_hours, 24);
        assert_eq!(c.source.scenario, Some(PathBuf::from("/abs/b")));
        // A variable with the prefix that names no setting is refused, not ignored: a typo in
        // a deployment's environment must not pass silently.
        let e = Config::load_with_env(Some(f.path()), &env(&[("COMMITD_MOTO", "/x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("COMMITD_MOTO"), "{e}");
    }

    #[test]
    fn cost_explorer_source_is_checked_against_provider_range_and_other_sources() {
        let load = |text: &str| {
            let f = file(text);
            Config::load_with_env(Some(f.path()), &env(&[])).map_err(|e| e.to_string())
        };
        let ok = load("[source]\ncost_explorer_days = 90\n[daemon]\nprovider = \"aws\"\n[aws]\ncost_explorer_endpoint_url = \"http://127.0.0.1:5000\"\n").unwrap();
        assert_eq!(ok.source.cost_explorer_days, Some(90));
        let e = load("[source]\ncost_explorer_days = 90\n").unwrap_err();
        assert!(e.contains("needs [daemon] provider = \"aws\""), "{e}");
        let e =
            load("[source]\ncost_explorer_days = 3\n[daemon]\nprovider = \"aws\"\n").unwrap_err();
        assert!(
            e.contains("cost_explorer_days = 3: must be 14 to 365"),
            "{e}"
        );
        let e = load(
            "[source]\ncost_explorer_days = 30\nfocus = \"x\"\n[daemon]\nprovider = \"aws\"\n",
        )
        .unwrap_err();
        assert!(e.contains("choose one usage source"), "{e}");
        let e = load(
            "[daemon]\nprovider = \"aws\"\n[aws]\ncost_explorer_endpoint_url = \"ce.local\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("aws.cost_explorer_endpoint_url") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "data_dir = \"state\"\n").unwrap();
        let c = Config::load_with_env(Some(&path), &env(&[])).unwrap();
        assert_eq!(c.data_dir, dir.path().join("state"));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let f = file("mode = \"yolo\"\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(e.contains("yolo"), "{e}");

        let f = file("planner = \"crystal-ball\"\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("crystal-ball") && e.contains("lookback"), "{e}");
        let f = file("planner = \"forecast\"\n");
        let c = Config::load_with_env(Some(f.path()), &env(&[])).unwrap();
        assert_eq!(c.planner.kind, PlannerKind::Forecast);
        assert_eq!(Config::default().planner.kind, PlannerKind::Lookback);
        // The same configuration as `commitd backtest --planner-config` reads.
        let f = file("[planner]\nkind = \"ladder\"\n[planner.lookback]\nwindow_days = 28\n");
        let c = Config::load_with_env(Some(f.path()), &env(&[])).unwrap();
        assert_eq!(c.planner.kind, PlannerKind::Ladder);
        assert_eq!(c.planner.lookback.window_days, 28);
        let f = file("[planner.lookback]\nwindow_dayz = 28\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("window_dayz"), "{e}");

        let f = file("data_dir = \n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");

        let f = file("nonsense_key = 1\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nonsense_key"), "{e}");

        let e = Config::load_with_env(None, &env(&[("COMMITD_DATABASE_URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("COMMITD_DATABASE_URL"), "{e}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let c = Config::load_with_env(
            None,
            &env(&[(
                "COMMITD_DATABASE_URL",
                "postgres://commitd:hunter2@db.internal:5432/commitd",
            )]),
        )
        .unwrap();
        let shown = c.redacted();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://commitd:***@db.internal:5432/commitd"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn daemon_settings_have_defaults_and_hide_the_webhook() {
        let f = file(
            "[daemon]\nlisten = \"0.0.0.0:8080\"\nplan_file = \"plan.json\"\n\
             webhook_ca_file = \"ca.pem\"\n",
        );
        let c = Config::load_with_env(
            Some(f.path()),
            &env(&[(
                "COMMITD_DAEMON__WEBHOOK_URL",
                "http://relay/hooks/T0/B0/supersecret",
            )]),
        )
        .unwrap();
        assert_eq!(c.daemon.listen.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(c.daemon.plan_schedule, "0 0 6 * * *");
        assert_eq!(c.daemon.proposal_max_age_hours, 72);
        // Relative to the file, like every other path.
        assert_eq!(
            c.daemon.plan_file.as_deref(),
            Some(f.path().parent().unwrap().join("plan.json").as_path())
        );
        assert_eq!(
            c.daemon.webhook_ca_file.as_deref(),
            Some(f.path().parent().unwrap().join("ca.pem").as_path())
        );
        assert!(!c.redacted().contains("supersecret"), "{}", c.redacted());
        // A hook that is not http(s) is refused at load, without echoing the (secret) URL.
        let e = Config::load_with_env(
            None,
            &env(&[(
                "COMMITD_DAEMON__WEBHOOK_URL",
                "hooks.slack.com/T0/B0/supersecret",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("webhook_url must start with https://"), "{e}");
        assert!(!e.contains("supersecret"), "{e}");
        let f = file("[daemon]\nplan_shedule = \"x\"\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("plan_shedule"), "{e}");
    }

    #[test]
    fn audit_section_has_defaults_paths_env_key_and_checks() {
        let c = Config::load_with_env(None, &env(&[])).unwrap();
        assert_eq!(c.audit.checkpoint_every, "15m");
        assert_eq!(
            c.audit.checkpoint_interval().unwrap(),
            std::time::Duration::from_secs(900)
        );
        assert!(c.audit.checkpoint_key.is_none());

        let f = file(
            "[audit]\ncheckpoint_key = \"k/audit.key\"\ncheckpoint_file = \"cp.jsonl\"\ncheckpoint_every = \"1h\"\n",
        );
        let base = f.path().parent().unwrap();
        let c = Config::load_with_env(Some(f.path()), &env(&[])).unwrap();
        assert_eq!(c.audit.checkpoint_key, Some(base.join("k/audit.key")));
        assert_eq!(c.audit.checkpoint_file, Some(base.join("cp.jsonl")));
        assert_eq!(c.audit.checkpoint_interval().unwrap().as_secs(), 3600);
        // COMMITD_AUDIT_KEY_FILE wins over the file, and is not rebased onto the file's folder.
        let c = Config::load_with_env(
            Some(f.path()),
            &env(&[("COMMITD_AUDIT_KEY_FILE", "/run/secrets/audit.key")]),
        )
        .unwrap();
        assert_eq!(
            c.audit.checkpoint_key.as_deref(),
            Some(Path::new("/run/secrets/audit.key"))
        );

        let load = |text: &str| {
            let f = file(text);
            Config::load_with_env(Some(f.path()), &env(&[]))
                .map_err(|e| e.to_string())
                .map(|_| ())
        };
        for (text, want) in [
            (
                "[audit]\ncheckpoint_every = \"15 minutes\"\n",
                "unknown unit",
            ),
            ("[audit]\ncheckpoint_every = \"0s\"\n", "between 1s and 1d"),
            ("[audit]\ncheckpoint_every = \"2d\"\n", "between 1s and 1d"),
            ("[audit]\ncheckpoint_every = \"m\"\n", "whole number"),
            (
                "[audit]\ncheckpoint_public_key = \"abc\"\n",
                "64 hex digits",
            ),
            (
                "[audit]\ncheckpoint_webhook_url = \"https://h/x\"\n",
                "no checkpoint_key",
            ),
            (
                "[audit]\ncheckpoint_key = \"k\"\ncheckpoint_webhook_url = \"ftp://h/secret\"\n",
                "must start with https://",
            ),
            ("[audit]\ncheckpoint_fiel = \"x\"\n", "checkpoint_fiel"),
        ] {
            let e = load(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(load("[audit]\ncheckpoint_file = \"cp.jsonl\"\n").is_ok());
        assert!(load("[audit]\ncheckpoint_every = \"90s\"\n").is_ok());
    }

    #[test]
    fn azure_is_a_provider_and_its_section_names_the_line_of_a_bad_key() {
        let load = |text: &str| {
            let f = file(text);
            Config::load_with_env(Some(f.path()), &env(&[])).map_err(|e| e.to_string())
        };
        let c = load(
            "[daemon]\nprovider = \"azure\"\n[azure]\nendpoint_url = \"http://127.0.0.1:9000\"\nbilling_scope_id = \"/subscriptions/ed3a1871-612d-abcd-a849-c2542a68be83\"\n[azure.retry]\nmax_retries = 2\n",
        )
        .unwrap();
        assert_eq!(c.daemon.provider, MarketKind::Azure);
        assert_eq!(c.azure.retry.max_retries, 2);
        assert_eq!(
            c.azure.settings().endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let f = file("[azure]\nbilling_scope_id = \"subscriptions/x\"\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("azure.billing_scope_id"),
            "{e}"
        );
        let e = load("[daemon]\nprovider = \"gcp\"\n").unwrap_err();
        assert!(e.contains("'sim'") && e.contains("'azure'"), "{e}");
    }

    #[test]
    fn several_providers_run_side_by_side_and_bad_combinations_are_named() {
        let load = |text: &str| {
            let f = file(text);
            Config::load_with_env(Some(f.path()), &env(&[])).map_err(|e| e.to_string())
        };
        let c = load("[daemon]\nproviders = [\"aws\", \"azure\"]\n").unwrap();
        assert_eq!(c.daemon.markets(), vec![MarketKind::Aws, MarketKind::Azure]);
        let c = load("[daemon]\nprovider = \"azure\"\n").unwrap();
        assert_eq!(c.daemon.markets(), vec![MarketKind::Azure]);
        let e =
            load("[daemon]\nprovider = \"aws\"\nproviders = [\"aws\", \"azure\"]\n").unwrap_err();
        assert!(e.contains("both provider"), "{e}");
        let e = load("[daemon]\nproviders = [\"sim\", \"aws\"]\n").unwrap_err();
        assert!(e.contains("cannot be combined"), "{e}");
        let e = load("[daemon]\nproviders = [\"aws\", \"aws\"]\n").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        // Cost Explorer needs AWS among them.
        let c =
            load("[source]\ncost_explorer_days = 30\n[daemon]\nproviders = [\"azure\", \"aws\"]\n");
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn aws_section_parses_overrides_and_names_the_line_of_a_bad_key() {
        let f = file(
            "[daemon]\nprovider = \"aws\"\n[aws]\nregion = \"eu-west-1\"\n\
             [aws.assume_role]\nrole_arn = \"arn:aws:iam::111122223333:role/commitd\"\n\
             external_id = \"finops\"\n\
             [aws.accounts.444455556666]\nrole_arn = \"arn:aws:iam::444455556666:role/buyer\"\n\
             [aws.retry]\nmax_attempts = 3\n",
        );
        let c = Config::load_with_env(
            Some(f.path()),
            &env(&[("COMMITD_AWS__ENDPOINT_URL", "http://127.0.0.1:4566")]),
        )
        .unwrap();
        assert_eq!(c.daemon.provider, MarketKind::Aws);
        assert_eq!(c.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(c.aws.retry.max_attempts, 3);
        let payer = c.aws.settings(None);
        assert_eq!(
            payer.assume_role.unwrap().external_id.as_deref(),
            Some("finops")
        );
        let linked = c.aws.settings(Some("444455556666"));
        assert_eq!(
            linked.assume_role.unwrap().role_arn,
            "arn:aws:iam::444455556666:role/buyer"
        );
        assert!(c.aws.settings(Some("999999999999")).assume_role.is_none());

        // A bad value: the file, its line and the key.
        let f = file(
            "mode = \"autopilot\"\n[aws]\nregion = \"eu-west-1\"\n[aws.retry]\nmax_attempts = 0\n",
        );
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(
            e.contains("line 5") && e.contains("aws.retry.max_attempts"),
            "{e}"
        );
        let f = file("[aws.assume_role]\nrole_arn = \"arn:aws:iam::1:user/x\"\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("aws.assume_role.role_arn"),
            "{e}"
        );
        // A role listed under another account.
        let f =
            file("[aws.accounts.444455556666]\nrole_arn = \"arn:aws:iam::111122223333:role/x\"\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("not a role of account"),
            "{e}"
        );
        // An unknown key: toml's own error, with the line and the key shown.
        let f = file("[aws]\nregoin = \"eu-west-1\"\n");
        let e = Config::load_with_env(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("regoin"), "{e}");
        // From the environment: the variable is named, not a line of the file.
        let e = Config::load_with_env(None, &env(&[("COMMITD_AWS__REGION", "Ireland")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("COMMITD_AWS__REGION") && e.contains("Ireland"),
            "{e}"
        );
        let e = Config::load_with_env(None, &env(&[("COMMITD_DAEMON__PROVIDER", "gcp")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gcp"), "{e}");
    }

    #[test]
    fn api_and_identity_sections_parse_and_bad_values_name_the_key() {
        let c = Config::load_with_env(None, &env(&[])).unwrap();
        assert_eq!(c.api.max_body_bytes, 65536);
        assert_eq!(c.api.header_read_timeout_seconds, 10);
        assert_eq!(c.identity.token_ttl_days, 90);
        assert!(c.identity.os_users.is_empty());
        let f = file(
            "[api]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nmax_connections = 8\n\
             [identity]\nos_users = { alice = \"alice@example.com\" }\ntoken_ttl_days = 30\n",
        );
        let c = Config::load_with_env(Some(f.path()), &env(&[])).unwrap();
        let dir = f.path().parent().unwrap();
        assert_eq!(c.api.tls_cert, Some(dir.join("cert.pem")));
        assert_eq!(c.api.tls_key, Some(dir.join("key.pem")));
        assert_eq!(c.api.max_connections, 8);
        assert_eq!(c.identity.os_users["alice"], "alice@example.com");
        assert_eq!(c.identity.token_ttl_days, 30);

        let load = |text: &str| {
            let f = file(text);
            Config::load_with_env(Some(f.path()), &env(&[]))
                .unwrap_err()
                .to_string()
        };
        // A reserved identity is refused with the key and its line.
        let e = load("mode = \"copilot\"\n[identity]\nos_users = { root = \"commitd\" }\n");
        assert!(
            e.contains("identity.os_users.root") && e.contains("reserved") && e.contains("line 3"),
            "{e}"
        );
        let e = load("[identity]\nos_users = { mallory = \"autopilot:aws\" }\n");
        assert!(e.contains("identity.os_users.mallory"), "{e}");
        let e = load("[api]\ntls_cert = \"c.pem\"\n");
        assert!(
            e.contains("api.tls_key") && e.contains("go together"),
            "{e}"
        );
        let e = load("[api]\nmax_body_bytes = 10\n");
        assert!(
            e.contains("api.max_body_bytes") && e.contains("line 2"),
            "{e}"
        );
        let e = load("[api]\nheader_read_timeout_seconds = 0\n");
        assert!(e.contains("api.header_read_timeout_seconds"), "{e}");
        let e = load("[identity]\ntoken_ttl_days = 1000\n");
        assert!(e.contains("identity.token_ttl_days"), "{e}");
        // The CLI's token variable is not a configuration key.
        assert!(Config::load_with_env(None, &env(&[("COMMITD_TOKEN", "cd_x")])).is_ok());
    }
}
