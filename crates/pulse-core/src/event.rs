//! The CloudEvents 1.0 event that Pulse moves and stores.
//!
//! `data` is kept as bytes plus its content type, so that any payload round-trips
//! untouched; [`Event::with_json`] and [`Event::json`] are the typed helpers for the common
//! JSON case. Constructors never fail; [`Event::validate`] says what is wrong, and the bus
//! and every log call it before accepting an event.

mod json;

pub use json::parse_time;

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::id::new_event_id;
use crate::pattern::{is_segment_char, Pattern};

/// The `source` given to events that do not name one.
pub const DEFAULT_SOURCE: &str = "pulse";
/// The content type of JSON data.
pub const JSON_CONTENT_TYPE: &str = "application/json";

const MAX_ID_LEN: usize = 256;
const MAX_TEXT_LEN: usize = 1024;
const MAX_EXTENSION_NAME_LEN: usize = 20;
const RESERVED: [&str; 10] = [
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
    "specversion",
];

/// A CloudEvents 1.0 event.
///
/// ```
/// use pulse_core::Event;
/// let event = Event::new("health.reading.heart_rate")
///     .with_subject("user-42")
///     .with_json(&serde_json::json!({"value": 72}))
///     .unwrap();
/// event.validate().unwrap();
/// assert_eq!(event.json::<serde_json::Value>().unwrap()["value"], 72);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Unique id; a UUIDv7 unless the publisher chose one. Dedup key of persistent logs.
    pub id: String,
    /// Who produced the event (a URI-reference).
    pub source: Cow<'static, str>,
    /// The event type, dot-separated segments of `[A-Za-z0-9_-]`.
    pub ty: Cow<'static, str>,
    /// The partition key (for example a user id): ordering holds per subject.
    pub subject: Option<String>,
    /// When the event happened; set to the publish time when absent.
    pub time: Option<DateTime<Utc>>,
    /// Content type of `data`.
    pub datacontenttype: Option<Cow<'static, str>>,
    /// Schema of `data`, if any.
    pub dataschema: Option<String>,
    /// The payload, as given.
    pub data: Option<Bytes>,
    /// CloudEvents extension attributes, kept as given (strings, integers, booleans).
    pub extensions: BTreeMap<String, serde_json::Value>,
}

/// What is wrong with an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The type is not dot-separated segments of `[A-Za-z0-9_-]`.
    #[error("invalid event type {ty:?}: {reason}")]
    InvalidType {
        /// The rejected type.
        ty: String,
        /// What is wrong, with the position.
        reason: String,
    },
    /// A required attribute is absent or empty.
    #[error("missing required attribute `{0}`")]
    Missing(&'static str),
    /// An attribute has a value that is not allowed.
    #[error("invalid attribute `{name}`: {reason}")]
    InvalidAttribute {
        /// The attribute.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The data could not be encoded or decoded.
    #[error("invalid data: {0}")]
    Data(String),
    /// The JSON form of the event is malformed.
    #[error("malformed event: {0}")]
    Malformed(String),
}

impl Event {
    /// A new event of type `ty` with a fresh UUIDv7 id, the default source and no data.
    ///
    /// The type, the source and the content type take a `&'static str` (a literal, kept
    /// without copying: the usual case for a service's own event types) or an owned
    /// `String`; pass `name.to_owned()` for a borrowed one.
    #[inline]
    pub fn new(ty: impl Into<Cow<'static, str>>) -> Self {
        Self {
            id: new_event_id(),
            source: Cow::Borrowed(DEFAULT_SOURCE),
            ty: ty.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            data: None,
            extensions: BTreeMap::new(),
        }
    }

    /// Sets the id (the dedup key of persistent logs).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the source.
    pub fn with_source(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the subject (partition key).
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the time.
    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }

    /// Sets raw data and its content type.
    #[inline]
    pub fn with_data(
        mut self,
        content_type: impl Into<Cow<'static, str>>,
        data: impl Into<Bytes>,
    ) -> Self {
        self.datacontenttype = Some(content_type.into());
        self.data = Some(data.into());
        self
    }

    /// Serializes `value` as JSON data.
    pub fn with_json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, EventError> {
        let bytes = serde_json::to_vec(value).map_err(|e| EventError::Data(e.to_string()))?;
        Ok(self.with_data(JSON_CONTENT_TYPE, bytes))
    }

    /// Sets an extension attribute.
    pub fn with_extension(
        mut self,
        name: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.extensions.insert(name.into(), value.into());
        self
    }

    /// Deserializes JSON data.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, EventError> {
        let data = self.data.as_deref().ok_or(EventError::Missing("data"))?;
        serde_json::from_slice(data).map_err(|e| EventError::Data(e.to_string()))
    }

    /// Whether the data is JSON (no content type, `application/json` or `*+json`).
    pub fn is_json(&self) -> bool {
        self.datacontenttype
            .as_deref()
            .is_none_or(is_json_content_type)
    }

    /// Checks every attribute, returning the first problem.
    pub fn validate(&self) -> Result<(), EventError> {
        self.validate_unlike(None)
    }

    /// [`validate`](Self::validate), skipping the attributes equal to those of `valid`,
    /// an event that passed: in a batch, consecutive events usually share their type,
    /// source and content type, and comparing costs less than checking again.
    pub(crate) fn validate_unlike(&self, valid: Option<&Event>) -> Result<(), EventError> {
        let changed = |attribute: fn(&Event) -> Option<&str>| {
            valid.is_none_or(|v| attribute(v) != attribute(self))
        };
        if changed(|e| Some(&e.ty)) {
            validate_type(&self.ty)?;
        }
        check_text("id", &self.id, MAX_ID_LEN)?;
        if changed(|e| Some(&e.source)) {
            validate_source(&self.source)?;
        }
        if let Some(subject) = self
            .subject
            .as_deref()
            .filter(|_| changed(|e| e.subject.as_deref()))
        {
            check_text("subject", subject, MAX_TEXT_LEN)?;
        }
        if let Some(ct) = self
            .datacontenttype
            .as_deref()
            .filter(|_| changed(|e| e.datacontenttype.as_deref()))
        {
            check_text("datacontenttype", ct, MAX_TEXT_LEN)?;
        }
        if let Some(schema) = self
            .dataschema
            .as_deref()
            .filter(|_| changed(|e| e.dataschema.as_deref()))
        {
            check_text("dataschema", schema, MAX_TEXT_LEN)?;
        }
        for (name, value) in &self.extensions {
            validate_extension(name, value)?;
        }
        Ok(())
    }
}

fn validate_source(source: &str) -> Result<(), EventError> {
    check_text("source", source, MAX_TEXT_LEN)?;
    let whitespace = if source.is_ascii() {
        // `char::is_whitespace` on ASCII: space and \t \n \x0B \x0C \r.
        source.bytes().any(|b| matches!(b, b' ' | b'\t'..=b'\r'))
    } else {
        source.chars().any(char::is_whitespace)
    };
    if whitespace {
        return Err(invalid(
            "source",
            "must be a URI-reference without whitespace",
        ));
    }
    Ok(())
}

/// The common values of `source` and `datacontenttype` as static text, any other value as
/// given: decoders of stored or received events use it so that the usual values cost no
/// allocation per event.
pub fn shared_text(text: String) -> Cow<'static, str> {
    match text.as_str() {
        DEFAULT_SOURCE => Cow::Borrowed(DEFAULT_SOURCE),
        JSON_CONTENT_TYPE => Cow::Borrowed(JSON_CONTENT_TYPE),
        _ => Cow::Owned(text),
    }
}

/// Checks that `ty` is dot-separated segments of `[A-Za-z0-9_-]`.
pub fn validate_type(ty: &str) -> Result<(), EventError> {
    let fail = |reason: String| EventError::InvalidType {
        ty: ty.to_owned(),
        reason,
    };
    if ty.is_empty() {
        return Err(fail("type is empty".to_owned()));
    }
    if ty.len() > Pattern::MAX_LEN {
        return Err(fail(format!(
            "{} bytes long, the limit is {}",
            ty.len(),
            Pattern::MAX_LEN
        )));
    }
    // Fast path for the common, valid case: a branch-free pass over the bytes.
    let plain = ty.bytes().fold(true, |ok, b| {
        ok & (b.is_ascii_alphanumeric() | (b == b'_') | (b == b'-') | (b == b'.'))
    });
    if plain && !ty.starts_with('.') && !ty.ends_with('.') && !ty.contains("..") {
        return Ok(());
    }
    let mut segment_len = 0;
    // Bytes rather than chars: valid types are ASCII, and every byte before a non-ASCII
    // one is ASCII, so `position` is a char boundary when reporting it.
    for (position, b) in ty.bytes().enumerate() {
        if b == b'.' {
            if segment_len == 0 {
                return Err(fail(format!("empty segment at position {position}")));
            }
            segment_len = 0;
        } else if b.is_ascii() && is_segment_char(char::from(b)) {
            segment_len += 1;
        } else {
            let c = ty[position..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(fail(format!(
                "invalid character {c:?} at position {position}: segments are [A-Za-z0-9_-]"
            )));
        }
    }
    if segment_len == 0 {
        return Err(fail(format!("empty segment at position {}", ty.len())));
    }
    Ok(())
}

fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == JSON_CONTENT_TYPE || essence.ends_with("+json") || essence == "text/json"
}

fn invalid(name: &str, reason: impl Into<String>) -> EventError {
    EventError::InvalidAttribute {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn check_text(name: &'static str, value: &str, max: usize) -> Result<(), EventError> {
    if value.is_empty() {
        return Err(EventError::Missing(name));
    }
    if value.len() > max {
        return Err(invalid(
            name,
            format!("{} bytes long, the limit is {max}", value.len()),
        ));
    }
    // This runs several times per publish: a branch-free pass over the bytes (which the
    // compiler vectorizes) clears printable ASCII, the only case that matters for speed;
    // anything else takes the exact `char::is_control` test.
    let plain_ascii = value
        .bytes()
        .fold(true, |ok, b| ok & (0x20..0x7f).contains(&b));
    if !plain_ascii && value.chars().any(char::is_control) {
        return Err(invalid(name, "contains a control character"));
    }
    Ok(())
}

fn validate_extension(name: &str, value: &serde_json::Value) -> Result<(), EventError> {
    if name.is_empty()
        || name.len() > MAX_EXTENSION_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(invalid(
            name,
            "extension names are 1 to 20 characters of [a-z0-9]",
        ));
    }
    if RESERVED.contains(&name) {
        return Err(invalid(name, "is a reserved attribute name"));
    }
    match value {
        serde_json::Value::String(_) | serde_json::Value::Bool(_) => Ok(()),
        serde_json::Value::Number(n) if n.is_i64() => Ok(()),
        _ => Err(invalid(
            name,
            "extension values are strings, integers or booleans",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_event_is_valid() {
        let event = Event::new("health.reading.heart_rate").with_subject("u1");
        event.validate().unwrap();
        assert_eq!(event.source, DEFAULT_SOURCE);
        assert!(event.is_json());
    }

    #[test]
    fn validating_after_a_valid_event_still_checks_every_attribute_that_differs() {
        let valid = Event::new("a.b")
            .with_subject("u1")
            .with_data("text/plain", "x");
        valid.validate().unwrap();
        let next = Event::new("a.b")
            .with_subject("u2")
            .with_data("text/plain", "y");
        next.validate_unlike(Some(&valid)).unwrap();
        for bad in [
            Event::new("a..b"),
            Event::new("a.b").with_id("a\nb"),
            Event::new("a.b").with_source("my app"),
            Event::new("a.b").with_subject("u\n1"),
            Event::new("a.b").with_data("text/\u{7f}", "x"),
            Event::new("a.b").with_extension("Bad", 1),
        ] {
            let alone = bad.validate().unwrap_err();
            assert_eq!(bad.validate_unlike(Some(&valid)), Err(alone));
        }
    }

    #[test]
    fn the_usual_source_and_content_type_are_shared_not_copied() {
        assert!(matches!(
            shared_text("pulse".to_owned()),
            Cow::Borrowed(DEFAULT_SOURCE)
        ));
        assert!(matches!(
            shared_text("application/json".to_owned()),
            Cow::Borrowed(JSON_CONTENT_TYPE)
        ));
        assert!(matches!(shared_text("my-app".to_owned()), Cow::Owned(ref s) if s == "my-app"));
        let decoded = Event::from_json_value(
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "pulse",
                               "type": "a.b", "data": {"v": 1}}),
        )
        .unwrap();
        assert!(matches!(decoded.source, Cow::Borrowed(_)));
        assert!(matches!(decoded.datacontenttype, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn malformed_types_are_rejected_with_the_reason() {
        for (ty, needle) in [
            ("", "empty"),
            ("health..x", "position 7"),
            (".health", "position 0"),
            ("health.", "position 7"),
            ("health.*", "'*' at position 7"),
            ("health reading", "position 6"),
            ("héalth", "position 1"),
        ] {
            let err = Event::new(ty).validate().unwrap_err();
            assert!(
                matches!(err, EventError::InvalidType { .. }),
                "{ty}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{ty}: {err}");
        }
        assert!(Event::new("a".repeat(256)).validate().is_err());
    }

    #[test]
    fn malformed_ids_sources_and_subjects_are_rejected() {
        let base = Event::new("a.b");
        assert_eq!(
            base.clone().with_id("").validate(),
            Err(EventError::Missing("id"))
        );
        let err = base
            .clone()
            .with_id("x".repeat(257))
            .validate()
            .unwrap_err();
        assert!(matches!(err, EventError::InvalidAttribute { ref name, .. } if name == "id"));
        let err = base.clone().with_id("a\nb").validate().unwrap_err();
        assert!(err.to_string().contains("control character"));
        assert_eq!(
            base.clone().with_source("").validate(),
            Err(EventError::Missing("source"))
        );
        let err = base.clone().with_source("my app").validate().unwrap_err();
        assert!(matches!(err, EventError::InvalidAttribute { ref name, .. } if name == "source"));
        assert_eq!(
            base.clone().with_subject("").validate(),
            Err(EventError::Missing("subject"))
        );
    }

    #[test]
    fn extensions_are_checked() {
        let base = Event::new("a.b");
        base.clone()
            .with_extension("traceparent", "00-abc")
            .validate()
            .unwrap();
        base.clone()
            .with_extension("priority", 3)
            .validate()
            .unwrap();
        assert!(base.clone().with_extension("Bad", "x").validate().is_err());
        assert!(base
            .clone()
            .with_extension("subject", "x")
            .validate()
            .is_err());
        assert!(base
            .clone()
            .with_extension("ratio", 0.5)
            .validate()
            .is_err());
    }

    #[test]
    fn json_helpers_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Reading {
            value: f64,
        }
        let event = Event::new("a.b")
            .with_json(&Reading { value: 1.5 })
            .unwrap();
        assert_eq!(event.json::<Reading>().unwrap(), Reading { value: 1.5 });
        assert_eq!(event.datacontenttype.as_deref(), Some(JSON_CONTENT_TYPE));
        assert!(matches!(
            Event::new("a.b").json::<Reading>(),
            Err(EventError::Missing("data"))
        ));
        let binary = Event::new("a.b").with_data("application/octet-stream", vec![0u8, 1]);
        assert!(!binary.is_json());
        assert!(matches!(binary.json::<Reading>(), Err(EventError::Data(_))));
    }
}
