//! The scenario rate card, `rates.csv`: one row per (product, instrument, term, payment option)
//! with the effective hourly rate (upfront amortized) and the upfront share. Rates are kept as
//! exact decimals; a negative or non-numeric rate, an unknown instrument, or an instrument sold
//! by another provider than the row's is an error naming the row and column.

use super::IngestError;
use crate::domain::usage::{normalize_os, normalize_tenancy};
use crate::domain::{Instrument, Offer, PaymentOption, Product, Provider, RateCard, Term};
use rust_decimal::Decimal;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

const COLUMNS: [&str; 10] = [
    "ProviderName",
    "RegionId",
    "InstanceType",
    "OperatingSystem",
    "Tenancy",
    "Instrument",
    "TermYears",
    "PaymentOption",
    "EffectiveHourlyRate",
    "UpfrontShare",
];

/// A small CSV table with columns looked up by name, and errors that name file, line, column.
pub(crate) struct Table {
    pub path: std::path::PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    /// Reads the whole of `reader` (the file `path`, named in errors) as a table.
    pub fn read(path: &Path, mut reader: impl Read) -> Result<Table, IngestError> {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| IngestError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(IngestError::Empty {
                path: path.to_path_buf(),
            });
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(bytes.as_slice());
        let row_err = |e: csv::Error| IngestError::Row {
            path: path.to_path_buf(),
            row: e.position().map(|p| p.line()).unwrap_or(0),
            reason: e.to_string(),
        };
        let header = reader
            .headers()
            .map_err(row_err)?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(row_err)?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            rows.push((line, record));
        }
        Ok(Table {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    pub fn require(&self, columns: &[&str]) -> Result<(), IngestError> {
        for c in columns {
            if self.col(c).is_none() {
                return Err(IngestError::MissingColumn {
                    path: self.path.clone(),
                    column: c.to_string(),
                });
            }
        }
        Ok(())
    }

    pub fn col(&self, name: &str) -> Option<usize> {
        self.header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }

    /// The trimmed cell, or None when absent, empty or "NULL".
    pub fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> Option<&'r str> {
        let v = record.get(self.col(name)?)?.trim();
        (!v.is_empty() && !v.eq_ignore_ascii_case("null")).then_some(v)
    }

    pub fn err(
        &self,
        line: u64,
        column: &str,
        value: &str,
        reason: impl Into<String>,
    ) -> IngestError {
        IngestError::Field {
            path: self.path.clone(),
            row: line,
            column: column.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub fn need<'r>(
        &self,
        line: u64,
        record: &'r csv::StringRecord,
        name: &str,
    ) -> Result<&'r str, IngestError> {
        self.get(record, name)
            .ok_or_else(|| self.err(line, name, "", "a value is required"))
    }

    /// An exact, finite, non-negative decimal.
    pub fn decimal(
        &self,
        line: u64,
        record: &csv::StringRecord,
        name: &str,
    ) -> Result<Option<Decimal>, IngestError> {
        let Some(v) = self.get(record, name) else {
            return Ok(None);
        };
        let d = Decimal::from_str(v)
            .or_else(|_| Decimal::from_scientific(v))
            .map_err(|_| self.err(line, name, v, "not a decimal number"))?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(self.err(line, name, v, "must not be negative"));
        }
        Ok(Some(d))
    }
}

/// Reads a rate card (`rates.csv`) from `reader`; `path` names the file in errors.
pub fn read_rate_card(path: &Path, reader: impl Read) -> Result<RateCard, IngestError> {
    let table = Table::read(path, reader)?;
    table.require(&COLUMNS)?;
    let mut card = RateCard::new();
    for (line, rec) in &table.rows {
        let line = *line;
        let text = |c: &str| table.need(line, rec, c);
        let provider_s = text("ProviderName")?;
        let provider = Provider::parse(provider_s)
            .map_err(|e| table.err(line, "ProviderName", provider_s, e.to_string()))?;
        let instrument_s = text("Instrument")?;
        let instrument = Instrument::parse(instrument_s)
            .map_err(|e| table.err(line, "Instrument", instrument_s, e.to_string()))?;
        if let Some(p) = instrument.provider() {
            if p != provider {
                return Err(table.err(
                    line,
                    "Instrument",
                    instrument_s,
                    format!("{instrument} is not sold by {provider}"),
                ));
            }
        }
        let term_s = table.get(rec, "TermYears").unwrap_or("0");
        let term = if instrument == Instrument::OnDemand {
            None
        } else {
            Some(
                Term::parse(term_s)
                    .map_err(|e| table.err(line, "TermYears", term_s, e.to_string()))?,
            )
        };
        let payment_s = table.get(rec, "PaymentOption").unwrap_or("NoUpfront");
        let payment = PaymentOption::parse(payment_s)
            .map_err(|e| table.err(line, "PaymentOption", payment_s, e.to_string()))?;
        let rate = table
            .decimal(line, rec, "EffectiveHourlyRate")?
            .ok_or_else(|| table.err(line, "EffectiveHourlyRate", "", "a value is required"))?;
        let upfront = table
            .decimal(line, rec, "UpfrontShare")?
            .unwrap_or_default();
        if upfront > Decimal::ONE {
            return Err(table.err(
                line,
                "UpfrontShare",
                &upfront.to_string(),
                "must be between 0 and 1",
            ));
        }
        let product = Product {
            provider,
            region: text("RegionId")?.to_string(),
            instance_type: text("InstanceType")?.to_string(),
            os: normalize_os(table.get(rec, "OperatingSystem").unwrap_or_default()),
            tenancy: normalize_tenancy(table.get(rec, "Tenancy").unwrap_or_default()),
        };
        card.insert(
            product,
            Offer {
                instrument,
                term,
                payment,
                effective_hourly_rate: rate,
                upfront_share: upfront,
            },
        );
    }
    Ok(card)
}
