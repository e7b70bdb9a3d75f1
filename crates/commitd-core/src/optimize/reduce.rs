//! Model reduction: from hours x scenarios to a few weighted representative demand points.
//!
//! Within one segment of the window (no commitment starts or ends inside it) the hours of a
//! scenario are interchangeable for the LP: the cost only depends on the multiset of hourly
//! demand vectors, not on their order. So hours can be regrouped freely, and a bucket of hours
//! with identical demand vectors is replaced by one point weighted by their count without any
//! error. Buckets of *similar* vectors are replaced by their mean: the error is bounded by how
//! much demand varies inside a bucket around the commitment levels.
//!
//! Buckets are made by recursive splitting (a k-d tree over demand vectors): start with one
//! bucket per (segment, scenario), then repeatedly split the bucket with the largest
//! ODE-weighted within-bucket sum of squares at the median of its most varied group. For one
//! group this is exactly a load-duration curve cut into quantile slices (sorted-duration
//! aggregation), and it stays a quantile slicing of the group that matters most in every
//! bucket when there are many.

use super::input::DemandInput;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Weighted demand points.
#[derive(Clone, Debug)]
pub(crate) struct Points {
    pub groups: usize,
    /// Expected hours each point stands for (scenario weight x hours); they sum to the window.
    pub weight: Vec<f64>,
    pub scenario: Vec<usize>,
    /// A representative hour index (for which commitments are active: all hours of a point lie
    /// in the same segment).
    pub hour: Vec<usize>,
    /// `demand[point * groups + g]`, instance-hours.
    pub demand: Vec<f64>,
}

impl Points {
    pub fn len(&self) -> usize {
        self.weight.len()
    }

    pub fn demand(&self, point: usize, group: usize) -> f64 {
        self.demand[point * self.groups + group]
    }
}

/// Every hour of every scenario as its own point: the full model.
pub(crate) fn full(demand: &DemandInput) -> Points {
    let g_count = demand.groups.len();
    let weights = demand.weights();
    let n = demand.hours * weights.len();
    let mut p = Points {
        groups: g_count,
        weight: Vec::with_capacity(n),
        scenario: Vec::with_capacity(n),
        hour: Vec::with_capacity(n),
        demand: Vec::with_capacity(n * g_count),
    };
    for (s, w) in weights.iter().enumerate() {
        for h in 0..demand.hours {
            p.weight.push(*w);
            p.scenario.push(s);
            p.hour.push(h);
            p.demand
                .extend(demand.groups.iter().map(|g| g.scenarios[s][h]));
        }
    }
    p
}

pub(crate) struct Bucket {
    scenario: usize,
    hours: Vec<u32>,
    sse: f64,
    /// The group whose spread contributes most to `sse`.
    worst: usize,
}

impl PartialEq for Bucket {
    fn eq(&self, other: &Self) -> bool {
        self.sse.total_cmp(&other.sse) == Ordering::Equal
    }
}
impl Eq for Bucket {}
impl PartialOrd for Bucket {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bucket {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sse.total_cmp(&other.sse)
    }
}

fn make_bucket(demand: &DemandInput, value: &[f64], scenario: usize, hours: Vec<u32>) -> Bucket {
    let n = hours.len() as f64;
    let mut sse = 0.0;
    let mut worst = (0, -1.0);
    for (g, gd) in demand.groups.iter().enumerate() {
        let path = &gd.scenarios[scenario];
        let (mut s1, mut s2) = (0.0, 0.0);
        for &h in &hours {
            let d = path[h as usize];
            s1 += d;
            s2 += d * d;
        }
        let e = (s2 - s1 * s1 / n).max(0.0) * value[g] * value[g];
        sse += e;
        if e > worst.1 {
            worst = (g, e);
        }
    }
    Bucket {
        scenario,
        hours,
        sse,
        worst: worst.0,
    }
}

/// Reduces to about `target` buckets. `boundaries` are the hour indices where the set of active
/// commitments changes; `value[g]` weighs group `g`'s spread (its on-demand price, so that the
/// reduction error is measured in dollars).
pub(crate) fn reduce(
    demand: &DemandInput,
    boundaries: &[usize],
    value: &[f64],
    target: usize,
) -> Vec<Bucket> {
    let weights = demand.weights();
    let mut heap = BinaryHeap::new();
    let mut done: Vec<Bucket> = Vec::new();
    for s in 0..weights.len() {
        for seg in boundaries.windows(2) {
            if seg[1] > seg[0] {
                let hours: Vec<u32> = (seg[0] as u32..seg[1] as u32).collect();
                heap.push(make_bucket(demand, value, s, hours));
            }
        }
    }
    while heap.len() + done.len() < target {
        let Some(b) = heap.pop() else { break };
        if b.hours.len() < 2 || b.sse <= 1e-12 {
            done.push(b);
            continue;
        }
        let path = &demand.groups[b.worst].scenarios[b.scenario];
        let mut hours = b.hours;
        hours.sort_unstable_by(|x, y| path[*x as usize].total_cmp(&path[*y as usize]));
        let mid = hours.len() / 2;
        let upper = hours.split_off(mid);
        heap.push(make_bucket(demand, value, b.scenario, hours));
        heap.push(make_bucket(demand, value, b.scenario, upper));
    }
    done.extend(heap.into_vec());
    // Deterministic order: by scenario, then first hour.
    done.sort_by_key(|b| (b.scenario, b.hours.iter().min().copied().unwrap_or(0)));
    done
}

/// Refines buckets around the solution of the reduced LP.
///
/// Averaging a bucket is exact for a group whose hours all lie on the same side of the coverage
/// the LP gave it there; the error comes from hours whose demand is below that coverage (the
/// average pretends they absorb it). `coverage[b * groups + g]` is the LP's coverage of group `g`
/// at bucket `b`; each bucket's bound on the error is `sum_g value_g * sum_h max(0, cover - d_h)`.
/// The `max_splits` buckets with the largest bound are split at the coverage level of their
/// worst group, which puts the threshold where the commitments actually cut. Returns the new
/// buckets, for each the index of the bucket it came from (to carry the solution over as a warm
/// start), and the total error bound before refining (USD, weighted by scenario weight).
pub(crate) fn refine(
    demand: &DemandInput,
    buckets: Vec<Bucket>,
    coverage: &[f64],
    value: &[f64],
    max_splits: usize,
) -> (Vec<Bucket>, Vec<usize>, f64) {
    let weights = demand.weights();
    let g_count = demand.groups.len();
    let mut scored: Vec<(f64, usize, f64, usize)> = Vec::with_capacity(buckets.len());
    let mut total = 0.0;
    for (bi, b) in buckets.iter().enumerate() {
        let mut worst = (0.0, 0usize, 0.0);
        let mut sum = 0.0;
        for g in 0..g_count {
            let cover = coverage[bi * g_count + g];
            if cover <= 1e-9 {
                continue;
            }
            let path = &demand.groups[g].scenarios[b.scenario];
            let e: f64 = b
                .hours
                .iter()
                .map(|&h| (cover - path[h as usize]).max(0.0))
                .sum::<f64>()
                * value[g];
            sum += e;
            if e > worst.0 {
                worst = (e, g, cover);
            }
        }
        total += sum * weights[b.scenario];
        if worst.0 > 0.0 && b.hours.len() > 1 {
            scored.push((sum * weights[b.scenario], bi, worst.2, worst.1));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(max_splits);
    let mut split: Vec<Option<(f64, usize)>> = vec![None; buckets.len()];
    for (_, bi, cover, g) in &scored {
        split[*bi] = Some((*cover, *g));
    }
    let mut out = Vec::with_capacity(buckets.len() + scored.len());
    for (parent, (b, how)) in buckets.into_iter().zip(split).enumerate() {
        let Some((cover, g)) = how else {
            out.push((b, parent));
            continue;
        };
        let path = &demand.groups[g].scenarios[b.scenario];
        let scenario = b.scenario;
        let (mut low, mut high): (Vec<u32>, Vec<u32>) =
            b.hours.iter().partition(|&&h| path[h as usize] <= cover);
        if low.is_empty() || high.is_empty() {
            // All on one side of the level (can happen with ties): halve by that group instead.
            let mut hours = b.hours;
            hours.sort_unstable_by(|x, y| path[*x as usize].total_cmp(&path[*y as usize]));
            high = hours.split_off(hours.len() / 2);
            low = hours;
        }
        out.push((make_bucket(demand, value, scenario, low), parent));
        out.push((make_bucket(demand, value, scenario, high), parent));
    }
    out.sort_by_key(|(b, _)| (b.scenario, b.hours.iter().min().copied().unwrap_or(0)));
    let (out, parents) = out.into_iter().unzip();
    (out, parents, total)
}

/// One point per bucket: its mean demand, weighted by its hours and its scenario's weight.
pub(crate) fn points(demand: &DemandInput, buckets: &[Bucket]) -> Points {
    let weights = demand.weights();
    let g_count = demand.groups.len();
    let mut p = Points {
        groups: g_count,
        weight: Vec::with_capacity(buckets.len()),
        scenario: Vec::with_capacity(buckets.len()),
        hour: Vec::with_capacity(buckets.len()),
        demand: Vec::with_capacity(buckets.len() * g_count),
    };
    for b in buckets {
        let n = b.hours.len() as f64;
        p.weight.push(weights[b.scenario] * n);
        p.scenario.push(b.scenario);
        p.hour.push(b.hours[0] as usize);
        for gd in &demand.groups {
            let path = &gd.scenarios[b.scenario];
            p.demand
                .push(b.hours.iter().map(|&h| path[h as usize]).sum::<f64>() / n);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Hour, Provider, UsageGroup};

    fn group(name: &str) -> UsageGroup {
        UsageGroup::new(Provider::Aws, "us-east-1", name, None, "Linux", "Shared")
    }

    #[test]
    fn reduction_keeps_total_demand_and_weight_and_respects_segments() {
        let a: Vec<f64> = (0..100).map(|h| (h % 7) as f64).collect();
        let b: Vec<f64> = (0..100).map(|h| (h % 5) as f64 * 2.0).collect();
        let d = DemandInput::actual(
            Hour(0),
            vec![
                (group("m5.large"), a.clone()),
                (group("c5.large"), b.clone()),
            ],
        );
        let p = points(&d, &reduce(&d, &[0, 40, 100], &[1.0, 1.0], 10));
        assert_eq!(p.len(), 10);
        let w: f64 = p.weight.iter().sum();
        assert!((w - 100.0).abs() < 1e-9);
        let total_a: f64 = (0..p.len()).map(|i| p.weight[i] * p.demand(i, 0)).sum();
        assert!((total_a - a.iter().sum::<f64>()).abs() < 1e-9);
        // Every point lies wholly in one segment: its hours are all < 40 or all >= 40, so the
        // weights of points starting before 40 add up to 40 hours.
        let early: f64 = (0..p.len())
            .filter(|&i| p.hour[i] < 40)
            .map(|i| p.weight[i])
            .sum();
        assert!((early - 40.0).abs() < 1e-9);
    }

    #[test]
    fn refine_names_the_bucket_each_new_bucket_came_from() {
        let a: Vec<f64> = (0..60).map(|h| ((h * 7) % 10) as f64).collect();
        let d = DemandInput::actual(Hour(0), vec![(group("m5.large"), a)]);
        let old = reduce(&d, &[0, 60], &[1.0], 3);
        let old_hours: Vec<Vec<u32>> = old.iter().map(|b| b.hours.clone()).collect();
        // Coverage 5 cuts through every bucket that holds values on both sides of it.
        let coverage = vec![5.0; old.len()];
        let (new, parents, bound) = refine(&d, old, &coverage, &[1.0], 10);
        assert!(bound > 0.0);
        assert!(new.len() > old_hours.len());
        assert_eq!(parents.len(), new.len());
        for (b, &p) in new.iter().zip(&parents) {
            assert!(b.hours.iter().all(|h| old_hours[p].contains(h)));
        }
        // Every old bucket's hours are still covered exactly once.
        let mut all: Vec<u32> = new.iter().flat_map(|b| b.hours.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..60).collect::<Vec<u32>>());
    }

    #[test]
    fn identical_hours_collapse_without_error() {
        let a: Vec<f64> = (0..50)
            .map(|h| if h % 2 == 0 { 3.0 } else { 8.0 })
            .collect();
        let d = DemandInput::actual(Hour(0), vec![(group("m5.large"), a)]);
        let p = points(&d, &reduce(&d, &[0, 50], &[1.0], 40));
        // Two distinct values: splitting stops at two exact buckets.
        assert_eq!(p.len(), 2);
        let mut v: Vec<f64> = (0..2).map(|i| p.demand(i, 0)).collect();
        v.sort_by(f64::total_cmp);
        assert_eq!(v, vec![3.0, 8.0]);
    }
}
