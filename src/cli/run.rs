//! `commitd run`: the service, or one cycle with `--once`.

use crate::config::Config;
use crate::dburl::redact_url;
use crate::execute::Failpoint;
use crate::startup::{self, Application, Signals};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run commitd: plan on a schedule, propose or execute within policy, serve the HTTP API.
///
/// With --once: one cycle now (plan -> policy -> proposals / execution -> audit), print the plan
/// and where the audit log is, and exit. Without: a long-running service (cron schedules from
/// [daemon] in the config; SIGTERM drains within the grace period, SIGINT stops fast; systemd
/// Type=notify and watchdog when NOTIFY_SOCKET is set).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(long, short, env = "COMMITD_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// One cycle, then exit (for cron jobs and CI).
    #[arg(long)]
    pub once: bool,
    /// HTTP address (overrides [daemon] listen), e.g. 127.0.0.1:8080; port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// With --once: print the cycle report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command with `failpoint` installed into the executor: none from `commitd`; the crash
/// tests' step from `commitd-dev run` (see [`super::run_with`]).
pub fn run_with(args: Args, failpoint: Failpoint) -> anyhow::Result<ExitCode> {
    startup::ignore_sigpipe();
    let mut config = Config::load(Some(&args.config))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        if args.once {
            let report = startup::run_once_with(&config, failpoint)
                .await
                .with_context(|| format!("{}", args.config.display()))?;
            let db = redact_url(config.database_url().expose());
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("mode: {:?}", config.mode);
                if let Some(plan) = &report.plan {
                    print!("{}", plan.render());
                }
                for p in &report.proposed {
                    println!(
                        "proposal {} ({}): {} [{} approver{} needed]",
                        p.id,
                        p.state,
                        p.action.describe(),
                        p.approvals_needed,
                        if p.approvals_needed == 1 { "" } else { "s" }
                    );
                }
                if report.recommended > 0 {
                    println!(
                        "{} recommendation{} recorded (datapilot: nothing is executed)",
                        report.recommended,
                        if report.recommended == 1 { "" } else { "s" }
                    );
                }
                for (i, policy, rule, reason) in &report.blocked {
                    println!("action {} blocked by {policy} {rule}: {reason}", i + 1);
                }
                for o in &report.outcomes {
                    println!("execution: {}", serde_json::to_string(o)?);
                }
                if report.expired > 0 {
                    println!("{} earlier proposal(s) superseded", report.expired);
                }
                println!("audit log: {db}");
                println!("  verify: commitd audit verify --database '{db}'");
            }
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(listen) = args.listen.clone() {
            config.daemon.listen = Some(listen);
        }
        let app = Application::build_with(config, failpoint)
            .await
            .with_context(|| format!("{}", args.config.display()))?;
        let shutdown = Signals::install()?.handle(app.policies());
        if let Some(addr) = app.local_addr() {
            // Tests and scripts read this line to find a port chosen by the OS (":0").
            println!("commitd: listening on {}://{addr}", app.scheme());
        }
        app.run_until_stopped(shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
