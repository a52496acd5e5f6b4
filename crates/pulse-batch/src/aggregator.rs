//! Validation, counting and aggregation of a stream of raw readings — what every source
//! feeds. One `Aggregator` per worker thread; their tables and counts merge at the end.

use crate::error::BatchError;
use crate::reading::{validate, RawReading, RejectReason, Rejection};
use crate::rejects::{Position, RejectLog};
use crate::table::AggTable;

/// Rows read and rejected, per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows read (accepted and rejected).
    pub rows: u64,
    /// Rejected rows per reason, indexed by [`RejectReason::index`].
    pub rejected: [u64; RejectReason::ALL.len()],
}

impl Counts {
    /// All rejected rows.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Rejected rows of one reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()]
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Counts) {
        self.rows += other.rows;
        for (mine, theirs) in self.rejected.iter_mut().zip(other.rejected) {
            *mine += theirs;
        }
    }
}

/// Validates readings, counts them and aggregates the valid ones.
pub struct Aggregator<'r> {
    /// The aggregates so far.
    pub table: AggTable,
    /// The counts so far.
    pub counts: Counts,
    rejects: &'r RejectLog,
}

impl<'r> Aggregator<'r> {
    /// An aggregator filling `table` and writing rejections to `rejects`.
    pub fn new(table: AggTable, rejects: &'r RejectLog) -> Self {
        Aggregator {
            table,
            counts: Counts::default(),
            rejects,
        }
    }

    /// Takes one raw reading; `record` renders it for the reject log if needed.
    #[inline]
    pub fn push(
        &mut self,
        raw: &RawReading<'_>,
        at: Position,
        record: impl FnOnce() -> String,
    ) -> Result<(), BatchError> {
        self.counts.rows += 1;
        match validate(raw) {
            Ok(reading) => self.table.add(&reading),
            Err(rejection) => {
                self.count_rejection(at, &rejection, record);
                Ok(())
            }
        }
    }

    /// Counts a row rejected before it became a raw reading (e.g. malformed JSON).
    pub fn reject(&mut self, at: Position, rejection: Rejection, record: impl FnOnce() -> String) {
        self.counts.rows += 1;
        self.count_rejection(at, &rejection, record);
    }

    fn count_rejection(
        &mut self,
        at: Position,
        rejection: &Rejection,
        record: impl FnOnce() -> String,
    ) {
        self.counts.rejected[rejection.reason.index()] += 1;
        self.rejects.record(at, rejection, record);
    }
}
