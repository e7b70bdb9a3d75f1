//! A local AWS-compatible test server for the operations commitd calls that moto lacks:
//! Savings Plans (REST-JSON) and EC2 Reserved Instances (Query protocol, XML answers).
//!
//! It speaks the real wire protocols, so the real `aws-sdk-*` clients, pointed at it with an
//! endpoint override, must parse every answer; it applies AWS's rules (validation errors as AWS
//! words them, client-token idempotency, queued purchases, the return window, the exchange
//! value rule) to a simulated account ([`World`]); and it injects faults on demand (throttling,
//! 5xx, a connection dropped before or after the purchase is committed) so retries and crash
//! recovery can be tested.
//!
//! Routing, on one port: `POST /` with a form body is EC2; `POST /<Operation>` is Savings
//! Plans; `/_commitd/...` is the control API (faults, clock, stats) for tests that run the
//! server as a separate process (`commitd-dev aws-test-server`). Every answer carries an
//! `x-amzn-RequestId` header, as AWS's do; requests without a SigV4 `Authorization` header are
//! refused like AWS refuses them.

pub mod ec2;
pub mod savingsplans;
pub mod sts;
pub mod world;

pub use world::{
    ApiError, Fault, Ledger, LedgerListing, LedgerPlan, LedgerRi, Session, Stats, World,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;

/// One answer, before it becomes an HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub request_id: String,
}

/// A running server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(world: World) -> std::io::Result<TestServer> {
        Self::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?, world).await
    }

    pub async fn bind(addr: SocketAddr, world: World) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(world));
        let shared = world.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let world = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let world = world.clone();
                        async move { serve(world, req).await }
                    });
                    // An error here is a dropped connection: injected, or the client went away.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(TestServer { addr, world, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to give the SDK as its endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulated account, for tests to inspect or steer directly.
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Serves until the process is stopped (for the dev sub-command).
    pub async fn run_forever(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A poisoned lock only means a handler panicked; the world is still usable for a test peer.
fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|p| p.into_inner())
}

/// Returned to hyper to close the connection without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .header("x-amzn-RequestId", reply.request_id.as_str());
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"bad response"))))
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Json,
    Query,
    /// STS: the Query protocol with STS's error envelope.
    Sts,
}

fn fault_reply(protocol: Protocol, fault: Fault, request_id: &str) -> Reply {
    let e = match (protocol, fault) {
        (Protocol::Json, Fault::Unauthorized) => ApiError::new(
            403,
            "AccessDeniedException",
            "User is not authorized to perform this action.",
        ),
        (Protocol::Query, Fault::Unauthorized) => ApiError::new(
            403,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
        (Protocol::Sts, Fault::Unauthorized) => ApiError::new(
            403,
            "AccessDenied",
            "User is not authorized to perform: sts:AssumeRole",
        ),
        (Protocol::Json, Fault::Throttle) => {
            ApiError::new(400, "ThrottlingException", "Rate exceeded")
        }
        (Protocol::Query, Fault::Throttle) => {
            ApiError::new(503, "RequestLimitExceeded", "Request limit exceeded.")
        }
        (Protocol::Sts, Fault::Throttle) => ApiError::new(400, "Throttling", "Rate exceeded"),
        (Protocol::Sts, _) => ApiError::new(500, "InternalFailure", "An internal error occurred."),
        (Protocol::Json, _) => ApiError::new(
            500,
            "InternalServerException",
            "An internal error has occurred.",
        ),
        (Protocol::Query, _) => ApiError::new(
            500,
            "InternalError",
            "An internal error has occurred. Please try again.",
        ),
    };
    error_for(protocol, &e, request_id)
}

fn error_for(protocol: Protocol, e: &ApiError, request_id: &str) -> Reply {
    match protocol {
        Protocol::Json => savingsplans::error_reply(e, request_id),
        Protocol::Query => ec2::error_reply(e, request_id),
        Protocol::Sts => sts::error_reply(e, request_id),
    }
}

/// The access key id of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/ec2/aws4_request, ...`).
fn access_key_id(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")?
        .split('/')
        .next()
        .filter(|k| !k.is_empty())
}

async fn serve(
    world: Arc<Mutex<World>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let path = parts.uri.path().to_string();
    if let Some(control_path) = path.strip_prefix("/_commitd/") {
        return Ok(control(&world, control_path, &body));
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let caller = header("authorization")
        .as_deref()
        .and_then(access_key_id)
        .map(str::to_string);
    let security_token = header("x-amz-security-token");

    let (protocol, operation, json_body, form) = if path == "/" {
        let form = ec2::parse_form(&body);
        let action = form.get("Action").cloned().unwrap_or_default();
        let protocol = if action == "AssumeRole" {
            Protocol::Sts
        } else {
            Protocol::Query
        };
        (protocol, action, serde_json::Value::Null, form)
    } else {
        let op = path.trim_start_matches('/').to_string();
        let json = if body.is_empty() {
            serde_json::json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    let mut w = lock(&world);
                    let rid = w.new_request_id();
                    let err = ApiError::new(
                        400,
                        "SerializationException",
                        format!("Malformed JSON: {e}"),
                    );
                    return Ok(to_response(savingsplans::error_reply(&err, &rid)));
                }
            }
        };
        (Protocol::Json, op, json, ec2::Params::new())
    };

    let handled = {
        let mut w = lock(&world);
        handle(
            &mut w,
            Call {
                protocol,
                operation: &operation,
                json: &json_body,
                form: &form,
                caller,
                security_token: security_token.as_deref(),
            },
        )
    };
    // The lock is released before any wait, so a slow fault holds only its own request.
    match handled {
        Handled::Answer(reply) => Ok(to_response(reply)),
        Handled::Drop => Err(Dropped),
        Handled::Late(reply, delay) => {
            tokio::time::sleep(delay).await;
            Ok(to_response(reply))
        }
        Handled::Hang(delay) => {
            tokio::time::sleep(delay).await;
            Err(Dropped)
        }
    }
}

/// One signed or unsigned API request, parsed.
struct Call<'a> {
    protocol: Protocol,
    operation: &'a str,
    json: &'a serde_json::Value,
    form: &'a ec2::Params,
    /// The SigV4 access key id (None: unsigned).
    caller: Option<String>,
    security_token: Option<&'a str>,
}

/// What the connection does with a request.
enum Handled {
    Answer(Reply),
    /// Close the connection without an answer.
    Drop,
    /// Answer after a wait.
    Late(Reply, std::time::Duration),
    /// Close the connection after a wait, without an answer.
    Hang(std::time::Duration),
}

/// Authenticates, applies faults and answers one request, under the world's lock.
fn handle(w: &mut World, call: Call<'_>) -> Handled {
    let Call {
        protocol,
        operation,
        json,
        form,
        caller,
        security_token,
    } = call;
    let request_id = w.new_request_id();
    let Some(caller) = caller else {
        let e = match protocol {
            Protocol::Json => ApiError::new(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
            Protocol::Query | Protocol::Sts => ApiError::new(
                401,
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ),
        };
        return Handled::Answer(error_for(protocol, &e, &request_id));
    };
    // Temporary credentials this server issued must come with their session token, as on AWS;
    // a call signed with them proves the client switched to the assumed role's credentials.
    if let Some(session) = w.session(&caller) {
        if security_token != Some(session.session_token.as_str()) {
            let e = ApiError::new(
                403,
                if protocol == Protocol::Json {
                    "UnrecognizedClientException"
                } else {
                    "AuthFailure"
                },
                "The security token included in the request is invalid.",
            );
            return Handled::Answer(error_for(protocol, &e, &request_id));
        }
    }
    w.record_caller(operation, &caller);
    let fault = w.begin_call(operation);
    match fault {
        Some(Fault::DropBeforeCommit) => return Handled::Drop,
        Some(Fault::SlowBeforeCommit) => return Handled::Hang(w.fault_delay),
        Some(f @ (Fault::Throttle | Fault::ServerError | Fault::Unauthorized)) => {
            return Handled::Answer(fault_reply(protocol, f, &request_id))
        }
        _ => {}
    }
    let reply = match protocol {
        Protocol::Json => savingsplans::reply(w, operation, json, &request_id),
        Protocol::Query => ec2::reply(w, operation, form, &request_id),
        Protocol::Sts => sts::reply(w, operation, form, &request_id),
    };
    w.record_answer(operation, &request_id);
    match fault {
        Some(Fault::DropAfterCommit) => Handled::Drop,
        Some(Fault::ServerErrorAfterCommit) => {
            Handled::Answer(fault_reply(protocol, Fault::ServerError, &request_id))
        }
        Some(Fault::SlowAfterCommit) => Handled::Late(reply, w.fault_delay),
        _ => Handled::Answer(reply),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    operation: String,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
    /// Every call from now on (after the queued faults), until cleared; `times` is ignored.
    #[serde(default)]
    always: bool,
    /// How long the slow faults hold a request (sets the server's delay for every slow fault).
    #[serde(default)]
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearRequest {
    /// None: every operation.
    #[serde(default)]
    operation: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    now: String,
}

/// The control API: `POST /_commitd/faults {"operation","fault","times"}` (or `"always":
/// true`; `"delay_ms"` sets how long the slow faults hold a request), `POST
/// /_commitd/faults/clear {"operation"}` (no body: all), `POST /_commitd/clock {"now": RFC
/// 3339}`, `GET /_commitd/stats`, `GET /_commitd/ledger` (everything bought, with states and
/// tags: [`world::Ledger`]).
fn control(world: &Mutex<World>, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: String| Reply {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body,
        request_id: "control".to_string(),
    };
    let mut w = lock(world);
    let r = match path {
        "faults" => match serde_json::from_slice::<FaultRequest>(body) {
            Ok(f) => {
                if let Some(ms) = f.delay_ms {
                    w.fault_delay = std::time::Duration::from_millis(ms);
                }
                if f.always {
                    w.inject_always(&f.operation, f.fault);
                } else {
                    w.inject(&f.operation, f.fault, f.times);
                }
                reply(200, "{}".into())
            }
            Err(e) => reply(
                400,
                serde_json::json!({ "message": e.to_string() }).to_string(),
            ),
        },
        "faults/clear" => {
            // An empty body clears every operation's faults.
            let parsed = if body.is_empty() {
                Ok(ClearRequest { operation: None })
            } else {
                serde_json::from_slice::<ClearRequest>(body)
            };
            match parsed {
                Ok(c) => {
                    w.clear_faults(c.operation.as_deref());
                    reply(200, "{}".into())
                }
                Err(e) => reply(
                    400,
                    serde_json::json!({ "message": e.to_string() }).to_string(),
                ),
            }
        }
        "ledger" => reply(200, serde_json::to_string(&w.ledger()).unwrap_or_default()),
        "clock" => match serde_json::from_slice::<ClockRequest>(body)
            .ok()
            .and_then(|c| savingsplans::parse_time(&c.now))
        {
            Some(t) => {
                w.set_now(t);
                reply(200, "{}".into())
            }
            None => reply(
                400,
                r#"{"message":"expected {\"now\": RFC 3339 timestamp}"}"#.into(),
            ),
        },
        "stats" => reply(200, serde_json::to_string(&w.stats()).unwrap_or_default()),
        _ => reply(404, r#"{"message":"unknown control path"}"#.into()),
    };
    to_response(r)
}
