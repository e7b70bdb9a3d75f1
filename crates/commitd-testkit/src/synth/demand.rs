//! Demand shapes: instances per hour for each synthetic group.
//!
//! Demand = level x seasonality x trend x events x noise. Seasonality is one of three
//! profiles seen in real fleets (flat databases, a diurnal web tier with weekend dips, a
//! nightly batch fleet); the shape decides trend, events and noise.

use super::catalog::{self, Product};
use super::rng::Rng;
use super::{Config, Shape, SynthGroup};
use chrono::Datelike;
use commitd_core::domain::{Hour, Provider};

const SHAPES: [Shape; 6] = [
    Shape::Steady,
    Shape::Growth,
    Shape::Migration,
    Shape::Drop,
    Shape::Noisy,
    Shape::Spiky,
];

/// Picks the groups' products (and each group's own shape). Migration groups come in
/// (old family, successor) pairs of the same size, region and OS, old first.
pub fn pick_products(catalog: &[Product], config: &Config, rng: &mut Rng) -> Vec<(Product, Shape)> {
    // Two thirds AWS, one third Azure, Linux before Windows, otherwise shuffled.
    let mut order: Vec<usize> = (0..catalog.len()).collect();
    rng.shuffle(&mut order);
    order.sort_by_key(|&i| {
        let p = &catalog[i];
        (p.os != "Linux") as u8
    });
    let (mut aws, mut azure): (Vec<usize>, Vec<usize>) = order
        .into_iter()
        .partition(|&i| catalog[i].provider == Provider::Aws);
    aws.reverse();
    azure.reverse();
    let mut out: Vec<(Product, Shape)> = Vec::new();
    let taken = |out: &Vec<(Product, Shape)>, p: &Product| out.iter().any(|(q, _)| q == p);
    let mut k = 0usize;
    while out.len() < config.groups {
        let shape = match config.shape {
            Shape::Mixed => SHAPES[rng.below(SHAPES.len())],
            s => s,
        };
        let want_azure = k % 3 == 2 && !azure.is_empty() || aws.is_empty();
        k += 1;
        let Some(i) = (if want_azure { azure.pop() } else { aws.pop() }) else {
            break;
        };
        let p = catalog[i].clone();
        if taken(&out, &p) {
            continue;
        }
        if is_pair(shape) && out.len() + 2 <= config.groups {
            let partner = if shape == Shape::Migration {
                let family = p
                    .instance_type
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                catalog::successor(&family).and_then(|next| {
                    let size = p.instance_type.split('.').nth(1).unwrap_or_default();
                    catalog.iter().find(|q| {
                        q.instance_type == format!("{next}.{size}")
                            && q.region == p.region
                            && q.os == p.os
                    })
                })
            } else {
                // Region move: the same product in the provider's next region.
                catalog.iter().find(|q| {
                    q.provider == p.provider
                        && q.instance_type == p.instance_type
                        && q.os == p.os
                        && q.region != p.region
                })
            };
            if let Some(partner) = partner {
                if !taken(&out, partner) {
                    out.push((p, shape));
                    out.push((partner.clone(), shape));
                    continue;
                }
            }
            // No partner: this group gets a move-free shape instead.
            out.push((p, Shape::Steady));
            continue;
        }
        let shape = if is_pair(shape) { Shape::Steady } else { shape };
        out.push((p, shape));
    }
    out
}

/// Shapes whose groups come in (leaving, receiving) pairs.
fn is_pair(shape: Shape) -> bool {
    matches!(shape, Shape::Migration | Shape::RegionMove)
}

/// Fills every group's demand over `hours` hours from `start`.
pub fn fill(
    groups: &mut [SynthGroup],
    config: &Config,
    start: Hour,
    decision: Hour,
    hours: usize,
    rng: &Rng,
) {
    let decision_idx = decision.since(start) as usize;
    let mut i = 0;
    while i < groups.len() {
        let mut r = rng.fork(1000 + i as u64);
        let level =
            (r.range(1.0f64.ln(), 60.0f64.ln())).exp() / groups[i].product.units().max(1.0).sqrt();
        let base = base_series(&mut r, start, hours, level);
        match groups[i].shape {
            s if is_pair(s) && i + 1 < groups.len() && groups[i + 1].shape == s => {
                // Old family (or region) fades out over 2-10 weeks starting somewhere from one
                // month before the decision to 8 months after; the partner takes the same
                // instances.
                let begin = (decision_idx as f64 + r.range(-720.0, 5800.0)).max(0.0) as usize;
                let length = r.range(336.0, 1680.0) as usize;
                let mut old = Vec::with_capacity(hours);
                let mut new = Vec::with_capacity(hours);
                let partner_base = (r.range(0.0, 0.5) * level).max(0.5);
                let noise = noise_series(&mut r, hours, 0.05);
                for (t, b) in base.iter().enumerate() {
                    let w = smoothstep((t as f64 - begin as f64) / length as f64);
                    old.push(round3(b * (1.0 - w) * noise[t]));
                    new.push(round3((b * w + partner_base) * noise[t]));
                }
                groups[i].demand = old;
                groups[i + 1].demand = new;
                i += 2;
                continue;
            }
            shape => {
                let shaped = shape_series(shape, &mut r, &base, decision_idx, start, config);
                groups[i].demand = shaped.into_iter().map(round3).collect();
            }
        }
        i += 1;
    }
}

fn round3(x: f64) -> f64 {
    (x.max(0.0) * 1000.0).round() / 1000.0
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Level x seasonality: flat, diurnal web tier with weekend dips, or nightly batch.
fn base_series(r: &mut Rng, start: Hour, hours: usize, level: f64) -> Vec<f64> {
    let profile = r.below(3);
    let amplitude = r.range(0.15, 0.5);
    let weekend = r.range(0.05, 0.3);
    let peak = r.range(13.0, 18.0);
    (0..hours)
        .map(|t| {
            let h = start.plus(t as i64);
            let hod = h.hour_of_day() as f64;
            let dow = h.hour_of_week() / 24;
            let s = match profile {
                0 => 1.0,
                1 => {
                    let day = 1.0
                        + amplitude
                            * (2.0 * std::f64::consts::PI * (hod - peak + 6.0) / 24.0).sin();
                    if dow >= 5 {
                        day * (1.0 - weekend)
                    } else {
                        day
                    }
                }
                _ => {
                    if hod < 6.0 {
                        1.0 + 2.0 * amplitude
                    } else {
                        1.0 - amplitude / 2.0
                    }
                }
            };
            level * s
        })
        .collect()
}

/// Multiplicative AR(1) noise around 1 with marginal standard deviation `sigma`.
fn noise_series(r: &mut Rng, hours: usize, sigma: f64) -> Vec<f64> {
    let phi: f64 = 0.8;
    let innovation = sigma * (1.0 - phi * phi).sqrt();
    let mut x = 0.0;
    (0..hours)
        .map(|_| {
            x = phi * x + innovation * r.normal();
            (1.0 + x).max(0.0)
        })
        .collect()
}

fn shape_series(
    shape: Shape,
    r: &mut Rng,
    base: &[f64],
    decision_idx: usize,
    start: Hour,
    _config: &Config,
) -> Vec<f64> {
    let hours = base.len();
    let year = 8760.0;
    let sigma = if shape == Shape::Noisy {
        r.range(0.2, 0.35)
    } else {
        0.04
    };
    let noise = noise_series(r, hours, sigma);
    let growth = match shape {
        Shape::Growth => r.range(0.2, 0.8),
        _ => r.range(-0.05, 0.08),
    };
    let drop_at = (decision_idx as f64 + r.range(-720.0, 4400.0)).max(24.0) as usize;
    let drop_depth = r.range(0.4, 0.9);
    let drops = shape == Shape::Drop && r.chance(0.75);
    let mut spikes = Vec::new();
    if shape == Shape::Spiky {
        let n = (hours as f64 / 730.0 * r.range(1.0, 4.0)) as usize;
        for _ in 0..n {
            let at = r.below(hours);
            let len = 2 + r.below(46);
            spikes.push((at, at + len, r.range(1.5, 4.0)));
        }
    }
    // Drawn last and only by the shapes that use them, so that the older shapes' draws (and so
    // every scenario generated before these shapes existed) stay the same.
    let (mut yearly, mut step, mut decline) = ((0.0, 0.0), (usize::MAX, 0.0), 0.0);
    match shape {
        // Amplitude and the month of the peak.
        Shape::Seasonal => yearly = (r.range(0.15, 0.4), r.range(0.0, 12.0)),
        // Where and how much.
        Shape::StepUp => {
            step = (
                (decision_idx as f64 + r.range(0.0, 7000.0)) as usize,
                r.range(0.3, 1.5),
            )
        }
        Shape::Decline => decline = r.range(0.25, 0.7),
        _ => {}
    }
    (0..hours)
        .map(|t| {
            let mut v = base[t] * (1.0 + growth * t as f64 / year) * noise[t];
            match shape {
                Shape::Seasonal => {
                    let month = t as f64 / (year / 12.0);
                    v *= 1.0
                        + yearly.0 * (2.0 * std::f64::consts::PI * (month - yearly.1) / 12.0).cos();
                }
                Shape::StepUp if t >= step.0 => v *= 1.0 + step.1,
                Shape::Decline if t > decision_idx => {
                    v *= 1.0 - decline * ((t - decision_idx) as f64 / year).min(1.0);
                }
                _ => {}
            }
            if drops && t >= drop_at {
                v *= 1.0 - drop_depth;
            }
            if shape == Shape::Spiky {
                for &(a, b, m) in &spikes {
                    if t >= a && t < b {
                        v *= m;
                    }
                }
                // Holiday peak: December.
                if start.plus(t as i64).to_datetime().month() == 12 {
                    v *= 1.35;
                }
            }
            v
        })
        .collect()
}
