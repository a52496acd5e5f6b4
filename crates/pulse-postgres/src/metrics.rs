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
