//! Presenting a backtest: the JSON contract of `shared/scenarios/README.md`, a readable text
//! summary, and a self-contained HTML report (inline SVG, no script, no external asset) that a
//! finance reader can follow: what demand cost on demand, what commitd paid, how much of what it
//! bought was used, and how that compares with the native tools.

use super::metrics::{DayPoint, Period, RunResult};

/// Reads one series of a daily point (for charts).
type DayValue = fn(&DayPoint) -> f64;
use super::Settings;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// commitd and the baselines on one scenario.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub scenario: String,
    pub settings: Settings,
    pub commitd: RunResult,
    /// (name, result) in display order: existing_only, ce_quarterly, hindsight_static.
    pub baselines: Vec<(String, RunResult)>,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn usd(m: crate::domain::Money) -> String {
    let v = m.to_f64();
    let whole = v.abs().round() as i64;
    let mut digits = whole.to_string();
    let mut i = digits.len() as i64 - 3;
    while i > 0 {
        digits.insert(i as usize, ',');
        i -= 3;
    }
    format!("{}${digits}", if v < 0.0 { "-" } else { "" })
}

impl Comparison {
    /// The backtest contract (every field the README asks for), plus details.
    pub fn to_json(&self) -> Value {
        let r = &self.commitd;
        let t = &r.total;
        let baselines: serde_json::Map<String, Value> = self
            .baselines
            .iter()
            .map(|(name, b)| {
                (
                    name.clone(),
                    json!({
                        "cost": b.total.cost.to_f64(),
                        "esr": b.total.esr,
                        "coverage": b.total.coverage,
                        "utilization": b.total.utilization.unwrap_or(1.0),
                        "min_monthly_utilization": b.min_monthly_utilization.unwrap_or(1.0),
                        "purchases": b.purchases.len(),
                        "liability_after_window": b.liability_after_window.to_f64(),
                    }),
                )
            })
            .collect();
        let return_list: Vec<Value> = r
            .returns
            .iter()
            .map(|x| {
                json!({
                    "at": x.at,
                    "id": x.source.id,
                    "count": x.source.count,
                    "refund": x.refund.to_f64(),
                    "hourly_cost": x.hourly.to_f64(),
                })
            })
            .collect::<Vec<_>>();
        let sale_list: Vec<Value> = r
            .sales
            .iter()
            .map(|x| {
                json!({
                    "listed": x.listed,
                    "sold": x.sold,
                    "id": x.source.id,
                    "count": x.source.count,
                    "proceeds": x.proceeds.to_f64(),
                    "write_off": x.write_off.to_f64(),
                    "hourly_cost": x.hourly.to_f64(),
                })
            })
            .collect::<Vec<_>>();
        let market = self.settings.policy.ri_marketplace;
        let exchange_list: Vec<Value> = r
            .exchange_log
            .iter()
            .map(|e| {
                json!({
                    "at": e.at,
                    "provider": e.provider,
                    "sources": e.sources,
                    "source_value": e.source_value.to_f64(),
                    "target_value": e.target_value.to_f64(),
                    "source_hourly_cost": e.source_hourly.to_f64(),
                    "target_hourly_cost": e.target_hourly.to_f64(),
                    "targets": e.targets.iter().map(|c| json!({
                        "id": c.id,
                        "instrument": c.instrument,
                        "region": c.region,
                        "instance_type": c.instance_type,
                        "amount": c.amount,
                        "end": c.end,
                        "hourly_cost": c.hourly_cost.to_f64(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect::<Vec<_>>();
        let mut out = json!({
            "scenario": self.scenario,
            "hours": t.hours,
            "on_demand_cost": t.on_demand_equivalent.to_f64(),
            "cost": t.cost.to_f64(),
            "esr": t.esr,
            "coverage": t.coverage,
            // No commitment paid for at all counts as nothing wasted.
            "utilization": t.utilization.unwrap_or(1.0),
            "min_monthly_utilization": r.min_monthly_utilization.unwrap_or(1.0),
            "purchases": r.purchases.len(),
            "exchanges": r.exchanges,
            "returns": r.returns.len(),
            "refunds": r.returns.iter().map(|x| x.refund).sum::<crate::domain::Money>().to_f64(),
            "sales": r.sales.len(),
            "sale_proceeds": r.sales.iter().map(|x| x.proceeds).sum::<crate::domain::Money>().to_f64(),
            "sale_write_off": r.sales.iter().map(|x| x.write_off).sum::<crate::domain::Money>().to_f64(),
            "ri_marketplace": {
                "sale_delay_hours": market.sale_delay_hours,
                "price_share": market.price_bp as f64 / 10_000.0,
                "fee_share": market.fee_bp as f64 / 10_000.0,
            },
            "baselines": baselines,
            "cadence_hours": self.settings.cadence_hours,
            "latency_hours": self.settings.latency_hours,
            "decisions": r.decisions,
            "commitment_cost": t.commitment_cost.to_f64(),
            "uncovered_on_demand_cost": t.on_demand_cost.to_f64(),
            "lock_in_days": t.lock_in_days,
            "lock_in_days_at_end": r.lock_in_days_at_end,
            "liability_after_window": r.liability_after_window.to_f64(),
            "hourly_commitment_at_end": r.hourly_commitment_at_end.to_f64(),
            "monthly": r.months.iter().map(month_json).collect::<Vec<_>>(),
            "purchase_list": r.purchases.iter().map(|c| json!({
                "id": c.id,
                "start": c.start,
                "provider": c.provider,
                "instrument": c.instrument,
                "term_years": c.term.years(),
                "payment_option": c.payment,
                "region": c.region,
                "instance_type": c.instance_type,
                "family": c.family,
                "amount": c.amount,
                "hourly_cost": c.hourly_cost.to_f64(),
                "upfront": c.upfront.to_f64(),
            })).collect::<Vec<_>>(),
            "return_list": return_list,
            "sale_list": sale_list,
            "exchange_list": exchange_list,
        });
        // Only a replay judged by the daemon's policies has it (the benchmark replay's JSON
        // stays as it was).
        if !r.blocked.is_empty() {
            out["blocked_list"] = json!(r.blocked);
        }
        out
    }

    /// A readable summary for the terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let t = &self.commitd.total;
        let _ = writeln!(
            s,
            "Backtest of {}: {} to {} ({} h), decisions every {} h, billing data {} h late",
            self.scenario,
            t.start,
            t.end,
            t.hours,
            self.settings.cadence_hours,
            self.settings.latency_hours
        );
        let _ = writeln!(
            s,
            "On-demand equivalent of the eligible usage: {}\n",
            usd(t.on_demand_equivalent)
        );
        let _ = writeln!(
            s,
            "{:<18} {:>14} {:>7} {:>9} {:>12} {:>9} {:>10} {:>14}",
            "planner",
            "cost",
            "ESR",
            "coverage",
            "utilization",
            "purchases",
            "lock-in d",
            "left after"
        );
        for (name, r) in std::iter::once(("commitd".to_string(), &self.commitd))
            .chain(self.baselines.iter().map(|(n, r)| (n.clone(), r)))
        {
            let _ = writeln!(
                s,
                "{:<18} {:>14} {:>7} {:>9} {:>12} {:>9} {:>10.0} {:>14}",
                name,
                usd(r.total.cost),
                pct(r.total.esr),
                pct(r.total.coverage),
                r.total.utilization.map(pct).unwrap_or_else(|| "-".into()),
                r.purchases.len(),
                r.total.lock_in_days,
                usd(r.liability_after_window),
            );
        }
        let _ = writeln!(s, "\ncommitd by month:");
        let _ = writeln!(
            s,
            "{:<8} {:>12} {:>12} {:>7} {:>9} {:>12} {:>9} {:>9} {:>7} {:>5}",
            "month",
            "on-demand eq",
            "cost",
            "ESR",
            "coverage",
            "utilization",
            "purchases",
            "exchanges",
            "returns",
            "sales"
        );
        for m in &self.commitd.months {
            let _ = writeln!(
                s,
                "{:<8} {:>12} {:>12} {:>7} {:>9} {:>12} {:>9} {:>9} {:>7} {:>5}",
                m.label,
                usd(m.on_demand_equivalent),
                usd(m.cost),
                pct(m.esr),
                pct(m.coverage),
                m.utilization.map(pct).unwrap_or_else(|| "-".into()),
                m.purchases,
                m.exchanges,
                m.returns,
                m.sales
            );
        }
        if !self.commitd.blocked.is_empty() {
            let _ = writeln!(
                s,
                "\nBlocked by the policies (not carried out): {} actions, the first ones:",
                self.commitd.blocked.len()
            );
            for b in self.commitd.blocked.iter().take(5) {
                let _ = writeln!(
                    s,
                    "  {} {}: {} ({}: {})",
                    b.at, b.what, b.rule, b.policy, b.detail
                );
            }
        }
        if !self.commitd.sales.is_empty() {
            let market = self.settings.policy.ri_marketplace;
            let _ = writeln!(
                s,
                "\nAWS Standard RIs sold on the Marketplace: {} (proceeds {}, written off {}). Assumed: every listing sells {} days after it is listed, at {:.0}% of the pro rata upfront of its whole months left, less AWS's {:.0}% fee.",
                self.commitd.sales.len(),
                usd(self.commitd.sales.iter().map(|x| x.proceeds).sum()),
                usd(self.commitd.sales.iter().map(|x| x.write_off).sum()),
                market.sale_delay_hours as f64 / 24.0,
                market.price_bp as f64 / 100.0,
                market.fee_bp as f64 / 100.0
            );
        }
        let _ = writeln!(
            s,
            "\nESR = 1 - cost / on-demand equivalent. Cost = amortized commitments inside the window (used or not) + on-demand for uncovered usage (+ what RI sales wrote off).\n\"left after\" = commitment cost still to run after the window."
        );
        s
    }

    /// The self-contained HTML report.
    pub fn to_html(&self) -> String {
        let r = &self.commitd;
        let t = &r.total;
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>commitd backtest: {name}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222;padding:0 1em}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}\
td:first-child,th:first-child{{text-align:left}}.note{{color:#555;font-size:0.9em}}h2{{margin-top:2em}}\
.kpi{{display:inline-block;margin:0 2em 1em 0}}.kpi b{{display:block;font-size:1.6em}}</style></head><body>",
            name = esc(&self.scenario)
        );
        let _ = write!(
            h,
            "<h1>Commitment backtest: {}</h1><p class=\"note\">{} to {} ({} hours). commitd decided every {} h \
with billing data {} h late, as a live system would: no decision saw usage that had not been billed yet.</p>",
            esc(&self.scenario),
            t.start,
            t.end,
            t.hours,
            self.settings.cadence_hours,
            self.settings.latency_hours
        );
        let ce = self.baseline("ce_quarterly");
        let saved = t.on_demand_equivalent - t.cost;
        let _ = write!(
            h,
            "<div><span class=\"kpi\">Effective savings rate<b>{}</b></span><span class=\"kpi\">Saved vs on demand<b>{}</b></span>\
<span class=\"kpi\">Utilization<b>{}</b></span><span class=\"kpi\">Coverage<b>{}</b></span>{}</div>",
            pct(t.esr),
            usd(saved),
            t.utilization.map(pct).unwrap_or_else(|| "-".into()),
            pct(t.coverage),
            ce.map(|c| format!(
                "<span class=\"kpi\">vs native tool (ce_quarterly)<b>{:+.1} pts</b></span>",
                (t.esr - c.total.esr) * 100.0
            ))
            .unwrap_or_default()
        );
        h.push_str("<h2>commitd compared with the baselines</h2><table><tr><th>planner</th><th>cost</th><th>effective savings rate</th><th>coverage</th><th>utilization</th><th>lowest monthly utilization</th><th>purchases</th><th>lock-in (days)</th><th>commitment left after the window</th></tr>");
        for (name, r) in self.all() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td></tr>",
                esc(name),
                usd(r.total.cost),
                pct(r.total.esr),
                pct(r.total.coverage),
                r.total.utilization.map(pct).unwrap_or_else(|| "-".into()),
                r.min_monthly_utilization.map(pct).unwrap_or_else(|| "-".into()),
                r.purchases.len(),
                r.total.lock_in_days,
                usd(r.liability_after_window)
            );
        }
        h.push_str("</table><p class=\"note\"><b>existing_only</b>: buy nothing, let existing commitments run out. \
<b>ce_quarterly</b>: what the providers' own recommenders do: every 90 days, buy the 1-year savings plan that would have saved most over the last 30 days. \
<b>hindsight_static</b>: the best single purchase at the start, knowing the whole year in advance (an upper reference no real planner can reach).</p>");
        h.push_str(&esr_bars(&self.all()));
        h.push_str("<h2>Demand and commitments over time</h2><p class=\"note\">Per hour, daily average. The black line is what the usage would have cost on demand; \
the coloured areas are what commitd's commitments cost (paid whether used or not); the red line is what was actually paid (commitments + on-demand for the rest). \
The gap between the black and red lines is the saving.</p>");
        h.push_str(&timeline(r));
        h.push_str("<h2>Monthly savings rate and utilization</h2><p class=\"note\">Bars: commitd's monthly utilization (share of the commitment paid for that covered usage; below 100% is money lost). \
Lines: monthly effective savings rate of commitd and of the baselines.</p>");
        h.push_str(&monthly_chart(&self.all()));
        h.push_str("<table><tr><th>month</th><th>on-demand equivalent</th><th>cost</th><th>ESR</th><th>coverage</th><th>utilization</th><th>purchases</th><th>new commitment ($/h)</th><th>lock-in (days)</th></tr>");
        for m in &r.months {
            h.push_str(&month_row(m));
        }
        h.push_str("</table>");
        let _ = write!(
            h,
            "<h2>What is left after the window</h2><p>At the end of the window commitd holds {} per hour of commitments, \
with {} of amortized cost still to run (average remaining term {:.0} days).</p>",
            usd(r.hourly_commitment_at_end),
            usd(r.liability_after_window),
            r.lock_in_days_at_end
        );
        h.push_str("<h2>Purchases</h2><table><tr><th>date</th><th>instrument</th><th>scope</th><th>payment</th><th>amount</th><th>cost per hour</th><th>upfront</th></tr>");
        for c in r.purchases.iter().take(400) {
            let scope = match (&c.region, &c.instance_type, &c.family) {
                (Some(r), Some(t), _) => format!("{r} {t}"),
                (Some(r), None, Some(f)) => format!("{r} {f}"),
                _ => format!("all {}", c.provider),
            };
            let amount = match c.amount {
                crate::domain::CommitmentAmount::HourlySpend(m) => format!("${m}/h"),
                crate::domain::CommitmentAmount::Instances(n) => format!("{n} instances"),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
                &c.start.to_string()[..10],
                c.instrument,
                esc(&scope),
                c.payment,
                amount,
                c.hourly_cost.to_f64(),
                usd(c.upfront)
            );
        }
        if r.purchases.len() > 400 {
            let _ = write!(
                h,
                "<tr><td colspan=7>... {} more</td></tr>",
                r.purchases.len() - 400
            );
        }
        h.push_str("</table>");
        if !r.exchange_log.is_empty() {
            h.push_str("<h2>Exchanges</h2><p class=\"note\">Reservations left idle were exchanged for new ones where the usage went: \
the part given up is paid for until the exchange and its remaining value moves into the new reservations, which must be worth at least as much \
(an Azure exchange starts a new term; an AWS convertible RI exchange keeps the old end date).</p>\
<table><tr><th>date</th><th>given up</th><th>remaining value</th><th>new</th><th>new commitment</th><th>cost per hour (old / new)</th></tr>");
            for e in r.exchange_log.iter().take(200) {
                let given: Vec<String> = e
                    .sources
                    .iter()
                    .map(|s| format!("{} x{}", s.id, s.count))
                    .collect();
                let new: Vec<String> = e
                    .targets
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {} x{}",
                            c.region.as_deref().unwrap_or(""),
                            c.instance_type.as_deref().unwrap_or(""),
                            c.amount.instances().unwrap_or(0)
                        )
                    })
                    .collect();
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3} / {:.3}</td></tr>",
                    &e.at.to_string()[..10],
                    esc(&given.join(", ")),
                    usd(e.source_value),
                    esc(&new.join(", ")),
                    usd(e.target_value),
                    e.source_hourly.to_f64(),
                    e.target_hourly.to_f64()
                );
            }
            h.push_str("</table>");
        }
        if !r.returns.is_empty() {
            h.push_str("<h2>Returns</h2><p class=\"note\">Azure reservations left idle that no new purchase could absorb were returned: \
paid for until the return, their remaining value refunded (at most USD 50,000 in any 12 months).</p>\
<table><tr><th>date</th><th>reservation</th><th>instances</th><th>refund</th><th>cost per hour no longer paid</th></tr>");
            for x in r.returns.iter().take(200) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
                    &x.at.to_string()[..10],
                    esc(&x.source.id),
                    x.source.count,
                    usd(x.refund),
                    x.hourly.to_f64()
                );
            }
            h.push_str("</table>");
        }
        if !r.sales.is_empty() {
            let market = self.settings.policy.ri_marketplace;
            let _ = write!(
                h,
                "<h2>Reserved Instances sold</h2><p class=\"note\">AWS Standard RIs left idle were listed on the Reserved Instance Marketplace. \
They apply, and are paid for, until they sell; the upfront not yet amortized, less what the sale brings in, is counted as cost in the month of the sale (written off). \
Assumed, as no backtest can know the market: every listing sells {:.0} days after it is listed, at {:.0}% of the pro rata upfront of its whole months left, less AWS's {:.0}% fee.</p>\
<table><tr><th>listed</th><th>sold</th><th>reservation</th><th>instances</th><th>proceeds</th><th>written off</th><th>cost per hour no longer paid</th></tr>",
                market.sale_delay_hours as f64 / 24.0,
                market.price_bp as f64 / 100.0,
                market.fee_bp as f64 / 100.0
            );
            for x in r.sales.iter().take(200) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
                    &x.listed.to_string()[..10],
                    &x.sold.to_string()[..10],
                    esc(&x.source.id),
                    x.source.count,
                    usd(x.proceeds),
                    usd(x.write_off),
                    x.hourly.to_f64()
                );
            }
            h.push_str("</table>");
        }
        h.push_str("<p class=\"note\">Definitions: on-demand equivalent = the eligible usage priced at list price. \
Cost = amortized cost of every commitment inside the window, used or not, plus on-demand prices for uncovered usage. \
Effective savings rate = 1 - cost / on-demand equivalent. Coverage = share of the on-demand equivalent covered by commitments. \
Utilization = commitment used / commitment paid for. Lock-in = commitment-weighted average remaining term.</p></body></html>");
        h
    }

    fn baseline(&self, name: &str) -> Option<&RunResult> {
        self.baselines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
    }

    fn all(&self) -> Vec<(&str, &RunResult)> {
        std::iter::once(("commitd", &self.commitd))
            .chain(self.baselines.iter().map(|(n, r)| (n.as_str(), r)))
            .collect()
    }
}

fn month_json(m: &Period) -> Value {
    json!({
        "month": m.label,
        "hours": m.hours,
        "on_demand_cost": m.on_demand_equivalent.to_f64(),
        "cost": m.cost.to_f64(),
        "esr": m.esr,
        "coverage": m.coverage,
        "utilization": m.utilization,
        "lock_in_days": m.lock_in_days,
        "purchases": m.purchases,
        "new_hourly_commitment": m.new_hourly_commitment.to_f64(),
        "exchanges": m.exchanges,
        "returns": m.returns,
        "sales": m.sales,
        "sale_write_off": m.sale_write_off.to_f64(),
    })
}

fn month_row(m: &Period) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.0}</td></tr>",
        m.label,
        usd(m.on_demand_equivalent),
        usd(m.cost),
        pct(m.esr),
        pct(m.coverage),
        m.utilization.map(pct).unwrap_or_else(|| "-".into()),
        m.purchases,
        m.new_hourly_commitment.to_f64(),
        m.lock_in_days
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 4] = ["#1b7837", "#762a83", "#e08214", "#2166ac"];
const W: f64 = 900.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// Horizontal bars: ESR of each planner.
fn esr_bars(all: &[(&str, &RunResult)]) -> String {
    let max = all
        .iter()
        .map(|(_, r)| r.total.esr.abs())
        .fold(0.05, f64::max);
    let row = 34.0;
    let height = row * all.len() as f64 + 20.0;
    let x0 = 160.0;
    let scale = (W - x0 - 80.0) / max;
    let mut s = format!("<svg width=\"{W}\" height=\"{height}\" role=\"img\" aria-label=\"effective savings rate by planner\">");
    for (i, (name, r)) in all.iter().enumerate() {
        let y = 10.0 + i as f64 * row;
        let w = (r.total.esr.max(0.0) * scale).max(1.0);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"13\">{}</text><rect x=\"{x0}\" y=\"{y}\" width=\"{w:.1}\" height=\"22\" fill=\"{}\"/>\
<text x=\"{:.1}\" y=\"{}\" font-size=\"13\">{} ESR</text>",
            x0 - 8.0,
            y + 16.0,
            esc(name),
            COLORS[i % COLORS.len()],
            x0 + w + 6.0,
            y + 16.0,
            pct(r.total.esr)
        );
    }
    s.push_str("</svg>");
    s
}

fn axis(s: &mut String, max: f64, unit: &str) {
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = H - PAD + (PAD * 2.0 - H) * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{PAD}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
            W - 10.0,
            PAD - 4.0,
            y + 4.0,
            if unit == "%" {
                format!("{:.0}%", v * 100.0)
            } else {
                format!("${v:.0}")
            }
        );
    }
}

/// Stacked commitment cost by kind, with the demand (ODE) and actual cost lines.
fn timeline(r: &RunResult) -> String {
    let d = &r.daily;
    if d.is_empty() {
        return String::new();
    }
    let max = d
        .iter()
        .map(|p| {
            p.ode_per_hour
                .max(p.cost_per_hour)
                .max(p.reservations_per_hour + p.instance_sp_per_hour + p.savings_plans_per_hour)
        })
        .fold(1e-9, f64::max)
        * 1.05;
    let n = d.len().max(2) as f64 - 1.0;
    let x = |i: usize| PAD + (W - PAD - 10.0) * i as f64 / n;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / max;
    let mut s = format!("<svg width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"demand and commitments over time\">");
    axis(&mut s, max, "$");
    let layers: [(&str, &str, DayValue); 3] = [
        ("Reserved instances / reservations", "#9ecae1", |p| {
            p.reservations_per_hour
        }),
        ("EC2 Instance Savings Plans", "#c7e9c0", |p| {
            p.instance_sp_per_hour
        }),
        ("Compute / Azure savings plans", "#fdd0a2", |p| {
            p.savings_plans_per_hour
        }),
    ];
    let mut base = vec![0.0; d.len()];
    for (name, color, f) in layers {
        let top: Vec<f64> = d.iter().zip(&base).map(|(p, b)| b + f(p)).collect();
        let mut path = String::new();
        for (i, v) in top.iter().enumerate() {
            let _ = write!(
                path,
                "{}{:.1},{:.1} ",
                if i == 0 { "M" } else { "L" },
                x(i),
                y(*v)
            );
        }
        for i in (0..d.len()).rev() {
            let _ = write!(path, "L{:.1},{:.1} ", x(i), y(base[i]));
        }
        let _ = write!(
            s,
            "<path d=\"{path}Z\" fill=\"{color}\" stroke=\"none\"><title>{name}</title></path>"
        );
        base = top;
    }
    for (color, f, width) in [
        ("#000", (|p: &DayPoint| p.ode_per_hour) as DayValue, 1.5),
        ("#d7301f", |p| p.cost_per_hour, 1.5),
    ] {
        let pts: Vec<String> = d
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(f(p))))
            .collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"/>",
            pts.join(" ")
        );
    }
    for (i, p) in d.iter().enumerate() {
        if p.day.to_datetime().format("%d").to_string() == "01" {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
                x(i),
                H - PAD + 16.0,
                p.day.to_datetime().format("%b %y")
            );
        }
    }
    let legend = [
        ("#000", "on-demand equivalent of usage"),
        ("#d7301f", "actual cost"),
        ("#9ecae1", "RIs / reservations"),
        ("#c7e9c0", "EC2 Instance SPs"),
        ("#fdd0a2", "Compute / Azure SPs"),
    ];
    for (i, (c, label)) in legend.iter().enumerate() {
        let lx = PAD + 170.0 * i as f64;
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{label}</text>",
            H - 22.0,
            lx + 16.0,
            H - 12.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"4\" y=\"14\" font-size=\"11\">USD per hour</text></svg>"
    );
    s
}

/// Monthly utilization bars for commitd with monthly ESR lines for every planner.
fn monthly_chart(all: &[(&str, &RunResult)]) -> String {
    let months = &all[0].1.months;
    if months.is_empty() {
        return String::new();
    }
    let min_esr = all
        .iter()
        .flat_map(|(_, r)| r.months.iter().map(|m| m.esr))
        .fold(0.0, f64::min);
    let lo = min_esr.min(0.0);
    let span = 1.0 - lo;
    let n = months.len() as f64;
    let bw = (W - PAD - 10.0) / n;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / span;
    let mut s = format!("<svg width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"monthly ESR and utilization\">");
    for k in 0..=4 {
        let v = lo + span * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{PAD}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{:.0}%</text>",
            W - 10.0,
            y(v),
            y(v),
            PAD - 4.0,
            y(v) + 4.0,
            v * 100.0
        );
    }
    for (i, m) in months.iter().enumerate() {
        let x = PAD + bw * i as f64;
        if let Some(u) = m.utilization {
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#d9d9d9\"><title>{} utilization {}</title></rect>",
                x + bw * 0.15,
                y(u),
                bw * 0.7,
                (y(lo.max(0.0)) - y(u)).max(0.0),
                m.label,
                pct(u)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x + bw / 2.0,
            H - PAD + 14.0,
            &m.label[2..]
        );
    }
    for (k, (name, r)) in all.iter().enumerate() {
        let pts: Vec<String> = r
            .months
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{:.1},{:.1}", PAD + bw * (i as f64 + 0.5), y(m.esr)))
            .collect();
        let c = COLORS[k % COLORS.len()];
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/><rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">ESR {}</text>",
            pts.join(" "),
            PAD + 150.0 * k as f64,
            H - 22.0,
            PAD + 150.0 * k as f64 + 16.0,
            H - 12.0,
            esc(name)
        );
    }
    let _ = write!(
        s,
        "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"#d9d9d9\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">commitd utilization</text></svg>",
        PAD + 150.0 * all.len() as f64,
        H - 22.0,
        PAD + 150.0 * all.len() as f64 + 16.0,
        H - 12.0
    );
    s
}
