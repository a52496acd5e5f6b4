//! Consumer group positions and dead letters across restarts.

use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, NackOutcome, Pattern, StartPosition};
use pulse_sqlite::SqliteLog;

use crate::support::fast;

fn config(pattern: &str) -> GroupConfig {
    GroupConfig::new(Pattern::parse(pattern).unwrap())
}

async fn open(dir: &tempfile::TempDir) -> SqliteLog {
    SqliteLog::open_with(dir.path(), fast()).await.unwrap()
}

async fn reopen(log: SqliteLog, dir: &tempfile::TempDir) -> SqliteLog {
    log.close().await.unwrap();
    drop(log);
    open(dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_committed_in_batches_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    log.append((0..10).map(|_| Event::new("a.b")).collect())
        .await
        .unwrap();
    log.ensure_group("g", config("a.>")).await.unwrap();
    let deliveries = log.fetch("g", 10).await.unwrap();
    assert_eq!(deliveries.len(), 10);
    log.ack("g", &[1, 2, 3, 5]).await.unwrap();
    let log = reopen(log, &dir).await;
    assert_eq!(log.groups().await.unwrap()[0].committed, 3);
    let again: Vec<u64> = log
        .fetch("g", 100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.offset)
        .collect();
    assert_eq!(
        again,
        (4..=10).collect::<Vec<_>>(),
        "5 was acked but lies above 4"
    );
    // A new group at `latest` after the restart starts at the end.
    let mut latest = config("a.>");
    latest.start = StartPosition::Latest;
    assert_eq!(
        log.ensure_group("late", latest).await.unwrap().committed,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_redrives_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    log.append(vec![Event::new("a.b").with_id("poison"), Event::new("a.b")])
        .await
        .unwrap();
    let mut cfg = config("a.>");
    cfg.max_deliver = 2;
    log.ensure_group("g", cfg).await.unwrap();
    for attempt in 1..=2 {
        let d = log.fetch("g", 1).await.unwrap();
        assert_eq!((d[0].event.offset, d[0].attempt), (1, attempt));
        let outcome = log
            .nack("g", 1, Duration::ZERO, &format!("failure {attempt}"))
            .await
            .unwrap();
        assert_eq!(
            matches!(outcome, NackOutcome::DeadLettered(_)),
            attempt == 2
        );
    }
    log.ack("g", &[2]).await.unwrap();
    let log = reopen(log, &dir).await;
    assert_eq!(log.groups().await.unwrap()[0].committed, 2);
    let letters = log.dead_letters(Some("g"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (
            letter.event.event.id.as_str(),
            letter.error.as_str(),
            letter.attempts
        ),
        ("poison", "failure 2", 2)
    );
    assert!(letter.first_failure <= letter.last_failure);

    // Redrive, then restart before handling it: it is handed out again after the restart.
    log.redrive(letter.id).await.unwrap();
    let log = reopen(log, &dir).await;
    let d = log.fetch("g", 10).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event.event.id, "poison");
    // A redriven event gets max_deliver fresh attempts; failing them all updates the
    // same dead letter, counting every failed delivery.
    let outcome = log.nack("g", 1, Duration::ZERO, "again").await.unwrap();
    assert_eq!(outcome, NackOutcome::Redeliver);
    assert_eq!(log.fetch("g", 10).await.unwrap().len(), 1);
    let outcome = log
        .nack("g", 1, Duration::ZERO, "still broken")
        .await
        .unwrap();
    assert_eq!(outcome, NackOutcome::DeadLettered(letter.id));
    let updated = &log.dead_letters(None, 0, 10).await.unwrap()[0];
    assert_eq!(
        (updated.error.as_str(), updated.attempts),
        ("still broken", 4)
    );
    assert_eq!(updated.first_failure, letter.first_failure);
    // Redrive and acknowledge: the dead letter is gone for good.
    log.redrive(letter.id).await.unwrap();
    let d = log.fetch("g", 10).await.unwrap();
    log.ack("g", &[d[0].event.offset]).await.unwrap();
    let log = reopen(log, &dir).await;
    assert!(log.dead_letters(None, 0, 10).await.unwrap().is_empty());
    assert!(log.fetch("g", 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ack_wait_on_the_last_attempt_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    log.append(vec![Event::new("a.b")]).await.unwrap();
    let mut cfg = config("a.>");
    cfg.max_deliver = 1;
    cfg.ack_wait = Duration::from_millis(20);
    log.ensure_group("g", cfg).await.unwrap();
    assert_eq!(log.fetch("g", 10).await.unwrap().len(), 1);
    crate::support::eventually("the ack wait to expire", || async {
        log.fetch("g", 10).await.unwrap();
        !log.dead_letters(None, 0, 10).await.unwrap().is_empty()
    })
    .await;
    let letter = &log.dead_letters(None, 0, 10).await.unwrap()[0];
    assert!(
        letter.error.contains("not acknowledged"),
        "{}",
        letter.error
    );
    log.flush().await.unwrap();
    let log = reopen(log, &dir).await;
    assert_eq!(log.groups().await.unwrap()[0].committed, 1);
    assert_eq!(log.dead_letters(None, 0, 10).await.unwrap().len(), 1);
}
