//! Bad input: every case gets a clear error naming the file (and row and column where they
//! apply), and no partial result. Small files are built in a temporary directory.

use arrow_array::{
    ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{Field, Schema};
use commitd::domain::Money;
use commitd::ingest::IngestError;
use commitd::sources::{read_commitments, read_focus, read_rate_card, ReadOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const HEADER: &str = "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,ProviderName,BillingCurrency,RegionId,ServiceCategory,ServiceName,ListCost,EffectiveCost,ConsumedQuantity,PricingCategory,SkuPriceDetails,SubAccountId,x_Unknown";

/// One EC2 m5.large row (hour `h` of 2025-01-01), `list` dollars for `qty` instance-hours.
fn ec2(h: u32, list: &str, qty: &str) -> String {
    format!(
        "Usage,2025-01-01 {h:02}:00:00,2025-01-01 {:02}:00:00,AWS,USD,us-east-1,Compute,Amazon Elastic Compute Cloud,{list},{list},{qty},Standard,\"{{\"\"InstanceType\"\": \"\"m5.large\"\"}}\",\"111\",junk",
        h + 1
    )
}

fn storage(h: u32) -> String {
    format!("Usage,2025-01-01 {h:02}:00:00,2025-01-01 {:02}:00:00,AWS,USD,us-east-1,Storage,Amazon S3,0.5,0.5,10,Standard,NULL,111,x", h + 1)
}

fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, body).unwrap();
    p
}

fn csv(rows: &[String]) -> Vec<u8> {
    let mut s = String::from(HEADER);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s.into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn read(p: &Path) -> Result<commitd::ingest::Bill, IngestError> {
    read_focus(p, &ReadOptions::default())
}

fn message(p: &Path) -> String {
    let e = read(p).expect_err("must fail");
    e.to_string()
}

#[test]
fn a_valid_file_reads_and_unknown_columns_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "ok.csv",
        &csv(&[ec2(0, "0.192", "2"), ec2(1, "0.096", "1"), storage(1)]),
    );
    let m = read(&p).unwrap().model;
    assert_eq!(m.groups.len(), 1);
    assert_eq!(m.total_ode(), Money::parse("0.288").unwrap());
    assert_eq!(m.groups[0].quantity, vec![2.0, 1.0]);
    assert_eq!(m.ignored.by_reason["not compute: Storage"], 1);
}

#[test]
fn missing_required_column_names_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let body = String::from_utf8(csv(&[ec2(0, "1", "1")]))
        .unwrap()
        .replace("ListCost", "ListCostX");
    let p = write(dir.path(), "nolist.csv", body.as_bytes());
    let e = read(&p).unwrap_err();
    assert!(
        matches!(&e, IngestError::MissingColumn { column, .. } if column == "ListCost"),
        "{e}"
    );
    assert!(e.to_string().contains("nolist.csv"));
}

#[test]
fn unparseable_number_and_timestamp_name_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "num.csv",
        &csv(&[ec2(0, "1", "1"), ec2(1, "12.5x", "1")]),
    );
    let msg = message(&p);
    assert!(
        msg.contains("num.csv")
            && msg.contains("row 3")
            && msg.contains("column EffectiveCost")
            && msg.contains("not a number"),
        "{msg}"
    );
    let bad_time = ec2(0, "1", "1").replace("2025-01-01 00:00:00", "2025-13-01 00:00:00");
    let p = write(dir.path(), "time.csv", &csv(&[bad_time]));
    let msg = message(&p);
    assert!(
        msg.contains("time.csv") && msg.contains("row 2") && msg.contains("ChargePeriodStart"),
        "{msg}"
    );
    // A charge period that does not start on an hour is refused too.
    let half = ec2(0, "1", "1").replace("2025-01-01 00:00:00", "2025-01-01 00:30:00");
    let p = write(dir.path(), "half.csv", &csv(&[half]));
    assert!(message(&p).contains("hour boundary"));
}

#[test]
fn negative_or_nan_cost_on_usage_is_refused_but_credits_may_be_negative() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "neg.csv", &csv(&[ec2(0, "-1.5", "1")]));
    let msg = message(&p);
    assert!(msg.contains("negative") && msg.contains("row 2"), "{msg}");
    let p = write(dir.path(), "nan.csv", &csv(&[ec2(0, "NaN", "1")]));
    let msg = message(&p);
    assert!(msg.contains("NaN") && msg.contains("row 2"), "{msg}");
    let credit = ec2(1, "-3", "0").replacen("Usage", "Credit", 1);
    let p = write(dir.path(), "credit.csv", &csv(&[ec2(0, "1", "1"), credit]));
    let m = read(&p).unwrap().model;
    assert_eq!(m.total_ode(), Money::from_units(1));
    assert_eq!(m.ignored.by_reason["charge category Credit"], 1);
}

#[test]
fn empty_file_and_wrong_compression() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "empty.csv", b"");
    assert!(matches!(read(&p).unwrap_err(), IngestError::Empty { .. }));
    // Named .gz, but plain text.
    let p = write(dir.path(), "plain.csv.gz", &csv(&[ec2(0, "1", "1")]));
    let msg = message(&p);
    assert!(
        msg.contains("plain.csv.gz") && msg.contains("not gzip"),
        "{msg}"
    );
    // zstd magic bytes.
    let p = write(dir.path(), "z.csv", &[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0]);
    assert!(message(&p).contains("zstd"));
    // gzip content under a .csv name is detected by its magic bytes and read.
    let p = write(
        dir.path(),
        "really-gz.csv",
        &gzip(&csv(&[ec2(0, "1", "1")])),
    );
    assert_eq!(read(&p).unwrap().model.total_ode(), Money::from_units(1));
    // A truncated gzip stream.
    let full = gzip(&csv(&(0..20).map(|h| ec2(h, "1", "1")).collect::<Vec<_>>()));
    let p = write(dir.path(), "cut.csv.gz", &full[..full.len() / 2]);
    let msg = message(&p);
    assert!(msg.contains("cut.csv.gz") && msg.contains("gzip"), "{msg}");
}

#[test]
fn mixed_currencies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let eur = ec2(1, "1", "1").replace(",USD,", ",EUR,");
    let p = write(dir.path(), "cur.csv", &csv(&[ec2(0, "1", "1"), eur]));
    let e = read(&p).unwrap_err();
    assert!(
        matches!(&e, IngestError::MixedCurrency { row: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("USD") && e.to_string().contains("EUR"));
}

#[test]
fn directory_tree_reads_every_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "2025/01/part-0.csv", &csv(&[ec2(0, "1", "1")]));
    write(
        dir.path(),
        "2025/01/part-1.csv.gz",
        &gzip(&csv(&[ec2(1, "2", "2")])),
    );
    write(dir.path(), "2025/02/readme.txt", b"not a bill");
    let m = read(dir.path()).unwrap().model;
    assert_eq!(m.total_ode(), Money::from_units(3));
    assert_eq!(m.rows_read, 2);
    // One bad file anywhere fails the whole tree: no partial model.
    write(dir.path(), "2025/03/bad.csv", &csv(&[ec2(2, "oops", "1")]));
    assert!(message(dir.path()).contains("bad.csv"));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        read(empty.path()).unwrap_err(),
        IngestError::NoInput { .. }
    ));
}

fn typed_parquet(path: &Path, list_as_decimal: bool, truncate: bool) {
    let hours = 4i64;
    let base_us = 1_735_689_600i64 * 1_000_000; // 2025-01-01T00:00:00Z
    let ts = |k: i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(
                (0..hours)
                    .map(|h| base_us + (h + k) * 3_600_000_000)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        )
    };
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; hours as usize])) };
    let list: ArrayRef = if list_as_decimal {
        Arc::new(
            Decimal128Array::from(vec![96_000i128, 192_000, 288_000, 96_000])
                .with_precision_and_scale(18, 6)
                .unwrap(),
        )
    } else {
        Arc::new(Float64Array::from(vec![0.096, 0.192, 0.288, 0.096]))
    };
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("ChargeCategory", text("Usage")),
        ("ChargePeriodStart", ts(0)),
        ("ChargePeriodEnd", ts(1)),
        ("ProviderName", text("AWS")),
        ("BillingCurrency", text("USD")),
        ("RegionId", text("us-east-1")),
        ("ServiceCategory", text("Compute")),
        ("ServiceName", text("Amazon Elastic Compute Cloud")),
        ("ListCost", list.clone()),
        ("EffectiveCost", list),
        (
            "ConsumedQuantity",
            Arc::new(Int64Array::from(vec![1, 2, 3, 1])),
        ),
        ("SkuPriceDetails", text(r#"{"InstanceType": "m5.large"}"#)),
        (
            "SubAccountId",
            Arc::new(Int64Array::from(vec![111; hours as usize])),
        ),
    ];
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    if truncate {
        buf.truncate(buf.len() - 20);
    }
    std::fs::write(path, buf).unwrap();
}

#[test]
fn typed_parquet_columns_read_like_text() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = [
        ("0.096", "1"),
        ("0.192", "2"),
        ("0.288", "3"),
        ("0.096", "1"),
    ]
    .iter()
    .enumerate()
    .map(|(h, (l, q))| ec2(h as u32, l, q))
    .collect();
    let from_csv = read(&write(dir.path(), "a.csv", &csv(&rows)))
        .unwrap()
        .model;
    for decimal in [false, true] {
        let p = dir.path().join(format!("t{decimal}.parquet"));
        typed_parquet(&p, decimal, false);
        let m = read(&p).unwrap().model;
        assert_eq!(m.range, from_csv.range);
        assert_eq!(m.total_ode(), from_csv.total_ode());
        assert_eq!(m.groups[0].quantity, from_csv.groups[0].quantity);
        assert_eq!(
            m.groups[0].by_sub_account,
            from_csv.groups[0].by_sub_account
        );
    }
}

#[test]
fn truncated_parquet_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.parquet");
    typed_parquet(&p, false, true);
    let e = read(&p).unwrap_err();
    assert!(matches!(e, IngestError::Parquet { .. }), "{e}");
    assert!(e.to_string().contains("cut.parquet"));
    // Not Parquet at all, under a .parquet name.
    let p = write(dir.path(), "fake.parquet", b"ChargeCategory\nUsage\n");
    assert!(message(&p).contains("PAR1"));
}

#[test]
fn rate_card_errors() {
    let dir = tempfile::tempdir().unwrap();
    let head = "ProviderName,RegionId,InstanceType,OperatingSystem,Tenancy,Instrument,TermYears,PaymentOption,EffectiveHourlyRate,UpfrontShare\n";
    let ok = "AWS,us-east-1,m5.large,Linux,Shared,OnDemand,0,NoUpfront,0.096,0.0\n";
    let card = read_rate_card(&write(
        dir.path(),
        "ok.csv",
        format!("{head}{ok}").as_bytes(),
    ))
    .unwrap();
    assert_eq!(card.len(), 1);
    for (name, row, expect) in [
        (
            "neg.csv",
            "AWS,us-east-1,m5.large,Linux,Shared,ComputeSavingsPlan,1,NoUpfront,-0.05,0.0\n",
            "negative",
        ),
        (
            "nan.csv",
            "AWS,us-east-1,m5.large,Linux,Shared,ComputeSavingsPlan,1,NoUpfront,NaN,0.0\n",
            "not a decimal",
        ),
        (
            "inst.csv",
            "AWS,us-east-1,m5.large,Linux,Shared,SpotBlock,1,NoUpfront,0.05,0.0\n",
            "unknown instrument",
        ),
        (
            "prov.csv",
            "AWS,us-east-1,m5.large,Linux,Shared,AzureReservation,1,NoUpfront,0.05,0.0\n",
            "not sold by AWS",
        ),
    ] {
        let e = read_rate_card(&write(
            dir.path(),
            name,
            format!("{head}{ok}{row}").as_bytes(),
        ))
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(name) && msg.contains("row 3") && msg.contains(expect),
            "{msg}"
        );
    }
    let e = read_rate_card(&write(
        dir.path(),
        "cols.csv",
        b"ProviderName,RegionId\nAWS,x\n",
    ))
    .unwrap_err();
    assert!(matches!(e, IngestError::MissingColumn { .. }));
}

#[test]
fn commitment_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let head = "ContractCommitmentId,ContractCommitmentCost,ContractCommitmentPeriodStart,ContractCommitmentPeriodEnd,x_ProviderName,x_Instrument,x_TermYears,x_PaymentOption,x_RegionId,x_InstanceType,x_HourlyCommitment,x_InstanceCount\n";
    let sp = "sp-1,,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z,AWS,ComputeSavingsPlan,1,AllUpfront,,,1.5,\n";
    let v = read_commitments(
        &write(dir.path(), "ok.csv", format!("{head}{sp}").as_bytes()),
        None,
    )
    .unwrap();
    assert_eq!(v[0].hourly_cost, Money::parse("1.5").unwrap());
    assert_eq!(v[0].upfront, Money::parse("13140").unwrap());
    let bad = "ri-1,,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z,AWS,StandardReservedInstance,1,NoUpfront,us-east-1,m5.large,,2.5\n";
    let msg = read_commitments(
        &write(dir.path(), "ri.csv", format!("{head}{bad}").as_bytes()),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("ri.csv") && msg.contains("x_InstanceCount"),
        "{msg}"
    );
    let unpriced = "ri-2,,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z,AWS,StandardReservedInstance,1,NoUpfront,us-east-1,m5.large,,2\n";
    let msg = read_commitments(
        &write(
            dir.path(),
            "ri2.csv",
            format!("{head}{unpriced}").as_bytes(),
        ),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("rate card"), "{msg}");
}
