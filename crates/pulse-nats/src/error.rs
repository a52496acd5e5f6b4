//! Maps client errors onto [`LogError`]: whatever happens while the connection is down,
//! a timed-out request, or a request nobody answered (JetStream not reachable) is
//! `Unavailable` — retrying may succeed; anything the server rejected is `Storage`.

use std::fmt::Display;

use async_nats::connection::State;
use async_nats::Client;
use pulse_core::LogError;

/// Phrases of async-nats errors that mean "no answer", whatever the error type.
const TRANSIENT: [&str; 6] = [
    "timed out",
    "timeout",
    "no responders",
    "broken pipe",
    "disconnected",
    "connection",
];

/// Classifies the error `err` of `what` on `client`'s connection.
pub(crate) fn classify(client: &Client, what: &str, err: impl Display) -> LogError {
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    if client.connection_state() != State::Connected {
        return LogError::Unavailable(format!("{what}: not connected to NATS ({text})"));
    }
    if TRANSIENT.iter().any(|p| lower.contains(p)) {
        LogError::Unavailable(format!("{what}: {text}"))
    } else {
        LogError::Storage(format!("{what}: {text}"))
    }
}

/// `Unavailable` at once while the connection is down, so callers fail fast instead of
/// waiting for a request timeout.
pub(crate) fn ensure_connected(client: &Client) -> Result<(), LogError> {
    match client.connection_state() {
        State::Connected => Ok(()),
        state => Err(LogError::Unavailable(format!(
            "not connected to NATS (connection {state:?})"
        ))),
    }
}
