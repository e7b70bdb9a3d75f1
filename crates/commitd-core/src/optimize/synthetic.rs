//! Deterministic synthetic demand and rate cards, for the benchmark and the tests.
//!
//! Shapes found in real fleets: steady bases, diurnal web tiers with weekend dips, nightly batch,
//! growth and decline, noise. Prices follow AWS's and Azure's public structure (discount depth:
//! Compute SP < EC2 Instance SP < Standard RI; more upfront and longer terms cost less per
//! hour), so that the LP faces the same trade-offs as with a real rate card. A small xorshift
//! generator keeps it reproducible without a dependency.

use super::input::DemandInput;
use crate::domain::{Hour, Instrument, Offer, PaymentOption, Provider, RateCard, Term, UsageGroup};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub groups: usize,
    pub hours: usize,
    /// Quantile levels of the scenario paths (one path of "actual" demand if empty).
    pub levels: Vec<f64>,
    pub seed: u64,
    /// First hour (a Monday 00:00 UTC keeps weekly shapes aligned).
    pub start: Hour,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            groups: 20,
            hours: 24 * 7 * 4,
            levels: Vec::new(),
            seed: 7,
            // 2025-09-01T00:00:00Z, a Monday.
            start: Hour(488_424),
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal (sum of uniforms).
    fn normal(&mut self) -> f64 {
        (0..6).map(|_| self.next()).sum::<f64>() - 3.0
    }
}

const AWS_REGIONS: &[&str] = &[
    "us-east-1",
    "eu-west-1",
    "us-west-2",
    "ap-southeast-1",
    "eu-central-1",
    "ap-northeast-1",
];
const AWS_FAMILIES: &[(&str, f64)] = &[
    ("m5", 0.024),
    ("c5", 0.02125),
    ("r5", 0.0315),
    ("m6i", 0.024),
    ("c6i", 0.02125),
    ("r6i", 0.0315),
    ("m7g", 0.0204),
    ("c7g", 0.0181),
    ("r7g", 0.0268),
    ("m6a", 0.0216),
    ("t3", 0.0104),
    ("i4i", 0.0429),
];
const AWS_SIZES: &[(&str, f64)] = &[
    ("large", 4.0),
    ("xlarge", 8.0),
    ("2xlarge", 16.0),
    ("4xlarge", 32.0),
    ("8xlarge", 64.0),
];
const AZURE: &[(&str, &str, f64)] = &[
    ("eastus", "Standard_D4s_v5", 0.192),
    ("eastus", "Standard_D8s_v5", 0.384),
    ("eastus", "Standard_E8s_v5", 0.504),
    ("westeurope", "Standard_F8s_v2", 0.39546),
    ("westeurope", "Standard_D4s_v5", 0.211),
];

/// Discount off on-demand by (instrument, years, payment).
fn discount(instrument: Instrument, years: u8, payment: PaymentOption) -> f64 {
    let pay = match payment {
        PaymentOption::NoUpfront => 0.0,
        PaymentOption::PartialUpfront => 0.03,
        PaymentOption::AllUpfront => 0.05,
    };
    let base = match (instrument, years) {
        (Instrument::ComputeSavingsPlan, 1) => 0.28,
        (Instrument::ComputeSavingsPlan, _) => 0.46,
        (Instrument::Ec2InstanceSavingsPlan, 1) => 0.36,
        (Instrument::Ec2InstanceSavingsPlan, _) => 0.56,
        (Instrument::StandardReservedInstance, 1) => 0.40,
        (Instrument::StandardReservedInstance, _) => 0.60,
        (Instrument::ConvertibleReservedInstance, 1) => 0.31,
        (Instrument::ConvertibleReservedInstance, _) => 0.50,
        (Instrument::AzureReservation, 1) => 0.38,
        (Instrument::AzureReservation, _) => 0.58,
        (Instrument::AzureSavingsPlan, 1) => 0.20,
        (Instrument::AzureSavingsPlan, _) => 0.40,
        (Instrument::OnDemand, _) => 0.0,
    };
    // Azure charges the same total monthly or upfront.
    if instrument.provider() == Some(Provider::Azure) {
        base
    } else {
        base + pay
    }
}

fn dec(v: f64) -> Decimal {
    Decimal::from_f64((v * 1e6).round() / 1e6)
        .unwrap_or(Decimal::ZERO)
        .round_dp(6)
}

/// Adds every offer of `group` at on-demand price `od` to `rates`.
pub fn price_group(rates: &mut RateCard, group: &UsageGroup, od: f64) {
    let product = group.product();
    rates.insert(
        product.clone(),
        Offer {
            instrument: Instrument::OnDemand,
            term: None,
            payment: PaymentOption::NoUpfront,
            effective_hourly_rate: dec(od),
            upfront_share: Decimal::ZERO,
        },
    );
    for &instrument in Instrument::ALL {
        if instrument.provider() != Some(group.provider) {
            continue;
        }
        for term in [Term::ONE_YEAR, Term::THREE_YEARS] {
            for &payment in PaymentOption::ALL {
                if group.provider == Provider::Azure && payment == PaymentOption::PartialUpfront {
                    continue;
                }
                let share = match payment {
                    PaymentOption::NoUpfront => Decimal::ZERO,
                    PaymentOption::PartialUpfront => Decimal::new(5, 1),
                    PaymentOption::AllUpfront => Decimal::ONE,
                };
                rates.insert(
                    product.clone(),
                    Offer {
                        instrument,
                        term: Some(term),
                        payment,
                        effective_hourly_rate: dec(
                            od * (1.0 - discount(instrument, term.years(), payment))
                        ),
                        upfront_share: share,
                    },
                );
            }
        }
    }
}

/// Generates `spec.groups` usage groups (about one in ten on Azure) with hourly demand and a
/// complete rate card for them.
pub fn generate(spec: &Spec) -> (DemandInput, RateCard) {
    let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut rates = RateCard::new();
    let mut groups = Vec::with_capacity(spec.groups);
    let (mut aws_i, mut az_i) = (0usize, 0usize);
    for i in 0..spec.groups {
        let azure = i % 10 == 9;
        let (group, od) = if azure {
            let (region, t, od) = AZURE[az_i % AZURE.len()];
            let os = if (az_i / AZURE.len()).is_multiple_of(2) {
                "Linux"
            } else {
                "Windows"
            };
            let region = if az_i / (2 * AZURE.len()) > 0 {
                format!("{region}{}", az_i / (2 * AZURE.len()) + 1)
            } else {
                region.to_string()
            };
            az_i += 1;
            let g = UsageGroup::new(Provider::Azure, &region, t, None, os, "Shared");
            (g, od * if os == "Windows" { 1.4 } else { 1.0 })
        } else {
            let r = AWS_REGIONS.len();
            let f = AWS_FAMILIES.len();
            let s = AWS_SIZES.len();
            let region = AWS_REGIONS[aws_i % r];
            let (family, per_unit) = AWS_FAMILIES[(aws_i / r) % f];
            let (size, units) = AWS_SIZES[(aws_i / (r * f)) % s];
            let os = if (aws_i / (r * f * s)).is_multiple_of(2) {
                "Linux"
            } else {
                "Windows"
            };
            let region = if aws_i / (2 * r * f * s) > 0 {
                format!("{region}-{}", aws_i / (2 * r * f * s))
            } else {
                region.to_string()
            };
            aws_i += 1;
            let t = format!("{family}.{size}");
            let g = UsageGroup::new(Provider::Aws, &region, &t, None, os, "Shared");
            let od = per_unit * units * if os == "Windows" { 1.5 } else { 1.0 };
            (g, od)
        };
        price_group(&mut rates, &group, od);

        // Shape.
        let base = 1.0 + (rng.next() * 20.0).floor();
        let kind = (rng.next() * 4.0) as u32;
        let trend = (rng.next() - 0.4) * 0.5; // -20% .. +30% over the window
        let noise = 0.05 + rng.next() * 0.1;
        let phase = rng.next() * 24.0;
        let mut path = Vec::with_capacity(spec.hours);
        for h in 0..spec.hours {
            let hour = spec.start.plus(h as i64);
            let day = hour.hour_of_day() as f64;
            let weekend = hour.hour_of_week() >= 120;
            let t = h as f64 / spec.hours.max(1) as f64;
            let shape = match kind {
                0 => 1.0,
                1 => {
                    let d = 1.0
                        + 0.6
                            * (std::f64::consts::TAU * (day - phase) / 24.0)
                                .sin()
                                .max(-0.5);
                    if weekend {
                        d * 0.7
                    } else {
                        d
                    }
                }
                2 => {
                    if (0.0..6.0).contains(&((day - phase).rem_euclid(24.0))) {
                        2.5
                    } else {
                        0.3
                    }
                }
                _ => 1.0 + 0.3 * (std::f64::consts::TAU * day / 24.0).cos(),
            };
            let v = base * shape * (1.0 + trend * t) * (1.0 + noise * rng.normal());
            path.push(v.max(0.0));
        }
        groups.push((group, path));
    }
    let demand = if spec.levels.is_empty() {
        DemandInput::actual(spec.start, groups)
    } else {
        // Quantile paths: a multiplicative spread around the path (z-scores of the normal).
        let z = |q: f64| -> f64 {
            // Acklam-free approximation good to ~1e-2 for 0.02..0.98, enough for shapes.
            let t = (-2.0 * (q.min(1.0 - q)).ln()).sqrt();
            let z = t - (2.30753 + 0.27061 * t) / (1.0 + 0.99229 * t + 0.04481 * t * t);
            if q < 0.5 {
                -z
            } else {
                z
            }
        };
        let groups = groups
            .into_iter()
            .map(|(g, path)| {
                let paths = spec
                    .levels
                    .iter()
                    .map(|&q| {
                        let f = 1.0 + 0.12 * z(q);
                        path.iter().map(|v| (v * f).max(0.0)).collect()
                    })
                    .collect();
                (g, paths)
            })
            .collect();
        DemandInput::from_quantiles(spec.start, &spec.levels, groups)
    };
    (demand, rates)
}
