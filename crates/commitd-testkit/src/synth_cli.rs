//! `commitd-dev synth`: writes a synthetic scenario directory (see [`crate::synth`]).

use crate::synth::{self, Config, Shape};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write (created if needed; existing scenario files are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Shape of the demand over time.
    #[arg(long, value_enum, default_value_t = Shape::Mixed)]
    pub shape: Shape,
    /// Number of usage groups.
    #[arg(long, default_value_t = 8)]
    pub groups: usize,
    /// Seed: the same arguments always write the same scenario.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Months of history before the decision time.
    #[arg(long, default_value_t = 3)]
    pub months: u32,
    /// Months of evaluation after the decision time.
    #[arg(long, default_value_t = 12)]
    pub eval_months: u32,
    /// First hour of the history (RFC 3339).
    #[arg(long, default_value = "2025-06-01T00:00:00Z")]
    pub start: String,
    /// Do not give the organisation existing commitments.
    #[arg(long)]
    pub no_commitments: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let start = commitd_core::domain::Hour::parse(&args.start)
        .map_err(|e| anyhow::anyhow!("--start '{}': {e}", args.start))?;
    let config = Config {
        shape: args.shape,
        groups: args.groups,
        seed: args.seed,
        history_months: args.months,
        evaluation_months: args.eval_months,
        start,
        commitments: !args.no_commitments,
    };
    let s = synth::generate(&config, &args.out)?;
    eprintln!(
        "wrote {} ({}): {} groups, {} hours ({} to {}, decision {}), {} usage rows, {} existing commitments",
        s.dir.display(),
        s.name,
        s.groups,
        s.hours,
        s.history_start,
        s.evaluation_end,
        s.decision_time,
        s.rows,
        s.commitments
    );
    Ok(ExitCode::SUCCESS)
}
