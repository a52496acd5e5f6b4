//! [`PostgresLog`]: the handle one Pulse instance holds on a log shared through
//! PostgreSQL, and its [`EventLog`] implementation.
//!
//! All state lives in the database (events, group positions, per-event delivery state,
//! dead letters), so any number of handles (instances) on the same schema act as one log.
//! The handle owns up to four background tasks, stopped by [`PostgresLog::close`] or when
//! its last clone is dropped: the group-commit writer ([`crate::append`]), the LISTEN
//! connection ([`crate::listen`]), the heartbeat that tells other instances this one is
//! alive ([`crate::instance`]) and, when a limit is set, retention ([`crate::retention`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use pulse_core::{
    Appended, DeadLetter, Delivery, Event, EventLog, GroupConfig, GroupInfo, LogError, NackOutcome,
    Pattern, ReadQuery, StoredEvent,
};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

use crate::append::{AppendRequest, Writer};
use crate::codec::{pattern_regex, stored_event, to_sql_offset, EVENT_COLUMNS};
use crate::error::{self, DbResult};
use crate::listen::Listener;
use crate::retention::Pruner;
use crate::shared::Shared;
use crate::{schema, PostgresOptions};

/// How often a waiting fetch looks again without being woken, to notice what other
/// instances settled.
const RECHECK: Duration = Duration::from_millis(250);

/// Append calls queued for the writer task before `append` waits (backpressure).
const APPEND_QUEUE: usize = 1024;

/// A Pulse instance's handle on an event log in PostgreSQL. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), pulse_core::LogError> {
/// use pulse_core::{Event, EventLog};
/// use pulse_postgres::{PostgresLog, PostgresOptions};
/// let log = PostgresLog::connect(
///     "postgres://postgres@127.0.0.1:5432/postgres",
///     PostgresOptions::new("pulse"),
/// )
/// .await?;
/// log.append(vec![Event::new("health.reading.heart_rate")]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresLog {
    pub(crate) shared: Arc<Shared>,
}

impl PostgresLog {
    /// Connects to the database at `url` (a `postgres://` URL or key=value string),
    /// creates and migrates the schema if needed, and starts the background tasks.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, LogError> {
        // No password of the URL reaches an error, however the library words it.
        Self::open(url, options)
            .await
            .map_err(|e| pulse_core::redact::scrub_error(e, url))
    }

    async fn open(url: &str, options: PostgresOptions) -> Result<Self, LogError> {
        options.validate()?;
        let instance = options
            .instance
            .clone()
            .unwrap_or_else(|| format!("pulse-{:016x}", fastrand::u64(..)));
        let (config, tls) = connection_config(url, &options, &instance)?;
        let (mut client, connection) = config.connect(tls.clone()).await.db()?;
        let driver = tokio::spawn(connection);
        let migrated = schema::migrate(&mut client, &options.schema).await;
        drop(client);
        let _ = driver.await;
        migrated?;

        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| LogError::Storage(format!("cannot build the connection pool: {e}")))?;

        let last = {
            let client = pool.get().await.map_err(error::pool)?;
            crate::instance::register_instance(&client, &instance, options.instance.is_some())
                .await?;
            crate::retention::last_offset(&client).await?
        };

        let tail = Arc::new(watch::Sender::new(last));
        let stop = CancellationToken::new();
        let channel = format!("pulse_appends_{}", options.schema);
        let (appender, requests) = mpsc::channel(APPEND_QUEUE);
        let writer = Writer {
            pool: pool.clone(),
            tail: Arc::clone(&tail),
            lock_key: schema::lock_key("append", &options.schema),
            channel: channel.clone(),
            max_batch: options.max_batch,
        };
        tokio::spawn(writer.run(requests));
        let listener = Listener {
            config,
            tls,
            channel,
            tail: Arc::clone(&tail),
            stop: stop.clone(),
        };
        tokio::spawn(listener.run());
        tokio::spawn(crate::instance::heartbeat(
            pool.clone(),
            instance.clone(),
            options.heartbeat,
            stop.clone(),
        ));
        let pruner = Pruner::new(pool.clone(), &options);
        if pruner.is_limited() {
            tokio::spawn(pruner.clone().run(options.prune_interval, stop.clone()));
        }
        tracing::info!(schema = %options.schema, %instance, last, "postgres event log connected");
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                instance,
                tail,
                appender,
                settled: Notify::new(),
                retention_key: crate::retention::retention_key(&options.schema),
                pruner,
                options,
                _stop_on_drop: stop.clone().drop_guard(),
                stop,
            }),
        })
    }

    /// This instance's name among the instances sharing the log.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// The schema holding the log.
    pub fn schema(&self) -> &str {
        &self.shared.options.schema
    }

    /// Applies the retention limits of this instance's options now, as its background
    /// task does every `prune_interval`: deletes events in steps until none is left to
    /// delete, and returns how many it deleted. Returns 0 at once when no limit is set or
    /// another instance sharing the schema is pruning (its pass covers the same events).
    pub async fn apply_retention(&self) -> Result<u64, LogError> {
        self.shared.pruner.pass().await
    }

    /// Leaves the log cleanly: stops the heartbeat, the retention task and hands this instance's unacknowledged
    /// deliveries to the other instances at once instead of after the instance timeout.
    pub async fn close(&self) -> Result<(), LogError> {
        self.shared.stop.cancel();
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        crate::instance::deregister_instance(&client, &self.shared.instance).await
    }
}

fn connection_config(
    url: &str,
    options: &PostgresOptions,
    instance: &str,
) -> Result<(Config, crate::tls::Tls), LogError> {
    let (mut config, tls) = crate::tls::connection(url).map_err(LogError::Incompatible)?;
    // Every statement uses unqualified names: the schema is the search path.
    config.options(format!("-c search_path={}", options.schema));
    // Operators (and the outage tests) can tell instances apart in pg_stat_activity.
    config.application_name(format!("pulse:{instance}"));
    config.connect_timeout(options.connect_timeout);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    Ok((config, tls))
}

const READ: &str = "SELECT {cols} FROM events \
    WHERE \"offset\" > $1 AND ($2::text IS NULL OR type ~ $2) \
    AND ($3::timestamptz IS NULL OR time >= $3) \
    ORDER BY \"offset\" LIMIT $4";

#[async_trait]
impl EventLog for PostgresLog {
    async fn append(&self, mut events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        pulse_core::log::validate_batch(&events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        for event in &mut events {
            event.time.get_or_insert(now);
        }
        let (reply, result) = oneshot::channel();
        self.shared
            .appender
            .send(AppendRequest { events, reply })
            .await
            .map_err(|_| LogError::Closed)?;
        result.await.map_err(|_| LogError::Closed)?
    }

    async fn read(&self, query: ReadQuery) -> Result<Vec<StoredEvent>, LogError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        let statement = client
            .prepare_cached(&READ.replace("{cols}", EVENT_COLUMNS))
            .await
            .db()?;
        let regex = query.pattern.as_ref().map(pattern_regex);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &statement,
                &[&to_sql_offset(query.after), &regex, &query.since, &limit],
            )
            .await
            .db()?;
        let events = rows
            .iter()
            .map(|row| stored_event(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        // The SQL filters are exact; this only guards against a mismatch between the two.
        Ok(events.into_iter().filter(|s| query.accepts(s)).collect())
    }

    async fn last_offset(&self) -> Result<u64, LogError> {
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        let last = crate::retention::last_offset(&client).await?;
        crate::listen::advance(&self.shared.tail, last);
        Ok(last)
    }

    fn watch_appends(&self) -> watch::Receiver<u64> {
        self.shared.tail.subscribe()
    }

    async fn ensure_group(&self, name: &str, config: GroupConfig) -> Result<GroupInfo, LogError> {
        self.shared.ensure_group(name, config).await
    }

    async fn set_group_pattern(&self, name: &str, pattern: Pattern) -> Result<GroupInfo, LogError> {
        self.shared.set_group_pattern(name, &pattern).await
    }

    async fn fetch(&self, group: &str, max: usize) -> Result<Vec<Delivery>, LogError> {
        Ok(self.shared.fetch(group, max).await?.0)
    }

    /// Waits for appends (from any instance, through LISTEN/NOTIFY), for this instance's
    /// acks and nacks (which may unblock a subject), and for the next row falling due by
    /// time; other instances' acks are noticed by a recheck every `RECHECK` (250 ms), so an idle
    /// consumer costs a few queries a second, not a tight poll.
    async fn fetch_wait(
        &self,
        group: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, LogError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut appends = self.watch_appends();
        loop {
            appends.borrow_and_update();
            let settled = self.shared.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let (batch, next_due) = self.shared.fetch(group, max).await?;
            let now = tokio::time::Instant::now();
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            let wait = (deadline - now)
                .min(RECHECK)
                .min(next_due.unwrap_or(RECHECK));
            tokio::select! {
                _ = appends.changed() => {}
                () = &mut settled => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(), LogError> {
        self.shared.ack(group, offsets).await?;
        self.shared.settled.notify_waiters();
        Ok(())
    }

    async fn nack(
        &self,
        group: &str,
        offset: u64,
        delay: Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError> {
        let outcome = self.shared.nack(group, offset, delay, error).await?;
        self.shared.settled.notify_waiters();
        Ok(outcome)
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, LogError> {
        self.shared.group_infos(None).await
    }

    async fn dead_letters(
        &self,
        group: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, LogError> {
        self.shared.dead_letters(group, after_id, limit).await
    }

    async fn redrive(&self, id: u64) -> Result<(), LogError> {
        self.shared.redrive(id).await
    }

    async fn flush(&self) -> Result<(), LogError> {
        // Every group operation commits its own transaction: nothing is held back.
        Ok(())
    }
}
