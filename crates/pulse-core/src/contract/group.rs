//! Contract checks of consumer groups: delivery, order per subject, nack, dead letters, joins.

use std::time::Duration;

use super::{event, fetch_all, group_config, offsets};
use crate::log::{EventLog, LogError, NackOutcome, StartPosition};
use crate::Pattern;

/// A group hands out each event once; acks advance the committed offset.
pub async fn group_delivers_each_event_once<L: EventLog>(log: &L) {
    log.append((0..5).map(|_| event("a.b", None)).collect())
        .await
        .unwrap();
    let info = log
        .ensure_group("workers", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!((info.name.as_str(), info.committed), ("workers", 0));
    let first = log.fetch("workers", 2).await.unwrap();
    let rest = fetch_all(log, "workers").await;
    assert_eq!(offsets(&first), vec![1, 2]);
    assert_eq!(offsets(&rest), vec![3, 4, 5]);
    assert!(first.iter().chain(&rest).all(|d| d.attempt == 1));
    assert!(
        log.fetch("workers", 10).await.unwrap().is_empty(),
        "nothing is handed out twice"
    );
    log.ack("workers", &[1, 2, 4]).await.unwrap();
    log.ack("workers", &[1, 99]).await.unwrap();
    let group = &log.groups().await.unwrap()[0];
    assert_eq!((group.committed, group.pending), (2, 2));
    log.ack("workers", &[3, 5]).await.unwrap();
    log.append(vec![event("a.b", None)]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "workers").await), vec![6]);
    log.ack("workers", &[6]).await.unwrap();
    assert_eq!(log.groups().await.unwrap()[0].committed, 6);
}

/// A group created at `latest` sees only events appended afterwards.
pub async fn group_starting_at_latest_skips_history<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None), event("a.b", None)])
        .await
        .unwrap();
    let mut config = group_config("a.>");
    config.start = StartPosition::Latest;
    assert_eq!(log.ensure_group("late", config).await.unwrap().committed, 2);
    assert!(log.fetch("late", 10).await.unwrap().is_empty());
    log.append(vec![event("a.b", None)]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "late").await), vec![3]);
}

/// Events of other types are skipped and do not hold the committed offset back.
pub async fn group_receives_only_its_pattern<L: EventLog>(log: &L) {
    log.append(vec![
        event("health.reading.hr", None),
        event("billing.paid", None),
        event("health.reading.bp", None),
        event("billing.paid", None),
    ])
    .await
    .unwrap();
    log.ensure_group("health", group_config("health.>"))
        .await
        .unwrap();
    let deliveries = fetch_all(log, "health").await;
    assert_eq!(offsets(&deliveries), vec![1, 3]);
    log.ack("health", &[1, 3]).await.unwrap();
    assert!(fetch_all(log, "health").await.is_empty());
    assert_eq!(log.groups().await.unwrap()[0].committed, 4);
}

/// An event waits while an earlier event of its subject is unacknowledged; other
/// subjects go on.
pub async fn group_keeps_order_per_subject<L: EventLog>(log: &L) {
    log.append(vec![
        event("a.b", Some("alice")),
        event("a.b", Some("alice")),
        event("a.b", Some("bob")),
        event("a.b", Some("alice")),
    ])
    .await
    .unwrap();
    log.ensure_group("ordered", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!(offsets(&fetch_all(log, "ordered").await), vec![1, 3]);
    log.ack("ordered", &[1]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "ordered").await), vec![2]);
    assert_eq!(
        log.nack("ordered", 2, Duration::ZERO, "retry")
            .await
            .unwrap(),
        NackOutcome::Redeliver
    );
    let again = fetch_all(log, "ordered").await;
    assert_eq!(
        (offsets(&again), again[0].attempt),
        (vec![2], 2),
        "offset 4 waits for 2"
    );
    log.ack("ordered", &[2]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "ordered").await), vec![4]);
}

/// A nacked event comes back after its delay, not before, with the attempt counted.
pub async fn nack_redelivers_after_the_delay<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    log.ensure_group("retry", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!(fetch_all(log, "retry").await.len(), 1);
    let outcome = log
        .nack("retry", 1, Duration::from_secs(3600), "later")
        .await
        .unwrap();
    assert_eq!(outcome, NackOutcome::Redeliver);
    assert!(
        log.fetch("retry", 10).await.unwrap().is_empty(),
        "not before the delay"
    );
    let mut config = group_config("a.>");
    config.max_deliver = 5;
    log.append(vec![event("a.c", None)]).await.unwrap();
    log.ensure_group("soon", config).await.unwrap();
    let first = fetch_all(log, "soon").await;
    assert_eq!(offsets(&first), vec![1, 2]);
    log.nack("soon", 1, Duration::from_millis(50), "soon")
        .await
        .unwrap();
    let again = log
        .fetch_wait("soon", 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((offsets(&again), again[0].attempt), (vec![1], 2));
    assert!(matches!(
        log.nack("soon", 77, Duration::ZERO, "x").await,
        Err(LogError::UnknownDelivery { offset: 77, .. })
    ));
}

/// The `max_deliver`-th failure dead-letters the event with the error text and count.
pub async fn max_deliver_dead_letters_with_the_error<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", Some("s")), event("a.b", Some("s"))])
        .await
        .unwrap();
    let mut config = group_config("a.>");
    config.max_deliver = 2;
    log.ensure_group("fragile", config).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "fragile").await), vec![1]);
    assert_eq!(
        log.nack("fragile", 1, Duration::ZERO, "first")
            .await
            .unwrap(),
        NackOutcome::Redeliver
    );
    assert_eq!(offsets(&fetch_all(log, "fragile").await), vec![1]);
    let NackOutcome::DeadLettered(id) = log
        .nack("fragile", 1, Duration::ZERO, "db timeout")
        .await
        .unwrap()
    else {
        panic!("the second failure dead-letters");
    };
    let letters = log.dead_letters(Some("fragile"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.id, letter.group.as_str(), letter.event.offset),
        (id, "fragile", 1)
    );
    assert_eq!((letter.error.as_str(), letter.attempts), ("db timeout", 2));
    assert!(letter.first_failure <= letter.last_failure);
    assert!(log
        .dead_letters(Some("other"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(log.dead_letters(None, id, 10).await.unwrap().is_empty());
    assert_eq!(
        offsets(&fetch_all(log, "fragile").await),
        vec![2],
        "the subject moves on"
    );
    log.ack("fragile", &[2]).await.unwrap();
    assert_eq!(log.groups().await.unwrap()[0].committed, 2);
}

/// A redriven dead letter is delivered again and leaves the store once acknowledged.
pub async fn redrive_hands_a_dead_letter_back<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    let mut config = group_config("a.>");
    config.max_deliver = 1;
    log.ensure_group("redo", config).await.unwrap();
    fetch_all(log, "redo").await;
    let NackOutcome::DeadLettered(id) = log.nack("redo", 1, Duration::ZERO, "bad").await.unwrap()
    else {
        panic!("max_deliver 1 dead-letters at once");
    };
    assert!(matches!(
        log.redrive(id + 100).await,
        Err(LogError::UnknownDeadLetter(_))
    ));
    log.redrive(id).await.unwrap();
    let again = fetch_all(log, "redo").await;
    assert_eq!(offsets(&again), vec![1]);
    log.ack("redo", &[1]).await.unwrap();
    assert!(log.dead_letters(None, 0, 10).await.unwrap().is_empty());
    assert!(fetch_all(log, "redo").await.is_empty());
}

/// A delivery neither acked nor nacked within the ack wait is delivered again.
pub async fn unacknowledged_deliveries_are_redelivered<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    let mut config = group_config("a.>");
    config.ack_wait = Duration::from_millis(100);
    log.ensure_group("slow", config).await.unwrap();
    assert_eq!(fetch_all(log, "slow").await[0].attempt, 1);
    let again = log
        .fetch_wait("slow", 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((offsets(&again), again[0].attempt), (vec![1], 2));
}

/// Ensuring an existing group keeps its position and pending events.
pub async fn ensure_group_keeps_the_position<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None), event("a.b", None)])
        .await
        .unwrap();
    log.ensure_group("g", group_config("a.>")).await.unwrap();
    fetch_all(log, "g").await;
    log.ack("g", &[1]).await.unwrap();
    let mut config = group_config("a.>");
    config.start = StartPosition::Latest;
    let info = log.ensure_group("g", config).await.unwrap();
    assert_eq!(info.committed, 1);
    log.ack("g", &[2]).await.unwrap();
    assert_eq!(log.groups().await.unwrap()[0].committed, 2);
}

/// A group's pattern is part of the group: joining it with another pattern is a typed
/// conflict naming both, and changes neither its pattern nor what it delivers.
pub async fn joining_with_another_pattern_is_a_conflict<L: EventLog>(log: &L) {
    log.append(vec![
        event("billing.invoice", None),
        event("health.reading.hr", None),
    ])
    .await
    .unwrap();
    log.ensure_group("billing", group_config("billing.>"))
        .await
        .unwrap();
    match log
        .ensure_group("billing", group_config("health.reading.>"))
        .await
    {
        Err(LogError::GroupPatternConflict {
            group,
            existing,
            requested,
        }) => {
            assert_eq!(group, "billing");
            assert_eq!(existing.as_str(), "billing.>");
            assert_eq!(requested.as_str(), "health.reading.>");
        }
        other => panic!("expected a pattern conflict, got {other:?}"),
    }
    let groups = log.groups().await.unwrap();
    assert_eq!(groups[0].pattern.as_str(), "billing.>");
    let deliveries = fetch_all(log, "billing").await;
    assert_eq!(offsets(&deliveries), vec![1], "still only billing events");
    let info = log
        .ensure_group("billing", group_config("billing.>"))
        .await
        .unwrap();
    assert_eq!(info.pattern.as_str(), "billing.>", "the same pattern joins");
}

/// A join keeps the pattern and position but applies its `max_deliver` (and `ack_wait`).
pub async fn a_join_applies_the_delivery_settings<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    let mut config = group_config("a.>");
    config.max_deliver = 5;
    log.ensure_group("tuned", config.clone()).await.unwrap();
    assert_eq!(fetch_all(log, "tuned").await.len(), 1);
    config.max_deliver = 1;
    config.start = StartPosition::Latest;
    let info = log.ensure_group("tuned", config).await.unwrap();
    assert_eq!(info.committed, 0, "the position is kept");
    assert!(matches!(
        log.nack("tuned", 1, Duration::ZERO, "bad").await.unwrap(),
        NackOutcome::DeadLettered(_)
    ));
}

/// The operator's action changes a group's pattern, keeping its position; a backend
/// that cannot says so with `Unsupported`.
pub async fn set_group_pattern_changes_what_the_group_receives<L: EventLog>(log: &L) {
    log.append(vec![event("a.x", None)]).await.unwrap();
    log.ensure_group("moving", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!(offsets(&fetch_all(log, "moving").await), vec![1]);
    log.ack("moving", &[1]).await.unwrap();
    let info = match log
        .set_group_pattern("moving", Pattern::parse("b.>").unwrap())
        .await
    {
        Ok(info) => info,
        Err(LogError::Unsupported(_)) => return,
        Err(other) => panic!("set_group_pattern failed: {other:?}"),
    };
    assert_eq!((info.pattern.as_str(), info.committed), ("b.>", 1));
    assert!(matches!(
        log.set_group_pattern("nobody", Pattern::parse("b.>").unwrap())
            .await,
        Err(LogError::UnknownGroup(_))
    ));
    log.append(vec![event("a.y", None), event("b.y", None)])
        .await
        .unwrap();
    assert_eq!(offsets(&fetch_all(log, "moving").await), vec![3]);
    assert!(matches!(
        log.ensure_group("moving", group_config("a.>")).await,
        Err(LogError::GroupPatternConflict { .. })
    ));
    let info = log
        .ensure_group("moving", group_config("b.>"))
        .await
        .unwrap();
    assert_eq!(info.pattern.as_str(), "b.>");
    assert_eq!(log.groups().await.unwrap()[0].pattern.as_str(), "b.>");
}

/// Using a group that does not exist, or a bad group name, is an error.
pub async fn unknown_and_invalid_groups_are_errors<L: EventLog>(log: &L) {
    assert!(matches!(
        log.fetch("nobody", 1).await,
        Err(LogError::UnknownGroup(_))
    ));
    assert!(matches!(
        log.ack("nobody", &[1]).await,
        Err(LogError::UnknownGroup(_))
    ));
    assert!(matches!(
        log.nack("nobody", 1, Duration::ZERO, "x").await,
        Err(LogError::UnknownGroup(_))
    ));
    for bad in ["", "has space", "dot.ted", &"x".repeat(65)] {
        assert!(
            matches!(
                log.ensure_group(bad, group_config(">")).await,
                Err(LogError::InvalidGroup(_))
            ),
            "{bad:?}"
        );
    }
}
