//! Pulse's event log on PostgreSQL, for several Pulse instances sharing one log.
//!
//! [`PostgresLog`] implements [`pulse_core::EventLog`] with every piece of state in one
//! schema of one database, so that instances behind a load balancer act as one bus:
//!
//! - **appends** are gap-free and visible in offset order: append transactions are
//!   serialized by an advisory lock and batched per instance (group commit); see
//!   the `append` module for why a reader can never skip a late commit;
//! - **TLS** follows libpq's `sslmode` and `sslrootcert` ([`tls`]);
//! - **wake-ups** cross instances with `LISTEN/NOTIFY` (the `listen` module);
//! - **consumer groups** are rows: one group spread over several instances hands each
//!   event to one of them, keeps one event per subject in flight, and hands a dead
//!   instance's work to the others ([`group`]);
//! - **dead letters** keep the error and attempts and can be redriven;
//! - **retention** deletes events past `max_events`, `max_age` or `max_bytes` in small
//!   steps, one instance at a time, never reusing an offset (the `retention` module);
//! - **jobs** get a once-per-tick lease and a checkpoint store ([`jobs`]);
//! - **aggregation** reads readings from a table by binary COPY ([`batch`]);
//!   the aggregates of scheduled jobs are shared by every instance, merged in the
//!   transaction that moves the job's checkpoint by compare-and-set
//!   ([`aggregates`]).
//!
//! Migrations are numbered `.sql` files applied under an advisory lock when connecting.

pub mod aggregates;
mod append;
pub mod batch;
mod codec;
mod dead_letter;
mod error;
pub mod group;
mod instance;
pub mod jobs;
mod listen;
mod log;
pub mod metrics;
mod options;
mod retention;
mod schema;
mod shared;
pub mod tls;

pub use log::PostgresLog;
pub use options::PostgresOptions;
