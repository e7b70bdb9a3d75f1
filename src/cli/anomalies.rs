//! `commitd anomalies`: the usage anomalies of a bill, found as the daemon would find them.
//! Every hour of the bill's range is replayed with only the hours billing has delivered by then
//! (`--latency-hours` earlier), so `detected_at` is when the daemon would have said so. The
//! detection is the core's (`forecast::anomaly`); this command loads the bill and prints. With
//! `--scenario`, a sudden drop on groups that the scenario's commitments cover also names the
//! commitments it strands (`plan::hold::stranded`, as the daemon reports them).

use crate::billing::BillableGroup;
use crate::domain::{Commitment, HourRange, RateCard, UsageModel};
use crate::forecast::anomaly::{
    data_hours, replay, replay_model, AnomalyConfig, AnomalyKind, DetectedAnomaly, GroupAnomalies,
};
use crate::ingest::OtherSpend;
use crate::plan::hold::{stranded, GroupAnomaly, Stranded};
use crate::sources::{self, ReadOptions};
use anyhow::Context;
use rayon::prelude::*;
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

/// What the command watches: the usage, and (from a scenario) the rate card and the
/// commitments held, which a sudden drop may strand.
struct Loaded {
    source: String,
    model: UsageModel,
    rates: RateCard,
    commitments: Vec<Commitment>,
    /// The cost per hour of what is not eligible compute, by service and sub-account.
    other: Vec<OtherSpend>,
}

fn load(args: &Args) -> anyhow::Result<Loaded> {
    if let Some(dir) = &args.scenario {
        // As `sources::load_scenario` does, keeping the bill's non-compute cost.
        let (file, window) = sources::read_scenario_file(dir)?;
        let rates = sources::read_rate_card(&dir.join(&file.rates))?;
        let mut bill = sources::read_focus(
            &dir.join(&file.usage),
            &ReadOptions {
                range: Some(window.all()),
                progress: !args.json,
            },
        )?;
        let other = std::mem::take(&mut bill.other_spend);
        let listed = sources::read_commitments(&dir.join(&file.commitments), Some(&rates))?;
        let scenario =
            crate::ingest::Scenario::assemble(dir.clone(), file, window, rates, bill, listed);
        return Ok(Loaded {
            source: dir.display().to_string(),
            model: scenario.usage,
            rates: scenario.rates,
            commitments: scenario.commitments,
            other,
        });
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
    Ok(Loaded {
        source: path.display().to_string(),
        model: bill.model,
        rates: RateCard::new(),
        commitments: Vec::new(),
        other: bill.other_spend,
    })
}

/// The commitments a drop strands, as the daemon would have reported them when it detected
/// it: the usage known then, the commitments active then (`plan::hold::stranded`).
fn stranded_by(
    loaded: &Loaded,
    group: &GroupAnomalies,
    a: &DetectedAnomaly,
    latency: u32,
) -> Option<Stranded> {
    if a.kind != AnomalyKind::Drop || loaded.commitments.is_empty() {
        return None;
    }
    let m = &loaded.model;
    let now = a.detected_at;
    let known = m.slice(HourRange::new(
        m.range.start,
        now.plus(-i64::from(latency)).max(m.range.start),
    ));
    let groups: Vec<BillableGroup> = known
        .groups
        .iter()
        .map(|g| BillableGroup::from_rate_card(&g.group, &loaded.rates, g.observed_unit_price()))
        .collect::<Result<_, _>>()
        .ok()?;
    let named = GroupAnomaly {
        group: group.group.clone(),
        anomaly: a.clone(),
    };
    stranded(
        &named,
        &known,
        &groups,
        &loaded.rates,
        &loaded.commitments,
        now,
    )
    .ok()
    .flatten()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut loaded = load(&args)?;
    let source = loaded.source.clone();
    let model = &mut loaded.model;
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
    let hours = data_hours(model);
    let need = cfg.min_history_days * 24;
    anyhow::ensure!(
        hours > need,
        "{source}: {hours} hours of usage ({} to {}); anomalies are judged against at least {} days of history, so the bill must cover more than that",
        model.range.start,
        model.range.start.plus(hours as i64),
        cfg.min_history_days
    );
    let watched = HourRange::new(model.range.start, model.range.start.plus(hours as i64));
    let found = replay_model(model, &cfg);
    let model = &loaded.model;
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
    let strands: Vec<Option<Stranded>> = rows
        .iter()
        .map(|(g, i)| stranded_by(&loaded, g, &g.anomalies[*i], args.latency_hours))
        .collect();
    // What is not eligible compute (storage, databases, network, ...): the same watch on its
    // cost per hour, by service and sub-account (sizes in USD; `--group` names compute only).
    let others: Vec<(&OtherSpend, DetectedAnomaly)> = if args.group.is_some() {
        Vec::new()
    } else {
        let end = watched.start.plus((hours + cfg.latency_hours) as i64);
        let mut v: Vec<(&OtherSpend, DetectedAnomaly)> = loaded
            .other
            .par_iter()
            .flat_map_iter(|o| {
                replay(
                    &o.cost[..hours.min(o.cost.len())],
                    watched.start,
                    end,
                    1.0,
                    &cfg,
                )
                .into_iter()
                .map(move |a| (o, a))
            })
            .collect();
        v.sort_by(|(oa, a), (ob, b)| {
            (a.start, &oa.service, &oa.sub_account).cmp(&(b.start, &ob.service, &ob.sub_account))
        });
        v
    };
    let other_open = others.iter().filter(|(_, a)| !a.ended()).count();

    if args.json {
        let anomalies: Vec<_> = rows
            .iter()
            .zip(&strands)
            .map(|((g, i), strand)| {
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
                    // A sudden drop on groups that held commitments cover: what it leaves idle.
                    "stranded": strand.as_ref().map(|s| json!({
                        "commitments": s.commitments,
                        "idle_hourly": s.idle_hourly,
                    })),
                })
            })
            .collect();
        let mut anomalies = anomalies;
        anomalies.extend(others.iter().map(|(o, a)| {
            json!({
                "service": o.service,
                "sub_account": o.sub_account,
                "kind": a.kind,
                "start": a.start,
                "detected_at": a.detected_at,
                "end": a.end,
                "ended": a.ended(),
                "status": a.status,
                "size": {
                    "instance_hours": null,
                    "cost": a.excess_cost,
                    "currency": model.currency,
                },
                "peak_cost_per_hour": a.peak,
                "expected_cost_per_hour": a.expected_at_peak,
            })
        }));
        let out = json!({
            "source": source,
            "latency_hours": args.latency_hours,
            "from": watched.start,
            "to": watched.end,
            "groups_watched": model.groups.len(),
            "non_compute_watched": if args.group.is_some() { 0 } else { loaded.other.len() },
            "open": open + other_open,
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
    print_others(&others, other_open, loaded.other.len(), &model.currency);
    if rows.is_empty() {
        println!(
            "{}",
            if others.is_empty() {
                "No anomalies."
            } else {
                "No anomalies of eligible compute usage."
            }
        );
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
    let strands: Vec<&Stranded> = strands.iter().flatten().collect();
    if !strands.is_empty() {
        println!();
        println!("Stranded commitments (sudden drops on usage that held commitments cover, as detected):");
        for s in strands {
            println!("  {}: {} USD/h idle", s.group, s.idle_hourly);
            for c in &s.commitments {
                println!(
                    "    {}: {} of {} USD/h idle ({:.1}% used over the drop's hours)",
                    c.id,
                    c.idle_hourly,
                    c.hourly_cost,
                    c.utilization * 100.0
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The anomalies of non-compute cost, by service and sub-account (nothing when none watched).
fn print_others(
    others: &[(&OtherSpend, DetectedAnomaly)],
    open: usize,
    watched: usize,
    currency: &str,
) {
    if watched == 0 {
        return;
    }
    println!(
        "Non-compute cost: {watched} service / sub-account series watched, {} anomalies, {open} still open",
        others.len()
    );
    if others.is_empty() {
        println!();
        return;
    }
    let w = others
        .iter()
        .map(|(o, _)| o.service.len() + o.sub_account.len() + 3)
        .max()
        .unwrap_or(0)
        .max(24);
    println!(
        "{:<w$} {:<8} {:<20} {:<20} {:<20} {:>14}",
        "SERVICE / SUB-ACCOUNT",
        "KIND",
        "START",
        "DETECTED",
        "ENDED",
        format!("COST {currency}")
    );
    for (o, a) in others {
        let ended = a.end.map_or_else(|| "open".to_string(), |e| e.to_string());
        println!(
            "{:<w$} {:<8} {:<20} {:<20} {:<20} {:>14}",
            format!("{} / {}", o.service, o.sub_account),
            a.kind.as_str(),
            a.start.to_string(),
            a.detected_at.to_string(),
            ended,
            signed(a.excess_cost.to_decimal().round_dp(2)),
        );
    }
    println!();
}

/// "+12.50" / "-3.10": the sign always shown, as the instance-hours column shows it.
fn signed(d: rust_decimal::Decimal) -> String {
    if d.is_sign_negative() {
        d.to_string()
    } else {
        format!("+{d}")
    }
}
