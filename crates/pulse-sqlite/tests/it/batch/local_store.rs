//! The per-job SQLite stores of one instance pass the `AggregateStore` checks every store
//! passes (`pulse_batch::contract`).

use std::sync::Arc;

use pulse_batch::contract;
use pulse_sqlite::LocalStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_commit_from_the_same_checkpoint_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (LocalStore::new(dir.path()), LocalStore::new(dir.path()));
    contract::commits_are_compare_and_set(Arc::new(a), Arc::new(b), "rollup").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_their_own_rows_and_queries_select_by_window_start() {
    let dir = tempfile::tempdir().unwrap();
    contract::jobs_keep_their_own_rows_and_queries_select_by_window_start(&LocalStore::new(
        dir.path(),
    ))
    .await;
}
