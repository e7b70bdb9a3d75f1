//! Ingest: the content of commitd's input files, turned into domain types.
//!
//! The core never opens a file, walks a directory or draws on a terminal: the service's
//! `sources` module does, and hands each file in as a reader (`impl Read`, or a Parquet
//! [`ChunkReader`](parquet::file::reader::ChunkReader)) with its path, which is only used to
//! name the file in errors. Progress is reported through the [`Progress`] trait.
//!
//! * FOCUS CostAndUsage exports (CSV, gzip CSV, Parquet; the service finds the files of a
//!   directory tree, as AWS Data Exports and Azure cost exports lay out their partitions) ->
//!   [`FocusReader`] -> [`Bill`]: the [`UsageModel`](crate::domain::UsageModel) of eligible
//!   compute demand plus what the bill says about existing commitments. Which rows are demand is
//!   decided in [`classify`].
//! * A FOCUS 1.3 ContractCommitment file (`commitments.csv`) -> existing
//!   [`Commitment`](crate::domain::Commitment)s, completed with those only the bill reveals.
//! * The scenario rate card (`rates.csv`) -> [`RateCard`](crate::domain::RateCard).
//! * `scenario.toml` -> [`ScenarioFile`]; with the three files read -> [`Scenario`].
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

pub use accumulate::{Bill, BillCommitment, OtherSpend};
pub use commitments::{infer_commitments, read_commitments, InferredCommitment};
pub use rates::read_rate_card;
pub use scenario::{Scenario, ScenarioFile};

use crate::domain::HourRange;
use accumulate::{Accumulator, RowError};
use parquet::file::reader::ChunkReader;
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

/// How far a read has got, told to whoever shows it (the service draws a progress bar on a
/// terminal); the core only counts. Shared by the threads of a Parquet read, hence `Sync`.
pub trait Progress: Sync {
    /// A read of `total` units begins (`what` says which file).
    fn start(&self, _what: &Path, _total: u64, _unit: ProgressUnit) {}
    /// `n` more units were read.
    fn advance(&self, _n: u64) {}
    /// The read ended.
    fn finish(&self) {}
}

/// What a [`Progress`] total counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressUnit {
    /// Bytes of a (compressed) CSV file.
    Bytes,
    /// Rows of a Parquet file.
    Rows,
}

/// No progress reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// The kinds of file a FOCUS export comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    CsvGz,
    Parquet,
}

/// The format a file's name says (None: not a FOCUS file's name).
pub fn format_by_name(p: &Path) -> Option<Format> {
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

/// How many first bytes of a file [`sniff`] looks at.
pub const SNIFF_BYTES: usize = 4;

/// The format of the file `name` from its first bytes `head` (up to [`SNIFF_BYTES`]; fewer
/// only if the file is that short); the name only decides which error to give.
pub fn sniff(name: &Path, head: &[u8]) -> Result<Format, IngestError> {
    if head.is_empty() {
        return Err(IngestError::Empty {
            path: name.to_path_buf(),
        });
    }
    let compression = |what: &str| IngestError::Compression {
        path: name.to_path_buf(),
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
    match (format_by_name(name), by_content) {
        (Some(Format::CsvGz), f) if f != Format::CsvGz => Err(IngestError::Compression {
            path: name.to_path_buf(),
            detail: "named .gz but not gzip-compressed (no gzip magic bytes)".into(),
        }),
        (Some(Format::Parquet), f) if f != Format::Parquet => Err(IngestError::Parquet {
            path: name.to_path_buf(),
            detail: "no PAR1 magic bytes at the start".into(),
        }),
        _ => Ok(by_content),
    }
}

/// Reads FOCUS files, one after the other, into one [`Bill`].
pub struct FocusReader {
    acc: Accumulator,
}

impl FocusReader {
    /// Keeps only the hours of `range` (rows outside are skipped and counted); `None`: the
    /// bill's hours.
    pub fn new(range: Option<HourRange>) -> Self {
        FocusReader {
            acc: Accumulator::new(range),
        }
    }

    /// Reads a CSV file (gzip-compressed if `gzip`; multi-member gzip as exports write it).
    /// `name` names the file in errors; `size` (bytes of `reader`, if known) is the progress
    /// total.
    pub fn read_csv(
        &mut self,
        name: &Path,
        reader: impl Read,
        gzip: bool,
        size: Option<u64>,
        progress: &dyn Progress,
    ) -> Result<(), IngestError> {
        csv_source::read(name, reader, gzip, size, &mut self.acc, progress)
    }

    /// Reads a Parquet file. Row groups are read on rayon's threads, each from its own clone
    /// of `data`: a clone must read independently of the others (`bytes::Bytes`, or a reader
    /// of a file by position; not a shared file offset).
    pub fn read_parquet<R>(
        &mut self,
        name: &Path,
        data: R,
        progress: &dyn Progress,
    ) -> Result<(), IngestError>
    where
        R: ChunkReader + Clone + 'static,
    {
        parquet_source::read(name, data, &mut self.acc, progress)
    }

    /// The bill read so far.
    pub fn finish(self) -> Bill {
        self.acc.finish()
    }
}
