//! Chat notifications: a Slack-compatible incoming-webhook message for each new proposal, with
//! its summary, the numbers an approver needs and a link to it.
//!
//! The body is plain Slack JSON (`text` plus `blocks`), which Mattermost, Rocket.Chat and most
//! chat relays accept too. [`WebhookClient`] POSTs it over HTTPS (rustls, the same TLS stack the
//! AWS SDK uses: aws-lc-rs crypto, no OpenSSL) or plain `http://` for a local relay.
//!
//! Trust: the operating system's root store (what `rustls-native-certs` finds, honouring
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`), plus the PEM certificates of `[daemon] webhook_ca_file`
//! for a private CA. Redirects are not followed (a hook that moved is a configuration error, and
//! following one would send the message somewhere nobody configured); any non-2xx status is an
//! error. Slack webhook URLs are secrets (the path is the credential), so errors and logs show
//! only `scheme://host/...`.

use crate::config::Secret;
use crate::proposals::Proposal;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Connect, TLS handshake, request and response together must finish within this.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error response body is kept for the message (Slack answers e.g.
/// `invalid_payload` or `no_service`).
const ERROR_BODY_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Holds only the scheme given: the rest of a hook URL may be its secret.
    #[error("webhook URL must start with https:// or http://, got scheme '{0}'")]
    Scheme(String),
    #[error("webhook {url}: {message}")]
    Http { url: String, message: String },
    #[error("{path}: {message}")]
    CaFile { path: String, message: String },
    #[error("webhook TLS: {0}")]
    Tls(String),
}

/// Reads the PEM certificates of a private CA file. Errors name the file; an empty file (no
/// CERTIFICATE block) is an error, since trusting nothing extra is surely not what was meant.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, WebhookError> {
    let err = |message: String| WebhookError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE in the file".into()));
    }
    // Parse each as a trust anchor now, so a bad file fails at check-config, not at the first post.
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        roots
            .add(c.clone())
            .map_err(|e| err(format!("certificate {}: {e}", i + 1)))?;
    }
    Ok(certs)
}

/// An HTTPS/HTTP client for chat webhooks. Build it once (it loads the root store) and reuse it:
/// it keeps the connection to the hook alive between posts.
#[derive(Clone)]
pub struct WebhookClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl WebhookClient {
    /// Trusts the native root store plus the certificates in `ca_file`, if given.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, WebhookError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        // Unreadable or odd system certificates are skipped, as every TLS client does; only an
        // empty store in the end is an error.
        let (added, _skipped) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            for c in load_ca_file(path)? {
                roots.add(c).map_err(|e| WebhookError::CaFile {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            }
        }
        if roots.is_empty() {
            let why = native
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return Err(WebhookError::Tls(format!(
                "no trusted root certificates: the system store is empty{why}; install                  ca-certificates or set [daemon] webhook_ca_file"
            )));
        }
        tracing::debug!(
            system_roots = added,
            ca_file = ?ca_file,
            "webhook TLS roots loaded"
        );
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| WebhookError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false); // the TLS layer above decides per scheme
        http.set_connect_timeout(Some(TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // Some relays match header names case-sensitively; Title-Case is what curl sends.
            .http1_title_case_headers(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(WebhookClient { client })
    }

    /// POSTs `body` as JSON; succeeds on any 2xx status. Redirects are not followed.
    pub async fn post_json(&self, url: &str, body: &Value) -> Result<(), WebhookError> {
        let scheme_error = || {
            let scheme = url.split_once("://").map_or("", |(s, _)| s);
            // A scheme is a short word; anything else may be part of the secret, so not shown.
            let ok = scheme.len() <= 16 && scheme.chars().all(|c| c.is_ascii_alphanumeric());
            WebhookError::Scheme(if ok { scheme.into() } else { "?".into() })
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(scheme_error());
        }
        let uri: hyper::Uri = url.parse().map_err(|_| scheme_error())?;
        let Some(host) = uri.host() else {
            return Err(scheme_error());
        };
        // Never show the path or query: for Slack they are the secret.
        let shown = match uri.port_u16() {
            Some(port) => format!("{}://{host}:{port}/...", uri.scheme_str().unwrap_or("")),
            None => format!("{}://{host}/...", uri.scheme_str().unwrap_or("")),
        };
        let secret_part = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| p.len() > 1);
        let err = |message: String| {
            // Belt and braces: no library error should echo the URL, but if one does, hide it.
            let message = match &secret_part {
                Some(s) => message.replace(s.as_str(), "/..."),
                None => message,
            };
            WebhookError::Http {
                url: shown.clone(),
                message,
            }
        };
        let payload = serde_json::to_vec(body).map_err(|e| err(e.to_string()))?;
        let request = hyper::Request::post(uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "commitd")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| err(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| err(error_chain(&e)))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            // Keep a little of the body: Slack explains the refusal there.
            let body = Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            let body: String = body.trim().chars().take(ERROR_BODY_CHARS).collect();
            let mut message = format!("status {}", status.as_u16());
            if status.is_redirection() {
                message.push_str(" (redirects are not followed: set the hook's final URL)");
            }
            if !body.is_empty() {
                message.push_str(&format!(": {body}"));
            }
            Err::<(), WebhookError>(err(message))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| err(format!("timed out after {} s", TIMEOUT.as_secs())))?
    }
}

/// An error and its causes on one line: hyper's top-level "client error (Connect)" alone does
/// not say that the certificate was refused.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Where the service posts to chat: the webhook, the public base URL for links, and the client
/// (built once: it loads the TLS roots and keeps the connection alive).
///
/// A failed post is logged, never fatal: what it announces is in the store, the API and the
/// audit log either way.
#[derive(Clone)]
pub struct Chat {
    url: Secret,
    base: String,
    client: WebhookClient,
}

impl Chat {
    pub fn new(url: Secret, base: String, client: WebhookClient) -> Chat {
        Chat { url, base, client }
    }

    /// Announces a new proposal that waits for people.
    pub async fn proposal(&self, p: &Proposal) {
        let body = proposal_message(p, &self.base);
        if let Err(e) = self.client.post_json(self.url.expose(), &body).await {
            tracing::warn!(proposal = %p.id, error = %e, "chat notification failed");
        }
    }

    /// Posts one line of text (the daemon's anomaly alerts); a failed post is logged.
    pub async fn alert(&self, subject: &str, text: &str) {
        if let Err(e) = self
            .client
            .post_json(self.url.expose(), &json!({ "text": text }))
            .await
        {
            tracing::warn!(subject = %subject, error = %e, "chat alert failed");
        }
    }

    /// Alerts about an execution parked as `needs_review`: a person must check the provider's
    /// console (it is also in the log at error level, the audit log and
    /// `commitd_proposals{state="needs_review"}`).
    pub async fn needs_review(&self, proposal_id: &str, reason: &str) {
        let text = format!(
            ":warning: commitd could not establish whether proposal {proposal_id} was executed: {reason}. \
             Check the provider's console, then `commitd proposals resolve {proposal_id} --bought ID | --not-bought --reason ...` \
             ({}/api/v1/proposals/{proposal_id}). commitd will not retry it.",
            self.base.trim_end_matches('/')
        );
        if let Err(e) = self
            .client
            .post_json(self.url.expose(), &json!({ "text": text }))
            .await
        {
            tracing::warn!(proposal = %proposal_id, error = %e, "needs_review alert failed");
        }
    }
}

/// The Slack message for a proposal. `base_url` is where people reach commitd's API.
pub fn proposal_message(p: &Proposal, base_url: &str) -> Value {
    let link = format!(
        "{}/api/v1/proposals/{}",
        base_url.trim_end_matches('/'),
        p.id
    );
    let a = &p.action;
    let approvers = if p.approvals_needed > 1 {
        format!("needs {} distinct approvers", p.approvals_needed)
    } else {
        "needs 1 approver".to_string()
    };
    let text = format!(
        "commitd proposes {} ({}): {} USD/h, {} USD upfront, expected savings {} USD; {}. {}",
        a.describe(),
        p.id,
        a.hourly_cost,
        a.upfront,
        a.expected_savings,
        approvers,
        link
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "*commitd proposal `{}`*\n{}\n>{}", p.id, a.describe(), a.summary)}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Hourly commitment*\n{} USD/h", a.hourly_cost)},
                {"type": "mrkdwn", "text": format!("*Upfront*\n{} USD", a.upfront)},
                {"type": "mrkdwn", "text": format!("*Expected savings*\n{} USD", a.expected_savings)},
                {"type": "mrkdwn", "text": format!("*Policy*\n{} ({approvers})", p.policy)},
                {"type": "mrkdwn", "text": format!("*Expires*\n{}", p.expires_at.to_rfc3339())},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "<{link}|Review it> · approve: `commitd proposals approve {}` or POST {link}/approve", p.id)}}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposals::{PlannedAction, ProposalState};
    use chrono::{TimeZone, Utc};

    fn proposal() -> Proposal {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap();
        let action: PlannedAction = crate::proposals::tests::action("2.5");
        Proposal {
            id: "p-123".into(),
            plan_id: "plan-1".into(),
            created_at: t,
            expires_at: t,
            updated_at: t,
            state: ProposalState::Proposed,
            proposer: "commitd".into(),
            approvals_needed: 2,
            policy: "aws".into(),
            action,
            idempotency_key: None,
            requested_at: None,
            commitment_id: None,
            provider_request_id: None,
            outcome: None,
            decisions: vec![],
            action_digest: None,
            attempts: 0,
            first_call_at: None,
            call_started_at: None,
        }
    }

    #[test]
    fn message_has_summary_numbers_and_link() {
        let m = proposal_message(&proposal(), "http://commitd.internal:8080/");
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("p-123"), "{text}");
        assert!(text.contains("2.5 USD/h"), "{text}");
        assert!(text.contains("needs 2 distinct approvers"), "{text}");
        assert!(
            text.contains("http://commitd.internal:8080/api/v1/proposals/p-123"),
            "{text}"
        );
        assert_eq!(m["blocks"].as_array().unwrap().len(), 3);
    }

    /// Reads one HTTP/1.1 request (head and Content-Length body), answers with `response` and
    /// returns the request as text.
    async fn serve_one<S>(mut s: S, response: &'static [u8]) -> String
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 8192];
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before the request was complete");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(i) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                if got.len() >= i + 4 + len {
                    break;
                }
            }
        }
        s.write_all(response).await.unwrap();
        s.shutdown().await.ok();
        String::from_utf8(got).unwrap()
    }

    fn test_pki(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/webhook-tls")
            .join(name)
    }

    /// A TLS server on 127.0.0.1:0 with the test certificate (signed by tests/data/webhook-tls/ca.pem).
    async fn tls_listener() -> (tokio::net::TcpListener, tokio_rustls::TlsAcceptor) {
        use rustls::pki_types::PrivateKeyDer;
        let certs = CertificateDer::pem_file_iter(test_pki("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(test_pki("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (listener, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    #[tokio::test]
    async fn posts_json_to_an_https_hook_trusting_the_ca_file() {
        let (listener, acceptor) = tls_listener().await;
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            serve_one(tls, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await
        });
        let client = WebhookClient::new(Some(&test_pki("ca.pem"))).unwrap();
        let body = proposal_message(&proposal(), "https://commitd.example");
        let url = format!("https://{addr}/services/T000/B000/secret");
        client.post_json(&url, &body).await.unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /services/T000/B000/secret HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("Content-Type: application/json\r\n"),
            "{request}"
        );
        // The server got exactly the Slack message, byte for byte as JSON.
        let (_, sent) = request.split_once("\r\n\r\n").unwrap();
        let sent: Value = serde_json::from_str(sent).unwrap();
        assert_eq!(sent, body);
        assert!(sent["text"].as_str().unwrap().contains("p-123"));
    }

    #[tokio::test]
    async fn refuses_an_https_hook_whose_certificate_is_not_trusted() {
        let (listener, acceptor) = tls_listener().await;
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // The client aborts the handshake; the server sees an error and nothing is served.
            acceptor.accept(tcp).await.is_ok()
        });
        // Trusts the system roots and an unrelated CA, not the one that signed the server.
        let client = WebhookClient::new(Some(&test_pki("other-ca.pem"))).unwrap();
        let url = format!("https://{addr}/services/T000/B000/secret");
        let e = client
            .post_json(&url, &json!({"text": "hello"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate"), "{e}");
        assert!(e.contains(&format!("https://{addr}/...")), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert!(!server.await.unwrap(), "the handshake must not complete");
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = load_ca_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_ca_file(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_ca_file(&garbage).unwrap_err().to_string();
        assert!(e.contains("garbage.pem"), "{e}");
        assert_eq!(load_ca_file(&test_pki("ca.pem")).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn posts_json_to_an_http_hook() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve_one(s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await
        });
        let client = WebhookClient::new(None).unwrap();
        let url = format!("http://{addr}/services/T000/B000/secret");
        client
            .post_json(&url, &json!({"text": "hello"}))
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /services/T000/B000/secret HTTP/1.1"),
            "{request}"
        );
        assert!(request.ends_with("{\"text\":\"hello\"}"), "{request}");
        let e = client
            .post_json("ftp://hooks.example/secret", &json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, WebhookError::Scheme(_)), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[tokio::test]
    async fn non_2xx_and_redirects_are_errors_naming_the_redacted_url() {
        let client = WebhookClient::new(None).unwrap();
        let cases: [(&'static [u8], &str); 2] = [
            (
                &b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nno_service"[..],
                "status 404: no_service",
            ),
            (
                &b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n"
                    [..],
                "status 302 (redirects are not followed",
            ),
        ];
        for (response, expect) in cases {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                serve_one(s, response).await
            });
            let url = format!("http://{addr}/services/T000/B000/secret");
            let e = client
                .post_json(&url, &json!({"text": "hello"}))
                .await
                .unwrap_err()
                .to_string();
            server.await.unwrap();
            assert!(e.contains(&format!("http://{addr}/...")), "{e}");
            assert!(e.contains(expect), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
