//! What the optimizer is given: demand scenarios, policy constraints and solver options.

use super::OptimizeError;
use crate::domain::{
    Hour, HourRange, Instrument, Money, PaymentOption, Provider, Term, UsageGroup,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Hourly demand of one usage group in every scenario, in instance-hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupDemand {
    pub group: UsageGroup,
    /// `scenarios[s][h]`: instance-hours of scenario `s` in hour `start + h`.
    pub scenarios: Vec<Vec<f64>>,
}

/// One demand scenario: a forecast quantile path (level 0.1 = P10) or the actual demand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub label: String,
    /// Quantile level of a forecast path; None for actual demand or a sampled path.
    pub level: Option<f64>,
    /// Probability weight; weights are normalised to sum to 1.
    pub weight: f64,
}

/// Demand over the planning window `[start, start + hours)` as weighted scenarios.
///
/// Quantile paths are not a joint distribution; treating P05..P95 as equally likely paths is the
/// usual approximation and is what `from_quantiles` does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandInput {
    pub start: Hour,
    pub hours: usize,
    pub scenarios: Vec<Scenario>,
    pub groups: Vec<GroupDemand>,
}

impl DemandInput {
    /// One scenario of actual demand (hindsight mode): `series[g][h]`.
    pub fn actual(start: Hour, series: Vec<(UsageGroup, Vec<f64>)>) -> Self {
        let hours = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        DemandInput {
            start,
            hours,
            scenarios: vec![Scenario {
                label: "actual".into(),
                level: None,
                weight: 1.0,
            }],
            groups: series
                .into_iter()
                .map(|(group, v)| GroupDemand {
                    group,
                    scenarios: vec![v],
                })
                .collect(),
        }
    }

    /// Equally weighted quantile paths, e.g. the forecaster's `values[level][hour]` per group.
    pub fn from_quantiles(
        start: Hour,
        levels: &[f64],
        groups: Vec<(UsageGroup, Vec<Vec<f64>>)>,
    ) -> Self {
        let hours = groups
            .iter()
            .flat_map(|(_, v)| v.iter().map(Vec::len))
            .max()
            .unwrap_or(0);
        DemandInput {
            start,
            hours,
            scenarios: levels
                .iter()
                .map(|&l| Scenario {
                    label: format!("P{:02}", (l * 100.0).round() as i64),
                    level: Some(l),
                    weight: 1.0,
                })
                .collect(),
            groups: groups
                .into_iter()
                .map(|(group, scenarios)| GroupDemand { group, scenarios })
                .collect(),
        }
    }

    pub fn window(&self) -> HourRange {
        HourRange::new(self.start, self.start.plus(self.hours as i64))
    }

    /// Checks shapes and values; names the group, scenario and hour at fault.
    pub fn validate(&self) -> Result<(), OptimizeError> {
        if self.scenarios.is_empty() {
            return Err(OptimizeError::InvalidDemand("no scenarios".into()));
        }
        for s in &self.scenarios {
            if !(s.weight.is_finite() && s.weight >= 0.0) {
                return Err(OptimizeError::InvalidDemand(format!(
                    "scenario '{}' has weight {} (must be finite and >= 0)",
                    s.label, s.weight
                )));
            }
        }
        if self.scenarios.iter().map(|s| s.weight).sum::<f64>() <= 0.0 {
            return Err(OptimizeError::InvalidDemand(
                "scenario weights sum to 0".into(),
            ));
        }
        for g in &self.groups {
            if g.scenarios.len() != self.scenarios.len() {
                return Err(OptimizeError::InvalidDemand(format!(
                    "group {} has {} scenarios, expected {}",
                    g.group,
                    g.scenarios.len(),
                    self.scenarios.len()
                )));
            }
            for (s, path) in g.scenarios.iter().enumerate() {
                if path.len() != self.hours {
                    return Err(OptimizeError::InvalidDemand(format!(
                        "group {} scenario '{}' has {} hours, expected {}",
                        g.group,
                        self.scenarios[s].label,
                        path.len(),
                        self.hours
                    )));
                }
                if let Some((h, v)) = path
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
                {
                    return Err(OptimizeError::InvalidDemand(format!(
                        "group {} scenario '{}' hour {} ({}): demand {v} is not a finite number >= 0",
                        g.group,
                        self.scenarios[s].label,
                        h,
                        self.start.plus(h as i64)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Normalised scenario weights.
    pub(crate) fn weights(&self) -> Vec<f64> {
        let total: f64 = self.scenarios.iter().map(|s| s.weight).sum();
        self.scenarios.iter().map(|s| s.weight / total).collect()
    }
}

/// What may be bought from one provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderPolicy {
    pub instruments: BTreeSet<Instrument>,
    pub terms: BTreeSet<Term>,
    pub payments: BTreeSet<PaymentOption>,
}

impl ProviderPolicy {
    /// Every instrument of `provider`, every term and payment option.
    pub fn everything(provider: Provider) -> Self {
        ProviderPolicy {
            instruments: Instrument::ALL
                .iter()
                .copied()
                .filter(|i| i.provider() == Some(provider))
                .collect(),
            terms: [Term::ONE_YEAR, Term::THREE_YEARS].into_iter().collect(),
            payments: PaymentOption::ALL.iter().copied().collect(),
        }
    }

    pub fn allows(&self, instrument: Instrument, term: Term, payment: PaymentOption) -> bool {
        self.instruments.contains(&instrument)
            && self.terms.contains(&term)
            && self.payments.contains(&payment)
    }
}

/// A floor on the utilization new commitments are expected to reach in a low-demand scenario
/// ("at least 97% used even at P10").
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinUtilization {
    /// Quantile level of the scenario it is checked in (must be one of the demand's levels).
    pub level: f64,
    /// Minimum utilization, 0..=1.
    pub min: f64,
}

/// A floor on the utilization of the new commitments taken together (money-weighted) in one
/// demand scenario, with a credit: the USD by which commitments already held are used above the
/// same floor (the caller bills them). A pool may then run under the floor where the portfolio
/// has room for it, and the portfolio as a whole stays at or above it; a per-commitment floor
/// ([`MinUtilization`]) cannot say that.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TotalUtilization {
    /// Quantile level of the scenario it is checked in (must be one of the demand's levels).
    pub level: f64,
    /// Minimum utilization, 0..=1.
    pub min: f64,
    /// USD over the window (in that scenario) the new commitments may fall short of `min`.
    pub credit: f64,
}

/// The policy's guardrails for one run. The daemon fills it from `policies/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Providers absent from the map get no new commitments.
    pub providers: BTreeMap<Provider, ProviderPolicy>,
    /// Cap on the summed amortized hourly cost of new commitments (laddering: buy in small steps).
    pub max_new_hourly: Option<Money>,
    /// Cap on the summed upfront payments of new commitments.
    pub max_upfront: Option<Money>,
    pub min_utilization: Option<MinUtilization>,
    /// A floor on the new commitments' utilization taken together (see [`TotalUtilization`]).
    #[serde(default)]
    pub min_total_utilization: Option<TotalUtilization>,
    /// Expected coverage (covered ODE / ODE) must stay at or below this share.
    pub max_coverage: Option<f64>,
    /// Expected coverage must reach this share (a target; infeasible if the caps forbid it).
    pub min_coverage: Option<f64>,
    /// A 3-year term is chosen only if it lowers the window's expected cost by more than this
    /// share of the on-demand cost compared to the best plan with 1-year terms only.
    pub three_year_min_extra_savings: f64,
    /// Whether exchanges of existing convertible RIs / Azure reservations may be proposed.
    pub allow_exchanges: bool,
    /// Azure refunds still available in the rolling 12 months (USD 50,000 cap minus used).
    pub azure_refund_remaining: Money,
    /// Ids of existing AWS savings plans that may be returned at the decision time (the caller
    /// knows: commitd bought them and they are inside AWS's return window, so the optimizer
    /// never reads a clock). Each becomes a whole-or-nothing return source; AWS refunds the
    /// plan entirely and has no refund cap.
    #[serde(default)]
    pub returnable: std::collections::BTreeSet<String>,
}

impl Constraints {
    /// Everything allowed, no caps.
    pub fn permissive() -> Self {
        Constraints {
            providers: [Provider::Aws, Provider::Azure]
                .into_iter()
                .map(|p| (p, ProviderPolicy::everything(p)))
                .collect(),
            max_new_hourly: None,
            max_upfront: None,
            min_utilization: None,
            min_total_utilization: None,
            max_coverage: None,
            min_coverage: None,
            three_year_min_extra_savings: 0.0,
            allow_exchanges: true,
            azure_refund_remaining: Money::from_units(50_000),
            returnable: Default::default(),
        }
    }

    /// The scored benchmark policy: new purchases of 1-year terms only, any instrument and
    /// payment option (scenarios README).
    pub fn one_year_only() -> Self {
        let mut c = Constraints::permissive();
        for p in c.providers.values_mut() {
            p.terms = [Term::ONE_YEAR].into_iter().collect();
        }
        c
    }

    /// Every term some provider allows, in order.
    pub fn terms(&self) -> Vec<Term> {
        let mut terms: Vec<Term> = self
            .providers
            .values()
            .flat_map(|p| p.terms.iter().copied())
            .collect();
        terms.sort();
        terms.dedup();
        terms
    }

    pub fn allows(
        &self,
        provider: Provider,
        instrument: Instrument,
        term: Term,
        payment: PaymentOption,
    ) -> bool {
        self.providers
            .get(&provider)
            .is_some_and(|p| p.allows(instrument, term, payment))
    }

    /// Checks the values themselves; names the field at fault.
    pub fn validate(&self, demand: &DemandInput) -> Result<(), OptimizeError> {
        let bad = |field: &str, reason: String| {
            Err(OptimizeError::InvalidPolicy {
                field: field.to_string(),
                reason,
            })
        };
        for (provider, p) in &self.providers {
            if let Some(i) = p
                .instruments
                .iter()
                .find(|i| i.provider() != Some(*provider))
            {
                return bad(
                    "providers.instruments",
                    format!("{i} is not sold by {provider}"),
                );
            }
        }
        for (field, v) in [
            ("max_new_hourly", self.max_new_hourly),
            ("max_upfront", self.max_upfront),
        ] {
            if let Some(v) = v.filter(|v| v.is_negative()) {
                return bad(field, format!("{v} is negative"));
            }
        }
        for (field, v) in [
            ("max_coverage", self.max_coverage),
            ("min_coverage", self.min_coverage),
        ] {
            if let Some(v) = v.filter(|v| !(0.0..=1.0).contains(v)) {
                return bad(field, format!("{v} is not a share between 0 and 1"));
            }
        }
        if let (Some(lo), Some(hi)) = (self.min_coverage, self.max_coverage) {
            if lo > hi {
                return bad(
                    "min_coverage",
                    format!("{lo} is above max_coverage {hi}: no plan can satisfy both"),
                );
            }
        }
        if !(self.three_year_min_extra_savings.is_finite()
            && self.three_year_min_extra_savings >= 0.0)
        {
            return bad(
                "three_year_min_extra_savings",
                format!("{} must be >= 0", self.three_year_min_extra_savings),
            );
        }
        let floors = self
            .min_utilization
            .map(|m| ("min_utilization", m.level, m.min))
            .into_iter()
            .chain(
                self.min_total_utilization
                    .map(|t| ("min_total_utilization", t.level, t.min)),
            );
        if let Some(t) = self.min_total_utilization {
            if !(t.credit.is_finite() && t.credit >= 0.0) {
                return bad(
                    "min_total_utilization.credit",
                    format!("{} must be a finite amount >= 0", t.credit),
                );
            }
        }
        for (name, level, min) in floors {
            if !(0.0..=1.0).contains(&min) {
                return bad(
                    &format!("{name}.min"),
                    format!("{min} is not a share between 0 and 1"),
                );
            }
            if demand.scenario_at_level(level).is_none() {
                let levels: Vec<String> = demand
                    .scenarios
                    .iter()
                    .map(|s| match s.level {
                        Some(l) => l.to_string(),
                        None => s.label.clone(),
                    })
                    .collect();
                return bad(
                    &format!("{name}.level"),
                    format!(
                        "no demand scenario at quantile level {} (scenarios: {})",
                        level,
                        levels.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }
}

impl DemandInput {
    /// Index of the scenario at quantile `level`. With a single scenario (hindsight), that
    /// scenario stands for every level: actual demand has no spread.
    pub fn scenario_at_level(&self, level: f64) -> Option<usize> {
        if self.scenarios.len() == 1 {
            return Some(0);
        }
        self.scenarios
            .iter()
            .position(|s| s.level.is_some_and(|l| (l - level).abs() < 1e-9))
    }
}

/// Solver settings (not policy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Reduce the demand points (hours x scenarios) before solving; false solves the full model.
    pub reduce: bool,
    /// Budget of coverage columns (group x instrument x point) the reduction aims for.
    pub max_coverage_columns: usize,
    /// At least this many points per segment and scenario when reducing: the first reduction
    /// keeps this many per segment (the scenarios share them), the refinement rounds split
    /// `refine_share` of the per-scenario total each.
    pub min_points: usize,
    /// Rounds of refinement of the reduced points around the solution (0 = none).
    pub refine_rounds: usize,
    /// Buckets split per refinement round, as a share of the point budget (the first
    /// reduction's points, or `min_points` per segment and scenario if more).
    #[serde(default = "default_refine_share")]
    pub refine_share: f64,
    /// Re-solve without each of the first N actions to report its value (0 = skip).
    pub marginal_resolves: usize,
    /// HiGHS threads (the benchmark box has 2 cores).
    pub threads: u32,
    /// Start each refinement round, and the solves with rounded amounts, from the previous
    /// solution (HiGHS builds a basis from it and skips presolve) instead of from scratch.
    /// Off by default: measured on the 3-scenario benchmark it did not pay (a basis built from
    /// a primal solution is not dual feasible, and the dual simplex loses what presolve saved;
    /// the primal simplex from it was 3x slower); see docs/benchmarks/optimize.md.
    #[serde(default)]
    pub warm_start: bool,
    /// After rounding to whole instances, size the new savings plans again next to the
    /// instances actually bought (see `optimize::resized_plans`).
    #[serde(default = "default_resize_plans")]
    pub resize_plans: bool,
}

fn default_refine_share() -> f64 {
    0.25
}

fn default_resize_plans() -> bool {
    true
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reduce: true,
            max_coverage_columns: 40_000,
            min_points: 48,
            refine_rounds: 2,
            refine_share: default_refine_share(),
            marginal_resolves: 5,
            threads: 2,
            warm_start: false,
            resize_plans: default_resize_plans(),
        }
    }
}
