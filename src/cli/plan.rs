//! `commitd plan`: the purchase plan for a scenario at a decision time, with its rationale, as a
//! readable table or as JSON (the serde form of [`crate::domain::Plan`], which the audit store
//! records as it is).
//!
//! Demand: the forecaster's P10/P50/P90 paths per usage group from the history before `--at`
//! (a group the forecaster cannot fit falls back to seasonal-naive paths: the quantiles of the
//! same hour of the week over the last four weeks, and the plan says so); `--seasonal-naive`
//! uses those for every group; `--hindsight` plans on the actual demand after `--at` instead
//! (the backtest's `hindsight_static` baseline).
//!
//! The plan is recorded in the audit store as a `plan_computed` event (the event the daemon
//! records for each plan), in the database the other commands use (`--config`, `--database`,
//! `--data-dir`, as `commitd audit`), before it is printed: a printed plan is a recorded one.
//! `--no-record` skips that (nothing is written, no database is opened).

use crate::audit::{Amount, AuditLog, NewEvent, PlanComputed};
use crate::cli::audit::{database_url, DbArgs};
use crate::config::Config;
use crate::domain::{ActionKind, Hour, Money, PaymentOption, Plan, Term};
use crate::optimize::{Constraints, MinUtilization, Options};
use crate::plan::demand::{plan_at, DemandSource, LEVELS};
use crate::plan::digest::{inputs_digest, Inputs};
use crate::store::Store;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A scenario directory (scenario.toml, usage, rates, commitments).
    #[arg(long, value_name = "DIR")]
    pub scenario: PathBuf,
    /// Decision time (RFC 3339); default: the scenario's decision_time.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Planning window in hours from the decision time.
    #[arg(long, default_value_t = 8760)]
    pub horizon: usize,
    /// Plan on the actual demand after --at (hindsight mode) instead of the seasonal-naive paths.
    #[arg(long)]
    pub hindsight: bool,
    /// Seasonal-naive demand for every group instead of the forecaster's quantiles.
    #[arg(long, conflicts_with = "hindsight")]
    pub seasonal_naive: bool,
    /// Allow 3-year terms (the scored policy allows 1-year terms only).
    #[arg(long)]
    pub allow_three_year: bool,
    /// Only these payment options (comma-separated, e.g. NoUpfront).
    #[arg(long, value_delimiter = ',')]
    pub payments: Vec<String>,
    /// Cap on the new commitments' summed amortized hourly cost (USD/hour).
    #[arg(long, value_name = "USD")]
    pub max_new_hourly: Option<String>,
    /// Cap on the new commitments' summed upfront payments (USD).
    #[arg(long, value_name = "USD")]
    pub max_upfront: Option<String>,
    /// Minimum expected utilization of each new commitment at P10 demand, e.g. 0.97.
    #[arg(long)]
    pub min_utilization: Option<f64>,
    /// Expected coverage cap (share of on-demand-equivalent cost), e.g. 0.8.
    #[arg(long)]
    pub max_coverage: Option<f64>,
    /// Solve the full model (every hour) instead of the reduced one.
    #[arg(long)]
    pub full: bool,
    /// Budget of coverage columns for the reduced model.
    #[arg(long, default_value_t = Options::default().max_coverage_columns)]
    pub max_columns: usize,
    /// One JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Do not record the plan in the audit store.
    #[arg(long)]
    pub no_record: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scenario = crate::sources::load_scenario(&args.scenario)
        .with_context(|| format!("loading scenario {}", args.scenario.display()))?;
    let at = match &args.at {
        Some(t) => Hour::parse(t).with_context(|| format!("--at '{t}'"))?,
        None => scenario.window.decision_time,
    };
    let demand = if args.hindsight {
        DemandSource::Hindsight
    } else if args.seasonal_naive {
        DemandSource::SeasonalNaive
    } else {
        DemandSource::Forecast
    };
    let source = demand.describe();
    let constraints = constraints(&args)?;
    let options = Options {
        reduce: !args.full,
        max_coverage_columns: args.max_columns,
        ..Options::default()
    };
    let started = Instant::now();
    let plan = plan_at(
        &scenario.usage,
        at,
        args.horizon,
        demand,
        &scenario.rates,
        &scenario.commitments,
        &constraints,
        &options,
    )
    .with_context(|| format!("planning {} at {at}", scenario.name))?;
    let seconds = started.elapsed().as_secs_f64();
    if !args.no_record {
        // What the plan saw: the usage its demand reads (the history before --at, or all of
        // it in hindsight), the rates, the commitments held, the bounds and how it planned.
        let digest = inputs_digest(&Inputs {
            source: &scenario.name,
            at,
            usage: &demand.reads(&scenario.usage, at),
            rates: &scenario.rates,
            portfolio: &scenario.commitments,
            bounds: &constraints,
            method: &serde_json::json!({
                "demand": demand,
                "horizon_hours": args.horizon,
                "options": options,
            }),
        })
        .map_err(anyhow::Error::msg)?;
        let (id, plan_id, url) = record(&args.db, &plan, &digest, &scenario.name, at, source)?;
        eprintln!("recorded as audit event {id} ({plan_id}) in {url}");
    }
    if args.json {
        let mut v = serde_json::to_value(&plan)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("scenario".into(), scenario.name.clone().into());
            obj.insert("at".into(), at.to_string().into());
            obj.insert("demand".into(), source.into());
            obj.insert("plan_seconds".into(), seconds.into());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&scenario.name, at, source, &plan, seconds);
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends the `plan_computed` event; returns its id, the plan id and the (redacted) URL.
fn record(
    db: &DbArgs,
    plan: &Plan,
    digest: &str,
    scenario: &str,
    at: Hour,
    source: &str,
) -> anyhow::Result<(i64, String, String)> {
    let config = Config::load(db.config.as_deref())?;
    let url = database_url(db.database_url.as_deref(), db.data_dir.as_deref(), config);
    let shown = crate::dburl::redact_url(&url);
    let now = chrono::Utc::now();
    let plan_id = crate::service::plan::plan_id(now, digest);
    // Expected savings of the plan: the cost without it minus the cost with it (exact Money).
    let savings = plan.expected.cost_without_plan - plan.expected.cost;
    let actor = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "commitd-cli".to_string());
    let event = NewEvent::new(
        now,
        actor,
        &plan_id,
        PlanComputed {
            plan_id: plan_id.clone(),
            inputs_digest: digest.to_string(),
            solver_status: plan.solver.status.clone(),
            objective: Money::from_f64(plan.solver.rounded_objective).ok(),
            expected_savings: Some(savings),
            actions: u32::try_from(plan.actions.len()).unwrap_or(u32::MAX),
        },
    )
    .with_amount(Amount::usd(savings))
    .with_rationale(serde_json::json!({
        "source": "commitd plan",
        "scenario": scenario,
        "at": at.to_string(),
        "demand": source,
        "expected": plan.expected,
        "solver": plan.solver,
        "actions": plan.actions,
        "notes": plan.notes,
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let id = runtime.block_on(async {
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("opening the audit store {shown}"))?;
        let event = AuditLog::open(store)
            .append(event)
            .await
            .with_context(|| format!("recording the plan in {shown}"))?;
        anyhow::Ok(event.id)
    })?;
    Ok((id, plan_id, shown))
}

fn constraints(args: &Args) -> anyhow::Result<Constraints> {
    let mut c = if args.allow_three_year {
        Constraints::permissive()
    } else {
        Constraints::one_year_only()
    };
    if args.allow_three_year {
        // Lock-in preference: 3 years only for at least 1% of on-demand cost more savings.
        c.three_year_min_extra_savings = 0.01;
    }
    if !args.payments.is_empty() {
        let payments = args
            .payments
            .iter()
            .map(|p| PaymentOption::parse(p).with_context(|| format!("--payments '{p}'")))
            .collect::<anyhow::Result<std::collections::BTreeSet<_>>>()?;
        for p in c.providers.values_mut() {
            p.payments = payments.clone();
        }
    }
    let money = |v: &Option<String>, what: &str| {
        v.as_deref()
            .map(|t| Money::parse(t).with_context(|| format!("--{what} '{t}'")))
            .transpose()
    };
    c.max_new_hourly = money(&args.max_new_hourly, "max-new-hourly")?;
    c.max_upfront = money(&args.max_upfront, "max-upfront")?;
    c.max_coverage = args.max_coverage;
    c.min_utilization = args.min_utilization.map(|min| MinUtilization {
        level: LEVELS[0],
        min,
    });
    Ok(c)
}

/// A float amount of USD (the optimizer's figures) as people read it; exact figures are in
/// `--json` and the audit log.
fn for_people(usd: f64) -> String {
    Money::from_f64(usd).map_or_else(|_| format!("{usd:.2} USD"), Money::for_people)
}

fn print_table(name: &str, at: Hour, source: &str, plan: &Plan, seconds: f64) {
    println!("plan for {name} at {at}");
    println!("demand: {source}");
    if plan.actions.is_empty() {
        println!("\nno purchase: nothing beats on demand within the policy");
    } else {
        println!(
            "\n{:<3} {:<8} {:<9} {:<28} {:<4} {:<15} {:<34} {:>12} {:<9} {:>13} {:>16} {:>6} {:>6} {:>16} {:>16}",
            "#", "action", "provider", "instrument", "term", "payment", "scope", "amount", "unit",
            "per hour", "upfront", "util", "brkevn", "savings", "if removed"
        );
        for (i, a) in plan.actions.iter().enumerate() {
            let r = &a.rationale;
            println!(
                "{:<3} {:<8} {:<9} {:<28} {:<4} {:<15} {:<34} {:>12} {:<9} {:>13} {:>16} {:>5.1}% {:>5.1}% {:>16} {:>16}",
                i + 1,
                match &a.kind {
                    ActionKind::Purchase => "buy",
                    ActionKind::Exchange { .. } => "exchange",
                    ActionKind::Return { .. } => "return",
                },
                a.provider.to_string(),
                a.instrument.to_string(),
                Term::from_years(a.term_years)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                a.payment_option.to_string(),
                a.scope.to_string(),
                a.amount.to_string(),
                a.unit.to_string(),
                a.hourly_cost.for_people(),
                a.upfront.for_people(),
                r.expected_utilization * 100.0,
                r.breakeven_utilization * 100.0,
                for_people(r.expected_savings),
                r.value_if_removed
                    .map(for_people)
                    .unwrap_or_else(|| "-".into()),
            );
        }
        println!("\nwhy:");
        for (i, a) in plan.actions.iter().enumerate() {
            println!(
                "{:>3}. {} (one more unit is worth {} and costs {} over the window)",
                i + 1,
                a.rationale.summary,
                for_people(a.rationale.marginal_value_per_unit),
                for_people(a.rationale.marginal_cost_per_unit)
            );
        }
    }
    let e = &plan.expected;
    println!(
        "\nexpected over {} h: cost {} vs on-demand {} (without this plan {}); ESR {:.2}%, coverage {:.1}%, utilization {:.1}%",
        plan.window.map(|w| w.len()).unwrap_or(0),
        e.cost.for_people(),
        e.on_demand_cost.for_people(),
        e.cost_without_plan.for_people(),
        e.esr * 100.0,
        e.coverage * 100.0,
        e.utilization * 100.0
    );
    println!(
        "new commitments: {} per hour, {} upfront",
        e.new_hourly_commitment.for_people(),
        e.new_upfront.for_people()
    );
    let s = &plan.solver;
    println!(
        "solver: {} ; {} points -> {} ; {} columns x {} rows ; {} solves ; forecast and solve {:.1} s",
        s.status, s.points, s.reduced_points, s.columns, s.rows, s.solves, seconds
    );
    for n in &plan.notes {
        println!("note: {n}");
    }
}
