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
//! 2. under the lock it reads `max(offset)` (with a snapshot taken after the lock was
//!    granted) and numbers its events densely after it;
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
//! instances, each one's queue fills while another holds the lock. The whole transaction
//! is one call of the `pulse_append` SQL function (migration 0004, redefined by 0006 and
//! 0008, which also record the stored time and add to the bytes total), sent as a single
//! autocommitted statement, so the lock is never held across a client round trip: it is
//! held for the server's work and the commit's flush only.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
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

/// The append function of migrations 0004, 0006 and 0008.
const APPEND: &str = "SELECT previous, existing FROM pulse_append($1, $2, $3::text[], $4::text[], \
    $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[], $11::jsonb[])";

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
        // Repeated ids within the batch are resolved here: the server gets each id once.
        let mut columns = Columns::default();
        let mut positions: HashMap<&str, usize> = HashMap::new();
        for event in batch.iter().flat_map(|r| &r.events) {
            if let Entry::Vacant(slot) = positions.entry(event.id.as_str()) {
                slot.insert(columns.ids.len());
                columns.push(event);
            }
        }
        let client = self.pool.get().await.map_err(error::pool)?;
        let append = client.prepare_cached(APPEND).await.db()?;
        // One statement outside an explicit transaction: it commits on its own, so the
        // append lock is released by the commit of this very round trip.
        let row = client
            .query_one(
                &append,
                &[
                    &self.lock_key,
                    &self.channel,
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
        let previous: i64 = row.get(0);
        // NULL when every event was new.
        let existing: Vec<Option<i64>> = row
            .get::<_, Option<Vec<Option<i64>>>>(1)
            .unwrap_or_else(|| vec![None; columns.ids.len()]);
        if existing.len() != columns.ids.len() {
            return Err(LogError::Storage(format!(
                "append returned {} results for {} events",
                existing.len(),
                columns.ids.len()
            )));
        }
        // New events got previous + 1, previous + 2, ... in input order.
        let mut last = previous;
        let offsets: Vec<(i64, bool)> = existing
            .iter()
            .map(|stored| match stored {
                Some(offset) => (*offset, true),
                None => {
                    last += 1;
                    (last, false)
                }
            })
            .collect();
        let mut first_seen = HashSet::with_capacity(offsets.len());
        let mut results = Vec::with_capacity(batch.len());
        for request in batch {
            let mut appended = Vec::with_capacity(request.events.len());
            for event in &request.events {
                let position = positions.get(event.id.as_str()).copied().unwrap_or(0);
                let (offset, stored_before) = offsets.get(position).copied().unwrap_or((0, true));
                let first = first_seen.insert(position);
                appended.push(Appended {
                    offset: to_offset(offset),
                    duplicate: stored_before || !first,
                });
            }
            results.push(appended);
        }
        Ok((results, to_offset(last.max(previous))))
    }
}

/// The batch, column by column, for one `unnest`.
#[derive(Default)]
struct Columns<'a> {
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
    fn push(&mut self, event: &'a Event) {
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
