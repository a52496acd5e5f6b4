//! Running a handler on one event: a panic is caught and becomes a failed attempt like an
//! error, and a live subscription's failures are retried in place by its
//! [`RetryPolicy`] up to `max_attempts`.
//!
//! In-place retries happen in the subscription lane that holds the event, so the events
//! queued behind it (which may share its subject) wait: per-subject order survives a
//! failure. The backoff sleeps on tokio time, so tests drive it with paused time. A group
//! subscription makes one [`attempt`] per delivery and leaves the retry to the log.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::handler::Handler;
use super::retry::RetryPolicy;
use crate::event::Event;

/// How the delivery of one event ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Handled successfully after `attempts` attempts.
    Handled { attempts: u32 },
    /// Every attempt failed; `error` is the last error text.
    Failed { attempts: u32, error: String },
    /// The subscription went away while the event waited for a retry.
    Cancelled { attempts: u32 },
}

/// Runs `handler` once on `event`; a failure (an error or a panic) is returned as its text.
pub(crate) async fn attempt<H: Handler>(handler: &H, event: &Arc<Event>) -> Result<(), String> {
    match AssertUnwindSafe(handler.handle(Arc::clone(event)))
        .catch_unwind()
        .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(panic) => Err(format!("handler panicked: {}", panic_message(&*panic))),
    }
}

/// Runs `handler` on `event` until it succeeds, `policy.max_attempts` is reached, or
/// `cancel` fires during a backoff.
pub(crate) async fn deliver<H: Handler>(
    handler: &H,
    event: &Arc<Event>,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let Err(error) = attempt(handler, event).await else {
            return Outcome::Handled { attempts };
        };
        tracing::debug!(attempt = attempts, ty = %event.ty, id = %event.id, %error, "handler failed");
        if attempts >= policy.max_attempts {
            return Outcome::Failed { attempts, error };
        }
        tokio::select! {
            () = tokio::time::sleep(policy.backoff_with_jitter(attempts)) => {}
            () = cancel.cancelled() => return Outcome::Cancelled { attempts },
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or with a format string).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted() {
        let literal: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_message(&*literal), "boom");
        let formatted: Box<dyn Any + Send> = Box::new(format!("code {}", 7));
        assert_eq!(panic_message(&*formatted), "code 7");
        let other: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(&*other), "(non-string panic payload)");
    }
}
