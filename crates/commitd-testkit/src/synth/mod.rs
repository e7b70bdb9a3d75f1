//! Synthetic scenarios: a deterministic generator of scenario directories in exactly the
//! shared format (`scenario.toml`, `usage.parquet` with FOCUS 1.2 rows, `rates.csv`,
//! `commitments.csv`), for shapes the public scenarios lack: migrations between families,
//! sudden drops, noise, spikes, and hundreds of groups.
//!
//! The usage is billed as a real bill would be: each hour, the existing commitments are
//! applied in the providers' order (RIs and reservations first, size-flexible within their
//! family and region; then savings plans, highest discount first, consuming their hourly
//! commitment at the plan's rate), producing Committed/Used rows, on-demand Standard rows for
//! the rest, Unused rows for commitment left over, Purchase rows for recurring fees, and
//! non-compute rows (storage, data transfer, tax) that ingest must ignore.
//!
//! Everything derives from the seed through [`rng::Rng`], so a (shape, groups, seed, months)
//! tuple names one scenario forever.

pub mod catalog;
mod demand;
pub mod rng;
mod writer;

use catalog::{Product, Rate};
use chrono::{Datelike, TimeZone, Utc};
use commitd_core::domain::{Hour, Instrument, PaymentOption, Provider, HOURS_PER_YEAR};
use rng::Rng;
use std::path::{Path, PathBuf};

/// The shape of the organisation's demand over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Flat baselines with daily and weekly seasonality and little noise.
    Steady,
    /// Steady plus 20-80% a year of growth.
    Growth,
    /// Workloads moving from older families to newer ones (m5 -> m6i, r6i -> r7g, ...).
    Migration,
    /// Sudden permanent drops of 40-90% in some groups, around and after the decision time.
    Drop,
    /// Heavy autocorrelated noise.
    Noisy,
    /// Short spikes (batch jobs, incidents) and a holiday peak.
    Spiky,
    /// Each group draws one of the shapes above (steady to spiky; the shapes below are not
    /// drawn, so that a mixed scenario of a given seed stays the scenario it always was).
    Mixed,
    /// A strong yearly cycle (+-15-40%, peak in a random month), on top of the daily and weekly
    /// ones: three months of history show only part of it.
    Seasonal,
    /// A permanent step up of 30-150% (a new workload) somewhere in the evaluation window.
    StepUp,
    /// A gradual decline of 25-70% over the evaluation year (a product being retired slowly).
    Decline,
    /// Workloads moving to the same instance type in another region (pairs, like migration).
    RegionMove,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Steady => "steady",
            Shape::Growth => "growth",
            Shape::Migration => "migration",
            Shape::Drop => "drop",
            Shape::Noisy => "noisy",
            Shape::Spiky => "spiky",
            Shape::Mixed => "mixed",
            Shape::Seasonal => "seasonal",
            Shape::StepUp => "step-up",
            Shape::Decline => "decline",
            Shape::RegionMove => "region-move",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub shape: Shape,
    pub groups: usize,
    pub seed: u64,
    /// Months of history before the decision time.
    pub history_months: u32,
    /// Months of evaluation after it.
    pub evaluation_months: u32,
    /// First hour of the history (a month start keeps billing periods aligned).
    pub start: Hour,
    /// Generate existing commitments (a savings plan, an RI, an Azure reservation).
    pub commitments: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shape: Shape::Mixed,
            groups: 8,
            seed: 1,
            history_months: 3,
            evaluation_months: 12,
            start: Hour::from_datetime(Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()),
            commitments: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("--groups must be between 1 and {max} (the synthetic catalog's size), not {got}")]
    Groups { got: usize, max: usize },
    #[error("--months must be at least 1")]
    Months,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: writing Parquet: {detail}")]
    Parquet { path: PathBuf, detail: String },
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub dir: PathBuf,
    pub name: String,
    pub groups: usize,
    pub hours: usize,
    pub rows: u64,
    pub commitments: usize,
    pub history_start: Hour,
    pub decision_time: Hour,
    pub evaluation_end: Hour,
}

/// One usage group of the synthetic organisation, with its demand (instances per hour).
#[derive(Clone, Debug)]
pub struct SynthGroup {
    pub product: Product,
    pub rates: Vec<Rate>,
    pub demand: Vec<f64>,
    /// Sub-accounts and their share of the group's usage.
    pub accounts: Vec<(&'static str, &'static str, f64)>,
    pub shape: Shape,
}

/// An existing commitment of the synthetic organisation.
#[derive(Clone, Debug)]
pub struct SynthCommitment {
    pub id: String,
    pub provider: Provider,
    pub instrument: Instrument,
    pub term_years: u8,
    pub payment: PaymentOption,
    pub start: Hour,
    pub end: Hour,
    /// Savings plans: USD per hour. RIs and reservations: amortized USD per hour of the lot.
    pub hourly: f64,
    /// RIs and reservations: the product bought and how many.
    pub product: Option<Product>,
    pub count: u32,
}

impl SynthCommitment {
    pub fn is_active(&self, h: Hour) -> bool {
        h >= self.start && h < self.end
    }
}

/// The whole synthetic organisation, before billing.
pub struct Org {
    pub config: Config,
    pub history_start: Hour,
    pub decision_time: Hour,
    pub evaluation_end: Hour,
    pub groups: Vec<SynthGroup>,
    pub commitments: Vec<SynthCommitment>,
}

fn add_months(h: Hour, months: u32) -> Hour {
    let t = h.to_datetime();
    let total = t.year() * 12 + t.month0() as i32 + months as i32;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    let d = Utc
        .with_ymd_and_hms(y, m, t.day().min(28), 0, 0, 0)
        .single()
        .unwrap_or(t);
    Hour::from_datetime(d).plus(h.hour_of_day() as i64)
}

const ACCOUNTS: [(&str, &str); 3] = [
    ("111111111111", "prod"),
    ("222222222222", "staging"),
    ("333333333333", "analytics"),
];

/// Builds the organisation: groups, demand and existing commitments. Pure.
pub fn build(config: &Config) -> Result<Org, SynthError> {
    let catalog = catalog::all_products();
    if config.groups == 0 || config.groups > catalog.len() {
        return Err(SynthError::Groups {
            got: config.groups,
            max: catalog.len(),
        });
    }
    if config.history_months == 0 {
        return Err(SynthError::Months);
    }
    let rng = Rng::new(config.seed);
    let history_start = config.start;
    let decision_time = add_months(history_start, config.history_months);
    let evaluation_end = add_months(decision_time, config.evaluation_months);
    let hours = evaluation_end.since(history_start) as usize;

    let products = demand::pick_products(&catalog, config, &mut rng.fork(1));
    let mut groups: Vec<SynthGroup> = products
        .into_iter()
        .enumerate()
        .map(|(i, (product, shape))| {
            let mut r = rng.fork(100 + i as u64);
            let n_accounts = 1 + (r.chance(0.4) as usize) + (r.chance(0.15) as usize);
            let mut shares: Vec<f64> = (0..n_accounts).map(|_| r.range(0.2, 1.0)).collect();
            shares[0] += 1.0;
            let sum: f64 = shares.iter().sum();
            let accounts = (0..n_accounts)
                .map(|k| (ACCOUNTS[k].0, ACCOUNTS[k].1, shares[k] / sum))
                .collect();
            SynthGroup {
                rates: catalog::rates(&product, &rng),
                product,
                demand: Vec::new(),
                accounts,
                shape,
            }
        })
        .collect();
    demand::fill(
        &mut groups,
        config,
        history_start,
        decision_time,
        hours,
        &rng,
    );
    let commitments = if config.commitments {
        existing_commitments(&groups, history_start, decision_time, &mut rng.fork(2))
    } else {
        Vec::new()
    };
    Ok(Org {
        config: config.clone(),
        history_start,
        decision_time,
        evaluation_end,
        groups,
        commitments,
    })
}

/// A savings plan covering part of the AWS baseline, an RI on the largest AWS group and a
/// reservation on the largest Azure group, started before the history so that they expire at
/// different times during the window (renewal decisions are part of the problem).
fn existing_commitments(
    groups: &[SynthGroup],
    history_start: Hour,
    decision_time: Hour,
    rng: &mut Rng,
) -> Vec<SynthCommitment> {
    let first_week = 24 * 7;
    let low = |g: &SynthGroup| {
        g.demand[..first_week.min(g.demand.len())]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    };
    let mut out = Vec::new();
    // Compute SP: ~35% of the AWS minimum hourly spend at the SP rate.
    let aws_floor: f64 = groups
        .iter()
        .filter(|g| g.product.provider == Provider::Aws)
        .map(|g| {
            low(g)
                * catalog::rate_of(
                    &g.rates,
                    Instrument::ComputeSavingsPlan,
                    1,
                    PaymentOption::NoUpfront,
                )
        })
        .sum();
    if aws_floor > 0.01 {
        let start = history_start.plus(-(rng.range(120.0, 300.0) as i64) * 24);
        let hourly = catalog::round6((aws_floor * rng.range(0.25, 0.45) * 1000.0).round() / 1000.0);
        if hourly > 0.0 {
            out.push(SynthCommitment {
                id: format!(
                    "arn:aws:savingsplans::111111111111:savingsplan/synth-{:04}",
                    out.len()
                ),
                provider: Provider::Aws,
                instrument: Instrument::ComputeSavingsPlan,
                term_years: 1,
                payment: PaymentOption::NoUpfront,
                start,
                end: start.plus(HOURS_PER_YEAR),
                hourly,
                product: None,
                count: 0,
            });
        }
    }
    let largest = |provider: Provider| {
        groups
            .iter()
            // An RI of fewer than one instance cannot be bought: only groups that always
            // run two or more qualify.
            .filter(|g| g.product.provider == provider && g.product.os == "Linux" && low(g) >= 2.0)
            .max_by(|a, b| {
                (low(a) * a.product.on_demand()).total_cmp(&(low(b) * b.product.on_demand()))
            })
    };
    if let Some(g) = largest(Provider::Aws) {
        let count = (low(g) * rng.range(0.4, 0.6)).floor() as u32;
        if count > 0 {
            let start = history_start.plus(-(rng.range(30.0, 200.0) as i64) * 24);
            let rate = catalog::rate_of(
                &g.rates,
                Instrument::StandardReservedInstance,
                1,
                PaymentOption::AllUpfront,
            );
            out.push(SynthCommitment {
                id: format!(
                    "arn:aws:ec2:{}:111111111111:reserved-instances/synth-{:04}",
                    g.product.region,
                    out.len()
                ),
                provider: Provider::Aws,
                instrument: Instrument::StandardReservedInstance,
                term_years: 1,
                payment: PaymentOption::AllUpfront,
                start,
                end: start.plus(HOURS_PER_YEAR),
                hourly: catalog::round6(rate * count as f64),
                product: Some(g.product.clone()),
                count,
            });
        }
    }
    if let Some(g) = largest(Provider::Azure) {
        let count = (low(g) * rng.range(0.3, 0.5)).floor() as u32;
        if count > 0 {
            // A 3-year reservation bought long ago: it outlives the window.
            let start = decision_time.plus(-(rng.range(400.0, 700.0) as i64) * 24);
            let rate = catalog::rate_of(
                &g.rates,
                Instrument::AzureReservation,
                3,
                PaymentOption::NoUpfront,
            );
            out.push(SynthCommitment {
                id: format!(
                    "/providers/Microsoft.Capacity/reservationOrders/synth-{:04}",
                    out.len()
                ),
                provider: Provider::Azure,
                instrument: Instrument::AzureReservation,
                term_years: 3,
                payment: PaymentOption::NoUpfront,
                start,
                end: start.plus(3 * HOURS_PER_YEAR),
                hourly: catalog::round6(rate * count as f64),
                product: Some(g.product.clone()),
                count,
            });
        }
    }
    out
}

/// Generates a scenario into `dir` (created if needed).
pub fn generate(config: &Config, dir: &Path) -> Result<Summary, SynthError> {
    write(&build(config)?, dir)
}

/// Writes an organisation [`build`] made (its demand possibly edited: an injected anomaly)
/// as a scenario directory.
pub fn write(org: &Org, dir: &Path) -> Result<Summary, SynthError> {
    let config = &org.config;
    std::fs::create_dir_all(dir).map_err(|source| SynthError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = format!(
        "synth-{}-{}g-seed{}",
        config.shape.as_str(),
        config.groups,
        config.seed
    );
    let rows = writer::write_usage(org, &dir.join("usage.parquet"))?;
    writer::write_rates(org, &dir.join("rates.csv"))?;
    writer::write_commitments(org, &dir.join("commitments.csv"))?;
    writer::write_toml(org, &name, &dir.join("scenario.toml"))?;
    Ok(Summary {
        dir: dir.to_path_buf(),
        name,
        groups: org.groups.len(),
        hours: org.evaluation_end.since(org.history_start) as usize,
        rows,
        commitments: org.commitments.len(),
        history_start: org.history_start,
        decision_time: org.decision_time,
        evaluation_end: org.evaluation_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_add_on_calendar_boundaries() {
        let h = Config::default().start;
        assert_eq!(add_months(h, 3).to_string(), "2025-09-01T00:00:00Z");
        assert_eq!(add_months(h, 15).to_string(), "2026-09-01T00:00:00Z");
    }

    #[test]
    fn build_is_deterministic_and_shapes_differ() {
        let c = Config {
            groups: 12,
            seed: 42,
            ..Config::default()
        };
        let a = build(&c).unwrap();
        let b = build(&c).unwrap();
        assert_eq!(a.groups.len(), 12);
        for (x, y) in a.groups.iter().zip(&b.groups) {
            assert_eq!(x.product, y.product);
            assert_eq!(x.demand, y.demand);
        }
        let other = build(&Config {
            seed: 43,
            ..c.clone()
        })
        .unwrap();
        assert_ne!(a.groups[0].demand, other.groups[0].demand);
        assert!(!a.commitments.is_empty());
        assert!(build(&Config {
            groups: 100_000,
            ..c
        })
        .is_err());
    }

    #[test]
    fn drop_shape_drops_and_migration_moves_demand() {
        let base = Config {
            groups: 6,
            seed: 3,
            commitments: false,
            ..Config::default()
        };
        let drop = build(&Config {
            shape: Shape::Drop,
            ..base.clone()
        })
        .unwrap();
        let week = |v: &[f64], from: usize| v[from..from + 168].iter().sum::<f64>() / 168.0;
        let last = drop.groups[0].demand.len() - 168;
        let dropped = drop
            .groups
            .iter()
            .filter(|g| week(&g.demand, last) < 0.7 * week(&g.demand, 0))
            .count();
        assert!(dropped >= 2, "{dropped} groups dropped");

        let mig = build(&Config {
            shape: Shape::Migration,
            ..base
        })
        .unwrap();
        let total = |from| {
            mig.groups
                .iter()
                .map(|g| week(&g.demand, from) * g.product.units())
                .sum::<f64>()
        };
        let first = mig
            .groups
            .iter()
            .position(|g| g.shape == Shape::Migration)
            .expect("a migration pair");
        let (old, new) = (&mig.groups[first], &mig.groups[first + 1]);
        assert_eq!(
            catalog::successor(&old.product.series.to_ascii_lowercase()).map(str::to_uppercase),
            Some(new.product.series.clone())
        );
        assert!(week(&old.demand, last) < 0.2 * week(&old.demand, 0));
        assert!(week(&new.demand, last) > week(&new.demand, 0) + 0.5 * week(&old.demand, 0));
        // Capacity moves; it does not vanish.
        assert!(total(last) > 0.5 * total(0));
    }

    #[test]
    fn new_shapes_do_what_they_say() {
        let base = Config {
            groups: 6,
            seed: 5,
            commitments: false,
            ..Config::default()
        };
        let org = |shape| {
            build(&Config {
                shape,
                ..base.clone()
            })
            .unwrap()
        };
        let month = |v: &[f64], m: usize| v[m * 730..(m + 1) * 730].iter().sum::<f64>() / 730.0;
        let decision = 3; // months of history
        let last = 14;

        // Seasonal: the busiest month is well above the quietest one in every group.
        for g in &org(Shape::Seasonal).groups {
            let months: Vec<f64> = (0..15).map(|m| month(&g.demand, m)).collect();
            let hi = months.iter().copied().fold(0.0, f64::max);
            let lo = months.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(hi > 1.2 * lo, "{}: {months:?}", g.product.instance_type);
        }
        // Step up: every group ends higher than it started the evaluation (growth is at most 8%
        // a year outside the growth shape, the step at least 30%), unless its step falls after
        // the window.
        let up = org(Shape::StepUp);
        let stepped = up
            .groups
            .iter()
            .filter(|g| month(&g.demand, last) > 1.2 * month(&g.demand, decision))
            .count();
        assert!(stepped >= 3, "{stepped} groups stepped up");
        // Decline: every group ends at least 15% lower.
        for g in &org(Shape::Decline).groups {
            assert!(month(&g.demand, last) < 0.85 * month(&g.demand, decision));
        }
        // Region move: pairs of the same instance type in two regions.
        let mv = org(Shape::RegionMove);
        let first = mv
            .groups
            .iter()
            .position(|g| g.shape == Shape::RegionMove)
            .expect("a region-move pair");
        let (a, b) = (&mv.groups[first].product, &mv.groups[first + 1].product);
        assert_eq!(a.instance_type, b.instance_type);
        assert_ne!(a.region, b.region);
    }
}
