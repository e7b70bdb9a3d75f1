//! How the API is served: HTTP/1.1 over TCP, optionally TLS (rustls, the stack the AWS SDK and
//! the webhook already use), with the limits an internet-facing money API needs.
//!
//! * **Connection limit**: at most `max_connections` open at once. One more is answered
//!   `503` (plain HTTP) or closed (TLS) at once, never queued: a flood gets a refusal, and the
//!   connections already served are not slowed.
//! * **Header-read timeout**: a connection must complete its TLS handshake, and each request
//!   its headers, within `header_read_timeout` of starting to; else it is closed. A
//!   "slowloris" client trickling header bytes, or one that connects and sends nothing, holds
//!   a connection for that long at most. (It also bounds how long an idle keep-alive
//!   connection stays open: hyper starts the timer when it waits for the next request.)
//! * **Request timeout**: handling a request, reading its body included, takes at most
//!   `request_timeout`; else `408` and the connection closes.
//! * **Headers** are capped at 16 KiB (hyper's read buffer), bodies by the routes
//!   ([`super::server`]: read only after authentication, `max_body_bytes` at most).
//!
//! [`serve`] takes the listener and a shutdown future, so tests drive it over a real socket
//! without signals.

use crate::config::ApiConfig;
use axum::body::Body;
use axum::http::{header, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// hyper's read buffer, which bounds a request's head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("[api] tls_cert {}: {message}", path.display())]
    Cert { path: PathBuf, message: String },
    #[error("[api] tls_key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("[api] tls_cert and tls_key do not make a usable TLS configuration: {0}")]
    Config(String),
}

/// The transport settings of a server (from `[api]`).
#[derive(Clone)]
pub struct Transport {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.is_some())
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Transport {
    /// From the configuration; reads and checks the certificate and key now, so a bad file
    /// stops the service at start with the file named.
    pub fn from_config(api: &ApiConfig) -> Result<Transport, TransportError> {
        let tls = match (&api.tls_cert, &api.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            // Config validation refuses one without the other.
            _ => None,
        };
        Ok(Transport {
            tls,
            header_read_timeout: Duration::from_secs(api.header_read_timeout_seconds),
            request_timeout: Duration::from_secs(api.request_timeout_seconds),
            max_connections: api.max_connections,
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// A TLS server configuration from PEM files: the certificate chain (leaf first) and its key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TransportError> {
    let cert_err = |message: String| TransportError::Cert {
        path: cert.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TransportError::Key {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TransportError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn timed_out() -> Response<Body> {
    let mut r = Response::new(Body::from("{\"error\":\"request timed out\"}"));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets each open
/// connection finish its request in flight, and returns once all are closed (the caller bounds
/// that with its grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limit = transport.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(limit));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit, "API connection refused: connection limit reached");
            if transport.tls.is_none() {
                // Best effort and non-blocking: the socket's send buffer takes these bytes at
                // once, and nothing waits on a client that does not read them.
                let body = "{\"error\":\"too many open connections\"}\n";
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.try_write(answer.as_bytes());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let transport = transport.clone();
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            // Held until the connection ends: the slot is what the limit counts.
            let _slot = slot;
            match &transport.tls {
                Some(acceptor) => {
                    match tokio::time::timeout(
                        transport.header_read_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => connection(TokioIo::new(tls), app, &transport, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => connection(TokioIo::new(stream), app, &transport, stop).await,
            }
        });
    }
    // Stop accepting (the listener closes here), ask every connection to finish, wait for all.
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = slots.acquire_many(limit as u32).await;
}

async fn connection<I>(
    io: TokioIo<I>,
    app: Router,
    transport: &Transport,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tower = hyper_util::service::TowerToHyperService::new(app);
    let request_timeout = transport.request_timeout;
    let service = hyper::service::service_fn(move |request| {
        let handled = hyper::service::Service::call(&tower, request);
        async move {
            match tokio::time::timeout(request_timeout, handled).await {
                Ok(response) => response,
                Err(_) => Ok(timed_out()),
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(transport.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "API connection closed");
            }
        }
        // The watch's guard is dropped inside the branch future (it is not Send).
        _ = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
