//! [`RetryPolicy`]: the one model of retry, backoff and dead-lettering in Pulse, whatever
//! the consumer.
//!
//! - A live subscription of the bus retries in place, in the lane that holds the event,
//!   sleeping [`RetryPolicy::backoff_with_jitter`] between attempts, and hands the event
//!   to its in-memory dead letters after `max_attempts`.
//! - A group subscription of the bus, and a webhook of the server, are consumers of a
//!   log's consumer group: `max_attempts` is the group's `max_deliver`, and a failed
//!   delivery is nacked with [`RetryPolicy::backoff_with_jitter`] of its attempt as the
//!   redelivery delay, so the log redelivers it (to this or another instance) and
//!   dead-letters it after the last attempt.
//!
//! The delays are either an exponential curve or a fixed list (the server's
//! `backoff_ms`), both with optional jitter, so that every consumer is configured the same
//! way and computes its delays in one place.

use std::time::Duration;

/// How a failed event is retried before it is dead-lettered.
///
/// The delay after the `n`-th failed attempt is `delays[n − 1]` when `delays` is given (the
/// last one repeating), otherwise `min(initial_backoff × multiplierⁿ⁻¹, max_backoff)`; it
/// is then multiplied by a random factor in `[1 − jitter, 1 + jitter]` and capped at
/// `max_backoff` again.
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
///     ..RetryPolicy::default()
/// };
/// assert_eq!(policy.backoff(1), Duration::from_millis(100));
/// assert_eq!(policy.backoff(3), Duration::from_millis(400));
/// assert_eq!(policy.backoff(9), Duration::from_secs(1));
///
/// let listed = RetryPolicy::with_delays(3, vec![Duration::from_secs(1), Duration::from_secs(5)]);
/// assert_eq!(listed.backoff(1), Duration::from_secs(1));
/// assert_eq!(listed.backoff(7), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1; 1 means no retry). For a
    /// consumer group this is its `max_deliver`.
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub initial_backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
    /// Growth factor of the delay from one failure to the next (at least 1).
    pub multiplier: f64,
    /// Relative randomness of each delay, from 0 (none) to 1.
    pub jitter: f64,
    /// Fixed delays after the first, second, ... failure, the last one repeating. When
    /// given (the default is none), they replace the exponential curve.
    pub delays: Vec<Duration>,
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
            delays: Vec::new(),
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

    /// `max_attempts` attempts with exactly these delays between them (the last one
    /// repeating) and no jitter: the server's `backoff_ms`.
    pub fn with_delays(max_attempts: u32, delays: Vec<Duration>) -> Self {
        let first = delays.first().copied().unwrap_or_default();
        let longest = delays.iter().copied().max().unwrap_or_default();
        Self {
            max_attempts,
            initial_backoff: first,
            max_backoff: longest,
            multiplier: 1.0,
            jitter: 0.0,
            delays,
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
        if self.delays.iter().any(|d| *d > self.max_backoff) {
            return Err("retry delays must not exceed max_backoff".to_owned());
        }
        Ok(())
    }

    /// The delay before retrying after the `failures`-th failed attempt (from 1), without
    /// jitter.
    pub fn backoff(&self, failures: u32) -> Duration {
        if let Some(last) = self.delays.last() {
            let i = usize::try_from(failures.max(1) - 1).unwrap_or(usize::MAX);
            return (*self.delays.get(i).unwrap_or(last)).min(self.max_backoff);
        }
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let max = self.max_backoff.as_secs_f64();
        // `min` also turns an overflow to infinity into the cap.
        Duration::from_secs_f64(secs.min(max))
    }

    /// The delay before retrying after the `failures`-th failed attempt, with jitter.
    pub fn backoff_with_jitter(&self, failures: u32) -> Duration {
        let base = self.backoff(failures);
        if self.jitter == 0.0 {
            return base;
        }
        let factor = 1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0);
        Duration::from_secs_f64(
            (base.as_secs_f64() * factor).clamp(0.0, self.max_backoff.as_secs_f64()),
        )
    }
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
            delays: Vec::new(),
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
    fn listed_delays_are_taken_in_turn_and_the_last_repeats() {
        let ms = Duration::from_millis;
        let policy = RetryPolicy::with_delays(5, vec![ms(1_000), ms(5_000), ms(30_000)]);
        policy.validate().unwrap();
        let delays: Vec<Duration> = (1..=5).map(|n| policy.backoff_with_jitter(n)).collect();
        assert_eq!(
            delays,
            [ms(1_000), ms(5_000), ms(30_000), ms(30_000), ms(30_000)]
        );
        assert_eq!(policy.backoff(0), ms(1_000));
        let jittered = RetryPolicy {
            jitter: 0.5,
            ..policy.clone()
        };
        for _ in 0..100 {
            let d = jittered.backoff_with_jitter(2);
            assert!(d >= ms(2_500) && d <= ms(7_500), "{d:?}");
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
            RetryPolicy {
                delays: vec![Duration::from_secs(60)],
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
