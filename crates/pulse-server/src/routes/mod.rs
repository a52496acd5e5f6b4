//! The HTTP routes, one module per resource, and the extractors that turn axum's
//! rejections into [`ApiError`]s so every error has the same JSON shape.

mod aggregates;
mod dlq;
mod events;
mod groups;
mod jobs;
mod ops;
mod stream;
mod subscriptions;
mod ws;

pub(crate) use groups::refresh_lag;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::Router;
use pulse_core::Pattern;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::middleware;
use crate::state::AppState;

/// Every route of the API, with limits, metrics and access logs applied.
pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/v1/events", post(events::publish).get(events::read))
        .route("/v1/stream", get(stream::sse))
        .route("/v1/ws", get(ws::upgrade))
        .route(
            "/v1/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route("/v1/subscriptions/{id}", delete(subscriptions::remove))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{group}", put(groups::update))
        .route("/v1/groups/{group}/ack", post(stream::ack))
        .route("/v1/groups/{group}/nack", post(stream::nack))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/{id}/redrive", post(dlq::redrive))
        .route("/v1/aggregates", get(aggregates::query))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{name}/run", post(jobs::run))
        .route("/v1/jobs/{name}/runs", get(jobs::runs))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Query parameters; a bad one is a 400 `invalid_parameter`.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::InvalidParameter(e.body_text()))
    }
}

/// A JSON body; malformed is 400, wrong content type 415, too large 413.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| Self(j.0))
            .map_err(|e| match e {
                JsonRejection::MissingJsonContentType(_) => {
                    ApiError::UnsupportedMediaType("send the body as application/json".into())
                }
                JsonRejection::BytesRejection(b) if b.status().as_u16() == 413 => {
                    ApiError::PayloadTooLarge(limit)
                }
                other => ApiError::MalformedJson(other.body_text()),
            })
    }
}

/// The page size of a paged read: 100 when absent, at most 1,000, never 0.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    const DEFAULT_LIMIT: usize = 100;
    const MAX_LIMIT: usize = 1000;
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::InvalidParameter(
            "limit must be at least 1".into(),
        )),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

/// Parses a pattern parameter; a bad one is a 400 `invalid_pattern`.
pub(crate) fn parse_pattern(text: &str) -> Result<Pattern, ApiError> {
    Pattern::parse(text).map_err(|e| ApiError::InvalidPattern(e.to_string()))
}

/// Parses an RFC 3339 parameter; a bad one is a 400 `invalid_parameter`.
pub(crate) fn parse_time(
    name: &str,
    text: &str,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::InvalidParameter(format!("{name}={text:?} is not an RFC 3339 time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits_default_cap_and_refuse_zero() {
        assert_eq!(page_limit(None).unwrap(), 100);
        assert_eq!(page_limit(Some(7)).unwrap(), 7);
        assert_eq!(page_limit(Some(1_000_000)).unwrap(), 1000);
        assert!(matches!(
            page_limit(Some(0)),
            Err(ApiError::InvalidParameter(_))
        ));
    }
}
