//! Backtest: replay rolling purchase decisions over a scenario's evaluation window and bill
//! every hour by the providers' rules.
//!
//! The harness owns *time*. At each decision (every `cadence_hours` from `decision_time`), it
//! gives the planner a [`DecisionContext`] whose usage model is a slice that **ends at
//! `now - latency_hours`**: billing data arrives late (AWS CUR/FOCUS up to ~48 h), so a planner
//! structurally cannot see an hour that has not been billed yet. The planner returns purchases;
//! the harness checks them against the [`Policy`] (term, start at `now`, per-decision cap) and
//! adds them to the portfolio. Purchases start at the decision time and run their full term.
//! After the last decision, [`metrics`] bills every hour of `[decision_time, evaluation_end)`
//! with the whole portfolio (a commitment only counts in hours where it is active, so billing
//! after the fact is the same as billing as we go) and aggregates monthly and overall figures.
//!
//! Planners are a trait, so the same harness runs commitd's forecast + optimize planner
//! ([`planner`]), the native-tool baselines ([`baselines`]) and test doubles.

pub mod baselines;
pub mod metrics;
pub mod planner;
pub mod report;

use crate::billing::{BillableGroup, BillingError};
use crate::domain::{
    Commitment, CommitmentAmount, Hour, HourRange, Money, Offer, RateCard, ScenarioWindow, Term,
    UsageGroup, UsageModel,
};
pub use metrics::{Period, RunResult};

/// Why a backtest cannot run or a decision is refused.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("billing: {0}")]
    Billing(#[from] BillingError),
    #[error("scenario window: {0}")]
    Window(String),
    #[error("planner {planner} at {at}: {message}")]
    Planner {
        planner: String,
        at: Hour,
        message: String,
    },
    #[error("planner {planner} at {at}: purchase {id} breaks the policy: {rule}")]
    Policy {
        planner: String,
        at: Hour,
        id: String,
        rule: String,
    },
    #[error("settings: {0}")]
    Settings(String),
}

/// What a backtest needs: the scenario, already loaded.
#[derive(Clone, Debug)]
pub struct BacktestInput {
    pub name: String,
    pub window: ScenarioWindow,
    /// Usage over (at least) `[history_start, evaluation_end)`.
    pub usage: UsageModel,
    pub rates: RateCard,
    /// Commitments owned before `decision_time` (some may expire during the window).
    pub existing: Vec<Commitment>,
}

impl BacktestInput {
    /// Billable groups in the usage model's order (on-demand price from the rate card, else
    /// the unit price observed in the bill).
    pub fn billable_groups(&self) -> Result<Vec<BillableGroup>, BacktestError> {
        self.usage
            .groups
            .iter()
            .map(|g| {
                BillableGroup::from_rate_card(&g.group, &self.rates, g.observed_unit_price())
                    .map_err(BacktestError::from)
            })
            .collect()
    }
}

/// Guardrails the harness enforces on every purchase a planner returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Terms a new purchase may have (the benchmark policy: 1 year only).
    pub terms: Vec<Term>,
    /// Laddering: the most new amortized hourly commitment cost per decision (None: no cap).
    pub max_new_hourly_cost_per_decision: Option<Money>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            terms: vec![Term::ONE_YEAR],
            max_new_hourly_cost_per_decision: None,
        }
    }
}

/// How the replay runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Hours between decisions (24 = daily).
    pub cadence_hours: i64,
    /// Billing-data latency: a decision at `t` sees usage up to `t - latency_hours` only.
    pub latency_hours: i64,
    pub policy: Policy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cadence_hours: 24,
            latency_hours: 48,
            policy: Policy::default(),
        }
    }
}

/// Everything a planner may look at when it decides at `now`.
pub struct DecisionContext<'a> {
    pub now: Hour,
    pub window: ScenarioWindow,
    /// Usage known at `now`: `[history_start, now - latency)`, never later.
    pub known: &'a UsageModel,
    pub rates: &'a RateCard,
    /// Billable groups, in the same order as `known.groups`.
    pub groups: &'a [BillableGroup],
    /// Every commitment owned so far (existing ones and earlier purchases), active or expired.
    pub portfolio: &'a [Commitment],
    pub policy: &'a Policy,
}

impl DecisionContext<'_> {
    /// Commitments active at `now`.
    pub fn active(&self) -> Vec<Commitment> {
        self.portfolio
            .iter()
            .filter(|c| c.is_active(self.now))
            .cloned()
            .collect()
    }
}

/// A rolling decision maker: commitd's planner, a baseline, or a test double.
pub trait Planner {
    fn name(&self) -> &str;
    /// Purchases to make at `ctx.now`; each must start at `now` and run its full term.
    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Result<Vec<Commitment>, String>;
    /// What the planner did beyond its purchases (solves, skipped decisions, solver time), for
    /// profiling; `null` when it has nothing to report.
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Runs one planner over the scenario's evaluation window.
pub fn run(
    input: &BacktestInput,
    planner: &mut dyn Planner,
    settings: &Settings,
) -> Result<RunResult, BacktestError> {
    let w = input.window;
    if w.decision_time >= w.evaluation_end || w.history_start > w.decision_time {
        return Err(BacktestError::Window(format!(
            "need history_start <= decision_time < evaluation_end, got {} / {} / {}",
            w.history_start, w.decision_time, w.evaluation_end
        )));
    }
    if settings.cadence_hours < 1 || settings.latency_hours < 0 {
        return Err(BacktestError::Settings(format!(
            "cadence must be >= 1 h and latency >= 0 h (got {} and {})",
            settings.cadence_hours, settings.latency_hours
        )));
    }
    let groups = input.billable_groups()?;
    let mut portfolio = input.existing.clone();
    let mut purchases: Vec<Commitment> = Vec::new();
    let mut decisions = 0usize;
    let mut now = w.decision_time;
    while now < w.evaluation_end {
        // The only view of usage a planner ever gets: nothing at or after now - latency.
        let known_end = now.plus(-settings.latency_hours);
        let known = input
            .usage
            .slice(HourRange::new(input.usage.range.start, known_end));
        let ctx = DecisionContext {
            now,
            window: w,
            known: &known,
            rates: &input.rates,
            groups: &groups,
            portfolio: &portfolio,
            policy: &settings.policy,
        };
        let bought = planner
            .decide(&ctx)
            .map_err(|message| BacktestError::Planner {
                planner: planner.name().to_string(),
                at: now,
                message,
            })?;
        check_policy(planner.name(), now, &bought, &settings.policy)?;
        decisions += 1;
        portfolio.extend(bought.iter().cloned());
        purchases.extend(bought);
        now = now.plus(settings.cadence_hours);
    }
    metrics::evaluate(
        input,
        &groups,
        planner.name(),
        &portfolio,
        purchases,
        decisions,
    )
}

fn check_policy(
    planner: &str,
    now: Hour,
    bought: &[Commitment],
    policy: &Policy,
) -> Result<(), BacktestError> {
    let refuse = |id: &str, rule: String| BacktestError::Policy {
        planner: planner.to_string(),
        at: now,
        id: id.to_string(),
        rule,
    };
    let mut new_cost = Money::ZERO;
    for c in bought {
        if c.start != now || c.end != now.plus(c.term.hours()) {
            return Err(refuse(
                &c.id,
                format!(
                    "must start now and run its full term ({} to {}), got {} to {}",
                    now,
                    now.plus(c.term.hours()),
                    c.start,
                    c.end
                ),
            ));
        }
        if !policy.terms.contains(&c.term) {
            return Err(refuse(&c.id, format!("term {} not allowed", c.term)));
        }
        if !c.instrument.is_commitment() {
            return Err(refuse(&c.id, "on-demand is not a purchase".into()));
        }
        if c.hourly_cost.is_negative() {
            return Err(refuse(&c.id, "negative cost".into()));
        }
        new_cost += c.hourly_cost;
    }
    if let Some(cap) = policy.max_new_hourly_cost_per_decision {
        if new_cost > cap {
            let id = bought.last().map(|c| c.id.as_str()).unwrap_or("");
            return Err(refuse(
                id,
                format!("new hourly commitment cost {new_cost} exceeds the per-decision cap {cap}"),
            ));
        }
    }
    Ok(())
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
) -> Result<Commitment, String> {
    let term = offer
        .term
        .ok_or_else(|| format!("{id}: offer {} has no term", offer.instrument))?;
    let provider = offer
        .instrument
        .provider()
        .ok_or_else(|| format!("{id}: on-demand is not a commitment"))?;
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
) -> Result<Commitment, String> {
    let term = offer
        .term
        .ok_or_else(|| format!("{id}: offer {} has no term", offer.instrument))?;
    let hourly = Money::from_f64(offer.rate() * count as f64).map_err(|e| format!("{id}: {e}"))?;
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
