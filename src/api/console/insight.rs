//! What the console shows from what the daemon recorded when it planned: a proposal's evidence
//! (the covered groups' usage and forecast, its marginal value: `plan::evidence`, in the
//! proposal's `action_proposed` event), the commitments page (the inventory the service last
//! read, with each commitment's utilization from the newest `plan_computed` event), and the
//! plans' expected coverage, utilization and effective savings rate by month (the
//! `plan_computed` events). Charts are [`crate::chart::line_chart`].

use super::view::{pct, usd, utc, Nav};
use super::{ok_page, LoggedIn};
use crate::api::server::AppState;
use crate::audit::{Event, EventFilter, EventKind};
use crate::chart::{line_chart, trim_num, Band, Line, LineChart};
use crate::domain::{Commitment, CommitmentAmount, Hour, Money};
use crate::plan::evidence::{ActionEvidence, CommitmentUse};
use crate::report::Month;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Datelike, Utc};
use maud::{html, Markup, PreEscaped};
use std::collections::{BTreeMap, HashMap};

/// The newest `plan_computed` events looked at for the commitments' utilization (a plan made
/// by `commitd plan` records none; the daemon's newest does).
const RECENT_PLANS: u32 = 50;
/// Months shown by the overview's chart.
const MONTHS: i32 = 12;

/// A proposal's evidence, as recorded in its `action_proposed` event's rationale.
pub(super) fn evidence_of(proposed: Option<&Event>) -> Option<ActionEvidence> {
    proposed
        .and_then(|e| e.rationale.get("evidence"))
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn usd_per_hour(x: f64) -> String {
    Money::from_f64(x).map_or_else(|_| "n/a".into(), |m| format!("{} / h", m.for_people()))
}

fn mean(v: &[Option<f64>]) -> Option<f64> {
    let ok: Vec<f64> = v.iter().flatten().copied().collect();
    (!ok.is_empty()).then(|| ok.iter().sum::<f64>() / ok.len() as f64)
}

/// The usage chart of a proposal: daily means of the covered groups' on-demand-equivalent
/// cost per hour, then the forecast fan (P10-P90) and median.
pub(super) fn evidence_chart(e: &ActionEvidence) -> Markup {
    let offset = e.history_start.since(e.forecast_start) as f64 / 24.0;
    let history: Vec<(f64, Option<f64>)> = e
        .history
        .iter()
        .enumerate()
        .map(|(i, v)| (offset + i as f64 + 0.5, *v))
        .collect();
    let band: Vec<(f64, f64, f64)> = e
        .p10
        .iter()
        .zip(&e.p90)
        .enumerate()
        .filter_map(|(i, (lo, hi))| Some((i as f64 + 0.5, (*lo)?, (*hi)?)))
        .collect();
    let p50: Vec<(f64, Option<f64>)> = e
        .p50
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64 + 0.5, *v))
        .collect();
    let end = e.p50.len().max(1) as f64;
    let mut ticks = Vec::new();
    let mut k = (offset / 7.0).ceil() as i64;
    while (k * 7) as f64 <= end {
        let at = e.forecast_start.plus(k * 7 * 24).to_datetime();
        ticks.push(((k * 7) as f64, at.format("%b %d").to_string()));
        k += 1;
    }
    let last_known = e.history.iter().rev().flatten().next().copied();
    let desc = format!(
        "Daily mean on-demand-equivalent cost per hour of the {} usage group(s) this commitment applies to, over the last {} known days{}; {}.",
        e.groups_total,
        e.history.len(),
        last_known.map_or(String::new(), |v| format!(", the last one {}", usd_per_hour(v))),
        match (mean(&e.p10), mean(&e.p50), mean(&e.p90)) {
            (Some(lo), Some(mid), Some(hi)) => format!(
                "forecast over the next {} days: median {} (P10 {}, P90 {})",
                e.p50.len(),
                usd_per_hour(mid),
                usd_per_hour(lo),
                usd_per_hour(hi)
            ),
            _ => "no forecast".to_string(),
        }
    );
    let chart = LineChart {
        id: "usage".into(),
        title: "Usage of the groups it covers: history and forecast".into(),
        desc,
        y_unit: "USD per hour, on-demand equivalent (daily mean)".into(),
        x_range: (offset, end),
        x_ticks: ticks,
        y_max: None,
        y_label: trim_num,
        bands: vec![Band {
            name: "forecast P10-P90".into(),
            class: "fan",
            points: band,
        }],
        lines: vec![
            Line {
                name: "known usage".into(),
                class: "history",
                points: history,
                dots: false,
            },
            Line {
                name: "forecast median".into(),
                class: "p50",
                points: p50,
                dots: false,
            },
        ],
        marker: Some((0.0, "known until here".into())),
    };
    html! {
        figure.chart #usage-chart {
            (PreEscaped(line_chart(&chart)))
            figcaption { (chart.desc) }
        }
    }
}

/// The proposal page's section on the usage the action covers and what it is worth.
pub(super) fn evidence_section(e: Option<&ActionEvidence>, term_hours: i64) -> Markup {
    html! {
        section aria-labelledby="usage-h" {
            h2 #usage-h { "Usage it covers, forecast and marginal value" }
            @match e {
                None => {
                    p.muted { "No usage chart or marginal value was recorded with this proposal (the planner that proposed it records none, e.g. a plan file or the forecast planner, or it was proposed before they were recorded)." }
                }
                Some(e) => {
                    (evidence_chart(e))
                    @if let Some(err) = &e.forecast_error { p.muted { "No forecast: " (err) } }
                    p {
                        "Applies to " (e.groups_total) " usage group(s)"
                        @if e.groups_total > e.groups.len() { " (the first " (e.groups.len()) " listed)" }
                        ": "
                        @for (i, g) in e.groups.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (g) }
                        }
                        "."
                    }
                    dl #marginal {
                        dt { "Marginal value (what the plan loses without it)" }
                        dd {
                            @match &e.marginal {
                                Some(m) => {
                                    (usd(m.over_term)) " over the term ("
                                    (usd(m.per_hour)) " per hour: the last " (m.hours / 24)
                                    " known days billed with the whole plan against the same plan without this action"
                                    @if term_hours > 0 { ", times " (term_hours) " hours" }
                                    ")"
                                    @if m.per_hour.is_negative() { " " span.bad { "it costs more than it saves, given the rest of the plan" } }
                                }
                                None => { "not computed for this kind of action (returns and sales: see the expected savings)" }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commitments

/// The newest daemon plan's utilization per commitment id, with when it was planned.
async fn latest_use(
    s: &AppState,
) -> Result<Option<(DateTime<Utc>, HashMap<String, CommitmentUse>)>, String> {
    let events = s
        .audit
        .list(
            &EventFilter {
                kind: Some(EventKind::PlanComputed),
                ..EventFilter::default()
            },
            Some(RECENT_PLANS),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(events.iter().rev().find_map(|e| {
        // An empty list is a plan that measured nothing (a plan file): not a measurement.
        let list: Vec<CommitmentUse> =
            serde_json::from_value(e.rationale.get("commitment_use")?.clone()).ok()?;
        if list.is_empty() {
            return None;
        }
        Some((
            e.time,
            list.into_iter().map(|u| (u.id.clone(), u)).collect(),
        ))
    }))
}

fn amount_text(c: &Commitment) -> String {
    match c.amount {
        CommitmentAmount::Instances(n) => format!(
            "{n} x {}",
            c.instance_type.as_deref().unwrap_or("instances")
        ),
        CommitmentAmount::HourlySpend(m) => format!("{} / h commitment", m.for_people()),
    }
}

/// Lock-in: the amortized cost of the rest of the term (what the commitment still costs,
/// used or not).
pub(super) fn lock_in(c: &Commitment, now: Hour) -> Money {
    c.hourly_cost
        .times(c.remaining_hours(now))
        .unwrap_or(Money::ZERO)
}

pub(super) async fn commitments(
    State(s): State<AppState>,
    LoggedIn(session): LoggedIn,
) -> Response {
    let now = Utc::now();
    let hour = Hour::from_datetime(now);
    let snap = s.metrics.snapshot();
    let used = match latest_use(&s).await {
        Ok(u) => u,
        Err(e) => return super::pages::unavailable(&session, "reading the audit log", e),
    };
    let body = match &snap.inventory {
        None => html! {
            p.muted { "No inventory read yet: the executor's leader reads it at each cycle (this server never calls the provider for a page)." }
        },
        Some((read_at, all)) => {
            let mut list: Vec<&Commitment> = all.iter().filter(|c| c.end > hour).collect();
            list.sort_by(|a, b| a.end.cmp(&b.end).then(a.id.cmp(&b.id)));
            let total_lock: Money = list.iter().map(|c| lock_in(c, hour)).sum();
            let total_hourly: Money = list
                .iter()
                .filter(|c| c.is_active(hour))
                .map(|c| c.hourly_cost)
                .sum();
            let read = DateTime::from_timestamp(*read_at, 0).unwrap_or(now);
            html! {
                p {
                    (list.len()) " commitment(s) active or queued, as read from the provider at " (utc(read)) ". "
                    "Spend committed now: " (usd(total_hourly)) " per hour; lock-in (the amortized cost of the rest of their terms): " strong #lock-in { (usd(total_lock)) } "."
                }
                p.muted {
                    @match &used {
                        Some((at, _)) => { "Utilization: the share of each commitment used over the last 30 known days of billed usage (the hours it was active), as the plan of " (utc(*at)) " billed it; commitments of one pool (same instrument, term, payment and scope) share its use." }
                        None => { "Utilization is not known yet: the daemon records it with each plan it computes." }
                    }
                }
                @if !list.is_empty() {
                    div.table-wrap {
                        table #commitments {
                            caption { "The portfolio, ending soonest first" }
                            thead { tr {
                                th scope="col" { "Commitment" } th scope="col" { "What" } th scope="col" { "Amount" }
                                th scope="col" { "Cost per hour" } th scope="col" { "Upfront" }
                                th scope="col" { "Utilization, 30 days" } th scope="col" { "Term end" } th scope="col" { "Lock-in" }
                            } }
                            tbody {
                                @for c in &list {
                                    @let u = used.as_ref().and_then(|(_, m)| m.get(&c.id));
                                    tr {
                                        th scope="row" { code { (c.id) } }
                                        td {
                                            (c.provider) " " (c.instrument) " " (c.term) " " (c.payment)
                                            @if let Some(r) = &c.region { " · " (r) }
                                            @if let Some(f) = &c.family { " · " (f) }
                                            @if !c.is_active(hour) { " " span.badge { "queued" } }
                                        }
                                        td { (amount_text(c)) }
                                        td.num { (usd(c.hourly_cost)) }
                                        td.num { (usd(c.upfront)) }
                                        td.num {
                                            @match u.and_then(|u| u.utilization.map(|x| (x, u.hours))) {
                                                Some((x, hours)) => {
                                                    meter min="0" max="1" value=(format!("{x:.4}")) title=(format!("over {hours} hours")) { (pct(x)) }
                                                    " " (pct(x))
                                                    @if hours < 720 { " " span.muted { "(" (hours / 24) " d)" } }
                                                }
                                                None => { span.muted { "not known" } }
                                            }
                                        }
                                        td { (utc(c.end.to_datetime())) " " span.muted { "(" (c.end.since(hour) / 24) " days)" } }
                                        td.num { (usd(lock_in(c, hour))) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok_page(&session, "Commitments", Nav::Commitments, body)
}

// ---------------------------------------------------------------------------------------------
// Overview: the plans' expectations by month

/// Coverage, utilization and effective savings rate the last plan of each month expected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct MonthFigures {
    pub coverage: f64,
    pub utilization: f64,
    pub esr: f64,
    pub plans: usize,
}

/// Per month, the expected figures of its last plan that recorded them (the events in chain
/// order, so the last seen is the newest).
pub(super) fn by_month(events: &[Event]) -> BTreeMap<Month, MonthFigures> {
    let mut out: BTreeMap<Month, MonthFigures> = BTreeMap::new();
    for e in events {
        let Some(x) = e.rationale.get("expected") else {
            continue;
        };
        let get = |k: &str| x.get(k).and_then(|v| v.as_f64()).filter(|v| v.is_finite());
        let (Some(coverage), Some(utilization), Some(esr)) =
            (get("coverage"), get("utilization"), get("esr"))
        else {
            continue;
        };
        let month = Month {
            year: e.time.year(),
            month: e.time.month(),
        };
        let plans = out.get(&month).map_or(0, |m| m.plans) + 1;
        out.insert(
            month,
            MonthFigures {
                coverage,
                utilization,
                esr,
                plans,
            },
        );
    }
    out
}

/// The plans of the last [`MONTHS`] months.
pub(super) async fn plan_events(s: &AppState, now: DateTime<Utc>) -> Result<Vec<Event>, String> {
    let first = Month {
        year: now.year(),
        month: now.month(),
    };
    let since = super::pages::shift(first, 1 - MONTHS).start();
    s.audit
        .list(
            &EventFilter {
                kind: Some(EventKind::PlanComputed),
                since: Some(since),
                until: None,
            },
            None,
        )
        .await
        .map_err(|e| e.to_string())
}

/// The overview's section: a chart of the three figures by month and the same as a table.
pub(super) fn monthly_section(
    months: &BTreeMap<Month, MonthFigures>,
    now: DateTime<Utc>,
) -> Markup {
    let last = Month {
        year: now.year(),
        month: now.month(),
    };
    let axis: Vec<Month> = (0..MONTHS)
        .map(|i| super::pages::shift(last, i + 1 - MONTHS))
        .collect();
    let series = |f: fn(&MonthFigures) -> f64| -> Vec<(f64, Option<f64>)> {
        axis.iter()
            .enumerate()
            .map(|(i, m)| (i as f64, months.get(m).map(f)))
            .collect()
    };
    let ticks: Vec<(f64, String)> = axis
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == (MONTHS as usize - 1) % 2)
        .map(|(i, m)| {
            let name = m.start().format("%b %y").to_string();
            (i as f64, name)
        })
        .collect();
    let desc = if months.is_empty() {
        "No plan recorded expected figures in the last 12 months.".to_string()
    } else {
        months
            .iter()
            .map(|(m, f)| {
                format!(
                    "{m}: coverage {}, utilization {}, effective savings rate {}",
                    pct(f.coverage),
                    pct(f.utilization),
                    pct(f.esr)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let chart = LineChart {
        id: "by-month".into(),
        title: "Coverage, utilization and effective savings rate by month".into(),
        desc,
        y_unit: "% (the last plan of each month)".into(),
        x_range: (-0.5, MONTHS as f64 - 0.5),
        x_ticks: ticks,
        y_max: Some(1.0),
        y_label: |v| format!("{:.0}", v * 100.0),
        bands: Vec::new(),
        lines: vec![
            Line {
                name: "coverage".into(),
                class: "coverage",
                points: series(|f: &MonthFigures| f.coverage),
                dots: true,
            },
            Line {
                name: "utilization".into(),
                class: "utilization",
                points: series(|f: &MonthFigures| f.utilization),
                dots: true,
            },
            Line {
                name: "effective savings rate".into(),
                class: "esr",
                points: series(|f: &MonthFigures| f.esr),
                dots: true,
            },
        ],
        marker: None,
    };
    html! {
        @if months.is_empty() {
            p.muted { "No plan has recorded its expected coverage, utilization and savings rate in the last 12 months." }
        } @else {
            figure.chart #month-chart {
                (PreEscaped(line_chart(&chart)))
                figcaption { "What the last plan of each month expected, over the last four known weeks of usage: coverage (the share of on-demand-equivalent usage covered), utilization (the share of commitment used) and effective savings rate (savings against on demand)." }
            }
            div.table-wrap {
                table #by-month {
                    caption { "By month (UTC), the last plan of the month" }
                    thead { tr { th scope="col" { "Month" } th scope="col" { "Coverage" } th scope="col" { "Utilization" } th scope="col" { "Effective savings rate" } th scope="col" { "Plans" } } }
                    tbody {
                        @for (m, f) in months.iter().rev() {
                            tr {
                                th scope="row" { (m.to_string()) }
                                td.num { (pct(f.coverage)) }
                                td.num { (pct(f.utilization)) }
                                td.num { (pct(f.esr)) }
                                td.num { (f.plans) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventBody, PlanComputed};
    use chrono::TimeZone;

    fn plan_event(time: DateTime<Utc>, expected: serde_json::Value) -> Event {
        Event {
            id: 1,
            time,
            actor: "commitd".into(),
            subject: "plan-1".into(),
            amount: None,
            rationale: serde_json::json!({ "expected": expected }),
            body: EventBody::from(PlanComputed {
                plan_id: "plan-1".into(),
                inputs_digest: "d".into(),
                solver_status: "Optimal".into(),
                objective: None,
                expected_savings: None,
                actions: 0,
            }),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn by_month_keeps_the_last_plan_of_each_month() {
        let t = |m, d| Utc.with_ymd_and_hms(2026, m, d, 6, 0, 0).unwrap();
        let x = |c: f64| serde_json::json!({"coverage": c, "utilization": 0.9, "esr": 0.2});
        let events = vec![
            plan_event(t(10, 1), x(0.5)),
            plan_event(t(10, 30), x(0.6)),
            plan_event(t(11, 2), serde_json::Value::Null),
            plan_event(t(11, 3), x(0.7)),
        ];
        let months = by_month(&events);
        assert_eq!(months.len(), 2);
        let oct = months[&Month {
            year: 2026,
            month: 10,
        }];
        assert_eq!(oct.coverage, 0.6);
        assert_eq!(oct.plans, 2);
        assert_eq!(
            months[&Month {
                year: 2026,
                month: 11
            }]
                .coverage,
            0.7
        );
        let html = monthly_section(&months, t(11, 20)).into_string();
        assert!(
            html.contains("2026-10") && html.contains("60.0 %"),
            "{html}"
        );
        assert_eq!(html.matches("<circle").count(), 6, "{html}");
        assert!(monthly_section(&BTreeMap::new(), t(11, 20))
            .into_string()
            .contains("No plan has recorded"));
    }

    #[test]
    fn lock_in_is_the_rest_of_the_term_at_the_amortized_cost() {
        let c: Commitment = serde_json::from_value(serde_json::json!({
            "id": "sp-1", "provider": "AWS", "instrument": "ComputeSavingsPlan", "term": 1,
            "payment": "NoUpfront", "start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z",
            "region": null, "instance_type": null, "family": null,
            "amount": {"unit": "hourly_spend", "value": "2.5"},
            "hourly_cost": "2.5", "upfront": "0"
        }))
        .unwrap();
        let now = Hour::parse("2026-12-01T00:00:00Z").unwrap();
        assert_eq!(lock_in(&c, now), Money::parse("1860").unwrap());
        assert_eq!(lock_in(&c, c.end), Money::ZERO);
        assert_eq!(lock_in(&c, c.start), c.total_cost());
    }
}
