//! `POST /v1/events` in binary mode: the attributes are `ce-*` headers (percent-encoded)
//! and the body is the data. The input is read as `name: value` header lines, an empty
//! line and the body (so a `content-type` line may also pick structured or batch mode).
//! Whatever the request, the codec answers events or a clear 4xx error, and an accepted
//! event round-trips through the JSON format subscribers get.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_server::codec::{self, BATCH, STRUCTURED};

fuzz_target!(|data: &[u8]| {
    let (headers, body) = pulse_fuzz::request(data, None);
    let essence = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let binary = !matches!(essence.as_deref(), Some(STRUCTURED | BATCH));
    match codec::decode(&headers, body.clone()) {
        Ok(events) => {
            if binary {
                assert_eq!(events.len(), 1, "binary mode carries one event");
                let data = events[0].data.as_ref();
                assert_eq!(
                    data,
                    (!body.is_empty()).then_some(&body),
                    "the body is not the data"
                );
            }
            for event in &events {
                assert!(event.validate().is_ok(), "an accepted event is invalid");
                pulse_fuzz::assert_round_trips(event);
            }
        }
        Err(err) => pulse_fuzz::assert_client_error(&err),
    }
});
