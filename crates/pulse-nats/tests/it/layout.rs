//! The stream's layout: its partitions are fixed at creation, and a stream in another
//! layout is refused rather than mixed with.

use async_nats::jetstream::{self, stream};
use pulse_core::LogError;
use pulse_nats::NatsLog;

use crate::support::{self, Prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_must_agree_on_the_partitions() {
    let Some(url) = support::url("instances_must_agree_on_the_partitions") else {
        return;
    };
    let prefix = Prefix::new(url.clone(), "parts");
    let _first = prefix.open().await;
    let mut other = prefix.options.clone();
    other.partitions = 8;
    let err = NatsLog::connect(&url, other).await.unwrap_err();
    assert!(matches!(err, LogError::Incompatible(_)), "{err}");
    let _same = prefix.open().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_the_unpartitioned_layout_is_refused() {
    let Some(url) = support::url("a_stream_of_the_unpartitioned_layout_is_refused") else {
        return;
    };
    let prefix = Prefix::new(url.clone(), "oldlayout");
    let names = prefix.options.names();
    let client = async_nats::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    // What an earlier Pulse made: every event type right under the prefix.
    jetstream::new(client)
        .create_stream(stream::Config {
            name: names.stream.clone(),
            subjects: vec![format!("{}.>", names.events_subject_prefix)],
            description: Some("Pulse event log".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = NatsLog::connect(&url, prefix.options.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Incompatible(_)), "{err}");
}
