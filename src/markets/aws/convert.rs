//! Pure conversions between AWS wire values and commitd's domain types: terms in seconds,
//! payment option spellings, product descriptions, tenancies, timestamps and prices.
//!
//! EC2 returns RI prices as 32-bit floats; they are converted through their shortest decimal
//! spelling ("0.062", not 0.0620000004768...), which is what AWS wrote on its side, so the
//! rate card and the money totals stay exact decimals.

use crate::domain::{Instrument, PaymentOption, Term};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Seconds in a 1-year and a 3-year term as AWS counts them (365 and 3 x 365 days).
pub const ONE_YEAR_SECONDS: i64 = 31_536_000;
pub const THREE_YEARS_SECONDS: i64 = 94_608_000;

/// The term of a duration in seconds; AWS only sells 1- and 3-year terms.
pub fn term_from_seconds(seconds: i64) -> Option<Term> {
    match seconds {
        ONE_YEAR_SECONDS => Some(Term::ONE_YEAR),
        THREE_YEARS_SECONDS => Some(Term::THREE_YEARS),
        _ => None,
    }
}

pub fn seconds_of(term: Term) -> i64 {
    if term == Term::THREE_YEARS {
        THREE_YEARS_SECONDS
    } else {
        ONE_YEAR_SECONDS
    }
}

/// "No Upfront" / "Partial Upfront" / "All Upfront" (both Savings Plans and EC2 spell them so).
pub fn payment_from_aws(text: &str) -> Option<PaymentOption> {
    match text {
        "No Upfront" => Some(PaymentOption::NoUpfront),
        "Partial Upfront" => Some(PaymentOption::PartialUpfront),
        "All Upfront" => Some(PaymentOption::AllUpfront),
        _ => None,
    }
}

pub fn payment_to_aws(payment: PaymentOption) -> &'static str {
    match payment {
        PaymentOption::NoUpfront => "No Upfront",
        PaymentOption::PartialUpfront => "Partial Upfront",
        PaymentOption::AllUpfront => "All Upfront",
    }
}

/// Share of the total paid upfront for a payment option (what the rate card records).
pub fn upfront_share(payment: PaymentOption) -> Decimal {
    match payment {
        PaymentOption::NoUpfront => Decimal::ZERO,
        PaymentOption::PartialUpfront => Decimal::new(5, 1),
        PaymentOption::AllUpfront => Decimal::ONE,
    }
}

/// Savings plan type ("Compute", "EC2Instance") to instrument; other plan types (SageMaker,
/// Database) cover services commitd does not model.
pub fn savings_plan_instrument(plan_type: &str) -> Option<Instrument> {
    match plan_type {
        "Compute" => Some(Instrument::ComputeSavingsPlan),
        "EC2Instance" => Some(Instrument::Ec2InstanceSavingsPlan),
        _ => None,
    }
}

pub fn savings_plan_type(instrument: Instrument) -> Option<&'static str> {
    match instrument {
        Instrument::ComputeSavingsPlan => Some("Compute"),
        Instrument::Ec2InstanceSavingsPlan => Some("EC2Instance"),
        _ => None,
    }
}

/// RI offering class ("standard", "convertible") to instrument.
pub fn ri_instrument(class: &str) -> Option<Instrument> {
    match class {
        "standard" => Some(Instrument::StandardReservedInstance),
        "convertible" => Some(Instrument::ConvertibleReservedInstance),
        _ => None,
    }
}

/// AWS product descriptions to the rate card's operating system names ("Linux", "Windows").
pub fn os_from_product_description(text: &str) -> String {
    let t = text.trim_end_matches(" (Amazon VPC)");
    match t {
        "Linux/UNIX" | "Linux" => "Linux".to_string(),
        "Windows" => "Windows".to_string(),
        "Red Hat Enterprise Linux" => "RHEL".to_string(),
        "SUSE Linux" => "SUSE".to_string(),
        other => other.to_string(),
    }
}

/// The product description EC2 expects for an operating system name.
pub fn product_description_for_os(os: &str) -> &str {
    match os {
        "Linux" => "Linux/UNIX",
        "RHEL" => "Red Hat Enterprise Linux",
        "SUSE" => "SUSE Linux",
        other => other,
    }
}

/// "default"/"shared" to "Shared", "dedicated" to "Dedicated" (the rate card's spelling).
pub fn tenancy_from_aws(text: &str) -> String {
    match text {
        "default" | "shared" | "Shared" | "" => "Shared".to_string(),
        "dedicated" | "Dedicated" => "Dedicated".to_string(),
        "host" => "Host".to_string(),
        other => other.to_string(),
    }
}

/// The family of an instance type: "m5" for "m5.large".
pub fn family_of(instance_type: &str) -> String {
    instance_type
        .split_once('.')
        .map(|(f, _)| f)
        .unwrap_or(instance_type)
        .to_string()
}

/// The region of an availability zone: "us-east-1" for "us-east-1a".
pub fn region_of_zone(zone: &str) -> String {
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
        .to_string()
}

/// A 32-bit price from EC2 as the decimal AWS wrote.
pub fn decimal_from_f32(value: f32) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    Decimal::from_str(&value.to_string()).ok()
}

pub fn decimal_from_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    Decimal::from_str(&value.to_string()).ok()
}

/// A decimal string from a JSON API ("0.123", "100").
pub fn decimal_from_str(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text.trim())
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .ok()
}

/// Savings Plans write timestamps as strings ("2025-01-01T00:00:00.000Z").
pub fn datetime_from_str(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The SDK's timestamp type to chrono.
pub fn datetime_from_smithy(t: &aws_sdk_ec2::primitives::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

pub fn smithy_from_datetime(t: DateTime<Utc>) -> aws_sdk_ec2::primitives::DateTime {
    aws_sdk_ec2::primitives::DateTime::from_secs(t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_payments_and_products_map_both_ways() {
        assert_eq!(term_from_seconds(31_536_000), Some(Term::ONE_YEAR));
        assert_eq!(term_from_seconds(94_608_000), Some(Term::THREE_YEARS));
        assert_eq!(term_from_seconds(31_536_001), None);
        assert_eq!(seconds_of(Term::THREE_YEARS), THREE_YEARS_SECONDS);
        for p in PaymentOption::ALL {
            assert_eq!(payment_from_aws(payment_to_aws(*p)), Some(*p));
        }
        assert_eq!(payment_from_aws("Heavy Utilization"), None);
        assert_eq!(
            os_from_product_description("Linux/UNIX (Amazon VPC)"),
            "Linux"
        );
        assert_eq!(product_description_for_os("Linux"), "Linux/UNIX");
        assert_eq!(tenancy_from_aws("default"), "Shared");
        assert_eq!(family_of("m5.xlarge"), "m5");
        assert_eq!(region_of_zone("eu-west-1b"), "eu-west-1");
        assert_eq!(savings_plan_instrument("SageMaker"), None);
        assert_eq!(
            ri_instrument("convertible"),
            Some(Instrument::ConvertibleReservedInstance)
        );
    }

    #[test]
    fn f32_prices_keep_the_decimal_aws_wrote() {
        assert_eq!(decimal_from_f32(0.062).unwrap().to_string(), "0.062");
        assert_eq!(decimal_from_f32(1234.5).unwrap().to_string(), "1234.5");
        assert_eq!(decimal_from_f32(f32::NAN), None);
        assert_eq!(
            datetime_from_str("2025-03-01T00:00:00.000Z")
                .unwrap()
                .to_rfc3339(),
            "2025-03-01T00:00:00+00:00"
        );
    }
}
