//! Crash injection for tests of what survives a crash.
//!
//! With the `failpoints` feature, when the environment variable `PULSE_BATCH_FAILPOINT`
//! names a failpoint, reaching it aborts the process on the spot — no unwinding, no
//! destructors, no flushing — which is what a `kill -9` or a power cut at that instant
//! would leave. Integration tests run the real `pulse` binary with it set (the tests
//! enable the feature through a dev-dependency, so the binary they build has it). Without
//! the feature — every normal and release build — [`hit`] does nothing and the variable
//! is never read, so no environment can make a production process abort.

/// The environment variable naming the failpoint to crash at.
pub const ENV: &str = "PULSE_BATCH_FAILPOINT";

/// Aborts the process if `name` is the configured failpoint (only with `failpoints`).
#[inline]
pub fn hit(name: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        tracing::error!(failpoint = name, "crashing on purpose");
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
