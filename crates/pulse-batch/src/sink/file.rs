//! JSONL and CSV output files, written to a temporary file beside the target and renamed
//! into place, so that readers never see half a result and a failed run leaves the
//! previous output untouched.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::error::BatchError;
use crate::row::{Row, COLUMNS};
use crate::table::Merged;

/// The encoding of an output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// Writes rows to a file, atomically on [`finish`](RowFile::finish).
pub(crate) struct RowFile {
    kind: FileKind,
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    buf: String,
    rows: u64,
}

impl RowFile {
    /// Starts writing `path` (through `path.tmp-<pid>`).
    pub(crate) fn create(path: &Path, kind: FileKind) -> Result<Self, BatchError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp).map_err(|e| BatchError::io("cannot create", path, e))?;
        let mut out = RowFile {
            kind,
            path: path.to_owned(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            buf: String::with_capacity(1 << 16),
            rows: 0,
        };
        if kind == FileKind::Csv {
            out.buf.push_str(&COLUMNS.join(","));
            out.buf.push('\n');
        }
        Ok(out)
    }

    /// Appends one row.
    pub(crate) fn write(&mut self, row: &Row<'_>) -> Result<(), BatchError> {
        match self.kind {
            FileKind::Jsonl => row.push_json(&mut self.buf),
            FileKind::Csv => row.push_csv(&mut self.buf),
        }
        self.rows += 1;
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), BatchError> {
        if let Some(out) = &mut self.out {
            out.write_all(self.buf.as_bytes())
                .map_err(|e| BatchError::io("cannot write", &self.path, e))?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Writes every row of `rows` in output order, formatting pieces on up to `threads`
    /// threads while this one writes them in order.
    pub(crate) fn write_merged(&mut self, rows: &Merged, threads: usize) -> Result<(), BatchError> {
        // Small pieces keep the buffers in flight to a few megabytes.
        self.write_merged_in_pieces(rows, threads, 4 * 1024)
    }

    fn write_merged_in_pieces(
        &mut self,
        rows: &Merged,
        threads: usize,
        block: usize,
    ) -> Result<(), BatchError> {
        if threads <= 1 || rows.entries() <= block {
            return rows.for_each(|row, _| self.write(row));
        }
        let pieces = rows.split(block);
        let kind = self.kind;
        let next = AtomicUsize::new(0);
        self.flush_buf()?;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<(usize, String, u64)>(threads);
            for _ in 0..threads {
                let tx = tx.clone();
                let (next, pieces) = (&next, &pieces);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ranges) = pieces.get(i) else { break };
                    let mut buf = String::with_capacity(block * 320);
                    let mut n = 0u64;
                    let _ = rows.for_each_in(ranges, |row, _| {
                        match kind {
                            FileKind::Jsonl => row.push_json(&mut buf),
                            FileKind::Csv => row.push_csv(&mut buf),
                        }
                        n += 1;
                        Ok::<_, ()>(())
                    });
                    // The receiver is gone only when writing failed; stop quietly then.
                    if tx.send((i, buf, n)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            // Pieces arrive in any order; write them in order.
            let mut pending = BTreeMap::new();
            let mut wanted = 0usize;
            for (i, buf, n) in rx {
                pending.insert(i, (buf, n));
                while let Some((buf, n)) = pending.remove(&wanted) {
                    if let Some(out) = &mut self.out {
                        out.write_all(buf.as_bytes())
                            .map_err(|e| BatchError::io("cannot write", &self.path, e))?;
                    }
                    self.rows += n;
                    wanted += 1;
                }
            }
            Ok(())
        })
    }

    /// Flushes and moves the file into place; returns the rows written.
    pub(crate) fn finish(mut self) -> Result<u64, BatchError> {
        self.flush_buf()?;
        let Some(out) = self.out.take() else {
            return Ok(self.rows);
        };
        let file = out
            .into_inner()
            .map_err(|e| BatchError::io("cannot write", &self.path, e.into_error()))?;
        // No fsync: the file is derived data a rerun recreates, and waiting for the disk
        // would double the run time of the common case. The rename still guarantees that
        // readers see the old file or the whole new one.
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| BatchError::io("cannot write", &self.path, e))?;
        Ok(self.rows)
    }
}

impl Drop for RowFile {
    fn drop(&mut self) {
        // After `finish` the temporary file no longer exists; otherwise remove the partial one.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::aggregator::Aggregator;
    use crate::reading::{RawReading, RawValue};
    use crate::rejects::{Position, RejectLog};
    use crate::table::AggTable;
    use crate::time::format_rfc3339;
    use crate::window::WindowSet;

    fn tables(windows: &Arc<WindowSet>) -> Vec<AggTable> {
        let rejects = RejectLog::none();
        let mut parts: Vec<Aggregator<'_>> = (0..3)
            .map(|_| Aggregator::new(AggTable::new(Arc::clone(windows)), &rejects))
            .collect();
        for minute in 0..240i64 {
            for user in 0..20 {
                let id = format!("user-{}", (user * 7) % 20);
                let at = format_rfc3339((1_749_996_000 + minute * 60 + user) * 1_000_000);
                let value = (60 + (minute + user) % 50).to_string();
                let raw = RawReading {
                    user_id: Some(id.as_bytes()),
                    metric: Some(b"heart_rate"),
                    value: Some(RawValue::Text(value.as_bytes())),
                    unit: None,
                    recorded_at: Some(at.as_bytes()),
                    source: None,
                };
                // Spread readings over the parts so that most keys are in several of them.
                let part = ((minute * 31 + user * 17) % 3) as usize;
                assert!(parts[part]
                    .push(&raw, Position::Byte(0), String::new)
                    .is_ok());
            }
        }
        parts.into_iter().map(|a| a.table).collect()
    }

    #[test]
    fn parallel_pieces_write_the_same_file_as_one_thread() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let windows = Arc::new(WindowSet::parse("5m,1h", "UTC").unwrap_or_else(|e| panic!("{e}")));
        let rows = Merged::new(Arc::clone(&windows), tables(&windows));
        let mut outputs = Vec::new();
        for (threads, block) in [(1, 1000), (2, 7), (3, 50)] {
            let path = dir.path().join(format!("out-{threads}.jsonl"));
            let mut file =
                RowFile::create(&path, FileKind::Jsonl).unwrap_or_else(|e| panic!("{e}"));
            assert!(file.write_merged_in_pieces(&rows, threads, block).is_ok());
            let n = file.finish().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                n,
                20 * (48 + 4),
                "20 users, 4 hours: 48 five-minute and 4 hourly windows"
            );
            outputs.push(std::fs::read_to_string(&path).unwrap_or_default());
        }
        assert_eq!(outputs[0], outputs[1]);
        assert_eq!(outputs[0], outputs[2]);
        let counts: u64 = outputs[0]
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["window"] == "5m")
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            counts,
            240 * 20,
            "every reading counted once after merging the parts"
        );
    }
}
