//! Integration tests of the `pulse` binary, one module per command.

mod aggregate_cli;
mod aggregate_postgres;
mod disk_full;
mod job_metrics;
mod log_cmd;
mod metrics;
mod nats_instances;
mod postgres_instances;
mod postgres_retention;
mod serve;
mod serve_secrets;
mod shared_jobs;
mod sqlite_retention;
mod support;
