//! Providers, instruments, terms and payment options: the vocabulary of commitments.
//!
//! Each is parsed once from the spellings found in FOCUS files, rate cards and policies, and is
//! an enum afterwards, so that an unknown instrument is an error at the edge, never a silent
//! fall-through in the optimizer.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' (expected one of: {expected})")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($variant:ident => $canon:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical spelling (the one the scenario format and the JSON output use).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $canon),+ }
            }

            /// Parses the canonical spelling or a known alias, ignoring case, spaces, '-' and '_'.
            pub fn parse(text: &str) -> Result<Self, ParseError> {
                let key: String = text
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '-' | '_'))
                    .flat_map(char::to_lowercase)
                    .collect();
                $(
                    if key == squash($canon) $(|| key == squash($alias))* {
                        return Ok($name::$variant);
                    }
                )+
                Err(ParseError {
                    what: $what,
                    value: text.to_string(),
                    expected: concat!($($canon, " "),+),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

string_enum!(
    /// A cloud provider. Spelled as FOCUS `ProviderName` spells it.
    Provider, "provider", {
        Aws => "AWS" | "Amazon Web Services" | "Amazon",
        Azure => "Microsoft" | "Azure" | "Microsoft Azure",
    }
);

string_enum!(
    /// A way to pay for compute. `OnDemand` is the list price every commitment is measured against.
    Instrument, "instrument", {
        OnDemand => "OnDemand" | "On Demand" | "Standard",
        ComputeSavingsPlan => "ComputeSavingsPlan" | "Compute Savings Plan",
        Ec2InstanceSavingsPlan => "EC2InstanceSavingsPlan" | "EC2 Instance Savings Plan",
        StandardReservedInstance => "StandardReservedInstance" | "Standard RI",
        ConvertibleReservedInstance => "ConvertibleReservedInstance" | "Convertible RI",
        AzureReservation => "AzureReservation" | "Reservation",
        AzureSavingsPlan => "AzureSavingsPlan" | "Savings plan for compute",
    }
);

string_enum!(
    /// How a commitment is paid. Azure reservations pay monthly (NoUpfront) or upfront
    /// (AllUpfront) for the same total.
    PaymentOption, "payment option", {
        NoUpfront => "NoUpfront" | "No Upfront" | "Monthly",
        PartialUpfront => "PartialUpfront" | "Partial Upfront",
        AllUpfront => "AllUpfront" | "All Upfront" | "Upfront",
    }
);

/// What a commitment commits to: a spend rate or a number of instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitmentKind {
    /// USD per hour of discounted spend (savings plans).
    Spend,
    /// A count of instances of a size, size-flexible within a family (RIs, reservations).
    Usage,
}

/// How broadly a commitment applies: the key of the providers' discount order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One family (AWS) or size-flexibility series (Azure) in one region.
    FamilyRegion,
    /// Anything of the provider's compute, any region.
    Provider,
}

impl Instrument {
    /// The provider that sells it (`None` for on-demand, which every provider has).
    pub fn provider(self) -> Option<Provider> {
        match self {
            Instrument::OnDemand => None,
            Instrument::ComputeSavingsPlan
            | Instrument::Ec2InstanceSavingsPlan
            | Instrument::StandardReservedInstance
            | Instrument::ConvertibleReservedInstance => Some(Provider::Aws),
            Instrument::AzureReservation | Instrument::AzureSavingsPlan => Some(Provider::Azure),
        }
    }

    pub fn kind(self) -> Option<CommitmentKind> {
        match self {
            Instrument::OnDemand => None,
            Instrument::ComputeSavingsPlan
            | Instrument::Ec2InstanceSavingsPlan
            | Instrument::AzureSavingsPlan => Some(CommitmentKind::Spend),
            Instrument::StandardReservedInstance
            | Instrument::ConvertibleReservedInstance
            | Instrument::AzureReservation => Some(CommitmentKind::Usage),
        }
    }

    pub fn scope(self) -> Scope {
        match self {
            Instrument::ComputeSavingsPlan
            | Instrument::AzureSavingsPlan
            | Instrument::OnDemand => Scope::Provider,
            _ => Scope::FamilyRegion,
        }
    }

    /// Position in the provider's discount order: lower applies first each hour.
    /// AWS: RIs, then EC2 Instance SPs, then Compute SPs. Azure: reservations, then savings plans.
    pub fn application_order(self) -> u8 {
        match self {
            Instrument::StandardReservedInstance
            | Instrument::ConvertibleReservedInstance
            | Instrument::AzureReservation => 0,
            Instrument::Ec2InstanceSavingsPlan => 1,
            Instrument::ComputeSavingsPlan | Instrument::AzureSavingsPlan => 2,
            Instrument::OnDemand => 3,
        }
    }

    /// Whether its remaining value can move to another configuration.
    pub fn is_exchangeable(self) -> bool {
        matches!(
            self,
            Instrument::ConvertibleReservedInstance | Instrument::AzureReservation
        )
    }

    pub fn is_commitment(self) -> bool {
        self != Instrument::OnDemand
    }

    /// FOCUS `CommitmentDiscountType` as the providers write it.
    pub fn focus_commitment_type(self) -> &'static str {
        match self {
            Instrument::OnDemand => "",
            Instrument::ComputeSavingsPlan
            | Instrument::Ec2InstanceSavingsPlan
            | Instrument::AzureSavingsPlan => "Savings Plan",
            Instrument::StandardReservedInstance | Instrument::ConvertibleReservedInstance => {
                "Reserved Instance"
            }
            Instrument::AzureReservation => "Reservation",
        }
    }
}

/// A commitment term. Only 1 and 3 years exist at AWS and Azure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(u8);

impl Term {
    pub const ONE_YEAR: Term = Term(1);
    pub const THREE_YEARS: Term = Term(3);

    pub fn from_years(years: u8) -> Result<Self, ParseError> {
        match years {
            1 | 3 => Ok(Term(years)),
            _ => Err(ParseError {
                what: "term",
                value: format!("{years} years"),
                expected: "1 3",
            }),
        }
    }

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let t = text.trim().trim_end_matches(['y', 'r', 's', 'Y']).trim();
        let years = t.parse::<f64>().ok().filter(|y| y.fract() == 0.0);
        match years {
            Some(y) if (0.0..=255.0).contains(&y) => Term::from_years(y as u8),
            _ => Err(ParseError {
                what: "term",
                value: text.to_string(),
                expected: "1 3",
            }),
        }
    }

    pub fn years(self) -> u8 {
        self.0
    }

    /// Hours the term lasts (8,760 per year, as both providers bill).
    pub fn hours(self) -> i64 {
        super::time::HOURS_PER_YEAR * self.0 as i64
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}yr", self.0)
    }
}

impl Serialize for Term {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Term {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let years = u8::deserialize(deserializer)?;
        Term::from_years(years).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spellings_and_refuses_unknown() {
        assert_eq!(Provider::parse("Microsoft").unwrap(), Provider::Azure);
        assert_eq!(Provider::parse("aws").unwrap(), Provider::Aws);
        assert_eq!(
            Instrument::parse("EC2InstanceSavingsPlan").unwrap(),
            Instrument::Ec2InstanceSavingsPlan
        );
        assert_eq!(
            Instrument::parse("compute_savings_plan").unwrap(),
            Instrument::ComputeSavingsPlan
        );
        let err = Instrument::parse("SpotBlock").unwrap_err();
        assert!(err.to_string().contains("unknown instrument 'SpotBlock'"));
        assert_eq!(
            PaymentOption::parse("All Upfront").unwrap(),
            PaymentOption::AllUpfront
        );
        assert_eq!(Term::parse("3").unwrap().hours(), 26_280);
        assert_eq!(Term::parse("1yr").unwrap(), Term::ONE_YEAR);
        assert!(Term::parse("2").is_err());
        assert!(Term::parse("1.5").is_err());
    }

    #[test]
    fn discount_order_follows_the_providers() {
        assert!(
            Instrument::StandardReservedInstance.application_order()
                < Instrument::Ec2InstanceSavingsPlan.application_order()
        );
        assert!(
            Instrument::Ec2InstanceSavingsPlan.application_order()
                < Instrument::ComputeSavingsPlan.application_order()
        );
        assert!(
            Instrument::AzureReservation.application_order()
                < Instrument::AzureSavingsPlan.application_order()
        );
    }
}
