//! Integration tests of pulse-batch: aggregate math against a naive reference, windows
//! and time zones, rejections, incremental runs, crashes and the event-log source.

mod common;
mod incremental;
mod local_store;
mod log_source;
mod properties;
mod rejections;
mod time_zones;
