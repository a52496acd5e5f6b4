//! Reading a CSV or JSONL file in parallel byte ranges, and the file checkpoint.
//!
//! A file is cut into as many ranges as there are workers, each cut moved forward to the
//! next line start; every worker parses and aggregates its range into its own table and
//! output reads the tables side by side, merging the states of keys found in several
//! (a merge of states, exact by construction). CSV allows
//! newlines inside quoted fields, so a CSV file containing a quote is read by one worker.
//!
//! An incremental run resumes at the byte offset where the previous one stopped, after
//! checking that the consumed prefix is still the same file: same or larger size and the
//! same fingerprint of sampled blocks of that prefix. Such a run consumes only complete
//! lines, leaving a line that is still being written for the next run.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use crate::aggregator::{Aggregator, Counts};
use crate::error::BatchError;
use crate::progress::Progress;
use crate::rejects::RejectLog;
use crate::table::AggTable;
use crate::window::WindowSet;

/// The line format of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Below this size a file is read by one worker: threads would cost more than they save.
const PARALLEL_MIN_BYTES: u64 = 1 << 20;

/// The file position an incremental run stores.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    /// Bytes consumed (always at a line start).
    pub offset: u64,
    /// Rows consumed in total.
    pub rows: u64,
    /// Fingerprint of bytes `0..offset`.
    pub fingerprint: String,
}

fn open(path: &Path) -> Result<File, BatchError> {
    File::open(path).map_err(|e| BatchError::io("cannot read", path, e))
}

fn read_at(file: &mut File, path: &Path, at: u64, buf: &mut [u8]) -> Result<usize, BatchError> {
    file.seek(SeekFrom::Start(at))
        .map_err(|e| BatchError::io("cannot read", path, e))?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BatchError::io("cannot read", path, e)),
        }
    }
    Ok(filled)
}

/// The first line start at or after `at` (or `end`).
fn next_line_start(file: &mut File, path: &Path, at: u64, end: u64) -> Result<u64, BatchError> {
    if at == 0 {
        return Ok(0);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = at - 1;
    while pos < end {
        let n = read_at(file, path, pos, &mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok((pos + i as u64 + 1).min(end));
        }
        pos += n as u64;
    }
    Ok(end)
}

/// The position after the last newline before `len` (0 when there is none).
pub fn last_line_end(path: &Path, len: u64) -> Result<u64, BatchError> {
    let mut file = open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = read_at(&mut file, path, start, &mut buf[..(end - start) as usize])?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Cuts `start..end` into up to `parts` ranges at line starts.
pub(crate) fn split(
    path: &Path,
    start: u64,
    end: u64,
    parts: usize,
) -> Result<Vec<(u64, u64)>, BatchError> {
    let parts = parts.max(1) as u64;
    if end <= start {
        return Ok(vec![]);
    }
    let mut file = open(path)?;
    let mut cuts = vec![start];
    for i in 1..parts {
        let guess = start + (end - start) * i / parts;
        let cut = next_line_start(&mut file, path, guess, end)?;
        if cut > *cuts.last().unwrap_or(&start) && cut < end {
            cuts.push(cut);
        }
    }
    cuts.push(end);
    Ok(cuts.windows(2).map(|w| (w[0], w[1])).collect())
}

/// Whether `start..end` contains a `"` (CSV quoting may then hide newlines in fields).
fn contains_quote(path: &Path, start: u64, end: u64) -> Result<bool, BatchError> {
    let mut file = open(path)?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| BatchError::io("cannot read", path, e))?;
    let mut reader = file.take(end - start);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| BatchError::io("cannot read", path, e))?;
        if n == 0 {
            return Ok(false);
        }
        if memchr::memchr(b'"', &buf[..n]).is_some() {
            return Ok(true);
        }
    }
}

/// A fingerprint of bytes `0..len`: FNV-1a over the length and sampled blocks (the first
/// and last 64 KiB and 4 KiB every 8 MiB), enough to notice a rewritten file without
/// reading all of it again.
pub(crate) fn fingerprint(path: &Path, len: u64) -> Result<String, BatchError> {
    const EDGE: u64 = 64 * 1024;
    const STRIDE: u64 = 8 << 20;
    const SAMPLE: u64 = 4 * 1024;
    let mut file = open(path)?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&len.to_le_bytes());
    let mut blocks = vec![(0, EDGE.min(len))];
    let mut at = STRIDE;
    while at + SAMPLE < len {
        blocks.push((at, SAMPLE));
        at += STRIDE;
    }
    blocks.push((len.saturating_sub(EDGE), EDGE.min(len)));
    let mut buf = vec![0u8; EDGE as usize];
    for (start, size) in blocks {
        let n = read_at(&mut file, path, start, &mut buf[..size as usize])?;
        if (n as u64) < size {
            return Err(BatchError::InputChanged {
                path: path.display().to_string(),
                reason: "it is shorter than what was already consumed".into(),
            });
        }
        feed(&buf[..n]);
    }
    Ok(format!("{hash:016x}"))
}

/// What a file worker needs.
pub struct FileJob<'a> {
    /// The file.
    pub path: &'a Path,
    /// CSV or JSONL.
    pub format: FileFormat,
    /// First byte to read (a line start after any header).
    pub start: u64,
    /// First byte not to read.
    pub end: u64,
    /// Worker threads to use at most.
    pub threads: usize,
    /// The windows.
    pub windows: &'a Arc<WindowSet>,
    /// Where rejections go.
    pub rejects: &'a RejectLog,
    /// Progress counters.
    pub progress: &'a Progress,
}

/// Aggregates `start..end` of the file with up to `threads` workers; returns one table
/// per worker (see [`crate::table::Merged`] for reading them as one).
pub fn aggregate(job: &FileJob<'_>) -> Result<(Vec<AggTable>, Counts), BatchError> {
    let columns = match job.format {
        FileFormat::Csv => Some(super::csv::read_header(job.path)?),
        FileFormat::Jsonl => None,
    };
    let mut start = job.start;
    if let Some(columns) = &columns {
        start = start.max(columns.data_start);
    }
    let mut threads = job.threads.max(1);
    if job.end.saturating_sub(start) < PARALLEL_MIN_BYTES {
        threads = 1;
    }
    if threads > 1 && columns.is_some() && contains_quote(job.path, start, job.end)? {
        threads = 1;
    }
    let ranges = split(job.path, start, job.end, threads)?;
    let work = |range: (u64, u64)| -> Result<(AggTable, Counts), BatchError> {
        let mut agg = Aggregator::new(AggTable::new(Arc::clone(job.windows)), job.rejects);
        match &columns {
            Some(columns) => {
                super::csv::aggregate_range(job.path, columns, range, &mut agg, job.progress)?
            }
            None => super::jsonl::aggregate_range(job.path, range, &mut agg, job.progress)?,
        }
        Ok((agg.table, agg.counts))
    };
    let results: Vec<Result<(AggTable, Counts), BatchError>> = if ranges.len() <= 1 {
        ranges.into_iter().map(work).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .into_iter()
                .map(|range| scope.spawn(move || work(range)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(BatchError::Worker("a worker thread panicked".into()))
                    })
                })
                .collect()
        })
    };
    // The tables are not merged here: merging would hold both plus a grown index at
    // once. Output reads them side by side instead.
    let mut tables = Vec::with_capacity(results.len());
    let mut counts = Counts::default();
    for result in results {
        let (part, part_counts) = result?;
        counts.merge(&part_counts);
        tables.push(part);
    }
    Ok((tables, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn splits_at_line_starts() {
        let mut file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let text = "aaaa\nbb\ncccccc\nd\n";
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let len = text.len() as u64;
        for parts in 1..6 {
            let ranges = split(file.path(), 0, len, parts).unwrap_or_default();
            assert_eq!(ranges.first().map(|r| r.0), Some(0));
            assert_eq!(ranges.last().map(|r| r.1), Some(len));
            for (s, e) in &ranges {
                assert!(s < e);
                assert!(
                    *s == 0 || text.as_bytes()[*s as usize - 1] == b'\n',
                    "{ranges:?}"
                );
            }
        }
        assert_eq!(last_line_end(file.path(), len).ok(), Some(len));
        assert_eq!(last_line_end(file.path(), len - 1).ok(), Some(15));
        assert_eq!(last_line_end(file.path(), 3).ok(), Some(0));
    }

    #[test]
    fn fingerprint_notices_changes() {
        let mut a = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        a.write_all(b"user_id,metric\nu1,steps\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let f1 = fingerprint(a.path(), 24).ok();
        a.write_all(b"u2,steps\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fingerprint(a.path(), 24).ok(),
            f1,
            "appending keeps the prefix"
        );
        let mut b = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        b.write_all(b"user_id,metric\nu9,steps\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(fingerprint(b.path(), 24).ok(), f1);
        assert!(matches!(
            fingerprint(b.path(), 1000),
            Err(BatchError::InputChanged { .. })
        ));
    }
}
