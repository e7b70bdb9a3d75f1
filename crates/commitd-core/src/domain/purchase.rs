//! What a purchase is, as every provider's API needs it: [`PurchaseSpec`] (what to buy) and
//! [`Operation`] (what a proposal does at the provider: buy, return, sell, exchange).
//!
//! Pure data shared by the planners (which turn decisions into specs), the proposals (which
//! store them) and the markets (which execute them).

use crate::domain::{CommitmentAmount, Instrument, Money, PaymentOption, Provider, Term};
use serde::{Deserialize, Serialize};

/// What to buy, as every provider's purchase API needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurchaseSpec {
    pub provider: Provider,
    /// Billing account / subscription to buy in; None = the payer account.
    #[serde(default)]
    pub account: Option<String>,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    /// Region (RIs, reservations, EC2 Instance SPs).
    #[serde(default)]
    pub region: Option<String>,
    /// Family (EC2 Instance SPs).
    #[serde(default)]
    pub family: Option<String>,
    /// Instance type, OS and tenancy (RIs, reservations).
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub tenancy: Option<String>,
    /// USD/hour of commitment (savings plans) or a number of instances.
    pub amount: CommitmentAmount,
}

impl PurchaseSpec {
    /// The spec describing a held commitment, as a market names it when it is given back
    /// (returned, listed, exchanged): its own fields, with no operating system or tenancy (a
    /// held commitment's record has none). A purchase's spec comes from
    /// `plan::proposals::purchase_spec`, which adds the OS and tenancy the market buys with.
    pub fn of_held(c: &super::Commitment) -> PurchaseSpec {
        PurchaseSpec {
            provider: c.provider,
            account: None,
            instrument: c.instrument,
            term: c.term,
            payment: c.payment,
            region: c.region.clone(),
            family: c.family.clone(),
            instance_type: c.instance_type.clone(),
            os: None,
            tenancy: None,
            amount: c.amount,
        }
    }

    /// One line for people: "AWS ComputeSavingsPlan 1yr NoUpfront 2.5 USD/h".
    pub fn describe(&self) -> String {
        let what = match self.amount {
            CommitmentAmount::HourlySpend(m) => format!("{m} USD/h"),
            CommitmentAmount::Instances(n) => format!(
                "{n} x {}",
                self.instance_type.as_deref().unwrap_or("(instance)")
            ),
        };
        let place = [&self.region, &self.family]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("/");
        let place = if place.is_empty() {
            String::new()
        } else {
            format!(" in {place}")
        };
        format!(
            "{} {} {} {} {what}{place}",
            self.provider, self.instrument, self.term, self.payment
        )
    }
}
/// What a proposal does at the provider. Stored proposals written before returns and exchanges
/// existed have no operation: they are purchases (the serde default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Operation {
    /// Buy the action's spec.
    #[default]
    Purchase,
    /// Give back an existing commitment (AWS: ReturnSavingsPlan inside the return window). The
    /// action's spec describes the returned commitment; it commits nothing new.
    Return {
        commitment_id: String,
        /// Amortized USD/h no longer paid once it is returned.
        hourly_cost_removed: Money,
        /// Instances of a reservation returned (Azure returns part of a reservation); None:
        /// the whole commitment (an AWS savings plan, or proposals stored before partial
        /// returns existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instances: Option<u32>,
    },
    /// List instances of an AWS Standard RI on the Reserved Instance Marketplace. They keep
    /// applying, and are paid for, until a buyer takes them; the action's spec describes the
    /// listed instances and commits nothing new. `{"kind": "sale", ...}` in JSON, like the
    /// other operations' nouns.
    #[serde(rename = "sale")]
    Sell {
        commitment_id: String,
        instances: u32,
        /// Amortized USD/h no longer paid once they sell.
        hourly_cost_removed: Money,
        /// The asking price for the listed instances, before AWS's 12% fee.
        price: Money,
    },
    /// Exchange existing commitments (AWS convertible RIs, whole reservations) into the
    /// action's spec; the action's `upfront` is the approved true-up ceiling.
    Exchange {
        source_ids: Vec<String>,
        /// Remaining value of the sources as the plan valued them.
        source_value: Money,
        /// The true-up the plan expected.
        true_up: Money,
    },
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Purchase => "purchase",
            Operation::Return { .. } => "return",
            Operation::Exchange { .. } => "exchange",
            Operation::Sell { .. } => "sale",
        }
    }

    /// The amortized cost per hour a return or a sale stops paying; None for what gives
    /// nothing up.
    pub fn hourly_cost_removed(&self) -> Option<Money> {
        match self {
            Operation::Return {
                hourly_cost_removed,
                ..
            }
            | Operation::Sell {
                hourly_cost_removed,
                ..
            } => Some(*hourly_cost_removed),
            Operation::Purchase | Operation::Exchange { .. } => None,
        }
    }
}

/// One action of a plan, as a proposal carries it: what to buy (or return, or exchange into)
/// and what the plan expects of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// Purchase, return or exchange. Absent in proposals stored before returns and exchanges
    /// existed, which were all purchases.
    #[serde(default)]
    pub operation: Operation,
    /// Purchase: what to buy. Return: the commitment given back. Exchange: the target.
    pub spec: PurchaseSpec,
    /// Amortized USD per hour the plan expects to pay (the approved price ceiling).
    pub hourly_cost: Money,
    /// Upfront payment the plan expects (the approved ceiling).
    pub upfront: Money,
    /// Expected savings over the planning window against on demand.
    pub expected_savings: Money,
    /// Expected utilization at the policy's low demand quantile, if the plan computed it.
    #[serde(default)]
    pub expected_utilization: Option<f64>,
    /// The plan's one-line rationale.
    #[serde(default)]
    pub summary: String,
}

impl PlannedAction {
    /// One line for people, naming the operation: "buy AWS ...", "return sp-1 (AWS ...)",
    /// "exchange ri-1 into AWS ...".
    pub fn describe(&self) -> String {
        match &self.operation {
            Operation::Purchase => format!("buy {}", self.spec.describe()),
            Operation::Return { commitment_id, .. } => {
                format!("return {commitment_id} ({})", self.spec.describe())
            }
            Operation::Sell { commitment_id, .. } => format!(
                "list {commitment_id} on the RI Marketplace ({})",
                self.spec.describe()
            ),
            Operation::Exchange { source_ids, .. } => format!(
                "exchange {} into {}",
                source_ids.join("+"),
                self.spec.describe()
            ),
        }
    }
}
