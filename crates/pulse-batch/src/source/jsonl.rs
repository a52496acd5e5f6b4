//! JSONL readings: one JSON object per line (see [`super::json::JsonReading`]). Blank
//! lines are skipped; a line that is not a JSON object is a malformed row.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::aggregator::Aggregator;
use crate::error::BatchError;
use crate::progress::Progress;
use crate::reading::{RejectReason, Rejection};
use crate::rejects::Position;

use super::json::JsonReading;

const PROGRESS_EVERY: u64 = 16 * 1024;

/// Aggregates the lines of bytes `range` (starting at a line start).
pub(crate) fn aggregate_range(
    path: &Path,
    (start, end): (u64, u64),
    agg: &mut Aggregator<'_>,
    progress: &Progress,
) -> Result<(), BatchError> {
    let mut file = File::open(path).map_err(|e| BatchError::io("cannot read", path, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| BatchError::io("cannot read", path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file.take(end - start));
    let mut line = Vec::with_capacity(256);
    let mut pos = start;
    let mut rows_since = 0u64;
    let mut bytes_since = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| BatchError::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        let at = Position::Byte(pos);
        pos += n as u64;
        bytes_since += n as u64;
        let body = line.trim_ascii();
        let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
        if body.is_empty() {
            continue;
        }
        let record = || String::from_utf8_lossy(body).into_owned();
        match JsonReading::parse(body) {
            Ok(reading) => reading.with_raw(None, None, |raw| agg.push(raw, at, record))?,
            Err(e) => agg.reject(
                at,
                Rejection::new(
                    RejectReason::MalformedRow,
                    format!("not a JSON reading object: {e}"),
                ),
                record,
            ),
        }
        rows_since += 1;
        if rows_since == PROGRESS_EVERY {
            progress.add(rows_since, bytes_since);
            rows_since = 0;
            bytes_since = 0;
        }
    }
    progress.add(rows_since, bytes_since);
    Ok(())
}
