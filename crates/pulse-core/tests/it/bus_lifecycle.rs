//! Subscribing and unsubscribing (the route cache follows), shutdown, and bad input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulse_core::bus::{Bus, BusError, HandlerResult, PublishError, SubscribeOptions};
use pulse_core::{Event, EventError, PatternError};
use tokio::sync::Semaphore;

use crate::bus_support::{eventually, numbered, recorder, recv_n, seq};

#[tokio::test]
async fn unsubscribe_stops_deliveries() {
    let bus = Bus::new();
    let (handler, mut rx) = recorder();
    let sub = bus
        .subscribe("user.>", handler, SubscribeOptions::new())
        .unwrap();
    let (witness, mut witness_rx) = recorder();
    let _witness = bus
        .subscribe("user.>", witness, SubscribeOptions::new())
        .unwrap();

    bus.publish(numbered("user.created", 0)).await.unwrap();
    assert_eq!(seq(&recv_n(&mut rx, 1).await[0]), 0);
    let stats = sub.unsubscribe().await;
    assert_eq!((stats.delivered, stats.discarded), (1, 0));

    bus.publish(numbered("user.created", 1)).await.unwrap();
    recv_n(&mut witness_rx, 2).await;
    // The handler (and with it the sender) is gone: nothing more can arrive.
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn dropping_the_subscription_unsubscribes() {
    let bus = Bus::new();
    let (handler, mut rx) = recorder();
    let sub = bus
        .subscribe("user.>", handler, SubscribeOptions::new())
        .unwrap();
    bus.publish(numbered("user.created", 0)).await.unwrap();
    recv_n(&mut rx, 1).await;
    drop(sub);
    bus.publish(numbered("user.created", 1)).await.unwrap();
    assert!(rx.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn unsubscribe_finishes_the_event_in_progress_and_discards_the_queue() {
    let bus = Bus::new();
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let sub = {
        let gate = Arc::clone(&gate);
        let started = Arc::clone(&started);
        bus.subscribe(
            "user.>",
            move |_event: Arc<Event>| {
                let gate = Arc::clone(&gate);
                started.fetch_add(1, Ordering::SeqCst);
                async move {
                    gate.acquire().await?.forget();
                    HandlerResult::Ok(())
                }
            },
            SubscribeOptions::new(),
        )
        .unwrap()
    };
    for i in 0..5 {
        bus.publish(numbered("user.created", i)).await.unwrap();
    }
    eventually(|| started.load(Ordering::SeqCst) == 1).await;
    assert_eq!(sub.stats().queued, 5);
    let release = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            gate.add_permits(10);
        })
    };
    let stats = sub.unsubscribe().await;
    release.await.unwrap();
    assert_eq!((stats.delivered, stats.discarded, stats.queued), (1, 4, 0));
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_new_subscription_receives_the_next_event_of_an_already_routed_type() {
    let bus = Bus::new();
    let (first, mut first_rx) = recorder();
    let first_sub = bus.subscribe(">", first, SubscribeOptions::new()).unwrap();
    // Route "user.created" (and cache it) with one subscription.
    bus.publish(numbered("user.created", 0)).await.unwrap();
    recv_n(&mut first_rx, 1).await;

    let (second, mut second_rx) = recorder();
    let _second_sub = bus
        .subscribe("user.created", second, SubscribeOptions::new())
        .unwrap();
    bus.publish(numbered("user.created", 1)).await.unwrap();
    assert_eq!(seq(&recv_n(&mut second_rx, 1).await[0]), 1);
    assert_eq!(seq(&recv_n(&mut first_rx, 1).await[0]), 1);

    first_sub.unsubscribe().await;
    bus.publish_batch(vec![numbered("user.created", 2)])
        .await
        .unwrap();
    assert_eq!(seq(&recv_n(&mut second_rx, 1).await[0]), 2);
    assert!(first_rx.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_queued_events_and_rejects_new_ones() {
    let bus = Bus::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sub = bus
        .subscribe(
            "job.>",
            move |event: Arc<Event>| {
                let tx = tx.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let _ = tx.send(seq(&event));
                    HandlerResult::Ok(())
                }
            },
            SubscribeOptions::new().capacity(100),
        )
        .unwrap();
    for i in 0..20 {
        bus.publish(numbered("job.done", i)).await.unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.completed);
    assert_eq!((report.drained, report.left), (20, 0));
    let mut handled = Vec::new();
    while let Ok(seq) = rx.try_recv() {
        handled.push(seq);
    }
    assert_eq!(handled, (0..20).collect::<Vec<_>>());
    assert_eq!(sub.stats().delivered, 20);

    assert!(bus.is_shut_down());
    assert!(matches!(
        bus.publish(Event::new("job.done")).await,
        Err(PublishError::ShutDown)
    ));
    assert!(matches!(
        bus.publish_batch(vec![Event::new("job.done")]).await,
        Err(PublishError::ShutDown)
    ));
    let (handler, _rx) = recorder();
    assert!(matches!(
        bus.subscribe("job.>", handler, SubscribeOptions::new()),
        Err(BusError::ShutDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_at_the_deadline_and_reports_what_was_left() {
    let bus = Bus::new();
    let _stuck = bus
        .subscribe(
            "job.>",
            |_event: Arc<Event>| async {
                std::future::pending::<()>().await;
                HandlerResult::Ok(())
            },
            SubscribeOptions::new(),
        )
        .unwrap();
    for i in 0..3 {
        bus.publish(numbered("job.done", i)).await.unwrap();
    }
    let report = bus.shutdown(Duration::from_millis(200)).await;
    assert!(!report.completed);
    assert_eq!((report.drained, report.left), (0, 3));
}

#[tokio::test]
async fn malformed_events_are_rejected_with_clear_errors_and_nothing_is_published() {
    let bus = Bus::new();
    let (handler, mut rx) = recorder();
    let _sub = bus
        .subscribe(">", handler, SubscribeOptions::new())
        .unwrap();

    let err = bus
        .publish(Event::new("health..reading"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        PublishError::InvalidEvent {
            index: 0,
            source: EventError::InvalidType { .. }
        }
    ));
    assert!(err.to_string().contains("position 7"), "{err}");
    let err = bus
        .publish(Event::new("a.b").with_id(""))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        PublishError::InvalidEvent {
            source: EventError::Missing("id"),
            ..
        }
    ));
    let err = bus
        .publish_batch(vec![
            numbered("a.b", 0),
            numbered("a.b", 1),
            Event::new("a.b").with_source("has space"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::InvalidEvent { index: 2, .. }));

    bus.publish(numbered("a.b", 9)).await.unwrap();
    let first = recv_n(&mut rx, 1).await;
    assert_eq!(
        seq(&first[0]),
        9,
        "none of the rejected batch was delivered"
    );
}

#[tokio::test]
async fn publish_sets_the_time_when_absent_and_keeps_a_given_one() {
    let bus = Bus::new();
    let (handler, mut rx) = recorder();
    let _sub = bus
        .subscribe(">", handler, SubscribeOptions::new())
        .unwrap();
    let given = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
        .unwrap()
        .to_utc();
    let before = chrono::Utc::now();
    bus.publish(Event::new("a.b")).await.unwrap();
    bus.publish(Event::new("a.b").with_time(given))
        .await
        .unwrap();
    let events = recv_n(&mut rx, 2).await;
    assert!(events[0].time.unwrap() >= before);
    assert_eq!(events[1].time, Some(given));
}

#[tokio::test]
async fn bad_patterns_and_options_are_rejected() {
    let bus = Bus::new();
    let (handler, _rx) = recorder();
    let err = bus
        .subscribe("health..x", handler, SubscribeOptions::new())
        .unwrap_err();
    assert!(matches!(
        err,
        BusError::InvalidPattern(PatternError::EmptySegment { position: 7, .. })
    ));
    let (handler, _rx) = recorder();
    let err = bus
        .subscribe("health.>", handler, SubscribeOptions::new().concurrency(0))
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidOptions(_)));
    assert!(err.to_string().contains("concurrency"));
}

#[test]
fn subscribing_outside_a_runtime_is_a_clear_error() {
    let bus = Bus::new();
    let (handler, _rx) = recorder();
    let err = bus
        .subscribe("health.>", handler, SubscribeOptions::new())
        .unwrap_err();
    assert!(matches!(err, BusError::NoRuntime));
}
