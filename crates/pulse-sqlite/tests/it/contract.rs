//! The generic EventLog contract suite on SQLite, with fsync as in production.

use pulse_sqlite::SqliteLog;

pulse_core::event_log_contract!(async {
    let dir = tempfile::tempdir().unwrap();
    (SqliteLog::open(dir.path()).await.unwrap(), dir)
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    pulse_core::contract::resumes_after_reopen(|| {
        let path = path.clone();
        async move { SqliteLog::open(&path).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    pulse_core::contract::attempts_survive_reopen(|| {
        let path = path.clone();
        async move { SqliteLog::open(&path).await.unwrap() }
    })
    .await;
}
