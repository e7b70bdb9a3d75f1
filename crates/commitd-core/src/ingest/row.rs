//! The FOCUS columns ingest reads, and one row's values whatever the file format.
//!
//! CSV gives text; Parquet gives typed arrays (Utf8, Float64, Decimal128, Timestamp, ...).
//! Both sources fill a [`Row`] of [`Val`]s indexed by [`Col`], and the classification and
//! accumulation code reads only that, so the two formats cannot drift apart in meaning.

use crate::domain::{Hour, Money};
use std::borrow::Cow;

/// The columns ingest uses. Every other column (unknown, `x_` we do not need) is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Col {
    ChargeCategory,
    ChargeClass,
    ChargePeriodStart,
    ChargePeriodEnd,
    ProviderName,
    BillingCurrency,
    RegionId,
    ServiceCategory,
    ServiceName,
    ListCost,
    ListUnitPrice,
    EffectiveCost,
    BilledCost,
    ConsumedQuantity,
    ConsumedUnit,
    PricingQuantity,
    PricingUnit,
    PricingCategory,
    CommitmentDiscountId,
    CommitmentDiscountType,
    CommitmentDiscountCategory,
    CommitmentDiscountStatus,
    SkuPriceDetails,
    SubAccountId,
    ChargeDescription,
    ResourceType,
    UsageType,
}

pub const N_COLS: usize = 27;

impl Col {
    pub const ALL: [Col; N_COLS] = [
        Col::ChargeCategory,
        Col::ChargeClass,
        Col::ChargePeriodStart,
        Col::ChargePeriodEnd,
        Col::ProviderName,
        Col::BillingCurrency,
        Col::RegionId,
        Col::ServiceCategory,
        Col::ServiceName,
        Col::ListCost,
        Col::ListUnitPrice,
        Col::EffectiveCost,
        Col::BilledCost,
        Col::ConsumedQuantity,
        Col::ConsumedUnit,
        Col::PricingQuantity,
        Col::PricingUnit,
        Col::PricingCategory,
        Col::CommitmentDiscountId,
        Col::CommitmentDiscountType,
        Col::CommitmentDiscountCategory,
        Col::CommitmentDiscountStatus,
        Col::SkuPriceDetails,
        Col::SubAccountId,
        Col::ChargeDescription,
        Col::ResourceType,
        Col::UsageType,
    ];

    /// Accepted header names, preferred first. FOCUS 1.3 renames ProviderName to
    /// ServiceProviderName (keeping the old one deprecated); pre-1.0 exports wrote Region.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Col::ChargeCategory => &["ChargeCategory"],
            Col::ChargeClass => &["ChargeClass"],
            Col::ChargePeriodStart => &["ChargePeriodStart"],
            Col::ChargePeriodEnd => &["ChargePeriodEnd"],
            Col::ProviderName => &["ProviderName", "ServiceProviderName"],
            Col::BillingCurrency => &["BillingCurrency"],
            Col::RegionId => &["RegionId", "Region"],
            Col::ServiceCategory => &["ServiceCategory"],
            Col::ServiceName => &["ServiceName"],
            Col::ListCost => &["ListCost"],
            Col::ListUnitPrice => &["ListUnitPrice"],
            Col::EffectiveCost => &["EffectiveCost"],
            Col::BilledCost => &["BilledCost"],
            Col::ConsumedQuantity => &["ConsumedQuantity"],
            Col::ConsumedUnit => &["ConsumedUnit"],
            Col::PricingQuantity => &["PricingQuantity"],
            Col::PricingUnit => &["PricingUnit"],
            Col::PricingCategory => &["PricingCategory"],
            Col::CommitmentDiscountId => &["CommitmentDiscountId"],
            Col::CommitmentDiscountType => &["CommitmentDiscountType"],
            Col::CommitmentDiscountCategory => &["CommitmentDiscountCategory"],
            Col::CommitmentDiscountStatus => &["CommitmentDiscountStatus"],
            Col::SkuPriceDetails => &["SkuPriceDetails"],
            Col::SubAccountId => &["SubAccountId"],
            Col::ChargeDescription => &["ChargeDescription"],
            Col::ResourceType => &["ResourceType"],
            Col::UsageType => &["x_UsageType"],
        }
    }

    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    /// Columns without which no row can be classified or priced. Quantity is checked
    /// separately: either ConsumedQuantity or PricingQuantity will do.
    pub const REQUIRED: [Col; 9] = [
        Col::ChargeCategory,
        Col::ChargePeriodStart,
        Col::ProviderName,
        Col::BillingCurrency,
        Col::RegionId,
        Col::ServiceCategory,
        Col::ServiceName,
        Col::ListCost,
        Col::EffectiveCost,
    ];
}

/// Maps each [`Col`] to its position in a file's header (case-insensitive), or `None`.
#[derive(Clone, Debug)]
pub struct ColumnMap {
    pub index: [Option<usize>; N_COLS],
}

impl ColumnMap {
    pub fn from_header<'h>(header: impl IntoIterator<Item = &'h str>) -> Self {
        let names: Vec<String> = header
            .into_iter()
            // A UTF-8 byte-order mark before the first header is common in Excel-touched CSVs.
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        let mut index = [None; N_COLS];
        for (slot, col) in index.iter_mut().zip(Col::ALL) {
            *slot = col
                .names()
                .iter()
                .find_map(|n| names.iter().position(|h| h == &n.to_ascii_lowercase()));
        }
        ColumnMap { index }
    }

    pub fn get(&self, col: Col) -> Option<usize> {
        self.index[col as usize]
    }

    /// The first required column the header lacks, by its FOCUS name.
    pub fn missing_required(&self) -> Option<&'static str> {
        for col in Col::REQUIRED {
            if self.get(col).is_none() {
                return Some(col.name());
            }
        }
        if self.get(Col::ConsumedQuantity).is_none() && self.get(Col::PricingQuantity).is_none() {
            return Some("ConsumedQuantity (or PricingQuantity)");
        }
        None
    }
}

/// A fast, non-cryptographic hasher for the per-row lookups (classification cache,
/// sub-accounts): keys come from the bill, not from an attacker, and SipHash showed up as
/// a tenth of ingest time.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// One cell, as the source had it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    Null,
    Str(&'a str),
    F64(f64),
    I64(i64),
    /// A Parquet DECIMAL: `value * 10^-scale`.
    Dec(i128, i8),
    /// A Parquet TIMESTAMP, as seconds since the epoch (UTC).
    Seconds(i64),
}

/// Why one cell could not be read; the source adds file and row.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub col: Col,
    pub value: String,
    pub reason: String,
}

impl<'a> Val<'a> {
    /// CSV text to a value: FOCUS exports write "NULL" (any case) or nothing for null.
    pub fn from_text(s: &'a str) -> Val<'a> {
        // Hot path (every cell of every row): most cells have no surrounding spaces, so check
        // the two ends before paying for a full trim.
        let b = s.as_bytes();
        let t = match (b.first(), b.last()) {
            (Some(f), Some(l)) if !f.is_ascii_whitespace() && !l.is_ascii_whitespace() => s,
            _ => s.trim(),
        };
        if t.is_empty() || (t.len() == 4 && t.eq_ignore_ascii_case("null")) {
            Val::Null
        } else {
            Val::Str(t)
        }
    }

    fn describe(&self) -> String {
        match self {
            Val::Null => "NULL".into(),
            Val::Str(s) => (*s).to_string(),
            Val::F64(v) => v.to_string(),
            Val::I64(v) => v.to_string(),
            Val::Dec(v, s) => format!("{v}e-{s}"),
            Val::Seconds(v) => format!("{v} s since epoch"),
        }
    }
}

/// One row: a value per [`Col`] (Null where the file has no such column).
#[derive(Clone, Debug)]
pub struct Row<'a> {
    pub vals: [Val<'a>; N_COLS],
}

impl<'a> Row<'a> {
    pub fn new() -> Self {
        Row {
            vals: [Val::Null; N_COLS],
        }
    }

    pub fn get(&self, col: Col) -> Val<'a> {
        self.vals[col as usize]
    }

    pub fn set(&mut self, col: Col, v: Val<'a>) {
        self.vals[col as usize] = v;
    }

    /// Text of a cell; numbers typed in Parquet (an Int64 SubAccountId) are formatted.
    pub fn text(&self, col: Col) -> Option<Cow<'a, str>> {
        match self.get(col) {
            Val::Null => None,
            Val::Str(s) => Some(Cow::Borrowed(s)),
            other => Some(Cow::Owned(other.describe())),
        }
    }

    /// Borrowed text only (classification keys); typed cells count as absent.
    pub fn str(&self, col: Col) -> Option<&'a str> {
        match self.get(col) {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is(&self, col: Col, expected: &str) -> bool {
        self.str(col)
            .is_some_and(|s| s.eq_ignore_ascii_case(expected))
    }

    fn err(&self, col: Col, reason: impl Into<String>) -> FieldError {
        FieldError {
            col,
            value: self.get(col).describe(),
            reason: reason.into(),
        }
    }

    /// A number (quantities, unit prices). NaN and infinities are refused.
    pub fn number(&self, col: Col) -> Result<Option<f64>, FieldError> {
        let v = match self.get(col) {
            Val::Null => return Ok(None),
            Val::Str(s) => s
                .parse::<f64>()
                .map_err(|_| self.err(col, "not a number"))?,
            Val::F64(v) => v,
            Val::I64(v) => v as f64,
            Val::Dec(v, s) => v as f64 / 10f64.powi(s as i32),
            Val::Seconds(_) => return Err(self.err(col, "a timestamp where a number belongs")),
        };
        if v.is_finite() {
            Ok(Some(v))
        } else {
            Err(self.err(col, "not a finite number (NaN or infinity)"))
        }
    }

    /// An amount of money: exact (micro-dollars) for totals, and as a float for hourly series.
    pub fn money(&self, col: Col) -> Result<Option<(Money, f64)>, FieldError> {
        let Some(f) = self.number(col)? else {
            return Ok(None);
        };
        let exact = match self.get(col) {
            Val::Str(s) => Money::parse(s).map_err(|e| self.err(col, e.to_string()))?,
            Val::Dec(v, s) => rust_decimal::Decimal::try_from_i128_with_scale(v, s.max(0) as u32)
                .ok()
                .and_then(Money::from_decimal)
                .ok_or_else(|| self.err(col, "decimal out of range"))?,
            _ => money_from_f64(f).map_err(|e| self.err(col, e))?,
        };
        Ok(Some((exact, f)))
    }

    pub fn hour(&self, col: Col) -> Result<Option<Hour>, FieldError> {
        match self.get(col) {
            Val::Null => Ok(None),
            Val::Str(s) => Hour::parse(s)
                .map(Some)
                .map_err(|e| self.err(col, e.to_string())),
            Val::Seconds(secs) => {
                if secs.rem_euclid(3600) != 0 {
                    Err(self.err(col, "not on an hour boundary"))
                } else {
                    Ok(Some(Hour(secs.div_euclid(3600))))
                }
            }
            _ => Err(self.err(col, "a number where a timestamp belongs")),
        }
    }
}

/// A Parquet DOUBLE to micro-units, rounding exactly as [`Money::parse`] rounds the decimal text
/// a CSV writer would print for it (its shortest round-trip form), so that CSV and Parquet
/// copies of one bill give identical totals. Only values that land near a half micro-unit need
/// the text, so the slow path is rare.
pub fn money_from_f64(v: f64) -> Result<Money, String> {
    let x = v * Money::MICROS_PER_UNIT as f64;
    let frac = (x - x.trunc()).abs();
    if (frac - 0.5).abs() < 1e-6 && x.abs() < 1e15 {
        return Money::parse(&format!("{v}")).map_err(|e| e.to_string());
    }
    Money::from_f64(v).map_err(|e| e.to_string())
}

impl Default for Row<'_> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matching_is_case_insensitive_and_accepts_aliases() {
        let m = ColumnMap::from_header(["\u{feff}chargecategory", "ServiceProviderName", "Region"]);
        assert_eq!(m.get(Col::ChargeCategory), Some(0));
        assert_eq!(m.get(Col::ProviderName), Some(1));
        assert_eq!(m.get(Col::RegionId), Some(2));
        assert_eq!(m.missing_required(), Some("ChargePeriodStart"));
    }

    #[test]
    fn values_parse_or_name_the_problem() {
        let mut r = Row::new();
        r.set(Col::ListCost, Val::from_text(" 3.025008 "));
        r.set(Col::EffectiveCost, Val::from_text("NULL"));
        r.set(Col::BilledCost, Val::from_text("NaN"));
        r.set(Col::ConsumedQuantity, Val::Dec(12345, 2));
        r.set(Col::ChargePeriodStart, Val::Seconds(3600 * 10));
        r.set(Col::ChargePeriodEnd, Val::Seconds(3600 * 10 + 5));
        let (m, f) = r.money(Col::ListCost).unwrap().unwrap();
        assert_eq!(m.micros(), 3_025_008);
        assert!((f - 3.025008).abs() < 1e-12);
        assert_eq!(r.money(Col::EffectiveCost).unwrap(), None);
        let e = r.money(Col::BilledCost).unwrap_err();
        assert!(e.reason.contains("NaN"), "{e:?}");
        assert_eq!(r.number(Col::ConsumedQuantity).unwrap(), Some(123.45));
        assert_eq!(r.hour(Col::ChargePeriodStart).unwrap(), Some(Hour(10)));
        assert!(r.hour(Col::ChargePeriodEnd).is_err());
    }

    #[test]
    fn doubles_round_like_their_decimal_text() {
        for text in [
            "2.5629695",
            "2.5629685",
            "0.0000005",
            "0.0000015",
            "-3.1234565",
            "17.25",
        ] {
            let f: f64 = text.parse().unwrap();
            assert_eq!(
                money_from_f64(f).unwrap(),
                Money::parse(text).unwrap(),
                "{text}"
            );
        }
    }
}
