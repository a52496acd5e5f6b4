//! Progress of a run, as counters a UI can poll from another thread.
//!
//! Workers add in batches (every few thousand rows), never per row, so the atomics cost
//! nothing measurable; the CLI's progress bar reads them on a timer.

use std::sync::atomic::{AtomicU64, Ordering};

/// Rows and bytes processed so far, and the bytes expected in total (0 when unknown).
#[derive(Debug, Default)]
pub struct Progress {
    rows: AtomicU64,
    bytes: AtomicU64,
    total_bytes: AtomicU64,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds processed rows and bytes.
    pub fn add(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sets the expected total bytes.
    pub fn set_total_bytes(&self, total: u64) {
        self.total_bytes.store(total, Ordering::Relaxed);
    }

    /// Rows processed.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Bytes processed.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes expected (0 when unknown).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }
}
