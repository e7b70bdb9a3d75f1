//! Folds FOCUS rows into the usage model: hourly series per usage group and per commitment.
//!
//! Memory is bounded by (groups + commitments) x hours, never by rows: each row is added to its
//! group's hourly slots and dropped. When no hour range is requested, the range grows to fit the
//! rows (with slack, so that a bill sorted by time rarely shifts the series).

use super::classify::{Classifier, Kind};
use super::row::{Col, FastMap, FieldError, Row};
use crate::domain::{
    CommitmentUsage, GroupSeries, Hour, HourRange, IgnoredRows, Money, Provider, UsageGroup,
    UsageModel,
};
use std::collections::{BTreeMap, HashMap};

/// Why a row stops ingestion (the source adds the file and the row number).
#[derive(Debug, Clone, PartialEq)]
pub enum RowError {
    Field(FieldError),
    MixedCurrency { first: String, found: String },
}

impl From<FieldError> for RowError {
    fn from(e: FieldError) -> Self {
        RowError::Field(e)
    }
}

/// What the bill says about a commitment beyond its utilization: enough to infer an existing
/// commitment that the commitments file does not list.
#[derive(Clone, Debug, PartialEq)]
pub struct BillCommitment {
    pub id: String,
    pub provider: Provider,
    /// FOCUS CommitmentDiscountType.
    pub commitment_type: String,
    /// FOCUS CommitmentDiscountCategory (Spend | Usage), if the bill says.
    pub category: Option<String>,
    pub first_hour: Hour,
    pub last_hour: Hour,
    /// The largest hourly used + unused EffectiveCost: a savings plan's hourly commitment.
    pub max_hourly_cost: f64,
    /// Region and instance type of the usage it covered most (instance-hours).
    pub region: Option<String>,
    pub instance_type: Option<String>,
    /// The largest hourly normalized units it covered (RIs and reservations).
    pub max_hourly_units: f64,
    /// Exact totals over the range read (rows are split over their hours to the micro-dollar,
    /// so a range clipped to a month keeps exactly that month's share).
    /// EffectiveCost of the usage it covered (Used rows).
    pub total_used: Money,
    /// EffectiveCost of the commitment left unused (Unused rows).
    pub total_unused: Money,
    /// BilledCost of its Purchase rows (cash: upfront and recurring fees). FOCUS already
    /// amortizes these into the Used/Unused EffectiveCost, so they are not a cost to add.
    pub fees: Money,
    /// On-demand equivalent (ListCost, or ListUnitPrice x PricingQuantity as the demand side
    /// uses) of the usage it covered: what that usage would have cost without it.
    pub total_covered_ode: Money,
    /// The same per hour of the range (floats, for charts; the total above is the exact one).
    pub covered_ode: Vec<f64>,
    /// Hours of the range with at least one Used or Unused row of it.
    pub billed_hours: i64,
    /// Covered rows without any list price: their on-demand equivalent is missing from
    /// `total_covered_ode`, which is then a lower bound.
    pub covered_rows_without_list_cost: u64,
}

/// A usage model and what the bill says about commitments.
#[derive(Clone, Debug, PartialEq)]
pub struct Bill {
    pub model: UsageModel,
    pub commitments: Vec<BillCommitment>,
    /// The cost of the Usage rows that are not eligible compute (storage, databases, network,
    /// ...) per hour, by service and sub-account, over the model's range: what the anomaly
    /// watch judges beside the usage groups. Sorted by (service, sub-account).
    pub other_spend: Vec<OtherSpend>,
}

/// The hourly cost (FOCUS `EffectiveCost`, spread evenly over a row's charge period) of one
/// service (`ServiceName`) in one sub-account (`SubAccountId`), Usage rows that are not
/// eligible compute only. Floats, as the usage series are: a signal, not an amount summed.
#[derive(Clone, Debug, PartialEq)]
pub struct OtherSpend {
    pub service: String,
    pub sub_account: String,
    pub cost: Vec<f64>,
}

struct GroupAcc {
    group: UsageGroup,
    quantity: Vec<f64>,
    ode: Vec<f64>,
    covered: Vec<f64>,
    total_ode: Money,
    total_covered: Money,
    subs: FastMap<String, Money>,
}

struct CommitAcc {
    id: String,
    provider: Provider,
    commitment_type: String,
    category: Option<String>,
    used: Vec<f64>,
    unused: Vec<f64>,
    units: Vec<f64>,
    covered_ode: Vec<f64>,
    /// 1.0 (or more after a merge) in every hour with a Used or Unused row.
    billed: Vec<f64>,
    fees: Money,
    total_used: Money,
    total_unused: Money,
    total_covered_ode: Money,
    without_list: u64,
    first: Hour,
    last: Hour,
    /// group index -> instance-hours covered.
    covered_groups: HashMap<usize, f64>,
}

impl CommitAcc {
    /// A commitment first seen (in a row, or in another accumulator being merged): no hours yet.
    fn new(
        id: String,
        provider: Provider,
        commitment_type: String,
        category: Option<String>,
    ) -> Self {
        CommitAcc {
            id,
            provider,
            commitment_type,
            category,
            used: Vec::new(),
            unused: Vec::new(),
            units: Vec::new(),
            covered_ode: Vec::new(),
            billed: Vec::new(),
            fees: Money::ZERO,
            total_used: Money::ZERO,
            total_unused: Money::ZERO,
            total_covered_ode: Money::ZERO,
            without_list: 0,
            first: Hour(i64::MAX),
            last: Hour(i64::MIN),
            covered_groups: HashMap::new(),
        }
    }
}

pub struct Accumulator {
    fixed: Option<HourRange>,
    base: Hour,
    seen: Option<(Hour, Hour)>,
    currency: Option<String>,
    classifier: Classifier,
    kind_to_group: Vec<Option<usize>>,
    groups: Vec<GroupAcc>,
    group_index: HashMap<UsageGroup, usize>,
    commitments: Vec<CommitAcc>,
    commitment_index: FastMap<String, usize>,
    last_observed: Option<Hour>,
    rows_read: u64,
    ignored: IgnoredRows,
    /// Cost per hour of non-compute Usage rows: service -> sub-account -> hour -> cost (two
    /// levels, so a row's lookup allocates nothing; by hour, so that these rows do not widen
    /// the usage model's range).
    other: FastMap<String, FastMap<String, FastMap<i64, f64>>>,
}

/// Extra hours kept before the first row when the range is open (rows are usually sorted).
const SLACK: i64 = 24 * 31;

fn slot(v: &mut Vec<f64>, i: usize) -> &mut f64 {
    if i >= v.len() {
        v.resize(i + 1, 0.0);
    }
    &mut v[i]
}

/// Money spread over `n` hours: the share of hour `k` (integer micros, remainder to the first).
fn share(total: Money, k: i64, n: i64) -> Money {
    let m = total.micros() as i128;
    let base = m / n as i128;
    let rem = m - base * n as i128;
    Money::from_micros((base + if k == 0 { rem } else { 0 }) as i64)
}

fn non_negative(row: &Row<'_>, col: Col, v: Option<(Money, f64)>) -> Result<(), FieldError> {
    match v {
        Some((m, _)) if m.is_negative() => Err(FieldError {
            col,
            value: m.to_string(),
            reason:
                "negative cost on a Usage row (only Credit and Adjustment rows may be negative)"
                    .into(),
        }),
        _ => {
            let _ = row;
            Ok(())
        }
    }
}

impl Accumulator {
    /// `range`: keep only these hours (rows outside are counted and skipped); `None`: all.
    pub fn new(range: Option<HourRange>) -> Self {
        Accumulator {
            fixed: range,
            base: range.map(|r| r.start).unwrap_or_default(),
            seen: None,
            currency: None,
            classifier: Classifier::new(),
            kind_to_group: Vec::new(),
            groups: Vec::new(),
            group_index: HashMap::new(),
            commitments: Vec::new(),
            commitment_index: FastMap::default(),
            last_observed: None,
            rows_read: 0,
            ignored: IgnoredRows::default(),
            other: FastMap::default(),
        }
    }

    /// Makes `[start, end)` addressable (open ranges only) and returns the clipped hours.
    fn hours_in(&mut self, start: Hour, end: Hour) -> (Hour, Hour) {
        if let Some(r) = self.fixed {
            return (start.max(r.start), end.min(r.end));
        }
        if self.seen.is_none() {
            self.base = start.plus(-SLACK);
        } else if start < self.base {
            let new_base = start.plus(-SLACK);
            let shift = self.base.since(new_base) as usize;
            let pad = |v: &mut Vec<f64>| {
                v.splice(0..0, std::iter::repeat_n(0.0, shift));
            };
            for g in &mut self.groups {
                pad(&mut g.quantity);
                pad(&mut g.ode);
                pad(&mut g.covered);
            }
            for c in &mut self.commitments {
                pad(&mut c.used);
                pad(&mut c.unused);
                pad(&mut c.units);
                pad(&mut c.covered_ode);
                pad(&mut c.billed);
            }
            self.base = new_base;
        }
        let (lo, hi) = self.seen.unwrap_or((start, end));
        self.seen = Some((lo.min(start), hi.max(end)));
        (start, end)
    }

    fn commitment(&mut self, row: &Row<'_>, id: &str, provider: Provider) -> usize {
        if let Some(&i) = self.commitment_index.get(id) {
            return i;
        }
        self.commitments.push(CommitAcc::new(
            id.to_string(),
            provider,
            row.text(Col::CommitmentDiscountType)
                .map(|s| s.into_owned())
                .unwrap_or_default(),
            row.text(Col::CommitmentDiscountCategory)
                .map(|s| s.into_owned()),
        ));
        self.commitment_index
            .insert(id.to_string(), self.commitments.len() - 1);
        self.commitments.len() - 1
    }

    /// Adds a non-compute Usage row's cost to its (service, sub-account) series. A cost that
    /// does not parse, or is negative, is left out: the row was never demand, and it does not
    /// stop the read.
    fn other_spend(&mut self, row: &Row<'_>, start: Hour, end: Hour) {
        let Some((_, cost)) = row.money(Col::EffectiveCost).ok().flatten() else {
            return;
        };
        if !(cost.is_finite() && cost > 0.0) {
            return;
        }
        let (s, e) = match self.fixed {
            Some(r) => (start.max(r.start), end.min(r.end)),
            None => (start, end),
        };
        if e <= s {
            return;
        }
        let n = end.since(start) as f64;
        let service = row.str(Col::ServiceName).unwrap_or("(no service)");
        let sub = row.str(Col::SubAccountId).unwrap_or("(no sub-account)");
        if !self.other.contains_key(service) {
            self.other.insert(service.to_string(), FastMap::default());
        }
        let Some(by_sub) = self.other.get_mut(service) else {
            return;
        };
        if !by_sub.contains_key(sub) {
            by_sub.insert(sub.to_string(), FastMap::default());
        }
        let Some(series) = by_sub.get_mut(sub) else {
            return;
        };
        for h in s.0..e.0 {
            *series.entry(h).or_insert(0.0) += cost / n;
        }
    }

    /// Adds one row. On error nothing of the row is kept (and the caller drops everything).
    pub fn add(&mut self, row: &Row<'_>) -> Result<(), RowError> {
        self.rows_read += 1;
        let start = row
            .hour(Col::ChargePeriodStart)?
            .ok_or_else(|| FieldError {
                col: Col::ChargePeriodStart,
                value: "NULL".into(),
                reason: "every row needs a charge period".into(),
            })?;
        let end = row
            .hour(Col::ChargePeriodEnd)?
            .filter(|e| *e > start)
            .unwrap_or(start.plus(1));
        if let Some(cur) = row.str(Col::BillingCurrency) {
            match &self.currency {
                None => self.currency = Some(cur.to_string()),
                Some(first) if first != cur => {
                    return Err(RowError::MixedCurrency {
                        first: first.clone(),
                        found: cur.to_string(),
                    })
                }
                Some(_) => {}
            }
        }
        let last = end.plus(-1);
        self.last_observed = Some(self.last_observed.map_or(last, |l| l.max(last)));

        let category = row.str(Col::ChargeCategory).unwrap_or_default();
        let is_usage = category.eq_ignore_ascii_case("Usage");
        let is_purchase = category.eq_ignore_ascii_case("Purchase");
        if !is_usage && !is_purchase {
            self.ignored.add(format!(
                "charge category {}",
                if category.is_empty() {
                    "(none)"
                } else {
                    category
                }
            ));
            return Ok(());
        }
        if let Some(r) = self.fixed {
            if end <= r.start || start >= r.end {
                self.ignored.add("outside the requested hours");
                return Ok(());
            }
        }
        let commitment_id = row.text(Col::CommitmentDiscountId);
        let provider = fast_provider(row);

        if is_purchase {
            // Recurring and upfront fees of a commitment: inventory, never demand.
            match (commitment_id, provider) {
                (Some(id), Some(p)) => {
                    let fee = row.money(Col::BilledCost)?.map(|m| m.0).unwrap_or_default();
                    let c = self.commitment(row, &id, p);
                    self.commitments[c].fees += fee;
                    let (lo, hi) = (start, end.plus(-1));
                    let acc = &mut self.commitments[c];
                    acc.first = acc.first.min(lo);
                    acc.last = acc.last.max(hi);
                }
                (None, _) => self.ignored.add("purchase without CommitmentDiscountId"),
                (Some(_), None) => self.ignored.add("purchase of an unsupported provider"),
            }
            return Ok(());
        }

        let status = row.str(Col::CommitmentDiscountStatus).unwrap_or_default();
        if status.eq_ignore_ascii_case("Unused") {
            let (Some(id), Some(p)) = (commitment_id, provider) else {
                self.ignored.add("unused commitment without id or provider");
                return Ok(());
            };
            let eff = row.money(Col::EffectiveCost)?;
            non_negative(row, Col::EffectiveCost, eff)?;
            let (exact, f) = eff.unwrap_or_default();
            let c = self.commitment(row, &id, p);
            let (s, e) = self.hours_in(start, end);
            let n = end.since(start);
            let acc = &mut self.commitments[c];
            acc.first = acc.first.min(s);
            acc.last = acc.last.max(e.plus(-1));
            for h in s.0..e.0 {
                let k = h - start.0;
                let i = (h - self.base.0) as usize;
                *slot(&mut acc.unused, i) += f / n as f64;
                *slot(&mut acc.billed, i) = 1.0;
                acc.total_unused += share(exact, k, n);
            }
            return Ok(());
        }

        if row.is(Col::PricingCategory, "Dynamic") {
            self.ignored.add("spot usage");
            return Ok(());
        }
        let kind = self.classifier.classify(row);
        let covered_by = commitment_id.filter(|_| {
            status.eq_ignore_ascii_case("Used") || row.is(Col::PricingCategory, "Committed")
        });
        let group_idx = match self.classifier.kind(kind) {
            Kind::Vm(group) => Some(match self.kind_to_group.get(kind).copied().flatten() {
                Some(g) => g,
                None => {
                    let g = match self.group_index.get(group) {
                        Some(&g) => g,
                        None => {
                            self.groups.push(GroupAcc {
                                group: group.clone(),
                                quantity: Vec::new(),
                                ode: Vec::new(),
                                covered: Vec::new(),
                                total_ode: Money::ZERO,
                                total_covered: Money::ZERO,
                                subs: FastMap::default(),
                            });
                            self.group_index
                                .insert(group.clone(), self.groups.len() - 1);
                            self.groups.len() - 1
                        }
                    };
                    if self.kind_to_group.len() <= kind {
                        self.kind_to_group.resize(kind + 1, None);
                    }
                    self.kind_to_group[kind] = Some(g);
                    g
                }
            }),
            Kind::Ignored(reason) => {
                if covered_by.is_none() {
                    let reason = reason.clone();
                    self.ignored.add(reason);
                    self.other_spend(row, start, end);
                    return Ok(());
                }
                // Not demand, but it used a commitment (a savings plan covering Fargate):
                // it counts toward that commitment's utilization.
                let reason = reason.clone();
                self.ignored.add(reason);
                None
            }
        };

        // Everything below matters to money: parse and check before touching any state.
        let eff = row.money(Col::EffectiveCost)?;
        non_negative(row, Col::EffectiveCost, eff)?;
        let mut demand = None;
        if let Some(g) = group_idx {
            let mut list = row.money(Col::ListCost)?;
            non_negative(row, Col::ListCost, list)?;
            let quantity = match row.number(Col::ConsumedQuantity)? {
                Some(q) => q,
                None => row.number(Col::PricingQuantity)?.unwrap_or(0.0),
            };
            if quantity < 0.0 {
                return Err(FieldError {
                    col: Col::ConsumedQuantity,
                    value: quantity.to_string(),
                    reason: "negative quantity on a Usage row".into(),
                }
                .into());
            }
            if list.is_none() {
                // FOCUS 1.0 exports sometimes leave ListCost empty: price it from the unit price.
                if let (Some(p), Some(q)) = (
                    row.number(Col::ListUnitPrice)?,
                    row.number(Col::PricingQuantity)?,
                ) {
                    let exact = Money::from_f64(p * q).map_err(|e| FieldError {
                        col: Col::ListUnitPrice,
                        value: p.to_string(),
                        reason: e.to_string(),
                    })?;
                    non_negative(row, Col::ListUnitPrice, Some((exact, p * q)))?;
                    list = Some((exact, p * q));
                }
            }
            let list = list.ok_or_else(|| FieldError {
                col: Col::ListCost,
                value: "NULL".into(),
                reason:
                    "an instance-hour row needs ListCost (or ListUnitPrice and PricingQuantity)"
                        .into(),
            })?;
            demand = Some((g, list, quantity));
        }
        // The on-demand equivalent of covered usage, for realized savings. VM rows reuse the
        // demand side's price; other covered rows (Fargate, Lambda under a savings plan) are
        // priced the same way here, and a row with no list price at all is counted, not guessed.
        let mut covered_list = None;
        if covered_by.is_some() {
            covered_list = match demand {
                Some((_, list, _)) => Some(list),
                None => {
                    let list = row.money(Col::ListCost)?;
                    non_negative(row, Col::ListCost, list)?;
                    match list {
                        Some(l) => Some(l),
                        None => match (
                            row.number(Col::ListUnitPrice)?,
                            row.number(Col::PricingQuantity)?,
                        ) {
                            (Some(p), Some(q)) => {
                                let exact = Money::from_f64(p * q).map_err(|e| FieldError {
                                    col: Col::ListUnitPrice,
                                    value: p.to_string(),
                                    reason: e.to_string(),
                                })?;
                                non_negative(row, Col::ListUnitPrice, Some((exact, p * q)))?;
                                Some((exact, p * q))
                            }
                            _ => None,
                        },
                    }
                }
            };
        }

        let (s, e) = self.hours_in(start, end);
        let n = end.since(start);
        let base = self.base.0;
        if let Some((g, (exact, f), quantity)) = demand {
            let acc = &mut self.groups[g];
            for h in s.0..e.0 {
                let i = (h - base) as usize;
                let part = share(exact, h - start.0, n);
                *slot(&mut acc.quantity, i) += quantity / n as f64;
                *slot(&mut acc.ode, i) += f / n as f64;
                acc.total_ode += part;
                if covered_by.is_some() {
                    *slot(&mut acc.covered, i) += f / n as f64;
                    acc.total_covered += part;
                }
            }
            let inside = if e > s {
                share_of(exact, s.since(start), e.since(start), n)
            } else {
                Money::ZERO
            };
            let sub = row.text(Col::SubAccountId).unwrap_or_default();
            match acc.subs.get_mut(sub.as_ref()) {
                Some(m) => *m += inside,
                None => {
                    acc.subs.insert(sub.into_owned(), inside);
                }
            }
        }
        if let (Some(id), Some(p)) = (covered_by, provider) {
            let (exact, f) = eff.unwrap_or_default();
            let c = self.commitment(row, &id, p);
            let units = demand.map(|(g, _, q)| (g, q * self.groups[g].group.sizing().units, q));
            let acc = &mut self.commitments[c];
            acc.first = acc.first.min(s);
            acc.last = acc.last.max(e.plus(-1));
            if covered_list.is_none() {
                acc.without_list += 1;
            }
            for h in s.0..e.0 {
                let i = (h - base) as usize;
                *slot(&mut acc.used, i) += f / n as f64;
                *slot(&mut acc.billed, i) = 1.0;
                acc.total_used += share(exact, h - start.0, n);
                if let Some((list, lf)) = covered_list {
                    *slot(&mut acc.covered_ode, i) += lf / n as f64;
                    acc.total_covered_ode += share(list, h - start.0, n);
                }
                if let Some((_, u, _)) = units {
                    *slot(&mut acc.units, i) += u / n as f64;
                }
            }
            if let Some((g, _, q)) = units {
                *acc.covered_groups.entry(g).or_insert(0.0) += q;
            }
        }
        Ok(())
    }

    /// An empty accumulator for the same range and currency: one part of a file read in
    /// parallel, later [`merge`](Accumulator::merge)d back in order.
    pub fn fork(&self) -> Accumulator {
        let mut part = Accumulator::new(self.fixed);
        part.currency = self.currency.clone();
        part
    }

    /// Folds a part read in parallel into this accumulator. The totals are exact whatever
    /// the split; hourly floats may differ from a sequential read in the last bits.
    pub fn merge(&mut self, other: Accumulator) -> Result<(), RowError> {
        match (&self.currency, &other.currency) {
            (Some(a), Some(b)) if a != b => {
                return Err(RowError::MixedCurrency {
                    first: a.clone(),
                    found: b.clone(),
                })
            }
            (None, Some(b)) => self.currency = Some(b.clone()),
            _ => {}
        }
        self.rows_read += other.rows_read;
        for (k, v) in other.ignored.by_reason {
            *self.ignored.by_reason.entry(k).or_insert(0) += v;
        }
        self.last_observed = match (self.last_observed, other.last_observed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some((lo, hi)) = other.seen {
            self.hours_in(lo, hi);
        }
        let offset = other.base.since(self.base);
        let add = |dst: &mut Vec<f64>, src: &[f64]| {
            for (i, v) in src.iter().enumerate() {
                let t = i as i64 + offset;
                // Before `seen.start` every slot is zero, so nothing is lost by skipping it.
                if *v != 0.0 && t >= 0 {
                    *slot(dst, t as usize) += v;
                }
            }
        };
        let mut remap = Vec::with_capacity(other.groups.len());
        for g in other.groups {
            let i = match self.group_index.get(&g.group) {
                Some(&i) => i,
                None => {
                    self.groups.push(GroupAcc {
                        group: g.group.clone(),
                        quantity: Vec::new(),
                        ode: Vec::new(),
                        covered: Vec::new(),
                        total_ode: Money::ZERO,
                        total_covered: Money::ZERO,
                        subs: FastMap::default(),
                    });
                    self.group_index
                        .insert(g.group.clone(), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            remap.push(i);
            let dst = &mut self.groups[i];
            add(&mut dst.quantity, &g.quantity);
            add(&mut dst.ode, &g.ode);
            add(&mut dst.covered, &g.covered);
            dst.total_ode += g.total_ode;
            dst.total_covered += g.total_covered;
            for (k, v) in g.subs {
                *dst.subs.entry(k).or_insert(Money::ZERO) += v;
            }
        }
        for c in other.commitments {
            let i = match self.commitment_index.get(&c.id) {
                Some(&i) => i,
                None => {
                    self.commitments.push(CommitAcc::new(
                        c.id.clone(),
                        c.provider,
                        c.commitment_type.clone(),
                        c.category.clone(),
                    ));
                    self.commitment_index
                        .insert(c.id.clone(), self.commitments.len() - 1);
                    self.commitments.len() - 1
                }
            };
            let dst = &mut self.commitments[i];
            add(&mut dst.used, &c.used);
            add(&mut dst.unused, &c.unused);
            add(&mut dst.units, &c.units);
            add(&mut dst.covered_ode, &c.covered_ode);
            add(&mut dst.billed, &c.billed);
            dst.fees += c.fees;
            dst.total_used += c.total_used;
            dst.total_unused += c.total_unused;
            dst.total_covered_ode += c.total_covered_ode;
            dst.without_list += c.without_list;
            dst.first = dst.first.min(c.first);
            dst.last = dst.last.max(c.last);
            for (g, q) in c.covered_groups {
                *dst.covered_groups.entry(remap[g]).or_insert(0.0) += q;
            }
        }
        for (service, subs) in other.other {
            let dst = self.other.entry(service).or_default();
            for (sub, hours) in subs {
                let d = dst.entry(sub).or_default();
                for (h, v) in hours {
                    *d.entry(h).or_insert(0.0) += v;
                }
            }
        }
        Ok(())
    }

    /// The model over the requested range, or over the hours the rows covered.
    pub fn finish(self) -> Bill {
        let range = match (self.fixed, self.seen) {
            (Some(r), _) => r,
            (None, Some((lo, hi))) => HourRange::new(lo, hi),
            (None, None) => HourRange::new(Hour(0), Hour(0)),
        };
        let offset = range.start.since(self.base).max(0) as usize;
        let len = range.len();
        let cut = |v: &[f64]| -> Vec<f64> {
            let mut out: Vec<f64> = v.iter().skip(offset).take(len).copied().collect();
            out.resize(len, 0.0);
            out
        };
        let mut groups: Vec<GroupSeries> = self
            .groups
            .iter()
            .map(|g| GroupSeries {
                group: g.group.clone(),
                quantity: cut(&g.quantity),
                ode: cut(&g.ode),
                covered_ode: cut(&g.covered),
                total_ode: g.total_ode,
                total_covered_ode: g.total_covered,
                by_sub_account: g
                    .subs
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        let mut usages = Vec::new();
        let mut hints = Vec::new();
        for c in &self.commitments {
            usages.push(CommitmentUsage {
                id: c.id.clone(),
                provider: c.provider,
                commitment_type: c.commitment_type.clone(),
                used: cut(&c.used),
                unused: cut(&c.unused),
                fees: c.fees,
                total_used: c.total_used,
                total_unused: c.total_unused,
            });
            let hourly = c
                .used
                .iter()
                .zip(c.unused.iter().chain(std::iter::repeat(&0.0)))
                .map(|(a, b)| a + b)
                .chain(c.unused.iter().skip(c.used.len()).copied())
                .fold(0.0, f64::max);
            let top = c
                .covered_groups
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(g, _)| &self.groups[*g].group);
            hints.push(BillCommitment {
                id: c.id.clone(),
                provider: c.provider,
                commitment_type: c.commitment_type.clone(),
                category: c.category.clone(),
                first_hour: if c.first.0 == i64::MAX {
                    range.start
                } else {
                    c.first
                },
                last_hour: if c.last.0 == i64::MIN {
                    range.start
                } else {
                    c.last
                },
                max_hourly_cost: hourly,
                region: top.map(|g| g.region.clone()),
                instance_type: top.map(|g| g.instance_type.clone()),
                max_hourly_units: c.units.iter().copied().fold(0.0, f64::max),
                total_used: c.total_used,
                total_unused: c.total_unused,
                fees: c.fees,
                total_covered_ode: c.total_covered_ode,
                covered_ode: cut(&c.covered_ode),
                billed_hours: cut(&c.billed).iter().filter(|b| **b > 0.0).count() as i64,
                covered_rows_without_list_cost: c.without_list,
            });
        }
        usages.sort_by(|a, b| a.id.cmp(&b.id));
        hints.sort_by(|a, b| a.id.cmp(&b.id));
        let mut other_spend: Vec<OtherSpend> = self
            .other
            .iter()
            .flat_map(|(service, subs)| {
                subs.iter().map(move |(sub, hours)| OtherSpend {
                    service: service.clone(),
                    sub_account: sub.clone(),
                    cost: (range.start.0..range.end.0)
                        .map(|h| hours.get(&h).copied().unwrap_or(0.0))
                        .collect(),
                })
            })
            .collect();
        other_spend.sort_by(|a, b| (&a.service, &a.sub_account).cmp(&(&b.service, &b.sub_account)));
        let last_observed = self
            .last_observed
            .map(|h| h.min(range.end.plus(-1)))
            .filter(|h| *h >= range.start);
        Bill {
            model: UsageModel {
                range,
                currency: self.currency.unwrap_or_else(|| "USD".to_string()),
                groups,
                commitments: usages,
                last_observed,
                rows_read: self.rows_read,
                ignored: self.ignored,
            },
            commitments: hints,
            other_spend,
        }
    }
}

/// The provider of a row: the two spellings of real exports first, the full parser after.
fn fast_provider(row: &Row<'_>) -> Option<Provider> {
    match row.str(Col::ProviderName) {
        Some("AWS") => Some(Provider::Aws),
        Some("Microsoft") => Some(Provider::Azure),
        _ => row
            .text(Col::ProviderName)
            .and_then(|p| Provider::parse(&p).ok()),
    }
}

/// The exact share of hours `[a, b)` of a row spread over `n` hours.
fn share_of(total: Money, a: i64, b: i64, n: i64) -> Money {
    (a..b).map(|k| share(total, k, n)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::row::Val;

    fn vm_row<'a>(start: &'a str, end: &'a str, list: &'a str, qty: &'a str) -> Row<'a> {
        let mut r = Row::new();
        for (c, v) in [
            (Col::ChargeCategory, "Usage"),
            (Col::ChargePeriodStart, start),
            (Col::ChargePeriodEnd, end),
            (Col::ProviderName, "AWS"),
            (Col::BillingCurrency, "USD"),
            (Col::RegionId, "us-east-1"),
            (Col::ServiceCategory, "Compute"),
            (Col::UsageType, "USE1-BoxUsage:m5.large"),
            (Col::ListCost, list),
            (Col::EffectiveCost, list),
            (Col::ConsumedQuantity, qty),
            (Col::SubAccountId, "111"),
        ] {
            r.set(c, Val::from_text(v));
        }
        r
    }

    #[test]
    fn daily_rows_spread_over_their_hours_exactly() {
        let mut acc = Accumulator::new(None);
        acc.add(&vm_row(
            "2025-01-02T00:00:00Z",
            "2025-01-03T00:00:00Z",
            "2.400001",
            "48",
        ))
        .unwrap();
        acc.add(&vm_row(
            "2025-01-01T23:00:00Z",
            "2025-01-02T00:00:00Z",
            "0.1",
            "1",
        ))
        .unwrap();
        let bill = acc.finish();
        let m = bill.model;
        assert_eq!(m.range.len(), 25);
        let g = &m.groups[0];
        assert_eq!(g.quantity[0], 1.0);
        assert!((g.quantity[1] - 2.0).abs() < 1e-12);
        assert_eq!(g.total_ode, Money::parse("2.500001").unwrap());
        assert_eq!(g.by_sub_account["111"], Money::parse("2.500001").unwrap());
    }

    #[test]
    fn fixed_range_skips_and_counts_rows_outside() {
        let start = Hour::parse("2025-01-01T00:00:00Z").unwrap();
        let mut acc = Accumulator::new(Some(HourRange::new(start, start.plus(2))));
        acc.add(&vm_row(
            "2025-01-01T01:00:00Z",
            "2025-01-01T02:00:00Z",
            "1",
            "10",
        ))
        .unwrap();
        acc.add(&vm_row(
            "2025-01-01T05:00:00Z",
            "2025-01-01T06:00:00Z",
            "1",
            "10",
        ))
        .unwrap();
        let m = acc.finish().model;
        assert_eq!(m.groups[0].ode, vec![0.0, 1.0]);
        assert_eq!(m.ignored.by_reason["outside the requested hours"], 1);
        assert_eq!(m.rows_read, 2);
    }

    #[test]
    fn negative_list_cost_and_mixed_currency_are_refused() {
        let mut acc = Accumulator::new(None);
        let err = acc
            .add(&vm_row(
                "2025-01-01T01:00:00Z",
                "2025-01-01T02:00:00Z",
                "-1",
                "1",
            ))
            .unwrap_err();
        assert!(matches!(
            err,
            RowError::Field(FieldError {
                col: Col::EffectiveCost,
                ..
            })
        ));
        let mut acc = Accumulator::new(None);
        acc.add(&vm_row(
            "2025-01-01T01:00:00Z",
            "2025-01-01T02:00:00Z",
            "1",
            "1",
        ))
        .unwrap();
        let mut eur = vm_row("2025-01-01T01:00:00Z", "2025-01-01T02:00:00Z", "1", "1");
        eur.set(Col::BillingCurrency, Val::from_text("EUR"));
        assert!(matches!(
            acc.add(&eur).unwrap_err(),
            RowError::MixedCurrency { .. }
        ));
    }

    #[test]
    fn merged_parts_equal_one_sequential_read() {
        let rows = [
            ("2025-01-01T02:00:00Z", "2025-01-01T03:00:00Z", "1"),
            ("2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z", "2"),
            ("2025-01-03T00:00:00Z", "2025-01-03T01:00:00Z", "4"),
        ];
        let mut whole = Accumulator::new(None);
        for (a, b, c) in rows {
            whole.add(&vm_row(a, b, c, "1")).unwrap();
        }
        let mut first = Accumulator::new(None);
        first
            .add(&vm_row(rows[2].0, rows[2].1, rows[2].2, "1"))
            .unwrap();
        let mut second = first.fork();
        second
            .add(&vm_row(rows[0].0, rows[0].1, rows[0].2, "1"))
            .unwrap();
        second
            .add(&vm_row(rows[1].0, rows[1].1, rows[1].2, "1"))
            .unwrap();
        first.merge(second).unwrap();
        assert_eq!(first.finish(), whole.finish());
    }

    /// Covered usage the optimizer does not model (Fargate) still counts toward the on-demand
    /// equivalent a commitment covered; a covered row with no list price is counted, not priced.
    #[test]
    fn covered_ode_includes_unmodeled_usage_and_counts_rows_without_price() {
        let sp = "arn:aws:savingsplans::1:savingsplan/sp-1";
        let covered = |r: &mut Row<'_>| {
            r.set(Col::CommitmentDiscountId, Val::from_text(sp));
            r.set(Col::CommitmentDiscountStatus, Val::from_text("Used"));
        };
        let mut vm = vm_row("2025-01-01T00:00:00Z", "2025-01-01T02:00:00Z", "3", "2");
        vm.set(Col::EffectiveCost, Val::from_text("2"));
        covered(&mut vm);
        let mut fargate = vm_row("2025-01-01T01:00:00Z", "2025-01-01T02:00:00Z", "0.5", "1");
        fargate.set(Col::ServiceName, Val::from_text("AWS Fargate"));
        fargate.set(
            Col::UsageType,
            Val::from_text("USE1-Fargate-vCPU-Hours:perCPU"),
        );
        fargate.set(Col::ServiceCategory, Val::from_text("Containers"));
        fargate.set(Col::EffectiveCost, Val::from_text("0.25"));
        covered(&mut fargate);
        let mut unpriced = fargate.clone();
        unpriced.set(Col::ListCost, Val::from_text("NULL"));
        let mut acc = Accumulator::new(None);
        for r in [&vm, &fargate, &unpriced] {
            acc.add(r).unwrap();
        }
        let bill = acc.finish();
        assert!(bill.model.ignored.total() >= 2, "Fargate is not demand");
        let c = &bill.commitments[0];
        assert_eq!(c.total_covered_ode, Money::parse("3.5").unwrap());
        assert_eq!(c.total_used, Money::parse("2.5").unwrap());
        assert_eq!(c.covered_rows_without_list_cost, 1);
        assert_eq!(c.billed_hours, 2);
        let first = bill
            .model
            .range
            .index(Hour::parse("2025-01-01T00:00:00Z").unwrap());
        let i = first.unwrap();
        assert_eq!(c.covered_ode[i..i + 2], [1.5, 2.0]);
    }

    #[test]
    fn earlier_rows_shift_the_open_range() {
        let mut acc = Accumulator::new(None);
        acc.add(&vm_row(
            "2025-03-01T00:00:00Z",
            "2025-03-01T01:00:00Z",
            "3",
            "1",
        ))
        .unwrap();
        acc.add(&vm_row(
            "2025-01-01T00:00:00Z",
            "2025-01-01T01:00:00Z",
            "1",
            "1",
        ))
        .unwrap();
        let m = acc.finish().model;
        assert_eq!(m.range.start, Hour::parse("2025-01-01T00:00:00Z").unwrap());
        let g = &m.groups[0];
        assert_eq!(g.ode[0], 1.0);
        assert_eq!(*g.ode.last().unwrap(), 3.0);
        assert_eq!(g.ode.iter().sum::<f64>(), 4.0);
    }
}
