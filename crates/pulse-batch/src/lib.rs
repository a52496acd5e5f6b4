//! Incremental windowed aggregation of health readings.
//!
//! Raw readings (`user_id, metric, value, unit, recorded_at`) are validated against the
//! metric [`catalog`], converted to the canonical unit, and aggregated per
//! (user, metric, window, window start) into a mergeable [`state::AggState`]: count, sum,
//! min, max, Welford mean and M2, a relative-error quantile [`sketch`] and the first and
//! last reading time. Because states merge exactly, the same operation serves parallel
//! workers, late data and incremental runs that resume from a checkpoint committed with
//! the aggregates in one SQLite transaction — or, for scheduled jobs shared by several
//! Pulse instances, in an [`store::AggregateStore`] on PostgreSQL or NATS.
//!
//! ```
//! use pulse_batch::{aggregator::Aggregator, rejects::{Position, RejectLog}, table::AggTable};
//! use pulse_batch::reading::{RawReading, RawValue};
//! use pulse_batch::window::WindowSet;
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

pub mod aggregator;
pub mod catalog;
pub mod error;
pub mod failpoint;
pub mod metrics;
pub mod progress;
pub mod reading;
pub mod rejects;
pub mod row;
pub mod runner;
pub mod sink;
pub mod sketch;
pub mod source;
pub mod state;
pub mod store;
#[cfg(feature = "synth")]
pub mod synth;
pub mod table;
pub mod time;
pub mod window;

pub use error::BatchError;
pub use runner::{run, run_log, Job, LogJob, Summary};
