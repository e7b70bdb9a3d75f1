//! `commitd check-config`: validate a configuration file before a service starts with it.

use crate::config::Config;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

/// Validates a configuration file and the paths it names, then prints the effective
/// configuration (file + COMMITD_ environment overrides) with secrets redacted.
///
/// Exits 0 when valid, 1 with the reason when not. Environment overrides use the prefix
/// COMMITD_ and a double underscore for nesting: COMMITD_SOURCE__SCENARIO=examples/demo.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(long, short, env = "COMMITD_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Print nothing when valid.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(Some(&args.config))?;
    check_paths(&config).with_context(|| format!("{}", args.config.display()))?;
    if !args.quiet {
        println!("{}: valid", args.config.display());
        println!();
        print!("{}", config.redacted());
    }
    Ok(ExitCode::SUCCESS)
}

/// Paths a running service would need: fail now, not at the first scheduled cycle.
fn check_paths(config: &Config) -> anyhow::Result<()> {
    let source = &config.source;
    if let Some(dir) = &source.scenario {
        if !dir.join("scenario.toml").is_file() {
            bail!(
                "[source] scenario = {}: no scenario.toml there",
                dir.display()
            );
        }
    }
    for (key, path) in [
        ("focus", &source.focus),
        ("rates", &source.rates),
        ("commitments", &source.commitments),
    ] {
        if let Some(p) = path {
            if !p.exists() {
                bail!(
                    "[source] {key} = {}: no such file or directory",
                    p.display()
                );
            }
        }
    }
    if let Some(ca) = &config.daemon.webhook_ca_file {
        // Exists and holds parsable PEM certificates (the error names the file).
        crate::notify::chat::load_ca_file(ca)
            .map_err(|e| anyhow::anyhow!("[daemon] webhook_ca_file = {e}"))?;
    }
    // The API's certificate and key load and match (the error names the file).
    crate::api::transport::Transport::from_config(&config.api)?;
    if config.data_dir.exists() && !config.data_dir.is_dir() {
        bail!(
            "data_dir = {}: exists and is not a directory",
            config.data_dir.display()
        );
    }
    Ok(())
}
