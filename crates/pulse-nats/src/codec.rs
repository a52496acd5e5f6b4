//! What a stored message looks like: the event in the CloudEvents JSON format (structured
//! mode) as the payload, on the subject `<prefix>.<type>`, with `Nats-Msg-Id` = the
//! event id. Keeping the whole event in the payload makes a message readable by any
//! NATS tool and by Pulse's own JSON codec; the offset is the stream sequence and is not
//! stored at all. Dead letters are JSON records of their own.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pulse_core::{DeadLetter, Event, LogError, StoredEvent};
use serde::{Deserialize, Serialize};

/// The payload of an event's message.
pub(crate) fn encode_event(event: &Event) -> Bytes {
    Bytes::from(event.to_json_string())
}

/// The stored event at `offset` from a message payload.
pub(crate) fn decode_event(offset: u64, payload: &[u8]) -> Result<StoredEvent, LogError> {
    let event = Event::from_json_slice(payload).map_err(|e| {
        LogError::Incompatible(format!("message {offset} is not a Pulse event: {e}"))
    })?;
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
            decode_event(1, b"{not json"),
            Err(LogError::Incompatible(_))
        ));
    }
}
