//! The metric names of pulse-core, declared once, and the handles the bus records into.
//!
//! Metrics go through the `metrics` facade; the binary installs the Prometheus exporter.
//! Handles are created once per bus and per subscription (install the recorder before
//! building the bus), and the bus records per batch of events, never per event in its
//! loops. The only label is `subscription` (the subscription's name, its pattern unless
//! named), a set bounded by the code that subscribes.

use metrics::{Counter, Gauge, Histogram};

/// Events accepted by `publish` (after validation and, when persistent, the append).
pub const EVENTS_PUBLISHED_TOTAL: &str = "pulse_events_published_total";
/// Events a subscription's handler handled successfully.
pub const EVENTS_DELIVERED_TOTAL: &str = "pulse_events_delivered_total";
/// Failed handler attempts (errors and panics), retried or not.
pub const DELIVERY_FAILURES_TOTAL: &str = "pulse_delivery_failures_total";
/// Retries scheduled after a failed attempt.
pub const DELIVERY_RETRIES_TOTAL: &str = "pulse_delivery_retries_total";
/// Events given up on after `max_attempts` and handed to the dead-letter sink.
pub const EVENTS_DEAD_LETTERED_TOTAL: &str = "pulse_events_dead_lettered_total";
/// Seconds from publish to the handler starting on the event (the first event of each
/// batch a worker takes, which waited longest).
pub const EVENT_PROCESSING_DELAY_SECONDS: &str = "pulse_event_processing_delay_seconds";
/// Seconds a handler takes per event (the mean over each batch a worker handles).
pub const HANDLER_DURATION_SECONDS: &str = "pulse_handler_duration_seconds";
/// Events queued in a subscription, sampled when its worker takes a batch.
pub const SUBSCRIPTION_QUEUE_DEPTH: &str = "pulse_subscription_queue_depth";

/// The label naming a subscription.
pub const SUBSCRIPTION_LABEL: &str = "subscription";

/// Registers the descriptions of every metric above with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(EVENTS_PUBLISHED_TOTAL, "Events accepted by publish");
    describe_counter!(EVENTS_DELIVERED_TOTAL, "Events handled successfully");
    describe_counter!(DELIVERY_FAILURES_TOTAL, "Failed handler attempts");
    describe_counter!(DELIVERY_RETRIES_TOTAL, "Retries after a failed attempt");
    describe_counter!(EVENTS_DEAD_LETTERED_TOTAL, "Events dead-lettered");
    describe_histogram!(
        EVENT_PROCESSING_DELAY_SECONDS,
        Unit::Seconds,
        "Delay from publish to handler start"
    );
    describe_histogram!(
        HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "Handler duration per event"
    );
    describe_gauge!(SUBSCRIPTION_QUEUE_DEPTH, "Events queued in a subscription");
}

/// Handles of the bus-wide metrics.
#[derive(Clone, Debug)]
pub(crate) struct BusMetrics {
    pub(crate) published: Counter,
}

impl BusMetrics {
    pub(crate) fn new() -> Self {
        Self {
            published: metrics::counter!(EVENTS_PUBLISHED_TOTAL),
        }
    }
}

/// Handles of one subscription's metrics.
#[derive(Clone, Debug)]
pub(crate) struct SubscriptionMetrics {
    pub(crate) delivered: Counter,
    pub(crate) failures: Counter,
    pub(crate) retries: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) processing_delay: Histogram,
    pub(crate) handler_duration: Histogram,
    pub(crate) queue_depth: Gauge,
}

impl SubscriptionMetrics {
    pub(crate) fn new(subscription: &str) -> Self {
        let label = [(SUBSCRIPTION_LABEL, subscription.to_owned())];
        Self {
            delivered: metrics::counter!(EVENTS_DELIVERED_TOTAL, &label),
            failures: metrics::counter!(DELIVERY_FAILURES_TOTAL, &label),
            retries: metrics::counter!(DELIVERY_RETRIES_TOTAL, &label),
            dead_lettered: metrics::counter!(EVENTS_DEAD_LETTERED_TOTAL, &label),
            processing_delay: metrics::histogram!(EVENT_PROCESSING_DELAY_SECONDS, &label),
            handler_duration: metrics::histogram!(HANDLER_DURATION_SECONDS, &label),
            queue_depth: metrics::gauge!(SUBSCRIPTION_QUEUE_DEPTH, &label),
        }
    }
}
