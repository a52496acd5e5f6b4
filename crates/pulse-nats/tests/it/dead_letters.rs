//! Dead letters from JetStream's max-deliveries advisory: a handler that never answers.

use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, Pattern};

use crate::support::{self, Prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_never_acknowledged_are_dead_lettered_by_the_advisory() {
    let Some(url) = support::url("events_never_acknowledged_are_dead_lettered_by_the_advisory")
    else {
        return;
    };
    let prefix = Prefix::new(url, "advisory");
    let log = prefix.open().await;
    let mut config = GroupConfig::new(Pattern::parse("a.>").unwrap());
    config.max_deliver = 2;
    config.ack_wait = Duration::from_millis(300);
    log.ensure_group("hung", config).await.unwrap();
    log.append(vec![Event::new("a.b").with_subject("s")])
        .await
        .unwrap();
    let mut attempts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let letter = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter; attempts {attempts:?}"
        );
        // Fetch and never answer.
        let batch = log
            .fetch_wait("hung", 10, Duration::from_millis(500))
            .await
            .unwrap();
        attempts.extend(batch.iter().map(|d| d.attempt));
        if let Some(letter) = log.dead_letters(Some("hung"), 0, 10).await.unwrap().pop() {
            break letter;
        }
    };
    assert_eq!(attempts, vec![1, 2]);
    assert_eq!((letter.event.offset, letter.attempts), (1, 2));
    assert!(letter.error.contains("ack wait"), "{}", letter.error);
    log.redrive(letter.id).await.unwrap();
    let again = log
        .fetch_wait("hung", 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again[0].event.offset, 1);
    log.ack("hung", &[1]).await.unwrap();
    let left = log.dead_letters(None, 0, 10).await.unwrap();
    assert!(left.is_empty(), "{letter:?} left {left:?}");
}
