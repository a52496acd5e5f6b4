//! Metric names of the PostgreSQL backend, declared once.

/// Events written (duplicates excluded).
pub const APPENDED_EVENTS_TOTAL: &str = "pulse_postgres_appended_events_total";
/// Duration of one group-commit append transaction.
pub const APPEND_BATCH_SECONDS: &str = "pulse_postgres_append_batch_seconds";
/// Times the LISTEN connection was lost and made again.
pub const LISTEN_RECONNECTS_TOTAL: &str = "pulse_postgres_listen_reconnects_total";
/// Deliveries handed back because their ack wait ran out or their instance died.
pub const EXPIRED_DELIVERIES_TOTAL: &str = "pulse_postgres_expired_deliveries_total";
/// Events moved to the dead-letter store.
pub const DEAD_LETTERS_TOTAL: &str = "pulse_postgres_dead_letters_total";
/// Events deleted by retention.
pub const PRUNED_EVENTS_TOTAL: &str = "pulse_postgres_pruned_events_total";
/// Stored size of the events retention moved below the pruned range (see the `retention`
/// module): deleted, or kept only for a dead letter and no longer counted against
/// `max_bytes`. It grows as `retention.pruned_bytes` does, from what a step has already
/// sized, so it costs nothing more.
pub const PRUNED_BYTES_TOTAL: &str = "pulse_postgres_pruned_bytes_total";

/// Describes every metric once, for exporters that show help texts.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        APPENDED_EVENTS_TOTAL,
        Unit::Count,
        "events written to the PostgreSQL log (duplicates excluded)"
    );
    describe_histogram!(
        APPEND_BATCH_SECONDS,
        Unit::Seconds,
        "duration of one group-commit append transaction"
    );
    describe_counter!(
        LISTEN_RECONNECTS_TOTAL,
        Unit::Count,
        "times the LISTEN connection was lost and made again"
    );
    describe_counter!(
        EXPIRED_DELIVERIES_TOTAL,
        Unit::Count,
        "deliveries handed back after their ack wait ran out or their instance died"
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        Unit::Count,
        "events moved to the dead-letter store"
    );
    describe_counter!(
        PRUNED_EVENTS_TOTAL,
        Unit::Count,
        "events deleted by retention"
    );
    describe_counter!(
        PRUNED_BYTES_TOTAL,
        Unit::Bytes,
        "stored size of the events retention moved below the pruned range"
    );
}

/// Describes every metric and registers each at zero: call it once the recorder is installed,
/// so `/metrics` shows the log's series (appends, commits' durations, ...) with their help
/// text from start-up.
pub fn register() {
    describe();
    for counter in [
        APPENDED_EVENTS_TOTAL,
        LISTEN_RECONNECTS_TOTAL,
        EXPIRED_DELIVERIES_TOTAL,
        DEAD_LETTERS_TOTAL,
        PRUNED_EVENTS_TOTAL,
        PRUNED_BYTES_TOTAL,
    ] {
        let _ = metrics::counter!(counter);
    }
    let _ = metrics::histogram!(APPEND_BATCH_SECONDS);
}
