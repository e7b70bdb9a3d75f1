//! The HTTP routes.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /healthz` | none | the process is up |
//! | `GET /readyz` | none | the database answers and start-up is complete |
//! | `GET /metrics` | none | Prometheus text |
//! | `GET /api/v1/proposals[?state=proposed]` | viewer | list |
//! | `GET /api/v1/proposals/{id}` | viewer | one proposal with its decisions |
//! | `POST /api/v1/proposals/{id}/approve` `{"reason": ...}` | approver | approve |
//! | `POST /api/v1/proposals/{id}/reject` `{"reason": ...}` | approver | reject (reason required) |
//! | `/ui/...` | session | the web console ([`super::console`], docs/console.md) |
//!
//! Decisions go through [`super::decide::decide`], the one path the console shares. The token's name is the actor of the decision. The API never calls a provider: a completing
//! approval wakes the daemon's executor, which runs the execution with its lease and checks;
//! `/metrics` shows the inventory the service last read (see [`Metrics`]).
//!
//! A request body is read only after its bearer token is accepted, and at most
//! `max_body_bytes` of it (413 beyond): an anonymous client cannot make the server read
//! anything but headers. The transport (TLS, timeouts, connection limit) is [`super::transport`].

use super::console::{self, ConsoleSettings};
use super::decide::{decide, DecideError, Verdict};
use crate::audit::AuditLog;
use crate::domain::Hour;
use crate::identity::{Principal, Role, TokenStore};
use crate::proposals::{ProposalError, ProposalState, ProposalStore};
use crate::telemetry::Metrics;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub proposals: ProposalStore,
    pub audit: AuditLog,
    pub tokens: TokenStore,
    pub metrics: Arc<Metrics>,
    /// Wakes the executor after an approval completes.
    pub wake: Arc<tokio::sync::Notify>,
    pub ready: Arc<AtomicBool>,
    /// The largest request body read (after authentication).
    pub max_body_bytes: usize,
    /// The web console's settings (sessions, cookies, what it shows beyond the store).
    pub console: ConsoleSettings,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/proposals", get(list))
        .route("/api/v1/proposals/{id}", get(show))
        .route("/api/v1/proposals/{id}/approve", post(approve))
        .route("/api/v1/proposals/{id}/reject", post(reject))
        .merge(console::routes())
        .with_state(state)
}

/// An error answer: a status and a message, sent as `{"error": message}`.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError(status, message.into()).into_response()
}

async fn authorize(s: &AppState, headers: &HeaderMap, need: Role) -> Result<Principal, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "missing bearer token".into()))?;
    let principal = s
        .tokens
        .authenticate(token, chrono::Utc::now())
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "unknown, expired or revoked token".into(),
            )
        })?;
    if principal.role < need {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "{} has role {}, this needs {}",
                principal.name,
                principal.role.as_str(),
                need.as_str()
            ),
        ));
    }
    Ok(principal)
}

fn proposal_error(e: ProposalError) -> Response {
    let status = match &e {
        ProposalError::NotFound(_) => StatusCode::NOT_FOUND,
        ProposalError::NotOpen { .. }
        | ProposalError::Expired { .. }
        | ProposalError::AlreadyDecided { .. } => StatusCode::CONFLICT,
        ProposalError::SelfApproval { .. } => StatusCode::FORBIDDEN,
        ProposalError::NoReason(_) => StatusCode::BAD_REQUEST,
        ProposalError::Database { .. }
        | ProposalError::Corrupt { .. }
        | ProposalError::Audit(_)
        | ProposalError::Fenced(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn readyz(State(s): State<AppState>) -> Response {
    if !s.ready.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "starting");
    }
    match s.proposals.counts().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let counts = s.proposals.counts().await.unwrap_or_default();
    // The commitments gauge comes from what the daemon last read from its provider: an
    // unauthenticated scrape must never cost a cloud API call (rate limits, bills, latency).
    let text = s
        .metrics
        .render(&counts, Hour::from_datetime(chrono::Utc::now()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer).await {
        return r.into_response();
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(text) => match ProposalState::parse(text) {
            Some(st) => Some(st),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown state '{text}'")),
        },
    };
    match s.proposals.list(state).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => proposal_error(e),
    }
}

async fn show(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer).await {
        return r.into_response();
    }
    match s.proposals.get(&id).await {
        Ok(Some(p)) => Json(p).into_response(),
        Ok(None) => proposal_error(ProposalError::NotFound(id)),
        Err(e) => proposal_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    reason: Option<String>,
}

fn too_large(limit: usize) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {limit} bytes"),
    )
}

/// Reads at most `limit` bytes of a body. Called only once the caller is authorized. A
/// declared Content-Length above the limit is refused before a byte of the body is read.
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(e) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}"),
        )),
    }
}

/// The decision's body, read after `authorize`.
async fn body(
    s: &AppState,
    headers: &HeaderMap,
    request: Request,
) -> Result<DecisionBody, ApiError> {
    let bytes = read_limited(headers, request.into_body(), s.max_body_bytes).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionBody::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    // Authentication first: the body of an unauthorized request is never read.
    let who = match authorize(&s, &headers, Role::Approver).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let b = match body(&s, &headers, request).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let verdict = Verdict::Approve { reason: b.reason };
    match decide(&s, &who, &id, verdict, chrono::Utc::now()).await {
        Ok(p) => Json(p).into_response(),
        // An expired refusal committed the expiry with its event.
        Err(e) => decide_error(e),
    }
}

async fn reject(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let who = match authorize(&s, &headers, Role::Approver).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let b = match body(&s, &headers, request).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let verdict = Verdict::Reject {
        reason: b.reason.unwrap_or_default(),
    };
    match decide(&s, &who, &id, verdict, chrono::Utc::now()).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => decide_error(e),
    }
}

fn decide_error(e: DecideError) -> Response {
    match e {
        DecideError::Role { .. } => error(StatusCode::FORBIDDEN, e.to_string()),
        DecideError::Proposal(e) => proposal_error(e),
    }
}
