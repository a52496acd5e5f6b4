//! Metric names of the NATS backend, declared once (see STYLE.md).

/// Events appended (stored, not duplicates).
pub(crate) const APPENDED: &str = "pulse_nats_appended_events_total";
/// Appended events recognised as duplicates.
pub(crate) const DUPLICATES: &str = "pulse_nats_duplicate_events_total";
/// Operations that failed because NATS could not be reached.
pub(crate) const UNAVAILABLE: &str = "pulse_nats_unavailable_total";
/// Events moved to the dead-letter stream.
pub(crate) const DEAD_LETTERED: &str = "pulse_nats_dead_lettered_total";

/// Describes every metric and registers each at zero: call it once the recorder is installed,
/// so `/metrics` shows the log's series with their help text from start-up.
pub fn register() {
    describe();
    for counter in [APPENDED, DUPLICATES, UNAVAILABLE, DEAD_LETTERED] {
        let _ = ::metrics::counter!(counter);
    }
}

/// Describes every metric once, for exporters that show help texts.
pub fn describe() {
    metrics::describe_counter!(APPENDED, "events appended to the NATS event stream");
    metrics::describe_counter!(DUPLICATES, "appended events that were already stored");
    metrics::describe_counter!(
        UNAVAILABLE,
        "NATS operations failed for lack of a connection"
    );
    metrics::describe_counter!(DEAD_LETTERED, "events moved to the NATS dead-letter stream");
}
