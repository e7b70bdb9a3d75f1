//! The HTTP API's transport over real sockets: the header-read timeout closes slow clients,
//! the connection limit refuses the connection beyond it, a body is read only after
//! authentication and only up to the limit, a slow body hits the request timeout, and HTTPS
//! works with a certificate from PEM files.
//!
//! The server is the one `commitd run` serves ([`transport::serve`] with
//! [`server::router`]) on 127.0.0.1:0, over a fresh database: [`common::spawn_app_with`].

use crate::common::{self, app::TestApp};
use commitd::api::transport::{self, Transport};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn settings(header_read: u64, request: u64, max_connections: usize) -> Transport {
    Transport {
        tls: None,
        header_read_timeout: Duration::from_secs(header_read),
        request_timeout: Duration::from_secs(request),
        max_connections,
    }
}

fn pki(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/webhook-tls")
        .join(name)
}

/// Starts the API with `transport` and a 64 KiB body limit, with an approver token.
fn start(transport: Transport) -> TestApp {
    common::spawn_app_with(transport, 64 * 1024)
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes or answers; the text read (empty when closed without one).
fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                // One whole answer (headers and a Content-Length body) is enough.
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn get(addr: &str, path: &str) -> String {
    let mut s = connect(addr);
    // A refused connection may be closed before the request is written: then the answer is
    // whatever was read (a 503, or nothing).
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    read_answer(&mut s)
}

#[test]
fn a_slowloris_client_is_closed_within_the_header_timeout() {
    let api = start(settings(1, 30, 64));
    // Headers one line every 300 ms, never finished.
    let mut slow = connect(&api.addr);
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut closed_after = None;
    let mut buf = [0u8; 1024];
    for i in 0..30 {
        match slow.read(&mut buf) {
            // Closed (EOF), possibly after hyper's 408.
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
        if slow
            .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .is_err()
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the slow connection was never closed");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}, the timeout is 1 s"
    );
    // A connection that sends nothing at all is closed too.
    let mut idle = connect(&api.addr);
    let started = Instant::now();
    let answer = read_answer(&mut idle);
    assert!(started.elapsed() < Duration::from_secs(3), "{answer}");
    // The server still answers others.
    assert_eq!(status(&get(&api.addr, "/healthz")), 200);
    drop(api);
}

#[test]
fn connections_beyond_the_limit_are_refused_until_one_closes() {
    let api = start(settings(10, 30, 2));
    let held: Vec<TcpStream> = (0..2).map(|_| connect(&api.addr)).collect();
    // Give the server time to accept both.
    std::thread::sleep(Duration::from_millis(300));
    let answer = get(&api.addr, "/healthz");
    assert!(
        answer.is_empty() || status(&answer) == 503,
        "a third connection was served: {answer}"
    );
    if !answer.is_empty() {
        assert!(answer.contains("too many open connections"), "{answer}");
    }
    drop(held);
    // Once they are closed the slots come back.
    let start = Instant::now();
    loop {
        let answer = get(&api.addr, "/healthz");
        if status(&answer) == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends a POST's head announcing `length` body bytes and sends no body: a server that read
/// the body before answering would wait until the read timeout.
fn post_head_only(addr: &str, token: Option<&str>, length: usize) -> (String, Duration) {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let started = Instant::now();
    write!(
        s,
        "POST /api/v1/proposals/p-x/approve HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
    let answer = read_answer(&mut s);
    (answer, started.elapsed())
}

#[test]
fn bodies_are_read_only_after_authentication_and_only_up_to_the_limit() {
    let api = start(settings(5, 30, 64));
    let two_mib = 2 * 1024 * 1024;
    // Unauthenticated: 401 at once, without a byte of the 2 MiB body sent.
    let (answer, took) = post_head_only(&api.addr, None, two_mib);
    assert_eq!(status(&answer), 401, "{answer}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let (answer, _) = post_head_only(&api.addr, Some("cd_forged"), two_mib);
    assert_eq!(status(&answer), 401, "{answer}");
    // Authenticated but too large by its Content-Length: 413, still without reading it.
    let (answer, took) = post_head_only(&api.addr, Some(&api.approver), two_mib);
    assert_eq!(status(&answer), 413, "{answer}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Authenticated, chunked (no Content-Length), 100 KiB: cut at the limit, 413.
    let mut s = connect(&api.addr);
    write!(
        s,
        "POST /api/v1/proposals/p-x/approve HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        api.approver
    )
    .unwrap();
    let chunk = vec![b' '; 10 * 1024];
    for _ in 0..10 {
        if write!(s, "{:x}\r\n", chunk.len()).is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let answer = read_answer(&mut s);
    assert_eq!(status(&answer), 413, "{answer}");
    // A small authenticated body is read: the proposal does not exist, 404.
    let mut s = connect(&api.addr);
    let body = r#"{"reason":"ok"}"#;
    write!(
        s,
        "POST /api/v1/proposals/p-x/approve HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        api.approver,
        body.len()
    )
    .unwrap();
    let answer = read_answer(&mut s);
    assert_eq!(status(&answer), 404, "{answer}");
}

#[test]
fn a_body_that_never_arrives_hits_the_request_timeout() {
    let api = start(settings(5, 1, 64));
    let mut s = connect(&api.addr);
    let started = Instant::now();
    write!(
        s,
        "POST /api/v1/proposals/p-x/approve HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{\"re",
        api.approver
    )
    .unwrap();
    let answer = read_answer(&mut s);
    assert_eq!(status(&answer), 408, "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn https_with_a_certificate_from_pem_files() {
    let acceptor = transport::tls_acceptor(&pki("server.pem"), &pki("server.key")).unwrap();
    let mut t = settings(2, 30, 64);
    t.tls = Some(acceptor);
    let api = start(t);
    let ca = pki("ca.pem");
    let (healthz, plain) = api.rt.block_on(async {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&api.addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let _ = tls.read_to_string(&mut out).await;
        // Plain HTTP to the HTTPS port gets no HTTP answer.
        let mut tcp = tokio::net::TcpStream::connect(&api.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
        (out, String::from_utf8_lossy(&raw).to_string())
    });
    assert_eq!(status(&healthz), 200, "{healthz}");
    assert!(healthz.ends_with("ok\n"), "{healthz}");
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
}

#[test]
fn bad_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = transport::tls_acceptor(&missing, &pki("server.key"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tls_cert") && e.contains("missing.pem"), "{e}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = transport::tls_acceptor(&empty, &pki("server.key"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("empty.pem") && e.contains("no CERTIFICATE"),
        "{e}"
    );
    // A key that is not the certificate's.
    let e = transport::tls_acceptor(&pki("server.pem"), &pki("ca.pem"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tls_key") && e.contains("ca.pem"), "{e}");
}

#[test]
fn check_config_loads_the_api_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("commitd.toml");
    let check = |key: &Path| {
        std::fs::write(
            &config,
            format!(
                "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                pki("server.pem").display(),
                key.display()
            ),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_commitd"))
            .args(["check-config", "--quiet", "--config"])
            .arg(&config)
            .env_remove("COMMITD_CONFIG")
            .output()
            .unwrap()
    };
    let good = check(&pki("server.key"));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    // The CA's certificate file holds no private key.
    let bad = check(&pki("ca.pem"));
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(e.contains("tls_key") && e.contains("ca.pem"), "{e}");
}
