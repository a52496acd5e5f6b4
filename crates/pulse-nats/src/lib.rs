//! Pulse's event log on NATS JetStream, for several Pulse instances sharing one NATS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pulse_core::LogError> {
//! use pulse_core::{Event, EventLog, GroupConfig, Pattern};
//! use pulse_nats::{NatsLog, NatsOptions};
//!
//! let log = NatsLog::connect("nats://127.0.0.1:4222", NatsOptions::new("pulse")).await?;
//! log.append(vec![Event::new("health.reading.hr").with_subject("user-1")]).await?;
//! let pattern = Pattern::parse("health.>").expect("a valid pattern");
//! log.ensure_group("rollups", GroupConfig::new(pattern)).await?;
//! for delivery in log.fetch("rollups", 100).await? {
//!     log.ack("rollups", &[delivery.event.offset]).await?;
//! }
//! log.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Mapping
//! - **Stream**: one per configured prefix (`NatsOptions::prefix`), holding the subjects
//!   `<prefix>.>`; an event of type `health.reading` is published to
//!   `<prefix>.health.reading`. Pulse's type grammar is NATS's subject token grammar and
//!   its patterns (`*`, `>`) are NATS wildcards, so filters map one to one.
//! - **Offset** = the stream sequence. **Dedup**: `Nats-Msg-Id` = the event id, within
//!   the stream's duplicate window (configurable, two minutes by default), and beyond it
//!   with the optional id index (see [`append`](crate::append)).
//! - **Payload**: the event in the CloudEvents JSON format, with every attribute.
//! - **Consumer groups**: durable pull consumers with explicit, confirmed acks, naks with
//!   delay, `max_deliver`, backoff and `ack_wait`; committed = the ack floor.
//! - **Dead letters**: a stream of their own, fed by `nack` and by JetStream's
//!   max-deliveries advisory; redrive through a per-group redrive consumer.
//! - **Jobs**: KV buckets for once-per-tick leases and checkpoints; aggregation jobs keep
//!   their aggregates and checkpoint in a KV bucket shared by every instance, committed
//!   by compare-and-set with a write-ahead intent (see `aggregates.rs`).
//!
//! # Ordering per subject, and what is guaranteed across instances
//! Within a group, Pulse hands out an event only when no earlier event of the same
//! `subject` is unacknowledged. JetStream has no notion of that key, so each instance
//! runs a gate in front of the consumer (see `gate.rs`): exact for the events that one
//! instance fetched. Across instances JetStream still gives each event to one member at a
//! time, and redelivers what is not acknowledged — at-least-once holds everywhere — but
//! two instances may each hold events of the same subject and handle them concurrently.
//! Deployments that need strict per-subject order across instances run one consuming
//! instance per group (the others publish), or keep a subject's events on one instance.
//!
//! # Connection loss
//! The client reconnects by itself. Meanwhile every operation fails fast with
//! `LogError::Unavailable`; a publish whose ack was lost may still have been stored, and
//! appending it again is deduplicated by its id.

mod aggregates;
mod append;
mod codec;
mod dead_letter;
mod error;
mod event_log;
mod feed;
mod group;
mod jobs;
mod log;
pub mod metrics;
mod options;
mod partition;
mod pull;
mod read;

pub use log::NatsLog;
pub use options::{Names, NatsOptions, MAX_PARTITIONS};

/// Deletes every JetStream resource of the log named by `options` (streams and KV
/// buckets), for tests and for operators retiring a log. Missing ones are skipped.
pub async fn delete_log(url: &str, options: &NatsOptions) -> Result<(), pulse_core::LogError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(options.connect_timeout)
        .connect(url)
        .await
        .map_err(|e| pulse_core::LogError::Unavailable(format!("cannot connect to NATS: {e}")))?;
    let js = async_nats::jetstream::new(client);
    let names = options.names();
    for stream in [&names.stream, &names.dead_stream] {
        let _ = js.delete_stream(stream).await;
    }
    for bucket in [
        &names.ids_bucket,
        &names.leases_bucket,
        &names.checkpoints_bucket,
        &names.aggregates_bucket,
    ] {
        let _ = js.delete_key_value(bucket).await;
    }
    Ok(())
}
