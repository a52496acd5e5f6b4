//! The middleware every request passes: the request timeout, HTTP metrics and the access
//! log. The log line holds the method, the route template and the status — never the
//! query string (it may carry `api_key`) nor a body (it may carry health values).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::{HTTP_DURATION, HTTP_REQUESTS};
use crate::state::AppState;

const ROUTES: [&str; 15] = [
    "/v1/events",
    "/v1/stream",
    "/v1/ws",
    "/v1/subscriptions",
    "/v1/subscriptions/{id}",
    "/v1/groups",
    "/v1/dlq",
    "/v1/dlq/{id}/redrive",
    "/v1/aggregates",
    "/v1/jobs",
    "/v1/jobs/{name}/run",
    "/metrics",
    "/healthz",
    "/readyz",
    "/openapi.json",
];

/// Times out slow requests, records metrics and logs the outcome.
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route: &'static str = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| {
            // Keep the label set bounded and static.
            ROUTES
                .iter()
                .copied()
                .find(|r| *r == p.as_str())
                .unwrap_or("other")
        });
    let method = req.method().clone();
    let started = Instant::now();
    let timeout = state.limits.request_timeout;
    let response = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Unavailable(format!(
            "the request did not complete within {} ms",
            timeout.as_millis()
        ))
        .into_response(),
    };
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(elapsed.as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request failed");
    } else {
        tracing::debug!(%method, route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request");
    }
    response
}
