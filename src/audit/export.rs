//! Exports for finance: CSV with a fixed column set, and JSONL with every field.
//!
//! The CSV has the same header whatever the events, so a spreadsheet or a warehouse load
//! job can rely on it: envelope columns, then the finance-relevant payload and rationale
//! fields flattened (empty where an event does not have them), then the full payload and
//! rationale as JSON for anything else, then the hashes so a row can be checked against
//! `commitd audit verify`. Amounts are decimal strings, never floats.

use super::event::Event;
use super::log::{decode, AuditError, AuditLog, EventFilter};
use serde_json::{json, Value};
use std::io::Write;

/// Export file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// Columns flattened from the payload (first) or the rationale (second), in CSV order.
pub const FLATTENED_FIELDS: &[&str] = &[
    "proposal_id",
    "plan_id",
    "provider",
    "instrument",
    "term",
    "payment_option",
    "region",
    "family",
    "hourly_commitment",
    "upfront",
    "expected_savings",
    "expected_utilization",
    "reason",
    "idempotency_key",
    "provider_request_id",
    "commitment_id",
    "error",
    "retryable",
    "policy",
    "rule",
];

/// The full CSV header.
pub fn csv_header() -> Vec<&'static str> {
    let mut header = vec![
        "id", "time", "kind", "actor", "subject", "amount", "currency",
    ];
    header.extend_from_slice(FLATTENED_FIELDS);
    header.extend_from_slice(&["payload", "rationale", "prev_hash", "hash"]);
    header
}

/// One event as a JSON object (JSONL line, `audit show --json`).
pub fn event_json(event: &Event) -> Value {
    let payload = event.body.payload().unwrap_or(Value::Null);
    json!({
        "id": event.id,
        "time": super::canonical::format_time(event.time),
        "kind": event.kind().as_str(),
        "actor": event.actor,
        "subject": event.subject,
        "amount": event.amount.as_ref().map(|a| a.money.to_string()),
        "amount_micros": event.amount.as_ref().map(|a| a.money.micros()),
        "currency": event.amount.as_ref().map(|a| a.currency.clone()),
        "payload": payload,
        "rationale": event.rationale,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    })
}

/// One CSV row, aligned with [`csv_header`].
pub fn csv_row(event: &Event) -> Vec<String> {
    let payload = event.body.payload().unwrap_or(Value::Null);
    let mut row = vec![
        event.id.to_string(),
        super::canonical::format_time(event.time),
        event.kind().as_str().to_string(),
        event.actor.clone(),
        event.subject.clone(),
        event
            .amount
            .as_ref()
            .map(|a| a.money.to_string())
            .unwrap_or_default(),
        event
            .amount
            .as_ref()
            .map(|a| a.currency.clone())
            .unwrap_or_default(),
    ];
    for field in FLATTENED_FIELDS {
        let value = payload
            .get(field)
            .filter(|v| !v.is_null())
            .or_else(|| event.rationale.get(field));
        row.push(value.map(cell).unwrap_or_default());
    }
    row.push(payload.to_string());
    row.push(event.rationale.to_string());
    row.push(event.prev_hash.clone());
    row.push(event.hash.clone());
    row
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl AuditLog {
    /// Writes the events matching `filter` (chain order) to `out`; returns how many.
    /// Streams: one page of events in memory at a time.
    pub async fn export(
        &self,
        filter: &EventFilter,
        format: ExportFormat,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, AuditError> {
        let io = |e: std::io::Error| AuditError::Export(e.to_string());
        let mut count = 0u64;
        match format {
            ExportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer
                    .write_record(csv_header())
                    .map_err(|e| AuditError::Export(e.to_string()))?;
                self.walk(filter, |rec| {
                    let event = decode(rec)?;
                    writer
                        .write_record(csv_row(&event))
                        .map_err(|e| AuditError::Export(e.to_string()))?;
                    count += 1;
                    Ok(true)
                })
                .await?;
                writer.flush().map_err(io)?;
            }
            ExportFormat::Jsonl => {
                self.walk(filter, |rec| {
                    let (payload_json, rationale_json) =
                        (rec.payload.clone(), rec.rationale.clone());
                    let event = decode(rec)?;
                    let mut line = event_json(&event);
                    // The stored text, byte for byte, that the hash covers: `payload` above is
                    // re-printed from the typed struct and may differ in bytes (a field added
                    // since, a float's spelling), so an independent verifier hashes these.
                    line["payload_json"] = Value::String(payload_json);
                    line["rationale_json"] = Value::String(rationale_json);
                    writeln!(out, "{line}").map_err(io)?;
                    count += 1;
                    Ok(true)
                })
                .await?;
                out.flush().map_err(io)?;
            }
        }
        Ok(count)
    }
}
