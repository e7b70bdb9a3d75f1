//! Domain types, parsed once at the edge and trusted everywhere after: money, hours,
//! providers and instruments, instance sizing, usage groups and the usage model, commitments,
//! the rate card and scenarios. Pure: no I/O, no async, no clock.

pub mod cloud;
pub mod commitment;
pub mod money;
pub mod plan;
pub mod purchase;
pub mod rates;
pub mod rules;
pub mod scenario;
pub mod sizing;
pub mod time;
pub mod usage;

pub use cloud::{CommitmentKind, Instrument, ParseError, PaymentOption, Provider, Scope, Term};
pub use commitment::{Commitment, CommitmentAmount};
pub use money::{Money, MoneyError};
pub use plan::{
    Action, ActionKind, ActionScope, AmountUnit, Expected, Plan, Rationale, SolverInfo,
};
pub use rates::{Offer, RateCard};
pub use scenario::ScenarioWindow;
pub use sizing::{sizing, Sizing};
pub use time::{Hour, HourRange, HOURS_PER_YEAR};
pub use usage::{CommitmentUsage, GroupSeries, IgnoredRows, Product, UsageGroup, UsageModel};
