//! A plan: the commitments the optimizer proposes to buy or exchange, each with its rationale,
//! and what the whole portfolio is expected to cost.
//!
//! The plan is what the audit log records and what people approve, so it is plain serde data:
//! amounts that money moves on (hourly commitments, upfront payments, expected totals) are exact
//! [`Money`]; figures that only explain a decision (utilization, quantiles, marginal values) are
//! floats.

use super::cloud::{Instrument, PaymentOption, Provider, Term};
use super::money::Money;
use super::time::{Hour, HourRange};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an action buys or moves, as the provider's API needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ActionScope {
    /// Compute savings plan (AWS) or savings plan for compute (Azure): anywhere of the provider.
    Provider,
    /// EC2 Instance savings plan: one family in one region, any size, OS and tenancy.
    FamilyRegion { region: String, family: String },
    /// Reserved instance / reservation: instances of `instance_type`, size-flexible within
    /// `flex_group` in `region` (AWS normalization factors, Azure size ratios).
    Instances {
        region: String,
        instance_type: String,
        flex_group: String,
        os: String,
        tenancy: String,
    },
}

impl fmt::Display for ActionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionScope::Provider => f.write_str("provider-wide"),
            ActionScope::FamilyRegion { region, family } => write!(f, "{region}/{family}"),
            ActionScope::Instances {
                region,
                instance_type,
                os,
                ..
            } => write!(f, "{region}/{instance_type}/{os}"),
        }
    }
}

/// The unit of [`Action::amount`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AmountUnit {
    /// USD per hour of savings-plan commitment.
    #[serde(rename = "USD/hour")]
    UsdPerHour,
    /// A whole number of instances of the scope's instance type.
    #[serde(rename = "instances")]
    Instances,
}

impl fmt::Display for AmountUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmountUnit::UsdPerHour => "USD/hour",
            AmountUnit::Instances => "instances",
        })
    }
}

/// Purchase, exchange or return.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ActionKind {
    /// A new commitment.
    Purchase,
    /// The remaining value of an existing exchangeable commitment moves into the commitment this
    /// action describes (AWS convertible RI: same region and end date, new value >= old, true-up
    /// paid; Azure reservation: refund + new purchase with a new term, new lifetime commitment
    /// at least the refund). An exchange into several configurations is several actions with the same
    /// `source_id` and `source_count`; `source_value` and `true_up` are split between them in
    /// proportion to their value.
    Exchange {
        /// Id of the commitment given up.
        source_id: String,
        /// The source's instance count given up (by the whole exchange).
        source_count: u32,
        /// Remaining value of what is given up (hourly cost x remaining hours).
        source_value: Money,
        /// Value committed beyond the source value (>= 0): the AWS true-up, or what an Azure
        /// exchange's new lifetime commitment adds to the refund it absorbs.
        true_up: Money,
    },
    /// Part of an existing Azure reservation is returned for a refund of its remaining value
    /// (within the rolling USD 50,000 cap; Azure charges no early termination fee at present).
    /// The action's instrument, term, payment option and scope are the returned reservation's;
    /// `amount` is the instances returned and `hourly_cost` the part of its cost no longer paid.
    Return {
        /// Id of the reservation.
        source_id: String,
        /// Instances returned.
        source_count: u32,
        /// Refund: hourly cost of the returned part x remaining hours.
        refund: Money,
    },
}

/// One thing to do at the provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    #[serde(flatten)]
    pub kind: ActionKind,
    pub provider: Provider,
    pub instrument: Instrument,
    pub term_years: u8,
    pub payment_option: PaymentOption,
    pub scope: ActionScope,
    /// USD per hour (savings plans, rounded down to what the provider accepts) or whole
    /// instances (RIs, reservations; the LP relaxation rounded down).
    pub amount: Decimal,
    pub unit: AmountUnit,
    /// First hour the commitment covers (the decision time unless queued).
    pub start: Hour,
    /// Amortized cost per hour of the whole commitment (recurring + upfront / term hours).
    pub hourly_cost: Money,
    /// Paid at purchase (share of the term's total).
    pub upfront: Money,
    pub rationale: Rationale,
}

impl Action {
    pub fn term(&self) -> Term {
        Term::from_years(self.term_years).unwrap_or(Term::ONE_YEAR)
    }

    /// Whether it changes an existing commitment (an exchange or a return) rather than buying a
    /// new one: callers that replay or execute purchases only skip these.
    pub fn is_exchange(&self) -> bool {
        matches!(
            self.kind,
            ActionKind::Exchange { .. } | ActionKind::Return { .. }
        )
    }

    pub fn is_return(&self) -> bool {
        matches!(self.kind, ActionKind::Return { .. })
    }

    pub fn is_purchase(&self) -> bool {
        matches!(self.kind, ActionKind::Purchase)
    }
}

/// Why an action is in the plan: enough for a person to check it without trusting the solver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rationale {
    /// Demand scenarios (by quantile level, e.g. 0.1 for P10) in which the commitment is
    /// expected to be used at least 99%: "it is fully used even if demand is at P10".
    pub covered_quantiles: Vec<f64>,
    /// Utilization expected in each scenario, as (quantile level or scenario index, utilization).
    pub utilization_by_scenario: Vec<(f64, f64)>,
    /// The quantile of hourly eligible demand the commitment reaches: the share of (weighted)
    /// hours in which it is not fully used. The single-savings-plan optimum puts this at the
    /// plan's discount (domain brief).
    pub demand_quantile: f64,
    /// Expected utilization over the planning window, all scenarios weighted.
    pub expected_utilization: f64,
    /// Utilization below which it costs more than on demand (= 1 - discount, coverage-weighted).
    pub breakeven_utilization: f64,
    /// Expected on-demand cost avoided minus its cost, over the planning window (USD).
    pub expected_savings: f64,
    /// Value of one more unit (USD/hour or instance) over the window, from the LP duals of its
    /// capacity rows, next to what that unit costs: buying more is worth it only if value > cost.
    pub marginal_value_per_unit: f64,
    pub marginal_cost_per_unit: f64,
    /// Expected cost increase over the window if this action alone is dropped from the plan
    /// (a re-solve without it); None when the re-solve was skipped (see the plan's notes).
    pub value_if_removed: Option<f64>,
    /// Exchanges and returns: the source commitment's expected utilization without this
    /// action, and with it (of what is left of it; None when nothing is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_utilization_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_utilization_after: Option<f64>,
    /// Human-readable summary.
    pub summary: String,
}

/// What the whole portfolio (existing + planned) is expected to cost over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    /// Expected cost: on-demand cost of uncovered usage + amortized cost of every commitment
    /// inside the window (used or not).
    pub cost: Money,
    /// On-demand-equivalent cost of the expected eligible usage.
    pub on_demand_cost: Money,
    /// Cost of the existing commitments alone if nothing is bought (for comparison).
    pub cost_without_plan: Money,
    /// Effective savings rate: 1 - cost / on_demand_cost.
    pub esr: f64,
    /// Covered ODE / total ODE.
    pub coverage: f64,
    /// Commitment used / commitment paid for, all commitments, cost-weighted.
    pub utilization: f64,
    /// Sum of the new actions' amortized hourly cost and upfront payments.
    pub new_hourly_commitment: Money,
    pub new_upfront: Money,
}

/// How the solver got there (no wall-clock time: the core has no clock; callers time it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SolverInfo {
    pub status: String,
    /// Objective of the LP relaxation (expected cost over the window, USD) before rounding.
    pub objective: f64,
    /// Objective after rounding to purchasable amounts (the plan's expected cost).
    pub rounded_objective: f64,
    pub columns: usize,
    pub rows: usize,
    /// Demand points (hours x scenarios) before and after reduction.
    pub points: usize,
    pub reduced_points: usize,
    /// LP solves made (relaxation, rounding, lock-in comparison, re-solves for marginal values).
    pub solves: usize,
}

/// The optimizer's output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The hours the plan was optimised over.
    pub window: Option<HourRange>,
    pub actions: Vec<Action>,
    pub expected: Expected,
    pub solver: SolverInfo,
    /// Decisions worth knowing about (pruned offers, lock-in choice, skipped re-solves).
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_json_has_the_documented_fields() {
        let action = Action {
            kind: ActionKind::Purchase,
            provider: Provider::Aws,
            instrument: Instrument::ComputeSavingsPlan,
            term_years: 1,
            payment_option: PaymentOption::NoUpfront,
            scope: ActionScope::Provider,
            amount: Decimal::new(123_456, 5),
            unit: AmountUnit::UsdPerHour,
            start: Hour(490_000),
            hourly_cost: Money::from_micros(1_234_560),
            upfront: Money::ZERO,
            rationale: Rationale::default(),
        };
        let v = serde_json::to_value(&action).unwrap();
        for key in [
            "provider",
            "instrument",
            "term_years",
            "payment_option",
            "scope",
            "amount",
            "unit",
            "rationale",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["type"], "purchase");
        assert_eq!(v["unit"], "USD/hour");
        assert_eq!(v["amount"], "1.23456");
        let back: Action = serde_json::from_value(v).unwrap();
        assert_eq!(back, action);
    }
}
