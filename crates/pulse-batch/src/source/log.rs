//! Readings from the Pulse event log: events whose `data` is one reading object or an
//! array of them, selected by a type pattern such as `health.reading.>`.
//!
//! A reading without `user_id` takes the event's `subject`, one without `recorded_at`
//! the event's `time`. The checkpoint is the offset of the last event read; it commits
//! with the aggregates in an [`AggregateStore`] (a SQLite file, PostgreSQL or NATS), so
//! after a crash the next run — on this instance or another — resumes exactly after
//! what was committed: never twice, never skipping.

use std::sync::Arc;
use std::time::Instant;

use pulse_core::{EventLog, Pattern, ReadQuery, StoredEvent};

use crate::aggregator::{Aggregator, Counts};
use crate::error::BatchError;
use crate::reading::{RejectReason, Rejection};
use crate::rejects::{Position, RejectLog};
use crate::runner::Summary;
use crate::store::AggregateStore;
use crate::table::{AggTable, Merged};
use crate::time::format_rfc3339;
use crate::window::WindowSet;

use super::json::JsonReading;

/// How to read the log.
#[derive(Clone, Debug)]
pub struct LogJob {
    /// Which event types carry readings.
    pub pattern: Pattern,
    /// The windows and time zone.
    pub windows: Arc<WindowSet>,
    /// The checkpoint's name in the store (one per job).
    pub name: String,
    /// Events per read.
    pub page: usize,
    /// Events per transaction (bounds memory and lost work on a crash).
    pub commit_every: usize,
}

impl LogJob {
    /// A job reading `pattern`, 1,000 events a page, committing every 100,000 events.
    pub fn new(name: impl Into<String>, pattern: Pattern, windows: WindowSet) -> Self {
        LogJob {
            pattern,
            windows: Arc::new(windows),
            name: name.into(),
            page: 1_000,
            commit_every: 100_000,
        }
    }

    /// The checkpoint key in a SQLite state store.
    pub fn source_id(&self) -> String {
        source_id(&self.name)
    }
}

/// Aggregates the readings of one stored event.
pub fn aggregate_event(agg: &mut Aggregator<'_>, stored: &StoredEvent) -> Result<(), BatchError> {
    let offset = stored.offset;
    let data: &[u8] = stored.event.data.as_deref().unwrap_or_default();
    let subject = stored.event.subject.as_deref();
    let time = stored
        .event
        .time
        .map(|t| format_rfc3339(t.timestamp_micros()));
    let record = || String::from_utf8_lossy(data).into_owned();
    let malformed = |e: String| {
        Rejection::new(
            RejectReason::MalformedRow,
            format!("event data is not a reading or an array of readings: {e}"),
        )
    };
    if data.trim_ascii_start().starts_with(b"[") {
        // Each element is parsed on its own, so one bad reading rejects only itself.
        match serde_json::from_slice::<Vec<serde_json::Value>>(data) {
            Ok(items) => {
                for (item, value) in items.iter().enumerate() {
                    let at = Position::Event { offset, item };
                    let text = value.to_string();
                    let item_record = || text.clone();
                    match JsonReading::parse(text.as_bytes()) {
                        Ok(reading) => reading.with_raw(subject, time.as_deref(), |raw| {
                            agg.push(raw, at, item_record)
                        })?,
                        Err(e) => agg.reject(at, malformed(e), item_record),
                    }
                }
            }
            Err(e) => agg.reject(
                Position::Event { offset, item: 0 },
                malformed(e.to_string()),
                record,
            ),
        }
        return Ok(());
    }
    let at = Position::Event { offset, item: 0 };
    match JsonReading::parse(data) {
        Ok(reading) => reading.with_raw(subject, time.as_deref(), |raw| agg.push(raw, at, record)),
        Err(e) => {
            agg.reject(at, malformed(e), record);
            Ok(())
        }
    }
}

/// The checkpoint key of log job `job` in a SQLite state store.
pub fn source_id(job: &str) -> String {
    format!("log:{job}")
}

/// Aggregates the matching events after `after` up to `end` into one delta, stopping
/// early after `limit` events; returns the delta, the counts and the offset it reaches.
async fn aggregate_range<L: EventLog + ?Sized>(
    log: &L,
    job: &LogJob,
    after: u64,
    end: u64,
    limit: usize,
    rejects: &RejectLog,
) -> Result<(Merged, Counts, u64), BatchError> {
    let mut agg = Aggregator::new(AggTable::new(Arc::clone(&job.windows)), rejects);
    let mut events = 0usize;
    let mut last = after;
    while events < limit && last < end {
        let page = log
            .read(ReadQuery {
                after: last,
                limit: job.page.max(1),
                pattern: Some(job.pattern.clone()),
                since: None,
            })
            .await?;
        let Some(tail) = page.last() else {
            // Nothing matching up to the end: everything up to `end` is consumed.
            last = end;
            break;
        };
        let tail = tail.offset;
        for stored in page.iter().filter(|s| s.offset <= end) {
            aggregate_event(&mut agg, stored)?;
            events += 1;
        }
        last = tail.min(end);
    }
    rejects.finish()?;
    let counts = agg.counts.clone();
    Ok((
        Merged::new(Arc::clone(&job.windows), vec![agg.table]),
        counts,
        last,
    ))
}

/// Aggregates every matching event after the stored checkpoint up to the log's end at
/// the start of the run, committing aggregates and checkpoint together every
/// `commit_every` events, each commit a compare-and-set from the checkpoint the run read
/// (see [`AggregateStore`]). A commit the store reports as started and not finished
/// ([`Checkpoint::pending`](crate::store::Checkpoint)) is completed first, over exactly
/// its range: the log is immutable, so the same events give the same delta.
pub async fn run_log<L: EventLog + ?Sized>(
    log: &L,
    job: &LogJob,
    store: &dyn AggregateStore,
    rejects: &RejectLog,
) -> Result<Summary, BatchError> {
    let started = Instant::now();
    let checkpoint = store.checkpoint(&job.name, &job.windows).await?;
    let mut after = checkpoint.done;
    let mut summary = Summary::default();
    let mut total = Counts::default();
    if let Some(pending) = checkpoint.pending {
        tracing::warn!(job = %job.name, from = after, to = pending, "completing an interrupted commit");
        let (delta, counts, _) =
            aggregate_range(log, job, after, pending, usize::MAX, rejects).await?;
        summary.keys_updated += store.commit(&job.name, delta, after, pending).await?;
        total.merge(&counts);
        after = pending;
    }
    let end = log.last_offset().await?;
    while after < end {
        let (delta, counts, last) =
            aggregate_range(log, job, after, end, job.commit_every, rejects).await?;
        total.merge(&counts);
        summary.keys_updated += store.commit(&job.name, delta, after, last).await?;
        after = last;
    }
    summary.counts = total;
    summary.windows_written = summary.keys_updated;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
