//! `pulse serve --config pulse.toml`: the configuration file, parsed and validated by
//! `Config::parse` as `Config::load` does. Whatever the text, the answer is a
//! configuration or an error naming the key; the schedules of accepted jobs then compute
//! their firing times as the scheduler does, around a daylight saving change.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use pulse_server::Config;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads the file as UTF-8 text; other bytes are a read error.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    let _ = format!("{config:?}");
    let Some(at) = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).single() else {
        return;
    };
    for job in &config.jobs {
        if let Some(next) = job.schedule.next_after(at) {
            assert!(next > at, "{}: next firing is not after {at}", job.name);
        }
        if let Some(latest) = job.schedule.latest_at_or_before(at) {
            assert!(latest <= at, "{}: latest firing is after {at}", job.name);
        }
        let upcoming = job.schedule.upcoming(at, 4);
        assert!(
            upcoming.windows(2).all(|w| w[0] < w[1]),
            "{}: upcoming firings are not increasing",
            job.name
        );
    }
});
