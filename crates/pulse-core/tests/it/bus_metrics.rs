//! The bus records its metrics under the names declared in `pulse_core::metrics`, per
//! subscription, through whatever recorder is installed when it is built.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use parking_lot::Mutex;
use pulse_core::bus::{Bus, HandlerError, RetryPolicy, SubscribeOptions};
use pulse_core::metrics as names;
use pulse_core::Event;

use crate::bus_support::{eventually, numbered, seq};

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().push(value);
    }
}

/// Keeps every metric in memory, keyed by `name{label=value,...}`.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .get(key)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn histogram(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .get(key)
            .map_or_else(Vec::new, |h| h.0.lock().clone())
    }

    fn gauge(&self, key: &str) -> Option<f64> {
        self.gauges
            .lock()
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let counter = self.counters.lock().entry(render(key)).or_default().clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let gauge = self.gauges.lock().entry(render(key)).or_default().clone();
        Gauge::from_arc(gauge)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let histogram = self
            .histograms
            .lock()
            .entry(render(key))
            .or_default()
            .clone();
        Histogram::from_arc(histogram)
    }
}

#[tokio::test(start_paused = true)]
async fn publishes_deliveries_failures_retries_and_dead_letters_are_counted() {
    let recorder = TestRecorder::default();
    let (bus, sub) = metrics::with_local_recorder(&recorder, || {
        let bus = Bus::new();
        let sub = bus
            .subscribe(
                "orders.>",
                |event: Arc<Event>| async move {
                    if seq(&event) == 0 {
                        Err(HandlerError::msg("always fails"))
                    } else {
                        Ok(())
                    }
                },
                SubscribeOptions::new().name("billing").retry(RetryPolicy {
                    max_attempts: 3,
                    initial_backoff: Duration::from_millis(10),
                    ..RetryPolicy::default()
                }),
            )
            .unwrap();
        (bus, sub)
    });
    bus.publish(numbered("orders.placed", 0)).await.unwrap();
    bus.publish_batch((1..=4).map(|i| numbered("orders.placed", i)).collect())
        .await
        .unwrap();
    eventually(|| sub.stats().delivered == 4 && sub.stats().dead_lettered == 1).await;

    let label = |name: &str| format!("{name}{{{}=billing}}", names::SUBSCRIPTION_LABEL);
    assert_eq!(
        recorder.counter(&format!("{}{{}}", names::EVENTS_PUBLISHED_TOTAL)),
        5
    );
    assert_eq!(recorder.counter(&label(names::EVENTS_DELIVERED_TOTAL)), 4);
    assert_eq!(recorder.counter(&label(names::DELIVERY_FAILURES_TOTAL)), 3);
    assert_eq!(recorder.counter(&label(names::DELIVERY_RETRIES_TOTAL)), 2);
    assert_eq!(
        recorder.counter(&label(names::EVENTS_DEAD_LETTERED_TOTAL)),
        1
    );
    let delays = recorder.histogram(&label(names::EVENT_PROCESSING_DELAY_SECONDS));
    assert!(!delays.is_empty() && delays.iter().all(|d| *d >= 0.0));
    let durations = recorder.histogram(&label(names::HANDLER_DURATION_SECONDS));
    assert!(
        !durations.is_empty() && durations.len() <= 5,
        "one sample per batch"
    );
    assert!(recorder
        .gauge(&label(names::SUBSCRIPTION_QUEUE_DEPTH))
        .is_some());
}
