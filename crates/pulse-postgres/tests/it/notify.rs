//! Cross-instance wake-ups through LISTEN/NOTIFY, and the listener's reconnection.

use std::time::Duration;

use pulse_core::{Event, EventLog};

use crate::support::{self, Schema};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_on_one_instance_wake_the_others() {
    let Some(url) = support::url("appends_on_one_instance_wake_the_others") else {
        return;
    };
    let schema = Schema::new(url, "notify");
    let writer = schema.open().await;
    let watcher = schema.open().await;
    let mut watch = watcher.watch_appends();
    writer
        .append(vec![Event::new("a.b"), Event::new("a.b")])
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, watch.wait_for(|&last| last == 2))
        .await
        .expect("the other instance hears of the append")
        .unwrap();

    // Cut every connection of the watching instance, the LISTEN one included: it
    // reconnects, and appends made meanwhile still reach it.
    let admin = schema.admin().await;
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("pulse:{}", watcher.instance())],
        )
        .await
        .unwrap()
        .get(0);
    assert!(cut >= 1, "the watcher had connections to cut");
    writer.append(vec![Event::new("a.b")]).await.unwrap();
    tokio::time::timeout(PATIENCE, watch.wait_for(|&last| last == 3))
        .await
        .expect("the watcher catches up after reconnecting")
        .unwrap();
    writer.append(vec![Event::new("a.b")]).await.unwrap();
    tokio::time::timeout(PATIENCE, watch.wait_for(|&last| last == 4))
        .await
        .expect("and keeps listening")
        .unwrap();
}
