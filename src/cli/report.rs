//! `commitd report --month 2026-10`: the monthly summary for finance, from the audit log.

use super::audit::{database_url, DbArgs};
use crate::audit::{AuditLog, EventFilter};
use crate::config::Config;
use crate::report::{build, read_month_bill, Month, MonthBill};
use crate::store::Store;
use anyhow::Context;
use std::process::ExitCode;

/// Monthly summary for finance: commitments bought in the month (instrument, term, payment,
/// hourly cost, upfront, total over the term, who approved), spend committed, expected savings
/// from the plans' rationale, and the portfolio active in the month.
///
/// Realized savings come from the month's FOCUS bill ([source] focus, or --focus): per
/// commitment in the bill, the on-demand equivalent of the usage it covered minus its cost,
/// next to the expected savings pro-rated to the hours billed. Without a bill the audit log
/// alone cannot show them, and the report says so rather than print a number it cannot back.
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
    /// Print CSV (one row per purchase and a TOTAL row; with a bill, then one BILLED row per
    /// commitment in it, NOT_BILLED rows and a REALIZED_TOTAL row) instead of a table.
    #[arg(long)]
    pub csv: bool,
    /// FOCUS export (file or directory) to compute realized savings from; default: the
    /// configuration's [source] focus.
    #[arg(long, value_name = "PATH")]
    pub focus: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Validate before touching the database: a bad month changes nothing and names the value.
    let month = Month::parse(args.month.trim()).context("--month")?;
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let config = Config::load(args.db.config.as_deref())?;
        // Read the bill before the database: a bad export is an error that changes nothing.
        // Only the month's hours are kept, rows spanning its edges split exactly.
        let focus = args.focus.clone().or_else(|| config.source.focus.clone());
        let bill = match &focus {
            Some(path) => Some(read_month_bill(path, month).map_err(anyhow::Error::msg)?),
            None => None,
        };
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
        let month_bill = match (&focus, &bill) {
            (Some(path), Some(bill)) => Some(MonthBill {
                source: path.display().to_string(),
                commitments: bill,
            }),
            _ => None,
        };
        anyhow::Ok(build(month, &events, month_bill.as_ref()))
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
