//! The aggregates of scheduled jobs on PostgreSQL, shared by instances: the
//! `AggregateStore` checks of `pulse_batch::contract` — a commit is a
//! compare-and-set on the job's checkpoint, jobs keep their own rows, queries read them.

use std::sync::Arc;

use pulse_batch::contract;

use crate::support::{self, Schema};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_commit_from_the_same_checkpoint_changes_nothing() {
    let Some(url) = support::url("a_second_commit_from_the_same_checkpoint_changes_nothing") else {
        return;
    };
    let schema = Schema::new(url, "aggcas");
    let (a, b) = (schema.open().await, schema.open().await);
    contract::commits_are_compare_and_set(Arc::new(a), Arc::new(b), "rollup").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_their_own_rows_and_queries_select_by_window_start() {
    let Some(url) = support::url("jobs_keep_their_own_rows_and_queries_select_by_window_start")
    else {
        return;
    };
    let schema = Schema::new(url, "aggjobs");
    contract::jobs_keep_their_own_rows_and_queries_select_by_window_start(&schema.open().await)
        .await;
}
