//! `commitd backtest`: replay commitd's rolling decisions over a scenario's evaluation window,
//! bill every hour, and compare with the baselines.

use crate::backtest::baselines::{CeQuarterly, ExistingOnly};
use crate::backtest::report::Comparison;
use crate::backtest::{run as run_backtest, BacktestInput, RunResult, Settings};
use crate::domain::rules::Marketplace;
use crate::domain::Money;
use crate::plan::{self as planner, Planner, PlannerConfig, Policy};
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
    /// The planner and its tuning, as TOML: the same `PlannerConfig` the daemon reads from
    /// `[planner]` in commitd.toml (`kind = "lookback"`, `[lookback]`, `[ladder]`,
    /// `[forecast]`; unknown keys are refused). The flags below override it.
    #[arg(long)]
    pub planner_config: Option<PathBuf>,
    /// Replay within the guardrails of this policy directory (what the daemon's `policies_dir`
    /// holds): the instruments, terms and payment options it allows, its cap on new hourly
    /// commitment and its utilization floor, as the daemon plans within them; and each
    /// decision's actions judged by the policies as the daemon judges a cycle's, what they
    /// block left out (and listed in the report). Default: the benchmark policy (1-year
    /// terms, any instrument and payment option, no floor, no per-action judgment).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// commitd's planner: `lookback` (the optimizer on the recent look-back; the default),
    /// `ladder` (billing-driven quantile ladder) or `optimize` (forecast quantiles -> LP
    /// optimizer); overrides the `kind` of `--planner-config`. See docs/backtest.md.
    #[arg(long, value_enum)]
    pub planner: Option<PlannerKind>,
    /// Ladder planner: quantile of the residual hourly usage that reservations cover
    /// (default: docs/backtest.md).
    #[arg(long)]
    pub reservation_quantile: Option<f64>,
    /// Ladder planner: share of that level bought as reservations (0 = savings plans only).
    #[arg(long)]
    pub reservation_share: Option<f64>,
    /// Ladder planner: look-back windows in days, comma-separated; a level must hold in all.
    #[arg(long, value_delimiter = ',')]
    pub windows_days: Option<Vec<u32>>,
    /// Ladder planner: savings plans must have been used at least this much (0..1) over every
    /// look-back window.
    #[arg(long)]
    pub sp_min_utilization: Option<f64>,
    /// Ladder planner: a group whose last week averages under this share of its longest
    /// window's mean gets no reservation.
    #[arg(long)]
    pub decline_ratio: Option<f64>,
    /// Ladder planner: per-decision cap as a share of the history's on-demand-equivalent spend
    /// per hour.
    #[arg(long)]
    pub cap_share: Option<f64>,
    /// Ladder planner: hedge against family migrations (true/false; see docs/backtest.md).
    #[arg(long)]
    pub generation_hedge: Option<bool>,
    /// Ladder planner: hedge against moves between regions (true/false; see docs/backtest.md).
    #[arg(long)]
    pub region_hedge: Option<bool>,
    /// Ladder planner: days of daily means the trend guard fits (0 = off).
    #[arg(long)]
    pub trend_days: Option<usize>,
    /// Ladder planner: days ahead the trend guard projects a decline.
    #[arg(long)]
    pub trend_horizon_days: Option<f64>,
    /// Look-back planner: days of known usage the optimizer treats as the demand to come.
    #[arg(long)]
    pub lookback_days: Option<usize>,
    /// Look-back planner: new commitments must be used at least this much (0..1) over the
    /// look-back (0 = no floor).
    #[arg(long)]
    pub lookback_min_utilization: Option<f64>,
    /// Look-back planner: the optimizer's budget of coverage columns per solve.
    #[arg(long)]
    pub lookback_columns: Option<usize>,
    /// Look-back planner: the optimizer's refinement rounds per solve.
    #[arg(long)]
    pub lookback_refine: Option<usize>,
    /// Look-back planner: at least this many demand points per solve (the floor that sets the
    /// LP's size once hundreds of groups spend the column budget).
    #[arg(long)]
    pub lookback_min_points: Option<usize>,
    /// Look-back planner: solve only when the uncovered usage rose by this share of the recent
    /// on-demand spend (0 = solve every `--lookback-resolve-days`).
    #[arg(long)]
    pub lookback_trigger: Option<f64>,
    /// Look-back planner: days between solves (with the trigger: the longest wait).
    #[arg(long)]
    pub lookback_resolve_days: Option<usize>,
    /// Look-back planner: share (0..1) the look-back is scaled down by before it is optimized.
    #[arg(long)]
    pub lookback_haircut: Option<f64>,
    /// Look-back planner: optimize the usage the held commitments leave uncovered (true/false).
    #[arg(long)]
    pub lookback_residual: Option<bool>,
    /// Look-back planner, residual mode: let the optimizer allocate the held savings plans as
    /// existing commitments (false, the default: a reservation bought now takes their usage, as
    /// in the bill) or bill them into the residual with the reservations (true).
    #[arg(long)]
    pub lookback_residual_savings_plans: Option<bool>,
    /// Look-back planner: the whole portfolio (held and new commitments, money-weighted) must be
    /// used at least this much (0..1) over the look-back (0 = no such floor).
    #[arg(long)]
    pub lookback_total_utilization: Option<f64>,
    /// Look-back planner: buy usage that moved between related groups (a newer generation, another
    /// region) at its new place at once (true/false; default true).
    #[arg(long)]
    pub lookback_follow_moves: Option<bool>,
    /// Look-back planner: exchange Azure reservations left idle for the reservations a decision
    /// buys, and buy reservations for groups the hedges would leave to savings plans, since an
    /// exchange can follow the usage when it moves (true/false; default true).
    #[arg(long)]
    pub lookback_exchanges: Option<bool>,
    /// Look-back planner: return Azure reservations left idle that no purchase absorbs, for a
    /// refund within the USD 50,000 rolling 12-month cap (true/false; default true).
    #[arg(long)]
    pub lookback_returns: Option<bool>,
    /// Look-back planner: list AWS Standard RIs left idle on the Reserved Instance Marketplace
    /// (true/false; default true). What a sale brings in is the market model's (below).
    #[arg(long)]
    pub lookback_sales: Option<bool>,
    /// Look-back planner: scale a decision's new savings plans down until what they add to the
    /// use of all savings plans over the look-back is at least this share of their commitment,
    /// the held plans included (0 = off; default 0.85). The optimizer's own floor holds each new
    /// plan alone, and could be met by leaving a held plan idle.
    #[arg(long)]
    pub lookback_trim_floor: Option<f64>,
    /// Look-back planner: after rounding to whole instances, the optimizer sizes the savings
    /// plans again next to them, so that usage a fraction of an instance wide is not left on
    /// demand (true/false; default true).
    #[arg(long)]
    pub lookback_resize_plans: Option<bool>,
    /// Look-back planner: give up a held reservation (return, exchange or sale, as for idle
    /// ones) when the rest of the portfolio covers its usage: the on-demand cost it would add
    /// over the last week is at most this share of what giving it up saves (0 = off; default
    /// 0.5).
    #[arg(long)]
    pub lookback_redundant_share: Option<f64>,
    /// Look-back planner: when a group's usage is moving to a related group (another region,
    /// a newer generation), judge its reservations idle on the fade projected to when giving
    /// them up takes effect (a Marketplace sale: two weeks later), so that they are listed
    /// while the move is under way (true/false; default true).
    #[arg(long)]
    pub lookback_anticipate_moves: Option<bool>,
    /// Look-back planner: the utilization the portfolio is steered to; each solve's per-pool
    /// floor moves by the gap between this and what the portfolio made of the last four known
    /// weeks (0..=1, 0 = off; default 0.97).
    #[arg(long)]
    pub lookback_utilization_target: Option<f64>,
    /// Marketplace model: days from listing an RI to its sale (it applies and bills until then).
    /// An assumption: no backtest can know when a listing sells.
    #[arg(long, default_value_t = 14)]
    pub ri_sale_days: u32,
    /// Marketplace model: asking price as a share (0..1) of the pro rata upfront of the RI's
    /// whole months left; AWS keeps 12% of it. An assumption, like the delay.
    #[arg(long, default_value_t = 0.9)]
    pub ri_sale_price: f64,
    /// Skip the baselines (only commitd's planner).
    #[arg(long)]
    pub no_baselines: bool,
    /// hindsight_static baseline: budget of coverage columns its year of hours is reduced to
    /// before the LP is solved (more is closer to the exact optimum, and slower).
    #[arg(long, default_value_t = planner::HindsightConfig::default().max_columns)]
    pub hindsight_columns: usize,
    /// hindsight_static baseline: rounds of refinement of the reduced hours around the
    /// solution (0 = none).
    #[arg(long, default_value_t = planner::HindsightConfig::default().refine_rounds)]
    pub hindsight_refine: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannerKind {
    Ladder,
    Optimize,
    Lookback,
}

impl From<PlannerKind> for planner::PlannerKind {
    fn from(k: PlannerKind) -> Self {
        match k {
            PlannerKind::Ladder => planner::PlannerKind::Ladder,
            PlannerKind::Optimize => planner::PlannerKind::Forecast,
            PlannerKind::Lookback => planner::PlannerKind::Lookback,
        }
    }
}

/// The planner's configuration: `--planner-config` (else the defaults), with what the flags
/// override. Bad values are refused before anything runs.
fn planner_config(args: &Args) -> anyhow::Result<PlannerConfig> {
    let mut config = match &args.planner_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --planner-config {}", path.display()))?;
            read_planner_config(&text)
                .with_context(|| format!("--planner-config {}", path.display()))?
        }
        None => PlannerConfig::default(),
    };
    if let Some(kind) = args.planner {
        config.kind = kind.into();
    }
    ladder_config(args, &mut config.ladder)?;
    lookback_config(args, &mut config.lookback)?;
    config
        .validate()
        .with_context(|| match &args.planner_config {
            Some(p) => format!("--planner-config {}", p.display()),
            None => "the planner's configuration".to_string(),
        })?;
    Ok(config)
}

/// A `PlannerConfig` from TOML: a file of its own (`kind`, `[lookback]`, ...), or the daemon's
/// `commitd.toml`, whose `[planner]` table is read and the rest ignored, so that the backtest
/// can be pointed at the configuration the daemon runs.
fn read_planner_config(text: &str) -> Result<PlannerConfig, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct Daemon {
        planner: PlannerConfig,
        #[serde(flatten)]
        _rest: toml::Table,
    }
    let whole: toml::Table = toml::from_str(text)?;
    if whole.get("planner").is_some_and(toml::Value::is_table) {
        Ok(toml::from_str::<Daemon>(text)?.planner)
    } else {
        toml::from_str(text)
    }
}

/// The ladder's tuning (also the look-back planner's guards and cap), with what the flags
/// override.
fn ladder_config(args: &Args, c: &mut planner::LadderConfig) -> anyhow::Result<()> {
    share(
        "reservation-quantile",
        args.reservation_quantile,
        &mut c.reservation_quantile,
    )?;
    share(
        "reservation-share",
        args.reservation_share,
        &mut c.reservation_share,
    )?;
    share(
        "sp-min-utilization",
        args.sp_min_utilization,
        &mut c.savings_plan_min_utilization,
    )?;
    share("decline-ratio", args.decline_ratio, &mut c.decline_ratio)?;
    share("cap-share", args.cap_share, &mut c.cap_share)?;
    if let Some(days) = &args.windows_days {
        if days.is_empty() || days.iter().any(|&d| d == 0 || d > 366) {
            anyhow::bail!("--windows-days needs 1 to 366 days each, got {days:?}");
        }
        c.windows = days.iter().map(|&d| d as usize * 24).collect();
    }
    if let Some(h) = args.generation_hedge {
        c.generation_hedge = h;
    }
    if let Some(h) = args.region_hedge {
        c.region_hedge = h;
    }
    if let Some(d) = args.trend_days {
        if d != 0 && !(7..=366).contains(&d) {
            anyhow::bail!("--trend-days must be 0 (off) or 7 to 366, got {d}");
        }
        c.trend_days = d;
    }
    if let Some(h) = args.trend_horizon_days {
        if !(0.0..=3660.0).contains(&h) {
            anyhow::bail!("--trend-horizon-days must be within 0..=3660, got {h}");
        }
        c.trend_horizon_days = h;
    }
    if let Some(cap) = &args.max_new_per_decision {
        c.cap_per_decision =
            Some(Money::parse(cap).with_context(|| format!("--max-new-per-decision '{cap}'"))?);
    }
    Ok(())
}

/// Sets `into` to the flag `--name`'s value `v`, if given, when it is a share (0..=1); else the
/// error names the flag and the value.
fn share(name: &str, v: Option<f64>, into: &mut f64) -> anyhow::Result<()> {
    if let Some(v) = v {
        if !(0.0..=1.0).contains(&v) {
            anyhow::bail!("--{name} must be within 0..=1, got {v}");
        }
        *into = v;
    }
    Ok(())
}

/// The look-back planner's tuning, with what the flags override.
fn lookback_config(args: &Args, lb: &mut planner::LookbackConfig) -> anyhow::Result<()> {
    if let Some(d) = args.lookback_days {
        if !(14..=366).contains(&d) {
            anyhow::bail!("--lookback-days must be within 14..=366, got {d}");
        }
        lb.window_days = d;
    }
    share(
        "lookback-min-utilization",
        args.lookback_min_utilization,
        &mut lb.min_utilization,
    )?;
    if let Some(c) = args.lookback_columns {
        if c == 0 {
            anyhow::bail!("--lookback-columns must be positive");
        }
        lb.max_columns = c;
    }
    if let Some(p) = args.lookback_min_points {
        if p == 0 {
            anyhow::bail!("--lookback-min-points must be positive");
        }
        lb.min_points = p;
    }
    if let Some(r) = args.lookback_refine {
        lb.refine_rounds = r;
    }
    share(
        "lookback-trigger",
        args.lookback_trigger,
        &mut lb.trigger_share,
    )?;
    if let Some(h) = args.lookback_haircut {
        if !(0.0..1.0).contains(&h) {
            anyhow::bail!("--lookback-haircut must be within 0..1, got {h}");
        }
        lb.haircut = h;
    }
    if let Some(m) = args.lookback_follow_moves {
        lb.follow_moves = m;
    }
    if let Some(x) = args.lookback_exchanges {
        lb.exchanges = x;
    }
    if let Some(x) = args.lookback_returns {
        lb.returns = x;
    }
    if let Some(x) = args.lookback_sales {
        lb.sales = x;
    }
    share(
        "lookback-trim-floor",
        args.lookback_trim_floor,
        &mut lb.trim_floor,
    )?;
    share(
        "lookback-redundant-share",
        args.lookback_redundant_share,
        &mut lb.redundant_share,
    )?;
    share(
        "lookback-utilization-target",
        args.lookback_utilization_target,
        &mut lb.utilization_target,
    )?;
    if let Some(x) = args.lookback_anticipate_moves {
        lb.anticipate_moves = x;
    }
    if let Some(x) = args.lookback_resize_plans {
        lb.resize_plans = x;
    }
    if let Some(r) = args.lookback_residual_savings_plans {
        lb.residual_savings_plans = r;
    }
    if let Some(r) = args.lookback_residual {
        lb.residual = r;
    }
    share(
        "lookback-total-utilization",
        args.lookback_total_utilization,
        &mut lb.total_utilization,
    )?;
    if let Some(d) = args.lookback_resolve_days {
        if !(1..=366).contains(&d) {
            anyhow::bail!("--lookback-resolve-days must be within 1..=366, got {d}");
        }
        lb.resolve_days = d;
    }
    Ok(())
}

/// One baseline's replay: its name, its result and the seconds it took.
fn replay_baseline(
    input: &BacktestInput,
    mut baseline: Box<dyn Planner>,
    base: &Settings,
) -> anyhow::Result<(String, RunResult, f64)> {
    let started = Instant::now();
    let name = baseline.name().to_string();
    let r = run_backtest(input, baseline.as_mut(), base)
        .with_context(|| format!("backtest of baseline {name}"))?;
    Ok((name, r, started.elapsed().as_secs_f64()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = planner_config(&args)?;
    if !(0.0..=1.0).contains(&args.ri_sale_price) {
        anyhow::bail!(
            "--ri-sale-price must be a share between 0 and 1, got {}",
            args.ri_sale_price
        );
    }
    let scenario = crate::sources::load_scenario(&args.scenario)
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
        policy: Policy {
            ri_marketplace: Marketplace {
                sale_delay_hours: args.ri_sale_days as i64 * 24,
                price_bp: (args.ri_sale_price * 10_000.0).round() as u32,
                ..Marketplace::default()
            },
            ..Policy::default()
        },
        policies: None,
    };
    let (bounds, policies) = match &args.policies {
        Some(dir) => {
            let set = crate::sources::policies::load_dir(dir)
                .with_context(|| format!("--policies {}", dir.display()))?;
            (crate::sources::policies::bounds_of(&set), Some(set))
        }
        None => (crate::optimize::Constraints::one_year_only(), None),
    };
    let hindsight = planner::HindsightConfig {
        max_columns: args.hindsight_columns,
        refine_rounds: args.hindsight_refine,
    };
    // hindsight_static is one large LP and takes longer than everything else together, so it
    // runs on its own thread while commitd and the other baselines replay on this one.
    let (commitd, planner_stats, planned, mut baselines, hindsight_run) =
        std::thread::scope(|scope| -> anyhow::Result<_> {
            let oracle = (!args.no_baselines).then(|| {
                let (input, base) = (&input, &base);
                scope.spawn(move || {
                    let oracle = planner::hindsight_static(&input.usage, input.window, hindsight);
                    replay_baseline(input, oracle, base).map(Some)
                })
            });
            let (mut commitd, mut settings) =
                crate::backtest::commitd_planner(&input, &base, &config, &bounds)
                    .context("setting up commitd's planner")?;
            // commitd's replay is judged by the policies, action by action, as the daemon
            // judges its cycles; the baselines (other tools) are not.
            settings.policies = policies;
            commitd.set_stopwatch(crate::telemetry::since_start);
            let commitd_result = run_backtest(&input, commitd.as_mut(), &settings)
                .context("backtest of commitd's planner")?;
            let planned = started.elapsed();
            let mut baselines = Vec::new();
            if !args.no_baselines {
                let runs: Vec<Box<dyn Planner>> =
                    vec![Box::new(ExistingOnly), Box::new(CeQuarterly::default())];
                for p in runs {
                    baselines.push(replay_baseline(&input, p, &base)?);
                }
            }
            let oracle = match oracle {
                Some(h) => h.join().map_err(|_| {
                    anyhow::anyhow!("the hindsight_static baseline's thread panicked")
                })??,
                None => None,
            };
            Ok((commitd_result, commitd.stats(), planned, baselines, oracle))
        })?;
    baselines.extend(hindsight_run);
    let seconds: serde_json::Map<String, serde_json::Value> = baselines
        .iter()
        .map(|(name, _, s)| (name.clone(), serde_json::json!(s)))
        .collect();
    let baselines = baselines.into_iter().map(|(n, r, _)| (n, r)).collect();
    let cmp = Comparison {
        scenario: input.name.clone(),
        settings: base,
        commitd,
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
            "baselines": seconds,
        });
        if !planner_stats.is_null() {
            j["planner_stats"] = planner_stats;
        }
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print!("{}", cmp.to_text());
        let baselines: String = seconds
            .iter()
            .map(|(name, s)| format!(", {name} {:.1} s", s.as_f64().unwrap_or(0.0)))
            .collect();
        eprintln!(
            "(loaded in {:.1} s, commitd's replay {:.1} s{baselines}, total {:.1} s)",
            loaded.as_secs_f64(),
            (planned - loaded).as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        if !planner_stats.is_null() {
            eprintln!("(planner: {planner_stats})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
