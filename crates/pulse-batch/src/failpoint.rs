//! Crash injection for tests of what survives a crash.
//!
//! When the environment variable `PULSE_BATCH_FAILPOINT` names a failpoint, reaching it
//! aborts the process on the spot — no unwinding, no destructors, no flushing — which is
//! what a `kill -9` or a power cut at that instant would leave. Integration tests run the
//! real `pulse` binary with it set; normal runs pay one environment lookup per commit.

/// The environment variable naming the failpoint to crash at.
pub const ENV: &str = "PULSE_BATCH_FAILPOINT";

/// Aborts the process if `name` is the configured failpoint.
pub fn hit(name: &str) {
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        tracing::error!(failpoint = name, "crashing on purpose");
        std::process::abort();
    }
}
