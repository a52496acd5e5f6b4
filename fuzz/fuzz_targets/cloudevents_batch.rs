//! `POST /v1/events` in batch mode: the body is a JSON array of CloudEvents, accepted
//! all or nothing. Whatever the body, the codec answers the events or a clear 4xx error
//! naming the failing index, and every accepted event round-trips through the JSON
//! format.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pulse_server::codec::{self, BATCH};

fuzz_target!(|data: &[u8]| {
    let (headers, _) = pulse_fuzz::request(b"", Some(BATCH));
    match codec::decode(&headers, Bytes::copy_from_slice(data)) {
        Ok(events) => {
            assert!(!events.is_empty(), "an empty batch was accepted");
            for event in &events {
                assert!(event.validate().is_ok(), "an accepted event is invalid");
                pulse_fuzz::assert_round_trips(event);
            }
        }
        Err(err) => pulse_fuzz::assert_client_error(&err),
    }
});
