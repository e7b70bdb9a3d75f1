//! Exact money: integer micro-dollars.
//!
//! Money that is stored, audited or reported as a total is a [`Money`]: an `i64` count of
//! micro-units of the billing currency (USD unless a file says otherwise). Floats are used only
//! inside the forecast, the solver and the hour-by-hour billing simulation, and are converted back
//! with [`Money::from_f64`] at the edge (rounding stated there).

use rust_decimal::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

/// An exact amount of money in micro-units (1e-6) of the currency.
///
/// Serialized as a decimal string ("12.345678") so that JSON consumers never see a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Why a piece of text is not an amount of money.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not a decimal number")]
    NotANumber(String),
    #[error("'{0}' is out of range for an amount of money")]
    OutOfRange(String),
    #[error("{0} is not a finite number")]
    NotFinite(f64),
}

impl Money {
    pub const ZERO: Money = Money(0);
    pub const MICROS_PER_UNIT: i64 = 1_000_000;

    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Whole currency units, e.g. `Money::from_units(3)` is $3.
    pub const fn from_units(units: i64) -> Self {
        Money(units * Self::MICROS_PER_UNIT)
    }

    /// Parses a decimal string exactly; more than six decimals are rounded half-to-even
    /// (banker's rounding, so that rounding errors over many rows do not drift one way).
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let trimmed = text.trim();
        let value = Decimal::from_str_exact(trimmed)
            .or_else(|_| Decimal::from_scientific(trimmed))
            .map_err(|_| MoneyError::NotANumber(text.to_string()))?;
        Self::from_decimal(value).ok_or_else(|| MoneyError::OutOfRange(text.to_string()))
    }

    /// Exact conversion from a decimal, rounding half-to-even at the sixth decimal.
    pub fn from_decimal(value: Decimal) -> Option<Self> {
        let micros = (value * Decimal::from(Self::MICROS_PER_UNIT))
            .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
        micros.to_i64().map(Money)
    }

    /// Converts a float (from a Parquet DOUBLE column or the solver) to the nearest micro-unit.
    /// A Parquet double carries about 15-16 significant digits, so any bill amount below
    /// $1e9 survives this conversion exactly at the micro-dollar.
    pub fn from_f64(value: f64) -> Result<Self, MoneyError> {
        if !value.is_finite() {
            return Err(MoneyError::NotFinite(value));
        }
        let micros = (value * Self::MICROS_PER_UNIT as f64).round();
        if micros.abs() >= i64::MAX as f64 {
            return Err(MoneyError::OutOfRange(value.to_string()));
        }
        Ok(Money(micros as i64))
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 6)
    }

    /// For floats-only arithmetic (forecast, solver, reports).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / Self::MICROS_PER_UNIT as f64
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Multiplies by a count (e.g. hours), exactly.
    pub fn times(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).map(Money)
    }
}

impl fmt::Display for Money {
    /// Canonical form: minimal decimal, at most six decimals ("12.5", "-0.000001", "3").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_decimal().normalize())
    }
}

impl Money {
    /// The amount as people read it, in USD: "USD 1,713.01" (rounded half-to-even to the cent,
    /// thousands separated by commas, the sign before the digits: "USD -1,000.50"). The one
    /// formatter of money for people (terminal output and the web console); JSON, CSV and the
    /// audit log keep the exact figure ([`fmt::Display`]).
    pub fn for_people(self) -> String {
        self.for_people_in("USD")
    }

    /// [`Money::for_people`] in another currency code ("EUR 12.00").
    pub fn for_people_in(self, currency: &str) -> String {
        let micros = i128::from(self.0);
        let q = micros.div_euclid(10_000);
        let r = micros.rem_euclid(10_000);
        let cents = if r > 5_000 || (r == 5_000 && q % 2 != 0) {
            q + 1
        } else {
            q
        };
        let sign = if cents < 0 { "-" } else { "" };
        let c = cents.abs();
        let digits = (c / 100).to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        format!("{currency} {sign}{grouped}.{:02}", c % 100)
    }
}

impl std::str::FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Int(i64),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Money::parse(&text).map_err(serde::de::Error::custom),
            Repr::Int(units) => units
                .checked_mul(Money::MICROS_PER_UNIT)
                .map(Money)
                .ok_or_else(|| serde::de::Error::custom("amount out of range")),
        }
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        self.0 -= rhs.0;
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_people_read_it() {
        let m = |s: &str| Money::parse(s).unwrap().for_people();
        assert_eq!(m("1713.00924"), "USD 1,713.01");
        assert_eq!(m("0"), "USD 0.00");
        assert_eq!(m("17520"), "USD 17,520.00");
        assert_eq!(m("1234567.891"), "USD 1,234,567.89");
        assert_eq!(m("100"), "USD 100.00");
        assert_eq!(m("999999.994"), "USD 999,999.99");
        // Half to even at the cent.
        assert_eq!(m("0.125"), "USD 0.12");
        assert_eq!(m("0.135"), "USD 0.14");
        assert_eq!(m("-0.005"), "USD 0.00");
        assert_eq!(m("-0.015"), "USD -0.02");
        assert_eq!(m("-1000.5"), "USD -1,000.50");
        assert_eq!(m("999.999"), "USD 1,000.00");
        assert_eq!(
            Money::from_micros(i64::MAX).for_people(),
            "USD 9,223,372,036,854.78"
        );
        assert_eq!(
            Money::parse("12").unwrap().for_people_in("EUR"),
            "EUR 12.00"
        );
    }

    #[test]
    fn parses_exactly_and_rounds_half_even() {
        assert_eq!(Money::parse("3.025008").unwrap().micros(), 3_025_008);
        assert_eq!(Money::parse(" 12 ").unwrap(), Money::from_units(12));
        assert_eq!(Money::parse("0.0000005").unwrap().micros(), 0);
        assert_eq!(Money::parse("0.0000015").unwrap().micros(), 2);
        assert_eq!(Money::parse("2.5629696").unwrap().micros(), 2_562_970);
        assert_eq!(Money::parse("1e-3").unwrap().micros(), 1_000);
        assert!(Money::parse("abc").is_err());
        assert!(Money::parse("").is_err());
    }

    #[test]
    fn displays_canonical_form_and_round_trips_json() {
        let m = Money::from_micros(12_500_000);
        assert_eq!(m.to_string(), "12.5");
        assert_eq!(Money::from_micros(-1).to_string(), "-0.000001");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"12.5\"");
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn floats_convert_to_nearest_micro_and_reject_nan() {
        assert_eq!(Money::from_f64(0.1 + 0.2).unwrap().micros(), 300_000);
        assert!(Money::from_f64(f64::NAN).is_err());
        assert!(Money::from_f64(f64::INFINITY).is_err());
    }
}
