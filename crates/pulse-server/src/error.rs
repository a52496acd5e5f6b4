//! The one error type of the HTTP API and the one place that maps error kinds to status
//! codes.
//!
//! Every handler returns `Result<_, ApiError>`; the body is always
//! `{"error":{"code":"<snake_case>","message":"<text>"}}`. Internal details (storage
//! errors, I/O) are logged here and replaced by a generic message, so nothing about the
//! server's insides reaches a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pulse_core::{EventError, LogError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not valid JSON (or not the JSON shape the endpoint takes).
    #[error("{0}")]
    MalformedJson(String),
    /// A query parameter, path segment or header has a value that is not allowed.
    #[error("{0}")]
    InvalidParameter(String),
    /// A type pattern does not parse.
    #[error("{0}")]
    InvalidPattern(String),
    /// No `Authorization: Bearer` key was given while keys are configured.
    #[error("an API key is required: send `Authorization: Bearer <key>`")]
    MissingApiKey,
    /// The key given is not configured.
    #[error("the API key is not valid")]
    InvalidApiKey,
    /// The key lacks a right; the message names the right and the pattern.
    #[error("{0}")]
    Forbidden(String),
    /// No route or resource has this name.
    #[error("{0}")]
    NotFound(String),
    /// The consumer group does not exist.
    #[error("unknown consumer group {0:?}")]
    UnknownGroup(String),
    /// No dead letter has this id.
    #[error("unknown dead letter {0}")]
    UnknownDeadLetter(u64),
    /// No job has this name.
    #[error("unknown job {0:?}")]
    UnknownJob(String),
    /// The job is running already.
    #[error("job {0:?} is running already")]
    JobRunning(String),
    /// A webhook subscription already uses this consumer group.
    #[error("consumer group {group:?} is already used by subscription {id:?}")]
    GroupInUse {
        /// The group.
        group: String,
        /// The subscription using it.
        id: String,
    },
    /// The request contradicts the state of a resource, e.g. joining a consumer group with
    /// another pattern than the group's; the message names both.
    #[error("{0}")]
    Conflict(String),
    /// The event log cannot do this (e.g. change a group's pattern on JetStream).
    #[error("{0}")]
    NotSupported(String),
    /// The body exceeds the configured limit.
    #[error("the request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The content type is not one the endpoint takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An event is invalid; the message says which attribute, why, and the batch index.
    #[error("{0}")]
    InvalidEvent(String),
    /// The event log (or another backend) cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the server; the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidParameter(_) | Self::InvalidPattern(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::MissingApiKey | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_)
            | Self::UnknownGroup(_)
            | Self::UnknownDeadLetter(_)
            | Self::UnknownJob(_) => StatusCode::NOT_FOUND,
            Self::JobRunning(_) | Self::GroupInUse { .. } | Self::Conflict(_) => {
                StatusCode::CONFLICT
            }
            Self::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, snake_case code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidParameter(_) => "invalid_parameter",
            Self::InvalidPattern(_) => "invalid_pattern",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::UnknownGroup(_) => "unknown_group",
            Self::UnknownDeadLetter(_) => "unknown_dead_letter",
            Self::UnknownJob(_) => "unknown_job",
            Self::JobRunning(_) => "job_running",
            Self::GroupInUse { .. } => "group_in_use",
            Self::Conflict(_) => "conflict",
            Self::NotSupported(_) => "not_supported",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::InvalidEvent(_) => "invalid_event",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }

    /// An invalid event, with its position when it came in a batch.
    pub fn invalid_event(index: Option<usize>, err: &EventError) -> Self {
        match index {
            Some(i) => Self::InvalidEvent(format!("event {i} of the batch: {err}")),
            None => Self::InvalidEvent(err.to_string()),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(err: LogError) -> Self {
        match err {
            LogError::InvalidEvent { index, source } => Self::invalid_event(Some(index), &source),
            LogError::RepeatedId { first, second } => Self::InvalidEvent(format!(
                "events {first} and {second} of the batch have the same id; \
                 a batch may not repeat an id"
            )),
            LogError::UnknownGroup(name) => Self::UnknownGroup(name),
            LogError::GroupPatternConflict {
                group,
                existing,
                requested,
            } => Self::Conflict(format!(
                "consumer group {group:?} receives \"{existing}\", not \"{requested}\": \
                 join it with its own pattern, or use another group; an administrator \
                 changes a group's pattern with PUT /v1/groups/{group}"
            )),
            LogError::Unsupported(reason) => Self::NotSupported(reason),
            LogError::InvalidGroup(reason) => Self::InvalidParameter(reason),
            LogError::UnknownDeadLetter(id) => Self::UnknownDeadLetter(id),
            LogError::Unavailable(_) | LogError::Closed => {
                // The reason may name hosts or paths: log it, send a plain message.
                tracing::warn!(%err, "event log unavailable");
                Self::Unavailable("the event log cannot be reached right now".into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed inside the server");
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_out_of_the_body() {
        let err = ApiError::from(LogError::Storage("disk /var/lib/x full".into()));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.body().to_string().contains("/var/lib"));
    }

    #[test]
    fn a_pattern_conflict_is_409_naming_both_patterns() {
        let err = ApiError::from(LogError::GroupPatternConflict {
            group: "billing".into(),
            existing: pulse_core::Pattern::parse("billing.>").unwrap(),
            requested: pulse_core::Pattern::parse("health.reading.>").unwrap(),
        });
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::CONFLICT, "conflict")
        );
        let message = err.to_string();
        assert!(message.contains("billing.>") && message.contains("health.reading.>"));
    }

    #[test]
    fn a_repeated_id_is_422_naming_both_indexes() {
        let err = ApiError::from(LogError::RepeatedId {
            first: 0,
            second: 2,
        });
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.to_string().contains("events 0 and 2"), "{err}");
    }

    #[test]
    fn batch_errors_name_the_index() {
        let err = ApiError::from(LogError::InvalidEvent {
            index: 3,
            source: EventError::Missing("source"),
        });
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.code(), "invalid_event");
        assert!(err.to_string().contains("event 3"));
        assert!(err.to_string().contains("source"));
    }
}
