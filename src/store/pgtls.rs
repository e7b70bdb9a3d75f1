//! PostgreSQL over TLS, with the rustls the AWS SDK already uses.
//!
//! sqlx 0.8 can do TLS itself only through its `tls-rustls-*` features, and each of them turns
//! on a rustls feature (`aws-lc-rs` or `ring`) that the rest of the build does not use: rustls
//! would be compiled again, and with it everything above it (hyper-rustls, the AWS SDK's HTTP
//! client, aws-sdk-ec2: about 15 minutes on two cores, for every build of every branch). So
//! commitd speaks TLS to PostgreSQL itself, as `stunnel` would, inside the process:
//!
//! * For each connection the pool opens, a private Unix socket (in a fresh directory with mode
//!   0700, so only this user can use it) is answered by opening TCP to the server, sending
//!   PostgreSQL's `SSLRequest`, and, when the server answers `S`, a rustls handshake; then
//!   bytes are copied both ways. sqlx talks plain PostgreSQL over the socket, so
//!   authentication (passwords, SCRAM) and everything after it are unchanged, inside TLS.
//! * The `sslmode` of the URL means what it means to libpq: `disable` (and `allow`) connect in
//!   plaintext; `prefer` (sqlx's default) uses TLS when the server offers it, unverified as in
//!   libpq, and plaintext otherwise, with a warning; `require` refuses a server without TLS
//!   (verifying the chain when `sslrootcert` is given, as libpq does); `verify-ca` checks the
//!   chain; `verify-full` checks the chain and that the certificate names the host.
//!   `sslrootcert` (or `PGSSLROOTCERT`) names the trusted CAs (PEM); without it, `verify-*`
//!   trust the system's root store. `sslcert`/`sslkey` give a client certificate.
//! * Before the pool is built, one handshake is made directly, so a server without TLS or an
//!   untrusted certificate is reported at start with its cause, not as a pool timeout.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sqlx::postgres::PgSslMode;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// PostgreSQL's SSLRequest: length 8, then the code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode={mode}: the server does not offer TLS (it answered 'N' to SSLRequest); refusing to connect in plaintext")]
    NotOffered { mode: &'static str },
    #[error("sslmode={mode}: unexpected answer {answer:#04x} to SSLRequest (is this a PostgreSQL server?)")]
    BadAnswer { mode: &'static str, answer: u8 },
    #[error("sslmode={mode}: TLS handshake with {host}: {source}")]
    Handshake {
        mode: &'static str,
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {host}:{port}: no answer within {timeout:?}", timeout = CONNECT_TIMEOUT)]
    Timeout { host: String, port: u16 },
    #[error("{key} {}: {message}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error(
        "sslmode={mode}: no trusted root certificate (set sslrootcert to the server's CA file)"
    )]
    NoRoots { mode: &'static str },
    #[error("'{0}' is not a host name or IP address a certificate can be checked against")]
    BadHost(String),
    #[error("TLS client configuration: {0}")]
    Config(String),
    #[error("starting the local TLS relay: {0}")]
    Relay(std::io::Error),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// The TLS settings of a URL that sqlx does not expose: `sslrootcert`, `sslcert`, `sslkey`
/// (query parameters, else `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub root_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn from_url(url: &str) -> TlsFiles {
        let mut files = TlsFiles {
            root_cert: std::env::var_os("PGSSLROOTCERT").map(PathBuf::from),
            client_cert: std::env::var_os("PGSSLCERT").map(PathBuf::from),
            client_key: std::env::var_os("PGSSLKEY").map(PathBuf::from),
        };
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let query = query.split('#').next().unwrap_or("");
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let path = Some(PathBuf::from(value.as_ref()));
            match key.as_ref() {
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => files.root_cert = path,
                "sslcert" | "ssl-cert" => files.client_cert = path,
                "sslkey" | "ssl-key" => files.client_key = path,
                _ => {}
            }
        }
        files
    }
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        key,
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

/// Accepts any certificate (libpq's `require` without a root file, and `prefer`): the
/// connection is encrypted against a passive listener, not authenticated. Handshake
/// signatures are still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A TLS connection recipe for one server.
#[derive(Clone)]
pub struct Tls {
    mode: PgSslMode,
    host: String,
    port: u16,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

impl Tls {
    /// The client configuration `mode` asks for. `Disable` and `Allow` never get here.
    pub fn new(mode: PgSslMode, host: &str, port: u16, files: &TlsFiles) -> Result<Tls, TlsError> {
        let m = mode_name(mode);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let verify = match mode {
            PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
            // libpq: with a root file, `require` verifies like `verify-ca`.
            PgSslMode::Require => files.root_cert.is_some(),
            _ => false,
        };
        let builder = if verify {
            let mut roots = RootCertStore::empty();
            match &files.root_cert {
                Some(path) => {
                    for cert in read_certs("sslrootcert", path)? {
                        roots.add(cert).map_err(|e| TlsError::File {
                            key: "sslrootcert",
                            path: path.clone(),
                            message: e.to_string(),
                        })?;
                    }
                }
                None => {
                    let native = rustls_native_certs::load_native_certs();
                    for cert in native.certs {
                        // A certificate the store holds but rustls cannot parse is skipped, as
                        // the webhook client does; the check below catches an empty store.
                        let _ = roots.add(cert);
                    }
                }
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots { mode: m });
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            if matches!(mode, PgSslMode::VerifyFull) {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        };
        let config = match (&files.client_cert, &files.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("sslcert", cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                    key: "sslkey",
                    path: key.clone(),
                    message: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| TlsError::Config(e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Config(
                    "sslcert and sslkey go together: set both or neither".into(),
                ))
            }
        };
        let name =
            ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadHost(host.into()))?;
        Ok(Tls {
            mode,
            host: host.to_string(),
            port,
            name,
            config: Arc::new(config),
        })
    }

    /// TCP, SSLRequest, handshake.
    pub async fn open(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
        let m = mode_name(self.mode);
        let (tcp, offered) = offers_tls(&self.host, self.port, m).await?;
        if !offered {
            return Err(TlsError::NotOffered { mode: m });
        }
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(self.name.clone(), tcp)).await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(TlsError::Handshake {
                mode: m,
                host: self.host.clone(),
                source,
            }),
            Err(_) => Err(TlsError::Timeout {
                host: self.host.clone(),
                port: self.port,
            }),
        }
    }
}

/// Connects and asks for TLS; returns the socket and whether the server agreed ('S').
pub async fn offers_tls(
    host: &str,
    port: u16,
    mode: &'static str,
) -> Result<(TcpStream, bool), TlsError> {
    let ask = async {
        let mut tcp = TcpStream::connect((host, port)).await?;
        tcp.write_all(&SSL_REQUEST).await?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>((tcp, answer[0]))
    };
    let (tcp, answer) = tokio::time::timeout(CONNECT_TIMEOUT, ask)
        .await
        .map_err(|_| TlsError::Timeout {
            host: host.into(),
            port,
        })?
        .map_err(|source| TlsError::Connect {
            host: host.into(),
            port,
            source,
        })?;
    match answer {
        b'S' => Ok((tcp, true)),
        b'N' => Ok((tcp, false)),
        other => Err(TlsError::BadAnswer {
            mode,
            answer: other,
        }),
    }
}

/// Removes the relay's directory when the relay task ends (with the runtime).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Binds the relay's socket `<dir>/.s.PGSQL.<port>` in a fresh private directory (mode 0700,
/// created here, so it cannot be someone else's) under the first of `bases` where that works.
/// Returns the listener and the directory's guard.
fn bind_private(
    bases: &[PathBuf],
    port: u16,
) -> Result<(tokio::net::UnixListener, DirGuard), TlsError> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut tried = Vec::new();
    for base in bases {
        let dir = base.join(format!(
            "commitd-pgtls-{}-{}-{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            tried.push(format!("{}: {e}", base.display()));
            continue;
        }
        let guard = DirGuard(dir.clone());
        match tokio::net::UnixListener::bind(dir.join(format!(".s.PGSQL.{port}"))) {
            Ok(listener) => return Ok((listener, guard)),
            // e.g. a path longer than a socket address holds: try the next base.
            Err(e) => tried.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(TlsError::Relay(std::io::Error::other(format!(
        "no writable directory for its socket (tried {})",
        tried.join("; ")
    ))))
}

/// Starts the relay: a Unix socket `<dir>/.s.PGSQL.<port>` (what sqlx opens for
/// `socket(dir)` and `port`) whose every connection is carried to the server over TLS.
/// Returns the directory. The relay runs as long as the tokio runtime that started it.
///
/// The directory goes in `$TMPDIR` (or /tmp), else in the working directory: a container
/// with a read-only root file system has no writable /tmp, but its working directory is
/// the data volume (deploy/Dockerfile, and `WorkingDirectory=` under systemd).
pub fn start_relay(tls: Tls) -> Result<PathBuf, TlsError> {
    let mut bases = vec![std::env::temp_dir()];
    if let Ok(cwd) = std::env::current_dir() {
        bases.push(cwd);
    }
    let (listener, guard) = bind_private(&bases, tls.port)?;
    let dir = guard.0.clone();
    tokio::spawn(async move {
        let _guard = guard;
        loop {
            let client = match listener.accept().await {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL TLS relay: accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut client = client;
                match tls.open().await {
                    Ok(mut server) => {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                    // sqlx sees the connection close; the cause is here.
                    Err(e) => tracing::warn!(error = %e, "PostgreSQL over TLS: connection failed"),
                }
            });
        }
    });
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_relay_socket_goes_in_the_first_writable_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let writable = tempfile::tempdir().unwrap();
        let bases = vec![
            PathBuf::from("/nonexistent/read-only-tmp"),
            writable.path().to_path_buf(),
        ];
        let (_listener, guard) = bind_private(&bases, 5432).unwrap();
        let dir = guard.0.clone();
        assert!(dir.starts_with(writable.path()), "{}", dir.display());
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(dir.join(".s.PGSQL.5432").exists());
        drop(guard);
        assert!(!dir.exists(), "the directory is removed with its guard");
        let e = bind_private(&[PathBuf::from("/nonexistent/a")], 5432)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/a"), "{e}");
    }
}
