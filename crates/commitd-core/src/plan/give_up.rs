//! Giving up held reservations: which instances stand idle or are covered by the rest of the
//! portfolio anyway, and how they leave (an Azure exchange into this decision's reservations, an
//! Azure return within the refund cap, a Standard RI listed on the Marketplace).

use super::recent::{bill_recent, daily_means, quantile, slope};
use super::{Exchange, GivenUp, PlanError, Situation};
use crate::domain::rules::{remaining_value, split_off};
use crate::domain::{Commitment, CommitmentAmount, Hour, Instrument, Money, Provider};

/// The share of the recent hours in which the instances a reservation pool is said to leave
/// idle may have been in use: only what stood idle in the other 80% of the hours is given up.
pub(crate) const IDLE_QUANTILE: f64 = 0.2;

/// Instances of the held Azure reservations that stood idle in almost every recent hour, as
/// (index in `held`, instances). Per size-flexibility pool (region and series), the idle units
/// of an hour are the pool's capacity minus its usage (reservations apply first, so this is
/// what the bill shows unused). The recent hours are the last known week and, separately, its
/// last two days (both must show the idle level, so that a pool whose usage came back keeps its
/// reservations, and a weekend does not count); for a pool with a group whose level `fell` (by
/// more than [`MOVE_SHARE`]: usage that moved away or dropped), the last two days alone, so
/// that the reservations are given up while the usage's new place is being bought, not a week
/// later. The pool gives up whole instances worth at most its idle level, the latest-ending
/// reservations first (each gives up the most idle hours). Reservations with less than a week
/// left run out instead.
///
/// Azure reservations are judged when `azure`; AWS Standard RIs when `ris`, those the
/// Marketplace would take ([`Marketplace`](crate::domain::rules::Marketplace): 30 days old, a whole
/// month left when the listing sells). Instances listed earlier still apply until they sell:
/// they count in the pool's capacity, and their units come off its idle level.
pub(crate) fn idle_reservations(
    ctx: &Situation<'_>,
    held: &[Commitment],
    fell: &[bool],
    fades: &[f64],
    azure: bool,
    ris: bool,
) -> Vec<(usize, u32)> {
    use crate::domain::rules::Marketplace;
    let n = ctx.known.range.len();
    let market = ctx.policy.ri_marketplace;
    let listed = |c: &Commitment| ctx.is_listed(&c.id);
    let sellable = |c: &Commitment| market.listing(c, ctx.now).is_ok();
    // Per pool: the members that may be given up, the units of those too young to be listed,
    // and of those already listed.
    type Pool = (Vec<usize>, f64, f64);
    let mut pools: std::collections::BTreeMap<(Provider, String, String), Pool> =
        Default::default();
    for (i, c) in held.iter().enumerate() {
        let judged = match c.instrument {
            Instrument::AzureReservation => azure,
            Instrument::StandardReservedInstance => ris,
            _ => false,
        };
        if !judged || c.remaining_hours(ctx.now) < 7 * 24 {
            continue;
        }
        let Some(key) = c.region.clone().zip(c.flex_group()) else {
            continue;
        };
        let pool = pools.entry((c.provider, key.0, key.1)).or_default();
        if c.instrument == Instrument::StandardReservedInstance && listed(c) {
            pool.2 += c.units();
        } else if c.instrument == Instrument::AzureReservation || sellable(c) {
            pool.0.push(i);
        } else if ctx.now.since(c.start) < Marketplace::MIN_AGE_HOURS {
            pool.1 += c.units();
        }
    }
    pools.retain(|_, (members, _, _)| !members.is_empty());
    let mut out = Vec::new();
    for ((provider, region, flex), (mut members, young_units, listed_units)) in pools {
        let capacity: f64 =
            members.iter().map(|&i| held[i].units()).sum::<f64>() + young_units + listed_units;
        let groups: Vec<(usize, f64)> = ctx
            .groups
            .iter()
            .enumerate()
            .filter_map(|(gi, bg)| {
                let g = &bg.group;
                let s = g.sizing();
                (g.provider == provider && g.region == region && s.flex_group == flex)
                    .then_some((gi, s.units))
            })
            .collect();
        let keep: Vec<f64> = groups
            .iter()
            .map(|&(gi, _)| faded(ctx, provider, fades[gi]))
            .collect();
        let idle_at = |h: usize| {
            let used: f64 = groups
                .iter()
                .zip(&keep)
                .map(|(&(gi, units), k)| ctx.known.groups[gi].quantity[h].max(0.0) * units * k)
                .sum();
            (capacity - used).max(0.0)
        };
        let windows: &[usize] = if groups.iter().any(|&(gi, _)| fell[gi]) {
            &[2 * 24]
        } else {
            &[7 * 24, 2 * 24]
        };
        let level = windows
            .iter()
            .map(|&len| {
                let mut idle: Vec<f64> = (n.saturating_sub(len)..n).map(idle_at).collect();
                quantile(&mut idle, IDLE_QUANTILE)
            })
            .fold(f64::INFINITY, f64::min);
        let level = level - listed_units;
        if !(level.is_finite() && level > 0.0) {
            continue;
        }
        members.sort_by(|&a, &b| held[b].end.cmp(&held[a].end).then(a.cmp(&b)));
        // A hair over the level, so that float sums of whole units do not lose an instance.
        let mut left = level + 1e-9;
        for i in members {
            let CommitmentAmount::Instances(count) = held[i].amount else {
                continue;
            };
            let per = held[i].units() / count.max(1) as f64;
            if per <= 0.0 {
                continue;
            }
            let k = ((left / per).floor() as u32).min(count);
            if k > 0 {
                out.push((i, k));
                left -= k as f64 * per;
            }
        }
    }
    out
}

/// What `portfolio` would have made of the last `hours` known hours: commitment used over
/// commitment paid for (None if it costs nothing).
pub(crate) fn recent_utilization(
    ctx: &Situation<'_>,
    portfolio: &[Commitment],
    hours: usize,
) -> Result<Option<f64>, PlanError> {
    let (mut used, mut cost) = (0.0, 0.0);
    bill_recent(ctx, portfolio, hours, |bill, _| {
        used += bill.used_commitment;
        cost += bill.commitment_cost;
    })?;
    Ok((cost > 0.0).then(|| used / cost))
}

/// A new pool's utilization floor `base`, moved by the gap between the `target` and the
/// portfolio's recent utilization `realized` (gain 1), within 0.8..=0.995. The look-back floor
/// holds on the look-back only: in-sample, the optimizer's plan looks better than it will do,
/// by an amount that depends on the noise and on what the held commitments leave. The bill
/// says how much.
pub(crate) fn steered_floor(base: f64, target: f64, realized: f64) -> f64 {
    (base + (target - realized)).clamp(0.8, 0.995)
}

/// The least-squares slope (per day) of a series' last [`FADE_DAYS`] daily means.
pub(crate) fn daily_slope(series: &[f64]) -> Option<f64> {
    slope(&daily_means(series, FADE_DAYS)).map(|(b, _, _)| b)
}

/// A fading series: the share of its current level it loses per hour (the least-squares slope
/// of its last [`FADE_DAYS`] daily means, over the fitted last day) and what it loses per day,
/// when the fall is clear (the slope at least [`FADE_T`] standard errors under zero).
pub(crate) fn fade(series: &[f64]) -> Option<(f64, f64)> {
    let daily = daily_means(series, FADE_DAYS);
    let (b, se, mean) = slope(&daily)?;
    let last = mean + b * (daily.len() as f64 - 1.0) / 2.0;
    (b < -FADE_T * se && last > 0.0).then(|| (-b / last / 24.0, -b))
}

/// The share of a fading group's last known level left when giving up a reservation of
/// `provider` takes effect: a return or an exchange at once, a sale when the listing sells
/// (the last known hour is the billing latency behind).
pub(crate) fn faded(ctx: &Situation<'_>, provider: Provider, fade: f64) -> f64 {
    let latency = ctx.now.since(ctx.known.range.end).max(0);
    let effect = match provider {
        Provider::Aws => latency + ctx.policy.ri_marketplace.sale_delay_hours.max(0),
        _ => latency,
    };
    (1.0 - fade * effect as f64).max(0.0)
}

/// Days of daily means a fade's rate is fitted on.
const FADE_DAYS: usize = 7;
/// Standard errors under zero a fade's slope must be to count.
const FADE_T: f64 = 2.0;

/// Instances of a held commitment given up: (index in the held list, instances).
pub(crate) type Given = (usize, u32);

/// How many instances of held commitment `i` `given` gives up.
pub(crate) fn given_count(given: &[Given], i: usize) -> u32 {
    given.iter().find(|g| g.0 == i).map_or(0, |g| g.1)
}

/// `k` more instances of held commitment `i` given up.
pub(crate) fn give_more(given: &mut Vec<Given>, i: usize, k: u32) {
    match given.iter_mut().find(|g| g.0 == i) {
        Some(g) => g.1 += k,
        None => given.push((i, k)),
    }
}

/// Reservation instances the rest of the portfolio covers anyway, added to `given` (the idle
/// ones already chosen); returns how many instances were added.
///
/// After a drop or through a decline, a savings plan bought for the whole fleet has room in
/// nearly every hour, while reservations keep the usage it could take: the portfolio covers
/// everything and is partly idle, and no reservation looks idle on its own. Giving up such a
/// reservation moves its usage onto the plan's idle commitment. An instance is given up when,
/// over the last known week, the on-demand cost it would add (billed with everything else
/// held) is at most `share` of what giving it up saves: its hourly cost, less what the exit
/// loses (an Azure return is refunded at the remaining value; a Marketplace sale writes off
/// the upfront not recovered, per the policy's market model). Judged only on reservations
/// active at least 30 days (so that a purchase is not undone by the noise that follows it),
/// with at least a week left, that may be given up today: Azure reservations when `azure`,
/// within the refund cap left; AWS Standard RIs the Marketplace takes when `ris`.
pub(crate) fn redundant_reservations(
    ctx: &Situation<'_>,
    held: &[Commitment],
    given: &mut Vec<Given>,
    share: f64,
    azure: bool,
    ris: bool,
) -> Result<u64, PlanError> {
    use crate::domain::rules::Marketplace;
    const WEEK: usize = 7 * 24;
    let n = ctx.known.range.len();
    if n < WEEK || share <= 0.0 {
        return Ok(0);
    }
    let market = ctx.policy.ri_marketplace;
    // The on-demand cost of the week's usage left uncovered once `given` is given up, and the
    // commitment idle in the hour at the 20th percentile. Instances listed earlier still apply
    // until they sell, but they are leaving: the portfolio is judged without them (else each
    // day would list one more for the same idle room).
    let bill = |given: &[Given]| -> Result<(f64, f64), PlanError> {
        let mut portfolio = give_up(held, given, ctx.now)?;
        portfolio.retain(|c| !ctx.is_listed(&c.id));
        let (mut on_demand, mut unused) = (0.0, Vec::with_capacity(WEEK));
        bill_recent(ctx, &portfolio, WEEK, |bill, _| {
            on_demand += bill.on_demand_cost;
            unused.push(bill.unused_commitment());
        })?;
        Ok((on_demand, quantile(&mut unused, IDLE_QUANTILE)))
    };
    let (mut base, idle) = bill(given)?;
    // Nothing is idle in most hours: every reservation given up would go on demand.
    if idle <= 0.0 {
        return Ok(0);
    }
    let mut room = ctx.policy.azure_refund_cap - ctx.refunded_in_the_last_year();
    for &(i, k) in given.iter() {
        if held[i].instrument == Instrument::AzureReservation {
            room -= remaining_value(&held[i], k, ctx.now)?;
        }
    }
    // Candidates with the share of their cost an exit keeps: Azure returns first (nothing
    // lost), then Standard RIs by what a sale loses; the latest-ending first within each.
    let mut candidates: Vec<(usize, f64)> = held
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.remaining_hours(ctx.now) >= WEEK as i64
                && ctx.now.since(c.start) >= Marketplace::MIN_AGE_HOURS
        })
        .filter_map(|(i, c)| match c.instrument {
            Instrument::AzureReservation if azure => Some((i, 1.0)),
            Instrument::StandardReservedInstance
                if ris && !ctx.is_listed(&c.id) && market.listing(c, ctx.now).is_ok() =>
            {
                let lifetime = c.hourly_cost.to_f64() * c.term.hours() as f64;
                let upfront = if lifetime > 0.0 {
                    c.upfront.to_f64() / lifetime
                } else {
                    0.0
                };
                let recovered = market.price_bp as f64 / 1e4 * (1.0 - market.fee_bp as f64 / 1e4);
                Some((i, 1.0 - upfront.min(1.0) * (1.0 - recovered)))
            }
            _ => None,
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(held[b.0].end.cmp(&held[a.0].end))
            .then(a.0.cmp(&b.0))
    });
    let mut added = 0;
    for (i, keep) in candidates {
        let c = &held[i];
        let CommitmentAmount::Instances(count) = c.amount else {
            continue;
        };
        let mut most = count.saturating_sub(given_count(given, i));
        if c.instrument == Instrument::AzureReservation {
            most = most_that_fit(c, most, ctx.now, room)?.0;
        }
        if most == 0 {
            continue;
        }
        let saved_per = c.hourly_cost.to_f64() / count as f64 * keep * WEEK as f64;
        // The on-demand cost k more instances given up add, and whether it is worth it. The
        // added cost grows faster than linearly in k (the idle room fills up), so the k that
        // pass form a range from 0: bisect its end.
        let worth = |k: u32| -> Result<Option<f64>, PlanError> {
            let mut more = given.clone();
            give_more(&mut more, i, k);
            let (cost, _) = bill(&more)?;
            Ok((cost - base <= share * saved_per * k as f64).then_some(cost))
        };
        let Some(mut cost) = worth(1)? else {
            continue;
        };
        let (mut lo, mut hi) = (1, most);
        if hi > 1 {
            if let Some(c_hi) = worth(hi)? {
                lo = hi;
                cost = c_hi;
            } else {
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    match worth(mid)? {
                        Some(c_mid) => {
                            lo = mid;
                            cost = c_mid;
                        }
                        None => hi = mid,
                    }
                }
            }
        }
        if c.instrument == Instrument::AzureReservation {
            room -= remaining_value(c, lo, ctx.now)?;
        }
        give_more(given, i, lo);
        base = cost;
        added += lo as u64;
    }
    Ok(added)
}

/// `held` with the instances in `given` (index in `held`, instances) given up at `now`.
pub(crate) fn give_up(
    held: &[Commitment],
    given: &[(usize, u32)],
    now: Hour,
) -> Result<Vec<Commitment>, PlanError> {
    let mut out = Vec::with_capacity(held.len());
    for (i, c) in held.iter().enumerate() {
        match given.iter().find(|&&(j, _)| j == i) {
            Some(&(_, k)) => out.extend(split_off(c, k, now)?.1),
            None => out.push(c.clone()),
        }
    }
    Ok(out)
}

/// The most of `count` instances of `c` whose remaining value at `now` is at most `room`, and
/// that value: from an estimate at the value of one instance, then down (a share is rounded
/// down to the micro-dollar, so k instances are worth at least k times one, and the estimate
/// is never too low).
pub(crate) fn most_that_fit(
    c: &Commitment,
    count: u32,
    now: Hour,
    room: Money,
) -> Result<(u32, Money), PlanError> {
    if count == 0 {
        return Ok((0, Money::ZERO));
    }
    let per = remaining_value(c, 1, now)?.micros();
    let mut k = if per > 0 {
        count.min((room.micros().max(0) / per).min(u32::MAX as i64) as u32)
    } else {
        count
    };
    while k > 0 {
        let value = remaining_value(c, k, now)?;
        if value <= room {
            return Ok((k, value));
        }
        k -= 1;
    }
    Ok((0, Money::ZERO))
}

/// One Azure exchange: the idle instances `idle` (index in `held`, instances) for the Azure
/// reservations among this decision's purchases `out`, which become its targets (taken out of
/// `out`, the most valuable first, as many as the refund needs). The refund may be at most the
/// targets' lifetime commitment, so when the purchases are worth less, only as many idle
/// instances are given up as they absorb. None when nothing fits; else the exchange and the
/// instances it gives up.
#[allow(clippy::type_complexity)]
pub(crate) fn exchange_idle(
    now: Hour,
    held: &[Commitment],
    idle: &[(usize, u32)],
    out: &mut Vec<Commitment>,
) -> Result<Option<(Exchange, Vec<(usize, u32)>)>, PlanError> {
    let lifetime = |c: &Commitment| c.hourly_cost.times(c.term.hours()).unwrap_or(Money::ZERO);
    let mut candidates: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].instrument == Instrument::AzureReservation)
        .collect();
    if idle.is_empty() || candidates.is_empty() {
        return Ok(None);
    }
    candidates.sort_by_key(|&i| std::cmp::Reverse(lifetime(&out[i])));
    let room: Money = candidates.iter().map(|&i| lifetime(&out[i])).sum();
    let mut refund = Money::ZERO;
    let mut given = Vec::new();
    for &(i, count) in idle {
        let (k, value) = most_that_fit(&held[i], count, now, room - refund)?;
        if k > 0 {
            refund += value;
            given.push((i, k));
        }
    }
    if given.is_empty() {
        return Ok(None);
    }
    let mut chosen = Vec::new();
    let mut worth = Money::ZERO;
    for &i in &candidates {
        if worth >= refund {
            break;
        }
        worth += lifetime(&out[i]);
        chosen.push(i);
    }
    chosen.sort_unstable_by(|a, b| b.cmp(a));
    let targets: Vec<Commitment> = chosen.into_iter().map(|i| out.remove(i)).collect();
    let sources = given
        .iter()
        .map(|&(i, count)| GivenUp {
            id: held[i].id.clone(),
            count,
        })
        .collect();
    Ok(Some((Exchange { sources, targets }, given)))
}
