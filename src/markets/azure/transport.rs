//! The HTTP transport the Azure SDK sends through: the project's own hyper + rustls client
//! (the same TLS stack, crypto provider and native root store as the chat webhook and the AWS
//! SDK), handed to the generated clients through `ClientBuilder::transport`. azure_core 0.21
//! would otherwise need reqwest with native-tls or its own rustls build.
//!
//! Each attempt is bounded (`attempt_timeout`): connect, send and the whole answer. A timeout is
//! an I/O error to azure_core, which its retry policy retries; what a retried purchase may do is
//! decided above (the order id makes the PUT idempotent).

use azure_core::error::ErrorKind;
use azure_core::headers::Headers;
use azure_core::{Body, HttpClient, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// The largest answer read (a page of a listing is a few hundred KB at most).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct HyperTransport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    attempt_timeout: Duration,
}

impl std::fmt::Debug for HyperTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperTransport")
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl HyperTransport {
    /// Trusts the system's root certificates (https) and allows plain http (a local peer).
    pub fn new(attempt_timeout: Duration) -> Result<HyperTransport, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _skipped) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            // http:// still works (a local peer); https:// fails at the handshake, naming TLS.
            tracing::warn!("no system root certificates: https to Azure will fail");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(attempt_timeout.min(Duration::from_secs(10))));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HyperTransport {
            client,
            attempt_timeout,
        })
    }

    async fn exchange(&self, request: &Request) -> azure_core::Result<Response> {
        let io = |message: String| azure_core::Error::message(ErrorKind::Io, message);
        let uri: hyper::Uri =
            request.url().as_str().parse().map_err(|e| {
                azure_core::Error::message(ErrorKind::Other, format!("bad URL: {e}"))
            })?;
        let method = hyper::Method::from_bytes(request.method().to_string().as_bytes())
            .map_err(|e| azure_core::Error::message(ErrorKind::Other, e.to_string()))?;
        let body = match request.body() {
            Body::Bytes(b) => b.clone(),
            Body::SeekableStream(_) => {
                return Err(azure_core::Error::message(
                    ErrorKind::Other,
                    "streamed request bodies are not used by commitd",
                ))
            }
        };
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outgoing = builder
            .header(hyper::header::USER_AGENT, "commitd")
            .body(Full::new(body))
            .map_err(|e| azure_core::Error::message(ErrorKind::Other, e.to_string()))?;
        let response = self
            .client
            .request(outgoing)
            .await
            .map_err(|e| io(error_chain(&e)))?;
        let status = StatusCode::try_from(response.status().as_u16()).map_err(|_| {
            io(format!(
                "unknown HTTP status {}",
                response.status().as_u16()
            ))
        })?;
        let mut headers = Headers::new();
        for (name, value) in response.headers() {
            if let Ok(v) = value.to_str() {
                headers.insert(name.as_str().to_string(), v.to_string());
            }
        }
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| io(format!("reading the answer: {e}")))?
            .to_bytes();
        let stream =
            futures::stream::once(futures::future::ready(Ok::<_, azure_core::Error>(bytes)));
        Ok(Response::new(status, headers, Box::pin(stream)))
    }
}

#[async_trait::async_trait]
impl HttpClient for HyperTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        match tokio::time::timeout(self.attempt_timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(azure_core::Error::message(
                ErrorKind::Io,
                format!(
                    "no complete answer within {} ms",
                    self.attempt_timeout.as_millis()
                ),
            )),
        }
    }
}

/// "client error (SendRequest): connection closed before message completed": each cause once.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
