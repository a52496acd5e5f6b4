//! `pulse aggregate` over a JSONL readings file: one JSON object per line. Every input is
//! aggregated (bad lines rejected with their reason); the output rows are consistent,
//! count every accepted reading once per window, and a run resumed at a line end gives
//! what one run gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_batch::FileFormat;

fuzz_target!(|data: &[u8]| {
    pulse_fuzz::aggregate_readings(FileFormat::Jsonl, data);
});
