//! A local Azure peer for the operations commitd calls: Azure AD's token endpoint (client
//! credentials: secret or federated assertion) and IMDS, Microsoft.Capacity (reservation
//! orders: list, get, purchase, calculatePrice, reservations and their revisions,
//! calculateRefund / return, calculateExchange / exchange) and Microsoft.BillingBenefits
//! (savings plan order aliases, orders, plans, validate), API version 2022-11-01.
//!
//! No Azure emulator covers these APIs, so this one is written from the specs and official
//! examples in `shared/data/azure/`: every answer is shaped like the example of its operation
//! (the same property names, nesting, date formats and `nextLink` paging), long-running
//! operations answer 202 / 201 with `Location` / `Azure-AsyncOperation` and `Retry-After` and
//! move `Creating -> PendingBilling -> Succeeded` as they are polled, PUTs are idempotent on the
//! client-chosen name, bearer tokens and `api-version` are checked, and its state ([`World`]) is
//! its own: it shares no rule or type with commitd's client, on purpose, so that the two do not
//! agree by construction. Faults ([`Fault`]) are injected per operation: an answer dropped after
//! the purchase (return, exchange) was committed, a failing poll, throttling (429 with
//! `Retry-After`), 5xx. [`Ledger`] is what the tests judge by: every purchase, return and
//! exchange the peer committed.

pub mod world;

pub use world::{ExchangeEntry, Fault, Ledger, Op, World};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// A running peer; stops when dropped.
pub struct AzurePeer {
    addr: SocketAddr,
    world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

impl AzurePeer {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(mut world: World) -> std::io::Result<AzurePeer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        world.base = format!("http://{addr}");
        let world = Arc::new(Mutex::new(world));
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(world.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AzurePeer { addr, world, task })
    }

    /// `http://127.0.0.1:PORT`: the Resource Manager endpoint and the login host alike.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for AzurePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One answer before it becomes an HTTP response.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: serde_json::Value,
    /// Drop the connection instead of answering (after whatever the request committed).
    pub drop: bool,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body,
            drop: false,
        }
    }

    /// ARM's error shape: `{"error": {"code", "message"}}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            serde_json::json!({"error": {"code": code, "message": message.into()}}),
        )
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

async fn serve(
    State(world): State<Arc<Mutex<World>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        w.handle(method.as_str(), &uri, &headers, &body)
    };
    let request_id = format!("{:08x}-peer", rand_id(&uri));
    if reply.drop {
        // Headers go out, then the body fails: the client never gets a usable answer.
        let stream = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("answer dropped by fault"))
        });
        let mut b = Response::builder()
            .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK));
        b = b.header("content-type", "application/json");
        return b
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    let mut b = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ms-request-id", request_id);
    for (k, v) in &reply.headers {
        b = b.header(*k, v);
    }
    let text = if reply.body.is_null() {
        String::new()
    } else {
        reply.body.to_string()
    };
    b.body(Body::from(text))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A request id that differs per request (not secret, not random in any strong sense).
fn rand_id(uri: &Uri) -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    n.wrapping_mul(2_654_435_761) ^ (uri.path().len() as u32)
}
