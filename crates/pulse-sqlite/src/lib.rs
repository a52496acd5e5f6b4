//! The embedded default Pulse event log, on SQLite.
//!
//! [`SqliteLog`] implements [`pulse_core::EventLog`] in one file (`<data-dir>/pulse.db`,
//! WAL mode). Its shape follows from the durability promise, "stored before `append`
//! returns", at high rates:
//!
//! - **one writer thread with group commit** (module `writer`): all appends waiting when
//!   a transaction starts share it and its one fsync, so throughput grows with load
//!   instead of being capped by the disk's fsync rate;
//! - **readers on their own connections** (module `reader`) on tokio's blocking pool, so
//!   reads never wait for the writer and SQLite never runs on a runtime worker;
//! - **consumer groups** (module `groups`) reuse pulse-core's `GroupState` and persist
//!   only what must survive a crash: committed offsets (in batches) and dead letters;
//! - **retention** (module `retention`) deletes old events in small steps between
//!   commits, by age, count or stored bytes (sizes and their total: module `size`);
//! - **versioned schema** (module `schema`): a file that is not a Pulse log, is corrupt,
//!   or comes from a newer Pulse is refused and never modified.
//!
//! Beside the log, the SQLite side of pulse-batch (which links no database): readings
//! tables and the state store of `pulse aggregate` ([`batch`]), and the per-job
//! aggregate stores of `pulse serve`'s jobs on one instance ([`LocalStore`]).

mod aggregates;
mod attempts;
pub mod batch;
mod checkpoint;
mod codec;
mod dead_letter;
mod error;
mod group;
mod log;
pub mod metrics;
mod options;
mod reader;
mod retention;
mod schema;
mod shared;
mod size;
mod stats;
mod writer;

pub use aggregates::LocalStore;
pub use log::{SqliteLog, DEFAULT_FILE_NAME};
pub use options::{FsyncPolicy, Retention, SqliteOptions};
pub use schema::{PULSE_APPLICATION_ID, SCHEMA_VERSION};
pub use stats::LogStats;
