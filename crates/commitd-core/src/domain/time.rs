//! Hours: the unit of time of every bill, forecast and plan.
//!
//! Cloud commitments are billed hour by hour, so the whole core works on an integer hour index
//! ([`Hour`], hours since the Unix epoch, UTC) rather than on timestamps. Conversion to and from
//! timestamps happens once, in ingest and at the CLI.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Hours in a (non-leap) year: AWS and Azure terms are 8,760 h (1 year) or 26,280 h (3 years).
pub const HOURS_PER_YEAR: i64 = 8_760;

/// The start of one UTC hour, as hours since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hour(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("'{0}' is not a timestamp (expected RFC 3339 like 2025-09-01T00:00:00Z, or 2025-09-01 00:00:00)")]
    Unparseable(String),
    #[error("{0} is not on an hour boundary")]
    NotOnHour(String),
}

impl Hour {
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        Hour(t.timestamp().div_euclid(3600))
    }

    /// Accepts the timestamp spellings real FOCUS exports use: RFC 3339 ("2025-06-01T00:00:00Z",
    /// "+00:00" offsets, fractional seconds), "2024-09-18 22:00:00" (UTC implied), with a "T" and no
    /// zone, and a bare date. Timestamps inside an hour are refused: a charge period must start on one.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let t = parse_timestamp(text)?;
        if t.timestamp().rem_euclid(3600) != 0 {
            return Err(TimeError::NotOnHour(text.trim().to_string()));
        }
        Ok(Hour::from_datetime(t))
    }

    /// Like [`Hour::parse`] but rounds a timestamp inside an hour down to its hour.
    pub fn parse_floor(text: &str) -> Result<Self, TimeError> {
        parse_timestamp(text).map(Hour::from_datetime)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.0 * 3600, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    pub fn plus(self, hours: i64) -> Hour {
        Hour(self.0 + hours)
    }

    /// Hours from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: Hour) -> i64 {
        self.0 - earlier.0
    }

    /// Hour of the day, 0..24 (UTC).
    pub fn hour_of_day(self) -> u32 {
        self.0.rem_euclid(24) as u32
    }

    /// Hour of the week, 0..168, with 0 = Monday 00:00 UTC (1970-01-01 was a Thursday).
    pub fn hour_of_week(self) -> u32 {
        (self.0 + 72).rem_euclid(168) as u32
    }
}

/// Parses the timestamp spellings of FOCUS files and configuration.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, TimeError> {
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    // "2024-09-18 22:00:00+00:00", "2024-09-18 22:00:00Z"
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%#z") {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(stripped) = s.strip_suffix('Z').or_else(|| s.strip_suffix(" UTC")) {
        if let Ok(t) = NaiveDateTime::parse_from_str(stripped, "%Y-%m-%d %H:%M:%S") {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(TimeError::Unparseable(s.to_string()))
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl Serialize for Hour {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Hour {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hour::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A half-open range of hours `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRange {
    pub start: Hour,
    pub end: Hour,
}

impl HourRange {
    pub fn new(start: Hour, end: Hour) -> Self {
        HourRange { start, end }
    }

    pub fn len(&self) -> usize {
        self.end.since(self.start).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, h: Hour) -> bool {
        h >= self.start && h < self.end
    }

    /// Index of `h` inside the range, if it is inside.
    pub fn index(&self, h: Hour) -> Option<usize> {
        self.contains(h).then(|| h.since(self.start) as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = Hour> {
        (self.start.0..self.end.0).map(Hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_focus_spellings() {
        let a = Hour::parse("2024-09-18 22:00:00").unwrap();
        let b = Hour::parse("2024-09-18T22:00:00Z").unwrap();
        let c = Hour::parse("2024-09-18T22:00:00.000+00:00").unwrap();
        let d = Hour::parse("2024-09-18T23:00:00+01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(c, d);
        assert_eq!(a.to_string(), "2024-09-18T22:00:00Z");
        assert!(Hour::parse("2024-09-18 22:30:00").is_err());
        assert_eq!(Hour::parse_floor("2024-09-18 22:30:00").unwrap(), a);
        assert!(Hour::parse("yesterday").is_err());
    }

    #[test]
    fn calendar_positions() {
        // 2025-09-01 was a Monday.
        let monday = Hour::parse("2025-09-01T00:00:00Z").unwrap();
        assert_eq!(monday.hour_of_week(), 0);
        assert_eq!(monday.plus(30).hour_of_day(), 6);
        assert_eq!(monday.plus(30).hour_of_week(), 30);
    }

    #[test]
    fn ranges_index_half_open() {
        let r = HourRange::new(Hour(10), Hour(13));
        assert_eq!(r.len(), 3);
        assert_eq!(r.index(Hour(12)), Some(2));
        assert_eq!(r.index(Hour(13)), None);
        assert_eq!(r.iter().count(), 3);
    }
}
