//! The planners that compute a plan from the configured source: ingest -> forecast -> optimize
//! (the same pipeline as `commitd plan`), converted into the actions the daemon proposes and
//! executes.
//!
//! The source is loaded again every cycle, so new billing exports are picked up without a
//! restart. Two sources:
//! * a scenario directory ([`ScenarioSource`]): a scenario describes one moment, so "now" is
//!   the scenario's decision time;
//! * a FOCUS export directory with a rate card ([`FocusSource`]): "now" is the cycle's own
//!   time, and the hours the bill does not have yet (billing latency) are unknown, not zero.
//!
//! Both count as existing: the commitments the source lists, those the bill shows (inferred),
//! and the provider's inventory at the start of the cycle (`held`), de-duplicated by id.

use super::plan::{plan_id, CycleInputs, CyclePlan, Expected, PlanError, PlanSource};
use crate::config::Config;
use crate::domain::plan::{ActionKind, Plan};
use crate::domain::{
    Commitment, Hour, Instrument, Money, Offer, PaymentOption, Provider, RateCard, UsageModel,
};
use crate::ingest;
use crate::markets::Operation;
use crate::optimize::{Constraints, Options};
use crate::plan::digest::{inputs_digest, Inputs};
use crate::plan::{PlannerConfig, PlannerKind};
use crate::proposals::PlannedAction;
use crate::sources::{self, ReadOptions};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// One year of hourly demand: the horizon of the 1-year commitments the default policy buys.
const HORIZON_HOURS: usize = 8_760;

/// How much later than the configured billing latency the newest billed hour may be before a
/// FOCUS export counts as stale: a day, for an export job that runs daily.
const STALE_SLACK_HOURS: i64 = 24;

pub fn planner(config: &Config) -> Result<Arc<dyn PlanSource>, String> {
    let bounds = policy_bounds(config);
    match (&config.source.scenario, &config.source.focus) {
        (Some(dir), _) => Ok(Arc::new(ScenarioSource {
            dir: dir.clone(),
            follows_clock: config.source.scenario_follows_clock,
            method: config.planner.clone(),
            billing_latency_hours: config.billing_latency_hours,
            bounds,
            engine: Engine::default(),
        })),
        (None, Some(path)) => {
            let rates = config.source.rates.clone().ok_or_else(|| {
                format!(
                    "[source] focus = {}: needs [source] rates (on-demand and commitment prices)",
                    path.display()
                )
            })?;
            Ok(Arc::new(FocusSource {
                focus: path.clone(),
                rates,
                commitments: config.source.commitments.clone(),
                billing_latency_hours: config.billing_latency_hours,
                method: config.planner.clone(),
                bounds,
                engine: Engine::default(),
            }))
        }
        (None, None) => match config.source.cost_explorer_days {
            Some(days) => Ok(Arc::new(CostExplorerSource {
                days,
                rates: config.source.rates.clone(),
                commitments: config.source.commitments.clone(),
                billing_latency_hours: config.billing_latency_hours,
                method: config.planner.clone(),
                bounds,
                engine: Engine::default(),
            })),
            None => Err(
                "no [source] configured: set [source] scenario, [source] focus (with rates), \
                 [source] cost_explorer_days (with provider = \"aws\"), or [daemon] plan_file"
                    .into(),
            ),
        },
    }
}

/// Plans from a scenario directory within what the policies allow ([`policy_bounds`]); the
/// cycle still judges every action against `policies/` afterwards.
pub struct ScenarioSource {
    pub dir: PathBuf,
    /// The cycle's own time, inside the evaluation window, is the decision time (`[source]
    /// scenario_follows_clock`); else the scenario's decision time.
    pub follows_clock: bool,
    pub method: PlannerConfig,
    /// With the look-back planner, the hours before the scenario's decision time it does not
    /// know yet (as in the backtest's first decision).
    pub billing_latency_hours: u32,
    /// What the policies allow ([`policy_bounds`]).
    pub bounds: Constraints,
    /// The planner kept between cycles ([`super::engine`]).
    pub engine: Engine,
}

pub use super::engine::Engine;

/// What the policy files allow, as the optimizer's constraints ([`PolicySet::planning_bounds`],
/// the utilization floor judged at the P10 scenario, the lowest demand quantile the pipeline
/// plans with), so that the optimizer does not propose what policy would then block. Policy
/// files that do not load are reported by the cycle itself (which then blocks every action);
/// here the benchmark policy (1-year terms, any instrument and payment option) stands in.
///
/// [`PolicySet::planning_bounds`]: crate::policy::PolicySet::planning_bounds
fn policy_bounds(config: &Config) -> Constraints {
    crate::sources::policies::planning_bounds(&config.policies_dir)
        .unwrap_or_else(|_| Constraints::one_year_only())
}

/// The commitments `[source] commitments` lists (none without the setting), priced by `rates`.
fn listed_commitments(
    path: Option<&std::path::Path>,
    rates: &RateCard,
) -> Result<Vec<Commitment>, PlanError> {
    match path {
        Some(p) => sources::read_commitments(p, Some(rates))
            .map_err(|e| PlanError::Failed(format!("[source] commitments: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// `source` plus the held commitments it does not already list (same id).
fn with_held(mut source: Vec<Commitment>, held: &[Commitment]) -> Vec<Commitment> {
    for c in held {
        if !source.iter().any(|s| s.id == c.id) {
            source.push(c.clone());
        }
    }
    source
}

/// Whether the plan may exchange: the daemon's markets (the simulator and AWS) execute AWS
/// convertible RI exchanges, but no market executes Azure exchanges (and this planner does not
/// propose Azure returns), and purchases
/// sized on the assumption that those happen would under-buy. So exchanges are planned only
/// when no held commitment is an exchangeable Azure reservation.
fn exchanges_executable(existing: &[Commitment]) -> bool {
    !existing
        .iter()
        .any(|c| c.provider == Provider::Azure && c.instrument.is_exchangeable())
}

fn run_pipeline(
    usage: &UsageModel,
    at: Hour,
    rates: &RateCard,
    existing: &[Commitment],
    bounds: &Constraints,
    returnable: &BTreeSet<String>,
    name: &str,
) -> Result<Plan, PlanError> {
    crate::plan::demand::plan_at(
        usage,
        at,
        HORIZON_HOURS,
        crate::plan::demand::DemandSource::Forecast,
        rates,
        existing,
        &Constraints {
            allow_exchanges: exchanges_executable(existing),
            returnable: returnable.clone(),
            ..bounds.clone()
        },
        &Options::default(),
    )
    .map_err(|e| PlanError::Failed(format!("planning {name} at {at}: {e}")))
}

/// How a planner decides: the method, what bounds it, and what earlier cycles left to it.
struct Method<'a> {
    config: &'a PlannerConfig,
    bounds: &'a Constraints,
    latency_hours: u32,
    engine: &'a Engine,
}

/// The cycle plan at `at` by `method`: the look-back planner ([`super::lookback`]) or the
/// forecast pipeline.
#[allow(clippy::too_many_arguments)]
fn decide(
    method: &Method<'_>,
    usage: &UsageModel,
    at: Hour,
    rates: &RateCard,
    existing: &[Commitment],
    inputs: &CycleInputs<'_>,
    name: &str,
    now: DateTime<Utc>,
) -> Result<CyclePlan, PlanError> {
    // What the plan is computed from, recorded with it (`plan_computed`).
    let digest = inputs_digest(&Inputs {
        source: name,
        at,
        usage,
        rates,
        portfolio: existing,
        bounds: method.bounds,
        method: method.config,
    })
    .map_err(PlanError::Failed)?;
    match method.config.kind {
        PlannerKind::Lookback | PlannerKind::Ladder => method.engine.cycle_plan(
            method.config,
            &super::engine::Moment {
                usage,
                at,
                latency_hours: method.latency_hours,
                rates,
                existing,
                bounds: method.bounds,
                gives_up: inputs.gives_up,
                listings: inputs.listings,
                held: inputs.held,
                refunds: inputs.refunds,
            },
            now,
            digest,
        ),
        PlannerKind::Forecast => {
            let plan = run_pipeline(
                usage,
                at,
                rates,
                existing,
                method.bounds,
                inputs.returnable,
                name,
            )?;
            Ok(cycle_plan(&plan, now, digest, inputs.held))
        }
    }
}

impl PlanSource for ScenarioSource {
    fn plan_cycle(
        &self,
        now: DateTime<Utc>,
        inputs: &CycleInputs<'_>,
    ) -> Result<CyclePlan, PlanError> {
        let scenario = sources::load_scenario(&self.dir)
            .map_err(|e| PlanError::Failed(format!("loading {}: {e}", self.dir.display())))?;
        let w = scenario.window;
        let at = if self.follows_clock {
            Hour::from_datetime(now).clamp(w.decision_time, w.evaluation_end.plus(-1))
        } else {
            w.decision_time
        };
        let held = held_at(inputs.held, at);
        let inputs = &CycleInputs {
            held: &held,
            ..*inputs
        };
        let existing = with_held(scenario.commitments.clone(), &held);
        let mut rates = scenario.rates.clone();
        let offers_note = overlay_offers(&mut rates, inputs.offers);
        let mut out = decide(
            &Method {
                config: &self.method,
                bounds: &self.bounds,
                latency_hours: self.billing_latency_hours,
                engine: &self.engine,
            },
            &scenario.usage,
            at,
            &rates,
            &existing,
            inputs,
            &scenario.name,
            now,
        )?;
        out.notes.extend(offers_note);
        out.notes
            .push(format!("planned from scenario {}", scenario.name));
        Ok(out)
    }
}

/// The market's inventory as held at a scenario's decision time `at`. A scenario describes one
/// moment, in the past, while the market buys at the cycle's own time: a commitment bought by an
/// earlier cycle starts after `at` and would not count as held there, so every cycle would buy
/// it again. It counts from `at` instead, for its whole term (ids unchanged).
fn held_at(held: &[Commitment], at: Hour) -> Vec<Commitment> {
    held.iter()
        .map(|c| {
            let mut c = c.clone();
            if c.start > at {
                c.end = at.plus(c.end.since(c.start));
                c.start = at;
            }
            c
        })
        .collect()
}

/// Plans from FOCUS exports (a file or a directory tree, re-read every cycle) priced by a rate
/// card, at the cycle's own time.
pub struct FocusSource {
    pub focus: PathBuf,
    pub rates: PathBuf,
    /// Existing commitments (FOCUS 1.3 ContractCommitment); those only the bill shows are
    /// inferred from it.
    pub commitments: Option<PathBuf>,
    pub billing_latency_hours: u32,
    pub method: PlannerConfig,
    pub bounds: Constraints,
    /// The planner kept between cycles ([`super::engine`]).
    pub engine: Engine,
}

impl FocusSource {
    /// The usage model, rate card and existing commitments (source + bill + held), with notes.
    pub fn load(
        &self,
        held: &[Commitment],
    ) -> Result<(UsageModel, RateCard, Vec<Commitment>, Vec<String>), PlanError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            PlanError::Failed(format!("[source] {what}: {e}"))
        };
        let mut rates = sources::read_rate_card(&self.rates).map_err(|e| failed("rates", &e))?;
        let bill = sources::read_focus(&self.focus, &ReadOptions::default())
            .map_err(|e| failed("focus", &e))?;
        let mut notes = on_demand_from_bill(&bill.model, &mut rates);
        let listed = listed_commitments(self.commitments.as_deref(), &rates)?;
        let (inferred, inferred_notes) = ingest::infer_commitments(&bill.commitments, &listed);
        notes.extend(inferred_notes);
        let mut existing = listed;
        for i in inferred {
            notes.push(i.note);
            existing.push(i.commitment);
        }
        Ok((bill.model, rates, with_held(existing, held), notes))
    }
}

/// Adds an on-demand price for every usage group the rate card has none for, from the bill
/// itself: the group's on-demand-equivalent cost over its instance-hours (FOCUS ListCost /
/// quantity, i.e. the list unit price). An export has more instance types than a hand-kept rate
/// card; without a price the optimizer cannot value the group at all. Groups without any
/// quantity keep no price. Returns one note per group priced this way.
fn on_demand_from_bill(model: &UsageModel, rates: &mut RateCard) -> Vec<String> {
    let mut notes = Vec::new();
    for g in &model.groups {
        let product = g.group.product();
        if rates.on_demand(&product).is_some() {
            continue;
        }
        let hours: f64 = g.quantity.iter().filter(|q| q.is_finite()).sum();
        if hours <= 0.0 {
            continue;
        }
        let Some(price) = Decimal::from_f64_retain(g.total_ode.to_f64() / hours)
            .map(|d| d.round_dp(6))
            .filter(|d| *d > Decimal::ZERO)
        else {
            continue;
        };
        rates.insert(
            product,
            Offer {
                instrument: Instrument::OnDemand,
                term: None,
                payment: PaymentOption::NoUpfront,
                effective_hourly_rate: price,
                upfront_share: Decimal::ZERO,
            },
        );
        notes.push(format!(
            "{}: on-demand price {price} USD/h taken from the bill (not in [source] rates)",
            g.group
        ));
    }
    notes
}

impl PlanSource for FocusSource {
    fn plan_cycle(
        &self,
        now: DateTime<Utc>,
        inputs: &CycleInputs<'_>,
    ) -> Result<CyclePlan, PlanError> {
        let (usage, rates, existing, notes) = self.load(inputs.held)?;
        let name = self.focus.display().to_string();
        let mut out = plan_now(
            &format!("[source] focus = {name}"),
            &name,
            now,
            inputs,
            &usage,
            rates,
            &existing,
            notes,
            &Method {
                config: &self.method,
                bounds: &self.bounds,
                latency_hours: self.billing_latency_hours,
                engine: &self.engine,
            },
        )?;
        out.notes.push(format!(
            "planned from FOCUS {name}: {} rows, {} usage groups, billed hours {} to {}",
            usage.rows_read,
            usage.groups.len(),
            usage.range.start.to_datetime().to_rfc3339(),
            usage
                .last_observed
                .map_or_else(String::new, |h| h.to_datetime().to_rfc3339())
        ));
        Ok(out)
    }
}

/// Plans from the market's own usage records (AWS Cost Explorer, read by the daemon each cycle
/// through [`CycleInputs::usage`]), for accounts without FOCUS exports, at the cycle's own time.
pub struct CostExplorerSource {
    pub days: u32,
    /// Optional rate card: without one, on-demand prices come from Cost Explorer's costs and
    /// commitment prices from the market's offerings.
    pub rates: Option<PathBuf>,
    pub commitments: Option<PathBuf>,
    pub billing_latency_hours: u32,
    pub method: PlannerConfig,
    pub bounds: Constraints,
    /// The planner kept between cycles ([`super::engine`]).
    pub engine: Engine,
}

impl PlanSource for CostExplorerSource {
    fn market_usage_days(&self) -> Option<u32> {
        Some(self.days)
    }

    fn plan_cycle(
        &self,
        now: DateTime<Utc>,
        inputs: &CycleInputs<'_>,
    ) -> Result<CyclePlan, PlanError> {
        let source = format!("[source] cost_explorer_days = {}", self.days);
        let usage = inputs.usage.ok_or_else(|| {
            PlanError::Failed(format!("{source}: the market gave no usage records"))
        })?;
        let mut rates = match &self.rates {
            Some(p) => sources::read_rate_card(p)
                .map_err(|e| PlanError::Failed(format!("[source] rates: {e}")))?,
            None => RateCard::new(),
        };
        let mut notes = usage.notes.clone();
        notes.extend(on_demand_from_bill(&usage.model, &mut rates));
        let existing = with_held(
            listed_commitments(self.commitments.as_deref(), &rates)?,
            inputs.held,
        );
        let mut out = plan_now(
            &source,
            "AWS Cost Explorer",
            now,
            inputs,
            &usage.model,
            rates,
            &existing,
            notes,
            &Method {
                config: &self.method,
                bounds: &self.bounds,
                latency_hours: self.billing_latency_hours,
                engine: &self.engine,
            },
        )?;
        out.notes.push(format!(
            "planned from AWS Cost Explorer: {} days, {} requests ({}), {} usage groups",
            self.days,
            usage.request_ids.len(),
            usage.request_ids.join(", "),
            usage.model.groups.len()
        ));
        Ok(out)
    }
}

/// The plan at the cycle's own time from usage read this cycle (exports or the market's
/// records): refuses stale data, prices with the market's offers, and keeps `notes`.
/// `source` names the setting in errors; `name` goes into the inputs digest.
#[allow(clippy::too_many_arguments)]
fn plan_now(
    source: &str,
    name: &str,
    now: DateTime<Utc>,
    inputs: &CycleInputs<'_>,
    usage: &UsageModel,
    mut rates: RateCard,
    existing: &[Commitment],
    mut notes: Vec<String>,
    method: &Method<'_>,
) -> Result<CyclePlan, PlanError> {
    notes.extend(overlay_offers(&mut rates, inputs.offers));
    let at = Hour::from_datetime(now);
    let Some(last) = usage.last_observed else {
        return Err(PlanError::Failed(format!(
            "{source}: no eligible usage rows to plan from"
        )));
    };
    // Hours after the last billed one are unknown to the forecaster (not zero usage); but
    // a source that stopped arriving would have the autopilot buy on old data. Refuse.
    let behind = at.since(last.plus(1));
    let allowed = i64::from(method.latency_hours) + STALE_SLACK_HOURS;
    if behind > allowed {
        return Err(PlanError::Failed(format!(
            "{source}: the newest billed hour is {} ({behind} hours before now), \
             more than billing_latency_hours = {} + {STALE_SLACK_HOURS}: \
             the data looks stale; not planning on old data",
            last.to_datetime().to_rfc3339(),
            method.latency_hours,
        )));
    }
    if at <= usage.range.start {
        return Err(PlanError::Failed(format!(
            "{source}: the usage starts at {}, after now",
            usage.range.start.to_datetime().to_rfc3339()
        )));
    }
    let mut out = decide(method, usage, at, &rates, existing, inputs, name, now)?;
    out.notes.extend(notes);
    Ok(out)
}

/// Prices the plan with the market's commitment offers where it has them; the note says how
/// many offers came from the market.
fn overlay_offers(rates: &mut RateCard, offers: Option<&RateCard>) -> Option<String> {
    let offers = offers?;
    let taken = rates.overlay_commitment_offers(offers);
    Some(format!(
        "{taken} commitment offers priced from the market's offerings ({} in its card; products the rate card has no on-demand price for are left out)",
        offers.len()
    ))
}

/// The optimizer's plan in the daemon's form: AWS purchases, AWS savings plan returns and AWS
/// convertible RI exchanges become proposals. `held` is the market's inventory: only what it
/// holds can be given up (a commitment only the source lists is a note, not a proposal).
/// Azure exchanges and returns stay notes: no market executes Azure exchanges, and Azure
/// returns are proposed by the look-back planner only. An AWS exchange is
/// proposed when it gives up whole reservations for one target configuration (AWS exchanges
/// whole RIs; splitting one first is not something commitd does), otherwise it is a note.
pub fn cycle_plan(
    plan: &Plan,
    now: DateTime<Utc>,
    digest: String,
    held: &[Commitment],
) -> CyclePlan {
    let mut notes = plan.notes.clone();
    let mut actions = Vec::new();
    let utilization = |a: &crate::domain::plan::Action| {
        // Policy judges utilization at the low demand quantile (P10), not on average.
        a.rationale
            .utilization_by_scenario
            .iter()
            .find(|(level, _)| (*level - crate::plan::demand::LEVELS[0]).abs() < 1e-9)
            .map_or(a.rationale.expected_utilization, |(_, u)| *u)
    };
    let savings = |a: &crate::domain::plan::Action| {
        Money::from_f64(a.rationale.expected_savings).unwrap_or(Money::ZERO)
    };
    for a in &plan.actions {
        let operation = match &a.kind {
            ActionKind::Purchase => Operation::Purchase,
            ActionKind::Exchange { source_id, .. } if a.provider != Provider::Aws => {
                notes.push(format!(
                    "exchange of {source_id} into {} {} not proposed: no market executes {} exchanges",
                    a.instrument, a.scope, a.provider
                ));
                continue;
            }
            ActionKind::Return { source_id, .. } if a.provider != Provider::Aws => {
                notes.push(format!(
                    "return of {} instances of {source_id} not proposed: the forecast planner leaves {} returns to the look-back planner (planner = \"lookback\")",
                    a.amount, a.provider
                ));
                continue;
            }
            ActionKind::Return { source_id, .. } => {
                let Some(c) = held.iter().find(|c| &c.id == source_id) else {
                    notes.push(format!(
                        "return of {source_id} not proposed: the market does not hold it"
                    ));
                    continue;
                };
                actions.push(PlannedAction {
                    operation: Operation::Return {
                        commitment_id: c.id.clone(),
                        hourly_cost_removed: c.hourly_cost,
                        instances: None,
                    },
                    spec: crate::domain::purchase::PurchaseSpec::of_held(c),
                    // A return commits nothing: policy limits on new spend see zero.
                    hourly_cost: Money::ZERO,
                    upfront: Money::ZERO,
                    expected_savings: savings(a),
                    expected_utilization: None,
                    summary: a.rationale.summary.clone(),
                });
                continue;
            }
            ActionKind::Exchange {
                source_id,
                source_count,
                source_value,
                true_up,
            } => {
                let targets = plan
                    .actions
                    .iter()
                    .filter(|b| matches!(&b.kind, ActionKind::Exchange { source_id: s, .. } if s == source_id))
                    .count();
                let whole = held.iter().find(|c| &c.id == source_id).is_some_and(|c| {
                    c.amount == crate::domain::CommitmentAmount::Instances(*source_count)
                });
                if targets != 1 || !whole {
                    notes.push(format!(
                        "exchange of {source_count} instances of {source_id} into {} {} not proposed: AWS exchanges whole reservations into the proposal's one target ({targets} targets, whole source: {whole})",
                        a.instrument, a.scope
                    ));
                    continue;
                }
                Operation::Exchange {
                    source_ids: vec![source_id.clone()],
                    source_value: *source_value,
                    true_up: *true_up,
                }
            }
        };
        // The one action -> purchase converter (shared with the backtest); an exchange's
        // target is converted as the purchase it amounts to.
        let as_purchase = crate::domain::plan::Action {
            kind: ActionKind::Purchase,
            ..a.clone()
        };
        let spec = match crate::plan::demand::purchase_spec(&as_purchase) {
            Ok(Some(spec)) => spec,
            Ok(None) => continue,
            Err(e) => {
                notes.push(format!("action not proposed: {e}"));
                continue;
            }
        };
        actions.push(PlannedAction {
            operation,
            spec,
            hourly_cost: a.hourly_cost,
            // Exchange: the optimizer's true-up paid now (the approval's ceiling on it).
            upfront: a.upfront,
            expected_savings: savings(a),
            expected_utilization: Some(utilization(a)),
            summary: a.rationale.summary.clone(),
        });
    }
    let expected_savings: Money = actions.iter().map(|a| a.expected_savings).sum();
    CyclePlan {
        plan_id: plan_id(now, &digest),
        inputs_digest: digest,
        solver_status: plan.solver.status.clone(),
        objective: Money::from_f64(plan.solver.rounded_objective).ok(),
        expected_savings: Some(expected_savings),
        expected: Some(Expected {
            esr: plan.expected.esr,
            coverage: plan.expected.coverage,
            utilization: plan.expected.utilization,
        }),
        actions,
        notes,
        unchanged: None,
        evidence: Vec::new(),
        commitment_use: Vec::new(),
        holds: Vec::new(),
        anomalies: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_plan_proposes_aws_returns_and_whole_exchanges_and_notes_the_rest() {
        use crate::domain::plan::{Action, AmountUnit, Rationale};
        use crate::domain::{ActionScope, CommitmentAmount, Term};
        let held = |id: &str, instrument: Instrument, provider: Provider, amount| Commitment {
            id: id.into(),
            provider,
            instrument,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            start: Hour(490_000),
            end: Hour(490_000 + 8_760),
            region: Some("us-east-1".into()),
            instance_type: Some("m5.large".into()),
            family: None,
            amount,
            hourly_cost: Money::from_units(2),
            upfront: Money::ZERO,
        };
        let existing = vec![
            held(
                "sp-1",
                Instrument::ComputeSavingsPlan,
                Provider::Aws,
                CommitmentAmount::HourlySpend(Money::from_units(2)),
            ),
            held(
                "ri-1",
                Instrument::ConvertibleReservedInstance,
                Provider::Aws,
                CommitmentAmount::Instances(4),
            ),
            held(
                "ri-2",
                Instrument::ConvertibleReservedInstance,
                Provider::Aws,
                CommitmentAmount::Instances(4),
            ),
            held(
                "az-1",
                Instrument::AzureReservation,
                Provider::Azure,
                CommitmentAmount::Instances(2),
            ),
        ];
        let action = |kind: ActionKind, provider: Provider, instrument: Instrument| Action {
            kind,
            provider,
            instrument,
            term_years: 1,
            payment_option: PaymentOption::NoUpfront,
            scope: ActionScope::Instances {
                region: "us-east-1".into(),
                instance_type: "c5.large".into(),
                flex_group: "c5".into(),
                os: "Linux".into(),
                tenancy: "Shared".into(),
            },
            amount: Decimal::from(6),
            unit: AmountUnit::Instances,
            start: Hour(490_100),
            hourly_cost: Money::from_units(3),
            upfront: Money::from_units(5),
            rationale: Rationale {
                expected_savings: 10.0,
                ..Rationale::default()
            },
        };
        let exchange = |source: &str, count: u32| ActionKind::Exchange {
            source_id: source.into(),
            source_count: count,
            source_value: Money::from_units(100),
            true_up: Money::from_units(5),
        };
        let ret = |source: &str| ActionKind::Return {
            source_id: source.into(),
            source_count: 1,
            refund: Money::ZERO,
        };
        let plan = Plan {
            actions: vec![
                action(ret("sp-1"), Provider::Aws, Instrument::ComputeSavingsPlan),
                action(
                    exchange("ri-1", 4),
                    Provider::Aws,
                    Instrument::ConvertibleReservedInstance,
                ),
                // Three of four instances: AWS exchanges whole reservations.
                action(
                    exchange("ri-2", 3),
                    Provider::Aws,
                    Instrument::ConvertibleReservedInstance,
                ),
                action(ret("az-1"), Provider::Azure, Instrument::AzureReservation),
            ],
            ..Plan::default()
        };
        let out = cycle_plan(&plan, Utc::now(), "d".repeat(64), &existing);
        assert_eq!(out.actions.len(), 2, "{:#?}", out.actions);
        let r = &out.actions[0];
        assert_eq!(
            r.operation,
            Operation::Return {
                commitment_id: "sp-1".into(),
                hourly_cost_removed: Money::from_units(2),
                instances: None,
            }
        );
        assert_eq!(r.hourly_cost, Money::ZERO, "a return commits nothing");
        assert_eq!(
            r.spec.amount,
            CommitmentAmount::HourlySpend(Money::from_units(2))
        );
        assert!(r.describe().starts_with("return sp-1"), "{}", r.describe());
        let x = &out.actions[1];
        assert!(
            matches!(&x.operation, Operation::Exchange { source_ids, .. } if source_ids == &["ri-1".to_string()])
        );
        assert_eq!(x.spec.instance_type.as_deref(), Some("c5.large"));
        assert_eq!(x.spec.amount, CommitmentAmount::Instances(6));
        assert_eq!(x.upfront, Money::from_units(5), "the true-up ceiling");
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("ri-2") && n.contains("whole")),
            "{:?}",
            out.notes
        );
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("az-1") && n.contains("not proposed")),
            "{:?}",
            out.notes
        );
        // Exchanges are planned unless an Azure reservation (not executable) is held.
        assert!(!exchanges_executable(&existing));
        assert!(exchanges_executable(&existing[..3]));
    }
}
