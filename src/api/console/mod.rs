//! The web console, served under `/ui/` by the same router, process and store as the API
//! (docs/console.md).
//!
//! Server-rendered HTML (maud: templates checked at compile time, every value escaped), one
//! embedded stylesheet, charts drawn as SVG on the server, and one small embedded script that
//! only enhances (it adds the reader's local time to each time's hover text): every action is a
//! plain form and works without it. Every response of the console carries a strict
//! Content-Security-Policy (`default-src 'none'`, styles and that script from this origin only,
//! no inline script) and no-store caching.
//!
//! **Sessions.** A person logs in with an API token (the same tokens and roles as the API);
//! the token is exchanged for a server-side session ([`crate::identity::session`]) whose secret
//! is an HttpOnly, SameSite=Strict cookie scoped to `/ui` (Secure when served over TLS or when
//! `public_url` is https). A session ends at its expiry, at logout, or as soon as its token
//! stops authenticating; an ended session is sent back to the login page.
//!
//! **Forms.** Every form that changes something carries the session's CSRF token, compared in
//! constant time before anything else is done; the login form carries a one-time nonce bound
//! to a cookie (double submit), so a third-party page can neither log a browser in as someone
//! else nor submit a decision. Bodies are read only after the session is accepted, at most
//! `max_body_bytes` of them.
//!
//! **Decisions** go through [`super::decide::decide`], exactly as the API's: the same role
//! check, the same refusals (self-approval, a second decision by the same person, expiry), the
//! same audit event with the person's name and the action digest.

mod backtest;
mod insight;
mod pages;
pub mod view;

use super::server::{read_limited, AppState};
use crate::audit::{ConsoleLogin, ConsoleLogout, NewEvent};
use crate::config::DEFAULT_CONSOLE_SESSION_MINUTES;
use crate::identity::session::{same_secret, Session};
use crate::policy::PolicySet;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The cookie holding the session's secret.
pub const SESSION_COOKIE: &str = "commitd_session";
/// The cookie holding the login form's nonce.
pub const LOGIN_COOKIE: &str = "commitd_login";

/// The Content-Security-Policy of every console response: nothing but this origin's
/// stylesheet and script file and forms posting back here; no inline script, no frame, no
/// plugin, no base rewrite.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("console.css");

/// The one script: local time on hover (an enhancement; nothing depends on it).
const SCRIPT: &str = include_str!("console.js");

/// Reads the policies in force (for the kill switch state), handed in by the composition
/// root: the console does not load files itself.
pub type PolicyView = Arc<dyn Fn() -> Result<PolicySet, String> + Send + Sync>;

/// Reads the saved backtest report (`[api] backtest_report`): its name and its text (the JSON
/// of `commitd backtest --json`), handed in by the composition root.
pub type BacktestView = Arc<dyn Fn() -> Result<(String, String), String> + Send + Sync>;

/// Reads a month's FOCUS bill (the name of the export and its commitments) for the finance
/// page's realized savings, handed in by the composition root when the daemon reads a FOCUS
/// source; the console reads no file itself.
pub type BillView = Arc<
    dyn Fn(crate::report::Month) -> Result<(String, Vec<crate::ingest::BillCommitment>), String>
        + Send
        + Sync,
>;

/// The console's settings.
#[derive(Clone)]
pub struct ConsoleSettings {
    /// How long a session lives (at most; it also ends with its token).
    pub session_ttl: chrono::Duration,
    /// Mark cookies `Secure` (served over TLS, or behind an https `public_url`).
    pub secure_cookies: bool,
    /// The policies in force; None: the overview says they are not available here.
    pub policies: Option<PolicyView>,
    /// The saved backtest report; None: the backtest page says how to configure one.
    pub backtest: Option<BacktestView>,
    /// The month's FOCUS bill for realized savings; None: the finance page says why it shows
    /// none.
    pub bill: Option<BillView>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            session_ttl: chrono::Duration::minutes(i64::from(DEFAULT_CONSOLE_SESSION_MINUTES)),
            secure_cookies: false,
            policies: None,
            backtest: None,
            bill: None,
        }
    }
}

/// The console's routes (merged into [`super::server::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/console.css", get(stylesheet))
        .route("/ui/console.js", get(script))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/proposals", get(pages::proposals))
        .route("/ui/proposals/{id}", get(pages::proposal))
        .route("/ui/proposals/{id}/approve", post(pages::approve))
        .route("/ui/proposals/{id}/reject", post(pages::reject))
        .route("/ui/commitments", get(insight::commitments))
        .route("/ui/backtest", get(backtest::page))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/audit/verify", get(pages::verify))
        .route("/ui/audit/export", get(pages::export))
        .route("/ui/audit/{id}", get(pages::event))
        .route("/ui/finance", get(pages::finance))
        .route("/ui/finance/report.csv", get(pages::finance_csv))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// An HTML response.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A page saying what went wrong (and that nothing changed, when it is a refusal).
pub(crate) fn problem(status: StatusCode, session: Option<&Session>, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html_response(
        status,
        view::page(
            title,
            session,
            None,
            html! { (view::flash(false, message)) p { a href="/ui/" { "Back to the overview" } } },
        ),
    )
}

/// The value of cookie `name` in the request, if sent.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(s: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if s.console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.max(0)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 303 to `location` (after a form: the browser follows with a GET).
fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Back to the login page; with `ended`, the session cookie is cleared and the page says the
/// session ended.
fn to_login(s: &AppState, ended: bool) -> Response {
    if ended {
        let mut r = see_other("/ui/login?ended=1");
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(s, SESSION_COOKIE, "", "/ui", 0),
        );
        r
    } else {
        see_other("/ui/login")
    }
}

/// The session of the request, or the response sending the browser to the login page.
pub(crate) async fn current(s: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(secret) = cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else {
        return Err(to_login(s, false));
    };
    match s.tokens.session(secret, Utc::now()).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(to_login(s, true)),
        Err(e) => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            &format!("cannot check the session: {e}"),
        )),
    }
}

/// The session of a page's request, as a handler's argument: without one (or with one that
/// ended) the handler does not run and the browser is sent to the login page.
pub(crate) struct LoggedIn(pub Session);

impl axum::extract::FromRequestParts<AppState> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<Self, Response> {
        current(s, &parts.headers).await.map(LoggedIn)
    }
}

/// A page for `session`: 200, `body` in the console's frame, `nav` marked.
pub(crate) fn ok_page(session: &Session, title: &str, nav: view::Nav, body: Markup) -> Response {
    html_response(
        StatusCode::OK,
        view::page(title, Some(session), Some(nav), body),
    )
}

/// The fields of a form body (urlencoded), read up to the body limit.
pub(crate) async fn read_form(
    s: &AppState,
    session: Option<&Session>,
    headers: &HeaderMap,
    body: Body,
) -> Result<HashMap<String, String>, Response> {
    let bytes = read_limited(headers, body, s.max_body_bytes)
        .await
        .map_err(|e| problem(e.0, session, &e.1))?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The refusal of a form whose CSRF token is missing or not this session's (None: the token
/// is this session's). Checked before anything is done, so a refused form changes nothing.
pub(crate) fn csrf_refusal(session: &Session, form: &HashMap<String, String>) -> Option<Response> {
    match form.get("csrf") {
        Some(t) if same_secret(t, &session.csrf) => None,
        _ => Some(problem(
            StatusCode::FORBIDDEN,
            Some(session),
            "This form did not carry this session's anti-forgery (CSRF) token, so it was \
             refused and nothing changed. Reload the page and try again.",
        )),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct LoginQuery {
    ended: Option<String>,
}

fn login_form(s: &AppState, status: StatusCode, message: Option<(bool, &str)>) -> Response {
    let nonce = match crate::identity::session::random_hex() {
        Ok(n) => n,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, None, &e.to_string()),
    };
    let body = html! {
        @if let Some((ok, text)) = message { (view::flash(ok, text)) }
        form.login method="post" action="/ui/login" {
            input type="hidden" name="csrf" value=(nonce);
            p {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required
                    aria-describedby="token-help";
            }
            p #token-help .muted {
                "The token you use with the API (" code { "cd_…" } "), from "
                code { "commitd tokens create NAME --role viewer|approver|admin" }
                ". It is exchanged for a session and not kept by the browser."
            }
            p { button #login type="submit" { "Log in" } }
        }
    };
    let mut r = html_response(status, view::page("Log in", None, None, body));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(s, LOGIN_COOKIE, &nonce, "/ui/login", 900),
    );
    r
}

async fn login_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE).filter(|v| !v.is_empty()) {
        if let Ok(Some(_)) = s.tokens.session(secret, Utc::now()).await {
            return see_other("/ui/");
        }
    }
    let message = q.ended.is_some().then_some((
        false,
        "Your session ended (expired, logged out, or its token is no longer valid). Log in again.",
    ));
    login_form(&s, StatusCode::OK, message)
}

async fn login(State(s): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    let form = match read_form(&s, None, &headers, request.into_body()).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let nonce_ok = match (cookie(&headers, LOGIN_COOKIE), form.get("csrf")) {
        (Some(expected), Some(given)) => !expected.is_empty() && same_secret(expected, given),
        _ => false,
    };
    if !nonce_ok {
        return login_form(
            &s,
            StatusCode::FORBIDDEN,
            Some((
                false,
                "The login form expired or did not come from this site; nothing was done. Try again.",
            )),
        );
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    if token.is_empty() {
        return login_form(
            &s,
            StatusCode::BAD_REQUEST,
            Some((false, "Paste an API token to log in.")),
        );
    }
    match s
        .tokens
        .open_session(token, s.console.session_ttl, Utc::now())
        .await
    {
        Ok(Some(opened)) => {
            // Audited: who logged in, with which role, until when. A login that cannot be
            // recorded is refused (its session is closed again).
            let who = &opened.session.principal;
            let event = NewEvent::new(
                Utc::now(),
                who.name.clone(),
                who.name.clone(),
                ConsoleLogin {
                    name: who.name.clone(),
                    role: who.role.as_str().to_string(),
                    session_expires_at: opened
                        .session
                        .expires_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            );
            if let Err(e) = s.audit.append(event).await {
                let _ = s.tokens.close_session(&opened.secret).await;
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    &format!("cannot record the login in the audit log, so it was refused: {e}"),
                );
            }
            tracing::info!(who = %who.name, "console login");
            let mut r = see_other("/ui/");
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(
                    &s,
                    SESSION_COOKIE,
                    &opened.secret,
                    "/ui",
                    s.console.session_ttl.num_seconds(),
                ),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&s, LOGIN_COOKIE, "", "/ui/login", 0),
            );
            r
        }
        Ok(None) => login_form(
            &s,
            StatusCode::UNAUTHORIZED,
            Some((false, "Unknown, expired or revoked token.")),
        ),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            &format!("cannot open a session: {e}"),
        ),
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    let session = match current(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let form = match read_form(&s, Some(&session), &headers, request.into_body()).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(refused) = csrf_refusal(&session, &form) {
        return refused;
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = s.tokens.close_session(secret).await {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&session),
                &format!("cannot end the session: {e}"),
            );
        }
    }
    // Audited after the session is gone (a logout is never refused: failing to record it
    // is logged, and the session is ended anyway).
    let who = &session.principal;
    let event = NewEvent::new(
        Utc::now(),
        who.name.clone(),
        who.name.clone(),
        ConsoleLogout {
            name: who.name.clone(),
            role: who.role.as_str().to_string(),
        },
    );
    if let Err(e) = s.audit.append(event).await {
        tracing::error!(who = %who.name, error = %e, "console logout not recorded in the audit log");
    }
    tracing::info!(who = %session.principal.name, "console logout");
    to_login(&s, true)
}
