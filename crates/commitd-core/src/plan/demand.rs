//! The planning pipeline shared by `commitd plan` and the daemon: usage history -> forecast
//! quantile paths -> optimizer demand -> plan.
//!
//! Pure like the modules it composes (no I/O, no clock): the callers load the data and pass the
//! decision hour in. It lives apart from `optimize` because the optimizer must not depend on the
//! forecaster (it also plans from actual demand in hindsight mode, and from any other demand).

use crate::domain::plan::Plan;
use crate::domain::purchase::PurchaseSpec;
use crate::domain::{
    sizing, Action, ActionScope, AmountUnit, Commitment, CommitmentAmount, GroupSeries, Hour,
    HourRange, Money, RateCard, Term, UsageModel,
};
use crate::forecast::{forecast_batch, BatchInput, ForecastConfig};
use crate::optimize::{self, demand, Constraints, DemandInput, OptimizeError, Options};
use rust_decimal::prelude::ToPrimitive;

/// The demand quantiles the planner hands the optimizer as equally weighted scenarios.
pub const LEVELS: [f64; 3] = [0.1, 0.5, 0.9];

/// The forecaster's quantile paths (at [`LEVELS`]) for every group of `history` over
/// `[at, at + horizon)`; see [`forecast_demand_at`].
pub fn forecast_demand(
    history: &UsageModel,
    at: Hour,
    horizon: usize,
    notes: &mut Vec<String>,
) -> DemandInput {
    forecast_demand_at(history, at, horizon, &LEVELS, notes)
}

/// The forecaster's quantile paths at `levels` for every group of `history` over
/// `[at, at + horizon)`, as the optimizer's demand. The one place where forecasts become
/// demand, for `commitd plan`, the daemon and the backtest's forecast planner:
///
/// * a group the forecaster cannot fit keeps its seasonal-naive paths (last 4 weeks' weekly
///   profile), and `notes` says so;
/// * a group the forecaster calls `unsettled` (a recent level shift, an unconfirmed change, a
///   spike in progress) is **held**: its demand is zero in every scenario, so nothing new is
///   bought for it and only what is already owned covers it, until its usage settles. `notes`
///   says which groups were held and why.
pub fn forecast_demand_at(
    history: &UsageModel,
    at: Hour,
    horizon: usize,
    levels: &[f64],
    notes: &mut Vec<String>,
) -> DemandInput {
    let mut naive = demand::seasonal_naive(history, at, horizon, 4, levels);
    let histories: Vec<Vec<f64>> = history
        .groups
        .iter()
        .map(|g| known_history(history, g, at))
        .collect();
    let inputs: Vec<BatchInput<'_>> = histories
        .iter()
        .map(|h| BatchInput {
            history: h,
            history_start: history.range.start,
        })
        .collect();
    let cfg = ForecastConfig {
        horizon_hours: horizon,
        quantiles: levels.to_vec(),
        ..ForecastConfig::default()
    };
    let results = forecast_batch(&inputs, at, &cfg);
    for (g, result) in naive.groups.iter_mut().zip(results) {
        match result {
            Ok(f) if f.signals.unsettled => {
                notes.push(format!(
                    "{} held (no new commitment for it): {}",
                    g.group,
                    f.signals.reasons.join("; ")
                ));
                for path in &mut g.scenarios {
                    path.iter_mut().for_each(|v| *v = 0.0);
                }
            }
            Ok(f) if f.start <= at => {
                let offset = at.since(f.start) as usize;
                let paths: Vec<Vec<f64>> = levels
                    .iter()
                    .map(|&q| {
                        let v = f.quantile(q);
                        (0..horizon)
                            .map(|h| v.get(offset + h).copied().unwrap_or(0.0).max(0.0))
                            .collect()
                    })
                    .collect();
                if paths.iter().flatten().all(|v| v.is_finite()) {
                    g.scenarios = paths;
                } else {
                    notes.push(format!(
                        "forecast for {} has non-finite values: seasonal-naive demand used",
                        g.group
                    ));
                }
            }
            Ok(f) => notes.push(format!(
                "forecast for {} starts at {} after the decision time: seasonal-naive demand used",
                g.group, f.start
            )),
            Err(e) => notes.push(format!(
                "no forecast for {} ({e}): seasonal-naive demand used",
                g.group
            )),
        }
    }
    naive
}

/// A group's hourly demand as the forecaster must see it at `at`: hours after the bill's last
/// row, or at and after `at`, are unknown (NaN), not zero usage.
pub fn known_history(model: &UsageModel, group: &GroupSeries, at: Hour) -> Vec<f64> {
    let known_end = model
        .last_observed
        .map_or(model.range.start, |h| h.plus(1))
        .min(at);
    let known = known_end.since(model.range.start).max(0) as usize;
    let mut v = group.quantity.clone();
    for x in v.iter_mut().skip(known) {
        *x = f64::NAN;
    }
    v
}

/// Where a plan's demand comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemandSource {
    /// The forecaster's quantile paths at [`LEVELS`] from the history before the decision
    /// (the daemon's; see [`forecast_demand_at`]).
    #[default]
    Forecast,
    /// The same hour of the week over the last four weeks, at [`LEVELS`], for every group.
    SeasonalNaive,
    /// The actual demand after the decision (hindsight: the backtest's optimum baseline).
    Hindsight,
}

impl DemandSource {
    /// What the demand is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            DemandSource::Forecast => {
                "forecast: P10/P50/P90 paths of the forecaster, from the history before the decision time"
            }
            DemandSource::SeasonalNaive => {
                "seasonal-naive: P10/P50/P90 of the same hour of the week over the last 4 weeks"
            }
            DemandSource::Hindsight => "actual demand after the decision time (hindsight)",
        }
    }

    /// The usage the demand is built from: the history before `at`, or for hindsight the
    /// whole usage (it reads the hours after `at`).
    pub fn reads(self, usage: &UsageModel, at: Hour) -> UsageModel {
        match self {
            DemandSource::Hindsight => usage.clone(),
            _ => usage.slice(HourRange::new(usage.range.start, at)),
        }
    }
}

/// The optimizer's demand over `[at, at + horizon)` from `usage` by `source`. Only hindsight
/// looks at hours at or after `at`; `notes` says where the forecast fell back or held a group.
pub fn demand_at(
    usage: &UsageModel,
    at: Hour,
    horizon: usize,
    source: DemandSource,
    notes: &mut Vec<String>,
) -> DemandInput {
    let seen = source.reads(usage, at);
    match source {
        DemandSource::Forecast => forecast_demand(&seen, at, horizon, notes),
        DemandSource::SeasonalNaive => demand::seasonal_naive(&seen, at, horizon, 4, &LEVELS),
        DemandSource::Hindsight => demand::actual(&seen, at, horizon),
    }
}

/// Plans at `at` over `horizon` hours with demand from `source` (the forecast, by default:
/// the usage before `at` only, the future is never looked at). The one forecast -> optimize
/// composition for the daemon's forecast planner and `commitd plan`.
#[allow(clippy::too_many_arguments)]
pub fn plan_at(
    usage: &UsageModel,
    at: Hour,
    horizon: usize,
    source: DemandSource,
    rates: &RateCard,
    existing: &[Commitment],
    constraints: &Constraints,
    options: &Options,
) -> Result<Plan, OptimizeError> {
    let mut notes = Vec::new();
    let input = demand_at(usage, at, horizon, source, &mut notes);
    let mut plan = optimize::optimize(&input, rates, existing, constraints, options)?;
    plan.notes.extend(notes);
    Ok(plan)
}

/// A plan's purchase as a provider's purchase API needs it: the one converter from the
/// optimizer's actions, used by the daemon's cycle plan and the backtest. `None` for an
/// exchange (not a purchase). An amount that is not a whole instance count or a representable
/// USD/h, or a term the domain does not know, is an error naming the action: a plan is never
/// silently turned into a different purchase.
pub fn purchase_spec(a: &Action) -> Result<Option<PurchaseSpec>, String> {
    if a.is_exchange() {
        return Ok(None);
    }
    let what = || format!("{} {} {}", a.provider, a.instrument, a.scope);
    let term = Term::from_years(a.term_years).map_err(|e| format!("{}: {e}", what()))?;
    let amount = match a.unit {
        AmountUnit::UsdPerHour => CommitmentAmount::HourlySpend(
            Money::from_decimal(a.amount)
                .ok_or_else(|| format!("{}: amount {} out of range", what(), a.amount))?,
        ),
        AmountUnit::Instances => CommitmentAmount::Instances(
            a.amount
                .fract()
                .is_zero()
                .then(|| a.amount.to_u32())
                .flatten()
                .ok_or_else(|| format!("{}: {} is not an instance count", what(), a.amount))?,
        ),
    };
    let (region, family, instance_type, os, tenancy) = match &a.scope {
        ActionScope::Provider => (None, None, None, None, None),
        ActionScope::FamilyRegion { region, family } => {
            (Some(region.clone()), Some(family.clone()), None, None, None)
        }
        ActionScope::Instances {
            region,
            instance_type,
            flex_group: _,
            os,
            tenancy,
        } => (
            Some(region.clone()),
            None,
            Some(instance_type.clone()),
            Some(os.clone()),
            Some(tenancy.clone()),
        ),
    };
    Ok(Some(PurchaseSpec {
        provider: a.provider,
        account: None,
        instrument: a.instrument,
        term,
        payment: a.payment_option,
        region,
        family,
        instance_type,
        os,
        tenancy,
        amount,
    }))
}

/// The commitment a purchase of `spec` becomes when it starts at `start` and runs its full
/// term (RIs and reservations get the family of their instance type, as the bill names it).
pub fn purchased_commitment(
    spec: &PurchaseSpec,
    id: String,
    start: Hour,
    hourly_cost: Money,
    upfront: Money,
) -> Commitment {
    Commitment {
        id,
        provider: spec.provider,
        instrument: spec.instrument,
        term: spec.term,
        payment: spec.payment,
        start,
        end: start.plus(spec.term.hours()),
        region: spec.region.clone(),
        instance_type: spec.instance_type.clone(),
        family: spec.family.clone().or_else(|| {
            spec.instance_type
                .as_deref()
                .map(|t| sizing::display_family(spec.provider, t))
        }),
        amount: spec.amount,
        hourly_cost,
        upfront,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ActionKind, Instrument, PaymentOption, Provider, Rationale};
    use rust_decimal::Decimal;

    fn ri(amount: Decimal) -> Action {
        Action {
            kind: ActionKind::Purchase,
            provider: Provider::Aws,
            instrument: Instrument::StandardReservedInstance,
            term_years: 1,
            payment_option: PaymentOption::AllUpfront,
            scope: ActionScope::Instances {
                region: "us-east-1".into(),
                instance_type: "m5.xlarge".into(),
                flex_group: "m5".into(),
                os: "Linux".into(),
                tenancy: "Shared".into(),
            },
            amount,
            unit: AmountUnit::Instances,
            start: Hour(0),
            hourly_cost: Money::from_micros(120_000),
            upfront: Money::from_units(1051),
            rationale: Rationale::default(),
        }
    }

    #[test]
    fn unsettled_groups_are_held_and_settled_ones_are_not() {
        use crate::domain::UsageGroup;
        use crate::forecast::synth::Spec;
        let t0 = Hour::parse("2025-01-06T00:00:00Z").unwrap();
        let hours = 20 * 168;
        // One group shifted up 80% nine days ago (unsettled), one steady.
        let shifted = Spec {
            shifts: vec![(hours - 9 * 24, 1.8)],
            seed: 16,
            ..Spec::default()
        };
        let steady = Spec {
            seed: 17,
            ..Spec::default()
        };
        let mut groups = Vec::new();
        for (name, spec) in [("m5.large", &shifted), ("c5.large", &steady)] {
            let g = UsageGroup::new(Provider::Aws, "us-east-1", name, None, "Linux", "Shared");
            let mut s = GroupSeries::empty(g, hours);
            s.quantity = spec.generate(t0, hours);
            groups.push(s);
        }
        let model = UsageModel {
            range: HourRange::new(t0, t0.plus(hours as i64)),
            currency: "USD".into(),
            groups,
            commitments: vec![],
            last_observed: Some(t0.plus(hours as i64 - 1)),
            rows_read: 0,
            ignored: Default::default(),
        };
        let mut notes = Vec::new();
        let d = forecast_demand(&model, t0.plus(hours as i64), 24 * 14, &mut notes);
        let total = |g: usize| d.groups[g].scenarios.iter().flatten().sum::<f64>();
        assert_eq!(total(0), 0.0, "{notes:?}");
        assert!(total(1) > 0.0, "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("m5.large") && n.contains("held")),
            "{notes:?}"
        );
    }

    #[test]
    fn purchase_spec_converts_whole_instances_and_refuses_fractions() {
        let spec = purchase_spec(&ri(Decimal::new(3, 0))).unwrap().unwrap();
        assert_eq!(spec.amount, CommitmentAmount::Instances(3));
        assert_eq!(spec.instance_type.as_deref(), Some("m5.xlarge"));
        assert_eq!(spec.family, None);
        let c = purchased_commitment(&spec, "x".into(), Hour(10), Money::ZERO, Money::ZERO);
        // The bill's family, so that billing applies the RI within it.
        assert_eq!(c.family.as_deref(), Some("m5"));
        assert_eq!(c.end, Hour(10).plus(Term::ONE_YEAR.hours()));

        let err = purchase_spec(&ri(Decimal::new(25, 1))).unwrap_err();
        assert!(err.contains("2.5 is not an instance count"), "{err}");
        let mut bad_term = ri(Decimal::ONE);
        bad_term.term_years = 2;
        assert!(purchase_spec(&bad_term).is_err());
        let mut exchange = ri(Decimal::ONE);
        exchange.kind = ActionKind::Exchange {
            source_id: "old".into(),
            source_count: 1,
            source_value: Money::ZERO,
            true_up: Money::ZERO,
        };
        assert_eq!(purchase_spec(&exchange).unwrap(), None);
    }
}
