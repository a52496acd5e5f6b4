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

/// Times out slow requests, records metrics and logs the outcome.
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route template axum matched: the label set is the router's own routes (and
    // `unmatched` for the 404 fallback), bounded by construction, with no list to keep in step.
    let route: String = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
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
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route.clone()).record(elapsed.as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(%method, %route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request failed");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request");
    }
    response
}
