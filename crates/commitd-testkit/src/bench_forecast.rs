//! `commitd-dev bench-forecast`: accuracy and speed figures of the forecaster (a benchmark, not a
//! test). Rolling-origin evaluation against the seasonal-naive (weekly) baseline on synthetic
//! fleets, on an hourly CSV series (the Taylor electricity demand exported by
//! `bench/python/export_taylor.py`) and on scenarios; then the 500-group speed run.

use anyhow::Context;
use commitd_core::domain::Hour;
use commitd_core::forecast::eval::{score, seasonal_naive, Score, EVAL_LEVELS};
use commitd_core::forecast::synth;
use commitd_core::forecast::{forecast, forecast_batch, BatchInput, ForecastConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const DAY: usize = 24;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Synthetic groups to evaluate (mixed shapes: growth, decline, migrations, spikes, noise).
    #[arg(long, default_value_t = 48)]
    synthetic: usize,
    /// An hourly series as CSV with columns `timestamp,value` (e.g. bench/data/taylor_hourly.csv).
    #[arg(long)]
    csv: Vec<PathBuf>,
    /// Scenario directories to evaluate (their usage before evaluation_end).
    #[arg(long)]
    scenario: Vec<PathBuf>,
    /// Groups in the speed run (0 = skip it).
    #[arg(long, default_value_t = 500)]
    speed_groups: usize,
    /// Hours of history per group in the speed run.
    #[arg(long, default_value_t = 8760)]
    speed_history_hours: usize,
    /// Write the synthetic and scenario series and their protocols here, for
    /// bench/python/statsforecast_ref.py.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// One dataset's evaluation protocol: origins (hours from the series start), horizon, and the
/// first horizon hour that is scored.
#[derive(Clone, Debug, Serialize)]
struct Protocol {
    origins: Vec<usize>,
    horizon: usize,
    from_h: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
struct MethodFigures {
    /// Pinball loss at P10, P50, P90 divided by the mean actual, averaged over series (%).
    pinball_pct: [f64; 3],
    pinball_mean_pct: f64,
    /// Share of scored hours inside [P10, P90] (%).
    coverage_pct: f64,
}

#[derive(Clone, Debug, Serialize)]
struct DatasetFigures {
    dataset: String,
    series: usize,
    protocol: Protocol,
    scored_hours: usize,
    commitd: MethodFigures,
    seasonal_naive: MethodFigures,
    /// 1 - commitd / seasonal-naive mean pinball (%): positive = commitd better.
    improvement_pct: f64,
    failures: usize,
}

#[derive(Serialize)]
struct SpeedFigures {
    groups: usize,
    history_hours: usize,
    horizon_hours: usize,
    threads: usize,
    seconds: f64,
    failures: usize,
}

#[derive(Serialize)]
struct Report {
    datasets: Vec<DatasetFigures>,
    speed: Option<SpeedFigures>,
}

fn bench_cfg(horizon: usize) -> ForecastConfig {
    // Benchmark series are complete up to each origin, so no tail is held back: both methods
    // see exactly the same hours.
    ForecastConfig {
        horizon_hours: horizon,
        quantiles: EVAL_LEVELS.to_vec(),
        incomplete_tail_hours: 0,
        ..ForecastConfig::default()
    }
}

/// Scores of both methods on one series over all origins.
fn evaluate(values: &[f64], start: Hour, p: &Protocol) -> (Score, Score, usize) {
    let cfg = bench_cfg(p.horizon);
    let (mut ours, mut naive, mut failures) = (Score::default(), Score::default(), 0);
    for &o in &p.origins {
        if o + p.horizon > values.len() {
            continue;
        }
        let actual = &values[o..o + p.horizon];
        let Some(n) = seasonal_naive(&values[..o], 168, p.horizon, &EVAL_LEVELS) else {
            failures += 1;
            continue;
        };
        match forecast(values, start, start.plus(o as i64), &cfg) {
            Ok(f) => {
                ours.merge(&score(actual, &f.values, p.from_h));
                naive.merge(&score(actual, &n, p.from_h));
            }
            Err(_) => failures += 1,
        }
    }
    (ours, naive, failures)
}

fn figures(scores: &[Score]) -> MethodFigures {
    let k = scores.len().max(1) as f64;
    let mut f = MethodFigures::default();
    for i in 0..3 {
        f.pinball_pct[i] = 100.0 * scores.iter().map(|s| s.scaled(i)).sum::<f64>() / k;
    }
    f.pinball_mean_pct = f.pinball_pct.iter().sum::<f64>() / 3.0;
    let (c, h) = scores
        .iter()
        .fold((0, 0), |(c, h), s| (c + s.covered, h + s.hours));
    f.coverage_pct = if h > 0 {
        100.0 * c as f64 / h as f64
    } else {
        0.0
    };
    f
}

fn dataset(name: &str, series: &[(Hour, Vec<f64>)], p: &Protocol) -> DatasetFigures {
    use rayon::prelude::*;
    let results: Vec<(Score, Score, usize)> = series
        .par_iter()
        .map(|(start, v)| evaluate(v, *start, p))
        .collect();
    let ours: Vec<Score> = results.iter().map(|r| r.0).collect();
    let naive: Vec<Score> = results.iter().map(|r| r.1).collect();
    let (a, b) = (figures(&ours), figures(&naive));
    DatasetFigures {
        dataset: name.to_string(),
        series: series.len(),
        protocol: p.clone(),
        scored_hours: ours.iter().map(|s| s.hours).sum(),
        improvement_pct: if b.pinball_mean_pct > 0.0 {
            100.0 * (1.0 - a.pinball_mean_pct / b.pinball_mean_pct)
        } else {
            0.0
        },
        commitd: a,
        seasonal_naive: b,
        failures: results.iter().map(|r| r.2).sum(),
    }
}

fn read_csv(path: &PathBuf) -> anyhow::Result<(Hour, Vec<f64>)> {
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let mut start = None;
    let mut values = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = rec.with_context(|| format!("{}: row {row}", path.display()))?;
        let ts = rec.get(0).unwrap_or_default();
        let h = Hour::parse(ts)
            .with_context(|| format!("{}: row {row}, column timestamp", path.display()))?;
        let v: f64 = rec
            .get(1)
            .unwrap_or_default()
            .trim()
            .parse()
            .with_context(|| format!("{}: row {row}, column value", path.display()))?;
        let s = *start.get_or_insert(h);
        let idx = h.since(s);
        if idx != values.len() as i64 {
            anyhow::bail!(
                "{}: row {row}, column timestamp: expected consecutive hours, got {h}",
                path.display()
            );
        }
        values.push(v);
    }
    let start = start.with_context(|| format!("{}: no rows", path.display()))?;
    Ok((start, values))
}

/// Writes `<name>.csv` (series, kind, timestamp, value) and `<name>.protocol.json` for
/// bench/python/statsforecast_ref.py.
fn export(
    dir: &PathBuf,
    name: &str,
    kinds: &[String],
    series: &[(Hour, Vec<f64>)],
    p: &Protocol,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.csv"));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(w, "series,kind,timestamp,value")?;
    for (i, (kind, (start, v))) in kinds.iter().zip(series).enumerate() {
        for (h, x) in v.iter().enumerate() {
            writeln!(w, "s{i:03},{kind},{},{x:.4}", start.plus(h as i64))?;
        }
    }
    w.flush()?;
    let proto = dir.join(format!("{name}.protocol.json"));
    std::fs::write(&proto, serde_json::to_string_pretty(p)?)
        .with_context(|| format!("writing {}", proto.display()))?;
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut datasets = Vec::new();
    let t0 = Hour::parse("2024-01-01T00:00:00Z")?;
    if args.synthetic > 0 {
        // One year of history at the first origin, three origins a month apart, 90 days
        // ahead, scored from day 30 on: the horizons commitments depend on.
        let p = Protocol {
            origins: vec![365 * DAY, 395 * DAY, 425 * DAY],
            horizon: 90 * DAY,
            from_h: 30 * DAY,
        };
        let hours = 425 * DAY + p.horizon;
        let fleet = synth::fleet(args.synthetic, hours, 42);
        let series: Vec<(Hour, Vec<f64>)> = fleet
            .iter()
            .map(|(_, s)| (t0, s.generate(t0, hours)))
            .collect();
        if let Some(dir) = &args.export {
            let kinds: Vec<String> = fleet.iter().map(|(k, _)| k.to_string()).collect();
            export(dir, "synthetic", &kinds, &series, &p)?;
        }
        datasets.push(dataset("synthetic (all kinds)", &series, &p));
        let mut kinds: BTreeMap<&str, Vec<(Hour, Vec<f64>)>> = BTreeMap::new();
        for ((k, _), s) in fleet.iter().zip(&series) {
            kinds.entry(k).or_default().push(s.clone());
        }
        for (k, s) in kinds {
            datasets.push(dataset(&format!("synthetic: {k}"), &s, &p));
        }
    }
    for path in &args.csv {
        let (start, v) = read_csv(path)?;
        let days = v.len() / DAY;
        // Short series (Taylor: 84 days): horizon 30 days from three origins, the last one
        // ending with the data; scored from day 7 on.
        let horizon = 30.min(days / 3) * DAY;
        let last = v.len() - horizon;
        let p = Protocol {
            origins: vec![last - 12 * DAY, last - 6 * DAY, last],
            horizon,
            from_h: 7 * DAY,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        datasets.push(dataset(&name, &[(start, v)], &p));
    }
    for dir in &args.scenario {
        let (file, window) = commitd::sources::read_scenario_file(dir)?;
        let bill = commitd::sources::read_focus(
            &dir.join(&file.usage),
            &commitd::sources::ReadOptions {
                range: Some(window.all()),
                progress: false,
            },
        )?;
        let model = bill.model;
        // Hours after the bill's last row are unknown, not zero.
        let known = model
            .last_observed
            .map_or(0, |h| h.plus(1).since(model.range.start).max(0) as usize);
        let series: Vec<(Hour, Vec<f64>)> = model
            .groups
            .iter()
            .map(|g| {
                let mut v = g.quantity.clone();
                for x in v.iter_mut().skip(known) {
                    *x = f64::NAN;
                }
                (model.range.start, v)
            })
            .collect();
        // The synthetic protocol, anchored at the decision time: whatever history the
        // scenario has before it (three months for the public ones).
        let d = window.decision_time.since(model.range.start).max(0) as usize;
        let p = Protocol {
            origins: vec![d, d + 30 * DAY, d + 60 * DAY],
            horizon: 90 * DAY,
            from_h: 30 * DAY,
        };
        if let Some(dir) = &args.export {
            let kinds: Vec<String> = model
                .groups
                .iter()
                .map(|g| g.group.instance_type.clone())
                .collect();
            export(dir, &format!("scenario-{}", file.name), &kinds, &series, &p)?;
        }
        datasets.push(dataset(&format!("scenario {}", file.name), &series, &p));
    }
    let speed = (args.speed_groups > 0).then(|| {
        let fleet = synth::fleet(args.speed_groups, args.speed_history_hours, 7);
        let series: Vec<Vec<f64>> = fleet
            .iter()
            .map(|(_, s)| s.generate(t0, args.speed_history_hours))
            .collect();
        let inputs: Vec<BatchInput<'_>> = series
            .iter()
            .map(|s| BatchInput {
                history: s,
                history_start: t0,
            })
            .collect();
        let cfg = ForecastConfig::default();
        let end = t0.plus(args.speed_history_hours as i64);
        let clock = Instant::now();
        let out = forecast_batch(&inputs, end, &cfg);
        let seconds = clock.elapsed().as_secs_f64();
        SpeedFigures {
            groups: args.speed_groups,
            history_hours: args.speed_history_hours,
            horizon_hours: cfg.horizon_hours,
            threads: rayon::current_num_threads(),
            seconds,
            failures: out.iter().filter(|r| r.is_err()).count(),
        }
    });
    let report = Report { datasets, speed };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_tables(r: &Report) {
    println!(
        "{:<28} {:>6} {:>9} {:>22} {:>22} {:>9} {:>9} {:>8}",
        "dataset",
        "series",
        "hours",
        "commitd P10/P50/P90 %",
        "s-naive P10/P50/P90 %",
        "cov c %",
        "cov sn %",
        "better %"
    );
    for d in &r.datasets {
        let f = |m: &MethodFigures| {
            format!(
                "{:.2}/{:.2}/{:.2}",
                m.pinball_pct[0], m.pinball_pct[1], m.pinball_pct[2]
            )
        };
        println!(
            "{:<28} {:>6} {:>9} {:>22} {:>22} {:>9.1} {:>9.1} {:>8.1}{}",
            d.dataset,
            d.series,
            d.scored_hours,
            f(&d.commitd),
            f(&d.seasonal_naive),
            d.commitd.coverage_pct,
            d.seasonal_naive.coverage_pct,
            d.improvement_pct,
            if d.failures > 0 {
                format!("  ({} failed)", d.failures)
            } else {
                String::new()
            }
        );
    }
    println!("\npinball: loss / mean actual, averaged over series; coverage: share of hours in [P10, P90]");
    let mut seen: Vec<(usize, usize)> = Vec::new();
    for d in &r.datasets {
        let key = (d.protocol.from_h, d.protocol.horizon);
        if !seen.contains(&key) {
            seen.push(key);
            println!(
                "scored: hours {}..{} after each of {} origins (first: {})",
                key.0,
                key.1,
                d.protocol.origins.len(),
                d.dataset
            );
        }
    }
    if let Some(s) = &r.speed {
        println!(
            "\nspeed: {} groups x {} h history -> {} h horizon: {:.2} s on {} threads ({} failed)",
            s.groups, s.history_hours, s.horizon_hours, s.seconds, s.threads, s.failures
        );
    }
}
