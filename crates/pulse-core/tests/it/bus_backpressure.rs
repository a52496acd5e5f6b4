//! Bounded queues: a slow handler makes publishers wait (nothing dropped) or, with the
//! fail-fast policy, makes publish fail naming the subscription.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulse_core::bus::{Bus, HandlerResult, OverflowPolicy, PublishError, SubscribeOptions};
use pulse_core::Event;
use tokio::sync::{mpsc, Semaphore};

use crate::bus_support::{eventually, numbered, recorder, recv_n, seq};

/// A handler that needs one permit of `gate` per event, then forwards the event.
fn gated(
    gate: Arc<Semaphore>,
) -> (
    impl pulse_core::bus::Handler,
    mpsc::UnboundedReceiver<Arc<Event>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: Arc<Event>| {
        let gate = Arc::clone(&gate);
        let tx = tx.clone();
        async move {
            gate.acquire().await?.forget();
            let _ = tx.send(event);
            HandlerResult::Ok(())
        }
    };
    (handler, rx)
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_makes_publishers_wait_and_nothing_is_dropped() {
    let bus = Bus::new();
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut rx) = gated(Arc::clone(&gate));
    let capacity = 8_u64;
    let sub = bus
        .subscribe(
            "reading.>",
            handler,
            SubscribeOptions::new().capacity(capacity as usize),
        )
        .unwrap();

    let returned = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let bus = bus.clone();
        let returned = Arc::clone(&returned);
        tokio::spawn(async move {
            for i in 0..100 {
                bus.publish(numbered("reading.heart_rate", i))
                    .await
                    .unwrap();
                returned.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // The lane holds `capacity` events (one of them in the blocked handler).
    eventually(|| sub.stats().queued == capacity).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = sub.stats();
    assert_eq!(stats.queued, capacity);
    assert_eq!(stats.accepted, capacity);
    assert_eq!(returned.load(Ordering::SeqCst), capacity as usize);
    assert!(!publisher.is_finished(), "the publisher must be waiting");

    gate.add_permits(100);
    publisher.await.unwrap();
    let received = recv_n(&mut rx, 100).await;
    let seqs: Vec<u64> = received.iter().map(|e| seq(e)).collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    let stats = sub.stats();
    assert_eq!(
        stats.high_water, capacity,
        "the queue never exceeds its capacity"
    );
    assert_eq!(stats.accepted, 100);
    eventually(|| sub.stats().delivered == 100).await;
    assert_eq!(sub.stats().discarded, 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_larger_than_the_queue_waits_its_turn() {
    let bus = Bus::new();
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut rx) = gated(Arc::clone(&gate));
    let sub = bus
        .subscribe("reading.>", handler, SubscribeOptions::new().capacity(4))
        .unwrap();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let events = (0..50).map(|i| numbered("reading.steps", i)).collect();
            bus.publish_batch(events).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!publisher.is_finished());
    assert_eq!(sub.stats().queued, 4);
    gate.add_permits(50);
    assert_eq!(publisher.await.unwrap().len(), 50);
    let seqs: Vec<u64> = recv_n(&mut rx, 50).await.iter().map(|e| seq(e)).collect();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    assert!(sub.stats().high_water <= 4);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_returns_an_error_naming_the_full_subscription() {
    let bus = Bus::new();
    let gate = Arc::new(Semaphore::new(0));
    let (slow, mut slow_rx) = gated(Arc::clone(&gate));
    let slow_sub = bus
        .subscribe(
            "reading.>",
            slow,
            SubscribeOptions::new()
                .name("slow-alerts")
                .capacity(2)
                .overflow(OverflowPolicy::FailFast),
        )
        .unwrap();
    let (fast, mut fast_rx) = recorder();
    let _fast_sub = bus
        .subscribe("reading.>", fast, SubscribeOptions::new())
        .unwrap();

    // One event in the blocked handler and one queued fill the capacity of 2.
    bus.publish(numbered("reading.spo2", 0)).await.unwrap();
    bus.publish(numbered("reading.spo2", 1)).await.unwrap();
    bus.publish(numbered("reading.spo2", 2)).await.unwrap_err();
    let err = bus.publish(numbered("reading.spo2", 3)).await.unwrap_err();
    match &err {
        PublishError::QueueFull {
            subscription,
            name,
            rejected,
        } => {
            assert_eq!(*subscription, slow_sub.id());
            assert_eq!(name, "slow-alerts");
            assert_eq!(*rejected, 1);
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert!(err.to_string().contains("slow-alerts"));

    // A batch queues what fits and reports the rest.
    let err = bus
        .publish_batch(vec![
            numbered("reading.spo2", 4),
            numbered("reading.spo2", 5),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::QueueFull { rejected: 2, .. }));

    // The other subscription received everything.
    let seqs: Vec<u64> = recv_n(&mut fast_rx, 6)
        .await
        .iter()
        .map(|e| seq(e))
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    gate.add_permits(2);
    let seqs: Vec<u64> = recv_n(&mut slow_rx, 2)
        .await
        .iter()
        .map(|e| seq(e))
        .collect();
    assert_eq!(seqs, [0, 1]);
    assert_eq!(slow_sub.stats().high_water, 2);
}
