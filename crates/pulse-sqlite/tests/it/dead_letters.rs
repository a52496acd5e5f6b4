//! Listing dead letters page by page and by group; unknown ids.

use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, LogError, NackOutcome, Pattern};

use crate::support::fast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_page_by_id_and_filter_by_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = pulse_sqlite::SqliteLog::open_with(dir.path(), fast())
        .await
        .unwrap();
    log.append((0..6).map(|_| Event::new("a.b")).collect())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for group in ["one", "two"] {
        let mut config = GroupConfig::new(Pattern::parse("a.>").unwrap());
        config.max_deliver = 1;
        log.ensure_group(group, config).await.unwrap();
        for d in log.fetch(group, 3).await.unwrap() {
            let NackOutcome::DeadLettered(id) = log
                .nack(group, d.event.offset, Duration::ZERO, "no")
                .await
                .unwrap()
            else {
                panic!("max_deliver 1 dead-letters");
            };
            ids.push((group, id, d.event.offset));
        }
    }
    let all = log.dead_letters(None, 0, 100).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let page = log.dead_letters(None, all[1].id, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|l| l.id).collect::<Vec<_>>(),
        [all[2].id, all[3].id]
    );
    let two = log.dead_letters(Some("two"), 0, 100).await.unwrap();
    assert_eq!(two.len(), 3);
    assert!(two.iter().all(|l| l.group == "two"));
    assert!(matches!(
        log.redrive(9999).await,
        Err(LogError::UnknownDeadLetter(9999))
    ));
}
