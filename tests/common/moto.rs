//! moto (a local AWS peer written in Python) as a child process, for the tests that talk to it.
//!
//! moto comes from `bash tests/python/setup-moto.sh` (a venv in `.venv-moto`). The tests use
//! `COMMITD_TEST_MOTO` (the `moto_server` binary) or, when unset, `.venv-moto/bin/moto_server`. When
//! neither exists they FAIL under CI (`CI` set) and print a notice and return elsewhere, so a
//! developer without Python can still run the rest of the suite.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto_server child process on a free 127.0.0.1 port, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn moto_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("COMMITD_TEST_MOTO") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "COMMITD_TEST_MOTO={} does not exist: run `bash tests/python/setup-moto.sh`",
            path.display()
        );
        return Some(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-moto/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(
        !in_ci,
        "moto is required in CI: run `bash tests/python/setup-moto.sh` and set COMMITD_TEST_MOTO to .venv-moto/bin/moto_server"
    );
    eprintln!("NOTICE: moto not installed (bash tests/python/setup-moto.sh); moto tests not run");
    None
}

/// Serializes the starts within a test binary: two tests starting moto at once could be given
/// the same free port, and the readiness check of the one whose server failed to bind would
/// connect to the other's (seen once in CI: the test then lost its server mid-way).
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn start_moto() -> Option<Moto> {
    let binary = moto_binary()?;
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    for _attempt in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let started = Instant::now();
        loop {
            // Our own server must be the one listening: if it exited (the port was taken
            // meanwhile), try another port.
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Moto { child, port });
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("moto_server exited before listening on {port}; trying another port");
    }
    panic!("moto_server exited before listening, three times");
}

/// POSTs JSON to moto's own API (not an AWS call, so no SDK).
pub async fn moto_api(moto: &Moto, path: &str, body: &serde_json::Value) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", moto.port))
        .await
        .unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
