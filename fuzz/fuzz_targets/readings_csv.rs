//! `pulse aggregate` over a CSV readings file: a header naming the columns, then one
//! reading per row. Every input is aggregated or refused with a clear error; the output
//! rows are consistent, count every accepted reading once per window, and a run resumed
//! at a line end gives what one run gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_batch::FileFormat;

fuzz_target!(|data: &[u8]| {
    pulse_fuzz::aggregate_readings(FileFormat::Csv, data);
});
