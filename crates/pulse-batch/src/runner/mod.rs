//! The one runner of aggregation runs, for both ways Pulse aggregates:
//!
//! - [`run`]: `pulse aggregate` — a file or table in, a file or state store out, optionally
//!   incremental from the input's checkpoint in a [`StateStore`](crate::store::StateStore);
//! - [`run_log`]: the scheduled jobs of `pulse serve` — the matching events of the event
//!   log since the job's checkpoint in an [`AggregateStore`](crate::store::AggregateStore).
//!
//! Both keep the same rule — a run's aggregates and its new checkpoint (a
//! [`Cursor`](crate::store::Cursor)) commit together, as a compare-and-set from the
//! checkpoint the run started at — and both end in [`finish`], which records the
//! `pulse_batch_*` metrics and the run's log line, so every run shows on `/metrics` and
//! in the log whichever path started it.

mod batch;
mod log;

use crate::aggregator::Counts;
use crate::metrics;

pub use batch::{run, Job};
pub use log::{run_log, LogJob};

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Rows read and rejected.
    pub counts: Counts,
    /// Keys whose state this run created or changed.
    pub keys_updated: u64,
    /// Rows written to the output.
    pub windows_written: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The end of every successful run: its metrics and its one log line.
fn finish(summary: Summary, started: std::time::Instant) -> Summary {
    let summary = Summary {
        seconds: started.elapsed().as_secs_f64(),
        ..summary
    };
    metrics::record_run(&summary);
    tracing::info!(
        rows = summary.counts.rows,
        rejected = summary.counts.rejected_total(),
        windows = summary.windows_written,
        seconds = summary.seconds,
        "aggregation run finished"
    );
    summary
}
