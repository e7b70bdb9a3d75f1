//! Backtest: replay rolling purchase decisions over a scenario's evaluation window and bill
//! every hour by the providers' rules.
//!
//! The harness owns *time*. At each decision (every `cadence_hours` from `decision_time`), it
//! gives the planner a [`DecisionContext`] whose usage model is a slice that **ends at
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
//! Planners are a trait, so the same harness runs commitd's forecast + optimize planner
//! ([`planner`]), the native-tool baselines ([`baselines`]) and test doubles.

pub mod baselines;
pub mod metrics;
pub mod planner;
pub mod report;

use crate::billing::{BillableGroup, BillingError};
use crate::domain::{
    Commitment, CommitmentAmount, Hour, HourRange, Money, Offer, Provider, RateCard,
    ScenarioWindow, Term, UsageGroup, UsageModel,
};
pub use metrics::{Period, RunResult};
use serde::Serialize;

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

/// The replay's model of the AWS Reserved Instance Marketplace. AWS's rules (`shared/domain.md`,
/// the EC2 User Guide "Sell in the Reserved Instance Marketplace"): only Standard RIs, active
/// for at least 30 days, with at least a month left; the seller sets the upfront price, the
/// buyer takes over the recurring fee, the term is rounded down to whole months, and AWS keeps
/// a 12% service fee on the upfront price. Whether and when a listing sells is the market's:
/// the replay assumes every listing sells `sale_delay_hours` after it is listed (the RI keeps
/// applying, and billing, until then) at `price_bp` of the upfront price that its whole months
/// left are worth pro rata. Both are assumptions, stated in every report; AWS's USD 20,000 a
/// year seller limit (raised on request) is not modelled.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Marketplace {
    /// Hours from listing to sale.
    pub sale_delay_hours: i64,
    /// Asking price: basis points of the pro rata upfront of the whole months left at the sale.
    pub price_bp: u32,
    /// AWS's service fee: basis points of the upfront price (12%).
    pub fee_bp: u32,
}

impl Marketplace {
    /// Hours in the month of AWS's "at least one month left" and "rounded down to the month".
    pub const MONTH_HOURS: i64 = 730;
    /// AWS lets an RI be listed once it has been active this long (30 days).
    pub const MIN_AGE_HOURS: i64 = 30 * 24;
}

impl Marketplace {
    /// When a listing of `c` made at `now` sells, and the whole months it then has left; or
    /// which of AWS's rules it breaks (30 days active, a whole month left at the sale).
    pub fn listing(&self, c: &Commitment, now: Hour) -> Result<(Hour, i64), String> {
        if now.since(c.start) < Self::MIN_AGE_HOURS {
            return Err(format!(
                "{} has been active {} h, under the 30 days AWS requires before a listing",
                c.id,
                now.since(c.start)
            ));
        }
        let sold = now.plus(self.sale_delay_hours.max(0));
        let months = c.end.since(sold) / Self::MONTH_HOURS;
        if months < 1 {
            return Err(format!(
                "{} would have less than a month left when it sells ({sold})",
                c.id
            ));
        }
        Ok((sold, months))
    }

    /// The asking price of `count` instances of `c` listed with `months` whole months left at
    /// the sale: `price_bp` of their share of its upfront, pro rata over those months (rounded
    /// down to the micro-dollar). What the daemon asks when it lists.
    pub fn asking_price(&self, c: &Commitment, count: u32, months: i64) -> Result<Money, String> {
        let CommitmentAmount::Instances(n) = c.amount else {
            return Err(format!("{} is a savings plan, not a reservation", c.id));
        };
        let term_months = (c.term.hours() / Self::MONTH_HOURS).max(1) as i128;
        let price =
            c.upfront.micros() as i128 * count as i128 * months as i128 * self.price_bp as i128
                / (n.max(1) as i128 * term_months * 10_000);
        i64::try_from(price)
            .map(Money::from_micros)
            .map_err(|_| format!("{}: asking price out of range", c.id))
    }

    /// What the seller receives for `price`: the price less AWS's fee (rounded down).
    pub fn proceeds(&self, price: Money) -> Money {
        let kept = 10_000 - i128::from(self.fee_bp.min(10_000));
        Money::from_micros(
            i64::try_from(i128::from(price.micros()) * kept / 10_000).unwrap_or(i64::MAX),
        )
    }
}

/// Whether instances carrying `id` are listed at `now` and not sold yet.
pub fn is_listed<'a>(sales: impl IntoIterator<Item = &'a SaleRecord>, id: &str, now: Hour) -> bool {
    sales.into_iter().any(|s| s.listed_id == id && s.sold > now)
}

impl Default for Marketplace {
    fn default() -> Self {
        Marketplace {
            sale_delay_hours: 14 * 24,
            price_bp: 9_000,
            fee_bp: 1_200,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            terms: vec![Term::ONE_YEAR],
            max_new_hourly_cost_per_decision: None,
            azure_refund_cap: Money::from_units(50_000),
            ri_marketplace: Marketplace::default(),
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
    /// The returns made so far (for the rolling refund cap).
    pub returned: &'a [ReturnRecord],
    /// The Marketplace sales made so far (listed instances are not listed twice).
    pub sold: &'a [SaleRecord],
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

/// Splits `count` instances off a reservation at `now`: the part given up (its cost and upfront
/// pro rata, rounded down to the micro-dollar, ending at `now`, id `{id}~{now}~{instances
/// before}`) and what is
/// kept (the rest, same id; None when all is given up). Both keep the original start, so that
/// the hours before `now` bill as they did.
pub fn split_off(
    c: &Commitment,
    count: u32,
    now: Hour,
) -> Result<(Commitment, Option<Commitment>), String> {
    let CommitmentAmount::Instances(n) = c.amount else {
        return Err(format!("{} is a savings plan, not a reservation", c.id));
    };
    if count == 0 || count > n {
        return Err(format!(
            "{}: cannot give up {count} of its {n} instances",
            c.id
        ));
    }
    let share =
        |m: Money| Money::from_micros((m.micros() as i128 * count as i128 / n as i128) as i64);
    let mut gone = c.clone();
    gone.end = now.min(c.end);
    gone.amount = CommitmentAmount::Instances(count);
    gone.hourly_cost = share(c.hourly_cost);
    gone.upfront = share(c.upfront);
    let kept = (count < n).then(|| {
        let mut k = c.clone();
        k.amount = CommitmentAmount::Instances(n - count);
        k.hourly_cost = c.hourly_cost - gone.hourly_cost;
        k.upfront = c.upfront - gone.upfront;
        k
    });
    if kept.is_some() {
        // Unique even when one decision splits the same reservation twice (an exchange and a
        // return): the instances held before the split differ each time.
        gone.id = format!("{}~{}~{n}", c.id, now.0);
    }
    Ok((gone, kept))
}

/// A rolling decision maker: commitd's planner, a baseline, or a test double.
pub trait Planner {
    fn name(&self) -> &str;
    /// What to do at `ctx.now`: purchases (each starting at `now` and running its full term)
    /// and exchanges.
    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Result<Decision, String>;
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
    let mut exchanges: Vec<ExchangeRecord> = Vec::new();
    let mut returns: Vec<ReturnRecord> = Vec::new();
    let mut sales: Vec<SaleRecord> = Vec::new();
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
            returned: &returns,
            sold: &sales,
        };
        let decision = planner
            .decide(&ctx)
            .map_err(|message| BacktestError::Planner {
                planner: planner.name().to_string(),
                at: now,
                message,
            })?;
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
        },
    )
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

/// The remaining value of `count` instances of `c` given up at `now`: their share of its
/// hourly cost (as [`split_off`] splits it) x the hours left. An exchange's sources are worth
/// this, and a return refunds it.
pub fn remaining_value(c: &Commitment, count: u32, now: Hour) -> Result<Money, String> {
    split_off(c, count, now)?
        .0
        .hourly_cost
        .times(c.end.since(now))
        .ok_or_else(|| format!("{}: remaining value out of range", c.id))
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
