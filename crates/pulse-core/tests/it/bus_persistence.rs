//! A bus with a durable log: persistent events are appended before dispatch, duplicates
//! are not dispatched again, memory-only events stay out of the log.

use std::sync::Arc;

use pulse_core::bus::{Bus, PublishError, PublishOptions, Published, SubscribeOptions};
use pulse_core::memory::MemoryLog;
use pulse_core::{Event, EventLog, LogError, Pattern, ReadQuery};

use crate::bus_support::{numbered, recorder, recv_n, seq};

fn bus_with_log() -> (Bus, Arc<MemoryLog>) {
    let log = Arc::new(MemoryLog::new());
    let bus = Bus::builder()
        .log(log.clone())
        .memory_only(Pattern::parse("metrics.>").unwrap())
        .build();
    (bus, log)
}

#[tokio::test]
async fn persistent_events_are_appended_before_dispatch_and_get_their_offset() {
    let (bus, log) = bus_with_log();
    let (handler, mut rx) = recorder();
    let _sub = bus
        .subscribe(">", handler, SubscribeOptions::new())
        .unwrap();

    let first = bus.publish(numbered("health.reading", 0)).await.unwrap();
    assert_eq!(
        first,
        Published {
            offset: Some(1),
            duplicate: false
        }
    );
    let received = recv_n(&mut rx, 1).await;
    let stored = log.read(ReadQuery::after(0, 10)).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].event, *received[0],
        "the log and the handler see the same event"
    );
    assert!(stored[0].event.time.is_some());
}

#[tokio::test]
async fn a_duplicate_id_returns_the_original_offset_and_is_not_dispatched_again() {
    let (bus, log) = bus_with_log();
    let (handler, mut rx) = recorder();
    let _sub = bus
        .subscribe(">", handler, SubscribeOptions::new())
        .unwrap();
    let event = numbered("health.reading", 0).with_id("reading-1");
    assert_eq!(bus.publish(event.clone()).await.unwrap().offset, Some(1));
    let again = bus.publish(event).await.unwrap();
    assert_eq!(
        again,
        Published {
            offset: Some(1),
            duplicate: true
        }
    );
    bus.publish(numbered("health.reading", 1)).await.unwrap();
    let seqs: Vec<u64> = recv_n(&mut rx, 2).await.iter().map(|e| seq(e)).collect();
    assert_eq!(seqs, [0, 1]);
    assert_eq!(log.last_offset().await.unwrap(), 2);
}

#[tokio::test]
async fn memory_publishes_and_memory_only_types_stay_out_of_the_log() {
    let (bus, log) = bus_with_log();
    let (handler, mut rx) = recorder();
    let _sub = bus
        .subscribe(">", handler, SubscribeOptions::new())
        .unwrap();

    let memory = bus
        .publish_memory(numbered("health.reading", 0))
        .await
        .unwrap();
    assert_eq!(memory, Published::default());
    let metric = bus.publish(numbered("metrics.cpu", 1)).await.unwrap();
    assert_eq!(metric.offset, None);
    let forced = bus
        .publish_with(numbered("metrics.cpu", 2), PublishOptions::persistent())
        .await
        .unwrap();
    assert_eq!(forced.offset, Some(1));

    let results = bus
        .publish_batch(vec![
            numbered("health.reading", 3),
            numbered("metrics.cpu", 4),
            numbered("health.reading", 5).with_id("dup"),
        ])
        .await
        .unwrap();
    let offsets: Vec<Option<u64>> = results.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [Some(2), None, Some(3)]);
    // A batch that repeats an id is refused whole, naming both of its positions.
    let refused = bus
        .publish_batch(vec![
            numbered("metrics.cpu", 6),
            numbered("health.reading", 7).with_id("again"),
            numbered("health.reading", 8).with_id("again"),
        ])
        .await;
    assert!(
        matches!(
            refused,
            Err(PublishError::Log(LogError::RepeatedId {
                first: 1,
                second: 2
            }))
        ),
        "{refused:?}"
    );
    let retried = bus
        .publish(numbered("health.reading", 9).with_id("dup"))
        .await
        .unwrap();
    assert_eq!((retried.offset, retried.duplicate), (Some(3), true));

    let seqs: Vec<u64> = recv_n(&mut rx, 6).await.iter().map(|e| seq(e)).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    assert_eq!(log.last_offset().await.unwrap(), 3);
}

#[tokio::test]
async fn persistent_publish_without_a_log_is_an_error() {
    let bus = Bus::new();
    let err = bus
        .publish_with(Event::new("a.b"), PublishOptions::persistent())
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::NoLog));
    let err = bus
        .publish_batch_with(vec![Event::new("a.b")], PublishOptions::persistent())
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::NoLog));
    // The default on a bus without a log is memory.
    assert_eq!(
        bus.publish(Event::new("a.b")).await.unwrap(),
        Published::default()
    );
}
