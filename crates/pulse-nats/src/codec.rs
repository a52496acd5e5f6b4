//! What a stored message looks like: on the subject `<prefix>.<partition>.<type>`, with
//! `Nats-Msg-Id` = the event id, a compact envelope as the payload:
//!
//! ```text
//! PE1\n{"id":…,"source":…,"type":…,"subject":…,"time":…,…}\n<data bytes as given>
//! ```
//!
//! The attributes are one line of JSON (compact JSON never holds a raw newline) and the
//! data follows untouched: unlike the CloudEvents JSON format, JSON data is neither
//! parsed nor re-serialised on the way in or out, which is most of the cost of a
//! publish, and any data round-trips byte for byte. Messages published to the stream
//! by other tools in the CloudEvents JSON format (structured mode) are read too. The
//! offset is the stream sequence and is not stored at all. Dead letters are JSON
//! records of their own.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use pulse_core::event::shared_text;
use pulse_core::{DeadLetter, Event, LogError, StoredEvent};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"PE1\n";

#[derive(Serialize)]
struct AttrsOut<'a> {
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    data: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    ext: &'a BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct AttrsIn {
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    subject: Option<String>,
    time: Option<DateTime<Utc>>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    #[serde(default)]
    data: bool,
    #[serde(default)]
    ext: BTreeMap<String, serde_json::Value>,
}

/// The payload of an event's message.
pub(crate) fn encode_event(event: &Event) -> Bytes {
    let data = event.data.as_deref().unwrap_or_default();
    let mut out = BytesMut::with_capacity(MAGIC.len() + 160 + data.len()).writer();
    std::io::Write::write_all(&mut out, MAGIC).unwrap_or_default();
    let attrs = AttrsOut {
        id: &event.id,
        source: &event.source,
        ty: &event.ty,
        subject: event.subject.as_deref(),
        time: event.time.as_ref(),
        datacontenttype: event.datacontenttype.as_deref(),
        dataschema: event.dataschema.as_deref(),
        data: event.data.is_some(),
        ext: &event.extensions,
    };
    // Writing plain strings, a timestamp and JSON values into memory cannot fail.
    serde_json::to_writer(&mut out, &attrs).unwrap_or_default();
    let mut out = out.into_inner();
    out.put_u8(b'\n');
    out.put_slice(data);
    out.freeze()
}

/// The stored event at `offset` from a message payload.
pub(crate) fn decode_event(offset: u64, payload: &Bytes) -> Result<StoredEvent, LogError> {
    let not_ours = |e: &dyn std::fmt::Display| {
        LogError::Incompatible(format!("message {offset} is not a Pulse event: {e}"))
    };
    let event = match payload.strip_prefix(MAGIC) {
        Some(rest) => {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| not_ours(&"the envelope has no end"))?;
            let attrs: AttrsIn = serde_json::from_slice(&rest[..end]).map_err(|e| not_ours(&e))?;
            let start = MAGIC.len() + end + 1;
            let event = Event {
                id: attrs.id,
                source: shared_text(attrs.source),
                ty: attrs.ty.into(),
                subject: attrs.subject,
                time: attrs.time,
                datacontenttype: attrs.datacontenttype.map(shared_text),
                dataschema: attrs.dataschema,
                data: attrs.data.then(|| payload.slice(start..)),
                extensions: attrs.ext,
            };
            event.validate().map_err(|e| not_ours(&e))?;
            event
        }
        None => Event::from_json_slice(payload).map_err(|e| not_ours(&e))?,
    };
    Ok(StoredEvent { offset, event })
}

/// A dead letter as stored in the dead-letter stream (its id is the sequence there).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DeadRecord {
    pub(crate) group: String,
    pub(crate) offset: u64,
    pub(crate) event: serde_json::Value,
    pub(crate) error: String,
    pub(crate) attempts: u32,
    pub(crate) first_failure: DateTime<Utc>,
    pub(crate) last_failure: DateTime<Utc>,
}

impl DeadRecord {
    /// A record of `event` failed in `group`.
    pub(crate) fn new(
        group: &str,
        event: &StoredEvent,
        error: &str,
        attempts: u32,
        first_failure: DateTime<Utc>,
    ) -> Self {
        let last_failure = Utc::now();
        Self {
            group: group.to_owned(),
            offset: event.offset,
            event: event.event.to_json_value(),
            error: error.to_owned(),
            attempts,
            first_failure: first_failure.min(last_failure),
            last_failure,
        }
    }

    pub(crate) fn encode(&self) -> Result<Bytes, LogError> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| LogError::Storage(format!("cannot encode a dead letter: {e}")))
    }

    pub(crate) fn decode(id: u64, payload: &[u8]) -> Result<Self, LogError> {
        serde_json::from_slice(payload)
            .map_err(|e| LogError::Incompatible(format!("dead letter {id} is not Pulse's: {e}")))
    }

    /// The dead letter with id `id`.
    pub(crate) fn into_dead_letter(self, id: u64) -> Result<DeadLetter, LogError> {
        let event = Event::from_json_value(self.event).map_err(|e| {
            LogError::Incompatible(format!("dead letter {id} holds no valid event: {e}"))
        })?;
        Ok(DeadLetter {
            id,
            group: self.group,
            event: StoredEvent {
                offset: self.offset,
                event,
            },
            error: self.error,
            attempts: self.attempts,
            first_failure: self.first_failure,
            last_failure: self.last_failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_dead_letters_round_trip() {
        let event = Event::new("health.reading")
            .with_subject("u1")
            .with_json(&serde_json::json!({"bpm": 71}))
            .unwrap();
        let stored = decode_event(7, &encode_event(&event)).unwrap();
        assert_eq!((stored.offset, &stored.event), (7, &event));
        let mut odd = Event::new("a.b")
            .with_time(Utc::now())
            .with_data("application/octet-stream", vec![0u8, b'\n', 255])
            .with_extension("traceparent", "00-abc");
        odd.dataschema = Some("urn:x".into());
        assert_eq!(decode_event(1, &encode_event(&odd)).unwrap().event, odd);
        let empty = Event::new("a.b").with_data("text/plain", Vec::new());
        assert_eq!(decode_event(1, &encode_event(&empty)).unwrap().event, empty);
        let structured = Bytes::from(event.to_json_string());
        assert_eq!(decode_event(2, &structured).unwrap().event, event);
        let record = DeadRecord::new("g", &stored, "boom", 3, Utc::now());
        let back = DeadRecord::decode(1, &record.encode().unwrap())
            .unwrap()
            .into_dead_letter(1)
            .unwrap();
        assert_eq!(
            (back.event, back.error.as_str(), back.attempts),
            (stored, "boom", 3)
        );
        assert!(matches!(
            decode_event(1, &Bytes::from_static(b"{not json")),
            Err(LogError::Incompatible(_))
        ));
    }
}
