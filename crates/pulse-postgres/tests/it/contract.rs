//! The generic `EventLog` contract on PostgreSQL, plus resuming after a reopen.

use crate::support::{self, Schema};

pulse_core::event_log_contract!(async { support::contract_log().await });

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_reopen() {
    let Some(url) = support::url("resumes_after_reopen") else {
        return;
    };
    let schema = Schema::new(url, "reopen");
    // A restarted instance keeps its name, and so takes back its unacknowledged work.
    let mut options = schema.options();
    options.instance = Some("node-1".into());
    pulse_core::contract::resumes_after_reopen(|| schema.open_with(options.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_survive_reopen() {
    let Some(url) = support::url("attempts_survive_reopen") else {
        return;
    };
    let schema = Schema::new(url, "attempts");
    let mut options = schema.options();
    options.instance = Some("node-1".into());
    pulse_core::contract::attempts_survive_reopen(|| schema.open_with(options.clone())).await;
}
