//! `commitd-dev`: the development commands that the product binary does not carry: the local AWS
//! test server, scenario generators and the benchmarks.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Development and benchmark commands for commitd (never shipped with the product).
#[derive(Parser, Debug)]
#[command(name = "commitd-dev", version, about, long_about)]
struct Cli {
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
    /// Accuracy (rolling origin, vs seasonal-naive) and speed figures of the forecaster.
    BenchForecast(commitd_testkit::bench_forecast::Args),
    /// Time the optimizer on synthetic demand (default 500 groups x 8,760 hours).
    BenchOptimize(commitd_testkit::bench_optimize::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::AwsTestServer(args) => commitd_testkit::aws_cli::run(args),
        Command::AwsBench(args) => commitd_testkit::aws_cli::bench(args),
        Command::Synth(args) => commitd_testkit::synth_cli::run(args),
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
