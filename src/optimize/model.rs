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
    Existing { id: String },
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
    pub fn new_column(&self) -> Option<&NewColumn> {
        match &self.origin {
            Origin::New(c) => Some(c),
            Origin::Existing { .. } => None,
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
                for (key, members) in by_key {
                    let offer_of = |i: usize| {
                        rates
                            .offer(&groups[i].product, instrument, Some(term), payment)
                            .filter(|o| o.rate().is_finite() && o.rate() > 0.0)
                    };
                    let active = (0, hours.min(term.hours() as usize));
                    if instrument.kind() == Some(CommitmentKind::Spend) {
                        let priced: Vec<(usize, &Offer)> = members
                            .iter()
                            .filter_map(|&i| offer_of(i).map(|o| (i, o)))
                            .collect();
                        let Some((_, first)) = priced.first() else {
                            continue;
                        };
                        let scope = if instrument == Instrument::Ec2InstanceSavingsPlan {
                            ActionScope::FamilyRegion {
                                region: key.0.clone(),
                                family: key.1.clone(),
                            }
                        } else {
                            ActionScope::Provider
                        };
                        let share = first.upfront_fraction();
                        pools.push(Pool {
                            origin: Origin::New(NewColumn {
                                provider,
                                instrument,
                                term,
                                payment,
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
                            active,
                            fixed_capacity: None,
                            hourly_cost: 0.0,
                        });
                    } else {
                        // The instance type bought: the cheapest per unit, then the smallest
                        // (finer steps when the LP relaxation is rounded down to instances).
                        let best = members
                            .iter()
                            .filter_map(|&i| offer_of(i).map(|o| (i, o)))
                            .min_by(|(i, a), (j, b)| {
                                let ua = a.rate() / groups[*i].units;
                                let ub = b.rate() / groups[*j].units;
                                ua.total_cmp(&ub)
                                    .then(groups[*i].units.total_cmp(&groups[*j].units))
                            });
                        let Some((bi, offer)) = best else {
                            continue;
                        };
                        let buy = &groups[bi];
                        let unit_cost = offer.rate() / buy.units;
                        pools.push(Pool {
                            origin: Origin::New(NewColumn {
                                provider,
                                instrument,
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
                                unit_upfront: unit_cost
                                    * offer.upfront_fraction()
                                    * term.hours() as f64,
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
                            active,
                            fixed_capacity: None,
                            hourly_cost: 0.0,
                        });
                    }
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

/// Pools for existing commitments active in the window. Savings plans consume the rate card's
/// rate for their own instrument, term and payment option; a group without such a rate is not
/// covered by it (noted).
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
                    let offer = rates
                        .offer(&g.product, c.instrument, Some(c.term), c.payment)
                        .or_else(|| {
                            rates
                                .offers(&g.product)
                                .iter()
                                .find(|o| o.instrument == c.instrument && o.term == Some(c.term))
                        });
                    match offer {
                        Some(o) if o.rate() > 0.0 => members.push(Member {
                            group: i,
                            a: o.rate(),
                            cost_equiv: o.rate(),
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
        boundaries,
        notes,
    })
}
