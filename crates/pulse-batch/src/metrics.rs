//! Metric names of pulse-batch, declared once. Recorded once per run, never per row.

use crate::reading::RejectReason;
use crate::runner::Summary;

/// Rows read by aggregation runs.
pub const ROWS_READ_TOTAL: &str = "pulse_batch_rows_read_total";
/// Rows rejected, labelled by `reason` (one of [`RejectReason::code`]).
pub const ROWS_REJECTED_TOTAL: &str = "pulse_batch_rows_rejected_total";
/// Aggregate rows written.
pub const WINDOWS_WRITTEN_TOTAL: &str = "pulse_batch_windows_written_total";
/// Duration of aggregation runs.
pub const RUN_SECONDS: &str = "pulse_batch_run_seconds";

/// Registers the descriptions of the metrics above with the installed recorder (call once
/// after installing the exporter, so `/metrics` has HELP lines for them).
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        ROWS_READ_TOTAL,
        Unit::Count,
        "Rows read by aggregation runs"
    );
    describe_counter!(
        ROWS_REJECTED_TOTAL,
        Unit::Count,
        "Rows rejected by aggregation runs, by reason"
    );
    describe_counter!(
        WINDOWS_WRITTEN_TOTAL,
        Unit::Count,
        "Aggregate rows written by aggregation runs"
    );
    describe_histogram!(RUN_SECONDS, Unit::Seconds, "Duration of aggregation runs");
}

pub(crate) fn record_run(summary: &Summary) {
    metrics::counter!(ROWS_READ_TOTAL).increment(summary.counts.rows);
    for reason in RejectReason::ALL {
        let n = summary.counts.rejected(reason);
        if n > 0 {
            metrics::counter!(ROWS_REJECTED_TOTAL, "reason" => reason.code()).increment(n);
        }
    }
    metrics::counter!(WINDOWS_WRITTEN_TOTAL).increment(summary.windows_written);
    metrics::histogram!(RUN_SECONDS).record(summary.seconds);
}
