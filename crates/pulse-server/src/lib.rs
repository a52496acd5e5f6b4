//! Pulse's HTTP server: the CloudEvents API over the [`EventLog`](pulse_core::EventLog),
//! streaming subscriptions (SSE, WebSocket with acks), webhooks, dead letters,
//! Prometheus metrics and API keys with per-pattern rights.
//!
//! This crate owns HTTP and nothing else: the log comes in as an `Arc<dyn EventLog>`,
//! the CLI (`pulse serve`) picks the backend and the configuration file. The contract
//! with clients is `docs`' HTTP API description, and `openapi.json` served at
//! `/openapi.json`.
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

pub mod aggregates;
pub mod auth;
pub mod codec;
pub mod config;
mod connection;
pub mod error;
pub mod jobs;
mod listen;
pub mod live;
pub mod metrics;
mod middleware;
mod request_line;
mod routes;
mod server;
pub mod shutdown;
pub mod state;
pub mod storage;
mod subscribe;
pub mod webhook;

pub use config::{Config, ConfigError};
pub use error::ApiError;
pub use listen::Listen;
pub use server::{Server, ServerError, ServerOptions};
