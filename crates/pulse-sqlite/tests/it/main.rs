//! Integration tests of the SQLite event log: the shared contract suite, crash safety
//! with a real process, and the behaviour specific to storing on disk; and of the SQLite
//! side of pulse-batch (`batch`).

mod batch;
mod contract;
mod crash;
mod dead_letters;
mod files;
mod groups;
mod replay;
mod retention;
mod retention_bytes;
mod support;
