//! Every metric the server records, declared once (job metrics are pulse-scheduler's), and the Prometheus exporter behind
//! `GET /metrics`.
//!
//! Label values are bounded: routes are the matched route templates, groups and jobs are
//! operator-configured names. Never a user id, key or event id.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Events accepted by `POST /v1/events`.
pub const EVENTS_PUBLISHED: &str = "pulse_events_published_total";
/// Publish (the event's `time`) → delivery start, seconds.
pub const PROCESSING_DELAY: &str = "pulse_event_processing_delay_seconds";
/// Matching events not yet acknowledged, per group.
pub const CONSUMER_LAG_EVENTS: &str = "pulse_consumer_lag_events";
/// Age of the oldest unacknowledged matching event, per group.
pub const CONSUMER_LAG_SECONDS: &str = "pulse_consumer_lag_seconds";
/// Events moved to the dead-letter store, per group.
pub const DEAD_LETTERS: &str = "pulse_dead_letters_total";
/// Webhook deliveries by outcome (`ok`, `failed`, `dead_lettered`).
pub const WEBHOOK_DELIVERIES: &str = "pulse_webhook_deliveries_total";
/// Webhook deliveries that did not get a 2xx.
pub const WEBHOOK_FAILURES: &str = "pulse_webhook_failures_total";
/// HTTP requests by route and status.
pub const HTTP_REQUESTS: &str = "pulse_http_requests_total";
/// HTTP request durations by route, seconds.
pub const HTTP_DURATION: &str = "pulse_http_request_duration_seconds";
/// Connections the server closed, by reason (`idle_timeout`, `header_read_timeout`,
/// `evicted` to make room at `max_connections`).
pub const HTTP_CONNECTIONS_CLOSED: &str = "pulse_http_connections_closed_total";
/// HTTP connections open now (WebSocket sessions leave the count once upgraded).
pub const HTTP_CONNECTIONS_OPEN: &str = "pulse_http_connections_open";
/// Memory-durability events a slow live subscriber missed.
pub const LIVE_DROPPED: &str = "pulse_live_events_dropped_total";

const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Installs the process-wide recorder once and returns the handle that renders it.
///
/// Several servers in one process (tests) share the recorder, which is what the
/// `metrics` facade allows.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then this
            // handle renders only what reaches it, which is better than failing to start.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(EVENTS_PUBLISHED, "Events accepted by POST /v1/events");
    describe_histogram!(
        PROCESSING_DELAY,
        Unit::Seconds,
        "Event time to delivery start"
    );
    describe_gauge!(
        CONSUMER_LAG_EVENTS,
        "Matching events not yet acknowledged, per group"
    );
    describe_gauge!(
        CONSUMER_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest unacknowledged event"
    );
    describe_counter!(DEAD_LETTERS, "Events moved to the dead-letter store");
    describe_counter!(WEBHOOK_DELIVERIES, "Webhook deliveries by outcome");
    describe_counter!(WEBHOOK_FAILURES, "Webhook deliveries without a 2xx answer");
    // Job metrics (`pulse_job_runs_total`, `pulse_job_duration_seconds`) are pulse-scheduler's.
    pulse_scheduler::metrics::describe();
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request durations by route"
    );
    describe_counter!(LIVE_DROPPED, "Memory events a slow live subscriber missed");
    describe_counter!(
        HTTP_CONNECTIONS_CLOSED,
        "Connections the server closed, by reason"
    );
    describe_gauge!(HTTP_CONNECTIONS_OPEN, "HTTP connections open now");
}

/// Records the delay between an event's time and now, when the clock allows.
pub fn observe_delay(event_time: Option<chrono::DateTime<chrono::Utc>>) {
    if let Some(t) = event_time {
        let delay = (chrono::Utc::now() - t)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        if delay >= 0 {
            metrics::histogram!(PROCESSING_DELAY).record(delay as f64 / 1e6);
        }
    }
}
