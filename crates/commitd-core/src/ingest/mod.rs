//! Ingest: everything commitd reads from files, turned into domain types.
//!
//! * FOCUS CostAndUsage exports (CSV, gzip CSV, Parquet; one file or a directory tree, as AWS
//!   Data Exports and Azure cost exports lay out their partitions) -> [`Bill`]: the
//!   [`UsageModel`](crate::domain::UsageModel) of eligible compute demand plus what the bill says
//!   about existing commitments. Which rows are demand is decided in [`classify`].
//! * A FOCUS 1.3 ContractCommitment file (`commitments.csv`) -> existing
//!   [`Commitment`](crate::domain::Commitment)s, completed with those only the bill reveals.
//! * The scenario rate card (`rates.csv`) -> [`RateCard`](crate::domain::RateCard).
//! * A scenario directory (`scenario.toml` + the three files) -> [`Scenario`].
//!
//! Every error names the file, and where it applies the row and the column. Nothing partial is
//! ever returned: one bad row in a relevant place fails the whole read, because a usage model
//! silently missing a day of demand would make every later decision wrong.

pub mod accumulate;
pub mod classify;
pub mod commitments;
mod csv_source;
mod parquet_source;
pub mod rates;
pub mod row;
pub mod scenario;

pub use accumulate::{Bill, BillCommitment};
pub use commitments::{infer_commitments, read_commitments, InferredCommitment};
pub use rates::read_rate_card;
pub use scenario::{Scenario, ScenarioFile};

use crate::domain::HourRange;
use accumulate::{Accumulator, RowError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a file could not be read. Nothing partial is returned with any of these.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: no FOCUS files (*.csv, *.csv.gz, *.parquet) found")]
    NoInput { path: PathBuf },
    #[error("{path}: {detail}")]
    Compression { path: PathBuf, detail: String },
    #[error("{path}: missing required column {column}")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{path}: row {row}, column {column}: {reason} (value '{value}')")]
    Field {
        path: PathBuf,
        row: u64,
        column: String,
        value: String,
        reason: String,
    },
    #[error("{path}: row {row}: {reason}")]
    Row {
        path: PathBuf,
        row: u64,
        reason: String,
    },
    #[error("{path}: row {row}, column BillingCurrency: mixed currencies ({first} earlier, {found} here); convert the bill to one currency first")]
    MixedCurrency {
        path: PathBuf,
        row: u64,
        first: String,
        found: String,
    },
    #[error("{path}: not a readable Parquet file: {detail}")]
    Parquet { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

impl IngestError {
    fn at_row(path: &Path, row: u64, e: RowError) -> Self {
        match e {
            RowError::Field(f) => IngestError::Field {
                path: path.to_path_buf(),
                row,
                column: f.col.name().to_string(),
                value: f.value,
                reason: f.reason,
            },
            RowError::MixedCurrency { first, found } => IngestError::MixedCurrency {
                path: path.to_path_buf(),
                row,
                first,
                found,
            },
        }
    }
}

/// How to read FOCUS usage.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Keep only these hours (rows outside are skipped and counted); `None` = the bill's hours.
    pub range: Option<HourRange>,
    /// Draw a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
}

/// The kinds of file a FOCUS export comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    CsvGz,
    Parquet,
}

/// FOCUS files under `path` (itself if a file), recursively, in sorted order.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| IngestError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| IngestError::Io {
                path: dir.clone(),
                source,
            })?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if format_by_name(&p).is_some() {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(IngestError::NoInput {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

fn format_by_name(p: &Path) -> Option<Format> {
    let name = p.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".csv.gz") {
        Some(Format::CsvGz)
    } else if name.ends_with(".csv") {
        Some(Format::Csv)
    } else if name.ends_with(".parquet") {
        Some(Format::Parquet)
    } else {
        None
    }
}

/// The format of a file from its first bytes; the extension only decides which error to give.
pub fn sniff(path: &Path) -> Result<Format, IngestError> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let n = read_up_to(&mut f, &mut head).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if n == 0 {
        return Err(IngestError::Empty {
            path: path.to_path_buf(),
        });
    }
    let head = &head[..n];
    let compression = |what: &str| IngestError::Compression {
        path: path.to_path_buf(),
        detail: format!("{what}-compressed; commitd reads plain CSV, gzip CSV and Parquet"),
    };
    let by_content = if head.starts_with(&[0x1f, 0x8b]) {
        Format::CsvGz
    } else if head.starts_with(b"PAR1") {
        Format::Parquet
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(compression("zstd"));
    } else if head.starts_with(b"BZh") {
        return Err(compression("bzip2"));
    } else if head.starts_with(b"PK") {
        return Err(compression("zip"));
    } else {
        Format::Csv
    };
    match (format_by_name(path), by_content) {
        (Some(Format::CsvGz), f) if f != Format::CsvGz => Err(IngestError::Compression {
            path: path.to_path_buf(),
            detail: "named .gz but not gzip-compressed (no gzip magic bytes)".into(),
        }),
        (Some(Format::Parquet), f) if f != Format::Parquet => Err(IngestError::Parquet {
            path: path.to_path_buf(),
            detail: "no PAR1 magic bytes at the start".into(),
        }),
        _ => Ok(by_content),
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads FOCUS usage from a file or a directory tree of files into one [`Bill`].
pub fn read_focus(path: &Path, options: &ReadOptions) -> Result<Bill, IngestError> {
    let files = discover(path)?;
    let mut acc = Accumulator::new(options.range);
    for file in &files {
        read_file_into(file, &mut acc, options.progress)?;
    }
    Ok(acc.finish())
}

fn read_file_into(path: &Path, acc: &mut Accumulator, progress: bool) -> Result<(), IngestError> {
    match sniff(path)? {
        Format::Csv => csv_source::read(path, false, acc, progress),
        Format::CsvGz => csv_source::read(path, true, acc, progress),
        Format::Parquet => parquet_source::read(path, acc, progress),
    }
}

/// A progress bar on stderr, or a hidden one when stderr is not a terminal (CI, pipes).
pub(crate) fn progress_bar(enabled: bool, total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
