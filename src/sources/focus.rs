//! FOCUS usage files: finds them (one file, or a directory tree as AWS Data Exports and Azure
//! cost exports lay out their partitions), opens each and hands it to the core's
//! [`FocusReader`] with its path, which the core uses only to name the file in errors.

use super::progress::TerminalProgress;
use crate::domain::HourRange;
use crate::ingest::{self, Bill, FocusReader, Format, IngestError};
use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to read FOCUS usage.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Keep only these hours (rows outside are skipped and counted); `None` = the bill's hours.
    pub range: Option<HourRange>,
    /// Draw a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// FOCUS files under `path` (itself if a file), recursively, in sorted order.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let meta = std::fs::metadata(path).map_err(io_error(path))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(io_error(&dir))?;
        for entry in entries {
            let entry = entry.map_err(io_error(&dir))?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if ingest::format_by_name(&p).is_some() {
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

/// Reads FOCUS usage from a file or a directory tree of files into one [`Bill`].
pub fn read_focus(path: &Path, options: &ReadOptions) -> Result<Bill, IngestError> {
    let files = discover(path)?;
    let progress = TerminalProgress::new(options.progress);
    let mut reader = FocusReader::new(options.range);
    for file in &files {
        read_file_into(file, &mut reader, &progress)?;
    }
    Ok(reader.finish())
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

/// Opens one FOCUS file, tells its format from its first bytes ([`ingest::sniff`]) and reads
/// it into `reader`.
fn read_file_into(
    path: &Path,
    reader: &mut FocusReader,
    progress: &TerminalProgress,
) -> Result<(), IngestError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut head = [0u8; ingest::SNIFF_BYTES];
    let n = read_up_to(&mut file, &mut head).map_err(io_error(path))?;
    let format = ingest::sniff(path, &head[..n])?;
    match format {
        Format::Csv | Format::CsvGz => {
            file.seek(SeekFrom::Start(0)).map_err(io_error(path))?;
            let size = file.metadata().map_err(io_error(path))?.len();
            reader.read_csv(path, file, format == Format::CsvGz, Some(size), progress)
        }
        Format::Parquet => {
            let data = ParquetFile::new(file).map_err(io_error(path))?;
            reader.read_parquet(path, data, progress)
        }
    }
}

/// A Parquet file read by position (`pread`), so that the clones the core reads row groups
/// from on several threads do not share a file offset (a `File`'s clones do).
#[derive(Clone)]
pub struct ParquetFile {
    file: Arc<File>,
    len: u64,
}

impl ParquetFile {
    pub fn new(file: File) -> std::io::Result<ParquetFile> {
        let len = file.metadata()?.len();
        Ok(ParquetFile {
            file: Arc::new(file),
            len,
        })
    }
}

impl Length for ParquetFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for ParquetFile {
    type T = std::io::BufReader<At>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(std::io::BufReader::new(At {
            file: Arc::clone(&self.file),
            pos: start,
        }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buffer = vec![0u8; length];
        let mut read = 0;
        while read < length {
            match self
                .file
                .read_at(&mut buffer[read..], start + read as u64)?
            {
                0 => break,
                n => read += n,
            }
        }
        if read != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "Expected to read {length} bytes, read only {read}"
            )));
        }
        Ok(buffer.into())
    }
}

/// A reader of a [`ParquetFile`] from a position.
pub struct At {
    file: Arc<File>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
