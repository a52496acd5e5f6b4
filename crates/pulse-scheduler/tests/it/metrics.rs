//! `pulse_job_runs_total{job,status}` and `pulse_job_duration_seconds{job}` are recorded for
//! every history entry (durations only for runs that executed), and exist at zero for every
//! status from the moment a job is added.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use parking_lot::Mutex;
use pulse_scheduler::metrics::{JOB_DURATION_SECONDS, JOB_RUNS_TOTAL};
use pulse_scheduler::{job_fn, BoxError, JobOutcome, JobSpec};

use crate::support::{run_for, start_at, Probe};

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().push(value);
    }
}

/// Keeps counters and histogram samples by `name{label=value,...}`.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

fn key_text(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(
            self.counters
                .lock()
                .entry(key_text(key))
                .or_default()
                .clone(),
        )
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(
            self.histograms
                .lock()
                .entry(key_text(key))
                .or_default()
                .clone(),
        )
    }
}

impl TestRecorder {
    fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .get(key)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// Whether a counter of that key was registered (at zero or more).
    fn has_counter(&self, key: &str) -> bool {
        self.counters.lock().contains_key(key)
    }

    fn samples(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .get(key)
            .map(|h| h.0.lock().clone())
            .unwrap_or_default()
    }
}

#[test]
fn runs_and_durations_are_counted_by_job_and_status() {
    let recorder = TestRecorder::default();
    // A current-thread runtime runs every task on this thread, so the thread-local recorder
    // sees what the scheduler task and the runs record.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            pulse_scheduler::metrics::describe();
            let harness = start_at("2026-01-01T00:00:30Z");
            let probe = Probe::new(&harness.clock, Duration::from_secs(2));
            harness
                .scheduler
                .add(JobSpec::new(
                    "good",
                    "every 1m".parse().unwrap(),
                    probe.clone(),
                ))
                .await
                .unwrap();
            let failing = job_fn(|_ctx| async { Err::<JobOutcome, BoxError>("bad input".into()) });
            harness
                .scheduler
                .add(
                    JobSpec::new("bad", "every 1m".parse().unwrap(), failing)
                        .misfire_grace(Duration::from_secs(5)),
                )
                .await
                .unwrap();
            run_for(Duration::from_secs(2 * 60)).await; // ticks 00:01, 00:02
                                                        // The actor wakes for the 00:03 tick 30 s later, at wall 00:03:50: 50 s late, past
                                                        // the bad job's 5 s grace but within the good job's default minute.
            harness.clock.jump(Duration::from_secs(50));
            run_for(Duration::from_secs(35)).await; // wall 00:03:55
        });
    });
    let good_ok = format!("{JOB_RUNS_TOTAL}{{job=good,status=ok}}");
    let bad_failed = format!("{JOB_RUNS_TOTAL}{{job=bad,status=failed}}");
    let good_missed = format!("{JOB_RUNS_TOTAL}{{job=good,status=missed}}");
    let bad_missed = format!("{JOB_RUNS_TOTAL}{{job=bad,status=missed}}");
    assert_eq!(recorder.counter(&good_ok), 3);
    assert_eq!(recorder.counter(&bad_failed), 2);
    assert_eq!(recorder.counter(&bad_missed), 1);
    assert_eq!(recorder.counter(&good_missed), 0);
    // A status that never happened is there at zero all the same.
    for job in ["good", "bad"] {
        for status in ["ok", "failed", "missed", "superseded"] {
            let key = format!("{JOB_RUNS_TOTAL}{{job={job},status={status}}}");
            assert!(recorder.has_counter(&key), "{key} was not registered");
        }
    }
    assert_eq!(
        recorder.samples(&format!("{JOB_DURATION_SECONDS}{{job=good}}")),
        [2.0, 2.0, 2.0]
    );
    assert_eq!(
        recorder.samples(&format!("{JOB_DURATION_SECONDS}{{job=bad}}")),
        [0.0, 0.0]
    );
}
