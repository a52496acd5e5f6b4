//! Maps driver and pool errors onto [`LogError`]: a lost or refused connection, a server
//! shutting down or a pool timeout is `Unavailable` (retrying may succeed); anything else
//! the server rejected is `Storage`.

use deadpool_postgres::PoolError;
use pulse_core::LogError;

/// SQLSTATEs that mean "the server is going away or cannot take us now".
fn is_transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code == "57P01" // admin shutdown (pg_terminate_backend)
        || code == "57P02" // crash shutdown
        || code == "57P03" // cannot connect now
        || code == "53300" // too many connections
}

/// Classifies a driver error.
pub(crate) fn db(err: tokio_postgres::Error) -> LogError {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        let message = format!("{} ({code})", db.message());
        return if is_transient(code) {
            LogError::Unavailable(message)
        } else {
            LogError::Storage(message)
        };
    }
    // No server error: the connection broke, could not be made, or timed out.
    let io = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
    let message = pulse_core::error_chain(&err);
    if err.is_closed() || io || err.code().is_none() {
        LogError::Unavailable(message)
    } else {
        LogError::Storage(message)
    }
}

/// Classifies a pool error.
pub(crate) fn pool(err: PoolError) -> LogError {
    match err {
        PoolError::Backend(e) => db(e),
        PoolError::Closed => LogError::Closed,
        other => LogError::Unavailable(format!(
            "no database connection: {}",
            pulse_core::error_chain(&other)
        )),
    }
}

/// A copy of an error for every waiter of a failed group commit.
pub(crate) fn duplicate(err: &LogError) -> LogError {
    match err {
        LogError::Unavailable(m) => LogError::Unavailable(m.clone()),
        LogError::Closed => LogError::Closed,
        LogError::Incompatible(m) => LogError::Incompatible(m.clone()),
        other => LogError::Storage(other.to_string()),
    }
}

/// `.db()` on driver results: classifies the error.
pub(crate) trait DbResult<T> {
    /// The result with the error classified.
    fn db(self) -> Result<T, LogError>;
}

impl<T> DbResult<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> Result<T, LogError> {
        self.map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_codes_are_transient() {
        assert!(is_transient("57P01"));
        assert!(is_transient("08006"));
        assert!(!is_transient("23505"));
    }
}
