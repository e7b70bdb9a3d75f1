//! Connecting to AWS: credentials and region from the standard chain, an optional endpoint
//! override, an optional assumed role, and an explicit retry and deadline policy.
//!
//! The standard chain (`aws-config`) is what every AWS tool uses: environment variables,
//! the shared config/credentials files (profiles, SSO), web identity and IMDS. `AWS_ENDPOINT_URL`
//! (and the per-service `AWS_ENDPOINT_URL_EC2`, ...) is honoured by the same loader; the
//! `endpoint_url` setting wins over it, for a local peer or a VPC endpoint.
//!
//! Retries are not left to defaults because they decide how a purchase behaves under stress:
//! the SDK's standard mode retries throttling, 5xx and lost connections with exponential backoff
//! and full jitter, up to `max_attempts`, and the whole call (attempts and sleeps) is bounded by
//! `deadline`. 4xx answers are never retried.

use super::error::AwsError;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Retry and deadline policy for every call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts per call, the first included (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with full jitter, up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Bound on one whole call: all attempts and the sleeps between them.
    pub deadline_ms: u64,
    /// Bound on one attempt (connect, send, read).
    pub attempt_timeout_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 5,
            initial_backoff_ms: 200,
            max_backoff_ms: 20_000,
            deadline_ms: 60_000,
            attempt_timeout_ms: 20_000,
        }
    }
}

impl RetrySettings {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(self.initial_backoff_ms))
            .with_max_backoff(Duration::from_millis(self.max_backoff_ms))
    }

    fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_timeout(self.deadline())
            .operation_attempt_timeout(Duration::from_millis(self.attempt_timeout_ms))
            .connect_timeout(Duration::from_millis(self.attempt_timeout_ms.min(10_000)))
            .build()
    }
}

/// A role to assume for one account of an organization (payer or linked account).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeRole {
    pub role_arn: String,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Shows in CloudTrail as the session name; default "commitd".
    #[serde(default)]
    pub session_name: Option<String>,
}

/// Static keys, for local test peers only; real deployments use the standard chain.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCredentials {
    pub access_key_id: String,
    #[serde(skip_serializing)]
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

/// How to reach one AWS account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// None: `AWS_REGION` / the profile's region.
    pub region: Option<String>,
    /// None: `AWS_ENDPOINT_URL` when set, else the real AWS endpoints.
    pub endpoint_url: Option<String>,
    /// None: `AWS_PROFILE` or "default".
    pub profile: Option<String>,
    pub assume_role: Option<AssumeRole>,
    pub static_credentials: Option<StaticCredentials>,
    pub retry: RetrySettings,
}

/// The three SDK clients commitd uses, built from one [`SdkConfig`].
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub savings_plans: aws_sdk_savingsplans::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub cost_explorer: aws_sdk_costexplorer::Client,
    /// The region EC2 calls go to (RIs are regional).
    pub region: String,
    pub(crate) deadline: Option<Duration>,
}

impl AwsClients {
    /// Resolves credentials, region and endpoint and builds the clients. Credentials are
    /// resolved lazily by the SDK on the first call, so this fails only on configuration.
    pub async fn connect(settings: &AwsSettings) -> Result<AwsClients, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(settings.retry.retry_config())
            .timeout_config(settings.retry.timeout_config());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile.clone());
        }
        if let Some(keys) = &settings.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                keys.access_key_id.clone(),
                keys.secret_access_key.clone(),
                None,
                None,
                "commitd-static",
            ));
        }
        let mut config = loader.load().await;
        if let Some(role) = &settings.assume_role {
            config = assume(config, role).await;
        }
        // The SDK's retry token bucket is process-wide per partition name: one partition per
        // account and endpoint keeps a throttled account from starving the others' retries.
        let label = format!(
            "{}/{}",
            settings.endpoint_url.as_deref().unwrap_or("aws"),
            settings
                .assume_role
                .as_ref()
                .map(|r| r.role_arn.as_str())
                .unwrap_or("default")
        );
        Self::from_sdk_config(&config, settings.retry.deadline(), &label)
    }

    /// Builds the clients from an already loaded configuration.
    pub fn from_sdk_config(
        config: &SdkConfig,
        deadline: Duration,
        partition: &str,
    ) -> Result<AwsClients, AwsError> {
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            AwsError::Config(
                "no AWS region: set AWS_REGION, a profile region, or --region".to_string(),
            )
        })?;
        let part =
            |service: &str| RetryPartition::new(format!("commitd/{service}/{region}/{partition}"));
        let sp = aws_sdk_savingsplans::config::Builder::from(config)
            .retry_partition(part("savingsplans"))
            .build();
        let ec2 = aws_sdk_ec2::config::Builder::from(config)
            .retry_partition(part("ec2"))
            .build();
        let ce = aws_sdk_costexplorer::config::Builder::from(config)
            .retry_partition(part("ce"))
            .build();
        Ok(AwsClients {
            savings_plans: aws_sdk_savingsplans::Client::from_conf(sp),
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            cost_explorer: aws_sdk_costexplorer::Client::from_conf(ce),
            region,
            deadline: Some(deadline),
        })
    }
}

impl AwsClients {
    /// The same clients with Cost Explorer at another endpoint: a VPC endpoint of its own (each
    /// service has one), or a local peer for it beside another peer for the rest.
    pub fn with_cost_explorer_endpoint(mut self, url: &str) -> AwsClients {
        let config = self
            .cost_explorer
            .config()
            .to_builder()
            .endpoint_url(url)
            .build();
        self.cost_explorer = aws_sdk_costexplorer::Client::from_conf(config);
        self
    }
}

/// Replaces the credentials with those of an assumed role; the base credentials (from the
/// chain) are only used to call STS, and the SDK refreshes the role session before it expires.
async fn assume(base: SdkConfig, role: &AssumeRole) -> SdkConfig {
    let mut builder = AssumeRoleProvider::builder(role.role_arn.clone()).session_name(
        role.session_name
            .clone()
            .unwrap_or_else(|| "commitd".into()),
    );
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id.clone());
    }
    let provider = builder.configure(&base).build().await;
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_from_toml_with_defaults() {
        let s: AwsSettings = toml::from_str(
            r#"
            region = "eu-west-1"
            endpoint_url = "http://127.0.0.1:4566"
            [assume_role]
            role_arn = "arn:aws:iam::123456789012:role/commitd"
            [retry]
            max_attempts = 2
            "#,
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.retry.max_attempts, 2);
        assert_eq!(s.retry.deadline_ms, RetrySettings::default().deadline_ms);
        assert_eq!(
            s.assume_role.unwrap().role_arn,
            "arn:aws:iam::123456789012:role/commitd"
        );
        assert!(toml::from_str::<AwsSettings>("regoin = \"x\"").is_err());
    }

    #[test]
    fn static_credentials_never_print_the_secret() {
        let c = StaticCredentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "very-secret".into(),
        };
        assert!(!format!("{c:?}").contains("very-secret"));
        assert!(!serde_json::to_string(&c).unwrap().contains("very-secret"));
    }
}
