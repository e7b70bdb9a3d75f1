//! `commitd anomalies`: the usage anomalies of a bill, found as the daemon would find them.
//! Every hour of the bill's range is replayed with only the hours billing has delivered by then
//! (`--latency-hours` earlier), so `detected_at` is when the daemon would have said so. The
//! detection is the core's (`forecast::anomaly`); this command loads the bill and prints.

use crate::domain::{HourRange, UsageModel};
use crate::forecast::anomaly::{data_hours, replay_model, AnomalyConfig, GroupAnomalies};
use crate::sources::{self, ReadOptions};
use anyhow::Context;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["scenario", "focus"])))]
pub struct Args {
    /// A scenario directory: its usage over the whole window (history and evaluation).
    #[arg(long, value_name = "DIR")]
    pub scenario: Option<PathBuf>,
    /// A FOCUS file (CSV, CSV.gz, Parquet) or a directory tree of them.
    #[arg(long, value_name = "PATH")]
    pub focus: Option<PathBuf>,
    /// Hours billing takes to deliver an hour's usage: at hour T, the hours before T - N are
    /// known.
    #[arg(long, value_name = "N", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(0..=720))]
    pub latency_hours: u32,
    /// Only groups matching all these terms (e.g. "aws us-east-1 m5").
    #[arg(long, value_name = "FILTER")]
    pub group: Option<String>,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn load(args: &Args) -> anyhow::Result<(String, UsageModel)> {
    if let Some(dir) = &args.scenario {
        let (file, window) = sources::read_scenario_file(dir)?;
        let bill = sources::read_focus(
            &dir.join(&file.usage),
            &ReadOptions {
                range: Some(window.all()),
                progress: !args.json,
            },
        )?;
        return Ok((dir.display().to_string(), bill.model));
    }
    let path = args
        .focus
        .as_ref()
        .context("one of --scenario or --focus is required")?;
    let bill = sources::read_focus(
        path,
        &ReadOptions {
            range: None,
            progress: !args.json,
        },
    )?;
    Ok((path.display().to_string(), bill.model))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (source, mut model) = load(&args)?;
    if let Some(filter) = &args.group {
        model.groups.retain(|g| g.group.matches_filter(filter));
        anyhow::ensure!(
            !model.groups.is_empty(),
            "--group '{filter}': no usage group of {source} matches"
        );
    }
    anyhow::ensure!(
        !model.groups.is_empty(),
        "{source}: no eligible compute usage in the bill: nothing to watch"
    );
    let cfg = AnomalyConfig {
        latency_hours: args.latency_hours as usize,
        ..AnomalyConfig::default()
    };
    let hours = data_hours(&model);
    let need = cfg.min_history_days * 24;
    anyhow::ensure!(
        hours > need,
        "{source}: {hours} hours of usage ({} to {}); anomalies are judged against at least {} days of history, so the bill must cover more than that",
        model.range.start,
        model.range.start.plus(hours as i64),
        cfg.min_history_days
    );
    let watched = HourRange::new(model.range.start, model.range.start.plus(hours as i64));
    let found = replay_model(&model, &cfg);
    let mut rows: Vec<(&GroupAnomalies, usize)> = found
        .iter()
        .flat_map(|g| (0..g.anomalies.len()).map(move |i| (g, i)))
        .collect();
    rows.sort_by(|(ga, ia), (gb, ib)| {
        let (a, b) = (&ga.anomalies[*ia], &gb.anomalies[*ib]);
        (a.start, &ga.group).cmp(&(b.start, &gb.group))
    });
    let open = rows
        .iter()
        .filter(|(g, i)| !g.anomalies[*i].ended())
        .count();

    if args.json {
        let anomalies: Vec<_> = rows
            .iter()
            .map(|(g, i)| {
                let a = &g.anomalies[*i];
                json!({
                    "group": g.group.to_string(),
                    "provider": g.group.provider,
                    "region": g.group.region,
                    "instance_type": g.group.instance_type,
                    "kind": a.kind,
                    "start": a.start,
                    "detected_at": a.detected_at,
                    "end": a.end,
                    "ended": a.ended(),
                    "status": a.status,
                    "size": {
                        "instance_hours": (a.excess_instance_hours * 1000.0).round() / 1000.0,
                        "cost": a.excess_cost,
                        "currency": model.currency,
                    },
                    "peak_instance_hours_per_hour": a.peak,
                    "expected_instance_hours_per_hour": a.expected_at_peak,
                })
            })
            .collect();
        let out = json!({
            "source": source,
            "latency_hours": args.latency_hours,
            "from": watched.start,
            "to": watched.end,
            "groups_watched": model.groups.len(),
            "open": open,
            "anomalies": anomalies,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "{source}: {} to {} ({hours} h), {} usage groups watched, billing latency {} h",
        watched.start,
        watched.end,
        model.groups.len(),
        args.latency_hours
    );
    if rows.is_empty() {
        println!("No anomalies.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} anomalies, {open} still open", rows.len());
    println!();
    let w = rows
        .iter()
        .map(|(g, _)| g.group.to_string().len())
        .max()
        .unwrap_or(0)
        .max(10);
    println!(
        "{:<w$} {:<8} {:<20} {:<20} {:<20} {:>12} {:>14}",
        "USAGE GROUP",
        "KIND",
        "START",
        "DETECTED",
        "ENDED",
        "INST-HOURS",
        format!("COST {}", model.currency)
    );
    for (g, i) in &rows {
        let a = &g.anomalies[*i];
        let ended = match (a.status, a.end) {
            (crate::forecast::anomaly::AnomalyStatus::NewLevel, Some(e)) => {
                format!("{e} (new level)")
            }
            (_, Some(e)) => e.to_string(),
            (_, None) => "open".to_string(),
        };
        println!(
            "{:<w$} {:<8} {:<20} {:<20} {:<20} {:>+12.1} {:>14}",
            g.group.to_string(),
            a.kind.as_str(),
            a.start.to_string(),
            a.detected_at.to_string(),
            ended,
            a.excess_instance_hours,
            signed(a.excess_cost.to_decimal().round_dp(2)),
        );
    }
    println!();
    println!(
        "Sizes are usage minus the expected (seasonal) usage over the anomaly's hours, at the group's on-demand price."
    );
    Ok(ExitCode::SUCCESS)
}

/// "+12.50" / "-3.10": the sign always shown, as the instance-hours column shows it.
fn signed(d: rust_decimal::Decimal) -> String {
    if d.is_sign_negative() {
        d.to_string()
    } else {
        format!("+{d}")
    }
}
