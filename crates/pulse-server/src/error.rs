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
    /// The event log's storage is full: nothing was stored; retrying with the same ids
    /// succeeds once space is freed.
    #[error("the event log's storage is full: nothing was stored, retry once space is freed")]
    StorageFull,
    /// The request has more header fields than the server takes.
    #[error("the request has {0} header fields, more than the limit of {1}")]
    TooManyHeaders(usize, usize),
    /// The request's URI is longer than the server takes.
    #[error("the request URI is {0} bytes long, more than the limit of {1}")]
    UriTooLong(usize, usize),
    /// The method is not one the route takes; the message lists those it does.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A WebSocket route was asked for without a valid WebSocket upgrade.
    #[error("{0}")]
    WebSocketRequired(String),
    /// A request refused outside a handler (an extractor's rejection) with this status.
    #[error("{message}")]
    Rejected {
        /// The status the rejection carried.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
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
            Self::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::TooManyHeaders(..) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong(..) => StatusCode::URI_TOO_LONG,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::WebSocketRequired(_) => StatusCode::BAD_REQUEST,
            Self::Rejected { status, .. } => *status,
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
            Self::StorageFull => "storage_full",
            Self::TooManyHeaders(..) => "too_many_headers",
            Self::UriTooLong(..) => "uri_too_long",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::WebSocketRequired(_) => "websocket_required",
            Self::Rejected { .. } => "request_rejected",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }

    /// The error for a response that left the router with `status` and a plain-text
    /// `text` (axum's rejections), so that it too has the API's JSON shape.
    pub fn rejected(status: StatusCode, text: String) -> Self {
        let text = text.trim();
        let message = if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_lowercase()
        } else {
            text.to_owned()
        };
        match status {
            StatusCode::BAD_REQUEST => Self::InvalidParameter(message),
            StatusCode::NOT_FOUND => Self::NotFound(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(message),
            s if s.is_server_error() => Self::Internal(message),
            _ => Self::Rejected { status, message },
        }
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
            LogError::StorageFull(_) => {
                // The detail names the file: log it, send the plain message.
                tracing::warn!(%err, "event log storage full");
                Self::StorageFull
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
    fn a_full_disk_is_507_storage_full_without_the_path() {
        let err = ApiError::from(LogError::StorageFull(
            "cannot append: /var/lib/pulse/events.db: the disk is full".into(),
        ));
        assert_eq!(err.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(err.code(), "storage_full");
        assert!(!err.body().to_string().contains("/var/lib"));
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
