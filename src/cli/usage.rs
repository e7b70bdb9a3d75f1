//! `commitd usage`: what commitd reads from a bill. Per usage group: instance-hours,
//! on-demand-equivalent cost and coverage; the existing commitments' utilization; totals; and
//! the rows that are not eligible demand, by reason. Over a scenario's history window
//! `[history_start, decision_time)` by default, or over `--from`/`--to`. With
//! `--cost-explorer-days`, what the daemon's `[source] cost_explorer_days` would plan from.

use crate::domain::{Commitment, Hour, HourRange, Money, UsageModel};
use crate::ingest;
use crate::sources::{self, ReadOptions};
use anyhow::Context;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["scenario", "focus", "cost_explorer_days"])))]
pub struct Args {
    /// A scenario directory (scenario.toml, usage, rates, commitments).
    #[arg(long, value_name = "DIR")]
    pub scenario: Option<PathBuf>,
    /// A FOCUS file (CSV, CSV.gz, Parquet) or a directory tree of them.
    #[arg(long, value_name = "PATH")]
    pub focus: Option<PathBuf>,
    /// A FOCUS 1.3 ContractCommitment file listing existing commitments (with --focus).
    #[arg(long, value_name = "FILE", requires = "focus")]
    pub commitments: Option<PathBuf>,
    /// First hour (RFC 3339, e.g. 2025-06-01T00:00:00Z); default: history_start or the bill's first.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End hour, exclusive; default: decision_time or after the bill's last hour.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// One JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// AWS Cost Explorer instead of a bill: this many days back (hourly for the newest 14, daily
    /// before), as `[source] cost_explorer_days` reads it (Linux/UNIX, shared tenancy, not Spot).
    /// Connects like `commitd inventory` (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, the flags).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=365))]
    pub cost_explorer_days: Option<u32>,
    #[command(
        flatten,
        next_help_heading = "AWS connection (with --cost-explorer-days)"
    )]
    pub aws: super::inventory::AwsArgs,
}

struct Report {
    source: String,
    model: UsageModel,
    /// Listed and inferred commitments, with where each came from.
    commitments: Vec<(Commitment, &'static str)>,
    notes: Vec<String>,
}

fn parse_hour(text: &Option<String>, what: &str) -> anyhow::Result<Option<Hour>> {
    text.as_deref()
        .map(|t| Hour::parse(t).with_context(|| format!("--{what} '{t}'")))
        .transpose()
}

fn load(args: &Args) -> anyhow::Result<Report> {
    let from = parse_hour(&args.from, "from")?;
    let to = parse_hour(&args.to, "to")?;
    if let Some(dir) = &args.scenario {
        let (file, window) = sources::read_scenario_file(dir)?;
        let range = HourRange::new(
            from.unwrap_or(window.history_start),
            to.unwrap_or(window.decision_time),
        );
        anyhow::ensure!(!range.is_empty(), "empty hour range {range:?}");
        let rates = sources::read_rate_card(&dir.join(&file.rates))?;
        let bill = sources::read_focus(
            &dir.join(&file.usage),
            &ReadOptions {
                range: Some(range),
                progress: true,
            },
        )?;
        let listed = sources::read_commitments(&dir.join(&file.commitments), Some(&rates))?;
        let (inferred, notes) = ingest::infer_commitments(&bill.commitments, &listed);
        let mut commitments: Vec<_> = listed.into_iter().map(|c| (c, "file")).collect();
        let mut notes = notes;
        for i in inferred {
            notes.push(i.note);
            commitments.push((i.commitment, "bill"));
        }
        return Ok(Report {
            source: dir.display().to_string(),
            model: bill.model,
            commitments,
            notes,
        });
    }
    if let Some(days) = args.cost_explorer_days {
        anyhow::ensure!(
            from.is_none() && to.is_none(),
            "--from/--to do not apply to --cost-explorer-days (it reads the last DAYS days)"
        );
        let rt = super::runtime()?;
        let called = rt
            .block_on(async {
                let clients =
                    crate::markets::aws::AwsClients::connect(&args.aws.settings()).await?;
                clients
                    .usage_history(chrono::Utc::now(), i64::from(days))
                    .await
            })
            .context("reading usage from AWS Cost Explorer")?;
        let (model, mut notes) = crate::markets::aws::usage::usage_model(&called.value)
            .map_err(anyhow::Error::msg)
            .context("AWS Cost Explorer")?;
        notes.push(format!("request ids: {}", called.request_ids.join(", ")));
        return Ok(Report {
            source: format!("AWS Cost Explorer, {days} days"),
            model,
            commitments: Vec::new(),
            notes,
        });
    }
    let path = args
        .focus
        .as_ref()
        .context("one of --scenario, --focus or --cost-explorer-days is required")?;
    let range = match (from, to) {
        (Some(a), Some(b)) => Some(HourRange::new(a, b)),
        (None, None) => None,
        _ => anyhow::bail!("--from and --to go together with --focus"),
    };
    let bill = sources::read_focus(
        path,
        &ReadOptions {
            range,
            progress: true,
        },
    )?;
    let listed = match &args.commitments {
        Some(p) => sources::read_commitments(p, None)?,
        None => Vec::new(),
    };
    let (inferred, mut notes) = ingest::infer_commitments(&bill.commitments, &listed);
    let mut commitments: Vec<_> = listed.into_iter().map(|c| (c, "file")).collect();
    for i in inferred {
        notes.push(i.note);
        commitments.push((i.commitment, "bill"));
    }
    Ok(Report {
        source: path.display().to_string(),
        model: bill.model,
        commitments,
        notes,
    })
}

fn ratio(a: Money, b: Money) -> f64 {
    if b.micros() == 0 {
        0.0
    } else {
        a.micros() as f64 / b.micros() as f64
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = load(&args)?;
    let m = &report.model;
    let total = m.total_ode();
    let covered: Money = m.groups.iter().map(|g| g.total_covered_ode).sum();
    let all = m.hours();
    let utilization = |id: &str| {
        m.commitments
            .iter()
            .find(|u| u.id == id)
            .and_then(|u| u.utilization(0, all))
    };
    if args.json {
        let groups: Vec<_> = m
            .groups
            .iter()
            .map(|g| {
                json!({
                    "provider": g.group.provider,
                    "region": g.group.region,
                    "instance_type": g.group.instance_type,
                    "family": g.group.family,
                    "os": g.group.os,
                    "tenancy": g.group.tenancy,
                    "hours": g.quantity.iter().sum::<f64>(),
                    "on_demand_cost": g.total_ode.to_f64(),
                    "covered_cost": g.total_covered_ode.to_f64(),
                    "coverage": ratio(g.total_covered_ode, g.total_ode),
                    "sub_accounts": g.by_sub_account.iter()
                        .map(|(k, v)| (k.clone(), json!(v.to_f64())))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        let mut commitments: Vec<_> = report
            .commitments
            .iter()
            .map(|(c, source)| {
                let usage = m.commitments.iter().find(|u| u.id == c.id);
                json!({
                    "id": c.id,
                    "instrument": c.instrument,
                    "provider": c.provider,
                    "source": source,
                    "start": c.start,
                    "end": c.end,
                    "hourly_cost": c.hourly_cost.to_f64(),
                    "utilization": utilization(&c.id),
                    "used_cost": usage.map(|u| u.total_used.to_f64()),
                    "unused_cost": usage.map(|u| u.total_unused.to_f64()),
                })
            })
            .collect();
        // Commitments in the bill that could not be described at all still show their use.
        for u in &m.commitments {
            if !report.commitments.iter().any(|(c, _)| c.id == u.id) {
                commitments.push(json!({
                    "id": u.id, "instrument": null, "provider": u.provider, "source": "bill",
                    "utilization": u.utilization(0, all),
                    "used_cost": u.total_used.to_f64(), "unused_cost": u.total_unused.to_f64(),
                }));
            }
        }
        let out = json!({
            "source": report.source,
            "from": m.range.start,
            "to": m.range.end,
            "hours": all,
            "currency": m.currency,
            "last_observed": m.last_observed,
            "total_on_demand_cost": total.to_f64(),
            "total_on_demand_cost_exact": total,
            "total_covered_cost": covered.to_f64(),
            "coverage": ratio(covered, total),
            "total_instance_hours": m.groups.iter().map(|g| g.quantity.iter().sum::<f64>()).sum::<f64>(),
            "groups": groups,
            "commitments": commitments,
            "rows_read": m.rows_read,
            "ignored_rows": m.ignored.by_reason,
            "ignored_total": m.ignored.total(),
            "notes": report.notes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "{}: {} to {} ({} h), {} rows read, currency {}",
        report.source, m.range.start, m.range.end, all, m.rows_read, m.currency
    );
    println!();
    let w = m
        .groups
        .iter()
        .map(|g| g.group.to_string().len())
        .max()
        .unwrap_or(0)
        .max(45);
    println!(
        "{:<w$} {:<10} {:>12} {:>14} {:>9}",
        "USAGE GROUP (provider/region/type/os/tenancy)",
        "FAMILY",
        "INST-HOURS",
        "ON-DEMAND $",
        "COVERAGE"
    );
    for g in &m.groups {
        println!(
            "{:<w$} {:<10} {:>12.1} {:>14.2} {:>8.1}%",
            g.group.to_string(),
            g.group.family,
            g.quantity.iter().sum::<f64>(),
            g.total_ode.to_f64(),
            100.0 * ratio(g.total_covered_ode, g.total_ode)
        );
    }
    println!(
        "{:<w$} {:<10} {:>12.1} {:>14.2} {:>8.1}%",
        "TOTAL",
        "",
        m.groups
            .iter()
            .map(|g| g.quantity.iter().sum::<f64>())
            .sum::<f64>(),
        total.to_f64(),
        100.0 * ratio(covered, total)
    );
    println!();
    if report.commitments.is_empty() && m.commitments.is_empty() {
        println!("No existing commitments.");
    } else {
        println!(
            "{:<58} {:<28} {:>8} {:>11} {:>8}",
            "COMMITMENT", "INSTRUMENT", "SOURCE", "$/HOUR", "UTIL"
        );
        for (c, source) in &report.commitments {
            let util = utilization(&c.id)
                .map(|u| format!("{:.1}%", 100.0 * u))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<58} {:<28} {:>8} {:>11.4} {:>8}",
                shorten(&c.id, 58),
                c.instrument.to_string(),
                source,
                c.hourly_cost.to_f64(),
                util
            );
        }
    }
    if !report.notes.is_empty() {
        println!();
        for n in &report.notes {
            println!("note: {n}");
        }
    }
    println!();
    println!("Rows not counted as demand: {}", m.ignored.total());
    for (reason, n) in &m.ignored.by_reason {
        println!("  {n:>10}  {reason}");
    }
    Ok(ExitCode::SUCCESS)
}

fn shorten(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(width - 3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("...{tail}")
    }
}
