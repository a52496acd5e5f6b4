//! Per-subject ordering under concurrency.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pulse_core::bus::{Bus, HandlerResult, SubscribeOptions};
use pulse_core::Event;

use crate::bus_support::{eventually, numbered, seq};

#[derive(Default)]
struct Observed {
    in_flight: Mutex<HashSet<String>>,
    overlap_same_subject: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    order: Mutex<HashMap<String, Vec<u64>>>,
    handled: AtomicUsize,
}

fn observing_handler(
    observed: Arc<Observed>,
    max_pause_us: u64,
) -> impl Fn(Arc<Event>) -> std::pin::Pin<Box<dyn std::future::Future<Output = HandlerResult> + Send>>
       + Send
       + Sync
       + 'static {
    move |event: Arc<Event>| {
        let observed = Arc::clone(&observed);
        Box::pin(async move {
            let subject = event.subject.clone().expect("subject");
            if !observed.in_flight.lock().insert(subject.clone()) {
                observed.overlap_same_subject.fetch_add(1, Ordering::SeqCst);
            }
            let running = observed.running.fetch_add(1, Ordering::SeqCst) + 1;
            observed.max_running.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_micros(fastrand::u64(1..=max_pause_us))).await;
            observed.running.fetch_sub(1, Ordering::SeqCst);
            observed.in_flight.lock().remove(&subject);
            observed
                .order
                .lock()
                .entry(subject)
                .or_default()
                .push(seq(&event));
            observed.handled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_subject_is_handled_one_at_a_time_in_publish_order_while_subjects_run_concurrently() {
    let bus = Bus::new();
    let observed = Arc::new(Observed::default());
    let _sub = bus
        .subscribe(
            "health.>",
            observing_handler(Arc::clone(&observed), 2_000),
            SubscribeOptions::new().concurrency(4).capacity(64),
        )
        .unwrap();
    let subjects = 12;
    let per_subject = 40_u64;
    for i in 0..per_subject {
        for s in 0..subjects {
            bus.publish(numbered("health.reading.heart_rate", i).with_subject(format!("user-{s}")))
                .await
                .unwrap();
        }
    }
    let total = subjects * per_subject as usize;
    eventually(|| observed.handled.load(Ordering::SeqCst) == total).await;

    assert_eq!(observed.overlap_same_subject.load(Ordering::SeqCst), 0);
    assert!(
        observed.max_running.load(Ordering::SeqCst) > 1,
        "different subjects should run concurrently"
    );
    assert!(observed.max_running.load(Ordering::SeqCst) <= 4);
    let order = observed.order.lock();
    assert_eq!(order.len(), subjects);
    for (subject, seqs) in order.iter() {
        let expected: Vec<u64> = (0..per_subject).collect();
        assert_eq!(seqs, &expected, "order of {subject}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_from_concurrent_publishers_keep_each_subject_in_order() {
    let bus = Bus::new();
    let observed = Arc::new(Observed::default());
    let _sub = bus
        .subscribe(
            "health.>",
            observing_handler(Arc::clone(&observed), 20),
            SubscribeOptions::new().concurrency(3).capacity(30),
        )
        .unwrap();
    let per_subject = 300_u64;
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for chunk in (0..per_subject).collect::<Vec<_>>().chunks(25) {
                    let events = chunk
                        .iter()
                        .flat_map(|&i| {
                            (0..3).map(move |s| {
                                numbered("health.reading.steps", i)
                                    .with_subject(format!("p{p}-user-{s}"))
                            })
                        })
                        .collect();
                    bus.publish_batch(events).await.unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let total = 2 * 3 * per_subject as usize;
    eventually(|| observed.handled.load(Ordering::SeqCst) == total).await;
    assert_eq!(observed.overlap_same_subject.load(Ordering::SeqCst), 0);
    let order = observed.order.lock();
    assert_eq!(order.len(), 6);
    for (subject, seqs) in order.iter() {
        let expected: Vec<u64> = (0..per_subject).collect();
        assert_eq!(seqs, &expected, "order of {subject}");
    }
}
