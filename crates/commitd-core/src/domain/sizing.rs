//! Instance sizes: which family an instance type belongs to and how many normalized units it is.
//!
//! RIs and Azure reservations are size-flexible inside a family: AWS through normalization
//! factors (a regional RI for 2 x m5.xlarge = 16 units covers 4 x m5.large), Azure through the
//! instance-size-flexibility ratios it publishes. Billing and the optimizer both count
//! usage-based commitments in these units, so both ask this module, and only this module.

use super::cloud::Provider;
use std::collections::HashMap;
use std::sync::OnceLock;

/// AWS EC2 normalization factors by size suffix.
const AWS_FACTORS: &[(&str, f64)] = &[
    ("nano", 0.25),
    ("micro", 0.5),
    ("small", 1.0),
    ("medium", 2.0),
    ("large", 4.0),
    ("xlarge", 8.0),
    ("2xlarge", 16.0),
    ("3xlarge", 24.0),
    ("4xlarge", 32.0),
    ("6xlarge", 48.0),
    ("8xlarge", 64.0),
    ("9xlarge", 72.0),
    ("10xlarge", 80.0),
    ("12xlarge", 96.0),
    ("16xlarge", 128.0),
    ("18xlarge", 144.0),
    ("24xlarge", 192.0),
    ("32xlarge", 256.0),
    ("48xlarge", 384.0),
];

/// Azure's instance size flexibility groups and ratios (microsoft/finops-toolkit open data, MIT).
const AZURE_ISF_CSV: &str = include_str!("../../data/azure_instance_size_flexibility.csv");

/// The size-flexibility family of an instance type and its size in that family's units.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizing {
    /// The key that decides which usage a usage-based commitment may cover: the AWS family
    /// ("m5") or the Azure size-flexibility group ("Esv5 Series").
    pub flex_group: String,
    /// Normalized units of one instance-hour of this type in its flex group.
    pub units: f64,
}

/// The size-flexibility family and units of `instance_type`, or `None` if unknown
/// (then only commitments for exactly this instance type can cover it, with 1 unit each).
pub fn sizing(provider: Provider, instance_type: &str) -> Option<Sizing> {
    match provider {
        Provider::Aws => aws_sizing(instance_type),
        Provider::Azure => azure_table()
            .get(&instance_type.to_ascii_lowercase())
            .cloned(),
    }
}

/// Sizing that never fails: unknown types form a flex group of their own, 1 unit per instance.
pub fn sizing_or_exact(provider: Provider, instance_type: &str) -> Sizing {
    sizing(provider, instance_type).unwrap_or_else(|| Sizing {
        flex_group: format!("exact:{instance_type}"),
        units: 1.0,
    })
}

/// The family shown to people: the AWS family ("m5") or, for Azure, the series as FOCUS
/// `SkuPriceDetails.InstanceSeries` writes it when known, else the flex group.
pub fn display_family(provider: Provider, instance_type: &str) -> String {
    match provider {
        Provider::Aws => instance_type
            .split_once('.')
            .map(|(family, _)| family.to_ascii_lowercase())
            .unwrap_or_else(|| instance_type.to_ascii_lowercase()),
        Provider::Azure => sizing(provider, instance_type)
            .map(|s| s.flex_group)
            .unwrap_or_else(|| instance_type.to_string()),
    }
}

fn aws_sizing(instance_type: &str) -> Option<Sizing> {
    let lower = instance_type.trim().to_ascii_lowercase();
    // "db.r5.large" (RDS) keeps its "db." prefix in the family.
    let (family, size) = lower.rsplit_once('.')?;
    let units = AWS_FACTORS
        .iter()
        .find(|(name, _)| *name == size)
        .map(|(_, f)| *f)?;
    Some(Sizing {
        flex_group: family.to_string(),
        units,
    })
}

fn azure_table() -> &'static HashMap<String, Sizing> {
    static TABLE: OnceLock<HashMap<String, Sizing>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        let mut reader = csv::Reader::from_reader(AZURE_ISF_CSV.as_bytes());
        for record in reader.records().flatten() {
            let (Some(group), Some(sku), Some(ratio)) =
                (record.get(0), record.get(1), record.get(2))
            else {
                continue;
            };
            if let Ok(units) = ratio.trim().parse::<f64>() {
                table.insert(
                    sku.to_ascii_lowercase(),
                    Sizing {
                        flex_group: group.to_string(),
                        units,
                    },
                );
            }
        }
        table
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_normalization_factors() {
        let s = sizing(Provider::Aws, "m5.xlarge").unwrap();
        assert_eq!(s.flex_group, "m5");
        assert_eq!(s.units, 8.0);
        assert_eq!(sizing(Provider::Aws, "m5.large").unwrap().units, 4.0);
        // 2 x m5.xlarge = 16 units = 4 x m5.large
        assert_eq!(
            2.0 * 8.0,
            4.0 * sizing(Provider::Aws, "m5.large").unwrap().units
        );
        assert_eq!(
            sizing(Provider::Aws, "db.r5.2xlarge").unwrap().flex_group,
            "db.r5"
        );
        assert!(sizing(Provider::Aws, "m5.metal").is_none());
        assert_eq!(display_family(Provider::Aws, "M6I.2xlarge"), "m6i");
    }

    #[test]
    fn azure_ratios_from_the_published_table() {
        let e8 = sizing(Provider::Azure, "Standard_E8s_v5").unwrap();
        let e4 = sizing(Provider::Azure, "standard_e4s_v5").unwrap();
        assert_eq!(e8.flex_group, e4.flex_group);
        assert_eq!(e8.units, 2.0 * e4.units);
        assert!(sizing(Provider::Azure, "Standard_Nope").is_none());
        assert_eq!(sizing_or_exact(Provider::Azure, "Standard_Nope").units, 1.0);
    }
}
