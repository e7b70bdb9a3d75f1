//! The command line: the composition root that wires files, stores and the pure core together.
//!
//! Each sub-command lives in its own file with its `Args` and `run`. `anyhow` is used here and
//! only here: library modules return typed errors, and this edge turns them into one message
//! that names the file, row and column at fault.

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

mod anomalies;
mod assess;
mod audit;
mod backtest;
mod check_config;
mod forecast;
mod inventory;
mod offerings;
mod plan;
mod policy;
mod proposals;
mod report;
mod run;
mod tokens;
mod usage;

/// commitd: an open, explainable autopilot for cloud commitments.
///
/// commitd reads FOCUS billing exports, forecasts the baseline usage of every usage group,
/// solves one linear program for the purchases that minimise expected cost within your
/// policy, and writes every decision to a tamper-evident audit log.
///
/// Start with `commitd usage --scenario examples/demo` to see what it reads.
#[derive(Parser, Debug)]
#[command(name = "commitd", version, about, long_about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub logging: Logging,

    #[command(subcommand)]
    pub command: Command,
}

/// The global logging flags (shared with `commitd-dev`, which runs the same commands).
#[derive(clap::Args, Debug)]
pub struct Logging {
    /// Log format: human-readable text, or one JSON object per line for services.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "COMMITD_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter, e.g. "info" or "commitd=debug" (RUST_LOG syntax).
    #[arg(long, global = true, default_value = "warn", env = "COMMITD_LOG")]
    pub log: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show eligible compute usage per usage group: hours, on-demand-equivalent cost,
    /// coverage, and the utilization of existing commitments.
    Usage(usage::Args),
    /// Forecast each usage group's hourly baseline with quantiles (P10/P50/P90).
    Forecast(forecast::Args),
    /// Usage anomalies (spikes, sustained steps up, sudden drops) per usage group, replayed hour
    /// by hour as the daemon sees the bill (only the hours billing has delivered).
    Anomalies(anomalies::Args),
    /// FinOps maturity assessment of a bill: Crawl / Walk / Run per capability, with the
    /// figures behind each rating and the next step (docs/assess.md).
    Assess(assess::Args),
    /// Compute the purchase plan (one LP across all instruments) with its rationale.
    Plan(plan::Args),
    /// Replay rolling decisions over a scenario's evaluation window and compare with baselines.
    Backtest(Box<backtest::Args>),
    /// Read, verify and export the append-only audit log.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Validate policy files and show what they allow.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Validate a configuration file; exits non-zero with the reason if it is invalid.
    CheckConfig(check_config::Args),
    /// Run the service (schedules, approvals, execution, HTTP API), or one cycle with --once.
    Run(run::Args),
    /// Monthly summary for finance: commitments bought, spend committed, expected savings.
    Report(report::Args),
    /// List, show, approve and reject proposals.
    #[command(subcommand)]
    Proposals(proposals::Command),
    /// Create, rotate, revoke and list API bearer tokens (each change is audited).
    #[command(subcommand)]
    Tokens(tokens::Command),
    /// Show the commitments a cloud account owns (AWS: savings plans and Reserved Instances).
    Inventory(inventory::Args),
    /// Show what commitments cost in a region, as rate-card offers (cached for a day).
    Offerings(offerings::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run_with(
        cli.logging,
        cli.command,
        crate::execute::Failpoint::default(),
    )
}

/// Runs one parsed command. `failpoint` is installed into `run`'s executor: always none from the
/// product binary; `commitd-dev` (the test kit) passes the crash tests' `COMMITD_TEST_FAILPOINT`, so
/// that the crash tests run exactly this code path without the product carrying the hook's
/// environment variable.
pub fn run_with(
    logging: Logging,
    command: Command,
    failpoint: crate::execute::Failpoint,
) -> ExitCode {
    init_logging(logging.log_format, &logging.log);
    let result = match command {
        Command::Usage(args) => usage::run(args),
        Command::Forecast(args) => forecast::run(args),
        Command::Anomalies(args) => anomalies::run(args),
        Command::Assess(args) => assess::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Backtest(args) => backtest::run(*args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Run(args) => run::run_with(args, failpoint),
        Command::Report(args) => report::run(args),
        Command::Proposals(cmd) => proposals::run(cmd),
        Command::Tokens(cmd) => tokens::run(cmd),
        Command::Inventory(args) => inventory::run(args),
        Command::Offerings(args) => offerings::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: "reading usage.csv: row 12 ...".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The single-threaded tokio runtime a one-shot command uses to talk to a store or a cloud.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
