//! [`run_log`]: a scheduled job over the event log. It reads the events matching the
//! job's pattern after its checkpoint (the offset of the last event consumed) and commits
//! aggregates and checkpoint together in an [`AggregateStore`] (a SQLite file, PostgreSQL
//! or NATS), so after a crash the next run — on this instance or another — resumes
//! exactly after what was committed: never twice, never skipping.

use std::sync::Arc;
use std::time::Instant;

use pulse_core::{EventLog, Pattern, ReadQuery};

use super::Summary;
use crate::aggregator::{Aggregator, Counts};
use crate::error::BatchError;
use crate::rejects::RejectLog;
use crate::source::log::aggregate_event;
use crate::store::{log_source_id, AggregateStore};
use crate::table::{AggTable, Merged};
use crate::window::WindowSet;

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

    /// The checkpoint key in a store keyed by input ([`log_source_id`]).
    pub fn source_id(&self) -> String {
        log_source_id(&self.name)
    }
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
    Ok(super::finish(summary, started))
}
