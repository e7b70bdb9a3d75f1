//! The web console over HTTP against a real store ([`spawn_console_app`]: the router
//! `commitd run` serves, port 0, a fresh database): login and logout, session expiry and
//! revocation, CSRF refusals, roles, self-approval and distinct approvers, an approval through
//! the console audited exactly like one through the API, and every page's headers.

use crate::common;

use chrono::{Duration, Utc};
use commitd::api::console::{ConsoleSettings, CSP};
use commitd::audit::{AuditLog, Event, EventBody, EventFilter, EventKind};
use commitd::identity::{Role, TokenStore};
use commitd::proposals::{ActionDigest, NewProposal, PlannedAction, ProposalState, ProposalStore};
use common::app::{spawn_console_app, TestApp};
use std::collections::HashMap;
use std::io::{Read, Write};

/// One HTTP answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the first hidden `csrf` field of the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let at = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

fn raw(addr: &str, method: &str, path: &str, extra: &[(&str, String)], body: &str) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        f.append_pair(k, v);
    }
    f.finish()
}

/// A browser without a script: keeps cookies, sends forms, follows nothing by itself.
struct Browser {
    addr: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            addr: app.addr.clone(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> Vec<(&'static str, String)> {
        if self.cookies.is_empty() {
            return vec![];
        }
        let v = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        vec![("Cookie", v)]
    }

    fn keep(&mut self, r: &Reply) {
        for c in r.set_cookies() {
            let first = c.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
    }

    fn get(&mut self, path: &str) -> Reply {
        let r = raw(&self.addr, "GET", path, &self.cookie_header(), "");
        self.keep(&r);
        r
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut h = self.cookie_header();
        h.push((
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ));
        let r = raw(&self.addr, "POST", path, &h, &form(fields));
        self.keep(&r);
        r
    }

    /// Logs in with `token` through the login form; returns the answer to the POST.
    fn login(&mut self, token: &str) -> Reply {
        let page = self.get("/ui/login");
        assert_eq!(page.status, 200, "{}", page.body);
        let nonce = page.csrf();
        self.post("/ui/login", &[("csrf", &nonce), ("token", token)])
    }

    /// Logs in and requires it to work; returns the session's CSRF token (from the overview).
    fn logged_in(app: &TestApp, token: &str) -> (Browser, String) {
        let mut b = Browser::new(app);
        let r = b.login(token);
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location"), Some("/ui/"));
        let home = b.get("/ui/");
        assert_eq!(home.status, 200, "{}", home.body);
        let csrf = home.csrf();
        (b, csrf)
    }
}

fn token(app: &TestApp, name: &str, role: Role) -> String {
    app.rt.block_on(async {
        TokenStore::new(app.store.clone())
            .create(name, role, Duration::days(1), "test", Utc::now())
            .await
            .unwrap()
            .secret
    })
}

fn action(summary: &str) -> PlannedAction {
    serde_json::from_value(serde_json::json!({
        "spec": {"provider": "AWS", "instrument": "ComputeSavingsPlan", "term": 1,
                 "payment": "NoUpfront", "amount": {"unit": "hourly_spend", "value": "2.5"}},
        "hourly_cost": "2.5", "upfront": "0", "expected_savings": "5000.123456",
        "expected_utilization": 0.99, "summary": summary
    }))
    .unwrap()
}

/// A proposal of `proposer` needing `approvals` approvers; returns its id.
fn propose(app: &TestApp, plan: &str, proposer: &str, approvals: u8, summary: &str) -> String {
    app.rt.block_on(async {
        ProposalStore::new(app.store.clone())
            .create(
                &NewProposal {
                    plan_id: plan.into(),
                    index: 0,
                    proposer: proposer.into(),
                    approvals_needed: approvals,
                    policy: "aws".into(),
                    action: action(summary),
                    max_age: Duration::hours(24),
                },
                Utc::now(),
            )
            .await
            .unwrap()
            .id
    })
}

fn state(app: &TestApp, id: &str) -> ProposalState {
    app.rt.block_on(async {
        ProposalStore::new(app.store.clone())
            .get(id)
            .await
            .unwrap()
            .unwrap()
            .state
    })
}

fn events(app: &TestApp, kind: EventKind) -> Vec<Event> {
    app.rt.block_on(async {
        AuditLog::open(app.store.clone())
            .list(
                &EventFilter {
                    kind: Some(kind),
                    ..EventFilter::default()
                },
                None,
            )
            .await
            .unwrap()
    })
}

fn verify(app: &TestApp) {
    let report = app
        .rt
        .block_on(AuditLog::open(app.store.clone()).verify())
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
}

fn approve_path(id: &str) -> String {
    format!("/ui/proposals/{id}/approve")
}

#[test]
fn login_opens_a_strict_httponly_session_and_logout_ends_it() {
    let app = spawn_console_app(ConsoleSettings::default());
    let mut b = Browser::new(&app);
    // Without a session every page sends the browser to the login page.
    for path in [
        "/ui/",
        "/ui/proposals",
        "/ui/proposals/p-1",
        "/ui/audit",
        "/ui/audit/1",
        "/ui/audit/verify",
        "/ui/audit/export?format=csv",
        "/ui/finance",
        "/ui/finance/report.csv",
        "/ui/commitments",
    ] {
        let r = b.get(path);
        assert_eq!(r.status, 303, "{path}: {}", r.body);
        assert_eq!(r.header("location"), Some("/ui/login"), "{path}");
    }
    // The login form sets its nonce cookie, strict and HttpOnly.
    let page = b.get("/ui/login");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    let nonce_cookie = page.set_cookies().join("\n");
    assert!(
        nonce_cookie.contains("commitd_login=")
            && nonce_cookie.contains("HttpOnly")
            && nonce_cookie.contains("SameSite=Strict"),
        "{nonce_cookie}"
    );
    assert!(page.body.contains("<label for=\"token\">"), "{}", page.body);
    // A wrong token: 401, no session.
    let nonce = page.csrf();
    let r = b.post("/ui/login", &[("csrf", &nonce), ("token", "cd_forged")]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("Unknown, expired or revoked token"));
    assert!(!b.cookies.contains_key("commitd_session"));
    // A refused login is not a login: nothing audited.
    assert!(events(&app, EventKind::ConsoleLogin).is_empty());
    // The right one: a session cookie, HttpOnly, SameSite=Strict, scoped to /ui, with a
    // lifetime, not Secure over plain HTTP; the token itself is not in it.
    let r = b.login(&app.approver);
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("commitd_session="))
        .expect("a session cookie")
        .to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(session.contains(part), "{session}");
    }
    assert!(!session.contains("Secure"), "{session}");
    assert!(!session.contains(&app.approver));
    let home = b.get("/ui/");
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("alice (approver)"), "{}", home.body);
    assert!(home.body.contains("Waiting for approval"));
    // The login page itself sends a logged-in browser home.
    assert_eq!(b.get("/ui/login").status, 303);
    // Logout needs the CSRF token too.
    let csrf = home.csrf();
    let r = b.post("/ui/logout", &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(b.get("/ui/").status, 200);
    let kept = b.cookies.clone();
    let r = b.post("/ui/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/login?ended=1"));
    assert!(!b.cookies.contains_key("commitd_session"));
    // The login and the logout are audit events of the person, never with a secret.
    let logins = events(&app, EventKind::ConsoleLogin);
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(
        (logins[0].actor.as_str(), logins[0].subject.as_str()),
        ("alice", "alice")
    );
    match &logins[0].body {
        EventBody::ConsoleLogin(l) => {
            assert_eq!((l.name.as_str(), l.role.as_str()), ("alice", "approver"));
            assert!(
                l.session_expires_at.ends_with('Z'),
                "{}",
                l.session_expires_at
            );
        }
        other => panic!("{other:?}"),
    }
    let logouts = events(&app, EventKind::ConsoleLogout);
    assert_eq!(logouts.len(), 1, "{logouts:?}");
    assert_eq!(logouts[0].actor, "alice");
    let all = serde_json::to_string(&(
        logins[0].rationale.clone(),
        logins[0].body.payload().unwrap(),
    ))
    .unwrap();
    assert!(
        !all.contains(&app.approver) && !all.contains("cs_"),
        "{all}"
    );
    verify(&app);
    // The old cookie, replayed, is worth nothing: the session is gone from the store.
    b.cookies = kept;
    let r = b.get("/ui/");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/login?ended=1"));
}

#[test]
fn secure_cookies_when_configured() {
    let app = spawn_console_app(ConsoleSettings {
        secure_cookies: true,
        session_ttl: Duration::minutes(5),
        ..ConsoleSettings::default()
    });
    let mut b = Browser::new(&app);
    let r = b.login(&app.approver);
    assert_eq!(r.status, 303);
    let session = r.set_cookies().join("\n");
    assert!(
        session.contains("; Secure") && session.contains("Max-Age=300"),
        "{session}"
    );
}

#[test]
fn an_expired_or_revoked_session_goes_back_to_the_login_page() {
    let app = spawn_console_app(ConsoleSettings::default());
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    // The session's expiry passes (set in the store: the clock of the server decides).
    app.rt
        .block_on(commitd::store::sql::execute(
            &app.store,
            "UPDATE console_sessions SET expires_at_ms = $1",
            &[(Utc::now() - Duration::seconds(1))
                .timestamp_millis()
                .into()],
        ))
        .unwrap();
    let r = b.get("/ui/proposals");
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/ui/login?ended=1"));
    assert!(!b.cookies.contains_key("commitd_session"));
    let page = b.get("/ui/login?ended=1");
    assert!(page.body.contains("Your session ended"), "{}", page.body);
    // A session ends with its token: revoked, it is refused at the next request.
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    app.rt
        .block_on(TokenStore::new(app.store.clone()).revoke("alice", "test", Utc::now()))
        .unwrap();
    let r = b.get("/ui/");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/login?ended=1"));
}

#[test]
fn forms_without_this_sessions_csrf_token_change_nothing() {
    let app = spawn_console_app(ConsoleSettings::default());
    let id = propose(&app, "plan-1", "commitd", 1, "small");
    let bob = token(&app, "bob", Role::Approver);
    let (mut alice_b, alice_csrf) = Browser::logged_in(&app, &app.approver);
    let (_, bob_csrf) = Browser::logged_in(&app, &bob);
    assert_ne!(alice_csrf, bob_csrf);
    for fields in [
        vec![("reason", "no token")],
        vec![("csrf", ""), ("reason", "empty token")],
        vec![("csrf", "0000"), ("reason", "wrong token")],
        // Another session's token is not this session's.
        vec![("csrf", bob_csrf.as_str()), ("reason", "bob's token")],
    ] {
        let r = alice_b.post(&approve_path(&id), &fields);
        assert_eq!(r.status, 403, "{fields:?}: {}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
        let r = alice_b.post(&format!("/ui/proposals/{id}/reject"), &fields);
        assert_eq!(r.status, 403, "{fields:?}: {}", r.body);
    }
    assert_eq!(state(&app, &id), ProposalState::Proposed);
    assert!(events(&app, EventKind::Approved).is_empty());
    assert!(events(&app, EventKind::Rejected).is_empty());
    // A login form without its nonce (or with another) logs nobody in.
    let mut stranger = Browser::new(&app);
    let r = stranger.post("/ui/login", &[("token", &app.approver)]);
    assert_eq!(r.status, 403, "{}", r.body);
    stranger.get("/ui/login");
    let r = stranger.post(
        "/ui/login",
        &[("csrf", "forged-nonce"), ("token", &app.approver)],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!stranger.cookies.contains_key("commitd_session"));
    // With the token, the same form works.
    let r = alice_b.post(
        &approve_path(&id),
        &[("csrf", &alice_csrf), ("reason", "ok")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&app, &id), ProposalState::Approved);
    verify(&app);
}

#[test]
fn a_viewer_sees_no_decision_form_and_a_forged_post_is_refused() {
    let app = spawn_console_app(ConsoleSettings::default());
    let id = propose(&app, "plan-1", "commitd", 1, "small");
    let vic = token(&app, "vic", Role::Viewer);
    let (mut b, csrf) = Browser::logged_in(&app, &vic);
    let page = b.get(&format!("/ui/proposals/{id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains(&approve_path(&id)), "{}", page.body);
    assert!(!page.body.contains("id=\"approve\""));
    assert!(page.body.contains("Your role (viewer)"), "{}", page.body);
    // A viewer's own well-formed POST (right CSRF token) is refused by role.
    for verb in ["approve", "reject"] {
        let r = b.post(
            &format!("/ui/proposals/{id}/{verb}"),
            &[("csrf", &csrf), ("reason", "I am only a viewer")],
        );
        assert_eq!(r.status, 403, "{verb}: {}", r.body);
        assert!(r.body.contains("has role viewer"), "{}", r.body);
    }
    assert_eq!(state(&app, &id), ProposalState::Proposed);
    assert!(events(&app, EventKind::Approved).is_empty());
    assert!(events(&app, EventKind::Rejected).is_empty());
    // An approver sees the forms.
    let (mut a, _) = Browser::logged_in(&app, &app.approver);
    let page = a.get(&format!("/ui/proposals/{id}"));
    assert!(page.body.contains(&approve_path(&id)), "{}", page.body);
}

#[test]
fn self_approval_is_refused_and_large_proposals_need_two_distinct_approvers() {
    let app = spawn_console_app(ConsoleSettings::default());
    // alice proposed this one (as a person may, e.g. from a plan file under her name).
    let own = propose(&app, "plan-own", "alice", 1, "alice's own");
    let big = propose(&app, "plan-big", "commitd", 2, "large");
    let bob = token(&app, "bob", Role::Approver);
    let (mut alice, csrf) = Browser::logged_in(&app, &app.approver);
    let page = alice.get(&format!("/ui/proposals/{own}"));
    assert!(!page.body.contains(&approve_path(&own)));
    assert!(page.body.contains("You proposed this"), "{}", page.body);
    // Forged anyway: refused by the same rule as the API, nothing recorded.
    let r = alice.post(&approve_path(&own), &[("csrf", &csrf)]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("cannot approve it"), "{}", r.body);
    assert_eq!(state(&app, &own), ProposalState::Proposed);
    assert!(events(&app, EventKind::Approved).is_empty());
    // Two approvers: alice's approval is recorded, the proposal waits for a second person.
    let r = alice.post(&approve_path(&big), &[("csrf", &csrf), ("reason", "ok")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let page = alice.get(r.header("location").unwrap());
    assert!(
        page.body.contains("Your approval was recorded"),
        "{}",
        page.body
    );
    assert!(page.body.contains("1 of 2 approval(s)"), "{}", page.body);
    assert!(page.body.contains("You already decided"), "{}", page.body);
    assert_eq!(state(&app, &big), ProposalState::Proposed);
    // alice again does not count twice.
    let r = alice.post(&approve_path(&big), &[("csrf", &csrf)]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("already decided"), "{}", r.body);
    assert_eq!(state(&app, &big), ProposalState::Proposed);
    // bob completes it.
    let (mut bob_b, bob_csrf) = Browser::logged_in(&app, &bob);
    let r = bob_b.post(&approve_path(&big), &[("csrf", &bob_csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&app, &big), ProposalState::Approved);
    let actors: Vec<String> = events(&app, EventKind::Approved)
        .into_iter()
        .map(|e| e.actor)
        .collect();
    assert_eq!(actors, ["alice", "bob"]);
    // A rejection needs a reason; with one it is recorded under the person's name.
    let r = bob_b.post(
        &format!("/ui/proposals/{own}/reject"),
        &[("csrf", &bob_csrf), ("reason", "  ")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(state(&app, &own), ProposalState::Proposed);
    let r = bob_b.post(
        &format!("/ui/proposals/{own}/reject"),
        &[("csrf", &bob_csrf), ("reason", "not this quarter")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&app, &own), ProposalState::Rejected);
    let rejected = events(&app, EventKind::Rejected);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].actor, "bob");
    // Deciding on a proposal that does not exist: 404, nothing recorded.
    let r = bob_b.post(&approve_path("p-nope"), &[("csrf", &bob_csrf)]);
    assert_eq!(r.status, 404, "{}", r.body);
    verify(&app);
}

#[test]
fn a_console_approval_is_audited_exactly_like_an_api_approval() {
    let app = spawn_console_app(ConsoleSettings::default());
    // Two proposals of the same action: one approved through the API, one through the console.
    let via_api = propose(&app, "plan-api", "commitd", 1, "same action");
    let via_console = propose(&app, "plan-console", "commitd", 1, "same action");
    let (code, body) = common::daemon::http(
        &app.addr,
        "POST",
        &format!("/api/v1/proposals/{via_api}/approve"),
        Some(&app.approver),
        Some(r#"{"reason": "fits the forecast"}"#),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let (mut b, csrf) = Browser::logged_in(&app, &app.approver);
    let r = b.post(
        &approve_path(&via_console),
        &[("csrf", &csrf), ("reason", "fits the forecast")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let approved = events(&app, EventKind::Approved);
    assert_eq!(approved.len(), 2);
    let (api, console) = (&approved[0], &approved[1]);
    assert_eq!(api.subject, via_api);
    assert_eq!(console.subject, via_console);
    let digest = action("same action").digest();
    for (e, id) in [(api, &via_api), (console, &via_console)] {
        assert_eq!(e.actor, "alice");
        match &e.body {
            EventBody::Approved(a) => {
                assert_eq!(&a.proposal_id, id);
                assert_eq!(a.reason.as_deref(), Some("fits the forecast"));
                assert_eq!(a.action_digest.as_deref(), Some(digest.as_str()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.amount, None);
        assert_eq!(state(&app, id), ProposalState::Approved);
    }
    // Same facts, same rationale: only the proposal differs.
    assert_eq!(api.rationale, console.rationale);
    assert_eq!(
        api.rationale,
        serde_json::json!({"approvals": 1, "approvals_needed": 1, "state": "approved"})
    );
    // The console shows it with the digest it approved.
    let page = b.get(&format!("/ui/proposals/{via_console}"));
    assert!(page.body.contains(&digest), "{}", page.body);
    assert!(page.body.contains("this action"), "{}", page.body);
    verify(&app);
}

#[test]
fn every_page_is_served_with_a_strict_policy_and_escapes_what_it_shows() {
    let app = spawn_console_app(ConsoleSettings::default());
    let id = propose(
        &app,
        "plan-1",
        "commitd",
        1,
        "<script>alert(1)</script> & more",
    );
    let (mut b, csrf) = Browser::logged_in(&app, &app.approver);
    let r = b.post(
        &approve_path(&id),
        &[("csrf", &csrf), ("reason", "<b>ok</b>")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let month = Utc::now().format("%Y-%m").to_string();
    for path in [
        "/ui/".to_string(),
        "/ui/proposals".into(),
        "/ui/proposals?state=approved".into(),
        format!("/ui/proposals/{id}"),
        "/ui/audit".into(),
        "/ui/audit?kind=approved&actor=alice".into(),
        "/ui/audit/1".into(),
        "/ui/audit/verify".into(),
        format!("/ui/finance?month={month}"),
        "/ui/commitments".into(),
    ] {
        let r = b.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with("text/html"),
            "{path}"
        );
        // The one script is the console's own file; nothing inline, nothing shown escaped.
        assert!(!r.body.contains("<script>"), "{path}: {}", r.body);
        assert_eq!(
            r.body.matches("<script").count(),
            1,
            "{path}: only <script src=\"/ui/console.js\" defer>"
        );
        assert!(
            r.body.contains("<script src=\"/ui/console.js\" defer>"),
            "{path}"
        );
        assert!(!r.body.contains("<b>ok</b>"), "{path}");
        assert!(!r.body.contains(" style="), "{path}: inline style");
    }
    let page = b.get(&format!("/ui/proposals/{id}"));
    assert!(
        page.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        "{}",
        page.body
    );
    // Money as people read it, the exact figure on hover.
    assert!(page.body.contains("USD 5,000.12"), "{}", page.body);
    assert!(
        page.body.contains("5000.123456 USD exactly"),
        "{}",
        page.body
    );
    // The audit page filters by actor and kind; the event page shows the facts.
    let audit = b.get("/ui/audit?kind=approved&actor=alice");
    assert!(audit.body.contains("1 event(s)"), "{}", audit.body);
    let audit = b.get("/ui/audit?actor=nobody");
    assert!(audit.body.contains("No event."), "{}", audit.body);
    let verdict = b.get("/ui/audit/verify");
    assert!(
        verdict.body.contains("Intact: 4 event(s) verified"),
        "{}",
        verdict.body
    );
    // Bad input: a clear 400 naming it.
    for (path, says) in [
        ("/ui/proposals?state=bogus", "unknown state 'bogus'"),
        (
            "/ui/audit?since=2026-13-40",
            "since '2026-13-40' is not a date",
        ),
        ("/ui/audit?kind=nope", "unknown event kind 'nope'"),
        ("/ui/audit/abc", "'abc' is not an event number"),
        ("/ui/audit/export?format=xml", "unknown format 'xml'"),
        ("/ui/finance?month=2026-13", "is not a month"),
    ] {
        let r = b.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(
            r.body.contains(&says.replace('\'', "&#39;")) || r.body.contains(says),
            "{path}: {}",
            r.body
        );
    }
    assert_eq!(b.get("/ui/audit/999").status, 404);
    assert_eq!(b.get("/ui/proposals/p-nope").status, 404);
    // Exports: the audit log as CSV and JSONL for a date range, the month's report as CSV.
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let csv = b.get(&format!(
        "/ui/audit/export?format=csv&since={today}&until={today}"
    ));
    assert_eq!(csv.status, 200);
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert!(csv.body.starts_with("id,time,kind,actor"), "{}", csv.body);
    // alice's token, the proposal, her login, the approval.
    assert_eq!(csv.body.lines().count(), 5, "{}", csv.body);
    let jsonl = b.get("/ui/audit/export?format=jsonl&kind=approved");
    assert_eq!(jsonl.body.lines().count(), 1, "{}", jsonl.body);
    let line: serde_json::Value = serde_json::from_str(jsonl.body.lines().next().unwrap()).unwrap();
    assert_eq!(line["actor"], "alice");
    let nothing = b.get("/ui/audit/export?format=csv&since=2000-01-01&until=2000-01-31");
    assert_eq!(nothing.body.lines().count(), 1, "{}", nothing.body);
    let report = b.get(&format!("/ui/finance/report.csv?month={month}"));
    assert_eq!(report.status, 200);
    assert!(
        report.body.starts_with("month,executed_at"),
        "{}",
        report.body
    );
    let css = b.get("/ui/console.css");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    let js = b.get("/ui/console.js");
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.body.contains("your local time"), "{}", js.body);
}

/// A proposal with `rationale` merged into its `action_proposed` event (as the daemon records
/// the evidence); returns its id.
fn propose_with(app: &TestApp, plan: &str, rationale: serde_json::Value) -> String {
    app.rt.block_on(async {
        ProposalStore::new(app.store.clone())
            .create_with(
                &NewProposal {
                    plan_id: plan.into(),
                    index: 0,
                    proposer: "commitd".into(),
                    approvals_needed: 1,
                    policy: "aws".into(),
                    action: action("with evidence"),
                    max_age: Duration::hours(24),
                },
                Utc::now(),
                rationale,
            )
            .await
            .unwrap()
            .id
    })
}

/// The `points` of every `<polyline>` / `<polygon>` of an SVG, as (x, y) pairs.
fn svg_points(svg: &str) -> Vec<(f64, f64)> {
    svg.split("points=\"")
        .skip(1)
        .flat_map(|p| {
            p[..p.find('"').unwrap()]
                .split(' ')
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_proposal_shows_the_usage_it_covers_its_forecast_and_its_marginal_value() {
    let app = spawn_console_app(ConsoleSettings::default());
    // 14 known days then 7 forecast days, as the daemon records them (plan::evidence).
    let history: Vec<f64> = (0..14).map(|d| 10.0 + d as f64 / 2.0).collect();
    let with = propose_with(
        &app,
        "plan-evidence",
        serde_json::json!({
            "evidence": {
                "groups": ["AWS/us-east-1/m5.large/Linux/Shared", "AWS/eu-west-1/<c5>/Linux/Shared"],
                "groups_total": 3,
                "history_start": "2026-11-01T00:00:00Z",
                "history": history,
                "forecast_start": "2026-11-15T00:00:00Z",
                "p10": [14.0, 14.0, 14.0, 14.0, 14.0, 14.0, 14.0],
                "p50": [16.0, 16.0, 16.0, 16.0, 16.0, 16.0, 16.0],
                "p90": [20.0, 20.0, 20.0, 20.0, 20.0, 20.0, null],
                "marginal": {"per_hour": "0.5", "over_term": "4380", "hours": 672}
            }
        }),
    );
    let without = propose(&app, "plan-plain", "commitd", 1, "no evidence");
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    let page = b.get(&format!("/ui/proposals/{with}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    let svg = &body[body.find("<svg").expect("a chart")..];
    let svg = &svg[..svg.find("</svg>").unwrap() + 6];
    // The known usage and the forecast median as lines, the P10-P90 fan as a band.
    assert!(svg.contains("class=\"history\""), "{svg}");
    assert!(svg.contains("class=\"p50\""), "{svg}");
    assert_eq!(svg.matches("<polygon class=\"fan\"").count(), 1, "{svg}");
    assert!(svg.contains("known until here"), "{svg}");
    // Every point inside the drawing, and the highest (P90 20) at the top of a 0-20 axis.
    let points = svg_points(svg);
    assert!(points.len() >= 14 + 7 + 12, "{svg}");
    assert!(points
        .iter()
        .all(|(x, y)| (0.0..=640.0).contains(x) && (0.0..=260.0).contains(y)));
    assert!(
        points.iter().any(|(_, y)| (*y - 22.0).abs() < 0.05),
        "{svg}"
    );
    // Dated ticks, and the figures in words for screen readers.
    assert!(svg.contains(">Nov 15<"), "{svg}");
    assert!(body.contains("the last one USD 16.50 / h"), "{body}");
    assert!(body.contains("median USD 16.00 / h"), "{body}");
    // The groups, escaped, and how many there are.
    assert!(
        body.contains("Applies to 3 usage group(s) (the first 2 listed)"),
        "{body}"
    );
    assert!(
        body.contains("AWS/eu-west-1/&lt;c5&gt;/Linux/Shared"),
        "{body}"
    );
    assert!(!body.contains("<c5>"));
    // The marginal value, exact on hover.
    assert!(
        body.contains("Marginal value (what the plan loses without it)"),
        "{body}"
    );
    assert!(body.contains("USD 4,380.00"), "{body}");
    assert!(body.contains("4380 USD exactly"), "{body}");
    assert!(body.contains("the last 28 known days"), "{body}");
    // Without a recorded evidence the page says so and draws nothing.
    let plain = b.get(&format!("/ui/proposals/{without}"));
    assert_eq!(plain.status, 200);
    assert!(
        plain
            .body
            .contains("No usage chart or marginal value was recorded"),
        "{}",
        plain.body
    );
    assert!(!plain.body.contains("<svg"), "{}", plain.body);
}

fn commitment(
    id: &str,
    start: &str,
    end: &str,
    hourly: &str,
    upfront: &str,
) -> commitd::domain::Commitment {
    serde_json::from_value(serde_json::json!({
        "id": id, "provider": "AWS", "instrument": "ComputeSavingsPlan", "term": 1,
        "payment": "NoUpfront", "start": start, "end": end,
        "region": null, "instance_type": null, "family": null,
        "amount": {"unit": "hourly_spend", "value": hourly},
        "hourly_cost": hourly, "upfront": upfront
    }))
    .unwrap()
}

/// A `plan_computed` event at `at` with `rationale`, as the daemon records one per cycle.
fn plan_computed(app: &TestApp, at: chrono::DateTime<Utc>, rationale: serde_json::Value) {
    use commitd::audit::{NewEvent, PlanComputed};
    app.rt
        .block_on(
            AuditLog::open(app.store.clone()).append(
                NewEvent::new(
                    at,
                    "commitd",
                    "plan-x",
                    PlanComputed {
                        plan_id: "plan-x".into(),
                        inputs_digest: "d".into(),
                        solver_status: "Optimal".into(),
                        objective: None,
                        expected_savings: None,
                        actions: 0,
                    },
                )
                .with_rationale(rationale),
            ),
        )
        .unwrap();
}

#[test]
fn the_commitments_page_shows_utilization_term_end_and_lock_in() {
    use chrono::{DurationRound, TimeZone};
    let app = spawn_console_app(ConsoleSettings::default());
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    // No inventory read yet: said, not invented.
    let r = b.get("/ui/commitments");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("No inventory read yet"), "{}", r.body);
    assert!(
        r.body.contains("aria-current=\"page\">Commitments"),
        "{}",
        r.body
    );
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let h = |hours: i64| (now + Duration::hours(hours)).to_rfc3339();
    // Ends in 10 days (240 h) at 2.5/h: lock-in 600. Ends in 100 days at 1.25/h: 3,000.
    // Expired: not shown.
    let soon = commitment("sp-soon", &h(-8000), &h(240), "2.5", "0");
    let later = commitment("sp-later", &h(-100), &h(2400), "1.25", "0");
    let gone = commitment("sp-gone", &h(-9000), &h(-1), "9", "0");
    app.metrics
        .set_inventory(&[later, soon, gone], now.timestamp());
    plan_computed(
        &app,
        Utc::now(),
        serde_json::json!({
            "expected": {"coverage": 0.8, "utilization": 0.95, "esr": 0.25},
            "commitment_use": [
                {"id": "sp-soon", "utilization": 0.875, "hours": 720},
                {"id": "sp-later", "utilization": 0.5, "hours": 100}
            ]
        }),
    );
    let r = b.get("/ui/commitments");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = &r.body;
    assert!(body.contains("2 commitment(s) active or queued"), "{body}");
    assert!(!body.contains("sp-gone"), "{body}");
    // Ending soonest first.
    assert!(
        body.find("sp-soon").unwrap() < body.find("sp-later").unwrap(),
        "{body}"
    );
    assert!(body.contains("87.5 %"), "{body}");
    // Active for fewer than 30 days: the days it was measured on.
    assert!(body.contains("50.0 %") && body.contains("(4 d)"), "{body}");
    assert!(
        body.contains("USD 600.00") && body.contains("USD 3,000.00"),
        "{body}"
    );
    assert!(body.contains("id=\"lock-in\""), "{body}");
    assert!(body.contains("USD 3,600.00"), "{body}");
    assert!(body.contains("(10 days)"), "{body}");
    // The overview charts the plans' figures by month and counts what ends soon.
    plan_computed(
        &app,
        Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
        serde_json::json!({"expected": {"coverage": 0.1, "utilization": 0.1, "esr": 0.1}}),
    );
    let home = b.get("/ui/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("id=\"month-chart\""), "{}", home.body);
    assert!(
        home.body.contains("80.0 %") && home.body.contains("25.0 %"),
        "{}",
        home.body
    );
    // A plan older than a year is not charted.
    assert!(!home.body.contains("2000-01"), "{}", home.body);
    assert!(
        home.body.contains("within 30 days: <strong>1</strong>"),
        "{}",
        home.body
    );
    assert!(
        home.body.contains("within 90 days: <strong>1</strong>"),
        "{}",
        home.body
    );
}

#[test]
fn lists_longer_than_a_page_are_paged() {
    let app = spawn_console_app(ConsoleSettings::default());
    app.rt.block_on(async {
        let store = ProposalStore::new(app.store.clone());
        let now = Utc::now();
        for i in 0..502 {
            store
                .create(
                    &NewProposal {
                        plan_id: format!("plan-{i}"),
                        index: 0,
                        proposer: "commitd".into(),
                        approvals_needed: 1,
                        policy: "aws".into(),
                        action: action("paged"),
                        max_age: Duration::hours(24),
                    },
                    now,
                )
                .await
                .unwrap();
        }
    });
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    let rows = |body: &str| {
        body.matches("<th scope=\"row\"><a href=\"/ui/proposals/p-")
            .count()
    };
    let first = b.get("/ui/proposals");
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first
            .body
            .contains("502 proposal(s), newest first: 1 to 500 (page 1 of 2)"),
        "{}",
        first.body
    );
    assert_eq!(rows(&first.body), 500);
    assert!(
        first
            .body
            .contains("href=\"/ui/proposals?state=all&amp;page=2\""),
        "{}",
        first.body
    );
    let second = b.get("/ui/proposals?state=all&page=2");
    assert!(
        second.body.contains("501 to 502 (page 2 of 2)"),
        "{}",
        second.body
    );
    assert_eq!(rows(&second.body), 2);
    assert!(
        second.body.contains("page=1\"") && !second.body.contains("page=3"),
        "{}",
        second.body
    );
    let beyond = b.get("/ui/proposals?page=3");
    assert!(
        beyond.body.contains("No proposal on page 3"),
        "{}",
        beyond.body
    );
    for bad in ["0", "x", "-1"] {
        let r = b.get(&format!("/ui/proposals?page={bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    // The audit log: alice's token (1), the proposals (2..=503), her login (504). The newest
    // 500 first, then the 4 before them.
    let audit = b.get("/ui/audit");
    assert!(
        audit
            .body
            .contains("500 event(s), newest first (the last 500 matching)"),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("href=\"/ui/audit?before=5\""),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("href=\"/ui/audit/5\"") && !audit.body.contains("href=\"/ui/audit/4\"")
    );
    let older = b.get("/ui/audit?before=5");
    assert!(
        older
            .body
            .contains("4 event(s), newest first, before event 5"),
        "{}",
        older.body
    );
    assert!(
        older.body.contains("href=\"/ui/audit/4\"") && older.body.contains("href=\"/ui/audit/1\"")
    );
    assert!(
        !older.body.contains("href=\"/ui/audit/5\""),
        "{}",
        older.body
    );
    assert!(older.body.contains("id=\"newest\""), "{}", older.body);
    // Filters carry over to the next page.
    let kind = b.get("/ui/audit?kind=action_proposed&before=300");
    assert!(
        kind.body
            .contains("298 event(s), newest first, before event 300"),
        "{}",
        kind.body
    );
    assert_eq!(b.get("/ui/audit?before=abc").status, 400);
}

/// A saved `commitd backtest --json` report, in the shape `backtest::report::Comparison::to_json`
/// writes (shortened: two months, one purchase).
pub(crate) const BACKTEST_JSON: &str = r#"{
  "scenario": "synth-mixed-4g-seed7", "hours": 1464, "on_demand_cost": 81234.5678, "cost": 60925.926,
  "esr": 0.25, "coverage": 0.8126, "utilization": 0.975, "min_monthly_utilization": 0.95,
  "purchases": 1, "exchanges": 0, "returns": 0, "refunds": 0.0, "sales": 0, "sale_proceeds": 0.0,
  "sale_write_off": 0.0, "cadence_hours": 24, "latency_hours": 48, "decisions": 61,
  "lock_in_days_at_end": 300, "liability_after_window": 15000.0, "hourly_commitment_at_end": 12.5,
  "baselines": {
    "existing_only": {"cost": 81234.5678, "esr": 0.0, "coverage": 0.0, "utilization": 1.0,
                      "min_monthly_utilization": 1.0, "purchases": 0, "liability_after_window": 0.0},
    "ce_quarterly": {"cost": 70000.0, "esr": 0.1383, "coverage": 0.5, "utilization": 0.9,
                     "min_monthly_utilization": 0.8, "purchases": 2, "liability_after_window": 9000.0}
  },
  "monthly": [
    {"month": "2025-12", "hours": 744, "on_demand_cost": 41000.0, "cost": 31000.0, "esr": 0.2439,
     "coverage": 0.8, "utilization": 0.97, "purchases": 1, "new_hourly_commitment": 12.5},
    {"month": "2026-01", "hours": 720, "on_demand_cost": 40234.5678, "cost": 29925.926, "esr": 0.2562,
     "coverage": 0.825, "utilization": null, "purchases": 0, "new_hourly_commitment": 0.0}
  ],
  "purchase_list": [
    {"id": "bt-1", "start": "2025-12-01T00:00:00Z", "provider": "AWS", "instrument": "ComputeSavingsPlan",
     "term_years": 1, "payment_option": "NoUpfront", "region": null, "instance_type": null,
     "hourly_cost": 12.5, "upfront": 0.0}
  ]
}"#;

#[test]
fn the_backtest_page_shows_a_saved_report_or_says_how_to_save_one() {
    // Not configured: the page says how.
    let app = spawn_console_app(ConsoleSettings::default());
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    let r = b.get("/ui/backtest");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("No backtest report is configured"),
        "{}",
        r.body
    );
    assert!(r.body.contains("backtest_report"), "{}", r.body);
    drop(app);

    let app = spawn_console_app(ConsoleSettings {
        backtest: Some(std::sync::Arc::new(|| {
            Ok(("reports/bt.json".to_string(), BACKTEST_JSON.to_string()))
        })),
        ..ConsoleSettings::default()
    });
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    let r = b.get("/ui/backtest");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = &r.body;
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert!(body.contains("aria-current=\"page\">Backtest"), "{body}");
    assert!(
        body.contains("synth-mixed-4g-seed7") && body.contains("reports/bt.json"),
        "{body}"
    );
    assert!(body.contains("61 decisions"), "{body}");
    // commitd and each baseline, money to the cent, shares as percentages.
    assert!(body.contains("id=\"comparison\""), "{body}");
    for expected in [
        "USD 60,925.93",
        "USD 81,234.57",
        "ce_quarterly",
        "USD 70,000.00",
        "25.0 %",
        "13.8 %",
        "81.3 %",
        "USD 15,000.00",
        "USD 12.50 / h",
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
    // Charts: ESR by planner (bars) and the months (lines, a gap where utilization is null).
    assert!(body.contains("id=\"bt-month-chart\""), "{body}");
    assert_eq!(body.matches("<rect class=\"bar\"").count(), 3, "{body}");
    assert!(
        body.contains("2026-01: coverage 82.5 %, utilization n/a"),
        "{body}"
    );
    assert!(
        body.contains("bt-1") || body.contains("ComputeSavingsPlan 1yr NoUpfront"),
        "{body}"
    );
    assert!(!body.contains("<script>"), "nothing inline: {body}");
    drop(app);

    // A report that is not one: a clear 503 naming the file, nothing else shown.
    let app = spawn_console_app(ConsoleSettings {
        backtest: Some(std::sync::Arc::new(|| {
            Ok(("bad.json".to_string(), "[1, 2".to_string()))
        })),
        ..ConsoleSettings::default()
    });
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    let r = b.get("/ui/backtest");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("bad.json"), "{}", r.body);
}

/// Time to first byte and page weight of the console's pages over a large store: 1,000
/// proposals and 100,000 audit events by default (`COMMITD_BENCH_CONSOLE_EVENTS`). A
/// measurement, not a check: run it by hand and record the figures in
/// docs/benchmarks/console.md.
#[test]
#[ignore = "a measurement: cargo test --test api console::page_load_budget -- --ignored --nocapture"]
fn page_load_budget() {
    use commitd::audit::{NewEvent, PolicyBlocked};
    let events: usize = std::env::var("COMMITD_BENCH_CONSOLE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let proposals = 1_000.min(events);
    let app = spawn_console_app(ConsoleSettings::default());
    let seeded = std::time::Instant::now();
    let last = app.rt.block_on(async {
        let store = ProposalStore::new(app.store.clone());
        let log = AuditLog::open(app.store.clone());
        let now = Utc::now();
        let mut last = String::new();
        for i in 0..proposals {
            last = store
                .create(
                    &NewProposal {
                        plan_id: format!("plan-{i}"),
                        index: 0,
                        proposer: "commitd".into(),
                        approvals_needed: 1,
                        policy: "aws".into(),
                        action: action("bench"),
                        max_age: Duration::hours(24),
                    },
                    now,
                )
                .await
                .unwrap()
                .id;
        }
        // The rest of the log: one token event and the proposals' events are there already.
        for i in proposals + 1..events {
            log.append(
                NewEvent::new(
                    now,
                    "commitd",
                    format!("plan-{i}"),
                    PolicyBlocked {
                        proposal_id: None,
                        policy: "aws".into(),
                        rule: "limits.max_upfront_per_day".into(),
                        reason: "upfront 17520 above the daily limit 10000".into(),
                    },
                )
                .with_rationale(serde_json::json!({"at": "planning", "action_index": 1})),
            )
            .await
            .unwrap();
        }
        last
    });
    eprintln!(
        "seeded {proposals} proposals and {events} audit events in {:.1} s ({})",
        seeded.elapsed().as_secs_f64(),
        app.db.backend.name()
    );
    let (b, _) = Browser::logged_in(&app, &app.approver);
    let cookie = b.cookie_header();
    let month = Utc::now().format("%Y-%m").to_string();
    eprintln!("| page | TTFB median (ms) | total median (ms) | bytes |");
    eprintln!("|---|---|---|---|");
    for path in [
        "/ui/".to_string(),
        format!("/ui/proposals/{last}"),
        "/ui/proposals?state=proposed".into(),
        "/ui/audit".into(),
        "/ui/audit?actor=alice".into(),
        format!("/ui/audit?before={}", events / 2),
        "/ui/proposals?state=all&page=2".into(),
        "/ui/commitments".into(),
        format!("/ui/finance?month={month}"),
    ] {
        let mut ttfb = Vec::new();
        let mut total = Vec::new();
        let mut bytes = 0;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let mut s = std::net::TcpStream::connect(&app.addr).unwrap();
            let mut head = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
                app.addr
            );
            for (k, v) in &cookie {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes()).unwrap();
            let mut first = [0u8; 1];
            s.read_exact(&mut first).unwrap();
            ttfb.push(started.elapsed().as_secs_f64() * 1000.0);
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            total.push(started.elapsed().as_secs_f64() * 1000.0);
            let text = String::from_utf8_lossy(&rest);
            assert!(text.starts_with("TTP/1.1 200"), "{path}: {text}");
            bytes = text
                .split_once("\r\n\r\n")
                .map_or(0, |(_, body)| body.len());
        }
        ttfb.sort_by(f64::total_cmp);
        total.sort_by(f64::total_cmp);
        eprintln!("| `{path}` | {:.0} | {:.0} | {bytes} |", ttfb[2], total[2]);
    }
}

/// The finance page shows realized savings from the month's FOCUS bill that the composition root
/// hands in (the daemon's `[source] focus`): every commitment in the bill, covered on-demand
/// equivalent less its cost. A bill that cannot be read is an error naming it, not a silent
/// "not computed".
#[test]
fn the_finance_page_shows_realized_savings_from_the_months_bill() {
    use commitd::domain::{Hour, Money, Provider};
    use commitd::ingest::BillCommitment;
    let month = Utc::now().format("%Y-%m").to_string();
    let bill = |_m| {
        Ok((
            "/exports/focus".to_string(),
            vec![BillCommitment {
                id: "arn:aws:savingsplans::111122223333:savingsplan/not-ours".into(),
                provider: Provider::Aws,
                commitment_type: "SavingsPlan".into(),
                category: Some("Spend".into()),
                first_hour: Hour(0),
                last_hour: Hour(1),
                max_hourly_cost: 7.75,
                region: None,
                instance_type: None,
                max_hourly_units: 0.0,
                total_used: Money::parse("15").unwrap(),
                total_unused: Money::parse("0.25").unwrap(),
                fees: Money::ZERO,
                total_covered_ode: Money::parse("20").unwrap(),
                covered_ode: vec![10.0, 10.0],
                billed_hours: 2,
                covered_rows_without_list_cost: 0,
            }],
        ))
    };
    let app = spawn_console_app(ConsoleSettings {
        bill: Some(std::sync::Arc::new(bill)),
        ..ConsoleSettings::default()
    });
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    let page = b.get(&format!("/ui/finance?month={month}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("/exports/focus"), "{}", page.body);
    // 20 covered - (15 used + 0.25 unused) = 4.75, over the one commitment; commitd's own: none.
    assert!(
        page.body.contains("USD 4.75</span> over 1 commitment(s)"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("id=\"realized-commitd\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("not computed"), "{}", page.body);

    let broken = spawn_console_app(ConsoleSettings {
        bill: Some(std::sync::Arc::new(|_m| {
            Err(
                "reading the FOCUS bill /exports/focus: line 3: ListCost 'x' is not a number"
                    .into(),
            )
        })),
        ..ConsoleSettings::default()
    });
    let (mut b, _) = Browser::logged_in(&broken, &broken.approver);
    let page = b.get(&format!("/ui/finance?month={month}"));
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("line 3: ListCost"), "{}", page.body);
}

#[test]
fn the_overview_lists_open_anomalies_and_a_proposal_shows_its_hold() {
    use commitd::domain::{Hour, Money, Provider, UsageGroup};
    use commitd::forecast::anomaly::{AnomalyKind, AnomalyStatus, DetectedAnomaly};
    use commitd::plan::hold::GroupAnomaly;
    let app = spawn_console_app(ConsoleSettings::default());
    let (mut b, _) = Browser::logged_in(&app, &app.approver);
    // No cycle has watched yet: said, not invented.
    let r = b.get("/ui/");
    assert!(
        r.body.contains("No cycle has watched the usage"),
        "{}",
        r.body
    );
    let start = Hour::parse("2026-11-20T10:00:00Z").unwrap();
    let open = GroupAnomaly {
        group: UsageGroup::new(
            Provider::Aws,
            "us-east-1",
            "m5.large",
            None,
            "Linux",
            "Shared",
        ),
        anomaly: DetectedAnomaly {
            kind: AnomalyKind::StepUp,
            start,
            detected_at: start.plus(26),
            end: None,
            status: AnomalyStatus::Open,
            excess_instance_hours: 1200.0,
            excess_cost: Money::parse("115.2").unwrap(),
            peak: 250.0,
            expected_at_peak: 100.0,
        },
    };
    app.metrics
        .anomalies(std::slice::from_ref(&open), &[&open], 2);
    let r = b.get("/ui/");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = &r.body;
    let section = &body[body.find("Cost anomalies").expect("the section")..];
    assert!(
        section.contains("AWS/us-east-1/m5.large/Linux/Shared"),
        "{section}"
    );
    assert!(section.contains("step up"), "{section}");
    assert!(
        section.contains("250.0") && section.contains("100.0"),
        "{section}"
    );
    assert!(section.contains("115.20"), "{section}");
    let text = raw(&app.addr, "GET", "/metrics", &[], "").body;
    assert!(
        text.contains("commitd_anomalies_open{provider=\"AWS\",kind=\"step_up\"} 1"),
        "{text}"
    );
    assert!(text.contains("commitd_anomaly_held_purchases 2"), "{text}");
    // Nothing open any more: said so.
    app.metrics.anomalies(&[], &[], 0);
    assert!(b.get("/ui/").body.contains("No cost anomaly is open."));

    let note = "anomaly hold: AWS StandardReservedInstance 4.8 USD/h not proposed: an anomaly is open on AWS/us-east-1/m5.large/Linux/Shared (step_up) (100% of the on-demand spend it covers over the last week, at least 10%); purchases resume once it ends";
    let held = propose_with(
        &app,
        "plan-held",
        serde_json::json!({ "anomaly_holds": [note] }),
    );
    let page = b.get(&format!("/ui/proposals/{held}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Anomaly hold"), "{}", page.body);
    assert!(
        page.body
            .contains("StandardReservedInstance 4.8 USD/h not proposed"),
        "{}",
        page.body
    );
    let plain = propose(&app, "plan-plain", "commitd", 1, "no hold");
    assert!(!b
        .get(&format!("/ui/proposals/{plain}"))
        .body
        .contains("Anomaly hold"));
}
