//! Exact aggregation of usage groups that no commitment can tell apart.
//!
//! Two groups are interchangeable for every instrument when they share provider, region,
//! size-flexibility group, family, OS and tenancy (so every scope covers both or neither) and
//! their prices are proportional: every offer's rate, and the size units, are the same multiple
//! of the on-demand price. AWS prices the sizes of a family linearly, so the sizes of one family
//! in one region and OS usually collapse into one group. Their demand is then added in units of
//! the representative's instance-hours (weighted by on-demand price), which changes neither the
//! cost of any allocation nor the set of feasible ones: the LP is smaller and the same.

use super::input::{DemandInput, GroupDemand};
use crate::domain::{Offer, RateCard, UsageGroup};

fn key(g: &UsageGroup) -> (String, String, String, String, String, String) {
    let s = g.sizing();
    (
        g.provider.to_string(),
        g.region.clone(),
        s.flex_group,
        g.family.clone(),
        g.os.clone(),
        g.tenancy.clone(),
    )
}

/// Price ratios to on demand of every offer, sorted, plus units per on-demand dollar.
type Signature = (Vec<(String, f64)>, f64);

fn signature(g: &UsageGroup, rates: &RateCard) -> Option<Signature> {
    let od = rates.on_demand(&g.product())?;
    if od.is_nan() || od <= 0.0 {
        return None;
    }
    let mut offers: Vec<(String, f64)> = rates
        .offers_for(g)
        .iter()
        .filter(|o| !o.is_on_demand())
        .map(|o: &Offer| {
            (
                format!("{}/{:?}/{}", o.instrument, o.term, o.payment),
                o.rate() / od,
            )
        })
        .collect();
    offers.sort_by(|a, b| a.0.cmp(&b.0));
    Some((offers, g.sizing().units / od))
}

fn same(a: &Signature, b: &Signature) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1e-12);
    a.0.len() == b.0.len()
        && close(a.1, b.1)
        && a.0
            .iter()
            .zip(&b.0)
            .all(|(p, q)| p.0 == q.0 && close(p.1, q.1))
}

/// Merges interchangeable groups; returns the smaller demand and how many groups were merged.
/// Groups without an on-demand price are left alone (the model reports them).
pub(crate) fn aggregate(demand: &DemandInput, rates: &RateCard) -> (DemandInput, usize) {
    // (index in `out`, price signature, on-demand rate) of each representative.
    let mut reps: Vec<(usize, Signature, f64)> = Vec::new();
    let mut out: Vec<GroupDemand> = Vec::new();
    let mut merged = 0;
    let mut by_key: std::collections::HashMap<_, Vec<usize>> = std::collections::HashMap::new();
    for g in &demand.groups {
        let sig = signature(&g.group, rates);
        let od = rates.on_demand(&g.group.product()).unwrap_or(0.0);
        let k = key(&g.group);
        let target = sig.as_ref().and_then(|sig| {
            by_key
                .get(&k)
                .and_then(|cands| cands.iter().find(|&&r| same(&reps[r].1, sig)).copied())
        });
        match (target, sig) {
            (Some(r), _) => {
                // Add in the representative's instance-hours at equal on-demand value.
                let factor = od / reps[r].2;
                let into = &mut out[reps[r].0];
                for (dst, src) in into.scenarios.iter_mut().zip(&g.scenarios) {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s * factor;
                    }
                }
                merged += 1;
            }
            (None, Some(sig)) => {
                by_key.entry(k).or_default().push(reps.len());
                reps.push((out.len(), sig, od));
                out.push(g.clone());
            }
            (None, None) => out.push(g.clone()),
        }
    }
    (
        DemandInput {
            start: demand.start,
            hours: demand.hours,
            scenarios: demand.scenarios.clone(),
            groups: out,
        },
        merged,
    )
}
