//! `commitd policy`: validate policy files and show what they allow.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Validate every policy file of a directory and summarize each policy's guardrails.
    ///
    /// Exits 1 naming the file, and for TOML errors the line and column, when any policy is
    /// invalid: a broken policy never leaves the others half in force.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Directory of policy files (*.toml).
    #[arg(long, default_value = "policies", env = "COMMITD_POLICIES_DIR")]
    pub dir: PathBuf,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let set = crate::sources::policies::load_dir(&args.dir)?;
    println!(
        "{}: {} valid polic{}",
        args.dir.display(),
        set.policies.len(),
        if set.policies.len() == 1 { "y" } else { "ies" }
    );
    for p in &set.policies {
        println!();
        println!("{} ({})", p.name, p.source.display());
        if !p.description.is_empty() {
            println!("  {}", p.description);
        }
        let scope = &p.scope;
        println!(
            "  scope:     provider {}, account {}, instruments {}",
            scope
                .provider
                .map(|p| p.to_string())
                .unwrap_or("any".into()),
            scope.account.as_deref().unwrap_or("any"),
            if scope.instruments.is_empty() {
                "any".to_string()
            } else {
                join(&scope.instruments)
            }
        );
        println!(
            "  mode:      {}{}",
            p.mode
                .map(|m| format!("{m:?}").to_lowercase())
                .unwrap_or("global".into()),
            if p.kill_switch {
                "  KILL SWITCH ON"
            } else {
                ""
            }
        );
        println!("  allows:    {}", join(&p.allow.instruments));
        println!(
            "             terms {}; payment {}",
            join(&p.allow.terms),
            join(&p.allow.payment_options)
        );
        let l = &p.limits;
        let show =
            |m: Option<crate::domain::Money>| m.map(|m| format!("${m}")).unwrap_or("-".into());
        println!(
            "  gives up:  {}; $/h given up per day {} / 30 days {}",
            if p.allow.give_up.is_empty() {
                "nothing".to_string()
            } else {
                join(&p.allow.give_up)
            },
            show(l.max_hourly_given_up_per_day),
            show(l.max_hourly_given_up_per_30_days)
        );
        println!(
            "  limits:    new $/h per day {} / 30 days {}; upfront per day {} / 30 days {}",
            show(l.max_new_hourly_commitment_per_day),
            show(l.max_new_hourly_commitment_per_30_days),
            show(l.max_upfront_per_day),
            show(l.max_upfront_per_30_days)
        );
        println!(
            "             utilization >= {:.0}% at P{:.0}{}",
            l.min_expected_utilization * 100.0,
            l.utilization_quantile * 100.0,
            l.coverage_target
                .map(|c| format!("; coverage target {:.0}%", c * 100.0))
                .unwrap_or_default()
        );
        for b in &p.blackouts {
            match (b.from, b.to) {
                (Some(f), Some(t)) => println!("  blackout:  {} [{f}, {t})", b.name),
                _ => println!(
                    "  blackout:  {} (last {} days of months {:?})",
                    b.name,
                    b.last_days_of_month.unwrap_or(0),
                    b.months
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
