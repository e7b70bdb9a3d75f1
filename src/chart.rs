//! SVG charts drawn on the server, shared by `commitd forecast --svg` and the web console: the
//! primitives (escaping, tick steps, bucketing, number labels) and [`line_chart`], a chart of
//! lines and shaded bands over a numeric x axis. Hand-written, no dependency: a chart is a
//! handful of polylines. Floats are geometry only; the figures they stand for are written
//! exactly elsewhere (a table, a title).
//!
//! Text is escaped here ([`esc`]); colours come from CSS classes (the console's stylesheet) so
//! the console's Content-Security-Policy needs no inline style.

use std::fmt::Write as _;

/// `s` escaped for SVG/XML text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Means of `v` over consecutive buckets of `k` values, with the bucket's first index; gaps
/// (non-finite) are skipped.
pub fn bucketed(v: &[f64], k: usize) -> Vec<(usize, f64)> {
    v.chunks(k.max(1))
        .enumerate()
        .filter_map(|(i, c)| {
            let ok: Vec<f64> = c.iter().copied().filter(|x| x.is_finite()).collect();
            (!ok.is_empty()).then(|| (i * k.max(1), ok.iter().sum::<f64>() / ok.len() as f64))
        })
        .collect()
}

/// A "nice" tick step (1, 2, 5 x 10^k) for about `n` ticks over `span`.
pub fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick label: whole numbers without decimals, others with at most two.
pub fn trim_num(v: f64) -> String {
    if v >= 100.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let t = format!("{v:.2}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A line: its legend name, its CSS class, its points (x, y); a None y is a gap.
pub struct Line {
    pub name: String,
    pub class: &'static str,
    pub points: Vec<(f64, Option<f64>)>,
    /// Draw a dot at every point (few points: months).
    pub dots: bool,
}

/// A shaded band between two bounds: its legend name, its CSS class, its points (x, low,
/// high).
pub struct Band {
    pub name: String,
    pub class: &'static str,
    pub points: Vec<(f64, f64, f64)>,
}

/// A chart of lines and bands over `x_range`.
pub struct LineChart {
    /// Unique in the page (the title and description ids derive from it).
    pub id: String,
    pub title: String,
    /// For screen readers: what the chart says, in words and figures.
    pub desc: String,
    /// The unit of the y axis, written above it.
    pub y_unit: String,
    pub x_range: (f64, f64),
    /// Ticks on the x axis: position and label.
    pub x_ticks: Vec<(f64, String)>,
    /// The top of the y axis at least (e.g. 1 for shares); else from the data.
    pub y_max: Option<f64>,
    /// Labels of the y ticks.
    pub y_label: fn(f64) -> String,
    pub bands: Vec<Band>,
    pub lines: Vec<Line>,
    /// A dashed vertical marker (x, label), e.g. "now".
    pub marker: Option<(f64, String)>,
}

const W: f64 = 640.0;
const H: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const PLOT_H: f64 = 170.0;

/// The chart as an inline `<svg>` element (role img, labelled by its title and description).
pub fn line_chart(c: &LineChart) -> String {
    let ymax_data = c
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .chain(c.bands.iter().flat_map(|b| b.points.iter().map(|p| p.2)))
        .filter(|v| v.is_finite())
        .fold(c.y_max.unwrap_or(0.0), f64::max);
    let step = nice_step(ymax_data.max(1e-6), 4.0);
    let ymax = (ymax_data / step).ceil().max(1.0) * step;
    let (x0, x1) = c.x_range;
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let plot_w = W - LEFT - RIGHT;
    let x_of = |x: f64| LEFT + plot_w * (x - x0) / span;
    let y_of = |v: f64| TOP + PLOT_H * (1.0 - v.clamp(0.0, ymax) / ymax);
    let bottom = TOP + PLOT_H;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="linechart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{id}-title {id}-desc"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        esc(&c.title),
        esc(&c.desc),
        id = esc(&c.id),
    );
    let _ = write!(
        s,
        r#"<text class="axis" x="{LEFT}" y="12">{}</text>"#,
        esc(&c.y_unit)
    );
    // Grid and y labels.
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let y = y_of(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            esc(&(c.y_label)(v))
        );
        v += step;
    }
    for (x, label) in &c.x_ticks {
        let px = x_of(*x);
        // A label at the right edge ends there rather than overflow the drawing.
        let anchor = if px > W - RIGHT - 24.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            s,
            r#"<line class="tick" x1="{px:.1}" y1="{bottom:.1}" x2="{px:.1}" y2="{:.1}"/><text class="axis" x="{px:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            bottom + 4.0,
            bottom + 16.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r#"<line class="frame" x1="{LEFT}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}"/><line class="frame" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom:.1}"/>"#,
        W - RIGHT
    );
    for b in &c.bands {
        if b.points.is_empty() {
            continue;
        }
        let upper = b
            .points
            .iter()
            .map(|(x, _, hi)| format!("{:.1},{:.1}", x_of(*x), y_of(*hi)));
        let lower = b
            .points
            .iter()
            .rev()
            .map(|(x, lo, _)| format!("{:.1},{:.1}", x_of(*x), y_of(*lo)));
        let pts: Vec<String> = upper.chain(lower).collect();
        let _ = write!(
            s,
            r#"<polygon class="{}" points="{}"/>"#,
            b.class,
            pts.join(" ")
        );
    }
    for l in &c.lines {
        // One polyline per run of points without a gap.
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, s: &mut String| {
            if run.len() > 1 {
                let _ = write!(
                    s,
                    r#"<polyline class="{}" points="{}"/>"#,
                    l.class,
                    run.join(" ")
                );
            }
            run.clear();
        };
        for (x, y) in &l.points {
            match y.filter(|v| v.is_finite()) {
                Some(v) => run.push(format!("{:.1},{:.1}", x_of(*x), y_of(v))),
                None => flush(&mut run, &mut s),
            }
        }
        flush(&mut run, &mut s);
        if l.dots {
            for (x, y) in &l.points {
                if let Some(v) = y.filter(|v| v.is_finite()) {
                    let _ = write!(
                        s,
                        r#"<circle class="{}" cx="{:.1}" cy="{:.1}" r="3"/>"#,
                        l.class,
                        x_of(*x),
                        y_of(v)
                    );
                }
            }
        }
    }
    if let Some((x, label)) = &c.marker {
        let px = x_of(*x);
        let _ = write!(
            s,
            r#"<line class="marker" x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom:.1}"/><text class="axis" x="{:.1}" y="{:.1}">{}</text>"#,
            px + 3.0,
            TOP + 10.0,
            esc(label)
        );
    }
    // Legend.
    let ly = H - 12.0;
    let mut lx = LEFT;
    let entries = c
        .bands
        .iter()
        .map(|b| (b.name.as_str(), b.class, true))
        .chain(c.lines.iter().map(|l| (l.name.as_str(), l.class, false)));
    for (name, class, band) in entries {
        if band {
            let _ = write!(
                s,
                r#"<rect class="{class}" x="{lx:.1}" y="{:.1}" width="16" height="9"/>"#,
                ly - 8.0
            );
        } else {
            let _ = write!(
                s,
                r#"<line class="{class}" x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
                ly - 4.0,
                lx + 16.0,
                ly - 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text class="axis" x="{:.1}" y="{ly:.1}">{}</text>"#,
            lx + 20.0,
            esc(name)
        );
        lx += 34.0 + 6.5 * name.chars().count() as f64;
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_buckets_and_labels() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(0.9, 4.0), 0.5);
        assert_eq!(trim_num(2.50), "2.5");
        assert_eq!(trim_num(3.0), "3");
        assert_eq!(
            bucketed(&[1.0, 3.0, f64::NAN, 5.0, f64::NAN], 2),
            vec![(0, 2.0), (2, 5.0)]
        );
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_line_chart_breaks_at_gaps_escapes_and_scales() {
        let c = LineChart {
            id: "c1".into(),
            title: "Usage <of> m5".into(),
            desc: "history & forecast".into(),
            y_unit: "USD per hour".into(),
            x_range: (0.0, 4.0),
            x_ticks: vec![(0.0, "Oct 01".into()), (4.0, "Oct 05".into())],
            y_max: None,
            y_label: trim_num,
            bands: vec![Band {
                name: "P10-P90".into(),
                class: "fan",
                points: vec![(2.0, 1.0, 3.0), (3.0, 1.0, 4.0)],
            }],
            lines: vec![Line {
                name: "history".into(),
                class: "history",
                points: vec![
                    (0.0, Some(1.0)),
                    (1.0, Some(2.0)),
                    (2.0, None),
                    (3.0, Some(2.0)),
                    (4.0, Some(2.5)),
                ],
                dots: false,
            }],
            marker: Some((2.0, "now".into())),
        };
        let svg = line_chart(&c);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Usage &lt;of&gt; m5") && svg.contains("history &amp; forecast"));
        // Two runs around the gap, one band.
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<polygon").count(), 1);
        // The top of the axis is the band's high (4), not the line's: the fan's top touches it.
        assert!(svg.contains(&format!("{:.1}", TOP)), "{svg}");
        assert!(!svg.contains("style="));
        assert!(svg.contains("role=\"img\""));
        for p in svg.split("points=\"").skip(1) {
            let p = &p[..p.find('"').unwrap()];
            for xy in p.split(' ') {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (LEFT..=W).contains(&x) && (TOP..=TOP + PLOT_H).contains(&y),
                    "{xy}"
                );
            }
        }
    }
}
