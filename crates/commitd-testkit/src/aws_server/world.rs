//! The simulated AWS account behind the test server: a catalogue of offerings, the savings
//! plans and Reserved Instances bought, AWS's rules for them, a settable clock, and the faults
//! to inject. Protocol-free: `savingsplans.rs` and `ec2.rs` translate wire requests to these
//! calls and [`ApiError`]s back to each protocol's error format.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Utc};
use commitd::markets::aws::convert::{ONE_YEAR_SECONDS, THREE_YEARS_SECONDS};
use rust_decimal::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// An error as AWS returns it: HTTP status, error code, message.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Savings Plans' 400 for a bad parameter.
    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::new(400, "ValidationException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "ResourceNotFoundException", message)
    }
}

/// A fault to inject into the next calls of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Answer with the service's throttling error.
    Throttle,
    /// Answer with a 500.
    ServerError,
    /// Apply the request, then close the connection without answering (a crash between the
    /// provider committing and the caller reading the answer).
    DropAfterCommit,
    /// Close the connection without applying the request.
    DropBeforeCommit,
    /// Apply the request, then answer with a 500 (AWS failing after it acted: the caller
    /// cannot tell the request from one that failed before).
    ServerErrorAfterCommit,
    /// Answer with the service's access-denied error (403; EC2 `UnauthorizedOperation`), as
    /// when IAM does not grant the call: final, the SDK does not retry it.
    Unauthorized,
    /// Apply the request, then hold the answer for [`World::fault_delay`] (longer than a
    /// client's deadline: the caller gives up on a request that was applied).
    SlowAfterCommit,
    /// Hold the request for [`World::fault_delay`], then close the connection without applying
    /// it (a caller's deadline passes on a request that never took effect).
    SlowBeforeCommit,
    /// No fault for this call (to aim a fault at a later call: `[pass, drop-after-commit]`).
    Pass,
}

/// A savings plan offering in the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct SpOffering {
    pub id: String,
    /// "Compute" or "EC2Instance".
    pub plan_type: String,
    /// "No Upfront", "Partial Upfront", "All Upfront".
    pub payment: String,
    pub duration_seconds: i64,
    /// EC2 Instance plans only.
    pub family: Option<String>,
    pub region: Option<String>,
}

/// One product's rate under one savings plan offering.
#[derive(Clone, Debug, PartialEq)]
pub struct SpRate {
    pub offering_id: String,
    pub region: String,
    pub instance_type: String,
    pub rate: Decimal,
}

/// A Reserved Instance offering in the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct RiOffering {
    pub id: String,
    pub instance_type: String,
    pub region: String,
    /// "standard" or "convertible".
    pub class: String,
    pub offering_type: String,
    pub duration_seconds: i64,
    /// Upfront per instance (a value an f32 holds exactly enough: cents).
    pub fixed_price: Decimal,
    /// Hourly recurring charge per instance.
    pub hourly: Decimal,
    pub product_description: String,
}

impl RiOffering {
    pub fn total_value(&self) -> Decimal {
        self.fixed_price + self.hourly * Decimal::from(self.duration_seconds / 3600)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub id: String,
    pub offering_id: String,
    pub commitment: Decimal,
    pub upfront: Decimal,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    state: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ri {
    pub id: String,
    pub offering_id: String,
    pub count: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    state: String,
    pub tags: BTreeMap<String, String>,
}

/// A Reserved Instance Marketplace listing. The test server has no buyers: a listing stays
/// active until a test sells it ([`World::sell_listing`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    pub id: String,
    pub ri_id: String,
    pub count: u32,
    pub client_token: String,
    /// (months left, price) as the request's price schedule gave them.
    pub schedule: Vec<(i64, Decimal)>,
    pub created: DateTime<Utc>,
    /// "active", "closed" (sold) or "cancelled".
    pub status: String,
}

/// What one CreateSavingsPlan asked for (kept per client token to detect reuse).
#[derive(Clone, Debug, PartialEq)]
pub struct CreatePlan {
    pub offering_id: String,
    pub commitment: String,
    pub upfront: Option<String>,
    pub purchase_time: Option<DateTime<Utc>>,
    pub client_token: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// An exchange quote as computed by the value rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Quote {
    pub valid: bool,
    pub failure_reason: Option<String>,
    pub source_remaining_total: Decimal,
    pub source_remaining_upfront: Decimal,
    pub source_hourly: Decimal,
    pub target_total: Decimal,
    pub target_upfront: Decimal,
    pub target_hourly: Decimal,
    pub payment_due: Decimal,
    pub expires_at: DateTime<Utc>,
}

/// The account and its rules.
#[derive(Debug)]
pub struct World {
    pub account_id: String,
    pub region: String,
    pub sp_offerings: Vec<SpOffering>,
    pub sp_rates: Vec<SpRate>,
    pub ri_offerings: Vec<RiOffering>,
    /// Results per page when a request does not set maxResults (small, so paging is exercised).
    pub page_size: usize,
    plans: Vec<Plan>,
    ris: Vec<Ri>,
    listings: Vec<Listing>,
    create_tokens: HashMap<String, (CreatePlan, String)>,
    return_tokens: HashMap<String, String>,
    now: Option<DateTime<Utc>>,
    faults: HashMap<String, VecDeque<Fault>>,
    /// Faults applied to every call of an operation, after its queued ones (`inject_always`).
    always: HashMap<String, Fault>,
    /// How long the slow faults hold a request (default 30 s: longer than any test client's
    /// deadline).
    pub fault_delay: std::time::Duration,
    calls: BTreeMap<String, u32>,
    purchases: u32,
    exchanges: u32,
    next_id: u64,
    /// STS: external ids roles require, sessions issued (access key id -> session), and the
    /// access key id every signed call was made with.
    external_ids: BTreeMap<String, String>,
    sessions: HashMap<String, Session>,
    callers: Vec<(String, String)>,
    /// (operation, request id) of every call answered, for tests matching audit events.
    answered: Vec<(String, String)>,
}

/// Temporary credentials the test server issued through AssumeRole.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

/// The account's own record of what was bought, for tests (in process: [`World::ledger`]; of
/// a server process: `GET /_commitd/ledger`) to check what happened against what commitd
/// says happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ledger {
    pub savings_plans: Vec<LedgerPlan>,
    pub reserved_instances: Vec<LedgerRi>,
    pub listings: Vec<LedgerListing>,
    /// Exchanges accepted.
    pub exchanges: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerPlan {
    pub id: String,
    pub offering_id: String,
    /// USD per hour, as sent.
    pub commitment: String,
    pub upfront: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub state: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerRi {
    pub id: String,
    pub offering_id: String,
    pub instance_type: String,
    /// "standard" or "convertible".
    pub class: String,
    pub offering_type: String,
    pub duration_seconds: i64,
    pub count: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub state: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerListing {
    pub id: String,
    pub reserved_instances_id: String,
    pub count: u32,
    pub client_token: String,
    pub status: String,
}

/// Counters the tests read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Requests received per operation (faulted ones included).
    pub calls: BTreeMap<String, u32>,
    /// Savings plans and RI purchases actually made.
    pub purchases: u32,
    pub savings_plans: usize,
    pub reserved_instances: usize,
}

fn uuid_like(seed: &str) -> String {
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl World {
    /// An empty account in `region` with no catalogue.
    pub fn empty(region: &str) -> Self {
        World {
            account_id: "111122223333".to_string(),
            region: region.to_string(),
            sp_offerings: Vec::new(),
            sp_rates: Vec::new(),
            ri_offerings: Vec::new(),
            page_size: 1000,
            plans: Vec::new(),
            ris: Vec::new(),
            listings: Vec::new(),
            create_tokens: HashMap::new(),
            return_tokens: HashMap::new(),
            now: None,
            faults: HashMap::new(),
            always: HashMap::new(),
            fault_delay: std::time::Duration::from_secs(30),
            calls: BTreeMap::new(),
            purchases: 0,
            exchanges: 0,
            next_id: 0,
            external_ids: BTreeMap::new(),
            sessions: HashMap::new(),
            callers: Vec::new(),
            answered: Vec::new(),
        }
    }

    /// An account in `region` with a catalogue of Compute and EC2 Instance savings plans and
    /// standard and convertible RIs for m5/c5/r5 instance types, priced from their
    /// on-demand prices with typical discounts.
    pub fn demo(region: &str) -> Self {
        let mut w = World::empty(region);
        w.page_size = 4;
        let products: [(&str, i64); 5] = [
            ("m5.large", 96_000),
            ("m5.xlarge", 192_000),
            ("c5.large", 85_000),
            ("c5.xlarge", 170_000),
            ("r5.large", 126_000),
        ];
        let payments = ["No Upfront", "Partial Upfront", "All Upfront"];
        let terms = [(ONE_YEAR_SECONDS, 0usize), (THREE_YEARS_SECONDS, 1usize)];
        // Share of on-demand paid, by [term][payment].
        let compute = [[72, 69, 67], [52, 49, 47]];
        let instance = [[64, 61, 59], [44, 41, 39]];
        let standard = [[62, 60, 58], [42, 40, 38]];
        let convertible = [[70, 68, 66], [50, 48, 46]];
        let od = |micros: i64| Decimal::new(micros, 6);
        for (secs, ti) in terms {
            for (pi, pay) in payments.iter().enumerate() {
                let id = uuid_like(&format!("sp:Compute:{secs}:{pay}"));
                w.sp_offerings.push(SpOffering {
                    id: id.clone(),
                    plan_type: "Compute".into(),
                    payment: pay.to_string(),
                    duration_seconds: secs,
                    family: None,
                    region: None,
                });
                for (t, price) in products {
                    w.sp_rates.push(SpRate {
                        offering_id: id.clone(),
                        region: region.to_string(),
                        instance_type: t.to_string(),
                        rate: (od(price) * Decimal::new(compute[ti][pi], 2)).round_dp(6),
                    });
                }
                for family in ["m5", "c5", "r5"] {
                    let id = uuid_like(&format!("sp:EC2Instance:{family}:{region}:{secs}:{pay}"));
                    w.sp_offerings.push(SpOffering {
                        id: id.clone(),
                        plan_type: "EC2Instance".into(),
                        payment: pay.to_string(),
                        duration_seconds: secs,
                        family: Some(family.to_string()),
                        region: Some(region.to_string()),
                    });
                    for (t, price) in products.iter().filter(|(t, _)| t.starts_with(family)) {
                        w.sp_rates.push(SpRate {
                            offering_id: id.clone(),
                            region: region.to_string(),
                            instance_type: t.to_string(),
                            rate: (od(*price) * Decimal::new(instance[ti][pi], 2)).round_dp(6),
                        });
                    }
                }
                for (class, shares) in [("standard", standard), ("convertible", convertible)] {
                    for (t, price) in products {
                        let hours = Decimal::from(secs / 3600);
                        let effective = od(price) * Decimal::new(shares[ti][pi], 2);
                        let total = (effective * hours).round_dp(2);
                        let (fixed, hourly) = match pi {
                            0 => (Decimal::ZERO, effective.round_dp(6)),
                            1 => {
                                let fixed = (total / Decimal::TWO).round_dp(2);
                                (fixed, ((total - fixed) / hours).round_dp(6))
                            }
                            _ => (total, Decimal::ZERO),
                        };
                        w.ri_offerings.push(RiOffering {
                            id: uuid_like(&format!("ri:{class}:{t}:{region}:{secs}:{pay}")),
                            instance_type: t.to_string(),
                            region: region.to_string(),
                            class: class.to_string(),
                            offering_type: pay.to_string(),
                            duration_seconds: secs,
                            fixed_price: fixed,
                            hourly,
                            product_description: "Linux/UNIX".into(),
                        });
                    }
                }
            }
        }
        w
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }

    /// Freezes the server's clock (return windows, queued plans and exchanges follow it).
    pub fn set_now(&mut self, now: DateTime<Utc>) {
        self.now = Some(now);
    }

    /// Makes the next `times` calls of `operation` fail with `fault`.
    pub fn inject(&mut self, operation: &str, fault: Fault, times: u32) {
        let q = self.faults.entry(operation.to_string()).or_default();
        q.extend(std::iter::repeat_n(fault, times as usize));
    }

    /// Makes every call of `operation` fail with `fault` (once the faults queued by
    /// [`World::inject`] are used up), until [`World::clear_faults`].
    pub fn inject_always(&mut self, operation: &str, fault: Fault) {
        self.always.insert(operation.to_string(), fault);
    }

    /// Removes the faults of `operation` (None: of every operation), queued and permanent.
    pub fn clear_faults(&mut self, operation: Option<&str>) {
        match operation {
            Some(op) => {
                self.faults.remove(op);
                self.always.remove(op);
            }
            None => {
                self.faults.clear();
                self.always.clear();
            }
        }
    }

    /// Counts the call and returns the fault to apply to it, if any: the next queued one,
    /// else the operation's permanent one. A dry run is a call of its operation like any
    /// other (AWS throttles those too): aim a fault past it with `pass`.
    pub fn begin_call(&mut self, operation: &str) -> Option<Fault> {
        *self.calls.entry(operation.to_string()).or_default() += 1;
        self.faults
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.always.get(operation).copied())
    }

    pub fn stats(&self) -> Stats {
        Stats {
            calls: self.calls.clone(),
            purchases: self.purchases,
            savings_plans: self.plans.len(),
            reserved_instances: self.ris.len(),
        }
    }

    /// Everything bought, returned, exchanged and listed, with current states and tags.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            savings_plans: self
                .plans()
                .into_iter()
                .map(|(p, state)| LedgerPlan {
                    id: p.id,
                    offering_id: p.offering_id,
                    commitment: p.commitment.normalize().to_string(),
                    upfront: p.upfront.normalize().to_string(),
                    start: p.start,
                    end: p.end,
                    state,
                    tags: p.tags,
                })
                .collect(),
            reserved_instances: self
                .reserved_instances()
                .into_iter()
                .map(|(r, state, o)| LedgerRi {
                    id: r.id,
                    offering_id: r.offering_id,
                    instance_type: o.instance_type,
                    class: o.class,
                    offering_type: o.offering_type,
                    duration_seconds: o.duration_seconds,
                    count: r.count,
                    start: r.start,
                    end: r.end,
                    state,
                    tags: r.tags,
                })
                .collect(),
            listings: self
                .listings
                .iter()
                .map(|l| LedgerListing {
                    id: l.id.clone(),
                    reserved_instances_id: l.ri_id.clone(),
                    count: l.count,
                    client_token: l.client_token.clone(),
                    status: l.status.clone(),
                })
                .collect(),
            exchanges: self.exchanges,
        }
    }

    pub fn calls(&self, operation: &str) -> u32 {
        self.calls.get(operation).copied().unwrap_or(0)
    }

    pub fn purchases(&self) -> u32 {
        self.purchases
    }

    /// Makes AssumeRole of `role_arn` require `external_id` (a trust policy condition).
    pub fn require_external_id(&mut self, role_arn: &str, external_id: &str) {
        self.external_ids
            .insert(role_arn.to_string(), external_id.to_string());
    }

    pub fn role_external_id(&self, role_arn: &str) -> Option<&str> {
        self.external_ids.get(role_arn).map(String::as_str)
    }

    /// New temporary credentials for `role_arn` (ASIA... keys, like STS's).
    pub fn issue_session(&mut self, role_arn: &str) -> Session {
        let seed = self.new_id("session").replace('-', "");
        let session = Session {
            role_arn: role_arn.to_string(),
            access_key_id: format!("ASIA{}", seed[..16].to_ascii_uppercase()),
            secret_access_key: hex::encode(Sha256::digest(format!("secret:{seed}")))[..40]
                .to_string(),
            session_token: hex::encode(Sha256::digest(format!("token:{seed}"))),
        };
        self.sessions
            .insert(session.access_key_id.clone(), session.clone());
        session
    }

    /// The session an access key id was issued for, if the server issued it.
    pub fn session(&self, access_key_id: &str) -> Option<&Session> {
        self.sessions.get(access_key_id)
    }

    pub fn record_caller(&mut self, operation: &str, access_key_id: &str) {
        self.callers
            .push((operation.to_string(), access_key_id.to_string()));
    }

    pub fn record_answer(&mut self, operation: &str, request_id: &str) {
        self.answered
            .push((operation.to_string(), request_id.to_string()));
    }

    /// The request ids the server answered `operation` with, in order.
    pub fn request_ids(&self, operation: &str) -> Vec<String> {
        self.answered
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// (operation, access key id) of every signed call, in order.
    pub fn callers(&self) -> &[(String, String)] {
        &self.callers
    }

    pub fn new_request_id(&mut self) -> String {
        self.next_id += 1;
        uuid_like(&format!("request:{}", self.next_id))
    }

    fn new_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        uuid_like(&format!("{kind}:{}", self.next_id))
    }

    pub fn plan_arn(&self, id: &str) -> String {
        format!("arn:aws:savingsplans::{}:savingsplan/{id}", self.account_id)
    }

    // ---------------------------------------------------------------- savings plans

    pub fn sp_offering(&self, id: &str) -> Option<&SpOffering> {
        self.sp_offerings.iter().find(|o| o.id == id)
    }

    /// Queued plans start by themselves once their purchase time has passed.
    fn plan_state(&self, p: &Plan) -> String {
        if p.state == "queued" && self.now() >= p.start {
            return "active".to_string();
        }
        if p.state == "active" && self.now() >= p.end {
            return "retired".to_string();
        }
        p.state.clone()
    }

    /// Plans with their current state, in purchase order.
    pub fn plans(&self) -> Vec<(Plan, String)> {
        self.plans
            .iter()
            .map(|p| (p.clone(), self.plan_state(p)))
            .collect()
    }

    /// The end of the return window of a plan, if it can be returned at all.
    pub fn returnable_until(&self, p: &Plan, state: &str) -> Option<DateTime<Utc>> {
        if state != "active" || p.commitment > Decimal::from(100) {
            return None;
        }
        let week = p.start + ChronoDuration::days(7);
        let (y, m) = if p.start.month() == 12 {
            (p.start.year() + 1, 1)
        } else {
            (p.start.year(), p.start.month() + 1)
        };
        let next_month = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
        Some(week.min(next_month))
    }

    /// CreateSavingsPlan with AWS's validation and client-token idempotency.
    pub fn create_plan(&mut self, req: CreatePlan) -> Result<String, ApiError> {
        if let Some(token) = &req.client_token {
            if let Some((previous, id)) = self.create_tokens.get(token) {
                return if *previous == req {
                    Ok(id.clone())
                } else {
                    Err(ApiError::validation(
                        "The client token was already used with different request parameters.",
                    ))
                };
            }
        }
        let offering = self.sp_offering(&req.offering_id).cloned().ok_or_else(|| {
            ApiError::not_found(format!(
                "Savings Plan offering {} not found.",
                req.offering_id
            ))
        })?;
        let commitment = Decimal::from_str_exact(req.commitment.trim()).map_err(|_| {
            ApiError::validation(format!("Invalid commitment '{}'.", req.commitment))
        })?;
        if commitment.scale() > 5 {
            return Err(ApiError::validation(
                "Commitment can have at most 5 decimal places.",
            ));
        }
        if commitment < Decimal::new(1, 3) || commitment > Decimal::from(1_000_000) {
            return Err(ApiError::validation(
                "Commitment must be between 0.001 and 1000000.",
            ));
        }
        let total = commitment * Decimal::from(offering.duration_seconds / 3600);
        let upfront = match (offering.payment.as_str(), &req.upfront) {
            ("Partial Upfront", None) => {
                return Err(ApiError::validation(
                    "upfrontPaymentAmount is required for a Partial Upfront Savings Plan.",
                ))
            }
            ("Partial Upfront", Some(text)) => {
                let amount = Decimal::from_str_exact(text.trim()).map_err(|_| {
                    ApiError::validation(format!("Invalid upfrontPaymentAmount '{text}'."))
                })?;
                if amount.fract() != Decimal::ZERO {
                    return Err(ApiError::validation(
                        "upfrontPaymentAmount must be a whole number.",
                    ));
                }
                let (lo, hi) = (total * Decimal::new(50, 2), total * Decimal::new(99, 2));
                if amount < lo || amount > hi {
                    return Err(ApiError::validation(format!(
                        "upfrontPaymentAmount must be between 50% and 99% of the total commitment ({} to {}).",
                        lo.ceil(),
                        hi.floor()
                    )));
                }
                amount
            }
            (_, Some(_)) => {
                return Err(ApiError::validation(
                    "upfrontPaymentAmount is only supported for Partial Upfront Savings Plans.",
                ))
            }
            ("All Upfront", None) => total,
            (_, None) => Decimal::ZERO,
        };
        let now = self.now();
        let (start, state) = match req.purchase_time {
            Some(t) if t <= now => {
                return Err(ApiError::validation("purchaseTime must be in the future."))
            }
            Some(t) => (t, "queued"),
            None => (now, "active"),
        };
        let id = self.new_id("savings-plan");
        self.plans.push(Plan {
            id: id.clone(),
            offering_id: offering.id.clone(),
            commitment,
            upfront: upfront.round_dp(2),
            start,
            end: start + ChronoDuration::seconds(offering.duration_seconds),
            state: state.to_string(),
            tags: req.tags.clone(),
        });
        self.purchases += 1;
        if let Some(token) = req.client_token.clone() {
            self.create_tokens.insert(token, (req, id.clone()));
        }
        Ok(id)
    }

    fn plan_index(&self, id: &str) -> Result<usize, ApiError> {
        self.plans
            .iter()
            .position(|p| p.id == id)
            .ok_or_else(|| ApiError::not_found(format!("Savings Plan {id} not found.")))
    }

    pub fn delete_queued(&mut self, id: &str) -> Result<(), ApiError> {
        let i = self.plan_index(id)?;
        let state = self.plan_state(&self.plans[i]);
        if state != "queued" {
            return Err(ApiError::validation(format!(
                "Savings Plan {id} is {state}; only queued Savings Plans can be deleted."
            )));
        }
        self.plans[i].state = "queued-deleted".to_string();
        Ok(())
    }

    /// ReturnSavingsPlan: the return-window rules, idempotent per client token.
    pub fn return_plan(
        &mut self,
        id: &str,
        client_token: Option<&str>,
    ) -> Result<String, ApiError> {
        if let Some(token) = client_token {
            if let Some(previous) = self.return_tokens.get(token) {
                return if previous == id {
                    Ok(id.to_string())
                } else {
                    Err(ApiError::validation(
                        "The client token was already used with different request parameters.",
                    ))
                };
            }
        }
        let i = self.plan_index(id)?;
        let plan = self.plans[i].clone();
        let state = self.plan_state(&plan);
        let now = self.now();
        if state != "active" {
            return Err(ApiError::validation(format!(
                "Savings Plan {id} is {state} and cannot be returned."
            )));
        }
        if plan.commitment > Decimal::from(100) {
            return Err(ApiError::validation(
                "Only Savings Plans with an hourly commitment of $100 or less can be returned.",
            ));
        }
        match self.returnable_until(&plan, &state) {
            Some(until) if now < until => {}
            _ => {
                return Err(ApiError::validation(
                    "Savings Plans can only be returned within 7 days of purchase and in the same calendar month.",
                ))
            }
        }
        self.plans[i].state = "returned".to_string();
        if let Some(token) = client_token {
            self.return_tokens.insert(token.to_string(), id.to_string());
        }
        Ok(id.to_string())
    }

    // ---------------------------------------------------------------- reserved instances

    pub fn ri_offering(&self, id: &str) -> Option<&RiOffering> {
        self.ri_offerings.iter().find(|o| o.id == id)
    }

    fn ri_state(&self, r: &Ri) -> String {
        if r.state == "queued" && self.now() >= r.start {
            return "active".to_string();
        }
        if r.state == "active" && self.now() >= r.end {
            return "retired".to_string();
        }
        r.state.clone()
    }

    /// RIs with their current state and offering, in purchase order.
    pub fn reserved_instances(&self) -> Vec<(Ri, String, RiOffering)> {
        self.ris
            .iter()
            .filter_map(|r| {
                let o = self.ri_offering(&r.offering_id)?.clone();
                Some((r.clone(), self.ri_state(r), o))
            })
            .collect()
    }

    /// Checks a purchase; `Ok` means a dry run would succeed.
    pub fn check_ri_purchase(
        &self,
        offering_id: &str,
        count: i64,
        limit: Option<Decimal>,
        purchase_time: Option<DateTime<Utc>>,
    ) -> Result<RiOffering, ApiError> {
        let o = self.ri_offering(offering_id).cloned().ok_or_else(|| {
            ApiError::new(
                400,
                "InvalidReservedInstancesOfferingId",
                format!("The Reserved Instances offering ID '{offering_id}' is not valid."),
            )
        })?;
        if !(1..=1000).contains(&count) {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                format!("Value ({count}) for parameter instanceCount is invalid. Expected a value between 1 and 1000."),
            ));
        }
        if let Some(limit) = limit {
            let total = o.fixed_price * Decimal::from(count);
            if total > limit {
                return Err(ApiError::new(
                    400,
                    "ReservedInstancesLimitPriceExceeded",
                    format!("The total upfront price {total} exceeds the limit price {limit}."),
                ));
            }
        }
        if let Some(t) = purchase_time {
            if t <= self.now() {
                return Err(ApiError::new(
                    400,
                    "InvalidParameterValue",
                    "PurchaseTime must be in the future.",
                ));
            }
        }
        Ok(o)
    }

    pub fn purchase_ri(
        &mut self,
        offering_id: &str,
        count: i64,
        limit: Option<Decimal>,
        purchase_time: Option<DateTime<Utc>>,
    ) -> Result<String, ApiError> {
        let o = self.check_ri_purchase(offering_id, count, limit, purchase_time)?;
        let (start, state) = match purchase_time {
            Some(t) => (t, "queued"),
            None => (self.now(), "active"),
        };
        let id = self.new_id("reserved-instances");
        self.ris.push(Ri {
            id: id.clone(),
            offering_id: o.id.clone(),
            count: count as u32,
            start,
            end: start + ChronoDuration::seconds(o.duration_seconds),
            state: state.to_string(),
            tags: BTreeMap::new(),
        });
        self.purchases += 1;
        Ok(id)
    }

    /// CreateTags on Reserved Instances (the only EC2 resources this server holds).
    pub fn tag_reserved_instances(
        &mut self,
        ids: &[String],
        tags: &[(String, String)],
    ) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                "The request must contain the parameter resourceIdSet",
            ));
        }
        for id in ids {
            if !self.ris.iter().any(|r| &r.id == id) {
                return Err(ApiError::new(
                    400,
                    "InvalidID",
                    format!("The ID '{id}' is not valid"),
                ));
            }
        }
        for r in self.ris.iter_mut().filter(|r| ids.contains(&r.id)) {
            r.tags.extend(tags.iter().cloned());
        }
        Ok(())
    }

    /// The exchange value rule: every source is an active convertible RI of this account,
    /// every target a convertible offering of the same region, and the targets' total value
    /// is at least the sources' remaining value. The true-up is the upfront difference.
    pub fn quote(&self, sources: &[String], targets: &[(String, i64)]) -> Result<Quote, ApiError> {
        if sources.is_empty() {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                "The request must contain the parameter ReservedInstanceId.",
            ));
        }
        let now = self.now();
        let mut failure: Option<String> = None;
        let mut fail = |reason: String| {
            failure.get_or_insert(reason);
        };
        let (mut remaining_total, mut remaining_upfront, mut source_hourly) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        let mut latest_end = now;
        for id in sources {
            let Some(r) = self.ris.iter().find(|r| &r.id == id) else {
                return Err(ApiError::new(
                    400,
                    "InvalidReservedInstancesId",
                    format!("The Reserved Instance ID '{id}' does not exist."),
                ));
            };
            let o = self.ri_offering(&r.offering_id).cloned().ok_or_else(|| {
                ApiError::new(
                    500,
                    "InternalError",
                    "offering of a reserved instance vanished",
                )
            })?;
            let state = self.ri_state(r);
            if o.class != "convertible" {
                fail(format!("Reserved Instance {id} is not convertible."));
            }
            if state != "active" {
                fail(format!("Reserved Instance {id} is {state}, not active."));
            }
            if o.region != self.region {
                fail(format!("Reserved Instance {id} is in another region."));
            }
            let total_hours = Decimal::from(o.duration_seconds / 3600);
            let left_hours = Decimal::from((r.end - now).num_hours().max(0));
            let share = left_hours / total_hours;
            let count = Decimal::from(r.count);
            remaining_total += o.total_value() * share * count;
            remaining_upfront += o.fixed_price * share * count;
            source_hourly += o.hourly * count;
            latest_end = latest_end.max(r.end);
        }
        if targets.is_empty() {
            fail("No target configuration was given.".to_string());
        }
        let (mut target_total, mut target_upfront, mut target_hourly) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        for (offering_id, count) in targets {
            let Some(o) = self.ri_offering(offering_id) else {
                return Err(ApiError::new(
                    400,
                    "InvalidReservedInstancesOfferingId",
                    format!("The Reserved Instances offering ID '{offering_id}' is not valid."),
                ));
            };
            if *count < 1 {
                fail(format!("Target instance count {count} must be at least 1."));
            }
            if o.class != "convertible" {
                fail(format!("Target offering {offering_id} is not convertible."));
            }
            if o.region != self.region {
                fail(format!(
                    "Target offering {offering_id} is in another region."
                ));
            }
            let c = Decimal::from((*count).max(0));
            target_total += o.total_value() * c;
            target_upfront += o.fixed_price * c;
            target_hourly += o.hourly * c;
        }
        if failure.is_none() && target_total < remaining_total {
            failure = Some(format!(
                "The target configuration value {} is less than the remaining value {} of the Reserved Instances being exchanged.",
                target_total.round_dp(2),
                remaining_total.round_dp(2)
            ));
        }
        Ok(Quote {
            valid: failure.is_none(),
            failure_reason: failure,
            source_remaining_total: remaining_total.round_dp(2),
            source_remaining_upfront: remaining_upfront.round_dp(2),
            source_hourly,
            target_total: target_total.round_dp(2),
            target_upfront: target_upfront.round_dp(2),
            target_hourly,
            payment_due: (target_upfront - remaining_upfront)
                .max(Decimal::ZERO)
                .round_dp(2),
            expires_at: latest_end,
        })
    }

    /// Accepts an exchange: retires the sources and creates the targets, ending when the
    /// latest source would have.
    pub fn accept_exchange(
        &mut self,
        sources: &[String],
        targets: &[(String, i64)],
    ) -> Result<String, ApiError> {
        let quote = self.quote(sources, targets)?;
        if !quote.valid {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                format!(
                    "The exchange is not valid: {}",
                    quote.failure_reason.unwrap_or_default()
                ),
            ));
        }
        let now = self.now();
        for r in self.ris.iter_mut().filter(|r| sources.contains(&r.id)) {
            r.state = "retired".to_string();
        }
        for (offering_id, count) in targets {
            let id = self.new_id("reserved-instances");
            self.ris.push(Ri {
                id,
                offering_id: offering_id.clone(),
                count: *count as u32,
                start: now,
                end: quote.expires_at,
                state: "active".to_string(),
                tags: BTreeMap::new(),
            });
        }
        self.purchases += 1;
        self.exchanges += 1;
        Ok(format!("riex-{}", &self.new_id("exchange")[..17]))
    }

    /// CreateReservedInstancesListing under AWS's rules: an active Standard RI, bought at
    /// least 30 days ago, with at least a month left, not listed already, at most its instance
    /// count, priced in USD for at most the months it has left. The same client token returns
    /// the listing it made (a different request under it is refused).
    pub fn create_listing(
        &mut self,
        ri_id: &str,
        count: i64,
        client_token: &str,
        schedule: Vec<(i64, Decimal)>,
    ) -> Result<Listing, ApiError> {
        if let Some(l) = self
            .listings
            .iter()
            .find(|l| l.client_token == client_token)
        {
            if l.ri_id != ri_id || i64::from(l.count) != count || l.schedule != schedule {
                return Err(ApiError::new(
                    400,
                    "IdempotentParameterMismatch",
                    format!("The client token {client_token} was used with different parameters."),
                ));
            }
            return Ok(l.clone());
        }
        let bad = |m: String| ApiError::new(400, "InvalidParameterValue", m);
        let r = self
            .ris
            .iter()
            .find(|r| r.id == ri_id)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "InvalidReservedInstancesId",
                    format!("Reserved Instances ID '{ri_id}' not found."),
                )
            })?;
        let offering = self.ri_offering(&r.offering_id).cloned();
        if offering.as_ref().map(|o| o.class.as_str()) != Some("standard") {
            return Err(bad(format!(
                "{ri_id} is not a Standard Reserved Instance; only those can be sold."
            )));
        }
        if self.ri_state(&r) != "active" {
            return Err(bad(format!("{ri_id} is not active.")));
        }
        let now = self.now();
        if now - r.start < ChronoDuration::days(30) {
            return Err(bad(format!(
                "{ri_id} has been active for less than 30 days and cannot be listed yet."
            )));
        }
        let months_left = (r.end - now).num_days() / 30;
        if months_left < 1 {
            return Err(bad(format!(
                "{ri_id} has less than a month left and cannot be listed."
            )));
        }
        if !(1..=i64::from(r.count)).contains(&count) {
            return Err(bad(format!(
                "Value ({count}) for parameter instanceCount is invalid: {ri_id} has {} instances.",
                r.count
            )));
        }
        if self
            .listings
            .iter()
            .any(|l| l.ri_id == ri_id && l.status == "active")
        {
            return Err(bad(format!("{ri_id} already has an active listing.")));
        }
        if schedule.is_empty()
            || schedule
                .iter()
                .any(|(term, price)| *term < 1 || *term > months_left || *price < Decimal::ZERO)
        {
            return Err(bad(format!(
                "The price schedule must give non-negative prices for 1 to {months_left} months left."
            )));
        }
        let listing = Listing {
            id: self.new_id("listing"),
            ri_id: ri_id.to_string(),
            count: count as u32,
            client_token: client_token.to_string(),
            schedule,
            created: now,
            status: "active".to_string(),
        };
        self.listings.push(listing.clone());
        Ok(listing)
    }

    /// Listings, oldest first.
    pub fn listings(&self) -> &[Listing] {
        &self.listings
    }

    /// A buyer takes a listing (tests only): it closes, and its instances leave the RI.
    pub fn sell_listing(&mut self, listing_id: &str) -> Result<(), ApiError> {
        let l = self
            .listings
            .iter_mut()
            .find(|l| l.id == listing_id && l.status == "active")
            .ok_or_else(|| ApiError::not_found(format!("no active listing {listing_id}")))?;
        l.status = "closed".to_string();
        let (ri_id, count) = (l.ri_id.clone(), l.count);
        if let Some(r) = self.ris.iter_mut().find(|r| r.id == ri_id) {
            r.count -= count.min(r.count);
            if r.count == 0 {
                r.state = "retired".to_string();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn offering(w: &World, plan_type: &str, payment: &str) -> String {
        w.sp_offerings
            .iter()
            .find(|o| {
                o.plan_type == plan_type
                    && o.payment == payment
                    && o.duration_seconds == ONE_YEAR_SECONDS
            })
            .unwrap()
            .id
            .clone()
    }

    fn create(
        offering_id: &str,
        commitment: &str,
        upfront: Option<&str>,
        token: &str,
    ) -> CreatePlan {
        CreatePlan {
            offering_id: offering_id.into(),
            commitment: commitment.into(),
            upfront: upfront.map(str::to_string),
            purchase_time: None,
            client_token: Some(token.into()),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn queued_faults_come_before_permanent_ones_until_cleared() {
        let mut w = World::empty("us-east-1");
        w.inject("CreateTags", Fault::Pass, 1);
        w.inject("CreateTags", Fault::Throttle, 1);
        w.inject_always("CreateTags", Fault::Unauthorized);
        let seen: Vec<_> = (0..4).map(|_| w.begin_call("CreateTags")).collect();
        assert_eq!(
            seen,
            [
                Some(Fault::Pass),
                Some(Fault::Throttle),
                Some(Fault::Unauthorized),
                Some(Fault::Unauthorized)
            ]
        );
        assert_eq!(w.begin_call("DescribeReservedInstances"), None);
        w.inject("DescribeReservedInstances", Fault::ServerError, 2);
        w.clear_faults(Some("CreateTags"));
        assert_eq!(w.begin_call("CreateTags"), None);
        assert_eq!(
            w.begin_call("DescribeReservedInstances"),
            Some(Fault::ServerError),
            "clearing one operation leaves the others"
        );
        w.inject_always("CreateTags", Fault::Unauthorized);
        w.clear_faults(None);
        assert_eq!(w.begin_call("CreateTags"), None);
        assert_eq!(w.begin_call("DescribeReservedInstances"), None);
        assert_eq!(w.calls("CreateTags"), 6);
    }

    #[test]
    fn create_validates_like_aws_and_is_idempotent_per_token() {
        let mut w = World::demo("us-east-1");
        w.set_now(at("2025-03-05T00:00:00Z"));
        let no = offering(&w, "Compute", "No Upfront");
        let partial = offering(&w, "Compute", "Partial Upfront");
        let id = w.create_plan(create(&no, "1.5", None, "t1")).unwrap();
        assert_eq!(w.create_plan(create(&no, "1.5", None, "t1")).unwrap(), id);
        assert_eq!(w.purchases(), 1);
        assert!(w
            .create_plan(create(&no, "2", None, "t1"))
            .unwrap_err()
            .message
            .contains("different"));
        assert!(w
            .create_plan(create(&no, "1.123456", None, "t2"))
            .unwrap_err()
            .message
            .contains("5 decimal"));
        assert!(w.create_plan(create(&no, "0.0001", None, "t3")).is_err());
        assert!(w
            .create_plan(create(&partial, "1.25", None, "t4"))
            .unwrap_err()
            .message
            .contains("required"));
        assert!(w
            .create_plan(create(&partial, "1.25", Some("5474"), "t5"))
            .unwrap_err()
            .message
            .contains("50%"));
        assert!(w
            .create_plan(create(&partial, "1.25", Some("5475.5"), "t6"))
            .unwrap_err()
            .message
            .contains("whole"));
        assert!(w
            .create_plan(create(&partial, "1.25", Some("5475"), "t7"))
            .is_ok());
        assert!(w
            .create_plan(create(&no, "1", Some("10"), "t8"))
            .unwrap_err()
            .message
            .contains("only supported"));
        assert_eq!(
            w.create_plan(create("nope", "1", None, "t9"))
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(w.purchases(), 2);
    }

    #[test]
    fn return_window_and_queued_plans() {
        let mut w = World::demo("us-east-1");
        w.set_now(at("2025-03-05T00:00:00Z"));
        let no = offering(&w, "Compute", "No Upfront");
        let small = w.create_plan(create(&no, "1", None, "a")).unwrap();
        let big = w.create_plan(create(&no, "100.5", None, "b")).unwrap();
        let mut queued = create(&no, "1", None, "c");
        queued.purchase_time = Some(at("2025-04-01T00:00:00Z"));
        let q = w.create_plan(queued).unwrap();
        assert!(w
            .return_plan(&big, Some("rb"))
            .unwrap_err()
            .message
            .contains("$100"));
        assert!(w
            .return_plan(&q, Some("rq"))
            .unwrap_err()
            .message
            .contains("queued"));
        w.delete_queued(&q).unwrap();
        assert!(w
            .delete_queued(&small)
            .unwrap_err()
            .message
            .contains("only queued"));
        w.set_now(at("2025-03-12T00:00:01Z"));
        assert!(w
            .return_plan(&small, Some("ra"))
            .unwrap_err()
            .message
            .contains("7 days"));
        w.set_now(at("2025-03-11T23:00:00Z"));
        assert_eq!(w.return_plan(&small, Some("ra")).unwrap(), small);
        assert_eq!(w.return_plan(&small, Some("ra")).unwrap(), small);
        let states: Vec<String> = w.plans().into_iter().map(|(_, s)| s).collect();
        assert_eq!(states, ["returned", "active", "queued-deleted"]);
    }

    #[test]
    fn exchange_value_rule() {
        let mut w = World::demo("us-east-1");
        w.set_now(at("2025-03-05T00:00:00Z"));
        let conv = |w: &World, t: &str, pay: &str| {
            w.ri_offerings
                .iter()
                .find(|o| {
                    o.class == "convertible"
                        && o.instance_type == t
                        && o.offering_type == pay
                        && o.duration_seconds == ONE_YEAR_SECONDS
                })
                .unwrap()
                .id
                .clone()
        };
        let src = w
            .purchase_ri(&conv(&w, "m5.xlarge", "No Upfront"), 2, None, None)
            .unwrap();
        // Smaller target: less value -> invalid.
        let small = conv(&w, "m5.large", "No Upfront");
        let q = w
            .quote(std::slice::from_ref(&src), &[(small.clone(), 1)])
            .unwrap();
        assert!(!q.valid);
        assert!(q
            .failure_reason
            .unwrap()
            .contains("less than the remaining value"));
        assert!(w
            .accept_exchange(std::slice::from_ref(&src), &[(small, 1)])
            .is_err());
        // Larger target with upfront: valid, with a true-up.
        let big = conv(&w, "r5.large", "All Upfront");
        let q = w
            .quote(std::slice::from_ref(&src), &[(big.clone(), 4)])
            .unwrap();
        assert!(q.valid, "{q:?}");
        assert!(q.payment_due > Decimal::ZERO);
        w.accept_exchange(std::slice::from_ref(&src), &[(big, 4)])
            .unwrap();
        let states: Vec<String> = w
            .reserved_instances()
            .into_iter()
            .map(|(_, s, _)| s)
            .collect();
        assert_eq!(states, ["retired", "active"]);
    }
}
