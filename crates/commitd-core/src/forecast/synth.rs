//! Synthetic usage series with known structure, for tests and the accuracy benchmark.
//!
//! Deterministic (a seeded SplitMix64), so every test and benchmark figure is reproducible.
//! The shapes are the ones real fleets show and the public scenarios lack: migrations (a
//! group drops to a fraction), decommissions, new workloads, spikes, noise, batch jobs.

use crate::domain::Hour;

/// SplitMix64: tiny, seedable, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The recipe of one series. Amplitudes and noise are relative to the level.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub base: f64,
    /// Daytime peak over the night trough, e.g. 0.3 = +-30 %.
    pub daily_amp: f64,
    /// Weekend dip, e.g. 0.2 = 20 % lower on Saturday and Sunday.
    pub weekend_dip: f64,
    /// Relative growth per day (0.002 = +0.2 %/day, compounding).
    pub trend_per_day: f64,
    /// Relative standard deviation of hourly noise.
    pub noise: f64,
    /// (first hour index, hours, multiplier): temporary spikes or dips.
    pub spikes: Vec<(usize, usize, f64)>,
    /// (hour index, multiplier from then on): migrations, decommissions, new workloads.
    pub shifts: Vec<(usize, f64)>,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            base: 100.0,
            daily_amp: 0.3,
            weekend_dip: 0.2,
            trend_per_day: 0.0,
            noise: 0.03,
            spikes: Vec::new(),
            shifts: Vec::new(),
            seed: 1,
        }
    }
}

impl Spec {
    /// The noiseless value at index `i` (hour `start + i`): what a perfect forecaster's P50
    /// would be, up to the noise's median (zero).
    pub fn truth(&self, start: Hour, i: usize) -> f64 {
        let h = start.plus(i as i64);
        let hod = h.hour_of_day() as f64;
        let daily = 1.0 + self.daily_amp * ((hod - 9.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
        let weekend = if h.hour_of_week() >= 120 {
            1.0 - self.weekend_dip
        } else {
            1.0
        };
        let trend = (1.0 + self.trend_per_day).powf(i as f64 / 24.0);
        let shift: f64 = self
            .shifts
            .iter()
            .filter(|(at, _)| i >= *at)
            .map(|(_, f)| f)
            .product();
        self.base * daily * weekend * trend * shift
    }

    /// `hours` values from `start`, noise and spikes included, never negative.
    pub fn generate(&self, start: Hour, hours: usize) -> Vec<f64> {
        let mut rng = Rng::new(self.seed);
        (0..hours)
            .map(|i| {
                let spike: f64 = self
                    .spikes
                    .iter()
                    .filter(|(a, len, _)| i >= *a && i < a + len)
                    .map(|(_, _, f)| f)
                    .product();
                let noise = 1.0 + self.noise * rng.normal();
                (self.truth(start, i) * spike * noise).max(0.0)
            })
            .collect()
    }
}

/// A mixed fleet of `groups` series of `hours` each: steady, growing, declining, migrated
/// away, new workloads, spiky, noisy, batch-like. Returns (kind, spec) pairs.
pub fn fleet(groups: usize, hours: usize, seed: u64) -> Vec<(&'static str, Spec)> {
    let mut rng = Rng::new(seed);
    (0..groups)
        .map(|g| {
            let mut s = Spec {
                base: 2.0 + 200.0 * rng.uniform().powi(2),
                daily_amp: 0.05 + 0.4 * rng.uniform(),
                weekend_dip: 0.3 * rng.uniform(),
                noise: 0.01 + 0.06 * rng.uniform(),
                seed: seed.wrapping_mul(1_000_003).wrapping_add(g as u64),
                ..Spec::default()
            };
            let at = |rng: &mut Rng, lo: f64, hi: f64| {
                ((lo + (hi - lo) * rng.uniform()) * hours as f64) as usize
            };
            let kind = match g % 8 {
                0 => "steady",
                1 => {
                    s.trend_per_day = 0.0005 + 0.002 * rng.uniform();
                    "growing"
                }
                2 => {
                    s.trend_per_day = -(0.0005 + 0.0015 * rng.uniform());
                    "declining"
                }
                3 => {
                    s.shifts
                        .push((at(&mut rng, 0.3, 0.95), 0.15 + 0.4 * rng.uniform()));
                    "migrated-away"
                }
                4 => {
                    s.shifts
                        .push((at(&mut rng, 0.3, 0.95), 1.4 + rng.uniform()));
                    "new-workload"
                }
                5 => {
                    for _ in 0..4 {
                        let a = at(&mut rng, 0.05, 0.98);
                        s.spikes.push((
                            a,
                            2 + (rng.uniform() * 30.0) as usize,
                            1.5 + 3.0 * rng.uniform(),
                        ));
                    }
                    "spiky"
                }
                6 => {
                    s.noise = 0.10 + 0.10 * rng.uniform();
                    "noisy"
                }
                _ => {
                    s.daily_amp = 0.8;
                    s.weekend_dip = 0.5;
                    "batch"
                }
            };
            (kind, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_shaped() {
        let s = Spec::default();
        let a = s.generate(Hour(0), 500);
        assert_eq!(a, s.generate(Hour(0), 500));
        assert!(a.iter().all(|v| *v >= 0.0));
        let monday = Hour::parse("2025-09-01T00:00:00Z").unwrap();
        // Saturday noon is lower than Wednesday noon by the weekend dip.
        let wed = s.truth(monday, 2 * 24 + 12);
        let sat = s.truth(monday, 5 * 24 + 12);
        assert!((sat / wed - 0.8).abs() < 1e-9);
        let f = fleet(16, 1000, 7);
        assert_eq!(f.len(), 16);
        assert_eq!(f[3].0, "migrated-away");
        assert_eq!(f[3].1.shifts.len(), 1);
    }
}
