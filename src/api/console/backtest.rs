//! The backtest page: a saved `commitd backtest --json` report (the file `[api]
//! backtest_report` names, read through the function `startup` hands in: the console opens no
//! file itself), as tables and charts: commitd against the baselines, month by month, and the
//! purchases the replay made. The report's figures are the backtest's own (its JSON carries
//! floats); amounts are shown to the cent.

use super::view::{bar_chart, pct, Bar, Nav};
use super::{ok_page, LoggedIn};
use crate::api::server::AppState;
use crate::chart::{line_chart, Line, LineChart};
use crate::domain::Money;
use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup, PreEscaped};
use serde_json::Value;

/// Purchases listed at most (the JSON has them all).
const MAX_PURCHASES: usize = 200;

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A float amount of USD as people read it ("USD 1,713.01").
fn usd(v: &Value, key: &str) -> String {
    num(v, key)
        .and_then(|x| Money::from_f64(x).ok())
        .map_or_else(|| "n/a".into(), Money::for_people)
}

fn share(v: &Value, key: &str) -> String {
    num(v, key).map_or_else(|| "n/a".into(), pct)
}

/// One row of the comparison: a planner's name and its figures.
fn planner_row(name: &str, v: &Value) -> Markup {
    html! {
        tr {
            th scope="row" { (name) }
            td.num { (usd(v, "cost")) }
            td.num { (share(v, "esr")) }
            td.num { (share(v, "coverage")) }
            td.num { (share(v, "utilization")) }
            td.num { (share(v, "min_monthly_utilization")) }
            td.num { (text(v, "purchases")) }
            td.num { (usd(v, "liability_after_window")) }
        }
    }
}

/// The report, rendered. Fields it does not find are left out or shown as n/a: a report of an
/// older or newer version still shows what it has.
pub(super) fn render(source: &str, r: &Value) -> Markup {
    let baselines: Vec<(&String, &Value)> = r
        .get("baselines")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let mut esr_bars = vec![Bar {
        label: "commitd".into(),
        value: num(r, "esr").unwrap_or(0.0),
        shown: share(r, "esr"),
    }];
    esr_bars.extend(baselines.iter().map(|(name, b)| Bar {
        label: (*name).clone(),
        value: num(b, "esr").unwrap_or(0.0),
        shown: share(b, "esr"),
    }));
    let months: Vec<&Value> = r
        .get("monthly")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let series = |key: &str| -> Vec<(f64, Option<f64>)> {
        months
            .iter()
            .enumerate()
            .map(|(i, m)| (i as f64, num(m, key)))
            .collect()
    };
    let step = months.len().div_ceil(8).max(1);
    let chart = LineChart {
        id: "bt-months".into(),
        title: "commitd's replay by month: coverage, utilization, effective savings rate".into(),
        desc: months
            .iter()
            .map(|m| {
                format!(
                    "{}: coverage {}, utilization {}, effective savings rate {}",
                    text(m, "month"),
                    share(m, "coverage"),
                    share(m, "utilization"),
                    share(m, "esr")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        y_unit: "%".into(),
        x_range: (-0.5, months.len() as f64 - 0.5),
        x_ticks: months
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0)
            .map(|(i, m)| (i as f64, text(m, "month")))
            .collect(),
        y_max: Some(1.0),
        y_label: |v| format!("{:.0}", v * 100.0),
        bands: Vec::new(),
        lines: ["coverage", "utilization", "esr"]
            .into_iter()
            .map(|k| Line {
                name: if k == "esr" {
                    "effective savings rate".into()
                } else {
                    k.into()
                },
                class: k,
                points: series(k),
                dots: months.len() <= 24,
            })
            .collect(),
        marker: None,
    };
    let purchases: Vec<&Value> = r
        .get("purchase_list")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    html! {
        p.lead {
            "Scenario " strong { (text(r, "scenario")) } ": " (text(r, "hours")) " hours replayed, a decision every "
            (text(r, "cadence_hours")) " h on billing data " (text(r, "latency_hours")) " h late ("
            (text(r, "decisions")) " decisions)."
        }
        p.muted { "From " code { (source) } ", written by " code { "commitd backtest --json" } ". On-demand equivalent of the eligible usage: " (usd(r, "on_demand_cost")) "." }
        div.table-wrap {
            table #comparison {
                caption { "commitd against the baselines over the same hours" }
                thead { tr {
                    th scope="col" { "Planner" } th scope="col" { "Cost" } th scope="col" { "Effective savings rate" }
                    th scope="col" { "Coverage" } th scope="col" { "Utilization" } th scope="col" { "Worst month's utilization" }
                    th scope="col" { "Purchases" } th scope="col" { "Left to pay after the window" }
                } }
                tbody {
                    (planner_row("commitd", r))
                    @for (name, b) in &baselines { (planner_row(name, b)) }
                }
            }
        }
        (bar_chart("bt-esr", "Effective savings rate by planner", &esr_bars))
        dl {
            dt { "Returns (refunds)" } dd { (text(r, "returns")) " (" (usd(r, "refunds")) ")" }
            dt { "Marketplace sales (proceeds, written off)" } dd { (text(r, "sales")) " (" (usd(r, "sale_proceeds")) ", " (usd(r, "sale_write_off")) ")" }
            dt { "Exchanges" } dd { (text(r, "exchanges")) }
            dt { "Hourly commitment at the end" } dd { (usd(r, "hourly_commitment_at_end")) " / h" }
            dt { "Lock-in at the end" } dd { (text(r, "lock_in_days_at_end")) " days" }
        }
        @if !months.is_empty() {
            h2 { "Month by month" }
            figure.chart #bt-month-chart {
                (PreEscaped(line_chart(&chart)))
                figcaption { "commitd's replay, each month's coverage, utilization and effective savings rate." }
            }
            div.table-wrap {
                table {
                    caption { "commitd's replay by month" }
                    thead { tr {
                        th scope="col" { "Month" } th scope="col" { "On-demand equivalent" } th scope="col" { "Cost" }
                        th scope="col" { "Effective savings rate" } th scope="col" { "Coverage" } th scope="col" { "Utilization" }
                        th scope="col" { "Purchases" } th scope="col" { "New hourly commitment" }
                    } }
                    tbody {
                        @for m in &months {
                            tr {
                                th scope="row" { (text(m, "month")) }
                                td.num { (usd(m, "on_demand_cost")) }
                                td.num { (usd(m, "cost")) }
                                td.num { (share(m, "esr")) }
                                td.num { (share(m, "coverage")) }
                                td.num { (share(m, "utilization")) }
                                td.num { (text(m, "purchases")) }
                                td.num { (usd(m, "new_hourly_commitment")) }
                            }
                        }
                    }
                }
            }
        }
        @if !purchases.is_empty() {
            h2 { "Purchases of the replay" }
            div.table-wrap {
                table {
                    caption {
                        (purchases.len()) " purchase(s)"
                        @if purchases.len() > MAX_PURCHASES { ", the first " (MAX_PURCHASES) " listed" }
                    }
                    thead { tr {
                        th scope="col" { "Start" } th scope="col" { "What" } th scope="col" { "Cost per hour" } th scope="col" { "Upfront" }
                    } }
                    tbody {
                        @for c in purchases.iter().take(MAX_PURCHASES) {
                            tr {
                                td { (text(c, "start")) }
                                td {
                                    (text(c, "provider")) " " (text(c, "instrument")) " " (text(c, "term_years")) "yr " (text(c, "payment_option"))
                                    @let region = text(c, "region");
                                    @if !region.is_empty() { " · " (region) }
                                    @let t = text(c, "instance_type");
                                    @if !t.is_empty() { " · " (t) }
                                }
                                td.num { (usd(c, "hourly_cost")) }
                                td.num { (usd(c, "upfront")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(super) async fn page(State(s): State<AppState>, LoggedIn(session): LoggedIn) -> Response {
    let body = match &s.console.backtest {
        None => html! {
            p { "No backtest report is configured." }
            p.muted {
                "Write one with " code { "commitd backtest --scenario DIR --json > backtest.json" }
                " and name it in the configuration: " code { "[api] backtest_report = \"backtest.json\"" }
                " (read again at every visit of this page)."
            }
        },
        Some(read) => match read() {
            Err(e) => return super::pages::unavailable(&session, "reading the backtest report", e),
            Ok((source, text)) => match serde_json::from_str::<Value>(&text) {
                Ok(v) if v.is_object() => render(&source, &v),
                Ok(_) => {
                    return super::pages::unavailable(
                        &session,
                        "reading the backtest report",
                        format!("{source} is not a JSON object (commitd backtest --json)"),
                    )
                }
                Err(e) => {
                    return super::pages::unavailable(
                        &session,
                        "reading the backtest report",
                        format!("{source}: {e}"),
                    )
                }
            },
        },
    };
    ok_page(&session, "Backtest", Nav::Backtest, body)
}
