//! FOCUS Parquet through the parquet crate's arrow reader, batch by batch.
//!
//! Only the columns ingest uses are decoded (a projection), and each batch is folded into the
//! accumulator and dropped, so memory is bounded by groups x hours plus one batch. Columns may
//! be typed as the writer liked: Utf8/LargeUtf8/Utf8View, dictionaries of those, Float64/32,
//! Int64/32, Decimal128, Timestamp (any unit, any zone) or Date32.

use super::accumulate::{Accumulator, RowError};
use super::row::{Col, ColumnMap, Row, Val, N_COLS};
use super::{IngestError, Progress, ProgressUnit};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, Decimal128Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;
use rayon::prelude::*;
use std::path::Path;

const BATCH_ROWS: usize = 16 * 1024;

/// One column of a batch, ready for per-row access without downcasting again.
enum ColArr<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    F64(&'a arrow_array::Float64Array),
    F32(&'a arrow_array::Float32Array),
    I64(&'a arrow_array::Int64Array),
    I32(&'a arrow_array::Int32Array),
    Dec(&'a Decimal128Array, i8),
    /// Timestamps converted to seconds (null = None).
    Seconds(Vec<Option<i64>>),
    Dict(Vec<usize>, &'a dyn Array, Box<ColArr<'a>>),
}

impl<'a> ColArr<'a> {
    fn new(array: &'a dyn Array, column: &str, path: &Path) -> Result<Self, IngestError> {
        let unsupported = || IngestError::Invalid {
            path: path.to_path_buf(),
            detail: format!(
                "column {column} has Parquet/Arrow type {} which commitd does not read",
                array.data_type()
            ),
        };
        let seconds = |f: &dyn Fn(usize) -> i64| -> Vec<Option<i64>> {
            (0..array.len())
                .map(|i| (!array.is_null(i)).then(|| f(i)))
                .collect()
        };
        Ok(match array.data_type() {
            DataType::Utf8 => ColArr::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => ColArr::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => ColArr::View(array.as_string_view()),
            DataType::Float64 => ColArr::F64(array.as_primitive::<Float64Type>()),
            DataType::Float32 => ColArr::F32(array.as_primitive::<Float32Type>()),
            DataType::Int64 => ColArr::I64(array.as_primitive::<Int64Type>()),
            DataType::Int32 => ColArr::I32(array.as_primitive::<Int32Type>()),
            DataType::Decimal128(_, scale) => ColArr::Dec(
                array
                    .as_any()
                    .downcast_ref::<Decimal128Array>()
                    .ok_or_else(unsupported)?,
                *scale,
            ),
            DataType::Timestamp(unit, _) => {
                let (div, values): (i64, Box<dyn Fn(usize) -> i64>) = match unit {
                    TimeUnit::Second => {
                        let a = array.as_primitive::<TimestampSecondType>();
                        (1, Box::new(move |i| a.value(i)))
                    }
                    TimeUnit::Millisecond => {
                        let a = array.as_primitive::<TimestampMillisecondType>();
                        (1_000, Box::new(move |i| a.value(i)))
                    }
                    TimeUnit::Microsecond => {
                        let a = array.as_primitive::<TimestampMicrosecondType>();
                        (1_000_000, Box::new(move |i| a.value(i)))
                    }
                    TimeUnit::Nanosecond => {
                        let a = array.as_primitive::<TimestampNanosecondType>();
                        (1_000_000_000, Box::new(move |i| a.value(i)))
                    }
                };
                // A fraction of a second past the hour must still be refused by Row::hour: nudge it.
                ColArr::Seconds(seconds(&|i| {
                    let v = values(i);
                    let secs = v.div_euclid(div);
                    if v.rem_euclid(div) != 0 && secs.rem_euclid(3600) == 0 {
                        secs + 1
                    } else {
                        secs
                    }
                }))
            }
            DataType::Date32 => {
                let a = array.as_primitive::<Date32Type>();
                ColArr::Seconds(seconds(&|i| a.value(i) as i64 * 86_400))
            }
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary_opt().ok_or_else(unsupported)?;
                let values: &'a dyn Array = dict.values().as_ref();
                let keys = if values.is_empty() {
                    vec![0; array.len()]
                } else {
                    dict.normalized_keys()
                };
                ColArr::Dict(keys, array, Box::new(ColArr::new(values, column, path)?))
            }
            _ => return Err(unsupported()),
        })
    }

    fn get(&self, i: usize) -> Val<'a> {
        match self {
            ColArr::Utf8(a) => text(a.is_null(i), || a.value(i)),
            ColArr::LargeUtf8(a) => text(a.is_null(i), || a.value(i)),
            ColArr::View(a) => text(a.is_null(i), || a.value(i)),
            ColArr::F64(a) => num(a.is_null(i), || Val::F64(a.value(i))),
            ColArr::F32(a) => num(a.is_null(i), || Val::F64(a.value(i) as f64)),
            ColArr::I64(a) => num(a.is_null(i), || Val::I64(a.value(i))),
            ColArr::I32(a) => num(a.is_null(i), || Val::I64(a.value(i) as i64)),
            ColArr::Dec(a, s) => num(a.is_null(i), || Val::Dec(a.value(i), *s)),
            ColArr::Seconds(v) => v[i].map(Val::Seconds).unwrap_or(Val::Null),
            ColArr::Dict(keys, array, values) => {
                if array.is_null(i) {
                    Val::Null
                } else {
                    values.get(keys[i])
                }
            }
        }
    }
}

fn text<'a>(null: bool, value: impl FnOnce() -> &'a str) -> Val<'a> {
    if null {
        Val::Null
    } else {
        Val::from_text(value())
    }
}

fn num<'a>(null: bool, value: impl FnOnce() -> Val<'a>) -> Val<'a> {
    if null {
        Val::Null
    } else {
        value()
    }
}

/// Reads the footer and checks the columns; returns the builder and the projection roots.
fn open<R: ChunkReader + 'static>(
    path: &Path,
    data: R,
) -> Result<(ParquetRecordBatchReaderBuilder<R>, Vec<usize>), IngestError> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| parquet_err(path, &e))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let map = ColumnMap::from_header(names.iter().map(String::as_str));
    if let Some(column) = map.missing_required() {
        return Err(IngestError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
        });
    }
    let mut roots: Vec<usize> = map.index.iter().flatten().copied().collect();
    roots.sort_unstable();
    roots.dedup();
    Ok((builder, roots))
}

fn parquet_err(path: &Path, e: &dyn std::fmt::Display) -> IngestError {
    IngestError::Parquet {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Reads the file `data` (named `path` in errors) into `acc`. Row groups are split into
/// contiguous parts read on rayon's threads, each from its own clone of `data` into its own
/// accumulator (so memory is groups x hours per thread), merged back in file order: the first
/// error in file order wins, as in a sequential read.
pub fn read<R: ChunkReader + Clone + 'static>(
    path: &Path,
    data: R,
    acc: &mut Accumulator,
    progress: &dyn Progress,
) -> Result<(), IngestError> {
    let (builder, _) = open(path, data.clone())?;
    let meta = builder.metadata().clone();
    drop(builder);
    let sizes: Vec<u64> = meta
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows().max(0) as u64)
        .collect();
    let total: u64 = sizes.iter().sum();
    progress.start(path, total, ProgressUnit::Rows);
    let threads = rayon::current_num_threads().min(sizes.len()).max(1);
    if threads == 1 || total < 200_000 {
        read_groups(path, data, None, 0, acc, progress)?;
        progress.finish();
        return Ok(());
    }
    // Contiguous parts of about equal rows.
    let mut parts: Vec<(Vec<usize>, u64)> = Vec::new();
    let (mut current, mut rows, mut base) = (Vec::new(), 0u64, 0u64);
    for (i, n) in sizes.iter().enumerate() {
        current.push(i);
        rows += n;
        if rows * threads as u64 >= total * (parts.len() as u64 + 1) || i + 1 == sizes.len() {
            let first_row = base;
            base = rows;
            parts.push((std::mem::take(&mut current), first_row));
        }
    }
    let template: &Accumulator = acc;
    let results: Vec<Result<Accumulator, IngestError>> = parts
        .into_par_iter()
        .map(|(groups, first_row)| {
            let mut part = template.fork();
            read_groups(
                path,
                data.clone(),
                Some(groups),
                first_row,
                &mut part,
                progress,
            )?;
            Ok(part)
        })
        .collect();
    for part in results {
        acc.merge(part?).map_err(|e| match e {
            RowError::MixedCurrency { first, found } => IngestError::Invalid {
                path: path.to_path_buf(),
                detail: format!(
                    "column BillingCurrency: mixed currencies ({first} and {found}); convert the bill to one currency first"
                ),
            },
            RowError::Field(f) => IngestError::at_row(path, 0, RowError::Field(f)),
        })?;
    }
    progress.finish();
    Ok(())
}

fn read_groups<R: ChunkReader + 'static>(
    path: &Path,
    data: R,
    row_groups: Option<Vec<usize>>,
    first_row: u64,
    acc: &mut Accumulator,
    progress: &dyn Progress,
) -> Result<(), IngestError> {
    let (builder, roots) = open(path, data)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
    if let Some(groups) = row_groups {
        builder = builder.with_row_groups(groups);
    }
    let reader = builder.build().map_err(|e| parquet_err(path, &e))?;
    let mut row_base = first_row;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_err(path, &e))?;
        fold_batch(path, &batch, row_base, acc)?;
        row_base += batch.num_rows() as u64;
        progress.advance(batch.num_rows() as u64);
    }
    Ok(())
}

fn fold_batch(
    path: &Path,
    batch: &RecordBatch,
    row_base: u64,
    acc: &mut Accumulator,
) -> Result<(), IngestError> {
    let map = ColumnMap::from_header(batch.schema().fields().iter().map(|f| f.name().as_str()));
    let mut cols: Vec<(usize, ColArr<'_>)> = Vec::with_capacity(N_COLS);
    for col in Col::ALL {
        if let Some(i) = map.get(col) {
            let name = batch.schema().field(i).name().clone();
            cols.push((
                col as usize,
                ColArr::new(batch.column(i).as_ref(), &name, path)?,
            ));
        }
    }
    let mut row = Row::new();
    for r in 0..batch.num_rows() {
        for (slot, arr) in &cols {
            row.vals[*slot] = arr.get(r);
        }
        // Rows are numbered from 1 within the file, as a reader of the file would count them.
        acc.add(&row)
            .map_err(|e| IngestError::at_row(path, row_base + r as u64 + 1, e))?;
    }
    Ok(())
}
