//! The CloudEvents JSON event format (structured mode): one event as one JSON object.
//!
//! JSON data is embedded as a JSON value under `data`; text data as a string; anything
//! else as `data_base64`, so every payload round-trips byte for byte except JSON, which
//! round-trips as the same JSON value.

use std::borrow::Cow;

use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};

use super::{invalid, shared_text, Event, EventError, RESERVED};

const SPEC_VERSION: &str = "1.0";

impl Event {
    /// The event in the CloudEvents JSON format.
    pub fn to_json_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("specversion".into(), SPEC_VERSION.into());
        map.insert("id".into(), self.id.clone().into());
        map.insert("source".into(), self.source.as_ref().into());
        map.insert("type".into(), self.ty.as_ref().into());
        let optional = [
            ("subject", self.subject.clone()),
            (
                "time",
                self.time
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            ),
            (
                "datacontenttype",
                self.datacontenttype.as_deref().map(str::to_owned),
            ),
            ("dataschema", self.dataschema.clone()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.insert(name.into(), value.into());
            }
        }
        for (name, value) in &self.extensions {
            map.insert(name.clone(), value.clone());
        }
        if let Some(data) = &self.data {
            let (key, value) = encode_data(self, data);
            map.insert(key.into(), value);
        }
        Value::Object(map)
    }

    /// The event in the CloudEvents JSON format, as a string.
    pub fn to_json_string(&self) -> String {
        self.to_json_value().to_string()
    }

    /// Parses one event in the CloudEvents JSON format and validates it.
    pub fn from_json_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(mut map) = value else {
            return Err(EventError::Malformed(
                "an event must be a JSON object".into(),
            ));
        };
        match map.remove("specversion") {
            Some(Value::String(v)) if v == SPEC_VERSION => {}
            Some(other) => {
                return Err(invalid(
                    "specversion",
                    format!("{other} is not supported, use \"1.0\""),
                ))
            }
            None => return Err(EventError::Missing("specversion")),
        }
        let id = required_string(&mut map, "id")?;
        let source = shared_text(required_string(&mut map, "source")?);
        let ty = required_string(&mut map, "type")?.into();
        let subject = optional_string(&mut map, "subject")?;
        let time = optional_string(&mut map, "time")?
            .map(|t| parse_time(&t))
            .transpose()?;
        let datacontenttype = optional_string(&mut map, "datacontenttype")?.map(shared_text);
        let dataschema = optional_string(&mut map, "dataschema")?;
        let data = map.remove("data");
        let data_base64 = optional_string(&mut map, "data_base64")?;
        let mut event = Self {
            id,
            source,
            ty,
            subject,
            time,
            datacontenttype,
            dataschema,
            data: None,
            extensions: map.into_iter().collect(),
        };
        event.data = match (data, data_base64) {
            (Some(_), Some(_)) => {
                return Err(EventError::Malformed(
                    "both `data` and `data_base64` are present".into(),
                ))
            }
            (Some(value), None) => Some(decode_data(&mut event, value)?),
            (None, Some(b64)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| invalid("data_base64", e.to_string()))?
                    .into(),
            ),
            (None, None) => None,
        };
        event.validate()?;
        Ok(event)
    }

    /// Parses one event in the CloudEvents JSON format from bytes and validates it.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, EventError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))?;
        Self::from_json_value(value)
    }
}

/// Parses an RFC 3339 timestamp into UTC.
///
/// The time must fall in the years 0000 to 9999 in UTC, the years RFC 3339 can write:
/// events are written back in UTC, and an offset can move a time written in 9999 or
/// 0000 past them (`9999-12-31T23:59:59-01:00`), which would be accepted and stored but
/// never read back.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, EventError> {
    let time = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            invalid(
                "time",
                format!("{text:?} is not an RFC 3339 timestamp: {e}"),
            )
        })?;
    if !(0..=9999).contains(&time.year()) {
        return Err(invalid(
            "time",
            format!("{text:?} is outside the years 0000 to 9999 in UTC"),
        ));
    }
    Ok(time)
}

fn encode_data(event: &Event, data: &[u8]) -> (&'static str, Value) {
    if event.is_json() {
        if let Ok(value) = serde_json::from_slice::<Value>(data) {
            return ("data", value);
        }
    }
    // A JSON content type (`text/json`, `text/x+json`) whose data is not JSON cannot go
    // as a string: a string under `data` of a JSON event decodes as that JSON value.
    let is_text = !event.is_json()
        && event
            .datacontenttype
            .as_deref()
            .is_some_and(|ct| ct.starts_with("text/"));
    match std::str::from_utf8(data) {
        Ok(text) if is_text => ("data", text.into()),
        _ => (
            "data_base64",
            base64::engine::general_purpose::STANDARD
                .encode(data)
                .into(),
        ),
    }
}

fn decode_data(event: &mut Event, value: Value) -> Result<bytes::Bytes, EventError> {
    if let Value::String(text) = &value {
        if !event.is_json() {
            return Ok(text.clone().into_bytes().into());
        }
    }
    if event.datacontenttype.is_none() {
        event.datacontenttype = Some(Cow::Borrowed(super::JSON_CONTENT_TYPE));
    }
    serde_json::to_vec(&value)
        .map(Into::into)
        .map_err(|e| EventError::Data(e.to_string()))
}

fn required_string(map: &mut Map<String, Value>, name: &'static str) -> Result<String, EventError> {
    optional_string(map, name)?.ok_or(EventError::Missing(name))
}

fn optional_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, EventError> {
    debug_assert!(RESERVED.contains(&name));
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(name, format!("must be a string, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_data_round_trips_as_a_value() {
        let event = Event::new("health.reading")
            .with_subject("u1")
            .with_time("2026-01-02T03:04:05Z".parse().unwrap())
            .with_extension("traceparent", "00-1")
            .with_json(&json!({"value": 72.5}))
            .unwrap();
        let value = event.to_json_value();
        assert_eq!(value["data"]["value"], 72.5);
        assert_eq!(value["time"], "2026-01-02T03:04:05Z");
        assert_eq!(value["traceparent"], "00-1");
        assert_eq!(Event::from_json_value(value).unwrap(), event);
    }

    #[test]
    fn binary_and_text_data_round_trip() {
        let binary = Event::new("a.b").with_data("application/octet-stream", vec![0u8, 159, 255]);
        let value = binary.to_json_value();
        assert!(value.get("data_base64").is_some());
        assert_eq!(Event::from_json_value(value).unwrap(), binary);
        let text = Event::new("a.b").with_data("text/plain", "hello");
        let value = text.to_json_value();
        assert_eq!(value["data"], "hello");
        assert_eq!(Event::from_json_value(value).unwrap(), text);
    }

    #[test]
    fn a_time_past_the_rfc_3339_years_in_utc_is_refused() {
        // Found by fuzzing (cloudevents_structured): accepted, then unreadable as
        // `+10000-01-01T22:59:59Z` in the event's own JSON form.
        for text in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+00:01"] {
            assert!(
                matches!(parse_time(text), Err(EventError::InvalidAttribute { .. })),
                "{text}"
            );
        }
        for text in [
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59+01:00",
        ] {
            let event = Event::new("a.b").with_time(parse_time(text).unwrap());
            assert_eq!(
                Event::from_json_value(event.to_json_value()).unwrap(),
                event
            );
        }
    }

    #[test]
    fn text_json_data_that_is_not_json_round_trips() {
        // Found by fuzzing (cloudevents_binary): `text/+json` with the body `hello` came
        // back as the JSON string `"hello"`.
        for ct in ["text/+json; charset=utf-8", "text/json"] {
            let event = Event::new("a.b").with_data(ct, "hello");
            assert_eq!(
                Event::from_json_value(event.to_json_value()).unwrap(),
                event
            );
        }
    }

    #[test]
    fn data_without_content_type_is_json() {
        let event = Event::from_json_value(json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "data": {"x": 1}
        }))
        .unwrap();
        assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(event.json::<Value>().unwrap(), json!({"x": 1}));
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let cases = [
            (json!([1]), "JSON object"),
            (
                json!({"id": "1", "source": "s", "type": "a"}),
                "specversion",
            ),
            (
                json!({"specversion": "0.3", "id": "1", "source": "s", "type": "a"}),
                "not supported",
            ),
            (
                json!({"specversion": "1.0", "source": "s", "type": "a"}),
                "`id`",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "type": "a"}),
                "`source`",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s"}),
                "`type`",
            ),
            (
                json!({"specversion": "1.0", "id": 1, "source": "s", "type": "a"}),
                "must be a string",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a..b"}),
                "position 2",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a", "time": "yesterday"}),
                "RFC 3339",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a", "data": 1, "data_base64": "AA=="}),
                "both",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "s", "type": "a", "data_base64": "!!"}),
                "data_base64",
            ),
        ];
        for (value, needle) in cases {
            let err = Event::from_json_value(value.clone()).unwrap_err();
            assert!(err.to_string().contains(needle), "{value}: {err}");
        }
        assert!(matches!(
            Event::from_json_slice(b"{not json"),
            Err(EventError::Malformed(_))
        ));
    }
}
