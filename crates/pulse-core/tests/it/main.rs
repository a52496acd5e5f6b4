//! Integration tests of pulse-core, one binary.

mod memory_log;
