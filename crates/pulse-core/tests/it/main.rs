//! Integration tests of pulse-core, one binary.

mod bus_backpressure;
mod bus_group;
mod bus_lifecycle;
mod bus_metrics;
mod bus_ordering;
mod bus_persistence;
mod bus_retry;
mod bus_support;
mod memory_log;
