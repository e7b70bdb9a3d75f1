//! Bills the synthetic organisation hour by hour and writes the scenario files.
//!
//! `usage.parquet` is written batch by batch (memory does not grow with rows), zstd-compressed
//! with dictionary encoding as the providers' exports are; timestamps are typed
//! `Timestamp(µs, UTC)` and amounts `Float64`, as in AWS Data Exports Parquet.

use super::catalog::{self, round6, Product};
use super::{Org, SynthCommitment, SynthError};
use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::Datelike;
use commitd_core::domain::{Hour, Instrument, PaymentOption, Provider};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

const BATCH: usize = 64 * 1024;

#[derive(Clone, Copy)]
enum Kind {
    S,
    F,
    T,
}

/// FOCUS 1.2 CostAndUsage columns written, in order.
const COLUMNS: [(&str, Kind); 40] = [
    ("BilledCost", Kind::F),
    ("BillingAccountId", Kind::S),
    ("BillingAccountName", Kind::S),
    ("BillingCurrency", Kind::S),
    ("BillingPeriodEnd", Kind::T),
    ("BillingPeriodStart", Kind::T),
    ("ChargeCategory", Kind::S),
    ("ChargeClass", Kind::S),
    ("ChargeDescription", Kind::S),
    ("ChargeFrequency", Kind::S),
    ("ChargePeriodEnd", Kind::T),
    ("ChargePeriodStart", Kind::T),
    ("CommitmentDiscountCategory", Kind::S),
    ("CommitmentDiscountId", Kind::S),
    ("CommitmentDiscountName", Kind::S),
    ("CommitmentDiscountStatus", Kind::S),
    ("CommitmentDiscountType", Kind::S),
    ("ConsumedQuantity", Kind::F),
    ("ConsumedUnit", Kind::S),
    ("ContractedCost", Kind::F),
    ("EffectiveCost", Kind::F),
    ("InvoiceIssuerName", Kind::S),
    ("ListCost", Kind::F),
    ("ListUnitPrice", Kind::F),
    ("PricingCategory", Kind::S),
    ("PricingQuantity", Kind::F),
    ("PricingUnit", Kind::S),
    ("ProviderName", Kind::S),
    ("PublisherName", Kind::S),
    ("RegionId", Kind::S),
    ("RegionName", Kind::S),
    ("ServiceCategory", Kind::S),
    ("ServiceName", Kind::S),
    ("SkuId", Kind::S),
    ("SkuPriceDetails", Kind::S),
    ("SubAccountId", Kind::S),
    ("SubAccountName", Kind::S),
    ("Tags", Kind::S),
    ("x_ServiceCode", Kind::S),
    ("x_UsageType", Kind::S),
];

enum Builder {
    S(StringBuilder),
    F(Float64Builder),
    T(TimestampMicrosecondBuilder),
}

/// One value per column of [`COLUMNS`].
#[derive(Clone, Copy)]
enum V<'a> {
    S(&'a str),
    F(f64),
    T(Hour),
    Null,
}

struct Sink {
    path: std::path::PathBuf,
    schema: Arc<Schema>,
    builders: Vec<Builder>,
    writer: ArrowWriter<std::fs::File>,
    pending: usize,
    rows: u64,
}

impl Sink {
    fn new(path: &Path) -> Result<Sink, SynthError> {
        let schema = Arc::new(Schema::new(
            COLUMNS
                .iter()
                .map(|(name, kind)| {
                    let t = match kind {
                        Kind::S => DataType::Utf8,
                        Kind::F => DataType::Float64,
                        Kind::T => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    };
                    Field::new(*name, t, true)
                })
                .collect::<Vec<_>>(),
        ));
        let file = std::fs::File::create(path).map_err(|source| SynthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(9).unwrap_or_default()))
            .set_max_row_group_size(256 * 1024)
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| {
            SynthError::Parquet {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        })?;
        let mut sink = Sink {
            path: path.to_path_buf(),
            schema,
            builders: Vec::new(),
            writer,
            pending: 0,
            rows: 0,
        };
        sink.reset();
        Ok(sink)
    }

    fn reset(&mut self) {
        self.builders = COLUMNS
            .iter()
            .map(|(_, kind)| match kind {
                Kind::S => Builder::S(StringBuilder::new()),
                Kind::F => Builder::F(Float64Builder::new()),
                Kind::T => Builder::T(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            })
            .collect();
    }

    fn push(&mut self, values: &[V<'_>; 40]) -> Result<(), SynthError> {
        for (b, v) in self.builders.iter_mut().zip(values) {
            match (b, v) {
                (Builder::S(b), V::S(s)) => b.append_value(s),
                (Builder::F(b), V::F(f)) => b.append_value(*f),
                (Builder::T(b), V::T(h)) => b.append_value(h.0 * 3_600_000_000),
                (Builder::S(b), _) => b.append_null(),
                (Builder::F(b), _) => b.append_null(),
                (Builder::T(b), _) => b.append_null(),
            }
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SynthError> {
        if self.pending == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::S(b) => Arc::new(b.finish()),
                    Builder::F(b) => Arc::new(b.finish()),
                    Builder::T(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let err = |e: &dyn std::fmt::Display| SynthError::Parquet {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| err(&e))?;
        self.writer.write(&batch).map_err(|e| err(&e))?;
        self.pending = 0;
        self.reset();
        Ok(())
    }

    fn finish(mut self) -> Result<u64, SynthError> {
        self.flush()?;
        let path = self.path.clone();
        self.writer.close().map_err(|e| SynthError::Parquet {
            path,
            detail: e.to_string(),
        })?;
        Ok(self.rows)
    }
}

/// What one row says; everything else is derived from the provider and the hour.
struct Line<'a> {
    hour: Hour,
    /// Periods longer than an hour (monthly fees, tax).
    end: Hour,
    provider: Provider,
    category: &'static str,
    frequency: &'static str,
    description: &'a str,
    billed: f64,
    effective: f64,
    list: Option<f64>,
    list_unit: Option<f64>,
    quantity: Option<f64>,
    unit: Option<&'static str>,
    pricing_category: Option<&'static str>,
    commitment: Option<(&'a SynthCommitment, &'static str)>,
    region: Option<(&'a str, &'a str)>,
    service: (&'static str, &'static str, &'static str),
    sku: &'a str,
    details: Option<&'a str>,
    account: (&'a str, &'a str),
    usage_type: Option<&'a str>,
}

struct Cal {
    period_start: Hour,
    period_end: Hour,
}

fn month_bounds(h: Hour) -> Cal {
    use chrono::TimeZone;
    let t = h.to_datetime();
    let start = chrono::Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    let (ny, nm) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let end = chrono::Utc
        .with_ymd_and_hms(ny, nm, 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    Cal {
        period_start: Hour::from_datetime(start),
        period_end: Hour::from_datetime(end),
    }
}

fn emit(sink: &mut Sink, cal: &Cal, l: &Line<'_>) -> Result<(), SynthError> {
    let (billing_account, issuer, publisher) = match l.provider {
        Provider::Aws => (
            "999999999999",
            "Amazon Web Services, Inc.",
            "Amazon Web Services, Inc.",
        ),
        Provider::Azure => (
            "/providers/Microsoft.Billing/billingAccounts/99999999",
            "Microsoft",
            "Microsoft",
        ),
    };
    fn opt(v: Option<&str>) -> V<'_> {
        v.map(V::S).unwrap_or(V::Null)
    }
    fn optf<'x>(v: Option<f64>) -> V<'x> {
        v.map(V::F).unwrap_or(V::Null)
    }
    let (cid, cname, ccat, cstatus, ctype) = match l.commitment {
        Some((c, status)) => (
            V::S(c.id.as_str()),
            V::S(c.instrument.as_str()),
            V::S(match c.instrument.kind() {
                Some(commitd_core::domain::CommitmentKind::Usage) => "Usage",
                _ => "Spend",
            }),
            if status.is_empty() {
                V::Null
            } else {
                V::S(status)
            },
            V::S(c.instrument.focus_commitment_type()),
        ),
        None => (V::Null, V::Null, V::Null, V::Null, V::Null),
    };
    let values: [V<'_>; 40] = [
        V::F(l.billed),
        V::S(billing_account),
        V::S("example-org"),
        V::S("USD"),
        V::T(cal.period_end),
        V::T(cal.period_start),
        V::S(l.category),
        V::Null,
        V::S(l.description),
        V::S(l.frequency),
        V::T(l.end),
        V::T(l.hour),
        ccat,
        cid,
        cname,
        cstatus,
        ctype,
        optf(l.quantity),
        opt(l.unit),
        V::F(l.effective),
        V::F(l.effective),
        V::S(issuer),
        optf(l.list),
        optf(l.list_unit),
        opt(l.pricing_category),
        optf(l.quantity),
        opt(l.unit),
        V::S(l.provider.as_str()),
        V::S(publisher),
        opt(l.region.map(|r| r.0)),
        opt(l.region.map(|r| r.1)),
        V::S(l.service.0),
        V::S(l.service.1),
        V::S(l.sku),
        opt(l.details),
        V::S(l.account.0),
        V::S(l.account.1),
        V::Null,
        opt(Some(l.service.2).filter(|s| !s.is_empty())),
        opt(l.usage_type),
    ];
    sink.push(&values)
}

/// Per group, what the writer repeats on every row.
struct GroupText {
    details: String,
    sku: String,
    usage_type: Option<String>,
    od_description: String,
    service: (&'static str, &'static str, &'static str),
}

fn group_text(p: &Product) -> GroupText {
    let details = format!(
        "{{\"InstanceType\": \"{}\", \"InstanceSeries\": \"{}\", \"OperatingSystem\": \"{}\", \"x_Tenancy\": \"Shared\"}}",
        p.instance_type, p.series, p.os
    );
    let sku = format!("SKU-{}-{}-{}", p.region, p.instance_type, p.os);
    match p.provider {
        Provider::Aws => GroupText {
            details,
            sku,
            usage_type: Some(format!("{}-BoxUsage:{}", p.region_code, p.instance_type)),
            od_description: format!(
                "${} per On Demand {} {} Instance Hour",
                p.on_demand(),
                p.os,
                p.instance_type
            ),
            service: ("Compute", "Amazon Elastic Compute Cloud", "AmazonEC2"),
        },
        Provider::Azure => GroupText {
            details,
            sku,
            usage_type: None,
            od_description: format!("{} {} Virtual Machine", p.instance_type, p.os),
            service: ("Compute", "Virtual Machines", ""),
        },
    }
}

/// Bills the organisation and writes `usage.parquet`; returns the number of rows.
pub fn write_usage(org: &Org, path: &Path) -> Result<u64, SynthError> {
    let mut sink = Sink::new(path)?;
    let texts: Vec<GroupText> = org.groups.iter().map(|g| group_text(&g.product)).collect();
    let units: Vec<f64> = org.groups.iter().map(|g| g.product.units()).collect();
    let flex: Vec<String> = org.groups.iter().map(|g| g.product.flex_group()).collect();
    let sp_rate: Vec<f64> = org
        .groups
        .iter()
        .map(|g| {
            catalog::rate_of(
                &g.rates,
                Instrument::ComputeSavingsPlan,
                1,
                PaymentOption::NoUpfront,
            )
        })
        .collect();
    // Savings plans cover the usage with the highest discount first.
    let mut sp_order: Vec<usize> = (0..org.groups.len())
        .filter(|&g| org.groups[g].product.provider == Provider::Aws)
        .collect();
    sp_order.sort_by(|&a, &b| {
        let d = |g: usize| 1.0 - sp_rate[g] / org.groups[g].product.on_demand();
        d(b).total_cmp(&d(a)).then(a.cmp(&b))
    });
    let has_azure = org
        .groups
        .iter()
        .any(|g| g.product.provider == Provider::Azure);
    let hours = org.evaluation_end.since(org.history_start) as usize;
    let mut remaining = vec![0.0; org.groups.len()];
    for t in 0..hours {
        let hour = org.history_start.plus(t as i64);
        let cal = month_bounds(hour);
        let next = hour.plus(1);
        for (g, group) in org.groups.iter().enumerate() {
            remaining[g] = group.demand[t];
        }
        // RIs and reservations: size-flexible within family (flex group) and region.
        for c in org.commitments.iter().filter(|c| c.is_active(hour)) {
            let Some(product) = &c.product else { continue };
            let cap = c.count as f64 * product.units();
            let mut left = cap;
            for (g, group) in org.groups.iter().enumerate() {
                let p = &group.product;
                if p.provider != c.provider
                    || p.region != product.region
                    || p.os != "Linux"
                    || flex[g] != product.flex_group()
                    || remaining[g] <= 0.0
                    || left <= 1e-12
                {
                    continue;
                }
                let take = (remaining[g] * units[g]).min(left);
                let q = take / units[g];
                remaining[g] -= q;
                left -= take;
                covered(
                    &mut sink,
                    &cal,
                    org,
                    &texts,
                    g,
                    q,
                    c.hourly * take / cap,
                    c,
                    hour,
                )?;
            }
            if left > 1e-9 {
                unused(&mut sink, &cal, c, c.hourly * left / cap, hour)?;
            }
            recurring_fee(&mut sink, &cal, c, hour)?;
        }
        // Savings plans: consume the hourly commitment at the plan's rate.
        for c in org
            .commitments
            .iter()
            .filter(|c| c.is_active(hour) && c.product.is_none())
        {
            let mut left = c.hourly;
            for &g in &sp_order {
                if remaining[g] <= 1e-12 || left <= 1e-12 {
                    continue;
                }
                let use_ = (remaining[g] * sp_rate[g]).min(left);
                let q = use_ / sp_rate[g];
                remaining[g] -= q;
                left -= use_;
                covered(&mut sink, &cal, org, &texts, g, q, use_, c, hour)?;
            }
            if left > 1e-9 {
                unused(&mut sink, &cal, c, left, hour)?;
            }
            recurring_fee(&mut sink, &cal, c, hour)?;
        }
        // The rest at on-demand, split across the group's sub-accounts.
        for (g, group) in org.groups.iter().enumerate() {
            let q_total = remaining[g];
            if q_total <= 1e-9 {
                continue;
            }
            let p = &group.product;
            let od = p.on_demand();
            let mut left_q = q_total;
            for (k, (account, name, share)) in group.accounts.iter().enumerate() {
                // Whole thousandths per account (as the public scenarios' bills are), the
                // last account taking the remainder so that the hour's total is exact.
                let q = if k + 1 == group.accounts.len() {
                    round6(left_q)
                } else {
                    ((q_total * share * 1000.0).round() / 1000.0).min(left_q)
                };
                left_q -= q;
                if q <= 0.0 {
                    continue;
                }
                let cost = round6(q * od);
                emit(
                    &mut sink,
                    &cal,
                    &Line {
                        hour,
                        end: next,
                        provider: p.provider,
                        category: "Usage",
                        frequency: "Usage-Based",
                        description: &texts[g].od_description,
                        billed: cost,
                        effective: cost,
                        list: Some(cost),
                        list_unit: Some(od),
                        quantity: Some(q),
                        unit: Some("Hours"),
                        pricing_category: Some("Standard"),
                        commitment: None,
                        region: Some((p.region, p.region_name)),
                        service: texts[g].service,
                        sku: &texts[g].sku,
                        details: Some(&texts[g].details),
                        account: (account, name),
                        usage_type: texts[g].usage_type.as_deref(),
                    },
                )?;
            }
        }
        non_compute(&mut sink, &cal, hour, has_azure)?;
    }
    sink.finish()
}

#[allow(clippy::too_many_arguments)]
fn covered(
    sink: &mut Sink,
    cal: &Cal,
    org: &Org,
    texts: &[GroupText],
    g: usize,
    q: f64,
    effective: f64,
    c: &SynthCommitment,
    hour: Hour,
) -> Result<(), SynthError> {
    let p = &org.groups[g].product;
    let q = round6(q);
    if q <= 0.0 {
        return Ok(());
    }
    let od = p.on_demand();
    let (account, name, _) = org.groups[g].accounts[0];
    emit(
        sink,
        cal,
        &Line {
            hour,
            end: hour.plus(1),
            provider: p.provider,
            category: "Usage",
            frequency: "Usage-Based",
            description: &texts[g].od_description,
            billed: 0.0,
            effective: round6(effective),
            list: Some(round6(q * od)),
            list_unit: Some(od),
            quantity: Some(q),
            unit: Some("Hours"),
            pricing_category: Some("Committed"),
            commitment: Some((c, "Used")),
            region: Some((p.region, p.region_name)),
            service: texts[g].service,
            sku: &texts[g].sku,
            details: Some(&texts[g].details),
            account: (account, name),
            usage_type: texts[g].usage_type.as_deref(),
        },
    )
}

fn commitment_service(c: &SynthCommitment) -> (&'static str, &'static str, &'static str) {
    match (c.provider, c.product.is_some()) {
        (Provider::Aws, false) => (
            "Compute",
            "Savings Plans for AWS Compute usage",
            "ComputeSavingsPlans",
        ),
        (Provider::Aws, true) => ("Compute", "Amazon Elastic Compute Cloud", "AmazonEC2"),
        (Provider::Azure, _) => ("Compute", "Virtual Machines", ""),
    }
}

fn unused(
    sink: &mut Sink,
    cal: &Cal,
    c: &SynthCommitment,
    amount: f64,
    hour: Hour,
) -> Result<(), SynthError> {
    let amount = round6(amount);
    if amount <= 0.0 {
        return Ok(());
    }
    emit(
        sink,
        cal,
        &Line {
            hour,
            end: hour.plus(1),
            provider: c.provider,
            category: "Usage",
            frequency: "Usage-Based",
            description: "Unused commitment",
            billed: 0.0,
            effective: amount,
            list: Some(0.0),
            list_unit: None,
            quantity: None,
            unit: None,
            pricing_category: Some("Committed"),
            commitment: Some((c, "Unused")),
            region: c.product.as_ref().map(|p| (p.region, p.region_name)),
            service: commitment_service(c),
            sku: "commitment",
            details: None,
            account: ("111111111111", "prod"),
            usage_type: None,
        },
    )
}

/// Recurring fees: AWS bills no-upfront commitments every hour, Azure monthly.
fn recurring_fee(
    sink: &mut Sink,
    cal: &Cal,
    c: &SynthCommitment,
    hour: Hour,
) -> Result<(), SynthError> {
    let recurring_share = match c.payment {
        PaymentOption::NoUpfront => 1.0,
        PaymentOption::PartialUpfront => 0.5,
        PaymentOption::AllUpfront => return Ok(()),
    };
    let (fee, end) = match c.provider {
        Provider::Aws => (c.hourly * recurring_share, hour.plus(1)),
        Provider::Azure => {
            if hour != cal.period_start {
                return Ok(());
            }
            let h = cal.period_end.since(cal.period_start) as f64;
            (c.hourly * recurring_share * h, cal.period_end)
        }
    };
    let description = format!("{} recurring fee", c.instrument);
    emit(
        sink,
        cal,
        &Line {
            hour,
            end,
            provider: c.provider,
            category: "Purchase",
            frequency: "Recurring",
            description: &description,
            billed: round6(fee),
            effective: 0.0,
            list: None,
            list_unit: None,
            quantity: None,
            unit: None,
            pricing_category: None,
            commitment: Some((c, "")),
            region: c.product.as_ref().map(|p| (p.region, p.region_name)),
            service: commitment_service(c),
            sku: "commitment",
            details: None,
            account: ("111111111111", "prod"),
            usage_type: None,
        },
    )
}

/// Rows a real bill has that are not compute demand: storage, data transfer, tax.
fn non_compute(sink: &mut Sink, cal: &Cal, hour: Hour, azure: bool) -> Result<(), SynthError> {
    let t = hour.0 as f64;
    let base =
        |provider, service, description, cost: f64, quantity, unit, region, usage_type| Line {
            hour,
            end: hour.plus(1),
            provider,
            category: "Usage",
            frequency: "Usage-Based",
            description,
            billed: cost,
            effective: cost,
            list: Some(cost),
            list_unit: None,
            quantity: Some(quantity),
            unit: Some(unit),
            pricing_category: Some("Standard"),
            commitment: None,
            region: Some(region),
            service,
            sku: "SKU-other",
            details: None,
            account: ("111111111111", "prod"),
            usage_type,
        };
    emit(
        sink,
        cal,
        &base(
            Provider::Aws,
            ("Storage", "Amazon Simple Storage Service", "AmazonS3"),
            "$0.023 per GB-Mo of storage",
            round6(0.42 + 0.01 * (t / 24.0).sin()),
            18.3,
            "GB-Mo",
            ("us-east-1", "US East (N. Virginia)"),
            Some("TimedStorage-ByteHrs"),
        ),
    )?;
    // Data transfer is billed under EC2 with ServiceCategory Compute in real exports: ingest
    // must reject it by unit, not by service.
    emit(
        sink,
        cal,
        &base(
            Provider::Aws,
            ("Compute", "Amazon Elastic Compute Cloud", "AmazonEC2"),
            "$0.09 per GB - first 10 TB / month data transfer out",
            round6(0.9 + 0.3 * (t / 7.0).cos().abs()),
            10.0,
            "GB",
            ("us-east-1", "US East (N. Virginia)"),
            Some("USE1-DataTransfer-Out-Bytes"),
        ),
    )?;
    if azure {
        emit(
            sink,
            cal,
            &base(
                Provider::Azure,
                ("Storage", "Storage Accounts", ""),
                "Premium SSD Managed Disks - P10 LRS",
                0.027,
                0.0014,
                "Units/Month",
                ("eastus", "East US"),
                None,
            ),
        )?;
    }
    if hour == cal.period_start {
        let mut tax = base(
            Provider::Aws,
            ("Other", "Tax", ""),
            "Sales tax",
            12.5,
            1.0,
            "Units",
            ("us-east-1", "US East (N. Virginia)"),
            None,
        );
        tax.category = "Tax";
        tax.frequency = "Recurring";
        emit(sink, cal, &tax)?;
    }
    Ok(())
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, SynthError> {
    std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(|source| SynthError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn write_rates(org: &Org, path: &Path) -> Result<(), SynthError> {
    let mut f = create(path)?;
    let e = io(path);
    writeln!(f, "ProviderName,RegionId,InstanceType,OperatingSystem,Tenancy,Instrument,TermYears,PaymentOption,EffectiveHourlyRate,UpfrontShare").map_err(&e)?;
    for g in &org.groups {
        let p = &g.product;
        for r in &g.rates {
            writeln!(
                f,
                "{},{},{},{},Shared,{},{},{},{},{:.1}",
                p.provider,
                p.region,
                p.instance_type,
                p.os,
                r.instrument,
                r.term_years,
                r.payment,
                r.rate,
                r.upfront_share
            )
            .map_err(&e)?;
        }
    }
    f.flush().map_err(&e)
}

pub fn write_commitments(org: &Org, path: &Path) -> Result<(), SynthError> {
    let mut f = create(path)?;
    let e = io(path);
    writeln!(f, "ContractCommitmentId,ContractCommitmentType,ContractCommitmentCategory,ContractCommitmentCost,ContractCommitmentQuantity,ContractCommitmentUnit,ContractCommitmentDescription,ContractCommitmentPeriodStart,ContractCommitmentPeriodEnd,BillingCurrency,x_ProviderName,x_Instrument,x_TermYears,x_PaymentOption,x_RegionId,x_InstanceType,x_InstanceFamily,x_HourlyCommitment,x_InstanceCount").map_err(&e)?;
    for c in &org.commitments {
        let hours = c.end.since(c.start);
        let cost = round6(c.hourly * hours as f64);
        let (category, quantity, unit, region, itype, family, hourly, count) = match &c.product {
            None => (
                "Spend",
                String::new(),
                "",
                String::new(),
                String::new(),
                String::new(),
                c.hourly.to_string(),
                String::new(),
            ),
            Some(p) => (
                "Usage",
                (c.count as i64 * hours).to_string(),
                "Hours",
                p.region.to_string(),
                p.instance_type.clone(),
                match p.provider {
                    Provider::Aws => p.series.to_ascii_lowercase(),
                    Provider::Azure => p.series.clone(),
                },
                String::new(),
                c.count.to_string(),
            ),
        };
        writeln!(
            f,
            "{},{},{},{},{},{},{}-{}yr-{},{},{},USD,{},{},{},{},{},{},{},{},{}",
            c.id,
            c.instrument.focus_commitment_type(),
            category,
            cost,
            quantity,
            unit,
            c.instrument,
            c.term_years,
            c.payment,
            c.start,
            c.end,
            c.provider,
            c.instrument,
            c.term_years,
            c.payment,
            region,
            itype,
            family,
            hourly,
            count
        )
        .map_err(&e)?;
    }
    f.flush().map_err(&e)
}

pub fn write_toml(org: &Org, name: &str, path: &Path) -> Result<(), SynthError> {
    let c = &org.config;
    let description = format!(
        "Synthetic (commitd): {} usage groups, shape {}, seed {}, {} months of history and {} of evaluation, {} existing commitments. Generated by `commitd-dev synth --shape {} --groups {} --seed {} --months {} --eval-months {}`.",
        org.groups.len(),
        c.shape.as_str(),
        c.seed,
        c.history_months,
        c.evaluation_months,
        org.commitments.len(),
        c.shape.as_str(),
        c.groups,
        c.seed,
        c.history_months,
        c.evaluation_months,
    );
    let text = format!(
        "name = \"{name}\"\ndescription = \"\"\"{description}\"\"\"\nhistory_start = \"{}\"\ndecision_time = \"{}\"\nevaluation_end = \"{}\"\nusage = \"usage.parquet\"\nrates = \"rates.csv\"\ncommitments = \"commitments.csv\"\n",
        org.history_start, org.decision_time, org.evaluation_end
    );
    std::fs::write(path, text).map_err(io(path))
}
