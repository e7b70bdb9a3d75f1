//! PostgreSQL over TLS against a real server: a throwaway cluster (initdb into a temporary
//! directory, its own port, `ssl = on` with the test certificate of tests/data/webhook-tls,
//! plaintext connections rejected by pg_hba). The shared test server is never reconfigured.
//!
//! Skipped, with the reason printed, when `initdb` / `pg_ctl` are not on PATH.

use commitd::store::Store;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pki(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/webhook-tls")
        .join(name)
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn pg_tool(as_postgres: bool, args: &[&str]) -> std::process::Output {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c.args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.output().unwrap()
}

struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        let _ = pg_tool(
            self.as_postgres,
            &["pg_ctl", "-D", &data, "-m", "immediate", "stop"],
        );
    }
}

fn chown_postgres(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {}", path.display());
}

/// A fresh TLS-only cluster on a free port, or None (with the reason printed).
fn cluster() -> Option<Cluster> {
    for tool in ["initdb", "pg_ctl"] {
        if !on_path(tool) {
            eprintln!("{tool} not found on PATH: PostgreSQL TLS test skipped");
            return None;
        }
    }
    // SAFETY: geteuid has no preconditions.
    let as_postgres = unsafe { libc::geteuid() } == 0;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sockets = dir.path().join("sock");
    std::fs::create_dir(&data).unwrap();
    std::fs::create_dir(&sockets).unwrap();
    if as_postgres {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown_postgres(&data);
        chown_postgres(&sockets);
    }
    let d = data.to_str().unwrap();
    let out = pg_tool(
        as_postgres,
        &[
            "initdb",
            "-D",
            d,
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ],
    );
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(pki("server.pem"), data.join("server.pem")).unwrap();
    std::fs::copy(pki("server.key"), data.join("server.key")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
         ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\nfsync = off\n",
        sockets.display()
    );
    let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    pg_conf.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), pg_conf).unwrap();
    // TLS or nothing over TCP.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    if as_postgres {
        chown_postgres(&data);
    }
    let log = dir.path().join("log");
    if as_postgres {
        std::fs::write(&log, "").unwrap();
        chown_postgres(&log);
    }
    let out = pg_tool(
        as_postgres,
        &[
            "pg_ctl",
            "-D",
            d,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ],
    );
    assert!(
        out.status.success(),
        "pg_ctl start: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    Some(Cluster {
        _dir: dir,
        data,
        port,
        as_postgres,
    })
}

async fn uses_tls(store: &Store) -> bool {
    let Store::Postgres(pool) = store else {
        panic!("not PostgreSQL")
    };
    sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn postgresql_over_tls_with_each_sslmode() {
    let Some(c) = cluster() else { return };
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{}/postgres?{query}", c.port);
    let ca = pki("ca.pem");
    let other = pki("other-ca.pem");

    // require: encrypted (unverified, as libpq); the migrations run over it.
    let store = Store::connect(&url("127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    assert!(uses_tls(&store).await);
    store.close().await;

    // verify-full with the CA: the certificate names localhost and 127.0.0.1.
    for host in ["localhost", "127.0.0.1"] {
        let store = Store::connect(&url(
            host,
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        ))
        .await
        .unwrap();
        assert!(uses_tls(&store).await, "{host}");
        store.close().await;
    }
    // verify-ca with the CA.
    let store = Store::connect(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
    ))
    .await
    .unwrap();
    assert!(uses_tls(&store).await);
    store.close().await;

    // A CA that did not sign the server's certificate: refused, saying why.
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = Store::connect(&url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={}", other.display()),
        ))
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("TLS handshake") && e.to_lowercase().contains("certificate"),
            "{mode}: {e}"
        );
    }

    // prefer (sqlx's default when no sslmode is given) uses TLS when the server offers it.
    for query in ["sslmode=prefer", ""] {
        let store = Store::connect(&url("127.0.0.1", query)).await.unwrap();
        assert!(uses_tls(&store).await, "{query}");
        store.close().await;
    }

    // disable: plaintext, which this server's pg_hba rejects.
    assert!(Store::connect(&url("127.0.0.1", "sslmode=disable"))
        .await
        .is_err());
}
