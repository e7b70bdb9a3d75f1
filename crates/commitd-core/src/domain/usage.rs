//! The usage model: eligible compute demand per usage group per hour.
//!
//! Demand is on-demand-equivalent (ODE): covered and uncovered usage alike, priced at list price,
//! because what commitments can cover is all the usage, not just what is uncovered today.
//! Ingest builds it from FOCUS rows; forecast, optimize and billing read it.

use super::cloud::{ParseError, Provider};
use super::money::Money;
use super::sizing::{self, Sizing};
use super::time::{Hour, HourRange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a rate card prices: one instance type of one provider in one region, with OS and tenancy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Product {
    pub provider: Provider,
    pub region: String,
    pub instance_type: String,
    pub os: String,
    pub tenancy: String,
}

/// A usage group: demand that is interchangeable for every commitment (same price, same scope).
/// `family` is the instance family (AWS "m5") or size flexibility group (Azure "Esv5 Series")
/// shown to people; size-flexibility matching goes through [`UsageGroup::sizing`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UsageGroup {
    pub provider: Provider,
    pub region: String,
    pub instance_type: String,
    pub family: String,
    pub os: String,
    pub tenancy: String,
}

impl UsageGroup {
    /// Builds a group. The family comes from the instance type wherever the type is known:
    /// AWS's family prefix ("m5"), Azure's instance size flexibility group ("Esv5 Series",
    /// the reservation's scope), so that rows of one product land in one group whatever
    /// the bill writes (an AKS node pool's row carries no `InstanceSeries`, a VM's does).
    /// The bill's family is used only for an Azure type the flexibility table does not know.
    pub fn new(
        provider: Provider,
        region: &str,
        instance_type: &str,
        family: Option<&str>,
        os: &str,
        tenancy: &str,
    ) -> Self {
        let family = match (provider, family) {
            // AWS families are written in lower case everywhere but SkuPriceDetails ("M6I").
            (Provider::Aws, _) | (_, None) => sizing::display_family(provider, instance_type),
            (Provider::Azure, Some(f)) => match sizing::sizing(provider, instance_type) {
                Some(known) => known.flex_group,
                None if f.trim().is_empty() => sizing::display_family(provider, instance_type),
                None => f.trim().to_string(),
            },
        };
        UsageGroup {
            provider,
            region: region.trim().to_string(),
            instance_type: instance_type.trim().to_string(),
            family,
            os: normalize_os(os),
            tenancy: normalize_tenancy(tenancy),
        }
    }

    pub fn product(&self) -> Product {
        Product {
            provider: self.provider,
            region: self.region.clone(),
            instance_type: self.instance_type.clone(),
            os: self.os.clone(),
            tenancy: self.tenancy.clone(),
        }
    }

    /// Size-flexibility family and units of one instance-hour of this group.
    pub fn sizing(&self) -> Sizing {
        sizing::sizing_or_exact(self.provider, &self.instance_type)
    }

    /// Parses the `--group` filter syntax: space- or slash-separated terms that must all match
    /// some field (case-insensitive substring), e.g. "aws us-east-1 m5".
    pub fn matches_filter(&self, filter: &str) -> bool {
        let label = self.to_string().to_ascii_lowercase();
        filter
            .split([' ', '/', ','])
            .filter(|t| !t.is_empty())
            .all(|term| label.contains(&term.to_ascii_lowercase()))
    }
}

impl fmt::Display for UsageGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.provider, self.region, self.instance_type, self.os, self.tenancy
        )
    }
}

/// "Linux/UNIX", "linux" -> "Linux"; others are kept as written.
pub fn normalize_os(os: &str) -> String {
    let t = os.trim();
    match t.to_ascii_lowercase().as_str() {
        "" => "Linux".to_string(),
        "linux" | "linux/unix" | "unix" => "Linux".to_string(),
        "windows" => "Windows".to_string(),
        _ => t.to_string(),
    }
}

/// "default", "shared", "" -> "Shared"; "dedicated" -> "Dedicated".
pub fn normalize_tenancy(tenancy: &str) -> String {
    let t = tenancy.trim();
    match t.to_ascii_lowercase().as_str() {
        "" | "shared" | "default" => "Shared".to_string(),
        "dedicated" => "Dedicated".to_string(),
        "host" => "Host".to_string(),
        _ => t.to_string(),
    }
}

/// Hourly demand of one usage group over the model's range (index 0 = `UsageModel::range.start`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSeries {
    pub group: UsageGroup,
    /// Instance-hours consumed in each hour (covered and uncovered).
    pub quantity: Vec<f64>,
    /// On-demand-equivalent cost in each hour (FOCUS ListCost of the Usage rows).
    pub ode: Vec<f64>,
    /// The part of `ode` covered by a commitment (PricingCategory Committed).
    pub covered_ode: Vec<f64>,
    /// Exact totals over the whole range (sum of the rows, each rounded to the micro-dollar).
    pub total_ode: Money,
    pub total_covered_ode: Money,
    /// ODE by FOCUS SubAccountId, for chargeback.
    pub by_sub_account: BTreeMap<String, Money>,
}

impl GroupSeries {
    pub fn empty(group: UsageGroup, hours: usize) -> Self {
        GroupSeries {
            group,
            quantity: vec![0.0; hours],
            ode: vec![0.0; hours],
            covered_ode: vec![0.0; hours],
            total_ode: Money::ZERO,
            total_covered_ode: Money::ZERO,
            by_sub_account: BTreeMap::new(),
        }
    }

    /// Average on-demand price per instance-hour seen in the bill (None if no usage).
    pub fn observed_unit_price(&self) -> Option<f64> {
        let q: f64 = self.quantity.iter().sum();
        let c: f64 = self.ode.iter().sum();
        (q > 0.0).then(|| c / q)
    }
}

/// What the bill says about one existing commitment, hour by hour (index as in the model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitmentUsage {
    /// FOCUS CommitmentDiscountId.
    pub id: String,
    pub provider: Provider,
    /// FOCUS CommitmentDiscountType ("Savings Plan", "Reserved Instance", "Reservation").
    pub commitment_type: String,
    /// EffectiveCost of the usage it covered (Used rows).
    pub used: Vec<f64>,
    /// EffectiveCost of the commitment left unused (Unused rows).
    pub unused: Vec<f64>,
    /// Recurring and one-time fees billed for it (Purchase rows, BilledCost).
    pub fees: Money,
    pub total_used: Money,
    pub total_unused: Money,
}

impl CommitmentUsage {
    /// Used / (used + unused) over the given index range, or None if it did not appear there.
    pub fn utilization(&self, from: usize, to: usize) -> Option<f64> {
        let to = to.min(self.used.len());
        let from = from.min(to);
        let used: f64 = self.used[from..to].iter().sum();
        let unused: f64 = self.unused[from..to].iter().sum();
        (used + unused > 0.0).then(|| used / (used + unused))
    }
}

/// Rows that were read but are not eligible demand, counted by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredRows {
    /// Reason ("not compute: Storage", "charge category Tax", ...) -> row count.
    pub by_reason: BTreeMap<String, u64>,
}

impl IgnoredRows {
    pub fn add(&mut self, reason: impl Into<String>) {
        *self.by_reason.entry(reason.into()).or_insert(0) += 1;
    }

    pub fn total(&self) -> u64 {
        self.by_reason.values().sum()
    }
}

/// Eligible compute demand of one organisation, hour by hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageModel {
    pub range: HourRange,
    /// ISO 4217 billing currency shared by every row ("USD").
    pub currency: String,
    /// One series per usage group, sorted by group.
    pub groups: Vec<GroupSeries>,
    /// Existing commitments seen in the bill, sorted by id.
    pub commitments: Vec<CommitmentUsage>,
    /// The latest hour any row of the bill covers (billing data arrives late; hours after it
    /// are unknown, not zero).
    pub last_observed: Option<Hour>,
    pub rows_read: u64,
    pub ignored: IgnoredRows,
}

impl UsageModel {
    pub fn hours(&self) -> usize {
        self.range.len()
    }

    pub fn group(&self, group: &UsageGroup) -> Option<&GroupSeries> {
        self.groups
            .binary_search_by(|g| g.group.cmp(group))
            .ok()
            .map(|i| &self.groups[i])
    }

    /// The same model restricted to `[start, end)` (clamped to the model's range). Exact totals
    /// are recomputed from the hourly values, so they are exact only for whole-range slices.
    pub fn slice(&self, range: HourRange) -> UsageModel {
        let start = range.start.max(self.range.start);
        let end = range.end.min(self.range.end).max(start);
        let a = start.since(self.range.start) as usize;
        let b = end.since(self.range.start) as usize;
        let cut = |v: &Vec<f64>| v[a..b].to_vec();
        let to_money = |v: &[f64]| Money::from_f64(v.iter().sum()).unwrap_or(Money::ZERO);
        UsageModel {
            range: HourRange::new(start, end),
            currency: self.currency.clone(),
            groups: self
                .groups
                .iter()
                .map(|g| GroupSeries {
                    group: g.group.clone(),
                    quantity: cut(&g.quantity),
                    ode: cut(&g.ode),
                    covered_ode: cut(&g.covered_ode),
                    total_ode: to_money(&g.ode[a..b]),
                    total_covered_ode: to_money(&g.covered_ode[a..b]),
                    by_sub_account: g.by_sub_account.clone(),
                })
                .collect(),
            commitments: self
                .commitments
                .iter()
                .map(|c| CommitmentUsage {
                    used: cut(&c.used),
                    unused: cut(&c.unused),
                    total_used: to_money(&c.used[a..b]),
                    total_unused: to_money(&c.unused[a..b]),
                    ..c.clone()
                })
                .collect(),
            last_observed: self.last_observed.map(|h| h.min(end.plus(-1))),
            rows_read: self.rows_read,
            ignored: self.ignored.clone(),
        }
    }

    pub fn total_ode(&self) -> Money {
        self.groups.iter().map(|g| g.total_ode).sum()
    }
}

/// Parses a provider from a FOCUS ProviderName, for ingest and the rate card.
pub fn parse_provider(name: &str) -> Result<Provider, ParseError> {
    Provider::parse(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_family_is_lower_case_whatever_the_bill_says() {
        let g = UsageGroup::new(
            Provider::Aws,
            "us-east-1",
            "m6i.large",
            Some("M6I"),
            "Linux",
            "Shared",
        );
        assert_eq!(g.family, "m6i");
        let a = UsageGroup::new(
            Provider::Azure,
            "eastus",
            "Standard_E8s_v5",
            Some("Es_v5"),
            "linux",
            "",
        );
        // The reservation's scope, whatever the bill calls the series: an AKS node pool's row
        // (no InstanceSeries) and a VM's row of the same size are one group.
        assert_eq!(a.family, "Esv5 Series");
        let aks = UsageGroup::new(
            Provider::Azure,
            "eastus",
            "Standard_E8s_v5",
            None,
            "Linux",
            "Shared",
        );
        assert_eq!(aks, a);
        // A size the flexibility table does not know keeps the bill's series.
        let unknown = UsageGroup::new(
            Provider::Azure,
            "eastus",
            "Standard_Z9_v9",
            Some("Zv9"),
            "Linux",
            "Shared",
        );
        assert_eq!(unknown.family, "Zv9");
        assert_eq!(a.os, "Linux");
        assert_eq!(a.tenancy, "Shared");
        assert!(a.matches_filter("microsoft e8s"));
        assert!(!a.matches_filter("aws"));
    }

    #[test]
    fn slice_keeps_hours_inside() {
        let g = UsageGroup::new(Provider::Aws, "r", "m5.large", None, "Linux", "Shared");
        let mut s = GroupSeries::empty(g, 4);
        s.ode = vec![1.0, 2.0, 3.0, 4.0];
        let m = UsageModel {
            range: HourRange::new(Hour(100), Hour(104)),
            currency: "USD".into(),
            groups: vec![s],
            commitments: vec![],
            last_observed: Some(Hour(103)),
            rows_read: 4,
            ignored: IgnoredRows::default(),
        };
        let cut = m.slice(HourRange::new(Hour(101), Hour(103)));
        assert_eq!(cut.groups[0].ode, vec![2.0, 3.0]);
        assert_eq!(cut.groups[0].total_ode, Money::from_units(5));
        assert_eq!(cut.last_observed, Some(Hour(102)));
    }
}
