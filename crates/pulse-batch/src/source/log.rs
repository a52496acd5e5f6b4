//! Readings from the Pulse event log: events whose `data` is one reading object or an
//! array of them, selected by a type pattern such as `health.reading.>`.
//!
//! A reading without `user_id` takes the event's `subject`, one without `recorded_at`
//! the event's `time`. The checkpoint is the offset of the last event read; it commits in
//! the state store's transaction together with the aggregates, so after a crash the next
//! run resumes exactly after what was committed — never twice, never skipping.

use std::sync::Arc;
use std::time::Instant;

use pulse_core::{EventLog, Pattern, ReadQuery, StoredEvent};

use crate::aggregator::{Aggregator, Counts};
use crate::error::BatchError;
use crate::reading::{RejectReason, Rejection};
use crate::rejects::{Position, RejectLog};
use crate::runner::Summary;
use crate::sink::sqlite::StateStore;
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

    /// The checkpoint key in the store.
    pub fn source_id(&self) -> String {
        format!("log:{}", self.name)
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BatchError> + Send + 'static,
) -> Result<T, BatchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BatchError::Worker(e.to_string()))?
}

/// Aggregates every matching event after the stored checkpoint up to the log's end at
/// the start of the run, committing aggregates and checkpoint together every
/// `commit_every` events. Returns the store for the next run.
pub async fn run_log<L: EventLog + ?Sized>(
    log: &L,
    job: &LogJob,
    store: StateStore,
    rejects: &RejectLog,
) -> Result<(StateStore, Summary), BatchError> {
    let started = Instant::now();
    let source = job.source_id();
    let windows = Arc::clone(&job.windows);
    let (mut store, checkpoint) = {
        let source = source.clone();
        blocking(move || {
            store.check_windows(&windows)?;
            let checkpoint = store.checkpoint(&source)?;
            Ok((store, checkpoint))
        })
        .await?
    };
    let mut after = match checkpoint {
        Some(text) => text.parse::<u64>().map_err(|_| BatchError::State {
            path: store.path().to_owned(),
            reason: format!("checkpoint {text:?} of {source} is not an offset"),
        })?,
        None => 0,
    };
    let end = log.last_offset().await?;
    let mut summary = Summary::default();
    let mut total = Counts::default();
    while after < end {
        let mut agg = Aggregator::new(AggTable::new(Arc::clone(&job.windows)), rejects);
        let mut events = 0usize;
        let mut last = after;
        while events < job.commit_every && last < end {
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
        total.merge(&agg.counts);
        let delta = Merged::new(Arc::clone(&job.windows), vec![agg.table]);
        let (source, position) = (source.clone(), last.to_string());
        let (back, keys) = blocking(move || {
            let keys = store.commit(&delta, &source, &position, false)?;
            Ok((store, keys))
        })
        .await?;
        store = back;
        summary.keys_updated += keys;
        after = last;
    }
    summary.counts = total;
    summary.windows_written = summary.keys_updated;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok((store, summary))
}
