//! Pulse's HTTP server: the CloudEvents API over the [`EventLog`](pulse_core::EventLog),
//! streaming subscriptions (SSE, WebSocket with acks), webhooks, dead letters,
//! Prometheus metrics and API keys with per-pattern rights.
//!
//! This crate owns HTTP: the log comes in as an `Arc<dyn EventLog>`, the CLI
//! (`pulse serve`) picks the backend and the configuration file. The one database it
//! links is pulse-sqlite, for the per-job aggregate stores of an instance ([`jobs`]).
//! The contract with clients is `openapi.json`, served at `/openapi.json`.
//!
//! Only what other crates use is public: [`Server`] and its [`Config`], [`codec`] (for
//! the fuzz targets), [`jobs`] (shared between instances), [`metrics::install`] and
//! [`shutdown::signal`]; the rest is implementation.
//!
//! ```no_run
//! # async fn demo(log: std::sync::Arc<dyn pulse_core::EventLog>) -> Result<(), pulse_server::ServerError> {
//! use pulse_server::{Config, Server, ServerOptions};
//! let options = ServerOptions {
//!     listen: "127.0.0.1:7400".parse().unwrap(),
//!     data_dir: None,
//!     shared_jobs: None,
//! };
//! let server = Server::bind(Config::default(), log, options).await?;
//! server.run(pulse_server::shutdown::signal()).await
//! # }
//! ```

mod aggregates;
mod auth;
pub mod codec;
pub mod config;
mod connection;
mod error;
pub mod jobs;
mod listen;
mod live;
pub mod metrics;
mod middleware;
mod request_line;
mod routes;
mod server;
pub mod shutdown;
mod state;
mod storage;
mod subscribe;
mod webhook;

pub use config::{Config, ConfigError};
pub use error::ApiError;
pub use listen::{check_host_port, Listen};
pub use server::{Server, ServerError, ServerOptions};
