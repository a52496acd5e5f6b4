//! The middleware every request passes: the limits a request head must keep (header
//! count, URI length, declared body length — refused at once, before the body is read),
//! the request timeout, HTTP metrics, the access log, and the last line of defence for the
//! error shape: an error response that is not JSON (axum's own 405, an extractor's
//! plain-text rejection) is rewritten to `{"error":{"code","message"}}`. The log line
//! holds the method, the route template and the status — never the query string (it may
//! carry `api_key`) nor a body (it may carry health values).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::connection::{MAX_HEADERS, MAX_URI_BYTES};
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
    let response = match refuse_head(&req, state.limits.max_body_bytes) {
        Some(err) => err.into_response(),
        None => match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(r) => json_error(&method, r).await,
            Err(_) => ApiError::Unavailable(format!(
                "the request did not complete within {} ms",
                timeout.as_millis()
            ))
            .into_response(),
        },
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

/// A request whose head alone says it is over a limit.
fn refuse_head(req: &Request, max_body: usize) -> Option<ApiError> {
    let headers = req.headers().len();
    if headers > MAX_HEADERS {
        return Some(ApiError::TooManyHeaders(headers, MAX_HEADERS));
    }
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong(uri, MAX_URI_BYTES));
    }
    // A declared length over the limit is refused now, not after waiting for the bytes.
    match declared_length(req.headers()) {
        Some(len) if len > max_body as u64 => Some(ApiError::PayloadTooLarge(max_body)),
        _ => None,
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Rewrites an error response that is not JSON into the API's error shape, keeping its
/// status and headers (axum adds `Allow` to a 405 after this layer).
async fn json_error(method: &Method, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Such bodies are axum's short rejection texts; anything longer is not shown.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .unwrap_or_default();
    let err = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(format!(
            "this route does not take {method}; the allow header lists the methods it takes"
        )),
        _ => ApiError::rejected(status, text),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let (json_parts, body) = err.into_response().into_parts();
    parts.status = json_parts.status;
    for (name, value) in &json_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}
