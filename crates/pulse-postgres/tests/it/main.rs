//! Integration tests of the PostgreSQL event log against a real server
//! (`PULSE_TEST_POSTGRES_URL`); each test works in a schema of its own.

mod aggregates;
mod batch;
mod contract;
mod instances;
mod jobs;
mod notify;
mod ordering;
mod outage;
mod retention;
mod retention_bytes;
mod support;
mod tls;
