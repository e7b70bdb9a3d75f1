//! The products a synthetic organisation runs, and their prices.
//!
//! On-demand prices follow the providers' public list prices (us-east-1 / eastus, 2025) scaled by
//! size and region. Commitment rates are ratios of on-demand taken from the public scenarios'
//! rate cards (AWS: Compute SP ~30% off for 1 year no upfront, EC2 Instance SP and Standard RI
//! ~40%, Convertible RI ~31%, each upfront option a few points deeper; 3-year terms deeper
//! still. Azure: reservations ~39% / 57%, savings plans ~20% / 40%), with a small per-family
//! jitter so that instruments do not rank identically everywhere.

use super::rng::Rng;
use commitd_core::domain::{sizing, Instrument, PaymentOption, Provider};

#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    pub provider: Provider,
    pub region: &'static str,
    pub region_name: &'static str,
    /// AWS usage-type prefix ("USE1").
    pub region_code: &'static str,
    pub instance_type: String,
    /// Family (AWS "m5") or series (Azure "Ds_v5") as SkuPriceDetails writes it.
    pub series: String,
    pub os: &'static str,
    /// On-demand USD per instance-hour of the Linux part.
    pub linux_od: f64,
    /// Windows license per instance-hour (0 for Linux): commitments do not discount it.
    pub license: f64,
}

impl Product {
    pub fn on_demand(&self) -> f64 {
        round6(self.linux_od + self.license)
    }

    pub fn units(&self) -> f64 {
        sizing::sizing_or_exact(self.provider, &self.instance_type).units
    }

    pub fn flex_group(&self) -> String {
        sizing::sizing_or_exact(self.provider, &self.instance_type).flex_group
    }
}

pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

const AWS_REGIONS: [(&str, &str, &str, f64); 5] = [
    ("us-east-1", "US East (N. Virginia)", "USE1", 1.0),
    ("us-west-2", "US West (Oregon)", "USW2", 1.0),
    ("eu-west-1", "EU (Ireland)", "EU", 1.11),
    ("eu-central-1", "EU (Frankfurt)", "EUC1", 1.15),
    ("ap-southeast-1", "Asia Pacific (Singapore)", "APS1", 1.2),
];

/// (family, on-demand price of the .large size in us-east-1).
const AWS_FAMILIES: [(&str, f64); 10] = [
    ("m5", 0.096),
    ("m6i", 0.096),
    ("m7g", 0.0816),
    ("c5", 0.085),
    ("c6i", 0.085),
    ("c7g", 0.0725),
    ("r5", 0.126),
    ("r6i", 0.126),
    ("r7g", 0.1071),
    ("t3", 0.0832),
];

const AWS_SIZES: [(&str, f64); 4] = [
    ("large", 1.0),
    ("xlarge", 2.0),
    ("2xlarge", 4.0),
    ("4xlarge", 8.0),
];

const AZURE_REGIONS: [(&str, &str, f64); 3] = [
    ("eastus", "East US", 1.0),
    ("westus2", "West US 2", 1.0),
    ("westeurope", "West Europe", 1.15),
];

/// (series, type pattern with {n} for vCPUs, on-demand USD per vCPU-hour in eastus).
const AZURE_SERIES: [(&str, &str, f64); 3] = [
    ("Ds_v5", "Standard_D{n}s_v5", 0.048),
    ("Es_v5", "Standard_E{n}s_v5", 0.063),
    ("Fs_v2", "Standard_F{n}s_v2", 0.04225),
];

const AZURE_VCPUS: [u32; 4] = [2, 4, 8, 16];

/// Every product the generator can pick, Linux first then Windows, in a fixed order.
pub fn all_products() -> Vec<Product> {
    let mut out = Vec::new();
    for os in ["Linux", "Windows"] {
        for (region, name, code, mult) in AWS_REGIONS {
            for (family, large) in AWS_FAMILIES {
                for (size, factor) in AWS_SIZES {
                    // Graviton (g) families have no Windows.
                    if os == "Windows" && family.ends_with('g') {
                        continue;
                    }
                    let linux_od = round6(large * factor * mult);
                    out.push(Product {
                        provider: Provider::Aws,
                        region,
                        region_name: name,
                        region_code: code,
                        instance_type: format!("{family}.{size}"),
                        series: family.to_ascii_uppercase(),
                        os,
                        linux_od,
                        license: if os == "Windows" {
                            round6(0.046 * factor * 2.0)
                        } else {
                            0.0
                        },
                    });
                }
            }
        }
        for (region, name, mult) in AZURE_REGIONS {
            for (series, pattern, per_vcpu) in AZURE_SERIES {
                for n in AZURE_VCPUS {
                    out.push(Product {
                        provider: Provider::Azure,
                        region,
                        region_name: name,
                        region_code: "",
                        instance_type: pattern.replace("{n}", &n.to_string()),
                        series: series.to_string(),
                        os,
                        linux_od: round6(per_vcpu * n as f64 * mult),
                        license: if os == "Windows" {
                            round6(0.046 * n as f64)
                        } else {
                            0.0
                        },
                    });
                }
            }
        }
    }
    out
}

/// The newer family a workload of `family` migrates to, if any (same size, same region).
pub fn successor(family: &str) -> Option<&'static str> {
    match family {
        "m5" => Some("m6i"),
        "c5" => Some("c6i"),
        "r5" => Some("r6i"),
        "m6i" => Some("m7g"),
        "c6i" => Some("c7g"),
        "r6i" => Some("r7g"),
        _ => None,
    }
}

/// One rate card row.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub instrument: Instrument,
    pub term_years: u8,
    pub payment: PaymentOption,
    pub rate: f64,
    pub upfront_share: f64,
}

fn upfront_share(p: PaymentOption) -> f64 {
    match p {
        PaymentOption::NoUpfront => 0.0,
        PaymentOption::PartialUpfront => 0.5,
        PaymentOption::AllUpfront => 1.0,
    }
}

/// The offers of one product: on demand and every commitment the provider sells for it.
pub fn rates(p: &Product, rng: &Rng) -> Vec<Rate> {
    // Jitter per family and region, the same for every size: discount structures differ a
    // little between families in real price lists.
    let mut r = rng.fork(
        p.series
            .bytes()
            .chain(p.region.bytes())
            .fold(1469598103934665603u64, |h, b| {
                (h ^ b as u64).wrapping_mul(1099511628211)
            }),
    );
    let jitter = r.range(-0.02, 0.02);
    let mut out = vec![Rate {
        instrument: Instrument::OnDemand,
        term_years: 0,
        payment: PaymentOption::NoUpfront,
        rate: p.on_demand(),
        upfront_share: 0.0,
    }];
    let (offers, payments): (&[(Instrument, f64, f64)], &[PaymentOption]) = match p.provider {
        Provider::Aws => (
            &[
                (Instrument::ComputeSavingsPlan, 0.6963, 0.5378),
                (Instrument::Ec2InstanceSavingsPlan, 0.6060, 0.4087),
                (Instrument::StandardReservedInstance, 0.5959, 0.4100),
                (Instrument::ConvertibleReservedInstance, 0.6937, 0.5047),
            ],
            &[
                PaymentOption::NoUpfront,
                PaymentOption::PartialUpfront,
                PaymentOption::AllUpfront,
            ],
        ),
        Provider::Azure => (
            &[
                (Instrument::AzureReservation, 0.6061, 0.4330),
                (Instrument::AzureSavingsPlan, 0.8036, 0.6013),
            ],
            &[PaymentOption::NoUpfront, PaymentOption::AllUpfront],
        ),
    };
    for &(instrument, one, three) in offers {
        for (years, ratio) in [(1u8, one), (3u8, three)] {
            for &payment in payments {
                // Paying upfront buys a few more points of discount at AWS; Azure charges the
                // same total either way.
                let extra = match (p.provider, payment) {
                    (Provider::Aws, PaymentOption::PartialUpfront) => 0.03,
                    (Provider::Aws, PaymentOption::AllUpfront) => 0.04,
                    _ => 0.0,
                };
                out.push(Rate {
                    instrument,
                    term_years: years,
                    payment,
                    rate: round6(p.linux_od * (ratio + jitter - extra) + p.license),
                    upfront_share: upfront_share(payment),
                });
            }
        }
    }
    out
}

pub fn rate_of(rates: &[Rate], instrument: Instrument, years: u8, payment: PaymentOption) -> f64 {
    rates
        .iter()
        .find(|r| r.instrument == instrument && r.term_years == years && r.payment == payment)
        .map(|r| r.rate)
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_large_and_priced_sensibly() {
        let all = all_products();
        assert!(all.len() >= 400, "{}", all.len());
        let m6i = all
            .iter()
            .find(|p| p.instance_type == "m6i.large" && p.region == "us-east-1" && p.os == "Linux")
            .unwrap();
        assert_eq!(m6i.on_demand(), 0.096);
        let d4 = all
            .iter()
            .find(|p| p.instance_type == "Standard_D4s_v5" && p.region == "eastus")
            .unwrap();
        assert_eq!(d4.on_demand(), 0.192);
        assert!(d4.flex_group().contains("Dsv5"));
        let r = rates(m6i, &Rng::new(1));
        let od = rate_of(&r, Instrument::OnDemand, 0, PaymentOption::NoUpfront);
        let csp = rate_of(
            &r,
            Instrument::ComputeSavingsPlan,
            1,
            PaymentOption::NoUpfront,
        );
        let ri3 = rate_of(
            &r,
            Instrument::StandardReservedInstance,
            3,
            PaymentOption::AllUpfront,
        );
        assert!(ri3 < csp && csp < od);
        assert_eq!(r.len(), 1 + 4 * 2 * 3);
    }
}
