//! Integration tests of pulse-scheduler, all on tokio's paused clock: virtual time advances
//! only when every task waits, so tick times, lateness and run lengths are exact and nothing
//! sleeps on the wall clock.

mod cron_dst;
mod history;
mod interval;
mod jitter;
mod lease;
mod metrics;
mod misfire;
mod overlap;
mod shutdown;
mod support;
mod trigger;
