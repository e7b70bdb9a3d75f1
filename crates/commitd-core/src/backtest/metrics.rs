//! Metrics of one backtest run: bill every hour of the evaluation window with the final
//! portfolio, then aggregate per calendar month (UTC) and overall.
//!
//! Names follow `shared/domain.md`: on-demand equivalent (ODE), cost, Effective Savings Rate
//! (ESR = 1 - cost / ODE), coverage (covered ODE / ODE), utilization (commitment used / paid),
//! lock-in (commitment-weighted average remaining term, in days).
//!
//! Exactness: the commitment cost of a period is exact (`hourly_cost` x active hours, in
//! micro-dollars); the on-demand part comes from the float billing simulation and is rounded to
//! the micro-dollar once per period. Cost inside the window only: commitment hours after
//! `evaluation_end` are reported separately as the liability left behind.

use super::{BacktestError, BacktestInput, ExchangeRecord, ReturnRecord, SaleRecord};
use crate::billing::{BillableGroup, BillingEngine, HourBill};
use crate::domain::{Commitment, Hour, HourRange, Instrument, Money};
use chrono::{Datelike, TimeZone, Utc};
use rayon::prelude::*;
use serde::Serialize;

/// Figures of one period (a month, or the whole window).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Period {
    /// "2025-09" for a month, "total" for the window.
    pub label: String,
    pub start: Hour,
    pub end: Hour,
    pub hours: usize,
    pub on_demand_equivalent: Money,
    /// Commitments' amortized cost (used or not) + on-demand cost of uncovered usage + the
    /// write-offs of Marketplace sales that closed in the period.
    pub cost: Money,
    pub commitment_cost: Money,
    pub on_demand_cost: Money,
    pub covered_ode: Money,
    pub used_commitment: Money,
    pub esr: f64,
    pub coverage: f64,
    /// None when no commitment was paid for in the period.
    pub utilization: Option<f64>,
    /// Commitment-weighted average remaining term of active commitments, days (mean of daily
    /// samples in the period).
    pub lock_in_days: f64,
    /// Purchases made in the period and the hourly commitment cost they added.
    pub purchases: usize,
    pub new_hourly_commitment: Money,
    /// Exchanges and returns made in the period.
    pub exchanges: usize,
    pub returns: usize,
    /// Marketplace sales that closed in the period, and what they wrote off (in `cost`; not in
    /// `commitment_cost` or utilization, which are about the hours commitments were active).
    pub sales: usize,
    pub sale_write_off: Money,
}

/// One day, for charts: per-hour averages in USD/h.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayPoint {
    pub day: Hour,
    pub ode_per_hour: f64,
    pub covered_ode_per_hour: f64,
    pub cost_per_hour: f64,
    /// Active commitment cost per hour by kind: RIs and reservations, EC2 Instance SPs,
    /// Compute and Azure SPs.
    pub reservations_per_hour: f64,
    pub instance_sp_per_hour: f64,
    pub savings_plans_per_hour: f64,
}

/// The result of one planner over one scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunResult {
    pub planner: String,
    pub total: Period,
    pub months: Vec<Period>,
    pub daily: Vec<DayPoint>,
    /// New commitments bought during the window (existing ones excluded).
    pub purchases: Vec<Commitment>,
    pub decisions: usize,
    /// Exchanges made (the contract's count), and each as applied.
    pub exchanges: usize,
    pub exchange_log: Vec<ExchangeRecord>,
    /// Azure reservations returned for a refund, each as applied.
    pub returns: Vec<ReturnRecord>,
    /// AWS Standard RIs sold on the Marketplace, each as applied.
    pub sales: Vec<SaleRecord>,
    /// Lowest monthly utilization over months that paid for commitment.
    pub min_monthly_utilization: Option<f64>,
    /// Commitment cost still to run after `evaluation_end` (amortized), and the hourly cost
    /// running at that moment: the liability the window leaves behind.
    pub liability_after_window: Money,
    pub hourly_commitment_at_end: Money,
    pub lock_in_days_at_end: f64,
    /// Actions the daemon's policies blocked (a replay with policies only; see
    /// [`crate::plan::judge`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<crate::plan::judge::Blocked>,
}

/// Calendar months (UTC) covering `range`, clipped to it.
pub fn months(range: HourRange) -> Vec<(String, HourRange)> {
    let mut out = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let t = start.to_datetime();
        let (y, m) = if t.month() == 12 {
            (t.year() + 1, 1)
        } else {
            (t.year(), t.month() + 1)
        };
        let next = Utc
            .with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .single()
            .map(Hour::from_datetime)
            .unwrap_or(range.end);
        let end = next.min(range.end).max(start.plus(1));
        out.push((
            format!("{:04}-{:02}", t.year(), t.month()),
            HourRange::new(start, end),
        ));
        start = end;
    }
    out
}

/// Commitment-weighted average remaining term at `at`, in days (0 if nothing is active).
pub fn lock_in_days(portfolio: &[Commitment], at: Hour) -> f64 {
    let (mut weight, mut weighted) = (0.0, 0.0);
    for c in portfolio.iter().filter(|c| c.is_active(at)) {
        let w = c.hourly_cost.to_f64();
        weight += w;
        weighted += w * c.remaining_hours(at) as f64;
    }
    if weight > 0.0 {
        weighted / weight / 24.0
    } else {
        0.0
    }
}

/// Exact amortized cost of the portfolio's hours inside `range`.
fn commitment_cost(portfolio: &[Commitment], range: HourRange) -> Money {
    portfolio
        .iter()
        .map(|c| {
            let from = c.start.max(range.start);
            let to = c.end.min(range.end);
            c.hourly_cost
                .times(to.since(from).max(0))
                .unwrap_or(Money::ZERO)
        })
        .sum()
}

/// What a planner did over a replay.
pub struct Actions {
    /// New commitments bought during the window (existing ones excluded).
    pub purchases: Vec<Commitment>,
    pub exchanges: Vec<ExchangeRecord>,
    pub returns: Vec<ReturnRecord>,
    pub sales: Vec<SaleRecord>,
    pub decisions: usize,
    pub blocked: Vec<crate::plan::judge::Blocked>,
}

struct MonthAcc {
    bill: HourBill,
    daily: Vec<DayPoint>,
}

/// Bills every hour of the evaluation window and aggregates. `groups` must be in the order of
/// `input.usage.groups`.
pub fn evaluate(
    input: &BacktestInput,
    groups: &[BillableGroup],
    planner: &str,
    portfolio: &[Commitment],
    actions: Actions,
) -> Result<RunResult, BacktestError> {
    let Actions {
        purchases,
        exchanges,
        returns,
        sales,
        decisions,
        blocked,
    } = actions;
    let window = input.window.evaluation();
    let usage = &input.usage;
    if usage.range.start > window.start || usage.range.end < window.end {
        return Err(BacktestError::Window(format!(
            "usage covers {} to {}, the evaluation window {} to {}",
            usage.range.start, usage.range.end, window.start, window.end
        )));
    }
    let engine = BillingEngine::new(groups.to_vec(), portfolio, &input.rates)?;
    let periods = months(window);
    // Months are independent once the portfolio is known: bill them in parallel.
    let accs: Vec<MonthAcc> = periods
        .par_iter()
        .map(|(_, range)| bill_range(&engine, input, portfolio, *range))
        .collect();
    let mut month_periods = Vec::with_capacity(periods.len());
    let mut daily = Vec::new();
    let mut total_bill = HourBill::default();
    for ((label, range), acc) in periods.iter().zip(accs) {
        month_periods.push(period(
            label,
            *range,
            &acc.bill,
            portfolio,
            &purchases,
            (&exchanges, &returns, &sales),
        ));
        total_bill.add(&acc.bill);
        daily.extend(acc.daily);
    }
    let total = period(
        "total",
        window,
        &total_bill,
        portfolio,
        &purchases,
        (&exchanges, &returns, &sales),
    );
    let min_monthly_utilization = month_periods
        .iter()
        .filter_map(|p| p.utilization)
        .min_by(f64::total_cmp);
    let end = window.end;
    let liability_after_window = portfolio
        .iter()
        .map(|c| {
            c.hourly_cost
                .times(c.end.since(end.max(c.start)).max(0))
                .unwrap_or(Money::ZERO)
        })
        .sum::<Money>()
        + sales
            .iter()
            .filter(|s| s.sold >= end)
            .map(|s| s.write_off)
            .sum::<Money>();
    let hourly_commitment_at_end = portfolio
        .iter()
        .filter(|c| c.is_active(end))
        .map(|c| c.hourly_cost)
        .sum();
    Ok(RunResult {
        planner: planner.to_string(),
        total,
        months: month_periods,
        daily,
        purchases,
        decisions,
        exchanges: exchanges.len(),
        exchange_log: exchanges,
        returns,
        sales,
        min_monthly_utilization,
        liability_after_window,
        hourly_commitment_at_end,
        lock_in_days_at_end: lock_in_days(portfolio, end),
        blocked,
    })
}

fn bill_range(
    engine: &BillingEngine,
    input: &BacktestInput,
    portfolio: &[Commitment],
    range: HourRange,
) -> MonthAcc {
    let usage = &input.usage;
    let mut scratch = engine.scratch();
    let mut demand = vec![0.0; usage.groups.len()];
    let mut bill = HourBill::default();
    let mut daily = Vec::new();
    let mut day = HourBill::default();
    let mut day_start = range.start;
    let mut day_hours = 0usize;
    for h in range.iter() {
        let i = h.since(usage.range.start) as usize;
        for (d, g) in demand.iter_mut().zip(&usage.groups) {
            *d = g.quantity.get(i).copied().unwrap_or(0.0);
        }
        let b = engine.bill_hour(h, &demand, &mut scratch);
        bill.add(&b);
        day.add(&b);
        day_hours += 1;
        if h.plus(1).0 % 24 == 0 || h.plus(1) == range.end {
            daily.push(day_point(day_start, &day, day_hours, portfolio));
            day = HourBill::default();
            day_hours = 0;
            day_start = h.plus(1);
        }
    }
    MonthAcc { bill, daily }
}

fn day_point(day: Hour, b: &HourBill, hours: usize, portfolio: &[Commitment]) -> DayPoint {
    let n = hours.max(1) as f64;
    let (mut res, mut isp, mut sp) = (0.0, 0.0, 0.0);
    for c in portfolio.iter().filter(|c| c.is_active(day)) {
        let v = c.hourly_cost.to_f64();
        match c.instrument {
            Instrument::Ec2InstanceSavingsPlan => isp += v,
            Instrument::ComputeSavingsPlan | Instrument::AzureSavingsPlan => sp += v,
            _ => res += v,
        }
    }
    DayPoint {
        day,
        ode_per_hour: b.ode / n,
        covered_ode_per_hour: b.covered_ode / n,
        cost_per_hour: b.cost() / n,
        reservations_per_hour: res,
        instance_sp_per_hour: isp,
        savings_plans_per_hour: sp,
    }
}

fn period(
    label: &str,
    range: HourRange,
    b: &HourBill,
    portfolio: &[Commitment],
    purchases: &[Commitment],
    (exchanges, returns, sales): (&[ExchangeRecord], &[ReturnRecord], &[SaleRecord]),
) -> Period {
    let money = |v: f64| Money::from_f64(v).unwrap_or(Money::ZERO);
    let commitment = commitment_cost(portfolio, range);
    let on_demand = money(b.on_demand_cost);
    let closed: Vec<&SaleRecord> = sales.iter().filter(|s| range.contains(s.sold)).collect();
    let write_off: Money = closed.iter().map(|s| s.write_off).sum();
    let cost = commitment + on_demand + write_off;
    let ode = money(b.ode);
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
    let bought: Vec<&Commitment> = purchases
        .iter()
        .filter(|c| range.contains(c.start))
        .collect();
    let days: Vec<Hour> = (0..range.len().div_ceil(24))
        .map(|d| range.start.plus(24 * d as i64))
        .collect();
    let lock_in = if days.is_empty() {
        0.0
    } else {
        days.iter()
            .map(|d| lock_in_days(portfolio, *d))
            .sum::<f64>()
            / days.len() as f64
    };
    Period {
        label: label.to_string(),
        start: range.start,
        end: range.end,
        hours: range.len(),
        on_demand_equivalent: ode,
        cost,
        commitment_cost: commitment,
        on_demand_cost: on_demand,
        covered_ode: money(b.covered_ode),
        used_commitment: money(b.used_commitment),
        esr: ratio(ode.to_f64() - cost.to_f64(), ode.to_f64()),
        coverage: ratio(b.covered_ode, b.ode),
        utilization: (b.commitment_cost > 0.0)
            .then(|| (b.used_commitment / b.commitment_cost).min(1.0)),
        lock_in_days: lock_in,
        purchases: bought.len(),
        new_hourly_commitment: bought.iter().map(|c| c.hourly_cost).sum(),
        exchanges: exchanges.iter().filter(|e| range.contains(e.at)).count(),
        returns: returns.iter().filter(|r| range.contains(r.at)).count(),
        sales: closed.len(),
        sale_write_off: write_off,
    }
}
