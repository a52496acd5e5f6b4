//! `POST /v1/events` in structured mode: the body is one event in the CloudEvents JSON
//! format. Whatever the body, the codec answers an event or a clear 4xx error, and an
//! accepted event is valid and round-trips through the JSON format.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pulse_server::codec::{self, STRUCTURED};

fuzz_target!(|data: &[u8]| {
    let (headers, _) = pulse_fuzz::request(b"", Some(STRUCTURED));
    match codec::decode(&headers, Bytes::copy_from_slice(data)) {
        Ok(events) => {
            assert_eq!(events.len(), 1, "structured mode carries one event");
            for event in &events {
                assert!(event.validate().is_ok(), "an accepted event is invalid");
                pulse_fuzz::assert_round_trips(event);
            }
        }
        Err(err) => pulse_fuzz::assert_client_error(&err),
    }
});
