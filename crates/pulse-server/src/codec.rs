//! CloudEvents over HTTP: the three ways a request body carries events.
//!
//! - structured: `application/cloudevents+json`, one event in the JSON format;
//! - batch: `application/cloudevents-batch+json`, a JSON array of events, all or nothing;
//! - binary: any other content type with `ce-*` headers; the body is the event's `data`
//!   and the `Content-Type` its `datacontenttype`.
//!
//! The JSON format itself lives in `pulse_core` (`Event::from_json_value`); this module
//! only picks the mode and turns each failure into the right [`ApiError`]: unparsable
//! JSON is 400, a parsed but invalid event 422 naming the attribute (and batch index).

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use bytes::Bytes;
use pulse_core::event::{parse_time, shared_text};
use pulse_core::{Event, EventError};
use serde_json::Value;

use crate::error::ApiError;

/// `Content-Type` of one structured event.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// `Content-Type` of a batch.
pub const BATCH: &str = "application/cloudevents-batch+json";

const BINARY_PREFIX: &str = "ce-";

/// The content type without parameters, lowercased.
fn essence(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Decodes the events of a `POST /v1/events` request.
pub fn decode(headers: &HeaderMap, body: Bytes) -> Result<Vec<Event>, ApiError> {
    let content_type = essence(headers);
    match content_type.as_deref() {
        Some(STRUCTURED) => {
            let value = parse_json(&body)?;
            let event = Event::from_json_value(value).map_err(|e| ApiError::invalid_event(None, &e))?;
            Ok(vec![event])
        }
        Some(BATCH) => {
            let Value::Array(items) = parse_json(&body)? else {
                return Err(ApiError::MalformedJson("a batch must be a JSON array of events".into()));
            };
            if items.is_empty() {
                return Err(ApiError::InvalidEvent("a batch must hold at least one event".into()));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| Event::from_json_value(v).map_err(|e| ApiError::invalid_event(Some(i), &e)))
                .collect()
        }
        _ if headers.contains_key("ce-specversion") => {
            let event = decode_binary(headers, content_type.is_some(), body)
                .map_err(|e| ApiError::invalid_event(None, &e))?;
            Ok(vec![event])
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {:?} is not accepted: send {STRUCTURED}, {BATCH}, or binary mode with ce-* headers",
            other.unwrap_or("(none)")
        ))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))
}

fn header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, EventError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let text = v.to_str().map_err(|_| EventError::InvalidAttribute {
                name: name.trim_start_matches(BINARY_PREFIX).into(),
                reason: "the header is not ASCII text".into(),
            })?;
            // `%XX` escapes of binary-mode header values (CloudEvents HTTP binding 3.1.3.2).
            Ok(Some(pulse_core::percent::decode(text)))
        }
    }
}

fn required(headers: &HeaderMap, name: &'static str) -> Result<String, EventError> {
    header(headers, name)?.ok_or(EventError::Missing(&name[BINARY_PREFIX.len()..]))
}

fn decode_binary(
    headers: &HeaderMap,
    has_content_type: bool,
    body: Bytes,
) -> Result<Event, EventError> {
    let spec = required(headers, "ce-specversion")?;
    if spec != "1.0" {
        return Err(EventError::InvalidAttribute {
            name: "specversion".into(),
            reason: format!("{spec:?} is not supported, use \"1.0\""),
        });
    }
    let mut event = Event::new(required(headers, "ce-type")?)
        .with_id(required(headers, "ce-id")?)
        .with_source(required(headers, "ce-source")?);
    event.subject = header(headers, "ce-subject")?;
    event.dataschema = header(headers, "ce-dataschema")?;
    if let Some(time) = header(headers, "ce-time")? {
        event.time = Some(parse_time(&time)?);
    }
    for (name, value) in headers {
        let name = name.as_str();
        let Some(ext) = name.strip_prefix(BINARY_PREFIX) else {
            continue;
        };
        if matches!(
            ext,
            "specversion" | "type" | "id" | "source" | "subject" | "dataschema" | "time"
        ) {
            continue;
        }
        let text = value.to_str().map_err(|_| EventError::InvalidAttribute {
            name: ext.into(),
            reason: "the header is not ASCII text".into(),
        })?;
        event.extensions.insert(
            ext.to_owned(),
            Value::String(pulse_core::percent::decode(text)),
        );
    }
    if has_content_type {
        event.datacontenttype = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| shared_text(v.to_owned()));
    }
    if !body.is_empty() {
        event.data = Some(body);
    }
    event.validate()?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn binary_mode_reads_headers_and_body() {
        let h = headers(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "e1"),
            ("ce-source", "test"),
            ("ce-type", "health.reading.hr"),
            ("ce-subject", "user%2042"),
            ("ce-traceparent", "abc"),
        ]);
        let events = decode(&h, Bytes::from_static(b"{\"value\":72}")).unwrap();
        let e = &events[0];
        assert_eq!(e.subject.as_deref(), Some("user 42"));
        assert_eq!(e.extensions["traceparent"], "abc");
        assert_eq!(e.json::<Value>().unwrap()["value"], 72);
    }

    #[test]
    fn binary_mode_needs_its_attributes() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-type", "a.b"),
            ("ce-source", "s"),
        ]);
        let err = decode(&h, Bytes::new()).unwrap_err();
        assert_eq!(err.code(), "invalid_event");
        assert!(err.to_string().contains("`id`"), "{err}");
    }

    #[test]
    fn modes_and_errors() {
        let structured = headers(&[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )]);
        let ok = br#"{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":{"x":1}}"#;
        assert_eq!(
            decode(&structured, Bytes::from_static(ok)).unwrap().len(),
            1
        );
        assert_eq!(
            decode(&structured, Bytes::from_static(b"{nope"))
                .unwrap_err()
                .code(),
            "malformed_json"
        );
        let missing = br#"{"specversion":"1.0","id":"1","type":"a.b"}"#;
        assert_eq!(
            decode(&structured, Bytes::from_static(missing))
                .unwrap_err()
                .code(),
            "invalid_event"
        );
        let batch = headers(&[("content-type", BATCH)]);
        let two = br#"[{"specversion":"1.0","id":"1","source":"s","type":"a.b"},{"specversion":"1.0","id":"2","source":"s","type":"a..b"}]"#;
        let err = decode(&batch, Bytes::from_static(two)).unwrap_err();
        assert!(err.to_string().starts_with("event 1 of the batch"), "{err}");
        assert_eq!(
            decode(&batch, Bytes::from_static(b"{}"))
                .unwrap_err()
                .code(),
            "malformed_json"
        );
        assert_eq!(
            decode(&batch, Bytes::from_static(b"[]"))
                .unwrap_err()
                .code(),
            "invalid_event"
        );
        let plain = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            decode(&plain, Bytes::new()).unwrap_err().code(),
            "unsupported_media_type"
        );
        assert_eq!(
            decode(&HeaderMap::new(), Bytes::new()).unwrap_err().code(),
            "unsupported_media_type"
        );
    }
}
