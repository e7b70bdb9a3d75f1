//! The canonical form of an event and its hash: the bytes the chain commits to.
//!
//! Pure: no I/O, no clock. The exact rules are specified in `docs/audit.md` (section
//! "Canonical form"); this file is their reference implementation, and the golden test at
//! the bottom pins them, so that any change to the bytes is a deliberate, versioned change
//! (field `v`) rather than an accident that would break every stored chain.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Version of the canonical form, hashed as field `v`.
pub const CANONICAL_VERSION: i64 = 1;

/// `prev_hash` of the first event: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Fixed width RFC 3339 UTC: six fractional digits and a `Z`, so that text order is time order.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// An event exactly as stored: every column the hash covers, in its stored spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    /// Canonical time text (see [`format_time`]).
    pub time: String,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub amount_micros: Option<i64>,
    pub currency: Option<String>,
    /// Canonical JSON text of the payload object.
    pub payload: String,
    /// Canonical JSON text of the rationale object.
    pub rationale: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Why a stored record has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("{field} is not valid JSON: {reason}")]
    InvalidJson { field: &'static str, reason: String },
    #[error("{field} is not a JSON object")]
    NotAnObject { field: &'static str },
    #[error("time '{0}' is not canonical RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS.ffffffZ)")]
    InvalidTime(String),
}

/// The canonical time text: `2026-11-24T06:00:00.000000Z`. Sub-microsecond digits are
/// truncated (the log stores microseconds, like PostgreSQL's `timestamptz`).
pub fn format_time(time: DateTime<Utc>) -> String {
    time.format(TIME_FORMAT).to_string()
}

/// Parses canonical time text, refusing any other spelling (so that one instant has one text).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, CanonicalError> {
    let body = text
        .strip_suffix('Z')
        .ok_or_else(|| CanonicalError::InvalidTime(text.to_string()))?;
    let naive = NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.6f")
        .map_err(|_| CanonicalError::InvalidTime(text.to_string()))?;
    let time = naive.and_utc();
    if format_time(time) != text {
        return Err(CanonicalError::InvalidTime(text.to_string()));
    }
    Ok(time)
}

/// Canonical JSON text of a value: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped minimally (see [`write_string`]), numbers as serde_json prints them.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

/// Checks that stored JSON text is an object. The text itself is hashed verbatim, never
/// re-printed: serde_json's default float parser is not correctly rounded, so re-printing a
/// parsed float can change its last digit, and verify must not depend on that.
pub fn check_object(field: &'static str, text: &str) -> Result<Value, CanonicalError> {
    let value: Value = serde_json::from_str(text).map_err(|e| CanonicalError::InvalidJson {
        field,
        reason: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(CanonicalError::NotAnObject { field });
    }
    Ok(value)
}

/// The canonical form of a record: the exact text that is hashed. `hash` itself is not part
/// of it; `prev_hash` is, which is what chains each event to the one before.
///
/// A JSON object with the keys in sorted order; `payload` and `rationale` are embedded as
/// their stored text (which [`canonical_json`] produced at append), byte for byte.
pub fn canonical_form(record: &EventRecord) -> Result<String, CanonicalError> {
    parse_time(&record.time)?;
    check_object("payload", &record.payload)?;
    check_object("rationale", &record.rationale)?;
    let mut out = String::with_capacity(256 + record.payload.len() + record.rationale.len());
    out.push_str("{\"actor\":");
    write_string(&record.actor, &mut out);
    out.push_str(",\"amount_micros\":");
    match record.amount_micros {
        Some(micros) => out.push_str(&micros.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(",\"currency\":");
    match &record.currency {
        Some(currency) => write_string(currency, &mut out),
        None => out.push_str("null"),
    }
    out.push_str(",\"id\":");
    out.push_str(&record.id.to_string());
    out.push_str(",\"kind\":");
    write_string(&record.kind, &mut out);
    out.push_str(",\"payload\":");
    out.push_str(&record.payload);
    out.push_str(",\"prev_hash\":");
    write_string(&record.prev_hash, &mut out);
    out.push_str(",\"rationale\":");
    out.push_str(&record.rationale);
    out.push_str(",\"subject\":");
    write_string(&record.subject, &mut out);
    out.push_str(",\"time\":");
    write_string(&record.time, &mut out);
    out.push_str(",\"v\":");
    out.push_str(&CANONICAL_VERSION.to_string());
    out.push('}');
    Ok(out)
}

/// Lower-case hex SHA-256 of the canonical form's UTF-8 bytes.
pub fn compute_hash(record: &EventRecord) -> Result<String, CanonicalError> {
    let form = canonical_form(record)?;
    Ok(hex::encode(Sha256::digest(form.as_bytes())))
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Integers print as their digits; floats as the shortest text that parses back to
        // the same f64 (ryu), so print(parse(print(x))) == print(x) and stored text stays
        // canonical. Money is never a JSON number: it is a decimal string.
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here, not by relying on serde_json's map type: the `preserve_order`
            // feature (which any dependency may switch on) would keep insertion order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string: `"` and `\` escaped with a backslash; U+0008, U+0009, U+000A, U+000C,
/// U+000D as `\b \t \n \f \r`; other code points below U+0020 as `\u00xx` (lower-case hex);
/// everything else, including non-ASCII, as raw UTF-8.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn record() -> EventRecord {
        EventRecord {
            id: 1,
            time: "2026-11-24T06:00:00.000000Z".into(),
            kind: "approved".into(),
            actor: "alice".into(),
            subject: "p-1".into(),
            amount_micros: Some(1_500_000),
            currency: Some("USD".into()),
            payload: r#"{"proposal_id":"p-1","reason":null}"#.into(),
            rationale: "{}".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    /// Golden value: pins the canonical bytes and the hash. If this fails, stored chains
    /// would no longer verify; bump CANONICAL_VERSION instead of editing the expectation.
    #[test]
    fn golden_canonical_form_and_hash() {
        let rec = record();
        assert_eq!(
            canonical_form(&rec).unwrap(),
            concat!(
                r#"{"actor":"alice","amount_micros":1500000,"currency":"USD","id":1,"#,
                r#""kind":"approved","payload":{"proposal_id":"p-1","reason":null},"#,
                r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
                r#""rationale":{},"subject":"p-1","time":"2026-11-24T06:00:00.000000Z","v":1}"#
            )
        );
        // Computed independently with `printf '%s' '<the text above>' | sha256sum`.
        assert_eq!(
            compute_hash(&rec).unwrap(),
            "5b498e7bb1ee13fb41519d82e0a2c01a52cb4cf95fb1ee3c159c3596bb5847d4"
        );
    }

    type Edit = Box<dyn Fn(&mut EventRecord)>;

    #[test]
    fn every_field_changes_the_hash() {
        let base = compute_hash(&record()).unwrap();
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.id = 2),
            Box::new(|r| r.time = "2026-11-24T06:00:00.000001Z".into()),
            Box::new(|r| r.kind = "rejected".into()),
            Box::new(|r| r.actor = "mallory".into()),
            Box::new(|r| r.subject = "p-2".into()),
            Box::new(|r| r.amount_micros = Some(1_500_001)),
            Box::new(|r| r.amount_micros = None),
            Box::new(|r| r.currency = Some("EUR".into())),
            Box::new(|r| r.payload = r#"{"proposal_id":"p-1","reason":"ok"}"#.into()),
            Box::new(|r| r.rationale = r#"{"a":1}"#.into()),
            Box::new(|r| r.prev_hash = "1".repeat(64)),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut r = record();
            edit(&mut r);
            assert_ne!(compute_hash(&r).unwrap(), base, "edit {i} not covered");
        }
        // The stored hash column itself is not an input.
        let mut r = record();
        r.hash = "x".into();
        assert_eq!(compute_hash(&r).unwrap(), base);
    }

    #[test]
    fn keys_are_sorted_and_strings_escaped() {
        let v: Value =
            serde_json::from_str(r#"{"b":[1,2.5,{"z":null,"a":true}],"a":"q\"\\\n\u0001é/"}"#)
                .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"q\"\\\n\u0001é/","b":[1,2.5,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn stored_text_is_hashed_verbatim_and_must_be_objects() {
        let base = compute_hash(&record()).unwrap();
        // Same JSON value, other bytes: a different hash (the stored bytes are what counts).
        let mut r = record();
        r.payload = r#"{"reason":null,"proposal_id":"p-1"}"#.into();
        assert_ne!(compute_hash(&r).unwrap(), base);
        r = record();
        r.rationale = "[1]".into();
        assert!(matches!(
            canonical_form(&r),
            Err(CanonicalError::NotAnObject { field: "rationale" })
        ));
        r = record();
        r.payload = "{".into();
        assert!(matches!(
            canonical_form(&r),
            Err(CanonicalError::InvalidJson {
                field: "payload",
                ..
            })
        ));
        r = record();
        r.time = "2026-11-24T06:00:00Z".into();
        assert!(matches!(
            canonical_form(&r),
            Err(CanonicalError::InvalidTime(_))
        ));
    }

    #[test]
    fn canonical_form_is_valid_json_with_the_fixed_field_set() {
        let mut r = record();
        r.actor = "é \"quoted\"\n".into();
        r.amount_micros = None;
        r.currency = None;
        let form = canonical_form(&r).unwrap();
        let v: Value = serde_json::from_str(&form).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "actor",
                "amount_micros",
                "currency",
                "id",
                "kind",
                "payload",
                "prev_hash",
                "rationale",
                "subject",
                "time",
                "v"
            ]
        );
        assert_eq!(v["actor"], "é \"quoted\"\n");
        // Built by hand, it must equal the generic canonical printer on the same object.
        assert_eq!(canonical_json(&v), form);
    }

    #[test]
    fn time_text_is_fixed_width_and_round_trips() {
        let t = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .unwrap()
            .checked_add_signed(chrono::Duration::nanoseconds(123_456_789))
            .unwrap();
        let text = format_time(t);
        assert_eq!(text, "2026-01-02T03:04:05.123456Z");
        assert_eq!(format_time(parse_time(&text).unwrap()), text);
        assert!(parse_time("2026-01-02T03:04:05.123456+00:00").is_err());
    }

    proptest! {
        /// The hand-written printer agrees with an independent one: serde_json's compact
        /// printer over its default (BTreeMap, hence sorted) map, with the same escaping.
        #[test]
        fn canonical_json_matches_serde_json_on_sorted_maps(
            keys in proptest::collection::vec("[a-z\u{e9}\"\\\\\n\u{1}]{0,6}", 0..6),
            ints in proptest::collection::vec(any::<i64>(), 0..6),
            floats in proptest::collection::vec(-1e12f64..1e12, 0..6),
            text in "\\PC{0,12}",
        ) {
            let mut map = serde_json::Map::new();
            for (i, k) in keys.iter().enumerate() {
                let v = match i % 4 {
                    0 => Value::from(ints.get(i).copied().unwrap_or(0)),
                    1 => Value::from(floats.get(i).copied().unwrap_or(0.5)),
                    2 => Value::from(vec![Value::from(text.clone()), Value::Null, Value::from(true)]),
                    _ => Value::from(text.clone()),
                };
                map.insert(k.clone(), v);
            }
            let value = Value::Object(map);
            prop_assert_eq!(canonical_json(&value), serde_json::to_string(&value).unwrap());
        }
    }
}
