//! Integration tests of `pulse serve`'s HTTP API: a real server on a free loopback port,
//! real clients (reqwest, tokio-tungstenite, an SSE reader).

mod admin;
mod auth;
mod connections;
mod edge;
mod events;
mod groups;
mod jobs;
mod restart;
mod stream;
mod support;
mod tls;
mod webhooks;
mod ws;
