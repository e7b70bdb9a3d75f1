//! `commitd backtest`: replay commitd's rolling decisions over a scenario's evaluation window,
//! bill every hour, and compare with the baselines.

use crate::backtest::baselines::{CeQuarterly, ExistingOnly};
use crate::backtest::planner::{self, PlannerConfig};
use crate::backtest::report::Comparison;
use crate::backtest::{run as run_backtest, BacktestInput, Planner, Policy, Settings};
use crate::domain::Money;
use crate::ingest::Scenario;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Scenario directory (scenario.toml, usage, rates.csv, commitments.csv).
    #[arg(long)]
    pub scenario: PathBuf,
    /// Print the result as one JSON object (the backtest contract) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Hours between decisions.
    #[arg(long, default_value_t = 24)]
    pub cadence_hours: i64,
    /// Billing-data latency: a decision at t sees usage up to t - latency only.
    #[arg(long, default_value_t = 48)]
    pub latency_hours: i64,
    /// Laddering cap: most new commitment cost (USD per hour, amortized) per decision; default:
    /// a share of the recent on-demand-equivalent spend per hour (see docs/backtest.md).
    #[arg(long)]
    pub max_new_per_decision: Option<String>,
    /// commitd's planner: `ladder` (billing-driven quantile ladder) or `optimize` (forecast
    /// quantiles -> LP optimizer).
    #[arg(long, value_enum, default_value_t = PlannerKind::Ladder)]
    pub planner: PlannerKind,
    /// Ladder planner: quantile of the residual hourly usage that reservations cover.
    #[arg(long, default_value_t = 0.2)]
    pub reservation_quantile: f64,
    /// Ladder planner: share of that level bought as reservations (0 = savings plans only).
    #[arg(long, default_value_t = 1.0)]
    pub reservation_share: f64,
    /// Skip the baselines (only commitd's planner).
    #[arg(long)]
    pub no_baselines: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannerKind {
    Ladder,
    Optimize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let scenario = Scenario::load(&args.scenario)
        .with_context(|| format!("loading scenario {}", args.scenario.display()))?;
    let input = BacktestInput {
        name: scenario.name.clone(),
        window: scenario.window,
        usage: scenario.usage,
        rates: scenario.rates,
        existing: scenario.commitments,
    };
    let loaded = started.elapsed();
    let base = Settings {
        cadence_hours: args.cadence_hours,
        latency_hours: args.latency_hours,
        policy: Policy::default(),
    };
    let mut config = PlannerConfig {
        reservation_quantile: args.reservation_quantile,
        reservation_share: args.reservation_share,
        ..PlannerConfig::default()
    };
    if !(0.0..=1.0).contains(&config.reservation_quantile)
        || !(0.0..=1.0).contains(&config.reservation_share)
    {
        anyhow::bail!("--reservation-quantile and --reservation-share must be within 0..=1");
    }
    if let Some(cap) = &args.max_new_per_decision {
        config.cap_per_decision =
            Some(Money::parse(cap).with_context(|| format!("--max-new-per-decision '{cap}'"))?);
    }
    let (mut commitd, settings): (Box<dyn Planner>, Settings) = match args.planner {
        PlannerKind::Ladder => planner::commitd_planner(&input, &base, config)
            .context("setting up commitd's planner")?,
        PlannerKind::Optimize => {
            let (p, s) = planner::forecast_optimize_planner(
                &input,
                &base,
                planner::OptimizeConfig::default(),
                config.cap_share,
            )
            .context("setting up commitd's planner")?;
            (Box::new(p), s)
        }
    };
    let commitd_result = run_backtest(&input, commitd.as_mut(), &settings)
        .context("backtest of commitd's planner")?;
    let planned = started.elapsed();

    let mut baselines = Vec::new();
    if !args.no_baselines {
        let mut runs: Vec<Box<dyn Planner>> =
            vec![Box::new(ExistingOnly), Box::new(CeQuarterly::default())];
        if let Some(h) = planner::hindsight_static(&input) {
            runs.push(h);
        }
        for mut p in runs {
            let name = p.name().to_string();
            let r = run_backtest(&input, p.as_mut(), &base)
                .with_context(|| format!("backtest of baseline {name}"))?;
            baselines.push((name, r));
        }
    }
    let cmp = Comparison {
        scenario: input.name.clone(),
        settings: base,
        commitd: commitd_result,
        baselines,
    };
    if let Some(path) = &args.report {
        std::fs::write(path, cmp.to_html())
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    if args.json {
        let mut j = cmp.to_json();
        j["seconds"] = serde_json::json!({
            "load": loaded.as_secs_f64(),
            "commitd": (planned - loaded).as_secs_f64(),
            "total": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print!("{}", cmp.to_text());
        eprintln!(
            "(loaded in {:.1} s, commitd's replay {:.1} s, total {:.1} s)",
            loaded.as_secs_f64(),
            (planned - loaded).as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
