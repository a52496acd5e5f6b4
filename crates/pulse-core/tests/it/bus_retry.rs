//! Retries with exponential backoff and jitter, dead letters after `max_attempts`, and
//! panicking handlers isolated. Time is paused, so backoffs take no real time.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pulse_core::bus::{
    Bus, HandlerError, HandlerResult, MemoryDeadLetters, RetryPolicy, SubscribeOptions,
};
use pulse_core::Event;
use tokio::time::Instant;

use crate::bus_support::{eventually, numbered, recorder, recv_n, seq};

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_exponential_backoff_within_the_jitter_bounds() {
    let bus = Bus::new();
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let policy = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        multiplier: 2.0,
        jitter: 0.2,
        ..RetryPolicy::default()
    };
    let sub = {
        let attempts = Arc::clone(&attempts);
        bus.subscribe(
            "orders.>",
            move |_event: Arc<Event>| {
                let attempts = Arc::clone(&attempts);
                async move {
                    let mut attempts = attempts.lock();
                    attempts.push(Instant::now());
                    if attempts.len() < 5 {
                        return Err(HandlerError::msg("database unavailable"));
                    }
                    Ok(())
                }
            },
            SubscribeOptions::new().retry(policy.clone()),
        )
        .unwrap()
    };
    bus.publish(Event::new("orders.placed")).await.unwrap();
    eventually(|| sub.stats().delivered == 1).await;

    let attempts = attempts.lock().clone();
    assert_eq!(attempts.len(), 5);
    // Nominal delays 100, 200, 400, then 800 capped at 500 ms; ±20 %, capped at 500 ms;
    // the timer has millisecond resolution.
    let bounds = [(80, 120), (160, 240), (320, 480), (400, 500)];
    for (i, (low, high)) in bounds.into_iter().enumerate() {
        let delay = attempts[i + 1] - attempts[i];
        assert!(
            delay >= Duration::from_millis(low) && delay <= Duration::from_millis(high + 1),
            "delay {} was {delay:?}, expected {low}..={high} ms",
            i + 1
        );
    }
    let stats = sub.stats();
    assert_eq!(
        (stats.failures, stats.retries, stats.dead_lettered),
        (4, 4, 0)
    );
    assert!(bus.dead_letters().records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_event_failing_max_attempts_is_dead_lettered_with_the_error_and_attempts() {
    let bus = Bus::new();
    let sink = Arc::new(MemoryDeadLetters::new(100));
    let sub = bus
        .subscribe(
            "orders.>",
            |event: Arc<Event>| async move {
                if seq(&event) == 0 {
                    Err(HandlerError::msg("payment service returned 503"))
                } else {
                    Ok(())
                }
            },
            SubscribeOptions::new()
                .name("billing")
                .retry(RetryPolicy {
                    max_attempts: 3,
                    ..RetryPolicy::default()
                })
                .dead_letter(sink.clone()),
        )
        .unwrap();
    let poisoned = numbered("orders.placed", 0).with_subject("user-1");
    let poisoned_id = poisoned.id.clone();
    bus.publish(poisoned).await.unwrap();
    bus.publish(numbered("orders.placed", 1).with_subject("user-1"))
        .await
        .unwrap();
    eventually(|| sub.stats().delivered == 1).await;

    let records = sink.records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.event.id, poisoned_id);
    assert_eq!(record.error, "payment service returned 503");
    assert_eq!(record.attempts, 3);
    assert_eq!(record.subscription, sub.id());
    assert_eq!(record.subscription_name, "billing");
    assert_eq!(record.pattern.as_str(), "orders.>");
    let stats = sub.stats();
    assert_eq!(
        (
            stats.failures,
            stats.retries,
            stats.dead_lettered,
            stats.delivered
        ),
        (3, 2, 1, 1)
    );
    // The subscription's own sink was used, not the bus's.
    assert!(bus.dead_letters().records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_isolated_and_counted_as_a_failure() {
    let bus = Bus::new();
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let panicky = {
        let handled = Arc::clone(&handled);
        bus.subscribe(
            "orders.>",
            move |event: Arc<Event>| {
                let handled = Arc::clone(&handled);
                async move {
                    if event.subject.as_deref() == Some("boom") {
                        panic!("corrupt order {}", seq(&event));
                    }
                    handled.lock().push(seq(&event));
                    HandlerResult::Ok(())
                }
            },
            SubscribeOptions::new().retry(RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(10),
                ..RetryPolicy::default()
            }),
        )
        .unwrap()
    };
    let (observer, mut observer_rx) = recorder();
    let _observer = bus
        .subscribe("orders.>", observer, SubscribeOptions::new())
        .unwrap();

    bus.publish(numbered("orders.placed", 0)).await.unwrap();
    bus.publish(numbered("orders.placed", 1).with_subject("boom"))
        .await
        .unwrap();
    bus.publish(numbered("orders.placed", 2)).await.unwrap();

    let seqs: Vec<u64> = recv_n(&mut observer_rx, 3)
        .await
        .iter()
        .map(|e| seq(e))
        .collect();
    assert_eq!(seqs, [0, 1, 2]);
    eventually(|| panicky.stats().delivered == 2).await;
    assert_eq!(*handled.lock(), [0, 2]);
    let records = bus.dead_letters().records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].error, "handler panicked: corrupt order 1");
    assert_eq!(records[0].attempts, 2);
    let stats = panicky.stats();
    assert_eq!((stats.failures, stats.dead_lettered), (2, 1));
}
