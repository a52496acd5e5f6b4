//! Delivering one event to a handler: panics caught, failures retried with exponential
//! backoff and jitter, up to `max_attempts`.
//!
//! Retries happen in place, in the subscription lane that holds the event, so the events
//! queued behind it (which may share its subject) wait: per-subject order survives a
//! failure. The backoff sleeps on tokio time, so tests drive it with paused time.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::handler::Handler;
use crate::Event;

/// How a subscription retries a failed event before dead-lettering it.
///
/// The delay after the `n`-th failed attempt is
/// `min(initial_backoff × multiplierⁿ⁻¹, max_backoff)`, then multiplied by a random
/// factor in `[1 − jitter, 1 + jitter]` and capped at `max_backoff` again.
///
/// ```
/// use std::time::Duration;
/// use pulse_core::bus::RetryPolicy;
/// let policy = RetryPolicy {
///     max_attempts: 4,
///     initial_backoff: Duration::from_millis(100),
///     max_backoff: Duration::from_secs(1),
///     multiplier: 2.0,
///     jitter: 0.0,
/// };
/// assert_eq!(policy.backoff(1), Duration::from_millis(100));
/// assert_eq!(policy.backoff(3), Duration::from_millis(400));
/// assert_eq!(policy.backoff(9), Duration::from_secs(1));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1; 1 means no retry).
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub initial_backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
    /// Growth factor of the delay from one failure to the next (at least 1).
    pub multiplier: f64,
    /// Relative randomness of each delay, from 0 (none) to 1.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 3 attempts, 100 ms then 200 ms (±20 %), at most 10 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry: a failure is dead-lettered at once.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Checks the values, saying which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("retry max_attempts must be at least 1".to_owned());
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "retry multiplier must be a finite number of at least 1, got {}",
                self.multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "retry jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err("retry initial_backoff must not exceed max_backoff".to_owned());
        }
        Ok(())
    }

    /// The delay before retrying after the `failures`-th failed attempt (from 1), without
    /// jitter.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let max = self.max_backoff.as_secs_f64();
        // `min` also turns an overflow to infinity into the cap.
        Duration::from_secs_f64(secs.min(max))
    }

    /// The delay before retrying after the `failures`-th failed attempt, with jitter.
    pub fn backoff_with_jitter(&self, failures: u32) -> Duration {
        let base = self.backoff(failures).as_secs_f64();
        let factor = 1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0);
        Duration::from_secs_f64((base * factor).clamp(0.0, self.max_backoff.as_secs_f64()))
    }
}

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
        let error = match AssertUnwindSafe(handler.handle(Arc::clone(event)))
            .catch_unwind()
            .await
        {
            Ok(Ok(())) => return Outcome::Handled { attempts },
            Ok(Err(err)) => err.to_string(),
            Err(panic) => format!("handler panicked: {}", panic_message(&*panic)),
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
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            multiplier: 3.0,
            jitter: 0.5,
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(10));
        assert_eq!(policy.backoff(2), Duration::from_millis(30));
        assert_eq!(policy.backoff(3), Duration::from_millis(90));
        assert_eq!(policy.backoff(4), Duration::from_millis(100));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(100));
        for failures in 1..6 {
            for _ in 0..100 {
                let d = policy.backoff_with_jitter(failures).as_secs_f64();
                let base = policy.backoff(failures).as_secs_f64();
                assert!(d >= base * 0.5 - 1e-9 && d <= (base * 1.5).min(0.1) + 1e-9);
            }
        }
    }

    #[test]
    fn bad_policies_are_rejected() {
        let ok = RetryPolicy::default();
        ok.validate().unwrap();
        for bad in [
            RetryPolicy {
                max_attempts: 0,
                ..ok.clone()
            },
            RetryPolicy {
                multiplier: 0.5,
                ..ok.clone()
            },
            RetryPolicy {
                multiplier: f64::NAN,
                ..ok.clone()
            },
            RetryPolicy {
                jitter: 1.5,
                ..ok.clone()
            },
            RetryPolicy {
                initial_backoff: Duration::from_secs(20),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

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
