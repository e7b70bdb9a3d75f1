//! `commitd-dev bench-optimize`: times the optimizer on synthetic demand of a given size.
//!
//! The optimizer itself has no clock (pure core); this command times it from the outside and
//! reads the process's peak resident memory (Linux `/proc/self/status` VmHWM).

use commitd_core::optimize::{self, synthetic, Constraints, Options};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Usage groups (about one in ten on Azure).
    #[arg(long, default_value_t = 500)]
    pub groups: usize,
    /// Hours in the planning window.
    #[arg(long, default_value_t = 8760)]
    pub hours: usize,
    /// Quantile levels of the demand scenarios, e.g. "0.1,0.5,0.9" (default: one scenario).
    #[arg(long, value_delimiter = ',')]
    pub levels: Vec<f64>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Solve the full model (every hour of every scenario) instead of the reduced one.
    #[arg(long)]
    pub full: bool,
    /// Budget of coverage columns for the reduced model.
    #[arg(long, default_value_t = Options::default().max_coverage_columns)]
    pub max_columns: usize,
    /// At least this many points per segment when reducing, shared by the scenarios (Options::min_points).
    #[arg(long, default_value_t = Options::default().min_points)]
    pub min_points: usize,
    /// Refinement rounds (Options::refine_rounds).
    #[arg(long, default_value_t = Options::default().refine_rounds)]
    pub refine_rounds: usize,
    /// Buckets split per refinement round, as a share of the first reduction's points.
    #[arg(long, default_value_t = Options::default().refine_share)]
    pub refine_share: f64,
    /// Re-solves for the actions' marginal values.
    #[arg(long, default_value_t = Options::default().marginal_resolves)]
    pub marginal_resolves: usize,
    /// Allow 3-year terms too (the scored policy is 1-year only).
    #[arg(long)]
    pub three_year: bool,
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Warm-start the refinement rounds and the fixed solves from the previous solution
    /// (Options::warm_start; off by default, see docs/benchmarks/optimize.md).
    #[arg(long)]
    pub warm_start: bool,
    /// Instead of synthetic demand: a scenario directory, planned with the reduced and the full
    /// model to compare their objectives; in hindsight mode (actual demand of the year after
    /// its decision time), or with `--levels` on the forecaster's quantile paths at those levels.
    #[arg(long, value_name = "DIR")]
    pub scenario: Option<std::path::PathBuf>,
    /// With `--scenario`: solve only the reduced model (the full model's objective does not
    /// depend on the reduction's options; solve it once and compare by hand).
    #[arg(long, requires = "scenario")]
    pub reduced_only: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Peak resident set size of this process in MiB, if the OS tells.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.scenario {
        return compare_on_scenario(dir, &args);
    }
    let t0 = Instant::now();
    let (demand, rates) = synthetic::generate(&synthetic::Spec {
        groups: args.groups,
        hours: args.hours,
        levels: args.levels.clone(),
        seed: args.seed,
        ..Default::default()
    });
    let generate_s = t0.elapsed().as_secs_f64();
    let constraints = if args.three_year {
        Constraints::permissive()
    } else {
        Constraints::one_year_only()
    };
    let options = Options {
        reduce: !args.full,
        max_coverage_columns: args.max_columns,
        marginal_resolves: args.marginal_resolves,
        min_points: args.min_points,
        refine_rounds: args.refine_rounds,
        refine_share: args.refine_share,
        threads: args.threads,
        warm_start: args.warm_start,
        ..Options::default()
    };
    let t1 = Instant::now();
    let plan = optimize::optimize(&demand, &rates, &[], &constraints, &options)?;
    let solve_s = t1.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    let s = &plan.solver;
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    if args.json {
        let v = serde_json::json!({
            "groups": args.groups, "hours": args.hours, "scenarios": demand.scenarios.len(),
            "full_model": args.full, "profile": profile, "threads": args.threads,
            "points": s.points, "reduced_points": s.reduced_points,
            "columns": s.columns, "rows": s.rows, "solves": s.solves,
            "objective": s.objective, "rounded_objective": s.rounded_objective,
            "on_demand_cost": plan.expected.on_demand_cost, "esr": plan.expected.esr,
            "actions": plan.actions.len(),
            "generate_seconds": generate_s, "optimize_seconds": solve_s,
            "peak_rss_mib": rss,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "groups {} x hours {} x scenarios {} ({} model, {profile} profile, {} threads)",
            args.groups,
            args.hours,
            demand.scenarios.len(),
            if args.full { "full" } else { "reduced" },
            args.threads
        );
        println!(
            "points {} -> {}; LP columns {} rows {}; solves {}",
            s.points, s.reduced_points, s.columns, s.rows, s.solves
        );
        println!(
            "objective {:.2} (rounded {:.2}); on-demand {}; ESR {:.2}%; {} actions",
            s.objective,
            s.rounded_objective,
            plan.expected.on_demand_cost,
            plan.expected.esr * 100.0,
            plan.actions.len()
        );
        println!(
            "generate {generate_s:.2} s; optimize {solve_s:.2} s; peak RSS {}",
            rss.map(|m| format!("{m:.0} MiB"))
                .unwrap_or_else(|| "unknown".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reduced vs full model on a scenario (1-year terms): on its actual demand (hindsight mode), or
/// with `--levels` on the forecaster's quantile paths.
fn compare_on_scenario(dir: &std::path::Path, args: &Args) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let scenario = commitd::sources::load_scenario(dir)
        .with_context(|| format!("loading scenario {}", dir.display()))?;
    let at = scenario.window.decision_time;
    let hours = scenario.window.evaluation_end.since(at).max(0) as usize;
    let horizon = hours.min(args.hours);
    // Hindsight: the one path of actual demand. With `--levels`: the forecaster's quantile
    // paths from the history before the decision time, as `commitd plan` and the daemon plan
    // (several scenarios in one LP, the case the point budget must also keep accurate).
    let mut notes = Vec::new();
    let input = if args.levels.is_empty() {
        optimize::demand::actual(&scenario.usage, at, horizon)
    } else {
        let history = scenario.usage.slice(commitd_core::domain::HourRange::new(
            scenario.usage.range.start,
            at,
        ));
        commitd_core::plan::demand::forecast_demand_at(
            &history,
            at,
            horizon,
            &args.levels,
            &mut notes,
        )
    };
    let mode = if args.levels.is_empty() {
        "hindsight".to_string()
    } else {
        format!("forecast quantiles {:?}", args.levels)
    };
    let constraints = Constraints::one_year_only();
    let mut results = Vec::new();
    let runs: &[bool] = if args.reduced_only {
        &[false]
    } else {
        &[false, true]
    };
    for &full in runs {
        let options = Options {
            reduce: !full,
            max_coverage_columns: args.max_columns,
            marginal_resolves: 0,
            min_points: args.min_points,
            refine_rounds: args.refine_rounds,
            refine_share: args.refine_share,
            threads: args.threads,
            warm_start: args.warm_start,
            ..Options::default()
        };
        let t = Instant::now();
        // `hindsight` is `optimize` on one path; `optimize` takes the quantile paths too.
        let plan = optimize::optimize(
            &input,
            &scenario.rates,
            &scenario.commitments,
            &constraints,
            &options,
        )?;
        results.push((plan, t.elapsed().as_secs_f64()));
    }
    let summary = |(plan, secs): &(commitd_core::domain::Plan, f64)| {
        let s = &plan.solver;
        serde_json::json!({"objective": s.objective, "points": s.reduced_points,
            "columns": s.columns, "rows": s.rows, "seconds": secs,
            "rounded_objective": s.rounded_objective})
    };
    let reduced = &results[0];
    let full = results.get(1);
    let gap =
        full.map(|f| (reduced.0.solver.objective - f.0.solver.objective) / f.0.solver.objective);
    let v = serde_json::json!({
        "scenario": scenario.name, "hours": input.hours, "groups": input.groups.len(),
        "mode": mode, "scenarios": input.scenarios.len(), "notes": notes,
        "reduced": summary(reduced),
        "full": full.map(summary),
        "relative_gap": gap,
        "peak_rss_mib": peak_rss_mib(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {} groups x {} h x {} scenarios, {mode}, 1-year terms",
            scenario.name,
            input.groups.len(),
            input.hours,
            input.scenarios.len()
        );
        for n in &notes {
            println!("note: {n}");
        }
        for (name, (plan, secs)) in
            std::iter::once(("reduced", reduced)).chain(full.map(|f| ("full", f)))
        {
            let s = &plan.solver;
            println!(
                "{name:<8} objective {:.2} (rounded {:.2}); {} points; {} columns x {} rows; {secs:.1} s",
                s.objective, s.rounded_objective, s.reduced_points, s.columns, s.rows
            );
        }
        if let Some(gap) = gap {
            println!("relative gap {:.5}%", gap * 100.0);
        }
    }
    Ok(ExitCode::SUCCESS)
}
