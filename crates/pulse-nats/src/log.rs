//! [`NatsLog`]: the handle, its connection and the JetStream resources it sets up.
//!
//! One handle is one "instance": several processes (or handles) connected with the same
//! prefix share the log, its groups, dead letters, leases and checkpoints. The handle
//! owns three background tasks, stopped when it is dropped: the append watch (polls the
//! stream's last sequence while someone watches), the keep-alive of fetched events
//! (progress acks within the liveness window) and the dead-letter listener (turns
//! JetStream's max-deliveries advisories into dead letters). Dropping the handle hands
//! its unacknowledged events back for immediate redelivery.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use async_nats::Client;
use parking_lot::Mutex;
use pulse_core::{redact, LogError};
use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;

use crate::error::classify;
use crate::options::{Names, NatsOptions};
use crate::shared::Shared;

/// The Pulse event log on NATS JetStream.
#[derive(Debug)]
pub struct NatsLog {
    pub(crate) shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for NatsLog {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Hand unfinished work back at once rather than after the liveness window; when
        // no runtime is left, the server redelivers it after the window anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { crate::group::release_all(&shared).await });
        }
    }
}

impl NatsLog {
    /// Connects to the server at `url` (for example `nats://127.0.0.1:4222`) and creates
    /// the log's streams when missing. A server that cannot be reached is `Unavailable`;
    /// one without JetStream, or a stream of that name that is not Pulse's, is
    /// `Incompatible`. Once connected, the client reconnects by itself after a loss.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<Self, LogError> {
        // No password or token of the URL reaches an error, however the library words it.
        Self::open(url, options)
            .await
            .map_err(|e| redact::scrub_error(e, url))
    }

    async fn open(url: &str, options: NatsOptions) -> Result<Self, LogError> {
        options.validate()?;
        let client = options
            .client()
            .name("pulse")
            .request_timeout(Some(options.request_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                let exp = attempts.min(5) as u32;
                Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(2))
            })
            .connect(url)
            .await
            .map_err(|e| {
                // Neither the URL's password or token nor a library message quoting it
                // may reach a log line.
                LogError::Unavailable(redact::scrub(
                    &format!("cannot connect to NATS at {}: {e}", redact::redact_url(url)),
                    url,
                ))
            })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .max_ack_inflight(1 << 16)
            .build(client.clone());
        let names = options.names();
        let storage = if options.memory_storage {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        };
        let events = stream::Config {
            name: names.stream.clone(),
            subjects: vec![names.stream_subjects()],
            storage,
            duplicate_window: options.duplicate_window,
            max_age: options.retention.max_age.unwrap_or_default(),
            max_messages: limit(options.retention.max_events),
            max_bytes: limit(options.retention.max_bytes),
            allow_direct: true,
            description: Some(format!(
                "Pulse event log; {PARTITIONS_TAG}{}",
                options.partitions
            )),
            ..Default::default()
        };
        let stream = ensure_stream(&client, &js, events).await?;
        check_layout(&stream.cached_info().config, &names)?;
        let dead = stream::Config {
            name: names.dead_stream.clone(),
            subjects: vec![format!("{}.>", names.dead_prefix)],
            storage,
            duplicate_window: options.duplicate_window,
            description: Some("Pulse dead letters and redrive requests".into()),
            ..Default::default()
        };
        let dead = ensure_stream(&client, &js, dead).await?;
        let ids = if options.id_index {
            Some(ensure_bucket(&client, &js, &names.ids_bucket, Duration::ZERO, storage).await?)
        } else {
            None
        };
        let last = stream.cached_info().state.last_sequence;
        let shared = Arc::new(Shared {
            client,
            js,
            names,
            options,
            stream,
            dead,
            ids,
            leases: OnceCell::new(),
            checkpoints: OnceCell::new(),
            aggregates: OnceCell::new(),
            tail: watch::Sender::new(last),
            send_lock: tokio::sync::Mutex::new(()),
            groups: Mutex::new(HashMap::new()),
            instance: format!("{:08x}", fastrand::u32(..)),
        });
        let tasks = vec![
            tokio::spawn(watch_tail(Arc::downgrade(&shared))),
            tokio::spawn(crate::group::keep_alive(Arc::downgrade(&shared))),
            crate::dead_letter::spawn_advisory_listener(&shared).await?,
        ];
        Ok(Self { shared, tasks })
    }

    /// Hands this instance's unacknowledged events back for immediate redelivery to the
    /// other members and waits until the server has them; the handle stays usable.
    /// Dropping the handle does the same without waiting.
    pub async fn close(&self) {
        crate::group::release_all(&self.shared).await;
    }

    /// The names of the JetStream resources this log uses.
    pub fn names(&self) -> &Names {
        &self.shared.names
    }

    /// The underlying client, for callers that share the connection.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }
}

/// Where the event stream records its number of partitions.
const PARTITIONS_TAG: &str = "partitions=";

/// Refuses an event stream whose partitions differ from this instance's: events of one
/// subject would land in two partitions and lose their order.
fn check_layout(config: &stream::Config, names: &Names) -> Result<(), LogError> {
    let recorded = config
        .description
        .as_deref()
        .and_then(|d| d.split(PARTITIONS_TAG).nth(1))
        .and_then(|n| n.trim().parse::<u32>().ok());
    match recorded {
        Some(n) if n == names.partitions => Ok(()),
        Some(n) => Err(LogError::Incompatible(format!(
            "stream {} was created with {n} partitions, this instance is configured with {}; \
             every instance of a log must use the stream's number of partitions",
            config.name, names.partitions
        ))),
        None => Err(LogError::Incompatible(format!(
            "stream {} does not record its number of partitions; it is not a Pulse event log \
             of this version",
            config.name
        ))),
    }
}

/// Opens the stream of `config`, creating it when missing and updating its duplicate
/// window and retention limits when they differ; a stream of that name with other subjects is not Pulse's.
async fn ensure_stream(
    client: &Client,
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, LogError> {
    let name = config.name.clone();
    match js.get_stream(&name).await {
        Ok(stream) => {
            let existing = &stream.cached_info().config;
            // An event stream of an earlier Pulse: every type right under the prefix.
            let unpartitioned = config
                .subjects
                .first()
                .and_then(|s| s.strip_suffix(".*.>"))
                .map(|prefix| vec![format!("{prefix}.>")]);
            if unpartitioned.as_ref() == Some(&existing.subjects) {
                return Err(LogError::Incompatible(format!(
                    "stream {name} holds events in the unpartitioned layout of an earlier Pulse \
                     (subjects {:?}); this version stores them per partition ({:?}) so that \
                     several instances keep the order per subject; delete the stream (its \
                     events are not carried over) or use another prefix",
                    existing.subjects, config.subjects
                )));
            }
            if existing.subjects != config.subjects {
                return Err(LogError::Incompatible(format!(
                    "stream {name} exists with subjects {:?}, not {:?}",
                    existing.subjects, config.subjects
                )));
            }
            // The server reports "no limit" as -1 where a request may say 0.
            let unlimited = |max: i64| if max <= 0 { -1 } else { max };
            let limits = |c: &stream::Config| {
                (
                    c.duplicate_window,
                    c.max_age,
                    unlimited(c.max_messages),
                    unlimited(c.max_bytes),
                )
            };
            if limits(existing) != limits(&config) {
                let mut updated = existing.clone();
                updated.duplicate_window = config.duplicate_window;
                updated.max_age = config.max_age;
                updated.max_messages = config.max_messages;
                updated.max_bytes = config.max_bytes;
                js.update_stream(updated)
                    .await
                    .map_err(|e| classify(client, "cannot update the stream", e))?;
            }
            Ok(stream)
        }
        Err(e) if stream_missing(&e) => js
            .create_stream(config)
            .await
            .map_err(|e| classify(client, "cannot create the stream", e)),
        Err(e) => Err(classify(client, "cannot open the stream", e)),
    }
}

/// A retention limit as JetStream takes it: -1 for none.
fn limit(max: Option<u64>) -> i64 {
    max.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn stream_missing(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Opens (or creates) the KV bucket `name` whose entries live `max_age` (zero: forever).
pub(crate) async fn ensure_bucket(
    client: &Client,
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    storage: stream::StorageType,
) -> Result<kv::Store, LogError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // The bucket's stream as async-nats's `create_key_value` would make it; made here
    // because that call first asks for account details whose shape changed after
    // server 2.9.
    let config = stream::Config {
        name: format!("KV_{name}"),
        description: Some("Pulse KV bucket".into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(_) => {}
        // Another instance made it first.
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::CreateStreamErrorKind::JetStream(_)
            ) => {}
        Err(e) => return Err(classify(client, "cannot create a KV bucket", e)),
    }
    js.get_key_value(name)
        .await
        .map_err(|e| classify(client, "cannot open a KV bucket", e))
}

/// Keeps the append watch current with appends of other instances: polls the stream's
/// last sequence while anyone watches, until the log is dropped.
async fn watch_tail(shared: Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let interval = shared.options.watch_interval;
        if shared.tail.receiver_count() > 0 {
            if let Ok(info) = shared.stream.get_info().await {
                let last = info.state.last_sequence;
                shared.tail.send_if_modified(|current| {
                    let newer = last > *current;
                    if newer {
                        *current = last;
                    }
                    newer
                });
            }
        }
        drop(shared);
        tokio::time::sleep(interval).await;
    }
}
