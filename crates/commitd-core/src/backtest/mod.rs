//! Backtest: replay rolling purchase decisions over a scenario's evaluation window and bill
//! every hour by the providers' rules.
//!
//! The harness owns *time*. At each decision (every `cadence_hours` from `decision_time`), it
//! gives the planner a [`Situation`] whose usage model is a slice that **ends at
//! `now - latency_hours`**: billing data arrives late (AWS CUR/FOCUS up to ~48 h), so a planner
//! structurally cannot see an hour that has not been billed yet. The planner returns a
//! [`Decision`]: purchases, and exchanges of the exchangeable commitments it holds. The harness
//! checks them against the [`Policy`] (term, start at `now`, per-decision cap) and the
//! providers' exchange rules ([`Exchange`]) and applies them to the portfolio. Purchases start
//! at the decision time and run their full term; what an exchange gives up stops at it.
//! After the last decision, [`metrics`] bills every hour of `[decision_time, evaluation_end)`
//! with the whole portfolio (a commitment only counts in hours where it is active, so billing
//! after the fact is the same as billing as we go) and aggregates monthly and overall figures.
//!
//! Planners are a trait, so the same harness runs commitd's planners (built from the same
//! [`PlannerConfig`] the daemon reads: [`commitd_planner`]), the native-tool baselines
//! ([`baselines`]) and test doubles.

pub mod baselines;
pub mod metrics;
pub mod report;

use crate::billing::{BillableGroup, BillingError};
use crate::domain::{
    Commitment, CommitmentAmount, Hour, HourRange, Money, Provider, RateCard, ScenarioWindow,
    UsageModel,
};
use crate::optimize::Constraints;
use crate::plan::judge::{judge, Blocked};
use crate::policy::{PolicySet, RecentSpend};
pub use metrics::{Period, RunResult};
// The planner's side of a decision lives in `plan` (and the market rules in `domain::rules`);
// the harness applies what planners decide. Nothing is re-exported from here: each type has
// one path.
use crate::domain::rules::{remaining_value, split_off, Marketplace};
use crate::plan::{
    buy_savings_plan, is_listed, refunded_in_the_last_year, Decision, Exchange, ExchangeRecord,
    GivenUp, Listing, PlanError, Planner, PlannerConfig, Policy, Refund, ReturnRecord, SaleRecord,
    Situation,
};

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
    #[error(
        "planner {planner} at {at}: exchange of {sources} breaks the provider's rules: {rule}"
    )]
    Exchange {
        planner: String,
        at: Hour,
        sources: String,
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

impl BacktestInput {
    /// The usage known at the first decision: billed before it, less the latency (the hours
    /// after are not known yet).
    pub fn known_at_start(&self, settings: &Settings) -> UsageModel {
        let w = self.window;
        let known_end = w
            .decision_time
            .plus(-settings.latency_hours)
            .max(w.history_start);
        self.usage.slice(HourRange::new(w.history_start, known_end))
    }
}

/// commitd's planner as `config` names it, buying only what `bounds` allow (the benchmark
/// policy: [`Constraints::one_year_only`]; the daemon's: its policies'
/// [`planning_bounds`](crate::policy::PolicySet::planning_bounds)), and the settings it replays
/// under: `base` with the planner's laddering cap as the per-decision cap and the bounds' terms.
/// The daemon builds its planner the same way, from the usage known at its first decision.
pub fn commitd_planner(
    input: &BacktestInput,
    base: &Settings,
    config: &PlannerConfig,
    bounds: &Constraints,
) -> Result<(Box<dyn Planner + Send>, Settings), BacktestError> {
    let cap = config
        .cap_within(&input.known_at_start(base), bounds)
        .map_err(|e| BacktestError::Settings(e.to_string()))?;
    let mut settings = base.clone();
    settings.policy.max_new_hourly_cost_per_decision = Some(cap);
    settings.policy.terms = bounds.terms();
    let planner = config.build(cap, bounds);
    Ok((planner, settings))
}

/// How the replay runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Hours between decisions (24 = daily).
    pub cadence_hours: i64,
    /// Billing-data latency: a decision at `t` sees usage up to `t - latency_hours` only.
    pub latency_hours: i64,
    pub policy: Policy,
    /// The daemon's policies: each decision's actions are judged by them as the daemon judges
    /// a cycle's ([`crate::plan::judge`]), and what they block is not carried out. None: the
    /// benchmark replay, which judges only the guardrails of `policy`.
    pub policies: Option<PolicySet>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cadence_hours: 24,
            latency_hours: 48,
            policy: Policy::default(),
            policies: None,
        }
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
    let mut exchanges: Vec<ExchangeRecord> = Vec::new();
    let mut returns: Vec<ReturnRecord> = Vec::new();
    let mut sales: Vec<SaleRecord> = Vec::new();
    let mut blocked: Vec<Blocked> = Vec::new();
    let mut decisions = 0usize;
    let mut now = w.decision_time;
    while now < w.evaluation_end {
        // The only view of usage a planner ever gets: nothing at or after now - latency.
        let known_end = now.plus(-settings.latency_hours);
        let known = input
            .usage
            .slice(HourRange::new(input.usage.range.start, known_end));
        let refunds: Vec<Refund> = returns
            .iter()
            .map(|r| Refund {
                at: r.at,
                amount: r.refund,
            })
            .collect();
        let listings: Vec<Listing> = sales
            .iter()
            .map(|s| Listing {
                id: s.listed_id.clone(),
                until: s.sold,
            })
            .collect();
        let ctx = Situation {
            now,
            known: &known,
            rates: &input.rates,
            groups: &groups,
            portfolio: &portfolio,
            policy: &settings.policy,
            refunds: &refunds,
            listings: &listings,
        };
        let decision = planner.decide(&ctx).map_err(|e| BacktestError::Planner {
            planner: planner.name().to_string(),
            at: now,
            message: e.to_string(),
        })?;
        let decision = match &settings.policies {
            None => decision,
            Some(policies) => {
                let recent = recent_spend(now, &purchases, &returns, &sales);
                let (decision, refused) = judge(&ctx, decision, policies, recent).map_err(|e| {
                    BacktestError::Planner {
                        planner: planner.name().to_string(),
                        at: now,
                        message: format!("judging the decision by policy: {e}"),
                    }
                })?;
                blocked.extend(refused);
                decision
            }
        };
        // Checked in full before anything changes: a refused decision leaves the portfolio as
        // it was (and ends the replay with the error).
        let mut next = portfolio.clone();
        let refused = |sources: String, rule: String| BacktestError::Exchange {
            planner: planner.name().to_string(),
            at: now,
            sources,
            rule,
        };
        let mut made = Vec::with_capacity(decision.exchanges.len());
        for ex in &decision.exchanges {
            let record = apply_exchange(&mut next, now, ex, &settings.policy).map_err(|rule| {
                let sources: Vec<String> = ex
                    .sources
                    .iter()
                    .map(|s| format!("{} x{}", s.id, s.count))
                    .collect();
                refused(sources.join(", "), rule)
            })?;
            made.push(record);
        }
        let mut returned = Vec::with_capacity(decision.returns.len());
        for g in &decision.returns {
            let refunded = returns.iter().chain(&returned);
            let used = refunded_in_the_last_year(refunded, now);
            let record = apply_return(&mut next, now, g, &settings.policy, used)
                .map_err(|rule| refused(format!("{} x{} (return)", g.id, g.count), rule))?;
            returned.push(record);
        }
        let mut sold = Vec::with_capacity(decision.sales.len());
        for g in &decision.sales {
            let listed = sales.iter().chain(&sold);
            let record = apply_sale(&mut next, now, g, &settings.policy.ri_marketplace, listed)
                .map_err(|rule| {
                    refused(format!("{} x{} (Marketplace sale)", g.id, g.count), rule)
                })?;
            sold.push(record);
        }
        // The cap is on new hourly commitment: the purchases, and what the exchanges' targets
        // cost per hour beyond what they give up.
        let exchanged_new: Money = made
            .iter()
            .map(|r| (r.target_hourly - r.source_hourly).max(Money::ZERO))
            .sum();
        check_policy(
            planner.name(),
            now,
            &decision.purchases,
            exchanged_new,
            &settings.policy,
        )?;
        next.extend(decision.purchases.iter().cloned());
        check_unique_ids(planner.name(), now, &next)?;
        portfolio = next;
        decisions += 1;
        purchases.extend(decision.purchases);
        exchanges.extend(made);
        returns.extend(returned);
        sales.extend(sold);
        now = now.plus(settings.cadence_hours);
    }
    metrics::evaluate(
        input,
        &groups,
        planner.name(),
        &portfolio,
        metrics::Actions {
            purchases,
            exchanges,
            returns,
            sales,
            decisions,
            blocked,
        },
    )
}

/// What the replay committed and gave up in the windows the policies' limits look at, before
/// the decision at `now`: since the start of its UTC day, and in the last 30 days (as the
/// daemon sums its proposals executing or executed).
fn recent_spend(
    now: Hour,
    purchases: &[Commitment],
    returns: &[ReturnRecord],
    sales: &[SaleRecord],
) -> RecentSpend {
    let day_start = now.plus(-i64::from(now.hour_of_day()));
    let month_start = now.plus(-30 * 24);
    let mut recent = RecentSpend::default();
    for c in purchases {
        if c.start >= day_start {
            recent.hourly_commitment_today += c.hourly_cost;
            recent.upfront_today += c.upfront;
        }
        if c.start >= month_start {
            recent.hourly_commitment_30_days += c.hourly_cost;
            recent.upfront_30_days += c.upfront;
        }
    }
    let given = (returns.iter().map(|r| (r.at, r.hourly)))
        .chain(sales.iter().map(|s| (s.listed, s.hourly)));
    for (at, hourly) in given {
        if at >= day_start {
            recent.hourly_given_up_today += hourly;
        }
        if at >= month_start {
            recent.hourly_given_up_30_days += hourly;
        }
    }
    recent
}

fn check_unique_ids(
    planner: &str,
    now: Hour,
    portfolio: &[Commitment],
) -> Result<(), BacktestError> {
    let mut seen = std::collections::HashSet::with_capacity(portfolio.len());
    for c in portfolio {
        if !seen.insert(c.id.as_str()) {
            return Err(BacktestError::Policy {
                planner: planner.to_string(),
                at: now,
                id: c.id.clone(),
                rule: "a commitment with this id is already held".into(),
            });
        }
    }
    Ok(())
}

/// The held commitment a return or a sale gives instances of (its index and a copy), if it is
/// an `instrument` active at `now`; else the rule it breaks (`only` says which instruments may).
fn held_of(
    portfolio: &[Commitment],
    now: Hour,
    g: &GivenUp,
    instrument: crate::domain::Instrument,
    only: &str,
) -> Result<(usize, Commitment), String> {
    let i = portfolio
        .iter()
        .position(|c| c.id == g.id)
        .ok_or_else(|| format!("{} is not held", g.id))?;
    let c = portfolio[i].clone();
    if c.instrument != instrument {
        return Err(format!("{} is a {}: {only}", c.id, c.instrument));
    }
    if !c.is_active(now) {
        return Err(format!("{} is not active at {now}", c.id));
    }
    Ok((i, c))
}

/// Applies one return to `portfolio` at `now`: held Azure reservation instances, refunded
/// within the rolling 12-month cap given what was `used` of it; or says which rule it breaks.
fn apply_return(
    portfolio: &mut Vec<Commitment>,
    now: Hour,
    g: &GivenUp,
    policy: &Policy,
    used: Money,
) -> Result<ReturnRecord, String> {
    let (i, c) = held_of(
        portfolio,
        now,
        g,
        crate::domain::Instrument::AzureReservation,
        "only Azure reservations are returned here",
    )?;
    let refund = remaining_value(&c, g.count, now)?;
    let (gone, kept) = split_off(&c, g.count, now)?;
    if used + refund > policy.azure_refund_cap {
        return Err(format!(
            "a refund of {refund} after {used} in the last 12 months exceeds the cap {}",
            policy.azure_refund_cap
        ));
    }
    let hourly = gone.hourly_cost;
    portfolio[i] = gone;
    portfolio.extend(kept);
    Ok(ReturnRecord {
        at: now,
        source: g.clone(),
        refund,
        hourly,
    })
}

/// Applies one Marketplace sale to `portfolio` at `now` under AWS's rules and the market model
/// of [`Marketplace`]; or says which rule it breaks. The listed instances are split off and
/// end at the sale; the proceeds and the write-off are computed exactly (i128 micro-dollars,
/// rounded down).
fn apply_sale<'a>(
    portfolio: &mut Vec<Commitment>,
    now: Hour,
    g: &GivenUp,
    market: &Marketplace,
    listed: impl IntoIterator<Item = &'a SaleRecord>,
) -> Result<SaleRecord, String> {
    let (i, c) = held_of(
        portfolio,
        now,
        g,
        crate::domain::Instrument::StandardReservedInstance,
        "only Standard RIs are sold on the Marketplace",
    )?;
    if is_listed(listed, &c.id, now) {
        return Err(format!("{} is already listed", c.id));
    }
    let (sold, months) = market.listing(&c, now)?;
    let (gone, kept) = split_off(&c, g.count, sold)?;
    let term_hours = c.term.hours().max(1) as i128;
    let term_months = (c.term.hours() / Marketplace::MONTH_HOURS).max(1) as i128;
    let upfront = gone.upfront.micros() as i128;
    let proceeds = upfront
        * months as i128
        * market.price_bp as i128
        * (10_000 - market.fee_bp.min(10_000)) as i128
        / (term_months * 100_000_000);
    let unamortized = upfront * c.end.since(sold) as i128 / term_hours;
    let micros = |v: i128| {
        i64::try_from(v)
            .map(Money::from_micros)
            .map_err(|_| format!("{}: sale value out of range", c.id))
    };
    let record = SaleRecord {
        listed: now,
        sold,
        source: g.clone(),
        listed_id: gone.id.clone(),
        proceeds: micros(proceeds)?,
        write_off: micros(unamortized - proceeds)?,
        hourly: gone.hourly_cost,
    };
    portfolio[i] = gone;
    portfolio.extend(kept);
    Ok(record)
}

/// Applies one exchange to `portfolio` at `now` under the rules of [`Exchange`], or says which
/// rule it breaks (the portfolio may then be partly changed: the caller works on a copy).
fn apply_exchange(
    portfolio: &mut Vec<Commitment>,
    now: Hour,
    ex: &Exchange,
    policy: &Policy,
) -> Result<ExchangeRecord, String> {
    let first = ex.sources.first().ok_or("no source")?;
    if ex.targets.is_empty() {
        return Err("no target".into());
    }
    let find = |portfolio: &[Commitment], id: &str| {
        portfolio
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| format!("{id} is not held"))
    };
    let lead = portfolio[find(portfolio, &first.id)?].clone();
    let (provider, instrument) = (lead.provider, lead.instrument);
    if !instrument.is_exchangeable() {
        return Err(format!(
            "{} is a {instrument}, which cannot be exchanged",
            lead.id
        ));
    }
    let mut source_value = Money::ZERO;
    let mut source_hourly = Money::ZERO;
    let mut latest_end = now;
    for s in &ex.sources {
        let i = find(portfolio, &s.id)?;
        let c = portfolio[i].clone();
        if !c.is_active(now) {
            return Err(format!("{} is not active at {now}", c.id));
        }
        if c.instrument != instrument || c.region.is_none() {
            return Err(format!(
                "{} is a {} and {} a {instrument}: one exchange is of one instrument",
                c.id, c.instrument, lead.id
            ));
        }
        if provider == Provider::Aws {
            if c.region != lead.region {
                return Err(format!("{} and {} are in different regions", c.id, lead.id));
            }
            if c.end.since(now) < 24 {
                return Err(format!("{} has less than 24 hours left", c.id));
            }
        }
        source_value += remaining_value(&c, s.count, now)?;
        let (gone, kept) = split_off(&c, s.count, now)?;
        source_hourly += gone.hourly_cost;
        latest_end = latest_end.max(c.end);
        portfolio[i] = gone;
        portfolio.extend(kept);
    }
    let mut target_value = Money::ZERO;
    let mut target_hourly = Money::ZERO;
    for t in &ex.targets {
        if t.instrument != instrument || t.provider != provider {
            return Err(format!(
                "target {} is a {}, not a {instrument}",
                t.id, t.instrument
            ));
        }
        if !matches!(t.amount, CommitmentAmount::Instances(n) if n > 0) {
            return Err(format!("target {} has no instances", t.id));
        }
        if t.hourly_cost.is_negative() || t.start != now {
            return Err(format!(
                "target {} must start now and cost at least nothing",
                t.id
            ));
        }
        let hours = match provider {
            Provider::Aws => {
                if t.region != lead.region {
                    return Err(format!("target {} leaves the sources' region", t.id));
                }
                if t.end != latest_end || t.term != lead.term {
                    return Err(format!(
                        "target {} must keep the sources' term and end ({latest_end})",
                        t.id
                    ));
                }
                latest_end.since(now)
            }
            Provider::Azure => {
                if !policy.terms.contains(&t.term) || t.end != now.plus(t.term.hours()) {
                    return Err(format!(
                        "target {} must start a new {} term now",
                        t.id, t.term
                    ));
                }
                t.term.hours()
            }
        };
        target_hourly += t.hourly_cost;
        target_value += t.hourly_cost.times(hours).ok_or("value out of range")?;
    }
    if target_value < source_value {
        return Err(format!(
            "the targets are worth {target_value}, less than the {source_value} given up"
        ));
    }
    portfolio.extend(ex.targets.iter().cloned());
    Ok(ExchangeRecord {
        at: now,
        provider,
        sources: ex.sources.clone(),
        source_value,
        target_value,
        source_hourly,
        target_hourly,
        targets: ex.targets.clone(),
    })
}

fn check_policy(
    planner: &str,
    now: Hour,
    bought: &[Commitment],
    exchanged_new: Money,
    policy: &Policy,
) -> Result<(), BacktestError> {
    let refuse = |id: &str, rule: String| BacktestError::Policy {
        planner: planner.to_string(),
        at: now,
        id: id.to_string(),
        rule,
    };
    let mut new_cost = exchanged_new;
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
