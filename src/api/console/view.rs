//! The console's page frame, its formatting of money and time for people, and its charts (SVG
//! drawn on the server). Money is formatted here only, at the edge: "USD 1,713.01" on screen,
//! the exact figure ("1713.00924 USD") in the element's title; JSON, CSV and the audit log keep
//! exact figures.

use crate::domain::Money;
use crate::identity::session::Session;
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, DOCTYPE};

/// Which section a page belongs to (marked in the navigation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Proposals,
    Commitments,
    Audit,
    Finance,
    Backtest,
}

const SECTIONS: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/ui/", "Overview"),
    (Nav::Proposals, "/ui/proposals", "Proposals"),
    (Nav::Commitments, "/ui/commitments", "Commitments"),
    (Nav::Audit, "/ui/audit", "Audit"),
    (Nav::Finance, "/ui/finance", "Finance"),
    (Nav::Backtest, "/ui/backtest", "Backtest"),
];

/// A whole page: head, header with navigation and the person logged in (and a logout form
/// carrying the session's CSRF token), the main content, and a footer saying times are UTC.
pub fn page(title: &str, session: Option<&Session>, nav: Option<Nav>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · commitd" }
                link rel="stylesheet" href="/ui/console.css";
                script src="/ui/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "commitd" }
                    @if let Some(s) = session {
                        nav aria-label="Sections" {
                            ul {
                                @for (n, href, label) in SECTIONS {
                                    li {
                                        @if nav == Some(n) {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (s.principal.name) " (" (s.principal.role.as_str()) ")" }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (main)
                }
                footer {
                    p { "All times are UTC (hover for your local time). Amounts are rounded to the cent on screen; hover for the exact figure." }
                }
            }
        }
    }
}

/// A message at the top of a page: a success note or an error (an ARIA alert).
pub fn flash(ok: bool, text: &str) -> Markup {
    html! {
        @if ok {
            p.flash.ok role="status" { (text) }
        } @else {
            p.flash.bad role="alert" { (text) }
        }
    }
}

/// "USD 1,713.01": [`Money::for_people`], the one formatter of money for people.
pub fn usd_text(m: Money) -> String {
    m.for_people()
}

/// Money on screen, the exact figure in its title.
pub fn usd(m: Money) -> Markup {
    html! { span.money title=(format!("{m} USD exactly")) { (usd_text(m)) } }
}

/// A time in UTC, machine-readable in `datetime`.
pub fn utc(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339_opts(SecondsFormat::Secs, true)) title="UTC" {
            (t.format("%Y-%m-%d %H:%M UTC"))
        }
    }
}

/// A share (0..=1) as a percentage with one decimal.
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1} %", x * 100.0)
    } else {
        "n/a".into()
    }
}

/// One bar of a chart: its label, its length (any unit, only compared with the others) and
/// the exact figure written beside it.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub shown: String,
}

/// A horizontal bar chart as inline SVG, with a title and a description listing every figure
/// (for screen readers); nothing drawn when there is nothing to show.
pub fn bar_chart(id: &str, title: &str, bars: &[Bar]) -> Markup {
    const ROW: usize = 26;
    const LABEL_W: f64 = 230.0;
    const BAR_W: f64 = 250.0;
    let max = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let height = ROW * bars.len() + 8;
    let desc = bars
        .iter()
        .map(|b| format!("{}: {}", b.label, b.shown))
        .collect::<Vec<_>>()
        .join("; ");
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    html! {
        figure.chart {
            @if bars.is_empty() {
                figcaption { (title) }
                p.muted { "Nothing to chart yet." }
            } @else {
                svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 640 {height}"))
                    role="img" aria-labelledby=(format!("{title_id} {desc_id}")) {
                    title id=(title_id) { (title) }
                    desc id=(desc_id) { (desc) }
                    @for (i, b) in bars.iter().enumerate() {
                        @let y = i * ROW + 4;
                        @let w = if max > 0.0 && b.value.is_finite() && b.value > 0.0 { (b.value / max * BAR_W).max(1.0) } else { 0.0 };
                        text.label x="0" y=(y + 17) { (truncate(&b.label, 34)) }
                        rect.bar x=(LABEL_W) y=(y + 4) width=(format!("{w:.1}")) height="18" {}
                        text.value x=(format!("{:.1}", LABEL_W + w + 6.0)) y=(y + 17) { (b.shown) }
                    }
                }
                figcaption { (title) }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_as_people_read_it() {
        let m = |s: &str| Money::parse(s).unwrap();
        assert_eq!(usd_text(m("1713.00924")), "USD 1,713.01");
        assert_eq!(usd_text(m("0")), "USD 0.00");
        assert_eq!(usd_text(m("17520")), "USD 17,520.00");
        assert_eq!(usd_text(m("1234567.891")), "USD 1,234,567.89");
        // Half to even at the cent.
        assert_eq!(usd_text(m("0.125")), "USD 0.12");
        assert_eq!(usd_text(m("0.135")), "USD 0.14");
        assert_eq!(usd_text(m("-0.005")), "USD 0.00");
        assert_eq!(usd_text(m("-0.015")), "USD -0.02");
        assert_eq!(usd_text(m("-1000.5")), "USD -1,000.50");
        assert_eq!(usd_text(m("999.999")), "USD 1,000.00");
    }

    #[test]
    fn charts_escape_labels_and_scale_to_the_largest_bar() {
        let svg = bar_chart(
            "c",
            "Spend <per> hour",
            &[
                Bar {
                    label: "AWS <script>".into(),
                    value: 2.0,
                    shown: "USD 2.00".into(),
                },
                Bar {
                    label: "Azure".into(),
                    value: 1.0,
                    shown: "USD 1.00".into(),
                },
            ],
        )
        .into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.contains("width=\"250.0\""), "{svg}");
        assert!(svg.contains("width=\"125.0\""), "{svg}");
        assert!(svg.contains("role=\"img\""));
    }
}
