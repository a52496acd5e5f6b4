//! Where the scheduler reads the wall-clock time from.
//!
//! Schedules are wall-clock (`DateTime<Utc>`) but tokio's timers are monotonic. In production
//! the [`SystemClock`] is read and the scheduler re-reads it after every sleep (sleeps are
//! capped, so a clock step is noticed within a minute). Tests use a [`TokioClock`], a wall clock
//! that advances with tokio's (paused) time, so `tokio::time::advance` moves both together, and
//! whose [`jump`](TokioClock::jump) and [`jump_back`](TokioClock::jump_back) simulate a
//! suspended process or an NTP step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::time::Instant;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's clock (`Utc::now()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that starts at a given time and advances with tokio's clock, so paused-time
/// tests (`tokio::time::advance`, auto-advance) drive schedules deterministically.
#[derive(Debug)]
pub struct TokioClock {
    start_wall: DateTime<Utc>,
    start: Instant,
    jumped: Mutex<chrono::Duration>,
}

impl TokioClock {
    /// A clock reading `wall` now (at tokio's current instant).
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Self {
            start_wall: wall,
            start: Instant::now(),
            jumped: Mutex::new(chrono::Duration::zero()),
        }
    }

    /// Moves the wall clock forward by `by` without tokio time passing: to the scheduler it looks
    /// as if the process had been suspended (or the system clock stepped) for that long.
    pub fn jump(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut jumped = self.jumped.lock();
        *jumped = jumped.checked_add(&by).unwrap_or(chrono::Duration::MAX);
    }

    /// Moves the wall clock back by `by` without tokio time passing, as an NTP step back would.
    pub fn jump_back(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut jumped = self.jumped.lock();
        *jumped = jumped.checked_sub(&by).unwrap_or(chrono::Duration::MIN);
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::Duration::MAX);
        let jumped = *self.jumped.lock();
        self.start_wall
            .checked_add_signed(elapsed)
            .and_then(|t| t.checked_add_signed(jumped))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time_and_jumps() {
        let start: DateTime<Utc> = "2026-03-08T06:00:00Z".parse().unwrap();
        let clock = TokioClock::starting_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
        clock.jump(Duration::from_secs(3600));
        assert_eq!(clock.now(), start + chrono::Duration::seconds(3690));
        clock.jump_back(Duration::from_secs(7200));
        assert_eq!(clock.now(), start - chrono::Duration::seconds(3510));
    }
}
