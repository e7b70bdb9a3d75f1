//! Harness for the daemon integration tests: a temp directory with a configuration, policies,
//! a rate card and a plan file; the real `commitd` binary spawned on it; a tiny blocking HTTP
//! client; and a throwaway PostgreSQL database when `COMMITD_TEST_DATABASE_URL` is set.

pub use super::db::with_database;
use super::db::FreshDb;
pub use super::pg::postgres_url;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built binary this test binary drives: `commitd` from the root crate's tests; from the
/// test kit's (`crates/commitd-testkit/tests/dev`), `commitd-dev`, which runs the same commands
/// through the same code path and adds the crash tests' failpoint (`COMMITD_TEST_FAILPOINT`).
const BUILT: &str = match (
    option_env!("CARGO_BIN_EXE_commitd"),
    option_env!("CARGO_BIN_EXE_commitd-dev"),
) {
    (Some(path), _) | (None, Some(path)) => path,
    (None, None) => panic!("tests/common drives a binary of the package under test"),
};

/// The binary under test, copied once per test process: with a target directory shared by
/// several worktrees, another build may replace `target/debug/commitd` while tests run.
pub fn bin() -> &'static Path {
    static COPY: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &COPY
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("commitd");
            std::fs::copy(BUILT, &path).unwrap();
            // A thread of this test process that forks while the copy is open for writing
            // hands the child that descriptor until the child execs: running the copy then
            // fails with ETXTBSY ("Text file busy"). It passes in milliseconds; retry.
            let mut attempts = 0;
            let probe = loop {
                match Command::new(&path).args(["proposals", "--help"]).output() {
                    Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                        attempts += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => break other.unwrap(),
                }
            };
            assert!(
                probe.status.success(),
                "{} is not this branch's build (replaced by another build in a shared target dir?): rerun",
                BUILT
            );
            (dir, path)
        })
        .1
}

pub const POLICY: &str = r#"
name = "aws"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan"]
terms = [1]
payment_options = ["NoUpfront", "AllUpfront"]
[limits]
max_upfront_per_day = "10000"
min_expected_utilization = 0.9
[approval]
autopilot_max_hourly_commitment = "5"
two_approvers_from_hourly_commitment = "50"
"#;

/// Two actions: a small no-upfront plan, and an all-upfront one above the daily upfront limit.
pub const PLAN: &str = r#"{"actions": [
 {"spec": {"provider": "AWS", "instrument": "ComputeSavingsPlan", "term": 1, "payment": "NoUpfront",
           "amount": {"unit": "hourly_spend", "value": "2.5"}},
  "hourly_cost": "2.5", "upfront": "0", "expected_savings": "5000", "expected_utilization": 0.99,
  "summary": "covers demand down to P10"},
 {"spec": {"provider": "AWS", "instrument": "ComputeSavingsPlan", "term": 1, "payment": "AllUpfront",
           "amount": {"unit": "hourly_spend", "value": "2"}},
  "hourly_cost": "2", "upfront": "17520", "expected_savings": "4000", "expected_utilization": 0.99,
  "summary": "all upfront"}
]}"#;

pub const RATES: &str = "ProviderName,RegionId,InstanceType,OperatingSystem,Tenancy,Instrument,TermYears,PaymentOption,EffectiveHourlyRate,UpfrontShare
AWS,eu-west-1,m6i.large,Linux,Shared,OnDemand,0,NoUpfront,0.10656,0.0
AWS,eu-west-1,m6i.large,Linux,Shared,ComputeSavingsPlan,1,NoUpfront,0.07535,0.0
AWS,eu-west-1,m6i.large,Linux,Shared,ComputeSavingsPlan,1,AllUpfront,0.070022,1.0
";

/// A working directory with everything `commitd run` needs.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub database_url: String,
    db: FreshDb,
}

impl Setup {
    /// `mode`: datapilot, copilot or autopilot. `postgres`: a throwaway PostgreSQL database
    /// (None when COMMITD_TEST_DATABASE_URL is not set: the caller skips; a panic instead under
    /// COMMITD_TEST_REQUIRE_POSTGRES=1, see [`postgres_url`]).
    pub fn new(mode: &str, postgres: bool) -> Option<Setup> {
        Setup::with_daemon_settings(mode, postgres, "")
    }

    /// Like [`Setup::new`] with extra lines for the `[daemon]` table.
    pub fn with_daemon_settings(mode: &str, postgres: bool, extra: &str) -> Option<Setup> {
        let dir = tempfile::tempdir().unwrap();
        let db = if postgres {
            FreshDb::postgres()?
        } else {
            FreshDb::sqlite_at(dir.path(), "state/commitd.db")
        };
        let database_url = db.url.clone();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/aws.toml"), POLICY).unwrap();
        std::fs::write(dir.path().join("rates.csv"), RATES).unwrap();
        std::fs::write(dir.path().join("plan.json"), PLAN).unwrap();
        let config = dir.path().join("commitd.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "state"
database_url = "{database_url}"
mode = "{mode}"
policies_dir = "policies"
[source]
rates = "rates.csv"
[daemon]
plan_file = "plan.json"
# Plan only when a test asks (--once); execute every second.
plan_schedule = "0 0 6 1 1 *"
execute_schedule = "* * * * * *"
lease_ttl_seconds = 3
shutdown_grace_seconds = 10
{extra}
"#
            ),
        )
        .unwrap();
        Some(Setup {
            dir,
            config,
            database_url,
            db,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `commitd ARGS --config FILE` to completion.
    pub fn commitd(&self, args: &[&str]) -> Output {
        self.commitd_env(args, &[])
    }

    pub fn commitd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--config").arg(&self.config);
        // The runner's own token must not decide for a test.
        cmd.env_remove("COMMITD_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env_remove("NOTIFY_SOCKET").output().unwrap()
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_env(args, &[])
    }

    /// [`Setup::ok`] with extra environment variables (e.g. `COMMITD_TOKEN`).
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.commitd_env(args, env);
        assert!(
            out.status.success(),
            "commitd {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn proposals(&self) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["proposals", "list", "--json"])).unwrap()
    }

    pub fn proposal(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["proposals", "show", id, "--json"])).unwrap()
    }

    /// Audit events (JSONL export) of one kind.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        let out = Command::new(bin())
            .args([
                "audit",
                "export",
                "--format",
                "jsonl",
                "--database",
                &self.database_url,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["kind"] == kind)
            .collect()
    }

    pub fn verify_audit(&self) {
        let out = Command::new(bin())
            .args(["audit", "verify", "--database", &self.database_url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "audit verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn token(&self, name: &str, role: &str) -> String {
        self.ok(&["tokens", "create", name, "--role", role])
            .trim()
            .to_string()
    }

    /// Starts the long-running daemon on a free port.
    pub fn spawn(&self) -> Daemon {
        self.spawn_env(&[])
    }

    pub fn spawn_env(&self, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.args([
            "--log",
            "commitd=info",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&self.config)
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("commitd: listening on http://") {
                        break a.to_string();
                    }
                }
                _ => {
                    let mut err = String::new();
                    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                    panic!("daemon exited before listening: {err}");
                }
            }
        };
        let d = Daemon { child, addr };
        d.wait_ready();
        d
    }
}

/// A running daemon process.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
}

impl Daemon {
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok((200, _)) = http(&self.addr, "GET", "/readyz", None, None) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon at {} never became ready", self.addr);
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http(&self.addr, "GET", path, token, None).unwrap()
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        http(&self.addr, "POST", path, token, Some(body)).unwrap()
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns the exit status and stderr.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        unsafe_kill(self.child.id(), "TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return (status, err);
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("daemon did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A minimal HTTP/1.1 request; returns the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("condition not met within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn has_path(p: &Path) -> bool {
    p.exists()
}

/// Credentials come from the standard chain, as in production: here the environment.
pub const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDDAEMONTEST"),
    ("AWS_SECRET_ACCESS_KEY", "daemon-test-secret"),
    ("AWS_REGION", "eu-west-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Only Compute Savings Plans (what the test server sells in any region), without the Partial
/// Upfront whole-dollar rounding.
pub const COMPUTE_ONLY_POLICY: &str = r#"
name = "compute"
[scope]
provider = "AWS"
[allow]
instruments = ["ComputeSavingsPlan"]
terms = [1]
payment_options = ["NoUpfront", "AllUpfront"]
[limits]
min_expected_utilization = 0.5
[approval]
autopilot_max_hourly_commitment = "1000"
two_approvers_from_hourly_commitment = "100000"
"#;

/// `commitd inventory --provider aws --json` against `endpoint`, with [`AWS_ENV`].
pub fn aws_inventory(endpoint: &str) -> Value {
    let out = std::process::Command::new(bin())
        .args([
            "inventory",
            "--provider",
            "aws",
            "--endpoint-url",
            endpoint,
            "--json",
        ])
        .envs(AWS_ENV.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
