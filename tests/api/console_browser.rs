//! The web console in a real browser: headless Chromium driven through chromedriver's
//! WebDriver HTTP protocol (a few JSON calls over the tests' own HTTP client), against the real
//! `commitd run` binary with a fresh database and a Copilot cycle.
//!
//! A proposal that needs two approvers: an approver logs in, opens it from the queue, reads the
//! policy checks and the digest, approves with a reason, and may not approve again; a second
//! approver logs in and approves; the proposal is then executed on the simulated market, the
//! audit log holds both approvals (actors, action digest) and the execution, and the console's
//! audit, verify, finance and commitments pages show them (the proposal page with the usage
//! chart and marginal value the daemon recorded). A viewer then logs in and finds no
//! decision form. Screenshots of every page go to `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`; or
//! `COMMITD_TEST_CHROMIUM` / `COMMITD_TEST_CHROMEDRIVER`). Without them the test says so and passes,
//! except under `CI=true`, where it fails: CI installs them (`.ci/run`).

use crate::common;

use common::daemon::{eventually, http, Setup};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// chromedriver on a free local port; killed when dropped.
struct Driver {
    child: Child,
    addr: String,
    chromium: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Option<Driver> {
        let chromium = find(
            "COMMITD_TEST_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = find(
            "COMMITD_TEST_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let why = "chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}: CI must run the browser test");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
        let d = Driver {
            child,
            addr: format!("127.0.0.1:{port}"),
            chromium,
        };
        eventually(30, || match wd_http(&d.addr, "GET", "/status", None) {
            Ok((200, body)) if body.contains("\"ready\":true") => Some(()),
            _ => None,
        });
        Some(d)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let text = body.map(|b| b.to_string());
        let (code, reply) = wd_http(&self.addr, method, path, text.as_deref())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let v: Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}: {reply}"));
        assert!(
            code == 200,
            "WebDriver {method} {path}: {code} {}",
            v["value"]
        );
        v["value"].clone()
    }

    /// A new headless Chromium, 1280 px wide.
    fn browser(&self) -> Browser<'_> {
        let v = self.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": self.chromium.to_string_lossy(),
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1000"]
                }
            }}})),
        );
        Browser {
            driver: self,
            session: v["sessionId"].as_str().expect("a session id").to_string(),
        }
    }
}

/// One WebDriver call. chromedriver answers `Connection: close` but keeps the socket open, so
/// the body is read by its Content-Length, not to the end of the stream.
fn wd_http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the headers",
            ));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let end = raw.len().min(head_end + length);
    Ok((
        status,
        String::from_utf8_lossy(&raw[head_end..end]).to_string(),
    ))
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser<'a> {
    driver: &'a Driver,
    session: String,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = wd_http(
            &self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    }

    fn one(&self, css: &str) -> String {
        let found = self.all(css);
        assert!(
            !found.is_empty(),
            "no element '{css}' on {}:\n{}",
            self.url(),
            self.source()
        );
        found[0].clone()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.one(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.one(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Waits until the page's URL ends with `suffix` (the overview: "/ui/", which the login
    /// page's own URL also contains, so `wait_url` would not wait for the login's redirect).
    fn wait_url_end(&self, suffix: &str) -> String {
        eventually(20, || {
            let u = self.url();
            u.ends_with(suffix).then_some(u)
        })
    }

    /// Waits until the page's URL contains `part`.
    fn wait_url(&self, part: &str) -> String {
        eventually(20, || {
            let u = self.url();
            u.contains(part).then_some(u)
        })
    }

    fn screenshot(&self, dir: &Path, name: &str) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_approver_approves_in_chromium_and_the_purchase_is_audited() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let shots = screenshots_dir();
    let s = Setup::new("copilot", false).unwrap();
    // Two distinct approvers from USD 2/h: the plan's 2.5/h action needs both.
    let two = common::daemon::POLICY.replace(
        "two_approvers_from_hourly_commitment = \"50\"",
        "two_approvers_from_hourly_commitment = \"2\"",
    );
    assert_ne!(two, common::daemon::POLICY);
    std::fs::write(s.path("policies/aws.toml"), two).unwrap();
    s.ok(&["run", "--once"]);
    let open: Vec<Value> = s
        .proposals()
        .into_iter()
        .filter(|p| p["state"] == "proposed")
        .collect();
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0]["id"].as_str().unwrap().to_string();
    let digest = open[0]["action_digest"].as_str().unwrap().to_string();
    assert_eq!(open[0]["approvals_needed"], 2, "{open:?}");
    let alice = s.token("alice", "approver");
    let bob = s.token("bob", "approver");
    let vic = s.token("vic", "viewer");
    let d = s.spawn();
    let base = format!("http://{}", d.addr);

    let b = driver.browser();
    // Not logged in: sent to the login page.
    b.go(&format!("{base}/ui/proposals"));
    b.wait_url("/ui/login");
    b.screenshot(&shots, "01-login");
    b.type_into("#token", &alice);
    b.click("#login");
    b.wait_url_end("/ui/");
    let home = b.source();
    assert!(home.contains("Waiting for approval"), "{home}");
    assert!(home.contains(&id), "{home}");
    assert!(home.contains("alice (approver)"), "{home}");
    b.screenshot(&shots, "02-overview");

    // The queue, then the proposal, reached by clicking its link.
    b.go(&format!("{base}/ui/proposals?state=proposed"));
    b.screenshot(&shots, "03-proposals");
    b.click(&format!("a[href=\"/ui/proposals/{id}\"]"));
    b.wait_url(&format!("/ui/proposals/{id}"));
    let page = b.source();
    for expected in [
        "What and where",
        "Policy checks",
        "allow.instruments",
        "passed",
        digest.as_str(),
        "USD 2.50",
        "covers demand down to P10",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    // A plan file records no usage evidence: the page says so rather than draw anything (the
    // look-back planner's chart is checked below, in the second test).
    assert!(
        page.contains("No usage chart or marginal value was recorded"),
        "{page}"
    );
    assert!(b.all("#usage-chart").is_empty());
    b.screenshot(&shots, "04-proposal");
    b.type_into("#approve-reason", "fits the forecast");
    b.click("#approve");
    b.wait_url("done=approved");
    assert!(
        b.source().contains("Your approval was recorded"),
        "{}",
        b.source()
    );
    let page = b.source();
    assert!(page.contains("1 of 2 approval(s)"), "{page}");
    assert!(
        !page.contains("id=\"approve\""),
        "alice may not approve twice: {page}"
    );
    b.screenshot(&shots, "05-approved-once");
    // One approval of two: nothing executes.
    assert_eq!(s.proposal(&id)["state"], "proposed");

    // A second person: logout, bob logs in and approves.
    b.click("header form button");
    b.wait_url("/ui/login");
    b.type_into("#token", &bob);
    b.click("#login");
    b.wait_url_end("/ui/");
    b.go(&format!("{base}/ui/proposals/{id}"));
    b.click("#approve");
    b.wait_url("done=approved");
    b.screenshot(&shots, "05-approved-twice");

    // The store: approved by alice then bob for this digest, then executed on the simulated
    // market.
    let approved = s.events("approved");
    assert_eq!(approved.len(), 2, "{approved:?}");
    for (e, who) in approved.iter().zip(["alice", "bob"]) {
        assert_eq!(e["actor"], who);
        assert_eq!(e["subject"], id.as_str());
        assert_eq!(e["payload"]["action_digest"], digest.as_str());
    }
    assert_eq!(approved[0]["payload"]["reason"], "fits the forecast");
    eventually(30, || {
        (s.proposal(&id)["state"] == "executed").then_some(())
    });
    let executed = s.events("executed");
    assert_eq!(executed.len(), 1, "{executed:?}");
    assert_eq!(executed[0]["payload"]["proposal_id"], id.as_str());

    // The console shows the trail, the verdict and the month's purchase.
    b.go(&format!("{base}/ui/proposals/{id}"));
    let page = b.source();
    assert!(page.contains("executed"), "{page}");
    assert!(!page.contains("id=\"approve\""), "{page}");
    b.go(&format!("{base}/ui/audit"));
    let audit = b.source();
    for kind in [
        "action_proposed",
        "approved",
        "execution_requested",
        "executed",
    ] {
        assert!(audit.contains(kind), "{kind}: {audit}");
    }
    b.screenshot(&shots, "06-audit");
    b.click("#verify");
    b.wait_url("/ui/audit/verify");
    assert!(b.source().contains("Intact:"), "{}", b.source());
    b.screenshot(&shots, "07-verify");
    b.go(&format!("{base}/ui/finance"));
    let finance = b.source();
    assert!(finance.contains(&id), "{finance}");
    assert!(finance.contains("alice, bob"), "{finance}");
    b.screenshot(&shots, "08-finance");
    // The portfolio: the purchase, as the executor read the inventory after buying it.
    let bought = s.proposal(&id)["commitment_id"]
        .as_str()
        .expect("the executed proposal names its commitment")
        .to_string();
    b.go(&format!("{base}/ui/commitments"));
    let portfolio = b.source();
    for expected in [
        bought.as_str(),
        "Lock-in",
        "Term end",
        "Utilization, 30 days",
        // A plan file measures no utilization: the page says it is not known.
        "Utilization is not known yet",
    ] {
        assert!(portfolio.contains(expected), "{expected}: {portfolio}");
    }
    b.screenshot(&shots, "10-commitments");
    let (code, csv) = http(&d.addr, "GET", "/ui/finance/report.csv", None, None).unwrap();
    assert_eq!(code, 303, "the CSV needs a session: {csv}");

    // Logout, then a viewer: no decision form anywhere.
    b.click("header form button");
    b.wait_url("/ui/login");
    b.go(&format!("{base}/ui/"));
    b.wait_url("/ui/login");
    b.type_into("#token", &vic);
    b.click("#login");
    b.wait_url_end("/ui/");
    b.go(&format!("{base}/ui/proposals/{id}"));
    assert!(b.all("#approve").is_empty() && b.all("#reject").is_empty());
    assert!(b.source().contains("vic (viewer)"));
    // On a phone: the page fits the width (tables scroll inside their own box).
    b.call(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    );
    b.go(&format!("{base}/ui/proposals/{id}"));
    let width = b.call(
        "POST",
        "/execute/sync",
        Some(json!({"script": "return document.documentElement.scrollWidth;", "args": []})),
    );
    let viewport = b.call(
        "POST",
        "/execute/sync",
        Some(json!({"script": "return window.innerWidth;", "args": []})),
    );
    assert!(
        width.as_u64().unwrap_or(u64::MAX) <= viewport.as_u64().unwrap_or(0),
        "the page is wider ({width}) than the phone's viewport ({viewport})"
    );
    b.screenshot(&shots, "09-proposal-phone");
    // The one script: each time's hover text gains the reader's local time (the page is
    // loaded, so its DOMContentLoaded handler has run).
    let hover = b.call(
        "POST",
        "/execute/sync",
        Some(
            json!({"script": "return document.querySelector('time[datetime]').title;", "args": []}),
        ),
    );
    assert!(
        hover
            .as_str()
            .is_some_and(|t| t.starts_with("UTC; your local time: ")),
        "{hover}"
    );
    drop(b);
    d.terminate();
    s.verify_audit();
}

/// The look-back planner (the daemon's default) on the shipped example: the proposal page
/// shows the usage of the groups the purchase covers with its forecast and its marginal value
/// (recorded by the daemon when it proposed), the overview charts the plan's expected figures
/// by month, and the backtest page shows a saved report. Screenshots 11-13.
#[test]
fn the_console_charts_what_the_lookback_planner_recorded() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let shots = screenshots_dir();
    let s = Setup::new("copilot", false).unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let config = std::fs::read_to_string(&s.config).unwrap();
    let config = config.replace("plan_file = \"plan.json\"\n", "").replace(
        "[source]\nrates = \"rates.csv\"",
        &format!("[source]\nscenario = {:?}", demo.display().to_string()),
    );
    assert!(
        !config.contains("plan_file") && config.contains("examples/demo"),
        "{config}"
    );
    std::fs::write(
        &s.config,
        format!("{config}\n[api]\nbacktest_report = \"backtest.json\"\n"),
    )
    .unwrap();
    std::fs::write(s.path("backtest.json"), crate::console::BACKTEST_JSON).unwrap();
    s.ok(&["run", "--once"]);
    let open: Vec<Value> = s
        .proposals()
        .into_iter()
        .filter(|p| p["state"] == "proposed")
        .collect();
    assert!(
        !open.is_empty(),
        "the demo's first plan proposes a purchase"
    );
    let id = open[0]["id"].as_str().unwrap().to_string();
    let alice = s.token("alice", "approver");
    let d = s.spawn();
    let base = format!("http://{}", d.addr);
    let b = driver.browser();
    b.go(&format!("{base}/ui/login"));
    b.type_into("#token", &alice);
    b.click("#login");
    b.wait_url_end("/ui/");
    // The plan's expected coverage, utilization and savings rate, charted by month.
    b.one("#month-chart svg");
    assert!(
        b.source().contains("the last plan of the month"),
        "{}",
        b.source()
    );
    b.screenshot(&shots, "11-overview-by-month");

    b.go(&format!("{base}/ui/proposals/{id}"));
    b.one("#usage-chart svg");
    let page = b.source();
    for expected in [
        "Usage it covers, forecast and marginal value",
        "class=\"history\"",
        "polygon class=\"fan\"",
        "known until here",
        "Marginal value (what the plan loses without it)",
        " over the term (",
        "Applies to ",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    // The chart fits the page at 1280 px.
    let width = b.call(
        "POST",
        "/execute/sync",
        Some(json!({"script": "return document.querySelector('#usage-chart svg').getBoundingClientRect().width;", "args": []})),
    );
    let w = width.as_f64().unwrap_or(0.0);
    assert!(w > 300.0 && w <= 1280.0, "chart width {w}");
    b.screenshot(&shots, "12-proposal-chart");

    b.go(&format!("{base}/ui/backtest"));
    b.one("#comparison");
    b.one("#bt-month-chart svg");
    assert!(
        b.source().contains("synth-mixed-4g-seed7"),
        "{}",
        b.source()
    );
    b.screenshot(&shots, "13-backtest");
    drop(b);
    d.terminate();
    s.verify_audit();
}
