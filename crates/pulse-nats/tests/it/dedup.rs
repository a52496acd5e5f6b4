//! Dedup by event id, within JetStream's duplicate window and, with the id index,
//! beyond it.

use std::time::Duration;

use pulse_core::{Event, EventLog, ReadQuery};

use crate::support::{self, Prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_id_index_deduplicates_after_the_window() {
    let Some(url) = support::url("the_id_index_deduplicates_after_the_window") else {
        return;
    };
    let prefix = Prefix::new(url, "idindex");
    let mut options = prefix.options.clone();
    options.duplicate_window = Duration::from_millis(200);
    options.id_index = true;
    let log = prefix.open_with(options.clone()).await;
    let first = log
        .append(vec![
            Event::new("a.b").with_id("order-1"),
            Event::new("a.c"),
        ])
        .await
        .unwrap();
    assert_eq!((first[0].offset, first[0].duplicate), (1, false));
    // Well past the server's window: only the index still knows the id.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let other = prefix.open_with(options).await;
    let again = other
        .append(vec![
            Event::new("a.x"),
            Event::new("a.b").with_id("order-1"),
        ])
        .await
        .unwrap();
    assert_eq!((again[0].offset, again[0].duplicate), (3, false));
    assert_eq!((again[1].offset, again[1].duplicate), (1, true));
    assert_eq!(log.read(ReadQuery::after(0, 10)).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_the_logs_is_refused() {
    let Some(url) = support::url("a_stream_that_is_not_the_logs_is_refused") else {
        return;
    };
    let prefix = Prefix::new(url.clone(), "foreign");
    let _log = prefix.open().await;
    // Another prefix naming the same stream: its subjects differ, so it is refused
    // rather than written into.
    let mut options = pulse_nats::NatsOptions::new(format!("{}.x", prefix.options.prefix));
    options.stream = Some(prefix.options.names().stream);
    let err = pulse_nats::NatsLog::connect(&url, options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, pulse_core::LogError::Incompatible(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_events() {
    let Some(url) = support::url("retention_keeps_the_newest_events") else {
        return;
    };
    let prefix = Prefix::new(url, "retention");
    let mut options = prefix.options.clone();
    options.retention.max_events = Some(3);
    let log = prefix.open_with(options.clone()).await;
    log.append((0..5).map(|_| Event::new("a.b")).collect())
        .await
        .unwrap();
    let kept: Vec<u64> = log
        .read(ReadQuery::after(0, 10))
        .await
        .unwrap()
        .iter()
        .map(|s| s.offset)
        .collect();
    assert_eq!(kept, vec![3, 4, 5], "offsets keep counting; the oldest go");
    // Reopening with other limits updates the stream in place.
    options.retention.max_events = None;
    let reopened = prefix.open_with(options).await;
    reopened
        .append(vec![Event::new("a.b"), Event::new("a.b")])
        .await
        .unwrap();
    assert_eq!(
        reopened.read(ReadQuery::after(0, 10)).await.unwrap().len(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_bytes_keeps_the_newest_events_within_the_budget() {
    let Some(url) = support::url("retention_by_bytes_keeps_the_newest_events_within_the_budget")
    else {
        return;
    };
    let prefix = Prefix::new(url.clone(), "bytes");
    let mut options = prefix.options.clone();
    options.retention.max_bytes = Some(5_000);
    let log = prefix.open_with(options.clone()).await;
    let event = || Event::new("a.b").with_data("application/octet-stream", vec![7u8; 1_000]);
    log.append((0..20).map(|_| event()).collect())
        .await
        .unwrap();
    let kept: Vec<u64> = log
        .read(ReadQuery::after(0, 100))
        .await
        .unwrap()
        .iter()
        .map(|s| s.offset)
        .collect();
    // Each event takes 1,000 bytes of data plus its subject and headers: at most four fit.
    assert!((1..=4).contains(&kept.len()), "kept {kept:?}");
    let newest: Vec<u64> = (21 - kept.len() as u64..=20).collect();
    assert_eq!(
        kept, newest,
        "the newest events are kept, offsets keep counting"
    );
    let client = async_nats::connect(&url).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(options.names().stream)
        .await
        .unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert!(
        state.bytes <= 5_000,
        "the stream holds {} bytes",
        state.bytes
    );

    // Reopening with a larger budget updates the stream in place and keeps more.
    options.retention.max_bytes = Some(50_000);
    let reopened = prefix.open_with(options).await;
    reopened
        .append((0..20).map(|_| event()).collect())
        .await
        .unwrap();
    let kept = reopened.read(ReadQuery::after(0, 100)).await.unwrap();
    assert!(kept.len() > 4 && kept.len() < 40, "kept {}", kept.len());
    assert_eq!(kept.last().map(|s| s.offset), Some(40));
}
