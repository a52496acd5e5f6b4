//! The reject log: every rejected reading, with where it was, why, and what it said.
//!
//! Workers of one run share it, so writes go through a mutex; rejections are rare on
//! real data, and when they are not, the lock is still cheaper than the JSON encoding.
//! A write failure does not stop aggregation (the counts stay right); it is reported when
//! the run finishes, before anything is committed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::BatchError;
use crate::reading::Rejection;

/// Where a rejected reading was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Byte offset of the line in a file.
    Byte(u64),
    /// Rowid in a SQLite table.
    Row(i64),
    /// An event of the log and the reading's index in its data.
    Event {
        /// The event's offset.
        offset: u64,
        /// The reading's index in the event's array (0 for a single reading).
        item: usize,
    },
}

struct Inner {
    out: BufWriter<File>,
    error: Option<std::io::Error>,
    line: String,
}

/// Writes rejected readings as JSON lines:
/// `{"at":{"byte":1234},"reason":"unknown_metric","detail":"...","record":"..."}`.
pub struct RejectLog {
    path: Option<PathBuf>,
    inner: Option<Mutex<Inner>>,
}

impl RejectLog {
    /// A log that only counts (no file).
    pub fn none() -> Self {
        RejectLog {
            path: None,
            inner: None,
        }
    }

    /// A log writing to `path` (created or truncated).
    pub fn create(path: &Path) -> Result<Self, BatchError> {
        let file = File::create(path).map_err(|e| BatchError::io("cannot create", path, e))?;
        Ok(RejectLog {
            path: Some(path.to_owned()),
            inner: Some(Mutex::new(Inner {
                out: BufWriter::new(file),
                error: None,
                line: String::new(),
            })),
        })
    }

    /// Whether rejections are written anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records one rejection; `record` renders the raw input only when a file is written.
    pub fn record(&self, at: Position, rejection: &Rejection, record: impl FnOnce() -> String) {
        let Some(inner) = &self.inner else { return };
        // A poisoned lock means another worker panicked; that run fails anyway.
        let Ok(mut inner) = inner.lock() else { return };
        let at = match at {
            Position::Byte(b) => serde_json::json!({ "byte": b }),
            Position::Row(r) => serde_json::json!({ "rowid": r }),
            Position::Event { offset, item } => {
                serde_json::json!({ "offset": offset, "item": item })
            }
        };
        let value = serde_json::json!({
            "at": at,
            "reason": rejection.reason.code(),
            "detail": rejection.detail,
            "record": record(),
        });
        let Inner { out, error, line } = &mut *inner;
        line.clear();
        line.push_str(&value.to_string());
        line.push('\n');
        if error.is_none() {
            if let Err(e) = out.write_all(line.as_bytes()) {
                *error = Some(e);
            }
        }
    }

    /// Flushes the file; reports the first write error of the run.
    pub fn finish(&self) -> Result<(), BatchError> {
        let (Some(inner), Some(path)) = (&self.inner, &self.path) else {
            return Ok(());
        };
        let mut inner = inner
            .lock()
            .map_err(|_| BatchError::Worker("reject log lock poisoned".into()))?;
        if let Some(e) = inner.error.take() {
            return Err(BatchError::io("cannot write", path, e));
        }
        inner
            .out
            .flush()
            .map_err(|e| BatchError::io("cannot write", path, e))
    }
}
