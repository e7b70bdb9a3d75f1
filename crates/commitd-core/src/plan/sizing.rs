//! Sizing a savings plan on the usage a portfolio leaves uncovered: what a plan of `c` USD/h
//! would have saved, the plan that saves the most, and the largest one used at least a target
//! share. Used by the ladder planner's savings-plan stage and by the native-tool baseline.

/// Savings over the look-back of a plan of `c` USD/h: on-demand cost it would have covered,
/// minus the commitment paid every hour. `items` are (group, on-demand rate, plan rate) in
/// application order.
pub fn savings(uncovered: &[Vec<f64>], items: &[(usize, f64, f64)], c: f64) -> f64 {
    let mut total = 0.0;
    for hour in uncovered {
        let mut left = c;
        for &(g, od, sp) in items {
            if left <= 0.0 {
                break;
            }
            let q = hour[g].min(left / sp);
            left -= q * sp;
            total += q * od;
        }
        total -= c;
    }
    total
}

/// The hourly commitment that maximizes [`savings`]. Savings are concave in `c` (each hour's
/// covered value is concave because usage is covered highest discount first, and the cost is
/// linear), so a golden-section search finds the maximum.
pub fn best_commitment(uncovered: &[Vec<f64>], items: &[(usize, f64, f64)]) -> f64 {
    let hi = uncovered
        .iter()
        .map(|h| items.iter().map(|&(g, _, sp)| h[g] * sp).sum::<f64>())
        .fold(0.0, f64::max);
    if hi <= 0.0 {
        return 0.0;
    }
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (0.0, hi);
    let mut x1 = b - phi * (b - a);
    let mut x2 = a + phi * (b - a);
    let mut f1 = savings(uncovered, items, x1);
    let mut f2 = savings(uncovered, items, x2);
    // 80 iterations shrink the interval by phi^80 ~ 1e-17: far below a tenth of a cent.
    for _ in 0..80 {
        if f1 < f2 {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + phi * (b - a);
            f2 = savings(uncovered, items, x2);
        } else {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - phi * (b - a);
            f1 = savings(uncovered, items, x1);
        }
    }
    let best = (a + b) / 2.0;
    if savings(uncovered, items, best) > 0.0 {
        best
    } else {
        0.0
    }
}

/// The largest hourly commitment (up to `upper`) that would have been used at least `target`
/// (0..1) over the look-back: utilization falls as the commitment grows, so bisect.
pub fn commitment_for_utilization(
    uncovered: &[Vec<f64>],
    items: &[(usize, f64, f64)],
    target: f64,
    upper: f64,
) -> f64 {
    if uncovered.is_empty() || upper <= 0.0 {
        return 0.0;
    }
    let utilization = |c: f64| {
        let mut used = 0.0;
        for hour in uncovered {
            let mut left = c;
            for &(g, _, sp) in items {
                if left <= 0.0 {
                    break;
                }
                let q = hour[g].min(left / sp);
                left -= q * sp;
            }
            used += c - left;
        }
        used / (c * uncovered.len() as f64)
    };
    if utilization(upper) >= target {
        return upper;
    }
    let (mut lo, mut hi) = (0.0, upper);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if mid > 0.0 && utilization(mid) >= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}
