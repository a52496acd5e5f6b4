//! Incremental windowed aggregation of health readings — the maths, the store traits and
//! the one runner, linking no database.
//!
//! Raw readings (`user_id, metric, value, unit, recorded_at`) are validated against the
//! metric catalog ([`Metric`]), converted to the canonical unit, and aggregated per
//! (user, metric, window, window start) into a mergeable [`AggState`]: count, sum, min,
//! max, Welford mean and M2, a relative-error quantile [`sketch`] and the first and last
//! reading time. Because states merge exactly, the same operation serves parallel
//! workers, late data and incremental runs that resume from a checkpoint committed with
//! the aggregates.
//!
//! Layout, one seam per part:
//!
//! | part | items |
//! |---|---|
//! | readings and the catalog | [`RawReading`], [`validate`], [`RejectReason`], [`Metric`], [`RejectLog`] |
//! | windows and time | [`WindowSet`], [`time`] |
//! | aggregate state | [`AggState`], [`Stats`], [`sketch`], [`AggTable`], [`Merged`], [`Aggregator`] |
//! | sources | [`Input`] (CSV and JSONL files here), [`TableSource`], [`aggregate_event`] (the event log) |
//! | sinks | [`Output`] (JSONL and CSV files here), [`Row`] |
//! | stores (traits only) | [`AggregateStore`] for `pulse serve`'s jobs, [`StateStore`] and [`Databases`] for `pulse aggregate`, one checkpoint shape [`Cursor`] |
//! | the one runner | [`run`] (`pulse aggregate`), [`run_log`] (`pulse serve` jobs), [`Summary`], the `pulse_batch_*` [`metrics`] both record |
//!
//! The stores live in the backend crates, each depending on this one: SQLite (the state
//! store, SQLite tables as sources, the per-job stores of one instance) in `pulse-sqlite`,
//! PostgreSQL and NATS JetStream KV in theirs — so no backend links a database it does
//! not use. Features: `synth` (synthetic readings for `pulse gen`), `contract` (the
//! checks every [`AggregateStore`] passes), `failpoints` (crash injection for tests).
//!
//! ```
//! use pulse_batch::{AggTable, Aggregator, Position, RawReading, RawValue, RejectLog, WindowSet};
//! use std::sync::Arc;
//!
//! let windows = Arc::new(WindowSet::parse("5m", "UTC").unwrap());
//! let rejects = RejectLog::none();
//! let mut agg = Aggregator::new(AggTable::new(windows), &rejects);
//! for (value, at) in [("70", "2025-01-01T00:01:00Z"), ("80", "2025-01-01T00:02:00Z")] {
//!     let raw = RawReading {
//!         user_id: Some(b"u1"),
//!         metric: Some(b"heart_rate"),
//!         value: Some(RawValue::Text(value.as_bytes())),
//!         unit: Some(b"bpm"),
//!         recorded_at: Some(at.as_bytes()),
//!         source: None,
//!     };
//!     agg.push(&raw, Position::Byte(0), String::new).unwrap();
//! }
//! let mut rows = Vec::new();
//! agg.table.for_each_sorted(|row, _| { rows.push(row.stats); Ok::<_, ()>(()) }).unwrap();
//! assert_eq!(rows[0].count, 2);
//! assert_eq!(rows[0].avg, 75.0);
//! ```

mod aggregator;
mod catalog;
mod error;
pub mod failpoint;
pub mod metrics;
mod progress;
mod reading;
mod rejects;
mod row;
mod runner;
mod sink;
pub mod sketch;
mod source;
mod state;
mod store;
#[cfg(feature = "synth")]
pub mod synth;
mod table;
pub mod time;
mod window;

#[cfg(feature = "contract")]
pub use store::contract;

pub use aggregator::{Aggregator, Counts};
pub use catalog::{Conversion, Kind as MetricKind, Metric, GLUCOSE_MG_DL_PER_MMOL_L};
pub use error::BatchError;
pub use progress::Progress;
pub use reading::{
    validate, validate_user_id, RawReading, RawValue, Reading, RejectReason, Rejection,
    MAX_USER_ID_LEN,
};
pub use rejects::{Position, RejectLog};
pub use row::{Row, COLUMNS};
pub use runner::{run, run_log, Job, LogJob, Summary};
pub use sink::Output;
pub use source::log::aggregate_event;
pub use source::{
    validate_table_name, ExternalTable, FileFormat, FilePosition, Input, TableSource,
};
pub use state::{AggState, Stats};
pub use store::{
    log_source_id, parse_offset, AggregateQuery, AggregateStore, Checkpoint, Commit, Cursor,
    Databases, StateStore, StoredRow,
};
pub use table::{AggTable, Merged, MAX_USERS};
pub use window::{Window, WindowKind, WindowSet, MAX_WINDOWS};

/// One CSV or JSONL file, or a byte range of it, aggregated the way the runner does for file
/// inputs: for callers that hold the file themselves (the fuzz targets split a file at a line
/// end, as an incremental run resumes).
pub mod file {
    pub use crate::source::file::{aggregate, last_line_end, FileJob};
}
