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
//!   `<prefix>.*.>`; an event of type `health.reading` and subject `user-1` is published
//!   to `<prefix>.<p>.health.reading`, where `p` is the subject's partition
//!   (`fnv1a(subject) % NatsOptions::partitions`, 16 by default); an event without a
//!   subject goes to `<prefix>.u.health.reading`. Pulse's type grammar is NATS's subject
//!   token grammar and its patterns (`*`, `>`) are NATS wildcards, so a pattern maps to
//!   the filter `<prefix>.*.<pattern>` (one partition: `<prefix>.<p>.<pattern>`). The
//!   event's type is read from the payload, never from the subject. The stream records
//!   its number of partitions (in its description) when it is created; an instance
//!   configured with another number, or a stream of an earlier Pulse with the subjects
//!   `<prefix>.>`, is refused with `LogError::Incompatible` (see `partition.rs`).
//! - **Offset** = the stream sequence. **Dedup**: `Nats-Msg-Id` = the event id, within
//!   the stream's duplicate window (configurable, two minutes by default), and beyond it
//!   with the optional id index (see `append.rs`).
//! - **Payload**: the event in a compact envelope with every attribute (see `codec.rs`).
//! - **Consumer groups**: per group, one durable pull consumer per partition
//!   (`<group>~<p>`) and one for events without a subject (`<group>~u`), with explicit,
//!   confirmed acks, naks with delay, `max_deliver`, backoff and `ack_wait`; committed =
//!   the offset before the first event any of them has not acknowledged.
//! - **Dead letters**: a stream of their own, fed by `nack` and by JetStream's
//!   max-deliveries advisory; redrive through a per-group redrive consumer.
//! - **Jobs**: KV buckets for once-per-tick leases and checkpoints; aggregation jobs keep
//!   their aggregates and checkpoint in a KV bucket shared by every instance, committed
//!   by compare-and-set with a write-ahead intent (see `aggregates.rs`).
//!
//! # Ordering per subject, across instances
//! Within a group, events with the same `subject` are handled one at a time in offset
//! order, whichever instances share the group — kept by JetStream itself, with no
//! protocol between instances. Every event of a subject is in the subject's partition,
//! and a partition's consumer has `max_ack_pending = 1`: the server hands out its next
//! event only once the previous one is acknowledged or terminated (dead-lettered), to
//! whichever instance asks. A nacked event blocks its partition until it is redelivered
//! and handled; an event held by an instance that dies blocks it until the liveness
//! window has passed and another instance gets it. Different partitions run
//! concurrently, so a group handles at most `partitions` events with a subject at a time
//! (plus up to `max_ack_pending` without one, which have no order to keep); subjects
//! that share a partition wait for each other — a stronger order than Pulse promises,
//! and the price of an exact one: raise `partitions` (when creating the stream) for more
//! concurrency. No instance keeps a per-subject gate of its own (an earlier Pulse did):
//! the server already lets nothing out of order, so there is nothing left for it to do.
//!
//! Each instance pulls with one request per consumer at a time, all answered to one
//! inbox of the group (see `feed.rs`); an idle group costs one waiting request per
//! consumer and no polling.
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
mod redriven;
mod shared;

pub use log::NatsLog;
pub use options::{Names, NatsOptions, MAX_PARTITIONS};

/// Deletes every JetStream resource of the log named by `options` (streams and KV
/// buckets), for tests and for operators retiring a log. Missing ones are skipped.
pub async fn delete_log(url: &str, options: &NatsOptions) -> Result<(), pulse_core::LogError> {
    let client =
        options.client().connect(url).await.map_err(|e| {
            pulse_core::LogError::Unavailable(format!("cannot connect to NATS: {e}"))
        })?;
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
