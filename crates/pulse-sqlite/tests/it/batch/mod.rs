//! pulse-batch on SQLite: incremental `pulse aggregate` runs with a SQLite state store
//! and table source, and the event-log jobs of one instance in `LocalStore`.

mod common;
mod incremental;
mod local_store;
mod log_source;
