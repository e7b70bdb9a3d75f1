//! `commitd assess`: a FinOps maturity assessment of a bill (Crawl / Walk / Run per capability,
//! with the figures behind each rating, the next step, and what the bill cannot show). The
//! rating is the core's (`assess`); this command loads the bill and prints it as a table, JSON,
//! or one self-contained HTML page with a chart (`--html FILE`).

use crate::assess::{assess, Assessment, Stage, THRESHOLDS};
use crate::domain::{Commitment, HourRange, UsageModel};
use crate::ingest;
use crate::sources::{self, ReadOptions};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["scenario", "focus"])))]
pub struct Args {
    /// A scenario directory: its history window (history_start to decision_time).
    #[arg(long, value_name = "DIR")]
    pub scenario: Option<PathBuf>,
    /// A FOCUS file (CSV, CSV.gz, Parquet) or a directory tree of them: the whole bill.
    #[arg(long, value_name = "PATH")]
    pub focus: Option<PathBuf>,
    /// A FOCUS 1.3 ContractCommitment file listing existing commitments (with --focus).
    #[arg(long, value_name = "FILE", requires = "focus")]
    pub commitments: Option<PathBuf>,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the assessment as one self-contained HTML page with charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

fn load(args: &Args) -> anyhow::Result<(String, UsageModel, Vec<Commitment>)> {
    anyhow::ensure!(
        args.commitments.is_none() || args.focus.is_some(),
        "--commitments goes with --focus (a scenario names its own commitments file)"
    );
    if let Some(dir) = &args.scenario {
        let (file, window) = sources::read_scenario_file(dir)?;
        let range = HourRange::new(window.history_start, window.decision_time);
        let rates = sources::read_rate_card(&dir.join(&file.rates))?;
        let bill = sources::read_focus(
            &dir.join(&file.usage),
            &ReadOptions {
                range: Some(range),
                progress: !args.json,
            },
        )?;
        let mut listed = sources::read_commitments(&dir.join(&file.commitments), Some(&rates))?;
        let (inferred, _) = ingest::infer_commitments(&bill.commitments, &listed);
        listed.extend(inferred.into_iter().map(|i| i.commitment));
        return Ok((dir.display().to_string(), bill.model, listed));
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
    let mut listed = match &args.commitments {
        Some(p) => sources::read_commitments(p, None)?,
        None => Vec::new(),
    };
    let (inferred, _) = ingest::infer_commitments(&bill.commitments, &listed);
    listed.extend(inferred.into_iter().map(|i| i.commitment));
    Ok((path.display().to_string(), bill.model, listed))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (source, model, commitments) = load(&args)?;
    anyhow::ensure!(
        model.hours() > 0 && model.rows_read > 0,
        "{source}: the bill has no rows to assess"
    );
    let a = assess(&model, &commitments);
    if let Some(path) = &args.html {
        std::fs::write(path, html(&source, &a))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let mut v = serde_json::to_value(&a)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("source".into(), serde_json::json!(source));
            o.insert("thresholds".into(), serde_json::to_value(THRESHOLDS)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{source}: {} to {}, currency {}", a.from, a.to, a.currency);
    println!("(thresholds and their sources: docs/assess.md)");
    for c in &a.capabilities {
        println!();
        println!("{:<28} {}", c.name, c.stage.label());
        println!("  why:       {}", c.reason);
        let figures: Vec<String> = c.evidence.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !figures.is_empty() {
            println!("  evidence:  {}", figures.join(", "));
        }
        println!("  next step: {}", c.next_step);
        for n in &c.not_judged {
            println!("  not judged: {n}");
        }
    }
    if let Some(path) = &args.html {
        println!();
        println!("HTML report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(stage: Stage) -> &'static str {
    match stage {
        Stage::Crawl => "#d9534f",
        Stage::Walk => "#f0ad4e",
        Stage::Run => "#5cb85c",
        Stage::NotApplicable | Stage::NotJudged => "#999",
    }
}

/// Weekly coverage, utilization and ESR as lines (0-100 %).
fn chart(a: &Assessment) -> String {
    let (w, h, pad) = (720.0, 240.0, 36.0);
    let n = a.weekly.len().max(2) as f64 - 1.0;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / n;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v.clamp(-20.0, 100.0).max(0.0) / 100.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="weekly coverage, utilization and effective savings rate">"##
    );
    for p in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{}" y1="{y0}" y2="{y0}" stroke="#eee"/><text x="4" y="{ty}" font-size="10">{p}%</text>"##,
            w - pad,
            y0 = y(p),
            ty = y(p) + 3.0
        );
    }
    let series: [(&str, &str, Vec<Option<f64>>); 3] = [
        (
            "coverage",
            "#337ab7",
            a.weekly.iter().map(|k| Some(k.coverage_pct)).collect(),
        ),
        (
            "utilization",
            "#5cb85c",
            a.weekly.iter().map(|k| k.utilization_pct).collect(),
        ),
        (
            "effective savings rate",
            "#d9534f",
            a.weekly
                .iter()
                .map(|k| Some(k.effective_savings_rate_pct))
                .collect(),
        ),
    ];
    for (j, (name, col, vals)) in series.iter().enumerate() {
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        if !pts.is_empty() {
            let _ = write!(
                s,
                r##"<polyline fill="none" stroke="{col}" stroke-width="2" points="{}"/>"##,
                pts.join(" ")
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{}" y="8" width="10" height="10" fill="{col}"/><text x="{}" y="17" font-size="11">{name}</text>"##,
            pad + 170.0 * j as f64,
            pad + 14.0 + 170.0 * j as f64
        );
    }
    if let (Some(first), Some(last)) = (a.weekly.first(), a.weekly.last()) {
        let _ = write!(
            s,
            r##"<text x="{pad}" y="{}" font-size="10">{}</text><text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>"##,
            h - 10.0,
            first.start,
            w - pad,
            h - 10.0,
            last.start
        );
    }
    s.push_str("</svg>");
    s
}

/// One self-contained page: no script, no external asset.
pub fn html(source: &str, a: &Assessment) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>commitd assessment</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:6px;text-align:left;vertical-align:top}}.stage{{color:#fff;padding:2px 8px;border-radius:4px;white-space:nowrap}}small{{color:#666}}</style></head><body>
<h1>FinOps maturity assessment</h1><p>{} &middot; {} to {} &middot; currency {}</p>
<h2>Commitments, week by week</h2>{}
<h2>Capabilities</h2><table><tr><th>capability</th><th>stage</th><th>why, and the next step</th><th>figures</th></tr>"##,
        esc(source),
        a.from,
        a.to,
        esc(&a.currency),
        chart(a)
    );
    for c in &a.capabilities {
        let figures: Vec<String> = c
            .evidence
            .iter()
            .map(|(k, v)| format!("{}: {}", esc(k), esc(&v.to_string())))
            .collect();
        let unjudged: Vec<String> = c.not_judged.iter().map(|n| esc(n)).collect();
        let _ = write!(
            s,
            r##"<tr><td>{}</td><td><span class="stage" style="background:{}">{}</span></td><td>{}<br><b>Next:</b> {}<br><small>Not judged: {}</small></td><td><small>{}</small></td></tr>"##,
            esc(&c.name.replace('_', " ")),
            color(c.stage),
            c.stage.label(),
            esc(&c.reason),
            esc(&c.next_step),
            unjudged.join("; "),
            figures.join("<br>")
        );
    }
    s.push_str("</table><h2>Thresholds</h2><table><tr><th>capability</th><th>metric</th><th>Walk</th><th>Run</th><th>source</th></tr>");
    for t in THRESHOLDS {
        let op = if t.lower_is_better { "&le;" } else { "&ge;" };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{op} {}</td><td>{op} {}</td><td><small>{}</small></td></tr>",
            esc(t.capability),
            esc(t.metric),
            t.walk,
            t.run,
            esc(t.source)
        );
    }
    s.push_str("</table><p><small>Generated by commitd assess. Ratings are what the bill supports; see docs/assess.md.</small></p></body></html>\n");
    s
}
