//! The purchase hold: no commitment is bought into a cost anomaly.
//!
//! [`AnomalyHold`] wraps any [`Planner`] (what [`super::PlannerConfig::build`] returns when
//! `anomaly_hold` is on) and keeps one [`Watcher`] per usage group between decisions, as the
//! planner keeps its own memory: the backtest replays exactly what the daemon runs. At each
//! decision it first hands the watchers the hours billed since the previous one (the
//! [`Situation`]'s known usage is already cut at the billing latency), then lets the wrapped
//! planner decide, then holds back the purchases that would cover an anomaly.
//!
//! **The rule** (one for every purchase): a purchase is held when the usage groups with an
//! open anomaly (any kind: a spike, a step up or a drop) make up at least `share` (default
//! 10 %) of the on-demand spend, over the last known week, of the groups it can cover
//! (`billing::covered_groups`, as the bill applies it). A reservation bought for a group with
//! an open anomaly is therefore always held; a savings plan over many groups is held only when
//! the anomalous groups are a material part of what it covers, and otherwise kept with a note.
//! Exchanges and give-ups are never held (they answer usage that is gone, not new usage).
//!
//! * A **spike** holds until it ends (usage back inside the model for the watcher's
//!   `quiet_hours`).
//! * A **step up** is not bought into until it settles: it stays open until the watcher accepts
//!   it as the new level (`settle_days`, 7 by default), then its hours are evidence again and
//!   the planner buys for it like any usage.
//! * A **drop** holds too (the look-back still holds the old level), until usage comes back or
//!   the lower level is accepted. A drop on groups that held commitments cover is also reported
//!   as **stranded**: the commitments it leaves idle ([`stranded`]).
//!
//! A decision whose purchases were held leaves fewer commitments active than the wrapped
//! planner expects, which makes the look-back planner's next decision solve again
//! ([`super::lookback`]'s trigger): once the anomaly is over, purchases resume at the next
//! decision. The watchers see each hour once, as it is delivered; a later correction of an
//! hour already seen is not looked at again.

use super::{Decision, PlanError, Planner, Situation};
use crate::billing::{covered_groups, BillableGroup, BillingEngine};
use crate::domain::{Commitment, Hour, Money, RateCard, UsageGroup, UsageModel};
use crate::forecast::anomaly::{unit_price, AnomalyConfig, AnomalyKind, DetectedAnomaly, Watcher};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// The hours of on-demand spend a purchase's share is judged on: the last known week.
const SHARE_HOURS: usize = 7 * 24;

/// The default `anomaly_hold_share`.
pub const DEFAULT_SHARE: f64 = 0.10;

/// A commitment is stranded by a drop when it was used less than this over the drop's hours
/// (a few cents idle under a lumpy dip is not an alert).
pub const STRANDED_BELOW: f64 = 0.95;

/// An anomaly of one usage group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupAnomaly {
    pub group: UsageGroup,
    #[serde(flatten)]
    pub anomaly: DetectedAnomaly,
}

impl GroupAnomaly {
    /// A stable name: the group and the anomaly's first hour (the audit log's subject).
    pub fn id(&self) -> String {
        format!("anomaly:{}@{}", self.group, self.anomaly.start)
    }
}

/// What happened to an anomaly at a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Found in the hours delivered since the previous decision.
    Detected,
    /// Over: usage came back, or its level was accepted as the new normal.
    Ended,
}

/// A held commitment a sudden drop leaves idle.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IdleCommitment {
    pub id: String,
    pub hourly_cost: Money,
    /// Its use over the drop's hours (0..1).
    pub utilization: f64,
    /// The part of its hourly cost not used over the drop's hours.
    pub idle_hourly: Money,
}

/// A sudden drop on groups that held commitments cover: what it leaves idle.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stranded {
    pub anomaly_id: String,
    pub group: UsageGroup,
    pub commitments: Vec<IdleCommitment>,
    /// The sum of their idle hourly cost.
    pub idle_hourly: Money,
}

/// What the watchers found at the last decision, for the daemon's alerts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AnomalyNews {
    pub at: Hour,
    /// Detected or ended since the previous decision, in order. A watcher's first decision
    /// replays the history: of that, only what is still open and what ended in the last two
    /// weeks is news.
    pub changes: Vec<(Change, GroupAnomaly)>,
    /// Open now.
    pub open: Vec<GroupAnomaly>,
    /// Drops detected at this decision that leave held commitments idle.
    pub stranded: Vec<Stranded>,
    /// Purchases held back at this decision.
    pub held: usize,
}

/// A purchase the hold judged: it covers groups with an open anomaly.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hold {
    pub purchase: Commitment,
    /// True: held back (not proposed, not bought); false: kept, the anomalous groups being
    /// under the share.
    pub held: bool,
    /// The groups with an open anomaly it can cover, and the anomaly's kind.
    pub groups: Vec<(UsageGroup, AnomalyKind)>,
    /// Their share of the on-demand spend of every group it can cover, over the last known
    /// week.
    pub share: f64,
    /// The share that holds a purchase.
    pub threshold: f64,
}

impl Hold {
    /// The hold as one line for people (the plan's notes, the proposal's rationale).
    pub fn note(&self) -> String {
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|(g, k)| format!("{g} ({})", k.as_str()))
            .collect();
        let what = format!(
            "{} {} {} USD/h",
            self.purchase.provider, self.purchase.instrument, self.purchase.hourly_cost
        );
        if self.held {
            format!(
                "anomaly hold: {what} not proposed: an anomaly is open on {} ({:.0}% of the on-demand spend it covers over the last week, at least {:.0}%); purchases resume once it ends",
                groups.join(", "),
                self.share * 100.0,
                self.threshold * 100.0
            )
        } else {
            format!(
                "anomaly hold: {what} proposed although an anomaly is open on {}: {:.1}% of the on-demand spend it covers over the last week, under the {:.0}% that holds it",
                groups.join(", "),
                self.share * 100.0,
                self.threshold * 100.0
            )
        }
    }
}

/// One group's watcher and the series it has been handed.
struct Watch {
    start: Hour,
    series: Vec<f64>,
    watcher: Watcher,
    /// Anomalies already reported, and which of them had ended.
    seen: usize,
    ended: Vec<bool>,
}

/// A planner whose purchases wait while an anomaly is open on the groups they cover (see the
/// module documentation). With `hold` off it only watches (the daemon's alerts).
pub struct AnomalyHold {
    inner: Box<dyn Planner + Send>,
    config: AnomalyConfig,
    hold: bool,
    share: f64,
    watches: BTreeMap<UsageGroup, Watch>,
    news: Option<AnomalyNews>,
}

impl AnomalyHold {
    /// `inner`, with its purchases held at `share` (see the module documentation).
    pub fn new(inner: Box<dyn Planner + Send>, share: f64, config: AnomalyConfig) -> Self {
        AnomalyHold {
            inner,
            config,
            hold: true,
            share,
            watches: BTreeMap::new(),
            news: None,
        }
    }

    /// `inner` unchanged, its groups watched for the daemon's alerts only.
    pub fn watching(inner: Box<dyn Planner + Send>, config: AnomalyConfig) -> Self {
        AnomalyHold {
            hold: false,
            ..AnomalyHold::new(inner, DEFAULT_SHARE, config)
        }
    }

    /// Hands each watcher the hours of `known` it has not seen; returns the news.
    fn watch(&mut self, known: &UsageModel, now: Hour) -> AnomalyNews {
        let end = known.range.end;
        let cfg = &self.config;
        // New groups get a watcher from the first known hour.
        for g in &known.groups {
            self.watches
                .entry(g.group.clone())
                .or_insert_with(|| Watch {
                    start: known.range.start,
                    series: Vec::new(),
                    watcher: Watcher::new(known.range.start, unit_price(g), cfg),
                    seen: 0,
                    ended: Vec::new(),
                });
        }
        let by_group: BTreeMap<&UsageGroup, &[f64]> = known
            .groups
            .iter()
            .map(|g| (&g.group, g.quantity.as_slice()))
            .collect();
        let recent = end.plus(-14 * 24);
        let per_group: Vec<Vec<(Change, GroupAnomaly)>> = self
            .watches
            .par_iter_mut()
            .map(|(group, w)| {
                let Some(q) = by_group.get(group) else {
                    return Vec::new();
                };
                let first = w.seen == 0 && w.series.is_empty();
                // Append the hours after what the watcher has: from the model where it has
                // them, a gap (not evidence) where it does not.
                let have = w.start.plus(w.series.len() as i64);
                let mut h = have;
                while h < end {
                    let i = h.since(known.range.start);
                    let v = if i >= 0 {
                        q.get(i as usize).copied().unwrap_or(f64::NAN)
                    } else {
                        f64::NAN
                    };
                    w.series.push(v);
                    h = h.plus(1);
                }
                w.watcher.advance(&w.series, w.series.len(), now);
                let all = w.watcher.anomalies();
                let mut out = Vec::new();
                for (i, a) in all.iter().enumerate() {
                    let was_seen = i < w.seen;
                    let was_ended = w.ended.get(i).copied().unwrap_or(false);
                    let named = || GroupAnomaly {
                        group: group.clone(),
                        anomaly: a.clone(),
                    };
                    let old_news = first && a.ended() && a.end.is_none_or(|e| e < recent);
                    // Replaying the history, an anomaly already over is not detected news
                    // (only its recent end may be: the audit log says whether it was told).
                    let over_in_replay = first && a.ended();
                    if !was_seen && !over_in_replay {
                        out.push((Change::Detected, named()));
                    }
                    if a.ended() && !was_ended && !old_news {
                        out.push((Change::Ended, named()));
                    }
                }
                w.seen = all.len();
                w.ended = all.iter().map(DetectedAnomaly::ended).collect();
                out
            })
            .collect();
        let open = self
            .watches
            .iter()
            .filter(|(_, w)| w.watcher.is_open())
            .filter_map(|(g, w)| {
                w.watcher.anomalies().last().map(|a| GroupAnomaly {
                    group: g.clone(),
                    anomaly: a.clone(),
                })
            })
            .collect();
        AnomalyNews {
            at: now,
            changes: per_group.into_iter().flatten().collect(),
            open,
            stranded: Vec::new(),
            held: 0,
        }
    }
}

/// The on-demand spend of each group (in `known`'s order) over its last `hours` hours.
fn recent_spend(known: &UsageModel, hours: usize) -> Vec<f64> {
    known
        .groups
        .iter()
        .map(|g| {
            let n = g.ode.len();
            g.ode[n.saturating_sub(hours)..]
                .iter()
                .filter(|v| v.is_finite())
                .sum()
        })
        .collect()
}

/// Judges each purchase of `decision` against the open anomalies (see the module
/// documentation): held purchases leave it; every purchase judged is recorded in `held`.
pub fn apply(
    decision: &mut Decision,
    ctx: &Situation<'_>,
    open: &[GroupAnomaly],
    share: f64,
) -> Vec<Hold> {
    if open.is_empty() || decision.purchases.is_empty() {
        return Vec::new();
    }
    let kind_of: BTreeMap<&UsageGroup, AnomalyKind> =
        open.iter().map(|o| (&o.group, o.anomaly.kind)).collect();
    let spend = recent_spend(ctx.known, SHARE_HOURS);
    let mut holds = Vec::new();
    decision.purchases.retain(|c| {
        let covered = covered_groups(c, ctx.groups, ctx.rates);
        let anomalous: Vec<usize> = covered
            .iter()
            .copied()
            .filter(|&i| {
                ctx.groups
                    .get(i)
                    .is_some_and(|g| kind_of.contains_key(&g.group))
            })
            .collect();
        if anomalous.is_empty() {
            return true;
        }
        let total: f64 = covered.iter().filter_map(|&i| spend.get(i)).sum();
        let part: f64 = anomalous.iter().filter_map(|&i| spend.get(i)).sum();
        let s = if total > 0.0 { part / total } else { 1.0 };
        let held = s >= share;
        holds.push(Hold {
            purchase: c.clone(),
            held,
            groups: anomalous
                .iter()
                .filter_map(|&i| {
                    let g = &ctx.groups[i].group;
                    kind_of.get(g).map(|k| (g.clone(), *k))
                })
                .collect(),
            share: s,
            threshold: share,
        });
        !held
    });
    holds
}

/// The commitments of `portfolio` active at `now` that can cover `drop`'s group and were used
/// less than [`STRANDED_BELOW`] over the drop's known hours (from its start to the end of `known`), with the
/// part of their hourly cost left idle. `groups` are `known`'s groups, billable, in its order.
pub fn stranded(
    drop: &GroupAnomaly,
    known: &UsageModel,
    groups: &[BillableGroup],
    rates: &RateCard,
    portfolio: &[Commitment],
    now: Hour,
) -> Result<Option<Stranded>, PlanError> {
    if drop.anomaly.kind != AnomalyKind::Drop {
        return Ok(None);
    }
    let Some(gi) = groups.iter().position(|g| g.group == drop.group) else {
        return Ok(None);
    };
    let active: Vec<Commitment> = portfolio
        .iter()
        .filter(|c| c.is_active(now))
        .cloned()
        .collect();
    let covering: Vec<usize> = active
        .iter()
        .enumerate()
        .filter(|(_, c)| covered_groups(c, groups, rates).contains(&gi))
        .map(|(i, _)| i)
        .collect();
    if covering.is_empty() {
        return Ok(None);
    }
    let n = known.range.len();
    let from = drop
        .anomaly
        .start
        .since(known.range.start)
        .clamp(0, n as i64) as usize;
    if from >= n {
        return Ok(None);
    }
    let series: Vec<&[f64]> = known
        .groups
        .iter()
        .map(|g| &g.quantity[from.min(g.quantity.len())..n.min(g.quantity.len())])
        .collect();
    let engine = BillingEngine::new(groups.to_vec(), &active, rates).map_err(PlanError::billing)?;
    let used = engine.use_by_commitment(known.range.start.plus(from as i64), &series);
    let mut commitments = Vec::new();
    for i in covering {
        let (hours, sum) = used.get(i).copied().unwrap_or((0, 0.0));
        if hours == 0 {
            continue;
        }
        let c = &active[i];
        let utilization = (sum / hours as f64).clamp(0.0, 1.0);
        let idle_hourly =
            Money::from_f64(c.hourly_cost.to_f64() * (1.0 - utilization)).unwrap_or(Money::ZERO);
        if utilization < STRANDED_BELOW && idle_hourly > Money::ZERO {
            commitments.push(IdleCommitment {
                id: c.id.clone(),
                hourly_cost: c.hourly_cost,
                utilization,
                idle_hourly,
            });
        }
    }
    if commitments.is_empty() {
        return Ok(None);
    }
    Ok(Some(Stranded {
        anomaly_id: drop.id(),
        group: drop.group.clone(),
        idle_hourly: commitments.iter().map(|c| c.idle_hourly).sum(),
        commitments,
    }))
}

impl Planner for AnomalyHold {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError> {
        let mut news = self.watch(ctx.known, ctx.now);
        // What a new drop strands is an alert, never a reason not to decide: a portfolio the
        // bill cannot price here is simply not reported.
        for (change, a) in &news.changes {
            if *change == Change::Detected && !a.anomaly.ended() {
                if let Ok(Some(s)) =
                    stranded(a, ctx.known, ctx.groups, ctx.rates, ctx.portfolio, ctx.now)
                {
                    news.stranded.push(s);
                }
            }
        }
        let mut decision = self.inner.decide(ctx)?;
        if self.hold {
            decision.holds = apply(&mut decision, ctx, &news.open, self.share);
            news.held = decision.holds.iter().filter(|h| h.held).count();
        }
        self.news = Some(news);
        Ok(decision)
    }

    fn stats(&self) -> serde_json::Value {
        self.inner.stats()
    }

    fn solver_status(&self) -> Option<String> {
        self.inner.solver_status()
    }

    fn unchanged(&self) -> Option<String> {
        self.inner.unchanged()
    }

    fn set_stopwatch(&mut self, stopwatch: super::Stopwatch) {
        self.inner.set_stopwatch(stopwatch);
    }

    fn anomalies(&self) -> Option<&AnomalyNews> {
        self.news.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        CommitmentAmount, GroupSeries, HourRange, Instrument, PaymentOption, Provider, Term,
    };
    use crate::forecast::anomaly::AnomalyStatus;
    use crate::forecast::synth::Spec;
    use crate::plan::Policy;

    const DAY: usize = 24;
    const WEEK: usize = 7 * DAY;
    const WEEKS: usize = 8;
    /// Billing latency of the replays below (hours).
    const LATENCY: i64 = 24;

    fn monday() -> Hour {
        Hour::parse("2025-09-01T00:00:00Z").unwrap()
    }

    fn group(instance_type: &str) -> UsageGroup {
        UsageGroup::new(
            Provider::Aws,
            "us-east-1",
            instance_type,
            None,
            "Linux",
            "Shared",
        )
    }

    /// A usage model of `WEEKS` weeks, one series per (instance type, recipe, price).
    fn model(series: &[(&str, Spec, f64)]) -> UsageModel {
        let n = WEEKS * WEEK;
        let groups = series
            .iter()
            .map(|(t, spec, price)| {
                let quantity = spec.generate(monday(), n);
                let mut g = GroupSeries::empty(group(t), n);
                g.ode = quantity.iter().map(|q| q * price).collect();
                g.quantity = quantity;
                g.total_ode = Money::from_f64(g.ode.iter().sum()).unwrap();
                g
            })
            .collect();
        UsageModel {
            range: HourRange::new(monday(), monday().plus(n as i64)),
            currency: "USD".into(),
            groups,
            commitments: Vec::new(),
            last_observed: Some(monday().plus(n as i64 - 1)),
            rows_read: 0,
            ignored: Default::default(),
        }
    }

    /// A planner that buys one Standard RI for every group at every decision, whatever the
    /// usage: what the hold lets through is all that changes.
    struct BuyEverything;

    fn ri(g: &UsageGroup, count: u32) -> Commitment {
        Commitment {
            id: format!("ri-{}", g.instance_type),
            provider: g.provider,
            instrument: Instrument::StandardReservedInstance,
            term: Term::ONE_YEAR,
            payment: PaymentOption::NoUpfront,
            start: monday(),
            end: monday().plus(Term::ONE_YEAR.hours()),
            region: Some(g.region.clone()),
            instance_type: Some(g.instance_type.clone()),
            family: Some(g.family.clone()),
            amount: CommitmentAmount::Instances(count),
            hourly_cost: Money::from_f64(count as f64 * 0.06).unwrap(),
            upfront: Money::ZERO,
        }
    }

    impl Planner for BuyEverything {
        fn name(&self) -> &str {
            "buy-everything"
        }
        fn decide(&mut self, ctx: &Situation<'_>) -> Result<Decision, PlanError> {
            Ok(Decision {
                purchases: ctx.known.groups.iter().map(|g| ri(&g.group, 10)).collect(),
                ..Decision::default()
            })
        }
    }

    /// One decision a day from day 15, each seeing the usage billed `LATENCY` hours before it,
    /// as the replay and the daemon hand it: per decision, the instance types bought, the
    /// holds, and the news.
    fn replay(
        model: &UsageModel,
        portfolio: &[Commitment],
        planner: &mut dyn Planner,
    ) -> Vec<(Hour, Vec<String>, Vec<Hold>, AnomalyNews)> {
        let rates = RateCard::new();
        let groups: Vec<BillableGroup> = model
            .groups
            .iter()
            .map(|g| BillableGroup {
                group: g.group.clone(),
                on_demand_rate: g.observed_unit_price().unwrap_or(0.1),
            })
            .collect();
        let policy = Policy::default();
        let mut out = Vec::new();
        for d in 15..=WEEKS * 7 {
            let now = monday().plus((d * DAY) as i64);
            let known = model.slice(HourRange::new(monday(), now.plus(-LATENCY)));
            let ctx = Situation {
                now,
                known: &known,
                rates: &rates,
                groups: &groups,
                portfolio,
                policy: &policy,
                refunds: &[],
                listings: &[],
            };
            let decision = planner.decide(&ctx).unwrap();
            let bought = decision
                .purchases
                .iter()
                .filter_map(|c| c.instance_type.clone())
                .collect();
            let news = planner.anomalies().cloned().unwrap_or_default();
            out.push((now, bought, decision.holds, news));
        }
        out
    }

    fn held() -> AnomalyHold {
        AnomalyHold::new(
            Box::new(BuyEverything),
            DEFAULT_SHARE,
            AnomalyConfig::default(),
        )
    }

    #[test]
    fn a_group_with_an_open_spike_gets_no_purchase_until_it_ends() {
        // Ten hours from 20:00: the daily decision billed up to midnight sees it open (a spike
        // billed whole in one day opens and ends between two daily decisions).
        let at = 6 * WEEK + 2 * DAY + 20;
        let spiky = Spec {
            spikes: vec![(at, 10, 2.0)],
            ..Spec::default()
        };
        let calm = Spec {
            seed: 7,
            ..Spec::default()
        };
        let m = model(&[("m5.large", spiky, 0.096), ("c5.large", calm, 0.085)]);
        let mut planner = held();
        let days = replay(&m, &[], &mut planner);
        let spike = monday().plus(at as i64);
        // Detected once, within a day of its hours being billed; reported ended later.
        let detected: Vec<&Hour> = days
            .iter()
            .flat_map(|(now, _, _, n)| {
                n.changes
                    .iter()
                    .filter(|(c, _)| *c == Change::Detected)
                    .map(move |_| now)
            })
            .collect();
        assert_eq!(detected.len(), 1, "{days:?}");
        let mut held_days = 0;
        for (now, bought, holds, news) in &days {
            // The calm group is always bought.
            assert!(
                bought.contains(&"c5.large".to_string()),
                "{now}: {bought:?}"
            );
            let open = news
                .open
                .iter()
                .any(|a| a.group.instance_type == "m5.large");
            if open {
                held_days += 1;
                assert_eq!(news.open[0].anomaly.kind, AnomalyKind::Spike);
                assert!(news.open[0].anomaly.start.since(spike).abs() <= 1);
                assert!(
                    !bought.contains(&"m5.large".to_string()),
                    "{now}: {bought:?}"
                );
                assert_eq!(holds.len(), 1, "{holds:?}");
                assert!(holds[0].held && holds[0].share > 0.99, "{holds:?}");
                assert!(holds[0].note().contains("not proposed"), "{holds:?}");
                assert_eq!(news.held, 1);
            } else {
                assert!(
                    bought.contains(&"m5.large".to_string()),
                    "{now}: {bought:?}"
                );
                assert!(holds.is_empty(), "{holds:?}");
            }
        }
        // A daily decision sees the spike open at one decision at least, and it ends.
        assert!(held_days >= 1, "{days:?}");
        let ended = days.iter().any(|(_, _, _, n)| {
            n.changes
                .iter()
                .any(|(c, a)| *c == Change::Ended && a.anomaly.status == AnomalyStatus::Ended)
        });
        assert!(ended, "{days:?}");
        // After it ended, the last decisions buy for the group again.
        let (_, last, _, _) = days.last().unwrap();
        assert!(last.contains(&"m5.large".to_string()));
    }

    #[test]
    fn a_step_up_is_not_bought_into_until_it_settles() {
        let at = 5 * WEEK + 3 * DAY + 7;
        let step = Spec {
            shifts: vec![(at, 1.5)],
            ..Spec::default()
        };
        let m = model(&[("m5.large", step, 0.096)]);
        let mut planner = held();
        let days = replay(&m, &[], &mut planner);
        let held_at: Vec<Hour> = days
            .iter()
            .filter(|(_, bought, _, _)| bought.is_empty())
            .map(|(now, _, _, _)| *now)
            .collect();
        // Held from its detection (within two days of its first hour: a day of billing
        // latency, a day between decisions) until it settles as the new level (7 days).
        let first = *held_at.first().unwrap();
        assert!(
            first.since(monday().plus(at as i64)) <= 2 * DAY as i64 + 1,
            "{held_at:?}"
        );
        assert!(held_at.len() >= 6, "{held_at:?}");
        // Held without a break, then bought again once accepted as the new level.
        let last = *held_at.last().unwrap();
        assert_eq!(last.since(first) / DAY as i64 + 1, held_at.len() as i64);
        let settled = days.iter().find_map(|(now, _, _, n)| {
            n.changes
                .iter()
                .any(|(c, a)| *c == Change::Ended && a.anomaly.status == AnomalyStatus::NewLevel)
                .then_some(*now)
        });
        let settled = settled.expect("the step settles");
        assert!(settled > last, "{settled} {last}");
        assert!(days
            .iter()
            .filter(|(now, _, _, _)| *now >= settled)
            .all(|(_, bought, _, _)| bought == &vec!["m5.large".to_string()]));
        // A step, not a spike, by the time it settles.
        assert!(days
            .iter()
            .any(|(_, _, _, n)| n.open.iter().any(|a| a.anomaly.kind == AnomalyKind::StepUp)));
    }

    #[test]
    fn a_purchase_covering_a_small_anomalous_share_is_kept_with_a_note() {
        // m5.large spikes; a size-flexible m5.8xlarge RI covers both m5 groups, and the large
        // one is a few percent of their spend: kept, with the note. Off, nothing is judged.
        let at = 6 * WEEK + 2 * DAY + 20;
        let small = Spec {
            base: 10.0,
            spikes: vec![(at, 10, 2.0)],
            ..Spec::default()
        };
        let big = Spec {
            seed: 3,
            ..Spec::default()
        };
        let m = model(&[("m5.large", small, 0.096), ("m5.8xlarge", big, 1.536)]);
        struct BuyBig;
        impl Planner for BuyBig {
            fn name(&self) -> &str {
                "buy-big"
            }
            fn decide(&mut self, _: &Situation<'_>) -> Result<Decision, PlanError> {
                Ok(vec![ri(&group("m5.8xlarge"), 50)].into())
            }
        }
        let mut planner =
            AnomalyHold::new(Box::new(BuyBig), DEFAULT_SHARE, AnomalyConfig::default());
        let days = replay(&m, &[], &mut planner);
        let judged: Vec<&Hold> = days.iter().flat_map(|(_, _, h, _)| h).collect();
        assert!(!judged.is_empty(), "{days:?}");
        for h in judged {
            assert!(!h.held && h.share < 0.05, "{h:?}");
            assert!(h.note().contains("under the 10%"), "{}", h.note());
        }
        assert!(days.iter().all(|(_, b, _, _)| b.len() == 1));
        // The same decision with a share above theirs holds it.
        let mut strict = AnomalyHold::new(Box::new(BuyBig), 0.0001, AnomalyConfig::default());
        let days = replay(&m, &[], &mut strict);
        assert!(days.iter().any(|(_, b, h, _)| b.is_empty() && h[0].held));
        // Watching only: never held, never judged, the news still there.
        let mut watching = AnomalyHold::watching(Box::new(BuyBig), AnomalyConfig::default());
        let days = replay(&m, &[], &mut watching);
        assert!(days.iter().all(|(_, b, h, _)| b.len() == 1 && h.is_empty()));
        assert!(days.iter().any(|(_, _, _, n)| !n.changes.is_empty()));
    }

    #[test]
    fn a_sudden_drop_names_the_commitments_it_strands() {
        let at = 6 * WEEK + 2 * DAY;
        let drop = Spec {
            shifts: vec![(at, 0.3)],
            ..Spec::default()
        };
        let m = model(&[("m5.large", drop, 0.096)]);
        // 60 instances held: mostly used before the drop, a good part idle after it.
        let portfolio = vec![ri(&group("m5.large"), 60)];
        let mut planner = held();
        let days = replay(&m, &portfolio, &mut planner);
        let stranded: Vec<&Stranded> = days.iter().flat_map(|(_, _, _, n)| &n.stranded).collect();
        assert_eq!(stranded.len(), 1, "{days:?}");
        let s = stranded[0];
        assert_eq!(s.commitments.len(), 1);
        assert_eq!(s.commitments[0].id, "ri-m5.large");
        assert!(s.commitments[0].utilization < 0.8, "{s:?}");
        assert!(s.idle_hourly > Money::ZERO && s.idle_hourly < portfolio[0].hourly_cost);
        assert!(s.anomaly_id.contains("/us-east-1/m5.large/"), "{s:?}");
    }

    #[test]
    fn a_restart_replays_history_without_old_news() {
        // Two spikes; a watcher started after both ended reports neither as news.
        let spikes = Spec {
            spikes: vec![(4 * WEEK + 10, 6, 2.0), (5 * WEEK + 2 * DAY + 10, 6, 2.0)],
            ..Spec::default()
        };
        let m = model(&[("m5.large", spikes, 0.096)]);
        let mut planner = held();
        let rates = RateCard::new();
        let groups = vec![BillableGroup {
            group: group("m5.large"),
            on_demand_rate: 0.096,
        }];
        let policy = Policy::default();
        let now = monday().plus((WEEKS * WEEK) as i64);
        let known = m.slice(HourRange::new(monday(), now.plus(-LATENCY)));
        let ctx = Situation {
            now,
            known: &known,
            rates: &rates,
            groups: &groups,
            portfolio: &[],
            policy: &policy,
            refunds: &[],
            listings: &[],
        };
        planner.decide(&ctx).unwrap();
        let news = planner.anomalies().unwrap();
        assert!(news.changes.is_empty(), "{news:?}");
        assert!(news.open.is_empty(), "{news:?}");
    }
}
