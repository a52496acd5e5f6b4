//! Every metric the server records, declared once (job metrics are pulse-scheduler's), and the
//! Prometheus exporter behind `GET /metrics`.
//!
//! Label values are bounded: routes are the router's own route templates, groups and jobs are
//! operator-configured names, transports and outcomes fixed sets. Never a subject, user id,
//! key or event id.
//!
//! Every series an alert or a dashboard reads exists from start-up at zero, so `rate()` and
//! `increase()` see its first increment: [`install`] registers the unlabelled ones, a group's
//! series are registered when the group is first seen (a session or webhook worker opens on
//! it, or the lag refresh finds it in the log), a job's when it is added to the scheduler.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Events accepted by `POST /v1/events`.
pub const EVENTS_PUBLISHED: &str = "pulse_events_published_total";
/// Publish (the event's `time`) → delivery start, seconds, by `group` and `transport`.
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

/// The label naming a consumer group; empty for a live tail, which reads without one.
pub const GROUP_LABEL: &str = "group";
/// The label naming how a delivery left the server (see [`Transport::as_str`]).
pub const TRANSPORT_LABEL: &str = "transport";

/// The outcomes of [`WEBHOOK_DELIVERIES`].
const WEBHOOK_OUTCOMES: [&str; 3] = ["ok", "failed", "dead_lettered"];

const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// The buckets of [`PROCESSING_DELAY`]: the alert thresholds (5 s, 30 s) are bucket bounds, so
/// `histogram_quantile` places them exactly instead of interpolating across them.
const DELAY_BUCKETS: [f64; 15] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the process-wide recorder once and returns the handle that renders it.
///
/// Several servers in one process (tests) share the recorder, which is what the `metrics`
/// facade allows. Install it before opening the event log, so the backend's series reach it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(PROCESSING_DELAY.into()), &DELAY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then this
            // handle renders only what reaches it, which is better than failing to start.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            register();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(EVENTS_PUBLISHED, "Events accepted by POST /v1/events");
    describe_histogram!(
        PROCESSING_DELAY,
        Unit::Seconds,
        "Event time to delivery start, by consumer group (empty for a live tail) and transport"
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
    // Job metrics (`pulse_job_runs_total`, `pulse_job_duration_seconds`) are pulse-scheduler's,
    // the aggregation runs' pulse-batch's; jobs run in this process, so their help texts too.
    pulse_scheduler::metrics::describe();
    pulse_batch::metrics::describe();
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

/// Registers the series that need no group or job, at zero.
fn register() {
    let _ = metrics::counter!(EVENTS_PUBLISHED);
    let _ = metrics::counter!(WEBHOOK_FAILURES);
    for outcome in WEBHOOK_OUTCOMES {
        let _ = metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome);
    }
    let _ = metrics::counter!(LIVE_DROPPED);
    // Live tails read without a group; their delay series exist before the first one opens.
    for transport in [Transport::Sse, Transport::WebSocket] {
        let _ = DeliveryMetrics::new(None, transport);
    }
}

/// How a delivery leaves the server: the [`TRANSPORT_LABEL`] of the delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `GET /v1/stream` (Server-Sent Events).
    Sse,
    /// `GET /v1/ws`.
    WebSocket,
    /// A webhook subscription's POST.
    Webhook,
}

impl Transport {
    /// The label value: `sse`, `websocket` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::WebSocket => "websocket",
            Self::Webhook => "webhook",
        }
    }
}

/// The handles one delivery loop (a stream session or a webhook worker) records into, made
/// once when it starts, so delivering an event costs no registry look-up.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryMetrics {
    delay: Histogram,
    /// `None` for a live tail: it acknowledges nothing, so it dead-letters nothing.
    dead_letters: Option<Counter>,
}

impl DeliveryMetrics {
    /// The series of `group` (`None`: a live tail) over `transport`, registered at zero.
    pub(crate) fn new(group: Option<&str>, transport: Transport) -> Self {
        Self {
            delay: metrics::histogram!(
                PROCESSING_DELAY,
                GROUP_LABEL => group.unwrap_or_default().to_owned(),
                TRANSPORT_LABEL => transport.as_str()
            ),
            dead_letters: group
                .map(|g| metrics::counter!(DEAD_LETTERS, GROUP_LABEL => g.to_owned())),
        }
    }

    /// Records the delay between an event's time and now, when the clock allows.
    pub(crate) fn observe_delay(&self, event_time: Option<chrono::DateTime<chrono::Utc>>) {
        if let Some(t) = event_time {
            let delay = (chrono::Utc::now() - t)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            if delay >= 0 {
                self.delay.record(delay as f64 / 1e6);
            }
        }
    }

    /// Counts an event of this loop's group moved to the dead-letter store.
    pub(crate) fn dead_lettered(&self) {
        if let Some(counter) = &self.dead_letters {
            counter.increment(1);
        }
    }
}

/// Sets a group's lag gauges, and registers its dead-letter counter at zero if this is the
/// first time the group is seen (groups made by another instance of a shared log, or by a
/// session before a restart).
pub(crate) fn record_lag(group: &str, events: u64, seconds: f64) {
    metrics::gauge!(CONSUMER_LAG_EVENTS, GROUP_LABEL => group.to_owned()).set(events as f64);
    metrics::gauge!(CONSUMER_LAG_SECONDS, GROUP_LABEL => group.to_owned()).set(seconds);
    let _ = metrics::counter!(DEAD_LETTERS, GROUP_LABEL => group.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_thresholds_are_delay_bucket_bounds() {
        for threshold in [5.0, 30.0] {
            assert!(DELAY_BUCKETS.contains(&threshold), "{threshold}");
        }
        assert!(DELAY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
