//! CSV readings: a header naming the columns (`user_id, metric, value, recorded_at`,
//! optional `unit`, `source`, in any order, others ignored), then one reading per row.
//!
//! Rows are read as `ByteRecord`s into one reused buffer; fields go straight to
//! validation as byte slices, so an accepted row allocates nothing.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use csv::{ByteRecord, ReaderBuilder};

use crate::aggregator::Aggregator;
use crate::error::BatchError;
use crate::progress::Progress;
use crate::reading::{RawReading, RawValue, RejectReason, Rejection};
use crate::rejects::Position;

/// Rows between progress updates.
const PROGRESS_EVERY: u64 = 16 * 1024;

/// Where each field is, from the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Columns {
    /// Fields per row.
    pub width: usize,
    /// `user_id`.
    pub user_id: usize,
    /// `metric`.
    pub metric: usize,
    /// `value`.
    pub value: usize,
    /// `recorded_at`.
    pub recorded_at: usize,
    /// `unit`, if present.
    pub unit: Option<usize>,
    /// `source`, if present.
    pub source: Option<usize>,
    /// Byte offset of the first data row.
    pub data_start: u64,
}

fn csv_error(path: &Path, e: csv::Error) -> BatchError {
    let reason = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => BatchError::io("cannot read", path, io),
        _ => BatchError::InvalidInput {
            path: path.display().to_string(),
            reason,
        },
    }
}

/// Reads the header and locates the columns.
pub(crate) fn read_header(path: &Path) -> Result<Columns, BatchError> {
    let file = File::open(path).map_err(|e| BatchError::io("cannot read", path, e))?;
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let mut header = ByteRecord::new();
    let invalid = |reason: String| BatchError::InvalidInput {
        path: path.display().to_string(),
        reason,
    };
    if !reader
        .read_byte_record(&mut header)
        .map_err(|e| csv_error(path, e))?
    {
        return Err(invalid("the file is empty (expected a header row)".into()));
    }
    // Spreadsheet exports often start with a UTF-8 byte order mark.
    let find = |name: &str| {
        header.iter().position(|field| {
            let field = field.strip_prefix(b"\xef\xbb\xbf").unwrap_or(field);
            field.trim_ascii().eq_ignore_ascii_case(name.as_bytes())
        })
    };
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            invalid(format!(
                "the header has no `{name}` column (expected user_id, metric, value, recorded_at and optionally unit, source)"
            ))
        })
    };
    Ok(Columns {
        width: header.len(),
        user_id: need("user_id")?,
        metric: need("metric")?,
        value: need("value")?,
        recorded_at: need("recorded_at")?,
        unit: find("unit"),
        source: find("source"),
        data_start: reader.position().byte(),
    })
}

fn render(record: &ByteRecord) -> String {
    let fields: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    fields.join(",")
}

/// Aggregates the rows of bytes `range` (starting at a line start after the header).
pub(crate) fn aggregate_range(
    path: &Path,
    columns: &Columns,
    (start, end): (u64, u64),
    agg: &mut Aggregator<'_>,
    progress: &Progress,
) -> Result<(), BatchError> {
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| BatchError::io("cannot read", path, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| BatchError::io("cannot read", path, e))?;
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(file.take(end - start));
    let mut record = ByteRecord::new();
    let mut rows_since = 0u64;
    let mut bytes_reported = 0u64;
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        let at = Position::Byte(start + record.position().map_or(0, |p| p.byte()));
        if record.len() != columns.width {
            let rejection = Rejection::new(
                RejectReason::MalformedRow,
                format!("expected {} fields, found {}", columns.width, record.len()),
            );
            agg.reject(at, rejection, || render(&record));
        } else {
            let raw = RawReading {
                user_id: record.get(columns.user_id),
                metric: record.get(columns.metric),
                value: record.get(columns.value).map(RawValue::Text),
                unit: columns.unit.and_then(|i| record.get(i)),
                recorded_at: record.get(columns.recorded_at),
                source: columns.source.and_then(|i| record.get(i)),
            };
            agg.push(&raw, at, || render(&record))?;
        }
        rows_since += 1;
        if rows_since == PROGRESS_EVERY {
            let done = reader.position().byte();
            progress.add(rows_since, done - bytes_reported);
            bytes_reported = done;
            rows_since = 0;
        }
    }
    progress.add(rows_since, (end - start) - bytes_reported);
    Ok(())
}
