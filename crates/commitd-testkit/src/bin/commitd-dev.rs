//! `commitd-dev`: the development commands that the product binary does not carry: the local AWS
//! test server, scenario generators and the benchmarks; and every `commitd` command, run through
//! the same code path (`commitd::cli::run_with`) with the crash tests' failpoint:
//! `COMMITD_TEST_FAILPOINT=<step> commitd-dev run --once --config FILE` aborts the process at that
//! step of an execution (steps: `commitd::execute::Step`, e.g. `after_purchase`).

use clap::{Parser, Subcommand};
use commitd::execute::{Failpoint, Step};
use std::process::ExitCode;

/// Development and benchmark commands for commitd (never shipped with the product).
#[derive(Parser, Debug)]
#[command(name = "commitd-dev", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    logging: commitd::cli::Logging,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the local AWS-compatible test server (Savings Plans, EC2 RIs, STS).
    AwsTestServer(commitd_testkit::aws_cli::Args),
    /// Measure the AWS client against an in-process test server.
    AwsBench(commitd_testkit::aws_cli::BenchArgs),
    /// Write a synthetic scenario (FOCUS usage, rates, commitments) with a chosen demand shape.
    Synth(commitd_testkit::synth_cli::Args),
    /// Precision and recall of the anomaly detector against a week-over-week z-score, on
    /// generated series with injected spikes, dips and steps.
    BenchAnomalies(commitd_testkit::bench_anomalies::Args),
    /// Accuracy (rolling origin, vs seasonal-naive) and speed figures of the forecaster.
    BenchForecast(commitd_testkit::bench_forecast::Args),
    /// Time the optimizer on synthetic demand (default 500 groups x 8,760 hours).
    BenchOptimize(commitd_testkit::bench_optimize::Args),
    // Every `commitd` command (usage, plan, run, proposals, audit, ...), unchanged.
    #[command(flatten)]
    Commitd(Box<commitd::cli::Command>),
}

/// The environment variable naming the step at which `commitd-dev run` aborts the process.
const FAILPOINT_ENV: &str = "COMMITD_TEST_FAILPOINT";

/// The failpoint `COMMITD_TEST_FAILPOINT` asks for (none when unset); an unknown step is an error,
/// so that a crash test with a misspelt step cannot pass without crashing.
fn failpoint_from_env() -> Result<Failpoint, String> {
    let Some(text) = std::env::var_os(FAILPOINT_ENV) else {
        return Ok(Failpoint::default());
    };
    let text = text.to_string_lossy();
    Step::parse(&text).map(Failpoint::abort_at).ok_or_else(|| {
        let known: Vec<String> = Step::ALL
            .iter()
            .filter_map(|s| serde_json::to_value(s).ok())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        format!(
            "{FAILPOINT_ENV}={text}: not a step (one of {})",
            known.join(", ")
        )
    })
}

fn main() -> ExitCode {
    // As `commitd`'s main: a closed pipe ends a filter-style command quietly (`run` ignores
    // SIGPIPE again itself).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let failpoint = match failpoint_from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Not a configuration key: the configuration loader must not see it.
    std::env::remove_var(FAILPOINT_ENV);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Commitd(command) => {
            return commitd::cli::run_with(cli.logging, *command, failpoint)
        }
        Command::AwsTestServer(args) => commitd_testkit::aws_cli::run(args),
        Command::AwsBench(args) => commitd_testkit::aws_cli::bench(args),
        Command::Synth(args) => commitd_testkit::synth_cli::run(args),
        Command::BenchAnomalies(args) => commitd_testkit::bench_anomalies::run(args),
        Command::BenchForecast(args) => commitd_testkit::bench_forecast::run(args),
        Command::BenchOptimize(args) => commitd_testkit::bench_optimize::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
