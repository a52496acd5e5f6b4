//! The generic `EventLog` contract on NATS JetStream, plus resuming after a reopen.

use crate::support::{self, Prefix};

pulse_core::event_log_contract!(async { support::contract_log().await });

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_reopen() {
    let Some(url) = support::url("resumes_after_reopen") else {
        return;
    };
    let prefix = Prefix::new(url, "reopen");
    pulse_core::contract::resumes_after_reopen(|| prefix.open()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_survive_reopen() {
    let Some(url) = support::url("attempts_survive_reopen") else {
        return;
    };
    let prefix = Prefix::new(url, "attempts");
    pulse_core::contract::attempts_survive_reopen(|| prefix.open()).await;
}
