//! FinOps maturity assessment: what a bill says about how a team manages its cloud cost, rated
//! Crawl / Walk / Run per capability, with the figures behind each rating and the next step.
//!
//! Pure: a usage model and the commitments known (listed and inferred) in, an [`Assessment`]
//! out. The thresholds are one table, [`THRESHOLDS`], documented with their public sources in
//! `docs/assess.md`. What the bill cannot show is said, never guessed: a capability is
//! [`Stage::NotJudged`] when the data cannot rate it and [`Stage::NotApplicable`] when it does
//! not apply (no eligible compute, for instance), and every capability lists what it could not
//! look at.

use crate::domain::{Commitment, CommitmentKind, Hour, Money, Provider, UsageModel};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

const DAY: usize = 24;

/// A FinOps Foundation maturity stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Crawl,
    Walk,
    Run,
    /// The capability does not apply to this bill.
    NotApplicable,
    /// The bill cannot tell.
    NotJudged,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Crawl => "Crawl",
            Stage::Walk => "Walk",
            Stage::Run => "Run",
            Stage::NotApplicable => "not applicable",
            Stage::NotJudged => "not judged",
        }
    }
}

/// One threshold of the table: a metric and the value each stage needs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Threshold {
    pub capability: &'static str,
    pub metric: &'static str,
    /// Walk needs at least this (or at most, if `lower_is_better`).
    pub walk: f64,
    /// Run needs at least this (or at most).
    pub run: f64,
    pub lower_is_better: bool,
    pub source: &'static str,
}

/// The one table of thresholds (documented in docs/assess.md).
pub const THRESHOLDS: [Threshold; 8] = [
    Threshold {
        capability: "cost_allocation",
        metric: "allocated_share_pct",
        walk: 80.0,
        run: 95.0,
        lower_is_better: false,
        source: "altitudes.cloud FinOps maturity assessment: allocation below 60% crawl, 80-90% walk, above 95% run; FinOps Foundation Allocate capability: allocation by hierarchy only is Crawl",
    },
    Threshold {
        capability: "commitment_strategy",
        metric: "coverage_pct",
        walk: 55.0,
        run: 80.0,
        lower_is_better: false,
        source: "ProsperOps 2025 Rate Optimization Insights (AWS compute, 2024 data): median coverage 55%; Run 80% is commitd's choice (no public percentile)",
    },
    Threshold {
        capability: "commitment_strategy",
        metric: "effective_savings_rate_pct",
        walk: 15.0,
        run: 30.0,
        lower_is_better: false,
        source: "ProsperOps 2025: median AWS compute ESR 15%; Run 30% is commitd's choice (about a 1-year no-upfront savings plan's discount on all usage)",
    },
    Threshold {
        capability: "commitment_strategy",
        metric: "utilization_pct",
        walk: 90.0,
        run: 95.0,
        lower_is_better: false,
        source: "commitd's default policy limits.min_expected_utilization (95%); 90% for Walk is commitd's choice",
    },
    Threshold {
        capability: "rate_optimization_breadth",
        metric: "instrument_kinds",
        walk: 1.0,
        run: 2.0,
        lower_is_better: false,
        source: "commitd's choice: spend-based (savings plans) and usage-based (RIs, reservations) instruments both in use; ProsperOps 2025: 51% of organizations using commitments bought savings plans in infrequent batches only",
    },
    Threshold {
        capability: "automation",
        metric: "purchase_months_last_year",
        walk: 2.0,
        run: 6.0,
        lower_is_better: false,
        source: "commitd's choice: laddering means purchases in most months (ProsperOps 2025: infrequent batch purchases are the majority practice)",
    },
    Threshold {
        capability: "automation",
        metric: "longest_uncovered_steady_days",
        walk: 30.0,
        run: 7.0,
        lower_is_better: true,
        source: "commitd's choice: a weekly review (Walk: monthly) covers new steady usage before a week (a month) passes",
    },
    Threshold {
        capability: "data_quality",
        metric: "gap_hours_pct",
        walk: 1.0,
        run: 0.0,
        lower_is_better: true,
        source: "commitd's choice: hourly FOCUS data with no missing hour; FOCUS 1.x requires hourly or daily charge periods",
    },
];

fn threshold(capability: &str, metric: &str) -> Threshold {
    THRESHOLDS
        .iter()
        .copied()
        .find(|t| t.capability == capability && t.metric == metric)
        .unwrap_or(Threshold {
            capability: "",
            metric: "",
            walk: f64::INFINITY,
            run: f64::INFINITY,
            lower_is_better: false,
            source: "",
        })
}

/// The stage a value reaches on one metric.
fn stage_of(capability: &str, metric: &str, value: f64) -> Stage {
    let t = threshold(capability, metric);
    let meets = |bar: f64| {
        if t.lower_is_better {
            value <= bar
        } else {
            value >= bar
        }
    };
    if meets(t.run) {
        Stage::Run
    } else if meets(t.walk) {
        Stage::Walk
    } else {
        Stage::Crawl
    }
}

/// One capability's rating.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub stage: Stage,
    /// Why this stage, in one sentence.
    pub reason: String,
    /// The figures behind it.
    pub evidence: Map<String, Value>,
    /// What to do to move up a stage.
    pub next_step: String,
    /// What the bill could not show for this capability.
    pub not_judged: Vec<String>,
}

/// A week of the commitment figures, for the chart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Week {
    pub start: Hour,
    pub coverage_pct: f64,
    pub utilization_pct: Option<f64>,
    pub effective_savings_rate_pct: f64,
}

/// The whole assessment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessment {
    /// Hours assessed: `[from, to)`.
    pub from: Hour,
    pub to: Hour,
    /// The recent window the current figures are measured over.
    pub recent_from: Hour,
    pub currency: String,
    pub capabilities: Vec<Capability>,
    pub weekly: Vec<Week>,
}

fn pct(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (1000.0 * a / b).round() / 10.0
    } else {
        0.0
    }
}

fn money(v: f64) -> Value {
    json!(Money::from_f64(v).unwrap_or(Money::ZERO))
}

/// Sums of the bill's hourly series over `[a, b)`.
struct Sums {
    ode: f64,
    covered: f64,
    used: f64,
    unused: f64,
}

fn sums(m: &UsageModel, a: usize, b: usize) -> Sums {
    let s = |v: &[f64]| v[a.min(v.len())..b.min(v.len())].iter().sum::<f64>();
    Sums {
        ode: m.groups.iter().map(|g| s(&g.ode)).sum(),
        covered: m.groups.iter().map(|g| s(&g.covered_ode)).sum(),
        used: m.commitments.iter().map(|c| s(&c.used)).sum(),
        unused: m.commitments.iter().map(|c| s(&c.unused)).sum(),
    }
}

impl Sums {
    /// (ODE - what was paid) / ODE: the covered usage at list price, minus what the
    /// commitments cost, used or not, over all eligible usage.
    fn esr_pct(&self) -> f64 {
        pct(self.covered - self.used - self.unused, self.ode)
    }
}

/// Hours of the model that hold data (the range cut after the last hour the bill covers).
fn data_hours(m: &UsageModel) -> usize {
    let end = match m.last_observed {
        Some(h) => h.plus(1).min(m.range.end),
        None => m.range.end,
    };
    end.since(m.range.start).clamp(0, m.hours() as i64) as usize
}

/// Rates what the bill supports. `commitments`: those listed and those inferred from the bill.
pub fn assess(model: &UsageModel, commitments: &[Commitment]) -> Assessment {
    let n = data_hours(model);
    let recent = n.saturating_sub(30 * DAY);
    let capabilities = vec![
        cost_allocation(model, n),
        commitment_strategy(model, commitments, n, recent),
        rate_breadth(model, commitments, n),
        automation(model, commitments, n),
        data_quality(model, n),
    ];
    let weekly = (0..n.div_ceil(7 * DAY))
        .map(|w| {
            let (a, b) = (w * 7 * DAY, ((w + 1) * 7 * DAY).min(n));
            let s = sums(model, a, b);
            Week {
                start: model.range.start.plus(a as i64),
                coverage_pct: pct(s.covered, s.ode),
                utilization_pct: (s.used + s.unused > 0.0).then(|| pct(s.used, s.used + s.unused)),
                effective_savings_rate_pct: s.esr_pct(),
            }
        })
        .collect();
    Assessment {
        from: model.range.start,
        to: model.range.start.plus(n as i64),
        recent_from: model.range.start.plus(recent as i64),
        currency: model.currency.clone(),
        capabilities,
        weekly,
    }
}

fn cost_allocation(m: &UsageModel, n: usize) -> Capability {
    let name = "cost_allocation";
    let not_judged = vec![
        "tags (FOCUS Tags): commitd's reader does not keep them, so allocation by resource metadata is not measured".to_string(),
        "non-compute cost (storage, data transfer, ...): counted as rows, not summed, by commitd's reader".to_string(),
    ];
    let total: Money = m.groups.iter().map(|g| g.total_ode).sum();
    if n == 0 || total == Money::ZERO {
        return Capability {
            name,
            stage: Stage::NotApplicable,
            reason: "no eligible compute cost in the bill".into(),
            evidence: Map::new(),
            next_step: "export a FOCUS bill with compute usage".into(),
            not_judged,
        };
    }
    let mut accounts = BTreeSet::new();
    let mut unallocated = Money::ZERO;
    for g in &m.groups {
        for (k, v) in &g.by_sub_account {
            if k.trim().is_empty() {
                unallocated += *v;
            } else {
                accounts.insert(k.clone());
            }
        }
    }
    let allocated = total.to_f64() - unallocated.to_f64();
    let share = pct(allocated, total.to_f64());
    // Sub-accounts are the resource hierarchy: the FinOps Foundation puts allocation by
    // hierarchy alone at Crawl, whatever its share. Walk and Run need the share allocated by
    // tags (THRESHOLDS' allocated_share_pct), which the bill as commitd reads it cannot show.
    let stage = Stage::Crawl;
    let mut evidence = Map::new();
    evidence.insert("compute_on_demand_cost".into(), json!(total));
    evidence.insert("allocated_by_sub_account_pct".into(), json!(share));
    evidence.insert("unallocated_cost".into(), json!(unallocated));
    evidence.insert("sub_accounts".into(), json!(accounts.len()));
    Capability {
        name,
        stage,
        reason: format!(
            "{share}% of compute cost carries a sub-account (the resource hierarchy); allocation by hierarchy alone is Crawl, and tags are not read"
        ),
        evidence,
        next_step: if share < 95.0 {
            "give every account's usage a SubAccountId, then tag resources by team and product (FOCUS Tags) to allocate below the account".into()
        } else {
            "tag resources by team and product (FOCUS Tags) and allocate shared costs; commitd cannot measure tag coverage yet".into()
        },
        not_judged,
    }
}

fn commitment_strategy(
    m: &UsageModel,
    commitments: &[Commitment],
    n: usize,
    recent: usize,
) -> Capability {
    let name = "commitment_strategy";
    let not_judged = vec![
        "whether an expiring commitment has a renewal planned: the bill shows only what exists".to_string(),
        "Spot usage and non-compute commitments (databases, caches): not eligible demand in commitd".to_string(),
    ];
    let s = sums(m, recent, n);
    if s.ode <= 0.0 {
        return Capability {
            name,
            stage: Stage::NotApplicable,
            reason: "no eligible compute usage in the last 30 days".into(),
            evidence: Map::new(),
            next_step: "nothing to commit to".into(),
            not_judged,
        };
    }
    let coverage = pct(s.covered, s.ode);
    let esr = s.esr_pct();
    let utilization = (s.used + s.unused > 0.0).then(|| pct(s.used, s.used + s.unused));
    let end = m.range.start.plus(n as i64);
    let active: Vec<&Commitment> = commitments
        .iter()
        .filter(|c| c.start < end && c.end > end.plus(-1))
        .collect();
    let expiring: Vec<&&Commitment> = active
        .iter()
        .filter(|c| c.end <= end.plus(90 * DAY as i64))
        .collect();
    let idle: Vec<String> = m
        .commitments
        .iter()
        .filter(|c| c.utilization(recent, n).is_some_and(|u| u < 0.8))
        .map(|c| c.id.clone())
        .collect();
    let mut stage = stage_of(name, "coverage_pct", coverage).min(stage_of(
        name,
        "effective_savings_rate_pct",
        esr,
    ));
    if let Some(u) = utilization {
        stage = stage.min(stage_of(name, "utilization_pct", u));
    }
    let mut evidence = Map::new();
    evidence.insert("window_days".into(), json!((n - recent) / DAY));
    evidence.insert("coverage_pct".into(), json!(coverage));
    evidence.insert("effective_savings_rate_pct".into(), json!(esr));
    evidence.insert("utilization_pct".into(), json!(utilization));
    evidence.insert("on_demand_equivalent_cost".into(), money(s.ode));
    evidence.insert("savings".into(), money(s.covered - s.used - s.unused));
    evidence.insert("unused_commitment_cost".into(), money(s.unused));
    evidence.insert("active_commitments".into(), json!(active.len()));
    evidence.insert(
        "expiring_within_90_days".into(),
        json!(expiring.iter().map(|c| c.id.clone()).collect::<Vec<_>>()),
    );
    evidence.insert(
        "expiring_hourly_cost".into(),
        json!(expiring.iter().map(|c| c.hourly_cost).sum::<Money>()),
    );
    evidence.insert("idle_commitments".into(), json!(idle));
    let reason = format!(
        "coverage {coverage}%, effective savings rate {esr}%{} over the last {} days (ProsperOps 2025 medians: coverage 55%, ESR 15%)",
        utilization.map_or(String::new(), |u| format!(", utilization {u}%")),
        (n - recent) / DAY
    );
    let next_step = match stage {
        Stage::Crawl if active.is_empty() => {
            "buy a first commitment for the steady floor of compute usage (`commitd plan` sizes it)".to_string()
        }
        Stage::Crawl if utilization.is_some_and(|u| u < 90.0) => {
            "stop buying and let idle commitments be absorbed, return or sell them (`commitd plan` proposes it)".to_string()
        }
        Stage::Crawl | Stage::Walk => {
            "cover more of the steady usage in small regular purchases (`commitd run` in Copilot mode)".to_string()
        }
        _ if !expiring.is_empty() => {
            "plan renewals for the commitments expiring within 90 days before they lapse".to_string()
        }
        _ => "keep coverage, utilization and ESR where they are as usage changes".to_string(),
    };
    Capability {
        name,
        stage,
        reason,
        evidence,
        next_step,
        not_judged,
    }
}

fn rate_breadth(m: &UsageModel, commitments: &[Commitment], n: usize) -> Capability {
    let name = "rate_optimization_breadth";
    let not_judged = vec![
        "Spot and negotiated (EDP, MACC) discounts: not in commitd's eligible demand".to_string(),
    ];
    let providers: BTreeSet<Provider> = m
        .groups
        .iter()
        .filter(|g| {
            g.quantity[..n.min(g.quantity.len())]
                .iter()
                .any(|q| *q > 0.0)
        })
        .map(|g| g.group.provider)
        .collect();
    if providers.is_empty() {
        return Capability {
            name,
            stage: Stage::NotApplicable,
            reason: "no eligible compute usage".into(),
            evidence: Map::new(),
            next_step: "nothing to commit to".into(),
            not_judged,
        };
    }
    let end = m.range.start.plus(n as i64);
    let active: Vec<&Commitment> = commitments
        .iter()
        .filter(|c| c.start < end && c.end > end.plus(-1))
        .collect();
    let instruments: BTreeSet<String> = active.iter().map(|c| c.instrument.to_string()).collect();
    // The kinds in use for the provider that uses fewest: breadth is as narrow as its
    // narrowest provider.
    let kinds = providers
        .iter()
        .map(|p| {
            active
                .iter()
                .filter(|c| c.provider == *p)
                .filter_map(|c| c.instrument.kind())
                .collect::<std::collections::HashSet<CommitmentKind>>()
                .len()
        })
        .min()
        .unwrap_or(0);
    let stage = stage_of(name, "instrument_kinds", kinds as f64);
    let allowed: Vec<&str> = providers
        .iter()
        .flat_map(|p| match p {
            Provider::Aws => vec![
                "ComputeSavingsPlan",
                "EC2InstanceSavingsPlan",
                "StandardReservedInstance",
                "ConvertibleReservedInstance",
            ],
            Provider::Azure => vec!["AzureReservation", "AzureSavingsPlan"],
        })
        .collect();
    let mut evidence = Map::new();
    evidence.insert(
        "providers".into(),
        json!(providers.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
    );
    evidence.insert("instruments_in_use".into(), json!(instruments));
    evidence.insert("instruments_the_usage_allows".into(), json!(allowed));
    evidence.insert("kinds_in_use_min_per_provider".into(), json!(kinds));
    Capability {
        name,
        stage,
        reason: format!(
            "{} instrument(s) in use ({}); spend-based and usage-based kinds in use for every provider: {}",
            instruments.len(),
            if instruments.is_empty() {
                "none".to_string()
            } else {
                instruments.iter().cloned().collect::<Vec<_>>().join(", ")
            },
            if kinds >= 2 { "yes" } else { "no" }
        ),
        evidence,
        next_step: match kinds {
            0 => "start with a savings plan (flexible) on the steady floor".into(),
            1 => "add the other kind: reservations for the stable, family-bound base, savings plans for the moving part".into(),
            _ => "keep the mix fitted to how each group moves (`commitd plan` solves it jointly)".into(),
        },
        not_judged,
    }
}

fn automation(m: &UsageModel, commitments: &[Commitment], n: usize) -> Capability {
    let name = "automation";
    let not_judged = vec![
        "who or what bought each commitment: the bill does not say whether a purchase was automated".to_string(),
        "purchases before the bill's first hour (their start is unknown when inferred from the bill)".to_string(),
    ];
    let start = m.range.start;
    let end = start.plus(n as i64);
    let year_ago = end.plus(-(365 * DAY as i64)).max(start);
    // Purchases seen: commitments starting inside the bill (one that starts at its first hour
    // may be older: its purchase date is unknown).
    let purchases: Vec<&Commitment> = commitments
        .iter()
        .filter(|c| c.start > start && c.start < end && c.start >= year_ago)
        .collect();
    let months: BTreeSet<i64> = purchases
        .iter()
        .map(|c| c.start.since(year_ago) / (30 * DAY as i64))
        .collect();
    // Steady usage left uncovered: days whose lowest hourly on-demand-equivalent cost exceeds
    // what commitments covered in that hour by more than 20 %.
    let days = n / DAY;
    let mut longest = 0usize;
    let mut run = 0usize;
    for d in 0..days {
        let (a, b) = (d * DAY, (d + 1) * DAY);
        let hour_tot = |h: usize| -> (f64, f64) {
            m.groups.iter().fold((0.0, 0.0), |(o, c), g| {
                (
                    o + g.ode.get(h).copied().unwrap_or(0.0),
                    c + g.covered_ode.get(h).copied().unwrap_or(0.0),
                )
            })
        };
        let (floor_h, floor) = (a..b)
            .map(|h| (h, hour_tot(h).0))
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap_or((a, 0.0));
        let covered = hour_tot(floor_h).1;
        if floor > 0.0 && floor - covered > 0.2 * floor {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let history_days = days;
    let window_months = (end.since(year_ago) / (30 * DAY as i64)).max(1);
    let mut evidence = Map::new();
    evidence.insert("history_days".into(), json!(history_days));
    evidence.insert("purchases_seen".into(), json!(purchases.len()));
    evidence.insert("purchase_months_last_year".into(), json!(months.len()));
    evidence.insert("months_looked_at".into(), json!(window_months));
    evidence.insert("longest_uncovered_steady_days".into(), json!(longest));
    evidence.insert("uncovered_steady_days_now".into(), json!(run));
    if history_days < 60 {
        return Capability {
            name,
            stage: Stage::NotJudged,
            reason: format!(
                "{history_days} days of bill: a purchase cadence needs at least 60 days to show"
            ),
            evidence,
            next_step: "assess again on a longer bill (a year shows a cadence best)".into(),
            not_judged,
        };
    }
    let by_cadence = stage_of(name, "purchase_months_last_year", months.len() as f64);
    let by_gap = stage_of(name, "longest_uncovered_steady_days", longest as f64);
    let stage = by_cadence.min(by_gap);
    Capability {
        name,
        stage,
        reason: format!(
            "purchases in {} of the last {window_months} months; steady usage stayed more than 20% uncovered for up to {longest} days in a row",
            months.len()
        ),
        evidence,
        next_step: if stage == Stage::Run {
            "keep the cadence; let policy guardrails bound what automation may buy".into()
        } else {
            "buy in small, regular steps as usage settles (commitd Copilot, then Autopilot within guardrails)".into()
        },
        not_judged,
    }
}

fn data_quality(m: &UsageModel, n: usize) -> Capability {
    let name = "data_quality";
    let not_judged = vec![
        "the FOCUS version and the optional columns present: commitd's reader does not report them".to_string(),
        "how late each hour was delivered: a file does not record its delivery; the hours after the last one billed are reported as missing at the end".to_string(),
    ];
    if n == 0 {
        return Capability {
            name,
            stage: Stage::NotApplicable,
            reason: "no hours with data".into(),
            evidence: Map::new(),
            next_step: "export a FOCUS bill".into(),
            not_judged,
        };
    }
    // An hour without any compute usage nor commitment row is a gap (a bill has both for every
    // hour of a running fleet).
    let gaps = (0..n)
        .filter(|&h| {
            m.groups
                .iter()
                .all(|g| g.quantity.get(h).copied().unwrap_or(0.0) <= 0.0)
                && m.commitments.iter().all(|c| {
                    c.used.get(h).copied().unwrap_or(0.0) + c.unused.get(h).copied().unwrap_or(0.0)
                        <= 0.0
                })
        })
        .count();
    let gap_pct = pct(gaps as f64, n as f64);
    let missing_at_end = m.hours() - n;
    let ignored = m.ignored.total();
    let mut top: Vec<(&String, &u64)> = m.ignored.by_reason.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut evidence = Map::new();
    evidence.insert("hours".into(), json!(n));
    evidence.insert("gap_hours".into(), json!(gaps));
    evidence.insert("gap_hours_pct".into(), json!(gap_pct));
    evidence.insert("hours_missing_at_end".into(), json!(missing_at_end));
    evidence.insert("rows_read".into(), json!(m.rows_read));
    evidence.insert("rows_not_eligible".into(), json!(ignored));
    evidence.insert(
        "rows_not_eligible_top_reasons".into(),
        json!(top
            .iter()
            .take(3)
            .map(|(r, c)| json!({"reason": r, "rows": c}))
            .collect::<Vec<_>>()),
    );
    evidence.insert("currency".into(), json!(m.currency));
    let stage = stage_of(name, "gap_hours_pct", gap_pct);
    Capability {
        name,
        stage,
        reason: format!(
            "{gaps} of {n} hours ({gap_pct}%) without any compute row; every row read parsed (commitd refuses a bill with a bad row)"
        ),
        evidence,
        next_step: if gaps > 0 {
            "export every hour (hourly granularity, no missing partitions) and check the export's delivery".into()
        } else {
            "keep the export complete; add Tags and the FOCUS 1.2+ columns for allocation".into()
        },
        not_judged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommitmentUsage, GroupSeries, HourRange, UsageGroup};

    fn model(hours: usize, covered_share: f64, unused_share: f64, sub: &str) -> UsageModel {
        let group = UsageGroup::new(Provider::Aws, "us-east-1", "m5.large", None, "Linux", "");
        let mut g = GroupSeries::empty(group, hours);
        for h in 0..hours {
            g.quantity[h] = 10.0;
            g.ode[h] = 1.0;
            g.covered_ode[h] = covered_share;
        }
        g.total_ode = Money::from_units(hours as i64);
        g.by_sub_account.insert(sub.to_string(), g.total_ode);
        // The commitment costs 70 % of the list price of what it covers, plus what is unused.
        let c = CommitmentUsage {
            id: "sp-1".into(),
            provider: Provider::Aws,
            commitment_type: "Savings Plan".into(),
            used: vec![0.7 * covered_share; hours],
            unused: vec![unused_share; hours],
            fees: Money::ZERO,
            total_used: Money::ZERO,
            total_unused: Money::ZERO,
        };
        UsageModel {
            range: HourRange::new(Hour(500_000), Hour(500_000 + hours as i64)),
            currency: "USD".into(),
            groups: vec![g],
            commitments: if covered_share > 0.0 { vec![c] } else { vec![] },
            last_observed: Some(Hour(500_000 + hours as i64 - 1)),
            rows_read: hours as u64,
            ignored: Default::default(),
        }
    }

    fn cap<'a>(a: &'a Assessment, name: &str) -> &'a Capability {
        a.capabilities.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn coverage_and_esr_rate_the_commitment_strategy() {
        // No commitments: Crawl.
        let a = assess(&model(60 * DAY, 0.0, 0.0, "111"), &[]);
        let c = cap(&a, "commitment_strategy");
        assert_eq!(c.stage, Stage::Crawl);
        assert_eq!(c.evidence["coverage_pct"], json!(0.0));
        // 60 % covered at a 30 % discount, nothing unused: ESR 18 %, coverage over the 55 %
        // median, utilization 100 %: Walk.
        let a = assess(&model(60 * DAY, 0.6, 0.0, "111"), &[]);
        let c = cap(&a, "commitment_strategy");
        assert_eq!(c.evidence["effective_savings_rate_pct"], json!(18.0));
        assert_eq!(c.stage, Stage::Walk, "{c:?}");
        // 90 % covered, nothing unused: ESR 27 % (< 30): still Walk.
        let a = assess(&model(60 * DAY, 0.9, 0.0, "111"), &[]);
        assert_eq!(cap(&a, "commitment_strategy").stage, Stage::Walk);
        // 60 % covered but a third of the commitment idle: utilization < 90 % is Crawl.
        let a = assess(&model(60 * DAY, 0.6, 0.3, "111"), &[]);
        let c = cap(&a, "commitment_strategy");
        assert_eq!(c.stage, Stage::Crawl, "{c:?}");
        assert_eq!(c.evidence["idle_commitments"], json!(["sp-1"]));
    }

    #[test]
    fn allocation_by_account_only_is_crawl_and_says_why() {
        let a = assess(&model(60 * DAY, 0.0, 0.0, "111"), &[]);
        let c = cap(&a, "cost_allocation");
        assert_eq!(c.stage, Stage::Crawl);
        assert_eq!(c.evidence["allocated_by_sub_account_pct"], json!(100.0));
        assert!(c.not_judged.iter().any(|s| s.contains("Tags")));
        let a = assess(&model(60 * DAY, 0.0, 0.0, ""), &[]);
        let c = cap(&a, "cost_allocation");
        assert_eq!(c.evidence["allocated_by_sub_account_pct"], json!(0.0));
        assert!(c.next_step.contains("SubAccountId"));
    }

    #[test]
    fn short_bills_and_gaps_are_said_not_guessed() {
        let mut m = model(20 * DAY, 0.0, 0.0, "111");
        let a = assess(&m, &[]);
        assert_eq!(cap(&a, "automation").stage, Stage::NotJudged);
        assert_eq!(cap(&a, "data_quality").stage, Stage::Run);
        for h in 100..103 {
            m.groups[0].quantity[h] = 0.0;
        }
        let a = assess(&m, &[]);
        let d = cap(&a, "data_quality");
        assert_eq!(d.evidence["gap_hours"], json!(3));
        assert_eq!(d.stage, Stage::Walk, "3 of 480 hours is 0.6 %: {d:?}");
        for h in 200..210 {
            m.groups[0].quantity[h] = 0.0;
        }
        let a = assess(&m, &[]);
        assert_eq!(
            cap(&a, "data_quality").stage,
            Stage::Crawl,
            "13 of 480 hours"
        );
        let empty = UsageModel {
            groups: vec![],
            ..model(10, 0.0, 0.0, "1")
        };
        let a = assess(&empty, &[]);
        assert_eq!(cap(&a, "commitment_strategy").stage, Stage::NotApplicable);
        assert_eq!(
            cap(&a, "rate_optimization_breadth").stage,
            Stage::NotApplicable
        );
    }

    #[test]
    fn every_threshold_is_ordered_from_walk_to_run() {
        for t in THRESHOLDS {
            if t.lower_is_better {
                assert!(t.run <= t.walk, "{t:?}");
            } else {
                assert!(t.run >= t.walk, "{t:?}");
            }
            assert!(!t.source.is_empty());
        }
    }
}
