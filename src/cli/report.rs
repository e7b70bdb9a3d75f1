//! `commitd report --month 2026-10`: the monthly summary for finance, from the audit log.

use super::audit::{database_url, DbArgs};
use crate::audit::{AuditLog, EventFilter};
use crate::config::Config;
use crate::report::{build, Month};
use crate::store::Store;
use anyhow::Context;
use std::process::ExitCode;

/// Monthly summary for finance: commitments bought in the month (instrument, term, payment,
/// hourly cost, upfront, total over the term, who approved), spend committed, expected savings
/// from the plans' rationale, and the portfolio active in the month.
///
/// Realized savings are not computed: the audit log holds decisions and purchases, not billed
/// usage, and the report says so rather than print a number it cannot back.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("format").args(["json", "csv"])))]
pub struct Args {
    #[command(flatten)]
    pub db: DbArgs,
    /// The month, UTC: YYYY-MM (e.g. 2026-10).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print CSV (one row per purchase and a TOTAL row) instead of a table.
    #[arg(long)]
    pub csv: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Validate before touching the database: a bad month changes nothing and names the value.
    let month = Month::parse(args.month.trim()).context("--month")?;
    let runtime = super::inventory::runtime()?;
    let report = runtime.block_on(async {
        let config = Config::load(args.db.config.as_deref())?;
        let url = database_url(
            args.db.database_url.as_deref(),
            args.db.data_dir.as_deref(),
            config,
        );
        let store = Store::connect(&url).await?;
        let log = AuditLog::open(store.clone());
        // Everything up to the end of the month: proposals and approvals of a purchase may be
        // older than the month, and earlier purchases make up the month's portfolio.
        let events = log
            .list(
                &EventFilter {
                    kind: None,
                    since: None,
                    until: Some(month.end()),
                },
                None,
            )
            .await
            .context("reading the audit log")?;
        store.close().await;
        anyhow::Ok(build(month, &events))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.csv {
        report.write_csv(std::io::stdout().lock())?;
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}
