//! The metrics this crate records, declared once (names, units, descriptions).
//!
//! Everything is recorded per commit or per prune batch, never per event in a loop.

/// Events stored (duplicates excluded).
pub(crate) const APPENDED_EVENTS: &str = "pulse_sqlite_appended_events_total";
/// Appended events that were duplicates of a stored id.
pub(crate) const DUPLICATE_EVENTS: &str = "pulse_sqlite_duplicate_events_total";
/// Write transactions committed by the writer.
pub(crate) const COMMITS: &str = "pulse_sqlite_commits_total";
/// Time one group commit took, including its fsync.
pub(crate) const COMMIT_SECONDS: &str = "pulse_sqlite_commit_seconds";
/// Events in one group commit.
pub(crate) const COMMIT_BATCH_EVENTS: &str = "pulse_sqlite_commit_batch_events";
/// Events deleted by retention.
pub(crate) const PRUNED_EVENTS: &str = "pulse_sqlite_pruned_events_total";
/// The stored sizes of the stored events added up (see `Retention::max_bytes`).
pub(crate) const STORED_BYTES: &str = "pulse_sqlite_stored_bytes";
/// Events moved to the dead-letter store.
pub(crate) const DEAD_LETTERED_EVENTS: &str = "pulse_sqlite_dead_lettered_events_total";
/// Failed write transactions.
pub(crate) const WRITE_ERRORS: &str = "pulse_sqlite_write_errors_total";

/// Describes every metric and registers each at zero: call it once the recorder is installed
/// and before opening the log, so `/metrics` shows the log's series (commits, write errors,
/// ...) with their help text from start-up.
pub fn register() {
    describe();
    for counter in [
        APPENDED_EVENTS,
        DUPLICATE_EVENTS,
        COMMITS,
        PRUNED_EVENTS,
        DEAD_LETTERED_EVENTS,
        WRITE_ERRORS,
    ] {
        let _ = metrics::counter!(counter);
    }
    let _ = metrics::histogram!(COMMIT_SECONDS);
    let _ = metrics::histogram!(COMMIT_BATCH_EVENTS);
    let _ = metrics::gauge!(STORED_BYTES);
}

/// Describes every metric once, for exporters that show descriptions.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        APPENDED_EVENTS,
        Unit::Count,
        "events stored in the SQLite log"
    );
    describe_counter!(
        DUPLICATE_EVENTS,
        Unit::Count,
        "appended events whose id was already stored"
    );
    describe_counter!(COMMITS, Unit::Count, "write transactions committed");
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "duration of one group commit with its fsync"
    );
    describe_histogram!(
        COMMIT_BATCH_EVENTS,
        Unit::Count,
        "events in one group commit"
    );
    describe_counter!(PRUNED_EVENTS, Unit::Count, "events deleted by retention");
    describe_gauge!(
        STORED_BYTES,
        Unit::Bytes,
        "stored sizes of the events in the log, added up"
    );
    describe_counter!(
        DEAD_LETTERED_EVENTS,
        Unit::Count,
        "events moved to the dead-letter store"
    );
    describe_counter!(WRITE_ERRORS, Unit::Count, "write transactions that failed");
}
