//! `commitd-dev bench-anomalies`: precision and recall of the anomaly detector (the core's
//! `forecast::anomaly`, replayed hour by hour with a billing latency, exactly as `commitd
//! anomalies` runs it) against the simple baseline (a z-score of the change from the same hour
//! last week), on generated series with injected anomalies. A benchmark, not a test.
//!
//! Each series is 12 weeks of hourly usage with its own daily and weekly shape, level, trend and
//! noise (`forecast::synth::Spec`), and at most one injected anomaly in weeks 6 to 11: spikes of
//! several sizes and lengths, temporary dips, permanent steps up and down; a quarter of the
//! series are seasonal controls without any. An injected anomaly is found when a detection of
//! its direction starts inside its window: from 2 hours before its start to 24 hours after its
//! end (a spike, a dip) or to 7 days after its start (a step). A detection that matches no
//! injected anomaly, or one already matched, is a false alarm.

use commitd_core::domain::Hour;
use commitd_core::forecast::anomaly::{
    replay, week_zscore, AnomalyConfig, AnomalyKind, DetectedAnomaly,
};
use commitd_core::forecast::synth::{Rng, Spec};
use rayon::prelude::*;
use serde::Serialize;
use std::process::ExitCode;

const DAY: usize = 24;
const WEEK: usize = 168;
const WEEKS: usize = 12;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seeds to generate (each adds 52 series per noise level).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Billing latency of the replay, hours.
    #[arg(long, default_value_t = 24)]
    latency_hours: usize,
    /// The baseline's z-score threshold.
    #[arg(long, default_value_t = 3.0)]
    baseline_z: f64,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// What was injected into one series.
#[derive(Clone, Debug, PartialEq)]
struct Injected {
    category: String,
    start: usize,
    /// Hours (temporary) or `None` (permanent step).
    len: Option<usize>,
    up: bool,
}

impl Injected {
    /// Detections starting in `[from, to)` of the right direction find it.
    fn window(&self) -> (usize, usize) {
        let from = self.start.saturating_sub(2);
        match self.len {
            Some(l) => (from, self.start + l + DAY),
            None => (from, self.start + 7 * DAY),
        }
    }
}

struct Case {
    noise: f64,
    spec: Spec,
    injected: Option<Injected>,
}

fn monday() -> Hour {
    Hour::parse("2025-09-01T00:00:00Z").unwrap_or(Hour(0))
}

fn cases(seeds: u64) -> Vec<Case> {
    let mut out = Vec::new();
    for seed in 1..=seeds {
        let mut rng = Rng::new(seed.wrapping_mul(7919));
        for noise in [0.02, 0.05, 0.10] {
            let mut push = |rng: &mut Rng, injected: Option<(String, Option<usize>, f64)>| {
                let mut spec = Spec {
                    base: 5.0 + 300.0 * rng.uniform(),
                    daily_amp: 0.1 + 0.5 * rng.uniform(),
                    weekend_dip: 0.4 * rng.uniform(),
                    trend_per_day: 0.004 * (rng.uniform() - 0.5),
                    noise,
                    seed: rng.next_u64(),
                    ..Spec::default()
                };
                let inj = injected.map(|(category, len, mult)| {
                    let start = 6 * WEEK + (rng.uniform() * (5 * WEEK - 8 * DAY) as f64) as usize;
                    match len {
                        Some(l) => spec.spikes.push((start, l, mult)),
                        None => spec.shifts.push((start, mult)),
                    }
                    Injected {
                        category,
                        start,
                        len,
                        up: mult > 1.0,
                    }
                });
                out.push(Case {
                    noise,
                    spec,
                    injected: inj,
                });
            };
            for mult in [1.3, 1.6, 2.0, 3.0] {
                for len in [1, 3, 6, 12, 24] {
                    push(
                        &mut rng,
                        Some((format!("spike x{mult} {len}h"), Some(len), mult)),
                    );
                }
            }
            for mult in [0.5, 0.7] {
                for len in [6, 24] {
                    push(
                        &mut rng,
                        Some((format!("dip x{mult} {len}h"), Some(len), mult)),
                    );
                }
            }
            for mult in [1.2, 1.4, 2.0, 0.8, 0.6, 0.3] {
                let kind = if mult > 1.0 { "step up" } else { "step down" };
                for _ in 0..2 {
                    push(&mut rng, Some((format!("{kind} x{mult}"), None, mult)));
                }
            }
            for _ in 0..16 {
                push(&mut rng, None);
            }
        }
    }
    out
}

/// One method's outcome on one series.
#[derive(Clone, Debug, Default)]
struct Outcome {
    detections: usize,
    false_alarms: usize,
    found: bool,
    /// Hours from the injected start's delivery to the report (first matching detection).
    delay: Option<i64>,
    kind_right: bool,
}

fn judge(found: &[DetectedAnomaly], inj: Option<&Injected>, latency: usize) -> Outcome {
    let mut o = Outcome {
        detections: found.len(),
        ..Outcome::default()
    };
    let start = monday();
    for a in found {
        let s = a.start.since(start) as usize;
        let up = a.kind != AnomalyKind::Drop;
        let matches = inj.is_some_and(|i| {
            let (from, to) = i.window();
            i.up == up && s >= from && s < to
        });
        if matches && !o.found {
            o.found = true;
            let i = inj.map_or(0, |i| i.start);
            o.delay = Some(a.detected_at.since(start.plus((i + 1 + latency) as i64)));
            o.kind_right = match inj {
                Some(i) if i.len.is_none() && i.up => a.kind == AnomalyKind::StepUp,
                Some(i) if i.up => a.kind == AnomalyKind::Spike || i.len.unwrap_or(0) >= DAY,
                _ => a.kind == AnomalyKind::Drop,
            };
        } else {
            o.false_alarms += 1;
        }
    }
    o
}

#[derive(Clone, Debug, Default, Serialize)]
struct Figures {
    series: usize,
    injected: usize,
    found: usize,
    detections: usize,
    false_alarms: usize,
    precision_pct: f64,
    recall_pct: f64,
    f1_pct: f64,
    /// False alarms per series and 30 days of judged hours, on the controls.
    control_false_alarms_per_month: f64,
    median_delay_hours: Option<i64>,
    /// Found injected anomalies reported within 24 h of their first hour's delivery.
    within_a_day_pct: f64,
    kind_right_pct: f64,
}

fn figures(rows: &[(&Case, Outcome)], judged_hours: usize) -> Figures {
    let mut f = Figures {
        series: rows.len(),
        ..Figures::default()
    };
    let mut delays = Vec::new();
    let (mut controls, mut control_alarms, mut kind_right, mut within) = (0, 0, 0, 0);
    for (c, o) in rows {
        f.detections += o.detections;
        f.false_alarms += o.false_alarms;
        if c.injected.is_some() {
            f.injected += 1;
        } else {
            controls += 1;
            control_alarms += o.false_alarms;
        }
        if o.found {
            f.found += 1;
            kind_right += o.kind_right as usize;
            if let Some(d) = o.delay {
                delays.push(d);
                within += (d <= DAY as i64) as usize;
            }
        }
    }
    let pct = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            (1000.0 * a as f64 / b as f64).round() / 10.0
        }
    };
    f.precision_pct = pct(f.detections - f.false_alarms, f.detections);
    f.recall_pct = pct(f.found, f.injected);
    f.f1_pct = if f.precision_pct + f.recall_pct > 0.0 {
        (10.0 * 2.0 * f.precision_pct * f.recall_pct / (f.precision_pct + f.recall_pct)).round()
            / 10.0
    } else {
        0.0
    };
    let months = controls as f64 * judged_hours as f64 / (30.0 * DAY as f64);
    f.control_false_alarms_per_month = if months > 0.0 {
        (100.0 * control_alarms as f64 / months).round() / 100.0
    } else {
        0.0
    };
    delays.sort_unstable();
    f.median_delay_hours = delays.get(delays.len() / 2).copied();
    f.within_a_day_pct = pct(within, f.found);
    f.kind_right_pct = pct(kind_right, f.found);
    f
}

#[derive(Serialize)]
struct Report {
    latency_hours: usize,
    series_weeks: usize,
    baseline_z: f64,
    commitd: Figures,
    baseline: Figures,
    /// Recall by injected category (commitd, baseline), %.
    recall_by_category: Vec<(String, f64, f64)>,
    /// Precision and recall by noise level: (noise, commitd P, commitd R, baseline P, baseline R).
    by_noise: Vec<(f64, f64, f64, f64, f64)>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seeds >= 1, "--seeds must be at least 1");
    let cfg = AnomalyConfig {
        latency_hours: args.latency_hours,
        ..AnomalyConfig::default()
    };
    let n = WEEKS * WEEK;
    let all = cases(args.seeds);
    let results: Vec<(Outcome, Outcome)> = all
        .par_iter()
        .map(|c| {
            let y = c.spec.generate(monday(), n);
            let end = monday().plus((n + cfg.latency_hours) as i64);
            let ours = replay(&y, monday(), end, 0.1, &cfg);
            let base = week_zscore(&y, monday(), args.baseline_z, 4, &cfg);
            (
                judge(&ours, c.injected.as_ref(), cfg.latency_hours),
                judge(&base, c.injected.as_ref(), cfg.latency_hours),
            )
        })
        .collect();
    // Hours judged by both: after the detector's warm-up (the baseline needs 5 weeks).
    let judged = n - 5 * WEEK;
    let ours: Vec<(&Case, Outcome)> = all
        .iter()
        .zip(results.iter().map(|r| r.0.clone()))
        .collect();
    let base: Vec<(&Case, Outcome)> = all
        .iter()
        .zip(results.iter().map(|r| r.1.clone()))
        .collect();
    let mut categories: Vec<String> = all
        .iter()
        .filter_map(|c| c.injected.as_ref().map(|i| i.category.clone()))
        .collect();
    categories.dedup();
    categories.sort();
    categories.dedup();
    let recall = |rows: &[(&Case, Outcome)], cat: &str| {
        let sel: Vec<&(&Case, Outcome)> = rows
            .iter()
            .filter(|(c, _)| c.injected.as_ref().is_some_and(|i| i.category == cat))
            .collect();
        let found = sel.iter().filter(|(_, o)| o.found).count();
        (1000.0 * found as f64 / sel.len().max(1) as f64).round() / 10.0
    };
    let report = Report {
        latency_hours: cfg.latency_hours,
        series_weeks: WEEKS,
        baseline_z: args.baseline_z,
        commitd: figures(&ours, judged),
        baseline: figures(&base, judged),
        recall_by_category: categories
            .iter()
            .map(|c| (c.clone(), recall(&ours, c), recall(&base, c)))
            .collect(),
        by_noise: [0.02, 0.05, 0.10]
            .iter()
            .map(|&noise| {
                let pick = |rows: &[(&Case, Outcome)]| {
                    let sel: Vec<(&Case, Outcome)> = rows
                        .iter()
                        .filter(|(c, _)| c.noise == noise)
                        .map(|(c, o)| (*c, o.clone()))
                        .collect();
                    figures(&sel, judged)
                };
                let (a, b) = (pick(&ours), pick(&base));
                (
                    noise,
                    a.precision_pct,
                    a.recall_pct,
                    b.precision_pct,
                    b.recall_pct,
                )
            })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    println!(
        "{} series of {} weeks ({} injected anomalies, {} controls), billing latency {} h",
        r.commitd.series,
        r.series_weeks,
        r.commitd.injected,
        r.commitd.series - r.commitd.injected,
        r.latency_hours
    );
    println!();
    println!(
        "{:<34} {:>9} {:>7} {:>6} {:>7} {:>12} {:>12} {:>10} {:>11} {:>6}",
        "METHOD",
        "PRECISION",
        "RECALL",
        "F1",
        "ALERTS",
        "FALSE ALRM",
        "CTRL FA/MO",
        "MED DELAY",
        "WITHIN 24H",
        "KIND"
    );
    let row = |name: &str, f: &Figures| {
        println!(
            "{:<34} {:>8.1}% {:>6.1}% {:>5.1}% {:>7} {:>12} {:>12.2} {:>9}h {:>10.1}% {:>5.1}%",
            name,
            f.precision_pct,
            f.recall_pct,
            f.f1_pct,
            f.detections,
            f.false_alarms,
            f.control_false_alarms_per_month,
            f.median_delay_hours
                .map_or("-".to_string(), |d| d.to_string()),
            f.within_a_day_pct,
            f.kind_right_pct
        );
    };
    row("commitd (seasonal MSTL residuals)", &r.commitd);
    row(
        &format!("baseline (week z-score > {})", r.baseline_z),
        &r.baseline,
    );
    println!();
    println!(
        "{:<24} {:>8} {:>9}",
        "RECALL BY INJECTED", "commitd", "baseline"
    );
    for (c, a, b) in &r.recall_by_category {
        println!("{c:<24} {a:>7.1}% {b:>8.1}%");
    }
    println!();
    println!(
        "{:<8} {:>12} {:>10} {:>12} {:>10}",
        "NOISE", "commitd P", "commitd R", "baseline P", "baseline R"
    );
    for (noise, a, b, c, d) in &r.by_noise {
        println!("{noise:<8} {a:>11.1}% {b:>9.1}% {c:>11.1}% {d:>9.1}%");
    }
}
