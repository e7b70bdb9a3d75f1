//! Azure AD (Entra ID) credentials, from the standard environment variables, as the Azure CLI
//! and every Azure SDK read them:
//!
//! * **client secret**: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`;
//! * **workload identity** (AKS, GitHub OIDC): `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!   `AZURE_FEDERATED_TOKEN_FILE` (re-read at every token request: the kubelet rotates it);
//! * **managed identity** (IMDS), only when asked for (`[azure] managed_identity = true` or
//!   `--managed-identity`): a daemon that buys must not fall back to whatever identity the VM has.
//!
//! The login host is `AZURE_AUTHORITY_HOST` (sovereign clouds, a local peer), else
//! `https://login.microsoftonline.com`. Tokens are requested with the OAuth 2.0 client
//! credentials grant (`/{tenant}/oauth2/v2.0/token`) over the same transport as the API, cached
//! until five minutes before they expire. Secrets are never printed: `Debug` shows `***`, and no
//! error carries the secret, the assertion or a token.

use super::error::AzureError;
use super::transport::HyperTransport;
use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::{HttpClient, Method, Request, Url};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;

pub const PUBLIC_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The Azure Instance Metadata Service token endpoint (managed identity).
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// Tokens are renewed this long before they expire.
const EXPIRY_MARGIN_SECONDS: i64 = 300;

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where tokens come from.
#[derive(Clone, Debug, PartialEq)]
pub enum CredentialSource {
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: SecretString,
    },
    WorkloadIdentity {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    ManagedIdentity {
        /// A user-assigned identity's client id; None: the system-assigned identity.
        client_id: Option<String>,
        endpoint: String,
    },
}

impl CredentialSource {
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::ClientSecret { .. } => "client secret",
            CredentialSource::WorkloadIdentity { .. } => "workload identity",
            CredentialSource::ManagedIdentity { .. } => "managed identity",
        }
    }

    /// The credential the environment describes (`var` reads one variable). Client secret wins
    /// over workload identity when both are set, as in the Azure SDKs' environment credential;
    /// managed identity only when `managed_identity` is asked for. Errors name the variables.
    pub fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        managed_identity: bool,
    ) -> Result<CredentialSource, AzureError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let tenant = get("AZURE_TENANT_ID");
        let client = get("AZURE_CLIENT_ID");
        if managed_identity {
            return Ok(CredentialSource::ManagedIdentity {
                client_id: client,
                endpoint: IMDS_ENDPOINT.to_string(),
            });
        }
        let missing = |what: &str| {
            AzureError::Credential {
            credential: "environment",
            message: format!(
                "{what} is not set: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (client secret) or AZURE_FEDERATED_TOKEN_FILE (workload identity), or use a managed identity ([azure] managed_identity = true)"
            ),
            transient: false,
        }
        };
        let secret = get("AZURE_CLIENT_SECRET");
        let token_file = get("AZURE_FEDERATED_TOKEN_FILE");
        if secret.is_none() && token_file.is_none() {
            return Err(missing(
                "neither AZURE_CLIENT_SECRET nor AZURE_FEDERATED_TOKEN_FILE",
            ));
        }
        let tenant_id = tenant.ok_or_else(|| missing("AZURE_TENANT_ID"))?;
        let client_id = client.ok_or_else(|| missing("AZURE_CLIENT_ID"))?;
        if !tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(AzureError::Credential {
                credential: "environment",
                message: format!("AZURE_TENANT_ID '{tenant_id}' is not a tenant id or domain"),
                transient: false,
            });
        }
        Ok(match secret {
            Some(s) => CredentialSource::ClientSecret {
                tenant_id,
                client_id,
                secret: SecretString::new(s),
            },
            None => CredentialSource::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file: PathBuf::from(token_file.unwrap_or_default()),
            },
        })
    }
}

/// An Azure AD credential for the SDK's clients ([`TokenCredential`]).
pub struct AzureCredential {
    source: CredentialSource,
    authority_host: String,
    transport: Arc<HyperTransport>,
    cache: Mutex<Option<(String, AccessToken)>>,
}

impl std::fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureCredential")
            .field("source", &self.source)
            .field("authority_host", &self.authority_host)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    /// Seconds (AAD: a number; IMDS: a string).
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl AzureCredential {
    pub fn new(
        source: CredentialSource,
        authority_host: Option<&str>,
        transport: Arc<HyperTransport>,
    ) -> AzureCredential {
        let host = authority_host
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or(PUBLIC_AUTHORITY_HOST)
            .trim_end_matches('/')
            .to_string();
        AzureCredential {
            source,
            authority_host: host,
            transport,
            cache: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    fn fail(&self, message: String, transient: bool) -> AzureError {
        AzureError::Credential {
            credential: self.source.kind(),
            message,
            transient,
        }
    }

    /// One token request (no cache).
    pub async fn request_token(&self, scope: &str) -> Result<AccessToken, AzureError> {
        let mut request = match &self.source {
            CredentialSource::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => self.aad_request(
                tenant_id,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret.expose()),
                    ("scope", scope),
                ],
            )?,
            CredentialSource::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => {
                let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    self.fail(
                        format!(
                            "reading AZURE_FEDERATED_TOKEN_FILE {}: {e}",
                            token_file.display()
                        ),
                        false,
                    )
                })?;
                self.aad_request(
                    tenant_id,
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", assertion.trim()),
                        ("scope", scope),
                    ],
                )?
            }
            CredentialSource::ManagedIdentity {
                client_id,
                endpoint,
            } => {
                let mut url = Url::parse(endpoint)
                    .map_err(|e| self.fail(format!("endpoint '{endpoint}': {e}"), false))?;
                let resource = scope.trim_end_matches("/.default");
                url.query_pairs_mut()
                    .append_pair("api-version", "2018-02-01")
                    .append_pair("resource", resource);
                if let Some(id) = client_id {
                    url.query_pairs_mut().append_pair("client_id", id);
                }
                let mut r = Request::new(url, Method::Get);
                r.insert_header("metadata", "true");
                r
            }
        };
        request.insert_header("accept", "application/json");
        let response = self
            .transport
            .execute_request(&request)
            .await
            .map_err(|e| self.fail(format!("token endpoint did not answer: {e}"), true))?;
        let status = u16::from(response.status());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.fail(format!("reading the token answer: {e}"), true))?;
        let answer: Option<TokenAnswer> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let why = answer
                .as_ref()
                .map(|a| {
                    format!(
                        "{}: {}",
                        a.error.as_deref().unwrap_or("error"),
                        a.error_description.as_deref().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            let transient = status >= 500 || status == 429;
            return Err(self.fail(
                format!("the token endpoint refused (HTTP {status}) {why}")
                    .trim_end()
                    .to_string(),
                transient,
            ));
        }
        let answer =
            answer.ok_or_else(|| self.fail("the token answer is not JSON".into(), true))?;
        let token = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.fail("the token answer has no access_token".into(), false))?;
        let seconds = match answer.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
            _ => None,
        }
        .unwrap_or(3600)
        .clamp(60, 86_400);
        let expires_on = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        Ok(AccessToken::new(token, expires_on))
    }

    fn aad_request(&self, tenant_id: &str, form: &[(&str, &str)]) -> Result<Request, AzureError> {
        let url = Url::parse(&format!(
            "{}/{tenant_id}/oauth2/v2.0/token",
            self.authority_host
        ))
        .map_err(|e| {
            self.fail(
                format!("AZURE_AUTHORITY_HOST '{}': {e}", self.authority_host),
                false,
            )
        })?;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let mut r = Request::new(url, Method::Post);
        r.insert_header("content-type", "application/x-www-form-urlencoded");
        r.set_body(bytes::Bytes::from(body));
        Ok(r)
    }
}

#[async_trait::async_trait]
impl TokenCredential for AzureCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let scope = scopes.join(" ");
        let mut cache = self.cache.lock().await;
        if let Some((cached_scope, token)) = cache.as_ref() {
            let fresh = token.expires_on
                > time::OffsetDateTime::now_utc() + time::Duration::seconds(EXPIRY_MARGIN_SECONDS);
            if *cached_scope == scope && fresh {
                return Ok(token.clone());
            }
        }
        let token = self
            .request_token(&scope)
            .await
            .map_err(|e| azure_core::Error::new(azure_core::error::ErrorKind::Credential, e))?;
        *cache = Some((scope, token.clone()));
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        *self.cache.lock().await = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn the_environment_picks_the_credential_and_names_what_is_missing() {
        let secret = CredentialSource::from_env(
            &env(&[
                ("AZURE_TENANT_ID", "t-1"),
                ("AZURE_CLIENT_ID", "c-1"),
                ("AZURE_CLIENT_SECRET", "s3cr3t"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(secret.kind(), "client secret");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        let wi = CredentialSource::from_env(
            &env(&[
                ("AZURE_TENANT_ID", "t-1"),
                ("AZURE_CLIENT_ID", "c-1"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            wi,
            CredentialSource::WorkloadIdentity {
                tenant_id: "t-1".into(),
                client_id: "c-1".into(),
                token_file: PathBuf::from("/var/run/token")
            }
        );
        let e = CredentialSource::from_env(
            &env(&[("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "x")]),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("AZURE_TENANT_ID is not set"), "{e}");
        assert!(!e.contains(": x"), "{e}");
        let e = CredentialSource::from_env(&env(&[]), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("AZURE_CLIENT_SECRET"), "{e}");
        let mi = CredentialSource::from_env(&env(&[]), true).unwrap();
        assert_eq!(mi.kind(), "managed identity");
    }
}
