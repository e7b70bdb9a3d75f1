//! Pools: every commitment (existing or candidate) as a capacity that covers some usage groups.
//!
//! A pool says which groups a commitment may cover and how much of its capacity one
//! instance-hour of each consumes: savings plans consume their plan rate for that product
//! (capacity in USD/hour of commitment), RIs and reservations consume the instance's
//! size-flexibility units (capacity in units). Scopes follow the providers: Compute SP and Azure
//! savings plan anywhere of the provider; EC2 Instance SP one family in one region, any size, OS
//! and tenancy; AWS RIs one family in one region with the same OS and tenancy (regional RIs are
//! size-flexible for Linux/shared tenancy; other platforms keep their family key too, which is a
//! simplification noted in docs/optimizer.md); Azure reservations one size-flexibility group in
//! one region, any OS (the reservation discounts the compute part).

use super::input::{Constraints, DemandInput};
use super::OptimizeError;
use crate::billing::sp_rate;
use crate::domain::{
    ActionScope, Commitment, CommitmentAmount, CommitmentKind, Instrument, Offer, PaymentOption,
    Product, Provider, RateCard, Term,
};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// What the optimizer knows about one usage group.
#[derive(Clone, Debug)]
pub(crate) struct GroupInfo {
    pub product: Product,
    /// On-demand USD per instance-hour.
    pub on_demand: f64,
    /// Size-flexibility units of one instance-hour, and the flex group they count in.
    pub units: f64,
    pub flex_group: String,
    /// AWS family key for EC2 Instance savings plans (lower case, "m5").
    pub family: String,
}

/// A candidate purchase: the LP decides its capacity.
#[derive(Clone, Debug)]
pub(crate) struct NewColumn {
    pub provider: Provider,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    pub scope: ActionScope,
    /// Amortized USD per capacity unit per hour.
    pub unit_cost: f64,
    /// Upfront USD per capacity unit.
    pub unit_upfront: f64,
    /// Capacity units of one purchasable item: 1 for savings plans ($1/hour), the purchase
    /// type's units for RIs and reservations.
    pub units_per_item: f64,
    /// The offer bought (savings plans: any member's offer, only term/payment matter).
    pub rate: Decimal,
    pub upfront_share: Decimal,
}

#[derive(Clone, Debug)]
pub(crate) enum Origin {
    New(NewColumn),
    Existing {
        id: String,
    },
    /// Where an exchangeable existing commitment's value may go: the LP decides its capacity,
    /// funded by the exchange of `sources[source]` (see [`Source`]).
    ExchangeTarget {
        source: usize,
        col: NewColumn,
        /// Hours over which the target's value counts against the source's remaining value:
        /// AWS keeps the source's end date (its remaining hours), an Azure exchange starts a new
        /// term (the term's hours).
        value_hours: f64,
    },
}

/// An existing exchangeable commitment (AWS convertible RI, Azure reservation) whose remaining
/// value the LP may move into [`Origin::ExchangeTarget`] pools, or (Azure) return for a refund.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// Its existing pool (capacity reduced by the shares exchanged and returned).
    pub pool: usize,
    pub id: String,
    pub provider: Provider,
    pub instrument: Instrument,
    pub term: Term,
    pub payment: PaymentOption,
    pub scope: ActionScope,
    /// Instances it holds: shares are rounded to whole instances.
    pub count: u32,
    /// Capacity in size-flexibility units (count x units of its type).
    pub units: f64,
    /// Amortized USD per hour of the whole commitment.
    pub hourly_cost: f64,
    /// Share of its cost paid upfront (for the true-up's upfront part).
    pub upfront_fraction: f64,
    /// Hours it is active inside the window, and hours left from the window start to its end.
    pub window_hours: f64,
    pub remaining_hours: f64,
    /// Azure reservations may be returned (refund of the remaining value, within the cap).
    pub returnable: bool,
    /// Pool indices of its exchange targets.
    pub targets: Vec<usize>,
}

impl Source {
    /// Remaining value of the whole commitment (USD): hourly cost x hours left.
    pub fn remaining_value(&self) -> f64 {
        self.hourly_cost * self.remaining_hours
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub group: usize,
    /// Capacity consumed by one instance-hour of the group.
    pub a: f64,
    /// What one covered instance-hour costs through this commitment (for breakeven): the plan
    /// rate for savings plans, unit cost x units for RIs.
    pub cost_equiv: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Pool {
    pub origin: Origin,
    pub kind: CommitmentKind,
    pub instrument: Instrument,
    /// Sorted by group index.
    pub members: Vec<Member>,
    /// Hour indices of the window `[from, to)` in which it has capacity.
    pub active: (usize, usize),
    /// Existing commitments: their capacity; new: decided by the LP.
    pub fixed_capacity: Option<f64>,
    /// Existing commitments: amortized cost per hour (0 for candidates: see `NewColumn`).
    pub hourly_cost: f64,
}

impl Pool {
    /// A candidate purchase (not an exchange target).
    pub fn new_column(&self) -> Option<&NewColumn> {
        match &self.origin {
            Origin::New(c) => Some(c),
            _ => None,
        }
    }

    /// The column of a pool whose capacity the LP decides: a purchase or an exchange target.
    pub fn column(&self) -> Option<&NewColumn> {
        match &self.origin {
            Origin::New(c) | Origin::ExchangeTarget { col: c, .. } => Some(c),
            Origin::Existing { .. } => None,
        }
    }

    /// For an exchange target: its source's index and value hours.
    pub fn exchange(&self) -> Option<(usize, f64)> {
        match &self.origin {
            Origin::ExchangeTarget {
                source,
                value_hours,
                ..
            } => Some((*source, *value_hours)),
            _ => None,
        }
    }

    pub fn is_active(&self, hour: usize) -> bool {
        hour >= self.active.0 && hour < self.active.1
    }
}

/// Everything the LP is built from.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub groups: Vec<GroupInfo>,
    pub pools: Vec<Pool>,
    /// Amortized cost of existing commitments inside the window: paid whatever the plan.
    pub existing_cost: f64,
    /// Exchangeable existing commitments (empty unless the policy allows exchanges).
    pub sources: Vec<Source>,
    /// Hour indices where the set of active pools may change (sorted, includes 0 and hours).
    pub boundaries: Vec<usize>,
    pub notes: Vec<String>,
}

fn offer_rate(o: &Offer) -> f64 {
    o.rate()
}

/// Builds group information; every group needs an on-demand price in the rate card.
pub(crate) fn group_infos(
    demand: &DemandInput,
    rates: &RateCard,
) -> Result<Vec<GroupInfo>, OptimizeError> {
    demand
        .groups
        .iter()
        .map(|g| {
            let product = g.group.product();
            let on_demand = rates
                .on_demand(&product)
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| OptimizeError::MissingRate {
                    group: g.group.to_string(),
                    what: "an OnDemand rate".into(),
                })?;
            let sizing = g.group.sizing();
            Ok(GroupInfo {
                family: match g.group.provider {
                    Provider::Aws => sizing.flex_group.clone(),
                    Provider::Azure => g.group.family.clone(),
                },
                product,
                on_demand,
                units: sizing.units,
                flex_group: sizing.flex_group,
            })
        })
        .collect()
}

/// The key of the groups a commitment of `instrument` bought for `g` may cover.
fn scope_key(instrument: Instrument, g: &GroupInfo) -> (String, String, String, String) {
    let p = &g.product;
    match instrument {
        Instrument::ComputeSavingsPlan | Instrument::AzureSavingsPlan => {
            (String::new(), String::new(), String::new(), String::new())
        }
        Instrument::Ec2InstanceSavingsPlan => (
            p.region.clone(),
            g.family.clone(),
            String::new(),
            String::new(),
        ),
        Instrument::StandardReservedInstance | Instrument::ConvertibleReservedInstance => (
            p.region.clone(),
            g.flex_group.clone(),
            p.os.clone(),
            p.tenancy.clone(),
        ),
        Instrument::AzureReservation => (
            p.region.clone(),
            g.flex_group.clone(),
            String::new(),
            String::new(),
        ),
        Instrument::OnDemand => (String::new(), String::new(), String::new(), "-".into()),
    }
}

/// Candidate purchases allowed by the policy and priced by the rate card, dominated ones
/// removed (see [`prune_dominated`]).
pub(crate) fn candidates(
    groups: &[GroupInfo],
    rates: &RateCard,
    constraints: &Constraints,
    terms: &[Term],
    hours: usize,
    notes: &mut Vec<String>,
) -> Vec<Pool> {
    let mut pools = Vec::new();
    for instrument in Instrument::ALL
        .iter()
        .copied()
        .filter(|i| i.is_commitment())
    {
        let Some(provider) = instrument.provider() else {
            continue;
        };
        for &term in terms {
            for &payment in PaymentOption::ALL {
                if !constraints.allows(provider, instrument, term, payment) {
                    continue;
                }
                // Groups by scope key.
                let mut by_key: BTreeMap<_, Vec<usize>> = BTreeMap::new();
                for (i, g) in groups.iter().enumerate() {
                    if g.product.provider == provider {
                        by_key.entry(scope_key(instrument, g)).or_default().push(i);
                    }
                }
                let offer = Candidate {
                    groups,
                    rates,
                    provider,
                    instrument,
                    term,
                    payment,
                    active: (0, hours.min(term.hours() as usize)),
                };
                for (key, members) in by_key {
                    let pool = if instrument.kind() == Some(CommitmentKind::Spend) {
                        offer.spend_pool(&key, &members)
                    } else {
                        offer.usage_pool(&members)
                    };
                    pools.extend(pool);
                }
            }
        }
    }
    // Offers that cost at least on demand for every group they cover can never save money.
    let before = pools.len();
    pools.retain(|p| {
        p.members
            .iter()
            .any(|m| m.cost_equiv < groups[m.group].on_demand * (1.0 - 1e-9))
    });
    if pools.len() < before {
        notes.push(format!(
            "{} offers dropped: not cheaper than on demand for any group they cover",
            before - pools.len()
        ));
    }
    prune_dominated(pools, groups, constraints.max_upfront.is_some(), notes)
}

/// One allowed (instrument, term, payment option), to be offered to a scope's groups.
struct Candidate<'a> {
    groups: &'a [GroupInfo],
    rates: &'a RateCard,
    provider: Provider,
    instrument: Instrument,
    term: Term,
    payment: PaymentOption,
    active: (usize, usize),
}

impl<'a> Candidate<'a> {
    /// The rate card's offer for group `i`, if it has a usable rate.
    fn offer_of(&self, i: usize) -> Option<&'a Offer> {
        self.rates
            .offer(
                &self.groups[i].product,
                self.instrument,
                Some(self.term),
                self.payment,
            )
            .filter(|o| o.rate().is_finite() && o.rate() > 0.0)
    }

    /// A savings plan over the priced groups of one scope key (capacity in USD/hour).
    fn spend_pool(
        &self,
        key: &(String, String, String, String),
        members: &[usize],
    ) -> Option<Pool> {
        let (provider, instrument, term) = (self.provider, self.instrument, self.term);
        let priced: Vec<(usize, &Offer)> = members
            .iter()
            .filter_map(|&i| self.offer_of(i).map(|o| (i, o)))
            .collect();
        let (_, first) = priced.first()?;
        let scope = if instrument == Instrument::Ec2InstanceSavingsPlan {
            ActionScope::FamilyRegion {
                region: key.0.clone(),
                family: key.1.clone(),
            }
        } else {
            ActionScope::Provider
        };
        let share = first.upfront_fraction();
        Some(Pool {
            origin: Origin::New(NewColumn {
                provider,
                instrument,
                term,
                payment: self.payment,
                scope,
                unit_cost: 1.0,
                unit_upfront: share * term.hours() as f64,
                units_per_item: 1.0,
                rate: Decimal::ONE,
                upfront_share: first.upfront_share,
            }),
            kind: CommitmentKind::Spend,
            instrument,
            members: priced
                .iter()
                .map(|(i, o)| Member {
                    group: *i,
                    a: offer_rate(o),
                    cost_equiv: offer_rate(o),
                })
                .collect(),
            active: self.active,
            fixed_capacity: None,
            hourly_cost: 0.0,
        })
    }

    /// A reservation of one scope key's groups (capacity in size-flexibility units). The
    /// instance type bought: the cheapest per unit, then the smallest (finer steps when the LP
    /// relaxation is rounded down to instances).
    fn usage_pool(&self, members: &[usize]) -> Option<Pool> {
        let groups = self.groups;
        let (instrument, term) = (self.instrument, self.term);
        let (bi, offer) = members
            .iter()
            .filter_map(|&i| self.offer_of(i).map(|o| (i, o)))
            .min_by(|(i, a), (j, b)| {
                let ua = a.rate() / groups[*i].units;
                let ub = b.rate() / groups[*j].units;
                ua.total_cmp(&ub)
                    .then(groups[*i].units.total_cmp(&groups[*j].units))
            })?;
        let buy = &groups[bi];
        let unit_cost = offer.rate() / buy.units;
        Some(Pool {
            origin: Origin::New(NewColumn {
                provider: self.provider,
                instrument,
                term,
                payment: self.payment,
                scope: ActionScope::Instances {
                    region: buy.product.region.clone(),
                    instance_type: buy.product.instance_type.clone(),
                    flex_group: buy.flex_group.clone(),
                    os: buy.product.os.clone(),
                    tenancy: buy.product.tenancy.clone(),
                },
                unit_cost,
                unit_upfront: unit_cost * offer.upfront_fraction() * term.hours() as f64,
                units_per_item: buy.units,
                rate: offer.effective_hourly_rate,
                upfront_share: offer.upfront_share,
            }),
            kind: CommitmentKind::Usage,
            instrument,
            members: members
                .iter()
                .map(|&i| Member {
                    group: i,
                    a: groups[i].units,
                    cost_equiv: unit_cost * groups[i].units,
                })
                .collect(),
            active: self.active,
            fixed_capacity: None,
            hourly_cost: 0.0,
        })
    }
}

/// Removes candidates another candidate beats on every count.
///
/// B dominates A when B covers every group A covers, at a cost per covered instance-hour no
/// higher for each of them, with a term no longer, and (when an upfront cap exists) an upfront
/// share no higher. Then every allocation A's capacity allows is also allowed by the same spend
/// on B (the feasible coverage per dollar is a superset), so A is never needed. The LP gives no
/// value to a convertible RI's exchangeability (it plans one window), so a cheaper standard RI
/// dominates a convertible one; this is why convertible RIs are bought only when standard RIs
/// are not allowed.
pub(crate) fn prune_dominated(
    pools: Vec<Pool>,
    groups: &[GroupInfo],
    upfront_matters: bool,
    notes: &mut Vec<String>,
) -> Vec<Pool> {
    let n = pools.len();
    // Which candidates cover each group: dominators of A must cover A's first member.
    let mut by_group: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
    for (pi, p) in pools.iter().enumerate() {
        for m in &p.members {
            by_group[m.group].push(pi);
        }
    }
    let col = |p: &Pool| p.new_column().cloned();
    let mut dominated = vec![false; n];
    for a in 0..n {
        let Some(ca) = col(&pools[a]) else { continue };
        let Some(first) = pools[a].members.first() else {
            dominated[a] = true;
            continue;
        };
        for &b in &by_group[first.group] {
            if b == a || dominated[b] {
                continue;
            }
            let Some(cb) = col(&pools[b]) else { continue };
            if cb.term > ca.term {
                continue;
            }
            if upfront_matters && cb.upfront_share > ca.upfront_share {
                continue;
            }
            let mut all_le = true;
            let mut all_eq = true;
            for m in &pools[a].members {
                match pools[b].members.binary_search_by_key(&m.group, |x| x.group) {
                    Ok(k) => {
                        let cb_cost = pools[b].members[k].cost_equiv;
                        if cb_cost > m.cost_equiv * (1.0 + 1e-12) {
                            all_le = false;
                            break;
                        }
                        if (cb_cost - m.cost_equiv).abs() > 1e-12 * m.cost_equiv.max(1.0) {
                            all_eq = false;
                        }
                    }
                    Err(_) => {
                        all_le = false;
                        break;
                    }
                }
            }
            let same = all_eq
                && pools[a].members.len() == pools[b].members.len()
                && cb.term == ca.term
                && (!upfront_matters || cb.upfront_share == ca.upfront_share);
            // Exact ties: keep the earlier one only.
            if all_le && (!same || b < a) {
                dominated[a] = true;
                break;
            }
        }
    }
    let count = dominated.iter().filter(|d| **d).count();
    if count > 0 {
        notes.push(format!(
            "{count} dominated offers pruned (another offer covers the same groups cheaper, with no longer term{})",
            if upfront_matters { " and no more upfront" } else { "" }
        ));
    }
    pools
        .into_iter()
        .zip(dominated)
        .filter(|(_, d)| !d)
        .map(|(p, _)| p)
        .collect()
}

/// Pools for existing commitments active in the window. Savings plans consume the rate the bill
/// applies ([`sp_rate`]: their own instrument, term and payment option, else the nearest the
/// rate card has); a group without any rate for the instrument is not covered by it (noted).
pub(crate) fn existing_pools(
    groups: &[GroupInfo],
    rates: &RateCard,
    existing: &[Commitment],
    demand: &DemandInput,
    notes: &mut Vec<String>,
) -> (Vec<Pool>, f64) {
    let window = demand.window();
    let mut pools = Vec::new();
    let mut sunk = 0.0;
    for c in existing {
        let from = c.start.max(window.start);
        let to = c.end.min(window.end);
        if to <= from {
            continue;
        }
        let active = (
            from.since(window.start) as usize,
            to.since(window.start) as usize,
        );
        sunk += c.hourly_cost.to_f64() * (active.1 - active.0) as f64;
        let (kind, capacity) = match c.amount {
            CommitmentAmount::HourlySpend(m) => (CommitmentKind::Spend, m.to_f64()),
            CommitmentAmount::Instances(_) => (CommitmentKind::Usage, c.units()),
        };
        let flex = c.flex_group();
        let family = c.family.as_ref().map(|f| f.to_ascii_lowercase());
        let mut members = Vec::new();
        let mut unpriced = 0;
        for (i, g) in groups.iter().enumerate() {
            if g.product.provider != c.provider {
                continue;
            }
            let same_region = c
                .region
                .as_ref()
                .is_none_or(|r| r.eq_ignore_ascii_case(&g.product.region));
            let eligible = match c.instrument {
                Instrument::ComputeSavingsPlan | Instrument::AzureSavingsPlan => true,
                Instrument::Ec2InstanceSavingsPlan => {
                    same_region && family.as_deref().is_none_or(|f| f == g.family)
                }
                Instrument::StandardReservedInstance
                | Instrument::ConvertibleReservedInstance
                | Instrument::AzureReservation => {
                    same_region && flex.as_deref() == Some(g.flex_group.as_str())
                }
                Instrument::OnDemand => false,
            };
            if !eligible {
                continue;
            }
            match kind {
                CommitmentKind::Spend => {
                    // The rate the bill applies (`billing::sp_rate`): a held plan whose term or
                    // payment option the rate card lacks still covers usage, and an optimizer
                    // that thought it covered nothing would buy that usage a second time.
                    match sp_rate(rates, &g.product, c.instrument, c.term, c.payment) {
                        Some(rate) if rate > 0.0 => members.push(Member {
                            group: i,
                            a: rate,
                            cost_equiv: rate,
                        }),
                        _ => unpriced += 1,
                    }
                }
                CommitmentKind::Usage => {
                    let per_unit = if capacity > 0.0 {
                        c.hourly_cost.to_f64() / capacity
                    } else {
                        0.0
                    };
                    members.push(Member {
                        group: i,
                        a: g.units,
                        cost_equiv: per_unit * g.units,
                    })
                }
            }
        }
        if unpriced > 0 {
            notes.push(format!(
                "existing {}: {unpriced} groups have no {} rate in the rate card and are not counted as covered by it",
                c.id, c.instrument
            ));
        }
        pools.push(Pool {
            origin: Origin::Existing { id: c.id.clone() },
            kind,
            instrument: c.instrument,
            members,
            active,
            fixed_capacity: Some(capacity),
            hourly_cost: c.hourly_cost.to_f64(),
        });
    }
    (pools, sunk)
}

/// Builds the model for one pass (the allowed `terms`).
pub(crate) fn build(
    demand: &DemandInput,
    rates: &RateCard,
    existing: &[Commitment],
    constraints: &Constraints,
    terms: &[Term],
) -> Result<Model, OptimizeError> {
    let groups = group_infos(demand, rates)?;
    let mut notes = Vec::new();
    let (mut pools, existing_cost) = existing_pools(&groups, rates, existing, demand, &mut notes);
    pools.extend(candidates(
        &groups,
        rates,
        constraints,
        terms,
        demand.hours,
        &mut notes,
    ));
    let sources = if constraints.allow_exchanges {
        exchange_sources(
            &groups,
            rates,
            existing,
            constraints,
            terms,
            demand,
            &mut pools,
            &mut notes,
        )
    } else {
        Vec::new()
    };
    let mut sources = sources;
    sources.extend(return_sources(
        existing,
        constraints,
        demand,
        &pools,
        &mut notes,
    ));
    let mut boundaries = vec![0, demand.hours];
    for p in &pools {
        boundaries.push(p.active.0);
        boundaries.push(p.active.1);
    }
    boundaries.retain(|b| *b <= demand.hours);
    boundaries.sort_unstable();
    boundaries.dedup();
    Ok(Model {
        groups,
        pools,
        existing_cost,
        sources,
        boundaries,
        notes,
    })
}

/// AWS savings plans the caller marked returnable ([`Constraints::returnable`]): each is a
/// source without exchange targets whose return share is rounded down to the whole plan or
/// nothing (count 1), removing its cost for the rest of the window. Only plans active at the
/// decision time qualify (a queued plan is deleted, not returned, and commitd does not plan
/// that).
fn return_sources(
    existing: &[Commitment],
    constraints: &Constraints,
    demand: &DemandInput,
    pools: &[Pool],
    notes: &mut Vec<String>,
) -> Vec<Source> {
    if constraints.returnable.is_empty() {
        return Vec::new();
    }
    let window = demand.window();
    let mut out = Vec::new();
    for (pi, p) in pools.iter().enumerate() {
        let Origin::Existing { id } = &p.origin else {
            continue;
        };
        if !constraints.returnable.contains(id) {
            continue;
        }
        let Some(c) = existing.iter().find(|c| &c.id == id) else {
            continue;
        };
        let is_sp = matches!(
            c.instrument,
            Instrument::ComputeSavingsPlan | Instrument::Ec2InstanceSavingsPlan
        );
        let Some(units) = p.fixed_capacity.filter(|u| *u > 0.0) else {
            continue;
        };
        if c.provider != Provider::Aws || !is_sp || c.start > window.start || c.end <= window.start
        {
            notes.push(format!(
                "existing {id}: marked returnable but not an active AWS savings plan; not considered for return"
            ));
            continue;
        }
        let total = c.total_cost().to_f64();
        out.push(Source {
            pool: pi,
            id: c.id.clone(),
            provider: c.provider,
            instrument: c.instrument,
            term: c.term,
            payment: c.payment,
            scope: match (&c.region, &c.family) {
                (Some(region), Some(family))
                    if c.instrument == Instrument::Ec2InstanceSavingsPlan =>
                {
                    ActionScope::FamilyRegion {
                        region: region.clone(),
                        family: family.clone(),
                    }
                }
                _ => ActionScope::Provider,
            },
            count: 1,
            units,
            hourly_cost: c.hourly_cost.to_f64(),
            upfront_fraction: if total > 0.0 {
                (c.upfront.to_f64() / total).clamp(0.0, 1.0)
            } else {
                0.0
            },
            window_hours: (p.active.1 - p.active.0) as f64,
            remaining_hours: c.end.since(window.start) as f64,
            returnable: true,
            targets: Vec::new(),
        });
    }
    if !out.is_empty() {
        notes.push(format!(
            "{} AWS savings plans inside their return window considered for return",
            out.len()
        ));
    }
    out
}

/// The AWS rule (GetReservedInstancesExchangeQuote): a convertible RI with less than 24 hours
/// left cannot be exchanged.
const MIN_EXCHANGE_HOURS: i64 = 24;

/// The instance type a usage-based pool over `members` buys: the cheapest per unit, then the
/// smallest (finer steps when the LP relaxation is rounded to instances).
fn best_type<'r>(
    groups: &[GroupInfo],
    members: &[usize],
    offer_of: impl Fn(usize) -> Option<&'r Offer>,
) -> Option<(usize, &'r Offer)> {
    members
        .iter()
        .filter_map(|&i| offer_of(i).map(|o| (i, o)))
        .filter(|(_, o)| o.rate().is_finite() && o.rate() > 0.0)
        .min_by(|(i, a), (j, b)| {
            let ua = a.rate() / groups[*i].units;
            let ub = b.rate() / groups[*j].units;
            ua.total_cmp(&ub)
                .then(groups[*i].units.total_cmp(&groups[*j].units))
        })
}

/// Exchangeable existing commitments and, for each, the pools its value may move into.
///
/// * AWS convertible RI: another convertible RI configuration (flex family, OS, tenancy) in the
///   same region, priced at the rate card's convertible rate for the source's term and payment
///   option, keeping the source's end date (AWS exchanges keep the term's end). Its value over
///   the remaining hours must be at least the source's remaining value.
/// * Azure reservation: a new reservation of any size-flexibility group in any region (Azure's
///   compute exchanges may change series and region), bought with a new term (the source's term
///   if the policy allows it, else the shortest allowed) and payment option (the source's if
///   allowed), whose lifetime commitment must be at least the refunded remaining value; or a
///   return (refund, within the rolling cap).
#[allow(clippy::too_many_arguments)]
fn exchange_sources(
    groups: &[GroupInfo],
    rates: &RateCard,
    existing: &[Commitment],
    constraints: &Constraints,
    terms: &[Term],
    demand: &DemandInput,
    pools: &mut Vec<Pool>,
    notes: &mut Vec<String>,
) -> Vec<Source> {
    let window = demand.window();
    let by_id: BTreeMap<&str, &Commitment> = existing.iter().map(|c| (c.id.as_str(), c)).collect();
    let existing_pools: Vec<(usize, String)> = pools
        .iter()
        .enumerate()
        .filter_map(|(pi, p)| match &p.origin {
            Origin::Existing { id } => Some((pi, id.clone())),
            _ => None,
        })
        .collect();
    let mut sources = Vec::new();
    for (pi, id) in existing_pools {
        let Some(c) = by_id.get(id.as_str()).copied() else {
            continue;
        };
        if !c.instrument.is_exchangeable() {
            continue;
        }
        let CommitmentAmount::Instances(count) = c.amount else {
            continue;
        };
        let Some(units) = pools[pi].fixed_capacity.filter(|u| *u > 0.0) else {
            continue;
        };
        let hourly_cost = c.hourly_cost.to_f64();
        // Only a commitment active at the decision time can be exchanged then (a queued one
        // is not ours to exchange yet).
        if count == 0 || hourly_cost <= 0.0 || c.start > window.start {
            continue;
        }
        let remaining = c.end.since(window.start);
        if c.provider == Provider::Aws && remaining < MIN_EXCHANGE_HOURS {
            notes.push(format!(
                "existing {id}: {remaining} h left, under AWS's {MIN_EXCHANGE_HOURS} h minimum for an exchange"
            ));
            continue;
        }
        let source_flex = c.flex_group();
        let source_region = c.region.clone().unwrap_or_default();
        let active = pools[pi].active;
        let total = c.total_cost().to_f64();
        let target = ExchangeTarget {
            groups,
            rates,
            source: c,
            source_index: sources.len(),
            term: target_term(c, terms, constraints),
            active,
            remaining,
            hours: demand.hours,
        };
        let mut targets = Vec::new();
        for (_, members) in target_groups(groups, c, &source_region, source_flex.as_deref()) {
            if let Some(pool) = target.pool(&members) {
                targets.push(pools.len());
                pools.push(pool);
            }
        }
        let returnable = c.provider == Provider::Azure;
        if targets.is_empty() && !returnable {
            continue;
        }
        sources.push(Source {
            pool: pi,
            id: c.id.clone(),
            provider: c.provider,
            instrument: c.instrument,
            term: c.term,
            payment: c.payment,
            scope: ActionScope::Instances {
                region: source_region,
                instance_type: c.instance_type.clone().unwrap_or_default(),
                flex_group: source_flex.unwrap_or_default(),
                os: String::new(),
                tenancy: String::new(),
            },
            count,
            units,
            hourly_cost,
            upfront_fraction: if total > 0.0 {
                (c.upfront.to_f64() / total).clamp(0.0, 1.0)
            } else {
                0.0
            },
            window_hours: (active.1 - active.0) as f64,
            remaining_hours: remaining as f64,
            returnable,
            targets,
        });
    }
    if !sources.is_empty() {
        notes.push(format!(
            "{} exchangeable existing commitments considered for exchange{}",
            sources.len(),
            if sources.iter().any(|s| s.returnable) {
                " or return"
            } else {
                ""
            }
        ));
    }
    sources
}

/// Target configurations of an exchange: the provider's groups by scope key (AWS: in the
/// source's region), minus the source's own configuration.
fn target_groups(
    groups: &[GroupInfo],
    c: &Commitment,
    source_region: &str,
    source_flex: Option<&str>,
) -> BTreeMap<(String, String, String, String), Vec<usize>> {
    let mut by_key: BTreeMap<_, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        if g.product.provider != c.provider {
            continue;
        }
        if c.provider == Provider::Aws && !g.product.region.eq_ignore_ascii_case(source_region) {
            continue;
        }
        if g.product.region.eq_ignore_ascii_case(source_region)
            && source_flex == Some(g.flex_group.as_str())
        {
            continue;
        }
        by_key
            .entry(scope_key(c.instrument, g))
            .or_default()
            .push(i);
    }
    by_key
}

/// Term and payment options of an exchange's targets, the preferred payment option first: AWS
/// keeps the source's; Azure buys a new term (the source's if the policy allows it, else the
/// shortest allowed) with the payment options the policy allows, the source's first.
fn target_term(
    c: &Commitment,
    terms: &[Term],
    constraints: &Constraints,
) -> (Term, Vec<PaymentOption>) {
    if c.provider == Provider::Aws {
        return (c.term, vec![c.payment]);
    }
    let allows = |t: Term, p: PaymentOption| {
        constraints.allows(Provider::Azure, Instrument::AzureReservation, t, p)
    };
    let allowed: Vec<Term> = terms
        .iter()
        .copied()
        .filter(|t| PaymentOption::ALL.iter().any(|p| allows(*t, *p)))
        .collect();
    let term = if allowed.contains(&c.term) {
        Some(c.term)
    } else {
        allowed.iter().copied().min()
    };
    match term {
        Some(t) => {
            let mut pays: Vec<PaymentOption> = PaymentOption::ALL
                .iter()
                .copied()
                .filter(|p| allows(t, *p))
                .collect();
            // The source's payment option first.
            pays.sort_by_key(|p| *p != c.payment);
            (t, pays)
        }
        None => (c.term, Vec::new()),
    }
}

/// What an exchange of one source may buy.
struct ExchangeTarget<'a> {
    groups: &'a [GroupInfo],
    rates: &'a RateCard,
    source: &'a Commitment,
    /// Its index in the sources.
    source_index: usize,
    /// The targets' term and payment options, preferred first.
    term: (Term, Vec<PaymentOption>),
    /// The source's active hours in the window, and its hours left.
    active: (usize, usize),
    remaining: i64,
    /// Hours of the window.
    hours: usize,
}

impl ExchangeTarget<'_> {
    /// The target pool for one scope key's groups: the best type at the first payment option
    /// priced, if it saves against on demand for one of them.
    fn pool(&self, members: &[usize]) -> Option<Pool> {
        let (groups, c) = (self.groups, self.source);
        let (term, payments) = (&self.term.0, &self.term.1);
        let term = *term;
        let (payment, (bi, offer)) = payments.iter().find_map(|&pay| {
            best_type(groups, members, |i| {
                self.rates
                    .offer(&groups[i].product, c.instrument, Some(term), pay)
            })
            .map(|b| (pay, b))
        })?;
        let buy = &groups[bi];
        let unit_cost = offer.rate() / buy.units;
        let member_list: Vec<Member> = members
            .iter()
            .map(|&i| Member {
                group: i,
                a: groups[i].units,
                cost_equiv: unit_cost * groups[i].units,
            })
            .collect();
        if !member_list
            .iter()
            .any(|m| m.cost_equiv < groups[m.group].on_demand * (1.0 - 1e-9))
        {
            return None;
        }
        let (target_active, value_hours) = match c.provider {
            Provider::Aws => (self.active, self.remaining as f64),
            Provider::Azure => (
                (0, self.hours.min(term.hours() as usize)),
                term.hours() as f64,
            ),
        };
        let col = NewColumn {
            provider: c.provider,
            instrument: c.instrument,
            term,
            payment,
            scope: ActionScope::Instances {
                region: buy.product.region.clone(),
                instance_type: buy.product.instance_type.clone(),
                flex_group: buy.flex_group.clone(),
                os: buy.product.os.clone(),
                tenancy: buy.product.tenancy.clone(),
            },
            unit_cost,
            unit_upfront: unit_cost * offer.upfront_fraction() * value_hours,
            units_per_item: buy.units,
            rate: offer.effective_hourly_rate,
            upfront_share: offer.upfront_share,
        };
        Some(Pool {
            origin: Origin::ExchangeTarget {
                source: self.source_index,
                col,
                value_hours,
            },
            kind: CommitmentKind::Usage,
            instrument: c.instrument,
            members: member_list,
            active: target_active,
            fixed_capacity: None,
            hourly_cost: 0.0,
        })
    }
}
