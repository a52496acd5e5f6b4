//! Contract checks for durable backends: what survives closing and reopening the store.

use std::future::Future;
use std::time::Duration;

use super::{event, fetch_all, group_config, offsets};
use crate::log::{EventLog, NackOutcome};

/// For durable backends: `open` opens the same store each time. Events and group
/// positions survive closing and reopening; a group resumes after its committed offset.
pub async fn resumes_after_reopen<L, F, Fut>(open: F)
where
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
{
    {
        let log = open().await;
        log.append(
            (0..4)
                .map(|i| event("a.b", None).with_id(format!("e{i}")))
                .collect(),
        )
        .await
        .unwrap();
        log.ensure_group("g", group_config("a.>")).await.unwrap();
        assert_eq!(fetch_all(&log, "g").await.len(), 4);
        log.ack("g", &[1, 2]).await.unwrap();
        log.flush().await.unwrap();
    }
    let log = open().await;
    assert_eq!(log.last_offset().await.unwrap(), 4);
    let again = log
        .append(vec![event("a.b", None).with_id("e0")])
        .await
        .unwrap();
    assert_eq!(
        (again[0].offset, again[0].duplicate),
        (1, true),
        "dedup survives a reopen"
    );
    let info = log.ensure_group("g", group_config("a.>")).await.unwrap();
    assert_eq!(info.committed, 2);
    assert_eq!(
        offsets(&fetch_all(&log, "g").await),
        vec![3, 4],
        "unacknowledged events come back"
    );
}

/// For durable backends: `open` opens the same store each time. The attempt count of a
/// failed delivery survives closing and reopening, so `max_deliver` counts deliveries
/// across restarts, not since the last one: nack, reopen, fetch again → attempt 2; the
/// `max_deliver`-th failure after two reopenings dead-letters with every attempt counted.
pub async fn attempts_survive_reopen<L, F, Fut>(open: F)
where
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
{
    let mut config = group_config("a.>");
    config.max_deliver = 3;
    {
        let log = open().await;
        log.append(vec![event("a.b", Some("s")).with_id("t1")])
            .await
            .unwrap();
        log.ensure_group("tries", config.clone()).await.unwrap();
        let first = fetch_all(&log, "tries").await;
        assert_eq!(
            (offsets(&first), first.first().map(|d| d.attempt)),
            (vec![1], Some(1))
        );
        let outcome = log
            .nack("tries", 1, Duration::ZERO, "first failure")
            .await
            .unwrap();
        assert_eq!(outcome, NackOutcome::Redeliver);
        log.flush().await.unwrap();
    }
    {
        let log = open().await;
        log.ensure_group("tries", config.clone()).await.unwrap();
        let again = log
            .fetch_wait("tries", 10, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            (offsets(&again), again.first().map(|d| d.attempt)),
            (vec![1], Some(2)),
            "the failed delivery before the reopen is counted"
        );
        log.nack("tries", 1, Duration::ZERO, "second failure")
            .await
            .unwrap();
        log.flush().await.unwrap();
    }
    let log = open().await;
    log.ensure_group("tries", config).await.unwrap();
    let third = log
        .fetch_wait("tries", 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (offsets(&third), third.first().map(|d| d.attempt)),
        (vec![1], Some(3)),
        "both failed deliveries are counted"
    );
    let NackOutcome::DeadLettered(id) = log
        .nack("tries", 1, Duration::ZERO, "third failure")
        .await
        .unwrap()
    else {
        panic!("the third failure of max_deliver 3 dead-letters, across reopenings");
    };
    let letters = log.dead_letters(Some("tries"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.id, letter.event.offset, letter.attempts),
        (id, 1, 3)
    );
    assert_eq!(letter.error, "third failure");
    assert!(fetch_all(&log, "tries").await.is_empty());
}
