//! Existing commitments: the FOCUS 1.3 ContractCommitment file with the scenario's `x_`
//! columns, completed with commitments that only the bill reveals (its CommitmentDiscountId
//! rows), which are inferred on a best-effort basis and say so.

use super::accumulate::BillCommitment;
use super::rates::Table;
use super::IngestError;
use crate::domain::{
    sizing, Commitment, CommitmentAmount, CommitmentKind, Hour, Instrument, Money, PaymentOption,
    Product, Provider, RateCard, Term,
};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::io::Read;
use std::path::Path;

fn upfront_share(payment: PaymentOption) -> Decimal {
    match payment {
        PaymentOption::NoUpfront => Decimal::ZERO,
        PaymentOption::PartialUpfront => Decimal::new(5, 1),
        PaymentOption::AllUpfront => Decimal::ONE,
    }
}

/// Reads a ContractCommitment file from `reader`; `path` names the file in errors. `rates`
/// prices RIs whose file row has no cost.
pub fn read_commitments(
    path: &Path,
    reader: impl Read,
    rates: Option<&RateCard>,
) -> Result<Vec<Commitment>, IngestError> {
    let t = Table::read(path, reader)?;
    t.require(&[
        "ContractCommitmentId",
        "ContractCommitmentPeriodStart",
        "ContractCommitmentPeriodEnd",
        "x_Instrument",
    ])?;
    let mut out = Vec::new();
    for (line, rec) in &t.rows {
        let line = *line;
        let id = t.need(line, rec, "ContractCommitmentId")?.to_string();
        let instrument_s = t.need(line, rec, "x_Instrument")?;
        let instrument = Instrument::parse(instrument_s)
            .ok()
            .filter(|i| i.is_commitment())
            .ok_or_else(|| {
                t.err(
                    line,
                    "x_Instrument",
                    instrument_s,
                    "not a commitment instrument",
                )
            })?;
        let provider = match t.get(rec, "x_ProviderName") {
            Some(p) => {
                Provider::parse(p).map_err(|e| t.err(line, "x_ProviderName", p, e.to_string()))?
            }
            None => instrument.provider().unwrap_or(Provider::Aws),
        };
        if instrument.provider() != Some(provider) {
            return Err(t.err(
                line,
                "x_Instrument",
                instrument_s,
                format!("{instrument} is not sold by {provider}"),
            ));
        }
        let hour = |col: &str| -> Result<Hour, IngestError> {
            let v = t.need(line, rec, col)?;
            Hour::parse(v).map_err(|e| t.err(line, col, v, e.to_string()))
        };
        let start = hour("ContractCommitmentPeriodStart")?;
        let end = hour("ContractCommitmentPeriodEnd")?;
        if end <= start {
            return Err(t.err(
                line,
                "ContractCommitmentPeriodEnd",
                &end.to_string(),
                "ends before it starts",
            ));
        }
        let hours = end.since(start);
        let term = match t.get(rec, "x_TermYears") {
            Some(v) => Term::parse(v).map_err(|e| t.err(line, "x_TermYears", v, e.to_string()))?,
            None => Term::from_years(((hours as f64) / 8760.0).round() as u8)
                .map_err(|e| t.err(line, "ContractCommitmentPeriodEnd", "", e.to_string()))?,
        };
        let payment = match t.get(rec, "x_PaymentOption") {
            Some(v) => PaymentOption::parse(v)
                .map_err(|e| t.err(line, "x_PaymentOption", v, e.to_string()))?,
            None => PaymentOption::NoUpfront,
        };
        let region = t.get(rec, "x_RegionId").map(str::to_string);
        let instance_type = t.get(rec, "x_InstanceType").map(str::to_string);
        let family = t
            .get(rec, "x_InstanceFamily")
            .map(str::to_string)
            .or_else(|| {
                instance_type
                    .as_deref()
                    .map(|it| sizing::display_family(provider, it))
            });
        let cost = t.decimal(line, rec, "ContractCommitmentCost")?;
        let money = |d: Decimal, col: &str| {
            Money::from_decimal(d).ok_or_else(|| t.err(line, col, &d.to_string(), "out of range"))
        };
        let (amount, hourly) = match instrument.kind() {
            Some(CommitmentKind::Spend) => {
                let per_hour = match t.decimal(line, rec, "x_HourlyCommitment")? {
                    Some(h) => h,
                    None => cost.map(|c| c / Decimal::from(hours)).ok_or_else(|| {
                        t.err(
                            line,
                            "x_HourlyCommitment",
                            "",
                            "a savings plan needs x_HourlyCommitment or ContractCommitmentCost",
                        )
                    })?,
                };
                let m = money(per_hour, "x_HourlyCommitment")?;
                (CommitmentAmount::HourlySpend(m), m)
            }
            _ => {
                let count = match t.decimal(line, rec, "x_InstanceCount")? {
                    Some(c) => c,
                    None => t
                        .decimal(line, rec, "ContractCommitmentQuantity")?
                        .map(|q| (q / Decimal::from(hours)).round())
                        .ok_or_else(|| {
                            t.err(
                                line,
                                "x_InstanceCount",
                                "",
                                "an RI or reservation needs x_InstanceCount",
                            )
                        })?,
                };
                let count = count
                    .to_u32()
                    .filter(|_| count.fract().is_zero())
                    .ok_or_else(|| {
                        t.err(
                            line,
                            "x_InstanceCount",
                            &count.to_string(),
                            "not a whole number of instances",
                        )
                    })?;
                let hourly = match cost {
                    Some(c) => c / Decimal::from(hours),
                    None => {
                        let it = instance_type.clone().ok_or_else(|| {
                            t.err(
                                line,
                                "x_InstanceType",
                                "",
                                "needed to price an RI without ContractCommitmentCost",
                            )
                        })?;
                        let product = Product {
                            provider,
                            region: region.clone().unwrap_or_default(),
                            instance_type: it,
                            os: "Linux".into(),
                            tenancy: "Shared".into(),
                        };
                        let offer = rates
                            .and_then(|r| r.offer(&product, instrument, Some(term), payment))
                            .ok_or_else(|| {
                                t.err(
                                    line,
                                    "ContractCommitmentCost",
                                    "",
                                    "no cost in the file and no matching rate card offer",
                                )
                            })?;
                        offer.effective_hourly_rate * Decimal::from(count)
                    }
                };
                (
                    CommitmentAmount::Instances(count),
                    money(hourly, "ContractCommitmentCost")?,
                )
            }
        };
        let total = hourly.to_decimal() * Decimal::from(hours);
        let upfront = money(total * upfront_share(payment), "ContractCommitmentCost")?;
        out.push(Commitment {
            id,
            provider,
            instrument,
            term,
            payment,
            start,
            end,
            region,
            instance_type,
            family,
            amount,
            hourly_cost: hourly,
            upfront,
        });
    }
    Ok(out)
}

/// A commitment seen only in the bill, with what was assumed to describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct InferredCommitment {
    pub commitment: Commitment,
    pub note: String,
}

/// Commitments whose CommitmentDiscountId appears in the bill but not in `listed`.
///
/// The bill does not say the term, the payment option, the start, or (for savings plans)
/// whether it is a Compute or an EC2 Instance plan, so these are assumed: start = first hour
/// seen, a 1-year term from there, no upfront, a Compute SP / Standard RI. The hourly cost is
/// the largest hourly used + unused EffectiveCost seen, which for a savings plan is its hourly
/// commitment. Commitments of an unknown type are skipped and reported in the notes.
pub fn infer_commitments(
    bill: &[BillCommitment],
    listed: &[Commitment],
) -> (Vec<InferredCommitment>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for b in bill {
        if listed.iter().any(|c| c.id == b.id) {
            continue;
        }
        let t = b.commitment_type.to_ascii_lowercase();
        let instrument = match (b.provider, t.as_str()) {
            (Provider::Aws, "savings plan") => Instrument::ComputeSavingsPlan,
            (Provider::Aws, "reserved instance") => Instrument::StandardReservedInstance,
            (Provider::Azure, "savings plan") => Instrument::AzureSavingsPlan,
            (Provider::Azure, "reservation") => Instrument::AzureReservation,
            _ => {
                skipped.push(format!(
                    "{}: commitment type '{}' not recognised, not inferred",
                    b.id, b.commitment_type
                ));
                continue;
            }
        };
        let hourly = Money::from_f64(b.max_hourly_cost).unwrap_or(Money::ZERO);
        let (amount, instance_type, region, what) = match instrument.kind() {
            Some(CommitmentKind::Spend) => (
                CommitmentAmount::HourlySpend(hourly),
                None,
                None,
                "hourly commitment = largest hourly used+unused cost",
            ),
            _ => {
                let Some(it) = b.instance_type.clone() else {
                    skipped.push(format!(
                        "{}: no covered instance usage in the bill, instance type unknown",
                        b.id
                    ));
                    continue;
                };
                let units = sizing::sizing_or_exact(b.provider, &it).units;
                let count = (b.max_hourly_units / units - 1e-9).ceil().max(1.0) as u32;
                (
                    CommitmentAmount::Instances(count),
                    Some(it),
                    b.region.clone(),
                    "instances = peak covered units / size of the type it covered most",
                )
            }
        };
        let family = instance_type
            .as_deref()
            .map(|it| sizing::display_family(b.provider, it));
        let note = format!(
            "{}: inferred from the bill as {instrument}; {what}; start = first hour seen ({}), 1-year term and no upfront assumed",
            b.id, b.first_hour
        );
        out.push(InferredCommitment {
            commitment: Commitment {
                id: b.id.clone(),
                provider: b.provider,
                instrument,
                term: Term::ONE_YEAR,
                payment: PaymentOption::NoUpfront,
                start: b.first_hour,
                end: b
                    .first_hour
                    .plus(Term::ONE_YEAR.hours())
                    .max(b.last_hour.plus(1)),
                region,
                instance_type,
                family,
                amount,
                hourly_cost: hourly,
                upfront: Money::ZERO,
            },
            note,
        });
    }
    (out, skipped)
}
