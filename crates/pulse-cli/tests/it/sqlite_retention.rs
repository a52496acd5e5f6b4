//! `[retention] max_bytes` reaches the embedded SQLite log of `pulse serve`: the stored
//! events shrink to the newest that fit, as `pulse log stats` reports, and `/metrics`
//! shows their stored bytes.

use std::time::Duration;

use pulse_sqlite::{SqliteLog, SqliteOptions};

use crate::support::{publish_numbered, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_max_bytes_to_the_sqlite_log() {
    let server = Server::start("embedded", "[retention]\nmax_bytes = 500\n").await;
    publish_numbered(&server, 0..50).await;
    let reader = SqliteLog::open_with(&server.data_dir(), SqliteOptions::default().read_only())
        .await
        .unwrap();
    // Each event stores about 40 bytes (id, source, type, content type, data): the newest
    // ten or so fit in 500. Pruning runs every second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = reader.stats().await.unwrap();
        if stats.stored_bytes <= 500 {
            assert!((5..=20).contains(&stats.events), "{stats:?}");
            assert_eq!(stats.last_offset, 50, "the newest events are kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not bring the log under 500 bytes: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gauge of stored bytes follows the log's total.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let total = reader.stats().await.unwrap().stored_bytes;
        let shown = server.metric("pulse_sqlite_stored_bytes").await;
        if shown == Some(total as f64) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pulse_sqlite_stored_bytes {shown:?}, stored {total}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !server.log_lines().contains("retention"),
        "{}",
        server.log_lines()
    );
}
