//! A reading as a JSON object, decoded without copying its strings.
//!
//! Fields are decoded into [`Flex`], which accepts whatever JSON type a sender used
//! (a user id as a number, a value as a string), so that a wrong type becomes a precise
//! rejection of that reading instead of a failed parse of the whole row.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::reading::{RawReading, RawValue};

/// A JSON value of any type, strings borrowed when possible.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Flex<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A floating-point number.
    Float(f64),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// `null`.
    Null,
    /// A boolean, object or array (named).
    Other(&'static str),
}

struct FlexVisitor;

impl<'de> Visitor<'de> for FlexVisitor {
    type Value = Flex<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Flex::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Flex::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Flex::Str(Cow::Owned(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Flex::Float(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Flex::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Flex::UInt(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Flex::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Flex::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Flex::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Flex::Other("an object"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Flex::Other("an array"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Flex<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FlexVisitor)
    }
}

impl Flex<'_> {
    /// The value as text: strings as they are, numbers formatted, `null` as absent.
    pub(crate) fn text(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Flex::Str(s) => Some(Cow::Borrowed(s.as_bytes())),
            Flex::Float(v) => Some(Cow::Owned(v.to_string().into_bytes())),
            Flex::Int(v) => Some(Cow::Owned(v.to_string().into_bytes())),
            Flex::UInt(v) => Some(Cow::Owned(v.to_string().into_bytes())),
            Flex::Null => None,
            Flex::Other(kind) => Some(Cow::Borrowed(kind.as_bytes())),
        }
    }
}

/// A reading object; unknown keys are ignored.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct JsonReading<'a> {
    /// `user_id`.
    #[serde(borrow, default)]
    pub user_id: Option<Flex<'a>>,
    /// `metric`.
    #[serde(borrow, default)]
    pub metric: Option<Flex<'a>>,
    /// `value`.
    #[serde(borrow, default)]
    pub value: Option<Flex<'a>>,
    /// `unit`.
    #[serde(borrow, default)]
    pub unit: Option<Flex<'a>>,
    /// `recorded_at`.
    #[serde(borrow, default)]
    pub recorded_at: Option<Flex<'a>>,
    /// `source`.
    #[serde(borrow, default)]
    pub source: Option<Flex<'a>>,
}

impl<'a> JsonReading<'a> {
    /// Parses one JSON object (serde would also accept an array for a struct; a reading
    /// given as an array is malformed, not a reading with fields in some order).
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<JsonReading<'a>, String> {
        if !bytes.trim_ascii_start().starts_with(b"{") {
            return Err("not a JSON object".into());
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Calls `f` with the raw reading (fallbacks fill a missing user id and time).
    pub(crate) fn with_raw<R>(
        &self,
        fallback_user: Option<&str>,
        fallback_time: Option<&str>,
        f: impl FnOnce(&RawReading<'_>) -> R,
    ) -> R {
        let text =
            |field: &Option<Flex<'_>>| field.as_ref().and_then(|v| v.text().map(Cow::into_owned));
        // Borrow the common (string) case; allocate only for unusual types.
        let user_id = self.user_id.as_ref().and_then(Flex::text);
        let user_id = user_id.as_deref().or(fallback_user.map(str::as_bytes));
        let metric = self.metric.as_ref().and_then(Flex::text);
        let unit = self.unit.as_ref().and_then(Flex::text);
        let recorded_at = self.recorded_at.as_ref().and_then(Flex::text);
        let recorded_at = recorded_at.as_deref().or(fallback_time.map(str::as_bytes));
        let source = text(&self.source);
        let value = match &self.value {
            None | Some(Flex::Null) => None,
            Some(Flex::Float(v)) => Some(RawValue::Number(*v)),
            Some(Flex::Int(v)) => Some(RawValue::Number(*v as f64)),
            Some(Flex::UInt(v)) => Some(RawValue::Number(*v as f64)),
            Some(Flex::Str(s)) => Some(RawValue::Text(s.as_bytes())),
            Some(Flex::Other(kind)) => Some(RawValue::Text(kind.as_bytes())),
        };
        let raw = RawReading {
            user_id,
            metric: metric.as_deref(),
            value,
            unit: unit.as_deref(),
            recorded_at,
            source: source.as_deref(),
        };
        f(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{validate, RejectReason};

    fn reason(line: &str) -> Option<RejectReason> {
        let parsed: JsonReading<'_> = serde_json::from_str(line).unwrap_or_default();
        parsed.with_raw(None, None, |raw| validate(raw).err().map(|r| r.reason))
    }

    #[test]
    fn flexible_types() {
        assert_eq!(
            reason(
                r#"{"user_id":42,"metric":"heart_rate","value":"71.5","recorded_at":"2025-01-01T00:00:00Z","extra":[1,{"a":2}]}"#
            ),
            None
        );
        assert_eq!(
            reason(
                r#"{"user_id":"u","metric":"heart_rate","value":true,"recorded_at":"2025-01-01T00:00:00Z"}"#
            ),
            Some(RejectReason::InvalidValue)
        );
        assert_eq!(
            reason(
                r#"{"user_id":"u","metric":"heart_rate","value":null,"recorded_at":"2025-01-01T00:00:00Z"}"#
            ),
            Some(RejectReason::MissingField)
        );
        assert_eq!(
            reason(r#"{"user_id":"u","metric":"heart_rate","value":70,"recorded_at":1735689600}"#),
            Some(RejectReason::UnparsableTime)
        );
        assert_eq!(
            reason(
                r#"{"user_id":"\u00e9\"x","metric":"heart_rate","value":70,"recorded_at":"2025-01-01T00:00:00Z"}"#
            ),
            None
        );
    }

    #[test]
    fn fallbacks_fill_missing_fields() {
        let parsed: JsonReading<'_> =
            serde_json::from_str(r#"{"metric":"steps","value":12}"#).unwrap_or_default();
        let ok = parsed.with_raw(Some("user-9"), Some("2025-01-01T00:00:00Z"), |raw| {
            validate(raw).map(|r| r.user_id.to_owned()).ok()
        });
        assert_eq!(ok.as_deref(), Some("user-9"));
    }
}
