//! Billing: the providers' discount application, hour by hour.
//!
//! This module owns one question: given the demand of every usage group in one hour and the
//! commitments active in that hour, what does the hour cost and which commitment covered what?
//! It applies commitments in the providers' documented order:
//!
//! * AWS: Reserved Instances first (size-flexible by normalized units within family and region,
//!   smallest instance size first), then EC2 Instance Savings Plans (family + region), then
//!   Compute Savings Plans (anything on AWS). Within a savings plan type, the usage with the
//!   highest discount percentage is covered first, and a plan's hourly commitment is consumed at
//!   the *savings plan rate* of the usage it covers.
//! * Azure: reservations (size-flexibility groups within a region), then savings plans, highest
//!   discount first.
//!
//! Unused commitment in an hour is lost. The cost of an hour is the amortized hourly cost of every
//! active commitment (used or not) plus the on-demand price of whatever is left uncovered.
//!
//! Speed matters: a backtest bills 8,760 hours x groups once per run, and planners bill their
//! look-back window at every decision. So [`BillingEngine::new`] compiles the commitments into
//! *pools* once (commitments that are interchangeable for billing: same instrument, term, payment
//! and scope), precomputes for every pool the eligible groups in application order with their
//! rates, and [`BillingEngine::bill_hour`] then only sums the active capacity per pool and walks
//! the precomputed lists: no allocation, no sorting, no lookups per hour.
//!
//! Floats are used here on purpose (the hour-by-hour simulation; see `domain::money`): callers
//! convert totals to exact [`Money`](crate::domain::Money) at the edge.
//!
//! Simplifications, stated so nobody relies on more: commitments are shared across all accounts
//! (no purchasing-account-first rule); RIs and reservations match on provider, region and
//! size-flexibility group whatever the OS (the commitment record carries no OS); a savings plan
//! covers only products for which the rate card has its rate (instrument, term and payment, with
//! a fallback to another payment option, then another term, of the same instrument).

use crate::domain::{
    Commitment, CommitmentAmount, Hour, Instrument, PaymentOption, Product, RateCard, Term,
    UsageGroup,
};
use std::collections::HashMap;

/// Why a billing engine cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BillingError {
    #[error("usage group {group}: no on-demand price (not in the rate card and no usage to infer it from)")]
    NoOnDemandPrice { group: String },
    #[error("usage group {group}: on-demand price {price} is not a positive finite number")]
    BadOnDemandPrice { group: String, price: f64 },
    #[error("commitment {id}: {reason}")]
    BadCommitment { id: String, reason: String },
}

/// What billing needs to know about one usage group.
#[derive(Clone, Debug, PartialEq)]
pub struct BillableGroup {
    pub group: UsageGroup,
    /// On-demand USD per instance-hour.
    pub on_demand_rate: f64,
}

impl BillableGroup {
    /// On-demand price from the rate card, else the unit price observed in the bill.
    pub fn from_rate_card(
        group: &UsageGroup,
        rates: &RateCard,
        observed_unit_price: Option<f64>,
    ) -> Result<Self, BillingError> {
        let price = rates
            .on_demand(&group.product())
            .or(observed_unit_price)
            .ok_or_else(|| BillingError::NoOnDemandPrice {
                group: group.to_string(),
            })?;
        if !(price.is_finite() && price > 0.0) {
            return Err(BillingError::BadOnDemandPrice {
                group: group.to_string(),
                price,
            });
        }
        Ok(BillableGroup {
            group: group.clone(),
            on_demand_rate: price,
        })
    }
}

/// What one hour cost and how commitments were used in it (USD).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HourBill {
    /// On-demand-equivalent cost of all eligible usage.
    pub ode: f64,
    /// The part of `ode` covered by a commitment.
    pub covered_ode: f64,
    /// On-demand price paid for uncovered usage.
    pub on_demand_cost: f64,
    /// Amortized hourly cost of every active commitment, used or not.
    pub commitment_cost: f64,
    /// The part of `commitment_cost` that covered usage (pro rata of the capacity used).
    pub used_commitment: f64,
}

impl HourBill {
    /// What the hour cost: commitments (used or not) plus on-demand for what they left.
    pub fn cost(&self) -> f64 {
        self.on_demand_cost + self.commitment_cost
    }

    pub fn unused_commitment(&self) -> f64 {
        (self.commitment_cost - self.used_commitment).max(0.0)
    }

    pub fn add(&mut self, other: &HourBill) {
        self.ode += other.ode;
        self.covered_ode += other.covered_ode;
        self.on_demand_cost += other.on_demand_cost;
        self.commitment_cost += other.commitment_cost;
        self.used_commitment += other.used_commitment;
    }
}

/// Commitments that are interchangeable for billing: same capacity unit, same eligible usage at
/// the same rates. Their capacity is summed each hour and usage is attributed pro rata.
#[derive(Clone, Debug)]
struct Pool {
    /// Application level: 0 RIs/reservations, 1 EC2 Instance SPs, 2 Compute/Azure SPs.
    level: u8,
}

/// One (pool, group) pair in application order, with the capacity one instance-hour consumes:
/// normalized units for RIs and reservations, SP-rate dollars for savings plans.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pool: usize,
    group: usize,
    per_instance_hour: f64,
}

#[derive(Clone, Debug)]
struct Slot {
    pool: usize,
    start: Hour,
    end: Hour,
    /// Units (RIs) or USD of hourly commitment (SPs) per hour.
    capacity: f64,
    hourly_cost: f64,
}

/// Reusable per-hour working memory, so that billing allocates nothing per hour.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// Instance-hours of each group left uncovered after the hour was billed.
    pub uncovered: Vec<f64>,
    capacity: Vec<f64>,
    cost: Vec<f64>,
    used: Vec<f64>,
}

/// The compiled billing rules for one set of groups and commitments.
#[derive(Clone, Debug)]
pub struct BillingEngine {
    groups: Vec<BillableGroup>,
    pools: Vec<Pool>,
    slots: Vec<Slot>,
    /// Pairs in the order the providers apply them.
    entries: Vec<Entry>,
}

impl BillingEngine {
    /// Compiles the rules. `groups` fixes the index order of the demand passed to `bill_hour`.
    pub fn new(
        groups: Vec<BillableGroup>,
        commitments: &[Commitment],
        rates: &RateCard,
    ) -> Result<Self, BillingError> {
        let mut pools: Vec<Pool> = Vec::new();
        let mut pool_entries: Vec<Vec<Entry>> = Vec::new();
        let mut pool_index: HashMap<PoolKey, usize> = HashMap::new();
        let mut slots = Vec::with_capacity(commitments.len());
        for c in commitments {
            let bad = |reason: String| BillingError::BadCommitment {
                id: c.id.clone(),
                reason,
            };
            let capacity = match c.amount {
                CommitmentAmount::HourlySpend(m) => m.to_f64(),
                CommitmentAmount::Instances(_) => c.units(),
            };
            if !(capacity.is_finite() && capacity >= 0.0) {
                return Err(bad(format!("capacity {capacity} is not a finite amount")));
            }
            if c.instrument == Instrument::OnDemand {
                return Err(bad("on-demand is not a commitment".into()));
            }
            let key = PoolKey::of(c).map_err(bad)?;
            let pool = match pool_index.get(&key) {
                Some(&p) => p,
                None => {
                    let p = pools.len();
                    let entries = key.entries(p, &groups, rates);
                    pools.push(Pool {
                        level: c.instrument.application_order(),
                    });
                    pool_entries.push(entries);
                    pool_index.insert(key, p);
                    p
                }
            };
            slots.push(Slot {
                pool,
                start: c.start,
                end: c.end,
                capacity,
                hourly_cost: c.hourly_cost.to_f64(),
            });
        }
        // Order of application: level first (RIs, then EC2 Instance SPs, then Compute/Azure
        // SPs). Within RIs, each pool's own order (smallest size first). Within a savings plan
        // level, the highest discount percentage first across all plans of that level.
        let mut entries = Vec::new();
        for level in 0..=2u8 {
            let mut level_entries: Vec<Entry> = pools
                .iter()
                .enumerate()
                .filter(|(_, p)| p.level == level)
                .flat_map(|(i, _)| pool_entries[i].iter().copied())
                .collect();
            if level > 0 {
                level_entries.sort_by(|a, b| {
                    let da = 1.0 - a.per_instance_hour / groups[a.group].on_demand_rate;
                    let db = 1.0 - b.per_instance_hour / groups[b.group].on_demand_rate;
                    db.total_cmp(&da)
                        .then(a.pool.cmp(&b.pool))
                        .then(a.group.cmp(&b.group))
                });
            }
            entries.extend(level_entries);
        }
        Ok(BillingEngine {
            groups,
            pools,
            slots,
            entries,
        })
    }

    pub fn groups(&self) -> &[BillableGroup] {
        &self.groups
    }

    pub fn scratch(&self) -> Scratch {
        Scratch {
            uncovered: vec![0.0; self.groups.len()],
            capacity: vec![0.0; self.pools.len()],
            cost: vec![0.0; self.pools.len()],
            used: vec![0.0; self.pools.len()],
        }
    }

    /// Bills one hour. `demand[i]` is the instance-hours of group `i` in that hour; commitments
    /// count if active at `hour`. After the call, `scratch.uncovered` holds what was left on
    /// demand per group.
    pub fn bill_hour(&self, hour: Hour, demand: &[f64], scratch: &mut Scratch) -> HourBill {
        self.bill_with(demand, scratch, |s| s.start <= hour && hour < s.end)
    }

    /// Bills one hour of demand as if every compiled commitment were active (used to ask "what
    /// would today's portfolio have covered over the last 30 days?").
    pub fn bill_all_active(&self, demand: &[f64], scratch: &mut Scratch) -> HourBill {
        self.bill_with(demand, scratch, |_| true)
    }

    /// Bills every hour of `series` (one slice per group in the engine's order, all of one
    /// length) as if every compiled commitment were active, handing each hour's index, bill and
    /// what it left uncovered per group to `f`: "what would today's portfolio have covered over
    /// these hours?", asked by the planners and the baselines.
    pub fn bill_all_active_series(
        &self,
        series: &[&[f64]],
        mut f: impl FnMut(usize, &HourBill, &[f64]),
    ) {
        let hours = series.first().map_or(0, |s| s.len());
        let mut scratch = self.scratch();
        let mut demand = vec![0.0; series.len()];
        for h in 0..hours {
            for (d, s) in demand.iter_mut().zip(series) {
                *d = s[h];
            }
            let bill = self.bill_all_active(&demand, &mut scratch);
            f(h, &bill, &scratch.uncovered);
        }
    }

    /// Bills every hour of `series` (hour `first + h`; one slice per group in the engine's
    /// order, all of one length), each commitment counting only in the hours it is active, and
    /// returns per commitment (in the order given to [`BillingEngine::new`]) the hours it was
    /// active and the sum over them of the share of it used. Commitments of one pool (the bill
    /// treats them as interchangeable) share its use pro rata.
    pub fn use_by_commitment(&self, first: Hour, series: &[&[f64]]) -> Vec<(usize, f64)> {
        let hours = series.first().map_or(0, |s| s.len());
        let mut scratch = self.scratch();
        let mut demand = vec![0.0; series.len()];
        let mut out = vec![(0usize, 0.0f64); self.slots.len()];
        for h in 0..hours {
            for (d, s) in demand.iter_mut().zip(series) {
                *d = s[h];
            }
            let hour = first.plus(h as i64);
            self.bill_hour(hour, &demand, &mut scratch);
            for (slot, o) in self.slots.iter().zip(out.iter_mut()) {
                if !(slot.start <= hour && hour < slot.end) {
                    continue;
                }
                let cap = scratch.capacity[slot.pool];
                o.0 += 1;
                if cap > 0.0 {
                    o.1 += (scratch.used[slot.pool] / cap).clamp(0.0, 1.0);
                }
            }
        }
        out
    }

    fn bill_with(
        &self,
        demand: &[f64],
        scratch: &mut Scratch,
        active: impl Fn(&Slot) -> bool,
    ) -> HourBill {
        if scratch.uncovered.len() != self.groups.len()
            || scratch.capacity.len() != self.pools.len()
        {
            *scratch = self.scratch();
        }
        scratch.capacity.iter_mut().for_each(|v| *v = 0.0);
        scratch.cost.iter_mut().for_each(|v| *v = 0.0);
        scratch.used.iter_mut().for_each(|v| *v = 0.0);
        let mut bill = HourBill::default();
        for s in self.slots.iter().filter(|s| active(s)) {
            scratch.capacity[s.pool] += s.capacity;
            scratch.cost[s.pool] += s.hourly_cost;
            bill.commitment_cost += s.hourly_cost;
        }
        for (i, g) in self.groups.iter().enumerate() {
            // Negative or NaN demand cannot be billed; ingest refuses it, billing ignores it.
            let q = if demand.get(i).is_some_and(|q| *q > 0.0) {
                demand[i]
            } else {
                0.0
            };
            scratch.uncovered[i] = q;
            bill.ode += q * g.on_demand_rate;
        }
        for e in &self.entries {
            let left = scratch.capacity[e.pool] - scratch.used[e.pool];
            let want = scratch.uncovered[e.group];
            if left <= 0.0 || want <= 0.0 {
                continue;
            }
            let covered = want.min(left / e.per_instance_hour);
            scratch.used[e.pool] += covered * e.per_instance_hour;
            scratch.uncovered[e.group] = want - covered;
            bill.covered_ode += covered * self.groups[e.group].on_demand_rate;
        }
        for p in 0..self.pools.len() {
            let cap = scratch.capacity[p];
            if cap > 0.0 {
                bill.used_commitment += scratch.cost[p] * (scratch.used[p] / cap).min(1.0);
            }
        }
        bill.on_demand_cost = scratch
            .uncovered
            .iter()
            .zip(&self.groups)
            .map(|(q, g)| q * g.on_demand_rate)
            .sum();
        bill
    }
}

/// The indexes (in `groups`' order, ascending) of the usage groups commitment `c` can apply
/// to, as the bill applies it; empty when it names no scope the bill understands.
pub fn covered_groups(c: &Commitment, groups: &[BillableGroup], rates: &RateCard) -> Vec<usize> {
    let Ok(key) = PoolKey::of(c) else {
        return Vec::new();
    };
    let mut v: Vec<usize> = key
        .entries(0, groups, rates)
        .into_iter()
        .map(|e| e.group)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// What makes commitments interchangeable for billing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PoolKey {
    /// RIs and reservations: normalized units within (provider, region, flex group).
    Units {
        provider: crate::domain::Provider,
        region: String,
        flex_group: String,
    },
    /// Savings plans: the rate depends on instrument, term and payment; the scope on the
    /// instrument (and region + family for EC2 Instance SPs).
    Spend {
        instrument: Instrument,
        term: Term,
        payment: PaymentOption,
        region: Option<String>,
        family: Option<String>,
    },
}

impl PoolKey {
    fn of(c: &Commitment) -> Result<PoolKey, String> {
        match c.amount {
            CommitmentAmount::Instances(_) => {
                let region = c
                    .region
                    .clone()
                    .ok_or("a reserved instance or reservation needs a region")?;
                let flex_group = c
                    .flex_group()
                    .ok_or("a reserved instance or reservation needs an instance type")?;
                Ok(PoolKey::Units {
                    provider: c.provider,
                    region,
                    flex_group,
                })
            }
            CommitmentAmount::HourlySpend(_) => {
                let scoped = c.instrument == Instrument::Ec2InstanceSavingsPlan;
                if scoped && (c.region.is_none() || c.family.is_none()) {
                    return Err("an EC2 Instance Savings Plan needs a region and a family".into());
                }
                Ok(PoolKey::Spend {
                    instrument: c.instrument,
                    term: c.term,
                    payment: c.payment,
                    region: if scoped { c.region.clone() } else { None },
                    family: if scoped {
                        c.family.as_ref().map(|f| f.to_ascii_lowercase())
                    } else {
                        None
                    },
                })
            }
        }
    }

    /// The eligible groups of a pool with the capacity one instance-hour consumes.
    fn entries(&self, pool: usize, groups: &[BillableGroup], rates: &RateCard) -> Vec<Entry> {
        match self {
            PoolKey::Units {
                provider,
                region,
                flex_group,
            } => {
                let mut v: Vec<Entry> = groups
                    .iter()
                    .enumerate()
                    .filter_map(|(i, g)| {
                        let s = g.group.sizing();
                        (g.group.provider == *provider
                            && g.group.region == *region
                            && s.flex_group == *flex_group)
                            .then_some(Entry {
                                pool,
                                group: i,
                                per_instance_hour: s.units,
                            })
                    })
                    .collect();
                // AWS applies a size-flexible RI to the smallest size in the family first.
                v.sort_by(|a, b| {
                    a.per_instance_hour
                        .total_cmp(&b.per_instance_hour)
                        .then(a.group.cmp(&b.group))
                });
                v
            }
            PoolKey::Spend {
                instrument,
                term,
                payment,
                region,
                family,
            } => groups
                .iter()
                .enumerate()
                .filter(|(_, g)| Some(g.group.provider) == instrument.provider())
                .filter(|(_, g)| {
                    region.as_ref().is_none_or(|r| *r == g.group.region)
                        && family
                            .as_ref()
                            .is_none_or(|f| g.group.family.eq_ignore_ascii_case(f))
                })
                .filter_map(|(i, g)| {
                    let rate = sp_rate(rates, &g.group.product(), *instrument, *term, *payment)?;
                    // A rate at or above on demand would never be applied by the provider.
                    (rate > 0.0 && rate < g.on_demand_rate).then_some(Entry {
                        pool,
                        group: i,
                        per_instance_hour: rate,
                    })
                })
                .collect(),
        }
    }
}

/// The savings plan rate of a product: exact offer, else the same instrument and term with another
/// payment option, else the same instrument with another term.
pub fn sp_rate(
    rates: &RateCard,
    product: &Product,
    instrument: Instrument,
    term: Term,
    payment: PaymentOption,
) -> Option<f64> {
    if let Some(o) = rates.offer(product, instrument, Some(term), payment) {
        return Some(o.rate());
    }
    let offers = rates.offers(product);
    offers
        .iter()
        .find(|o| o.instrument == instrument && o.term == Some(term))
        .or_else(|| offers.iter().find(|o| o.instrument == instrument))
        .map(|o| o.rate())
}
