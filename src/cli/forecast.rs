//! `commitd forecast`: per usage group, the hourly quantiles of the coming horizon, from a
//! scenario's usage before `--at` (default: its decision time). A table summarised per day,
//! `--json` with every hour and every requested quantile, and `--svg FILE` with a chart of the
//! recent history and the forecast fan per group.

use crate::chart::{bucketed, esc, nice_step, trim_num};
use crate::domain::{GroupSeries, Hour, HourRange};
use crate::forecast::{forecast_batch, BatchInput, ForecastConfig, GroupForecast};
use crate::sources::{self, ReadOptions};
use anyhow::Context;
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A scenario directory (scenario.toml and its usage file).
    #[arg(long, value_name = "DIR")]
    pub scenario: PathBuf,
    /// Forecast from this hour on, using only usage before it (RFC 3339); default: the
    /// scenario's decision_time.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Only groups matching all these terms (e.g. "aws us-east-1 m5").
    #[arg(long, value_name = "FILTER")]
    pub group: Option<String>,
    /// Days to forecast (1-year terms: 365; 3-year terms: 1095).
    #[arg(long, default_value_t = 90)]
    pub horizon_days: usize,
    /// Quantile levels, comma-separated, each in (0, 1).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,0.9")]
    pub quantiles: Vec<f64>,
    /// Hours before --at that billing may not have delivered in full (not fitted).
    #[arg(long, default_value_t = 48)]
    pub tail_hours: usize,
    /// One JSON object on stdout with every hour of every quantile, and the signals.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart (history, P10-P90 fan, P50, actuals if the scenario has them).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// One group's history and forecast.
struct Row<'a> {
    series: &'a GroupSeries,
    result: Result<GroupForecast, crate::forecast::ForecastError>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.horizon_days > 0, "--horizon-days must be at least 1");
    if let Some(q) = args.quantiles.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
        anyhow::bail!("--quantiles: {q} is not inside (0, 1)");
    }
    let (file, window) = sources::read_scenario_file(&args.scenario)?;
    let at = match &args.at {
        Some(t) => Hour::parse(t).with_context(|| format!("--at '{t}'"))?,
        None => window.decision_time,
    };
    anyhow::ensure!(
        at > window.history_start,
        "--at {at} is not after the scenario's history_start {}",
        window.history_start
    );
    // Read through the end of the forecast when the scenario has it, so the chart can show
    // what really happened; the forecaster itself never sees an hour at or after --at.
    let horizon = args.horizon_days * 24;
    let end = at.plus(horizon as i64).min(window.evaluation_end).max(at);
    let range = HourRange::new(window.history_start, end);
    let usage_path = args.scenario.join(&file.usage);
    let bill = sources::read_focus(
        &usage_path,
        &ReadOptions {
            range: Some(range),
            progress: !args.json,
        },
    )?;
    let model = bill.model;
    let groups: Vec<&GroupSeries> = model
        .groups
        .iter()
        .filter(|g| {
            args.group
                .as_deref()
                .is_none_or(|f| g.group.matches_filter(f))
        })
        .collect();
    anyhow::ensure!(
        !groups.is_empty(),
        "no usage group in {} matches --group {:?}",
        usage_path.display(),
        args.group.as_deref().unwrap_or("")
    );
    let histories: Vec<Vec<f64>> = groups
        .iter()
        .map(|g| crate::plan::demand::known_history(&model, g, at))
        .collect();
    let inputs: Vec<BatchInput<'_>> = histories
        .iter()
        .map(|h| BatchInput {
            history: h,
            history_start: model.range.start,
        })
        .collect();
    let cfg = ForecastConfig {
        horizon_hours: horizon,
        quantiles: args.quantiles.clone(),
        incomplete_tail_hours: args.tail_hours,
        ..ForecastConfig::default()
    };
    let results = forecast_batch(&inputs, at, &cfg);
    let rows: Vec<Row<'_>> = groups
        .iter()
        .zip(results)
        .map(|(series, result)| Row { series, result })
        .collect();

    if let Some(path) = &args.svg {
        let svg = render_svg(&file.name, at, model.range.start, &rows);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let groups: Vec<_> = rows
            .iter()
            .map(|r| match &r.result {
                Ok(f) => json!({ "group": r.series.group, "label": r.series.group.to_string(), "forecast": f }),
                Err(e) => json!({ "group": r.series.group, "label": r.series.group.to_string(), "error": e.to_string() }),
            })
            .collect();
        let out = json!({
            "scenario": file.name,
            "at": at,
            "horizon_hours": horizon,
            "unit": "instance-hours per hour",
            "groups": groups,
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        print_table(&file.name, at, &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(name: &str, at: Hour, rows: &[Row<'_>]) {
    println!("scenario {name}: forecast from {at} (instance-hours per hour, daily means)");
    for r in rows {
        println!("\n{}", r.series.group);
        let f = match &r.result {
            Ok(f) => f,
            Err(e) => {
                println!("  no forecast: {e}");
                continue;
            }
        };
        let s = &f.signals;
        println!(
            "  level {:.2}, trend {:+.2} %/day, {} level shift(s), {} anomaly(ies){}",
            f.fit.level,
            100.0 * f.fit.trend_per_day,
            s.level_shifts.len(),
            s.anomalies.len(),
            if s.unsettled { ", UNSETTLED" } else { "" }
        );
        for shift in &s.level_shifts {
            println!(
                "  level shift at {}: {:.2} -> {:.2}",
                shift.hour, shift.before, shift.after
            );
        }
        for reason in &s.reasons {
            println!("  hold: {reason}");
        }
        let head: Vec<String> = f
            .levels
            .iter()
            .map(|l| format!("{:>9}", format!("P{}", fmt_level(*l))))
            .collect();
        println!("  {:<10} {}", "day", head.join(" "));
        for d in 0..f.len().div_ceil(24) {
            let means = f.mean_over(d * 24, (d + 1) * 24);
            let cells: Vec<String> = means.iter().map(|m| format!("{m:>9.2}")).collect();
            let day = f.start.plus((d * 24) as i64).to_datetime();
            println!("  {:<10} {}", day.format("%Y-%m-%d"), cells.join(" "));
        }
        let all = f.mean_over(0, f.len());
        let cells: Vec<String> = all.iter().map(|m| format!("{m:>9.2}")).collect();
        println!("  {:<10} {}", "mean", cells.join(" "));
    }
}

/// "0.1" -> "10", "0.025" -> "2.5".
fn fmt_level(l: f64) -> String {
    let p = l * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p:.1}")
    }
}

// ---------------------------------------------------------------------------------------------
// SVG: one panel per group. Hand-written, no dependency: the chart is a handful of polylines.

const W: f64 = 960.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const PLOT_H: f64 = 190.0;
/// At most this many points per line: hourly detail of a year would only blur.
const MAX_POINTS: usize = 1_500;

fn render_svg(name: &str, at: Hour, series_start: Hour, rows: &[Row<'_>]) -> String {
    let mut s = String::new();
    let h = 60.0 + PANEL_H * rows.len() as f64;
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="Helvetica, Arial, sans-serif" font-size="11">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="28" font-size="16" font-weight="bold">{} - usage forecast from {}</text>"##,
        esc(name),
        at
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="46" fill="#555">instance-hours per hour; shaded: P10-P90 (80 % of hours should fall inside), line: P50</text>"##
    );
    for (i, r) in rows.iter().enumerate() {
        panel(&mut s, 60.0 + PANEL_H * i as f64, at, series_start, r);
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, y0: f64, at: Hour, series_start: Hour, r: &Row<'_>) {
    let label = r.series.group.to_string();
    let f = match &r.result {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(
                s,
                r##"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}</text><text x="{LEFT}" y="{}" fill="#b00">no forecast: {}</text>"##,
                y0 + 20.0,
                esc(&label),
                y0 + 40.0,
                esc(&e.to_string())
            );
            return;
        }
    };
    let horizon = f.len();
    // Show as much history as forecast, between 4 and 12 weeks.
    let hist_hours = horizon.clamp(4 * 168, 12 * 168);
    let at_idx = at.since(series_start).max(0) as usize;
    let q = &r.series.quantity;
    let h_from = at_idx.saturating_sub(hist_hours);
    let history: Vec<f64> = q[h_from.min(q.len())..at_idx.min(q.len())].to_vec();
    let actual: Vec<f64> = q[at_idx.min(q.len())..(at_idx + horizon).min(q.len())].to_vec();
    let total = history.len() + horizon;
    let k = total.div_ceil(MAX_POINTS).max(1);
    let lo = f.quantile(0.1);
    let mid = f.quantile(0.5);
    let hi = f.quantile(0.9);
    let ymax_data = history
        .iter()
        .chain(actual.iter())
        .chain(hi.iter())
        .copied()
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    let step = nice_step(ymax_data.max(1e-6), 5.0);
    let ymax = (ymax_data / step).ceil().max(1.0) * step;
    let plot_w = W - LEFT - RIGHT;
    let hn = history.len() as f64;
    let x_of = |i: f64| LEFT + plot_w * i / total as f64;
    let y_of = |v: f64| y0 + TOP + PLOT_H * (1.0 - v / ymax);
    let pts = |data: &[(usize, f64)], offset: f64| {
        data.iter()
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(*i as f64 + offset), y_of(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Title and signals.
    let sig = &f.signals;
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}</text>"##,
        y0 + 20.0,
        esc(&label)
    );
    let (badge, colour) = if sig.unsettled {
        ("UNSETTLED: hold purchases", "#b00000")
    } else {
        ("settled", "#2a7a2a")
    };
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" font-size="12" font-weight="bold" fill="{colour}" text-anchor="end">{badge}</text>"##,
        W - RIGHT,
        y0 + 20.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{}" fill="#555">level {:.2}/h, trend {:+.2} %/day, {} level shift(s), {} anomaly(ies){}</text>"##,
        y0 + 36.0,
        f.fit.level,
        100.0 * f.fit.trend_per_day,
        sig.level_shifts.len(),
        sig.anomalies.len(),
        sig.reasons
            .first()
            .map(|r| format!(" - {}", esc(r)))
            .unwrap_or_default()
    );
    // Axes and grid.
    let _ = writeln!(s, r##"<g stroke="#e3e3e3">"##);
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}"/>"##,
            W - RIGHT,
            y = y_of(v)
        );
        v += step;
    }
    let _ = writeln!(s, "</g>");
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 6.0,
            y_of(v) + 4.0,
            trim_num(v)
        );
        v += step;
    }
    // Date ticks: weekly for short windows, monthly-ish beyond.
    let tick_days = if total <= 24 * 120 {
        7
    } else if total <= 24 * 400 {
        28
    } else {
        91
    };
    let first = series_start.plus(h_from as i64);
    let mut t = 0usize;
    while t <= total {
        let x = x_of(t as f64);
        let day = first.plus(t as i64).to_datetime();
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#999"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            y0 + TOP + PLOT_H,
            y0 + TOP + PLOT_H + 4.0,
            y0 + TOP + PLOT_H + 16.0,
            day.format("%b %d")
        );
        t += tick_days * 24;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{b}" x2="{}" y2="{b}" stroke="#333"/><line x1="{LEFT}" y1="{}" x2="{LEFT}" y2="{b}" stroke="#333"/>"##,
        W - RIGHT,
        y0 + TOP,
        b = y0 + TOP + PLOT_H
    );
    // History and actuals first, then the fan and the P50 on top: the forecast is the subject.
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#333" stroke-width="1"/>"##,
        pts(&bucketed(&history, k), 0.0)
    );
    if !actual.is_empty() {
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#e08a00" stroke-width="0.9" stroke-opacity="0.9"/>"##,
            pts(&bucketed(&actual, k), hn)
        );
    }
    let lo_b = bucketed(&lo, k);
    let hi_b = bucketed(&hi, k);
    let mut fan = pts(&hi_b, hn);
    let mut back: Vec<(usize, f64)> = lo_b.clone();
    back.reverse();
    fan.push(' ');
    fan.push_str(&pts(&back, hn));
    let _ = writeln!(
        s,
        r##"<polygon points="{fan}" fill="#4a90d9" fill-opacity="0.35" stroke="none"/>"##
    );
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f5fa8" stroke-width="1.2"/>"##,
        pts(&bucketed(&mid, k), hn)
    );
    // The forecast origin, level shifts and anomalies in view.
    let xa = x_of(hn);
    let _ = writeln!(
        s,
        r##"<line x1="{xa:.1}" y1="{}" x2="{xa:.1}" y2="{}" stroke="#333" stroke-dasharray="4,3"/><text x="{:.1}" y="{}" fill="#333">forecast from here</text>"##,
        y0 + TOP,
        y0 + TOP + PLOT_H,
        xa + 4.0,
        y0 + TOP + 10.0
    );
    for shift in &sig.level_shifts {
        let i = shift.hour.since(first);
        if i >= 0 && (i as f64) < hn {
            let x = x_of(i as f64);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#8a2be2" stroke-dasharray="6,3"/><text x="{:.1}" y="{}" fill="#8a2be2">level shift</text>"##,
                y0 + TOP,
                y0 + TOP + PLOT_H,
                x + 3.0,
                y0 + TOP + 22.0
            );
        }
    }
    for a in &sig.anomalies {
        let i = a.start.since(first);
        if i >= 0 && (i as f64) < hn {
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#d00000"/>"##,
                x_of(i as f64),
                y_of(a.peak.min(ymax))
            );
        }
    }
    // Legend.
    let ly = y0 + TOP + PLOT_H + 34.0;
    let items: [(&str, &str); 5] = [
        ("history (seen)", "#333"),
        ("actual (not seen)", "#e08a00"),
        ("P50", "#1f5fa8"),
        ("P10-P90", "#4a90d9"),
        ("anomaly", "#d00000"),
    ];
    let mut x = LEFT;
    for (name, colour) in items {
        if name == "P10-P90" {
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="18" height="9" fill="{colour}" fill-opacity="0.25"/>"##,
                ly - 8.0
            );
        } else if name == "anomaly" {
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/>"##,
                x + 9.0,
                ly - 4.0
            );
        } else {
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/>"##,
                ly - 4.0,
                x + 18.0,
                ly - 4.0
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{ly:.1}" fill="#333">{name}</text>"##,
            x + 23.0
        );
        x += 30.0 + 7.0 * name.len() as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Provider, UsageGroup};
    use crate::forecast::synth::Spec;

    #[test]
    fn svg_has_fan_median_axes_and_legend() {
        let t0 = Hour::parse("2025-01-06T00:00:00Z").unwrap();
        let hours = 10 * 168;
        let group = UsageGroup::new(Provider::Aws, "us-east-1", "m5.large", None, "Linux", "");
        let mut series = GroupSeries::empty(group, hours + 168);
        series.quantity = Spec::default().generate(t0, hours + 168);
        let at = t0.plus(hours as i64);
        let cfg = ForecastConfig {
            horizon_hours: 168,
            ..ForecastConfig::default()
        };
        let f = crate::forecast::forecast(&series.quantity, t0, at, &cfg).unwrap();
        let rows = [Row {
            series: &series,
            result: Ok(f),
        }];
        let svg = render_svg("demo <1>", at, t0, &rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("demo &lt;1&gt;"));
        assert_eq!(svg.matches("<polygon").count(), 1);
        // P50, history and the actuals after --at.
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("AWS/us-east-1/m5.large/Linux/Shared"));
        assert!(svg.contains("forecast from here") && svg.contains("P10-P90"));
        assert!(svg.contains("settled"));
        // Every coordinate is a finite number inside the canvas.
        for cap in svg.split("points=\"").skip(1) {
            let pts = cap.split('"').next().unwrap();
            for p in pts.split(' ') {
                let (x, y) = p.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (0.0..=W).contains(&x) && (0.0..=60.0 + PANEL_H).contains(&y),
                    "{p}"
                );
            }
        }
    }

    #[test]
    fn ticks_and_levels_read_well() {
        assert_eq!(nice_step(93.0, 5.0), 20.0);
        assert_eq!(nice_step(0.9, 5.0), 0.2);
        assert_eq!(fmt_level(0.1), "10");
        assert_eq!(fmt_level(0.025), "2.5");
        assert_eq!(trim_num(0.5), "0.5");
        assert_eq!(trim_num(250.0), "250");
        assert_eq!(
            bucketed(&[1.0, 3.0, f64::NAN, 5.0, f64::NAN], 2),
            vec![(0, 2.0), (2, 5.0)]
        );
    }
}
