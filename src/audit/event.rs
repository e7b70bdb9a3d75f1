//! The event model: one struct per observable fact, an [`EventKind`] naming each, and the
//! envelope ([`NewEvent`] to append, [`Event`] as stored) that every kind shares.
//!
//! The envelope carries what finance and auditors filter on (time, actor, subject, one
//! headline amount); the per-kind payload carries the typed facts; `rationale` is free-form
//! JSON for the why (forecast summary, policy evaluation, solver details) that would be
//! premature to type.
//!
//! Payload structs may gain fields (add them as `Option` or with `#[serde(default)]` so old
//! events still decode); a field is never renamed or removed, since stored payloads are
//! hashed and must keep decoding.

use crate::domain::{Instrument, Money, PaymentOption, Provider, Term};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Defines [`EventKind`] and [`EventBody`] from one list so that the kind tag, the enum
/// variant and the payload struct can never disagree.
macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $tag:literal ),+ $(,)?) => {
        /// The kind of an event, stored in the `kind` column as its tag (`plan_computed`, ...).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind { $( $(#[$doc])* $variant ),+ }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),+];

            /// The tag stored in the database and used by `--kind`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $tag),+ }
            }

            pub fn parse(tag: &str) -> Option<EventKind> {
                match tag { $($tag => Some(EventKind::$variant),)+ _ => None }
            }
        }

        /// The typed payload of an event: exactly one struct per kind.
        #[derive(Clone, Debug, PartialEq)]
        pub enum EventBody { $( $(#[$doc])* $variant($variant) ),+ }

        impl EventBody {
            pub fn kind(&self) -> EventKind {
                match self { $(EventBody::$variant(_) => EventKind::$variant),+ }
            }

            /// The payload as a JSON object (the struct's fields).
            pub fn payload(&self) -> Result<Value, serde_json::Error> {
                match self { $(EventBody::$variant(p) => serde_json::to_value(p)),+ }
            }

            /// Decodes a stored payload for a kind.
            pub fn decode(kind: EventKind, payload: Value) -> Result<EventBody, serde_json::Error> {
                match kind {
                    $(EventKind::$variant => serde_json::from_value(payload).map(EventBody::$variant)),+
                }
            }
        }

        $(
            impl From<$variant> for EventBody {
                fn from(p: $variant) -> EventBody { EventBody::$variant(p) }
            }
        )+
    };
}

event_kinds! {
    /// The optimizer produced a plan.
    PlanComputed => "plan_computed",
    /// One action of a plan became a proposal (Copilot) or a recommendation (Datapilot).
    ActionProposed => "action_proposed",
    /// A person approved a proposal; the approver is the event's actor.
    Approved => "approved",
    /// A person rejected a proposal; the rejecter is the event's actor.
    Rejected => "rejected",
    /// A proposal was superseded by a newer plan or timed out.
    ProposalExpired => "proposal_expired",
    /// The executor committed its intent to call the provider (before the call).
    ExecutionRequested => "execution_requested",
    /// The provider confirmed the purchase.
    Executed => "executed",
    /// The provider call failed.
    Failed => "failed",
    /// A policy rule blocked an action.
    PolicyBlocked => "policy_blocked",
    /// A provider call's outcome could not be established: parked for a person, never retried
    /// automatically.
    NeedsReview => "needs_review",
    /// An API token was created; the actor is who created it.
    TokenCreated => "token_created",
    /// An API token got a new secret; the actor is who rotated it.
    TokenRotated => "token_rotated",
    /// An API token was revoked; the actor is who revoked it.
    TokenRevoked => "token_revoked",
    /// A person logged in to the web console with a token; the actor is the token's name.
    ConsoleLogin => "console_login",
    /// A person logged out of the web console; the actor is the token's name.
    ConsoleLogout => "console_logout",
    /// The anomaly watch found a cost anomaly in newly billed usage (purchases covering it
    /// are held while it is open); the subject is the anomaly's id.
    AnomalyDetected => "anomaly_detected",
    /// An anomaly reported earlier is over (usage came back, or its level was accepted).
    AnomalyEnded => "anomaly_ended",
    /// A sudden drop leaves held commitments idle: which, and how much of their hourly cost.
    CommitmentsStranded => "commitments_stranded",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plan computed by the optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanComputed {
    pub plan_id: String,
    /// SHA-256 of the inputs (usage model, rate card, inventory, policy), hex.
    pub inputs_digest: String,
    /// The LP solver's status ("optimal", "infeasible", ...).
    pub solver_status: String,
    /// Expected cost over the planning horizon with the plan.
    pub objective: Option<Money>,
    /// Expected savings of the plan against on-demand over the horizon.
    pub expected_savings: Option<Money>,
    /// How many purchase actions the plan contains.
    pub actions: u32,
}

/// One purchase the plan proposes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionProposed {
    pub proposal_id: String,
    pub plan_id: String,
    pub provider: Provider,
    pub instrument: Instrument,
    /// Term in years (1 or 3).
    pub term: Term,
    pub payment_option: PaymentOption,
    /// Region and family for family-scoped instruments (RIs, EC2 Instance SPs, reservations).
    pub region: Option<String>,
    pub family: Option<String>,
    /// The commitment's hourly amount (for RIs, the hourly equivalent of the instances).
    pub hourly_commitment: Money,
    pub upfront: Money,
    /// Expected savings over the term against on-demand.
    pub expected_savings: Money,
    /// Expected utilization over the term, 0..=1 (a forecast, hence a float).
    pub expected_utilization: Option<f64>,
    /// SHA-256 of the exact action (operation, spec, price ceilings): what approvals bind to.
    /// Absent in events recorded before digests existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_digest: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approved {
    pub proposal_id: String,
    pub reason: Option<String>,
    /// The action digest this approval covers (see [`ActionProposed::action_digest`]); execution
    /// counts only approvals of the digest it is about to execute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_digest: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub proposal_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProposalExpired {
    pub proposal_id: String,
    /// The plan that superseded it, if that is why it expired.
    pub superseded_by: Option<String>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRequested {
    pub proposal_id: String,
    /// Sent to the provider so that a retried call cannot buy twice.
    pub idempotency_key: String,
    /// Which provider call this is (1 for the first); absent in events recorded before
    /// every call was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// A provider call whose outcome the provider's state could not establish: the proposal waits
/// for a person (`commitd proposals resolve`), and is never retried on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeedsReview {
    pub proposal_id: String,
    pub idempotency_key: Option<String>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    pub proposal_id: String,
    pub idempotency_key: String,
    pub provider_request_id: String,
    pub commitment_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub proposal_id: String,
    pub idempotency_key: Option<String>,
    pub error: String,
    pub retryable: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyBlocked {
    /// The proposal, when the block happened after proposing (at execution time).
    pub proposal_id: Option<String>,
    /// The policy file and rule that blocked, e.g. "policies/aws.toml" and "max_upfront_per_day".
    pub policy: String,
    pub rule: String,
    pub reason: String,
}

/// A token was created. Never the secret nor its hash: the name, the role and the expiry
/// (RFC 3339, whole seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub name: String,
    pub role: String,
    pub expires_at: String,
}

/// A token's secret was replaced; the previous one works until `previous_valid_until` (the
/// rotation's time when it stopped at once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRotated {
    pub name: String,
    pub role: String,
    pub expires_at: String,
    pub previous_valid_until: String,
}

/// A token was deleted; it stops authenticating at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub name: String,
    pub role: String,
}

/// A console session was opened with a token (never the token, the session's secret nor
/// their hashes): whose, its role, and until when the session may last (RFC 3339).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsoleLogin {
    pub name: String,
    pub role: String,
    pub session_expires_at: String,
}

/// A console session was ended by its owner (logout). Sessions that expire or end with their
/// token are not events: the token's own events say why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsoleLogout {
    pub name: String,
    pub role: String,
}

/// A cost anomaly of one usage group, as the daemon's watch found it in newly billed usage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyDetected {
    pub anomaly_id: String,
    pub provider: Provider,
    /// The usage group (provider/region/instance type/OS/tenancy).
    pub usage_group: String,
    /// "spike", "step_up" or "drop".
    pub kind: String,
    /// Its first anomalous hour (RFC 3339).
    pub start: String,
    /// Usage minus the model's expectation so far, in instance-hours (a forecast residual,
    /// hence a float; negative for a drop), and the same at the on-demand price.
    pub excess_instance_hours: f64,
    pub excess_cost: Money,
    /// The most extreme hour: usage and what the model expected (instance-hours per hour).
    pub peak: f64,
    pub expected_at_peak: f64,
}

/// An anomaly reported by [`AnomalyDetected`] is over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEnded {
    pub anomaly_id: String,
    pub provider: Provider,
    pub usage_group: String,
    /// Its kind at the end (a spike that lasted becomes a "step_up").
    pub kind: String,
    pub start: String,
    /// One past its last anomalous hour, or when its level was accepted (RFC 3339).
    pub end: Option<String>,
    /// "ended" (usage came back) or "new_level" (accepted as the new normal).
    pub status: String,
    pub excess_instance_hours: f64,
    pub excess_cost: Money,
}

/// A held commitment a sudden drop leaves idle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdleCommitment {
    pub commitment_id: String,
    pub hourly_cost: Money,
    /// Its use over the drop's hours, 0..=1.
    pub utilization: f64,
    /// The part of its hourly cost left unused.
    pub idle_hourly: Money,
}

/// A sudden drop on a usage group that held commitments cover, naming what it leaves idle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitmentsStranded {
    pub anomaly_id: String,
    pub provider: Provider,
    pub usage_group: String,
    pub commitments: Vec<IdleCommitment>,
    /// The sum of their idle hourly cost.
    pub idle_hourly: Money,
}

/// An exact amount with its currency (ISO 4217 code, e.g. "USD").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub money: Money,
    pub currency: String,
}

impl Amount {
    pub fn usd(money: Money) -> Amount {
        Amount {
            money,
            currency: "USD".to_string(),
        }
    }
}

/// An event to append. The time is given by the caller (the log never reads the clock) and
/// is stored at microsecond precision.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub time: DateTime<Utc>,
    /// Who did it: a user name, a token's subject, or "commitd" for the daemon itself.
    pub actor: String,
    /// What it is about: a plan id, a proposal id, a commitment id.
    pub subject: String,
    /// The headline amount finance sums (e.g. the upfront payment or the expected savings).
    pub amount: Option<Amount>,
    /// Why, as a JSON object (may be empty).
    pub rationale: Value,
    pub body: EventBody,
}

impl NewEvent {
    pub fn new(
        time: DateTime<Utc>,
        actor: impl Into<String>,
        subject: impl Into<String>,
        body: impl Into<EventBody>,
    ) -> NewEvent {
        NewEvent {
            time,
            actor: actor.into(),
            subject: subject.into(),
            amount: None,
            rationale: Value::Object(Default::default()),
            body: body.into(),
        }
    }

    pub fn with_amount(mut self, amount: Amount) -> NewEvent {
        self.amount = Some(amount);
        self
    }

    pub fn with_rationale(mut self, rationale: Value) -> NewEvent {
        self.rationale = rationale;
        self
    }
}

/// An event as stored: its position in the chain, its fields and its hashes.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Position in the chain, from 1, without gaps.
    pub id: i64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub subject: String,
    pub amount: Option<Amount>,
    pub rationale: Value,
    pub body: EventBody,
    pub prev_hash: String,
    pub hash: String,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_tag() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(EventKind::parse("Approved"), None);
        assert_eq!(EventKind::ALL.len(), 18);
    }

    #[test]
    fn payload_decodes_back_to_the_same_struct() {
        let body = EventBody::from(ActionProposed {
            proposal_id: "p-1".into(),
            plan_id: "plan-7".into(),
            provider: Provider::Aws,
            instrument: Instrument::ComputeSavingsPlan,
            term: Term::THREE_YEARS,
            payment_option: PaymentOption::NoUpfront,
            region: None,
            family: None,
            hourly_commitment: Money::from_micros(12_345_678),
            upfront: Money::ZERO,
            expected_savings: Money::from_micros(98_765_432_101),
            expected_utilization: Some(0.97),
            action_digest: None,
        });
        let payload = body.payload().unwrap();
        assert_eq!(payload["hourly_commitment"], "12.345678");
        assert_eq!(payload["term"], 3);
        let back = EventBody::decode(EventKind::ActionProposed, payload).unwrap();
        assert_eq!(back, body);
        // A payload of another kind does not decode silently.
        assert!(EventBody::decode(EventKind::Executed, body.payload().unwrap()).is_err());
    }
}
