//! One pull request to a JetStream consumer, answered in full.
//!
//! async-nats's `fetch` turns some statuses into errors and cannot tell "no such
//! consumer" from other failures; Pulse needs both: an exhausted consumer (404, 408) or
//! one at its `max_ack_pending` (409) simply yields fewer messages, a missing one (503,
//! no responders) is an unknown group.

use std::time::Duration;

use async_nats::{Message, StatusCode};
use futures::StreamExt;
use pulse_core::LogError;
use serde_json::json;

use crate::error::classify;
use crate::shared::Shared;

/// Why a pull failed.
#[derive(Debug)]
pub(crate) enum PullError {
    /// The consumer does not exist.
    NoConsumer,
    /// Anything else.
    Log(LogError),
}

impl From<LogError> for PullError {
    fn from(err: LogError) -> Self {
        Self::Log(err)
    }
}

/// The delivery count, stream sequence and pending count from a JetStream reply subject
/// (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`, or the form
/// with domain and account hash in front).
pub(crate) fn ack_info(reply: &str) -> Option<(u32, u64, u64)> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let base = match tokens.len() {
        7 => 2,
        n if n >= 9 => 4,
        _ => return None,
    };
    let delivered = tokens[base].parse().ok()?;
    let sseq = tokens[base + 1].parse().ok()?;
    let pending = tokens[base + 4].parse().ok()?;
    Some((delivered, sseq, pending))
}

/// The consumer a message was delivered by, from its JetStream reply subject.
pub(crate) fn ack_consumer(reply: &str) -> Option<&str> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let tokens: Vec<&str> = rest.split('.').collect();
    match tokens.len() {
        7 => Some(tokens[1]),
        n if n >= 9 => Some(tokens[3]),
        _ => None,
    }
}

/// Asks `consumer` of `stream` for up to `batch` messages: what is there now when `wait`
/// is `None`, else waiting up to `wait` for at least one.
pub(crate) async fn pull(
    shared: &Shared,
    stream: &str,
    consumer: &str,
    batch: usize,
    wait: Option<Duration>,
) -> Result<Vec<Message>, PullError> {
    let client = &shared.client;
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| classify(client, "cannot pull", e))?;
    let body = match wait {
        None => json!({"batch": batch, "no_wait": true}),
        Some(wait) => json!({"batch": batch, "expires": wait.as_nanos() as u64}),
    };
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            body.to_string().into(),
        )
        .await
        .map_err(|e| classify(client, "cannot pull", e))?;
    let deadline =
        tokio::time::Instant::now() + wait.unwrap_or_default() + shared.options.request_timeout;
    let mut messages = Vec::new();
    while messages.len() < batch {
        let next = match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_) if messages.is_empty() => {
                return Err(PullError::Log(classify(
                    client,
                    "cannot pull",
                    "no answer to a pull request: timed out",
                )))
            }
            Err(_) => break,
        };
        match next.status {
            None | Some(StatusCode::OK) => messages.push(next),
            Some(StatusCode::IDLE_HEARTBEAT) => {}
            Some(StatusCode::NOT_FOUND | StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                break
            }
            Some(StatusCode::NO_RESPONDERS) => return Err(PullError::NoConsumer),
            Some(status) => {
                return Err(PullError::Log(LogError::Storage(format!(
                    "pull from {stream}/{consumer} failed: {status} {}",
                    next.description.unwrap_or_default()
                ))))
            }
        }
    }
    // Dropping the subscription unsubscribes; a no-wait request is over by now.
    let _ = sub.unsubscribe().await;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_of_both_forms_parse() {
        assert_eq!(
            ack_info("$JS.ACK.S.C.3.41.77.1700000000000000000.5"),
            Some((3, 41, 5))
        );
        assert_eq!(
            ack_info("$JS.ACK.dom.hash.S.C.1.2.3.1700000000000000000.0.tok"),
            Some((1, 2, 0))
        );
        assert_eq!(ack_info("$JS.ACK.S.C.x.1.2.3.4"), None);
        assert_eq!(
            ack_consumer("$JS.ACK.S.g~3.3.41.77.1700000000000000000.5"),
            Some("g~3")
        );
        assert_eq!(
            ack_consumer("$JS.ACK.dom.hash.S.g~u.1.2.3.1700000000000000000.0.tok"),
            Some("g~u")
        );
        assert_eq!(ack_info("_INBOX.abc"), None);
    }
}
