//! Which FOCUS Usage rows are eligible compute demand, and which usage group they belong to.
//!
//! The rule, in order (first match wins):
//! 1. The provider must be one commitd prices (AWS, Microsoft); others are ignored by name.
//! 2. The workload is recognised from the service and the SKU: a virtual machine instance-hour
//!    (EC2 `BoxUsage`/`DedicatedUsage`, Azure Virtual Machines / Scale Sets, or any Compute row
//!    whose `SkuPriceDetails` names an `InstanceType`), Fargate, Lambda, or a managed database.
//!    Only virtual machines are eligible today; the others are counted under
//!    "compute not modeled yet: ..." so that adding them later is a new arm, not a new reader.
//! 3. The instance type comes from `SkuPriceDetails.InstanceType` (FOCUS 1.1+), else the suffix of
//!    AWS `x_UsageType` ("USE1-BoxUsage:m5.large"), else AWS's `ChargeDescription`
//!    ("$0.096 per On Demand Linux m5.large Instance Hour"), which is all a FOCUS 1.0 export has.
//! 4. OS and tenancy come from `SkuPriceDetails` (`OperatingSystem`, `x_Tenancy`), else the
//!    description and the usage type; family from `InstanceSeries`, else the type's prefix.
//!
//! Classification depends only on a handful of text columns that repeat across millions of
//! rows, so [`Classifier`] caches it by those values: the JSON in SkuPriceDetails is parsed once
//! per distinct SKU, not once per row.

use super::row::{Col, FastMap, FxHasher, Row};
use crate::domain::{Provider, UsageGroup};
use std::hash::Hasher;

/// What a Usage row is, as far as commitments are concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A virtual machine instance-hour: demand of this group.
    Vm(UsageGroup),
    /// Not (yet) eligible demand; the reason is the `IgnoredRows` key.
    Ignored(String),
}

/// Caches [`classify`] by the columns it reads. The cache is cleared if a file has an
/// unusual number of distinct keys, so memory stays bounded whatever the input.
///
/// The lookup is the hottest path of ingest, so a row is first hashed in place (no copy of
/// its ~300 bytes of key text) and checked against the stored key of that hash; only a miss
/// builds the key. Keys are length-prefixed, so no text can make two rows' keys collide.
#[derive(Default)]
pub struct Classifier {
    cache: FastMap<u64, (Vec<u8>, usize)>,
    kinds: Vec<Kind>,
}

const CACHE_LIMIT: usize = 200_000;
const KEY_COLS: [Col; 9] = [
    Col::ProviderName,
    Col::RegionId,
    Col::ServiceCategory,
    Col::ServiceName,
    Col::SkuPriceDetails,
    Col::UsageType,
    Col::ChargeDescription,
    Col::ResourceType,
    Col::ConsumedUnit,
];

/// The key text of one column: `None` for null.
fn key_part<'a>(row: &Row<'a>, col: Col) -> Option<std::borrow::Cow<'a, str>> {
    row.text(col)
}

impl Classifier {
    pub fn new() -> Self {
        Self::default()
    }

    fn hash(row: &Row<'_>) -> u64 {
        let mut h = FxHasher::default();
        for col in KEY_COLS {
            match key_part(row, col) {
                Some(t) => {
                    h.write_usize(t.len());
                    h.write(t.as_bytes());
                }
                None => h.write_usize(usize::MAX),
            }
        }
        h.finish()
    }

    fn key(row: &Row<'_>) -> Vec<u8> {
        let mut key = Vec::with_capacity(256);
        for col in KEY_COLS {
            match key_part(row, col) {
                Some(t) => {
                    key.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    key.extend_from_slice(t.as_bytes());
                }
                None => key.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
        key
    }

    fn matches(key: &[u8], row: &Row<'_>) -> bool {
        let mut rest = key;
        for col in KEY_COLS {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            let len = u32::from_le_bytes(*len);
            match key_part(row, col) {
                None if len == u32::MAX => rest = tail,
                Some(t) if len as usize == t.len() && tail.starts_with(t.as_bytes()) => {
                    rest = &tail[t.len()..];
                }
                _ => return false,
            }
        }
        rest.is_empty()
    }

    /// Classifies a Usage row; the returned index is stable for this classifier's lifetime
    /// (see [`Classifier::kind`]).
    pub fn classify(&mut self, row: &Row<'_>) -> usize {
        let hash = Self::hash(row);
        if let Some((key, i)) = self.cache.get(&hash) {
            if Self::matches(key, row) {
                return *i;
            }
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        let kind = classify(row);
        let i = match self.kinds.iter().position(|k| *k == kind) {
            Some(i) => i,
            None => {
                self.kinds.push(kind);
                self.kinds.len() - 1
            }
        };
        // A (vanishingly rare) hash collision just replaces the entry: still exact.
        self.cache.insert(hash, (Self::key(row), i));
        i
    }

    pub fn kind(&self, i: usize) -> &Kind {
        &self.kinds[i]
    }
}

/// The rule described in the module documentation, for one Usage row.
pub fn classify(row: &Row<'_>) -> Kind {
    let provider_name = row.text(Col::ProviderName).unwrap_or_default();
    let provider = match Provider::parse(&provider_name) {
        Ok(p) => p,
        Err(_) if provider_name.is_empty() => return Kind::Ignored("no ProviderName".into()),
        Err(_) => return Kind::Ignored(format!("provider {provider_name} not supported")),
    };
    let category = row.text(Col::ServiceCategory).unwrap_or_default();
    let service = row.text(Col::ServiceName).unwrap_or_default();
    let service_l = service.to_ascii_lowercase();
    let description = row.text(Col::ChargeDescription).unwrap_or_default();
    let usage_type = row.text(Col::UsageType).unwrap_or_default();
    let details = row
        .text(Col::SkuPriceDetails)
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v.is_object());
    let detail = |keys: &[&str]| -> Option<String> {
        let obj = details.as_ref()?.as_object()?;
        keys.iter().find_map(|k| {
            obj.iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
    };

    // Workloads we recognise but do not model yet: keep them visible in the counts.
    if service_l.contains("lambda") {
        return Kind::Ignored("compute not modeled yet: Lambda".into());
    }
    if service_l.contains("fargate") || description.contains("Fargate") {
        return Kind::Ignored("compute not modeled yet: Fargate".into());
    }
    let usage_kind = usage_type.split(':').next().unwrap_or_default();
    if usage_kind.contains("SpotUsage") {
        return Kind::Ignored("spot usage".into());
    }

    let mut instance_type = detail(&["InstanceType", "x_InstanceType", "VMSize", "ArmSkuName"]);
    let box_usage = usage_kind.contains("BoxUsage") || usage_kind.contains("DedicatedUsage");
    if instance_type.is_none() && box_usage {
        // "USE1-BoxUsage:m5.large"; a bare "BoxUsage" is the historical m1.small.
        instance_type = Some(
            usage_type
                .split_once(':')
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or_else(|| "m1.small".to_string()),
        );
    }
    let from_description = aws_description(&description);
    if instance_type.is_none() && provider == Provider::Aws {
        instance_type = from_description.as_ref().map(|(_, t)| t.clone());
    }

    let is_database = service_l.contains("database")
        || service_l.contains("rds")
        || category.eq_ignore_ascii_case("Databases")
        || instance_type
            .as_deref()
            .is_some_and(|t| t.starts_with("db."));
    if is_database {
        return if instance_type.is_some() {
            Kind::Ignored("compute not modeled yet: database instances".into())
        } else {
            Kind::Ignored(format!("not compute: {}", non_empty(&category)))
        };
    }
    let vm_service = category.eq_ignore_ascii_case("Compute")
        || service_l.contains("elastic compute cloud")
        || service_l == "virtual machines"
        || service_l == "virtual machine scale sets"
        || box_usage;
    if !vm_service {
        return Kind::Ignored(format!("not compute: {}", non_empty(&category)));
    }
    // Instance-hours only: a Compute row priced per GB (data transfer) is not demand.
    if let Some(unit) = row.text(Col::ConsumedUnit) {
        if !unit.to_ascii_lowercase().contains("hour") && !unit.eq_ignore_ascii_case("hrs") {
            return Kind::Ignored(format!("compute priced per {unit}, not per hour"));
        }
    }
    let Some(instance_type) = instance_type else {
        return Kind::Ignored(format!(
            "compute without an instance type: {}",
            non_empty(&service)
        ));
    };
    let Some(region) = row.text(Col::RegionId) else {
        return Kind::Ignored("compute without RegionId".into());
    };
    let os = detail(&["OperatingSystem", "x_OperatingSystem"])
        .or_else(|| from_description.as_ref().map(|(os, _)| os.clone()))
        .unwrap_or_else(|| "Linux".to_string());
    let tenancy = detail(&["x_Tenancy", "Tenancy"]).unwrap_or_else(|| {
        if usage_kind.contains("DedicatedUsage") || description.contains("Dedicated") {
            "Dedicated".to_string()
        } else {
            "Shared".to_string()
        }
    });
    let family = detail(&["InstanceSeries", "InstanceFamily", "x_InstanceFamily"]);
    Kind::Vm(UsageGroup::new(
        provider,
        &region,
        &instance_type,
        family.as_deref(),
        &os,
        &tenancy,
    ))
}

fn non_empty(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}

/// AWS descriptions: "$0.096 per On Demand Linux m5.large Instance Hour",
/// "$0.19152 per On Demand Linux m7i-flex.xlarge Instance Hour",
/// "USD 0.5 per On Demand Windows BYOL c5.xlarge Instance Hour". Returns (OS, instance type).
fn aws_description(description: &str) -> Option<(String, String)> {
    let head = description.strip_suffix(" Instance Hour")?;
    let (before, instance_type) = head.rsplit_once(' ')?;
    if !instance_type.contains('.') {
        return None;
    }
    let os = before
        .split_once(" On Demand ")
        .or_else(|| before.split_once(" Dedicated Usage "))
        .map(|(_, os)| os.trim())
        .filter(|os| !os.is_empty())
        .unwrap_or("Linux");
    Some((os.to_string(), instance_type.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::row::Val;

    fn row<'a>(cols: &[(Col, &'a str)]) -> Row<'a> {
        let mut r = Row::new();
        for (c, v) in cols {
            r.set(*c, Val::from_text(v));
        }
        r
    }

    #[test]
    fn ec2_from_sku_price_details() {
        let r = row(&[
            (Col::ProviderName, "AWS"),
            (Col::RegionId, "us-east-1"),
            (Col::ServiceCategory, "Compute"),
            (Col::ServiceName, "Amazon Elastic Compute Cloud"),
            (
                Col::SkuPriceDetails,
                r#"{"InstanceType": "r5.large", "InstanceSeries": "R5", "OperatingSystem": "Linux", "x_Tenancy": "Shared"}"#,
            ),
            (Col::ConsumedUnit, "Hours"),
        ]);
        let Kind::Vm(g) = classify(&r) else {
            panic!("not a VM")
        };
        assert_eq!(
            (g.instance_type.as_str(), g.family.as_str(), g.os.as_str()),
            ("r5.large", "r5", "Linux")
        );
    }

    #[test]
    fn focus_1_0_description_and_usage_type() {
        let r = row(&[
            (Col::ProviderName, "AWS"),
            (Col::RegionId, "us-west-2"),
            (Col::ServiceCategory, "Compute"),
            (Col::ServiceName, "Amazon Elastic Compute Cloud"),
            (
                Col::ChargeDescription,
                "$0.19152 per On Demand Windows m7i-flex.xlarge Instance Hour",
            ),
            (Col::ConsumedUnit, "Hours"),
        ]);
        let Kind::Vm(g) = classify(&r) else {
            panic!("not a VM")
        };
        assert_eq!(g.instance_type, "m7i-flex.xlarge");
        assert_eq!(g.os, "Windows");
        let r = row(&[
            (Col::ProviderName, "AWS"),
            (Col::RegionId, "eu-west-1"),
            (Col::ServiceCategory, "Compute"),
            (Col::UsageType, "EU-DedicatedUsage:c5.large"),
        ]);
        let Kind::Vm(g) = classify(&r) else {
            panic!("not a VM")
        };
        assert_eq!(
            (g.instance_type.as_str(), g.tenancy.as_str()),
            ("c5.large", "Dedicated")
        );
    }

    #[test]
    fn other_rows_are_ignored_with_a_reason() {
        let transfer = row(&[
            (Col::ProviderName, "AWS"),
            (Col::RegionId, "us-east-1"),
            (Col::ServiceCategory, "Compute"),
            (Col::ServiceName, "Amazon Elastic Compute Cloud"),
            (Col::ChargeDescription, "$0.09 per GB - data transfer out"),
            (Col::ConsumedUnit, "GB"),
        ]);
        assert_eq!(
            classify(&transfer),
            Kind::Ignored("compute priced per GB, not per hour".into())
        );
        let s3 = row(&[
            (Col::ProviderName, "AWS"),
            (Col::ServiceCategory, "Storage"),
            (Col::UsageType, "TimedStorage-ByteHrs"),
        ]);
        assert_eq!(classify(&s3), Kind::Ignored("not compute: Storage".into()));
        let oracle = row(&[
            (Col::ProviderName, "Oracle"),
            (Col::ServiceCategory, "Compute"),
        ]);
        assert_eq!(
            classify(&oracle),
            Kind::Ignored("provider Oracle not supported".into())
        );
        let rds = row(&[
            (Col::ProviderName, "AWS"),
            (Col::ServiceCategory, "Databases"),
            (Col::SkuPriceDetails, r#"{"InstanceType": "db.r5.large"}"#),
        ]);
        assert_eq!(
            classify(&rds),
            Kind::Ignored("compute not modeled yet: database instances".into())
        );
        let lambda = row(&[(Col::ProviderName, "AWS"), (Col::ServiceName, "AWS Lambda")]);
        assert_eq!(
            classify(&lambda),
            Kind::Ignored("compute not modeled yet: Lambda".into())
        );
    }

    #[test]
    fn cache_returns_the_same_kind() {
        let mut c = Classifier::new();
        let r = row(&[
            (Col::ProviderName, "Microsoft"),
            (Col::RegionId, "eastus"),
            (Col::ServiceCategory, "Compute"),
            (Col::ServiceName, "Virtual Machines"),
            (
                Col::SkuPriceDetails,
                r#"{"InstanceType": "Standard_E8s_v5", "InstanceSeries": "Es_v5"}"#,
            ),
        ]);
        let a = c.classify(&r);
        let b = c.classify(&r);
        assert_eq!(a, b);
        // Moving text between columns is a different key.
        let mut moved = r.clone();
        moved.set(Col::RegionId, Val::from_text("east"));
        moved.set(Col::ServiceCategory, Val::from_text("usCompute"));
        assert!(!Classifier::matches(&Classifier::key(&r), &moved));
        assert!(Classifier::matches(&Classifier::key(&r), &r));
        let Kind::Vm(g) = c.kind(a) else {
            panic!("not a VM")
        };
        assert_eq!(g.family, "Esv5 Series");
    }
}
