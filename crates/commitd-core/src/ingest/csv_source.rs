//! FOCUS CSV and gzip CSV. Rows are streamed (one reused record), so memory does not grow
//! with the file. Row numbers in errors are line numbers in the (decompressed) file, the header
//! being line 1, so that they match what an editor shows.

use super::accumulate::Accumulator;
use super::row::{ColumnMap, Row, Val, N_COLS};
use super::{IngestError, Progress, ProgressUnit};
use std::io::{BufReader, Read};
use std::path::Path;

/// Counts bytes read from the file for the progress report, a megabyte at a time.
struct Counting<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
    pending: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending += n as u64;
        if self.pending >= 1 << 20 {
            self.progress.advance(self.pending);
            self.pending = 0;
        }
        Ok(n)
    }
}

/// Reads the CSV content of `file` (named `path` in errors) into `acc`.
pub fn read(
    path: &Path,
    file: impl Read,
    gzip: bool,
    size: Option<u64>,
    acc: &mut Accumulator,
    progress: &dyn Progress,
) -> Result<(), IngestError> {
    progress.start(path, size.unwrap_or(0), ProgressUnit::Bytes);
    let counted = Counting {
        inner: BufReader::with_capacity(1 << 16, file),
        progress,
        pending: 0,
    };
    let reader: Box<dyn Read + '_> = if gzip {
        // Multi-member: exports concatenate gzip members.
        Box::new(flate2::read::MultiGzDecoder::new(counted))
    } else {
        Box::new(counted)
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 16)
        .from_reader(reader);
    let csv_err = |e: csv::Error, line: u64| -> IngestError {
        let gz = gzip && matches!(e.kind(), csv::ErrorKind::Io(_));
        if gz {
            IngestError::Compression {
                path: path.to_path_buf(),
                detail: format!("gzip stream is corrupt or truncated near line {line}: {e}"),
            }
        } else if let csv::ErrorKind::Io(_) = e.kind() {
            IngestError::Invalid {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        } else {
            IngestError::Row {
                path: path.to_path_buf(),
                row: e.position().map(|p| p.line()).unwrap_or(line),
                reason: e.to_string(),
            }
        }
    };
    let header = csv.byte_headers().map_err(|e| csv_err(e, 1))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].trim_ascii().is_empty()) {
        return Err(IngestError::Empty {
            path: path.to_path_buf(),
        });
    }
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let map = ColumnMap::from_header(names.iter().map(String::as_str));
    if let Some(column) = map.missing_required() {
        return Err(IngestError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
        });
    }
    let wanted: Vec<(usize, usize)> = map
        .index
        .iter()
        .enumerate()
        .filter_map(|(col, idx)| idx.map(|i| (col, i)))
        .collect();
    let mut record = csv::ByteRecord::new();
    let mut line = 1u64;
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(e, line + 1)),
        }
        line = record.position().map(|p| p.line()).unwrap_or(line + 1);
        let mut row = Row {
            vals: [Val::Null; N_COLS],
        };
        for &(col, i) in &wanted {
            let bytes = record.get(i).unwrap_or_default();
            let text = std::str::from_utf8(bytes).map_err(|_| IngestError::Field {
                path: path.to_path_buf(),
                row: line,
                column: names[i].clone(),
                value: String::from_utf8_lossy(bytes).into_owned(),
                reason: "not valid UTF-8".into(),
            })?;
            row.vals[col] = Val::from_text(text);
        }
        acc.add(&row)
            .map_err(|e| IngestError::at_row(path, line, e))?;
    }
    progress.finish();
    if line == 1 {
        tracing::warn!(file = %path.display(), "FOCUS file has a header but no rows");
    }
    Ok(())
}
