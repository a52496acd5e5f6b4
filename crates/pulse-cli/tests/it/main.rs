//! Integration tests of the `pulse` binary, one module per command.

mod aggregate_cli;
mod aggregate_postgres;
mod job_metrics;
mod log_cmd;
mod nats_instances;
mod postgres_instances;
mod postgres_retention;
mod serve;
mod shared_jobs;
mod sqlite_retention;
mod support;
