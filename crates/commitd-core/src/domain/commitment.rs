//! Commitments: what an organisation already owns, or a plan proposes to buy.

use super::cloud::{CommitmentKind, Instrument, PaymentOption, Provider, Term};
use super::money::Money;
use super::sizing;
use super::time::Hour;
use serde::{Deserialize, Serialize};

/// How much a commitment commits to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "unit", content = "value")]
pub enum CommitmentAmount {
    /// Savings plans: USD per hour of discounted spend (at the plan's rates).
    HourlySpend(Money),
    /// RIs and reservations: a number of instances of `Commitment::instance_type`.
    Instances(u32),
}

impl CommitmentAmount {
    /// The number of instances of a reservation; None for a savings plan.
    pub fn instances(self) -> Option<u32> {
        match self {
            CommitmentAmount::Instances(n) => Some(n),
            CommitmentAmount::HourlySpend(_) => None,
        }
    }
}

/// One commitment, existing or planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Commitment {
    pub id: String,
    pub provider: Provider,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    /// First hour covered.
    pub start: Hour,
    /// First hour no longer covered.
    pub end: Hour,
    /// Region (RIs, reservations, EC2 Instance SPs); None for Compute and Azure savings plans.
    pub region: Option<String>,
    /// Instance type bought (RIs, reservations).
    pub instance_type: Option<String>,
    /// Family (EC2 Instance SPs: "m5"; RIs and reservations: derived from the instance type).
    pub family: Option<String>,
    pub amount: CommitmentAmount,
    /// Amortized cost per hour of the whole commitment (recurring fee + upfront / term hours),
    /// paid whether used or not.
    pub hourly_cost: Money,
    /// The part of the total paid upfront (0, 0.5 or 1 of the total).
    pub upfront: Money,
}

impl Commitment {
    /// Orders commitments by what they are (start, end, provider, instrument, region, instance
    /// type, family, term, payment, amount, cost), never by id or by the order a provider
    /// lists them in: a planner sorts its portfolio this way, so that the daemon (ids and order
    /// from the market's inventory) and the backtest (ids and order of its replay) decide alike.
    /// The id breaks ties between otherwise identical commitments only.
    pub fn cmp_by_content(&self, other: &Commitment) -> std::cmp::Ordering {
        fn key(c: &Commitment) -> impl Ord + '_ {
            let amount = match c.amount {
                CommitmentAmount::Instances(n) => (0, i64::from(n)),
                CommitmentAmount::HourlySpend(m) => (1, m.micros()),
            };
            (
                (
                    c.start,
                    c.end,
                    c.provider.to_string(),
                    c.instrument.to_string(),
                ),
                (&c.region, &c.instance_type, &c.family),
                (c.term.hours(), c.payment.to_string(), amount),
                (c.hourly_cost, c.upfront, &c.id),
            )
        }
        key(self).cmp(&key(other))
    }

    pub fn kind(&self) -> CommitmentKind {
        self.instrument.kind().unwrap_or(CommitmentKind::Spend)
    }

    pub fn is_active(&self, hour: Hour) -> bool {
        hour >= self.start && hour < self.end
    }

    /// Hours left at `hour` (0 once expired).
    pub fn remaining_hours(&self, hour: Hour) -> i64 {
        self.end.since(hour.max(self.start)).max(0)
    }

    /// Normalized units per hour a usage-based commitment covers (count x size units);
    /// zero for savings plans.
    pub fn units(&self) -> f64 {
        match (self.amount, &self.instance_type) {
            (CommitmentAmount::Instances(n), Some(t)) => {
                n as f64 * sizing::sizing_or_exact(self.provider, t).units
            }
            (CommitmentAmount::Instances(n), None) => n as f64,
            (CommitmentAmount::HourlySpend(_), _) => 0.0,
        }
    }

    /// The size-flexibility group a usage-based commitment applies to.
    pub fn flex_group(&self) -> Option<String> {
        self.instance_type
            .as_ref()
            .map(|t| sizing::sizing_or_exact(self.provider, t).flex_group)
    }

    /// Total amortized cost over the whole term.
    pub fn total_cost(&self) -> Money {
        self.hourly_cost
            .times(self.end.since(self.start))
            .unwrap_or(Money::ZERO)
    }
}
