//! The peer's state and its copy of Azure's rules (its own, not commitd's).

use super::Reply;
use axum::http::{HeaderMap, Uri};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const API_VERSION: &str = "2022-11-01";

/// Operations a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Token,
    ListReservationOrders,
    GetReservationOrder,
    PurchaseReservation,
    ListReservations,
    CalculatePrice,
    PollReservation,
    CreateAlias,
    GetAlias,
    ListSavingsPlans,
    ListSavingsPlanOrders,
    Validate,
    PollAlias,
    CalculateRefund,
    Return,
    ListRevisions,
    CalculateExchange,
    Exchange,
    PollExchange,
}

/// A fault injected on the next `times` requests of `op`.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Commit what the request asks (a purchase), then drop the connection.
    DropAnswer { op: Op, times: u32 },
    /// Answer this status (429 with `Retry-After: retry_after`, or a 5xx) without acting.
    Status {
        op: Op,
        status: u16,
        retry_after: Option<u64>,
        times: u32,
    },
}

/// What the peer committed: the judge of "never bought twice".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    /// Reservation order ids, once per purchase committed.
    pub reservation_purchases: Vec<String>,
    /// Savings plan order alias names, once per purchase committed.
    pub savings_plan_purchases: Vec<String>,
    /// PUTs received (first and repeated).
    pub puts: u32,
    /// Token requests answered with a token.
    pub tokens_issued: u32,
    /// Every request: "METHOD path".
    pub requests: Vec<String>,
    /// Returns committed: (order id, instances, USD refunded).
    pub returns: Vec<(String, u32, Decimal)>,
    /// `exchange` POSTs received (answered, faulted or refused).
    pub exchange_posts: u32,
    /// Exchanges committed, once each.
    pub exchanges: Vec<ExchangeEntry>,
}

/// One exchange the peer made: what it gave up and what it bought.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeEntry {
    pub session: String,
    /// (order id, instances) given up.
    pub returned: Vec<(String, u32)>,
    pub refunds: Decimal,
    pub purchases: Decimal,
    /// Reservation orders created by the exchange.
    pub reservation_orders: Vec<String>,
    /// Savings plan order ids created by the exchange.
    pub savings_plan_orders: Vec<String>,
}

/// (order id, item id) of each reservation (savings plan) an exchange made.
type MadeIds = [(String, String)];

/// A `calculateExchange` session, used once by `exchange`.
#[derive(Clone, Debug)]
struct ExchangeSession {
    /// (order id, instances, refund).
    returns: Vec<(String, u32, Decimal)>,
    reservations: Vec<(PurchaseBody, Decimal, Value)>,
    savings_plans: Vec<(AliasBody, Decimal, Value)>,
    refunds: Decimal,
    purchases: Decimal,
}

#[derive(Clone, Debug)]
pub struct OrderRec {
    pub id: String,
    pub reservation_id: String,
    pub sku: String,
    pub location: String,
    pub term: String,
    pub billing_plan: String,
    pub quantity: u32,
    pub display_name: String,
    pub billing_scope: String,
    pub created: DateTime<Utc>,
    pub total: Decimal,
    /// Polls / reads left before it is Succeeded (0: done).
    pub pending: u32,
    pub failed: bool,
    /// Instances returned or exchanged (all: the reservation is Cancelled).
    pub returned: u32,
    /// The reservation's revisions: (effective from, instances held).
    pub revisions: Vec<(DateTime<Utc>, u32)>,
}

#[derive(Clone, Debug)]
pub struct AliasRec {
    pub name: String,
    pub order_id: String,
    pub plan_id: String,
    pub term: String,
    pub billing_plan: Option<String>,
    pub commitment: Decimal,
    pub display_name: String,
    pub billing_scope: String,
    pub created: DateTime<Utc>,
    pub pending: u32,
}

/// A reservation purchase (or price) request, checked.
#[derive(Clone, Debug)]
struct PurchaseBody {
    sku: String,
    location: String,
    term: String,
    plan: String,
    quantity: u32,
    scope: String,
    display: String,
}

/// A savings plan alias request, checked.
#[derive(Clone, Debug)]
struct AliasBody {
    term: String,
    plan: Option<String>,
    amount: Decimal,
    scope: String,
    display: String,
}

/// The peer's world: credentials it accepts, prices, what is owned, faults, the ledger.
pub struct World {
    /// `http://127.0.0.1:PORT` (set at start).
    pub base: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// The federated token (workload identity) the token endpoint accepts as an assertion.
    pub federated_token: String,
    pub managed_identity: bool,
    pub tokens: BTreeSet<String>,
    /// Items per page of a listing.
    pub page_size: usize,
    /// `Retry-After` of long-running operations, in seconds.
    pub retry_after_secs: u64,
    /// Polls before a purchase is Succeeded (Creating -> PendingBilling -> Succeeded).
    pub polls_to_finish: u32,
    pub now: DateTime<Utc>,
    /// USD per instance-hour, by (sku, location, years), lower-case keys.
    pub prices: BTreeMap<(String, String, u8), Decimal>,
    /// When set, `validate` refuses savings plans with this reason.
    pub savings_plan_refusal: Option<String>,
    /// Refunds in the rolling 12 months of the billing profile, USD, and the cap.
    pub refunds_consumed: Decimal,
    pub refund_limit: Decimal,
    /// calculateRefund sessions: id -> (order, instances, refund).
    pub refund_sessions: BTreeMap<String, (String, u32, Decimal)>,
    /// Microsoft's date: reservations bought on or after it are not exchanged into a savings
    /// plan or for services a savings plan covers (VirtualMachines, all this peer sells).
    pub savings_plan_exchange_cutoff: DateTime<Utc>,
    exchange_sessions: BTreeMap<String, ExchangeSession>,
    /// Exchange operations (calculate and exchange): id -> (polls before done, final body).
    exchange_ops: BTreeMap<String, (u32, Value)>,
    pub orders: BTreeMap<String, OrderRec>,
    pub aliases: BTreeMap<String, AliasRec>,
    /// operation id -> (kind, name)
    pub operations: BTreeMap<String, (Op, String)>,
    pub faults: Vec<Fault>,
    pub ledger: Ledger,
    counter: u64,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn num(d: Decimal) -> Value {
    json!(d.to_f64().unwrap_or(0.0))
}

fn ts(t: DateTime<Utc>) -> String {
    // Azure's seven fractional digits (chrono's strftime has no %.7f).
    use chrono::Timelike;
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100
    )
}

fn years_of(term: &str) -> Option<u8> {
    match term {
        "P1Y" => Some(1),
        "P3Y" => Some(3),
        _ => None,
    }
}

impl World {
    pub fn new() -> World {
        let now = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let mut prices = BTreeMap::new();
        for (sku, one, three) in [
            ("standard_d2s_v5", "0.0605", "0.0390"),
            ("standard_d4s_v5", "0.1210", "0.0780"),
            ("standard_d1", "0.0280", "0.0180"),
            ("standard_e4s_v5", "0.1580", "0.1010"),
        ] {
            for loc in ["westus", "eastus", "westeurope"] {
                prices.insert(
                    (sku.to_string(), loc.to_string(), 1),
                    one.parse().unwrap_or_default(),
                );
                prices.insert(
                    (sku.to_string(), loc.to_string(), 3),
                    three.parse().unwrap_or_default(),
                );
            }
        }
        World {
            base: String::new(),
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: "peer-client-secret".into(),
            federated_token: "eyJhbGciOiJSUzI1NiJ9.peer-federated-token.sig".into(),
            managed_identity: true,
            tokens: BTreeSet::new(),
            page_size: 2,
            retry_after_secs: 0,
            polls_to_finish: 2,
            now,
            prices,
            savings_plan_refusal: None,
            refunds_consumed: Decimal::ZERO,
            refund_limit: Decimal::from(50_000),
            refund_sessions: BTreeMap::new(),
            savings_plan_exchange_cutoff: DateTime::parse_from_rfc3339("2027-02-01T00:00:00Z")
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or_default(),
            exchange_sessions: BTreeMap::new(),
            exchange_ops: BTreeMap::new(),
            orders: BTreeMap::new(),
            aliases: BTreeMap::new(),
            operations: BTreeMap::new(),
            faults: Vec::new(),
            ledger: Ledger::default(),
            counter: 0,
        }
    }

    fn next_guid(&mut self, tag: u8) -> String {
        self.counter += 1;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            0x5eed_0000u32 + u32::from(tag),
            self.counter & 0xffff,
            self.counter & 0xfff,
            u64::from(tag) & 0xfff,
            self.counter
        )
    }

    fn price_of(&self, sku: &str, location: &str, years: u8) -> Option<Decimal> {
        self.prices
            .get(&(
                sku.to_ascii_lowercase(),
                location.to_ascii_lowercase(),
                years,
            ))
            .copied()
    }

    /// The term total the peer charges: hourly x 8760 h/yr x years x quantity, to the cent.
    pub fn total_of(&self, sku: &str, location: &str, years: u8, quantity: u32) -> Option<Decimal> {
        let hourly = self.price_of(sku, location, years)?;
        Some(
            (hourly * Decimal::from(8760 * u32::from(years)) * Decimal::from(quantity))
                .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven),
        )
    }

    /// Adds a reservation order already bought (inventory for listing tests).
    #[allow(clippy::too_many_arguments)]
    pub fn seed_reservation(
        &mut self,
        sku: &str,
        location: &str,
        term: &str,
        billing_plan: &str,
        quantity: u32,
        age_days: i64,
    ) -> String {
        let id = self.next_guid(1);
        let reservation_id = self.next_guid(2);
        let years = years_of(term).unwrap_or(1);
        let total = self
            .total_of(sku, location, years, quantity)
            .unwrap_or_default();
        self.orders.insert(
            id.clone(),
            OrderRec {
                id: id.clone(),
                reservation_id,
                sku: sku.into(),
                location: location.into(),
                term: term.into(),
                billing_plan: billing_plan.into(),
                quantity,
                display_name: format!("seeded {sku}"),
                billing_scope: "/subscriptions/ed3a1871-612d-abcd-a849-c2542a68be83".into(),
                created: self.now - Duration::days(age_days),
                total,
                pending: 0,
                failed: false,
                returned: 0,
                revisions: vec![(self.now - Duration::days(age_days), quantity)],
            },
        );
        id
    }

    /// Adds a savings plan already bought.
    pub fn seed_savings_plan(
        &mut self,
        hourly: &str,
        term: &str,
        monthly: bool,
        age_days: i64,
    ) -> String {
        let name = format!("seeded-{}", self.counter + 1);
        let order_id = self.next_guid(3);
        let plan_id = self.next_guid(4);
        self.aliases.insert(
            name.clone(),
            AliasRec {
                name: name.clone(),
                order_id: order_id.clone(),
                plan_id,
                term: term.into(),
                billing_plan: monthly.then(|| "P1M".to_string()),
                commitment: hourly.parse().unwrap_or_default(),
                display_name: "seeded savings plan".into(),
                billing_scope: "/subscriptions/30000000-0000-0000-0000-000000000000".into(),
                created: self.now - Duration::days(age_days),
                pending: 0,
            },
        );
        order_id
    }

    fn take_fault(&mut self, op: Op) -> Option<Fault> {
        let i = self.faults.iter().position(|f| match f {
            Fault::DropAnswer { op: o, times } | Fault::Status { op: o, times, .. } => {
                *o == op && *times > 0
            }
        })?;
        let f = self.faults[i].clone();
        match &mut self.faults[i] {
            Fault::DropAnswer { times, .. } | Fault::Status { times, .. } => *times -= 1,
        }
        Some(f)
    }

    /// Routes one request.
    pub fn handle(&mut self, method: &str, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Reply {
        let path = uri.path().to_string();
        self.ledger.requests.push(format!("{method} {path}"));
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        // Azure AD and IMDS first: no bearer, no api-version.
        if method == "POST" && segs.len() == 4 && segs[1..] == ["oauth2", "v2.0", "token"] {
            let tenant = segs[0].to_string();
            return self.with_fault(Op::Token, |w| w.token(&tenant, body));
        }
        if method == "GET" && path == "/metadata/identity/oauth2/token" {
            return self.imds(headers, &query);
        }
        if segs.first() != Some(&"providers") {
            return Reply::error(404, "NotFound", format!("no route {method} {path}"));
        }
        // ARM: a bearer token this peer issued, and the API version it speaks.
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        match bearer {
            Some(t) if self.tokens.contains(&t) => {}
            Some(_) => {
                return Reply::error(
                    401,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                )
            }
            None => {
                return Reply::error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                )
            }
        }
        match query.get("api-version").map(String::as_str) {
            Some(API_VERSION) => {}
            Some(v) => {
                return Reply::error(
                    400,
                    "InvalidApiVersionParameter",
                    format!(
                    "The api-version '{v}' is invalid. The supported versions are '{API_VERSION}'."
                ),
                )
            }
            None => {
                return Reply::error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            }
        }
        let skip: usize = query
            .get("$skiptoken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let expand = query.get("$expand").map(String::as_str) == Some("planInformation");
        match (method, &segs[1..]) {
            ("GET", ["Microsoft.Capacity", "reservationOrders"]) => {
                self.with_fault(Op::ListReservationOrders, |w| {
                    let all: Vec<Value> = w.orders.values().map(|o| w.order_json(o, false)).collect();
                    w.page(&path, all, skip)
                })
            }
            ("GET", ["Microsoft.Capacity", "reservationOrders", id]) => {
                let id = id.to_string();
                self.with_fault(Op::GetReservationOrder, |w| match w.orders.get_mut(&id) {
                    Some(o) => {
                        o.pending = o.pending.saturating_sub(1);
                        let o = o.clone();
                        Reply::json(200, w.order_json(&o, expand))
                    }
                    None => Reply::error(
                        404,
                        "ReservationOrderNotFound",
                        format!("Reservation order {id} was not found."),
                    ),
                })
            }
            ("PUT", ["Microsoft.Capacity", "reservationOrders", id]) => {
                let id = id.to_string();
                self.ledger.puts += 1;
                self.with_fault(Op::PurchaseReservation, |w| w.purchase(&id, body))
            }
            ("GET", ["Microsoft.Capacity", "reservationOrders", id, "reservations"]) => {
                let id = id.to_string();
                self.with_fault(Op::ListReservations, |w| match w.orders.get(&id) {
                    Some(o) => {
                        let all = vec![w.reservation_json(o)];
                        w.page(&path, all, skip)
                    }
                    None => Reply::error(404, "ReservationOrderNotFound", format!("Reservation order {id} was not found.")),
                })
            }
            ("GET", ["Microsoft.Capacity", "reservations"]) => {
                self.with_fault(Op::ListReservations, |w| {
                    let all: Vec<Value> = w
                        .orders
                        .values()
                        .filter(|o| !o.failed)
                        .map(|o| w.reservation_json(o))
                        .collect();
                    let mut r = w.page(&path, all, skip);
                    if let Value::Object(m) = &mut r.body {
                        m.insert(
                            "summary".into(),
                            json!({"succeededCount": w.orders.len(), "failedCount": 0, "expiringCount": 0, "expiredCount": 0, "pendingCount": 0, "cancelledCount": 0}),
                        );
                    }
                    r
                })
            }
            ("POST", ["Microsoft.Capacity", "reservationOrders", id, "calculateRefund"]) => {
                let id = id.to_string();
                self.with_fault(Op::CalculateRefund, |w| w.calculate_refund(&id, body))
            }
            ("POST", ["Microsoft.Capacity", "reservationOrders", id, "return"]) => {
                let id = id.to_string();
                self.with_fault(Op::Return, |w| w.give_back(&id, body))
            }
            ("GET", ["Microsoft.Capacity", "reservationOrders", id, "reservations", rid, "revisions"]) => {
                let (id, rid) = (id.to_string(), rid.to_string());
                self.with_fault(Op::ListRevisions, |w| match w.orders.get(&id) {
                    Some(o) if o.reservation_id == rid => {
                        let all = w.revisions_json(o);
                        w.page(&path, all, skip)
                    }
                    _ => Reply::error(404, "ReservationNotFound", format!("Reservation {id}/{rid} was not found.")),
                })
            }
            ("POST", ["Microsoft.Capacity", "calculateExchange"]) => {
                self.with_fault(Op::CalculateExchange, |w| w.calculate_exchange(body))
            }
            ("POST", ["Microsoft.Capacity", "exchange"]) => {
                self.ledger.exchange_posts += 1;
                self.with_fault(Op::Exchange, |w| w.exchange(body))
            }
            ("GET", ["Microsoft.Capacity", "operationResults", op]) if self.exchange_ops.contains_key(*op) => {
                let op = op.to_string();
                self.with_fault(Op::PollExchange, |w| w.poll_exchange(&op))
            }
            ("POST", ["Microsoft.Capacity", "calculatePrice"]) => {
                self.with_fault(Op::CalculatePrice, |w| w.calculate_price(body))
            }
            ("GET", ["Microsoft.Capacity", "operationResults", op]) => {
                let op = op.to_string();
                self.with_fault(Op::PollReservation, |w| w.poll_order(&op))
            }
            ("PUT", ["Microsoft.BillingBenefits", "savingsPlanOrderAliases", name]) => {
                let name = name.to_string();
                self.ledger.puts += 1;
                self.with_fault(Op::CreateAlias, |w| w.create_alias(&name, body))
            }
            ("GET", ["Microsoft.BillingBenefits", "savingsPlanOrderAliases", name]) => {
                let name = name.to_string();
                self.with_fault(Op::GetAlias, |w| match w.aliases.get_mut(&name) {
                    Some(a) => {
                        a.pending = a.pending.saturating_sub(1);
                        let a = a.clone();
                        Reply::json(200, w.alias_json(&a))
                    }
                    None => Reply::error(
                        404,
                        "SavingsPlanOrderAliasNotFound",
                        format!("Savings plan order alias {name} was not found."),
                    ),
                })
            }
            ("GET", ["Microsoft.BillingBenefits", "savingsPlanOrders"]) => {
                self.with_fault(Op::ListSavingsPlanOrders, |w| {
                    let all: Vec<Value> = w.aliases.values().map(|a| w.sp_order_json(a)).collect();
                    w.page(&path, all, skip)
                })
            }
            ("GET", ["Microsoft.BillingBenefits", "savingsPlanOrders", order, "savingsPlans"]) => {
                let order = order.to_string();
                self.with_fault(Op::ListSavingsPlans, |w| {
                    let all: Vec<Value> = w
                        .aliases
                        .values()
                        .filter(|a| a.order_id == order)
                        .map(|a| w.savings_plan_json(a))
                        .collect();
                    w.page(&path, all, skip)
                })
            }
            ("GET", ["Microsoft.BillingBenefits", "savingsPlans"]) => {
                self.with_fault(Op::ListSavingsPlans, |w| {
                    let all: Vec<Value> = w.aliases.values().map(|a| w.savings_plan_json(a)).collect();
                    w.page(&path, all, skip)
                })
            }
            ("POST", ["Microsoft.BillingBenefits", "validate"]) => {
                self.with_fault(Op::Validate, |w| w.validate(body))
            }
            ("GET", ["Microsoft.BillingBenefits", "operationResults", op]) => {
                let op = op.to_string();
                self.with_fault(Op::PollAlias, |w| w.poll_alias(&op))
            }
            _ => Reply::error(404, "NotFound", format!("no route {method} {path}")),
        }
    }

    /// Runs `act` unless a fault answers instead; a dropped answer runs it, then drops.
    fn with_fault(&mut self, op: Op, act: impl FnOnce(&mut World) -> Reply) -> Reply {
        match self.take_fault(op) {
            Some(Fault::Status {
                status,
                retry_after,
                ..
            }) => {
                let code = if status == 429 {
                    "TooManyRequests"
                } else {
                    "InternalServerError"
                };
                let mut r = Reply::error(status, code, format!("injected {status}"));
                if let Some(s) = retry_after {
                    r = r.header("retry-after", s.to_string());
                }
                r
            }
            Some(Fault::DropAnswer { .. }) => {
                let mut r = act(self);
                r.drop = true;
                r
            }
            None => act(self),
        }
    }

    fn page(&self, path: &str, all: Vec<Value>, skip: usize) -> Reply {
        let size = self.page_size.max(1);
        let items: Vec<Value> = all.iter().skip(skip).take(size).cloned().collect();
        let next = skip + size;
        let mut body = json!({ "value": items });
        if next < all.len() {
            body["nextLink"] = json!(format!(
                "{}{path}?api-version={API_VERSION}&%24skiptoken={next}",
                self.base
            ));
        }
        Reply::json(200, body)
    }

    fn token(&mut self, tenant: &str, body: &[u8]) -> Reply {
        let aad = |status: u16, error: &str, description: &str| {
            Reply::json(
                status,
                json!({"error": error, "error_description": description, "error_codes": [7000215]}),
            )
        };
        if tenant != self.tenant_id {
            return aad(400, "invalid_request", "AADSTS90002: Tenant not found.");
        }
        let form: BTreeMap<String, String> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return aad(
                400,
                "unsupported_grant_type",
                "AADSTS70003: grant_type must be client_credentials.",
            );
        }
        if form.get("client_id") != Some(&self.client_id) {
            return aad(
                400,
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
            );
        }
        if !form.get("scope").is_some_and(|s| s.ends_with("/.default")) {
            return aad(
                400,
                "invalid_scope",
                "AADSTS1002012: The provided value for scope is not valid.",
            );
        }
        let by_secret = form.get("client_secret") == Some(&self.client_secret);
        let by_assertion = form.get("client_assertion_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && form.get("client_assertion") == Some(&self.federated_token);
        if !(by_secret || by_assertion) {
            return aad(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            );
        }
        self.issue()
    }

    fn issue(&mut self) -> Reply {
        self.ledger.tokens_issued += 1;
        let token = format!("peer-token-{}", self.ledger.tokens_issued);
        self.tokens.insert(token.clone());
        Reply::json(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
        )
    }

    fn imds(&mut self, headers: &HeaderMap, query: &BTreeMap<String, String>) -> Reply {
        if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
            return Reply::json(
                400,
                json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            );
        }
        if !self.managed_identity || !query.contains_key("resource") {
            return Reply::json(
                400,
                json!({"error": "invalid_request", "error_description": "Identity not found"}),
            );
        }
        self.ledger.tokens_issued += 1;
        let token = format!("peer-mi-token-{}", self.ledger.tokens_issued);
        self.tokens.insert(token.clone());
        Reply::json(
            200,
            json!({"access_token": token, "expires_in": "3599", "expires_on": "1999999999", "resource": query.get("resource"), "token_type": "Bearer"}),
        )
    }

    fn order_state(o: &OrderRec) -> &'static str {
        if o.failed {
            "BillingFailed"
        } else if o.returned >= o.quantity {
            "Cancelled"
        } else {
            match o.pending {
                0 => "Succeeded",
                1 => "PendingBilling",
                _ => "Creating",
            }
        }
    }

    fn order_json(&self, o: &OrderRec, expand: bool) -> Value {
        let years = years_of(&o.term).unwrap_or(1);
        let expiry = o.created + Duration::days(365 * i64::from(years));
        let mut props = json!({
            "displayName": o.display_name,
            "requestDateTime": ts(o.created),
            "createdDateTime": ts(o.created + Duration::seconds(150)),
            "benefitStartTime": ts(o.created),
            "expiryDateTime": ts(expiry),
            "term": o.term,
            "billingPlan": o.billing_plan,
            "provisioningState": World::order_state(o),
            "reservations": [{"id": format!("/providers/microsoft.capacity/reservationOrders/{}/reservations/{}", o.id, o.reservation_id)}],
            "originalQuantity": o.quantity,
        });
        if expand {
            props["planInformation"] = json!({
                "pricingCurrencyTotal": {"currencyCode": "USD", "amount": num(o.total)},
                "startDate": o.created.format("%Y-%m-%d").to_string(),
                "nextPaymentDueDate": (o.billing_plan == "Monthly").then(|| (o.created + Duration::days(30)).format("%Y-%m-%d").to_string()),
                "transactions": [],
            });
        }
        json!({
            "id": format!("/providers/microsoft.capacity/reservationOrders/{}", o.id),
            "type": "Microsoft.Capacity/reservationOrders",
            "name": o.id,
            "etag": 7,
            "properties": props,
        })
    }

    fn reservation_json(&self, o: &OrderRec) -> Value {
        let years = years_of(&o.term).unwrap_or(1);
        let expiry = o.created + Duration::days(365 * i64::from(years));
        json!({
            "id": format!("/providers/microsoft.capacity/reservationOrders/{}/reservations/{}", o.id, o.reservation_id),
            "name": format!("{}/{}", o.id, o.reservation_id),
            "type": "Microsoft.Capacity/reservationOrders/reservations",
            "location": o.location,
            "sku": {"name": o.sku},
            "properties": {
                "appliedScopeType": "Shared",
                "displayName": o.display_name,
                "displayProvisioningState": World::order_state(o),
                "effectiveDateTime": ts(o.created),
                "benefitStartTime": ts(o.created),
                "expiryDate": expiry.format("%Y-%m-%d").to_string(),
                "expiryDateTime": ts(expiry),
                "provisioningState": World::order_state(o),
                "provisioningSubState": null,
                "purchaseDate": o.created.format("%Y-%m-%d").to_string(),
                "purchaseDateTime": ts(o.created),
                "quantity": o.quantity - o.returned.min(o.quantity),
                "renew": false,
                "reservedResourceType": "VirtualMachines",
                "instanceFlexibility": "On",
                "skuDescription": null,
                "term": o.term,
                "billingPlan": o.billing_plan,
                "userFriendlyAppliedScopeType": "Shared",
                "userFriendlyRenewState": "Off",
                "utilization": {
                    "trend": "UP",
                    "aggregates": [
                        {"grain": 1.0, "grainUnit": "days", "value": 100.0, "valueUnit": "percentage"},
                        {"grain": 7.0, "grainUnit": "days", "value": 97.5, "valueUnit": "percentage"},
                        {"grain": 30.0, "grainUnit": "days", "value": 95.25, "valueUnit": "percentage"}
                    ]
                }
            }
        })
    }

    /// Checks a purchase body; the error names the field, as ARM's validation does.
    fn parse_purchase(&self, body: &[u8]) -> Result<PurchaseBody, Reply> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            Reply::error(
                400,
                "InvalidRequestContent",
                format!("The request content was invalid: {e}"),
            )
        })?;
        let bad = |field: &str, why: &str| {
            Reply::error(400, "InvalidRequestContent", format!("{field}: {why}"))
        };
        let sku = v["sku"]["name"]
            .as_str()
            .ok_or_else(|| bad("sku.name", "required"))?;
        let location = v["location"]
            .as_str()
            .ok_or_else(|| bad("location", "required"))?;
        let p = &v["properties"];
        if p["reservedResourceType"].as_str() != Some("VirtualMachines") {
            return Err(bad(
                "properties.reservedResourceType",
                "only VirtualMachines is sold here",
            ));
        }
        let term = p["term"]
            .as_str()
            .filter(|t| years_of(t).is_some())
            .ok_or_else(|| bad("properties.term", "must be P1Y or P3Y"))?;
        let plan = p["billingPlan"]
            .as_str()
            .filter(|b| matches!(*b, "Upfront" | "Monthly"))
            .ok_or_else(|| bad("properties.billingPlan", "must be Upfront or Monthly"))?;
        let quantity = p["quantity"]
            .as_u64()
            .filter(|q| *q > 0 && *q <= 10_000)
            .ok_or_else(|| bad("properties.quantity", "must be 1 to 10000"))?;
        let scope = p["billingScopeId"]
            .as_str()
            .filter(|s| s.strip_prefix("/subscriptions/").is_some_and(is_guid))
            .ok_or_else(|| {
                bad(
                    "properties.billingScopeId",
                    "must be /subscriptions/<subscription GUID>",
                )
            })?;
        let years = years_of(term).unwrap_or(1);
        if self.price_of(sku, location, years).is_none() {
            return Err(Reply::error(
                400,
                "InvalidReservationSku",
                format!("The sku {sku} is not available in {location} for term {term}."),
            ));
        }
        let display = p["displayName"]
            .as_str()
            .unwrap_or("reservation")
            .to_string();
        Ok(PurchaseBody {
            sku: sku.into(),
            location: location.into(),
            term: term.into(),
            plan: plan.into(),
            quantity: quantity as u32,
            scope: scope.into(),
            display,
        })
    }

    fn purchase(&mut self, id: &str, body: &[u8]) -> Reply {
        if !is_guid(id) {
            return Reply::error(
                400,
                "InvalidReservationOrderId",
                format!("'{id}' is not a GUID."),
            );
        }
        if let Some(o) = self.orders.get(id) {
            // Idempotent on the order id: the order as it stands, nothing bought again.
            let o = o.clone();
            return Reply::json(200, self.order_json(&o, false));
        }
        let PurchaseBody {
            sku,
            location,
            term,
            plan,
            quantity,
            scope,
            display,
        } = match self.parse_purchase(body) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let years = years_of(&term).unwrap_or(1);
        let total = self
            .total_of(&sku, &location, years, quantity)
            .unwrap_or_default();
        let reservation_id = self.next_guid(2);
        let rec = OrderRec {
            id: id.to_string(),
            reservation_id,
            sku,
            location,
            term,
            billing_plan: plan,
            quantity,
            display_name: display,
            billing_scope: scope,
            created: self.now,
            total,
            pending: self.polls_to_finish,
            failed: false,
            returned: 0,
            revisions: vec![(self.now, quantity)],
        };
        self.orders.insert(id.to_string(), rec.clone());
        self.ledger.reservation_purchases.push(id.to_string());
        let op = self.next_guid(9);
        self.operations
            .insert(op.clone(), (Op::PurchaseReservation, id.to_string()));
        Reply::json(202, self.order_json(&rec, false))
            .header(
                "location",
                format!("{}/providers/Microsoft.Capacity/operationResults/{op}?api-version={API_VERSION}", self.base),
            )
            .header("retry-after", self.retry_after_secs.to_string())
    }

    fn poll_order(&mut self, op: &str) -> Reply {
        let Some((_, id)) = self.operations.get(op).cloned() else {
            return Reply::error(
                404,
                "OperationNotFound",
                format!("operation {op} not found"),
            );
        };
        let Some(o) = self.orders.get_mut(&id) else {
            return Reply::error(404, "ReservationOrderNotFound", id);
        };
        o.pending = o.pending.saturating_sub(1);
        let o = o.clone();
        if o.pending > 0 {
            return Reply::json(202, Value::Null).header("retry-after", self.retry_after_secs.to_string()).header(
                "location",
                format!("{}/providers/Microsoft.Capacity/operationResults/{op}?api-version={API_VERSION}", self.base),
            );
        }
        Reply::json(200, self.order_json(&o, false))
    }

    /// Checks a refund body (`calculateRefund` or `return`) against order `id`: the
    /// reservation it names must be that order's, live, and hold the quantity.
    fn refund_target(&self, id: &str, v: &Value) -> Result<(u32, Decimal), Reply> {
        let bad = |field: &str, why: String| {
            Reply::error(400, "InvalidRequestContent", format!("{field}: {why}"))
        };
        let Some(o) = self.orders.get(id) else {
            return Err(Reply::error(
                404,
                "ReservationOrderNotFound",
                format!("Reservation order {id} was not found."),
            ));
        };
        let p = &v["properties"];
        if p["scope"].as_str() != Some("Reservation") {
            return Err(bad("properties.scope", "must be Reservation".into()));
        }
        let r = &p["reservationToReturn"];
        let rid = r["reservationId"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        let want = format!(
            "/providers/microsoft.capacity/reservationorders/{}/reservations/{}",
            o.id, o.reservation_id
        );
        if rid != want {
            return Err(bad(
                "properties.reservationToReturn.reservationId",
                format!("'{rid}' is not a reservation of order {id}"),
            ));
        }
        let live = o.quantity - o.returned.min(o.quantity);
        let quantity = r["quantity"].as_u64().unwrap_or(0);
        if quantity == 0 || quantity > u64::from(live) {
            return Err(bad(
                "properties.reservationToReturn.quantity",
                format!("{quantity}: the reservation holds {live}"),
            ));
        }
        if o.failed || o.pending > 0 || live == 0 {
            return Err(Reply::error(
                409,
                "ReservationNotReturnable",
                format!(
                    "Reservation order {id} cannot be returned in its state {}.",
                    World::order_state(o)
                ),
            ));
        }
        // The peer's refund rule: the unused share of the order's price, pro rata by the day.
        let years = years_of(&o.term).unwrap_or(1);
        let term_days = 365 * i64::from(years);
        let used_days = (self.now - o.created).num_days().clamp(0, term_days);
        let q = u32::try_from(quantity).unwrap_or(u32::MAX);
        let refund = (o.total * Decimal::from(q) / Decimal::from(o.quantity.max(1))
            * Decimal::from(term_days - used_days)
            / Decimal::from(term_days))
        .round_dp_with_strategy(2, RoundingStrategy::ToZero);
        Ok((q, refund))
    }

    fn refund_json(
        &self,
        id: &str,
        session: &str,
        quantity: u32,
        refund: Decimal,
        errors: Vec<Value>,
    ) -> Value {
        let usd = |d: Decimal| json!({"currencyCode": "USD", "amount": num(d)});
        let o = self.orders.get(id);
        json!({
            "id": o.map(|o| format!("/providers/microsoft.capacity/reservationOrders/{}/reservations/{}", o.id, o.reservation_id)),
            "properties": {
                "sessionId": session,
                "quantity": quantity,
                "billingRefundAmount": usd(refund),
                "pricingRefundAmount": usd(refund),
                "policyResult": {"properties": {
                    "consumedRefundsTotal": usd(self.refunds_consumed),
                    "maxRefundLimit": usd(self.refund_limit),
                    "policyErrors": errors,
                }},
                "billingInformation": {
                    "billingPlan": o.map(|o| o.billing_plan.clone()),
                    "completedTransactions": 1,
                    "totalTransactions": 1,
                }
            }
        })
    }

    fn calculate_refund(&mut self, id: &str, body: &[u8]) -> Reply {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Reply::error(
                400,
                "InvalidRequestContent",
                "The request content was invalid.",
            );
        };
        let (quantity, refund) = match self.refund_target(id, &v) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let mut errors = Vec::new();
        if self.refunds_consumed + refund > self.refund_limit {
            errors.push(json!({"code": "RefundLimitExceeded", "message": format!(
                "The refund of {refund} USD exceeds the remaining refund limit ({} of {} USD used in the last 12 months).",
                self.refunds_consumed, self.refund_limit)}));
        }
        let session = self.next_guid(11);
        if errors.is_empty() {
            self.refund_sessions
                .insert(session.clone(), (id.to_string(), quantity, refund));
        }
        Reply::json(
            200,
            self.refund_json(id, &session, quantity, refund, errors),
        )
    }

    fn give_back(&mut self, id: &str, body: &[u8]) -> Reply {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Reply::error(
                400,
                "InvalidRequestContent",
                "The request content was invalid.",
            );
        };
        let (quantity, refund) = match self.refund_target(id, &v) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let session = v["properties"]["sessionId"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match self.refund_sessions.get(&session) {
            Some((o, q, _)) if o == id && *q == quantity => {}
            _ => {
                return Reply::error(400, "InvalidRefundSession", format!("Session '{session}' is not a calculateRefund session for {quantity} of order {id}."))
            }
        }
        if self.refunds_consumed + refund > self.refund_limit {
            return Reply::error(
                400,
                "RefundLimitExceeded",
                "The refund exceeds the remaining refund limit.",
            );
        }
        // A session is used once.
        self.refund_sessions.remove(&session);
        let now = self.now;
        if let Some(o) = self.orders.get_mut(id) {
            o.returned += quantity;
            let live = o.quantity - o.returned.min(o.quantity);
            o.revisions.push((now, live));
        }
        self.refunds_consumed += refund;
        self.ledger.returns.push((id.to_string(), quantity, refund));
        let body = self.refund_json(id, &session, quantity, refund, Vec::new());
        Reply::json(202, body).header(
            "location",
            format!(
                "{}/providers/Microsoft.Capacity/reservationOrders/{id}?api-version={API_VERSION}",
                self.base
            ),
        )
    }

    /// One item per revision of `o`'s reservation: the reservation as it stood, with its
    /// revision number (`etag`), quantity and `effectiveDateTime`.
    fn revisions_json(&self, o: &OrderRec) -> Vec<Value> {
        o.revisions
            .iter()
            .enumerate()
            .map(|(i, (at, quantity))| {
                let mut r = self.reservation_json(o);
                r["etag"] = json!(i + 1);
                let p = &mut r["properties"];
                p["quantity"] = json!(quantity);
                p["effectiveDateTime"] = json!(ts(*at));
                p["lastUpdatedDateTime"] = json!(ts(*at));
                if *quantity == 0 {
                    p["provisioningState"] = json!("Cancelled");
                    p["displayProvisioningState"] = json!("Cancelled");
                }
                r
            })
            .collect()
    }

    /// Checks an exchange request: the reservations it gives up (each an order's, live, with
    /// the quantity), the reservations and savings plans it buys, their totals; and the
    /// exchange policy's objections (the value rule, the 2027-02-01 rule). Exchanges do not
    /// count against the refund cap (Microsoft: "the refund that results from the exchange
    /// doesn't count against the refund limit"), so the cap is not checked.
    fn exchange_terms(&self, v: &Value) -> Result<(ExchangeSession, Vec<Value>), Reply> {
        let bad = |field: &str, why: &str| {
            Reply::error(400, "InvalidRequestContent", format!("{field}: {why}"))
        };
        let p = &v["properties"];
        let list = |k: &str| p[k].as_array().cloned().unwrap_or_default();
        let mut returns = Vec::new();
        for x in list("reservationsToExchange") {
            let rid = x["reservationId"]
                .as_str()
                .unwrap_or("")
                .to_ascii_lowercase();
            let order = rid
                .split('/')
                .skip_while(|s| *s != "reservationorders")
                .nth(1)
                .unwrap_or("")
                .to_string();
            let refund = json!({"properties": {"scope": "Reservation", "reservationToReturn": x}});
            let (quantity, amount) = self.refund_target(&order, &refund)?;
            returns.push((order, quantity, amount));
        }
        if returns.is_empty() {
            return Err(bad(
                "properties.reservationsToExchange",
                "at least one reservation",
            ));
        }
        let mut reservations = Vec::new();
        for x in list("reservationsToPurchase") {
            let b = self.parse_purchase(x.to_string().as_bytes())?;
            let years = years_of(&b.term).unwrap_or(1);
            let total = self
                .total_of(&b.sku, &b.location, years, b.quantity)
                .unwrap_or_default();
            reservations.push((b, total, x));
        }
        let mut savings_plans = Vec::new();
        for x in list("savingsPlansToPurchase") {
            let b = self.parse_alias(x.to_string().as_bytes())?;
            let years = years_of(&b.term).unwrap_or(1);
            let total = (b.amount * Decimal::from(8760 * u32::from(years)))
                .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
            savings_plans.push((b, total, x));
        }
        if reservations.is_empty() && savings_plans.is_empty() {
            return Err(bad(
                "properties.reservationsToPurchase",
                "an exchange buys at least one reservation or savings plan",
            ));
        }
        let refunds: Decimal = returns.iter().map(|r| r.2).sum();
        let purchases: Decimal = reservations
            .iter()
            .map(|r| r.1)
            .chain(savings_plans.iter().map(|s| s.1))
            .sum();
        let mut errors = Vec::new();
        if purchases < refunds {
            errors.push(json!({"code": "ExchangeNewPurchaseTooSmall", "message": format!(
                "The new purchases total {purchases} USD, less than the {refunds} USD refunded for the reservations returned; the new commitment must be at least the remaining commitment.")}));
        }
        // Every reservation this peer sells is VirtualMachines: a service savings plans cover.
        let late: Vec<&str> = returns
            .iter()
            .filter(|(o, _, _)| {
                self.orders
                    .get(o)
                    .is_some_and(|o| o.created >= self.savings_plan_exchange_cutoff)
            })
            .map(|(o, _, _)| o.as_str())
            .collect();
        if !late.is_empty() {
            errors.push(json!({"code": "ExchangeNotAllowedAfterCutoff", "message": format!(
                "Reservations purchased on or after {} cannot be exchanged for a savings plan or for services a savings plan covers: {}.",
                self.savings_plan_exchange_cutoff.format("%Y-%m-%d"), late.join(", "))}));
        }
        Ok((
            ExchangeSession {
                returns,
                reservations,
                savings_plans,
                refunds,
                purchases,
            },
            errors,
        ))
    }

    /// An exchange answer shaped like the official examples.
    fn exchange_json(
        &self,
        op: &str,
        session: &str,
        t: &ExchangeSession,
        made: Option<(&MadeIds, &MadeIds)>,
        errors: Vec<Value>,
    ) -> Value {
        let usd = |d: Decimal| json!({"currencyCode": "USD", "amount": num(d)});
        let done = made.is_some();
        let reservations: Vec<Value> = t
            .reservations
            .iter()
            .enumerate()
            .map(|(i, (_, total, raw))| {
                let mut x = json!({"properties": raw, "billingCurrencyTotal": usd(*total)});
                if let Some((orders, _)) = made {
                    if let Some((order, rid)) = orders.get(i) {
                        x["reservationOrderId"] = json!(format!("/providers/microsoft.capacity/reservationOrders/{order}"));
                        x["reservationId"] = json!(format!("/providers/microsoft.capacity/reservationOrders/{order}/reservations/{rid}"));
                    }
                    x["status"] = json!("Succeeded");
                }
                x
            })
            .collect();
        let plans: Vec<Value> = t
            .savings_plans
            .iter()
            .enumerate()
            .map(|(i, (_, total, raw))| {
                let mut x = json!({"properties": raw, "billingCurrencyTotal": usd(*total)});
                if let Some((_, plans)) = made {
                    if let Some((order, plan)) = plans.get(i) {
                        x["savingsPlanOrderId"] = json!(format!("/providers/Microsoft.BillingBenefits/savingsPlanOrders/{order}"));
                        x["savingsPlanId"] = json!(format!("/providers/Microsoft.BillingBenefits/savingsPlanOrders/{order}/savingsPlans/{plan}"));
                    }
                    x["status"] = json!("Succeeded");
                }
                x
            })
            .collect();
        let returns: Vec<Value> = t
            .returns
            .iter()
            .map(|(order, q, refund)| {
                let rid = self.orders.get(order).map(|o| o.reservation_id.clone()).unwrap_or_default();
                let mut x = json!({
                    "reservationId": format!("/providers/microsoft.capacity/reservationOrders/{order}/reservations/{rid}"),
                    "quantity": q,
                    "billingRefundAmount": usd(*refund),
                });
                if done {
                    x["status"] = json!("Succeeded");
                }
                x
            })
            .collect();
        json!({
            "id": format!("/providers/microsoft.capacity/operationResults/{op}"),
            "name": op,
            "status": "Succeeded",
            "properties": {
                "sessionId": session,
                "netPayable": usd(t.purchases - t.refunds),
                "refundsTotal": usd(t.refunds),
                "purchasesTotal": usd(t.purchases),
                "policyResult": {"policyErrors": if errors.is_empty() { Value::Null } else { json!(errors) }},
                "reservationsToPurchase": reservations,
                "savingsPlansToPurchase": plans,
                "reservationsToExchange": returns,
            }
        })
    }

    /// A long-running exchange operation's acceptance: 202 with its status URL.
    fn accepted_exchange(&mut self, op: String, body: Value) -> Reply {
        let polls = self.polls_to_finish.min(1);
        self.exchange_ops.insert(op.clone(), (polls, body));
        let url = format!(
            "{}/providers/Microsoft.Capacity/operationResults/{op}?api-version={API_VERSION}",
            self.base
        );
        Reply::json(202, Value::Null)
            .header("azure-asyncoperation", url.clone())
            .header("location", url)
            .header("retry-after", self.retry_after_secs.to_string())
    }

    fn calculate_exchange(&mut self, body: &[u8]) -> Reply {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Reply::error(
                400,
                "InvalidRequestContent",
                "The request content was invalid.",
            );
        };
        let (terms, errors) = match self.exchange_terms(&v) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let session = self.next_guid(12);
        let op = self.next_guid(13);
        let answer = self.exchange_json(&op, &session, &terms, None, errors.clone());
        if errors.is_empty() {
            self.exchange_sessions.insert(session, terms);
        }
        self.accepted_exchange(op, answer)
    }

    fn exchange(&mut self, body: &[u8]) -> Reply {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Reply::error(
                400,
                "InvalidRequestContent",
                "The request content was invalid.",
            );
        };
        let session = v["properties"]["sessionId"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // A session is used once.
        let Some(terms) = self.exchange_sessions.remove(&session) else {
            return Reply::error(
                400,
                "InvalidExchangeSession",
                format!("Session '{session}' is not an open calculateExchange session."),
            );
        };
        // What was calculated must still hold.
        for (order, q, _) in &terms.returns {
            let live = self
                .orders
                .get(order)
                .map(|o| o.quantity - o.returned.min(o.quantity))
                .unwrap_or(0);
            if live < *q {
                return Reply::error(
                    409,
                    "ReservationNotExchangeable",
                    format!("Reservation order {order} no longer holds {q} instances."),
                );
            }
        }
        let now = self.now;
        for (order, q, _) in &terms.returns {
            if let Some(o) = self.orders.get_mut(order) {
                o.returned += q;
                let live = o.quantity - o.returned.min(o.quantity);
                o.revisions.push((now, live));
            }
        }
        let mut orders = Vec::new();
        for (b, total, _) in &terms.reservations {
            let id = self.next_guid(14);
            let reservation_id = self.next_guid(2);
            self.orders.insert(
                id.clone(),
                OrderRec {
                    id: id.clone(),
                    reservation_id: reservation_id.clone(),
                    sku: b.sku.clone(),
                    location: b.location.clone(),
                    term: b.term.clone(),
                    billing_plan: b.plan.clone(),
                    quantity: b.quantity,
                    display_name: b.display.clone(),
                    billing_scope: b.scope.clone(),
                    created: now,
                    total: *total,
                    pending: self.polls_to_finish,
                    failed: false,
                    returned: 0,
                    revisions: vec![(now, b.quantity)],
                },
            );
            orders.push((id, reservation_id));
        }
        let mut plans = Vec::new();
        for (b, _, _) in &terms.savings_plans {
            let name = format!("exchange-{}", self.next_guid(15));
            let rec = AliasRec {
                name: name.clone(),
                order_id: self.next_guid(3),
                plan_id: self.next_guid(4),
                term: b.term.clone(),
                billing_plan: b.plan.clone(),
                commitment: b.amount,
                display_name: b.display.clone(),
                billing_scope: b.scope.clone(),
                created: now,
                pending: self.polls_to_finish,
            };
            plans.push((rec.order_id.clone(), rec.plan_id.clone()));
            self.aliases.insert(name, rec);
        }
        self.ledger.exchanges.push(ExchangeEntry {
            session: session.clone(),
            returned: terms
                .returns
                .iter()
                .map(|(o, q, _)| (o.clone(), *q))
                .collect(),
            refunds: terms.refunds,
            purchases: terms.purchases,
            reservation_orders: orders.iter().map(|(o, _)| o.clone()).collect(),
            savings_plan_orders: plans.iter().map(|(o, _)| o.clone()).collect(),
        });
        let op = self.next_guid(13);
        let answer = self.exchange_json(
            &op,
            &session,
            &terms,
            Some((orders.as_slice(), plans.as_slice())),
            Vec::new(),
        );
        self.accepted_exchange(op, answer)
    }

    fn poll_exchange(&mut self, op: &str) -> Reply {
        let retry_after = self.retry_after_secs.to_string();
        let Some((left, body)) = self.exchange_ops.get_mut(op) else {
            return Reply::error(
                404,
                "OperationNotFound",
                format!("operation {op} not found"),
            );
        };
        if *left > 0 {
            *left -= 1;
            return Reply::json(
                200,
                json!({"id": format!("/providers/microsoft.capacity/operationResults/{op}"), "name": op, "status": "Pending"}),
            )
            .header("retry-after", retry_after);
        }
        Reply::json(200, body.clone())
    }

    fn calculate_price(&mut self, body: &[u8]) -> Reply {
        let PurchaseBody {
            sku,
            location,
            term,
            plan,
            quantity,
            ..
        } = match self.parse_purchase(body) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let years = years_of(&term).unwrap_or(1);
        let total = self
            .total_of(&sku, &location, years, quantity)
            .unwrap_or_default();
        let usd = |d: Decimal| json!({"currencyCode": "USD", "amount": num(d)});
        let schedule: Vec<Value> = if plan == "Monthly" {
            let months = 12 * u32::from(years);
            let each =
                (total / Decimal::from(months)).round_dp_with_strategy(2, RoundingStrategy::ToZero);
            (0..months)
                .map(|m| {
                    let amount = if m + 1 == months { total - each * Decimal::from(months - 1) } else { each };
                    let due = self.now + Duration::days(30 * i64::from(m));
                    json!({"dueDate": due.format("%Y-%m-%d").to_string(), "pricingCurrencyTotal": usd(amount), "billingCurrencyTotal": usd(amount)})
                })
                .collect()
        } else {
            vec![
                json!({"dueDate": self.now.format("%Y-%m-%d").to_string(), "pricingCurrencyTotal": usd(total), "billingCurrencyTotal": usd(total)}),
            ]
        };
        let order = self.next_guid(7);
        Reply::json(
            200,
            json!({"properties": {
                "billingCurrencyTotal": usd(total),
                "reservationOrderId": order,
                "skuTitle": format!("Reserved VM Instance, {sku}, {location}, {years} Year"),
                "skuDescription": sku,
                "pricingCurrencyTotal": usd(total),
                "paymentSchedule": schedule,
            }}),
        )
    }

    fn parse_alias(&self, body: &[u8]) -> Result<AliasBody, Reply> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            Reply::error(
                400,
                "InvalidRequestContent",
                format!("The request content was invalid: {e}"),
            )
        })?;
        let bad = |field: &str, why: &str| {
            Reply::error(400, "InvalidRequestContent", format!("{field}: {why}"))
        };
        if v["sku"]["name"].as_str() != Some("Compute_Savings_Plan") {
            return Err(bad("sku.name", "must be Compute_Savings_Plan"));
        }
        let p = &v["properties"];
        let term = p["term"]
            .as_str()
            .filter(|t| years_of(t).is_some())
            .ok_or_else(|| bad("properties.term", "must be P1Y or P3Y"))?;
        let plan = match p["billingPlan"].as_str() {
            None => None,
            Some("P1M") => Some("P1M".to_string()),
            Some(_) => {
                return Err(bad(
                    "properties.billingPlan",
                    "must be P1M or absent (upfront)",
                ))
            }
        };
        let c = &p["commitment"];
        if c["grain"].as_str() != Some("Hourly") || c["currencyCode"].as_str() != Some("USD") {
            return Err(bad("properties.commitment", "grain Hourly in USD"));
        }
        let amount = c["amount"]
            .as_f64()
            .and_then(|a| a.to_string().parse::<Decimal>().ok())
            .filter(|a| *a > Decimal::ZERO)
            .ok_or_else(|| bad("properties.commitment.amount", "a positive number"))?;
        let scope = p["billingScopeId"]
            .as_str()
            .filter(|s| s.strip_prefix("/subscriptions/").is_some_and(is_guid))
            .ok_or_else(|| {
                bad(
                    "properties.billingScopeId",
                    "must be /subscriptions/<subscription GUID>",
                )
            })?;
        let display = p["displayName"]
            .as_str()
            .unwrap_or("savings plan")
            .to_string();
        Ok(AliasBody {
            term: term.into(),
            plan,
            amount,
            scope: scope.into(),
            display,
        })
    }

    fn create_alias(&mut self, name: &str, body: &[u8]) -> Reply {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Reply::error(
                400,
                "InvalidAliasName",
                format!("'{name}' is not a valid alias name."),
            );
        }
        if let Some(a) = self.aliases.get(name) {
            let a = a.clone();
            return Reply::json(200, self.alias_json(&a));
        }
        let AliasBody {
            term,
            plan,
            amount,
            scope,
            display,
        } = match self.parse_alias(body) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if let Some(why) = &self.savings_plan_refusal {
            return Reply::error(400, "CustomerCannotPurchaseSavingsPlan", why.clone());
        }
        let rec = AliasRec {
            name: name.to_string(),
            order_id: self.next_guid(3),
            plan_id: self.next_guid(4),
            term,
            billing_plan: plan,
            commitment: amount,
            display_name: display,
            billing_scope: scope,
            created: self.now,
            pending: self.polls_to_finish,
        };
        self.aliases.insert(name.to_string(), rec.clone());
        self.ledger.savings_plan_purchases.push(name.to_string());
        let op = self.next_guid(8);
        self.operations
            .insert(op.clone(), (Op::CreateAlias, name.to_string()));
        Reply::json(201, self.alias_json(&rec))
            .header(
                "azure-asyncoperation",
                format!("{}/providers/Microsoft.BillingBenefits/operationResults/{op}?api-version={API_VERSION}", self.base),
            )
            .header("retry-after", self.retry_after_secs.to_string())
    }

    fn poll_alias(&mut self, op: &str) -> Reply {
        let Some((_, name)) = self.operations.get(op).cloned() else {
            return Reply::error(
                404,
                "OperationNotFound",
                format!("operation {op} not found"),
            );
        };
        let Some(a) = self.aliases.get_mut(&name) else {
            return Reply::error(404, "SavingsPlanOrderAliasNotFound", name);
        };
        a.pending = a.pending.saturating_sub(1);
        let status = match a.pending {
            0 => "Succeeded",
            1 => "PendingBilling",
            _ => "Creating",
        };
        Reply::json(200, json!({"id": format!("/providers/Microsoft.BillingBenefits/operationResults/{op}"), "name": op, "status": status}))
            .header("retry-after", self.retry_after_secs.to_string())
    }

    fn alias_state(a: &AliasRec) -> &'static str {
        match a.pending {
            0 => "Succeeded",
            1 => "PendingBilling",
            _ => "Created",
        }
    }

    fn alias_json(&self, a: &AliasRec) -> Value {
        json!({
            "id": format!("/providers/microsoft.billingbenefits/savingsPlanOrderAliases/{}", a.name),
            "name": a.name,
            "type": "Microsoft.BillingBenefits/savingsPlanOrderAliases",
            "kind": null,
            "sku": {"name": "Compute_Savings_Plan"},
            "properties": {
                "savingsPlanOrderId": format!("/providers/Microsoft.BillingBenefits/savingsPlanOrders/{}", a.order_id),
                "billingScopeId": a.billing_scope,
                "billingPlan": a.billing_plan,
                "appliedScopeProperties": null,
                "commitment": {"grain": "Hourly", "currencyCode": "USD", "amount": num(a.commitment)},
                "appliedScopeType": "Shared",
                "displayName": a.display_name,
                "provisioningState": World::alias_state(a),
                "term": a.term,
            }
        })
    }

    fn sp_order_json(&self, a: &AliasRec) -> Value {
        let years = years_of(&a.term).unwrap_or(1);
        json!({
            "id": format!("/providers/microsoft.billingbenefits/savingsPlanOrders/{}", a.order_id),
            "name": a.order_id,
            "type": "Microsoft.BillingBenefits/savingsPlanOrders",
            "properties": {
                "billingScopeId": a.billing_scope,
                "savingsPlans": [format!("/providers/Microsoft.BillingBenefits/savingsPlanOrders/{}/savingsPlans/{}", a.order_id, a.plan_id)],
                "billingPlan": a.billing_plan,
                "term": a.term,
                "displayName": a.display_name,
                "provisioningState": if a.pending == 0 { "Succeeded" } else { "Creating" },
                "billingProfileId": "/providers/Microsoft.Billing/billingAccounts/20000000-1000-0000-0000-000000000004:20000000-0000-3000-0000-000000000000_2019-05-31/billingProfiles/KPSV-DWNE-BG7-TGB",
                "expiryDateTime": ts(a.created + Duration::days(365 * i64::from(years))),
            },
            "sku": {"name": "Compute_Savings_Plan"}
        })
    }

    fn savings_plan_json(&self, a: &AliasRec) -> Value {
        let years = years_of(&a.term).unwrap_or(1);
        json!({
            "id": format!("/providers/Microsoft.BillingBenefits/savingsPlanOrders/{}/savingsPlans/{}", a.order_id, a.plan_id),
            "name": format!("{}/{}", a.order_id, a.plan_id),
            "type": "Microsoft.BillingBenefits/savingsPlanOrders/savingsPlans",
            "sku": {"name": "Compute_Savings_Plan"},
            "properties": {
                "billingScopeId": a.billing_scope,
                "commitment": {"grain": "Hourly", "currencyCode": "USD", "amount": num(a.commitment)},
                "renew": false,
                "appliedScopeType": "Shared",
                "displayName": a.display_name,
                "provisioningState": if a.pending == 0 { "Succeeded" } else { "Creating" },
                "term": a.term,
                "billingPlan": a.billing_plan,
                "displayProvisioningState": if a.pending == 0 { "Succeeded" } else { "Creating" },
                "userFriendlyAppliedScopeType": "Shared",
                "expiryDateTime": ts(a.created + Duration::days(365 * i64::from(years))),
                "purchaseDateTime": ts(a.created),
                "effectiveDateTime": ts(a.created),
                "benefitStartTime": ts(a.created),
                "utilization": {"trend": "", "aggregates": [
                    {"grain": 1.0, "grainUnit": "days", "value": 100.0, "valueUnit": "percentage"},
                    {"grain": 30.0, "grainUnit": "days", "value": 78.12, "valueUnit": "percentage"}
                ]}
            }
        })
    }

    fn validate(&mut self, body: &[u8]) -> Reply {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Reply::error(400, "InvalidRequestContent", e.to_string()),
        };
        let Some(benefits) = v["benefits"].as_array() else {
            return Reply::error(400, "InvalidRequestContent", "benefits: required");
        };
        let results: Vec<Value> = benefits
            .iter()
            .map(|b| {
                let text = b.to_string();
                match (&self.savings_plan_refusal, self.parse_alias(text.as_bytes())) {
                    (Some(why), _) => json!({"valid": false, "reason": why, "reasonCode": "CustomerCannotPurchaseSavingsPlan"}),
                    (None, Ok(_)) => json!({"valid": true}),
                    (None, Err(r)) => json!({"valid": false, "reason": r.body["error"]["message"], "reasonCode": "InvalidRequestContent"}),
                }
            })
            .collect();
        Reply::json(200, json!({"benefits": [{"benefits": results}]}))
    }
}
