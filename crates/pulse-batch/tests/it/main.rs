//! Integration tests of pulse-batch: aggregate math against a naive reference, windows
//! and time zones, rejections. Incremental runs, crashes and the event-log source need a
//! state store: they are pulse-sqlite's (`tests/it/batch`).

mod common;
mod properties;
mod rejections;
mod time_zones;
