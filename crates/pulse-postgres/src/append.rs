//! Appends: one writer task per instance batching concurrent calls into one transaction
//! (group commit), and one advisory lock serializing the transactions of all instances.
//!
//! # The sequence-versus-commit-order gap
//!
//! With offsets from a sequence, transaction A can take offset 10, transaction B offset
//! 11, and B commit first: a reader that sees 11 and moves its position past it never sees
//! 10. Pulse avoids this by never letting two append transactions overlap:
//!
//! 1. every append transaction first takes `pg_advisory_xact_lock(append key of the
//!    schema)`, held until it commits or rolls back;
//! 2. under the lock it reads `max(offset)` and numbers its events densely after it;
//! 3. PostgreSQL makes a committed transaction visible (ProcArray) *before* it releases
//!    its locks, so the next writer takes the lock only after the previous rows are
//!    visible to everyone, and commits after them.
//!
//! Hence offsets become visible in offset order: any snapshot that sees offset `n` sees
//! every offset below `n`, and a reader can page by "after the last offset I saw" without
//! ever skipping a late commit. Offsets are dense (no holes from rollbacks, as a sequence
//! would leave), which the log's contract needs.
//!
//! The price is one append transaction at a time per schema. Group commit pays it back:
//! each instance's writer task takes everything queued while the previous transaction
//! ran (up to `max_batch` events) and writes it with one multi-row insert, so the lock
//! and the commit's fsync are paid once per batch, not once per event; with several
//! instances, each one's queue fills while another holds the lock.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use pulse_core::{Appended, Event, LogError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::codec::{extensions_json, to_offset};
use crate::error::{self, DbResult};
use crate::listen::advance;

/// One `append` call waiting for the writer task.
pub(crate) struct AppendRequest {
    /// Validated events with `time` set.
    pub(crate) events: Vec<Event>,
    /// Where the result goes.
    pub(crate) reply: oneshot::Sender<Result<Vec<Appended>, LogError>>,
}

/// What the writer task needs.
pub(crate) struct Writer {
    pub(crate) pool: Pool,
    pub(crate) tail: Arc<watch::Sender<u64>>,
    pub(crate) lock_key: i64,
    pub(crate) channel: String,
    pub(crate) max_batch: usize,
}

const INSERT: &str = "INSERT INTO events \
    (\"offset\", id, source, type, subject, time, datacontenttype, dataschema, data, extensions) \
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
    $6::timestamptz[], $7::text[], $8::text[], $9::bytea[], $10::jsonb[])";

impl Writer {
    /// Runs until every sender is dropped.
    pub(crate) async fn run(self, mut requests: mpsc::Receiver<AppendRequest>) {
        while let Some(first) = requests.recv().await {
            let mut count = first.events.len();
            let mut batch = vec![first];
            while count < self.max_batch {
                match requests.try_recv() {
                    Ok(next) => {
                        count += next.events.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            match self.commit(&batch).await {
                Ok((results, last)) => {
                    metrics::histogram!(crate::metrics::APPEND_BATCH_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!(crate::metrics::APPENDED_EVENTS_TOTAL).increment(
                        results.iter().flatten().filter(|a| !a.duplicate).count() as u64,
                    );
                    advance(&self.tail, last);
                    for (request, result) in batch.into_iter().zip(results) {
                        let _ = request.reply.send(Ok(result));
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, events = count, "postgres append failed");
                    for request in batch {
                        let _ = request.reply.send(Err(error::duplicate(&err)));
                    }
                }
            }
        }
    }

    /// Writes every request of the batch in one transaction; returns each request's
    /// results and the last offset of the log.
    async fn commit(&self, batch: &[AppendRequest]) -> Result<(Vec<Vec<Appended>>, u64), LogError> {
        let mut client = self.pool.get().await.map_err(error::pool)?;
        let tx = client.transaction().await.db()?;
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await
            .db()?;
        tx.execute(&lock, &[&self.lock_key]).await.db()?;
        let max = tx
            .prepare_cached("SELECT coalesce(max(\"offset\"), 0) FROM events")
            .await
            .db()?;
        let mut last: i64 = tx.query_one(&max, &[]).await.db()?.get(0);

        let ids: Vec<&str> = batch
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.id.as_str()))
            .collect();
        let existing = tx
            .prepare_cached("SELECT id, \"offset\" FROM events WHERE id = ANY($1)")
            .await
            .db()?;
        let mut known: HashMap<String, i64> = tx
            .query(&existing, &[&ids])
            .await
            .db()?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();

        let mut columns = Columns::default();
        let mut results = Vec::with_capacity(batch.len());
        for request in batch {
            let mut appended = Vec::with_capacity(request.events.len());
            for event in &request.events {
                if let Some(&offset) = known.get(&event.id) {
                    appended.push(Appended {
                        offset: to_offset(offset),
                        duplicate: true,
                    });
                    continue;
                }
                last += 1;
                known.insert(event.id.clone(), last);
                columns.push(last, event);
                appended.push(Appended {
                    offset: to_offset(last),
                    duplicate: false,
                });
            }
            results.push(appended);
        }
        if !columns.offsets.is_empty() {
            let insert = tx.prepare_cached(INSERT).await.db()?;
            tx.execute(
                &insert,
                &[
                    &columns.offsets,
                    &columns.ids,
                    &columns.sources,
                    &columns.types,
                    &columns.subjects,
                    &columns.times,
                    &columns.content_types,
                    &columns.schemas,
                    &columns.data,
                    &columns.extensions,
                ],
            )
            .await
            .db()?;
            let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await.db()?;
            tx.execute(&notify, &[&self.channel, &last.to_string()])
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok((results, to_offset(last)))
    }
}

/// The batch's new rows, column by column, for one `unnest` insert.
#[derive(Default)]
struct Columns<'a> {
    offsets: Vec<i64>,
    ids: Vec<&'a str>,
    sources: Vec<&'a str>,
    types: Vec<&'a str>,
    subjects: Vec<Option<&'a str>>,
    times: Vec<DateTime<Utc>>,
    content_types: Vec<Option<&'a str>>,
    schemas: Vec<Option<&'a str>>,
    data: Vec<Option<&'a [u8]>>,
    extensions: Vec<Option<serde_json::Value>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, offset: i64, event: &'a Event) {
        self.offsets.push(offset);
        self.ids.push(&event.id);
        self.sources.push(&event.source);
        self.types.push(&event.ty);
        self.subjects.push(event.subject.as_deref());
        // `append` sets every missing time before queueing the event.
        self.times.push(event.time.unwrap_or_else(Utc::now));
        self.content_types.push(event.datacontenttype.as_deref());
        self.schemas.push(event.dataschema.as_deref());
        self.data.push(event.data.as_deref());
        self.extensions.push(extensions_json(event));
    }
}
