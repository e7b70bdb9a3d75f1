//! Deciding what to buy, give up and exchange: the one [`Planner`] trait that the daemon runs and
//! the backtest replays, the [`Situation`] a planner sees at a decision, and the
//! [`Decision`] it returns.
//!
//! * [`config`]: [`PlannerConfig`], which planner decides and its tuning (read by the daemon's
//!   `[planner]` and by `commitd backtest --planner-config`), and how a planner is built.
//! * [`lookback`]: the look-back optimizer (the default), with its exits in [`give_up`];
//!   [`forecast`]: forecast + optimize; [`ladder`]: the quantile ladder; [`hindsight`]: the
//!   hindsight optimum (a baseline).
//! * [`recent`], [`sizing`]: what the recent known usage says, and savings-plan sizing on it.
//! * [`digest`]: the inputs digest a plan is recorded with (the daemon's and `commitd plan`'s).
//! * [`judge`]: a decision less what the policies block, action by action as the daemon
//!   judges them (the backtest replays with it when given the daemon's policies).
//! * [`hold`]: the purchase hold, a wrapper that watches every usage group for anomalies and
//!   holds back the purchases that would cover one while it is open.
//! * [`evidence`]: what a person approving an action sees beside its figures (the covered
//!   groups' usage and forecast, the action's marginal value, each commitment's use).
//! * [`demand`]: usage history -> forecast quantile paths -> optimizer demand (and the plan's
//!   actions as purchase specs).
//!
//! Pure: a planner gets its time, usage, rates and portfolio in the [`Situation`] and returns
//! data. This module never imports `backtest` (the harness depends on it, not the reverse).

pub mod config;
pub mod demand;
pub mod digest;
pub mod evidence;
pub mod forecast;
pub mod give_up;
pub mod hindsight;
pub mod hold;
pub mod judge;
pub mod ladder;
pub mod lookback;
pub mod proposals;
pub mod recent;
pub mod sizing;

pub use config::{
    laddering_cap, Capabilities, ForecastConfig, HindsightConfig, LadderConfig, LookbackConfig,
    PlannerConfig, PlannerKind,
};
pub use forecast::ForecastOptimizePlanner;
pub use hindsight::{hindsight_static, plan_to_commitments, HindsightStatic};
pub use ladder::{family_generation, LadderPlanner};
pub use lookback::{LookbackPlanner, LookbackStats};
pub use recent::bill_recent;

/// The least known usage a rolling planner decides on (two weeks): before, it buys nothing.
pub const MIN_KNOWN_HOURS: usize = 14 * 24;

/// Why a planner could not decide. The messages name the stage that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The bill of the recent hours could not be computed (a group without a price, ...).
    #[error("{0}")]
    Billing(String),
    /// The optimizer failed (`what` names the solve).
    #[error("{what}: {source}")]
    Optimize {
        what: &'static str,
        #[source]
        source: crate::optimize::OptimizeError,
    },
    /// A provider's rule refused a step (splitting a commitment, a Marketplace listing, a
    /// purchase that does not convert).
    #[error("{0}")]
    Rules(String),
    /// A configuration or an input no planner can run with.
    #[error("{0}")]
    Invalid(String),
}

impl PlanError {
    /// A billing error, as its message.
    pub fn billing(e: impl std::fmt::Display) -> Self {
        PlanError::Billing(e.to_string())
    }
}

/// The providers' rules (`domain::rules`) report a refusal as its message.
impl From<String> for PlanError {
    fn from(message: String) -> Self {
        PlanError::Rules(message)
    }
}

use crate::billing::BillableGroup;
use crate::domain::rules::Marketplace;
use crate::domain::{
    Commitment, CommitmentAmount, Hour, Money, Offer, Provider, RateCard, Term, UsageGroup,
    UsageModel,
};
use serde::Serialize;

/// Guardrails the harness enforces on every purchase a planner returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Terms a new purchase may have (the benchmark policy: 1 year only).
    pub terms: Vec<Term>,
    /// Laddering: the most new amortized hourly commitment cost per decision (None: no cap).
    pub max_new_hourly_cost_per_decision: Option<Money>,
    /// Azure refunds of returned reservations, at most this much in any rolling 12 months
    /// (USD 50,000 per billing profile; returns before the window are not known, so none are
    /// assumed).
    pub azure_refund_cap: Money,
    /// How the AWS Reserved Instance Marketplace is assumed to buy what is listed.
    pub ri_marketplace: Marketplace,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            terms: vec![Term::ONE_YEAR],
            max_new_hourly_cost_per_decision: None,
            azure_refund_cap: crate::domain::rules::AZURE_REFUND_CAP,
            ri_marketplace: Marketplace::default(),
        }
    }
}

/// Whether instances carrying `id` are listed at `now` and not sold yet.
pub fn is_listed<'a>(sales: impl IntoIterator<Item = &'a SaleRecord>, id: &str, now: Hour) -> bool {
    sales.into_iter().any(|s| s.listed_id == id && s.sold > now)
}

/// The situation a planner decides in at `now`: everything it may look at. The backtest builds
/// one per decision from its replay, the daemon one per cycle from its source and its market.
pub struct Situation<'a> {
    pub now: Hour,
    /// Usage known at `now`: `[history_start, now - latency)`, never later.
    pub known: &'a UsageModel,
    pub rates: &'a RateCard,
    /// Billable groups, in the same order as `known.groups`.
    pub groups: &'a [BillableGroup],
    /// Every commitment owned so far (existing ones and earlier purchases), active or expired.
    pub portfolio: &'a [Commitment],
    pub policy: &'a Policy,
    /// The refunds of the reservations returned so far (for the rolling refund cap).
    pub refunds: &'a [Refund],
    /// The Marketplace listings made so far (listed instances are not listed twice).
    pub listings: &'a [Listing],
}

/// A refund of returned reservation instances: when, and how much.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Refund {
    pub at: Hour,
    pub amount: Money,
}

/// Instances listed on the Reserved Instance Marketplace: the id they carry while listed, and
/// when they sell (they are listed, and apply, until then).
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    pub id: String,
    pub until: Hour,
}

impl Situation<'_> {
    /// Commitments active at `now`.
    pub fn active(&self) -> Vec<Commitment> {
        self.portfolio
            .iter()
            .filter(|c| c.is_active(self.now))
            .cloned()
            .collect()
    }

    /// What the returns refunded in the 12 months up to `now` (the window of the refund cap).
    pub fn refunded_in_the_last_year(&self) -> Money {
        let year_ago = self.now.plus(-Term::ONE_YEAR.hours());
        self.refunds
            .iter()
            .filter(|r| r.at > year_ago)
            .map(|r| r.amount)
            .sum()
    }

    /// Whether instances carrying `id` are listed at `now` and not sold yet.
    pub fn is_listed(&self, id: &str) -> bool {
        self.listings
            .iter()
            .any(|l| l.id == id && l.until > self.now)
    }
}

/// What a planner does at one decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// New commitments, each starting at the decision and running its full term.
    pub purchases: Vec<Commitment>,
    /// Exchanges of held exchangeable commitments, applied before the purchases.
    pub exchanges: Vec<Exchange>,
    /// Instances of held Azure reservations returned for a refund of their remaining value
    /// (within [`Policy::azure_refund_cap`]; Azure charges no early termination fee at present).
    pub returns: Vec<GivenUp>,
    /// Instances of held AWS Standard RIs listed on the Reserved Instance Marketplace, sold
    /// as [`Policy::ri_marketplace`] assumes.
    pub sales: Vec<GivenUp>,
    /// Purchases the anomaly hold judged ([`hold`]): those held back are not in `purchases`.
    pub holds: Vec<hold::Hold>,
}

impl From<Vec<Commitment>> for Decision {
    fn from(purchases: Vec<Commitment>) -> Self {
        Decision {
            purchases,
            ..Decision::default()
        }
    }
}

/// Instances of held exchangeable commitments given up, in one transaction, for new ones (the
/// targets), under the providers' rules (`shared/domain.md`):
/// - **AWS Convertible RIs**: sources and targets in one region, at least 24 hours left on every
///   source; every target is a Convertible RI of the sources' term that ends when the latest
///   source ends, and the targets are worth at least what is given up (hourly cost x hours
///   left; the true-up is paid).
/// - **Azure reservations**: every target is a reservation with a new term (one the policy
///   allows) starting at the exchange, in any region or series, and the targets' lifetime
///   commitment is at least the refund (the remaining value given up). Exchanges do not count
///   against the refund cap.
///
/// Cost accounting: the part given up is paid for until the exchange and not after (its
/// remaining value is refunded or carried into the targets); the targets are paid from then on.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub sources: Vec<GivenUp>,
    pub targets: Vec<Commitment>,
}

/// Instances of one held commitment that an exchange gives up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GivenUp {
    pub id: String,
    pub count: u32,
}

/// An exchange as the harness applied it (in the backtest's JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExchangeRecord {
    pub at: Hour,
    pub provider: Provider,
    pub sources: Vec<GivenUp>,
    /// Remaining value of what was given up: hourly cost x hours left (exact).
    pub source_value: Money,
    /// What the targets commit to: until the sources' end (AWS) or over their new term (Azure).
    pub target_value: Money,
    /// Amortized hourly cost given up, and taken on.
    pub source_hourly: Money,
    pub target_hourly: Money,
    pub targets: Vec<Commitment>,
}

/// A return as the harness applied it (in the backtest's JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReturnRecord {
    pub at: Hour,
    pub source: GivenUp,
    /// Remaining value refunded: hourly cost x hours left (exact).
    pub refund: Money,
    /// Amortized hourly cost no longer paid.
    pub hourly: Money,
}

/// A Marketplace sale as the harness applied it (in the backtest's JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SaleRecord {
    /// When it was listed, and when it sold (the listed instances apply and bill until then).
    pub listed: Hour,
    pub sold: Hour,
    pub source: GivenUp,
    /// The id the listed instances carry until they sell.
    pub listed_id: String,
    /// What the seller receives: the asking price less AWS's fee (exact, rounded down).
    pub proceeds: Money,
    /// The upfront not yet amortized at the sale, less the proceeds: charged as cost in the
    /// month of the sale (the price of selling rather than keeping the instances idle).
    pub write_off: Money,
    /// Amortized hourly cost no longer paid once sold.
    pub hourly: Money,
}

/// A rolling decision maker: commitd's planner, a baseline, or a test double.
pub trait Planner {
    fn name(&self) -> &str;
    /// What to do at `ctx.now`: purchases (each starting at `now` and running its full term)
    /// and exchanges.
    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError>;
    /// What the planner did beyond its purchases (solves, skipped decisions, solver time), for
    /// profiling; `null` when it has nothing to report.
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// The optimizer's status at the last solve; None when the planner has not solved (or does
    /// not report it).
    fn solver_status(&self) -> Option<String> {
        None
    }
    /// Some(why) when the last decision found nothing new to decide (the planner's trigger did
    /// not fire): its empty decision leaves earlier ones standing.
    fn unchanged(&self) -> Option<String> {
        None
    }
    /// Lets the planner time its own work for [`Planner::stats`] (the core reads no clock: the
    /// caller hands one in). Planners that report no timings ignore it.
    fn set_stopwatch(&mut self, _stopwatch: Stopwatch) {}
    /// What the anomaly watch found at the last decision ([`hold::AnomalyHold`]); None for a
    /// planner that watches nothing.
    fn anomalies(&self) -> Option<&hold::AnomalyNews> {
        None
    }
}

/// A monotonic clock the caller hands to a planner that times its solves: the time since some
/// fixed instant of the caller's choosing (the service uses `Instant`; the core reads no clock).
pub type Stopwatch = fn() -> std::time::Duration;

/// What the returns refunded in the 12 months up to `now` (the window of the refund cap).
pub fn refunded_in_the_last_year<'a>(
    returns: impl IntoIterator<Item = &'a ReturnRecord>,
    now: Hour,
) -> Money {
    let year_ago = now.plus(-Term::ONE_YEAR.hours());
    returns
        .into_iter()
        .filter(|r| r.at > year_ago)
        .map(|r| r.refund)
        .sum()
}

/// Builds a savings plan purchase of `per_hour` USD/h under `offer`, starting at `now`: its
/// amortized hourly cost is the hourly commitment; the upfront part is the offer's share of the
/// term's total. `scope` is (region, family) for EC2 Instance Savings Plans.
pub fn buy_savings_plan(
    id: String,
    offer: &Offer,
    now: Hour,
    per_hour: Money,
    scope: Option<(&str, &str)>,
) -> Result<Commitment, PlanError> {
    let term = offer
        .term
        .ok_or_else(|| PlanError::Rules(format!("{id}: offer {} has no term", offer.instrument)))?;
    let provider = offer
        .instrument
        .provider()
        .ok_or_else(|| PlanError::Rules(format!("{id}: on-demand is not a commitment")))?;
    Ok(Commitment {
        id,
        provider,
        instrument: offer.instrument,
        term,
        payment: offer.payment,
        start: now,
        end: now.plus(term.hours()),
        region: scope.map(|(r, _)| r.to_string()),
        instance_type: None,
        family: scope.map(|(_, f)| f.to_string()),
        amount: CommitmentAmount::HourlySpend(per_hour),
        hourly_cost: per_hour,
        upfront: upfront(per_hour, term, offer),
    })
}

/// Builds an RI or reservation purchase of `count` instances of the group's instance type
/// under `offer` (effective hourly rate per instance-hour), starting at `now`.
pub fn buy_reservation(
    id: String,
    offer: &Offer,
    now: Hour,
    group: &UsageGroup,
    count: u32,
) -> Result<Commitment, PlanError> {
    let term = offer
        .term
        .ok_or_else(|| PlanError::Rules(format!("{id}: offer {} has no term", offer.instrument)))?;
    let hourly = Money::from_f64(offer.rate() * count as f64)
        .map_err(|e| PlanError::Rules(format!("{id}: {e}")))?;
    Ok(Commitment {
        id,
        provider: group.provider,
        instrument: offer.instrument,
        term,
        payment: offer.payment,
        start: now,
        end: now.plus(term.hours()),
        region: Some(group.region.clone()),
        instance_type: Some(group.instance_type.clone()),
        family: Some(group.family.clone()),
        amount: CommitmentAmount::Instances(count),
        hourly_cost: hourly,
        upfront: upfront(hourly, term, offer),
    })
}

fn upfront(hourly: Money, term: Term, offer: &Offer) -> Money {
    let total = hourly.times(term.hours()).unwrap_or(Money::ZERO);
    Money::from_f64(total.to_f64() * offer.upfront_fraction()).unwrap_or(Money::ZERO)
}
